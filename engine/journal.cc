// The engine's journal (journal.h). Schema (migration 1):
//
//   meta(id = 1, next_did)        the next delivery id, written with every batch
//   deliveries(did, event_id, org_id, event_type TEXT, subscription_id, created_ms, attempts,
//              next_ms, outcome NULL while pending, finished_ms, resend_of, log)
//     + partial index of pending dids (recovery), (subscription_id, did) for history, partial
//       index of resend_of (recover)
//   bodies(did, body BLOB)         written once; apart so that recording an attempt rewrites
//                                  only the small deliveries row, not the body
//   event_ids(org_id, event_id, at_ms)                     only when idempotency is on
//
// `log` holds the attempts, one line each, "n at_ms status duration_us failure\n" (the failure
// text last, empty when there was a status): appended by the same UPDATE that records the attempt,
// so an attempt costs one row write. It is kept only when history is (history_ms > 0).
//
// dids are assigned in accept order under one lock, so created_ms grows with did: the history
// window is purged by did ranges (a binary search finds the first did inside the window), with
// no index on time.
//
// Event types are stored by name (catalogue ids depend on the configured extensions). Values
// reach SQL only through bound parameters.
#include "engine/journal.h"

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <unordered_map>
#include <unordered_set>

#include "engine/journal_rows.h"
#include "engine/sqlite.h"

namespace fanout::engine {

using journal_detail::kRecoveredColumns;
using journal_detail::recovered_from_row;

namespace {

using sqlite::Statement;
using sqlite::Transaction;

constexpr const char* kMigrations[] = {
    R"sql(
CREATE TABLE meta (
  id INTEGER PRIMARY KEY CHECK (id = 1),
  next_did INTEGER NOT NULL
);
INSERT INTO meta (id, next_did) VALUES (1, 1);
CREATE TABLE deliveries (
  did INTEGER PRIMARY KEY,
  event_id TEXT NOT NULL,
  org_id INTEGER NOT NULL,
  event_type TEXT NOT NULL,
  subscription_id INTEGER NOT NULL,
  created_ms INTEGER NOT NULL,
  attempts INTEGER NOT NULL DEFAULT 0,
  next_ms INTEGER NOT NULL DEFAULT 0,
  outcome INTEGER,
  finished_ms INTEGER,
  resend_of INTEGER,
  log TEXT NOT NULL DEFAULT ''
);
CREATE INDEX deliveries_pending ON deliveries (did) WHERE outcome IS NULL;
CREATE INDEX deliveries_by_subscription ON deliveries (subscription_id, did);
CREATE TABLE bodies (
  did INTEGER PRIMARY KEY,
  body BLOB NOT NULL
);
CREATE TABLE event_ids (
  org_id INTEGER NOT NULL,
  event_id TEXT NOT NULL,
  at_ms INTEGER NOT NULL,
  PRIMARY KEY (org_id, event_id)
) WITHOUT ROWID;
CREATE INDEX event_ids_by_time ON event_ids (at_ms);
PRAGMA user_version = 1;
)sql",
};

constexpr auto kPurgeEvery = std::chrono::seconds(1);
// The writer's connection: no checkpoint of its own (the checkpointer thread does them, so a
// commit never waits for one), the WAL truncated back to 32 MiB after it restarts (bounded
// disk), a 32 MiB page cache and memory-mapped reads to keep the indexes' pages out of read().
constexpr const char* kWriterPragmas[] = {
    "PRAGMA wal_autocheckpoint=0",
    "PRAGMA journal_size_limit=33554432",
    "PRAGMA cache_size=-32768",
    "PRAGMA mmap_size=268435456",
};
// WAL frames (4 KiB pages) after a commit: past the first, the checkpointer copies the WAL into
// the database (PASSIVE: beside the writer, never blocking it); past the second (it fell
// behind, or never caught a moment with the whole WAL copied) the writer itself restarts the
// WAL, so it stays bounded.
constexpr int kCheckpointFrames = 8192;
constexpr int kWriterCheckpointFrames = 4 * kCheckpointFrames;
// Frames left for the writer's RESTART checkpoint to copy (between two of its commits).
constexpr int kCheckpointTail = 128;

std::int64_t now_ms() noexcept {
  using namespace std::chrono;
  return duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
}

std::string id_key(std::int64_t org_id, std::string_view event_id) {
  std::string key(sizeof org_id, '\0');
  std::memcpy(key.data(), &org_id, sizeof org_id);
  key.append(event_id);
  return key;
}

}  // namespace

