// The engine's journal (journal.h): SQLite's side (schema, open, recovery, the bodies' reader).
// Appending and the log's writer thread: journal_append.cc; the indexer: journal_index.cc. Schema
// (migrations 1 to 3):
//
//   meta(id = 1, next_did, log_frame)  the next delivery id and the last frame of the log
//                                      copied, written with every copy
//   deliveries(did, event_id, org_id, event_type TEXT, subscription_id, created_ms, attempts,
//              next_ms, outcome NULL while pending, finished_ms, resend_of, log, body)
//     + partial index of pending dids (recovery), (subscription_id, did) for history, partial
//       index of resend_of (recover)
//   bodies(did, body BLOB)         written once; apart so that recording an attempt rewrites
//                                  only the small deliveries row, not the body
//   event_ids(org_id, event_id, at_ms)                     only when idempotency is on
//
// A delivery copied already final (accepted and finished within one pass of the indexer) is
// never rewritten: its body is in its own row (deliveries.body), one row inserted instead of two;
// every other delivery's body is in bodies and deliveries.body is NULL. Reads take
// coalesce(d.body, b.body) (kRecoveredColumns, find(), BodyReader).
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

#include <pthread.h>
#include <sched.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <unordered_map>
#include <unordered_set>

#include <xxhash.h>

#include "engine/journal_log.h"
#include "engine/journal_rows.h"
#include "engine/sqlite.h"

namespace fanout::engine {

using journal_detail::kRecoveredColumns;
using journal_detail::now_ms;
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
    R"sql(
ALTER TABLE meta ADD COLUMN log_frame INTEGER NOT NULL DEFAULT 0;
PRAGMA user_version = 2;
)sql",
    R"sql(
ALTER TABLE deliveries ADD COLUMN body BLOB;
PRAGMA user_version = 3;
)sql",
};

// The indexer's and the checkpointer's niceness where SCHED_IDLE is refused (Linux: per thread).
constexpr int kBackgroundNice = 10;

}  // namespace

// In the background, thread `tid` runs only when a core would otherwise idle (SCHED_IDLE), or,
// where that is refused, at nice kBackgroundNice. Out of it: SCHED_OTHER at nice 0, which the
// kernel refuses without CAP_SYS_NICE (or RLIMIT_NICE) once a thread is in the background: then
// false, and the thread stays there. All or nothing: the nice value goes first, since a
// SCHED_IDLE thread at nice 0 is still in the background, where a thread let out of SCHED_IDLE
// and then refused nice 0 (a process started under `nice`, RLIMIT_NICE between) would be out
// while the caller records it in. (Linux: both calls act on the one thread.)
bool journal_detail::background_priority(pid_t tid, bool background) noexcept {
  sched_param p{};
  if (background) {
    if (sched_setscheduler(tid, SCHED_IDLE, &p) != 0) {
      (void)setpriority(PRIO_PROCESS, static_cast<id_t>(tid), kBackgroundNice);
    }
    return true;
  }
  return setpriority(PRIO_PROCESS, static_cast<id_t>(tid), 0) == 0 &&
         sched_setscheduler(tid, SCHED_OTHER, &p) == 0;
}

namespace {

// The writer's connection: no checkpoint of its own (the checkpointer thread does them, so a
// commit never waits for one), the WAL truncated back to 32 MiB after it restarts (bounded
// disk), a 32 MiB page cache and memory-mapped reads to keep the indexes' pages out of read().
constexpr const char* kWriterPragmas[] = {
    "PRAGMA wal_autocheckpoint=0",
    "PRAGMA journal_size_limit=33554432",
    "PRAGMA cache_size=-32768",
    "PRAGMA mmap_size=268435456",
};

// A database made here has 16 KiB pages, SQLite's default being 4 KiB: a row (~700 bytes with a
// 600-byte body) then shares its page with more, so the copy touches, writes and checkpoints
// fewer pages and makes fewer pwrite() calls (two per WAL frame). Measured (70,000 events/s
// steady through ingest, unsigned, 700,000 events, two pairs each): the indexer's CPU per event
// 5.7-6.4 us with 4 KiB pages against 4.8-4.9 with 16 KiB; with 2,000 organisations 6.3 against
// 5.2, and 4 KiB pages no longer kept up (61,000/s of 70,000 accepted, answer p99 72 ms, against
// every event and 22 ms). 64 KiB pages were a little cheaper still (4.1-4.9 us) but each commit
// rewrites the last page of every tree it touches: at low rates that is 64 KiB a page.
constexpr int kPageSize = 16384;

}  // namespace

Journal::IdKey Journal::id_key(std::int64_t org_id, std::string_view event_id) noexcept {
  const XXH128_hash_t h =
      XXH3_128bits_withSeed(event_id.data(), event_id.size(), static_cast<std::uint64_t>(org_id));
  return {h.low64, h.high64};
}

Journal::Journal(DurabilityOptions options, const routing::EventCatalogue& catalogue)
    : options_(std::move(options)),
      catalogue_(catalogue),
      open_(std::make_unique<Batch>()),
      frame_batch_(std::make_unique<Batch>()),
      index_batch_(std::make_unique<Batch>()) {}

