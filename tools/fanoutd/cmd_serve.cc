// fanoutd serve: store → engine (routing table loaded, pending deliveries resumed) → HTTP
// server on the main loop; SIGTERM/SIGINT drains the server, stops the engine and saves every
// delivery without a final outcome, then exits 0.
#include <uv.h>

#include <algorithm>
#include <charconv>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <simdjson.h>
#include <sqlite3.h>

#include "engine/client_options.h"
#include "engine/signer.h"
#include "fanout/engine.h"
#include "fanout/version.h"
#include "routing/subscription.h"
#include "tools/common/json_out.h"
#include "tools/fanoutd/api.h"
#include "tools/fanoutd/config.h"
#include "tools/fanoutd/dir_lock.h"
#include "tools/fanoutd/heap_trim.h"
#include "tools/fanoutd/limits.h"
#include "tools/fanoutd/log.h"
#include "tools/fanoutd/metrics.h"
#include "tools/fanoutd/redis.h"
#include "tools/fanoutd/store.h"
#include "tools/fanoutd/sync.h"
#include "transport/client/client.h"
#include "transport/loop_timer.h"
#include "transport/server/http_server.h"
#include "transport/stream.h"
#include "transport/tls.h"

#include "tools/fanoutd/commands.h"

namespace fanout::daemon {
namespace {

class DaemonObserver final : public Observer {
 public:
  explicit DaemonObserver(Metrics* metrics) : metrics_(metrics) {}
  void on_outcomes(std::span<const Outcome> batch) noexcept override {
    for (const Outcome& o : batch) {
      metrics_->record_outcome(o);
      const bool quiet = o.kind == OutcomeKind::kDelivered;
      if (quiet ? !log::enabled(LogLevel::kDebug) : !log::enabled(LogLevel::kInfo)) continue;
      log::write(quiet ? LogLevel::kDebug : LogLevel::kInfo, "outcome",
                 {{"event_id", std::string(o.event_id)},
                  {"kind", std::string(to_string(o.kind))},
                  {"subscription_id", std::to_string(o.subscription_id)},
                  {"org_id", std::to_string(o.org_id)},
                  {"event_type", std::string(o.event_type)},
                  {"attempts", std::to_string(o.attempts)},
                  {"status", std::to_string(o.last_status)},
                  {"failure", std::string(o.last_failure)}});
    }
  }

 private:
  Metrics* metrics_;
};

// Tells the main loop that the journal committed a group (called on the journal's thread). The
// async handle exists only while the loop runs; the mutex keeps a commit from ringing a handle
// that is being closed.
struct CommitBell {
  std::mutex mu;
  uv_async_t* async = nullptr;
  Api* api = nullptr;
  void ring(std::uint64_t first_seq, std::uint64_t last_seq, bool ok) {
    std::lock_guard lock(mu);
    if (api != nullptr) api->note_commit(first_seq, last_seq, ok);
    if (async != nullptr) uv_async_send(async);
  }
};

// The main loop's handles and the shutdown sequence. Stopping has one deadline for everything
// (drain_timeout_ms): at the first SIGTERM or SIGINT the server drains (answers already owed,
// ingest answers waiting for the journal included), tryouts are cancelled, and the engine drains
// on a thread of its own, all at once; past the deadline the server closes its connections
// (the engine cuts its attempts at the same deadline). A second signal changes nothing.
struct Daemon {
  uv_loop_t loop{};
  std::unique_ptr<transport::StreamLoop> streams;
  std::unique_ptr<transport::LoopTimer> timers;
  std::unique_ptr<transport::Client> client;
  std::unique_ptr<Api> api;
  std::unique_ptr<transport::HttpServer> server;
  uv_signal_t sigterm{}, sigint{};
  uv_timer_t deadline{};
  uv_async_t commit_async{}, engine_async{};
  CommitBell* bell = nullptr;
  Engine* engine = nullptr;
  std::unique_ptr<source::RedisSource> redis;  // [source.redis], when configured
  std::thread engine_stopper;
  std::vector<Unfinished> unfinished;  // what the engine handed back
  bool stopping = false;
  bool server_done = false, client_done = false, engine_done = false, redis_done = false;
  std::uint32_t drain_ms = 0;

