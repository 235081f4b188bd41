// The engine's journal (engine/journal.h) on its own, without HTTP: what a reopened journal
// recovers, idempotency, a torn log tail (cut all along the last frame, every byte on request,
// and flipped bytes), bounded disk without history, the history queries, a failed commit
// and the purge of old history.
//
// Each test works in a fresh temporary directory that it removes. Nothing sleeps: a test waits
// for the writer by polling (std::this_thread::yield) or on a condition signalled from
// on_commit, always against a generous deadline that fails the test; no test measures time.
#include "engine/journal.h"
#include "engine/journal_log.h"
#include "engine/journal_rows.h"
#include "engine/sqlite.h"

#include <gtest/gtest.h>
#include <sched.h>
#include <sqlite3.h>
#include <stdlib.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <initializer_list>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <ostream>
#include <set>
#include <sstream>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include "routing/catalogue.h"
#include "tests/support/sanitized.h"
#include "tests/support/temp_dir.h"
#include "transport/client/client.h"

namespace fanout::engine {

// Readable gtest messages for the journal's answers.
void PrintTo(Journal::Admit a, std::ostream* os) {
  switch (a) {
    case Journal::Admit::kAccepted:
      *os << "kAccepted";
      return;
    case Journal::Admit::kDuplicate:
      *os << "kDuplicate";
      return;
    case Journal::Admit::kFailing:
      *os << "kFailing";
      return;
  }
  *os << "Admit(" << static_cast<int>(a) << ")";
}

namespace {

namespace fs = std::filesystem;
using Admit = Journal::Admit;
using Failure = transport::Failure;

// Far longer than any wait should take, even in a sanitizer build on a loaded machine; reaching
// it fails the test instead of hanging it.
constexpr auto kDeadline = std::chrono::seconds(120);

// A wall-clock time in the future, as a retry schedule would give (ms since the epoch).
constexpr std::int64_t kFuture = 1'900'000'000'000;

using fanout::testing::read_file;
using fanout::testing::TempDir;
using fanout::testing::write_file;

// Polls `done` (yielding in between) until it holds or the deadline passes.
bool wait_until(const std::function<bool()>& done) {
  const auto deadline = std::chrono::steady_clock::now() + kDeadline;
  while (!done()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::yield();
  }
  return true;
}

bool wait_durable(const Journal& j, std::int64_t did) {
  return wait_until([&] { return j.durable_seq() >= static_cast<std::uint64_t>(did); });
}

// Every record appended so far is committed (attempts and finals do not move durable_seq()).
bool wait_records(const Journal& j, std::uint64_t records) {
  return wait_until([&] { return j.stats().records >= records; });
}

std::int64_t wall_ms() {
  using namespace std::chrono;
  return duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
}

// Deterministic bytes of every value (NUL and 0xff included): bodies must come back exact.
std::string bytes_of(std::size_t n, std::uint32_t seed) {
  std::string s(n, '\0');
  std::uint32_t x = seed * 2654435761U + 0x9E3779B9U;
  for (char& c : s) {
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    c = static_cast<char>(x & 0xffU);
  }
  return s;
}

std::uint64_t fnv1a(std::string_view s) {
  std::uint64_t h = 0xcbf29ce484222325ULL;
  for (char c : s) {
    h ^= static_cast<unsigned char>(c);
    h *= 0x100000001b3ULL;
  }
  return h;
}

std::uintmax_t size_or_zero(const fs::path& p) {
  std::error_code ec;
  const std::uintmax_t n = fs::file_size(p, ec);
  return ec ? 0 : n;
}

// The journal's footprint: the database, its WAL and the log's segments.
std::uintmax_t disk_size(const fs::path& dir) {
  std::uintmax_t log = 0;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir / "journal-log", ec)) {
    log += size_or_zero(e.path());
  }
  return size_or_zero(dir / "journal.db") + size_or_zero(dir / "journal.db-wal") + log;
}

// --- expected states: the deliveries without a final outcome, by did ---------------------------

using State = std::map<std::int64_t, Unfinished>;

bool same(const Unfinished& a, const Unfinished& b) {
  return a.event_id == b.event_id && a.org_id == b.org_id && a.event_type == b.event_type &&
         a.body == b.body && a.subscription_id == b.subscription_id && a.attempts == b.attempts &&
         a.next_attempt_unix_ms == b.next_attempt_unix_ms;
}

bool same(const State& a, const State& b) {
  if (a.size() != b.size()) return false;
  for (auto ia = a.begin(), ib = b.begin(); ia != a.end(); ++ia, ++ib) {
    if (ia->first != ib->first || !same(ia->second, ib->second)) return false;
  }
  return true;
}

std::string describe(const State& s) {
  std::ostringstream out;
  if (s.empty()) out << "  (none)\n";
  for (const auto& [did, u] : s) {
    out << "  did=" << did << " id=" << u.event_id << " org=" << u.org_id
        << " type=" << u.event_type << " sub=" << u.subscription_id << " attempts=" << u.attempts
        << " next=" << u.next_attempt_unix_ms << " body=" << u.body.size() << " bytes, fnv "
        << std::hex << fnv1a(u.body) << std::dec << "\n";
  }
  return out.str();
}

// take_recovered() as a State; `ordered` tells whether it came by increasing did.
State as_state(const std::vector<Journal::Recovered>& v, bool* ordered = nullptr) {
  State s;
  bool in_order = true;
  std::int64_t previous = 0;
  for (const auto& r : v) {
    if (r.did <= previous) in_order = false;
    previous = r.did;
    s.emplace(r.did, r.u);
  }
  if (ordered != nullptr) *ordered = in_order && s.size() == v.size();
  return s;
}

Unfinished unfinished(std::string id, std::int64_t org, std::string_view type, std::string body,
                      std::int64_t sub) {
  Unfinished u;
  u.event_id = std::move(id);
  u.org_id = org;
  u.event_type = std::string(type);
  u.body = std::move(body);
  u.subscription_id = sub;
  return u;
}

// Records on_commit calls. With `hold`, the writer thread stays inside the callback after each
// successful (or failed) commit until the test releases it: while it is held, nothing is
// committed and the files do not change, and everything appended meanwhile goes into the next
// transaction as one group.
class CommitGate {
 public:
  struct Call {
    std::uint64_t first = 0, last = 0;
    bool ok = false;
  };
  CommitGate(bool hold_ok, bool hold_failed) : hold_ok_(hold_ok), hold_failed_(hold_failed) {}

  std::function<void(std::uint64_t, std::uint64_t, bool)> callback() {
    return [this](std::uint64_t first, std::uint64_t last, bool ok) {
      std::unique_lock lock(mu_);
      calls_.push_back({first, last, ok});
      const std::size_t n = calls_.size();
      cv_.notify_all();
      if (ok ? hold_ok_ : hold_failed_) {
        cv_.wait(lock, [&] { return released_ >= n || open_; });
      }
    };
  }
  // Waits (bounded) for the n-th call.
  bool wait_calls(std::size_t n) {
    std::unique_lock lock(mu_);
    return cv_.wait_until(lock, std::chrono::steady_clock::now() + kDeadline,
                          [&] { return calls_.size() >= n; });
  }
  // Lets the writer out of every call made so far.
  void release() {
    std::lock_guard lock(mu_);
    released_ = calls_.size();
    cv_.notify_all();
  }
  // Never holds the writer again.
  void open() {
    std::lock_guard lock(mu_);
    open_ = true;
    cv_.notify_all();
  }
  std::vector<Call> calls() const {
    std::lock_guard lock(mu_);
    return calls_;
  }
  // The i-th call (0-based; a default Call if there is none yet), and the last one.
  Call call(std::size_t i) const {
    std::lock_guard lock(mu_);
    return i < calls_.size() ? calls_[i] : Call{};
  }
  Call last_call() const {
    std::lock_guard lock(mu_);
    return calls_.empty() ? Call{} : calls_[calls_.size() - 1];
  }

