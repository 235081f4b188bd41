// fanoutd's Redis source ([source.redis], source/redis/README.md): made and started on the main
// loop once the engine runs; its counters go to /metrics and its messages to the log.
#pragma once

#include <uv.h>

#include <memory>

#include "fanout/redis_source.h"
#include "tools/fanoutd/config.h"
#include "tools/fanoutd/metrics.h"

namespace fanout::daemon {

// The source when config.redis.url is set (started: it connects in the background and says so
// in the log), nullptr when it is not, or the reason it cannot be made.
[[nodiscard]] tl::expected<std::unique_ptr<source::RedisSource>, std::string> start_redis(
    const Config& config, Engine& engine, uv_loop_t* loop, Metrics& metrics,
    source::SourceObserver& observer);

}  // namespace fanout::daemon
