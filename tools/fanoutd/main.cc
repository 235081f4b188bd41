// fanoutd: the daemon's command line (tools/fanoutd/README.md, "Command line").
//
//   serve    store → engine (routing table loaded, pending deliveries resumed) → HTTP server on
//            the main loop; SIGTERM/SIGINT drains the server, stops the engine and saves every
//            delivery without a final outcome, then exits 0.
//   apikey   create | list | revoke, straight on the store (safe beside a running daemon: WAL).
//   keys     public: the signing public key as PEM.
//   publish  NDJSON from a file or stdin to a running daemon's POST /v2/events.
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

#include "engine/signer.h"
#include "fanout/engine.h"
#include "fanout/version.h"
#include "routing/subscription.h"
#include "tools/common/json_out.h"
#include "tools/fanoutd/api.h"
#include "tools/fanoutd/config.h"
#include "tools/fanoutd/dir_lock.h"
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

namespace fanout::daemon {
namespace {

constexpr const char* kUsage =
    "usage:\n"
    "  fanoutd serve --listen 127.0.0.1:PORT --data DIR [--config FILE] [--insecure]\n"
    "                [--allow-subnet CIDR]... [--workers N] [--ca-file FILE]\n"
    "                [--tls-cert FILE --tls-key FILE] [--log-level debug|info|warn|error]\n"
    "                [--drain-timeout-ms N] [--no-durable] [--journal-dir DIR]\n"
    "                [--redis-url redis://HOST:PORT[/DB] [--redis-stream NAME]\n"
    "                 [--redis-group NAME] [--redis-consumer NAME]]\n"
    "  fanoutd apikey create --data DIR --role ORG_ADMIN --org ID [--name TEXT]\n"
    "  fanoutd apikey create --data DIR --role PROVIDER --orgs ID,ID,... [--name TEXT]\n"
    "  fanoutd apikey create --data DIR --role INGEST --orgs ID,ID,...|--all-orgs [--name TEXT]\n"
    "  fanoutd apikey list --data DIR\n"
    "  fanoutd apikey revoke --data DIR ID\n"
    "  fanoutd keys public --data DIR\n"
    "  fanoutd publish --url http://HOST:PORT --key INGEST_KEY [FILE]   (NDJSON; stdin without "
    "FILE)\n"
    "  fanoutd --version | --help\n"
    "Every option and the configuration file: tools/fanoutd/README.md\n";

int usage_error(const std::string& message) {
  std::fprintf(stderr, "fanoutd: %s\n%s", message.c_str(), kUsage);
  return 2;
}

// "--name value" or "--name=value" flags after a subcommand; positional words kept in order.
struct Flags {
  std::vector<std::pair<std::string, std::string>> named;
  std::vector<std::string> positional;
  [[nodiscard]] const std::string* get(std::string_view name) const {
    const std::string* found = nullptr;
    for (const auto& [n, v] : named) {
      if (n == name) found = &v;
    }
    return found;
  }
};

// `known` flags take a value; `switches` take none (present: value "true").
tl::expected<Flags, std::string> parse_flags(
    std::span<char*> args, std::initializer_list<std::string_view> known,
    std::initializer_list<std::string_view> switches = {}) {
  Flags f;
  for (std::size_t i = 0; i < args.size(); ++i) {
    std::string_view a = args[i];
    if (a.substr(0, 2) != "--") {
      f.positional.emplace_back(a);
      continue;
    }
    std::string name(a.substr(2));
    std::optional<std::string> value;
    if (const auto eq = name.find('='); eq != std::string::npos) {
      value = name.substr(eq + 1);
      name.resize(eq);
    }
    if (std::find(switches.begin(), switches.end(), name) != switches.end()) {
      if (value) return tl::unexpected("--" + name + " takes no value");
      f.named.emplace_back(std::move(name), "true");
      continue;
    }
    if (std::find(known.begin(), known.end(), name) == known.end()) {
      return tl::unexpected("unknown option --" + name);
    }
    if (!value) {
      if (i + 1 >= args.size()) return tl::unexpected("--" + name + " needs a value");
      value = args[++i];
    }
    f.named.emplace_back(std::move(name), std::move(*value));
  }
  return f;
}

// --- apikey / keys ------------------------------------------------------------------------------

tl::expected<std::vector<std::int64_t>, std::string> parse_org_list(std::string_view s,
                                                                    std::string_view flag) {
  std::vector<std::int64_t> out;
  while (true) {
    const std::size_t comma = s.find(',');
    const std::string_view part = s.substr(0, comma);
    std::int64_t v = 0;
    const auto [p, ec] = std::from_chars(part.data(), part.data() + part.size(), v);
    if (part.empty() || ec != std::errc() || p != part.data() + part.size() || v <= 0) {
      return tl::unexpected(std::string(flag) + ": \"" + std::string(part) +
                            "\" is not a positive organisation id");
    }
    out.push_back(v);
    if (comma == std::string_view::npos) break;
    s.remove_prefix(comma + 1);
  }
  return out;
}

// A key's organisations for `apikey create` and `apikey list`: "all" for an unscoped INGEST key.
std::string join_orgs(const ApiKey& key) {
  if (key.role == Role::kIngest && key.orgs.empty()) return "all";
  const std::vector<std::int64_t>& orgs = key.orgs;
  std::string out;
  for (std::size_t i = 0; i < orgs.size(); ++i) {
    if (i != 0) out.push_back(',');
    out += std::to_string(orgs[i]);
  }
  return out.empty() ? "-" : out;
}

tl::expected<std::unique_ptr<Store>, std::string> open_store(const Flags& f,
                                                             const routing::EventCatalogue& cat) {
  const std::string* data = f.get("data");
  if (data == nullptr || data->empty())
    return tl::unexpected(std::string("--data DIR is required"));
  return Store::open(*data, cat);
}

int cmd_apikey(std::span<char*> args) {
  if (args.empty()) return usage_error("apikey: expected create, list or revoke");
  const std::string_view sub = args[0];
  auto flags = parse_flags(args.subspan(1), {"data", "role", "org", "orgs", "name"}, {"all-orgs"});
  if (!flags) return usage_error("apikey " + std::string(sub) + ": " + flags.error());
  const routing::EventCatalogue catalogue;
  if (sub == "create") {
    const std::string* role_text = flags->get("role");
    if (role_text == nullptr) return usage_error("apikey create: --role is required");
    const auto role = parse_role(*role_text);
    if (!role) {
      return usage_error("apikey create: --role must be ORG_ADMIN, PROVIDER or INGEST (got \"" +
                         *role_text + "\")");
    }
    std::vector<std::int64_t> orgs;
    const std::string* org = flags->get("org");
    const std::string* org_list = flags->get("orgs");
    if (*role == Role::kOrgAdmin) {
      if (org == nullptr || org_list != nullptr) {
        return usage_error("apikey create: an ORG_ADMIN key needs --org ID (one organisation)");
      }
      auto o = parse_org_list(*org, "--org");
      if (!o || o->size() != 1) return usage_error(o ? "--org takes one id" : o.error());
      orgs = *o;
    } else if (*role == Role::kProvider) {
      if (org_list == nullptr || org != nullptr) {
        return usage_error("apikey create: a PROVIDER key needs --orgs ID,ID,...");
      }
      auto o = parse_org_list(*org_list, "--orgs");
      if (!o) return usage_error(o.error());
      orgs = *o;
    } else {
      // INGEST: scoped to organisations, or to every one only when asked for explicitly.
      const bool all = flags->get("all-orgs") != nullptr;
      if (org != nullptr || all == (org_list != nullptr)) {
        return usage_error(
            "apikey create: an INGEST key needs --orgs ID,ID,... (the organisations it may "
            "publish for) or --all-orgs (every organisation)");
      }
      if (org_list != nullptr) {
        auto o = parse_org_list(*org_list, "--orgs");
        if (!o) return usage_error(o.error());
        orgs = *o;
      }
    }
    if (*role != Role::kIngest && flags->get("all-orgs") != nullptr) {
      return usage_error("apikey create: --all-orgs is for INGEST keys");
    }
    if (!flags->positional.empty()) return usage_error("apikey create: unexpected argument");
    auto store = open_store(*flags, catalogue);
    if (!store) return usage_error(store.error());
    const std::string* name = flags->get("name");
    auto created = (*store)->create_api_key(*role, orgs, name != nullptr ? *name : std::string(),
                                            now_unix_us());
    if (!created) {
      std::fprintf(stderr, "fanoutd: apikey create: %s\n", created.error().c_str());
      return 1;
    }
    const ApiKey& k = created->first;
    std::printf("created API key id=%lld role=%s orgs=%s\n", static_cast<long long>(k.id),
                std::string(to_string(k.role)).c_str(), join_orgs(k).c_str());
    std::printf("store it now: it is shown only once\n%s\n", created->second.c_str());
    return 0;
  }
  if (sub == "list") {
    if (!flags->positional.empty()) return usage_error("apikey list: unexpected argument");
    auto store = open_store(*flags, catalogue);
    if (!store) return usage_error(store.error());
    auto keys = (*store)->api_keys();
    if (!keys) {
      std::fprintf(stderr, "fanoutd: apikey list: %s\n", keys.error().c_str());
      return 1;
    }
    std::printf("id role orgs name created_at revoked_at\n");
    for (const ApiKey& k : *keys) {
      std::printf("%lld %s %s %s %s %s\n", static_cast<long long>(k.id),
                  std::string(to_string(k.role)).c_str(), join_orgs(k).c_str(),
                  k.name.empty() ? "-" : k.name.c_str(), format_timestamp(k.created_at_us).c_str(),
                  k.revoked_at_us ? format_timestamp(*k.revoked_at_us).c_str() : "-");
    }
    return 0;
  }
  if (sub == "revoke") {
    if (flags->positional.size() != 1) return usage_error("apikey revoke: expected one key id");
    std::int64_t id = 0;
    const std::string& s = flags->positional[0];
    const auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), id);
    if (ec != std::errc() || p != s.data() + s.size() || id <= 0) {
      return usage_error("apikey revoke: \"" + s + "\" is not a key id");
    }
    auto store = open_store(*flags, catalogue);
    if (!store) return usage_error(store.error());
    auto r = (*store)->revoke_api_key(id, now_unix_us());
    if (!r) {
      std::fprintf(stderr, "fanoutd: apikey revoke: %s\n",
                   r.error().kind == StoreError::Kind::kNotFound
                       ? ("no live key with id " + s).c_str()
                       : r.error().message.c_str());
      return 1;
    }
    std::printf("revoked API key id=%s\n", s.c_str());
    return 0;
  }
  return usage_error("apikey: expected create, list or revoke (got \"" + std::string(sub) + "\")");
}