 private:
  const bool hold_ok_, hold_failed_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::vector<Call> calls_;
  std::size_t released_ = 0;
  bool open_ = false;
};

// Opens the gate when it goes out of scope. Declared after the journal, it runs first, so the
// journal's stop() never waits for a writer held in the gate (a failed ASSERT returns early).
struct OpenOnExit {
  CommitGate& gate;
  ~OpenOnExit() { gate.open(); }
};

class JournalTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_FALSE(dir_.path().empty()) << "mkdtemp failed";
    auto id = catalogue_.add("custom_thing");
    ASSERT_TRUE(id.has_value());
    custom_ = *id;
  }

  [[nodiscard]] DurabilityOptions options(std::string_view sub = "journal") const {
    DurabilityOptions o;
    o.dir = (dir_.path() / sub).string();
    return o;
  }

  std::unique_ptr<Journal> open(const DurabilityOptions& o) {
    auto j = Journal::open(o, catalogue_);
    EXPECT_TRUE(j.has_value()) << j.error();
    return j ? std::move(*j) : nullptr;
  }

  // The type names in use, the added one included.
  [[nodiscard]] std::string_view type_name(std::size_t i) const {
    return catalogue_.name(static_cast<routing::EventTypeId>(i % catalogue_.size()));
  }

  Admit accept(Journal& j, const Unfinished& u, std::int64_t& did, bool check_id = true,
               std::int64_t resend_of = 0) {
    const auto type = catalogue_.find(u.event_type);
    EXPECT_TRUE(type.has_value()) << u.event_type;
    return j.accept(u.org_id, type.value_or(0), u.event_id, u.body, u.subscription_id, check_id,
                    resend_of, did);
  }

  // Accepts `u` (a new did, larger than any before) and returns its did.
  std::int64_t accept_ok(Journal& j, const Unfinished& u, bool check_id = true,
                         std::int64_t resend_of = 0) {
    std::int64_t did = 0;
    const std::uint64_t before = j.last_seq();
    EXPECT_EQ(accept(j, u, did, check_id, resend_of), Admit::kAccepted) << u.event_id;
    EXPECT_GT(static_cast<std::uint64_t>(did), before) << u.event_id;
    EXPECT_EQ(j.last_seq(), static_cast<std::uint64_t>(did));
    return did;
  }

  Admit accept_id(Journal& j, std::int64_t org, std::string_view id, bool check_id = true) {
    std::int64_t did = 0;
    return j.accept(org, 1, id, R"({"type":"business_updated","payload":{}})", 5, check_id, 0, did);
  }

  // Rows of ~2 KiB until the WAL is past kCheckpointBytes (4 MiB), then a checkpoint must copy
  // it: Stats::checkpoints moves only when one copied frames.
  void expect_a_checkpoint(Journal& j) {
    const std::string body =
        R"({"type":"business_updated","payload":{"text":")" + std::string(2000, 'c') + R"("}})";
    std::int64_t last = 0;
    for (int i = 0; i < 2500; ++i) {
      last =
          accept_ok(j, unfinished("ckpt-" + std::to_string(i), 1 + i % 7, type_name(0), body, 3));
    }
    ASSERT_TRUE(wait_durable(j, last));
    ASSERT_TRUE(wait_until([&] { return j.stats().checkpoints > 0; }))
        << "no checkpoint copied anything; frames indexed " << j.stats().indexed;
  }

  // A restart on a copy: `db`, `wal` and the log segment `segment` (named `segment_name`)
  // written into a fresh `dir`, a journal opened there (it copies the log's whole frames into the
  // database), what it recovers, its durable_seq(), and which of `probes` (org, event id) it still
  // answers kDuplicate.
  struct Restart {
    bool opened = false;
    std::string error;
    State state;
    std::uint64_t durable = 0;
    std::vector<bool> duplicate;
  };
  Restart restart_on(const fs::path& dir, std::string_view db, std::string_view wal,
                     const std::string& segment_name, std::string_view segment,
                     const std::vector<std::pair<std::int64_t, std::string>>& probes) {
    Restart r;
    std::error_code ec;
    fs::remove_all(dir, ec);
    fs::create_directories(dir / "journal-log", ec);
    if (ec || !write_file(dir / "journal.db", db) || !write_file(dir / "journal.db-wal", wal) ||
        !write_file(dir / "journal-log" / segment_name, segment)) {
      r.error = "writing the copy into " + dir.string();
      return r;
    }
    // Speed only (the outcome is the same without it): a second connection that has read the
    // database holds a SHARED lock on journal.db for as long as it is open (WAL mode), so the
    // journal's connections are not the last to close and do not checkpoint; this one closes
    // with SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE. It reads only after Journal::open().
    sqlite3* keep = nullptr;
    const std::string file = (dir / "journal.db").string();
    if (sqlite3_open_v2(file.c_str(), &keep, SQLITE_OPEN_READWRITE, nullptr) != SQLITE_OK) {
      r.error = "opening a second connection";
      sqlite3_close_v2(keep);
      return r;
    }
    sqlite3_db_config(keep, SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1, static_cast<int*>(nullptr));
    {
      DurabilityOptions o;
      o.dir = dir.string();
      auto j = Journal::open(o, catalogue_);
      if (!j) {
        r.error = j.error();
      } else {
        (void)sqlite3_exec(keep, "SELECT count(*) FROM sqlite_master", nullptr, nullptr, nullptr);
        r.opened = true;
        r.state = as_state((*j)->take_recovered());
        r.durable = (*j)->durable_seq();
        for (const auto& [org, id] : probes) {
          r.duplicate.push_back(accept_id(**j, org, id) == Admit::kDuplicate);
        }
      }
    }
    sqlite3_close_v2(keep);
    return r;
  }

  // 1. Deliveries accepted before the writer runs (accepted and finished in its first batch:
  // without history never written at all) and after it runs (accepted and durable first, then
  // attempts and finals in later batches), each with one of six fates. A reopened journal hands
  // back exactly the ones without a final outcome, with their last attempt's count and next
  // time, by did, and never hands out a did again.
  void check_recovery(std::uint64_t history_ms) {
    DurabilityOptions o = options();
    o.history_ms = history_ms;
    State expect;
    std::int64_t max_did = 0;
    {
      auto j = open(o);
      ASSERT_NE(j, nullptr);
      EXPECT_TRUE(j->take_recovered().empty());
      EXPECT_EQ(j->durable_seq(), 0U);
      EXPECT_EQ(j->last_seq(), 0U);
      for (int phase = 0; phase < 2; ++phase) {
        std::vector<std::int64_t> dids;
        for (int i = 0; i < 18; ++i) {
          // Some bodies span several pages (overflow pages), all hold every byte value.
          const auto size =
              static_cast<std::size_t>(40 + (i * 397) % 3000 + (i % 5 == 0 ? 6000 : 0));
          Unfinished u =
              unfinished("p" + std::to_string(phase) + "-evt-" + std::to_string(i), 100 + i % 3,
                         type_name(static_cast<std::size_t>(i + phase)),
                         bytes_of(size, static_cast<std::uint32_t>(100 * phase + i)), 1000 + i % 4);
          const std::int64_t did = accept_ok(*j, u);
          EXPECT_GT(did, max_did);
          max_did = did;
          dids.push_back(did);
          expect.emplace(did, std::move(u));
        }
        if (phase == 1) {
          ASSERT_TRUE(wait_durable(*j, max_did));
        }
        for (std::size_t i = 0; i < dids.size(); ++i) {
          const std::int64_t did = dids[i];
          Unfinished& u = expect.at(did);
          switch (i % 6) {
            case 0:  // never attempted: pending, no attempt, due at once
              break;
            case 1:  // one failed attempt, a retry scheduled
              j->attempt(did, 1, 503, Failure::kNone, 1200, kFuture + did, std::nullopt);
              u.attempts = 1;
              u.next_attempt_unix_ms = kFuture + did;
              break;
            case 2:  // two failed attempts: the last one counts
              j->attempt(did, 1, 0, Failure::kConnectRefused, 300, kFuture + did, std::nullopt);
              j->attempt(did, 2, 502, Failure::kNone, 900, kFuture + 2 * did, std::nullopt);
              u.attempts = 2;
              u.next_attempt_unix_ms = kFuture + 2 * did;
              break;
            case 3:  // delivered at the first attempt
              j->attempt(did, 1, 200, Failure::kNone, 800, 0, OutcomeKind::kDelivered);
              expect.erase(did);
              break;
            case 4:  // a failed attempt, then dropped (its subscription went away)
              j->attempt(did, 1, 503, Failure::kNone, 700, kFuture, std::nullopt);
              j->final(did, OutcomeKind::kDropped, 1);
              expect.erase(did);
              break;
            default:  // exhausted at its last attempt
              j->attempt(did, 1, 0, Failure::kResponseTimeout, 10'000, kFuture, std::nullopt);
              j->attempt(did, 2, 500, Failure::kNone, 600, 0, OutcomeKind::kExhausted);
              expect.erase(did);
              break;
          }
        }
        if (phase == 0) j->start();
      }
      j->stop();  // commits everything appended
    }
    auto j = open(o);
    ASSERT_NE(j, nullptr);
    bool ordered = false;
    const State got = as_state(j->take_recovered(), &ordered);
    EXPECT_EQ(got.size(), 18U);
    EXPECT_TRUE(same(expect, got)) << "expected:\n"
                                   << describe(expect) << "recovered:\n"
                                   << describe(got);
    EXPECT_TRUE(ordered) << "take_recovered() is not by increasing did";
    EXPECT_EQ(j->durable_seq(), static_cast<std::uint64_t>(max_did));
    EXPECT_EQ(j->last_seq(), static_cast<std::uint64_t>(max_did));
    j->start();
    const std::int64_t next = accept_ok(*j, unfinished("after-reopen", 1, type_name(0), "{}", 1));
    EXPECT_GT(next, max_did);
    j->stop();
  }

  TempDir dir_{"fanout-journal-test"};
  routing::EventCatalogue catalogue_;
  routing::EventTypeId custom_ = 0;
};

