// fanout-engine-bench: an end-to-end driver for the embeddable engine (not a Google Benchmark).
//
// One publishing thread (this program's main thread) pushes N events through Engine's public API
// (Producer::publish: parse, route, build the body, sign, enqueue) into W workers (default 1)
// that POST them to one URL; an Observer counts the outcomes. Every event is for one of --orgs
// organisations (default 10,000), each subscribed (Engine::load) to business_updated at the same
// URL, so the delivery body is always the same ~600 B of JSON (--print-body prints it: the body
// h2load is given in bench/engine/engine_vs_h2load.sh).
//
// Modes:
//   saturation (default)  keeps a window of --window events accepted but not final (default
//                         2 x conns x streams: the client's connections are always full and its
//                         queue never runs dry); over the window, or when publish() answers busy,
//                         the publisher waits on a condition variable the Observer signals.
//                         Prints deliveries/s from the first publish to the last outcome.
//   --rate R              publishes at R events/s (paced by the clock, same window bound):
//                         latency below saturation.
//   --sign-rate-only      signs N delivery bodies with the engine's Signer (libsodium) and with
//                         raw BoringSSL ED25519_sign on this thread; prints signatures/s.
//   --waiting-retries     memory per waiting retry: every attempt must fail retryably (point it
//                         at `fanout-sink --status-mix 503:1`); the backoff is one hour, so after
//                         N events every delivery sits in the timer wheel. Prints the heap growth
//                         (mallinfo2) and RSS growth per waiting retry.
//
// Latency: Outcome::latency_us (publish() to final outcome) in a log-bucketed histogram (16
// buckets per power of two, <= 6.25% relative error); p50/p90/p99/p99.9/max.
// CPU: getrusage for the process and for the publishing thread alone, per event.
//
// Run (bench/engine/engine_vs_h2load.sh does it against nghttpd, beside h2load):
//   build/eb/bench/fanout-engine-bench --url http://127.0.0.1:8080/hook --events 200000
//       --conns 1 --streams 100 [--sign] [--rate 50000] [--json]
//
// Exit status: 0 when every event was accepted and delivered (--waiting-retries: all waiting),
// 1 otherwise or when --duration-max cut the run, 2 on a usage or setup error.
#include <malloc.h>
#include <openssl/curve25519.h>
#include <openssl/mem.h>
#include <sys/resource.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <bit>
#include <charconv>
#include <chrono>
#include <cinttypes>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "engine/signer.h"
#include "fanout/engine.h"
#include "routing/envelope.h"
#include "routing/subscription.h"

namespace {

using Clock = std::chrono::steady_clock;

constexpr const char* kUsage =
    "usage: fanout-engine-bench --url http[s]://HOST:PORT/PATH [options]\n"
    "  --events N          events to publish (default 100000)\n"
    "  --workers W         engine workers (default 1)\n"
    "  --conns C           max_connections_per_origin (default 1)\n"
    "  --streams M         max_streams_per_connection (default 100)\n"
    "  --window W          events accepted and not final, at most (default 2 x C x M)\n"
    "  --orgs K            organisations, each subscribed to the URL (default 10000)\n"
    "  --rate R            publish at R events/s instead of as fast as possible\n"
    "  --sign              sign every event (a fresh Ed25519 key)\n"
    "  --max-in-flight B   EngineOptions::max_in_flight (default 1000000): publish answers\n"
    "                      busy above it, and the publisher waits for outcomes\n"
    "  --ca FILE           extra trust anchors (PEM) for https://\n"
    "  --duration-max S    give up waiting for outcomes after S seconds (default 300)\n"
    "  --json              print one JSON object instead of text\n"
    "  --print-body        print the delivery body (what the receiver gets) and exit\n"
    "  --sign-rate-only    sign N bodies on this thread (Signer and raw BoringSSL), no engine\n"
    "  --waiting-retries   memory per waiting retry (the URL must answer 503)\n";

// The payload of a business_updated event; the delivery body is {"type":..,"payload":<this>},
// byte for byte the body fanout-client-bench sends (~600 B).
constexpr std::string_view kPayload =
    R"({"business":{"id":"5f2a4d3c8e1b9a0012c3d4e5",)"
    R"("org_id":1042,"name":"Boulangerie Lef\u00e8vre","status":"open",)"
    R"("address_full":"12 Rue Oberkampf","city":"Paris","zipcode":"75011","country":"FR",)"
    R"("lat":48.86472,"long":2.37112,"categories":["gcid:bakery","gcid:pastry_shop"],)"
    R"("contacts":[{"email":"contact@boulangerie-lefevre.fr","phone_numbers":["+33143570000"]}],)"
    R"("open_hours":{"tuesday":["07:00-13:30","15:30-20:00"],)"
    R"("saturday":["07:30-20:00"]},"website_url":"https://boulangerie-lefevre.fr/",)"
    R"("is_closed":false,)"
    R"("created":1701094244.929678,"modified":1732724044.929678}})";
constexpr std::string_view kEventType = "business_updated";

struct Options {
  std::string url;
  std::uint64_t events = 100'000;
  unsigned workers = 1;
  std::uint32_t conns = 1;
  std::uint32_t streams = 100;
  std::uint64_t window = 0;
  std::uint32_t orgs = 10'000;
  double rate = 0;
  bool sign = false;
  std::size_t max_in_flight = 1'000'000;
  std::string ca_file;
  double duration_max_s = 300;
  bool json = false;
  bool sign_rate_only = false;
  bool waiting_retries = false;
};

template <class T>
bool parse_number(std::string_view s, T* out) {
  const auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), *out);
  return ec == std::errc() && p == s.data() + s.size();
}