Journal::Journal(DurabilityOptions options, const routing::EventCatalogue& catalogue)
    : options_(std::move(options)), catalogue_(catalogue), open_(std::make_unique<Batch>()) {}

Journal::~Journal() {
  stop();
  writer_.reset();  // statements before their connection
  sqlite3_close_v2(reader_);
  sqlite3_close_v2(checkpointer_db_);
  sqlite3_close_v2(db_);
}

tl::expected<std::unique_ptr<Journal>, std::string> Journal::open(
    const DurabilityOptions& options, const routing::EventCatalogue& catalogue) {
  std::error_code ec;
  std::filesystem::create_directories(options.dir, ec);
  if (ec) return tl::unexpected("durability: creating " + options.dir + ": " + ec.message());
  const std::filesystem::path file = std::filesystem::path(options.dir) / "journal.db";
  std::unique_ptr<Journal> j(new Journal(options, catalogue));
  auto db = sqlite::open_wal(file, "FULL", kMigrations, "fanout journal");
  if (!db) return tl::unexpected("durability: " + db.error());
  j->db_ = *db;
  auto fail = [&file](std::string message) {
    return tl::unexpected("durability: " + file.string() + ": " + std::move(message));
  };
  // Free pages go back to the file system (bounded disk) when the writer asks for it.
  if (auto r = sqlite::pragma(j->db_, "PRAGMA auto_vacuum"); !r || *r != "2") {
    // auto_vacuum can only change before the first table exists, or with a VACUUM.
    if (auto s = sqlite::pragma(j->db_, "PRAGMA auto_vacuum=INCREMENTAL"); !s) {
      return fail(s.error());
    }
    if (sqlite3_exec(j->db_, "VACUUM", nullptr, nullptr, nullptr) != SQLITE_OK) {
      return fail(std::string("VACUUM: ") + sqlite3_errmsg(j->db_));
    }
  }
  for (const char* sql : kWriterPragmas) {
    if (auto r = sqlite::pragma(j->db_, sql); !r) return fail(r.error());
  }
  sqlite3_wal_hook(j->db_, &Journal::on_wal, j.get());

  // The next delivery id, the deliveries to resume, the final rows kept, the ids remembered.
  {
    auto s = Statement::prepare(j->db_, "SELECT next_did FROM meta WHERE id = 1",
                                "reading the next delivery id");
    if (!s) return fail(s.error());
    auto row = s->step();
    if (!row) return fail(row.error());
    if (!*row) return fail("the meta row is missing");
    j->next_did_ = std::max<std::int64_t>(1, s->int64(0));
  }
  {
    auto s = Statement::prepare(
        j->db_, std::string(kRecoveredColumns) + "WHERE d.outcome IS NULL ORDER BY d.did",
        "reading the deliveries to resume");
    if (!s) return fail(s.error());
    for (;;) {
      auto row = s->step();
      if (!row) return fail(row.error());
      if (!*row) break;
      Recovered r = recovered_from_row(*s);
      j->next_did_ = std::max(j->next_did_, r.did + 1);
      j->recovered_.push_back(std::move(r));
    }
  }
  auto writer = Writer::make(j->db_);
  if (!writer) return fail(writer.error());
  j->writer_ = std::move(*writer);
  {
    auto s = Statement::prepare(j->db_, "SELECT count(*) FROM deliveries WHERE outcome IS NOT NULL",
                                "counting final deliveries");
    if (!s) return fail(s.error());
    auto row = s->step();
    if (!row) return fail(row.error());
    j->writer_->final_rows = *row ? static_cast<std::uint64_t>(s->int64(0)) : 0;
  }
  if (options.idempotency_ms > 0 && options.max_ids > 0) {
    auto s = Statement::prepare(j->db_,
                                "SELECT org_id, event_id, at_ms FROM event_ids WHERE at_ms >= ?1 "
                                "ORDER BY at_ms DESC LIMIT ?2",
                                "reading recent event ids");
    if (!s) return fail(s.error());
    s->bind(1, now_ms() - static_cast<std::int64_t>(options.idempotency_ms));
    s->bind(2, static_cast<std::int64_t>(options.max_ids));
    std::vector<std::pair<std::int64_t, std::string>> newest_first;
    for (;;) {
      auto row = s->step();
      if (!row) return fail(row.error());
      if (!*row) break;
      newest_first.emplace_back(s->int64(2), id_key(s->int64(0), s->text(1)));
    }
    for (auto it = newest_first.rbegin(); it != newest_first.rend(); ++it) {
      j->ids_[it->second] = it->first;
      j->id_order_.push_back(std::move(*it));
    }
  }
  const std::int64_t last = j->next_did_ - 1;
  j->durable_.store(static_cast<std::uint64_t>(last), std::memory_order_release);

  const int rc = sqlite3_open_v2(file.c_str(), &j->reader_,
                                 SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, nullptr);
  if (rc != SQLITE_OK) return fail(std::string("opening a reader: ") + sqlite3_errstr(rc));
  sqlite3_extended_result_codes(j->reader_, 1);
  sqlite3_busy_timeout(j->reader_, sqlite::kBusyTimeoutMs);
  const int rc2 = sqlite3_open_v2(file.c_str(), &j->checkpointer_db_,
                                  SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, nullptr);
  if (rc2 != SQLITE_OK) return fail(std::string("opening a checkpointer: ") + sqlite3_errstr(rc2));
  sqlite3_busy_timeout(j->checkpointer_db_, sqlite::kBusyTimeoutMs);
  return j;
}

