// fanout-client-bench: an end-to-end load driver for transport::Client (not a Google Benchmark).
//
// One thread, one uv loop, one Client POSTing one prepared body to one URL, keeping exactly
// C × M requests in flight (C connections, a window of M streams on each): every completion
// resubmits its Request object from on_response(), so the driver allocates nothing per request.
// The pool is told max_connections_per_origin = C and max_streams_per_connection = M, so it
// forms exactly C connections, the same shape as `h2load -c C -m M` (or `wrk -c C` for
// HTTP/1.1, M = 1). Bounded: stops after N completions or after --duration-max seconds.
//
// Run (bench/transport/client_vs_h2load.sh does this against nghttpd, nginx, h2load and wrk):
//   build/release/bench/fanout-client-bench --url http://127.0.0.1:8080/hook
//       --requests 200000 --conns 1 --streams 100
//
// Prints requests/s over the wall time from the first submit to the last completion, the
// status counts, failures by kind, connections opened and the process CPU time (getrusage), as
// text or (--json) one JSON object. Exit status: 0 when every request got a 2xx, 1 when any
// failed, was not 2xx, or the duration bound cut the run short; 2 on a usage or setup error.
#include <sys/resource.h>
#include <uv.h>

#include <algorithm>
#include <array>
#include <charconv>
#include <cinttypes>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "tools/common/cli.h"
#include "transport/address_guard.h"
#include "transport/client/client.h"
#include "transport/loop_timer.h"
#include "transport/stream.h"
#include "transport/timer_wheel.h"

namespace {

using fanout::transport::Client;
using fanout::transport::ClientOptions;
using fanout::transport::Failure;
using fanout::transport::LoopTimer;
using fanout::transport::Protocol;
using fanout::transport::Request;
using fanout::transport::Response;
using fanout::transport::StreamLoop;
using fanout::transport::Subnet;
using fanout::transport::TimerEntry;

constexpr const char* kUsage =
    "usage: fanout-client-bench --url http[s]://HOST:PORT/PATH [options]\n"
    "  --requests N        requests to complete (default 100000)\n"
    "  --conns C           connections (default 1)\n"
    "  --streams M         requests in flight per connection (default 100); C x M in total\n"
    "  --body FILE         request body (default: a built-in ~600 B Partoo event, JSON)\n"
    "  --h1                HTTP/1.1: http:// without h2c, https:// without h2 in ALPN\n"
    "  --ca FILE           extra trust anchors (PEM) for https://\n"
    "  --insecure          skip TLS verification (http:// implies it)\n"
    "  --duration-max S    stop after S seconds even if N is not reached (default 120)\n"
    "  --json              print one JSON object instead of text\n"
    "  --print-body        print the built-in body and exit\n";

// What fanout delivers for a business_updated event: {"type":..,"payload":..}, ~600 bytes.
constexpr std::string_view kDefaultBody =
    R"({"type":"business_updated","payload":{"business":{"id":"5f2a4d3c8e1b9a0012c3d4e5",)"
    R"("org_id":1042,"name":"Boulangerie Lef\u00e8vre","status":"open",)"
    R"("address_full":"12 Rue Oberkampf","city":"Paris","zipcode":"75011","country":"FR",)"
    R"("lat":48.86472,"long":2.37112,"categories":["gcid:bakery","gcid:pastry_shop"],)"
    R"("contacts":[{"email":"contact@boulangerie-lefevre.fr","phone_numbers":["+33143570000"]}],)"
    R"("open_hours":{"tuesday":["07:00-13:30","15:30-20:00"],)"
    R"("saturday":["07:30-20:00"]},"website_url":"https://boulangerie-lefevre.fr/",)"
    R"("is_closed":false,)"
    R"("created":1701094244.929678,"modified":1732724044.929678}}})";

constexpr std::size_t kFailureKinds = static_cast<std::size_t>(Failure::kSchemeRefused) + 1;

struct Options {
  bool tls = false;
  std::string host;
  std::uint16_t port = 0;
  std::string target = "/";
  std::uint64_t requests = 100'000;
  std::uint32_t conns = 1;
  std::uint32_t streams = 100;
  std::string body_file;
  bool h1 = false;
  std::string ca_file;
  bool insecure = false;
  double duration_max_s = 120;
  bool json = false;
};

// The whole of `s` as a number (tools/common/cli.h).
template <class T>
bool parse_number(std::string_view s, T* out) {
  return fanout::cli::parse_number(s, *out);
}

// http[s]://HOST[:PORT][/PATH]; HOST may be [IPv6].
bool parse_url(std::string_view url, Options* o, std::string* error) {
  std::string_view rest;
  if (url.starts_with("http://")) {
    o->tls = false;
    rest = url.substr(7);
  } else if (url.starts_with("https://")) {
    o->tls = true;
    rest = url.substr(8);
  } else {
    *error = "the URL must start with http:// or https://";
    return false;
  }
  const std::size_t slash = rest.find('/');
  std::string_view authority = rest.substr(0, slash);
  o->target = slash == std::string_view::npos ? "/" : std::string(rest.substr(slash));
  std::string_view port;
  if (authority.starts_with('[')) {
    const std::size_t close = authority.find(']');
    if (close == std::string_view::npos) {
      *error = "unterminated [IPv6] host";
      return false;
    }
    o->host = std::string(authority.substr(1, close - 1));
    const std::string_view after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after[0] != ':') {
        *error = "junk after ]";
        return false;
      }
      port = after.substr(1);
    }
  } else {
    const std::size_t colon = authority.rfind(':');
    o->host = std::string(authority.substr(0, colon));
    if (colon != std::string_view::npos) port = authority.substr(colon + 1);
  }
  if (o->host.empty()) {
    *error = "no host in the URL";
    return false;
  }
  o->port = o->tls ? 443 : 80;
  if (!port.empty() && (!parse_number(port, &o->port) || o->port == 0)) {
    *error = "bad port: " + std::string(port);
    return false;
  }
  return true;
}

