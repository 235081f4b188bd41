// The engine's journal: durable acceptance, retry state and delivery history (docs in
// engine/README.md, "Durability"). Internal to the engine; embedders reach it through
// EngineOptions::durability and the Engine's history calls.
//
// Two stores, one the log of the other:
// - DIR/journal-log/: an append-only log (journal_log.h). Each group commit is one frame,
//   written and fdatasync'd by the writer thread; a record is durable once its frame is. This is
//   all an accepted event waits for.
// - DIR/journal.db: SQLite (WAL, synchronous=NORMAL), the queryable copy: recovery reads the
//   deliveries to resume from it, the history calls read it. The indexer thread copies the log's
//   frames into it in large transactions, each recording the last frame copied, not synced; a
//   segment wholly copied is removed after one synced commit (sync_database()). At open, the frames
//   after that one are copied before anything else, so the database is then as of the last whole
//   frame (a torn or partial tail is never read).
//
//   producers, workers (any thread)   writer thread               indexer thread
//   ─────────────────────────────     ─────────────────────────   ───────────────────────────
//   accept / attempt / final:         swap the open batch out;    read the frames synced since;
//     lock; check the id; append a    one frame: writev +         one transaction: their rows,
//     fixed record + its bytes to     fdatasync; durable_seq =    the last frame's number, the
//     the open batch; unlock          its last did; on_commit()   purge; COMMIT; drop segments
//
// Group commit: everything appended while the writer syncs goes into the next frame, so the cost
// of a sync is shared by every event that arrived during the previous one. An accepted delivery
// and its final outcome in the same frame, with no history kept, never reach the database.
//
// Sequence: each accepted delivery gets a delivery id (did) under the lock, so dids are in batch
// order and "every did <= durable_seq() is on disk" holds after each commit, except the dids of
// a batch whose commit failed (reported by on_commit; durable_seq() is a high-water mark). dids
// never repeat across restarts (each frame carries the high-water mark).
//
// Invariants: a row of `deliveries` without an outcome is an accepted delivery that has no final
// outcome yet, as of the last frame indexed; with the frames after it, as of the last frame
// synced. Only an attempt in flight when the process died is missing, so it is made again with
// the same number. History reads first let the indexer catch up with what was appended before
// them (at most kIndexWait).
#pragma once

#include <sqlite3.h>

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <filesystem>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <vector>

#include <tl/expected.hpp>

#include "fanout/engine.h"
#include "transport/client/client.h"

namespace fanout::sqlite {
class Statement;
}  // namespace fanout::sqlite

namespace fanout::engine {

class JournalLog;

// A reading position in the journal's log (journal_log.h): the next frame expected and where.
struct JournalLogCursor {
  std::uint64_t first = 0;   // the segment read (by its first frame); 0: the oldest one
  std::uint64_t offset = 0;  // in it
  std::uint64_t next = 0;    // the frame expected there; 0: the oldest segment's first
};

class Journal {
 public:
  // `catalogue` maps type ids to the names stored; it must outlive the journal.
  [[nodiscard]] static tl::expected<std::unique_ptr<Journal>, std::string> open(
      const DurabilityOptions& options, const routing::EventCatalogue& catalogue);
  ~Journal();
  Journal(const Journal&) = delete;
  Journal& operator=(const Journal&) = delete;

  // A delivery read back at open: accepted, not final.
  struct Recovered {
    std::int64_t did = 0;
    Unfinished u;
  };
  // Every delivery without a final outcome, by did (read once, at open).
  [[nodiscard]] std::vector<Recovered> take_recovered() { return std::move(recovered_); }

  // Starts the writer thread.
  void start();
  // Commits everything appended so far, then stops the writer. Idempotent.
  void stop();

  // While a thread holds the journal (Producer::Batch), what it appends does not wake the log's
  // writer; the outermost release does, once. For a caller that appends many deliveries it
  // answers together (fanoutd's ingest: one answer for a request's events, once all are on
  // disk): the writer takes them in one frame and one sync, instead of waking at the first and
  // syncing it (nearly) alone while the rest wait for the next frame. Best effort: a writer
  // awake for another reason (a frame just synced, a worker's notes, the periodic purge) takes
  // what it finds; other threads' appends wake it as before. hold() returns what to give
  // release(): the journal this thread held before (holds nest). Null `journal`: nothing.
  static Journal* hold(Journal* journal) noexcept;
  static void release(Journal* journal, Journal* outer) noexcept;
  // Whether the writer is waiting for appends (nothing to write): tests.
  [[nodiscard]] bool writer_waiting() const {
    std::lock_guard lock(mu_);
    return writer_waiting_;
  }

