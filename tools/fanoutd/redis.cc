#include "tools/fanoutd/redis.h"

#include <string>

#include "tools/fanoutd/log.h"

namespace fanout::daemon {

tl::expected<std::unique_ptr<source::RedisSource>, std::string> start_redis(
    const Config& config, Engine& engine, uv_loop_t* loop, Metrics& metrics,
    source::SourceObserver& observer) {
  if (config.redis.url.empty()) return std::unique_ptr<source::RedisSource>();
  source::RedisOptions o = config.redis;
  o.log = [](std::string_view level, std::string_view message) {
    const LogLevel l = level == "error"  ? LogLevel::kError
                       : level == "warn" ? LogLevel::kWarn
                                         : LogLevel::kInfo;
    if (log::enabled(l)) log::write(l, "redis", {{"message", std::string(message)}});
  };
  auto made = source::RedisSource::create(std::move(o), engine, loop);
  if (!made) return tl::unexpected("source.redis: " + made.error());
  std::unique_ptr<source::RedisSource> s = std::move(*made);
  metrics.set_redis(s.get());
  observer.set_source(s.get());
  const source::RedisOptions& used = s->options();
  log::info("redis source", {{"stream", used.stream},
                             {"group", used.group},
                             {"consumer", used.consumer},
                             {"max_in_flight", std::to_string(used.max_in_flight)},
                             {"takeover_ms", std::to_string(used.takeover_ms)}});
  s->start();
  return s;
}

}  // namespace fanout::daemon
