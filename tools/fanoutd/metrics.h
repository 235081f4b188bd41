// fanoutd's metrics: counters the daemon keeps beside the engine's own (EngineStats), rendered
// in the Prometheus text exposition format (version 0.0.4) at GET /metrics.
//
// Threading: record_outcome() is called on engine worker threads (from the Observer), so the
// latency histogram is made of relaxed atomics. Everything else (refusals, API requests) is
// recorded and rendered on the daemon's loop thread only.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <tuple>
#include <utility>

#include "fanout/engine.h"
#include "fanout/redis_source.h"
#include "transport/server/http_server.h"

namespace fanout::daemon {

class HeapTrim;          // heap_trim.h
class SubscriptionSync;  // sync.h

class Metrics {
 public:
  // Upper bounds of the delivery latency histogram, in seconds (publish to final outcome; the
  // default retry schedule makes hours possible).
  static constexpr std::array<double, 16> kLatencyBuckets = {
      0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10, 60, 600, 3600, 14400};

  // Any thread: one final outcome's publish-to-outcome latency (Outcome::latency_us).
  void record_outcome(const Outcome& outcome) noexcept;
  // Loop thread: an event refused at the door, by reason code (envelope reasons such as
  // "unknown_type", or "no_subscription", "busy", "stopped").
  void record_refused(std::string_view reason);
  // Loop thread: one API request answered; `route` is the route pattern ("/v2/webhooks/{id}"),
  // never the raw path (bounded label values).
  void record_request(std::string_view method, std::string_view route, int status);

  // Before the engine starts: a saved delivery whose subscription was deleted while the daemon
  // was down ends as `dropped` without the engine seeing it; it is added to the engine's count.
  void record_dropped_at_resume() noexcept {
    dropped_at_resume_.fetch_add(1, std::memory_order_relaxed);
  }

  // The Redis source whose counters render() adds (fanout_redis_*); null: none. Set before the
  // server starts; the source's stats() may be read from any thread.
  void set_redis(const source::RedisSource* source) noexcept { redis_ = source; }
  // The subscription sync whose counters render() adds (fanout_subscription_sync_*); loop
  // thread only, like render().
  void set_sync(const SubscriptionSync* sync) noexcept { sync_ = sync; }
  // The heap trimmer whose counters render() adds (fanout_heap_trim*); loop thread only.
  void set_heap_trim(const HeapTrim* trim) noexcept { heap_trim_ = trim; }
  // The API server whose connection counters render() adds (fanout_api_connections*); loop
  // thread only, like render().
  void set_server(const transport::HttpServer* server) noexcept { server_ = server; }

  // The whole exposition text. `subscriptions` is the routing table's size.
  [[nodiscard]] std::string render(const EngineStats& stats, std::uint64_t subscriptions) const;

 private:
  static void render_redis(std::string& out, const source::RedisStats& stats);
  // Per-bucket counts, not cumulative (render() sums them): one relaxed increment per outcome.
  // The last one is (14400, +Inf). The total of all of them is the histogram's _count, so that
  // _count always equals the +Inf bucket in one rendering.
  std::array<std::atomic<std::uint64_t>, kLatencyBuckets.size() + 1> buckets_{};  // last: +Inf
  std::atomic<std::uint64_t> latency_sum_us_{0};
  std::map<std::string, std::uint64_t, std::less<>> refused_;
  std::atomic<std::uint64_t> dropped_at_resume_{0};
  const source::RedisSource* redis_ = nullptr;
  const transport::HttpServer* server_ = nullptr;
  const SubscriptionSync* sync_ = nullptr;
  const HeapTrim* heap_trim_ = nullptr;
  // (method, route, status); transparent, so a lookup by string_views allocates nothing. Both
  // sides are compared as string_views: std::less<> across tuple<string...> and
  // tuple<string_view...> needs tuple's mixed operator<=>, which clang 14 does not resolve in
  // libstdc++ 12 (g++ does).
  struct RequestKeyLess {
    using is_transparent = void;
    template <class A, class B>
    bool operator()(const A& a, const B& b) const noexcept {
      return view(a) < view(b);
    }
    template <class T>
    static std::tuple<std::string_view, std::string_view, int> view(const T& k) noexcept {
      return {std::get<0>(k), std::get<1>(k), std::get<2>(k)};
    }
  };
  std::map<std::tuple<std::string, std::string, int>, std::uint64_t, RequestKeyLess> requests_;
};

}  // namespace fanout::daemon