  enum class Admit : std::uint8_t { kAccepted, kDuplicate, kFailing };
  // Records an accepted delivery and returns its did in `did`. When `check_id` (an id the
  // caller gave) and idempotency is on, an (org_id, event_id) seen within the window answers
  // kDuplicate and records nothing. kFailing while the last commit failed (nothing recorded).
  [[nodiscard]] Admit accept(std::int64_t org_id, routing::EventTypeId type,
                             std::string_view event_id, std::string_view body,
                             std::int64_t subscription_id, bool check_id, std::int64_t resend_of,
                             std::int64_t& did);
  // An attempt's result. `next_ms` (wall clock) when a retry is scheduled, else 0; `outcome`
  // when this attempt was the last.
  void attempt(std::int64_t did, std::uint32_t n, int status, transport::Failure failure,
               std::uint32_t duration_us, std::int64_t next_ms, std::optional<OutcomeKind> outcome);
  // A final outcome reached without an attempt (dropped).
  void final(std::int64_t did, OutcomeKind outcome, std::uint32_t attempts);
  // attempt() and final() for many deliveries under one lock (a worker's loop iteration), in
  // order. `at_ms`: when (wall clock), taken by the caller as it happened.
  struct Note {
    std::int64_t did = 0;
    std::int64_t at_ms = 0;
    std::int64_t next_ms = 0;  // an attempt: the next one's due time, 0 when none
    std::uint32_t n = 0;       // an attempt: its number; final only: the attempts made
    int status = 0;
    std::uint32_t duration_us = 0;
    transport::Failure failure = transport::Failure::kNone;
    bool attempt = true;  // false: a final outcome without an attempt (final())
    std::optional<OutcomeKind> outcome;
    // A final outcome reached without an attempt (what final() records).
    static Note final_only(std::int64_t did, std::int64_t at_ms, OutcomeKind outcome,
                           std::uint32_t attempts) noexcept {
      Note note;
      note.did = did;
      note.at_ms = at_ms;
      note.n = attempts;
      note.attempt = false;
      note.outcome = outcome;
      return note;
    }
  };
  void record(std::span<const Note> notes);

  [[nodiscard]] std::uint64_t durable_seq() const noexcept {
    return durable_.load(std::memory_order_acquire);
  }
  [[nodiscard]] std::uint64_t last_seq() const;
  // Every delivery accepted with a did up to this one is in the database, body included (as of
  // the indexer's last copy; since then some may have finished and, without history, gone).
  [[nodiscard]] std::int64_t indexed_did() const noexcept {
    return indexed_did_.load(std::memory_order_acquire);
  }
  [[nodiscard]] const DurabilityOptions& options() const noexcept { return options_; }
  // The database file (DIR/journal.db), for a BodyReader.
  [[nodiscard]] std::filesystem::path database_file() const;

  // Reads delivery bodies back from the database on a connection of its own (read-only, WAL:
  // never in the writer's or the indexer's way). One thread at a time: a worker keeps one.
  class BodyReader {
   public:
    [[nodiscard]] static tl::expected<std::unique_ptr<BodyReader>, std::string> open(
        const std::filesystem::path& file);
    ~BodyReader();
    BodyReader(const BodyReader&) = delete;
    BodyReader& operator=(const BodyReader&) = delete;
    // The body of delivery `did` into `out`; an error (naming the did) when the read failed or
    // found no body.
    [[nodiscard]] tl::expected<void, std::string> read(std::int64_t did, std::string& out);

   private:
    BodyReader() = default;
    sqlite3* db_ = nullptr;
    std::unique_ptr<sqlite::Statement> select_;  // finalized before db_ is closed
  };

