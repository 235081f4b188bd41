// TimerWheel with a manual clock: every offset fires exactly at its deadline, stepping 1 ms or
// following next_deadline(), and the wheel matches a reference model under random operations.
#include "transport/timer_wheel.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <map>
#include <optional>
#include <random>
#include <vector>

#include "tests/transport/timer_wheel_fixture.h"

namespace fanout::transport {
namespace {

TEST_F(TimerWheelTest, FiresExactlyAtDeadlineForEveryOffsetSteppingOneMillisecond) {
  // All offsets at once, one entry each, advancing 1 ms at a time: at every step exactly the
  // entry due at that time fires.
  struct Case {
    std::uint64_t start;
    std::uint64_t offsets;
  };
  const std::uint64_t k2 = 64 * 64 + 100;
  const std::uint64_t k3 = 64 * 64 * 64 + 100;
  for (const Case& c :
       {Case{0, k2}, Case{1, k2}, Case{37, k2}, Case{63, k2}, Case{64, k2}, Case{4095, k2},
        Case{4097, k2}, Case{262'143 + 5, k2}, Case{1'234'567'891, k2}, Case{kSpan - 3, k2},
        Case{5 * kSpan - 1, k2}, Case{0, k3}, Case{262'140, k3}, Case{kSpan - 100'000, k3}}) {
    SCOPED_TRACE(testing::Message() << "start " << c.start << " offsets " << c.offsets);
    restart(c.start);
    for (std::uint64_t off = 0; off <= c.offsets; ++off) {
      wheel().schedule(probe(static_cast<int>(off)).entry, c.start + off);
    }
    for (std::uint64_t off = 0; off <= c.offsets; ++off) {
      const std::size_t before = fired_.size();
      ASSERT_EQ(wheel().advance(c.start + off), 1U);
      ASSERT_EQ(fired_[before], (Fired{static_cast<int>(off), c.start + off}));
    }
    EXPECT_TRUE(wheel().empty());
  }
}

TEST_F(TimerWheelTest, FiresExactlyAtDeadlineForEveryOffsetFollowingNextDeadline) {
  // One entry at a time, jumping by next_deadline(): every jump stays <= the deadline and the
  // entry fires exactly at it.
  std::vector<std::uint64_t> offsets;
  for (std::uint64_t off = 0; off <= 64 * 64 + 100; ++off) offsets.push_back(off);
  for (std::uint64_t p = 64; p <= kSpan; p *= 64) {
    for (std::uint64_t m : {1ULL, 2ULL, 63ULL}) {
      for (std::uint64_t delta = 0; delta < 5; ++delta) {
        offsets.push_back(m * p + delta);
        offsets.push_back(m * p - 1 - delta);
      }
    }
  }
  const std::uint64_t starts[] = {
      0, 1, 63, 64, 4097, 1'234'567'891, kSpan - 3, 3 * kSpan + 262'145};
  for (const std::uint64_t start : starts) {
    for (const std::uint64_t off : offsets) {
      restart(start);
      const std::uint64_t d = start + off;
      wheel().schedule(probe(0).entry, d);
      std::size_t jumps = 0;
      while (const auto next = wheel().next_deadline()) {
        ASSERT_LE(*next, d) << "start " << start << " offset " << off;
        wheel().advance(*next);
        ASSERT_LT(++jumps, 200U);
      }
      ASSERT_EQ(fired_, (std::vector<Fired>{{0, d}})) << "start " << start << " offset " << off;
    }
  }
}

// A reference model: a std::multimap from effective deadline to id (equal keys keep insertion
// order), advanced in lockstep. Callbacks also schedule and cancel, on both.
TEST_F(TimerWheelTest, MatchesAReferenceModelUnderRandomOperations) {
  constexpr int kProbes = 1000;
  std::mt19937_64 rng(20240601);
  const std::uint64_t start = 1'000'003;
  restart(start);
  std::uint64_t model_now = start;
  std::multimap<std::uint64_t, int> ref;
  std::vector<std::optional<std::multimap<std::uint64_t, int>::iterator>> where(kProbes);
  std::vector<bool> in_batch(kProbes, false);
  std::deque<int> batch;

  auto random_delay = [&]() -> std::uint64_t {
    switch (rng() % 6) {
      case 0:
        return 0;
      case 1:
        return rng() % 64;
      case 2:
        return rng() % 5000;
      case 3:
        return rng() % 300'000;
      case 4:
        return rng() % (kSpan * 3);
      default:
        return rng() % 100;
    }
  };
  auto model_remove = [&](int id) {
    auto i = static_cast<std::size_t>(id);
    if (where[i]) ref.erase(*where[i]);
    where[i].reset();
    in_batch[i] = false;
  };
  auto do_schedule = [&](int id) {
    // Sometimes a deadline in the past.
    const std::uint64_t now = wheel().now();
    const std::uint64_t d =
        rng() % 8 == 0 ? now - std::min<std::uint64_t>(now, rng() % 1000) : now + random_delay();
    model_remove(id);
    where[static_cast<std::size_t>(id)] = ref.emplace(std::max(d, model_now), id);
    wheel().schedule(probes_[static_cast<std::size_t>(id)].entry, d);
  };
  auto do_cancel = [&](int id) {
    model_remove(id);
    wheel().cancel(probes_[static_cast<std::size_t>(id)].entry);
  };
  auto random_id = [&] { return static_cast<int>(rng() % kProbes); };

  for (int id = 0; id < kProbes; ++id) {
    probe(id).action = [&](Probe& self) {
      // The wheel must fire the model's next live batch entry.
      while (!batch.empty() && !in_batch[static_cast<std::size_t>(batch.front())])
        batch.pop_front();
      ASSERT_FALSE(batch.empty());
      ASSERT_EQ(batch.front(), self.id);
      in_batch[static_cast<std::size_t>(self.id)] = false;
      batch.pop_front();
      switch (rng() % 5) {
        case 0:
          do_schedule(self.id);
          break;
        case 1:
          do_schedule(random_id());
          break;
        case 2:
          do_cancel(random_id());
          break;
        default:
          break;
      }
    };
  }

  std::size_t total_fired = 0;
  for (int op = 0; op < 100'000; ++op) {
    const auto kind = rng() % 10;
    if (kind < 5) {
      do_schedule(random_id());
    } else if (kind < 7) {
      do_cancel(random_id());
    } else {
      std::uint64_t step = 0;
      switch (rng() % 4) {
        case 0:
          step = 0;
          break;
        case 1:
          step = 1 + rng() % 64;
          break;
        case 2:
          step = rng() % 20'000;
          break;
        default:
          step = rng() % 1000 == 0 ? rng() % (kSpan * 2) : rng() % 400'000;
          break;
      }
      const std::uint64_t to = wheel().now() + step;
      model_now = std::max(model_now, to);
      while (!ref.empty() && ref.begin()->first <= model_now) {
        const int id = ref.begin()->second;
        ref.erase(ref.begin());
        where[static_cast<std::size_t>(id)].reset();
        in_batch[static_cast<std::size_t>(id)] = true;
        batch.push_back(id);
      }
      const std::size_t before = fired_.size();
      const std::size_t fired = wheel().advance(to);
      ASSERT_EQ(fired, fired_.size() - before);
      total_fired += fired;
      for (int id : batch) ASSERT_FALSE(in_batch[static_cast<std::size_t>(id)]) << "unfired " << id;
      batch.clear();
    }
    ASSERT_EQ(wheel().size(), ref.size());
    if (!ref.empty()) {
      const auto next = wheel().next_deadline();
      ASSERT_TRUE(next.has_value());
      ASSERT_LE(*next, ref.begin()->first);
    }
  }
  for (int id = 0; id < kProbes; ++id) {
    ASSERT_EQ(probes_[static_cast<std::size_t>(id)].entry.armed(),
              where[static_cast<std::size_t>(id)].has_value());
  }
  EXPECT_GT(total_fired, 10'000U);
}

}  // namespace
}  // namespace fanout::transport
