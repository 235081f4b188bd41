// fanoutd's SQLite store (store.h). Schema (migration 1):
//
//   subscriptions(id AUTOINCREMENT, org_id, event_type TEXT, url, created_at_us, updated_at_us,
//                 UNIQUE(org_id, event_type))           + index (org_id, id) for listings
//   subscription_headers(subscription_id -> subscriptions ON DELETE CASCADE, position, name,
//                        value, PRIMARY KEY(subscription_id, position))
//   api_keys(id AUTOINCREMENT, key_hash BLOB UNIQUE (SHA-256 of the key string), role, orgs
//            "1,2,3", name, created_at_us, revoked_at_us NULL while live)
//   signing_key(id = 1 only, private_key_pem, created_at_us)
//   pending_deliveries(seq AUTOINCREMENT, event_id, org_id, event_type, body BLOB,
//                      subscription_id, attempts, next_attempt_unix_ms)
// Migration 2:
//   subscription_changes(seq AUTOINCREMENT, writer, org_id, event_type TEXT): one row per
//                        subscription created, updated or deleted (store_changes.cc)
// Migration 3 (Standard Webhooks, store_signing.cc):
//   subscriptions + signing TEXT ('default', 'off', 'v1a', 'v1', 'both'), webhook_secret BLOB
//                   (24..64 raw bytes; NULL for rows made before it: no v1 until rotated)
//
// Invariants:
// - Ids come from AUTOINCREMENT, so a deleted subscription's (or key's) id is never handed out
//   again, even across restarts.
// - Event types are stored by name, never by catalogue id (ids depend on the configured
//   extensions); rows are mapped back through the catalogue when read.
// - Stored URLs and headers were validated on the way in; reading re-derives the URL parts with
//   http allowed (rows written in insecure mode still load).
// - A key string is never stored: only its SHA-256. At most one signing key exists (id = 1);
//   racing first uses settle on one with INSERT OR IGNORE.
// - Every mutation is one transaction (BEGIN IMMEDIATE, so the write lock is taken up front and
//   the busy timeout applies); any failure rolls back. Reads that need a consistent view
//   (count + page, rows + headers) run inside one read transaction.
// - Values only ever reach SQL through bound parameters. The only SQL text not fixed at compile
//   time does not exist: migrations are constant scripts that also set their user_version.
// - Migration i takes user_version from i to i + 1, each in its own transaction, re-checking
//   the version under the write lock (another process may have migrated meanwhile).
// - Every transaction that changes a subscription appends its (org_id, event_type) to
//   subscription_changes in the same transaction: a reader of the log never misses a commit.
#include "tools/fanoutd/store.h"

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
#include "tools/fanoutd/store_internal.h"

namespace fanout::daemon {
namespace {

// Migration i brings user_version from i to i + 1. Append only; never edit a released one.
constexpr const char* kMigrations[] = {
    // 1: the initial schema.
    R"sql(
CREATE TABLE subscriptions (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  org_id INTEGER NOT NULL,
  event_type TEXT NOT NULL,
  url TEXT NOT NULL,
  created_at_us INTEGER NOT NULL,
  updated_at_us INTEGER NOT NULL,
  UNIQUE (org_id, event_type)
);
CREATE INDEX subscriptions_by_org ON subscriptions (org_id, id);
CREATE TABLE subscription_headers (
  subscription_id INTEGER NOT NULL REFERENCES subscriptions (id) ON DELETE CASCADE,
  position INTEGER NOT NULL,
  name TEXT NOT NULL,
  value TEXT NOT NULL,
  PRIMARY KEY (subscription_id, position)
);
CREATE TABLE api_keys (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  key_hash BLOB NOT NULL UNIQUE,
  role TEXT NOT NULL,
  orgs TEXT NOT NULL, -- comma-separated organisation ids, ascending
  name TEXT NOT NULL,
  created_at_us INTEGER NOT NULL,
  revoked_at_us INTEGER
);
CREATE TABLE signing_key (
  id INTEGER PRIMARY KEY CHECK (id = 1),
  private_key_pem TEXT NOT NULL,
  created_at_us INTEGER NOT NULL
);
CREATE TABLE pending_deliveries (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  event_id TEXT NOT NULL,
  org_id INTEGER NOT NULL,
  event_type TEXT NOT NULL,
  body BLOB NOT NULL,
  subscription_id INTEGER NOT NULL,
  attempts INTEGER NOT NULL,
  next_attempt_unix_ms INTEGER NOT NULL
);
PRAGMA user_version = 1;
)sql",
    // 2: the log of subscription changes that other processes on the same database follow
    // (store.h, "Several processes"): writer = the writing Store's random id.
    R"sql(
CREATE TABLE subscription_changes (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  writer INTEGER NOT NULL,
  org_id INTEGER NOT NULL,
  event_type TEXT NOT NULL
);
PRAGMA user_version = 2;
)sql",
    // 3: Standard Webhooks signing per subscription, and its HMAC secret.
    R"sql(
ALTER TABLE subscriptions ADD COLUMN signing TEXT NOT NULL DEFAULT 'default';
ALTER TABLE subscriptions ADD COLUMN webhook_secret BLOB;
PRAGMA user_version = 3;
)sql",
};

