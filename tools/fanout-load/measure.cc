// fanout-load's measurements and output (measure.h).
#include "tools/fanout-load/measure.h"

#include <sys/resource.h>

#include <atomic>
#include <csignal>

namespace fanout::load {

// RUSAGE_SELF (the process) or RUSAGE_THREAD (the calling thread).
CpuTime cpu_now(int who) {
  rusage ru{};
  getrusage(who, &ru);
  return {static_cast<double>(ru.ru_utime.tv_sec) + static_cast<double>(ru.ru_utime.tv_usec) / 1e6,
          static_cast<double>(ru.ru_stime.tv_sec) + static_cast<double>(ru.ru_stime.tv_usec) / 1e6};
}

double seconds_between(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

double per_second(std::uint64_t n, double seconds) {
  return seconds > 0 ? static_cast<double>(n) / seconds : 0;
}

Clock::duration to_duration(double seconds) {
  return std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
}

std::string latency_line(const Histogram& h) {
  char buf[256];
  std::snprintf(buf, sizeof buf,
                "p50 %.0f us, p90 %.0f us, p99 %.0f us, p99.9 %.0f us, max %" PRIu64
                " us, mean %.1f us (%" PRIu64 " samples)",
                h.percentile(0.50), h.percentile(0.90), h.percentile(0.99), h.percentile(0.999),
                h.max(), h.mean(), h.count());
  return buf;
}

namespace {

std::atomic<bool> g_interrupted{false};
static_assert(std::atomic<bool>::is_always_lock_free);

void on_signal(int) {
  g_interrupted.store(true, std::memory_order_relaxed);
}

}  // namespace

void install_interrupt_handler() {
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sa.sa_flags = static_cast<int>(SA_RESETHAND);
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  std::signal(SIGPIPE, SIG_IGN);
}

bool interrupted() {
  return g_interrupted.load(std::memory_order_relaxed);
}

}  // namespace fanout::load
