// fanout-sink: a webhook receiver for tests, demos and benchmarks, with fault injection.
//
// One thread, one libuv loop, one transport::HttpServer (h2c, HTTP/1.1 and, with a certificate,
// TLS on the same port). Each request is counted, its X-Partoo-Event-Id remembered, optionally
// recorded, and then answered according to the flags: black hole, the step of its event's
// --plan for its attempt, or reset / a status drawn from the mix, after an optional delay. See
// tools/README.md for the command line.
#include <arpa/inet.h>
#include <uv.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <charconv>
#include <cinttypes>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "tools/common/cli.h"
#include "tools/common/json_out.h"
#include "tools/fanout-sink/options.h"
#include "transport/loop_timer.h"
#include "transport/server/http_server.h"
#include "transport/stream.h"
#include "transport/timer_wheel.h"
#include "transport/tls.h"

namespace {

using namespace fanout::sink;

using fanout::transport::GoawayMode;
using fanout::transport::HttpHeaderView;
using fanout::transport::HttpRequest;
using fanout::transport::HttpResponder;
using fanout::transport::HttpServer;
using fanout::transport::HttpServerOptions;
using fanout::transport::HttpVersion;
using fanout::transport::LoopTimer;
using fanout::transport::StreamLoop;
using fanout::transport::TimerEntry;

// splitmix64: small, seedable, good enough for fault injection draws.
class Rng {
 public:
  explicit Rng(std::uint64_t seed) : state_(seed) {}
  std::uint64_t next() {
    std::uint64_t z = (state_ += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }
  // Uniform in [0, 1).
  double fraction() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }

 private:
  std::uint64_t state_;
};

// Exact set of event ids: open addressing over an arena, no allocation per id once grown.
class IdSet {
 public:
  IdSet() : slots_(1 << 16, 0), mask_((1 << 16) - 1) {}

  // True when `id` was not in the set.
  bool insert(std::string_view id) {
    if ((entries_.size() + 1) * 2 > slots_.size()) grow();
    const std::uint64_t h = std::hash<std::string_view>{}(id);
    for (std::size_t i = h & mask_;; i = (i + 1) & mask_) {
      const std::uint32_t e = slots_[i];
      if (e == 0) {
        entries_.push_back({h, arena_.size(), id.size()});
        arena_.append(id);
        slots_[i] = static_cast<std::uint32_t>(entries_.size());
        return true;
      }
      const Entry& x = entries_[e - 1];
      if (x.hash == h && std::string_view(arena_).substr(x.off, x.len) == id) return false;
    }
  }
  [[nodiscard]] std::size_t size() const { return entries_.size(); }

 private:
  struct Entry {
    std::uint64_t hash;
    std::size_t off;
    std::size_t len;
  };
  void grow() {
    std::vector<std::uint32_t> next(slots_.size() * 2, 0);
    const std::size_t mask = next.size() - 1;
    for (std::size_t k = 0; k < entries_.size(); ++k) {
      std::size_t i = entries_[k].hash & mask;
      while (next[i] != 0) i = (i + 1) & mask;
      next[i] = static_cast<std::uint32_t>(k + 1);
    }
    slots_.swap(next);
    mask_ = mask;
  }

  std::vector<std::uint32_t> slots_;  // entry index + 1, 0 = empty
  std::size_t mask_;
  std::vector<Entry> entries_;
  std::string arena_;
};

void append_base64(std::string& out, std::string_view in) {
  static constexpr char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  const auto* p = reinterpret_cast<const unsigned char*>(in.data());
  std::size_t n = in.size();
  for (; n >= 3; p += 3, n -= 3) {
    const std::uint32_t v = (std::uint32_t{p[0]} << 16) | (std::uint32_t{p[1]} << 8) | p[2];
    out.push_back(kAlphabet[v >> 18]);
    out.push_back(kAlphabet[(v >> 12) & 63]);
    out.push_back(kAlphabet[(v >> 6) & 63]);
    out.push_back(kAlphabet[v & 63]);
  }
  if (n > 0) {
    std::uint32_t v = std::uint32_t{p[0]} << 16;
    if (n == 2) v |= std::uint32_t{p[1]} << 8;
    out.push_back(kAlphabet[v >> 18]);
    out.push_back(kAlphabet[(v >> 12) & 63]);
    out.push_back(n == 2 ? kAlphabet[(v >> 6) & 63] : '=');
    out.push_back('=');
  }
}

class Sink final : public fanout::transport::HttpRequestHandler {
 public:
  Sink(uv_loop_t* loop, Options options)
      : loop_(loop),
        options_(std::move(options)),
        rng_(options_.seed),
        streams_(loop),
        timer_(loop) {
    for (const auto& [status, weight] : options_.mix) mix_total_ += weight;
    tick_.bind<&Sink::on_tick>(this);
    flush_.bind<&Sink::on_flush>(this);
  }

