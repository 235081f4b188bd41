// The journal's copy of its log into SQLite (engine/journal_index.cc): disk stays bounded
// without history, the checkpointer copies the WAL into the database, an older database keeps
// its page size, and the indexer leaves the background as the log nears its bound.
#include <gtest/gtest.h>

#include "tests/engine/journal_fixture.h"

namespace fanout::engine {
namespace {

using namespace journal_testing;  // the fixture and its helpers (journal_fixture.h)

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

// Whether a thread of this process, once in the background, may leave it (CAP_SYS_NICE).
bool may_leave_background() {
  bool allowed = false;
  std::thread([&] {
    journal_detail::background_priority(gettid(), true);
    allowed = journal_detail::background_priority(gettid(), false);
  }).join();
  return allowed;
}

// Holds the indexer in before_index until released, and notes there, on the indexer's own
// thread, its id and its scheduling policy as each pass begins and as a held pass goes on.
class HeldIndexer {
 public:
  std::function<void()> hook() {
    return [this] {
      std::unique_lock lock(mu_);
      tid_ = gettid();
      began_.push_back(sched_getscheduler(0));
      cv_.notify_all();
      if (!held_) return;
      cv_.wait(lock, [&] { return !held_; });
      went_on_.push_back(sched_getscheduler(0));
      cv_.notify_all();
    };
  }
  // Waits until `passes` passes have begun and `held` held passes have gone on; false after
  // 30 s.
  bool wait(std::size_t passes, std::size_t held = 0) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, std::chrono::seconds(30),
                        [&] { return began_.size() >= passes && went_on_.size() >= held; });
  }
  void release() {
    std::lock_guard lock(mu_);
    held_ = false;
    cv_.notify_all();
  }
  pid_t tid() {
    std::lock_guard lock(mu_);
    return tid_;
  }
  std::vector<int> began() {
    std::lock_guard lock(mu_);
    return began_;
  }
  std::vector<int> went_on() {
    std::lock_guard lock(mu_);
    return went_on_;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool held_ = true;
  pid_t tid_ = 0;
  std::vector<int> began_, went_on_;
};
// Declared after the journal: releases the indexer before the journal stops (or it would wait).
struct ReleaseOnExit {
  HeldIndexer& indexer;
  ~ReleaseOnExit() { indexer.release(); }
};

// Under a load beyond what the workers deliver no core idles, and an indexer left in the
// background would not copy at all: the log would reach its bound and every answer wait for it.
// From 1/4 of the bound the writer takes the indexer out of the background (SCHED_OTHER), and
// the indexer goes back once under 1/16. Its policy is read in before_index, on its own thread.
TEST_F(JournalTest, TheIndexerLeavesTheBackgroundWhenTheLogNearsItsBound) {
  if (!may_leave_background()) {
    GTEST_SKIP() << "this process may not leave SCHED_IDLE (no CAP_SYS_NICE)";
  }
  DurabilityOptions o = options();
  o.max_log_backlog_bytes = std::uint64_t{512} << 10;
  HeldIndexer indexer;
  o.before_index = indexer.hook();
  auto j = open(o);
  ASSERT_NE(j, nullptr);
  ReleaseOnExit unhold{indexer};
  j->start();
  ASSERT_TRUE(indexer.wait(1));
  EXPECT_EQ(indexer.began().front(), SCHED_IDLE);
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
  // The held pass goes on out of the background; the next one, caught up, is back in it.
  const std::size_t before = indexer.began().size();
  indexer.release();
  ASSERT_TRUE(indexer.wait(before + 1, 1));
  EXPECT_EQ(indexer.went_on().front(), SCHED_OTHER);
  EXPECT_EQ(indexer.began()[before], SCHED_IDLE);
  EXPECT_EQ(j->stats().index_boosts, 1U);
  EXPECT_EQ(j->stats().backlog_waits, 0U);
  j->stop();
}

// In the background the indexer runs only on a core that would idle; with both cores busy a
// history read would wait out history_wait_ms and answer from a database behind it. While a read
// waits, the indexer is out of the background (SCHED_OTHER), and back in it once the read is
// answered. The indexer is held in before_index while the read waits, so the read cannot end
// before the test has seen the indexer's policy change.
TEST_F(JournalTest, AHistoryReadTakesTheIndexerOutOfTheBackgroundWhileItWaits) {
  if (!may_leave_background()) {
    GTEST_SKIP() << "this process may not leave SCHED_IDLE (no CAP_SYS_NICE)";
  }
  DurabilityOptions o = options();
  o.history_wait_ms = 3'600'000;  // the read ends when the indexer has copied the delivery
  HeldIndexer indexer;
  o.before_index = indexer.hook();
  auto j = open(o);
  ASSERT_NE(j, nullptr);
  ReleaseOnExit unhold{indexer};
  j->start();
  ASSERT_TRUE(indexer.wait(1));
  const pid_t tid = indexer.tid();
  EXPECT_EQ(sched_getscheduler(tid), SCHED_IDLE);
  std::int64_t did = 0;
  ASSERT_EQ(j->accept(1, 0, "read-me", "{}", 1, false, 0, did), Admit::kAccepted);
  ASSERT_TRUE(wait_durable(*j, did));
  std::optional<tl::expected<DeliveryPage, std::string>> page;
  std::thread reader([&] { page = j->deliveries(1, "", 0, 10); });
  const bool out = wait_until([&] { return sched_getscheduler(tid) == SCHED_OTHER; });
  indexer.release();
  reader.join();
  EXPECT_TRUE(out) << "the read left the indexer in the background";
  ASSERT_TRUE(page.has_value());
  ASSERT_TRUE(page->has_value()) << page->error();
  ASSERT_EQ((*page)->items.size(), 1U) << "the read waited for the copy";
  EXPECT_EQ((*page)->items[0].event_id, "read-me");
  ASSERT_TRUE(indexer.wait(1, 1));
  EXPECT_EQ(indexer.went_on().front(), SCHED_OTHER)
      << "the held pass went on out of the background";
  EXPECT_EQ(sched_getscheduler(tid), SCHED_IDLE) << "back in the background after the read";
  EXPECT_EQ(j->stats().index_boosts, 0U) << "not the backlog's doing";
  j->stop();
}

}  // namespace
}  // namespace fanout::engine
