// fanout-load --ingest: NDJSON batches to a running fanoutd's POST /v2/events with an INGEST key,
// through transport::Client (h2c or HTTP/1.1); counts the per-item statuses of the answers and
// re-sends the busy ones (tools/README.md, "Ingest mode").
#include <sys/resource.h>
#include <uv.h>

#include <algorithm>
#include <atomic>
#include <charconv>
#include <chrono>
#include <cinttypes>
#include <cstdint>
#include <cstdio>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "fanout/version.h"
#include "routing/subscription.h"
#include "tools/fanout-load/events.h"
#include "tools/fanout-load/measure.h"
#include "tools/fanout-load/modes.h"
#include "tools/fanout-load/options.h"
#include "transport/address_guard.h"
#include "transport/client/client.h"
#include "transport/loop_timer.h"
#include "transport/stream.h"

namespace fanout::load {

namespace {

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
      : o_(o), parts_(parts), src_(o.orgs, event_types(o.types), o.payload_bytes, o.event_id) {
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
      if (!stopping_ && more_new(now) && now < busy_until_) {
        wake = std::min(wake, busy_until_);  // the daemon said busy: nothing new before then
      } else if (!stopping_ && more_new(now)) {
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
      // An id accepted before (--event-id): final, as the daemon answers it.
      const std::uint64_t u = count_in(r.body, "duplicate").value_or(0);
      if (!a || !d || !f || !b || *a + *d + *f + *b + u != count) {
        unanswered_ += count;
        ++requests_failed_;
        fail("unreadable answer to " + std::to_string(count) + " events (status " +
             std::to_string(r.status) + "): " + std::string(r.body.substr(0, 300)));
      } else {
        accepted_.fetch_add(*a, std::memory_order_relaxed);
        dropped_.fetch_add(*d, std::memory_order_relaxed);
        refused_.fetch_add(*f, std::memory_order_relaxed);
        busy_.fetch_add(*b, std::memory_order_relaxed);
        duplicate_.fetch_add(u, std::memory_order_relaxed);
        if (*b > 0) {
          // The first busy event stops the batch: the busy ones are its last B lines. The
          // daemon's Retry-After is 1 s by default (transport::Response carries no headers).
          // No new lines either until then: a sender that heeds Retry-After.
          const Range again{first + count - *b, *b, now + std::chrono::seconds(1)};
          if (again.due > busy_until_) {
            busy_until_ = again.due;
            ++busy_pauses_;
          }
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

  // Events with a final answer: accepted, dropped, refused or duplicate (busy ones go again).
  std::uint64_t answered_events() const {
    return accepted_.load() + dropped_.load() + refused_.load() + duplicate_.load();
  }

  int report(const CpuTime& cpu) {
    // Requests still in flight after finish() were cancelled by close(): counted there.
    const std::uint64_t ref = refused_.load(), answered = answered_events();
    const double elapsed_s = seconds_between(t0_, std::max(t0_, last_answer_));
    const bool ok = !cut_ && error_.empty() && busy_unsent_ == 0 && unanswered_ == 0 && ref == 0 &&
                    answered == next_new_;
    if (o_.json) {
      print_json(cpu, elapsed_s);
    } else {
      print_text(cpu, elapsed_s);
    }
    return ok ? 0 : 1;
  }

  void print_json(const CpuTime& cpu, double elapsed_s) const {
    const std::uint64_t acc = accepted_.load(), drop = dropped_.load(), ref = refused_.load();
    const std::uint64_t answered = answered_events();
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
        .text("event_id", o_.event_id)
        .real("rate", o_.rate, 1)
        .num("events", o_.duration_s > 0 ? 0 : o_.events)
        .real("duration_s", o_.duration_s, 3)
        .num("generated", next_new_)
        .num("published", acc)
        .num("accepted", acc)
        .num("dropped", drop)
        .num("refused", ref)
        .num("duplicate", duplicate_.load())
        .num("busy", busy_.load())
        .num("busy_unsent", busy_unsent_)
        .num("busy_pauses", busy_pauses_)
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
  }

  void print_text(const CpuTime& cpu, double elapsed_s) const {
    const std::uint64_t acc = accepted_.load(), drop = dropped_.load(), ref = refused_.load();
    const std::uint64_t answered = answered_events();
    std::printf("fanout-load --ingest %s: batches of %zu, %" PRIu64 " request(s) at once, %s\n",
                o_.ingest.c_str(), o_.batch, max_requests_, protocol_name(o_, o_.ingest).c_str());
    std::printf("  %" PRIu32 " orgs x %" PRIu32 " event types, payload %zu B\n", o_.orgs, o_.types,
                o_.payload_bytes);
    std::printf("finished in %.3f s, %.0f events/s ingested (%.0f accepted/s)%s\n", elapsed_s,
                per_second(answered, elapsed_s), per_second(acc, elapsed_s),
                cut_ ? (interrupted() ? " -- INTERRUPTED" : " -- CUT by --duration-max") : "");
    std::printf(
        "events: %" PRIu64 " sent, %" PRIu64 " accepted, %" PRIu64 " dropped, %" PRIu64
        " refused, %" PRIu64 " duplicate; %" PRIu64 " busy answers re-sent or given up (%" PRIu64
        " given up), %" PRIu64 " unanswered\n",
        next_new_, acc, drop, ref, duplicate_.load(), busy_.load(), busy_unsent_, unanswered_);
    std::printf("requests: %" PRIu64 " (%" PRIu64 " failed); latency %s\n", requests_,
                requests_failed_, latency_line(hist_).c_str());
    std::printf("cpu: user %.3f s, sys %.3f s\n", cpu.user_s, cpu.sys_s);
    std::printf("outcomes are the daemon's: see its /metrics (fanout_outcomes_total)\n");
    if (!error_.empty()) std::printf("error: %s\n", error_.c_str());
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
  // After a busy answer, no new lines before this (the re-sends are due then too).
  Clock::time_point busy_until_{};
  std::uint64_t busy_pauses_ = 0;  // busy answers that moved busy_until_
  std::uint64_t next_new_ = 0;
  std::uint64_t in_flight_ = 0;
  std::uint64_t requests_ = 0, requests_failed_ = 0;
  std::uint64_t busy_unsent_ = 0, unanswered_ = 0;
  std::atomic<std::uint64_t> generated_{0};
  std::atomic<std::uint64_t> accepted_{0}, dropped_{0}, refused_{0}, busy_{0}, duplicate_{0};
  Histogram hist_;
  std::string error_;
  bool stopping_ = false;   // no new batches (after an error)
  bool finishing_ = false;  // no more sends at all
  bool finished_ = false;
  bool cut_ = false;
};

}  // namespace

int run_ingest(const Options& o) {
  auto parts = fanout::routing::validate_url(o.ingest, {.allow_insecure_http = true});
  if (!parts) usage_error("--ingest: " + parts.error().front().message);
  IngestRun run(o, *parts);
  return run.run();
}

}  // namespace fanout::load
