// fanout-load: a load generator built on fanout's engine, the way h2load is built on nghttp2.
// tools/README.md ("fanout-load") documents every option, the output and the exit status.
//
// Two targets:
//   --url URL          the embedded engine: K orgs x T event types, each (org, type) subscribed
//                      to URL (Engine::load); this thread publishes events spread over them
//                      (Producer::publish: parse, route, sign, enqueue) into W workers that POST
//                      them; an Observer counts each event's final outcome and its latency.
//   --ingest URL       a running fanoutd: NDJSON batches to POST /v2/events with an INGEST key
//                      through transport::Client (h2c or HTTP/1.1); counts the per-item statuses
//                      of the answers and re-sends the busy ones.
//
// Engine mode, as fast as possible (default): a window of at most --window events accepted and
// not final (default 2 x W x C x M: every connection stays full and the pending queue never runs
// dry); over it, or when publish() answers busy, the publisher waits on a condition variable the
// Observer signals. --rate R paces publishing by the clock instead (same window bound).
// Bounded always: --events N (default 100000) or --duration S, and --duration-max S (default
// 600) over the whole run, after which it stops the engine and reports (exit 1).
//
// Latency: Outcome::latency_us (publish() to final outcome) in a log-bucketed histogram (16
// buckets per power of two, <= 6.25% relative error), one per worker thread, merged at the end.
// CPU: getrusage for the process and for the publishing thread alone.
//
// Helpers for bench/engine/engine_vs_h2load.sh: --print-body (the delivery body, for h2load),
// --sign-rate-only (Ed25519 signatures/s on this thread, engine Signer and raw BoringSSL),
// --waiting-retries (memory per waiting retry against a receiver answering 503).
//
// Exit status: 0 when every published event got a final outcome and the run was not cut (ingest:
// every event answered accepted or dropped); 1 otherwise; 2 on a usage or setup error.
#include <malloc.h>
#include <openssl/curve25519.h>
#include <openssl/mem.h>
#include <sys/resource.h>
#include <uv.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <bit>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cinttypes>
#include <cmath>
#include <condition_variable>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <functional>
#include <initializer_list>
#include <limits>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "engine/signer.h"
#include "fanout/engine.h"
#include "fanout/version.h"
#include "routing/catalogue.h"
#include "routing/envelope.h"
#include "routing/subscription.h"
#include "tools/common/json_out.h"
#include "transport/address_guard.h"
#include "transport/client/client.h"
#include "transport/loop_timer.h"
#include "transport/stream.h"

namespace {

using Clock = std::chrono::steady_clock;

constexpr const char* kUsage =
    "usage: fanout-load --url URL [--events N | --duration S] [--rate R] [--orgs K] [--types T]\n"
    "                   [--payload-bytes B] [--conns C] [--streams M] [--workers W]\n"
    "                   [--sign-key FILE | --sign] [--retry-base-ms MS] [--max-retries N]\n"
    "                   [--insecure] [--allow-subnet CIDR]... [--http1] [--json] [--quiet]\n"
    "       fanout-load --ingest http://HOST:PORT --key INGEST_KEY [--events N | --duration S]\n"
    "                   [--rate R] [--orgs K] [--types T] [--payload-bytes B] [--batch N]\n"
    "                   [--conns C] [--streams M] [--http1] [--insecure] [--json] [--quiet]\n"
    "  --events N          events to publish (default 100000 when --duration is not given)\n"
    "  --duration S        publish for S seconds instead, then wait for the outcomes\n"
    "  --duration-max S    hard cap on the whole run: stop and report after S s (default 600)\n"
    "  --rate R            publish R events/s (default: as fast as the window allows)\n"
    "  --orgs K            organisations (default 10000)\n"
    "  --types T           event types per organisation, 1..6 (default 1)\n"
    "  --payload-bytes B   payload size in bytes (default 564: a 602 B delivery body)\n"
    "  --conns C           connections per origin (default 1)\n"
    "  --streams M         HTTP/2 streams per connection (default 100; --ingest: 1)\n"
    "  --workers W         engine workers (default 1)\n"
    "  --window N          events accepted and not final, at most (default 2 x W x C x M)\n"
    "  --sign-key FILE     sign with this PKCS#8 PEM Ed25519 key (openssl genpkey)\n"
    "  --sign              sign with a fresh key\n"
    "  --retry-base-ms MS  first retry delay (default 1000; then x3, jitter 20%)\n"
    "  --max-retries N     retries after the first attempt (default 5)\n"
    "  --insecure          skip TLS verification; allows 127.0.0.0/8 and ::1 (implied by\n"
    "                      http:// URLs)\n"
    "  --allow-subnet CIDR address-guard exception (repeatable)\n"
    "  --ca FILE           extra trust anchors (PEM) for https://\n"
    "  --http1             HTTP/1.1 only (no h2c, no h2 in ALPN)\n"
    "  --ingest URL        post to a running fanoutd's /v2/events instead (needs --key)\n"
    "  --key KEY           the INGEST API key (--ingest)\n"
    "  --batch N           events per ingest request, 1..10000 (default 500)\n"
    "  --json              print one JSON object at the end, no progress lines\n"
    "  --quiet             no progress lines on stderr\n"
    "  --print-body        print the delivery body the options give, and exit\n"
    "  --sign-rate-only    Ed25519 signatures/s of that body on this thread, no engine\n"
    "  --waiting-retries   memory per waiting retry (the URL must answer 503)\n";

// --- the command line ---------------------------------------------------------------------------

struct Options {
  std::string url;
  std::string ingest;
  std::string key;
  std::uint64_t events = 100'000;
  double duration_s = 0;  // 0: count mode
  double duration_max_s = 600;
  double rate = 0;
  std::uint32_t orgs = 10'000;
  std::uint32_t types = 1;
  std::size_t payload_bytes = 564;
  std::uint32_t conns = 1;
  std::uint32_t streams = 0;  // 0: the mode's default
  unsigned workers = 1;
  std::uint64_t window = 0;  // 0: 2 x W x C x M
  std::string sign_key_file;
  bool sign = false;
  std::uint64_t retry_base_ms = 1'000;
  std::uint32_t max_retries = 5;
  bool insecure = false;
  std::vector<std::string> allow_subnets;
  std::string ca_file;
  bool http1 = false;
  std::size_t batch = 500;
  bool json = false;
  bool quiet = false;
  bool print_body = false;
  bool sign_rate_only = false;
  bool waiting_retries = false;
};

[[noreturn]] void usage_error(const std::string& message) {
  std::fprintf(stderr, "fanout-load: %s\n(fanout-load --help prints the usage)\n", message.c_str());
  std::exit(2);
}

template <class T>
T integer_arg(std::string_view name, std::string_view text, T min, T max) {
  T v{};
  const auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || p != text.data() + text.size() || v < min || v > max) {
    usage_error(std::string(name) + " wants an integer in " + std::to_string(min) + ".." +
                std::to_string(max) + ", got '" + std::string(text) + "'");
  }
  return v;
}

double seconds_arg(std::string_view name, std::string_view text) {
  double v = 0;
  const auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || p != text.data() + text.size() || !(v > 0) || !std::isfinite(v)) {
    usage_error(std::string(name) + " wants a positive number, got '" + std::string(text) + "'");
  }
  return v;
}

