// fanout-load's measurements and output: latency histogram, CPU time, JSON object, progress
// lines, Ctrl-C.
#pragma once

#include <algorithm>
#include <array>
#include <bit>
#include <chrono>
#include <cinttypes>
#include <cmath>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <utility>

#include "tools/common/json_out.h"

namespace fanout::load {

using Clock = std::chrono::steady_clock;

// Log-linear histogram of microseconds: values below 16 exactly, then 16 buckets per power of
// two (relative width 1/16). Percentiles report a bucket's midpoint (at most the maximum).
class Histogram {
 public:
  static constexpr unsigned kSub = 16;
  void add(std::uint64_t v) {
    ++counts_[index(v)];
    ++n_;
    max_ = std::max(max_, v);
    sum_ += v;
  }
  void merge(const Histogram& other) {
    for (std::size_t i = 0; i < counts_.size(); ++i) counts_[i] += other.counts_[i];
    n_ += other.n_;
    max_ = std::max(max_, other.max_);
    sum_ += other.sum_;
  }
  [[nodiscard]] std::uint64_t count() const { return n_; }
  [[nodiscard]] std::uint64_t max() const { return max_; }
  [[nodiscard]] double mean() const {
    return n_ > 0 ? static_cast<double>(sum_) / static_cast<double>(n_) : 0;
  }
  [[nodiscard]] double percentile(double q) const {
    if (n_ == 0) return 0;
    const auto rank =
        std::max<std::uint64_t>(1, static_cast<std::uint64_t>(q * static_cast<double>(n_) + 0.5));
    std::uint64_t seen = 0;
    for (std::size_t i = 0; i < counts_.size(); ++i) {
      seen += counts_[i];
      if (seen >= rank) {
        const auto [lo, hi] = bounds(i);
        return std::min(static_cast<double>(max_), (static_cast<double>(lo) + hi) / 2.0);
      }
    }
    return static_cast<double>(max_);
  }

 private:
  static std::size_t index(std::uint64_t v) {
    if (v < kSub) return static_cast<std::size_t>(v);
    const unsigned e = static_cast<unsigned>(std::bit_width(v)) - 1;  // 4..63
    const std::uint64_t sub = (v >> (e - 4)) & (kSub - 1);
    return kSub + (e - 4) * kSub + static_cast<std::size_t>(sub);
  }
  // [lo, hi) of bucket i, hi as a double (it may be 2^64).
  static std::pair<std::uint64_t, double> bounds(std::size_t i) {
    if (i < kSub) return {i, static_cast<double>(i) + 1.0};
    const std::size_t e = (i - kSub) / kSub + 4;
    const std::uint64_t sub = (i - kSub) % kSub;
    const std::uint64_t width = std::uint64_t{1} << (e - 4);
    const std::uint64_t lo = (std::uint64_t{1} << e) + sub * width;
    return {lo, static_cast<double>(lo) + static_cast<double>(width)};
  }

  std::array<std::uint64_t, kSub + 60 * kSub> counts_{};
  std::uint64_t n_ = 0;
  std::uint64_t max_ = 0;
  std::uint64_t sum_ = 0;
};

struct CpuTime {
  double user_s = 0;
  double sys_s = 0;
  [[nodiscard]] double total() const { return user_s + sys_s; }
  CpuTime operator-(const CpuTime& o) const { return {user_s - o.user_s, sys_s - o.sys_s}; }
};

// RUSAGE_SELF (the process) or RUSAGE_THREAD (the calling thread).
CpuTime cpu_now(int who);
double seconds_between(Clock::time_point a, Clock::time_point b);
double per_second(std::uint64_t n, double seconds);
Clock::duration to_duration(double seconds);

// One JSON object, written field by field.
class JsonObject {
 public:
  JsonObject& num(std::string_view name, std::uint64_t v) { return raw(name, std::to_string(v)); }
  JsonObject& real(std::string_view name, double v, int decimals) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.*f", decimals, std::isfinite(v) ? v : 0.0);
    return raw(name, buf);
  }
  JsonObject& boolean(std::string_view name, bool v) { return raw(name, v ? "true" : "false"); }
  JsonObject& text(std::string_view name, std::string_view v) {
    std::string s;
    fanout::json::append_string(s, v);
    return raw(name, s);
  }
  JsonObject& latency(std::string_view name, const Histogram& h) {
    JsonObject l;
    l.real("p50", h.percentile(0.50), 0)
        .real("p90", h.percentile(0.90), 0)
        .real("p99", h.percentile(0.99), 0)
        .real("p999", h.percentile(0.999), 0)
        .num("max", h.max())
        .real("mean", h.mean(), 1);
    return raw(name, l.str());
  }
  JsonObject& raw(std::string_view name, std::string_view json) {
    out_ += out_.empty() ? '{' : ',';
    out_ += '"';
    out_ += name;
    out_ += "\":";
    out_ += json;
    return *this;
  }
  [[nodiscard]] std::string str() const { return out_.empty() ? "{}" : out_ + "}"; }

 private:
  std::string out_;
};

// "p50 880 us, p90 ..., mean 902.2 us (20000 samples)"
std::string latency_line(const Histogram& h);

// Ctrl-C (or SIGTERM): stop publishing, report what happened, exit 1. A second one kills.
void install_interrupt_handler();
bool interrupted();

// A line on stderr once a second, from a thread of its own, until stop().
class Progress {
 public:
  // `line(elapsed_s)` builds the line; it runs on the progress thread.
  Progress(bool enabled, std::function<std::string(double)> line) : line_(std::move(line)) {
    if (enabled) thread_ = std::thread([this] { run(); });
  }
  ~Progress() { stop(); }
  Progress(const Progress&) = delete;
  Progress& operator=(const Progress&) = delete;
  void stop() {
    {
      std::lock_guard lock(mu_);
      stopping_ = true;
    }
    cv_.notify_one();
    if (thread_.joinable()) thread_.join();
  }

 private:
  void run() {
    const Clock::time_point t0 = Clock::now();
    std::unique_lock lock(mu_);
    for (int tick = 1;; ++tick) {
      if (cv_.wait_until(lock, t0 + std::chrono::seconds(tick), [&] { return stopping_; })) {
        return;
      }
      const std::string s = line_(seconds_between(t0, Clock::now()));
      std::fprintf(stderr, "fanout-load: %s\n", s.c_str());
    }
  }
  std::function<std::string(double)> line_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;
  std::thread thread_;
};

// Rate over the last interval, for progress lines.
class RateMeter {
 public:
  double update(std::uint64_t total, double elapsed_s) {
    const double dt = elapsed_s - last_s_;
    const double r = dt > 0 ? static_cast<double>(total - last_) / dt : 0;
    last_ = total;
    last_s_ = elapsed_s;
    return r;
  }

 private:
  std::uint64_t last_ = 0;
  double last_s_ = 0;
};

}  // namespace fanout::load