  ~Sink() {
    if (record_ != nullptr) std::fclose(record_);
  }
  Sink(const Sink&) = delete;
  Sink& operator=(const Sink&) = delete;

  // Listens and installs the signal handlers. Errors are printed; false means exit 1 (the
  // loop must still run once to close what was opened).
  bool start();
  void on_request(const HttpRequest& request, HttpResponder responder) override;

 private:
  enum class Action : std::uint8_t { kRespond, kReset, kNone };  // kNone: --blackhole
  // An answer waiting for --delay-ms. Pooled; the entry is armed while it waits.
  struct Delayed {
    TimerEntry entry;
    Sink* sink = nullptr;
    HttpResponder responder;
    Action action = Action::kRespond;
    int status = 200;
    void fire() noexcept {
      sink->act(responder, action, status);
      sink->free_delayed_.push_back(this);
    }
  };

  bool listen();
  int draw_status() {
    if (options_.mix.size() == 1) return options_.mix.front().first;
    std::uint64_t r = rng_.next() % mix_total_;
    for (const auto& [status, weight] : options_.mix) {
      if (r < weight) return status;
      r -= weight;
    }
    return options_.mix.back().first;
  }
  // The step of the request's --plan: the event's plan by FNV-1a, the step by its attempt.
  static const PlanStep& plan_step(const std::vector<Plan>& plans, const HttpRequest& request);
  void act(const HttpResponder& responder, Action action, int status);
  void record(const HttpRequest& request, Action action, int status);
  void on_tick() noexcept;
  void on_flush() noexcept {
    if (record_ != nullptr) std::fflush(record_);
  }
  void print_request(const HttpRequest& request);
  static void on_signal(uv_signal_t* handle, int signum);
  void stop();
  void print_summary();

  uv_loop_t* loop_;
  Options options_;
  Rng rng_;
  std::uint64_t mix_total_ = 0;
  StreamLoop streams_;
  LoopTimer timer_;
  TimerEntry tick_;
  TimerEntry flush_;  // flushes the record file on the next loop turn
  std::unique_ptr<HttpServer> server_;
  uv_signal_t sigint_{};
  uv_signal_t sigterm_{};
  bool stopping_ = false;
  std::vector<std::unique_ptr<Delayed>> delayed_;
  std::vector<Delayed*> free_delayed_;
  std::FILE* record_ = nullptr;
  std::string line_;