// --- 1. recovery --------------------------------------------------------------------------------

TEST_F(JournalTest, ReopenRecoversExactlyTheDeliveriesWithoutAFinalOutcome) {
  check_recovery(7ULL * 24 * 3600 * 1000);
}

TEST_F(JournalTest, ReopenRecoversExactlyTheDeliveriesWithoutAFinalOutcomeWithoutHistory) {
  check_recovery(0);
}

// Without history every final row is deleted (or never written): the next did still comes from
// the meta row, so dids never repeat across restarts.
TEST_F(JournalTest, DidsNeverRepeatWhenEveryRowIsDeleted) {
  DurabilityOptions o = options();
  o.history_ms = 0;
  std::int64_t max_did = 0;
  {
    auto j = open(o);
    ASSERT_NE(j, nullptr);
    // Accepted and final before the writer starts: one batch in which no delivery row is written.
    for (int i = 0; i < 4; ++i) {
      max_did = accept_ok(*j, unfinished("gone-" + std::to_string(i), 3, type_name(2), "{}", 9));
      j->attempt(max_did, 1, 200, Failure::kNone, 100, 0, OutcomeKind::kDelivered);
    }
    j->start();
    j->stop();
    EXPECT_EQ(j->stats().records, 8U);
  }
  {
    auto j = open(o);
    ASSERT_NE(j, nullptr);
    EXPECT_TRUE(j->take_recovered().empty());
    EXPECT_EQ(j->durable_seq(), static_cast<std::uint64_t>(max_did));
    j->start();
    // Written, durable, then deleted by its final outcome.
    const std::int64_t did = accept_ok(*j, unfinished("gone-4", 3, type_name(2), "{}", 9));
    EXPECT_GT(did, max_did);
    max_did = did;
    ASSERT_TRUE(wait_durable(*j, did));
    j->final(did, OutcomeKind::kDropped, 0);
    j->stop();
  }
  auto j = open(o);
  ASSERT_NE(j, nullptr);
  EXPECT_TRUE(j->take_recovered().empty());
  EXPECT_EQ(j->durable_seq(), static_cast<std::uint64_t>(max_did));
  auto page = j->deliveries(9, "", 0, 10);
  ASSERT_TRUE(page.has_value()) << page.error();
  EXPECT_EQ(page->count, 0) << "final rows are deleted without history";
  j->start();
  EXPECT_GT(accept_ok(*j, unfinished("gone-5", 3, type_name(2), "{}", 9)), max_did);
  j->stop();
}

// --- 2. idempotency -----------------------------------------------------------------------------

TEST_F(JournalTest, AnIdIsADuplicateWithinItsOrganisationAcrossRestarts) {
  const DurabilityOptions o = options();  // a day's window, a million ids
  {
    auto j = open(o);
    ASSERT_NE(j, nullptr);
    j->start();
    const std::int64_t first = accept_ok(*j, unfinished("evt-a", 1, type_name(1), "{}", 5));
    std::int64_t did = 0;
    EXPECT_EQ(accept(*j, unfinished("evt-a", 1, type_name(1), "{}", 5), did), Admit::kDuplicate);
    // Another body, type or subscription does not matter: the key is (org_id, id).
    EXPECT_EQ(accept(*j, unfinished("evt-a", 1, type_name(3), "{\"x\":1}", 6), did),
              Admit::kDuplicate);
    EXPECT_EQ(j->last_seq(), static_cast<std::uint64_t>(first)) << "a duplicate takes no did";
    accept_ok(*j, unfinished("evt-a", 2, type_name(1), "{}", 5));  // another organisation
    // check_id = false (an id the engine generated): never a duplicate...
    accept_ok(*j, unfinished("evt-a", 1, type_name(1), "{}", 5), /*check_id=*/false);
    accept_ok(*j, unfinished("evt-a", 1, type_name(1), "{}", 5), /*check_id=*/false);
    // ...and not remembered either.
    accept_ok(*j, unfinished("evt-b", 1, type_name(1), "{}", 5), /*check_id=*/false);
    accept_ok(*j, unfinished("evt-b", 1, type_name(1), "{}", 5));
    EXPECT_EQ(accept_id(*j, 1, "evt-b"), Admit::kDuplicate);
    j->stop();
  }
  auto j = open(o);
  ASSERT_NE(j, nullptr);
  EXPECT_EQ(accept_id(*j, 1, "evt-a"), Admit::kDuplicate);
  EXPECT_EQ(accept_id(*j, 2, "evt-a"), Admit::kDuplicate);
  EXPECT_EQ(accept_id(*j, 1, "evt-b"), Admit::kDuplicate);
  EXPECT_EQ(accept_id(*j, 3, "evt-a"), Admit::kAccepted);
  EXPECT_EQ(accept_id(*j, 1, "evt-c"), Admit::kAccepted);
  EXPECT_EQ(accept_id(*j, 1, "evt-a", /*check_id=*/false), Admit::kAccepted);
}

TEST_F(JournalTest, WithoutAnIdempotencyWindowNothingIsADuplicate) {
  DurabilityOptions o = options();
  o.idempotency_ms = 0;
  {
    auto j = open(o);
    ASSERT_NE(j, nullptr);
    j->start();
    EXPECT_EQ(accept_id(*j, 1, "same"), Admit::kAccepted);
    EXPECT_EQ(accept_id(*j, 1, "same"), Admit::kAccepted);
    j->stop();
  }
  auto j = open(o);
  ASSERT_NE(j, nullptr);
  EXPECT_EQ(accept_id(*j, 1, "same"), Admit::kAccepted);
}