void Journal::start() {
  if (thread_.joinable()) return;
  thread_ = std::thread([this] { run(); });
  checkpoint_thread_ = std::thread([this] { run_checkpoints(); });
}

void Journal::stop() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  wake_.notify_one();
  if (thread_.joinable()) thread_.join();
  {
    std::lock_guard lock(checkpoint_mu_);
    checkpoint_stop_ = true;
  }
  checkpoint_wake_.notify_one();
  if (checkpoint_thread_.joinable()) checkpoint_thread_.join();
}

int Journal::on_wal(void* self, sqlite3* db, const char*, int frames) {
  auto* j = static_cast<Journal*>(self);
  if (frames >= kWriterCheckpointFrames) {
    // SQLITE_BUSY (the checkpointer is at it) is fine: it will be tried again after the next
    // commit.
    (void)sqlite3_wal_checkpoint_v2(db, nullptr, SQLITE_CHECKPOINT_RESTART, nullptr, nullptr);
  } else if (frames >= kCheckpointFrames) {
    {
      std::lock_guard lock(j->checkpoint_mu_);
      j->checkpoint_due_ = true;
    }
    j->checkpoint_wake_.notify_one();
  }
  return SQLITE_OK;
}

void Journal::run_checkpoints() {
  for (;;) {
    {
      std::unique_lock lock(checkpoint_mu_);
      checkpoint_wake_.wait(lock, [this] { return checkpoint_due_ || checkpoint_stop_; });
      if (checkpoint_stop_) return;
      checkpoint_due_ = false;
    }
    // Copies what the WAL holds into the database, beside the writer, until only a little is
    // left; then asks the writer to copy the rest (a RESTART checkpoint between two commits)
    // so that the WAL starts again from its beginning: under a steady load a PASSIVE
    // checkpoint alone never finds the whole WAL copied at the writer's next commit, and one
    // from this thread would wait for a moment without a writer that may never come.
    for (int round = 0; round < 16; ++round) {
      int log = 0, copied = 0;
      const int rc = sqlite3_wal_checkpoint_v2(checkpointer_db_, nullptr, SQLITE_CHECKPOINT_PASSIVE,
                                               &log, &copied);
      if (rc != SQLITE_OK) break;
      if (log - copied <= kCheckpointTail) {
        restart_ready_.store(true, std::memory_order_release);
        break;
      }
    }
  }
}