int cmd_keys(std::span<char*> args) {
  if (args.empty() || std::string_view(args[0]) != "public") {
    return usage_error("keys: expected \"public\"");
  }
  auto flags = parse_flags(args.subspan(1), {"data"});
  if (!flags) return usage_error("keys public: " + flags.error());
  const routing::EventCatalogue catalogue;
  auto store = open_store(*flags, catalogue);
  if (!store) return usage_error(store.error());
  auto pem = (*store)->signing_key_pem();
  if (!pem) {
    std::fprintf(stderr, "fanoutd: keys public: %s\n", pem.error().c_str());
    return 1;
  }
  auto signer = engine::Signer::from_pem(*pem);
  if (!signer) {
    std::fprintf(stderr, "fanoutd: keys public: stored key unreadable: %s\n",
                 signer.error().c_str());
    return 1;
  }
  std::fputs(signer->public_key_pem().c_str(), stdout);
  return 0;
}

// --- serve --------------------------------------------------------------------------------------

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
  transport::ClientOptions co;
  co.insecure = config.engine.insecure;
  co.ca_file = config.engine.ca_file;
  for (const std::string& cidr : config.engine.allow_subnets) {
    if (auto s = transport::Subnet::parse(cidr)) co.allow.push_back(*s);
  }
  co.connect_timeout_ms = config.engine.connect_timeout_ms;
  co.response_timeout_ms = config.engine.response_timeout_ms;
  co.idle_timeout_ms = config.engine.idle_timeout_ms;
  co.dns_servers = config.engine.dns_servers;
  co.dns_timeout_ms = config.engine.dns_timeout_ms;
  co.idle_origin_ms = config.engine.idle_origin_ms;
  co.user_agent = "fanout/" + std::string(version());
  auto client = transport::Client::create(*d.streams, *d.timers, co);
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

