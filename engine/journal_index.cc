// The journal's indexer (journal.h): copying the log's frames into SQLite, and SQLite's upkeep
// (the checkpointer thread and the WAL hook that wakes it).
#include <algorithm>
#include <cstdio>
#include <optional>

#include "engine/journal_log.h"
#include "engine/journal_rows.h"

namespace fanout::engine {

using journal_detail::kIndexRetry;
using journal_detail::kPurgeEvery;
using journal_detail::now_ms;
using sqlite::Transaction;

namespace {

// Records and bytes (ids and bodies) copied from the log per transaction, at most, gathered
// first (a frame is never split).
constexpr std::size_t kIndexRecords = 20'000;
constexpr std::size_t kIndexBytes = std::size_t{32} << 20;
// Once caught up, the indexer gathers frames this long before its next transaction.
constexpr auto kIndexGather = std::chrono::milliseconds(50);
// At stop, the indexer copies what is left for at most this long.
constexpr auto kStopCopy = std::chrono::milliseconds(500);
// Bytes of WAL frames after a commit: past the first, the checkpointer copies the WAL into the
// database (PASSIVE: beside the indexer, never blocking it); past the second (it fell behind, or
// never caught a moment with the whole WAL copied) the indexer itself restarts the WAL, so it
// stays bounded. Small: each copy ends with a sync of the database file, and the log's syncs
// wait behind it on the disk (engine/README.md, "Checkpoints, small and often"). In frames, by
// the database's page size (page_size_, read at open).
constexpr int kCheckpointBytes = 4 << 20;
constexpr int kWriterCheckpointBytes = 4 * kCheckpointBytes;
// Bytes left for the indexer's RESTART checkpoint to copy (between two of its commits).
constexpr int kCheckpointTailBytes = 512 << 10;

}  // namespace

int Journal::on_wal(void* self, sqlite3* db, const char*, int frames) {
  auto* j = static_cast<Journal*>(self);
  if (frames >= kWriterCheckpointBytes / j->page_size_) {
    // SQLITE_BUSY (the checkpointer is at it) is fine: it will be tried again after the next
    // commit.
    (void)sqlite3_wal_checkpoint_v2(db, nullptr, SQLITE_CHECKPOINT_RESTART, nullptr, nullptr);
  } else if (frames >= kCheckpointBytes / j->page_size_) {
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
      if (round == 0 && copied > 0) checkpoints_.fetch_add(1, std::memory_order_relaxed);
      if (log - copied <= kCheckpointTailBytes / page_size_) {
        restart_ready_.store(true, std::memory_order_release);
        break;
      }
    }
  }
}

// --- the indexer thread -------------------------------------------------------------------------

tl::expected<void, std::string> Journal::index(std::uint64_t until, bool purge) {
  Writer& w = *writer_;
  JournalLogCursor at = cursor_;
  std::uint64_t last = applied_, pushes = 0, last_did = 0, bytes = 0;
  // The pass's frames are written as one batch: a delivery accepted and finished within the
  // pass is then one final row, where frame by frame it was a row written, then rewritten (and
  // its entry in the pending index added, then removed).
  Batch& pass = *index_batch_;
  pass.clear();
  auto tx = Transaction::begin(db_, Transaction::Mode::kWrite, "journal: copying the log");
  if (!tx) return tl::unexpected(std::move(tx.error()));
  while (pass.records.size() < kIndexRecords && pass.bytes.size() < kIndexBytes) {
    JournalLog::Frame frame;
    auto more = log_->read(at, until, *frame_batch_, frame);
    if (!more) return tl::unexpected(std::move(more.error()));
    if (!*more) break;
    if (frame.number <= applied_) continue;  // copied before a restart
    pass.append(*frame_batch_);
    bytes += frame.size;
    last = frame.number;
    pushes = frame.pushes;
    last_did = std::max(last_did, frame.last_did);
  }
  frame_batch_->clear();
  if (!pass.records.empty()) {
    if (auto ok = journal_detail::write_records(w, pass, options_); !ok) return ok;
  }
  pass.clear();
  if (last == applied_ && !purge) return {};
  if (last != applied_) {
    w.update_meta.reset();
    w.update_meta.bind(1, static_cast<std::int64_t>(last_did + 1));
    w.update_meta.bind(2, static_cast<std::int64_t>(last));
    if (auto ok = w.update_meta.run(); !ok) return ok;
  }
  if (purge) {
    if (auto ok = journal_detail::purge(w, options_, now_ms()); !ok) return ok;
  }
  if (auto ok = tx->commit(); !ok) return ok;
  if (last != applied_) {
    // The frames' high-water did only grows, and this thread is the only writer after open. It
    // is published before the frames are counted (release): whoever sees them counted in
    // stats() (acquire) also sees indexed_did() cover their deliveries.
    if (last_did > 0)
      indexed_did_.store(static_cast<std::int64_t>(last_did), std::memory_order_release);
    indexed_.fetch_add(last - applied_, std::memory_order_release);
    applied_ = last;
    cursor_ = at;
    {
      std::lock_guard lock(index_mu_);
      indexed_pushes_ = std::max(indexed_pushes_, pushes);
      if (thread_.joinable()) indexed_bytes_ += bytes;  // frames of this run's log only
    }
    index_done_.notify_all();
  }
  return {};
}