constexpr int kLatestVersion = static_cast<int>(std::size(kMigrations));

using store_detail::sodium_ready;
using store_detail::store_error;

using sqlite::db_error;
using sqlite::Statement;
using sqlite::Transaction;

// --- subscriptions ---

constexpr std::string_view kSubscriptionColumns =
    "SELECT id, org_id, event_type, url, created_at_us, updated_at_us, signing, webhook_secret "
    "FROM subscriptions ";

// The current row of a statement selecting kSubscriptionColumns, headers not included.
tl::expected<routing::Subscription, std::string> subscription_from_row(
    const Statement& stmt, const routing::EventCatalogue& catalogue) {
  routing::Subscription s;
  s.id = stmt.int64(0);
  s.org_id = stmt.int64(1);
  const std::string type = stmt.text(2);
  const auto type_id = catalogue.find(type);
  if (!type_id) {
    return tl::unexpected("subscription " + std::to_string(s.id) + ": event type \"" + type +
                          "\" is not in the catalogue (was an extension removed from "
                          "event_types?)");
  }
  s.event_type = *type_id;
  s.url = stmt.text(3);
  auto parts = routing::validate_url(s.url, {.allow_insecure_http = true});
  if (!parts) {
    std::string message = "subscription " + std::to_string(s.id) + ": stored url is invalid";
    for (const auto& v : parts.error()) message += ": " + v.message;
    return tl::unexpected(std::move(message));
  }
  s.parts = std::move(*parts);
  s.created_at_us = stmt.int64(4);
  s.updated_at_us = stmt.int64(5);
  const std::string signing = stmt.text(6);
  const auto parsed = routing::parse_webhook_signing(signing);
  if (!parsed) {
    return tl::unexpected("subscription " + std::to_string(s.id) + ": unknown signing \"" +
                          signing + "\"");
  }
  s.signing = *parsed;
  if (!stmt.is_null(7)) s.webhook_secret = stmt.blob(7);
  return s;
}

// Reads the headers of `s` in position order with `stmt` (SELECT name, value ... WHERE
// subscription_id = ?1 ORDER BY position), which is reset first.
tl::expected<void, std::string> load_headers(Statement& stmt, routing::Subscription& s) {
  stmt.reset();
  stmt.bind(1, s.id);
  for (;;) {
    auto row = stmt.step();
    if (!row) return tl::unexpected(std::move(row.error()));
    if (!*row) return {};
    s.custom_headers.push_back({stmt.text(0), stmt.text(1)});
  }
}

tl::expected<Statement, std::string> prepare_headers_of_one(sqlite3* db) {
  return Statement::prepare(
      db,
      "SELECT name, value FROM subscription_headers WHERE subscription_id = ?1 "
      "ORDER BY position",
      "reading subscription headers");
}

}  // namespace

