// LoopTimer (transport/loop_timer.h) on a real uv loop: the wheel driven by one uv_timer_t,
// entries firing in deadline order while the loop runs, the loop let go when nothing is armed,
// close from outside and from a callback. The wheel itself: timer_wheel_test.cc.
#include "transport/loop_timer.h"

#include <gtest/gtest.h>
#include <uv.h>

#include <cstdint>
#include <deque>
#include <functional>
#include <utility>
#include <vector>

#include "transport/timer_wheel.h"

namespace fanout::transport {
namespace {

class LoopTimerTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_EQ(uv_loop_init(&loop_), 0); }
  void TearDown() override { EXPECT_EQ(uv_loop_close(&loop_), 0); }

  // Closes `timer` and lets the loop process the close.
  void close(LoopTimer& timer) {
    timer.close();
    EXPECT_EQ(uv_run(&loop_, UV_RUN_DEFAULT), 0);
  }

  struct Recorder {
    LoopTimer* timer = nullptr;
    int id = 0;
    std::vector<std::pair<int, std::uint64_t>>* log = nullptr;  // (id, uv_now at firing)
    std::uint64_t deadline = 0;
    TimerEntry entry{&Recorder::on_timer, this};
    std::function<void(Recorder&)> action;
    static void on_timer(TimerEntry&, void* data) noexcept {
      auto* self = static_cast<Recorder*>(data);
      self->log->emplace_back(self->id, self->timer->now());
      if (self->action) self->action(*self);
    }
  };

  uv_loop_t loop_{};
};

TEST_F(LoopTimerTest, FiresEntriesInDeadlineOrderWhileTheLoopRuns) {
  LoopTimer timer(&loop_);
  std::vector<std::pair<int, std::uint64_t>> log;
  std::deque<Recorder> recs;
  const std::uint64_t now = timer.now();
  for (int id : {2, 0, 1}) {
    auto& r = recs.emplace_back();
    r.timer = &timer;
    r.id = id;
    r.log = &log;
    r.deadline = now + static_cast<std::uint64_t>(id);
    timer.schedule(r.entry, r.deadline);
  }
  EXPECT_EQ(timer.size(), 3U);
  // The loop waits by itself and returns once nothing is armed.
  EXPECT_EQ(uv_run(&loop_, UV_RUN_DEFAULT), 0);
  ASSERT_EQ(log.size(), 3U);
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(log[static_cast<std::size_t>(i)].first, i);
    EXPECT_GE(log[static_cast<std::size_t>(i)].second, now + static_cast<std::uint64_t>(i));
  }
  EXPECT_EQ(timer.armed_deadline(), std::nullopt);
  close(timer);
}

TEST_F(LoopTimerTest, CancellingTheOnlyTimerLetsTheLoopExit) {
  LoopTimer timer(&loop_);
  TimerEntry hour([](TimerEntry&, void*) noexcept { ADD_FAILURE() << "cancelled timer fired"; },
                  nullptr);
  timer.schedule_after(hour, 3'600'000);
  EXPECT_TRUE(timer.armed_deadline().has_value());
  timer.cancel(hour);
  EXPECT_EQ(timer.armed_deadline(), std::nullopt);
  EXPECT_EQ(uv_run(&loop_, UV_RUN_DEFAULT), 0);  // would wait an hour if the handle stayed active
  close(timer);
}

TEST_F(LoopTimerTest, CancellingFromACallbackLetsTheLoopExit) {
  LoopTimer timer(&loop_);
  std::vector<std::pair<int, std::uint64_t>> log;
  Recorder hour;
  hour.timer = &timer;
  hour.id = 1;
  hour.log = &log;
  Recorder now;
  now.timer = &timer;
  now.id = 0;
  now.log = &log;
  now.action = [&](Recorder&) { timer.cancel(hour.entry); };
  timer.schedule_after(hour.entry, 3'600'000);
  timer.schedule_after(now.entry, 0);
  EXPECT_EQ(uv_run(&loop_, UV_RUN_DEFAULT), 0);
  ASSERT_EQ(log.size(), 1U);
  EXPECT_EQ(log[0].first, 0);
  EXPECT_FALSE(hour.entry.armed());
  close(timer);
}

