// Embedding fanout: the example the README shows, built by CI and run by ctest against a
// fanout-sink (tests/tools/embed_example_test.sh).
//
//   fanout-embed-example [URL]     URL of the receiver, default http://127.0.0.1:8080/hook
//
// It creates an engine whose Observer prints every final outcome, subscribes organisation 42 to
// business_updated events at URL, publishes three events, waits for their three outcomes, then
// stops with a drain deadline and prints whatever the engine handed back unfinished (what a
// daemon would persist and re-publish later with Producer::resume). Exit status 0 when all three
// events were delivered.
//
// Local defaults: an http:// URL turns insecure mode on (cleartext, no TLS verification) and
// loopback is allowed past the address guard, so a fanout-sink on 127.0.0.1 can receive. A real
// embedder uses https:// receivers and leaves both off.
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <utility>

#include "fanout/engine.h"

namespace {

// Receives final outcomes on the engine's worker threads, in batches; the views in each
// Outcome are valid during the call only, so copy what you keep. Never block here for long.
class PrintingObserver final : public fanout::Observer {
 public:
  void on_outcomes(std::span<const fanout::Outcome> outcomes) noexcept override {
    std::lock_guard lock(mu_);
    for (const fanout::Outcome& o : outcomes) {
      const std::string_view kind = fanout::to_string(o.kind);
      std::printf(
          "outcome %.*s: event %.*s (org %lld, %.*s) after %u attempt(s), status %d%s%.*s, "
          "%llu us\n",
          static_cast<int>(kind.size()), kind.data(), static_cast<int>(o.event_id.size()),
          o.event_id.data(), static_cast<long long>(o.org_id),
          static_cast<int>(o.event_type.size()), o.event_type.data(), o.attempts, o.last_status,
          o.last_failure.empty() ? "" : ", failure ", static_cast<int>(o.last_failure.size()),
          o.last_failure.data(), static_cast<unsigned long long>(o.latency_us));
      if (o.kind == fanout::OutcomeKind::kDelivered) ++delivered_;
      ++done_;
    }
    std::fflush(stdout);
    cv_.notify_all();
  }

  // Waits until `n` outcomes arrived or `timeout` passed; returns how many were delivered.
  int wait_for(int n, std::chrono::seconds timeout) {
    std::unique_lock lock(mu_);
    cv_.wait_for(lock, timeout, [&] { return done_ >= n; });
    return delivered_;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  int done_ = 0;
  int delivered_ = 0;
};

}  // namespace

int main(int argc, char** argv) {
  const std::string url = argc > 1 ? argv[1] : "http://127.0.0.1:8080/hook";

  // 1. Options: every field has a default (docs/webhook-contract.md §4 retry schedule, one worker
  // per core).
  fanout::EngineOptions options;
  options.workers = 1;
  options.insecure = url.starts_with("http://");        // local receiver only
  options.allow_subnets = {"127.0.0.1/32", "::1/128"};  // loopback passes the address guard
  // options.signing_key_pem = <PKCS#8 PEM>;            // adds X-Partoo-Signature-v1

  // 2. The engine. The observer must outlive it.
  PrintingObserver observer;
  auto created = fanout::Engine::create(std::move(options), &observer);
  if (!created) {
    std::fprintf(stderr, "engine: %s\n", created.error().c_str());
    return 1;
  }
  fanout::Engine& engine = **created;

  // 3. A subscription, validated against the catalogue and the insecure setting. Routing
  //    changes may also be made while the engine runs.
  fanout::routing::SubscriptionSpec spec;
  spec.org_id = 42;
  spec.event_type = "business_updated";
  spec.url = url;
  spec.custom_headers = {{"X-Example", "embed"}};
  auto sub = engine.upsert(/*id=*/1, spec);
  if (!sub) {
    for (const auto& v : sub.error()) std::fprintf(stderr, "subscription: %s\n", v.message.c_str());
    return 1;
  }

  // 4. Start the workers.
  if (auto started = engine.start(); !started) {
    std::fprintf(stderr, "start: %s\n", started.error().c_str());
    return 1;
  }

  // 5. Publish from this thread through a Producer (one per publishing thread). publish() never
  //    blocks: kBusy means "slow down and try again", kNoSubscription and kInvalid get no outcome.
  fanout::Producer producer = engine.make_producer();
  int accepted = 0;
  for (int i = 1; i <= 3; ++i) {
    const std::string event =
        R"({"id":"example-)" + std::to_string(i) +
        R"(","org_id":42,"type":"business_updated","payload":{"business":{"id":"b1","name":"Caf\u00e9 )" +
        std::to_string(i) + R"("}}})";
    const fanout::PublishResult r = producer.publish(event);
    const std::string_view status = fanout::to_string(r.status);
    std::printf("publish example-%d: %.*s%s%.*s\n", i, static_cast<int>(status.size()),
                status.data(), r.reason.empty() ? "" : " ", static_cast<int>(r.reason.size()),
                r.reason.data());
    if (r.status == fanout::PublishStatus::kAccepted) ++accepted;
  }

  // 6. Wait for the outcomes (a 503 would be retried after 30 s: give up waiting after 20 s).
  const int delivered = observer.wait_for(accepted, std::chrono::seconds(20));

  // 7. Stop: in-flight attempts get up to 2 s to finish; everything not final is handed back.
  for (const fanout::Unfinished& u : engine.stop(std::chrono::milliseconds(2000))) {
    std::printf("unfinished: event %s (org %lld, %s), %u attempt(s) made, %zu-byte body\n",
                u.event_id.c_str(), static_cast<long long>(u.org_id), u.event_type.c_str(),
                u.attempts, u.body.size());
  }
  const fanout::EngineStats st = engine.stats();
  std::printf("published %llu, delivered %llu, attempts %llu\n",
              static_cast<unsigned long long>(st.published),
              static_cast<unsigned long long>(st.delivered),
              static_cast<unsigned long long>(st.attempts));
  return delivered == 3 ? 0 : 1;
}
