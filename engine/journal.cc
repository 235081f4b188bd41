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

#include "engine/sqlite.h"

namespace fanout::engine {

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

// Rows removed per purge statement, so that one purge never holds the writer for long.
constexpr std::int64_t kPurgeChunk = 10'000;
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

// The attempts of a `log` column (journal.cc's header); a malformed line is skipped.
std::vector<AttemptRecord> parse_log(std::string_view log) {
  std::vector<AttemptRecord> out;
  while (!log.empty()) {
    const std::size_t eol = log.find('\n');
    std::string_view line = log.substr(0, eol);
    log.remove_prefix(eol == std::string_view::npos ? log.size() : eol + 1);
    std::string_view f[4];
    std::size_t n = 0;
    while (n < 4 && !line.empty()) {
      const std::size_t sp = line.find(' ');
      if (sp == std::string_view::npos) break;
      f[n++] = line.substr(0, sp);
      line.remove_prefix(sp + 1);
    }
    if (n != 4) continue;
    AttemptRecord a;
    std::int64_t at = 0;
    bool ok = true;
    auto num = [&ok](std::string_view t, auto& v) {
      const auto [p, ec] = std::from_chars(t.data(), t.data() + t.size(), v);
      ok = ok && ec == std::errc() && p == t.data() + t.size();
    };
    num(f[0], a.n);
    num(f[1], at);
    num(f[2], a.status);
    num(f[3], a.duration_us);
    if (!ok) continue;
    a.at_unix_ms = at;
    a.failure = std::string(line);  // the rest of the line
    out.push_back(std::move(a));
  }
  return out;
}

std::optional<OutcomeKind> outcome_from_name(std::string_view name) {
  for (OutcomeKind k : {OutcomeKind::kDelivered, OutcomeKind::kRejected, OutcomeKind::kExhausted,
                        OutcomeKind::kDropped}) {
    if (to_string(k) == name) return k;
  }
  return std::nullopt;
}

// The columns every read of deliveries to start again selects, in this order.
constexpr std::string_view kRecoveredColumns =
    "SELECT d.did, d.event_id, d.org_id, d.event_type, d.subscription_id, b.body, d.attempts, "
    "d.next_ms FROM deliveries d JOIN bodies b ON b.did = d.did ";

Journal::Recovered recovered_from_row(const Statement& s) {
  Journal::Recovered r;
  r.did = s.int64(0);
  r.u.event_id = s.text(1);
  r.u.org_id = s.int64(2);
  r.u.event_type = s.text(3);
  r.u.subscription_id = s.int64(4);
  r.u.body = s.blob(5);
  r.u.attempts = static_cast<std::uint32_t>(std::clamp<std::int64_t>(s.int64(6), 0, 1000));
  r.u.next_attempt_unix_ms = s.int64(7);
  return r;
}

}  // namespace

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
  std::size_t offset = 0;  // kAccept: id then body in Batch::bytes
  std::uint32_t id_size = 0;
  std::uint32_t body_size = 0;
};

struct Journal::Batch {
  std::vector<Record> records;
  std::string bytes;
  std::uint64_t last_did = 0;  // every did up to here is in this batch or before
  std::uint64_t first_accept = 0, last_accept = 0;  // dids accepted in this batch
  void clear() noexcept {
    records.clear();
    bytes.clear();
    last_did = first_accept = last_accept = 0;
  }
};

// The writer thread's connection and statements.
struct Journal::Writer {
  sqlite3* db;
  Statement insert_delivery, update_attempt, finish, remove, insert_body, remove_body, insert_id,
      update_meta;
  // Per batch: the final record of each delivery that ends in it; the deliveries whose row was
  // written final (or, without history, not at all) when accepted in it, with their attempts'
  // log lines.
  std::unordered_map<std::int64_t, const Record*> finished_here;
  std::unordered_map<std::int64_t, std::string> settled_logs;
  std::string line;  // one attempt's log line
  std::chrono::steady_clock::time_point next_purge{};
  std::uint64_t final_rows = 0;  // final deliveries kept for history

