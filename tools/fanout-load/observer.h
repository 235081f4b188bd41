// fanout-load's Observer: counts outcomes, keeps their latencies, paces the publisher.
#pragma once

#include <algorithm>
#include <array>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <vector>

#include "fanout/engine.h"
#include "tools/fanout-load/measure.h"

namespace fanout::load {

constexpr std::size_t kKinds = 4;  // OutcomeKind values

// Counts outcomes and keeps two latency histograms per worker thread (publish to outcome; the
// last attempt's round trip, Outcome::last_response_us) (merged after the engine has
// stopped); wakes the publisher when the window has room again.
class LoadObserver final : public fanout::Observer {
 public:
  void on_outcomes(std::span<const fanout::Outcome> outcomes) noexcept override {
    Shard& s = shard();
    std::array<std::uint64_t, kKinds> kinds{};
    for (const fanout::Outcome& o : outcomes) {
      s.hist.add(o.latency_us);
      if (o.last_status != 0) s.response_hist.add(o.last_response_us);
      ++kinds[static_cast<std::size_t>(o.kind)];
      if (o.kind != fanout::OutcomeKind::kDelivered && s.first_failure.empty()) {
        s.first_failure = std::string(fanout::to_string(o.kind)) + ", status " +
                          std::to_string(o.last_status) +
                          (o.last_failure.empty() ? "" : ", " + std::string(o.last_failure));
      }
    }
    s.last = Clock::now();
    for (std::size_t k = 0; k < kKinds; ++k) {
      if (kinds[k] != 0) kinds_[k].fetch_add(kinds[k], std::memory_order_relaxed);
    }
    const std::uint64_t done = done_.fetch_add(outcomes.size()) + outcomes.size();
    const std::uint64_t limit = wake_at_.load();
    if (limit != kNobody && accepted_.load() - done <= limit) {
      std::lock_guard lock(mu_);
      cv_.notify_one();
    }
  }

  // Publisher side: count an event before publishing it, take it back if it was not accepted
  // (so that done <= accepted always holds).
  void add_accepted() { accepted_.fetch_add(1); }
  void take_back() { accepted_.fetch_sub(1); }
  [[nodiscard]] std::uint64_t accepted() const { return accepted_.load(); }
  [[nodiscard]] std::uint64_t done() const { return done_.load(); }
  [[nodiscard]] std::uint64_t in_flight() const {
    const std::uint64_t d = done();
    return std::max(accepted(), d) - d;
  }
  [[nodiscard]] std::uint64_t kind(fanout::OutcomeKind k) const {
    return kinds_[static_cast<std::size_t>(k)].load(std::memory_order_relaxed);
  }

  // Waits until at most `limit` events are accepted and not final. False at `deadline` or on
  // an interrupt.
  bool wait_in_flight_at_most(std::uint64_t limit, Clock::time_point deadline) {
    std::unique_lock lock(mu_);
    wake_at_.store(limit);
    ++waits_;
    bool ok = false;
    while (!(ok = in_flight() <= limit) && !interrupted()) {
      const Clock::time_point now = Clock::now();
      if (now >= deadline) break;
      // Slices, so that an interrupt is noticed.
      cv_.wait_until(lock, std::min(deadline, now + std::chrono::milliseconds(100)));
    }
    wake_at_.store(kNobody);
    return ok;
  }
  [[nodiscard]] std::uint64_t waits() const { return waits_; }

  // After Engine::stop() (every worker thread joined): the merged view.
  struct Summary {
    Histogram hist;
    Histogram response_hist;
    Clock::time_point last{};
    std::string first_failure;
  };
  [[nodiscard]] Summary summary() const {
    std::lock_guard lock(shards_mu_);
    Summary sum;
    for (const auto& s : shards_) {
      sum.hist.merge(s->hist);
      sum.response_hist.merge(s->response_hist);
      sum.last = std::max(sum.last, s->last);
      if (sum.first_failure.empty()) sum.first_failure = s->first_failure;
    }
    return sum;
  }

 private:
  struct Shard {
    Histogram hist;
    Histogram response_hist;
    Clock::time_point last{};
    std::string first_failure;
  };
  // The calling worker thread's shard, made on its first call.
  Shard& shard() {
    thread_local const LoadObserver* owner = nullptr;
    thread_local Shard* mine = nullptr;
    if (owner != this || mine == nullptr) {
      std::lock_guard lock(shards_mu_);
      shards_.push_back(std::make_unique<Shard>());
      mine = shards_.back().get();
      owner = this;
    }
    return *mine;
  }

  static constexpr std::uint64_t kNobody = ~std::uint64_t{0};
  std::mutex mu_;
  std::condition_variable cv_;
  std::atomic<std::uint64_t> accepted_{0};
  std::atomic<std::uint64_t> done_{0};
  std::atomic<std::uint64_t> wake_at_{kNobody};
  std::array<std::atomic<std::uint64_t>, kKinds> kinds_{};
  std::uint64_t waits_ = 0;  // publisher only
  mutable std::mutex shards_mu_;
  std::vector<std::unique_ptr<Shard>> shards_;
};

}  // namespace fanout::load
