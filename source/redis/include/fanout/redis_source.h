// fanout behind a Redis stream: a consumer-group reader that publishes each entry into an
// Engine and acknowledges it (XACK) only once its event is settled. At least once: an entry is
// acknowledged after its final outcome, or at once when it is refused (invalid: copied with the
// reason to the dead-letter stream `<stream>:dead` first) or nobody subscribes to it.
//
//   XREADGROUP GROUP g c COUNT n BLOCK ms STREAMS s >     read connection (hiredis async, libuv)
//     │ entry {event: <JSON envelope>}
//     ▼ Producer::publish(event, {tag, default_id = entry id, journal = false})
//   Engine workers ── Observer::on_outcomes / on_retry ──► notes queue (moodycamel) + uv_async
//     ▼ on the source's loop, once per loop turn
//   XACK s g id... (+ HDEL s:attempts id...)              command connection
//   HSET s:attempts id "<attempts> <due ms>"              when a tagged delivery will retry
//
// Takeover. Every takeover_ms / 4 the source refreshes the idle time of the entries it holds
// (XCLAIM ... 0 ids JUSTID: no delivery-count change), and every takeover_ms / 6 it claims with
// XAUTOCLAIM the entries idle for more than takeover_ms / 2: those of a dead consumer, which are
// then delivered here within takeover_ms of the death. Their attempt count comes from the
// `<stream>:attempts` hash, so the retry cap holds across takeovers; only an attempt in flight
// at the death may be made again. A consumer restarting under its own name reads its pending
// entries first (XREADGROUP ... 0), at once.
//
// Faults. A lost connection (Redis restarted, network) tears both connections down and connects
// again with exponential backoff; acknowledgements that were not confirmed are sent again
// before reading resumes, so nothing acknowledged is read again and nothing unacknowledged is
// lost. A missing group (or stream) is created with XGROUP CREATE ... MKSTREAM.
//
// Threading: create(), start(), stop_reading(), close() and stats() on the loop's thread;
// on_outcomes() and on_retry() from any thread (the engine's workers).
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include <tl/expected.hpp>

#include "fanout/engine.h"

struct uv_loop_s;

namespace fanout::source {

struct RedisOptions {
  std::string url = "redis://127.0.0.1:6379";  // redis://[[USER]:PASSWORD@]HOST[:PORT][/DB]
  std::string stream = "fanout:events";
  std::string group = "fanout";
  std::string consumer;  // empty: HOSTNAME:PID
  // Where a group created at start begins: "0", the whole stream (nothing published before
  // fanout's first start is missed), or "$", new entries only.
  std::string start_id = "0";
  std::uint32_t batch = 500;      // XREADGROUP COUNT (and XAUTOCLAIM COUNT)
  std::uint32_t block_ms = 1000;  // XREADGROUP BLOCK
  // Entries read and not yet acknowledged (waiting retries included). At the budget reading
  // pauses; it resumes as outcomes come. Clamped to the engine's max_in_flight. Reading far
  // ahead of what the receivers take only costs memory, latency and idle refreshes (measured:
  // bench/report/redis-stream.md), hence 10,000.
  std::size_t max_in_flight = 10'000;
  // A consumer silent this long is taken over (see above). At least 600 ms.
  std::uint64_t takeover_ms = 30'000;
  std::uint32_t connect_timeout_ms = 5'000;
  std::uint32_t reconnect_min_ms = 100;
  std::uint32_t reconnect_max_ms = 5'000;
  // Messages ("info", "warn", "error") on the loop's thread; empty: none.
  std::function<void(std::string_view level, std::string_view message)> log;
};

struct RedisStats {
  std::uint64_t read = 0;             // entries taken from the stream (new and own pending)
  std::uint64_t acknowledged = 0;     // XACK confirmed by Redis
  std::uint64_t claimed = 0;          // entries taken over from other consumers
  std::uint64_t dead_lettered = 0;    // invalid entries copied to <stream>:dead
  std::uint64_t no_subscription = 0;  // entries acknowledged at once: nobody subscribed
  std::uint64_t held = 0;             // read, not yet acknowledged (this consumer)
  std::uint64_t reconnects = 0;
  std::uint64_t paused = 0;         // times reading paused at the budget or on a busy engine
  std::int64_t group_pending = -1;  // the group's pending entries (XINFO GROUPS), -1: unknown
  std::int64_t group_lag = -1;      // entries not yet read by the group, -1: unknown
  bool connected = false;
};

// Parsed redis:// URL (exposed for fanoutd's configuration checks and tests).
struct RedisEndpoint {
  std::string host;
  std::uint16_t port = 6379;
  int db = 0;
  std::string user, password;
};
[[nodiscard]] tl::expected<RedisEndpoint, std::string> parse_redis_url(std::string_view url);

class RedisSource {
 public:
  // Checks the options (URL, names, sizes); nothing connects before start(). `engine` must be
  // started before start() and outlive close(); `loop` runs every Redis call.
  [[nodiscard]] static tl::expected<std::unique_ptr<RedisSource>, std::string> create(
      RedisOptions options, Engine& engine, uv_loop_s* loop);
  // After close()'s callback ran (asserts in debug builds).
  ~RedisSource();
  RedisSource(const RedisSource&) = delete;
  RedisSource& operator=(const RedisSource&) = delete;

  void start();
  // Reads nothing more; entries held stay pending in Redis (read again by this consumer name at
  // its next start, or taken over). Outcomes still arriving are acknowledged until close().
  void stop_reading();
  // After Engine::stop(): sends the acknowledgements still owed, waits for Redis's answers at
  // most `deadline_ms`, disconnects and closes every handle; `done` runs on the loop then.
  void close(std::uint32_t deadline_ms, std::function<void()> done);

  // Engine observer hooks (any thread; untagged outcomes are ignored). Call them from the
  // engine's Observer, or use SourceObserver.
  void on_outcomes(std::span<const Outcome> outcomes) noexcept;
  void on_retry(const RetryNote& note) noexcept;

  [[nodiscard]] RedisStats stats() const noexcept;
  [[nodiscard]] const RedisOptions& options() const noexcept;

  struct Impl;

 private:
  explicit RedisSource(std::unique_ptr<Impl> impl) noexcept;
  std::unique_ptr<Impl> impl_;
};

// An Observer that gives every outcome and retry to a source (once set), then to `next`.
class SourceObserver final : public Observer {
 public:
  explicit SourceObserver(Observer* next = nullptr) noexcept : next_(next) {}
  void set_source(RedisSource* source) noexcept {
    source_.store(source, std::memory_order_release);
  }
  void on_outcomes(std::span<const Outcome> outcomes) noexcept override {
    if (RedisSource* s = source_.load(std::memory_order_acquire)) s->on_outcomes(outcomes);
    if (next_ != nullptr) next_->on_outcomes(outcomes);
  }
  void on_retry(const RetryNote& note) noexcept override {
    if (RedisSource* s = source_.load(std::memory_order_acquire)) s->on_retry(note);
    if (next_ != nullptr) next_->on_retry(note);
  }

 private:
  Observer* next_;
  std::atomic<RedisSource*> source_{nullptr};
};

}  // namespace fanout::source