[[noreturn]] void usage_error(const std::string& message) {
  std::fprintf(stderr, "fanout-client-bench: %s\n%s", message.c_str(), kUsage);
  std::exit(2);
}

Options parse_args(int argc, char** argv) {
  Options o;
  bool have_url = false;
  fanout::cli::Args args(argc, argv);
  while (args.next()) {
    const std::string_view arg = args.name();
    auto value = [&]() -> std::string_view {
      const std::optional<std::string_view> v = args.value();
      if (!v) usage_error(std::string(arg) + " needs a value");
      return *v;
    };
    if (arg == "--url") {
      std::string error;
      if (!parse_url(value(), &o, &error)) usage_error(error);
      have_url = true;
    } else if (arg == "--requests") {
      if (!parse_number(value(), &o.requests) || o.requests == 0)
        usage_error("--requests wants a positive integer");
    } else if (arg == "--conns") {
      if (!parse_number(value(), &o.conns) || o.conns == 0)
        usage_error("--conns wants a positive integer");
    } else if (arg == "--streams") {
      if (!parse_number(value(), &o.streams) || o.streams == 0)
        usage_error("--streams wants a positive integer");
    } else if (arg == "--body") {
      o.body_file = value();
    } else if (arg == "--h1") {
      o.h1 = true;
    } else if (arg == "--ca") {
      o.ca_file = value();
    } else if (arg == "--insecure") {
      o.insecure = true;
    } else if (arg == "--duration-max") {
      const std::string v(value());
      char* end = nullptr;
      o.duration_max_s = std::strtod(v.c_str(), &end);
      if (end == v.c_str() || *end != '\0' || !(o.duration_max_s > 0))
        usage_error("--duration-max wants a positive number of seconds");
    } else if (arg == "--json") {
      o.json = true;
    } else if (arg == "--print-body") {
      std::fwrite(kDefaultBody.data(), 1, kDefaultBody.size(), stdout);
      std::exit(0);
    } else if (arg == "--help" || arg == "-h") {
      std::fputs(kUsage, stdout);
      std::exit(0);
    } else {
      usage_error("unknown option " + std::string(arg));
    }
  }
  if (!have_url) usage_error("--url is required");
  return o;
}