Journal::~Journal() {
  stop();
  writer_.reset();  // statements before their connection
  log_.reset();
  sqlite3_close_v2(reader_);
  sqlite3_close_v2(checkpointer_db_);
  sqlite3_close_v2(db_);
}

tl::expected<std::unique_ptr<Journal>, std::string> Journal::open(
    const DurabilityOptions& options, const routing::EventCatalogue& catalogue) {
  std::error_code ec;
  std::filesystem::create_directories(options.dir, ec);
  if (ec) return tl::unexpected("durability: creating " + options.dir + ": " + ec.message());
  std::unique_ptr<Journal> j(new Journal(options, catalogue));
  const std::filesystem::path file = j->database_file();
  // NORMAL: the indexer's commits are not synced one by one (the log holds what they copy);
  // sync_database() makes them durable before a segment of the log goes.
  auto db = sqlite::open_wal(file, "NORMAL", kMigrations, "fanout journal", kPageSize);
  if (!db) return tl::unexpected("durability: " + db.error());
  j->db_ = *db;
  auto fail = [&file](std::string message) {
    return tl::unexpected("durability: " + file.string() + ": " + std::move(message));
  };
  // An older database keeps its 4 KiB pages: the checkpoints' thresholds are in bytes.
  auto page = sqlite::pragma(j->db_, "PRAGMA page_size");
  if (!page) return fail(page.error());
  int bytes = 0;
  std::from_chars(page->data(), page->data() + page->size(), bytes);
  j->page_size_ = std::max(512, bytes);
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
  // The log's frames not yet in the database, copied in; then the log starts again after them.
  {
    auto s = Statement::prepare(j->db_, "SELECT log_frame FROM meta WHERE id = 1",
                                "reading the last frame copied");
    if (!s) return fail(s.error());
    auto row = s->step();
    if (!row) return fail(row.error());
    if (!*row) return fail("the meta row is missing");
    j->applied_ = static_cast<std::uint64_t>(std::max<std::int64_t>(0, s->int64(0)));
  }
  auto log = JournalLog::open(std::filesystem::path(options.dir) / "journal-log",
                              options.log_segment_bytes);
  if (!log) return tl::unexpected("durability: " + log.error());
  j->log_ = std::move(*log);
  for (;;) {
    const std::uint64_t before = j->applied_;
    if (auto r = j->index(UINT64_MAX, false); !r) return tl::unexpected("durability: " + r.error());
    if (j->applied_ == before) break;
  }
  // The copies are durable before the log they came from goes.
  if (auto r = j->sync_database(); !r) return tl::unexpected("durability: " + r.error());
  j->synced_ = j->applied_;
  if (auto r = j->log_->start_appending(j->applied_ + 1); !r) {
    return tl::unexpected("durability: " + r.error());
  }
  j->cursor_ = {j->applied_ + 1, 0, j->applied_ + 1};
  j->logged_.store(j->applied_, std::memory_order_relaxed);

  // The next delivery id, the deliveries to resume, the ids remembered.
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
    auto s = Statement::prepare(j->db_,
                                std::string(kRecoveredColumns) + "d.outcome IS NULL ORDER BY d.did",
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
  if (options.idempotency_ms > 0 && options.max_ids > 0) {
    auto s = Statement::prepare(j->db_,
                                "SELECT org_id, event_id, at_ms FROM event_ids WHERE at_ms >= ?1 "
                                "ORDER BY at_ms DESC LIMIT ?2",
                                "reading recent event ids");
    if (!s) return fail(s.error());
    s->bind(1, now_ms() - static_cast<std::int64_t>(options.idempotency_ms));
    s->bind(2, static_cast<std::int64_t>(options.max_ids));
    std::vector<std::pair<std::int64_t, IdKey>> newest_first;
    for (;;) {
      auto row = s->step();
      if (!row) return fail(row.error());
      if (!*row) break;
      newest_first.emplace_back(s->int64(2), id_key(s->int64(0), s->text(1)));
    }
    for (auto it = newest_first.rbegin(); it != newest_first.rend(); ++it) {
      j->ids_[it->second] = it->first;
      j->id_order_.push_back(*it);
    }
  }
  const std::int64_t last = j->next_did_ - 1;
  j->durable_.store(static_cast<std::uint64_t>(last), std::memory_order_release);
  j->indexed_did_.store(last, std::memory_order_release);  // the log's tail was copied above

  auto reader = sqlite::open_reader(file);
  if (!reader) return fail(reader.error());
  j->reader_ = *reader;
  const int rc2 = sqlite3_open_v2(file.c_str(), &j->checkpointer_db_,
                                  SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, nullptr);
  if (rc2 != SQLITE_OK) return fail(std::string("opening a checkpointer: ") + sqlite3_errstr(rc2));
  sqlite3_busy_timeout(j->checkpointer_db_, sqlite::kBusyTimeoutMs);
  // A connection learns that the file is in WAL mode only when it first reads it: until then
  // sqlite3_wal_checkpoint_v2 on it does nothing (SQLITE_OK, -1 frames), so read the mode once.
  if (auto mode = sqlite::pragma(j->checkpointer_db_, "PRAGMA journal_mode"); !mode) {
    return fail("the checkpointer's connection: " + mode.error());
  } else if (*mode != "wal") {
    return fail("the checkpointer's connection sees journal_mode " + *mode + ", not wal");
  }
  return j;
}

void Journal::start() {
  if (thread_.joinable()) return;
  // Named for top -H and perf; the database's two threads only when a core would idle: under a
  // burst they leave it to the loops and the log's writer, and catch up after it (past the
  // backlog bound the writer waits for them).
  thread_ = std::thread([this] {
    pthread_setname_np(pthread_self(), "journal-log");
    run();
  });
  index_thread_ = std::thread([this] {
    pthread_setname_np(pthread_self(), "journal-index");
    publish_tid(index_tid_, gettid());
    enter_background();  // after: a read that began meanwhile takes it out again
    run_index();
    publish_tid(index_tid_, 0);  // no priority set on a thread id the system may reuse
  });
  checkpoint_thread_ = std::thread([this] {
    pthread_setname_np(pthread_self(), "journal-ckpt");
    publish_tid(checkpoint_tid_, gettid());
    enter_background();
    run_checkpoints();
    publish_tid(checkpoint_tid_, 0);
  });
}

void Journal::publish_tid(std::atomic<pid_t>& tid, pid_t value) {
  std::lock_guard lock(boost_mu_);  // set_classes_locked() reads it under it
  tid.store(value, std::memory_order_release);
  // No class set yet on a new thread (enter_background() follows), none left on an ended one.
  (&tid == &index_tid_ ? index_out_ : checkpoint_out_) = false;
}

void Journal::stop() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  stopping_seen_.store(true, std::memory_order_relaxed);
  wake_.notify_one();
  index_done_.notify_all();
  if (thread_.joinable()) thread_.join();
  // The writer is done: the indexer copies what is left, then the log goes (all in SQLite).
  {
    std::lock_guard lock(index_mu_);
    index_stop_ = true;
  }
  index_wake_.notify_one();
  if (index_thread_.joinable()) index_thread_.join();
  {
    std::lock_guard lock(checkpoint_mu_);
    checkpoint_stop_ = true;
  }
  checkpoint_wake_.notify_one();
  if (checkpoint_thread_.joinable()) checkpoint_thread_.join();
}