  void begin_stop(int signum) {
    const char* name = signum == SIGTERM ? "SIGTERM" : "SIGINT";
    if (stopping) {
      log::info("already stopping", {{"signal", name}});
      return;
    }
    stopping = true;
    log::info("stopping", {{"signal", name}, {"deadline_ms", std::to_string(drain_ms)}});
    api->set_stopping();
    // Nothing more is read from the stream; what is held stays pending in Redis until its
    // outcome is acknowledged (the engine drains below) or this consumer starts again.
    if (redis) redis->stop_reading();
    // The signal handlers stay (a second signal must not kill the daemon before it saved what
    // it holds) but no longer keep the loop alive.
    uv_unref(reinterpret_cast<uv_handle_t*>(&sigterm));
    uv_unref(reinterpret_cast<uv_handle_t*>(&sigint));
    engine_stopper = std::thread([this] {
      unfinished = engine->stop(std::chrono::milliseconds(drain_ms));
      uv_async_send(&engine_async);
    });
    client->close(
        [](void* d) {
          auto* self = static_cast<Daemon*>(d);
          self->client_done = true;
          self->maybe_finish();
        },
        this);
    server->drain(
        [](transport::HttpServer*, void* d) noexcept {
          auto* self = static_cast<Daemon*>(d);
          self->server_done = true;
          self->maybe_finish();
        },
        this);
    uv_timer_start(
        &deadline,
        [](uv_timer_t* t) {
          auto* self = static_cast<Daemon*>(t->data);
          if (!self->server_done) self->server->close();
        },
        drain_ms, 0);
  }

  // The engine has stopped: the source acknowledges the outcomes of the drain, then closes.
  void on_engine_stopped() {
    engine_done = true;
    if (!redis) {
      redis_done = true;
      maybe_finish();
      return;
    }
    redis->close(kRedisCloseMs, [this] {
      redis_done = true;
      maybe_finish();
    });
  }
  static constexpr std::uint32_t kRedisCloseMs = 2'000;