TEST_F(JournalTest, TheIdCapForgetsTheOldestFirst) {
  DurabilityOptions o = options();
  o.max_ids = 2;
  auto j = open(o);
  ASSERT_NE(j, nullptr);
  j->start();
  // Remembered: the last two ids accepted.
  EXPECT_EQ(accept_id(*j, 1, "a"), Admit::kAccepted);
  EXPECT_EQ(accept_id(*j, 1, "b"), Admit::kAccepted);
  EXPECT_EQ(accept_id(*j, 1, "c"), Admit::kAccepted);  // {b, c}
  EXPECT_EQ(accept_id(*j, 1, "a"), Admit::kAccepted);  // a was the oldest: {c, a}
  EXPECT_EQ(accept_id(*j, 1, "c"), Admit::kDuplicate);
  EXPECT_EQ(accept_id(*j, 1, "a"), Admit::kDuplicate);
  EXPECT_EQ(accept_id(*j, 1, "b"), Admit::kAccepted);  // {a, b}
  EXPECT_EQ(accept_id(*j, 1, "c"), Admit::kAccepted);  // {b, c}
  EXPECT_EQ(accept_id(*j, 1, "b"), Admit::kDuplicate);
  j->stop();
}

// --- 3. a torn log tail ------------------------------------------------------------------------

std::uint64_t le64(std::string_view s, std::size_t at) {
  std::uint64_t v = 0;
  for (std::size_t i = 0; i < 8; ++i) {
    v |= std::uint64_t{static_cast<unsigned char>(s[at + i])} << (8 * i);
  }
  return v;
}

// Keeps the indexer out of the database (it waits in before_index) until released: the database
// stays as it was and the log alone holds what is committed meanwhile.
class IndexHold {
 public:
  std::function<void()> callback() {
    return [this] {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [this] { return released_; });
    };
  }
  void release() {
    std::lock_guard lock(mu_);
    released_ = true;
    cv_.notify_all();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool released_ = false;
};
struct ReleaseOnExit {
  IndexHold& hold;
  ~ReleaseOnExit() { hold.release(); }
};

// Batch 1 in the database (a clean close); batches 2..4 committed one frame each (the writer
// held in on_commit while the next is appended) while the indexer is held, so that the log alone
// holds them; the files copied as a crash would leave them. Then restarts on the log's segment
// cut all along the last frame (every 16th byte and every header field's edge; every byte on
// request), at every frame boundary ±1 of the whole segment, and with one byte flipped in each
// part of the last frame and in the first frame of the segment. Each restart must open and
// recover the state after a whole batch: the last one whose frame is intact, bodies byte-exact,
// with the idempotency keys and the next did of that same batch.
//
// Log format (engine/journal_log.h): a one-page segment header, then frames of a 48-byte header
// (offset 8: the payload's size, little-endian) and the payload, each starting on a page; a frame
// counts only when whole, in sequence and matching its checksum.
TEST_F(JournalTest, TornLogTailRecoversWholeBatchesOnly) {
  constexpr int kBatches = 4;
  DurabilityOptions o = options();
  const fs::path dir = o.dir;
  State state;                                               // expected, as batches are appended
  std::vector<State> states(kBatches + 1);                   // after batch k
  std::vector<std::uint64_t> last_did(kBatches + 1, 0);      // the last did of batch k
  std::vector<std::pair<std::int64_t, std::string>> probes;  // (org, id) of each batch's first
  std::vector<std::int64_t> previous;                        // the previous batch's dids

  // Batch k: attempts on the previous batch's deliveries (a retry scheduled; delivered; none),
  // then three new deliveries, one with a body of several kilobytes.
  auto append_batch = [&](Journal& j, int k) {
    for (std::size_t i = 0; i < previous.size(); ++i) {
      const std::int64_t did = previous[i];
      if (i == 0) {
        j.attempt(did, 1, 503, Failure::kNone, 900, kFuture + did, std::nullopt);
        state.at(did).attempts = 1;
        state.at(did).next_attempt_unix_ms = kFuture + did;
      } else if (i == 1) {
        j.attempt(did, 1, 200, Failure::kNone, 800, 0, OutcomeKind::kDelivered);
        state.erase(did);
      }
    }
    previous.clear();
    constexpr std::size_t kSizes[] = {150, 5000, 1200};
    for (int i = 0; i < 3; ++i) {
      Unfinished u = unfinished(
          "torn-" + std::to_string(k) + "-" + std::to_string(i), 10 + i,
          type_name(static_cast<std::size_t>(k + i)),
          bytes_of(kSizes[i] + static_cast<std::size_t>(k), static_cast<std::uint32_t>(10 * k + i)),
          500 + i);
      const std::int64_t did = accept_ok(j, u);
      if (i == 0) probes.emplace_back(u.org_id, u.event_id);
      previous.push_back(did);
      state.emplace(did, std::move(u));
    }
    last_did[static_cast<std::size_t>(k)] = static_cast<std::uint64_t>(previous.back());
    states[static_cast<std::size_t>(k)] = state;
  };

  // Batch 1, then a clean close: copied into journal.db, the log removed.
  {
    auto j = open(o);
    ASSERT_NE(j, nullptr);
    j->start();
    append_batch(*j, 1);
    ASSERT_TRUE(wait_durable(*j, static_cast<std::int64_t>(last_did[1])));
    j->stop();
  }

  CommitGate gate(/*hold_ok=*/true, /*hold_failed=*/false);
  o.on_commit = gate.callback();
  IndexHold hold;
  o.before_index = hold.callback();
  std::string db_copy, wal_copy, segment_copy, segment_name;
  {
    auto j = open(o);
    ASSERT_NE(j, nullptr);
    OpenOnExit unblock{gate};
    ReleaseOnExit unhold{hold};
    const State reopened = as_state(j->take_recovered());
    EXPECT_TRUE(same(states[1], reopened)) << describe(reopened);
    for (int k = 2; k <= kBatches; ++k) {
      const auto ku = static_cast<std::size_t>(k);
      append_batch(*j, k);
      if (k == 2) {
        j->start();
      } else {
        gate.release();
      }
      ASSERT_TRUE(gate.wait_calls(ku - 1)) << "batch " << k << " was not committed";
      const CommitGate::Call call = gate.last_call();
      EXPECT_TRUE(call.ok);
      EXPECT_EQ(call.first, last_did[ku] - 2) << "batch " << k << " was not one group";
      EXPECT_EQ(call.last, last_did[ku]);
      EXPECT_EQ(j->durable_seq(), last_did[ku]);
    }
    EXPECT_EQ(j->stats().indexed, 0U) << "the indexer was held";
    db_copy = read_file(dir / "journal.db");
    wal_copy = read_file(dir / "journal.db-wal");
    std::vector<fs::path> segments;
    for (const auto& e : fs::directory_iterator(dir / "journal-log")) segments.push_back(e.path());
    ASSERT_EQ(segments.size(), 1U) << "one segment holds batches 2..4";
    segment_name = segments[0].filename().string();
    segment_copy = read_file(segments[0]);
  }

  // The frames: batch k is frame k-1 of the segment, after the segment's header page; each
  // starts on a page and ends in zeros to the next one.
  const std::string_view seg = segment_copy;
  constexpr std::size_t kHeader = 48, kPage = JournalLog::kPage;
  std::vector<std::size_t> frame_start(kBatches + 1, 0), frame_end(kBatches + 1, 0);
  std::size_t at = kPage;
  for (std::size_t k = 2; k <= kBatches; ++k) {
    ASSERT_LE(at + kHeader, seg.size()) << "batch " << k;
    frame_start[k] = at;
    frame_end[k] = at + kHeader + static_cast<std::size_t>(le64(seg, at + 8));
    at = (frame_end[k] + kPage - 1) / kPage * kPage;
  }
  ASSERT_EQ(at, seg.size()) << "the segment holds exactly three frames";
  // With the segment valid up to `end` (bytes), the last batch whose frame is in it.
  auto batch_at = [&](std::size_t end) {
    std::size_t b = 1;
    for (std::size_t k = 2; k <= kBatches; ++k) {
      if (frame_end[k] <= end) b = k;
    }
    return b;
  };

  const fs::path trial_dir = dir_.path() / "restart";
  std::size_t trials = 0, failures = 0;
  auto check = [&](std::string_view cut, std::size_t valid_end, const std::string& what) {
    ++trials;
    const Restart r = restart_on(trial_dir, db_copy, wal_copy, segment_name, cut, probes);
    const std::size_t b = batch_at(valid_end);
    std::vector<bool> duplicate;
    for (std::size_t k = 1; k <= kBatches; ++k) duplicate.push_back(k <= b);
    if (r.opened && same(states[b], r.state) && r.durable == last_did[b] &&
        r.duplicate == duplicate) {
      return;
    }
    if (++failures > 5) return;  // enough to diagnose
    std::string matches = "none";
    for (std::size_t k = 1; k <= kBatches; ++k) {
      if (same(states[k], r.state)) matches = "the state after batch " + std::to_string(k);
    }
    ADD_FAILURE() << what << ": expected the state after batch " << b
                  << (r.opened ? "" : "; open failed: " + r.error) << "; recovered matches "
                  << matches << ", durable_seq " << r.durable << " (expected " << last_did[b]
                  << ")\nexpected:\n"
                  << describe(states[b]) << "recovered:\n"
                  << describe(r.state);
  };

  // Every cut along the last frame and its padding: every 16th byte, each header field's edges
  // ±1, and every frame boundary ±1 of the segment; and cuts in the segment's header. Every
  // single byte (FANOUT_JOURNAL_TEST_EVERY_BYTE=1) is ~6,500 restarts.
  const char* every_byte = std::getenv("FANOUT_JOURNAL_TEST_EVERY_BYTE");
  const std::size_t stride = every_byte != nullptr && std::string_view(every_byte) == "1" ? 1 : 16;
  const std::size_t tail_from = frame_start[kBatches];
  std::set<std::size_t> cuts;
  for (std::size_t t = tail_from; t <= seg.size(); t += stride) cuts.insert(t);
  for (std::size_t field : {0U, 4U, 8U, 16U, 24U, 32U, 40U, 48U}) {
    for (std::size_t d : {0U, 1U}) {
      cuts.insert(tail_from + field + d);
      if (field + d > 0) cuts.insert(tail_from + field - d);
    }
  }
  for (std::size_t t : {0U, 1U, 8U, 31U, 32U, 4095U}) cuts.insert(t);
  for (std::size_t k = 2; k <= kBatches; ++k) {
    for (std::size_t edge : {frame_start[k], frame_end[k]}) {
      cuts.insert(edge - 1);
      cuts.insert(edge);
      if (edge < seg.size()) cuts.insert(edge + 1);
    }
  }
  const auto started = std::chrono::steady_clock::now();
  for (std::size_t t : cuts) {
    if (t > seg.size()) continue;
    if (t >= tail_from) {
      const std::size_t b = batch_at(t);
      EXPECT_TRUE(b == kBatches - 1 || b == kBatches) << t;
    }
    check(seg.substr(0, t), t, "segment cut at " + std::to_string(t));
  }
  // One byte flipped in each header field of the last frame, in its records, in its bytes (the
  // body), in the first frame and in the segment's header (its first frame number, its seed,
  // its checksum): the log ends before the flipped frame, or before the segment. A flipped byte
  // of the padding after the last frame changes nothing.
  for (std::size_t pos :
       {tail_from, tail_from + 4, tail_from + 8, tail_from + 16, tail_from + 24, tail_from + 32,
        tail_from + 40, tail_from + kHeader + 3, (tail_from + frame_end[kBatches]) / 2,
        frame_end[kBatches] - 1, frame_start[2] + 10, std::size_t{0}, std::size_t{8},
        std::size_t{16}, std::size_t{24}, seg.size() - 1}) {
    std::string flipped(seg);
    flipped[pos] = static_cast<char>(flipped[pos] ^ 0x01);
    const std::size_t valid_end = pos < frame_start[2]        ? 0
                                  : pos < tail_from           ? frame_start[2]
                                  : pos < frame_end[kBatches] ? tail_from
                                                              : seg.size();
    check(flipped, valid_end, "byte " + std::to_string(pos) + " flipped");
  }
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                      std::chrono::steady_clock::now() - started)
                      .count();
  std::printf(
      "torn tail: segment %zu bytes (batch 4: bytes %zu..%zu), %zu restarts (stride %zu), %lld "
      "ms\n",
      seg.size(), tail_from, seg.size(), trials, stride, static_cast<long long>(ms));
  EXPECT_EQ(failures, 0U);
}