  // --- history (a read-only connection of its own; one caller at a time) ---
  [[nodiscard]] tl::expected<DeliveryPage, std::string> deliveries(std::int64_t subscription_id,
                                                                   std::string_view outcome,
                                                                   std::int64_t offset,
                                                                   std::int64_t limit);
  // The newest delivery of `event_id` to `subscription_id`, as something to send again.
  [[nodiscard]] tl::expected<std::optional<Unfinished>, std::string> find(
      std::int64_t subscription_id, std::string_view event_id, std::int64_t& did);
  // Exhausted deliveries of `subscription_id` created at or after `since_ms` and not yet sent
  // again, oldest first.
  [[nodiscard]] tl::expected<std::vector<Recovered>, std::string> exhausted_since(
      std::int64_t subscription_id, std::int64_t since_ms);

  struct Stats {
    std::uint64_t commits = 0, commit_failures = 0, records = 0, bytes = 0;
    std::uint64_t indexed = 0, index_failures = 0;  // frames copied into SQLite; failed tries
    std::uint64_t backlog_waits = 0;  // the writer waited for the indexer (max_log_backlog_bytes)
    std::uint64_t index_boosts = 0;   // the indexer left the background (backlog near its bound)
    std::uint64_t checkpoints = 0;    // the checkpointer's passes that copied WAL frames
    std::uint64_t writer_wakes = 0;   // appends, closed holds and history reads that woke it
  };
  [[nodiscard]] Stats stats() const noexcept;

  // Implementation types (journal.cc).
  struct Record;
  struct Batch;
  struct Writer;

 private:
  // An idempotency key: the 128-bit XXH3 of the event id seeded with the org id (id_key()). 16
  // bytes where the id's text was kept twice (~80 bytes per remembered id in all, against ~200);
  // two ids share a key with probability ~n²/2^129, about 1e-27 for a million.
  struct IdKey {
    std::uint64_t lo = 0, hi = 0;
    bool operator==(const IdKey&) const = default;
  };
  struct IdKeyHash {
    std::size_t operator()(const IdKey& k) const noexcept { return k.lo; }
  };
  [[nodiscard]] static IdKey id_key(std::int64_t org_id, std::string_view event_id) noexcept;

  Journal(DurabilityOptions options, const routing::EventCatalogue& catalogue);
  void run();
  // The indexer thread, one pass of it (frames after applied_ up to `until`, one transaction,
  // the purge when `purge`), and the wait of a history read.
  void run_index();
  // Takes the indexer and the checkpointer out of the background, or puts them back, by the
  // log's backlog (writer and indexer threads).
  void steer_indexer(std::uint64_t backlog);
  // Bytes of frames appended and not yet copied into the database (under index_mu_).
  [[nodiscard]] std::uint64_t backlog_locked() const;
  [[nodiscard]] tl::expected<void, std::string> index(std::uint64_t until, bool purge);
  void catch_up_index();
  // A history read begins (true) or ends (false) its wait for the indexer (boost_mu_).
  void hurry_indexer(bool begin);
  // Sets index_tid_ or checkpoint_tid_ (under boost_mu_, where they are used).
  void publish_tid(std::atomic<pid_t>& tid, pid_t value);
  // The calling thread (indexer, checkpointer) into the background, outside boost_mu_.
  void enter_background();
  // Sets the indexer's and the checkpointer's classes to what the backlog and the history reads
  // want (under boost_mu_); true when the calling thread must call enter_background() after.
  [[nodiscard]] bool set_classes_locked();
  // Makes every transaction committed so far durable (the database runs with
  // synchronous=NORMAL: one commit with FULL syncs the WAL, and so everything before it).
  [[nodiscard]] tl::expected<void, std::string> sync_database();
  // The checkpointer thread (journal_index.cc, kCheckpointBytes) and the WAL hook that wakes it.
  void run_checkpoints();
  static int on_wal(void* self, sqlite3* db, const char* name, int frames);
  void push(const Record& r, std::string_view a = {}, std::string_view b = {},
            std::string_view c = {});
  // Under mu_: wakes the writer if it waits (counted in Stats::writer_wakes).
  void wake_writer();
  bool remember_id(std::int64_t org_id, std::string_view event_id, std::int64_t now_ms);
  void forget_ids(const Batch& batch);