std::uint64_t Journal::last_seq() const {
  std::lock_guard lock(mu_);
  return static_cast<std::uint64_t>(next_did_ - 1);
}

std::filesystem::path Journal::database_file() const {
  return std::filesystem::path(options_.dir) / "journal.db";
}

tl::expected<std::unique_ptr<Journal::BodyReader>, std::string> Journal::BodyReader::open(
    const std::filesystem::path& file) {
  auto db = sqlite::open_reader(file);
  if (!db) return tl::unexpected("journal: " + db.error());
  std::unique_ptr<BodyReader> r(new BodyReader);
  r->db_ = *db;
  auto s =
      Statement::prepare(r->db_,
                         "SELECT coalesce(d.body, b.body) FROM deliveries d LEFT JOIN bodies b "
                         "ON b.did = d.did WHERE d.did = ?1 AND coalesce(d.body, b.body) IS "
                         "NOT NULL",
                         "journal: reading a waiting retry's body");
  if (!s) return tl::unexpected(std::move(s.error()));
  r->select_ = std::make_unique<Statement>(std::move(*s));
  return r;
}

Journal::BodyReader::~BodyReader() {
  select_.reset();
  sqlite3_close_v2(db_);
}

tl::expected<void, std::string> Journal::BodyReader::read(std::int64_t did, std::string& out) {
  Statement& s = *select_;
  s.bind(1, did);
  auto row = s.step();
  tl::expected<void, std::string> result;
  if (!row) {
    result = tl::unexpected(std::move(row.error()) + " (delivery " + std::to_string(did) + ")");
  } else if (!*row) {
    result = tl::unexpected("journal: no body for delivery " + std::to_string(did));
  } else {
    out = s.blob(0);
  }
  s.reset();  // every path: no read transaction kept open between reads (checkpoints wait)
  return result;
}

Journal::Stats Journal::stats() const noexcept {
  return {commits_.load(std::memory_order_relaxed),
          commit_failures_.load(std::memory_order_relaxed),
          records_.load(std::memory_order_relaxed),
          bytes_.load(std::memory_order_relaxed),
          indexed_.load(std::memory_order_acquire),  // after indexed_did_ (index())
          index_failures_.load(std::memory_order_relaxed),
          backlog_waits_.load(std::memory_order_relaxed),
          index_boosts_.load(std::memory_order_relaxed),
          checkpoints_.load(std::memory_order_relaxed),
          writer_wakes_.load(std::memory_order_relaxed)};
}

}  // namespace fanout::engine