// --- 4. bounded disk ----------------------------------------------------------------------------

std::uint32_t be32(std::string_view s, std::size_t at) {
  return std::uint32_t{static_cast<unsigned char>(s[at])} << 24 |
         std::uint32_t{static_cast<unsigned char>(s[at + 1])} << 16 |
         std::uint32_t{static_cast<unsigned char>(s[at + 2])} << 8 |
         std::uint32_t{static_cast<unsigned char>(s[at + 3])};
}

// The WAL's generation: its header's checkpoint sequence number and first salt (offsets 12..19),
// both changed each time SQLite starts the log again from its beginning after a checkpoint.
std::optional<std::uint64_t> wal_generation(const fs::path& wal) {
  std::ifstream in(wal, std::ios::binary);
  char header[20] = {};
  if (!in.read(header, sizeof header)) return std::nullopt;
  const std::string_view h(header, sizeof header);
  return std::uint64_t{be32(h, 12)} << 32 | be32(h, 16);
}

// Without history or idempotency, every delivery is written (accepted, durable) and then deleted
// (a final attempt): the files must not grow with the number of deliveries. The reference is the
// largest footprint seen until the WAL has been checkpointed and started again once (its size
// is a tuning of the journal's: wal_autocheckpoint, journal_size_limit); nothing after may
// exceed twice that plus 8 MiB.
TEST_F(JournalTest, DiskStaysBoundedWithoutHistory) {
#ifdef FANOUT_TEST_SANITIZED
  constexpr int kTotal = 200'000;
#else
  constexpr int kTotal = 1'000'000;
#endif
  constexpr int kRound = 10'000;
  DurabilityOptions o = options();
  o.history_ms = 0;
  o.idempotency_ms = 0;
  // The log's share of the footprint: at most the backlog plus a segment.
  o.log_segment_bytes = std::uint64_t{4} << 20;
  o.max_log_backlog_bytes = std::uint64_t{8} << 20;
  const fs::path dir = o.dir;
  auto j = open(o);
  ASSERT_NE(j, nullptr);
  j->start();
  const std::string filler(120, 'x');
  std::uint64_t records = 0;
  std::uintmax_t after_first = 0, reference = 0, largest_after = 0;
  int cycled_at = -1;  // the round after which the WAL had started again once
  std::optional<std::uint64_t> first_generation;
  std::vector<std::int64_t> dids(kRound);
  for (int round = 0; round < kTotal / kRound; ++round) {
    for (int i = 0; i < kRound; ++i) {
      const int n = round * kRound + i;
      const std::string body = R"({"type":"business_updated","payload":{"business_id":)" +
                               std::to_string(n) + R"(,"name":")" + filler + R"("}})";
      std::int64_t did = 0;
      const Admit a = j->accept(1 + n % 50, static_cast<routing::EventTypeId>(n % 6),
                                "bounded-" + std::to_string(n), body, 1 + n % 100, false, 0, did);
      if (a != Admit::kAccepted) FAIL() << "delivery " << n << " was not accepted";
      dids[static_cast<std::size_t>(i)] = did;
    }
    records += kRound;
    ASSERT_TRUE(wait_durable(*j, dids.back())) << "round " << round;
    // The round's rows are in the database before they are finished: each is written, then
    // removed, the most the database is made to do (a delivery accepted and finished within
    // one pass of the indexer is never written at all without history).
    ASSERT_TRUE(wait_until([&] { return j->stats().indexed >= j->stats().commits; }))
        << "round " << round;
    for (std::int64_t did : dids) {
      j->attempt(did, 1, 200, Failure::kNone, 250, 0, OutcomeKind::kDelivered);
    }
    records += kRound;
    if (round == 0) {
      ASSERT_TRUE(wait_records(*j, records));
      after_first = disk_size(dir);
    }
    const std::uintmax_t now = disk_size(dir);
    if (cycled_at >= 0) {
      largest_after = std::max(largest_after, now);
      continue;
    }
    reference = std::max(reference, now);
    const auto generation = wal_generation(dir / "journal.db-wal");
    if (!first_generation) {
      first_generation = generation;
    } else if (generation && *generation != *first_generation) {
      cycled_at = round;
    }
  }
  j->stop();
  EXPECT_EQ(j->stats().records, records);
  EXPECT_EQ(j->stats().commit_failures, 0U);
  const std::uintmax_t stopped = disk_size(dir);
  const std::uintmax_t stopped_wal = size_or_zero(dir / "journal.db-wal");
  const std::int64_t last = dids.back();
  j.reset();
  const std::uintmax_t closed = disk_size(dir);
  const std::uintmax_t bound = 2 * reference + (8U << 20);
  std::printf(
      "bounded disk: %d deliveries; journal.db + WAL after round 1: %ju bytes; largest until the "
      "WAL started again (after round %d): %ju; largest after: %ju; after stop: %ju (WAL %ju); "
      "after close: %ju; bound %ju\n",
      kTotal, after_first, cycled_at + 1, reference, largest_after, stopped, stopped_wal, closed,
      bound);
  ASSERT_GE(cycled_at, 0) << "the WAL was never checkpointed and started again: more deliveries "
                             "are needed to see a steady state";
  EXPECT_LT(largest_after, bound);
  EXPECT_LT(stopped, bound);
  EXPECT_LT(closed, bound);
  auto reopened = open(o);
  ASSERT_NE(reopened, nullptr);
  EXPECT_TRUE(reopened->take_recovered().empty());
  EXPECT_EQ(reopened->durable_seq(), static_cast<std::uint64_t>(last));
}