// Out of the background while the log is near its bound, with SQLite's checkpointer: in the
// background they run only on a core that would idle, and under a steady load beyond what the
// workers deliver no core does. The writer would soon wait for the indexer, and every ingest
// answer with it (seconds, not milliseconds). So from 1/4 of the bound (the writer decides,
// after a commit: it runs) they take a normal share of a core, until the indexer is back under
// 1/16 (it decides, after a copy). A burst up to 1/4 of the bound is taken at the log's speed.
// Without CAP_SYS_NICE the kernel refuses, and the bound is the brake.
std::uint64_t Journal::backlog_locked() const {
  return log_->bytes_written() - indexed_bytes_;
}

void Journal::steer_indexer(std::uint64_t backlog) {
  const std::uint64_t bound = options_.max_log_backlog_bytes;
  const bool out = backlog_out_.load(std::memory_order_relaxed);
  if (out ? backlog > bound / 16 : backlog < bound / 4) return;
  bool demote_self = false;
  {
    std::lock_guard lock(boost_mu_);
    if (backlog_out_.load(std::memory_order_relaxed) != out) return;  // the other thread did it
    backlog_out_.store(!out, std::memory_order_relaxed);
    demote_self = set_classes_locked();
  }
  if (demote_self) enter_background();
}

// The one place the two threads' classes are decided: the indexer out of the background while
// the backlog or a history read wants it, the checkpointer while the backlog does; a thread is
// touched only when that differs from the class last set on it. A refusal (no CAP_SYS_NICE)
// leaves it where it was (background_priority is all or nothing), and it is tried again at the
// next call. The calling thread is not put back here but by the caller, after the lock
// (enter_background): true then. index_boosts_ counts the indexer's moves out while the backlog
// wants it, whoever makes them (the writer, or the indexer itself at its start).
bool Journal::set_classes_locked() {
  const bool backlog = backlog_out_.load(std::memory_order_relaxed);
  const pid_t self = gettid();
  bool demote_self = false;
  // True when it took the thread out.
  const auto set = [&](pid_t tid, bool want_out, bool& is_out) {
    if (tid == 0 || want_out == is_out) return false;
    if (want_out) {
      is_out = journal_detail::background_priority(tid, false);
      return is_out;
    }
    if (tid == self) {
      demote_self = true;
    } else {
      journal_detail::background_priority(tid, true);
      is_out = false;
    }
    return false;
  };
  if (set(index_tid_.load(std::memory_order_acquire), backlog || reads_waiting_ > 0, index_out_) &&
      backlog) {
    index_boosts_.fetch_add(1, std::memory_order_relaxed);
  }
  set(checkpoint_tid_.load(std::memory_order_acquire), backlog, checkpoint_out_);
  return demote_self;
}

// The calling thread (the indexer or the checkpointer) into the background with boost_mu_ not
// held: a thread that has just entered SCHED_IDLE may wait long for its next slice, and the
// writer and history reads must not wait on the lock behind it. Whatever wanted the thread out
// meanwhile (the backlog, a history read for the indexer) takes it out again here.
void Journal::enter_background() {
  const pid_t self = gettid();
  journal_detail::background_priority(self, true);
  std::lock_guard lock(boost_mu_);
  if (self == index_tid_.load(std::memory_order_acquire)) index_out_ = false;
  if (self == checkpoint_tid_.load(std::memory_order_acquire)) checkpoint_out_ = false;
  // Never true here: this thread's class is now the background, and the other is not this one.
  (void)set_classes_locked();
}