  DurabilityOptions options_;
  const routing::EventCatalogue& catalogue_;
  sqlite3* db_ = nullptr;      // the writer's connection (writer thread only, after open)
  sqlite3* reader_ = nullptr;  // history queries
  std::mutex reader_mu_;
  std::unique_ptr<Writer> writer_;  // the SQLite statements (the indexer's, after open)
  std::unique_ptr<JournalLog> log_;
  std::vector<Recovered> recovered_;

  mutable std::mutex mu_;
  std::condition_variable wake_;
  std::unique_ptr<Batch> open_;  // appended to under mu_
  std::int64_t next_did_ = 1;    // under mu_
  std::uint64_t pushed_ = 0;     // under mu_: records appended so far
  bool stopping_ = false;        // under mu_
  bool writer_waiting_ = false;  // under mu_
  bool failing_ = false;         // under mu_: the last commit failed
  // Idempotency: (org_id, event id) keys accepted within the window, oldest first in id_order_
  // (IdKey, above).
  std::unordered_map<IdKey, std::int64_t, IdKeyHash> ids_;  // key → when accepted (ms)
  std::deque<std::pair<std::int64_t, IdKey>> id_order_;

  std::thread thread_;
  // The indexer: frames synced (writer) and copied (indexer), the push counts they cover.
  std::thread index_thread_;
  std::mutex index_mu_;
  std::condition_variable index_wake_;    // frames to copy, or stop
  std::condition_variable index_done_;    // indexed_pushes_ or failed_pushes_ moved
  std::atomic<std::uint64_t> logged_{0};  // the last frame synced
  std::uint64_t indexed_bytes_ = 0;       // under index_mu_: of the frames appended and copied
  std::uint64_t applied_ = 0;             // the last frame in SQLite (indexer thread; open)
  std::uint64_t synced_ = 0;              // the last frame durable in SQLite (indexer; open)
  std::uint64_t indexed_pushes_ = 0;      // under index_mu_
  std::uint64_t failed_pushes_ = 0;       // under index_mu_: of the last frame that failed
  bool index_stop_ = false;               // under index_mu_
  int hurry_ = 0;                         // under index_mu_: history reads waiting
  std::unique_ptr<Batch> frame_batch_;    // the frame being read by the indexer
  std::unique_ptr<Batch> index_batch_;    // the frames of the indexer's pass, gathered
  JournalLogCursor cursor_;               // after applied_ (indexer thread; open)
  sqlite3* checkpointer_db_ = nullptr;    // the checkpointer thread's connection
  int page_size_ = 4096;                  // the database's (kPageSize when it was made here)
  std::thread checkpoint_thread_;
  std::mutex checkpoint_mu_;
  std::condition_variable checkpoint_wake_;
  bool checkpoint_due_ = false;             // under checkpoint_mu_
  bool checkpoint_stop_ = false;            // under checkpoint_mu_
  std::atomic<bool> restart_ready_{false};  // the writer may restart the WAL cheaply
  std::atomic<std::uint64_t> durable_{0};
  std::atomic<std::int64_t> indexed_did_{0};  // indexed_did(): set at open, then by the indexer
  std::atomic<std::uint64_t> commits_{0}, commit_failures_{0}, records_{0}, bytes_{0};
  std::atomic<std::uint64_t> indexed_{0}, index_failures_{0}, backlog_waits_{0}, index_boosts_{0},
      checkpoints_{0}, writer_wakes_{0};
  // The two threads' scheduling classes (set_classes_locked()). backlog_out_ is written under
  // boost_mu_ and read without it where a stale value only costs a needless lock, or one gather
  // of 50 ms made or skipped.
  std::mutex boost_mu_;
  std::atomic<bool> backlog_out_{false};  // the backlog wants both out (steer_indexer)
  int reads_waiting_ = 0;                 // under boost_mu_: history reads waiting
  bool index_out_ = false;  // under boost_mu_: the class last set on the indexer is SCHED_OTHER
  bool checkpoint_out_ = false;  // under boost_mu_: the same for the checkpointer
  std::atomic<pid_t> index_tid_{0}, checkpoint_tid_{0};
  std::atomic<bool> stopping_seen_{false};  // stop() began: the writer no longer waits
  std::atomic<bool> index_failing_{false};  // the indexer's last copy failed
};

}  // namespace fanout::engine