namespace store_detail {

tl::expected<std::optional<routing::Subscription>, std::string> read_subscription(
    sqlite3* db, const routing::EventCatalogue& catalogue, std::int64_t id) {
  auto stmt = Statement::prepare(db, std::string(kSubscriptionColumns) + "WHERE id = ?1",
                                 "reading subscription " + std::to_string(id));
  if (!stmt) return tl::unexpected(std::move(stmt.error()));
  stmt->bind(1, id);
  auto row = stmt->step();
  if (!row) return tl::unexpected(std::move(row.error()));
  if (!*row) return std::optional<routing::Subscription>();
  auto s = subscription_from_row(*stmt, catalogue);
  if (!s) return tl::unexpected(std::move(s.error()));
  auto headers = prepare_headers_of_one(db);
  if (!headers) return tl::unexpected(std::move(headers.error()));
  if (auto loaded = load_headers(*headers, *s); !loaded) {
    return tl::unexpected(std::move(loaded.error()));
  }
  return std::optional<routing::Subscription>(std::move(*s));
}

}  // namespace store_detail

namespace {

using store_detail::read_subscription;

// Inserts the header rows of subscription `id` (positions 0, 1, ...).
tl::expected<void, std::string> insert_headers(sqlite3* db, std::int64_t id,
                                               const std::vector<routing::Header>& headers) {
  if (headers.empty()) return {};
  auto stmt = Statement::prepare(
      db,
      "INSERT INTO subscription_headers (subscription_id, position, name, value) "
      "VALUES (?1, ?2, ?3, ?4)",
      "storing the headers of subscription " + std::to_string(id));
  if (!stmt) return tl::unexpected(std::move(stmt.error()));
  std::int64_t position = 0;
  for (const auto& h : headers) {
    stmt->reset();
    stmt->bind(1, id);
    stmt->bind(2, position++);
    stmt->bind_text(3, h.name);
    stmt->bind_text(4, h.value);
    if (auto done = stmt->run(); !done) return done;
  }
  return {};
}

}  // namespace

// --- Store ---

Store::Store(sqlite3* db, const routing::EventCatalogue& catalogue, std::int64_t writer) noexcept
    : db_(db), catalogue_(catalogue), writer_(writer) {}

Store::~Store() {
  sqlite3_finalize(data_version_stmt_);  // a no-op for nullptr
  sqlite3_close_v2(db_);
}

tl::expected<std::unique_ptr<Store>, std::string> Store::open(
    const std::filesystem::path& data_dir, const routing::EventCatalogue& catalogue) {
  std::error_code ec;
  std::filesystem::create_directories(data_dir, ec);
  if (ec) return tl::unexpected("creating " + data_dir.string() + ": " + ec.message());
  const std::filesystem::path file = data_dir / "fanoutd.db";
  // The database holds the signing key: open_wal creates it readable by its owner only.
  // synchronous=NORMAL: in WAL mode a commit survives a crash of the process; only a power
  // loss may lose the last transactions (the engine's journal, not this file, holds accepted
  // events).
  if (!sodium_ready()) return tl::unexpected(std::string("libsodium failed to initialise"));
  auto db = sqlite::open_wal(file, "NORMAL", kMigrations, "fanoutd");
  if (!db) return tl::unexpected(std::move(db.error()));
  // Tags this Store's rows in subscription_changes (63 random bits: never 0, never negative).
  std::uint64_t writer = 0;
  while (writer == 0) writer = randombytes_random() | (std::uint64_t{randombytes_random()} << 31U);
  std::unique_ptr<Store> store(new Store(*db, catalogue, static_cast<std::int64_t>(writer)));
  return store;
}

int Store::schema_version() const {
  auto version = sqlite::read_user_version(db_);
  return version ? *version : -1;
}

int Store::latest_schema_version() noexcept {
  return kLatestVersion;
}

