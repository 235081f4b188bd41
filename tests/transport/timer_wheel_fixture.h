// The fixture of the TimerWheel tests (timer_wheel_test.cc, timer_wheel_deadline_test.cc): a
// wheel on a manual clock, and probes that record when they fire.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <ostream>
#include <vector>

#include "transport/timer_wheel.h"

namespace fanout::transport {

inline constexpr std::uint64_t kSpan = TimerWheel::kSpanMs;
inline constexpr std::uint64_t kDayMs = 24ULL * 3600 * 1000;

struct Fired {
  int id;
  std::uint64_t at;  // the wheel's now() when the callback ran
  friend bool operator==(const Fired&, const Fired&) = default;
};

inline std::ostream& operator<<(std::ostream& os, const Fired& f) {
  return os << "{id " << f.id << " at " << f.at << "}";
}

class TimerWheelTest : public ::testing::Test {
 protected:
  // A timer owner: records each firing, then runs its optional action.
  struct Probe {
    Probe(TimerWheelTest* t, int i) : test(t), id(i), entry(&Probe::on_timer, this) {}
    ~Probe() { test->wheel_->cancel(entry); }
    static void on_timer(TimerEntry& e, void* data) noexcept {
      auto* self = static_cast<Probe*>(data);
      EXPECT_EQ(&e, &self->entry);
      EXPECT_FALSE(e.armed());
      self->test->fired_.push_back({self->id, self->test->wheel_->now()});
      if (self->action) self->action(*self);
    }
    TimerWheelTest* test;
    int id;
    TimerEntry entry;
    std::function<void(Probe&)> action;
  };

  Probe& probe(int id) { return probes_.emplace_back(this, id); }
  // Fresh wheel starting at `now` (and no probes).
  void restart(std::uint64_t now) {
    probes_.clear();
    fired_.clear();
    wheel_ = std::make_unique<TimerWheel>(now);
  }
  TimerWheel& wheel() { return *wheel_; }
  std::vector<int> fired_ids() const {
    std::vector<int> ids;
    for (const auto& f : fired_) ids.push_back(f.id);
    return ids;
  }

  // Declared before the probes: destroyed after them.
  std::unique_ptr<TimerWheel> wheel_ = std::make_unique<TimerWheel>(0);
  std::deque<Probe> probes_;
  std::vector<Fired> fired_;
};

}  // namespace fanout::transport
