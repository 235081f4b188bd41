// fanoutd's store: one SQLite database (WAL mode) in the data directory, `DATA/fanoutd.db`.
//
// Holds the subscriptions, the API keys (hashed), the signing key pair and the deliveries that
// were not final when the daemon stopped. Every mutating call is one transaction: it commits
// whole or changes nothing. The daemon changes its routing table only after a call returned
// success (so the table never holds what the store does not).
//
// Schema versions are numbered migrations kept in store.cc and applied in order inside one
// transaction each; PRAGMA user_version records the last one applied. A database whose version
// is newer than this binary knows is refused (open() fails, naming both versions).
//
// Threading: a Store is used by one thread at a time. Several processes may open the same
// database (the daemon and `fanoutd apikey ...`): WAL mode plus a busy timeout (5 s) serialise
// writers.
#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <tl/expected.hpp>

#include "routing/catalogue.h"
#include "routing/subscription.h"

struct sqlite3;
struct sqlite3_stmt;

namespace fanout::daemon {

enum class Role : std::uint8_t {
  kOrgAdmin,  // "ORG_ADMIN": one organisation
  kProvider,  // "PROVIDER": the organisations it is granted
  kIngest,    // "INGEST": publishes events (POST /v2/events), any organisation
};
[[nodiscard]] std::string_view to_string(Role role) noexcept;  // "ORG_ADMIN", ...
[[nodiscard]] std::optional<Role> parse_role(std::string_view s) noexcept;

struct ApiKey {
  std::int64_t id = 0;
  Role role = Role::kOrgAdmin;
  std::vector<std::int64_t> orgs;  // ORG_ADMIN: exactly one; PROVIDER: one or more; INGEST: none
  std::string name;                // free text given at creation (may be empty)
  std::int64_t created_at_us = 0;
  std::optional<std::int64_t> revoked_at_us;
};

// A delivery that was not final at shutdown (engine's Unfinished plus when to try next).
struct PendingDelivery {
  std::string event_id;
  std::int64_t org_id = 0;
  std::string event_type;
  std::string body;  // the delivery body, exact bytes
  std::int64_t subscription_id = 0;
  std::uint32_t attempts = 0;             // attempts already made
  std::int64_t next_attempt_unix_ms = 0;  // 0: as soon as possible
};

struct StoreError {
  enum class Kind : std::uint8_t {
    kDuplicate,  // (org_id, event_type) already has a subscription; `index` names the item
    kNotFound,   // no such id
    kDatabase,   // SQLite failed; `message` says how
  };
  Kind kind = Kind::kDatabase;
  std::size_t index = 0;         // kDuplicate: index in the batch of the offending item
  std::int64_t existing_id = 0;  // kDuplicate: the id holding the pair (0 if within the batch)
  std::string message;
};

class Store {
 public:
  // Creates `data_dir` (and parents) if missing, opens or creates DATA/fanoutd.db, sets WAL
  // mode, foreign keys and a 5 s busy timeout, and applies pending migrations. `catalogue` maps
  // event-type names (stored as text) to ids and must outlive the store.
  [[nodiscard]] static tl::expected<std::unique_ptr<Store>, std::string> open(
      const std::filesystem::path& data_dir, const routing::EventCatalogue& catalogue);
  ~Store();
  Store(const Store&) = delete;
  Store& operator=(const Store&) = delete;

  [[nodiscard]] int schema_version() const;
  [[nodiscard]] static int latest_schema_version() noexcept;

  // --- subscriptions (routing::Subscription rebuilt from rows: parts from routing::validate_url
  // with http allowed, so rows written in insecure mode still load) ---
  // Every subscription, ordered by id. An event type unknown to the catalogue (the operator
  // removed an extension) is an error naming the id and the type.
  [[nodiscard]] tl::expected<std::vector<routing::Subscription>, std::string> all_subscriptions();
  struct Page {
    std::int64_t count = 0;  // over all pages
    std::vector<routing::Subscription> items;
  };
  // The subscriptions of `org_id` ordered by id, `limit` of them after skipping `offset`.
  [[nodiscard]] tl::expected<Page, std::string> list(std::int64_t org_id, std::int64_t offset,
                                                     std::int64_t limit);
  // nullopt when no such id.
  [[nodiscard]] tl::expected<std::optional<routing::Subscription>, std::string> get(
      std::int64_t id);
  // Inserts every item in one transaction (ids assigned in order, never reused even after a
  // delete; created_at_us = updated_at_us = now_us) and returns them with ids and timestamps.
  // kDuplicate (nothing written) if a pair exists already or appears twice in the batch.
  [[nodiscard]] tl::expected<std::vector<routing::Subscription>, StoreError> create(
      std::vector<routing::Subscription> items, std::int64_t now_us);
  // Replaces url and custom headers of subscription `s.id` (org_id and event_type never change)
  // and sets updated_at_us = now_us; returns the row as stored. kNotFound if absent.
  [[nodiscard]] tl::expected<routing::Subscription, StoreError> update(
      const routing::Subscription& s, std::int64_t now_us);
  // kNotFound if absent.
  [[nodiscard]] tl::expected<void, StoreError> remove(std::int64_t id);

  // --- API keys: only SHA-256(key) is stored ---
  // Makes a new random key (printable: "fo_" + 43 base64url characters of 32 random bytes),
  // stores its hash, and returns (record, key). The key is never retrievable again.
  [[nodiscard]] tl::expected<std::pair<ApiKey, std::string>, std::string> create_api_key(
      Role role, std::vector<std::int64_t> orgs, std::string name, std::int64_t now_us);
  // The live (not revoked) key whose hash matches, or nullopt. Constant-time in the key's bytes
  // (lookup by hash).
  [[nodiscard]] tl::expected<std::optional<ApiKey>, std::string> find_api_key(std::string_view key);
  [[nodiscard]] tl::expected<std::vector<ApiKey>, std::string> api_keys();  // by id, revoked too
  // kNotFound if absent or already revoked.
  [[nodiscard]] tl::expected<void, StoreError> revoke_api_key(std::int64_t id, std::int64_t now_us);

  // --- signing key: PKCS#8 PEM of an Ed25519 private key ---
  // The stored key; on first call generates one (engine/signer.h Signer::generate) and stores it.
  [[nodiscard]] tl::expected<std::string, std::string> signing_key_pem();

  // --- pending deliveries ---
  // Appends all in one transaction.
  [[nodiscard]] tl::expected<void, std::string> save_pending(
      const std::vector<PendingDelivery>& deliveries);
  // Every pending delivery, in insertion order.
  [[nodiscard]] tl::expected<std::vector<PendingDelivery>, std::string> pending();
  // Deletes every pending delivery (after they were handed to the engine again).
  [[nodiscard]] tl::expected<void, std::string> clear_pending();

 private:
  Store(sqlite3* db, const routing::EventCatalogue& catalogue) noexcept;
  sqlite3* db_;
  const routing::EventCatalogue& catalogue_;
};

// Microseconds since the Unix epoch, now (system clock).
[[nodiscard]] std::int64_t now_unix_us() noexcept;
// "2024-11-27T16:10:44.929678Z" (contract.md §1).
[[nodiscard]] std::string format_timestamp(std::int64_t unix_us);

}  // namespace fanout::daemon
