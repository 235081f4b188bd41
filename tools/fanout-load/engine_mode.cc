// fanout-load --url: the embedded engine against a receiver (tools/README.md, "fanout-load").
//
// A window of at most --window events accepted and not final (default 2 x W x C x M: every
// connection stays full and the pending queue never runs dry); over it, or when publish()
// answers busy, the publisher waits on a condition variable the Observer signals. --rate R paces
// publishing by the clock instead (same window bound).
#include <sys/resource.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cinttypes>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "engine/signer.h"
#include "fanout/engine.h"
#include "routing/envelope.h"
#include "routing/subscription.h"
#include "tools/fanout-load/events.h"
#include "tools/fanout-load/measure.h"
#include "tools/fanout-load/modes.h"
#include "tools/fanout-load/observer.h"
#include "tools/fanout-load/options.h"

namespace fanout::load {

namespace {

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

}  // namespace

// (modes.h)
std::unique_ptr<fanout::Engine> make_engine(const Options& o, const EventSource& src,
                                            fanout::Observer* observer, std::uint64_t budget) {
  fanout::EngineOptions eo;
  eo.workers = o.workers;
  eo.signing_threads = o.signing_threads;
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
  // The window (or --waiting-retries' N) bounds what is held; the engine's backlog bound would
  // refuse a --waiting-retries burst past 65,536.
  eo.max_backlog = std::max<std::size_t>(eo.max_backlog, static_cast<std::size_t>(budget) + 1);
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

namespace {

// The clock of a run: its start, the end of publishing (--duration) and the hard end
// (--duration-max).
struct Deadlines {
  Clock::time_point t0;
  Clock::time_point publish_end;
  Clock::time_point hard;
};

// What the publishing loop did.
struct Published {
  std::uint64_t busy = 0;
  std::uint64_t refused = 0;
  std::string refusal;  // the first refusal
  bool cut = false;
};

// Publishes events 0, 1, ... (at most --events in count mode) until --duration, paced by --rate,
// within the window; `progress` follows the count.
Published publish_all(const Options& o, const EventSource& src, fanout::Producer& producer,
                      LoadObserver& observer, const Deadlines& d,
                      std::atomic<std::uint64_t>& progress) {
  const bool count_mode = o.duration_s == 0;
  const std::uint64_t n = count_mode ? o.events : std::numeric_limits<std::uint64_t>::max();
  const std::uint64_t window = o.window;
  // Hysteresis: over the window, wait until a quarter of it has completed, then refill at once.
  const std::uint64_t low_water = window - std::max<std::uint64_t>(1, window / 4);
  Published p;
  const double ns_per_event = o.rate > 0 ? 1e9 / o.rate : 0;
  const bool check_clock_each_event = !count_mode || ns_per_event > 0;
  std::string event;
  // Publishing waits end at --duration (a normal end) or --duration-max (a cut).
  const Clock::time_point wait_until = std::min(d.publish_end, d.hard);
  bool stop = false;
  auto wait_for = [&](std::uint64_t limit) {
    if (observer.wait_in_flight_at_most(limit, wait_until)) return true;
    p.cut = interrupted() || Clock::now() >= d.hard;
    stop = true;
    return false;
  };
  for (std::uint64_t i = 0; i < n; ++i) {
    if (check_clock_each_event || (i & 63) == 0) {
      Clock::time_point now = Clock::now();
      if (ns_per_event > 0) {
        const Clock::time_point due = d.t0 + std::chrono::nanoseconds(static_cast<std::int64_t>(
                                                 static_cast<double>(i) * ns_per_event));
        while (now < due && now < d.publish_end && now < d.hard && !interrupted()) {
          std::this_thread::sleep_until(
              std::min({due, d.publish_end, d.hard, now + std::chrono::milliseconds(100)}));
          now = Clock::now();
        }
      }
      if (now >= d.publish_end) break;
      if (now >= d.hard || interrupted()) {
        p.cut = true;
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
        ++p.busy;
        const std::uint64_t now_in = observer.in_flight();
        if (!wait_for(now_in > 0 ? now_in - 1 : 0)) break;
        continue;
      }
      if (p.refused++ == 0) {
        p.refusal = std::string(fanout::to_string(r.status)) + " " + std::string(r.reason);
      }
      break;
    }
    if (stop) break;
    progress.store(i + 1, std::memory_order_relaxed);
  }
  return p;
}

// Everything the summary reports.
struct EngineReport {
  std::size_t body_bytes = 0;
  bool signed_ = false;
  bool count_mode = true;
  Published pub;
  fanout::EngineStats st;
  std::size_t unfinished = 0;
  LoadObserver::Summary sum;
  std::uint64_t published = 0;
  std::uint64_t delivered = 0;
  std::uint64_t final_ = 0;
  double elapsed_s = 0;  // first publish to last outcome (to the end of the wait when cut)
  double publish_s = 0;
  double us_per_event = 0;
  CpuTime cpu;
  CpuTime pub_cpu;
};

void print_json(const Options& o, const LoadObserver& observer, const EngineReport& r) {
  const fanout::EngineStats& st = r.st;
  JsonObject j;
  j.text("mode", "engine")
      .text("url", o.url)
      .num("conns", o.conns)
      .num("streams", o.streams)
      .num("workers", o.workers)
      .num("signing_threads", o.signing_threads)
      .num("orgs", o.orgs)
      .num("types", o.types)
      .num("payload_bytes", o.payload_bytes)
      .num("body_bytes", r.body_bytes)
      .text("event_id", o.event_id)
      .real("rate", o.rate, 1)
      .boolean("signed", r.signed_)
      .boolean("http1", o.http1)
      .num("window", o.window)
      .num("events", r.count_mode ? o.events : 0)
      .real("duration_s", o.duration_s, 3)
      .num("retry_base_ms", o.retry_base_ms)
      .num("max_retries", o.max_retries)
      .num("published", r.published)
      .num("delivered", r.delivered)
      .num("rejected", observer.kind(fanout::OutcomeKind::kRejected))
      .num("exhausted", observer.kind(fanout::OutcomeKind::kExhausted))
      .num("dropped", observer.kind(fanout::OutcomeKind::kDropped))
      .num("unfinished", r.unfinished)
      .num("refused", r.pub.refused)
      .num("busy", r.pub.busy)
      .num("publisher_waits", observer.waits())
      .num("attempts", st.attempts)
      .num("attempts_2xx", st.attempts_2xx)
      .num("attempts_3xx", st.attempts_3xx)
      .num("attempts_4xx", st.attempts_4xx)
      .num("attempts_5xx", st.attempts_5xx)
      .num("attempts_failed", st.attempts_failed)
      .num("connections_h2", st.connections_h2)
      .num("connections_h1", st.connections_h1)
      .num("signed_off_worker", st.signed_off_worker)
      .real("deliveries_per_s", per_second(r.delivered, r.elapsed_s), 1)
      .real("publish_rate", per_second(r.published, r.publish_s), 1)
      .real("elapsed_s", r.elapsed_s, 6)
      .real("publish_s", r.publish_s, 6)
      .latency("latency_us", r.sum.hist)
      .latency("response_us", r.sum.response_hist)
      .real("cpu_user_s", r.cpu.user_s, 3)
      .real("cpu_sys_s", r.cpu.sys_s, 3)
      .real("cpu_us_per_event", r.cpu.total() * r.us_per_event, 3)
      .real("publisher_cpu_us_per_event", r.pub_cpu.total() * r.us_per_event, 3)
      .boolean("cut", r.pub.cut)
      .text("first_failure", r.sum.first_failure)
      .text("first_refusal", r.pub.refusal);
  std::printf("%s\n", j.str().c_str());
}

void print_text(const Options& o, const LoadObserver& observer, const EngineReport& r) {
  const fanout::EngineStats& st = r.st;
  std::printf("fanout-load %s: %u worker(s), %" PRIu32 " conns x %" PRIu32
              " streams, %s, window %" PRIu64 "\n",
              o.url.c_str(), o.workers, o.conns, o.streams, protocol_name(o, o.url).c_str(),
              o.window);
  std::printf("  %" PRIu32 " orgs x %" PRIu32
              " event types, payload %zu B (body %zu B), %s, "
              "retries %" PRIu32 " from %" PRIu64 " ms\n",
              o.orgs, o.types, o.payload_bytes, r.body_bytes, r.signed_ ? "signed" : "unsigned",
              o.max_retries, o.retry_base_ms);
  std::printf("finished in %.3f s, %.0f deliveries/s; published %" PRIu64
              " in %.3f s (%.0f/s%s)%s\n",
              r.elapsed_s, per_second(r.delivered, r.elapsed_s), r.published, r.publish_s,
              per_second(r.published, r.publish_s), o.rate > 0 ? ", paced" : "",
              r.pub.cut ? (interrupted() ? " -- INTERRUPTED" : " -- CUT by --duration-max") : "");
  std::printf("outcomes: %" PRIu64 " final, %" PRIu64 " delivered, %" PRIu64 " rejected, %" PRIu64
              " exhausted, %" PRIu64 " dropped; %zu unfinished\n",
              r.final_, r.delivered, observer.kind(fanout::OutcomeKind::kRejected),
              observer.kind(fanout::OutcomeKind::kExhausted),
              observer.kind(fanout::OutcomeKind::kDropped), r.unfinished);
  std::printf("attempts: %" PRIu64 " total, %" PRIu64 " 2xx, %" PRIu64 " 3xx, %" PRIu64
              " 4xx, %" PRIu64 " 5xx, %" PRIu64 " failed; connections h2 %" PRIu64
              ", http/1.1 %" PRIu64 "\n",
              st.attempts, st.attempts_2xx, st.attempts_3xx, st.attempts_4xx, st.attempts_5xx,
              st.attempts_failed, st.connections_h2, st.connections_h1);
  std::printf("latency (publish to final outcome): %s\n", latency_line(r.sum.hist).c_str());
  std::printf("last attempt's round trip (first byte written to answer): %s\n",
              latency_line(r.sum.response_hist).c_str());
  std::printf(
      "cpu: user %.3f s, sys %.3f s, %.2f us/event (publishing thread %.2f us/event), "
      "%.0f%% of wall\n",
      r.cpu.user_s, r.cpu.sys_s, r.cpu.total() * r.us_per_event, r.pub_cpu.total() * r.us_per_event,
      r.elapsed_s > 0 ? r.cpu.total() * 100 / r.elapsed_s : 0);
  if (r.pub.refused > 0 || r.pub.busy > 0) {
    std::printf("publish: %" PRIu64 " refused (first: %s), %" PRIu64 " busy answers\n",
                r.pub.refused, r.pub.refusal.c_str(), r.pub.busy);
  }
  if (!r.sum.first_failure.empty()) {
    std::printf("first failure: %s\n", r.sum.first_failure.c_str());
  }
}

}  // namespace

int run_engine(const Options& o) {
  const EventSource src(o.orgs, event_types(o.types), o.payload_bytes, o.event_id);
  LoadObserver observer;
  const std::unique_ptr<fanout::Engine> engine = make_engine(o, src, &observer, o.window);
  fanout::Producer producer = engine->make_producer();
  EngineReport r;
  r.signed_ = o.sign || !o.sign_key_file.empty();
  r.body_bytes = fanout::routing::build_delivery_body(src.types()[0], src.payload()).size();
  r.count_mode = o.duration_s == 0;
  std::atomic<std::uint64_t> published_progress{0};

  install_interrupt_handler();
  const CpuTime cpu0 = cpu_now(RUSAGE_SELF);
  const CpuTime pub0 = cpu_now(RUSAGE_THREAD);
  Deadlines d;
  d.t0 = Clock::now();
  d.hard = d.t0 + to_duration(o.duration_max_s);
  d.publish_end = r.count_mode ? Clock::time_point::max() : d.t0 + to_duration(o.duration_s);
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

  r.pub = publish_all(o, src, producer, observer, d, published_progress);
  const Clock::time_point t_published = Clock::now();
  r.pub_cpu = cpu_now(RUSAGE_THREAD) - pub0;
  if (!r.pub.cut && observer.in_flight() > 0) {
    r.pub.cut = !observer.wait_in_flight_at_most(0, d.hard);
  }
  const Clock::time_point t_waited = Clock::now();
  r.cpu = cpu_now(RUSAGE_SELF) - cpu0;
  progress.stop();
  r.st = engine->stats();
  r.unfinished = engine->stop(std::chrono::milliseconds(0)).size();
  r.sum = observer.summary();

  r.published = observer.accepted();
  r.delivered = observer.kind(fanout::OutcomeKind::kDelivered);
  r.final_ = observer.done();
  r.elapsed_s = seconds_between(d.t0, r.pub.cut || r.final_ == 0 ? t_waited : r.sum.last);
  r.publish_s = seconds_between(d.t0, t_published);
  r.us_per_event = r.published > 0 ? 1e6 / static_cast<double>(r.published) : 0;
  const bool ok = !r.pub.cut && r.pub.refused == 0 && r.final_ == r.published;
  if (o.json) {
    print_json(o, observer, r);
  } else {
    print_text(o, observer, r);
  }
  return ok ? 0 : 1;
}

}  // namespace fanout::load