std::uint64_t Journal::last_seq() const {
  std::lock_guard lock(mu_);
  return static_cast<std::uint64_t>(next_did_ - 1);
}

// --- appending ----------------------------------------------------------------------------------

void Journal::push(const Record& r, std::string_view a, std::string_view b) {
  Record& rec = open_->records.emplace_back(r);
  rec.offset = open_->bytes.size();
  open_->bytes.append(a);
  open_->bytes.append(b);
  if (writer_waiting_) wake_.notify_one();
}

bool Journal::remember_id(std::int64_t org_id, std::string_view event_id, std::int64_t now) {
  // Forget what left the window (or the cap), oldest first; a key seen again since keeps its
  // newer time.
  const std::int64_t horizon = now - static_cast<std::int64_t>(options_.idempotency_ms);
  while (!id_order_.empty() &&
         (id_order_.front().first < horizon || id_order_.size() > options_.max_ids)) {
    auto it = ids_.find(id_order_.front().second);
    if (it != ids_.end() && it->second == id_order_.front().first) ids_.erase(it);
    id_order_.pop_front();
  }
  std::string key = id_key(org_id, event_id);
  auto [it, inserted] = ids_.try_emplace(key, now);
  if (!inserted) {
    if (it->second >= horizon) return false;
    it->second = now;
  }
  id_order_.emplace_back(now, std::move(key));
  return true;
}

Journal::Admit Journal::accept(std::int64_t org_id, routing::EventTypeId type,
                               std::string_view event_id, std::string_view body,
                               std::int64_t subscription_id, bool check_id, std::int64_t resend_of,
                               std::int64_t& did) {
  const std::int64_t now = now_ms();
  const bool ids_on = check_id && options_.idempotency_ms > 0 && options_.max_ids > 0;
  std::lock_guard lock(mu_);
  if (failing_) return Admit::kFailing;
  if (ids_on && !remember_id(org_id, event_id, now)) return Admit::kDuplicate;
  did = next_did_++;
  Record r;
  r.kind = Record::Kind::kAccept;
  r.remember_id = ids_on;
  r.type = type;
  r.did = did;
  r.org_id = org_id;
  r.subscription_id = subscription_id;
  r.time_ms = now;
  r.resend_of = resend_of;
  r.id_size = static_cast<std::uint32_t>(event_id.size());
  r.body_size = static_cast<std::uint32_t>(body.size());
  push(r, event_id, body);
  if (open_->first_accept == 0) open_->first_accept = static_cast<std::uint64_t>(did);
  open_->last_accept = static_cast<std::uint64_t>(did);
  return Admit::kAccepted;
}

void Journal::attempt(std::int64_t did, std::uint32_t n, int status, transport::Failure failure,
                      std::uint32_t duration_us, std::int64_t next_ms,
                      std::optional<OutcomeKind> outcome) {
  Record r;
  r.kind = Record::Kind::kAttempt;
  r.did = did;
  r.n = n;
  r.status = status;
  r.failure = failure;
  r.duration_us = duration_us;
  r.time_ms = now_ms();
  r.next_ms = next_ms;
  r.has_outcome = outcome.has_value();
  if (outcome) r.outcome = *outcome;
  std::lock_guard lock(mu_);
  push(r);
}

void Journal::final(std::int64_t did, OutcomeKind outcome, std::uint32_t attempts) {
  Record r;
  r.kind = Record::Kind::kFinal;
  r.did = did;
  r.n = attempts;
  r.time_ms = now_ms();
  r.has_outcome = true;
  r.outcome = outcome;
  std::lock_guard lock(mu_);
  push(r);
}