bool read_file(const std::string& path, std::string* out) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr) return false;
  out->clear();
  char buf[4096];
  std::size_t n = 0;
  while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) out->append(buf, n);
  const bool ok = std::ferror(f) == 0;
  std::fclose(f);
  return ok;
}

struct CpuTime {
  double user_s = 0;
  double sys_s = 0;
};

CpuTime cpu_now() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return {static_cast<double>(ru.ru_utime.tv_sec) + static_cast<double>(ru.ru_utime.tv_usec) / 1e6,
          static_cast<double>(ru.ru_stime.tv_sec) + static_cast<double>(ru.ru_stime.tv_usec) / 1e6};
}

class Driver;

// One slot of the in-flight window; resubmitted from its own on_response.
class BenchRequest final : public Request {
 public:
  Driver* driver = nullptr;
  void on_response(const Response& response) override;
  ~BenchRequest() override = default;
};

class Driver {
 public:
  Driver(const Options& o, std::string body, uv_loop_t* loop)
      : o_(o), body_(std::move(body)), loop_(loop) {
    deadline_.bind<&Driver::on_deadline>(this);
  }

  bool start(StreamLoop& streams, LoopTimer& timers, std::string* error) {
    timers_ = &timers;
    ClientOptions co;
    co.insecure = o_.insecure || !o_.tls;
    co.cleartext_h2 = !o_.h1;
    co.offer_h2 = !o_.h1;
    co.ca_file = o_.ca_file;
    if (auto v4 = Subnet::parse("127.0.0.1/32")) co.allow.push_back(*v4);
    if (auto v6 = Subnet::parse("::1/128")) co.allow.push_back(*v6);
    co.max_connections_per_origin = o_.conns;
    co.max_streams_per_connection = o_.streams;
    const std::uint64_t window = std::uint64_t{o_.conns} * o_.streams;
    co.max_pending_per_origin = static_cast<std::size_t>(window) + 1;
    auto c = Client::create(streams, timers, std::move(co));
    if (!c) {
      *error = c.error();
      return false;
    }
    client_ = std::move(*c);

    const std::uint64_t slots = std::min<std::uint64_t>(window, o_.requests);
    slots_.reserve(static_cast<std::size_t>(slots));
    for (std::uint64_t i = 0; i < slots; ++i) {
      auto r = std::make_unique<BenchRequest>();
      r->driver = this;
      r->tls = o_.tls;
      r->host = o_.host;
      r->port = o_.port;
      r->target = o_.target;
      r->body = body_;
      r->content_type = "application/json";
      slots_.push_back(std::move(r));
    }
    timers.schedule_after(deadline_, static_cast<std::uint64_t>(o_.duration_max_s * 1000.0 + 0.5));
    cpu_start_ = cpu_now();
    start_ns_ = uv_hrtime();
    for (auto& r : slots_) {
      ++submitted_;
      ++in_flight_;
      client_->submit(*r);
    }
    return true;
  }

  void on_response(BenchRequest& r, const Response& resp) {
    --in_flight_;
    if (stopping_) return;  // cancelled by close() after --duration-max: not counted
    if (resp.failure == Failure::kNone) {
      const int s = resp.status;
      ++status_[static_cast<std::size_t>(s >= 0 && s < 600 ? s : 0)];
      if (s >= 200 && s < 300) ++ok_;
      if (resp.protocol == Protocol::kHttp2) {
        ++h2_;
      } else {
        ++h1_;
      }
    } else {
      ++failures_[static_cast<std::size_t>(resp.failure)];
    }
    latency_us_sum_ += resp.total_us;
    ++completed_;
    if (submitted_ < o_.requests) {
      ++submitted_;
      ++in_flight_;
      client_->submit(r);
      return;
    }
    if (in_flight_ == 0) finish();
  }

  // After uv_run returned: if the loop ran out of work without the run finishing (it should
  // not), stop the clock there.
  void ensure_finished() {
    if (!stopping_) {
      cut_ = true;
      finish();
    }
  }