tl::expected<std::vector<routing::Subscription>, std::string> Store::all_subscriptions(
    std::int64_t* change_seq) {
  auto tx = Transaction::begin(db_, Transaction::Mode::kRead, "reading subscriptions");
  if (!tx) return tl::unexpected(std::move(tx.error()));
  std::vector<routing::Subscription> out;
  {
    auto stmt = Statement::prepare(db_, std::string(kSubscriptionColumns) + "ORDER BY id",
                                   "reading subscriptions");
    if (!stmt) return tl::unexpected(std::move(stmt.error()));
    for (;;) {
      auto row = stmt->step();
      if (!row) return tl::unexpected(std::move(row.error()));
      if (!*row) break;
      auto s = subscription_from_row(*stmt, catalogue_);
      if (!s) return tl::unexpected(std::move(s.error()));
      out.push_back(std::move(*s));
    }
  }
  // Headers in one pass, merged by id (both sides ascending).
  auto headers = Statement::prepare(db_,
                                    "SELECT subscription_id, name, value FROM "
                                    "subscription_headers ORDER BY subscription_id, position",
                                    "reading subscription headers");
  if (!headers) return tl::unexpected(std::move(headers.error()));
  std::size_t i = 0;
  for (;;) {
    auto row = headers->step();
    if (!row) return tl::unexpected(std::move(row.error()));
    if (!*row) break;
    const std::int64_t id = headers->int64(0);
    while (i < out.size() && out[i].id < id) ++i;
    if (i < out.size() && out[i].id == id) {
      out[i].custom_headers.push_back({headers->text(1), headers->text(2)});
    }
  }
  if (change_seq != nullptr) {
    auto seq = store_detail::newest_change(db_);
    if (!seq) return tl::unexpected(std::move(seq.error()));
    *change_seq = *seq;
    clamp_own_changes(*seq);
  }
  if (auto committed = tx->commit(); !committed) {
    return tl::unexpected(std::move(committed.error()));
  }
  return out;
}

tl::expected<Store::Page, std::string> Store::list(std::int64_t org_id, std::int64_t offset,
                                                   std::int64_t limit) {
  const std::string what = "listing the subscriptions of organisation " + std::to_string(org_id);
  auto tx = Transaction::begin(db_, Transaction::Mode::kRead, what);
  if (!tx) return tl::unexpected(std::move(tx.error()));
  Page page;
  {
    auto count = Statement::prepare(db_, "SELECT COUNT(*) FROM subscriptions WHERE org_id = ?1",
                                    what + ": counting");
    if (!count) return tl::unexpected(std::move(count.error()));
    count->bind(1, org_id);
    auto row = count->step();
    if (!row) return tl::unexpected(std::move(row.error()));
    page.count = *row ? count->int64(0) : 0;
  }
  auto stmt = Statement::prepare(
      db_, std::string(kSubscriptionColumns) + "WHERE org_id = ?1 ORDER BY id LIMIT ?2 OFFSET ?3",
      what);
  if (!stmt) return tl::unexpected(std::move(stmt.error()));
  auto headers = prepare_headers_of_one(db_);
  if (!headers) return tl::unexpected(std::move(headers.error()));
  stmt->bind(1, org_id);
  stmt->bind(2, std::max<std::int64_t>(limit, 0));  // a negative LIMIT would mean "no limit"
  stmt->bind(3, std::max<std::int64_t>(offset, 0));
  for (;;) {
    auto row = stmt->step();
    if (!row) return tl::unexpected(std::move(row.error()));
    if (!*row) break;
    auto s = subscription_from_row(*stmt, catalogue_);
    if (!s) return tl::unexpected(std::move(s.error()));
    if (auto loaded = load_headers(*headers, *s); !loaded) {
      return tl::unexpected(std::move(loaded.error()));
    }
    page.items.push_back(std::move(*s));
  }
  if (auto committed = tx->commit(); !committed) {
    return tl::unexpected(std::move(committed.error()));
  }
  return page;
}

