// Helpers shared by store.cc, store_keys.cc and store_shared.cc (not part of Store's interface).
// Each runs inside a transaction the caller opened on `db`.
#pragma once

#include <sodium.h>
#include <sqlite3.h>

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <tl/expected.hpp>

#include "routing/catalogue.h"
#include "routing/subscription.h"
#include "tools/fanoutd/store.h"

namespace fanout::daemon::store_detail {

// A StoreError of `kind` (by default a database error) as the unexpected value of a result.
inline tl::unexpected<StoreError> store_error(std::string message,
                                              StoreError::Kind kind = StoreError::Kind::kDatabase) {
  StoreError e;
  e.kind = kind;
  e.message = std::move(message);
  return tl::unexpected(std::move(e));
}

// libsodium initialised (once per process); false when it cannot be.
inline bool sodium_ready() noexcept {
  static const bool ready = sodium_init() >= 0;
  return ready;
}

// Subscription `id` with its headers (store.cc); nullopt when there is none.
[[nodiscard]] tl::expected<std::optional<routing::Subscription>, std::string> read_subscription(
    sqlite3* db, const routing::EventCatalogue& catalogue, std::int64_t id);

// A subscription pair that a write transaction changed (created, updated or deleted).
struct ChangedKey {
  std::int64_t org_id = 0;
  std::string_view event_type;  // the catalogue name, as stored
};

// Appends one subscription_changes row per key, tagged `writer`, then forgets the rows older
// than the newest Store::kChangesKept (store_shared.cc). Call inside the write transaction that
// made the changes, before its commit (Store::commit_changes does both). Returns the seq of the
// last row appended (0 when `keys` is empty).
[[nodiscard]] tl::expected<std::int64_t, std::string> note_changes(
    sqlite3* db, std::int64_t writer, std::span<const ChangedKey> keys);

// The newest subscription_changes seq (0 when the log is empty).
[[nodiscard]] tl::expected<std::int64_t, std::string> newest_change(sqlite3* db);

// Saved deliveries with seq > `after`, in seq order, at most `limit` of them (-1: all), each
// with its seq (store_shared.cc).
[[nodiscard]] tl::expected<std::vector<std::pair<std::int64_t, PendingDelivery>>, std::string>
read_pending(sqlite3* db, std::int64_t after, std::int64_t limit);

}  // namespace fanout::daemon::store_detail
