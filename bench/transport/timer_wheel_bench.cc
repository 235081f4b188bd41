// Timer-wheel benchmarks, against the baseline of one uv_timer_t per entry (libuv's binary heap).
// Run: build/release/bench/timer_wheel_bench --benchmark_min_time=0.05
// After the usual table it prints, for each size, uv_timer time / wheel time measured in this run.
#include <benchmark/benchmark.h>
#include <uv.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "bench/checked_main.h"
#include "transport/timer_wheel.h"

namespace fanout::transport {
namespace {

constexpr std::uint64_t kTenMinutesMs = 600'000;

// The bench-smoke test (FANOUT_BENCH_SMOKE=1) checks every benchmark runs, not its speed: it caps
// live-timer counts so a sanitizer build finishes in seconds.
std::size_t live_count(std::int64_t arg) {
  const auto n = static_cast<std::size_t>(arg);
  return std::getenv("FANOUT_BENCH_SMOKE") != nullptr ? std::min<std::size_t>(n, 10'000) : n;
}

std::uint64_t splitmix64(std::uint64_t& state) {
  std::uint64_t z = (state += 0x9E3779B97F4A7C15ULL);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

// Pre-drawn (entry index, delay) pairs, read in sequence inside the timed loops so that neither
// the random generator nor a division is measured; the indices still hit entries at random, so
// cache misses on the entries (a real cost at 1M) are.
struct Draws {
  static constexpr std::size_t kSize = std::size_t{1} << 16;
  std::vector<std::uint32_t> index;
  std::vector<std::uint32_t> delay;  // in [1, spread]
  Draws(std::size_t n, std::uint64_t spread) : index(kSize), delay(kSize) {
    std::uint64_t state = n * 31 + spread;
    for (std::size_t i = 0; i < kSize; ++i) {
      index[i] = static_cast<std::uint32_t>(splitmix64(state) % n);
      delay[i] = static_cast<std::uint32_t>(1 + splitmix64(state) % spread);
    }
  }
};

void ignore_timer(TimerEntry&, void*) noexcept {}
void ignore_uv_timer(uv_timer_t*) noexcept {}

// One loop with `n` uv timers started at delays in [1, spread]. The loop is never run (except to
// close the handles at the end), so none fires.
struct UvTimers {
  uv_loop_t loop{};
  std::unique_ptr<uv_timer_t[]> timers;
  std::size_t n;
  UvTimers(std::size_t count, const Draws& draws) : timers(new uv_timer_t[count]), n(count) {
    uv_loop_init(&loop);
    for (std::size_t i = 0; i < n; ++i) {
      uv_timer_init(&loop, &timers[i]);
      uv_timer_start(&timers[i], &ignore_uv_timer, draws.delay[i % Draws::kSize], 0);
    }
  }
  ~UvTimers() {
    for (std::size_t i = 0; i < n; ++i) {
      uv_close(reinterpret_cast<uv_handle_t*>(&timers[i]), nullptr);
    }
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
  }
};

// A wheel at time 0 with `n` entries armed at deadlines in [1, spread]. Declared after the
// entries so the wheel goes first and disarms them.
struct WheelTimers {
  std::unique_ptr<TimerEntry[]> entries;
  TimerWheel wheel{0};
  WheelTimers(std::size_t n, const Draws& draws, TimerEntry::Callback callback, void* data)
      : entries(new TimerEntry[n]) {
    for (std::size_t i = 0; i < n; ++i) {
      entries[i].set_callback(callback, data);
      wheel.schedule(entries[i], draws.delay[i % Draws::kSize]);
    }
  }
};

// Re-arming a random live timer: one cancel plus one schedule of a random entry at a random
// deadline up to 10 minutes ahead, with range(0) timers live (a response timeout reset per
// request). The sweep 1k -> 100k -> 1M shows the wheel staying O(1) (what grows is only cache
// misses on the entries), while uv_timer's heap costs O(log n) per start and per stop.
void BM_TimerWheelScheduleCancel(benchmark::State& state) {
  const std::size_t n = live_count(state.range(0));
  const Draws draws(n, kTenMinutesMs);
  WheelTimers timers(n, draws, &ignore_timer, nullptr);
  std::size_t k = 0;
  for (auto _ : state) {
    TimerEntry& entry = timers.entries[draws.index[k & (Draws::kSize - 1)]];
    timers.wheel.cancel(entry);
    timers.wheel.schedule(entry, draws.delay[k & (Draws::kSize - 1)]);
    ++k;
  }
  benchmark::DoNotOptimize(timers.wheel.size());
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_TimerWheelScheduleCancel)->Arg(1'000)->Arg(100'000)->Arg(1'000'000);

// Baseline for BM_TimerWheelScheduleCancel: the same operations with one uv_timer_t per entry,
// uv_timer_stop + uv_timer_start, on a loop that never runs.
void BM_UvTimerStartStop(benchmark::State& state) {
  const std::size_t n = live_count(state.range(0));
  const Draws draws(n, kTenMinutesMs);
  UvTimers timers(n, draws);
  std::size_t k = 0;
  for (auto _ : state) {
    uv_timer_t* timer = &timers.timers[draws.index[k & (Draws::kSize - 1)]];
    uv_timer_stop(timer);
    uv_timer_start(timer, &ignore_uv_timer, draws.delay[k & (Draws::kSize - 1)], 0);
    ++k;
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_UvTimerStartStop)->Arg(1'000)->Arg(100'000)->Arg(1'000'000);

// Expiry cost in steady state: range(0) live timers with deadlines spread over range(1) ms; each
// iteration advances the wheel by 1 ms and every fired entry re-arms itself at now + [1,
// range(1)] ms, so the population stays constant (timeouts being renewed, retries backing off).
// `per_fire` is the time per fired timer, cascades included (an entry moves down at most 5
// levels on its way to level 0) plus its re-schedule. The sweep shows: at 1M live timers (48 MB
// of entries) each cascade step is a cache miss on the entry and on its new list neighbour, so
// the cost per expiry is memory-bound; at 100k (fits in cache) it is several times lower; the
// 1k row, where a step almost never fires anything, is the fixed cost of an empty 1 ms step
// (O(levels) bitmap checks), which is what an idle worker pays per wake-up.
// No uv_timer_t counterpart: uv_run takes its time from the OS clock (uv_update_time), not from
// the caller, so libuv cannot be stepped through a 1 ms window as the wheel is. The fair uv
// comparison for the firing path is BM_UvTimerScheduleFire below.
struct AdvanceContext {
  TimerWheel* wheel = nullptr;
  const Draws* draws = nullptr;
  std::size_t k = 0;
};

void rearm_on_fire(TimerEntry& entry, void* data) noexcept {
  auto* ctx = static_cast<AdvanceContext*>(data);
  ctx->wheel->schedule(entry, ctx->wheel->now() + ctx->draws->delay[ctx->k++ & (Draws::kSize - 1)]);
}

void BM_TimerWheelAdvance(benchmark::State& state) {
  const std::size_t n = live_count(state.range(0));
  const auto spread = static_cast<std::uint64_t>(state.range(1));
  const Draws draws(n, spread);
  AdvanceContext ctx;
  WheelTimers timers(n, draws, &rearm_on_fire, &ctx);
  ctx.wheel = &timers.wheel;
  ctx.draws = &draws;
  std::uint64_t now = 0;
  std::size_t fired = 0;
  for (auto _ : state) fired += timers.wheel.advance(++now);
  state.SetItemsProcessed(static_cast<std::int64_t>(fired));
  state.counters["per_fire"] = benchmark::Counter(
      static_cast<double>(fired), benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
}
BENCHMARK(BM_TimerWheelAdvance)
    ->Args({1'000'000, 600'000})
    ->Args({1'000'000, 10'000})
    ->Args({100'000, 600'000})
    ->Args({1'000, 600'000});

// Schedule-and-fire with range(0) other timers live (up to 10 minutes ahead, never due during
// the run): each iteration arms kBatch entries due now and fires them. This is what a
// comparison with libuv can measure fairly, since both sides fire timers that are due without
// the caller having to inject time. The wheel's cost is flat in n (a due entry goes straight to
// level 0); uv_timer_start with timeout 0 sifts to the top of an n-entry heap and each expiry
// pops it back, O(log n) each.
constexpr std::size_t kBatch = 1024;

void BM_TimerWheelScheduleFire(benchmark::State& state) {
  const std::size_t n = live_count(state.range(0));
  const Draws draws(n, kTenMinutesMs);
  WheelTimers background(n, draws, &ignore_timer, nullptr);
  std::vector<TimerEntry> batch(kBatch);
  for (auto& entry : batch) entry.set_callback(&ignore_timer, nullptr);
  TimerWheel& wheel = background.wheel;
  for (auto _ : state) {
    for (auto& entry : batch) wheel.schedule(entry, wheel.now());
    benchmark::DoNotOptimize(wheel.advance(wheel.now()));
  }
  state.SetItemsProcessed(state.iterations() * static_cast<std::int64_t>(kBatch));
}
BENCHMARK(BM_TimerWheelScheduleFire)->Arg(1'000)->Arg(100'000)->Arg(1'000'000);

// Baseline for BM_TimerWheelScheduleFire: kBatch uv timers started with timeout 0, then one
// uv_run(UV_RUN_NOWAIT) fires them. That call also reads the clock and polls (epoll_wait with a
// zero timeout) once per batch: a syscall, spread over the 1024 timers of the batch.
void BM_UvTimerScheduleFire(benchmark::State& state) {
  const std::size_t n = live_count(state.range(0));
  const Draws draws(n, kTenMinutesMs);
  UvTimers background(n, draws);
  std::vector<uv_timer_t> batch(kBatch);
  for (auto& timer : batch) uv_timer_init(&background.loop, &timer);
  for (auto _ : state) {
    for (auto& timer : batch) uv_timer_start(&timer, &ignore_uv_timer, 0, 0);
    benchmark::DoNotOptimize(uv_run(&background.loop, UV_RUN_NOWAIT));
  }
  for (auto& timer : batch) uv_close(reinterpret_cast<uv_handle_t*>(&timer), nullptr);
  uv_run(&background.loop, UV_RUN_NOWAIT);  // the batch closes before `batch` is freed
  state.SetItemsProcessed(state.iterations() * static_cast<std::int64_t>(kBatch));
}
BENCHMARK(BM_UvTimerScheduleFire)->Arg(1'000)->Arg(100'000)->Arg(1'000'000);

// Console output plus, at the end, the uv_timer / wheel ratio for each pair run with the same
// argument.
class RatioReporter : public benchmark::ConsoleReporter {
 public:
  void ReportRuns(const std::vector<Run>& runs) override {
    for (const auto& run : runs) {
      if (run.run_type != Run::RT_Iteration || run.error_occurred) continue;
      times_[run.benchmark_name()] = run.GetAdjustedRealTime();
    }
    ConsoleReporter::ReportRuns(runs);
  }

  void Finalize() override {
    ConsoleReporter::Finalize();
    const std::pair<const char*, const char*> pairs[] = {
        {"BM_TimerWheelScheduleCancel", "BM_UvTimerStartStop"},
        {"BM_TimerWheelScheduleFire", "BM_UvTimerScheduleFire"},
    };
    bool header = false;
    for (const auto& [wheel, uv] : pairs) {
      for (const auto& [name, wheel_time] : times_) {
        if (name.rfind(std::string(wheel) + "/", 0) != 0) continue;
        const std::string arg = name.substr(name.find('/'));
        const auto other = times_.find(uv + arg);
        if (other == times_.end() || wheel_time <= 0) continue;
        if (!header) {
          std::printf("\nuv_timer_t per entry vs TimerWheel (same run, time per iteration):\n");
          header = true;
        }
        std::printf("  %-36s wheel %10.1f  uv %10.1f  uv/wheel %6.2fx\n", name.c_str(), wheel_time,
                    other->second, other->second / wheel_time);
      }
    }
  }

 private:
  std::map<std::string, double> times_;
};

}  // namespace
}  // namespace fanout::transport

int main(int argc, char** argv) {
  fanout::transport::RatioReporter reporter;
  return fanout::bench::run_checked(argc, argv, &reporter);
}