void Journal::forget_ids(const Batch& batch) {
  for (const Record& r : batch.records) {
    if (r.kind != Record::Kind::kAccept || !r.remember_id) continue;
    auto it =
        ids_.find(id_key(r.org_id, std::string_view(batch.bytes).substr(r.offset, r.id_size)));
    if (it != ids_.end() && it->second == r.time_ms) ids_.erase(it);
  }
}

// --- the writer thread --------------------------------------------------------------------------

void Journal::run() {
  Writer& w = *writer_;
  std::unique_ptr<Batch> spare = std::make_unique<Batch>();
  for (;;) {
    std::unique_ptr<Batch> batch;
    bool failing = false;
    {
      std::unique_lock lock(mu_);
      if (open_->records.empty() && !stopping_) {
        writer_waiting_ = true;
        wake_.wait_for(lock, kPurgeEvery, [this] { return !open_->records.empty() || stopping_; });
        writer_waiting_ = false;
      }
      if (open_->records.empty() && stopping_) break;
      open_->last_did = static_cast<std::uint64_t>(next_did_ - 1);
      batch = std::exchange(open_, std::move(spare));
      failing = failing_;
    }
    const auto now = std::chrono::steady_clock::now();
    const bool purge_due = now >= w.next_purge;
    // Nothing to write: commit anyway when a purge is due, or to find out whether a failing
    // disk works again (publish answers busy until then).
    if (batch->records.empty() && !purge_due && !failing) {
      spare = std::move(batch);
      continue;
    }
    tl::expected<void, std::string> written;
    if (options_.fail_commit && options_.fail_commit()) {
      written = tl::unexpected(std::string("journal: injected commit failure"));
    } else {
      auto tx = Transaction::begin(db_, Transaction::Mode::kWrite, "journal: group commit");
      if (!tx) {
        written = tl::unexpected(std::move(tx.error()));
      } else {
        written = journal_detail::write_records(w, *batch, options_, catalogue_);
        if (written && purge_due) written = journal_detail::purge(w, options_, now_ms());
        if (written) written = tx->commit();
      }
    }
    if (purge_due) {
      w.next_purge = now + kPurgeEvery;
      if (written) (void)sqlite3_exec(db_, "PRAGMA incremental_vacuum", nullptr, nullptr, nullptr);
    }
    const bool ok = written.has_value();
    {
      std::lock_guard lock(mu_);
      if (!ok) forget_ids(*batch);
      failing_ = !ok;
    }
    if (ok) {
      commits_.fetch_add(1, std::memory_order_relaxed);
      records_.fetch_add(batch->records.size(), std::memory_order_relaxed);
      bytes_.fetch_add(batch->bytes.size(), std::memory_order_relaxed);
      durable_.store(std::max(batch->last_did, durable_.load(std::memory_order_relaxed)),
                     std::memory_order_release);
    } else {
      commit_failures_.fetch_add(1, std::memory_order_relaxed);
      std::fprintf(stderr, "fanout: %s\n", written.error().c_str());
    }
    if (options_.on_commit && !batch->records.empty()) {
      options_.on_commit(batch->first_accept, batch->last_accept, ok);
    }
    // The checkpointer copied nearly all of the WAL: the rest now, so that it starts again.
    if (restart_ready_.exchange(false, std::memory_order_acquire)) {
      (void)sqlite3_wal_checkpoint_v2(db_, nullptr, SQLITE_CHECKPOINT_RESTART, nullptr, nullptr);
    }
    batch->clear();
    spare = std::move(batch);
  }
}

Journal::Stats Journal::stats() const noexcept {
  return {commits_.load(std::memory_order_relaxed),
          commit_failures_.load(std::memory_order_relaxed),
          records_.load(std::memory_order_relaxed), bytes_.load(std::memory_order_relaxed)};
}

}  // namespace fanout::engine
