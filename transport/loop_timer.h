// LoopTimer: a TimerWheel driven by one uv_timer_t on a libuv loop. One per worker; every
// timeout and backoff of that worker is a TimerEntry in it, never a uv_timer_t of its own.
//
// Clock. Deadlines are absolute milliseconds on the loop's clock, uv_now(loop) (cached at the
// start of each loop iteration; now() returns it). schedule_after() adds a delay to it.
//
// Driving. The uv_timer_t is armed to the wheel's next_deadline(), a lower bound of the earliest
// deadline (see TimerWheel::next_deadline): when it fires, the wheel advances to uv_now(loop),
// which fires what is due or cascades a slot, and the uv timer is armed again to the new
// next_deadline(). So every entry fires on the first loop iteration whose uv_now() is >= its
// deadline, in the wheel's order, with occasional extra wake-ups at cascade points.
//
// Re-arming is lazy, to keep uv_timer_start (a heap operation) off the per-request path:
//   - schedule() restarts the uv timer only when the new entry's deadline is earlier than the
//     time the uv timer is already set for (or when it is stopped);
//   - cancel() stops the uv timer only when the wheel becomes empty. Cancelling the earliest of
//     several entries leaves the uv timer armed early; that wake-up advances the wheel (no work)
//     and re-arms to the real next deadline. Most timeouts end cancelled, so this trades one
//     spurious wake-up per change of the earliest deadline for a uv_timer_start per cancel.
//   - from inside a wheel callback neither restarts nor stops: the fire handler re-arms once
//     after advance() returns.
//
// Keeping the loop alive. The uv timer is active (and referenced, the libuv default) exactly
// while the wheel holds an armed entry, so armed timers keep uv_run(UV_RUN_DEFAULT) running the
// way plain uv timers do, and a wheel emptied by cancel() lets the loop exit. Call unref() for
// timers that should not keep the loop alive on their own (like uv_unref on any handle).
//
// Due-now entries scheduled from a callback. They fire on a later loop iteration, at least 1 ms
// later: the fire handler re-arms with a timeout of at least 1 ms, because libuv 1.44 re-runs a
// timer restarted with timeout 0 inside its own callback within the same timer phase, which
// would let a callback that keeps rescheduling itself "now" starve I/O.
//
// Lifetime (libuv's rule). The object embeds a handle, so it may be freed only after close()'s
// callback ran (or, if close() was given none, after the loop has processed the close: a later
// uv_run). The destructor asserts that. close() disarms every entry still armed; none fires.
//
// Threading: the loop's thread only, like every libuv call.
#pragma once

#include <uv.h>

#include <cstddef>
#include <cstdint>
#include <optional>

#include "transport/timer_wheel.h"

namespace fanout::transport {

class LoopTimer {
 public:
  // Called once the handle is closed; `timer` may be freed from here on. `data` is close()'s.
  using CloseCallback = void (*)(LoopTimer* timer, void* data) noexcept;

  // Initialises the uv_timer_t on `loop` (uv_timer_init cannot fail) and starts the wheel at
  // uv_now(loop). `loop` must outlive this object's close. The handle is inactive until the
  // first schedule().
  explicit LoopTimer(uv_loop_t* loop) noexcept;
  // Asserts in debug builds that close() was called and its close callback has run.
  ~LoopTimer();
  LoopTimer(const LoopTimer&) = delete;
  LoopTimer& operator=(const LoopTimer&) = delete;

  // TimerWheel::schedule on the loop's clock, then (outside callbacks) re-arms the uv timer if
  // the deadline is now the earliest. O(1) plus, when re-arming, one uv_timer_start. Same rules
  // for the entry as TimerWheel::schedule. Not allowed after close().
  void schedule(TimerEntry& entry, std::uint64_t deadline_ms) noexcept;
  // schedule(entry, now() + delay_ms).
  void schedule_after(TimerEntry& entry, std::uint64_t delay_ms) noexcept {
    schedule(entry, now() + delay_ms);
  }
  // TimerWheel::cancel; stops the uv timer when the wheel becomes empty (outside callbacks).
  // O(1), idempotent.
  void cancel(TimerEntry& entry) noexcept;

  [[nodiscard]] bool armed(const TimerEntry& entry) const noexcept { return entry.armed(); }
  // Armed entries.
  [[nodiscard]] std::size_t size() const noexcept { return wheel_.size(); }
  // uv_now(loop): the loop's cached time in ms, the clock deadlines are measured on.
  [[nodiscard]] std::uint64_t now() const noexcept { return uv_now(loop_); }
  // The absolute loop time the uv timer is set to fire at, or nullopt while it is stopped. For
  // tests and diagnostics.
  [[nodiscard]] std::optional<std::uint64_t> armed_deadline() const noexcept {
    if (!uv_armed_) return std::nullopt;
    return uv_deadline_;
  }
  // The wheel, read-only (size, next_deadline). Scheduling goes through this class.
  [[nodiscard]] const TimerWheel& wheel() const noexcept { return wheel_; }

  // uv_ref / uv_unref on the handle: whether armed entries keep the loop alive (default: yes).
  void ref() noexcept { uv_ref(handle()); }
  void unref() noexcept { uv_unref(handle()); }

  // Disarms every entry (none fires, not even the rest of a batch being fired), stops and
  // closes the uv timer. `callback`, if any, runs from the loop once the handle is closed; free
  // this object only then. Call once. Allowed from anywhere on the loop's thread, including one
  // of this timer's own entry callbacks (a shutdown deadline closing the worker).
  void close(CloseCallback callback = nullptr, void* data = nullptr) noexcept;

 private:
  static void on_uv_timer(uv_timer_t* timer) noexcept;
  static void on_uv_close(uv_handle_t* handle) noexcept;
  [[nodiscard]] uv_handle_t* handle() noexcept { return reinterpret_cast<uv_handle_t*>(&timer_); }
  void on_fire() noexcept;
  // Arms the uv timer to the wheel's next deadline (at least `min_timeout_ms` from now), or stops
  // it when the wheel is empty.
  void rearm(std::uint64_t min_timeout_ms) noexcept;

  uv_loop_t* loop_;
  uv_timer_t timer_;
  TimerWheel wheel_;
  std::uint64_t uv_deadline_ = 0;  // meaningful while uv_armed_
  bool uv_armed_ = false;
  bool firing_ = false;
  bool closing_ = false;
  bool closed_ = false;
  CloseCallback close_callback_ = nullptr;
  void* close_data_ = nullptr;
};

}  // namespace fanout::transport