  static tl::expected<std::unique_ptr<Writer>, std::string> make(sqlite3* db) {
    auto p = [db](std::string_view sql, const char* what) {
      return Statement::prepare(db, sql, what);
    };
    auto a =
        p("INSERT INTO deliveries (did, event_id, org_id, event_type, subscription_id, "
          "created_ms, resend_of, attempts, outcome, finished_ms, log) "
          "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
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
    auto h = p("UPDATE meta SET next_did = ?1 WHERE id = 1", "journal: recording the next id");
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

namespace {

// One attempt's line of the `log` column: "n at_ms status duration_us failure\n", the failure
// text (transport::to_string, may hold spaces) last and empty when there was a status.
void append_log_line(std::string& out, const Journal::Record& r) {
  char buf[64];
  const int n = std::snprintf(buf, sizeof buf, "%u %lld %d %u ", r.n,
                              static_cast<long long>(r.time_ms), r.status, r.duration_us);
  if (n > 0) out.append(buf, std::min(static_cast<std::size_t>(n), sizeof buf - 1));
  if (r.failure != transport::Failure::kNone) out.append(transport::to_string(r.failure));
  out.push_back('\n');
}

// One batch in one transaction (the caller commits).
tl::expected<void, std::string> write_records(Journal::Writer& w, const Journal::Batch& batch,
                                              const DurabilityOptions& o,
                                              const routing::EventCatalogue& catalogue) {
  using Kind = Journal::Record::Kind;
  const bool keep_history = o.history_ms > 0;
  // A delivery accepted and finished within this batch is written once, already final with its
  // whole log (and, without history, not at all).
  w.finished_here.clear();
  w.settled_logs.clear();
  for (const auto& r : batch.records) {
    if (r.kind != Kind::kAccept && r.has_outcome) w.finished_here[r.did] = &r;
  }
  for (const auto& r : batch.records) {
    if (r.kind == Kind::kAccept && w.finished_here.count(r.did) != 0) w.settled_logs[r.did];
  }
  if (keep_history) {
    for (const auto& r : batch.records) {
      if (r.kind != Kind::kAttempt) continue;
      if (auto it = w.settled_logs.find(r.did); it != w.settled_logs.end()) {
        append_log_line(it->second, r);
      }
    }
  }
  const std::string_view bytes = batch.bytes;
  for (const auto& r : batch.records) {
    const auto settled = w.settled_logs.find(r.did);
    if (r.kind == Kind::kAccept) {
      const std::string_view id = bytes.substr(r.offset, r.id_size);
      if (r.remember_id) {
        w.insert_id.reset();
        w.insert_id.bind(1, r.org_id);
        w.insert_id.bind_text(2, id);
        w.insert_id.bind(3, r.time_ms);
        if (auto ok = w.insert_id.run(); !ok) return ok;
      }
      const Journal::Record* fin =
          settled == w.settled_logs.end() ? nullptr : w.finished_here.at(r.did);
      if (fin != nullptr && !keep_history) continue;
      const std::string_view body = bytes.substr(r.offset + r.id_size, r.body_size);
      Statement& s = w.insert_delivery;
      s.reset();
      s.bind(1, r.did);
      s.bind_text(2, id);
      s.bind(3, r.org_id);
      s.bind_text(4, catalogue.name(r.type));
      s.bind(5, r.subscription_id);
      s.bind(6, r.time_ms);
      if (r.resend_of != 0) {
        s.bind(7, r.resend_of);
      } else {
        s.bind_null(7);
      }
      if (fin != nullptr) {
        s.bind(8, static_cast<std::int64_t>(fin->n));
        s.bind(9, static_cast<std::int64_t>(fin->outcome));
        s.bind(10, fin->time_ms);
        s.bind_text(11, settled->second);
        ++w.final_rows;
      } else {
        s.bind(8, std::int64_t{0});
        s.bind_null(9);
        s.bind_null(10);
        s.bind_text(11, {});
      }
      if (auto ok = s.run(); !ok) return ok;
      w.insert_body.reset();
      w.insert_body.bind(1, r.did);
      w.insert_body.bind_blob(2, body.data(), body.size());
      if (auto ok = w.insert_body.run(); !ok) return ok;
      continue;
    }
    if (settled != w.settled_logs.end()) continue;  // written whole with its accept
    w.line.clear();
    if (keep_history && r.kind == Kind::kAttempt) append_log_line(w.line, r);
    if (!r.has_outcome) {
      Statement& s = w.update_attempt;
      s.reset();
      s.bind(1, r.did);
      s.bind(2, static_cast<std::int64_t>(r.n));
      s.bind(3, r.next_ms);
      s.bind_text(4, w.line);
      if (auto ok = s.run(); !ok) return ok;
    } else if (keep_history) {
      Statement& s = w.finish;
      s.reset();
      s.bind(1, r.did);
      s.bind(2, static_cast<std::int64_t>(r.outcome));
      s.bind(3, static_cast<std::int64_t>(r.n));
      s.bind(4, r.time_ms);
      s.bind_text(5, w.line);
      if (auto ok = s.run(); !ok) return ok;
      w.final_rows += static_cast<std::uint64_t>(sqlite3_changes(w.db));
    } else {
      w.remove.reset();
      w.remove.bind(1, r.did);
      if (auto ok = w.remove.run(); !ok) return ok;
      w.remove_body.reset();
      w.remove_body.bind(1, r.did);
      if (auto ok = w.remove_body.run(); !ok) return ok;
    }
  }
  w.update_meta.reset();
  w.update_meta.bind(1, static_cast<std::int64_t>(batch.last_did + 1));
  return w.update_meta.run();
}

// The first did created at or after `cutoff_ms` (dids grow with created_ms), by binary search
// over did ranges; one past the last did when every row is older.
tl::expected<std::int64_t, std::string> first_did_since(sqlite3* db, std::int64_t cutoff_ms) {
  auto at = Statement::prepare(
      db, "SELECT did, created_ms FROM deliveries WHERE did >= ?1 ORDER BY did LIMIT 1",
      "journal: finding the history window");
  if (!at) return tl::unexpected(std::move(at.error()));
  auto bounds = Statement::prepare(db, "SELECT min(did), max(did) FROM deliveries",
                                   "journal: finding the history window");
  if (!bounds) return tl::unexpected(std::move(bounds.error()));
  auto row = bounds->step();
  if (!row) return tl::unexpected(std::move(row.error()));
  if (!*row || bounds->is_null(0)) return std::int64_t{0};
  std::int64_t lo = bounds->int64(0), hi = bounds->int64(1) + 1;  // answer in [lo, hi]
  while (lo < hi) {
    const std::int64_t mid = lo + (hi - lo) / 2;
    at->reset();
    at->bind(1, mid);
    auto r = at->step();
    if (!r) return tl::unexpected(std::move(r.error()));
    if (!*r) {
      hi = mid;  // nothing at or after mid
    } else if (at->int64(1) >= cutoff_ms) {
      hi = std::min(mid, at->int64(0));
    } else {
      lo = at->int64(0) + 1;
    }
  }
  return lo;
}

// Final deliveries past the history window or over the row cap, and event ids past the
// idempotency window, a chunk at a time.
tl::expected<void, std::string> purge(Journal::Writer& w, const DurabilityOptions& o,
                                      std::int64_t now) {
  auto exec = [&w](std::string_view sql, std::int64_t a, std::int64_t b,
                   const char* what) -> tl::expected<std::int64_t, std::string> {
    auto s = Statement::prepare(w.db, sql, what);
    if (!s) return tl::unexpected(std::move(s.error()));
    s->bind(1, a);
    s->bind(2, b);
    if (auto ok = s->run(); !ok) return tl::unexpected(std::move(ok.error()));
    return sqlite3_changes(w.db);
  };
  if (o.history_ms > 0) {
    auto cut = first_did_since(w.db, now - static_cast<std::int64_t>(o.history_ms));
    if (!cut) return tl::unexpected(std::move(cut.error()));
    // The same chunk from bodies, then from deliveries (one transaction: the same rows).
    constexpr std::string_view kOld =
        "did IN (SELECT did FROM deliveries WHERE did < ?1 AND outcome IS NOT NULL LIMIT ?2)";
    auto gone = exec("DELETE FROM bodies WHERE " + std::string(kOld), *cut, kPurgeChunk,
                     "journal: purging old bodies");
    if (!gone) return tl::unexpected(std::move(gone.error()));
    auto old = exec("DELETE FROM deliveries WHERE " + std::string(kOld), *cut, kPurgeChunk,
                    "journal: purging old deliveries");
    if (!old) return tl::unexpected(std::move(old.error()));
    w.final_rows -= std::min(w.final_rows, static_cast<std::uint64_t>(*old));
    if (w.final_rows > o.max_history_rows) {
      const auto over = static_cast<std::int64_t>(w.final_rows - o.max_history_rows);
      // ?2 is 1: exec() binds two parameters.
      constexpr std::string_view kOldest =
          "did IN (SELECT did FROM deliveries WHERE outcome IS NOT NULL ORDER BY did "
          "LIMIT ?1 * ?2)";
      gone = exec("DELETE FROM bodies WHERE " + std::string(kOldest), std::min(over, kPurgeChunk),
                  1, "journal: purging the oldest bodies");
      if (!gone) return tl::unexpected(std::move(gone.error()));
      auto capped = exec("DELETE FROM deliveries WHERE " + std::string(kOldest),
                         std::min(over, kPurgeChunk), 1, "journal: purging the oldest deliveries");
      if (!capped) return tl::unexpected(std::move(capped.error()));
      w.final_rows -= std::min(w.final_rows, static_cast<std::uint64_t>(*capped));
    }
  }
  if (o.idempotency_ms > 0) {
    auto e = exec(
        "DELETE FROM event_ids WHERE (org_id, event_id) IN (SELECT org_id, event_id FROM "
        "event_ids WHERE at_ms < ?1 LIMIT ?2)",
        now - static_cast<std::int64_t>(o.idempotency_ms), kPurgeChunk,
        "journal: purging old event ids");
    if (!e) return tl::unexpected(std::move(e.error()));
  } else {
    // Idempotency off: no id is kept (the condition holds for every row).
    auto e = exec("DELETE FROM event_ids WHERE at_ms > ?1 OR at_ms <= ?2", 0, 0,
                  "journal: clearing event ids");
    if (!e) return tl::unexpected(std::move(e.error()));
  }
  return {};
}

}  // namespace

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
        written = write_records(w, *batch, options_, catalogue_);
        if (written && purge_due) written = purge(w, options_, now_ms());
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

// --- history ------------------------------------------------------------------------------------

tl::expected<DeliveryPage, std::string> Journal::deliveries(std::int64_t subscription_id,
                                                            std::string_view outcome,
                                                            std::int64_t offset,
                                                            std::int64_t limit) {
  std::lock_guard lock(reader_mu_);
  std::string filter;
  std::int64_t kind = -1;
  if (outcome == "pending") {
    filter = " AND outcome IS NULL";
  } else if (!outcome.empty()) {
    const auto k = outcome_from_name(outcome);
    if (!k) return tl::unexpected("unknown outcome \"" + std::string(outcome) + "\"");
    kind = static_cast<std::int64_t>(*k);
    filter = " AND outcome = ?2";
  }
  auto tx = Transaction::begin(reader_, Transaction::Mode::kRead, "reading delivery history");
  if (!tx) return tl::unexpected(std::move(tx.error()));
  DeliveryPage page;
  {
    auto s = Statement::prepare(
        reader_, "SELECT count(*) FROM deliveries WHERE subscription_id = ?1" + filter,
        "counting deliveries");
    if (!s) return tl::unexpected(std::move(s.error()));
    s->bind(1, subscription_id);
    if (kind >= 0) s->bind(2, kind);
    auto row = s->step();
    if (!row) return tl::unexpected(std::move(row.error()));
    page.count = *row ? s->int64(0) : 0;
  }
  auto s = Statement::prepare(
      reader_,
      "SELECT did, event_id, event_type, created_ms, outcome, finished_ms, attempts, next_ms, "
      "resend_of, log FROM deliveries WHERE subscription_id = ?1" +
          filter + " ORDER BY did DESC LIMIT ?3 OFFSET ?4",
      "reading deliveries");
  if (!s) return tl::unexpected(std::move(s.error()));
  s->bind(1, subscription_id);
  if (kind >= 0) s->bind(2, kind);
  s->bind(3, limit);
  s->bind(4, offset);
  for (;;) {
    auto row = s->step();
    if (!row) return tl::unexpected(std::move(row.error()));
    if (!*row) break;
    DeliveryRecord d;
    d.event_id = s->text(1);
    d.event_type = s->text(2);
    d.created_unix_ms = s->int64(3);
    if (!s->is_null(4)) {
      d.outcome = static_cast<OutcomeKind>(std::clamp<std::int64_t>(s->int64(4), 0, 3));
      d.finished_unix_ms = s->int64(5);
    } else {
      d.next_attempt_unix_ms = s->int64(7);
    }
    d.attempts_made = static_cast<std::uint32_t>(std::clamp<std::int64_t>(s->int64(6), 0, 1000));
    d.resent = !s->is_null(8);
    d.attempts = parse_log(s->text(9));
    page.items.push_back(std::move(d));
  }
  return page;
}

tl::expected<std::optional<Unfinished>, std::string> Journal::find(std::int64_t subscription_id,
                                                                   std::string_view event_id,
                                                                   std::int64_t& did) {
  std::lock_guard lock(reader_mu_);
  auto s =
      Statement::prepare(reader_,
                         "SELECT d.did, d.org_id, d.event_type, b.body FROM deliveries d "
                         "JOIN bodies b ON b.did = d.did WHERE "
                         "d.subscription_id = ?1 AND d.event_id = ?2 ORDER BY d.did DESC LIMIT 1",
                         "finding a delivery");
  if (!s) return tl::unexpected(std::move(s.error()));
  s->bind(1, subscription_id);
  s->bind_text(2, event_id);
  auto row = s->step();
  if (!row) return tl::unexpected(std::move(row.error()));
  if (!*row) return std::optional<Unfinished>();
  did = s->int64(0);
  Unfinished u;
  u.event_id = std::string(event_id);
  u.org_id = s->int64(1);
  u.event_type = s->text(2);
  u.body = s->blob(3);
  u.subscription_id = subscription_id;
  return std::optional<Unfinished>(std::move(u));
}

tl::expected<std::vector<Journal::Recovered>, std::string> Journal::exhausted_since(
    std::int64_t subscription_id, std::int64_t since_ms) {
  std::lock_guard lock(reader_mu_);
  auto s = Statement::prepare(
      reader_,
      std::string(kRecoveredColumns) +
          "WHERE d.subscription_id = ?1 AND d.outcome = ?2 AND d.created_ms >= ?3 AND NOT EXISTS "
          "(SELECT 1 FROM deliveries r WHERE r.resend_of = d.did) ORDER BY d.did",
      "finding exhausted deliveries");
  if (!s) return tl::unexpected(std::move(s.error()));
  s->bind(1, subscription_id);
  s->bind(2, static_cast<std::int64_t>(OutcomeKind::kExhausted));
  s->bind(3, since_ms);
  std::vector<Recovered> out;
  for (;;) {
    auto row = s->step();
    if (!row) return tl::unexpected(std::move(row.error()));
    if (!*row) break;
    Recovered r = recovered_from_row(*s);
    r.u.attempts = 0;  // to be sent again from attempt 1
    r.u.next_attempt_unix_ms = 0;
    out.push_back(std::move(r));
  }
  return out;
}

}  // namespace fanout::engine
