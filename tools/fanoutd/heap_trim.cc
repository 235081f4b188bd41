// HeapTrim (heap_trim.h).
#include "tools/fanoutd/heap_trim.h"

#include <malloc.h>

#include <algorithm>
#include <chrono>
#include <string>

#include "tools/common/resident.h"
#include "tools/fanoutd/log.h"

namespace fanout::daemon {

HeapTrim::HeapTrim(const Engine& engine, std::uint64_t backlog) noexcept
    : engine_(engine), backlog_(backlog) {
  entry_.bind<&HeapTrim::on_timer>(this);
}

HeapTrim::~HeapTrim() {
  stop();
}

void HeapTrim::start(transport::LoopTimer& timers) noexcept {
  if (backlog_ == 0) return;
  timers_ = &timers;
  timers_->schedule_after(entry_, kPeriodMs);
}

void HeapTrim::stop() noexcept {
  // Once the LoopTimer closed (it disarms every entry) it may be gone: touch it only while armed.
  if (timers_ != nullptr && entry_.armed()) timers_->cancel(entry_);
}

void HeapTrim::on_timer() noexcept {
  (void)sample();
  timers_->schedule_after(entry_, kPeriodMs);
}

bool HeapTrim::sample() noexcept {
  if (backlog_ == 0) return false;
  const EngineStats st = engine_.stats();
  // in_flight and waiting_retry are read one after the other, not as one snapshot: the
  // difference may be off by the deliveries moving meanwhile (clamped at 0; a sample is a hint).
  const std::uint64_t held = st.in_flight > st.waiting_retry ? st.in_flight - st.waiting_retry : 0;
  peak_ = std::max(peak_, held);
  if (peak_ < backlog_ || held > peak_ / 4) return false;
  const std::uint64_t before = proc::resident_bytes();
  const auto started = std::chrono::steady_clock::now();
  ::malloc_trim(0);
  const auto took = std::chrono::duration_cast<std::chrono::microseconds>(
      std::chrono::steady_clock::now() - started);
  const std::uint64_t after = proc::resident_bytes();
  const std::uint64_t released = before > after ? before - after : 0;
  ++stats_.trims;
  stats_.released_bytes += released;
  log::info("heap trimmed after a backlog drained",
            {{"peak_held", std::to_string(peak_)},
             {"held", std::to_string(held)},
             {"released_bytes", std::to_string(released)},
             {"duration_us", std::to_string(took.count())}});
  peak_ = held;
  return true;
}

}  // namespace fanout::daemon
