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
// database (several daemons on one data directory, and `fanoutd apikey ...`): WAL mode plus a
// busy timeout (5 s) serialise writers; every write takes the write lock up front (BEGIN
// IMMEDIATE, or one statement), so a writer waits for another process's commit instead of
// failing with SQLITE_BUSY.
//
// Several processes (tools/fanoutd/README.md, "Several instances on one host"). Every change
// to a subscription also appends its (org_id, event_type) to `subscription_changes`, tagged
// with the writing Store's random id; another process notices a commit with data_version()
// (PRAGMA data_version: no I/O, no allocation) and reads what changed with changes_since().
// The log keeps the newest kChangesKept rows; a reader that fell further behind reloads all.
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <tl/expected.hpp>

#include "routing/catalogue.h"
#include "routing/subscription.h"

struct sqlite3;
struct sqlite3_stmt;

namespace fanout::sqlite {
class Transaction;
}  // namespace fanout::sqlite

namespace fanout::daemon {

namespace store_detail {
struct ChangedKey;  // store_internal.h
}  // namespace store_detail

enum class Role : std::uint8_t {
  kOrgAdmin,  // "ORG_ADMIN": one organisation
  kProvider,  // "PROVIDER": the organisations it is granted
  kIngest,    // "INGEST": publishes events (POST /v2/events) for its organisations, or for
              // every organisation when it has none (created with --all-orgs)
};
[[nodiscard]] std::string_view to_string(Role role) noexcept;  // "ORG_ADMIN", ...
[[nodiscard]] std::optional<Role> parse_role(std::string_view s) noexcept;

struct ApiKey {
  std::int64_t id = 0;
  Role role = Role::kOrgAdmin;
  // ORG_ADMIN: exactly one; PROVIDER: one or more; INGEST: those it may publish for, none
  // meaning every organisation. Sorted ascending.
  std::vector<std::int64_t> orgs;
  std::string name;  // free text given at creation (may be empty)
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
  // Every subscription, ordered by id, in one read transaction. An event type unknown to the
  // catalogue (the operator removed an extension) is an error naming the id and the type.
  // `change_seq` (optional) receives the newest subscription_changes seq of the same snapshot:
  // the position to pass to changes_since() next.
  [[nodiscard]] tl::expected<std::vector<routing::Subscription>, std::string> all_subscriptions(
      std::int64_t* change_seq = nullptr);
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
  // Each item's signing and webhook_secret are stored as given (an empty secret as NULL).
  // kDuplicate (nothing written) if a pair exists already or appears twice in the batch.
  [[nodiscard]] tl::expected<std::vector<routing::Subscription>, StoreError> create(
      std::vector<routing::Subscription> items, std::int64_t now_us);
  // Replaces url, custom headers and signing of subscription `s.id` (org_id and event_type never
  // change; the secret is rotate_secret()'s) and sets updated_at_us = now_us; returns the row as
  // stored. kNotFound if absent.
  [[nodiscard]] tl::expected<routing::Subscription, StoreError> update(
      const routing::Subscription& s, std::int64_t now_us);
  // kNotFound if absent.
  [[nodiscard]] tl::expected<void, StoreError> remove(std::int64_t id);
  // Replaces the Standard Webhooks secret of subscription `id` with `secret` (raw bytes; the old
  // one is gone at once) and returns the row as stored; updated_at_us is left alone (the secret
  // is not part of the Partoo configuration). Noted in subscription_changes like any change, so
  // other instances sign with the new secret within 1 s. kNotFound if absent. (store_signing.cc)
  [[nodiscard]] tl::expected<routing::Subscription, StoreError> rotate_secret(
      std::int64_t id, std::string_view secret);

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