  // Closes the client and the loop's own handles; uv_run returns once everything is closed.
  void close(StreamLoop& streams, LoopTimer& timers) {
    timers.cancel(deadline_);
    if (client_) {
      client_->close([](void* d) { *static_cast<bool*>(d) = true; }, &client_closed_);
      while (!client_closed_) uv_run(loop_, UV_RUN_ONCE);
      client_.reset();
    }
    streams.close();
    timers.close();
    uv_run(loop_, UV_RUN_DEFAULT);
  }

  int report() const {
    const double wall_s = static_cast<double>(end_ns_ - start_ns_) / 1e9;
    const double rps = wall_s > 0 ? static_cast<double>(completed_) / wall_s : 0;
    const double cpu_user = cpu_end_.user_s - cpu_start_.user_s;
    const double cpu_sys = cpu_end_.sys_s - cpu_start_.sys_s;
    std::uint64_t failed = 0;
    for (std::size_t k = 1; k < kFailureKinds; ++k) failed += failures_[k];
    const std::uint64_t not_ok = completed_ - ok_;
    const double mean_latency_us =
        completed_ > 0 ? static_cast<double>(latency_us_sum_) / static_cast<double>(completed_) : 0;
    const char* proto = o_.h1 ? "http/1.1" : "h2";
    // Appended piecewise: GCC 12 at -O3 warns (-Wrestrict, a false positive) on "[" + s.
    std::string url = o_.tls ? "https://" : "http://";
    const bool v6 = o_.host.find(':') != std::string::npos;
    if (v6) url += '[';
    url += o_.host;
    if (v6) url += ']';
    url += ':';
    url += std::to_string(o_.port);
    url += o_.target;
    if (o_.json) {
      std::printf("{\"url\":\"%s\",\"protocol\":\"%s\",\"conns\":%" PRIu32 ",\"streams\":%" PRIu32
                  ",\"body_bytes\":%zu,\"requested\":%" PRIu64 ",\"completed\":%" PRIu64
                  ",\"ok\":%" PRIu64 ",\"failed\":%" PRIu64
                  ",\"cut_by_duration\":%s"
                  ",\"wall_s\":%.6f,\"requests_per_s\":%.1f,\"mean_latency_us\":%.1f"
                  ",\"cpu_user_s\":%.3f,\"cpu_sys_s\":%.3f,\"cpu_us_per_request\":%.3f"
                  ",\"connections_opened\":%" PRIu64 ",\"responses_h2\":%" PRIu64
                  ",\"responses_h1\":%" PRIu64 ",\"by_status\":{",
                  url.c_str(), proto, o_.conns, o_.streams, body_.size(), o_.requests, completed_,
                  ok_, failed, cut_ ? "true" : "false", wall_s, rps, mean_latency_us, cpu_user,
                  cpu_sys,
                  completed_ > 0 ? (cpu_user + cpu_sys) * 1e6 / static_cast<double>(completed_) : 0,
                  connections_opened_, h2_, h1_);
      bool first = true;
      for (std::size_t s = 0; s < status_.size(); ++s) {
        if (status_[s] == 0) continue;
        std::printf("%s\"%zu\":%" PRIu64, first ? "" : ",", s, status_[s]);
        first = false;
      }
      std::printf("},\"failures\":{");
      first = true;
      for (std::size_t k = 1; k < kFailureKinds; ++k) {
        if (failures_[k] == 0) continue;
        const std::string_view name = to_string(static_cast<Failure>(k));
        std::printf("%s\"%.*s\":%" PRIu64, first ? "" : ",", static_cast<int>(name.size()),
                    name.data(), failures_[k]);
        first = false;
      }
      std::printf("}}\n");
    } else {
      std::printf("fanout-client-bench %s (%s), %" PRIu32 " connections x %" PRIu32
                  " streams, body %zu B\n",
                  url.c_str(), proto, o_.conns, o_.streams, body_.size());
      std::printf("  completed    %" PRIu64 " of %" PRIu64 " in %.3f s%s\n", completed_,
                  o_.requests, wall_s, cut_ ? " (stopped by --duration-max)" : "");
      std::printf("  rate         %.0f requests/s\n", rps);
      std::printf("  mean latency %.0f us (submit to completion)\n", mean_latency_us);
      std::printf("  statuses    ");
      for (std::size_t s = 0; s < status_.size(); ++s) {
        if (status_[s] != 0) std::printf(" %zu: %" PRIu64, s, status_[s]);
      }
      std::printf("\n  failures     %" PRIu64 "\n", failed);
      for (std::size_t k = 1; k < kFailureKinds; ++k) {
        if (failures_[k] == 0) continue;
        const std::string_view name = to_string(static_cast<Failure>(k));
        std::printf("    %.*s: %" PRIu64 "\n", static_cast<int>(name.size()), name.data(),
                    failures_[k]);
      }
      std::printf("  connections  %" PRIu64 " opened\n", connections_opened_);
      std::printf("  cpu          user %.3f s, sys %.3f s, %.2f us/request, %.0f%% of wall\n",
                  cpu_user, cpu_sys,
                  completed_ > 0 ? (cpu_user + cpu_sys) * 1e6 / static_cast<double>(completed_) : 0,
                  wall_s > 0 ? (cpu_user + cpu_sys) * 100 / wall_s : 0);
    }
    return (cut_ || failed != 0 || not_ok != 0 || completed_ == 0) ? 1 : 0;
  }