Options parse_args(int argc, char** argv) {
  Options o;
  std::set<std::string> given;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    given.insert(arg);
    auto value = [&]() -> std::string_view {
      if (i + 1 >= argc) usage_error(arg + " needs a value");
      return argv[++i];
    };
    if (arg == "--url") {
      o.url = value();
    } else if (arg == "--ingest") {
      o.ingest = value();
    } else if (arg == "--key") {
      o.key = value();
      if (o.key.empty()) usage_error("--key wants the INGEST key");
    } else if (arg == "--events") {
      o.events = integer_arg<std::uint64_t>(arg, value(), 1, std::uint64_t{1} << 48);
    } else if (arg == "--duration") {
      o.duration_s = seconds_arg(arg, value());
    } else if (arg == "--duration-max") {
      o.duration_max_s = seconds_arg(arg, value());
    } else if (arg == "--rate") {
      o.rate = seconds_arg(arg, value());
    } else if (arg == "--orgs") {
      o.orgs = integer_arg<std::uint32_t>(arg, value(), 1, 10'000'000);
    } else if (arg == "--types") {
      o.types = integer_arg<std::uint32_t>(
          arg, value(), 1, static_cast<std::uint32_t>(fanout::routing::EventCatalogue().size()));
    } else if (arg == "--payload-bytes") {
      o.payload_bytes = integer_arg<std::size_t>(arg, value(), 2, 16 << 20);
    } else if (arg == "--conns") {
      o.conns = integer_arg<std::uint32_t>(arg, value(), 1, 10'000);
    } else if (arg == "--streams") {
      o.streams = integer_arg<std::uint32_t>(arg, value(), 1, 1'000'000);
    } else if (arg == "--workers") {
      o.workers = integer_arg<unsigned>(arg, value(), 1, 256);
    } else if (arg == "--window") {
      o.window = integer_arg<std::uint64_t>(arg, value(), 1, 100'000'000);
    } else if (arg == "--sign-key") {
      o.sign_key_file = value();
    } else if (arg == "--sign") {
      o.sign = true;
    } else if (arg == "--retry-base-ms") {
      o.retry_base_ms = integer_arg<std::uint64_t>(arg, value(), 0, 3'600'000);
    } else if (arg == "--max-retries") {
      o.max_retries = integer_arg<std::uint32_t>(arg, value(), 0, 100);
    } else if (arg == "--insecure") {
      o.insecure = true;
    } else if (arg == "--allow-subnet") {
      const std::string_view cidr = value();
      if (!fanout::transport::Subnet::parse(cidr)) {
        usage_error("--allow-subnet wants a CIDR such as 10.0.0.0/8, got '" + std::string(cidr) +
                    "'");
      }
      o.allow_subnets.emplace_back(cidr);
    } else if (arg == "--ca") {
      o.ca_file = value();
    } else if (arg == "--http1") {
      o.http1 = true;
    } else if (arg == "--batch") {
      o.batch = integer_arg<std::size_t>(arg, value(), 1, 10'000);
    } else if (arg == "--json") {
      o.json = true;
    } else if (arg == "--quiet") {
      o.quiet = true;
    } else if (arg == "--print-body") {
      o.print_body = true;
    } else if (arg == "--sign-rate-only") {
      o.sign_rate_only = true;
    } else if (arg == "--waiting-retries") {
      o.waiting_retries = true;
    } else if (arg == "--help" || arg == "-h") {
      std::fputs(kUsage, stdout);
      std::exit(0);
    } else {
      usage_error("unknown option '" + arg + "'");
    }
  }
  // Options that belong to one mode only.
  auto refuse = [&](std::initializer_list<const char*> names, const char* where) {
    for (const char* n : names) {
      if (given.contains(n)) usage_error(std::string(n) + " cannot be used " + where);
    }
  };
  if (given.contains("--events") && given.contains("--duration")) {
    usage_error("--events and --duration exclude each other");
  }
  if (o.sign && !o.sign_key_file.empty()) usage_error("--sign and --sign-key exclude each other");
  if (o.duration_s >= o.duration_max_s) {
    char limit[32];
    std::snprintf(limit, sizeof limit, "%g", o.duration_max_s);
    usage_error(std::string("--duration must be shorter than --duration-max (") + limit + " s)");
  }
  if (o.print_body || o.sign_rate_only) {
    refuse({"--url", "--ingest", "--key", "--duration", "--waiting-retries"},
           o.print_body ? "with --print-body" : "with --sign-rate-only");
    return o;
  }
  if (!o.ingest.empty()) {
    refuse({"--url", "--workers", "--window", "--sign", "--sign-key", "--retry-base-ms",
            "--max-retries", "--allow-subnet", "--waiting-retries"},
           "with --ingest");
    if (o.key.empty()) usage_error("--ingest needs --key INGEST_KEY");
    if (o.streams == 0) o.streams = 1;
    return o;
  }
  refuse({"--key", "--batch"}, "without --ingest");
  if (o.url.empty()) usage_error("--url URL (or --ingest URL) is required");
  if (o.waiting_retries) refuse({"--duration", "--rate"}, "with --waiting-retries");
  if (o.streams == 0) o.streams = 100;
  if (o.window == 0) {
    o.window = 2 * std::uint64_t{o.workers} * std::uint64_t{o.conns} * std::uint64_t{o.streams};
  }
  return o;
}

// --- events -------------------------------------------------------------------------------------

// The payload of the default size: a business_updated event as Partoo sends it (564 B; the
// delivery body {"type":"business_updated","payload":<this>} is 602 B).
constexpr std::string_view kBusinessPayload =
    R"({"business":{"id":"5f2a4d3c8e1b9a0012c3d4e5",)"
    R"("org_id":1042,"name":"Boulangerie Lef\u00e8vre","status":"open",)"
    R"("address_full":"12 Rue Oberkampf","city":"Paris","zipcode":"75011","country":"FR",)"
    R"("lat":48.86472,"long":2.37112,"categories":["gcid:bakery","gcid:pastry_shop"],)"
    R"("contacts":[{"email":"contact@boulangerie-lefevre.fr","phone_numbers":["+33143570000"]}],)"
    R"("open_hours":{"tuesday":["07:00-13:30","15:30-20:00"],)"
    R"("saturday":["07:30-20:00"]},"website_url":"https://boulangerie-lefevre.fr/",)"
    R"("is_closed":false,)"
    R"("created":1701094244.929678,"modified":1732724044.929678}})";

// A JSON object of exactly `bytes` bytes (>= 2): the business payload when it fits, padded with
// a string field "pad" (or spaces when fewer than 9 bytes are missing); else {"pad":"xxx..."}.
std::string make_payload(std::size_t bytes) {
  std::string base(bytes >= kBusinessPayload.size() ? kBusinessPayload : "{}");
  const std::size_t missing = bytes - base.size();
  base.pop_back();  // the closing brace
  const bool comma = base.size() > 1;
  const std::size_t field = (comma ? 1 : 0) + std::string_view(R"("pad":"")").size();
  if (missing >= field) {
    if (comma) base += ',';
    base += R"("pad":")";
    base.append(missing - field, 'x');
    base += '"';
  } else {
    base.append(missing, ' ');
  }
  base += '}';
  return base;
}