  // --- changes made by other processes (store_shared.cc) ---
  static constexpr std::int64_t kChangesKept = 10'000;
  // PRAGMA data_version: a value that differs from the previous call's when another connection
  // (another process, or another Store) committed to the database in between; this Store's own
  // commits do not move it. One prepared statement, kept: no allocation.
  [[nodiscard]] tl::expected<std::int64_t, std::string> data_version();
  struct Changes {
    std::int64_t seq = 0;  // the newest change seen: the `since` of the next call
    // false: changes after `since` were trimmed from the log (or the log is behind `since`):
    // the caller must reload everything (all_subscriptions) instead; the other fields are empty.
    bool complete = true;
    // For each (org_id, event_type) another writer changed after `since`: the subscription the
    // pair has now, or the pair in `removed` when it has none. Pairs changed only by this Store
    // are left out (the daemon applied them when it made them).
    std::vector<routing::Subscription> upserts;
    struct Key {
      std::int64_t org_id = 0;
      std::string event_type;
    };
    std::vector<Key> removed;
    // Pairs that could not be read (an event type this catalogue does not know: the instances
    // are configured with different event_types), one message each; the rest still applies.
    std::vector<std::string> skipped;
    // Subscriptions in the same snapshot; -1 when no other writer changed anything.
    std::int64_t count = -1;
  };
  // What other writers changed after log position `since`, in one read transaction.
  [[nodiscard]] tl::expected<Changes, std::string> changes_since(std::int64_t since);
  // The newest change-log seq that this Store committed (0: none yet). When data_version() still
  // gives what it gave just before a reader's last changes_since() (or all_subscriptions()),
  // every row after that read's seq up to this one is this Store's own, so the reader may move
  // its position here (SubscriptionSync does): its own changes then never push it out of the
  // log.
  [[nodiscard]] std::int64_t own_changes_seq() const noexcept { return own_seq_; }
  // A full read found the log's newest row at `seq`: a larger own_changes_seq() is forgotten
  // (the database was replaced by an older one; those rows are gone). all_subscriptions() does
  // it whenever it reads the log's position.
  void clamp_own_changes(std::int64_t seq) noexcept {
    if (own_seq_ > seq) own_seq_ = seq;
  }

  // --- pending deliveries ---
  // Appends all in one transaction.
  [[nodiscard]] tl::expected<void, std::string> save_pending(
      const std::vector<PendingDelivery>& deliveries);
  // Every pending delivery, in insertion order.
  [[nodiscard]] tl::expected<std::vector<PendingDelivery>, std::string> pending();
  // Deletes every pending delivery. Not for a shared data directory (another instance may have
  // saved some meanwhile): the daemon uses take_pending().
  [[nodiscard]] tl::expected<void, std::string> clear_pending();
  // Takes the saved deliveries back, in insertion order, in chunks of at most kTakeChunk. Each
  // chunk is one write transaction (BEGIN IMMEDIATE), so two processes taking at once never
  // get the same delivery: the second waits for the first's commit and finds only what is
  // left. In a chunk, `resume` is called for each delivery and answers whether it left the
  // store's care (handed to the engine, or ended as dropped); then `settle` runs (the daemon
  // waits there until its journal has them on disk) and answers whether to forget them: true
  // deletes those deliveries and commits (the others stay saved for a later start); false rolls
  // the chunk back (all of it stays saved: delivered at least once) and stops. Returns how
  // many were deleted. The write lock is held while `resume` and `settle` run: keep them short.
  static constexpr std::size_t kTakeChunk = 10'000;
  [[nodiscard]] tl::expected<std::size_t, std::string> take_pending(
      const std::function<bool(const PendingDelivery&)>& resume,
      const std::function<bool()>& settle);

 private:
  Store(sqlite3* db, const routing::EventCatalogue& catalogue, std::int64_t writer) noexcept;
  // Logs the pairs a write transaction changed (store_detail::note_changes), commits it, and
  // then records the log's position in own_seq_.
  [[nodiscard]] tl::expected<void, std::string> commit_changes(
      sqlite::Transaction& tx, std::span<const store_detail::ChangedKey> keys);
  sqlite3* db_;
  const routing::EventCatalogue& catalogue_;
  std::int64_t writer_;                        // random, tags this Store's subscription_changes
  sqlite3_stmt* data_version_stmt_ = nullptr;  // prepared on first use
  std::int64_t own_seq_ = 0;                   // own_changes_seq()
};

// Microseconds since the Unix epoch, now (system clock).
[[nodiscard]] std::int64_t now_unix_us() noexcept;
// "2024-11-27T16:10:44.929678Z" (docs/webhook-contract.md §1).
[[nodiscard]] std::string format_timestamp(std::int64_t unix_us);

}  // namespace fanout::daemon
