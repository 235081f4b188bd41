// Internals shared by the journal's files (journal.h): the records appended and the writer's
// statements (journal.cc), the writes of one batch and the purge (journal_write.cc), and the
// row formats both the writer and the readers know (journal_history.cc). Not for other files.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "engine/journal.h"
#include "engine/sqlite.h"

namespace fanout::engine {

// One fixed-size record; an accept's event id and body are in the batch's byte buffer.
struct Journal::Record {
  enum class Kind : std::uint8_t { kAccept, kAttempt, kFinal };
  Kind kind = Kind::kAccept;
  bool has_outcome = false;
  bool remember_id = false;  // kAccept: the id is an idempotency key
  OutcomeKind outcome = OutcomeKind::kDelivered;
  transport::Failure failure = transport::Failure::kNone;
  routing::EventTypeId type = 0;
  std::uint32_t n = 0;  // kAttempt: the attempt's number; kFinal: attempts made
  int status = 0;
  std::uint32_t duration_us = 0;
  std::int64_t did = 0;
  std::int64_t org_id = 0;
  std::int64_t subscription_id = 0;
  std::int64_t time_ms = 0;  // kAccept: created; kAttempt, kFinal: when
  std::int64_t next_ms = 0;  // kAttempt: the next attempt's due time, 0 when none
  std::int64_t resend_of = 0;
  std::size_t offset = 0;  // kAccept: id, body, then the type's name in Batch::bytes
  std::uint32_t id_size = 0;
  std::uint32_t body_size = 0;
  std::uint32_t type_size = 0;
};

struct Journal::Batch {
  std::vector<Record> records;
  std::string bytes;
  std::uint64_t last_did = 0;  // every did up to here is in this batch or before
  std::uint64_t first_accept = 0, last_accept = 0;  // dids accepted in this batch
  std::uint64_t pushes = 0;  // records appended to the journal up to this batch's last
  // The writer's: written at once (an accept is in it, or a history read waits for it); else
  // up to kNoteDelay after its first note came.
  bool write_now = false;
  std::chrono::steady_clock::time_point first_note{};
  void clear() noexcept {
    records.clear();
    bytes.clear();
    last_did = first_accept = last_accept = pushes = 0;
    write_now = false;
  }
  // Appends a later batch (the indexer gathers a pass's frames into one): its records, their
  // offsets moved past the bytes already here.
  void append(const Batch& later) {
    const std::size_t base = bytes.size();
    bytes += later.bytes;
    const std::size_t first = records.size();
    records.insert(records.end(), later.records.begin(), later.records.end());
    for (std::size_t i = first; i < records.size(); ++i) records[i].offset += base;
    last_did = std::max(last_did, later.last_did);
    pushes = std::max(pushes, later.pushes);
  }
};

// The writer thread's connection and statements.
struct Journal::Writer {
  sqlite3* db;
  sqlite::Statement insert_delivery, update_attempt, finish, remove, insert_body, remove_body,
      insert_id, update_meta;
  // Per batch, the deliveries accepted in it, sorted by did (write_records finds one by its
  // distance from the first, or by binary search): `fin`, the last record of the batch that gives
  // the delivery its final outcome, when it ends in the batch too. Such a delivery is written once,
  // final (without history, not at all), with its attempts' log lines from logs[i], i its place
  // here. Reused from batch to batch, so that a pass allocates nothing once they have grown: logs
  // keeps its strings, and each string its buffer.
  struct Accepted {
    std::int64_t did = 0;
    const Record* fin = nullptr;
  };
  std::vector<Accepted> accepted;
  std::vector<std::string> logs;
  std::string line;  // one attempt's log line
  std::chrono::steady_clock::time_point next_purge{};
  std::uint64_t final_rows = 0;  // final deliveries kept for history