bool parse_double(std::string_view s, double* out) {
  const std::string v(s);
  char* end = nullptr;
  *out = std::strtod(v.c_str(), &end);
  return end != v.c_str() && *end == '\0' && *out > 0;
}

[[noreturn]] void usage_error(const std::string& message) {
  std::fprintf(stderr, "fanout-engine-bench: %s\n%s", message.c_str(), kUsage);
  std::exit(2);
}

Options parse_args(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    auto value = [&]() -> std::string_view {
      if (i + 1 >= argc) usage_error(std::string(arg) + " needs a value");
      return argv[++i];
    };
    auto positive = [&](auto* out) {
      if (!parse_number(value(), out) || *out == 0)
        usage_error(std::string(arg) + " wants a positive integer");
    };
    if (arg == "--url") {
      o.url = value();
    } else if (arg == "--events" || arg == "--requests") {
      positive(&o.events);
    } else if (arg == "--workers") {
      positive(&o.workers);
    } else if (arg == "--conns") {
      positive(&o.conns);
    } else if (arg == "--streams") {
      positive(&o.streams);
    } else if (arg == "--window") {
      positive(&o.window);
    } else if (arg == "--orgs") {
      positive(&o.orgs);
    } else if (arg == "--rate") {
      if (!parse_double(value(), &o.rate)) usage_error("--rate wants a positive number");
    } else if (arg == "--sign") {
      o.sign = true;
    } else if (arg == "--max-in-flight") {
      positive(&o.max_in_flight);
    } else if (arg == "--ca") {
      o.ca_file = value();
    } else if (arg == "--duration-max") {
      if (!parse_double(value(), &o.duration_max_s))
        usage_error("--duration-max wants a positive number of seconds");
    } else if (arg == "--json") {
      o.json = true;
    } else if (arg == "--print-body") {
      const std::string body = fanout::routing::build_delivery_body(kEventType, kPayload);
      std::fwrite(body.data(), 1, body.size(), stdout);
      std::exit(0);
    } else if (arg == "--sign-rate-only") {
      o.sign_rate_only = true;
    } else if (arg == "--waiting-retries") {
      o.waiting_retries = true;
    } else if (arg == "--help" || arg == "-h") {
      std::fputs(kUsage, stdout);
      std::exit(0);
    } else {
      usage_error("unknown option " + std::string(arg));
    }
  }
  if (o.url.empty() && !o.sign_rate_only) usage_error("--url is required");
  if (o.window == 0) o.window = 2 * std::uint64_t{o.conns} * o.streams;
  return o;
}

