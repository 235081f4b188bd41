// Standard Webhooks secrets in fanoutd's store (store.h, migration 3): rotation. The secret is
// created with its subscription (Store::create) and replaced here, in one transaction that also
// notes the change for other instances on the same database.
#include <sqlite3.h>

#include <string>
#include <utility>

#include "engine/sqlite.h"
#include "tools/fanoutd/store.h"
#include "tools/fanoutd/store_internal.h"

namespace fanout::daemon {

tl::expected<routing::Subscription, StoreError> Store::rotate_secret(std::int64_t id,
                                                                     std::string_view secret) {
  const std::string what = "rotating the secret of subscription " + std::to_string(id);
  auto fail = [&](std::string message, StoreError::Kind kind = StoreError::Kind::kDatabase) {
    StoreError e;
    e.kind = kind;
    e.message = std::move(message);
    return tl::unexpected(std::move(e));
  };
  auto tx = sqlite::Transaction::begin(db_, sqlite::Transaction::Mode::kWrite, what);
  if (!tx) return fail(std::move(tx.error()));
  {
    auto stmt = sqlite::Statement::prepare(
        db_, "UPDATE subscriptions SET webhook_secret = ?1 WHERE id = ?2", what);
    if (!stmt) return fail(std::move(stmt.error()));
    stmt->bind_blob(1, secret.data(), secret.size());
    stmt->bind(2, id);
    if (auto done = stmt->run(); !done) return fail(std::move(done.error()));
    if (sqlite3_changes(db_) == 0) {
      return fail("no subscription " + std::to_string(id), StoreError::Kind::kNotFound);
    }
  }
  auto stored = store_detail::read_subscription(db_, catalogue_, id);
  if (!stored) return fail(what + ": " + stored.error());
  if (!*stored) return fail(what + ": the row vanished inside its transaction");
  const store_detail::ChangedKey changed[] = {
      {(*stored)->org_id, catalogue_.name((*stored)->event_type)}};
  if (auto committed = commit_changes(*tx, changed); !committed) {
    return fail(std::move(committed.error()));
  }
  return std::move(**stored);
}

}  // namespace fanout::daemon