 private:
  void finish() {
    end_ns_ = uv_hrtime();
    cpu_end_ = cpu_now();
    connections_opened_ = client_->stats().connections_opened;
    stopping_ = true;
    timers_->cancel(deadline_);
    uv_stop(loop_);
  }

  void on_deadline() noexcept {
    if (stopping_) return;
    cut_ = true;
    // Requests still in flight are cancelled by close() afterwards; they are not counted.
    finish();
  }

  const Options& o_;
  const std::string body_;
  uv_loop_t* loop_;
  LoopTimer* timers_ = nullptr;
  std::unique_ptr<Client> client_;
  bool client_closed_ = false;
  std::vector<std::unique_ptr<BenchRequest>> slots_;
  TimerEntry deadline_;
  bool stopping_ = false;
  bool cut_ = false;
  std::uint64_t submitted_ = 0;
  std::uint64_t in_flight_ = 0;
  std::uint64_t completed_ = 0;
  std::uint64_t ok_ = 0;
  std::uint64_t h1_ = 0;
  std::uint64_t h2_ = 0;
  std::uint64_t latency_us_sum_ = 0;
  std::uint64_t connections_opened_ = 0;
  std::array<std::uint64_t, 600> status_{};
  std::array<std::uint64_t, kFailureKinds> failures_{};
  std::uint64_t start_ns_ = 0;
  std::uint64_t end_ns_ = 0;
  CpuTime cpu_start_;
  CpuTime cpu_end_;
};

void BenchRequest::on_response(const Response& response) {
  driver->on_response(*this, response);
}

}  // namespace

int main(int argc, char** argv) {
  const Options o = parse_args(argc, argv);
  std::string body(kDefaultBody);
  if (!o.body_file.empty() && !read_file(o.body_file, &body)) {
    std::fprintf(stderr, "fanout-client-bench: cannot read %s\n", o.body_file.c_str());
    return 2;
  }

  uv_loop_t loop;
  if (uv_loop_init(&loop) != 0) {
    std::fprintf(stderr, "fanout-client-bench: uv_loop_init failed\n");
    return 2;
  }
  int rc = 2;
  {
    StreamLoop streams(&loop);
    LoopTimer timers(&loop);
    Driver driver(o, std::move(body), &loop);
    std::string error;
    if (driver.start(streams, timers, &error)) {
      uv_run(&loop, UV_RUN_DEFAULT);
      driver.ensure_finished();
      driver.close(streams, timers);
      rc = driver.report();
    } else {
      std::fprintf(stderr, "fanout-client-bench: %s\n", error.c_str());
      driver.close(streams, timers);
    }
  }
  if (uv_loop_close(&loop) != 0) std::fprintf(stderr, "fanout-client-bench: a handle leaked\n");
  return rc;
}