  void maybe_finish() {
    if (!server_done || !client_done || !engine_done || !redis_done) return;
    {
      std::lock_guard lock(bell->mu);
      bell->async = nullptr;
      bell->api = nullptr;
    }
    for (uv_handle_t* h :
         {reinterpret_cast<uv_handle_t*>(&deadline), reinterpret_cast<uv_handle_t*>(&sigterm),
          reinterpret_cast<uv_handle_t*>(&sigint), reinterpret_cast<uv_handle_t*>(&commit_async),
          reinterpret_cast<uv_handle_t*>(&engine_async)}) {
      uv_close(h, nullptr);
    }
    timers->close();
    streams->close();
  }
};

// The tryout client, the routes and the listening socket. 0, or 1 with the reason printed.
int open_server(const Config& config, Daemon& d, Store* store, Engine* engine, Metrics* metrics,
                const engine::Signer* signer, std::size_t loaded) {
  // Sent the way the engine's workers deliver (engine/client_options.h).
  auto client =
      transport::Client::create(*d.streams, *d.timers, engine::client_options(config.engine));
  if (!client) {
    std::fprintf(stderr, "fanoutd: tryout client: %s\n", client.error().c_str());
    return 1;
  }
  d.client = std::move(*client);
  ApiDeps deps;
  deps.config = &config;
  deps.store = store;
  deps.engine = engine;
  deps.metrics = metrics;
  deps.tryout_client = d.client.get();
  deps.signer = signer;
  deps.subscriptions = loaded;
  d.api = std::make_unique<Api>(deps);
  transport::HttpServerOptions so;
  so.host = config.listen_host;
  so.port = config.listen_port;
  so.max_body_bytes = std::max(config.api_max_body_bytes, config.ingest_max_body_bytes) + 1;
  so.idle_timeout_ms = config.api_idle_timeout_ms;
  so.request_timeout_ms = config.api_request_timeout_ms;
  so.write_timeout_ms = config.api_write_timeout_ms;
  so.max_unsent_output_bytes = config.api_max_unsent_output_bytes;
  // Inbound connections never take the descriptors deliveries need (limits.h).
  auto fds = plan_descriptors(config);
  if (!fds) {
    std::fprintf(stderr, "fanoutd: %s\n", fds.error().c_str());
    return 1;
  }
  so.max_connections = fds->api_connections;
  if (fds->capped_by_limit) {
    log::warn("api connections capped by the descriptor limit",
              {{"max_connections", std::to_string(fds->api_connections)},
               {"rlimit_nofile", std::to_string(fds->limit)},
               {"fd_reserve", std::to_string(config.fd_reserve)}});
  }
  if (!config.tls_cert.empty()) {
    auto tls = transport::TlsContext::server({config.tls_cert, config.tls_key});
    if (!tls) {
      std::fprintf(stderr, "fanoutd: TLS: %s\n", tls.error().c_str());
      return 1;
    }
    so.tls = *tls;
  }
  auto server = transport::HttpServer::create(*d.streams, so, d.api.get());
  if (!server) {
    std::fprintf(stderr, "fanoutd: %s\n", server.error().c_str());
    return 1;
  }
  d.server = std::move(*server);
  metrics->set_server(d.server.get());
  return 0;
}

// One saved delivery back into the engine. true: it left the store's care (resumed, or ended
// as dropped); false: the engine could not take it now (over its in-flight budget), it stays.
bool resume_one(Producer& producer, Metrics& metrics, const PendingDelivery& p,
                std::size_t& resumed, std::size_t& gone) {
  Unfinished u{p.event_id,        p.org_id,   p.event_type,          p.body,
               p.subscription_id, p.attempts, p.next_attempt_unix_ms};
  const PublishResult r = producer.resume(u);
  if (r.status == PublishStatus::kAccepted) {
    ++resumed;
    return true;
  }
  if (r.status == PublishStatus::kBusy || r.status == PublishStatus::kStopped) return false;
  ++gone;
  // Its subscription was deleted meanwhile: its final outcome is `dropped` (counted in
  // fanout_outcomes_total like the engine's own drops).
  metrics.record_dropped_at_resume();
  log::info("outcome", {{"event_id", p.event_id},
                        {"kind", "dropped"},
                        {"subscription_id", std::to_string(p.subscription_id)},
                        {"org_id", std::to_string(p.org_id)},
                        {"event_type", p.event_type},
                        {"attempts", std::to_string(p.attempts)},
                        {"reason", std::string(to_string(r.status))}});
  return true;
}

// The store's write lock is held while settling; other instances' writers wait for it up to
// their 5 s busy timeout, so the wait for the journal stops well before.
constexpr std::chrono::milliseconds kSettleMax{3000};

// Deliveries saved by a stop without durability go back to the (started) engine. Another
// instance on the same data directory may be starting at the same time: Store::take_pending
// hands each saved delivery to one taker only (a write transaction per chunk) and forgets a
// chunk only once the engine holds it (durable: once the journal has it on disk). What the
// engine could not take stays saved for a later start.
bool resume_saved(Store& store, Engine& engine, Metrics& metrics) {
  Producer producer = engine.make_producer();
  std::size_t resumed = 0, gone = 0, kept = 0;
  auto resume = [&](const PendingDelivery& p) {
    const bool taken = resume_one(producer, metrics, p, resumed, gone);
    if (!taken) ++kept;
    return taken;
  };
  bool settled = true;
  auto settle = [&engine, &settled] {
    // Durable: the resumed deliveries are journal records now; wait for their commit (a few
    // milliseconds, once, at start) before the store forgets them.
    const auto deadline = std::chrono::steady_clock::now() + kSettleMax;
    while (engine.durable() && engine.durable_seq() < engine.last_seq()) {
      if (std::chrono::steady_clock::now() >= deadline) return settled = false;
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    return true;
  };
  auto took = store.take_pending(resume, settle);
  if (!took) {
    std::fprintf(stderr, "fanoutd: pending deliveries: %s\n", took.error().c_str());
    // Nothing resumed yet: the start fails and changes nothing. Otherwise the engine holds
    // what it took (the store keeps the chunk that failed: delivered at least once).
    if (resumed + gone == 0) return false;
  }
  if (!settled) {
    log::warn("resumed deliveries not on disk in time; they stay saved too (at least once)",
              {{"waited_ms", std::to_string(kSettleMax.count())}});
  }
  if (resumed + gone + kept > 0) {
    log::info("pending deliveries resumed", {{"resumed", std::to_string(resumed)},
                                             {"dropped", std::to_string(gone)},
                                             {"kept", std::to_string(kept)}});
  }
  return true;
}

// --help, the command line and the configuration file into `config`; the exit status when
// fanoutd must not start (2 for a bad command line, 1 for a bad configuration file).
std::optional<int> serve_config(std::span<char*> args, Config& config) {
  std::vector<std::string_view> words(args.begin(), args.end());
  for (std::string_view w : words) {
    if (w == "--help" || w == "-h") {
      std::fputs(kUsage, stdout);
      return 0;
    }
  }
  auto parsed = parse_serve_args(words);
  if (!parsed) {
    // A bad command line is 2 (with the usage); a bad configuration file means fanoutd cannot
    // start: 1, with the reason.
    const std::string& e = parsed.error();
    if (e.rfind("--", 0) == 0 || e.rfind("unexpected argument", 0) == 0) {
      return usage_error("serve: " + e);
    }
    std::fprintf(stderr, "fanoutd: configuration: %s\n", e.c_str());
    return 1;
  }
  config = std::move(*parsed);
  return std::nullopt;
}

// The store's catalogue is built like the engine's (Partoo's six, then the extensions in
// order), so event-type ids agree. False after printing why not.
bool add_event_types(const Config& config, routing::EventCatalogue& catalogue) {
  for (const std::string& t : config.engine.extra_event_types) {
    if (auto r = catalogue.add(t); !r) {
      std::fprintf(stderr, "fanoutd: event_types: \"%s\": %s\n", t.c_str(),
                   std::string(routing::to_string(r.error())).c_str());
      return false;
    }
  }
  return true;
}

// Durable: takes the journal directory's lock (held until exit: one process per journal) and
// points the engine's journal at it, its commits ringing `bell`. False after printing why not.
bool lock_journal(Config& config, CommitBell& bell, std::unique_ptr<DirLock>& journal_lock) {
  const std::filesystem::path journal_dir =
      config.journal_dir.empty() ? config.data_dir : config.journal_dir;
  auto lock = DirLock::acquire(journal_dir);
  if (!lock) {
    std::fprintf(stderr, "fanoutd: %s\n", lock.error().c_str());
    return false;
  }
  journal_lock = std::move(*lock);
  config.engine.durability.dir = journal_dir.string();
  config.engine.durability.on_commit = [&bell](std::uint64_t first, std::uint64_t last, bool ok) {
    bell.ring(first, last, ok);
  };
  return true;
}

// Once the server has its port: the engine starts, saved deliveries resume, the Redis source
// starts. The exit status (0: serving).
int start_serving(const Config& config, Daemon& d, Store& store, Engine& engine, Metrics& metrics,
                  source::SourceObserver& observer) {
  if (auto started = engine.start(); !started) {
    std::fprintf(stderr, "fanoutd: starting the engine: %s\n", started.error().c_str());
    return 1;
  }
  if (!resume_saved(store, engine, metrics)) return 1;
  auto redis = start_redis(config, engine, &d.loop, metrics, observer);
  if (!redis) {
    std::fprintf(stderr, "fanoutd: %s\n", redis.error().c_str());
    return 1;
  }
  d.redis = std::move(*redis);
  return 0;
}

// A start that failed: closes what was opened and stops the engine (nothing was resumed).
void abandon_start(Daemon& d, Metrics& metrics, Engine& engine) {
  if (d.client) d.client->close([](void*) {}, nullptr);
  // The server (when it was made) closes its listener first; then the loop's own handles.
  auto close_loop = [](transport::HttpServer*, void* data) noexcept {
    auto* self = static_cast<Daemon*>(data);
    self->timers->close();
    self->streams->close();
  };
  if (d.server) {
    d.server->close(close_loop, &d);
  } else {
    close_loop(nullptr, &d);
  }
  uv_run(&d.loop, UV_RUN_DEFAULT);
  metrics.set_server(nullptr);
  d.server.reset();
  d.api.reset();
  (void)uv_loop_close(&d.loop);
  (void)engine.stop(std::chrono::milliseconds(0));
}

// Serving: signals, the journal's and the engine's wake-ups, the sync with other instances; the
// loop runs until the stop sequence (Daemon) has closed everything.
void serve(const Config& config, Daemon& d, CommitBell& bell, SubscriptionSync& sync,
           HeapTrim& heap_trim, Engine& engine, std::size_t loaded) {
  uv_signal_init(&d.loop, &d.sigterm);
  uv_signal_init(&d.loop, &d.sigint);
  uv_timer_init(&d.loop, &d.deadline);
  d.sigterm.data = d.sigint.data = d.deadline.data = &d;
  auto on_signal = [](uv_signal_t* h, int signum) {
    static_cast<Daemon*>(h->data)->begin_stop(signum);
  };
  uv_signal_start(&d.sigterm, on_signal, SIGTERM);
  uv_signal_start(&d.sigint, on_signal, SIGINT);
  uv_async_init(&d.loop, &d.commit_async,
                [](uv_async_t* a) { static_cast<Daemon*>(a->data)->api->on_journal_commit(); });
  uv_async_init(&d.loop, &d.engine_async,
                [](uv_async_t* a) { static_cast<Daemon*>(a->data)->on_engine_stopped(); });
  d.commit_async.data = d.engine_async.data = &d;
  {
    std::lock_guard lock(bell.mu);
    bell.async = &d.commit_async;
    bell.api = d.api.get();
  }
  // Changes made through other instances on this data directory (sync.h). It polls until the
  // stop closes the loop's timers: deliveries still draining follow those changes too.
  sync.start(*d.timers, d.api.get());
  // Free heap back to the system once a backlog drained (heap_trim.h).
  heap_trim.start(*d.timers);

  const std::string shown = config.listen_host.find(':') != std::string::npos
                                ? "[" + config.listen_host + "]"
                                : config.listen_host;
  std::printf("listening on %s:%u\n", shown.c_str(), static_cast<unsigned>(d.server->port()));
  std::fflush(stdout);
  const EngineStats at_start = engine.stats();
  log::info("fanoutd started", {{"version", std::string(version())},
                                {"listen", shown + ":" + std::to_string(d.server->port())},
                                {"data", config.data_dir.string()},
                                {"workers", std::to_string(engine.options().workers)},
                                {"subscriptions", std::to_string(loaded)},
                                {"durable", config.durable ? "true" : "false"},
                                {"recovered", std::to_string(at_start.recovered)},
                                {"insecure", config.engine.insecure ? "true" : "false"}});

  uv_run(&d.loop, UV_RUN_DEFAULT);
  if (d.engine_stopper.joinable()) d.engine_stopper.join();
}

// After the loop: saves what the engine handed back (not durable), logs, closes. The exit status.
int finish_serving(const Config& config, Daemon& d, Store& store, Engine& engine, Metrics& metrics,
                   source::SourceObserver& observer) {
  int rc = 0;
  // Durable: every delivery without a final outcome is in the journal already (the engine
  // committed the last attempts before it returned). Otherwise they are saved here.
  std::size_t saved = 0;
  if (!config.durable) {
    std::vector<PendingDelivery> pending;
    pending.reserve(d.unfinished.size());
    for (Unfinished& u : d.unfinished) {
      if (u.tag != 0) continue;  // a Redis entry: still pending there, read again at next start
      pending.push_back({std::move(u.event_id), u.org_id, std::move(u.event_type),
                         std::move(u.body), u.subscription_id, u.attempts, u.next_attempt_unix_ms});
    }
    if (auto r = store.save_pending(pending); !r) {
      log::error("saving pending deliveries failed",
                 {{"error", r.error()}, {"lost", std::to_string(pending.size())}});
      rc = 1;
    } else {
      saved = pending.size();
    }
  }
  const EngineStats st = engine.stats();
  log::info("fanoutd stopped",
            {{"pending_saved", std::to_string(saved)},
             {"pending_in_journal", std::to_string(config.durable ? d.unfinished.size() : 0)},
             {"published", std::to_string(st.published)},
             {"delivered", std::to_string(st.delivered)},
             {"rejected", std::to_string(st.rejected)},
             {"exhausted", std::to_string(st.exhausted)},
             {"dropped", std::to_string(st.dropped)}});
  observer.set_source(nullptr);
  metrics.set_redis(nullptr);
  metrics.set_server(nullptr);
  d.redis.reset();
  d.server.reset();
  d.api.reset();
  d.client.reset();
  if (uv_loop_close(&d.loop) != 0) {
    log::error("handles left open at exit");
    rc = 1;
  }
  return rc;
}

}  // namespace

int cmd_serve(std::span<char*> args) {
  // Before SQLite's first use (the setting is the process's): no count of SQLite's memory, which
  // nothing here reads, so that its allocations take no global mutex (the journal's indexer
  // makes several per event).
  (void)sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
  Config config;
  if (const std::optional<int> rc = serve_config(args, config)) return *rc;
  log::set_level(config.log_level);
  routing::EventCatalogue catalogue;
  if (!add_event_types(config, catalogue)) return 1;
  auto store = Store::open(config.data_dir, catalogue);
  if (!store) {
    std::fprintf(stderr, "fanoutd: %s\n", store.error().c_str());
    return 1;
  }
  auto pem = (*store)->signing_key_pem();
  if (!pem) {
    std::fprintf(stderr, "fanoutd: signing key: %s\n", pem.error().c_str());
    return 1;
  }
  auto signer = engine::Signer::from_pem(*pem);
  if (!signer) {
    std::fprintf(stderr, "fanoutd: signing key: %s\n", signer.error().c_str());
    return 1;
  }
  config.engine.signing_key_pem = *pem;

  Metrics metrics;
  DaemonObserver daemon_observer(&metrics);
  source::SourceObserver observer(&daemon_observer);  // the Redis source's outcomes first
  CommitBell bell;
  std::unique_ptr<DirLock> journal_lock;  // held until exit: one process per journal
  if (config.durable && !lock_journal(config, bell, journal_lock)) return 1;
  // The journal is opened (and read) here; nothing is resumed or removed before the server has
  // its port: a start that fails loses nothing.
  auto engine = Engine::create(config.engine, &observer);
  if (!engine) {
    std::fprintf(stderr, "fanoutd: %s\n", engine.error().c_str());
    return 1;
  }
  // Loads the routing table, then (once serving) follows changes other instances make.
  SubscriptionSync sync(**store, **engine);
  metrics.set_sync(&sync);
  HeapTrim heap_trim(**engine, config.heap_trim_backlog);
  metrics.set_heap_trim(&heap_trim);
  auto subs = sync.load_all();
  if (!subs) {
    std::fprintf(stderr, "fanoutd: loading subscriptions: %s\n", subs.error().c_str());
    return 1;
  }
  const std::size_t loaded = *subs;

  std::signal(SIGPIPE, SIG_IGN);
  Daemon d;
  d.drain_ms = config.drain_timeout_ms;
  d.bell = &bell;
  d.engine = engine->get();
  uv_loop_init(&d.loop);
  d.streams = std::make_unique<transport::StreamLoop>(&d.loop);
  d.timers = std::make_unique<transport::LoopTimer>(&d.loop);
  // Tryouts are signed as deliveries are: with the Partoo signature, or not at all.
  const engine::Signer* tryout_signer = config.engine.partoo_signature ? &*signer : nullptr;
  int rc = open_server(config, d, store->get(), engine->get(), &metrics, tryout_signer, loaded);
  if (rc == 0) rc = start_serving(config, d, **store, **engine, metrics, observer);
  if (rc != 0) {
    abandon_start(d, metrics, **engine);
    return rc;
  }
  serve(config, d, bell, sync, heap_trim, **engine, loaded);
  return finish_serving(config, d, **store, **engine, metrics, observer);
}

}  // namespace fanout::daemon