  // Counters.
  std::uint64_t started_ns_ = 0;
  std::uint64_t requests_ = 0;
  std::uint64_t last_tick_requests_ = 0;
  std::uint64_t last_tick_ns_ = 0;
  std::uint64_t h1_ = 0;
  std::uint64_t h2_ = 0;
  std::uint64_t body_bytes_ = 0;
  std::array<std::uint64_t, 1000> by_status_{};
  std::uint64_t resets_ = 0;
  std::uint64_t blackholed_ = 0;
  std::uint64_t abandoned_ = 0;  // the connection or stream was gone when the answer was due
  std::uint64_t goaways_ = 0;
  std::uint64_t duplicates_ = 0;
  std::uint64_t without_id_ = 0;
  IdSet ids_;
};

bool Sink::start() {
  if (!listen()) {
    timer_.close();
    streams_.close();
    return false;
  }
  uv_signal_init(loop_, &sigint_);
  uv_signal_init(loop_, &sigterm_);
  sigint_.data = sigterm_.data = this;
  uv_signal_start(&sigint_, on_signal, SIGINT);
  uv_signal_start(&sigterm_, on_signal, SIGTERM);
  started_ns_ = last_tick_ns_ = uv_hrtime();
  if (!options_.quiet) timer_.schedule_after(tick_, 1000);
  return true;
}

bool Sink::listen() {
  HttpServerOptions so;
  so.host = options_.host;
  so.port = options_.port;
  so.max_body_bytes = options_.max_body;
  if (!options_.tls_cert.empty()) {
    auto tls = fanout::transport::TlsContext::server({options_.tls_cert, options_.tls_key});
    if (!tls) {
      std::fprintf(stderr, "fanout-sink: %s\n", tls.error().c_str());
      return false;
    }
    so.tls = *tls;
  }
  if (!options_.record.empty()) {
    record_ = std::fopen(options_.record.c_str(), "a");
    if (record_ == nullptr) {
      std::fprintf(stderr, "fanout-sink: cannot open %s: %s\n", options_.record.c_str(),
                   std::strerror(errno));
      return false;
    }
    std::setvbuf(record_, nullptr, _IOFBF, 1 << 20);
  }
  auto server = HttpServer::create(streams_, so, this);
  if (!server) {
    std::fprintf(stderr, "fanout-sink: %s\n", server.error().c_str());
    return false;
  }
  server_ = std::move(*server);
  const bool v6 = options_.host.find(':') != std::string::npos;
  std::printf(v6 ? "listening on [%s]:%u\n" : "listening on %s:%u\n", options_.host.c_str(),
              unsigned{server_->port()});
  std::fflush(stdout);
  return true;
}

void Sink::on_request(const HttpRequest& request, HttpResponder responder) {
  ++requests_;
  ++(request.version == HttpVersion::kHttp2 ? h2_ : h1_);
  body_bytes_ += request.body.size();
  const std::string_view id = request.header("x-partoo-event-id");
  if (id.empty()) {
    ++without_id_;
  } else if (!ids_.insert(id)) {
    ++duplicates_;
  }
  // The answer is decided now (and recorded), sent now or after the delay.
  Action action = Action::kNone;
  int status = 0;
  std::uint64_t delay_ms = options_.delay_ms;
  if (options_.blackhole) {
    action = Action::kNone;
  } else if (!options_.plans.empty()) {
    const PlanStep& step = plan_step(options_.plans, request);
    action = step.status == 0 ? Action::kReset : Action::kRespond;
    status = step.status;
    if (step.slow) delay_ms = step.delay_ms;
  } else {
    action = options_.reset_rate > 0.0 && rng_.fraction() < options_.reset_rate ? Action::kReset
                                                                                : Action::kRespond;
    status = action == Action::kRespond ? draw_status() : 0;
  }
  if (record_ != nullptr) record(request, action, status);
  if (options_.print) print_request(request);
  if (options_.goaway_every != 0 && request.sequence % options_.goaway_every == 0) {
    if (responder.goaway(GoawayMode::kGraceful)) ++goaways_;
  }
  if (action == Action::kNone) {
    ++blackholed_;
    return;
  }
  if (delay_ms == 0) {
    act(responder, action, status);
    return;
  }
  Delayed* d;
  if (!free_delayed_.empty()) {
    d = free_delayed_.back();
    free_delayed_.pop_back();
  } else {
    d = delayed_.emplace_back(std::make_unique<Delayed>()).get();
    d->sink = this;
    d->entry.bind<&Delayed::fire>(d);
  }
  d->responder = responder;
  d->action = action;
  d->status = status;
  timer_.schedule_after(d->entry, delay_ms);
}

const PlanStep& Sink::plan_step(const std::vector<Plan>& plans, const HttpRequest& request) {
  const Plan& plan = plans[fnv1a64(request.header("x-partoo-event-id")) % plans.size()];
  std::uint64_t attempt = 1;
  if (!fanout::cli::parse_number(request.header("x-partoo-attempt"), attempt) || attempt == 0)
    attempt = 1;
  return plan[std::min<std::uint64_t>(attempt, plan.size()) - 1];
}

void Sink::act(const HttpResponder& responder, Action action, int status) {
  if (action == Action::kReset) {
    if (responder.reset()) {
      ++resets_;
    } else {
      ++abandoned_;
    }
    return;
  }
  if (responder.respond(status)) {
    ++by_status_[static_cast<std::size_t>(status)];
  } else {
    ++abandoned_;
  }
}

void Sink::record(const HttpRequest& request, Action action, int status) {
  line_.clear();
  line_.append("{\"method\":");
  fanout::json::append_string(line_, request.method);
  line_.append(",\"path\":");
  fanout::json::append_string(line_, request.target);
  line_.append(",\"authority\":");
  fanout::json::append_string(line_, request.authority);
  line_.append(",\"protocol\":");
  fanout::json::append_string(line_, to_string(request.version));
  line_.append(",\"answer\":");
  switch (action) {
    case Action::kRespond:
      fanout::json::append_int(line_, status);
      break;
    case Action::kReset:
      line_.append("\"reset\"");
      break;
    case Action::kNone:
      line_.append("null");
      break;
  }
  line_.append(",\"headers\":[");
  bool first = true;
  for (const HttpHeaderView& h : request.headers) {
    if (!first) line_.push_back(',');
    first = false;
    line_.push_back('[');
    fanout::json::append_string(line_, h.name);
    line_.push_back(',');
    fanout::json::append_string(line_, h.value);
    line_.push_back(']');
  }
  line_.append("],\"body_base64\":\"");
  append_base64(line_, request.body);
  line_.append("\"}\n");
  std::fwrite(line_.data(), 1, line_.size(), record_);
  // Readers (tests, the quick-start) see each request soon; one flush per loop turn at most.
  if (!flush_.armed()) timer_.schedule_after(flush_, 0);
}

void Sink::print_request(const HttpRequest& request) {
  constexpr std::size_t kMaxShown = 300;
  const std::string_view body = request.body.substr(0, kMaxShown);
  const std::string_view id = request.header("x-partoo-event-id");
  const std::string_view attempt = request.header("x-partoo-attempt");
  std::printf("received %.*s %.*s event_id=%.*s attempt=%.*s body=%.*s%s\n",
              static_cast<int>(request.method.size()), request.method.data(),
              static_cast<int>(request.target.size()), request.target.data(),
              static_cast<int>(id.size()), id.data(), static_cast<int>(attempt.size()),
              attempt.data(), static_cast<int>(body.size()), body.data(),
              request.body.size() > kMaxShown ? "..." : "");
  std::fflush(stdout);
}

void Sink::on_tick() noexcept {
  const std::uint64_t now = uv_hrtime();
  const double secs = static_cast<double>(now - last_tick_ns_) / 1e9;
  const double rate = secs > 0 ? static_cast<double>(requests_ - last_tick_requests_) / secs : 0;
  std::uint64_t s2 = 0, s4 = 0, s5 = 0;
  for (std::size_t s = 200; s < 300; ++s) s2 += by_status_[s];
  for (std::size_t s = 400; s < 500; ++s) s4 += by_status_[s];
  for (std::size_t s = 500; s < 600; ++s) s5 += by_status_[s];
  std::fprintf(stderr,
               "fanout-sink: %.0f req/s  total %" PRIu64 "  2xx %" PRIu64 "  4xx %" PRIu64
               "  5xx %" PRIu64 "  reset %" PRIu64 "  dup-ids %" PRIu64 "  conns %zu\n",
               rate, requests_, s2, s4, s5, resets_, duplicates_, server_->connections());
  last_tick_ns_ = now;
  last_tick_requests_ = requests_;
  timer_.schedule_after(tick_, 1000);
}

void Sink::on_signal(uv_signal_t* handle, int /*signum*/) {
  static_cast<Sink*>(handle->data)->stop();
}

void Sink::stop() {
  if (stopping_) return;
  stopping_ = true;
  print_summary();
  if (record_ != nullptr) {
    std::fclose(record_);
    record_ = nullptr;
  }
  // Abrupt: a black hole or a long delay must not hold the exit.
  server_->close();
  timer_.close();  // disarms the tick and every delayed answer
  uv_close(reinterpret_cast<uv_handle_t*>(&sigint_), nullptr);
  uv_close(reinterpret_cast<uv_handle_t*>(&sigterm_), nullptr);
  streams_.close();
}

void Sink::print_summary() {
  const double secs = static_cast<double>(uv_hrtime() - started_ns_) / 1e9;
  const std::size_t unique = ids_.size();
  std::string out;
  char buf[128];
  if (options_.json) {
    out.append("{\"requests\":").append(std::to_string(requests_));
    out.append(",\"by_status\":{");
    bool first = true;
    for (std::size_t s = 0; s < by_status_.size(); ++s) {
      if (by_status_[s] == 0) continue;
      if (!first) out.push_back(',');
      first = false;
      out.append("\"")
          .append(std::to_string(s))
          .append("\":")
          .append(std::to_string(by_status_[s]));
    }
    out.append("},\"resets\":").append(std::to_string(resets_));
    out.append(",\"blackholed\":").append(std::to_string(blackholed_));
    out.append(",\"abandoned\":").append(std::to_string(abandoned_));
    out.append(",\"goaways\":").append(std::to_string(goaways_));
    out.append(",\"unique_event_ids\":").append(std::to_string(unique));
    out.append(",\"duplicate_event_ids\":").append(std::to_string(duplicates_));
    out.append(",\"without_event_id\":").append(std::to_string(without_id_));
    out.append(",\"by_protocol\":{\"h2\":").append(std::to_string(h2_));
    out.append(",\"http/1.1\":").append(std::to_string(h1_)).append("}");
    out.append(",\"body_bytes\":").append(std::to_string(body_bytes_));
    std::snprintf(buf, sizeof buf, ",\"elapsed_s\":%.3f}\n", secs);
    out.append(buf);
  } else {
    std::snprintf(buf, sizeof buf, "requests: %" PRIu64 " in %.1f s (%.0f req/s)\n", requests_,
                  secs, secs > 0 ? static_cast<double>(requests_) / secs : 0.0);
    out.append(buf);
    std::snprintf(buf, sizeof buf, "  h2: %" PRIu64 "  http/1.1: %" PRIu64 "\n", h2_, h1_);
    out.append(buf);
    for (std::size_t s = 0; s < by_status_.size(); ++s) {
      if (by_status_[s] == 0) continue;
      std::snprintf(buf, sizeof buf, "  status %zu: %" PRIu64 "\n", s, by_status_[s]);
      out.append(buf);
    }
    std::snprintf(buf, sizeof buf,
                  "  resets: %" PRIu64 "  blackholed: %" PRIu64 "  abandoned: %" PRIu64
                  "  goaways: %" PRIu64 "\n",
                  resets_, blackholed_, abandoned_, goaways_);
    out.append(buf);
    std::snprintf(buf, sizeof buf,
                  "event ids: %zu unique, %" PRIu64 " duplicate, %" PRIu64 " requests without\n",
                  unique, duplicates_, without_id_);
    out.append(buf);
  }
  std::fwrite(out.data(), 1, out.size(), stdout);
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  std::string err;
  std::optional<Options> options = parse_args(argc, argv, err);
  if (!options) {
    if (err.empty()) {
      std::fputs(kUsage, stdout);
      return 0;
    }
    std::fprintf(stderr, "fanout-sink: %s\n%s", err.c_str(), kUsage);
    return 2;
  }
  std::signal(SIGPIPE, SIG_IGN);
  uv_loop_t loop;
  uv_loop_init(&loop);
  int rc = 0;
  {
    Sink sink(&loop, std::move(*options));
    if (!sink.start()) rc = 1;
    uv_run(&loop, UV_RUN_DEFAULT);
  }
  if (uv_loop_close(&loop) != 0) {
    std::fprintf(stderr, "fanout-sink: handles left open at exit\n");
    return rc != 0 ? rc : 1;
  }
  return rc;
}
