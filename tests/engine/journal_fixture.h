// What the journal's tests share (journal_test.cc, journal_index_test.cc,
// journal_history_test.cc; engine/journal.h on its own, without HTTP): waits, expected states,
// a gate on the journal's commits, and JournalTest, the fixture that opens, fills and reopens
// journals in a fresh temporary directory.
//
// Nothing sleeps: a test waits for the writer by polling (std::this_thread::yield) or on a
// condition signalled from on_commit, always against a generous deadline that fails the test; no
// test measures time.
#pragma once

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
// Readable gtest messages for the journal's answers.
inline void PrintTo(Journal::Admit a, std::ostream* os) {
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

namespace journal_testing {

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
inline bool wait_until(const std::function<bool()>& done) {
  const auto deadline = std::chrono::steady_clock::now() + kDeadline;
  while (!done()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::yield();
  }
  return true;
}

inline bool wait_durable(const Journal& j, std::int64_t did) {
  return wait_until([&] { return j.durable_seq() >= static_cast<std::uint64_t>(did); });
}

// Every record appended so far is committed (attempts and finals do not move durable_seq()).
inline bool wait_records(const Journal& j, std::uint64_t records) {
  return wait_until([&] { return j.stats().records >= records; });
}

inline std::int64_t wall_ms() {
  using namespace std::chrono;
  return duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
}

// Deterministic bytes of every value (NUL and 0xff included): bodies must come back exact.
inline std::string bytes_of(std::size_t n, std::uint32_t seed) {
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

inline std::uint64_t fnv1a(std::string_view s) {
  std::uint64_t h = 0xcbf29ce484222325ULL;
  for (char c : s) {
    h ^= static_cast<unsigned char>(c);
    h *= 0x100000001b3ULL;
  }
  return h;
}

inline std::uintmax_t size_or_zero(const fs::path& p) {
  std::error_code ec;
  const std::uintmax_t n = fs::file_size(p, ec);
  return ec ? 0 : n;
}

// The journal's footprint: the database, its WAL and the log's segments.
inline std::uintmax_t disk_size(const fs::path& dir) {
  std::uintmax_t log = 0;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir / "journal-log", ec)) {
    log += size_or_zero(e.path());
  }
  return size_or_zero(dir / "journal.db") + size_or_zero(dir / "journal.db-wal") + log;
}

// --- expected states: the deliveries without a final outcome, by did ---------------------------

using State = std::map<std::int64_t, Unfinished>;

inline bool same(const Unfinished& a, const Unfinished& b) {
  return a.event_id == b.event_id && a.org_id == b.org_id && a.event_type == b.event_type &&
         a.body == b.body && a.subscription_id == b.subscription_id && a.attempts == b.attempts &&
         a.next_attempt_unix_ms == b.next_attempt_unix_ms;
}

inline bool same(const State& a, const State& b) {
  if (a.size() != b.size()) return false;
  for (auto ia = a.begin(), ib = b.begin(); ia != a.end(); ++ia, ++ib) {
    if (ia->first != ib->first || !same(ia->second, ib->second)) return false;
  }
  return true;
}

inline std::string describe(const State& s) {
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
inline State as_state(const std::vector<Journal::Recovered>& v, bool* ordered = nullptr) {
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

inline Unfinished unfinished(std::string id, std::int64_t org, std::string_view type,
                             std::string body, std::int64_t sub) {
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
    // A history read answers once the indexer has copied what came before it, however slow a
    // sanitizer build on a loaded machine makes the copy (by default it waits 1 s at most).
    o.history_wait_ms = std::chrono::milliseconds(kDeadline).count();
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

}  // namespace journal_testing
}  // namespace fanout::engine