tl::expected<std::optional<routing::Subscription>, std::string> Store::get(std::int64_t id) {
  auto tx = Transaction::begin(db_, Transaction::Mode::kRead, "reading a subscription");
  if (!tx) return tl::unexpected(std::move(tx.error()));
  auto s = read_subscription(db_, catalogue_, id);
  if (!s) return s;
  if (auto committed = tx->commit(); !committed) {
    return tl::unexpected(std::move(committed.error()));
  }
  return s;
}

tl::expected<std::vector<routing::Subscription>, StoreError> Store::create(
    std::vector<routing::Subscription> items, std::int64_t now_us) {
  auto tx = Transaction::begin(db_, Transaction::Mode::kWrite, "creating subscriptions");
  if (!tx) return store_error(std::move(tx.error()));
  auto existing =
      Statement::prepare(db_, "SELECT id FROM subscriptions WHERE org_id = ?1 AND event_type = ?2",
                         "looking for an existing subscription");
  if (!existing) return store_error(std::move(existing.error()));
  auto insert = Statement::prepare(
      db_,
      "INSERT INTO subscriptions (org_id, event_type, url, created_at_us, updated_at_us, "
      "signing, webhook_secret) VALUES (?1, ?2, ?3, ?4, ?4, ?5, ?6)",
      "storing a subscription");
  if (!insert) return store_error(std::move(insert.error()));

  std::set<std::pair<std::int64_t, routing::EventTypeId>> seen;
  for (std::size_t i = 0; i < items.size(); ++i) {
    auto& s = items[i];
    const std::string_view type = catalogue_.name(s.event_type);
    const std::string item = "item " + std::to_string(i);
    if (type.empty()) {
      return store_error(item + ": event type id " + std::to_string(s.event_type) +
                         " is not in the catalogue");
    }
    const std::string pair =
        "(org_id " + std::to_string(s.org_id) + ", event_type " + std::string(type) + ")";
    if (!seen.emplace(s.org_id, s.event_type).second) {
      auto e = store_error(item + ": " + pair + " appears twice in the batch",
                           StoreError::Kind::kDuplicate);
      e.value().index = i;
      return e;
    }
    existing->reset();
    existing->bind(1, s.org_id);
    existing->bind_text(2, type);
    auto row = existing->step();
    if (!row) return store_error(std::move(row.error()));
    if (*row) {
      const std::int64_t id = existing->int64(0);
      auto e = store_error(item + ": " + pair + " already has subscription " + std::to_string(id),
                           StoreError::Kind::kDuplicate);
      e.value().index = i;
      e.value().existing_id = id;
      return e;
    }

    insert->reset();
    insert->bind(1, s.org_id);
    insert->bind_text(2, type);
    insert->bind_text(3, s.url);
    insert->bind(4, now_us);
    insert->bind_text(5, routing::to_string(s.signing));
    if (s.webhook_secret.empty()) {
      insert->bind_null(6);
    } else {
      insert->bind_blob(6, s.webhook_secret.data(), s.webhook_secret.size());
    }
    if (auto done = insert->run(); !done) return store_error(item + ": " + done.error());
    s.id = sqlite3_last_insert_rowid(db_);
    s.created_at_us = now_us;
    s.updated_at_us = now_us;
    if (auto done = insert_headers(db_, s.id, s.custom_headers); !done) {
      return store_error(item + ": " + done.error());
    }
  }
  std::vector<store_detail::ChangedKey> changed;
  changed.reserve(items.size());
  for (const auto& s : items) changed.push_back({s.org_id, catalogue_.name(s.event_type)});
  if (auto committed = commit_changes(*tx, changed); !committed) {
    return store_error(std::move(committed.error()));
  }
  return items;
}

