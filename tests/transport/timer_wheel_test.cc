// TimerWheel with a manual clock: order, cancel, reschedule, jumps, clear. Exact deadlines at
// every offset and the reference model: timer_wheel_deadline_test.cc. LoopTimer on a real uv loop:
// loop_timer_test.cc.
#include "transport/timer_wheel.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <limits>
#include <memory>
#include <optional>
#include <random>
#include <vector>

#include "tests/transport/timer_wheel_fixture.h"

namespace fanout::transport {
namespace {

TEST_F(TimerWheelTest, FiresEqualDeadlinesInInsertionOrder) {
  for (int id : {3, 1, 4, 0, 2}) wheel().schedule(probe(id).entry, 100);
  EXPECT_EQ(wheel().advance(99), 0U);
  EXPECT_EQ(wheel().advance(100), 5U);
  EXPECT_EQ(fired_ids(), (std::vector<int>{3, 1, 4, 0, 2}));
  EXPECT_TRUE(wheel().empty());
}

TEST_F(TimerWheelTest, EqualDeadlinesKeepInsertionOrderAcrossCascades) {
  // The same deadline scheduled from three different times lands on three different levels
  // at first; cascades must still deliver A, B, C.
  const std::uint64_t d = 5000;  // [1, 14, 8]
  wheel().schedule(probe(0).entry, d);
  wheel().advance(4500);  // A cascades from level 2 to level 1
  wheel().schedule(probe(1).entry, d);
  wheel().advance(4995);  // A and B cascade to level 0
  wheel().schedule(probe(2).entry, d);
  wheel().advance(d);
  EXPECT_EQ(fired_, (std::vector<Fired>{{0, d}, {1, d}, {2, d}}));
}

TEST_F(TimerWheelTest, FiresInDeadlineOrderAcrossLevels) {
  const std::vector<std::uint64_t> deadlines = {4097,
                                                1,
                                                262144,
                                                64,
                                                2 * kSpan + 3,
                                                63,
                                                kSpan + 1,
                                                4095,
                                                65,
                                                262143,
                                                64ULL * 64 * 64 * 64 + 3,
                                                4096,
                                                kSpan - 1,
                                                64ULL * 64 * 64 * 64 * 64 + 7,
                                                kSpan};
  for (std::size_t i = 0; i < deadlines.size(); ++i) {
    wheel().schedule(probe(static_cast<int>(i)).entry, deadlines[i]);
  }
  // Walking by next_deadline(), each entry fires exactly at its deadline.
  while (const auto next = wheel().next_deadline()) wheel().advance(*next);
  ASSERT_EQ(fired_.size(), deadlines.size());
  for (std::size_t i = 0; i < fired_.size(); ++i) {
    EXPECT_EQ(fired_[i].at, deadlines[static_cast<std::size_t>(fired_[i].id)]);
    if (i > 0) {
      EXPECT_LT(fired_[i - 1].at, fired_[i].at);
    }
  }
}

TEST_F(TimerWheelTest, CancelledEntryNeverFires) {
  // Cancel the head, the middle and the tail of one slot, and entries on other levels.
  for (int id = 0; id < 6; ++id) wheel().schedule(probe(id).entry, 10);
  wheel().schedule(probe(6).entry, 5000);
  wheel().schedule(probe(7).entry, 5001);
  wheel().schedule(probe(8).entry, 3 * kSpan);
  EXPECT_EQ(wheel().size(), 9U);
  for (int id : {0, 2, 5, 6, 8}) wheel().cancel(probes_[static_cast<std::size_t>(id)].entry);
  EXPECT_EQ(wheel().size(), 4U);
  EXPECT_FALSE(probes_[0].entry.armed());
  EXPECT_TRUE(probes_[1].entry.armed());
  wheel().advance(4 * kSpan);
  EXPECT_EQ(fired_ids(), (std::vector<int>{1, 3, 4, 7}));
  EXPECT_TRUE(wheel().empty());
  EXPECT_EQ(wheel().next_deadline(), std::nullopt);
}

TEST_F(TimerWheelTest, CancelIsIdempotent) {
  auto& a = probe(0);
  wheel().cancel(a.entry);  // never scheduled
  wheel().schedule(a.entry, 10);
  wheel().cancel(a.entry);
  wheel().cancel(a.entry);
  EXPECT_EQ(wheel().size(), 0U);
  EXPECT_FALSE(wheel().armed(a.entry));
  wheel().schedule(a.entry, 20);  // a cancelled entry can be scheduled again
  EXPECT_EQ(wheel().size(), 1U);
  EXPECT_EQ(wheel().advance(20), 1U);
  wheel().cancel(a.entry);  // after firing
  EXPECT_EQ(wheel().size(), 0U);
}

TEST_F(TimerWheelTest, CancellingTheLastEntryOfASlotMovesNextDeadline) {
  wheel().schedule(probe(0).entry, 10);
  wheel().schedule(probe(1).entry, 30);
  EXPECT_EQ(wheel().next_deadline(), 10U);
  wheel().cancel(probes_[0].entry);
  EXPECT_EQ(wheel().next_deadline(), 30U);
}

TEST_F(TimerWheelTest, CallbackCanCancelALaterEntryOfTheSameBatch) {
  auto& a = probe(0);
  auto& b = probe(1);
  auto& c = probe(2);
  auto& d = probe(3);
  a.action = [&](Probe&) {
    wheel().cancel(c.entry);
    wheel().cancel(d.entry);
  };
  wheel().schedule(a.entry, 10);
  wheel().schedule(b.entry, 10);
  wheel().schedule(c.entry, 10);
  wheel().schedule(d.entry, 11);
  EXPECT_EQ(wheel().advance(20), 2U);
  EXPECT_EQ(fired_ids(), (std::vector<int>{0, 1}));
  EXPECT_TRUE(wheel().empty());
}

TEST_F(TimerWheelTest, CallbackCanMoveALaterEntryOfTheSameBatch) {
  auto& a = probe(0);
  auto& b = probe(1);
  a.action = [&](Probe&) { wheel().schedule(b.entry, 100); };
  wheel().schedule(a.entry, 10);
  wheel().schedule(b.entry, 10);
  EXPECT_EQ(wheel().advance(10), 1U);
  EXPECT_TRUE(b.entry.armed());
  wheel().advance(100);
  EXPECT_EQ(fired_, (std::vector<Fired>{{0, 10}, {1, 100}}));
}

TEST_F(TimerWheelTest, CallbackCanRescheduleItself) {
  auto& a = probe(0);
  a.action = [&](Probe& self) {
    if (fired_.size() < 3) wheel().schedule(self.entry, wheel().now() + 70);
  };
  wheel().schedule(a.entry, 10);
  while (const auto next = wheel().next_deadline()) wheel().advance(*next);
  EXPECT_EQ(fired_, (std::vector<Fired>{{0, 10}, {0, 80}, {0, 150}}));
}

TEST_F(TimerWheelTest, EntryScheduledDueFromCallbackFiresInTheNextAdvance) {
  auto& a = probe(0);
  auto& b = probe(1);
  auto& c = probe(2);
  auto& d = probe(3);
  a.action = [&](Probe&) {
    wheel().schedule(b.entry, 10);  // due now
    wheel().schedule(c.entry, 3);   // in the past
    wheel().schedule(d.entry, 15);  // due before the advance's target
  };
  wheel().schedule(a.entry, 10);
  EXPECT_EQ(wheel().advance(20), 1U);
  EXPECT_EQ(wheel().next_deadline(), 20U);
  EXPECT_EQ(c.entry.deadline(), 20U);
  EXPECT_EQ(wheel().advance(20), 3U);
  EXPECT_EQ(fired_, (std::vector<Fired>{{0, 20}, {1, 20}, {2, 20}, {3, 20}}));
}

TEST_F(TimerWheelTest, SelfReschedulingDueNowFiresOncePerAdvance) {
  auto& a = probe(0);
  a.action = [&](Probe& self) { wheel().schedule(self.entry, 0); };
  wheel().schedule(a.entry, 5);
  for (std::uint64_t now = 5; now < 10; ++now) EXPECT_EQ(wheel().advance(now), 1U);
  EXPECT_EQ(fired_.size(), 5U);
}

TEST_F(TimerWheelTest, RescheduleMovesAnArmedEntry) {
  auto& a = probe(0);
  auto& b = probe(1);
  wheel().schedule(a.entry, 100);
  wheel().schedule(b.entry, 10);
  wheel().schedule(a.entry, 50);    // earlier, same level
  wheel().schedule(b.entry, 5000);  // later, another level
  EXPECT_EQ(wheel().size(), 2U);
  while (const auto next = wheel().next_deadline()) wheel().advance(*next);
  EXPECT_EQ(fired_, (std::vector<Fired>{{0, 50}, {1, 5000}}));
}

TEST_F(TimerWheelTest, RescheduledEntryGoesBehindEqualDeadlines) {
  auto& a = probe(0);
  auto& b = probe(1);
  wheel().schedule(a.entry, 10);
  wheel().schedule(b.entry, 10);
  wheel().schedule(a.entry, 10);
  wheel().advance(10);
  EXPECT_EQ(fired_ids(), (std::vector<int>{1, 0}));
}

TEST_F(TimerWheelTest, PastDeadlineFiresAtTheNextAdvance) {
  wheel().advance(1000);
  auto& a = probe(0);
  auto& b = probe(1);
  wheel().schedule(a.entry, 1000);
  wheel().schedule(b.entry, 5);
  EXPECT_EQ(b.entry.deadline(), 1000U);
  EXPECT_EQ(wheel().next_deadline(), 1000U);
  EXPECT_EQ(wheel().advance(1000), 2U);
  EXPECT_EQ(fired_, (std::vector<Fired>{{0, 1000}, {1, 1000}}));
}

TEST_F(TimerWheelTest, FarFutureDeadlinesFireExactlyAtTheirDeadline) {
  const std::uint64_t start = 1'700'000'000'123;  // unaligned, epoch-like
  restart(start);
  const std::vector<std::uint64_t> delays = {
      3 * kDayMs, kSpan - 1,         kSpan,     kSpan + 12345, 3 * kSpan + 7,
      7 * kSpan,  400 * kDayMs + 17, 2 * kSpan, kSpan + 1,     70 * kSpan + 99};
  for (std::size_t i = 0; i < delays.size(); ++i) {
    wheel().schedule(probe(static_cast<int>(i)).entry, start + delays[i]);
  }
  std::size_t advances = 0;
  while (const auto next = wheel().next_deadline()) {
    std::uint64_t earliest = std::numeric_limits<std::uint64_t>::max();
    for (const auto& p : probes_) {
      if (p.entry.armed()) earliest = std::min(earliest, p.entry.deadline());
    }
    ASSERT_LE(*next, earliest);
    wheel().advance(*next);
    ++advances;
  }
  ASSERT_EQ(fired_.size(), delays.size());
  for (const auto& f : fired_) EXPECT_EQ(f.at, start + delays[static_cast<std::size_t>(f.id)]);
  // Cascades, not 1 ms steps: a handful of visits per level and per 2^36 ms turn.
  EXPECT_LT(advances, 400U);
}

TEST_F(TimerWheelTest, JumpsNeverFireBeyondSpanDeadlinesEarly) {
  const std::uint64_t d = 5 * kSpan + 4242;
  wheel().schedule(probe(0).entry, d);
  for (std::uint64_t now = 1; now < d; now += kSpan / 3) EXPECT_EQ(wheel().advance(now), 0U);
  EXPECT_EQ(wheel().advance(d - 1), 0U);
  EXPECT_EQ(wheel().advance(d), 1U);
}

TEST_F(TimerWheelTest, ClampedDeadlinesKeepInsertionOrder) {
  const std::uint64_t d = 3 * kSpan + 5;
  wheel().schedule(probe(0).entry, d);
  wheel().advance(kSpan + 100);
  wheel().schedule(probe(1).entry, d);
  wheel().advance(2 * kSpan + 1);
  wheel().schedule(probe(2).entry, d);
  wheel().advance(d);
  EXPECT_EQ(fired_, (std::vector<Fired>{{0, d}, {1, d}, {2, d}}));
}

TEST_F(TimerWheelTest, LargeJumpFiresEverythingDueInDeadlineOrder) {
  std::mt19937_64 rng(7);
  std::vector<std::pair<std::uint64_t, int>> expected;
  for (int id = 0; id < 2000; ++id) {
    const std::uint64_t d = rng() % 10'000'000;
    wheel().schedule(probe(id).entry, d);
    expected.emplace_back(d, id);
  }
  std::stable_sort(expected.begin(), expected.end(),
                   [](const auto& x, const auto& y) { return x.first < y.first; });
  const std::uint64_t cut = 5'000'000;
  const auto due = static_cast<std::size_t>(std::count_if(
      expected.begin(), expected.end(), [&](const auto& e) { return e.first <= cut; }));
  EXPECT_EQ(wheel().advance(cut), due);
  EXPECT_EQ(wheel().advance(20'000'000), expected.size() - due);
  ASSERT_EQ(fired_.size(), expected.size());
  for (std::size_t i = 0; i < expected.size(); ++i) EXPECT_EQ(fired_[i].id, expected[i].second);
}

TEST_F(TimerWheelTest, NextDeadlineIsALowerBoundAndAdvancingToItMakesProgress) {
  std::mt19937_64 rng(11);
  restart(987'654'321);
  for (int id = 0; id < 500; ++id) {
    const std::uint64_t delay = rng() >> (rng() % 64);  // log-uniform, up to beyond the span
    wheel().schedule(probe(id).entry, 987'654'321 + std::min<std::uint64_t>(delay, 50 * kSpan));
  }
  std::size_t advances = 0;
  while (const auto next = wheel().next_deadline()) {
    std::uint64_t earliest = std::numeric_limits<std::uint64_t>::max();
    for (const auto& p : probes_) {
      if (p.entry.armed()) earliest = std::min(earliest, p.entry.deadline());
    }
    ASSERT_LE(*next, earliest);
    ASSERT_GE(*next, wheel().now());
    const std::size_t fired = wheel().advance(*next);
    const auto after = wheel().next_deadline();
    // Progress: something fired, or the next visit moved strictly later.
    ASSERT_TRUE(fired > 0 || !after || *after > *next);
    ASSERT_LT(++advances, 500U * 60);
  }
  EXPECT_EQ(fired_.size(), 500U);
  for (const auto& f : fired_)
    EXPECT_EQ(f.at, probes_[static_cast<std::size_t>(f.id)].entry.deadline());
}

TEST_F(TimerWheelTest, AdvanceNeverMovesTimeBackwards) {
  wheel().advance(500);
  EXPECT_EQ(wheel().advance(100), 0U);
  EXPECT_EQ(wheel().now(), 500U);
  wheel().schedule(probe(0).entry, 501);
  EXPECT_EQ(wheel().advance(200), 0U);
  EXPECT_EQ(wheel().advance(501), 1U);
}

TEST_F(TimerWheelTest, ClearDisarmsEveryEntryWithoutFiring) {
  for (int id = 0; id < 4; ++id) {
    wheel().schedule(probe(id).entry, static_cast<std::uint64_t>(id) * 3000 + 1);
  }
  wheel().clear();
  EXPECT_TRUE(wheel().empty());
  EXPECT_EQ(wheel().next_deadline(), std::nullopt);
  for (const auto& p : probes_) EXPECT_FALSE(p.entry.armed());
  EXPECT_EQ(wheel().advance(100'000), 0U);
  wheel().schedule(probes_[0].entry, 100'001);  // still usable
  EXPECT_EQ(wheel().advance(100'001), 1U);
}

TEST_F(TimerWheelTest, DestroyingTheWheelDisarmsItsEntries) {
  TimerEntry entry([](TimerEntry&, void*) noexcept {}, nullptr);
  {
    TimerWheel local(0);
    local.schedule(entry, 5000);
    EXPECT_TRUE(entry.armed());
  }
  EXPECT_FALSE(entry.armed());
}

TEST_F(TimerWheelTest, BindCallsTheOwnersMember) {
  struct Connection {
    void on_idle() noexcept { ++idle_timeouts; }
    int idle_timeouts = 0;
    TimerEntry idle_timer;
  };
  Connection conn;
  conn.idle_timer.bind<&Connection::on_idle>(&conn);
  wheel().schedule(conn.idle_timer, 30);
  wheel().advance(30);
  EXPECT_EQ(conn.idle_timeouts, 1);
  EXPECT_EQ(conn.idle_timer.data(), &conn);
}

TEST_F(TimerWheelTest, MaximumDeadlineStaysArmedWithoutFiring) {
  wheel().schedule(probe(0).entry, std::numeric_limits<std::uint64_t>::max());
  for (std::uint64_t turn = 1; turn <= 8; ++turn) EXPECT_EQ(wheel().advance(turn * kSpan), 0U);
  EXPECT_TRUE(probes_[0].entry.armed());
  ASSERT_TRUE(wheel().next_deadline().has_value());
  EXPECT_GT(*wheel().next_deadline(), wheel().now());
}

#ifndef NDEBUG
TEST(TimerEntryDeathTest, DestroyingAnArmedEntryAsserts) {
  EXPECT_DEATH(
      [] {
        TimerWheel wheel(0);
        auto entry = std::make_unique<TimerEntry>([](TimerEntry&, void*) noexcept {}, nullptr);
        wheel.schedule(*entry, 5);
        entry.reset();
      }(),
      "cancel it first");
}
#endif

TEST_F(TimerWheelTest, EntryIsSmall) {
  // 16 (links) + 8 (deadline) + 8 (callback) + 8 (data) + 2 (slot), padded.
  EXPECT_LE(sizeof(TimerEntry), 48U);
}

}  // namespace
}  // namespace fanout::transport