// The event types used, in this order: Partoo's catalogue from business_updated on.
std::vector<std::string> event_types(std::uint32_t count) {
  const fanout::routing::EventCatalogue catalogue;
  std::vector<std::string> types;
  for (std::size_t i = 0; i < count; ++i) {
    types.emplace_back(
        catalogue.name(static_cast<fanout::routing::EventTypeId>((i + 1) % catalogue.size())));
  }
  return types;
}

// Event i is for subscription s = i mod (K x T): organisation s mod K + 1, type s div K. Its
// envelope is {"org_id":N,"type":"T","payload":P}, without an id (the engine makes one).
class EventSource {
 public:
  EventSource(std::uint32_t orgs, std::vector<std::string> types, std::size_t payload_bytes)
      : orgs_(orgs), types_(std::move(types)), payload_(make_payload(payload_bytes)) {
    for (const std::string& t : types_) {
      suffixes_.push_back(R"(,"type":")" + t + R"(","payload":)" + payload_ + "}");
    }
  }
  [[nodiscard]] std::uint32_t orgs() const { return orgs_; }
  [[nodiscard]] const std::vector<std::string>& types() const { return types_; }
  [[nodiscard]] const std::string& payload() const { return payload_; }

  // Appends event i's envelope to `out`.
  void append(std::uint64_t i, std::string* out) const {
    const std::uint64_t s = i % (std::uint64_t{orgs_} * types_.size());
    char digits[24];
    const auto end = std::to_chars(digits, digits + sizeof digits, s % orgs_ + 1).ptr;
    out->append(R"({"org_id":)");
    out->append(digits, end);
    out->append(suffixes_[static_cast<std::size_t>(s / orgs_)]);
  }
  // The largest envelope (for the engine's max_event_bytes).
  [[nodiscard]] std::size_t max_event_bytes() const {
    std::size_t n = 0;
    for (const std::string& s : suffixes_) n = std::max(n, s.size());
    return n + 32;
  }

 private:
  std::uint32_t orgs_;
  std::vector<std::string> types_;
  std::string payload_;
  std::vector<std::string> suffixes_;
};

// --- measurements: latency histogram, CPU time --------------------------------------------------