// The database's page size, read from its file (0 when it cannot be read).
int page_size_of(const fs::path& file) {
  sqlite3* db = nullptr;
  int size = 0;
  if (sqlite3_open_v2(file.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK) {
    if (auto page = sqlite::pragma(db, "PRAGMA page_size")) size = std::atoi(page->c_str());
  }
  sqlite3_close_v2(db);
  return size;
}

// SQLite's WAL is copied into the database file by the checkpointer thread, a few MiB at a time
// (journal_index.cc, kCheckpointBytes), not only by the indexer's restart of a WAL grown four
// times as large. Until 2026-12-06 the checkpointer's connection had never read the file, did
// not know it was in WAL mode, and each of its checkpoints did nothing. A new database has
// 16 KiB pages.
TEST_F(JournalTest, TheCheckpointerCopiesTheWalIntoTheDatabase) {
  auto j = open(options());
  ASSERT_NE(j, nullptr);
  EXPECT_EQ(page_size_of(dir_.path() / "journal" / "journal.db"), 16384) << "a new database";
  j->start();
  expect_a_checkpoint(*j);
}

// A database made before pages of 16 KiB keeps its 4 KiB pages (in WAL mode nothing changes
// them), and its checkpoints come at the same size in bytes (4 MiB: 1,024 frames, not 256).
TEST_F(JournalTest, AnOlderDatabaseKeepsItsPagesAndIsCheckpointed) {
  const fs::path dir = dir_.path() / "journal";
  fs::create_directories(dir);
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open((dir / "journal.db").c_str(), &db), SQLITE_OK);
  ASSERT_EQ(
      sqlite3_exec(db, "PRAGMA page_size=4096; PRAGMA journal_mode=WAL", nullptr, nullptr, nullptr),
      SQLITE_OK);
  sqlite3_close_v2(db);
  auto j = open(options());
  ASSERT_NE(j, nullptr);
  EXPECT_EQ(page_size_of(dir / "journal.db"), 4096);
  j->start();
  expect_a_checkpoint(*j);
}

// Under a load beyond what the workers deliver no core idles, and an indexer left in the
// background would not copy at all: the log would reach its bound and every answer wait for it.
// From 1/4 of the bound the writer takes the indexer out of the background (SCHED_OTHER), and
// the indexer goes back once under 1/16. Its policy is read in before_index, on its own thread.
TEST_F(JournalTest, TheIndexerLeavesTheBackgroundWhenTheLogNearsItsBound) {
  bool allowed = false;
  std::thread([&] {
    journal_detail::background_priority(gettid(), true);
    allowed = journal_detail::background_priority(gettid(), false);
  }).join();
  if (!allowed) GTEST_SKIP() << "this process may not leave SCHED_IDLE (no CAP_SYS_NICE)";
  DurabilityOptions o = options();
  o.max_log_backlog_bytes = std::uint64_t{512} << 10;
  std::mutex mu;
  std::condition_variable cv;
  bool held = true;
  std::vector<int> policies;  // the indexer's, as each pass begins and, held, as it goes on
  o.before_index = [&] {
    std::unique_lock lock(mu);
    policies.push_back(sched_getscheduler(0));
    cv.notify_all();
    if (!held) return;
    cv.wait(lock, [&] { return !held; });
    policies.push_back(sched_getscheduler(0));
  };
  auto j = open(o);
  ASSERT_NE(j, nullptr);
  j->start();
  {
    std::unique_lock lock(mu);
    ASSERT_TRUE(cv.wait_for(lock, std::chrono::seconds(30), [&] { return !policies.empty(); }));
    EXPECT_EQ(policies.front(), SCHED_IDLE);
  }
  // 100 deliveries of 4,000 bytes while the indexer is held: past 1/4 of the bound (128 KiB),
  // under the bound itself (the writer does not wait).
  const std::string body(4000, 'b');
  std::int64_t did = 0;
  for (int n = 0; n < 100; ++n) {
    ASSERT_EQ(j->accept(1, 0, "near-" + std::to_string(n), body, 1, false, 0, did),
              Admit::kAccepted);
  }
  ASSERT_TRUE(wait_durable(*j, did));
  EXPECT_EQ(j->stats().index_boosts, 1U) << "the writer takes the indexer out of the background";
  {
    std::unique_lock lock(mu);
    const std::size_t before = policies.size();
    held = false;
    cv.notify_all();
    // The held pass goes on out of the background; the next one, caught up, is back in it.
    ASSERT_TRUE(
        cv.wait_for(lock, std::chrono::seconds(30), [&] { return policies.size() >= before + 2; }));
    EXPECT_EQ(policies[before], SCHED_OTHER);
    EXPECT_EQ(policies[before + 1], SCHED_IDLE);
  }
  EXPECT_EQ(j->stats().index_boosts, 1U);
  EXPECT_EQ(j->stats().backlog_waits, 0U);
  j->stop();
}

// --- 5. history ---------------------------------------------------------------------------------

struct WantAttempt {
  std::uint32_t n;
  int status;
  std::string failure;
  std::uint32_t duration_us;
};
struct Want {
  std::string id;
  std::optional<OutcomeKind> outcome;
  std::uint32_t made;
  std::int64_t next;
  bool resent;
  std::vector<WantAttempt> attempts;
};