struct CpuTime {
  double user_s = 0;
  double sys_s = 0;
  [[nodiscard]] double total() const { return user_s + sys_s; }
};

CpuTime cpu_now(int who) {
  rusage ru{};
  getrusage(who, &ru);
  return {static_cast<double>(ru.ru_utime.tv_sec) + static_cast<double>(ru.ru_utime.tv_usec) / 1e6,
          static_cast<double>(ru.ru_stime.tv_sec) + static_cast<double>(ru.ru_stime.tv_usec) / 1e6};
}

double seconds_between(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

// Log-linear histogram of microseconds: values below 16 exactly, then 16 buckets per power of
// two (relative width 1/16). Percentiles report a bucket's midpoint.
class Histogram {
 public:
  static constexpr unsigned kSub = 16;
  void add(std::uint64_t v) {
    ++counts_[index(v)];
    ++n_;
    max_ = std::max(max_, v);
    sum_ += v;
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

// Counts outcomes and wakes the publisher when the window has room again (or all are in).
class BenchObserver final : public fanout::Observer {
 public:
  void on_outcomes(std::span<const fanout::Outcome> outcomes) noexcept override {
    const Clock::time_point now = Clock::now();
    std::lock_guard lock(mu_);
    for (const fanout::Outcome& o : outcomes) {
      hist_.add(o.latency_us);
      ++kinds_[static_cast<std::size_t>(o.kind)];
      if (o.kind != fanout::OutcomeKind::kDelivered && first_failure_.empty()) {
        first_failure_ = std::string(fanout::to_string(o.kind)) + ", status " +
                         std::to_string(o.last_status) +
                         (o.last_failure.empty() ? "" : ", " + std::string(o.last_failure));
      }
    }
    const std::uint64_t done = done_.load(std::memory_order_relaxed) + outcomes.size();
    done_.store(done, std::memory_order_release);
    last_ = now;
    if (wake_at_in_flight_ != kNobody &&
        accepted_.load(std::memory_order_acquire) - done <= wake_at_in_flight_) {
      cv_.notify_one();
    }
  }

  // Publisher side. accepted() is written by the publisher only.
  void add_accepted() { accepted_.fetch_add(1, std::memory_order_release); }
  [[nodiscard]] std::uint64_t accepted() const { return accepted_.load(std::memory_order_acquire); }
  [[nodiscard]] std::uint64_t done() const { return done_.load(std::memory_order_acquire); }
  [[nodiscard]] std::uint64_t in_flight() const { return accepted() - done(); }

  // Waits until at most `limit` events are accepted and not final, or until `deadline`.
  // Returns false on the deadline.
  bool wait_in_flight_at_most(std::uint64_t limit, Clock::time_point deadline) {
    std::unique_lock lock(mu_);
    wake_at_in_flight_ = limit;
    const bool ok = cv_.wait_until(lock, deadline, [&] { return in_flight() <= limit; });
    wake_at_in_flight_ = kNobody;
    ++waits_;
    return ok;
  }

  struct Summary {
    Histogram hist;
    std::array<std::uint64_t, 4> kinds{};
    Clock::time_point last;
    std::string first_failure;
    std::uint64_t waits = 0;
  };
  Summary summary() {
    std::lock_guard lock(mu_);
    return {hist_, kinds_, last_, first_failure_, waits_};
  }

 private:
  static constexpr std::uint64_t kNobody = ~std::uint64_t{0};
  std::mutex mu_;
  std::condition_variable cv_;
  std::atomic<std::uint64_t> accepted_{0};
  std::atomic<std::uint64_t> done_{0};
  std::uint64_t wake_at_in_flight_ = kNobody;  // guarded by mu_
  Histogram hist_;
  std::array<std::uint64_t, 4> kinds_{};
  Clock::time_point last_{};
  std::string first_failure_;
  std::uint64_t waits_ = 0;
};

// --- --sign-rate-only --------------------------------------------------------------------------

// Consumes one byte of every signature so the compiler cannot drop the signing.
volatile unsigned g_sink = 0;

int sign_rate_only(const Options& o) {
  const std::string body = fanout::routing::build_delivery_body(kEventType, kPayload);
  const fanout::engine::Signer signer = fanout::engine::Signer::generate();
  char header[fanout::engine::Signer::kSignatureBase64Size];
  // Warm-up, then N signatures with the engine's Signer (what publish() runs when signing).
  for (int i = 0; i < 100; ++i) signer.sign_base64(body, header);
  Clock::time_point t0 = Clock::now();
  for (std::uint64_t i = 0; i < o.events; ++i) {
    signer.sign_base64(body, header);
    g_sink = g_sink + static_cast<unsigned char>(header[i % sizeof header]);
  }
  const double signer_s = seconds_between(t0, Clock::now());

  // Raw BoringSSL on the same key and body: the baseline issue 4 names.
  std::uint8_t public_key[ED25519_PUBLIC_KEY_LEN];
  std::uint8_t private_key[ED25519_PRIVATE_KEY_LEN];
  ED25519_keypair_from_seed(public_key, private_key, signer.seed().data());
  std::uint8_t signature[ED25519_SIGNATURE_LEN];
  const auto* message = reinterpret_cast<const std::uint8_t*>(body.data());
  for (int i = 0; i < 100; ++i) ED25519_sign(signature, message, body.size(), private_key);
  t0 = Clock::now();
  for (std::uint64_t i = 0; i < o.events; ++i) {
    ED25519_sign(signature, message, body.size(), private_key);
    g_sink = g_sink + signature[i % sizeof signature];
  }
  const double boring_s = seconds_between(t0, Clock::now());
  OPENSSL_cleanse(private_key, sizeof private_key);

  const double n = static_cast<double>(o.events);
  const double signer_rate = signer_s > 0 ? n / signer_s : 0;
  const double boring_rate = boring_s > 0 ? n / boring_s : 0;
  if (o.json) {
    std::printf("{\"mode\":\"sign-rate-only\",\"signatures\":%" PRIu64
                ",\"body_bytes\":%zu,\"signer_per_s\":%.1f,\"boringssl_per_s\":%.1f}\n",
                o.events, body.size(), signer_rate, boring_rate);
  } else {
    std::printf("Ed25519 on one thread, %zu B body, %" PRIu64 " signatures each:\n", body.size(),
                o.events);
    std::printf("  engine Signer::sign_base64 (libsodium + base64) %.0f/s\n", signer_rate);
    std::printf("  raw BoringSSL ED25519_sign                      %.0f/s\n", boring_rate);
  }
  return 0;
}

// --- the engine -------------------------------------------------------------------------------

std::vector<std::string> make_events(std::uint32_t orgs) {
  std::vector<std::string> events;
  events.reserve(orgs);
  for (std::uint32_t k = 1; k <= orgs; ++k) {
    std::string e = R"({"org_id":)";
    e += std::to_string(k);
    e += R"(,"type":")";
    e += kEventType;
    e += R"(","payload":)";
    e += kPayload;
    e += '}';
    events.push_back(std::move(e));
  }
  return events;
}

std::size_t heap_in_use() {
  const struct mallinfo2 mi = mallinfo2();
  return mi.uordblks + mi.hblkhd;
}

std::size_t rss_bytes() {
  std::FILE* f = std::fopen("/proc/self/statm", "r");
  if (f == nullptr) return 0;
  unsigned long long pages = 0, resident = 0;
  const int n = std::fscanf(f, "%llu %llu", &pages, &resident);
  std::fclose(f);
  return n == 2 ? static_cast<std::size_t>(resident) * 4096 : 0;
}

int run_engine(const Options& o) {
  fanout::EngineOptions eo;
  eo.workers = o.workers;
  eo.insecure = o.url.starts_with("http://");
  eo.allow_subnets = {"127.0.0.1/32", "::1/128"};
  eo.ca_file = o.ca_file;
  eo.max_connections_per_origin = o.conns;
  eo.max_streams_per_connection = o.streams;
  eo.max_pending_per_origin =
      std::max<std::size_t>(eo.max_pending_per_origin, static_cast<std::size_t>(o.window) + 1);
  eo.max_in_flight = o.max_in_flight;
  if (o.waiting_retries) {
    // Every delivery fails once (503) and then waits an hour in the timer wheel.
    eo.retry.base_ms = 3'600'000;
    eo.retry.jitter = 0;
    eo.max_in_flight = std::max<std::size_t>(eo.max_in_flight, o.events + 1);
    eo.max_pending_per_origin = std::max<std::size_t>(eo.max_pending_per_origin, o.events + 1);
  }
  if (o.sign) eo.signing_key_pem = fanout::engine::Signer::generate().private_key_pem();

  BenchObserver observer;
  auto created = fanout::Engine::create(std::move(eo), &observer);
  if (!created) {
    std::fprintf(stderr, "fanout-engine-bench: %s\n", created.error().c_str());
    return 2;
  }
  fanout::Engine& engine = **created;

  // One subscription per organisation, all to the same URL (validated once, then copied).
  fanout::routing::SubscriptionSpec spec;
  spec.org_id = 1;
  spec.event_type = std::string(kEventType);
  spec.url = o.url;
  fanout::routing::ValidationOptions vo;
  vo.allow_insecure_http = engine.options().insecure;
  auto sub = fanout::routing::validate(spec, engine.catalogue(), vo);
  if (!sub) {
    std::fprintf(stderr, "fanout-engine-bench: bad --url: %s\n", sub.error()[0].message.c_str());
    return 2;
  }
  std::vector<fanout::routing::Subscription> subs;
  subs.reserve(o.orgs);
  for (std::uint32_t k = 1; k <= o.orgs; ++k) {
    fanout::routing::Subscription s = *sub;
    s.id = k;
    s.org_id = k;
    subs.push_back(std::move(s));
  }
  engine.load(std::move(subs));
  const std::vector<std::string> events = make_events(o.orgs);

  if (auto started = engine.start(); !started) {
    std::fprintf(stderr, "fanout-engine-bench: %s\n", started.error().c_str());
    return 2;
  }
  fanout::Producer producer = engine.make_producer();

  const std::uint64_t n = o.events;
  const std::uint64_t window = o.waiting_retries ? n : o.window;
  // Hysteresis: over the window, wait until a quarter of it has completed, then refill at once.
  const std::uint64_t low_water = window - std::max<std::uint64_t>(1, window / 4);
  const auto deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                           std::chrono::duration<double>(o.duration_max_s));
  const std::size_t heap_before = heap_in_use();
  const std::size_t rss_before = rss_bytes();
  std::uint64_t busy = 0;
  std::uint64_t refused = 0;
  std::string refusal;
  bool cut = false;

  const CpuTime cpu0 = cpu_now(RUSAGE_SELF);
  const CpuTime pub0 = cpu_now(RUSAGE_THREAD);
  const Clock::time_point t0 = Clock::now();
  const double ns_per_event = o.rate > 0 ? 1e9 / o.rate : 0;
  for (std::uint64_t i = 0; i < n && !cut; ++i) {
    if (ns_per_event > 0) {
      const auto due = t0 + std::chrono::nanoseconds(
                                static_cast<std::int64_t>(static_cast<double>(i) * ns_per_event));
      if (Clock::now() < due) std::this_thread::sleep_until(due);
    }
    if (!o.waiting_retries && observer.in_flight() >= window &&
        !observer.wait_in_flight_at_most(low_water, deadline)) {
      cut = true;
      break;
    }
    for (;;) {
      const fanout::PublishResult r = producer.publish(events[i % events.size()]);
      if (r.status == fanout::PublishStatus::kAccepted) {
        observer.add_accepted();
        break;
      }
      if (r.status == fanout::PublishStatus::kBusy) {
        // Over max_in_flight: wait for some outcomes, then publish the same event again.
        ++busy;
        const std::uint64_t now_in = observer.in_flight();
        if (!observer.wait_in_flight_at_most(now_in > 0 ? now_in - 1 : 0, deadline)) {
          cut = true;
          break;
        }
        continue;
      }
      if (refused++ == 0) {
        refusal = std::string(fanout::to_string(r.status)) + " " + std::string(r.reason);
      }
      break;
    }
  }
  const Clock::time_point t_published = Clock::now();
  const CpuTime pub1 = cpu_now(RUSAGE_THREAD);

  std::size_t heap_after = 0;
  std::size_t rss_after = 0;
  std::uint64_t waiting = 0;
  if (o.waiting_retries) {
    // Every accepted event ends up waiting for its retry (or, if the receiver said 2xx/4xx,
    // final): poll the engine's stats until nothing is attempting any more.
    for (;;) {
      const fanout::EngineStats st = engine.stats();
      waiting = st.waiting_retry;
      const std::uint64_t final_ = st.delivered + st.rejected + st.exhausted + st.dropped;
      if (waiting + final_ >= observer.accepted()) break;
      if (Clock::now() > deadline) {
        cut = true;
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    heap_after = heap_in_use();
    rss_after = rss_bytes();
  } else if (!cut && observer.in_flight() > 0) {
    cut = !observer.wait_in_flight_at_most(0, deadline);
  }
  const CpuTime cpu1 = cpu_now(RUSAGE_SELF);
  const fanout::EngineStats st = engine.stats();
  const auto unfinished = engine.stop(std::chrono::milliseconds(0));
  const BenchObserver::Summary sum = observer.summary();

  const std::uint64_t accepted = observer.accepted();
  const std::uint64_t delivered =
      sum.kinds[static_cast<std::size_t>(fanout::OutcomeKind::kDelivered)];
  const Clock::time_point t_end = o.waiting_retries ? t_published : std::max(sum.last, t0);
  const double wall_s = seconds_between(t0, t_end);
  const double publish_s = seconds_between(t0, t_published);
  const double rate = wall_s > 0 ? static_cast<double>(delivered) / wall_s : 0;
  const double cpu_s = cpu1.total() - cpu0.total();
  const double pub_cpu_s = pub1.total() - pub0.total();
  const double per_event = accepted > 0 ? 1e6 / static_cast<double>(accepted) : 0;
  const Histogram& h = sum.hist;

  if (o.waiting_retries) {
    const double heap_per =
        waiting > 0 ? static_cast<double>(heap_after - heap_before) / static_cast<double>(waiting)
                    : 0;
    const double rss_per =
        waiting > 0 ? (static_cast<double>(rss_after) - static_cast<double>(rss_before)) /
                          static_cast<double>(waiting)
                    : 0;
    if (o.json) {
      std::printf("{\"mode\":\"waiting-retries\",\"events\":%" PRIu64 ",\"accepted\":%" PRIu64
                  ",\"waiting_retry\":%" PRIu64 ",\"final\":%" PRIu64
                  ",\"heap_bytes_before\":%zu,\"heap_bytes_after\":%zu"
                  ",\"heap_bytes_per_waiting_retry\":%.1f,\"rss_bytes_before\":%zu"
                  ",\"rss_bytes_after\":%zu,\"rss_bytes_per_waiting_retry\":%.1f"
                  ",\"handed_back\":%zu,\"cut_by_duration\":%s}\n",
                  n, accepted, waiting, accepted - waiting, heap_before, heap_after, heap_per,
                  rss_before, rss_after, rss_per, unfinished.size(), cut ? "true" : "false");
    } else {
      std::printf("fanout-engine-bench --waiting-retries %s: %" PRIu64 " events, %" PRIu64
                  " waiting for a retry\n",
                  o.url.c_str(), n, waiting);
      std::printf("  heap (mallinfo2) %zu -> %zu bytes: %.0f bytes per waiting retry\n",
                  heap_before, heap_after, heap_per);
      std::printf("  RSS              %zu -> %zu bytes: %.0f bytes per waiting retry\n", rss_before,
                  rss_after, rss_per);
      std::printf("  handed back by stop(): %zu\n", unfinished.size());
    }
    return (!cut && waiting == n) ? 0 : 1;
  }

  const bool ok = !cut && refused == 0 && accepted == n && delivered == n;
  if (o.json) {
    std::printf(
        "{\"url\":\"%s\",\"workers\":%u,\"conns\":%" PRIu32 ",\"streams\":%" PRIu32
        ",\"window\":%" PRIu64 ",\"orgs\":%" PRIu32
        ",\"signed\":%s,\"rate_target\":%.1f"
        ",\"events\":%" PRIu64 ",\"accepted\":%" PRIu64 ",\"delivered\":%" PRIu64
        ",\"rejected\":%" PRIu64 ",\"exhausted\":%" PRIu64 ",\"dropped\":%" PRIu64
        ",\"refused\":%" PRIu64 ",\"busy\":%" PRIu64 ",\"publisher_waits\":%" PRIu64
        ",\"cut_by_duration\":%s,\"wall_s\":%.6f,\"publish_s\":%.6f,\"deliveries_per_s\":%.1f"
        ",\"publish_rate\":%.1f,\"latency_us\":{\"p50\":%.0f,\"p90\":%.0f,\"p99\":%.0f"
        ",\"p999\":%.0f,\"max\":%" PRIu64
        ",\"mean\":%.1f},\"cpu_user_s\":%.3f,\"cpu_sys_s\":%.3f"
        ",\"cpu_us_per_event\":%.3f,\"publisher_cpu_us_per_event\":%.3f"
        ",\"attempts\":%" PRIu64 ",\"connections_h2\":%" PRIu64 ",\"connections_h1\":%" PRIu64
        ",\"first_failure\":\"%s\",\"first_refusal\":\"%s\"}\n",
        o.url.c_str(), o.workers, o.conns, o.streams, window, o.orgs, o.sign ? "true" : "false",
        o.rate, n, accepted, delivered,
        sum.kinds[static_cast<std::size_t>(fanout::OutcomeKind::kRejected)],
        sum.kinds[static_cast<std::size_t>(fanout::OutcomeKind::kExhausted)],
        sum.kinds[static_cast<std::size_t>(fanout::OutcomeKind::kDropped)], refused, busy,
        sum.waits, cut ? "true" : "false", wall_s, publish_s, rate,
        publish_s > 0 ? static_cast<double>(accepted) / publish_s : 0, h.percentile(0.50),
        h.percentile(0.90), h.percentile(0.99), h.percentile(0.999), h.max(), h.mean(),
        cpu1.user_s - cpu0.user_s, cpu1.sys_s - cpu0.sys_s, cpu_s * per_event,
        pub_cpu_s * per_event, st.attempts, st.connections_h2, st.connections_h1,
        sum.first_failure.c_str(), refusal.c_str());
  } else {
    std::printf("fanout-engine-bench %s: %u worker(s), %" PRIu32 " conns x %" PRIu32
                " streams, window %" PRIu64 ", %" PRIu32 " orgs%s\n",
                o.url.c_str(), o.workers, o.conns, o.streams, window, o.orgs,
                o.sign ? ", signed" : "");
    std::printf("  delivered    %" PRIu64 " of %" PRIu64 " in %.3f s%s\n", delivered, n, wall_s,
                cut ? " (cut by --duration-max)" : "");
    std::printf("  rate         %.0f deliveries/s (publishing %.0f events/s%s)\n", rate,
                publish_s > 0 ? static_cast<double>(accepted) / publish_s : 0,
                o.rate > 0 ? ", paced" : "");
    std::printf("  latency      p50 %.0f us  p90 %.0f us  p99 %.0f us  p99.9 %.0f us  max %" PRIu64
                " us (publish to outcome)\n",
                h.percentile(0.50), h.percentile(0.90), h.percentile(0.99), h.percentile(0.999),
                h.max());
    std::printf("  cpu          %.2f us/event (publisher thread %.2f us/event), %.0f%% of wall\n",
                cpu_s * per_event, pub_cpu_s * per_event, wall_s > 0 ? cpu_s * 100 / wall_s : 0);
    std::printf("  refused %" PRIu64 ", busy answers %" PRIu64 ", publisher waits %" PRIu64
                ", attempts %" PRIu64 ", h2 connections %" PRIu64 "\n",
                refused, busy, sum.waits, st.attempts, st.connections_h2);
    if (!sum.first_failure.empty()) std::printf("  first failure: %s\n", sum.first_failure.c_str());
    if (!refusal.empty()) std::printf("  first refusal: %s\n", refusal.c_str());
  }
  return ok ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  const Options o = parse_args(argc, argv);
  if (o.sign_rate_only) return sign_rate_only(o);
  return run_engine(o);
}