void Journal::run_index() {
  auto next_purge = std::chrono::steady_clock::now();
  bool caught_up = true;  // the last pass copied every frame synced when it began
  std::optional<std::chrono::steady_clock::time_point> stop_began;
  for (;;) {
    bool stopping = false;
    {
      std::unique_lock lock(index_mu_);
      index_wake_.wait_for(lock, kPurgeEvery, [this] {
        return logged_.load(std::memory_order_relaxed) > applied_ || index_stop_;
      });
      // Caught up before: gather frames for a while, so that one transaction (one sync of the
      // WAL) copies many of them, unless the backlog wants the copy out of the background, a
      // history read is waiting or the journal stops.
      if (caught_up && !backlog_out_.load(std::memory_order_relaxed) && !index_stop_ &&
          hurry_ == 0) {
        index_wake_.wait_for(lock, kIndexGather, [this] { return index_stop_ || hurry_ != 0; });
      }
      stopping = index_stop_;
    }
    if (options_.before_index) options_.before_index();
    const auto now = std::chrono::steady_clock::now();
    const bool purge_due = now >= next_purge;
    const std::uint64_t until = logged_.load(std::memory_order_acquire);
    if (until > applied_ || purge_due) {
      auto done = index(until, purge_due);
      if (purge_due) {
        next_purge = now + kPurgeEvery;
        if (done) (void)sqlite3_exec(db_, "PRAGMA incremental_vacuum", nullptr, nullptr, nullptr);
      }
      index_failing_.store(!done, std::memory_order_relaxed);
      if (!done) {
        index_failures_.fetch_add(1, std::memory_order_relaxed);
        index_done_.notify_all();  // a writer waiting for room goes on
        std::fprintf(stderr, "fanout: %s (the log keeps it; tried again in 1 s)\n",
                     done.error().c_str());
        if (stopping) return;  // the next open copies it
        std::unique_lock lock(index_mu_);
        index_wake_.wait_for(lock, kIndexRetry, [this] { return index_stop_; });
        continue;
      }
      caught_up = applied_ >= until;
      std::uint64_t backlog = 0;
      {
        std::lock_guard lock(index_mu_);
        backlog = backlog_locked();
      }
      steer_indexer(backlog);
      // The checkpointer copied nearly all of the WAL: the rest now, so that it starts again.
      if (restart_ready_.exchange(false, std::memory_order_acquire)) {
        (void)sqlite3_wal_checkpoint_v2(db_, nullptr, SQLITE_CHECKPOINT_RESTART, nullptr, nullptr);
      }
      // Segments go only once what they hold is durable in the database.
      if (log_->releasable(applied_)) {
        if (auto ok = sync_database(); ok) {
          synced_ = applied_;
        } else {
          std::fprintf(stderr, "fanout: %s\n", ok.error().c_str());
        }
      }
      log_->release(synced_, false);
    }
    if (stopping) {
      if (applied_ >= logged_.load(std::memory_order_acquire)) {
        if (sync_database()) log_->release(applied_, true);
        return;
      }
      // A stop copies for at most kStopCopy: what is left stays in the log, and the next open
      // copies it before anything else (a stop must end within its deadline).
      if (!stop_began) stop_began = std::chrono::steady_clock::now();
      if (std::chrono::steady_clock::now() - *stop_began >= kStopCopy) return;
    }
  }
}

tl::expected<void, std::string> Journal::sync_database() {
  if (auto r = sqlite::pragma(db_, "PRAGMA synchronous=FULL"); !r) {
    return tl::unexpected(std::move(r.error()));
  }
  tl::expected<void, std::string> done;
  {
    auto tx = Transaction::begin(db_, Transaction::Mode::kWrite, "journal: syncing the database");
    if (!tx) {
      done = tl::unexpected(std::move(tx.error()));
    } else {
      // A write, so that the commit has a WAL frame to sync (and with it every frame before).
      Writer& w = *writer_;
      w.update_meta.reset();
      w.update_meta.bind(1, std::int64_t{0});
      w.update_meta.bind(2, static_cast<std::int64_t>(applied_));
      done = w.update_meta.run();
      if (done) done = tx->commit();
    }
  }
  (void)sqlite::pragma(db_, "PRAGMA synchronous=NORMAL");
  return done;
}

void Journal::catch_up_index() {
  if (!index_thread_.joinable()) return;  // not started: nothing is being copied
  std::uint64_t target = 0;
  {
    std::lock_guard lock(mu_);
    target = pushed_;
  }
  const auto copied = [&] {
    return indexed_pushes_ >= target || failed_pushes_ >= target || index_stop_;
  };
  {
    std::lock_guard lock(index_mu_);
    if (copied()) return;  // the database has it all already: no wake, no boost
  }
  {
    std::lock_guard lock(mu_);
    // What is appended goes out now: notes do not wait for an accept's frame (kNoteDelay).
    if (!open_->records.empty()) {
      open_->write_now = true;
      wake_writer();
    }
  }
  // At most a day, so that the wait's deadline stays within the clock's range.
  const auto wait = std::chrono::milliseconds(
      std::min<std::uint64_t>(options_.history_wait_ms, std::uint64_t{24} * 3600 * 1000));
  hurry_indexer(true);
  {
    std::unique_lock lock(index_mu_);
    ++hurry_;
    index_wake_.notify_one();
    index_done_.wait_for(lock, wait, copied);
    --hurry_;
  }
  hurry_indexer(false);
}

// In the background the indexer runs only on a core that would idle: with every core busy (a
// load, or other processes) a history read would wait its whole history_wait_ms and then answer
// from a database behind it. So while reads wait, the indexer takes a normal share (the
// checkpointer stays where it is: a read does not wait for it); set_classes_locked() decides.
void Journal::hurry_indexer(bool begin) {
  bool demote_self = false;
  {
    std::lock_guard lock(boost_mu_);
    reads_waiting_ += begin ? 1 : -1;
    demote_self = set_classes_locked();  // a history read never runs on the indexer: false
  }
  if (demote_self) enter_background();
}

}  // namespace fanout::engine
