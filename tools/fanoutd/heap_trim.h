// HeapTrim: gives the heap's free memory back to the system once a backlog has drained.
//
// Every accepted event is a heap block (engine/worker.h Delivery) from the moment it is accepted
// until its first answer; a delivery that waits for a retry moves into a smaller block on its
// worker's arena. When ingest accepts a burst faster than the workers attempt it, those blocks
// pile up on the publishing thread's arena (a million of them took 1.5 GiB), and once they are
// freed glibc keeps the memory: it gives back only the top of an arena, and long-lived blocks
// made during the burst sit above the holes. malloc_trim(0) hands every whole free page back
// (madvise), wherever it is.
//
//   every kPeriodMs on the main loop (a TimerEntry of the daemon's LoopTimer)
//     held = in_flight - waiting_retry     (EngineStats: relaxed loads, no lock)
//     peak = max(peak, held)
//     peak >= backlog and held <= peak / 4  →  malloc_trim(0); peak = held
//
// So it trims each time the held count falls to a quarter of its peak since the last trim (a
// few times for a large backlog: 3 for a million, at ~1,000,000, ~250,000 and ~60,000 held),
// never while a backlog builds, and never in a steady state whatever its size (a steady flow
// keeps held near its peak). A trim walks the arenas' free chunks under their locks, one
// madvise per free run of pages, on the loop: ingest and the API wait for it, and the workers'
// frees into the loop's arena. After a million it took 0.92 s, then 0.36 s (bench/README.md);
// heap_trim_backlog = 0 turns it off. The resident memory it released (/proc/self/statm before
// and after) is counted, and its duration logged.
//
// Threading and lifetime: the loop's thread only. The object must outlive the LoopTimer's
// close() (which disarms the entry) or be stop()ped first; the engine must outlive it.
#pragma once

#include <cstdint>

#include "fanout/engine.h"
#include "transport/loop_timer.h"
#include "transport/timer_wheel.h"

namespace fanout::daemon {

class HeapTrim {
 public:
  static constexpr std::uint64_t kPeriodMs = 1000;

  // `backlog`: the peak of deliveries held (accepted, not waiting for a retry) that a drain
  // must have followed for a trim; 0: never trim.
  HeapTrim(const Engine& engine, std::uint64_t backlog) noexcept;
  ~HeapTrim();  // stops
  HeapTrim(const HeapTrim&) = delete;
  HeapTrim& operator=(const HeapTrim&) = delete;

  // Samples every kPeriodMs on `timers` from now on (nothing when the backlog is 0).
  void start(transport::LoopTimer& timers) noexcept;
  // No more samples. Idempotent.
  void stop() noexcept;

  // One sample now (what the timer runs); true when it trimmed.
  bool sample() noexcept;

  struct Stats {
    std::uint64_t trims = 0;
    std::uint64_t released_bytes = 0;  // resident memory the trims gave back, summed
  };
  [[nodiscard]] const Stats& stats() const noexcept { return stats_; }

 private:
  void on_timer() noexcept;

  const Engine& engine_;
  std::uint64_t backlog_;
  std::uint64_t peak_ = 0;
  Stats stats_;
  transport::LoopTimer* timers_ = nullptr;
  transport::TimerEntry entry_;
};

}  // namespace fanout::daemon