  static tl::expected<std::unique_ptr<Writer>, std::string> make(sqlite3* db) {
    auto p = [db](std::string_view sql, const char* what) {
      return sqlite::Statement::prepare(db, sql, what);
    };
    auto a =
        p("INSERT INTO deliveries (did, event_id, org_id, event_type, subscription_id, "
          "created_ms, resend_of, attempts, outcome, finished_ms, log, body) "
          "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
          "journal: recording an accepted delivery");
    auto b = p("UPDATE deliveries SET attempts = ?2, next_ms = ?3, log = log || ?4 WHERE did = ?1",
               "journal: recording an attempt");
    auto d =
        p("UPDATE deliveries SET outcome = ?2, attempts = ?3, finished_ms = ?4, next_ms = 0, "
          "log = log || ?5 WHERE did = ?1",
          "journal: recording a final outcome");
    auto e = p("DELETE FROM deliveries WHERE did = ?1", "journal: removing a final delivery");
    auto f = p("INSERT INTO bodies (did, body) VALUES (?1, ?2)", "journal: recording a body");
    auto k = p("DELETE FROM bodies WHERE did = ?1", "journal: removing a body");
    auto g = p("INSERT OR REPLACE INTO event_ids (org_id, event_id, at_ms) VALUES (?1, ?2, ?3)",
               "journal: recording an event id");
    auto h = p("UPDATE meta SET next_did = max(next_did, ?1), log_frame = ?2 WHERE id = 1",
               "journal: recording the next id and the last frame copied");
    for (auto* s : {&a, &b, &d, &e, &f, &k, &g, &h}) {
      if (!*s) return tl::unexpected(std::move(s->error()));
    }
    return std::unique_ptr<Writer>(new Writer{db,
                                              std::move(*a),
                                              std::move(*b),
                                              std::move(*d),
                                              std::move(*e),
                                              std::move(*f),
                                              std::move(*k),
                                              std::move(*g),
                                              std::move(*h),
                                              {},
                                              {},
                                              {}});
  }
};

namespace journal_detail {

// The purge runs at most this often; after a failed copy the indexer tries again this much later
// (the log keeps everything), and a writer waiting for room checks again as often.
inline constexpr auto kPurgeEvery = std::chrono::seconds(1);
inline constexpr auto kIndexRetry = std::chrono::seconds(1);
// A worker's notes (attempts' results, outcomes) wait at most this long for an accept to share
// their frame before the writer syncs them alone: nothing waits for them to be durable, and a
// crash before they are only makes those attempts again (at least once).
inline constexpr auto kNoteDelay = std::chrono::milliseconds(10);

inline std::int64_t now_ms() noexcept {
  using namespace std::chrono;
  return duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
}

// Rows removed per purge statement, so that one purge never holds the writer for long.
inline constexpr std::int64_t kPurgeChunk = 10'000;

// One batch (a frame of the log) in the caller's transaction; the caller records the frame.
[[nodiscard]] tl::expected<void, std::string> write_records(Journal::Writer& w,
                                                            const Journal::Batch& batch,
                                                            const DurabilityOptions& o);
// Final deliveries past the history window or over the row cap, and event ids past the
// idempotency window, a chunk at a time (inside the caller's transaction).
[[nodiscard]] tl::expected<void, std::string> purge(Journal::Writer& w, const DurabilityOptions& o,
                                                    std::int64_t now_ms);

// The `log` column: one line per attempt, "n at_ms status duration_us failure\n", the failure
// text (transport::to_string, may hold spaces) last and empty when there was a status.
void append_log_line(std::string& out, const Journal::Record& r);
// The attempts of a `log` column; a malformed line is skipped.
[[nodiscard]] std::vector<AttemptRecord> parse_log(std::string_view log);

// The columns every read of deliveries to start again selects, in this order, and the reader of
// one such row. The body is the row's own or in bodies (journal.cc); a delivery with neither is
// left out. The caller appends its condition (and order): "... AND " ends this text.
inline constexpr std::string_view kRecoveredColumns =
    "SELECT d.did, d.event_id, d.org_id, d.event_type, d.subscription_id, "
    "coalesce(d.body, b.body), d.attempts, d.next_ms FROM deliveries d LEFT JOIN bodies b "
    "ON b.did = d.did WHERE coalesce(d.body, b.body) IS NOT NULL AND ";
[[nodiscard]] Journal::Recovered recovered_from_row(const sqlite::Statement& s);

// Puts thread `tid` of this process in the background (true) or takes it out; false when the
// kernel refuses (journal.cc).
bool background_priority(pid_t tid, bool background) noexcept;

}  // namespace journal_detail
}  // namespace fanout::engine
