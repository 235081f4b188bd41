// Per-organisation rate limit of the management API (docs/webhook-contract.md §2: 300 requests per
// minute per organisation, then 429 with Retry-After).
//
// A token bucket per organisation: capacity `per_minute`, refilled continuously at per_minute /
// 60 s. A request takes one token; without one it is refused and told how many whole seconds
// until a token is back (at least 1). Time is passed in, so tests drive it. Loop thread only.
// Buckets that are full again are dropped when the map grows past 4096 entries (then past twice
// what survived the last sweep), so memory stays bounded by the organisations active within a
// minute, and sweeping costs O(1) per request amortised.
#pragma once

#include <algorithm>
#include <cstdint>
#include <iterator>
#include <unordered_map>

namespace fanout::daemon {

class RateLimiter {
 public:
  explicit RateLimiter(std::uint32_t per_minute) noexcept : per_minute_(per_minute) {}

  // 0 when the request may go on (a token was taken), else the seconds to wait.
  [[nodiscard]] std::uint32_t take(std::int64_t org, std::uint64_t now_ms) {
    const double capacity = static_cast<double>(per_minute_);
    const double per_ms = capacity / 60'000.0;
    if (buckets_.size() > sweep_above_) {
      sweep(now_ms, capacity, per_ms);
      // Amortised O(1): the next sweep waits until the map doubles from what survived.
      sweep_above_ = std::max(kSweepAbove, 2 * buckets_.size());
    }
    auto [it, inserted] = buckets_.try_emplace(org, Bucket{capacity, now_ms});
    Bucket& b = it->second;
    if (!inserted && now_ms > b.last_ms) {
      b.tokens += static_cast<double>(now_ms - b.last_ms) * per_ms;
      if (b.tokens > capacity) b.tokens = capacity;
    }
    if (now_ms > b.last_ms) b.last_ms = now_ms;
    if (b.tokens >= 1.0) {
      b.tokens -= 1.0;
      return 0;
    }
    const double wait_ms = (1.0 - b.tokens) / per_ms;
    const auto secs = static_cast<std::uint32_t>((wait_ms + 999.0) / 1000.0);
    return secs == 0 ? 1 : secs;
  }

  // What take() would answer, without taking: 0 when a token is there, else the seconds to wait.
  [[nodiscard]] std::uint32_t peek(std::int64_t org, std::uint64_t now_ms) const {
    const auto it = buckets_.find(org);
    if (it == buckets_.end()) return 0;
    const double per_ms = static_cast<double>(per_minute_) / 60'000.0;
    const double tokens =
        it->second.tokens +
        static_cast<double>(now_ms > it->second.last_ms ? now_ms - it->second.last_ms : 0) * per_ms;
    if (tokens >= 1.0) return 0;
    const auto secs = static_cast<std::uint32_t>(((1.0 - tokens) / per_ms + 999.0) / 1000.0);
    return secs == 0 ? 1 : secs;
  }

  // Organisations with a bucket (tests).
  [[nodiscard]] std::size_t size() const noexcept { return buckets_.size(); }

 private:
  static constexpr std::size_t kSweepAbove = 4096;
  struct Bucket {
    double tokens;
    std::uint64_t last_ms;
  };
  void sweep(std::uint64_t now_ms, double capacity, double per_ms) {
    for (auto it = buckets_.begin(); it != buckets_.end();) {
      const Bucket& b = it->second;
      const double refilled =
          b.tokens + static_cast<double>(now_ms > b.last_ms ? now_ms - b.last_ms : 0) * per_ms;
      it = refilled >= capacity ? buckets_.erase(it) : std::next(it);
    }
  }
  std::uint32_t per_minute_;
  std::size_t sweep_above_ = kSweepAbove;
  std::unordered_map<std::int64_t, Bucket> buckets_;
};

}  // namespace fanout::daemon