int cmd_serve(std::span<char*> args) {
  std::vector<std::string_view> words(args.begin(), args.end());
  for (std::string_view w : words) {
    if (w == "--help" || w == "-h") {
      std::fputs(kUsage, stdout);
      return 0;
    }
  }
  auto config = parse_serve_args(words);
  if (!config) {
    // A bad command line is 2 (with the usage); a bad configuration file means fanoutd cannot
    // start: 1, with the reason.
    const std::string& e = config.error();
    if (e.rfind("--", 0) == 0 || e.rfind("unexpected argument", 0) == 0) {
      return usage_error("serve: " + e);
    }
    std::fprintf(stderr, "fanoutd: configuration: %s\n", e.c_str());
    return 1;
  }
  log::set_level(config->log_level);

  // The store's catalogue is built like the engine's (Partoo's six, then the extensions in
  // order), so event-type ids agree.
  routing::EventCatalogue catalogue;
  for (const std::string& t : config->engine.extra_event_types) {
    if (auto r = catalogue.add(t); !r) {
      std::fprintf(stderr, "fanoutd: event_types: \"%s\": %s\n", t.c_str(),
                   std::string(routing::to_string(r.error())).c_str());
      return 1;
    }
  }
  auto store = Store::open(config->data_dir, catalogue);
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
  config->engine.signing_key_pem = *pem;

  Metrics metrics;
  DaemonObserver daemon_observer(&metrics);
  source::SourceObserver observer(&daemon_observer);  // the Redis source's outcomes first
  CommitBell bell;
  std::unique_ptr<DirLock> journal_lock;  // held until exit: one process per journal
  if (config->durable) {
    const std::filesystem::path journal_dir =
        config->journal_dir.empty() ? config->data_dir : config->journal_dir;
    auto lock = DirLock::acquire(journal_dir);
    if (!lock) {
      std::fprintf(stderr, "fanoutd: %s\n", lock.error().c_str());
      return 1;
    }
    journal_lock = std::move(*lock);
    config->engine.durability.dir = journal_dir.string();
    config->engine.durability.on_commit = [&bell](std::uint64_t first, std::uint64_t last,
                                                  bool ok) { bell.ring(first, last, ok); };
  }
  // The journal is opened (and read) here; nothing is resumed or removed before the server has
  // its port: a start that fails loses nothing.
  auto engine = Engine::create(config->engine, &observer);
  if (!engine) {
    std::fprintf(stderr, "fanoutd: %s\n", engine.error().c_str());
    return 1;
  }
  // Loads the routing table, then (once serving) follows changes other instances make.
  SubscriptionSync sync(**store, **engine);
  auto subs = sync.load_all();
  if (!subs) {
    std::fprintf(stderr, "fanoutd: loading subscriptions: %s\n", subs.error().c_str());
    return 1;
  }
  const std::size_t loaded = *subs;

  std::signal(SIGPIPE, SIG_IGN);
  Daemon d;
  d.drain_ms = config->drain_timeout_ms;
  d.bell = &bell;
  d.engine = engine->get();
  uv_loop_init(&d.loop);
  d.streams = std::make_unique<transport::StreamLoop>(&d.loop);
  d.timers = std::make_unique<transport::LoopTimer>(&d.loop);
  int rc = open_server(*config, d, store->get(), engine->get(), &metrics, &*signer, loaded);
  if (rc == 0) {
    if (auto started = (*engine)->start(); !started) {
      std::fprintf(stderr, "fanoutd: starting the engine: %s\n", started.error().c_str());
      rc = 1;
    } else if (!resume_saved(**store, **engine, metrics)) {
      rc = 1;
    } else if (auto redis = start_redis(*config, **engine, &d.loop, metrics, observer); !redis) {
      std::fprintf(stderr, "fanoutd: %s\n", redis.error().c_str());
      rc = 1;
    } else {
      d.redis = std::move(*redis);
    }
  }
  if (rc != 0) {
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
    (void)(*engine)->stop(std::chrono::milliseconds(0));
    return rc;
  }

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

  const std::string shown = config->listen_host.find(':') != std::string::npos
                                ? "[" + config->listen_host + "]"
                                : config->listen_host;
  std::printf("listening on %s:%u\n", shown.c_str(), static_cast<unsigned>(d.server->port()));
  std::fflush(stdout);
  const EngineStats at_start = (*engine)->stats();
  log::info("fanoutd started", {{"version", std::string(version())},
                                {"listen", shown + ":" + std::to_string(d.server->port())},
                                {"data", config->data_dir.string()},
                                {"workers", std::to_string((*engine)->options().workers)},
                                {"subscriptions", std::to_string(loaded)},
                                {"durable", config->durable ? "true" : "false"},
                                {"recovered", std::to_string(at_start.recovered)},
                                {"insecure", config->engine.insecure ? "true" : "false"}});

  uv_run(&d.loop, UV_RUN_DEFAULT);
  if (d.engine_stopper.joinable()) d.engine_stopper.join();

  // Durable: every delivery without a final outcome is in the journal already (the engine
  // committed the last attempts before it returned). Otherwise they are saved here.
  std::size_t saved = 0;
  if (!config->durable) {
    std::vector<PendingDelivery> pending;
    pending.reserve(d.unfinished.size());
    for (Unfinished& u : d.unfinished) {
      if (u.tag != 0) continue;  // a Redis entry: still pending there, read again at next start
      pending.push_back({std::move(u.event_id), u.org_id, std::move(u.event_type),
                         std::move(u.body), u.subscription_id, u.attempts, u.next_attempt_unix_ms});
    }
    if (auto r = (*store)->save_pending(pending); !r) {
      log::error("saving pending deliveries failed",
                 {{"error", r.error()}, {"lost", std::to_string(pending.size())}});
      rc = 1;
    } else {
      saved = pending.size();
    }
  }
  const EngineStats st = (*engine)->stats();
  log::info("fanoutd stopped",
            {{"pending_saved", std::to_string(saved)},
             {"pending_in_journal", std::to_string(config->durable ? d.unfinished.size() : 0)},
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

// --- publish ------------------------------------------------------------------------------------

// One POST to the daemon, run to completion on a private loop.
class Post final : public transport::Request {
 public:
  void on_response(const transport::Response& r) override {
    done = true;
    failure = r.failure;
    status = r.status;
    detail = std::string(r.detail);
    answer = std::string(r.body);
  }
  bool done = false;
  transport::Failure failure = transport::Failure::kNone;
  int status = 0;
  std::string detail, answer, key_header;
};

int cmd_publish(std::span<char*> args) {
  auto flags = parse_flags(args, {"url", "key", "batch", "max-wait-s"});
  if (!flags) return usage_error("publish: " + flags.error());
  const std::string* url = flags->get("url");
  const std::string* key = flags->get("key");
  const char* env_url = std::getenv("FANOUTD_URL");
  const char* env_key = std::getenv("FANOUTD_KEY");
  const std::string url_s = url != nullptr ? *url : env_url != nullptr ? env_url : "";
  const std::string key_s = key != nullptr ? *key : env_key != nullptr ? env_key : "";
  if (url_s.empty()) return usage_error("publish: --url http://HOST:PORT is required");
  if (key_s.empty()) return usage_error("publish: --key INGEST_KEY is required");
  if (flags->positional.size() > 1) return usage_error("publish: at most one FILE");
  auto parts = routing::validate_url(url_s, {.allow_insecure_http = true});
  if (!parts) return usage_error("publish: --url: " + parts.error().front().message);
  std::size_t batch = 500;
  if (const std::string* b = flags->get("batch")) {
    batch = static_cast<std::size_t>(std::strtoull(b->c_str(), nullptr, 10));
    if (batch == 0 || batch > 10'000) return usage_error("publish: --batch must be 1..10000");
  }
  std::uint64_t max_wait_s = 300;
  if (const std::string* w = flags->get("max-wait-s"))
    max_wait_s = std::strtoull(w->c_str(), nullptr, 10);

  std::string text;
  {
    const bool from_stdin = flags->positional.empty();
    std::FILE* in = from_stdin ? stdin : std::fopen(flags->positional[0].c_str(), "rb");
    if (in == nullptr) {
      std::fprintf(stderr, "fanoutd: publish: cannot read %s: %s\n", flags->positional[0].c_str(),
                   std::strerror(errno));
      return 1;
    }
    char buf[65536];
    std::size_t n = 0;
    while ((n = std::fread(buf, 1, sizeof buf, in)) > 0) text.append(buf, n);
    const bool failed = std::ferror(in) != 0;
    if (!from_stdin) std::fclose(in);
    if (failed) {
      std::fprintf(stderr, "fanoutd: publish: read error on %s\n",
                   from_stdin ? "standard input" : flags->positional[0].c_str());
      return 1;
    }
  }
  // Non-blank lines with their 1-based line numbers in the input.
  const auto lines = json::ndjson_lines(text);

  std::signal(SIGPIPE, SIG_IGN);
  uv_loop_t loop;
  uv_loop_init(&loop);
  transport::StreamLoop streams(&loop);
  transport::LoopTimer timers(&loop);
  transport::ClientOptions co;
  co.insecure = parts->scheme == routing::Scheme::kHttp;
  co.cleartext_h2 = false;  // HTTP/1.1: one request at a time, nothing to multiplex
  // The target is the operator's own daemon, usually on loopback: no address guard.
  co.allow = {*transport::Subnet::parse("0.0.0.0/0"), *transport::Subnet::parse("::/0")};
  co.user_agent = "fanoutd-publish/" + std::string(version());
  co.response_timeout_ms = 60'000;
  auto client = transport::Client::create(streams, timers, co);
  if (!client) {
    std::fprintf(stderr, "fanoutd: publish: %s\n", client.error().c_str());
    return 1;
  }
  std::size_t accepted = 0, dropped = 0, refused = 0, duplicate = 0;
  int rc = 0;
  std::uint64_t waited_s = 0;
  simdjson::dom::parser parser;
  std::size_t next = 0;
  while (next < lines.size() && rc == 0) {
    const std::size_t end = std::min(lines.size(), next + batch);
    std::string body;
    for (std::size_t i = next; i < end; ++i) body.append(lines[i].second).push_back('\n');
    Post post;
    const transport::HeaderView h[] = {{"x-APIKey", key_s, true}};
    post.tls = parts->scheme == routing::Scheme::kHttps;
    post.host = parts->host;
    post.port = parts->port;
    post.target = "/v2/events";
    post.headers = h;
    post.body = body;
    post.content_type = "application/x-ndjson";
    (*client)->submit(post);
    while (!post.done) uv_run(&loop, UV_RUN_ONCE);
    if (post.failure != transport::Failure::kNone) {
      std::fprintf(stderr, "fanoutd: publish: %s: %s\n",
                   std::string(transport::to_string(post.failure)).c_str(), post.detail.c_str());
      rc = 1;
      break;
    }
    if (post.status != 202 && post.status != 503) {
      std::fprintf(stderr, "fanoutd: publish: the daemon answered %d: %s\n", post.status,
                   post.answer.c_str());
      rc = 1;
      break;
    }
    simdjson::padded_string padded(post.answer);
    simdjson::dom::element root;
    simdjson::dom::array items;
    if (parser.parse(padded).get(root) || root["items"].get_array().get(items)) {
      std::fprintf(stderr, "fanoutd: publish: unreadable answer (%zu bytes)\n", post.answer.size());
      rc = 1;
      break;
    }
    std::size_t i = next;
    std::size_t first_busy = end;
    for (simdjson::dom::element item : items) {
      if (i >= end) break;
      auto field = [&item](const char* name) {
        std::string_view v;
        if (item[name].get_string().get(v) != simdjson::SUCCESS) return std::string_view();
        return v;
      };
      const std::string_view status = field("status"), id = field("id"), reason = field("reason");
      if (status == "accepted") {
        ++accepted;
        std::printf("accepted %.*s\n", static_cast<int>(id.size()), id.data());
      } else if (status == "dropped") {
        ++dropped;
        std::printf("dropped %.*s %.*s\n", static_cast<int>(id.size()), id.data(),
                    static_cast<int>(reason.size()), reason.data());
      } else if (status == "duplicate") {
        ++duplicate;
        std::printf("duplicate %.*s\n", static_cast<int>(id.size()), id.data());
      } else if (status == "refused") {
        ++refused;
        std::printf("refused %zu %.*s\n", lines[i].first, static_cast<int>(reason.size()),
                    reason.data());
      } else {
        first_busy = i;
        break;
      }
      ++i;
    }
    next = first_busy;
    if (first_busy < end) {
      if (waited_s >= max_wait_s) {
        std::fprintf(stderr, "fanoutd: publish: still busy after %llu s; %zu events not sent\n",
                     static_cast<unsigned long long>(waited_s), lines.size() - next);
        rc = 1;
        break;
      }
      // Wait as told by Retry-After (the daemon says 1 s by default) on the loop.
      uv_timer_t t;
      uv_timer_init(&loop, &t);
      bool fired = false;
      t.data = &fired;
      uv_timer_start(
          &t, [](uv_timer_t* tt) { *static_cast<bool*>(tt->data) = true; }, 1000, 0);
      while (!fired) uv_run(&loop, UV_RUN_ONCE);
      uv_close(reinterpret_cast<uv_handle_t*>(&t), nullptr);
      uv_run(&loop, UV_RUN_NOWAIT);
      ++waited_s;
    }
  }
  std::printf("published: accepted=%zu dropped=%zu refused=%zu duplicate=%zu\n", accepted, dropped,
              refused, duplicate);
  std::fflush(stdout);
  (*client)->close([](void*) {}, nullptr);
  timers.close();
  streams.close();
  uv_run(&loop, UV_RUN_DEFAULT);
  client->reset();
  (void)uv_loop_close(&loop);
  if (rc == 0 && refused > 0) rc = 1;
  return rc;
}

}  // namespace
}  // namespace fanout::daemon

int main(int argc, char** argv) {
  using namespace fanout::daemon;
  std::span<char*> args(argv, static_cast<std::size_t>(argc));
  if (args.size() < 2) return usage_error("expected a command");
  const std::string_view cmd = args[1];
  auto rest = args.subspan(2);
  if (cmd == "--help" || cmd == "-h" || cmd == "help") {
    std::fputs(kUsage, stdout);
    return 0;
  }
  if (cmd == "--version") {
    std::printf("fanoutd %s\n", std::string(fanout::version()).c_str());
    return 0;
  }
  if (cmd == "serve") return cmd_serve(rest);
  if (cmd == "apikey") return cmd_apikey(rest);
  if (cmd == "keys") return cmd_keys(rest);
  if (cmd == "publish") return cmd_publish(rest);
  return usage_error("unknown command \"" + std::string(cmd) + "\"");
}