TEST_F(JournalTest, HistoryListsFiltersFindsAndRecoversDeliveries) {
  const DurabilityOptions o = options();  // history kept a week
  auto j = open(o);
  ASSERT_NE(j, nullptr);
  j->start();
  constexpr std::int64_t kSub = 77, kOther = 88;
  // Another subscription is another organisation's (idempotency keys on (org_id, id)).
  auto event = [&](const std::string& id, std::int64_t sub) {
    return unfinished(id, sub == kSub ? 7 : 8, type_name(1),
                      R"({"type":"business_updated","payload":{"id":")" + id + R"("}})", sub);
  };
  const std::int64_t t0 = wall_ms();
  const std::int64_t d1 = accept_ok(*j, event("e1", kSub));
  const std::int64_t d2 = accept_ok(*j, event("e2", kSub));
  const std::int64_t d3 = accept_ok(*j, event("e3", kSub));
  const std::int64_t d4 = accept_ok(*j, event("e4", kSub));
  const std::int64_t d5 = accept_ok(*j, event("e5", kSub));
  accept_ok(*j, event("e6", kSub));
  const std::int64_t d7 = accept_ok(*j, event("e8", kSub));
  const std::int64_t d9 = accept_ok(*j, event("e1", kOther));  // same id, another subscription
  j->attempt(d1, 1, 503, Failure::kNone, 1200, kFuture, std::nullopt);
  j->attempt(d1, 2, 200, Failure::kNone, 800, 0, OutcomeKind::kDelivered);
  j->attempt(d2, 1, 0, Failure::kConnectRefused, 50, kFuture + 2, std::nullopt);
  j->attempt(d3, 1, 500, Failure::kNone, 700, kFuture, std::nullopt);
  j->attempt(d3, 2, 0, Failure::kResponseTimeout, 10'000'000, 0, OutcomeKind::kExhausted);
  j->final(d4, OutcomeKind::kDropped, 0);
  j->attempt(d5, 1, 404, Failure::kNone, 300, 0, OutcomeKind::kRejected);
  j->attempt(d7, 1, 503, Failure::kNone, 100, 0, OutcomeKind::kExhausted);
  j->attempt(d9, 1, 503, Failure::kNone, 100, 0, OutcomeKind::kExhausted);
  // d7 sent again: a new delivery of the same event, not an idempotency duplicate.
  const std::int64_t d8 = accept_ok(*j, event("e8", kSub), /*check_id=*/false, /*resend_of=*/d7);
  ASSERT_TRUE(wait_records(*j, 9 + 9));  // 9 accepted, 9 attempts and finals
  const std::int64_t t1 = wall_ms();

  const std::string timeout(transport::to_string(Failure::kResponseTimeout));
  const std::string refused(transport::to_string(Failure::kConnectRefused));
  const std::vector<Want> all = {
      {"e8", std::nullopt, 0, 0, true, {}},
      {"e8", OutcomeKind::kExhausted, 1, 0, false, {{1, 503, "", 100}}},
      {"e6", std::nullopt, 0, 0, false, {}},
      {"e5", OutcomeKind::kRejected, 1, 0, false, {{1, 404, "", 300}}},
      {"e4", OutcomeKind::kDropped, 0, 0, false, {}},
      {"e3",
       OutcomeKind::kExhausted,
       2,
       0,
       false,
       {{1, 500, "", 700}, {2, 0, timeout, 10'000'000}}},
      {"e2", std::nullopt, 1, kFuture + 2, false, {{1, 0, refused, 50}}},
      {"e1", OutcomeKind::kDelivered, 2, 0, false, {{1, 503, "", 1200}, {2, 200, "", 800}}},
  };
  auto check_items = [&](const std::vector<DeliveryRecord>& items, std::vector<Want> want,
                         const std::string& what) {
    ASSERT_EQ(items.size(), want.size()) << what;
    for (std::size_t i = 0; i < items.size(); ++i) {
      const DeliveryRecord& d = items[i];
      const Want& w = want[i];
      SCOPED_TRACE(what + ", item " + std::to_string(i) + " (" + w.id + ")");
      EXPECT_EQ(d.event_id, w.id);
      EXPECT_EQ(d.event_type, type_name(1));
      EXPECT_EQ(d.outcome, w.outcome);
      EXPECT_EQ(d.attempts_made, w.made);
      EXPECT_EQ(d.next_attempt_unix_ms, w.next);
      EXPECT_EQ(d.resent, w.resent);
      EXPECT_GE(d.created_unix_ms, t0);
      EXPECT_LE(d.created_unix_ms, t1);
      if (w.outcome) {
        EXPECT_GE(d.finished_unix_ms, t0);
        EXPECT_LE(d.finished_unix_ms, t1);
      } else {
        EXPECT_EQ(d.finished_unix_ms, 0);
      }
      ASSERT_EQ(d.attempts.size(), w.attempts.size());
      for (std::size_t a = 0; a < w.attempts.size(); ++a) {
        EXPECT_EQ(d.attempts[a].n, w.attempts[a].n);
        EXPECT_EQ(d.attempts[a].status, w.attempts[a].status);
        EXPECT_EQ(d.attempts[a].failure, w.attempts[a].failure);
        EXPECT_EQ(d.attempts[a].duration_us, w.attempts[a].duration_us);
        EXPECT_GE(d.attempts[a].at_unix_ms, t0);
        EXPECT_LE(d.attempts[a].at_unix_ms, t1);
      }
    }
  };

  // Everything, newest first, then page by page.
  auto page = j->deliveries(kSub, "", 0, 100);
  ASSERT_TRUE(page.has_value()) << page.error();
  EXPECT_EQ(page->count, 8);
  check_items(page->items, all, "all");
  for (std::int64_t offset = 0; offset < 8; offset += 3) {
    auto p = j->deliveries(kSub, "", offset, 3);
    ASSERT_TRUE(p.has_value()) << p.error();
    EXPECT_EQ(p->count, 8) << "count is over all pages";
    const auto from = all.begin() + offset;
    check_items(p->items, std::vector<Want>(from, std::min(from + 3, all.end())),
                "page at " + std::to_string(offset));
  }
  // By outcome.
  auto pick = [&](std::initializer_list<std::size_t> at) {
    std::vector<Want> v;
    for (std::size_t i : at) v.push_back(all[i]);
    return v;
  };
  const std::pair<std::string, std::vector<Want>> filters[] = {
      {"pending", pick({0, 2, 6})}, {"delivered", pick({7})}, {"exhausted", pick({1, 5})},
      {"rejected", pick({3})},      {"dropped", pick({4})},
  };
  for (const auto& [outcome, want] : filters) {
    auto p = j->deliveries(kSub, outcome, 0, 100);
    ASSERT_TRUE(p.has_value()) << outcome << ": " << p.error();
    EXPECT_EQ(p->count, static_cast<std::int64_t>(want.size())) << outcome;
    check_items(p->items, want, outcome);
  }
  auto first_page = j->deliveries(kSub, "pending", 0, 1);
  ASSERT_TRUE(first_page.has_value());
  EXPECT_EQ(first_page->count, 3);
  EXPECT_EQ(first_page->items.size(), 1U);
  EXPECT_FALSE(j->deliveries(kSub, "bogus", 0, 10).has_value());
  auto other = j->deliveries(kOther, "", 0, 100);
  ASSERT_TRUE(other.has_value());
  check_items(other->items, {{"e1", OutcomeKind::kExhausted, 1, 0, false, {{1, 503, "", 100}}}},
              "the other subscription");

  // Exhausted since a time, not sent again (d7 has a resend: only d3).
  for (std::int64_t since : {std::int64_t{0}, t0}) {
    auto ex = j->exhausted_since(kSub, since);
    ASSERT_TRUE(ex.has_value()) << ex.error();
    ASSERT_EQ(ex->size(), 1U) << since;
    EXPECT_EQ((*ex)[0].did, d3);
    EXPECT_TRUE(same((*ex)[0].u, event("e3", kSub)));
  }
  auto none = j->exhausted_since(kSub, t1 + 3'600'000);
  ASSERT_TRUE(none.has_value());
  EXPECT_TRUE(none->empty());
  auto ex_other = j->exhausted_since(kOther, 0);
  ASSERT_TRUE(ex_other.has_value());
  ASSERT_EQ(ex_other->size(), 1U);
  EXPECT_EQ((*ex_other)[0].did, d9);

  // The newest delivery of an event.
  std::int64_t did = 0;
  auto found = j->find(kSub, "e8", did);
  ASSERT_TRUE(found.has_value()) << found.error();
  ASSERT_TRUE(found->has_value());
  EXPECT_EQ(did, d8);
  EXPECT_TRUE(same(**found, event("e8", kSub)));
  found = j->find(kSub, "e3", did);
  ASSERT_TRUE(found.has_value() && found->has_value());
  EXPECT_EQ(did, d3);
  found = j->find(kOther, "e1", did);
  ASSERT_TRUE(found.has_value() && found->has_value());
  EXPECT_EQ(did, d9);
  found = j->find(kSub, "nope", did);
  ASSERT_TRUE(found.has_value());
  EXPECT_FALSE(found->has_value());
  found = j->find(kOther, "e3", did);
  ASSERT_TRUE(found.has_value());
  EXPECT_FALSE(found->has_value());
  j->stop();
}

