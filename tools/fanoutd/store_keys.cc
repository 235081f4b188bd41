// fanoutd's store: API keys (only their SHA-256 is stored) and the signing key (store.h; the
// schema is in store.cc).
#include <sodium.h>
#include <sqlite3.h>
#include <algorithm>
#include <array>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <ctime>
#include <iterator>
#include <limits>
#include <set>
#include <system_error>
#include <utility>
#include "engine/signer.h"
#include "engine/sqlite.h"
#include "tools/fanoutd/store.h"
#include "tools/fanoutd/store_internal.h"

namespace fanout::daemon {

using sqlite::Statement;
using sqlite::Transaction;
using store_detail::sodium_ready;
using store_detail::store_error;

namespace {

constexpr std::size_t kApiKeyRandomBytes = 32;
constexpr std::string_view kApiKeyPrefix = "fo_";

std::string join_orgs(const std::vector<std::int64_t>& orgs) {
  std::string out;
  for (const auto org : orgs) {
    if (!out.empty()) out += ',';
    out += std::to_string(org);
  }
  return out;
}

std::optional<std::vector<std::int64_t>> split_orgs(std::string_view text) {
  std::vector<std::int64_t> orgs;
  while (!text.empty()) {
    const auto comma = text.find(',');
    const std::string_view part = text.substr(0, comma);
    std::int64_t org = 0;
    const auto [end, ec] = std::from_chars(part.data(), part.data() + part.size(), org);
    if (ec != std::errc() || end != part.data() + part.size() || part.empty()) {
      return std::nullopt;
    }
    orgs.push_back(org);
    if (comma == std::string_view::npos) break;
    text.remove_prefix(comma + 1);
    if (text.empty()) return std::nullopt;  // trailing comma
  }
  return orgs;
}

using KeyHash = std::array<unsigned char, crypto_hash_sha256_BYTES>;

KeyHash hash_key(std::string_view key) noexcept {
  static constexpr char kEmpty[1] = {0};
  KeyHash hash{};
  crypto_hash_sha256(hash.data(),
                     reinterpret_cast<const unsigned char*>(key.empty() ? kEmpty : key.data()),
                     key.size());
  return hash;
}

constexpr std::string_view kApiKeyColumns =
    "SELECT id, role, orgs, name, created_at_us, revoked_at_us FROM api_keys ";

tl::expected<ApiKey, std::string> api_key_from_row(const Statement& stmt) {
  ApiKey key;
  key.id = stmt.int64(0);
  const std::string role = stmt.text(1);
  const auto parsed_role = parse_role(role);
  if (!parsed_role) {
    return tl::unexpected("API key " + std::to_string(key.id) + ": unknown role \"" + role + "\"");
  }
  key.role = *parsed_role;
  const std::string orgs = stmt.text(2);
  auto parsed_orgs = split_orgs(orgs);
  if (!parsed_orgs) {
    return tl::unexpected("API key " + std::to_string(key.id) + ": malformed organisation list \"" +
                          orgs + "\"");
  }
  key.orgs = std::move(*parsed_orgs);
  key.name = stmt.text(3);
  key.created_at_us = stmt.int64(4);
  if (!stmt.is_null(5)) key.revoked_at_us = stmt.int64(5);
  return key;
}

// Checks (and normalises: PROVIDER organisations sorted, duplicates removed) what a key of
// `role` may be granted.
tl::expected<void, std::string> check_orgs(Role role, std::vector<std::int64_t>& orgs) {
  const bool all_positive =
      std::all_of(orgs.begin(), orgs.end(), [](std::int64_t org) { return org > 0; });
  switch (role) {
    case Role::kOrgAdmin:
      if (orgs.size() != 1 || !all_positive) {
        return tl::unexpected(
            std::string("an ORG_ADMIN key needs exactly one organisation, an integer > 0"));
      }
      return {};
    case Role::kProvider:
      if (orgs.empty() || !all_positive) {
        return tl::unexpected(
            std::string("a PROVIDER key needs at least one organisation, each an integer > 0"));
      }
      std::sort(orgs.begin(), orgs.end());
      orgs.erase(std::unique(orgs.begin(), orgs.end()), orgs.end());
      return {};
    case Role::kIngest:
      // Empty: every organisation (asked for explicitly at creation: --all-orgs).
      if (!all_positive) {
        return tl::unexpected(std::string("an INGEST key's organisations are integers > 0"));
      }
      std::sort(orgs.begin(), orgs.end());
      orgs.erase(std::unique(orgs.begin(), orgs.end()), orgs.end());
      return {};
  }
  return tl::unexpected(std::string("unknown role"));
}

}  // namespace

std::string_view to_string(Role role) noexcept {
  switch (role) {
    case Role::kOrgAdmin:
      return "ORG_ADMIN";
    case Role::kProvider:
      return "PROVIDER";
    case Role::kIngest:
      return "INGEST";
  }
  return "UNKNOWN";
}

std::optional<Role> parse_role(std::string_view s) noexcept {
  if (s == "ORG_ADMIN") return Role::kOrgAdmin;
  if (s == "PROVIDER") return Role::kProvider;
  if (s == "INGEST") return Role::kIngest;
  return std::nullopt;
}

tl::expected<std::pair<ApiKey, std::string>, std::string> Store::create_api_key(
    Role role, std::vector<std::int64_t> orgs, std::string name, std::int64_t now_us) {
  if (auto checked = check_orgs(role, orgs); !checked) {
    return tl::unexpected(std::move(checked.error()));
  }
  if (!sodium_ready()) return tl::unexpected(std::string("libsodium failed to initialise"));

  unsigned char random[kApiKeyRandomBytes];
  randombytes_buf(random, sizeof random);
  char b64[sodium_base64_ENCODED_LEN(kApiKeyRandomBytes, sodium_base64_VARIANT_URLSAFE_NO_PADDING)];
  sodium_bin2base64(b64, sizeof b64, random, sizeof random,
                    sodium_base64_VARIANT_URLSAFE_NO_PADDING);
  sodium_memzero(random, sizeof random);
  std::string key(kApiKeyPrefix);
  key += b64;
  sodium_memzero(b64, sizeof b64);
  const KeyHash hash = hash_key(key);

  ApiKey record;
  record.role = role;
  record.orgs = std::move(orgs);
  record.name = std::move(name);
  record.created_at_us = now_us;
  const std::string joined = join_orgs(record.orgs);
  auto stmt = Statement::prepare(db_,
                                 "INSERT INTO api_keys (key_hash, role, orgs, name, created_at_us) "
                                 "VALUES (?1, ?2, ?3, ?4, ?5)",
                                 "storing an API key");
  if (!stmt) return tl::unexpected(std::move(stmt.error()));
  stmt->bind_blob(1, hash.data(), hash.size());
  stmt->bind_text(2, to_string(role));
  stmt->bind_text(3, joined);
  stmt->bind_text(4, record.name);
  stmt->bind(5, now_us);
  if (auto done = stmt->run(); !done) return tl::unexpected(std::move(done.error()));
  record.id = sqlite3_last_insert_rowid(db_);
  return std::pair<ApiKey, std::string>(std::move(record), std::move(key));
}

tl::expected<std::optional<ApiKey>, std::string> Store::find_api_key(std::string_view key) {
  if (!sodium_ready()) return tl::unexpected(std::string("libsodium failed to initialise"));
  const KeyHash hash = hash_key(key);
  auto stmt = Statement::prepare(
      db_, std::string(kApiKeyColumns) + "WHERE key_hash = ?1 AND revoked_at_us IS NULL",
      "looking up an API key");
  if (!stmt) return tl::unexpected(std::move(stmt.error()));
  stmt->bind_blob(1, hash.data(), hash.size());
  auto row = stmt->step();
  if (!row) return tl::unexpected(std::move(row.error()));
  if (!*row) return std::optional<ApiKey>();
  auto record = api_key_from_row(*stmt);
  if (!record) return tl::unexpected(std::move(record.error()));
  return std::optional<ApiKey>(std::move(*record));
}

tl::expected<std::vector<ApiKey>, std::string> Store::api_keys() {
  auto stmt =
      Statement::prepare(db_, std::string(kApiKeyColumns) + "ORDER BY id", "listing API keys");
  if (!stmt) return tl::unexpected(std::move(stmt.error()));
  std::vector<ApiKey> out;
  for (;;) {
    auto row = stmt->step();
    if (!row) return tl::unexpected(std::move(row.error()));
    if (!*row) break;
    auto record = api_key_from_row(*stmt);
    if (!record) return tl::unexpected(std::move(record.error()));
    out.push_back(std::move(*record));
  }
  return out;
}

tl::expected<void, StoreError> Store::revoke_api_key(std::int64_t id, std::int64_t now_us) {
  auto stmt = Statement::prepare(
      db_, "UPDATE api_keys SET revoked_at_us = ?1 WHERE id = ?2 AND revoked_at_us IS NULL",
      "revoking API key " + std::to_string(id));
  if (!stmt) return store_error(std::move(stmt.error()));
  stmt->bind(1, now_us);
  stmt->bind(2, id);
  if (auto done = stmt->run(); !done) return store_error(std::move(done.error()));
  if (sqlite3_changes(db_) == 0) {
    return store_error("no live API key " + std::to_string(id), StoreError::Kind::kNotFound);
  }
  return {};
}

tl::expected<std::string, std::string> Store::signing_key_pem() {
  auto read = [this]() -> tl::expected<std::optional<std::string>, std::string> {
    auto stmt = Statement::prepare(db_, "SELECT private_key_pem FROM signing_key WHERE id = 1",
                                   "reading the signing key");
    if (!stmt) return tl::unexpected(std::move(stmt.error()));
    auto row = stmt->step();
    if (!row) return tl::unexpected(std::move(row.error()));
    if (!*row) return std::optional<std::string>();
    return std::optional<std::string>(stmt->text(0));
  };
  auto stored = read();
  if (!stored) return tl::unexpected(std::move(stored.error()));
  if (*stored) return std::move(**stored);

  // First use: generate, then insert unless another process won the race; either way the
  // stored key is the one returned.
  auto tx = Transaction::begin(db_, Transaction::Mode::kWrite, "storing the signing key");
  if (!tx) return tl::unexpected(std::move(tx.error()));
  std::string pem = engine::Signer::generate().private_key_pem();
  tl::expected<void, std::string> inserted;
  {
    auto stmt =
        Statement::prepare(db_,
                           "INSERT OR IGNORE INTO signing_key (id, private_key_pem, created_at_us) "
                           "VALUES (1, ?1, ?2)",
                           "storing the signing key");
    if (!stmt) {
      inserted = tl::unexpected(std::move(stmt.error()));
    } else {
      stmt->bind_text(1, pem);
      stmt->bind(2, now_unix_us());
      inserted = stmt->run();
    }
  }
  sodium_memzero(pem.data(), pem.size());
  if (!inserted) return tl::unexpected(std::move(inserted.error()));
  stored = read();
  if (!stored) return tl::unexpected(std::move(stored.error()));
  if (!*stored) return tl::unexpected(std::string("storing the signing key: no row after insert"));
  if (auto committed = tx->commit(); !committed) {
    return tl::unexpected(std::move(committed.error()));
  }
  return std::move(**stored);
}

}  // namespace fanout::daemon
