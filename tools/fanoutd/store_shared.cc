// The parts of the store (store.h) that let several processes share one database: the log of
// subscription changes (note_changes, newest_change, data_version, changes_since) and the saved
// deliveries (save_pending, pending, clear_pending, take_pending).
//
// The change log. Every transaction that creates, updates or deletes subscriptions appends one
// row per (org_id, event_type) it touched, tagged with its Store's random id, and trims the log
// to the newest Store::kChangesKept rows. A reader keeps the seq it has read up to. It reads
// pairs, not row contents: for each pair another writer touched it reads what the pair holds
// now (a subscription, or nothing), so the order of the changes does not matter and applying
// them twice is harmless. seqs come from AUTOINCREMENT inside the writer's transaction, so they
// are contiguous (a rolled-back transaction gives its seqs back): a first row newer than
// `since + 1` means rows were trimmed before the reader saw them, and it must reload all.
#include <sqlite3.h>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "engine/sqlite.h"
#include "tools/fanoutd/store.h"
#include "tools/fanoutd/store_internal.h"

namespace fanout::daemon {

using sqlite::Statement;
using sqlite::Transaction;

namespace store_detail {

tl::expected<std::int64_t, std::string> note_changes(sqlite3* db, std::int64_t writer,
                                                     std::span<const ChangedKey> keys) {
  if (keys.empty()) return 0;
  auto insert = Statement::prepare(
      db, "INSERT INTO subscription_changes (writer, org_id, event_type) VALUES (?1, ?2, ?3)",
      "logging a subscription change");
  if (!insert) return tl::unexpected(std::move(insert.error()));
  for (const ChangedKey& k : keys) {
    insert->reset();
    insert->bind(1, writer);
    insert->bind(2, k.org_id);
    insert->bind_text(3, k.event_type);
    if (auto done = insert->run(); !done) return tl::unexpected(std::move(done.error()));
  }
  auto trim = Statement::prepare(db, "DELETE FROM subscription_changes WHERE seq <= ?1",
                                 "trimming the subscription change log");
  if (!trim) return tl::unexpected(std::move(trim.error()));
  const std::int64_t last = sqlite3_last_insert_rowid(db);
  trim->bind(1, last - Store::kChangesKept);
  if (auto done = trim->run(); !done) return tl::unexpected(std::move(done.error()));
  return last;
}

tl::expected<std::int64_t, std::string> newest_change(sqlite3* db) {
  auto stmt = Statement::prepare(db, "SELECT COALESCE(MAX(seq), 0) FROM subscription_changes",
                                 "reading the subscription change log");
  if (!stmt) return tl::unexpected(std::move(stmt.error()));
  auto row = stmt->step();
  if (!row) return tl::unexpected(std::move(row.error()));
  return *row ? stmt->int64(0) : 0;
}

tl::expected<std::vector<std::pair<std::int64_t, PendingDelivery>>, std::string> read_pending(
    sqlite3* db, std::int64_t after, std::int64_t limit) {
  auto stmt = Statement::prepare(db,
                                 "SELECT seq, event_id, org_id, event_type, body, subscription_id, "
                                 "attempts, next_attempt_unix_ms FROM pending_deliveries "
                                 "WHERE seq > ?1 ORDER BY seq LIMIT ?2",
                                 "reading pending deliveries");
  if (!stmt) return tl::unexpected(std::move(stmt.error()));
  stmt->bind(1, after);
  stmt->bind(2, limit);
  std::vector<std::pair<std::int64_t, PendingDelivery>> out;
  for (;;) {
    auto row = stmt->step();
    if (!row) return tl::unexpected(std::move(row.error()));
    if (!*row) break;
    PendingDelivery d;
    d.event_id = stmt->text(1);
    d.org_id = stmt->int64(2);
    d.event_type = stmt->text(3);
    d.body = stmt->blob(4);
    d.subscription_id = stmt->int64(5);
    const std::int64_t attempts = stmt->int64(6);
    if (attempts < 0 || attempts > std::numeric_limits<std::uint32_t>::max()) {
      return tl::unexpected("pending delivery " + std::to_string(stmt->int64(0)) +
                            ": attempts out of range (" + std::to_string(attempts) + ")");
    }
    d.attempts = static_cast<std::uint32_t>(attempts);
    d.next_attempt_unix_ms = stmt->int64(7);
    out.emplace_back(stmt->int64(0), std::move(d));
  }
  return out;
}

}  // namespace store_detail

namespace {

// What the pair (org_id, type) holds now: into `out.upserts`, `out.removed` or `out.skipped`.
tl::expected<void, std::string> read_pair(sqlite3* db, const routing::EventCatalogue& catalogue,
                                          Statement& find, std::int64_t org_id, std::string type,
                                          Store::Changes& out) {
  find.reset();
  find.bind(1, org_id);
  find.bind_text(2, type);
  auto row = find.step();
  if (!row) return tl::unexpected(std::move(row.error()));
  const bool known = catalogue.find(type).has_value();
  if (!*row) {
    // An event type this catalogue does not know was never in this routing table.
    if (known) out.removed.push_back({org_id, std::move(type)});
    return {};
  }
  const std::int64_t id = find.int64(0);
  if (!known) {
    out.skipped.push_back("subscription " + std::to_string(id) + ": event type \"" + type +
                          "\" is not in this instance's catalogue (instances sharing a data "
                          "directory need the same event_types)");
    return {};
  }
  auto s = store_detail::read_subscription(db, catalogue, id);
  if (!s) return tl::unexpected(std::move(s.error()));
  if (*s) out.upserts.push_back(std::move(**s));
  return {};
}

}  // namespace

tl::expected<void, std::string> Store::commit_changes(
    Transaction& tx, std::span<const store_detail::ChangedKey> keys) {
  auto last = store_detail::note_changes(db_, writer_, keys);
  if (!last) return tl::unexpected(std::move(last.error()));
  if (auto committed = tx.commit(); !committed) return committed;
  own_seq_ = std::max(own_seq_, *last);
  return {};
}

tl::expected<std::int64_t, std::string> Store::data_version() {
  if (data_version_stmt_ == nullptr &&
      sqlite3_prepare_v2(db_, "PRAGMA data_version", -1, &data_version_stmt_, nullptr) !=
          SQLITE_OK) {
    sqlite3_finalize(data_version_stmt_);
    data_version_stmt_ = nullptr;
    return sqlite::db_error(db_, "preparing PRAGMA data_version");
  }
  const int rc = sqlite3_step(data_version_stmt_);
  const std::int64_t version = rc == SQLITE_ROW ? sqlite3_column_int64(data_version_stmt_, 0) : 0;
  sqlite3_reset(data_version_stmt_);
  if (rc != SQLITE_ROW) return sqlite::db_error(db_, "reading PRAGMA data_version");
  return version;
}

tl::expected<Store::Changes, std::string> Store::changes_since(std::int64_t since) {
  const std::string what = "reading subscription changes";
  auto tx = Transaction::begin(db_, Transaction::Mode::kRead, what);
  if (!tx) return tl::unexpected(std::move(tx.error()));
  Changes out;
  std::int64_t first = 0;
  {
    auto bounds = Statement::prepare(
        db_, "SELECT COALESCE(MIN(seq), 0), COALESCE(MAX(seq), 0) FROM subscription_changes", what);
    if (!bounds) return tl::unexpected(std::move(bounds.error()));
    auto row = bounds->step();
    if (!row) return tl::unexpected(std::move(row.error()));
    first = *row ? bounds->int64(0) : 0;
    out.seq = *row ? bounds->int64(1) : 0;
  }
  // Behind `since` (the database was replaced), or rows after `since` trimmed unseen.
  out.complete = out.seq >= since && (out.seq == since || first <= since + 1);
  if (!out.complete || out.seq == since) {
    if (auto committed = tx->commit(); !committed) {
      return tl::unexpected(std::move(committed.error()));
    }
    return out;
  }
  auto pairs = Statement::prepare(db_,
                                  "SELECT DISTINCT org_id, event_type FROM subscription_changes "
                                  "WHERE seq > ?1 AND writer <> ?2",
                                  what);
  if (!pairs) return tl::unexpected(std::move(pairs.error()));
  auto find =
      Statement::prepare(db_, "SELECT id FROM subscriptions WHERE org_id = ?1 AND event_type = ?2",
                         "looking up a changed subscription");
  if (!find) return tl::unexpected(std::move(find.error()));
  pairs->bind(1, since);
  pairs->bind(2, writer_);
  for (;;) {
    auto row = pairs->step();
    if (!row) return tl::unexpected(std::move(row.error()));
    if (!*row) break;
    if (auto read = read_pair(db_, catalogue_, *find, pairs->int64(0), pairs->text(1), out);
        !read) {
      return tl::unexpected(std::move(read.error()));
    }
  }
  if (!out.upserts.empty() || !out.removed.empty() || !out.skipped.empty()) {
    auto count = Statement::prepare(db_, "SELECT COUNT(*) FROM subscriptions", what);
    if (!count) return tl::unexpected(std::move(count.error()));
    auto row = count->step();
    if (!row) return tl::unexpected(std::move(row.error()));
    out.count = *row ? count->int64(0) : 0;
  }
  if (auto committed = tx->commit(); !committed) {
    return tl::unexpected(std::move(committed.error()));
  }
  return out;
}

tl::expected<std::size_t, std::string> Store::take_pending(
    const std::function<bool(const PendingDelivery&)>& resume,
    const std::function<bool()>& settle) {
  const std::string what = "taking saved deliveries";
  std::size_t deleted = 0;
  std::int64_t after = 0;  // the seq of the last delivery looked at
  for (;;) {
    auto tx = Transaction::begin(db_, Transaction::Mode::kWrite, what);
    if (!tx) return tl::unexpected(std::move(tx.error()));
    auto rows = store_detail::read_pending(db_, after, static_cast<std::int64_t>(kTakeChunk));
    if (!rows) return tl::unexpected(std::move(rows.error()));
    if (rows->empty()) return deleted;  // nothing written: the rollback ends the transaction
    std::vector<std::int64_t> taken;
    for (const auto& [seq, d] : *rows) {
      if (resume(d)) taken.push_back(seq);
    }
    after = rows->back().first;
    if (!settle()) return deleted;  // rolled back: everything of this chunk stays saved
    auto forget = Statement::prepare(db_, "DELETE FROM pending_deliveries WHERE seq = ?1", what);
    if (!forget) return tl::unexpected(std::move(forget.error()));
    for (const std::int64_t seq : taken) {
      forget->reset();
      forget->bind(1, seq);
      if (auto done = forget->run(); !done) return tl::unexpected(std::move(done.error()));
    }
    if (auto committed = tx->commit(); !committed) {
      return tl::unexpected(std::move(committed.error()));
    }
    deleted += taken.size();
    if (rows->size() < kTakeChunk) return deleted;
  }
}

tl::expected<void, std::string> Store::save_pending(
    const std::vector<PendingDelivery>& deliveries) {
  if (deliveries.empty()) return {};
  auto tx = Transaction::begin(db_, Transaction::Mode::kWrite, "saving pending deliveries");
  if (!tx) return tl::unexpected(std::move(tx.error()));
  auto stmt = Statement::prepare(
      db_,
      "INSERT INTO pending_deliveries (event_id, org_id, event_type, body, subscription_id, "
      "attempts, next_attempt_unix_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
      "saving a pending delivery");
  if (!stmt) return tl::unexpected(std::move(stmt.error()));
  for (const auto& d : deliveries) {
    stmt->reset();
    stmt->bind_text(1, d.event_id);
    stmt->bind(2, d.org_id);
    stmt->bind_text(3, d.event_type);
    stmt->bind_blob(4, d.body.data(), d.body.size());
    stmt->bind(5, d.subscription_id);
    stmt->bind(6, static_cast<std::int64_t>(d.attempts));
    stmt->bind(7, d.next_attempt_unix_ms);
    if (auto done = stmt->run(); !done) return done;
  }
  return tx->commit();
}

tl::expected<std::vector<PendingDelivery>, std::string> Store::pending() {
  auto rows = store_detail::read_pending(db_, 0, -1);
  if (!rows) return tl::unexpected(std::move(rows.error()));
  std::vector<PendingDelivery> out;
  out.reserve(rows->size());
  for (auto& row : *rows) out.push_back(std::move(row.second));
  return out;
}

tl::expected<void, std::string> Store::clear_pending() {
  auto stmt =
      Statement::prepare(db_, "DELETE FROM pending_deliveries", "clearing pending deliveries");
  if (!stmt) return tl::unexpected(std::move(stmt.error()));
  return stmt->run();
}

}  // namespace fanout::daemon