TEST_F(LoopTimerTest, OnlyAnEarlierDeadlineRestartsTheUvTimer) {
  LoopTimer timer(&loop_);
  TimerEntry a([](TimerEntry&, void*) noexcept {}, nullptr);
  TimerEntry b([](TimerEntry&, void*) noexcept {}, nullptr);
  TimerEntry c([](TimerEntry&, void*) noexcept {}, nullptr);
  const std::uint64_t now = timer.now();
  timer.schedule(a, now + 50'000);
  const auto first = timer.armed_deadline();
  ASSERT_TRUE(first.has_value());
  EXPECT_LE(*first, now + 50'000);
  timer.schedule(b, now + 90'000);
  EXPECT_EQ(timer.armed_deadline(), first);
  timer.schedule(c, now + 10);
  ASSERT_TRUE(timer.armed_deadline().has_value());
  EXPECT_LE(*timer.armed_deadline(), now + 10);
  timer.cancel(c);  // not the last one: the uv timer stays early, a spurious wake-up is cheaper
  EXPECT_TRUE(timer.armed_deadline().has_value());
  timer.cancel(a);
  timer.cancel(b);
  EXPECT_EQ(timer.armed_deadline(), std::nullopt);
  close(timer);
}

TEST_F(LoopTimerTest, EntryRescheduledDueNowFiresOnALaterIteration) {
  LoopTimer timer(&loop_);
  std::vector<std::pair<int, std::uint64_t>> log;
  Recorder r;
  r.timer = &timer;
  r.log = &log;
  r.action = [&](Recorder& self) {
    if (log.size() < 4) timer.schedule(self.entry, timer.now());
  };
  timer.schedule_after(r.entry, 0);
  EXPECT_EQ(uv_run(&loop_, UV_RUN_DEFAULT), 0);
  ASSERT_EQ(log.size(), 4U);
  for (std::size_t i = 1; i < log.size(); ++i) EXPECT_GT(log[i].second, log[i - 1].second);
  close(timer);
}

TEST_F(LoopTimerTest, CloseDisarmsEntriesAndFreesTheOwnerInTheCloseCallback) {
  auto* timer = new LoopTimer(&loop_);
  TimerEntry a([](TimerEntry&, void*) noexcept { ADD_FAILURE() << "fired after close"; }, nullptr);
  timer->schedule_after(a, 3'600'000);
  int closed = 0;
  timer->close(
      [](LoopTimer* t, void* data) noexcept {
        ++*static_cast<int*>(data);
        delete t;  // the libuv rule: free the handle's owner in its close callback
      },
      &closed);
  EXPECT_FALSE(a.armed());
  EXPECT_EQ(uv_run(&loop_, UV_RUN_DEFAULT), 0);
  EXPECT_EQ(closed, 1);
}

TEST_F(LoopTimerTest, CallbackCanCloseTheTimer) {
  LoopTimer timer(&loop_);
  std::vector<std::pair<int, std::uint64_t>> log;
  std::deque<Recorder> recs;
  for (int id = 0; id < 3; ++id) {
    auto& r = recs.emplace_back();
    r.timer = &timer;
    r.id = id;
    r.log = &log;
  }
  recs[0].action = [&](Recorder&) { timer.close(); };  // a shutdown deadline
  for (auto& r : recs) timer.schedule_after(r.entry, 0);
  timer.schedule_after(recs.emplace_back().entry, 3'600'000);
  EXPECT_EQ(uv_run(&loop_, UV_RUN_DEFAULT), 0);
  ASSERT_EQ(log.size(), 1U);  // the rest of the batch was disarmed by close()
  for (const auto& r : recs) EXPECT_FALSE(r.entry.armed());
}

TEST_F(LoopTimerTest, SchedulingAfterAnIdlePeriodArmsForTheRealDeadline) {
  LoopTimer timer(&loop_);
  TimerEntry a([](TimerEntry&, void*) noexcept {}, nullptr);
  // Let the loop's clock move by at least 2 ms while the wheel is idle.
  uv_timer_t tick;
  uv_timer_init(&loop_, &tick);
  uv_timer_start(
      &tick, [](uv_timer_t*) {}, 2, 0);
  uv_run(&loop_, UV_RUN_DEFAULT);
  const std::uint64_t now = timer.now();
  EXPECT_GE(now, timer.wheel().now() + 2);
  const std::uint64_t d = now | 63;  // same 64 ms block as now: level 0, an exact deadline
  timer.schedule(a, d);
  EXPECT_EQ(timer.wheel().now(), now);
  EXPECT_EQ(timer.armed_deadline(), d);
  timer.cancel(a);
  uv_close(reinterpret_cast<uv_handle_t*>(&tick), nullptr);
  close(timer);
}

TEST_F(LoopTimerTest, UnrefdTimerDoesNotKeepTheLoopAlive) {
  LoopTimer timer(&loop_);
  TimerEntry a([](TimerEntry&, void*) noexcept { ADD_FAILURE() << "fired"; }, nullptr);
  timer.unref();
  timer.schedule_after(a, 3'600'000);
  EXPECT_EQ(uv_run(&loop_, UV_RUN_DEFAULT), 0);
  EXPECT_TRUE(a.armed());
  close(timer);
  EXPECT_FALSE(a.armed());
}

}  // namespace
}  // namespace fanout::transport
