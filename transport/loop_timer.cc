#include "transport/loop_timer.h"

#include <cassert>

namespace fanout::transport {

LoopTimer::LoopTimer(uv_loop_t* loop) noexcept : loop_(loop), wheel_(uv_now(loop)) {
  [[maybe_unused]] const int rc = uv_timer_init(loop_, &timer_);
  assert(rc == 0);
  timer_.data = this;
}

LoopTimer::~LoopTimer() {
  assert(closed_ && "LoopTimer destroyed before its handle's close callback ran");
}

void LoopTimer::schedule(TimerEntry& entry, std::uint64_t deadline_ms) noexcept {
  assert(!closing_ && "LoopTimer::schedule after close");
  // An idle wheel's clock stops at its last advance. Catching it up first (nothing can fire, it
  // is empty) places the entry against the real time, so the uv timer is not armed to an
  // early, coarse slot start after a quiet period.
  if (!firing_ && wheel_.empty()) wheel_.advance(uv_now(loop_));
  wheel_.schedule(entry, deadline_ms);
  if (firing_) return;  // on_fire() re-arms once after advance()
  // A deadline at or after the uv timer's own cannot move next_deadline() before it: its slot
  // starts at or after the earliest occupied slot (see TimerWheel::next_deadline).
  if (uv_armed_ && entry.deadline() >= uv_deadline_) return;
  rearm(0);
}

void LoopTimer::cancel(TimerEntry& entry) noexcept {
  wheel_.cancel(entry);
  // Only an empty wheel stops the uv timer, so the loop can exit; an early wake-up is cheaper
  // than a uv_timer_start per cancel.
  if (!firing_ && uv_armed_ && wheel_.empty()) {
    uv_timer_stop(&timer_);
    uv_armed_ = false;
  }
}

void LoopTimer::rearm(std::uint64_t min_timeout_ms) noexcept {
  const auto next = wheel_.next_deadline();
  if (!next) {
    if (uv_armed_) uv_timer_stop(&timer_);
    uv_armed_ = false;
    return;
  }
  const std::uint64_t now = uv_now(loop_);
  std::uint64_t timeout = *next > now ? *next - now : 0;
  if (timeout < min_timeout_ms) timeout = min_timeout_ms;
  if (uv_armed_ && uv_deadline_ == now + timeout) return;
  uv_timer_start(&timer_, &LoopTimer::on_uv_timer, timeout, 0);
  uv_armed_ = true;
  uv_deadline_ = now + timeout;
}

void LoopTimer::on_uv_timer(uv_timer_t* timer) noexcept {
  static_cast<LoopTimer*>(timer->data)->on_fire();
}

void LoopTimer::on_fire() noexcept {
  uv_armed_ = false;  // a one-shot uv timer is stopped when its callback runs
  firing_ = true;
  wheel_.advance(uv_now(loop_));
  firing_ = false;
  if (closing_) return;  // a callback closed us
  // At least 1 ms: see the header (libuv 1.44 would re-run a 0 ms timer in this same phase).
  rearm(1);
}

void LoopTimer::close(CloseCallback callback, void* data) noexcept {
  assert(!closing_ && "LoopTimer::close called twice");
  closing_ = true;
  close_callback_ = callback;
  close_data_ = data;
  wheel_.clear();
  uv_armed_ = false;
  uv_close(handle(), &LoopTimer::on_uv_close);
}

void LoopTimer::on_uv_close(uv_handle_t* handle) noexcept {
  auto* self = static_cast<LoopTimer*>(handle->data);
  self->closed_ = true;
  // The callback may free self: touch nothing after it.
  if (self->close_callback_ != nullptr) self->close_callback_(self, self->close_data_);
}

}  // namespace fanout::transport