// --- 6. a failed commit -------------------------------------------------------------------------

TEST_F(JournalTest, AFailedCommitLosesItsBatchAndAnswersFailingUntilACommitSucceeds) {
  DurabilityOptions o = options();
  std::int64_t kept = 0;
  {
    auto j = open(o);
    ASSERT_NE(j, nullptr);
    j->start();
    kept = accept_ok(*j, unfinished("keep", 1, type_name(0), "{\"k\":1}", 4));
    ASSERT_TRUE(wait_durable(*j, kept));
    j->stop();
  }
  std::atomic<int> fail_next{0};
  o.fail_commit = [&fail_next] { return fail_next.exchange(0) > 0; };
  CommitGate gate(/*hold_ok=*/false, /*hold_failed=*/true);
  o.on_commit = gate.callback();
  std::int64_t again1 = 0, again2 = 0;
  {
    auto j = open(o);
    ASSERT_NE(j, nullptr);
    OpenOnExit unblock{gate};
    const State before = as_state(j->take_recovered());
    ASSERT_EQ(before.size(), 1U);
    EXPECT_EQ(before.begin()->first, kept);
    // Appended before the writer runs: its first commit holds all three, and fails.
    fail_next = 1;
    const Unfinished lost1 = unfinished("lost-1", 1, type_name(0), "{\"l\":1}", 4);
    const Unfinished lost2 = unfinished("lost-2", 1, type_name(0), "{\"l\":2}", 4);
    const std::int64_t l1 = accept_ok(*j, lost1);
    accept_ok(*j, lost2);
    const std::int64_t l3 = accept_ok(*j, unfinished("lost-3", 2, type_name(0), "{}", 4), false);
    j->start();
    ASSERT_TRUE(gate.wait_calls(1));
    const CommitGate::Call failed = gate.call(0);
    EXPECT_FALSE(failed.ok);
    EXPECT_EQ(failed.first, static_cast<std::uint64_t>(l1));
    EXPECT_EQ(failed.last, static_cast<std::uint64_t>(l3));
    // The writer is held inside on_commit: nothing can have succeeded since.
    EXPECT_EQ(accept_id(*j, 1, "another"), Admit::kFailing);
    EXPECT_EQ(accept_id(*j, 1, "keep"), Admit::kFailing);
    EXPECT_EQ(accept_id(*j, 1, "x", /*check_id=*/false), Admit::kFailing);
    EXPECT_EQ(j->last_seq(), static_cast<std::uint64_t>(l3)) << "kFailing takes no did";
    EXPECT_EQ(j->durable_seq(), static_cast<std::uint64_t>(kept));
    EXPECT_EQ(j->stats().commit_failures, 1U);
    gate.release();
    // The writer tries again by itself when idle; until that commit succeeds: kFailing.
    Admit admit = Admit::kFailing;
    ASSERT_TRUE(wait_until([&] {
      admit = accept(*j, lost1, again1);
      return admit != Admit::kFailing;
    })) << "the journal kept answering kFailing";
    EXPECT_EQ(admit, Admit::kAccepted) << "the lost batch's ids must be forgotten";
    EXPECT_GT(again1, l3);
    again2 = accept_ok(*j, lost2);
    EXPECT_EQ(accept_id(*j, 1, "keep"), Admit::kDuplicate) << "committed ids stay";
    ASSERT_TRUE(wait_durable(*j, again2));
    ASSERT_TRUE(wait_until([&] {
      for (const auto& c : gate.calls()) {
        if (c.ok && c.last >= static_cast<std::uint64_t>(again2)) return true;
      }
      return false;
    })) << "no successful on_commit for the deliveries accepted again";
    EXPECT_EQ(j->stats().commit_failures, 1U);
    j->stop();
  }
  o.fail_commit = nullptr;
  o.on_commit = nullptr;
  auto j = open(o);
  ASSERT_NE(j, nullptr);
  const State after = as_state(j->take_recovered());
  std::set<std::int64_t> dids;
  for (const auto& [did, u] : after) dids.insert(did);
  EXPECT_EQ(dids, (std::set<std::int64_t>{kept, again1, again2})) << describe(after);
}

// --- 7. purge -----------------------------------------------------------------------------------

TEST_F(JournalTest, PurgeRemovesFinalDeliveriesPastTheHistoryWindow) {
  DurabilityOptions o = options();
  o.history_ms = 1;
  {
    auto j = open(o);
    ASSERT_NE(j, nullptr);
    j->start();
    const std::int64_t a = accept_ok(*j, unfinished("purge-a", 1, type_name(0), "{}", 5));
    const std::int64_t b = accept_ok(*j, unfinished("purge-b", 1, type_name(0), "{}", 5));
    const std::int64_t c = accept_ok(*j, unfinished("purge-c", 1, type_name(0), "{}", 5));
    ASSERT_TRUE(wait_durable(*j, c));
    j->attempt(a, 1, 200, Failure::kNone, 100, 0, OutcomeKind::kDelivered);
    j->final(b, OutcomeKind::kDropped, 0);
    ASSERT_TRUE(wait_records(*j, 5));
    // The writer purges at most once a second (an idle writer commits for it).
    DeliveryPage page;
    std::string error;
    ASSERT_TRUE(wait_until([&] {
      auto p = j->deliveries(5, "", 0, 10);
      if (!p) {
        error = p.error();
        return true;
      }
      page = std::move(*p);
      return page.count <= 1;
    })) << "final deliveries were not purged; count "
        << page.count;
    ASSERT_TRUE(error.empty()) << error;
    EXPECT_EQ(page.count, 1);
    ASSERT_EQ(page.items.size(), 1U);
    EXPECT_EQ(page.items[0].event_id, "purge-c");
    EXPECT_FALSE(page.items[0].outcome.has_value());
    for (const char* outcome : {"delivered", "dropped"}) {
      auto p = j->deliveries(5, outcome, 0, 10);
      ASSERT_TRUE(p.has_value());
      EXPECT_EQ(p->count, 0) << outcome;
    }
    j->stop();
  }
  auto j = open(o);
  ASSERT_NE(j, nullptr);
  const State after = as_state(j->take_recovered());
  ASSERT_EQ(after.size(), 1U);
  EXPECT_EQ(after.begin()->second.event_id, "purge-c");
}

}  // namespace
}  // namespace fanout::engine