// Log-linear histogram of microseconds: values below 16 exactly, then 16 buckets per power of
// two (relative width 1/16). Percentiles report a bucket's midpoint (at most the maximum).
class Histogram {
 public:
  static constexpr unsigned kSub = 16;
  void add(std::uint64_t v) {
    ++counts_[index(v)];
    ++n_;
    max_ = std::max(max_, v);
    sum_ += v;
  }
  void merge(const Histogram& other) {
    for (std::size_t i = 0; i < counts_.size(); ++i) counts_[i] += other.counts_[i];
    n_ += other.n_;
    max_ = std::max(max_, other.max_);
    sum_ += other.sum_;
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

struct CpuTime {
  double user_s = 0;
  double sys_s = 0;
  [[nodiscard]] double total() const { return user_s + sys_s; }
  CpuTime operator-(const CpuTime& o) const { return {user_s - o.user_s, sys_s - o.sys_s}; }
};

// RUSAGE_SELF (the process) or RUSAGE_THREAD (the calling thread).
CpuTime cpu_now(int who) {
  rusage ru{};
  getrusage(who, &ru);
  return {static_cast<double>(ru.ru_utime.tv_sec) + static_cast<double>(ru.ru_utime.tv_usec) / 1e6,
          static_cast<double>(ru.ru_stime.tv_sec) + static_cast<double>(ru.ru_stime.tv_usec) / 1e6};
}

double seconds_between(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

double per_second(std::uint64_t n, double seconds) {
  return seconds > 0 ? static_cast<double>(n) / seconds : 0;
}

Clock::duration to_duration(double seconds) {
  return std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
}

// --- output -------------------------------------------------------------------------------------

// One JSON object, written field by field.
class JsonObject {
 public:
  JsonObject& num(std::string_view name, std::uint64_t v) { return raw(name, std::to_string(v)); }
  JsonObject& real(std::string_view name, double v, int decimals) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.*f", decimals, std::isfinite(v) ? v : 0.0);
    return raw(name, buf);
  }
  JsonObject& boolean(std::string_view name, bool v) { return raw(name, v ? "true" : "false"); }
  JsonObject& text(std::string_view name, std::string_view v) {
    std::string s;
    fanout::json::append_string(s, v);
    return raw(name, s);
  }
  JsonObject& latency(std::string_view name, const Histogram& h) {
    JsonObject l;
    l.real("p50", h.percentile(0.50), 0)
        .real("p90", h.percentile(0.90), 0)
        .real("p99", h.percentile(0.99), 0)
        .real("p999", h.percentile(0.999), 0)
        .num("max", h.max())
        .real("mean", h.mean(), 1);
    return raw(name, l.str());
  }
  JsonObject& raw(std::string_view name, std::string_view json) {
    out_ += out_.empty() ? '{' : ',';
    out_ += '"';
    out_ += name;
    out_ += "\":";
    out_ += json;
    return *this;
  }
  [[nodiscard]] std::string str() const { return out_.empty() ? "{}" : out_ + "}"; }

 private:
  std::string out_;
};

std::string latency_line(const Histogram& h) {
  char buf[256];
  std::snprintf(buf, sizeof buf,
                "p50 %.0f us, p90 %.0f us, p99 %.0f us, p99.9 %.0f us, max %" PRIu64
                " us, mean %.1f us (%" PRIu64 " samples)",
                h.percentile(0.50), h.percentile(0.90), h.percentile(0.99), h.percentile(0.999),
                h.max(), h.mean(), h.count());
  return buf;
}

// Ctrl-C (or SIGTERM): stop publishing, report what happened, exit 1. A second one kills.
std::atomic<bool> g_interrupted{false};
static_assert(std::atomic<bool>::is_always_lock_free);

void on_signal(int) {
  g_interrupted.store(true, std::memory_order_relaxed);
}

void install_interrupt_handler() {
  struct sigaction sa {};
  sa.sa_handler = on_signal;
  sa.sa_flags = static_cast<int>(SA_RESETHAND);
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  std::signal(SIGPIPE, SIG_IGN);
}

bool interrupted() {
  return g_interrupted.load(std::memory_order_relaxed);
}

// A line on stderr once a second, from a thread of its own, until stop().
class Progress {
 public:
  // `line(elapsed_s)` builds the line; it runs on the progress thread.
  Progress(bool enabled, std::function<std::string(double)> line) : line_(std::move(line)) {
    if (enabled) thread_ = std::thread([this] { run(); });
  }
  ~Progress() { stop(); }
  Progress(const Progress&) = delete;
  Progress& operator=(const Progress&) = delete;
  void stop() {
    {
      std::lock_guard lock(mu_);
      stopping_ = true;
    }
    cv_.notify_one();
    if (thread_.joinable()) thread_.join();
  }

 private:
  void run() {
    const Clock::time_point t0 = Clock::now();
    std::unique_lock lock(mu_);
    for (int tick = 1;; ++tick) {
      if (cv_.wait_until(lock, t0 + std::chrono::seconds(tick), [&] { return stopping_; })) {
        return;
      }
      const std::string s = line_(seconds_between(t0, Clock::now()));
      std::fprintf(stderr, "fanout-load: %s\n", s.c_str());
    }
  }
  std::function<std::string(double)> line_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;
  std::thread thread_;
};

// Rate over the last interval, for progress lines.
class RateMeter {
 public:
  double update(std::uint64_t total, double elapsed_s) {
    const double dt = elapsed_s - last_s_;
    const double r = dt > 0 ? static_cast<double>(total - last_) / dt : 0;
    last_ = total;
    last_s_ = elapsed_s;
    return r;
  }

 private:
  std::uint64_t last_ = 0;
  double last_s_ = 0;
};

// --- engine mode --------------------------------------------------------------------------------

constexpr std::size_t kKinds = 4;  // OutcomeKind values

// Counts outcomes and keeps a latency histogram per worker thread (merged after the engine has
// stopped); wakes the publisher when the window has room again.
class LoadObserver final : public fanout::Observer {
 public:
  void on_outcomes(std::span<const fanout::Outcome> outcomes) noexcept override {
    Shard& s = shard();
    std::array<std::uint64_t, kKinds> kinds{};
    for (const fanout::Outcome& o : outcomes) {
      s.hist.add(o.latency_us);
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
    Clock::time_point last{};
    std::string first_failure;
  };
  [[nodiscard]] Summary summary() const {
    std::lock_guard lock(shards_mu_);
    Summary sum;
    for (const auto& s : shards_) {
      sum.hist.merge(s->hist);
      sum.last = std::max(sum.last, s->last);
      if (sum.first_failure.empty()) sum.first_failure = s->first_failure;
    }
    return sum;
  }

 private:
  struct Shard {
    Histogram hist;
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

std::optional<std::string> read_file(const std::string& path, std::string* out) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr) return std::string(std::strerror(errno));
  char buf[4096];
  std::size_t n = 0;
  while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) out->append(buf, n);
  const bool failed = std::ferror(f) != 0;
  std::fclose(f);
  if (failed) return std::string("read error");
  return std::nullopt;
}

bool is_http(std::string_view url) {
  return url.starts_with("http://");
}

// The engine for --url: options, signing key and one subscription per (org, type), loaded and
// started. Exits 2 on a setup error.
std::unique_ptr<fanout::Engine> make_engine(const Options& o, const EventSource& src,
                                            fanout::Observer* observer, std::uint64_t budget) {
  fanout::EngineOptions eo;
  eo.workers = o.workers;
  eo.insecure = o.insecure || is_http(o.url);
  eo.allow_subnets = o.allow_subnets;
  if (eo.insecure) {
    eo.allow_subnets.emplace_back("127.0.0.0/8");
    eo.allow_subnets.emplace_back("::1/128");
  }
  eo.ca_file = o.ca_file;
  eo.http1_only = o.http1;
  eo.max_connections_per_origin = o.conns;
  eo.max_streams_per_connection = o.streams;
  eo.max_pending_per_origin =
      std::max<std::size_t>(eo.max_pending_per_origin, static_cast<std::size_t>(budget) + 1);
  eo.max_in_flight = std::max<std::size_t>(eo.max_in_flight, static_cast<std::size_t>(budget) + 1);
  eo.max_event_bytes = std::max(eo.max_event_bytes, src.max_event_bytes());
  eo.retry.base_ms = o.retry_base_ms;
  eo.retry.max_retries = o.max_retries;
  if (o.waiting_retries) {
    // Every delivery fails once (503) and then waits an hour in the timer wheel.
    eo.retry.base_ms = 3'600'000;
    eo.retry.jitter = 0;
  }
  if (o.sign) eo.signing_key_pem = fanout::engine::Signer::generate().private_key_pem();
  if (!o.sign_key_file.empty()) {
    if (auto err = read_file(o.sign_key_file, &eo.signing_key_pem)) {
      usage_error("--sign-key " + o.sign_key_file + ": " + *err);
    }
    if (auto s = fanout::engine::Signer::from_pem(eo.signing_key_pem); !s) {
      usage_error("--sign-key " + o.sign_key_file + ": " + s.error());
    }
  }
  auto created = fanout::Engine::create(std::move(eo), observer);
  if (!created) usage_error(created.error());
  std::unique_ptr<fanout::Engine> engine = std::move(*created);

  // One validated subscription per type, copied for every organisation.
  std::vector<fanout::routing::Subscription> subs;
  subs.reserve(std::size_t{src.orgs()} * src.types().size());
  fanout::routing::ValidationOptions vo;
  vo.allow_insecure_http = engine->options().insecure;
  for (std::size_t t = 0; t < src.types().size(); ++t) {
    fanout::routing::SubscriptionSpec spec;
    spec.org_id = 1;
    spec.event_type = src.types()[t];
    spec.url = o.url;
    auto sub = fanout::routing::validate(spec, engine->catalogue(), vo);
    if (!sub) usage_error("--url: " + sub.error()[0].message);
    for (std::uint32_t k = 1; k <= src.orgs(); ++k) {
      fanout::routing::Subscription s = *sub;
      s.id = static_cast<std::int64_t>(t * src.orgs() + k);
      s.org_id = k;
      subs.push_back(std::move(s));
    }
  }
  engine->load(std::move(subs));
  if (auto started = engine->start(); !started) usage_error(started.error());
  return engine;
}

std::string protocol_name(const Options& o, std::string_view url) {
  if (o.http1) return url.starts_with("https://") ? "http/1.1 over TLS" : "http/1.1";
  return url.starts_with("https://") ? "h2 over TLS (ALPN)" : "h2c";
}

int run_engine(const Options& o) {
  const EventSource src(o.orgs, event_types(o.types), o.payload_bytes);
  LoadObserver observer;
  const std::unique_ptr<fanout::Engine> engine = make_engine(o, src, &observer, o.window);
  fanout::Producer producer = engine->make_producer();
  const bool signed_ = o.sign || !o.sign_key_file.empty();
  const std::size_t body_bytes =
      fanout::routing::build_delivery_body(src.types()[0], src.payload()).size();

  const bool count_mode = o.duration_s == 0;
  const std::uint64_t n = count_mode ? o.events : std::numeric_limits<std::uint64_t>::max();
  const std::uint64_t window = o.window;
  // Hysteresis: over the window, wait until a quarter of it has completed, then refill at once.
  const std::uint64_t low_water = window - std::max<std::uint64_t>(1, window / 4);
  std::atomic<std::uint64_t> published_progress{0};

  install_interrupt_handler();
  const CpuTime cpu0 = cpu_now(RUSAGE_SELF);
  const CpuTime pub0 = cpu_now(RUSAGE_THREAD);
  const Clock::time_point t0 = Clock::now();
  const Clock::time_point hard_deadline = t0 + to_duration(o.duration_max_s);
  const Clock::time_point publish_end =
      count_mode ? Clock::time_point::max() : t0 + to_duration(o.duration_s);
  RateMeter meter;
  Progress progress(!o.json && !o.quiet, [&](double elapsed) {
    const std::uint64_t done = observer.done();
    char buf[320];
    std::snprintf(
        buf, sizeof buf,
        "%.0f s: published %" PRIu64 ", %.0f outcomes/s, in flight %" PRIu64 ", delivered %" PRIu64
        ", rejected %" PRIu64 ", exhausted %" PRIu64 ", dropped %" PRIu64,
        elapsed, published_progress.load(std::memory_order_relaxed), meter.update(done, elapsed),
        observer.in_flight(), observer.kind(fanout::OutcomeKind::kDelivered),
        observer.kind(fanout::OutcomeKind::kRejected),
        observer.kind(fanout::OutcomeKind::kExhausted),
        observer.kind(fanout::OutcomeKind::kDropped));
    return std::string(buf);
  });

  std::uint64_t busy = 0;
  std::uint64_t refused = 0;
  std::string refusal;
  bool cut = false;
  const double ns_per_event = o.rate > 0 ? 1e9 / o.rate : 0;
  const bool check_clock_each_event = !count_mode || ns_per_event > 0;
  std::string event;
  // Publishing waits end at --duration (a normal end) or --duration-max (a cut).
  const Clock::time_point wait_until = std::min(publish_end, hard_deadline);
  bool stop = false;
  auto wait_for = [&](std::uint64_t limit) {
    if (observer.wait_in_flight_at_most(limit, wait_until)) return true;
    cut = interrupted() || Clock::now() >= hard_deadline;
    stop = true;
    return false;
  };
  std::uint64_t i = 0;
  for (; i < n; ++i) {
    if (check_clock_each_event || (i & 63) == 0) {
      Clock::time_point now = Clock::now();
      if (ns_per_event > 0) {
        const Clock::time_point due = t0 + std::chrono::nanoseconds(static_cast<std::int64_t>(
                                               static_cast<double>(i) * ns_per_event));
        while (now < due && now < publish_end && now < hard_deadline && !interrupted()) {
          std::this_thread::sleep_until(
              std::min({due, publish_end, hard_deadline, now + std::chrono::milliseconds(100)}));
          now = Clock::now();
        }
      }
      if (now >= publish_end) break;
      if (now >= hard_deadline || interrupted()) {
        cut = true;
        break;
      }
    }
    if (observer.in_flight() >= window && !wait_for(low_water)) break;
    event.clear();
    src.append(i, &event);
    for (;;) {
      observer.add_accepted();
      const fanout::PublishResult r = producer.publish(event);
      if (r.status == fanout::PublishStatus::kAccepted) break;
      observer.take_back();
      if (r.status == fanout::PublishStatus::kBusy) {
        // Over max_in_flight: wait for an outcome, then publish the same event again.
        ++busy;
        const std::uint64_t now_in = observer.in_flight();
        if (!wait_for(now_in > 0 ? now_in - 1 : 0)) break;
        continue;
      }
      if (refused++ == 0) {
        refusal = std::string(fanout::to_string(r.status)) + " " + std::string(r.reason);
      }
      break;
    }
    if (stop) break;
    published_progress.store(i + 1, std::memory_order_relaxed);
  }
  const Clock::time_point t_published = Clock::now();
  const CpuTime pub_cpu = cpu_now(RUSAGE_THREAD) - pub0;
  if (!cut && observer.in_flight() > 0) {
    cut = !observer.wait_in_flight_at_most(0, hard_deadline);
  }
  const Clock::time_point t_waited = Clock::now();
  const CpuTime cpu = cpu_now(RUSAGE_SELF) - cpu0;
  progress.stop();
  const fanout::EngineStats st = engine->stats();
  const std::size_t unfinished = engine->stop(std::chrono::milliseconds(0)).size();
  const LoadObserver::Summary sum = observer.summary();

  const std::uint64_t published = observer.accepted();
  const std::uint64_t delivered = observer.kind(fanout::OutcomeKind::kDelivered);
  const std::uint64_t final_ = observer.done();
  // From the first publish to the last outcome (to the end of the wait when cut).
  const double elapsed_s = seconds_between(t0, cut || final_ == 0 ? t_waited : sum.last);
  const double publish_s = seconds_between(t0, t_published);
  const double us_per_event = published > 0 ? 1e6 / static_cast<double>(published) : 0;
  const bool ok = !cut && refused == 0 && final_ == published;

  if (o.json) {
    JsonObject j;
    j.text("mode", "engine")
        .text("url", o.url)
        .num("conns", o.conns)
        .num("streams", o.streams)
        .num("workers", o.workers)
        .num("orgs", o.orgs)
        .num("types", o.types)
        .num("payload_bytes", o.payload_bytes)
        .num("body_bytes", body_bytes)
        .real("rate", o.rate, 1)
        .boolean("signed", signed_)
        .boolean("http1", o.http1)
        .num("window", window)
        .num("events", count_mode ? o.events : 0)
        .real("duration_s", o.duration_s, 3)
        .num("retry_base_ms", o.retry_base_ms)
        .num("max_retries", o.max_retries)
        .num("published", published)
        .num("delivered", delivered)
        .num("rejected", observer.kind(fanout::OutcomeKind::kRejected))
        .num("exhausted", observer.kind(fanout::OutcomeKind::kExhausted))
        .num("dropped", observer.kind(fanout::OutcomeKind::kDropped))
        .num("unfinished", unfinished)
        .num("refused", refused)
        .num("busy", busy)
        .num("publisher_waits", observer.waits())
        .num("attempts", st.attempts)
        .num("attempts_2xx", st.attempts_2xx)
        .num("attempts_3xx", st.attempts_3xx)
        .num("attempts_4xx", st.attempts_4xx)
        .num("attempts_5xx", st.attempts_5xx)
        .num("attempts_failed", st.attempts_failed)
        .num("connections_h2", st.connections_h2)
        .num("connections_h1", st.connections_h1)
        .real("deliveries_per_s", per_second(delivered, elapsed_s), 1)
        .real("publish_rate", per_second(published, publish_s), 1)
        .real("elapsed_s", elapsed_s, 6)
        .real("publish_s", publish_s, 6)
        .latency("latency_us", sum.hist)
        .real("cpu_user_s", cpu.user_s, 3)
        .real("cpu_sys_s", cpu.sys_s, 3)
        .real("cpu_us_per_event", cpu.total() * us_per_event, 3)
        .real("publisher_cpu_us_per_event", pub_cpu.total() * us_per_event, 3)
        .boolean("cut", cut)
        .text("first_failure", sum.first_failure)
        .text("first_refusal", refusal);
    std::printf("%s\n", j.str().c_str());
    return ok ? 0 : 1;
  }
  std::printf("fanout-load %s: %u worker(s), %" PRIu32 " conns x %" PRIu32
              " streams, %s, window %" PRIu64 "\n",
              o.url.c_str(), o.workers, o.conns, o.streams, protocol_name(o, o.url).c_str(),
              window);
  std::printf("  %" PRIu32 " orgs x %" PRIu32
              " event types, payload %zu B (body %zu B), %s, "
              "retries %" PRIu32 " from %" PRIu64 " ms\n",
              o.orgs, o.types, o.payload_bytes, body_bytes, signed_ ? "signed" : "unsigned",
              o.max_retries, o.retry_base_ms);
  std::printf("finished in %.3f s, %.0f deliveries/s; published %" PRIu64
              " in %.3f s (%.0f/s%s)%s\n",
              elapsed_s, per_second(delivered, elapsed_s), published, publish_s,
              per_second(published, publish_s), o.rate > 0 ? ", paced" : "",
              cut ? (interrupted() ? " -- INTERRUPTED" : " -- CUT by --duration-max") : "");
  std::printf("outcomes: %" PRIu64 " final, %" PRIu64 " delivered, %" PRIu64 " rejected, %" PRIu64
              " exhausted, %" PRIu64 " dropped; %zu unfinished\n",
              final_, delivered, observer.kind(fanout::OutcomeKind::kRejected),
              observer.kind(fanout::OutcomeKind::kExhausted),
              observer.kind(fanout::OutcomeKind::kDropped), unfinished);
  std::printf("attempts: %" PRIu64 " total, %" PRIu64 " 2xx, %" PRIu64 " 3xx, %" PRIu64
              " 4xx, %" PRIu64 " 5xx, %" PRIu64 " failed; connections h2 %" PRIu64
              ", http/1.1 %" PRIu64 "\n",
              st.attempts, st.attempts_2xx, st.attempts_3xx, st.attempts_4xx, st.attempts_5xx,
              st.attempts_failed, st.connections_h2, st.connections_h1);
  std::printf("latency (publish to final outcome): %s\n", latency_line(sum.hist).c_str());
  std::printf(
      "cpu: user %.3f s, sys %.3f s, %.2f us/event (publishing thread %.2f us/event), "
      "%.0f%% of wall\n",
      cpu.user_s, cpu.sys_s, cpu.total() * us_per_event, pub_cpu.total() * us_per_event,
      elapsed_s > 0 ? cpu.total() * 100 / elapsed_s : 0);
  if (refused > 0 || busy > 0) {
    std::printf("publish: %" PRIu64 " refused (first: %s), %" PRIu64 " busy answers\n", refused,
                refusal.c_str(), busy);
  }
  if (!sum.first_failure.empty()) std::printf("first failure: %s\n", sum.first_failure.c_str());
  return ok ? 0 : 1;
}

// --- --waiting-retries --------------------------------------------------------------------------

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

// Publishes N events whose first attempt fails (503) and then wait an hour for their retry;
// prints the heap and RSS growth per waiting retry.
int run_waiting_retries(const Options& o) {
  const EventSource src(o.orgs, event_types(o.types), o.payload_bytes);
  LoadObserver observer;
  const std::uint64_t n = o.events;
  const std::unique_ptr<fanout::Engine> engine = make_engine(o, src, &observer, n);
  fanout::Producer producer = engine->make_producer();
  const auto deadline = Clock::now() + to_duration(o.duration_max_s);
  const std::size_t heap_before = heap_in_use();
  const std::size_t rss_before = rss_bytes();
  std::string event;
  for (std::uint64_t i = 0; i < n; ++i) {
    event.clear();
    src.append(i, &event);
    observer.add_accepted();
    if (producer.publish(event).status != fanout::PublishStatus::kAccepted) observer.take_back();
  }
  // Every accepted event ends up waiting for its retry (or, if the receiver said 2xx/4xx,
  // final): poll the engine's stats until nothing is attempting any more.
  bool cut = false;
  std::uint64_t waiting = 0;
  for (;;) {
    const fanout::EngineStats st = engine->stats();
    waiting = st.waiting_retry;
    if (waiting + observer.done() >= observer.accepted()) break;
    if (Clock::now() > deadline) {
      cut = true;
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  const std::size_t heap_after = heap_in_use();
  const std::size_t rss_after = rss_bytes();
  const std::size_t handed_back = engine->stop(std::chrono::milliseconds(0)).size();
  const double w = static_cast<double>(waiting);
  const double heap_per =
      waiting > 0 ? (static_cast<double>(heap_after) - static_cast<double>(heap_before)) / w : 0;
  const double rss_per =
      waiting > 0 ? (static_cast<double>(rss_after) - static_cast<double>(rss_before)) / w : 0;
  if (o.json) {
    JsonObject j;
    j.text("mode", "waiting-retries")
        .text("url", o.url)
        .num("events", n)
        .num("published", observer.accepted())
        .num("waiting_retry", waiting)
        .num("final", observer.done())
        .num("heap_bytes_before", heap_before)
        .num("heap_bytes_after", heap_after)
        .real("heap_bytes_per_waiting_retry", heap_per, 1)
        .num("rss_bytes_before", rss_before)
        .num("rss_bytes_after", rss_after)
        .real("rss_bytes_per_waiting_retry", rss_per, 1)
        .num("handed_back", handed_back)
        .boolean("cut", cut);
    std::printf("%s\n", j.str().c_str());
  } else {
    std::printf("fanout-load --waiting-retries %s: %" PRIu64 " events, %" PRIu64
                " waiting for a retry\n",
                o.url.c_str(), n, waiting);
    std::printf("  heap (mallinfo2) %zu -> %zu bytes: %.0f bytes per waiting retry\n", heap_before,
                heap_after, heap_per);
    std::printf("  RSS              %zu -> %zu bytes: %.0f bytes per waiting retry\n", rss_before,
                rss_after, rss_per);
    std::printf("  handed back by stop(): %zu\n", handed_back);
  }
  return (!cut && waiting == n) ? 0 : 1;
}

// --- --sign-rate-only ---------------------------------------------------------------------------

// Consumes one byte of every signature so the compiler cannot drop the signing.
volatile unsigned g_sink = 0;

int run_sign_rate_only(const Options& o) {
  const EventSource src(o.orgs, event_types(o.types), o.payload_bytes);
  const std::string body = fanout::routing::build_delivery_body(src.types()[0], src.payload());
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

  const double signer_rate = per_second(o.events, signer_s);
  const double boring_rate = per_second(o.events, boring_s);
  if (o.json) {
    JsonObject j;
    j.text("mode", "sign-rate-only")
        .num("signatures", o.events)
        .num("body_bytes", body.size())
        .real("signer_per_s", signer_rate, 1)
        .real("boringssl_per_s", boring_rate, 1);
    std::printf("%s\n", j.str().c_str());
  } else {
    std::printf("Ed25519 on one thread, %zu B body, %" PRIu64 " signatures each:\n", body.size(),
                o.events);
    std::printf("  engine Signer::sign_base64 (libsodium + base64) %.0f/s\n", signer_rate);
    std::printf("  raw BoringSSL ED25519_sign                      %.0f/s\n", boring_rate);
  }
  return 0;
}

// --- ingest mode --------------------------------------------------------------------------------

// The value after `"name":` in `json` (the ingest answer starts with its four counts, so this
// works on the 64 KiB excerpt of a long answer too).
std::optional<std::uint64_t> count_in(std::string_view json, std::string_view name) {
  const std::string key = "\"" + std::string(name) + "\":";
  const std::size_t at = json.find(key);
  if (at == std::string_view::npos) return std::nullopt;
  std::uint64_t v = 0;
  const char* begin = json.data() + at + key.size();
  const auto [p, ec] = std::from_chars(begin, json.data() + json.size(), v);
  if (ec != std::errc() || p == begin) return std::nullopt;
  return v;
}

// NDJSON batches to POST /v2/events on one loop (this thread), at most C x M requests at once.
class IngestRun {
 public:
  IngestRun(const Options& o, const fanout::routing::UrlParts& parts)
      : o_(o), parts_(parts), src_(o.orgs, event_types(o.types), o.payload_bytes) {
    target_ = parts.target == "/" ? "/v2/events" : parts.target;
    max_requests_ = std::uint64_t{o.conns} * (o.http1 ? 1 : o.streams);
  }

  int run() {
    namespace transport = fanout::transport;
    uv_loop_init(&loop_);
    transport::StreamLoop streams(&loop_);
    transport::LoopTimer timers(&loop_);
    transport::ClientOptions co;
    co.insecure = o_.insecure || parts_.scheme == fanout::routing::Scheme::kHttp;
    co.cleartext_h2 = !o_.http1;
    co.offer_h2 = !o_.http1;
    co.ca_file = o_.ca_file;
    // The target is the operator's own daemon, often on loopback: no address guard (as
    // `fanoutd publish`).
    co.allow = {*transport::Subnet::parse("0.0.0.0/0"), *transport::Subnet::parse("::/0")};
    co.max_connections_per_origin = o_.conns;
    co.max_streams_per_connection = o_.streams;
    co.response_timeout_ms = 60'000;
    co.user_agent = "fanout-load/" + std::string(fanout::version());
    auto client = transport::Client::create(streams, timers, co);
    if (!client) usage_error("--ingest: " + client.error());
    client_ = client->get();
    uv_timer_init(&loop_, &timer_);
    timer_.data = this;

    install_interrupt_handler();
    const CpuTime cpu0 = cpu_now(RUSAGE_SELF);
    t0_ = Clock::now();
    hard_deadline_ = t0_ + to_duration(o_.duration_max_s);
    publish_end_ = o_.duration_s > 0 ? t0_ + to_duration(o_.duration_s) : Clock::time_point::max();
    RateMeter meter;
    Progress progress(!o_.json && !o_.quiet, [&](double elapsed) {
      const std::uint64_t acc = accepted_.load(std::memory_order_relaxed);
      char buf[320];
      std::snprintf(buf, sizeof buf,
                    "%.0f s: sent %" PRIu64 " events, %.0f accepted/s, accepted %" PRIu64
                    ", dropped %" PRIu64 ", refused %" PRIu64 ", busy %" PRIu64,
                    elapsed, generated_.load(std::memory_order_relaxed), meter.update(acc, elapsed),
                    acc, dropped_.load(std::memory_order_relaxed),
                    refused_.load(std::memory_order_relaxed),
                    busy_.load(std::memory_order_relaxed));
      return std::string(buf);
    });

    pump();
    while (!finished_) uv_run(&loop_, UV_RUN_ONCE);
    const CpuTime cpu = cpu_now(RUSAGE_SELF) - cpu0;
    progress.stop();

    uv_close(reinterpret_cast<uv_handle_t*>(&timer_), nullptr);
    client_->close([](void*) {}, nullptr);
    timers.close();
    streams.close();
    uv_run(&loop_, UV_RUN_DEFAULT);
    client->reset();
    (void)uv_loop_close(&loop_);
    return report(cpu);
  }

 private:
  struct Post final : fanout::transport::Request {
    IngestRun* run = nullptr;
    std::uint64_t first = 0;  // index of its first event
    std::uint64_t count = 0;
    Clock::time_point sent{};
    std::string buffer;
    void on_response(const fanout::transport::Response& r) override { run->on_answer(*this, r); }
  };
  // Events [first, first + count) to (re-)send at `due`.
  struct Range {
    std::uint64_t first = 0;
    std::uint64_t count = 0;
    Clock::time_point due{};
  };

  [[nodiscard]] bool more_new(Clock::time_point now) const {
    if (o_.duration_s > 0) return now < publish_end_;
    return next_new_ < o_.events;
  }

  // Sends what is due, within the request budget; arms the timer for what is not due yet.
  void pump() {
    if (finishing_) return;
    Clock::time_point now = Clock::now();
    if (interrupted() || now >= hard_deadline_) {
      cut_ = in_flight_ > 0 || !resend_.empty() || (!stopping_ && more_new(now));
      finish();
      return;
    }
    // Wake at least every 100 ms to notice an interrupt, and at the hard deadline.
    Clock::time_point wake = std::min(hard_deadline_, now + std::chrono::milliseconds(100));
    while (in_flight_ < max_requests_) {
      now = Clock::now();
      if (!resend_.empty() && resend_.front().due <= now) {
        send(resend_.front());
        resend_.pop_front();
        continue;
      }
      if (!stopping_ && more_new(now)) {
        const Clock::time_point due =
            o_.rate > 0 ? t0_ + to_duration(static_cast<double>(next_new_) / o_.rate) : now;
        if (due <= now) {
          std::uint64_t count = o_.batch;
          if (o_.duration_s == 0) count = std::min(count, o_.events - next_new_);
          send({next_new_, count, now});
          next_new_ += count;
          generated_.store(next_new_, std::memory_order_relaxed);
          continue;
        }
        wake = std::min(wake, due);
      }
      break;
    }
    // With every request slot taken, the next answer calls pump(): no wake-up for due work.
    if (!resend_.empty() && in_flight_ < max_requests_) {
      wake = std::min(wake, resend_.front().due);
    }
    if (in_flight_ == 0 && resend_.empty() && (stopping_ || !more_new(now))) {
      finish();
      return;
    }
    // At least 1 ms: a 0 ms timer restarted from its own callback runs again before the loop
    // ever polls for I/O.
    const auto ms = std::chrono::ceil<std::chrono::milliseconds>(std::max(wake, now) - now);
    uv_timer_start(
        &timer_, [](uv_timer_t* t) { static_cast<IngestRun*>(t->data)->pump(); },
        std::max<std::uint64_t>(1, static_cast<std::uint64_t>(ms.count())), 0);
  }

  void send(const Range& r) {
    std::unique_ptr<Post> p;
    if (free_.empty()) {
      p = std::make_unique<Post>();
    } else {
      p = std::move(free_.back());
      free_.pop_back();
    }
    p->run = this;
    p->first = r.first;
    p->count = r.count;
    p->buffer.clear();
    for (std::uint64_t k = 0; k < r.count; ++k) {
      src_.append(r.first + k, &p->buffer);
      p->buffer += '\n';
    }
    header_[0] = {"x-APIKey", o_.key, true};
    p->tls = parts_.scheme == fanout::routing::Scheme::kHttps;
    p->host = parts_.host;
    p->port = parts_.port;
    p->target = target_;
    p->headers = header_;
    p->body = p->buffer;
    p->content_type = "application/x-ndjson";
    p->sent = Clock::now();
    ++in_flight_;
    ++requests_;
    Post& ref = *p;
    posts_.push_back(std::move(p));
    client_->submit(ref);
  }

  void on_answer(Post& p, const fanout::transport::Response& r) {
    --in_flight_;
    const Clock::time_point now = Clock::now();
    if (r.failure == fanout::transport::Failure::kNone) {
      last_answer_ = now;
      hist_.add(static_cast<std::uint64_t>(
          std::chrono::duration_cast<std::chrono::microseconds>(now - p.sent).count()));
    }
    const std::uint64_t first = p.first;
    const std::uint64_t count = p.count;
    // Recycle the request (the client no longer uses it).
    for (auto it = posts_.begin(); it != posts_.end(); ++it) {
      if (it->get() == &p) {
        free_.push_back(std::move(*it));
        posts_.erase(it);
        break;
      }
    }
    if (r.failure != fanout::transport::Failure::kNone) {
      unanswered_ += count;
      if (!finishing_) {
        ++requests_failed_;
        fail(std::string(fanout::transport::to_string(r.failure)) +
             (r.detail.empty() ? "" : ": " + std::string(r.detail)));
      }
    } else if (r.status != 202 && r.status != 503) {
      unanswered_ += count;
      ++requests_failed_;
      fail("the daemon answered " + std::to_string(r.status) + ": " +
           std::string(r.body.substr(0, 300)));
    } else {
      const auto a = count_in(r.body, "accepted"), d = count_in(r.body, "dropped"),
                 f = count_in(r.body, "refused"), b = count_in(r.body, "busy");
      if (!a || !d || !f || !b || *a + *d + *f + *b != count) {
        unanswered_ += count;
        ++requests_failed_;
        fail("unreadable answer to " + std::to_string(count) + " events (status " +
             std::to_string(r.status) + "): " + std::string(r.body.substr(0, 300)));
      } else {
        accepted_.fetch_add(*a, std::memory_order_relaxed);
        dropped_.fetch_add(*d, std::memory_order_relaxed);
        refused_.fetch_add(*f, std::memory_order_relaxed);
        busy_.fetch_add(*b, std::memory_order_relaxed);
        if (*b > 0) {
          // The first busy event stops the batch: the busy ones are its last B lines. The
          // daemon's Retry-After is 1 s by default (transport::Response carries no headers).
          const Range again{first + count - *b, *b, now + std::chrono::seconds(1)};
          if (stopping_ || again.due >= publish_end_) {
            busy_unsent_ += *b;
          } else {
            resend_.push_back(again);
          }
        }
      }
    }
    pump();
  }

  void fail(std::string why) {
    if (error_.empty()) error_ = std::move(why);
    stopping_ = true;
    for (const Range& r : resend_) unanswered_ += r.count;
    resend_.clear();
  }

  // Stops: in-flight requests are cancelled (their events count as unanswered), the loop ends.
  void finish() {
    if (finishing_) return;
    finishing_ = true;
    uv_timer_stop(&timer_);
    for (const Range& r : resend_) busy_unsent_ += r.count;
    resend_.clear();
    finished_ = true;
  }

  int report(const CpuTime& cpu) {
    // Requests still in flight after finish() were cancelled by close(): counted there.
    const std::uint64_t acc = accepted_.load(), drop = dropped_.load(), ref = refused_.load();
    const std::uint64_t answered = acc + drop + ref;
    const double elapsed_s = seconds_between(t0_, std::max(t0_, last_answer_));
    const bool ok = !cut_ && error_.empty() && busy_unsent_ == 0 && unanswered_ == 0 && ref == 0 &&
                    answered == next_new_;
    if (o_.json) {
      JsonObject j;
      j.text("mode", "ingest")
          .text("ingest", o_.ingest)
          .num("batch", o_.batch)
          .num("conns", o_.conns)
          .num("streams", o_.streams)
          .boolean("http1", o_.http1)
          .num("orgs", o_.orgs)
          .num("types", o_.types)
          .num("payload_bytes", o_.payload_bytes)
          .real("rate", o_.rate, 1)
          .num("events", o_.duration_s > 0 ? 0 : o_.events)
          .real("duration_s", o_.duration_s, 3)
          .num("generated", next_new_)
          .num("published", acc)
          .num("accepted", acc)
          .num("dropped", drop)
          .num("refused", ref)
          .num("busy", busy_.load())
          .num("busy_unsent", busy_unsent_)
          .num("unanswered", unanswered_)
          .num("requests", requests_)
          .num("requests_failed", requests_failed_)
          .real("elapsed_s", elapsed_s, 6)
          .real("events_per_s", per_second(answered, elapsed_s), 1)
          .real("accepted_per_s", per_second(acc, elapsed_s), 1)
          .latency("request_latency_us", hist_)
          .real("cpu_user_s", cpu.user_s, 3)
          .real("cpu_sys_s", cpu.sys_s, 3)
          .boolean("cut", cut_)
          .text("error", error_);
      std::printf("%s\n", j.str().c_str());
      return ok ? 0 : 1;
    }
    std::printf("fanout-load --ingest %s: batches of %zu, %" PRIu64 " request(s) at once, %s\n",
                o_.ingest.c_str(), o_.batch, max_requests_, protocol_name(o_, o_.ingest).c_str());
    std::printf("  %" PRIu32 " orgs x %" PRIu32 " event types, payload %zu B\n", o_.orgs, o_.types,
                o_.payload_bytes);
    std::printf("finished in %.3f s, %.0f events/s ingested (%.0f accepted/s)%s\n", elapsed_s,
                per_second(answered, elapsed_s), per_second(acc, elapsed_s),
                cut_ ? (interrupted() ? " -- INTERRUPTED" : " -- CUT by --duration-max") : "");
    std::printf("events: %" PRIu64 " sent, %" PRIu64 " accepted, %" PRIu64 " dropped, %" PRIu64
                " refused; %" PRIu64 " busy answers re-sent or given up (%" PRIu64
                " given up), %" PRIu64 " unanswered\n",
                next_new_, acc, drop, ref, busy_.load(), busy_unsent_, unanswered_);
    std::printf("requests: %" PRIu64 " (%" PRIu64 " failed); latency %s\n", requests_,
                requests_failed_, latency_line(hist_).c_str());
    std::printf("cpu: user %.3f s, sys %.3f s\n", cpu.user_s, cpu.sys_s);
    std::printf("outcomes are the daemon's: see its /metrics (fanout_outcomes_total)\n");
    if (!error_.empty()) std::printf("error: %s\n", error_.c_str());
    return ok ? 0 : 1;
  }

  const Options& o_;
  fanout::routing::UrlParts parts_;
  EventSource src_;
  std::string target_;
  std::uint64_t max_requests_ = 1;
  uv_loop_t loop_{};
  uv_timer_t timer_{};
  fanout::transport::Client* client_ = nullptr;
  fanout::transport::HeaderView header_[1];
  std::vector<std::unique_ptr<Post>> posts_;  // in flight
  std::vector<std::unique_ptr<Post>> free_;
  std::deque<Range> resend_;
  Clock::time_point t0_{}, hard_deadline_{}, publish_end_{}, last_answer_{};
  std::uint64_t next_new_ = 0;
  std::uint64_t in_flight_ = 0;
  std::uint64_t requests_ = 0, requests_failed_ = 0;
  std::uint64_t busy_unsent_ = 0, unanswered_ = 0;
  std::atomic<std::uint64_t> generated_{0};
  std::atomic<std::uint64_t> accepted_{0}, dropped_{0}, refused_{0}, busy_{0};
  Histogram hist_;
  std::string error_;
  bool stopping_ = false;   // no new batches (after an error)
  bool finishing_ = false;  // no more sends at all
  bool finished_ = false;
  bool cut_ = false;
};

int run_ingest(const Options& o) {
  auto parts = fanout::routing::validate_url(o.ingest, {.allow_insecure_http = true});
  if (!parts) usage_error("--ingest: " + parts.error().front().message);
  IngestRun run(o, *parts);
  return run.run();
}

}  // namespace

int main(int argc, char** argv) {
  const Options o = parse_args(argc, argv);
  if (o.print_body) {
    const EventSource src(o.orgs, event_types(o.types), o.payload_bytes);
    const std::string body = fanout::routing::build_delivery_body(src.types()[0], src.payload());
    std::fwrite(body.data(), 1, body.size(), stdout);
    return 0;
  }
  if (o.sign_rate_only) return run_sign_rate_only(o);
  if (!o.ingest.empty()) return run_ingest(o);
  if (o.waiting_retries) return run_waiting_retries(o);
  return run_engine(o);
}
