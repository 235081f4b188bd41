// Embedding fanout behind a Redis stream: the example source/redis/README.md shows, built by CI
// and run by ctest against redis-server and a fanout-sink (tests/tools/redis_example_test.py).
//
//   fanout-redis-example REDIS_URL RECEIVER_URL [COUNT]
//
// Subscribes organisation 42 to every event type of the catalogue at RECEIVER_URL, reads the
// stream fanout:events as consumer "example" of group "fanout", and prints each event's final
// outcome. With COUNT it stops after COUNT outcomes (Ctrl-C stops it too): reading stops, the
// engine drains, the source acknowledges what settled and closes, and the program exits 0.
//
// Feed it with (one line):
//   redis-cli XADD fanout:events '*' event '{"org_id":42,"type":"business_updated","payload":{}}'
//
// An http:// RECEIVER_URL turns insecure mode on and loopback is allowed past the address guard,
// so a local receiver works; a real deployment uses https:// and leaves both off.
#include <uv.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <span>
#include <string>
#include <string_view>
#include <thread>

#include "fanout/engine.h"
#include "fanout/redis_source.h"

namespace {

struct App;

// Prints outcomes (worker threads) and wakes the loop when COUNT of them arrived.
class PrintingObserver final : public fanout::Observer {
 public:
  explicit PrintingObserver(App& app) : app_(app) {}
  void on_outcomes(std::span<const fanout::Outcome> outcomes) noexcept override;

 private:
  App& app_;
};

struct App {
  uv_loop_t* loop = uv_default_loop();
  long count = 0;
  std::atomic<long> done{0};
  uv_async_t wake{};  // COUNT reached, or the engine has stopped
  uv_signal_t sigint{};
  std::atomic<bool> engine_stopped{false};
  bool stopping = false;
  std::thread stopper;
  std::unique_ptr<fanout::Engine> engine;
  std::unique_ptr<fanout::source::RedisSource> source;
};

void PrintingObserver::on_outcomes(std::span<const fanout::Outcome> outcomes) noexcept {
  for (const fanout::Outcome& o : outcomes) {
    const std::string_view kind = fanout::to_string(o.kind);
    std::printf("outcome %.*s: event %.*s after %u attempt(s), status %d\n",
                static_cast<int>(kind.size()), kind.data(), static_cast<int>(o.event_id.size()),
                o.event_id.data(), o.attempts, o.last_status);
  }
  std::fflush(stdout);
  const long n =
      app_.done.fetch_add(static_cast<long>(outcomes.size())) + static_cast<long>(outcomes.size());
  if (app_.count > 0 && n >= app_.count) uv_async_send(&app_.wake);
}

// On the loop: stop reading, drain the engine on a thread (Engine::stop blocks), then close the
// source so it acknowledges what settled meanwhile.
void shut_down(App& app) {
  if (app.stopping) return;
  app.stopping = true;
  app.source->stop_reading();
  app.stopper = std::thread([&app] {
    (void)app.engine->stop(std::chrono::seconds(5));  // unfinished entries stay pending in Redis
    app.engine_stopped.store(true);
    uv_async_send(&app.wake);
  });
}

void on_wake(uv_async_t* handle) {
  auto& app = *static_cast<App*>(handle->data);
  if (!app.engine_stopped.load()) {
    shut_down(app);
    return;
  }
  app.stopper.join();
  app.source->close(2000, [&app] {
    uv_close(reinterpret_cast<uv_handle_t*>(&app.wake), nullptr);
    uv_close(reinterpret_cast<uv_handle_t*>(&app.sigint), nullptr);
  });
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: fanout-redis-example REDIS_URL RECEIVER_URL [COUNT]\n");
    return 2;
  }
  App app;
  app.count = argc > 3 ? std::atol(argv[3]) : 0;
  const std::string receiver = argv[2];

  PrintingObserver printer(app);
  fanout::source::SourceObserver observer(&printer);  // outcomes go to the source, then to us
  fanout::EngineOptions eo;
  eo.workers = 1;
  eo.retry.base_ms = 100;  // short backoff for the example
  if (receiver.starts_with("http://")) {
    eo.insecure = true;
    eo.allow_subnets = {"127.0.0.0/8", "::1/128"};
  }
  auto engine = fanout::Engine::create(eo, &observer);
  if (!engine) {
    std::fprintf(stderr, "engine: %s\n", engine.error().c_str());
    return 1;
  }
  app.engine = std::move(*engine);
  std::int64_t id = 0;
  for (const std::string_view type : app.engine->catalogue().names()) {
    fanout::routing::SubscriptionSpec spec;
    spec.org_id = 42;
    spec.event_type = std::string(type);
    spec.url = receiver;
    if (auto s = app.engine->upsert(++id, spec); !s) {
      std::fprintf(stderr, "subscription for %.*s refused\n", static_cast<int>(type.size()),
                   type.data());
      return 1;
    }
  }
  if (auto r = app.engine->start(); !r) {
    std::fprintf(stderr, "engine: %s\n", r.error().c_str());
    return 1;
  }

  fanout::source::RedisOptions ro;
  ro.url = argv[1];
  ro.consumer = "example";
  ro.log = [](std::string_view level, std::string_view message) {
    std::fprintf(stderr, "redis %.*s: %.*s\n", static_cast<int>(level.size()), level.data(),
                 static_cast<int>(message.size()), message.data());
  };
  auto source = fanout::source::RedisSource::create(ro, *app.engine, app.loop);
  if (!source) {
    std::fprintf(stderr, "source: %s\n", source.error().c_str());
    (void)app.engine->stop(std::chrono::milliseconds(0));
    return 1;
  }
  app.source = std::move(*source);
  observer.set_source(app.source.get());

  uv_async_init(app.loop, &app.wake, on_wake);
  app.wake.data = &app;
  uv_signal_init(app.loop, &app.sigint);
  app.sigint.data = &app;
  uv_signal_start(
      &app.sigint, [](uv_signal_t* s, int) { shut_down(*static_cast<App*>(s->data)); }, SIGINT);
  app.source->start();
  uv_run(app.loop, UV_RUN_DEFAULT);

  const fanout::source::RedisStats st = app.source->stats();
  std::printf("read %llu, acknowledged %llu, dead-lettered %llu\n",
              static_cast<unsigned long long>(st.read),
              static_cast<unsigned long long>(st.acknowledged),
              static_cast<unsigned long long>(st.dead_lettered));
  observer.set_source(nullptr);
  app.source.reset();
  app.engine.reset();
  uv_loop_close(app.loop);
  return 0;
}