tl::expected<routing::Subscription, StoreError> Store::update(const routing::Subscription& s,
                                                              std::int64_t now_us) {
  const std::string what = "updating subscription " + std::to_string(s.id);
  auto tx = Transaction::begin(db_, Transaction::Mode::kWrite, what);
  if (!tx) return store_error(std::move(tx.error()));
  {
    auto stmt = Statement::prepare(
        db_, "UPDATE subscriptions SET url = ?1, updated_at_us = ?2, signing = ?4 WHERE id = ?3",
        what);
    if (!stmt) return store_error(std::move(stmt.error()));
    stmt->bind_text(1, s.url);
    stmt->bind(2, now_us);
    stmt->bind(3, s.id);
    stmt->bind_text(4, routing::to_string(s.signing));
    if (auto done = stmt->run(); !done) return store_error(std::move(done.error()));
    if (sqlite3_changes(db_) == 0) {
      return store_error("no subscription " + std::to_string(s.id), StoreError::Kind::kNotFound);
    }
  }
  {
    auto stmt = Statement::prepare(
        db_, "DELETE FROM subscription_headers WHERE subscription_id = ?1", what);
    if (!stmt) return store_error(std::move(stmt.error()));
    stmt->bind(1, s.id);
    if (auto done = stmt->run(); !done) return store_error(std::move(done.error()));
  }
  if (auto done = insert_headers(db_, s.id, s.custom_headers); !done) {
    return store_error(std::move(done.error()));
  }
  auto stored = read_subscription(db_, catalogue_, s.id);
  if (!stored) return store_error(what + ": " + stored.error());
  if (!*stored) return store_error(what + ": the row vanished inside its transaction");
  const store_detail::ChangedKey changed[] = {
      {(*stored)->org_id, catalogue_.name((*stored)->event_type)}};
  if (auto committed = commit_changes(*tx, changed); !committed) {
    return store_error(std::move(committed.error()));
  }
  return std::move(**stored);
}

tl::expected<void, StoreError> Store::remove(std::int64_t id) {
  const std::string what = "deleting subscription " + std::to_string(id);
  auto tx = Transaction::begin(db_, Transaction::Mode::kWrite, what);
  if (!tx) return store_error(std::move(tx.error()));
  std::int64_t org_id = 0;
  std::string type;
  {
    auto stmt =
        Statement::prepare(db_, "SELECT org_id, event_type FROM subscriptions WHERE id = ?1", what);
    if (!stmt) return store_error(std::move(stmt.error()));
    stmt->bind(1, id);
    auto row = stmt->step();
    if (!row) return store_error(std::move(row.error()));
    if (!*row) {
      return store_error("no subscription " + std::to_string(id), StoreError::Kind::kNotFound);
    }
    org_id = stmt->int64(0);
    type = stmt->text(1);
  }
  {
    // The headers go with the row (ON DELETE CASCADE).
    auto stmt = Statement::prepare(db_, "DELETE FROM subscriptions WHERE id = ?1", what);
    if (!stmt) return store_error(std::move(stmt.error()));
    stmt->bind(1, id);
    if (auto done = stmt->run(); !done) return store_error(std::move(done.error()));
  }
  const store_detail::ChangedKey changed[] = {{org_id, type}};
  if (auto committed = commit_changes(*tx, changed); !committed) {
    return store_error(std::move(committed.error()));
  }
  return {};
}

std::int64_t now_unix_us() noexcept {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string format_timestamp(std::int64_t unix_us) {
  constexpr std::int64_t kPerSecond = 1'000'000;
  std::int64_t seconds = unix_us / kPerSecond;
  std::int64_t micros = unix_us % kPerSecond;
  if (micros < 0) {  // floor division: -1 us is 23:59:59.999999 of the day before
    micros += kPerSecond;
    seconds -= 1;
  }
  const std::time_t t = static_cast<std::time_t>(seconds);
  std::tm tm{};
  if (gmtime_r(&t, &tm) == nullptr) return "1970-01-01T00:00:00.000000Z";  // not on 64-bit time_t
  char out[128];
  const int n = std::snprintf(out, sizeof out, "%04d-%02d-%02dT%02d:%02d:%02d.%06" PRId64 "Z",
                              tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
                              tm.tm_sec, micros);
  if (n <= 0) return {};
  return std::string(out, std::min(static_cast<std::size_t>(n), sizeof out - 1));
}

}  // namespace fanout::daemon
