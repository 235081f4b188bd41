// The engine end to end against receivers on loopback (tests/support/receiver.h): the
// contract's outcomes and headers, the retry schedule, signing, refusals and budgets, routing
// changes between attempts. Network failures and one origin's trouble kept from another:
// engine_network_test.cc; stop and resume: engine_stop_test.cc; real peers (nghttpd,
// fanout-sink): engine_peers_test.cc.
#include "fanout/engine.h"

#include <gtest/gtest.h>

#include <chrono>
#include <condition_variable>
#include <csignal>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "engine/signer.h"
#include "fanout/version.h"
#include "tests/engine/engine_cases.h"
#include "tests/support/peers.h"
#include "tests/support/receiver.h"
#include "tests/transport/spawn_on_loop.h"
#include "tests/transport/test_peers.h"

namespace fanout {
namespace {

using namespace engine_testing;  // EngineTest and its helpers (engine_cases.h)

TEST(BackoffTest, FollowsTheContractScheduleWithoutJitter) {
  RetryPolicy p;
  p.jitter = 0;
  EXPECT_EQ(backoff_ms(p, 1, 0.5), 30'000u);
  EXPECT_EQ(backoff_ms(p, 2, 0.5), 90'000u);
  EXPECT_EQ(backoff_ms(p, 3, 0.5), 270'000u);
  EXPECT_EQ(backoff_ms(p, 4, 0.5), 810'000u);
  EXPECT_EQ(backoff_ms(p, 5, 0.5), 2'430'000u);
}

TEST(BackoffTest, JitterStaysWithinTwentyPercent) {
  RetryPolicy p;  // jitter 0.2
  EXPECT_EQ(backoff_ms(p, 1, 0.0), 24'000u);
  EXPECT_EQ(backoff_ms(p, 1, 0.5), 30'000u);
  EXPECT_EQ(backoff_ms(p, 1, 0.99), 35'880u);
  EXPECT_EQ(backoff_ms(p, 2, 0.0), 72'000u);
}

TEST(BackoffTest, IsCapped) {
  RetryPolicy p;
  p.jitter = 0;
  p.cap_ms = 100'000;
  EXPECT_EQ(backoff_ms(p, 5, 0.5), 100'000u);
}

TEST_F(EngineTest, OkIsDeliveredInOneAttemptWithEveryHeader) {
  Receiver rx([](const Received&, std::size_t) { return 200; });
  start(test_options(), rx.port());
  auto p = engine_->make_producer();
  const PublishResult r = p.publish(event("evt-1"));
  ASSERT_EQ(r.status, PublishStatus::kAccepted);
  EXPECT_EQ(r.event_id, "evt-1");
  ASSERT_TRUE(collector_.wait_for(1));
  const auto out = collector_.outcomes();
  EXPECT_EQ(out[0].kind, OutcomeKind::kDelivered);
  EXPECT_EQ(out[0].attempts, 1u);
  EXPECT_EQ(out[0].last_status, 200);
  EXPECT_GT(out[0].last_response_us, 0u) << "a round trip through a receiver on another thread";
  EXPECT_EQ(out[0].subscription_id, 7);
  const auto got = rx.received();
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].path, "/hook?x=1");
  EXPECT_EQ(got[0].body,
            R"({"type":"business_updated","payload":{"business":{"id":"b1","name":"Café"}}})");
  EXPECT_EQ(got[0].headers.at("x-auth-token"), "s3cr3t");
  EXPECT_EQ(got[0].headers.at("x-tenant"), "acme");
  EXPECT_EQ(got[0].headers.at("x-partoo-event-id"), "evt-1");
  EXPECT_EQ(got[0].headers.at("x-partoo-attempt"), "1");
  EXPECT_EQ(got[0].headers.at("content-type"), "application/json");
  EXPECT_EQ(got[0].headers.at("user-agent"), "fanout/" + std::string(version()));
  EXPECT_EQ(got[0].headers.count("x-partoo-signature-v1"), 0u) << "unsigned without a key";
}

TEST_F(EngineTest, NotFoundIsRejectedAfterOneAttempt) {
  Receiver rx([](const Received&, std::size_t) { return 404; });
  start(test_options(), rx.port());
  auto p = engine_->make_producer();
  ASSERT_EQ(p.publish(event("e404")).status, PublishStatus::kAccepted);
  ASSERT_TRUE(collector_.wait_for(1));
  EXPECT_EQ(collector_.outcomes()[0].kind, OutcomeKind::kRejected);
  EXPECT_EQ(collector_.outcomes()[0].attempts, 1u);
  EXPECT_EQ(rx.count(), 1u);
}

TEST_F(EngineTest, RedirectIsRejectedAndNeverFollowed) {
  // Every 3xx that a client following redirects would follow, each pointing at a second
  // receiver on the same address: it must never hear of the event.
  Receiver elsewhere([](const Received&, std::size_t) { return 200; });
  std::size_t n = 0;
  for (const int status : {301, 302, 303, 307, 308}) {
    SCOPED_TRACE(status);
    Receiver rx([status](const Received&, std::size_t) { return status; },
                Receiver::Keep::kEverything, {{}, {{"location", elsewhere.url("/stolen")}}});
    start(test_options(), rx.port());
    {
      auto p = engine_->make_producer();  // a producer must not outlive its engine
      ASSERT_EQ(p.publish(event("e3xx")).status, PublishStatus::kAccepted);
    }
    ASSERT_TRUE(collector_.wait_for(++n));
    const auto out = collector_.outcomes()[n - 1];
    EXPECT_EQ(out.kind, OutcomeKind::kRejected);
    EXPECT_EQ(out.last_status, status);
    EXPECT_EQ(out.attempts, 1u);
    EXPECT_EQ(rx.count(), 1u);
    EXPECT_TRUE(engine_->stop(std::chrono::seconds(10)).empty());
    engine_.reset();
  }
  // The engines are stopped: whatever they would have sent has been sent.
  EXPECT_EQ(elsewhere.count(), 0u) << "a redirect was followed";
}

TEST_F(EngineTest, ServerErrorIsTriedSixTimesThenExhausted) {
  Receiver rx([](const Received&, std::size_t) { return 500; });
  start(test_options(), rx.port());
  auto p = engine_->make_producer();
  ASSERT_EQ(p.publish(event("e500")).status, PublishStatus::kAccepted);
  ASSERT_TRUE(collector_.wait_for(1));
  const auto out = collector_.outcomes();
  EXPECT_EQ(out[0].kind, OutcomeKind::kExhausted);
  EXPECT_EQ(out[0].attempts, 6u);
  const auto got = rx.received();
  ASSERT_EQ(got.size(), 6u);
  for (std::size_t i = 0; i < got.size(); ++i) {
    EXPECT_EQ(got[i].headers.at("x-partoo-attempt"), std::to_string(i + 1));
    EXPECT_EQ(got[i].headers.at("x-partoo-event-id"), "e500") << "the same id on every attempt";
  }
}

TEST_F(EngineTest, TwoUnavailableThenOkIsDeliveredOnTheThirdAttempt) {
  Receiver rx([](const Received&, std::size_t i) { return i < 2 ? 503 : 200; });
  start(test_options(), rx.port());
  auto p = engine_->make_producer();
  ASSERT_EQ(p.publish(event("e503")).status, PublishStatus::kAccepted);
  ASSERT_TRUE(collector_.wait_for(1));
  EXPECT_EQ(collector_.outcomes()[0].kind, OutcomeKind::kDelivered);
  EXPECT_EQ(collector_.outcomes()[0].attempts, 3u);
  EXPECT_EQ(rx.count(), 3u);
}

TEST_F(EngineTest, SignatureVerifiesWithThePublicKey) {
  Receiver rx([](const Received&, std::size_t) { return 200; });
  const engine::Signer key = engine::Signer::generate();
  EngineOptions o = test_options();
  o.signing_key_pem = key.private_key_pem();
  start(o, rx.port());
  auto p = engine_->make_producer();
  ASSERT_EQ(p.publish(event("signed")).status, PublishStatus::kAccepted);
  ASSERT_TRUE(collector_.wait_for(1));
  const auto got = rx.received();
  ASSERT_EQ(got.size(), 1u);
  const std::string& sig = got[0].headers.at("x-partoo-signature-v1");
  EXPECT_TRUE(engine::Signer::verify_base64(key.public_key(), got[0].body, sig));
  EXPECT_FALSE(engine::Signer::verify_base64(key.public_key(), got[0].body + " ", sig));
}

// EngineOptions::signing_threads: the Partoo signature is made off the workers, before the
// delivery reaches its worker; every delivery, its retries included, carries a signature of its
// own body, and the engine counts each one as made by the signing threads.
TEST_F(EngineTest, SigningThreadsSignEveryDeliveryBeforeItsWorker) {
  constexpr std::size_t kEvents = 300;
  // Every third event is answered 503 once: its retry must carry the same signature.
  Receiver rx([](const Received& r, std::size_t) {
    const std::string& id = r.headers.at("x-partoo-event-id");
    const bool first = r.headers.at("x-partoo-attempt") == "1";
    return first && std::stoul(id.substr(1)) % 3 == 0 ? 503 : 200;
  });
  const engine::Signer key = engine::Signer::generate();
  EngineOptions o = test_options();
  o.signing_key_pem = key.private_key_pem();
  o.signing_threads = 2;
  o.workers = 2;
  start(o, rx.port());
  auto p = engine_->make_producer();
  for (std::size_t i = 0; i < kEvents; ++i) {
    ASSERT_EQ(p.publish(event("e" + std::to_string(i))).status, PublishStatus::kAccepted);
  }
  ASSERT_TRUE(collector_.wait_for(kEvents));
  for (const auto& out : collector_.outcomes()) {
    EXPECT_EQ(out.kind, OutcomeKind::kDelivered) << out.event_id;
  }
  const auto got = rx.received();
  ASSERT_EQ(got.size(), kEvents + kEvents / 3);
  std::map<std::string, std::string> first_signature;
  for (const Received& r : got) {
    const std::string& id = r.headers.at("x-partoo-event-id");
    const std::string& sig = r.headers.at("x-partoo-signature-v1");
    EXPECT_TRUE(engine::Signer::verify_base64(key.public_key(), r.body, sig)) << id;
    auto [it, fresh] = first_signature.emplace(id, sig);
    if (!fresh) {
      EXPECT_EQ(it->second, sig) << id << ": its retry was signed again";
    }
  }
  EXPECT_EQ(first_signature.size(), kEvents);
  EXPECT_EQ(engine_->stats().signed_off_worker, kEvents);
}

// A key given without signing threads: the workers sign, and the count stays 0.
TEST_F(EngineTest, WithoutSigningThreadsTheWorkerSigns) {
  Receiver rx([](const Received&, std::size_t) { return 200; });
  EngineOptions o = test_options();
  o.signing_key_pem = engine::Signer::generate().private_key_pem();
  start(o, rx.port());
  auto p = engine_->make_producer();
  ASSERT_EQ(p.publish(event("w")).status, PublishStatus::kAccepted);
  ASSERT_TRUE(collector_.wait_for(1));
  EXPECT_FALSE(rx.received()[0].headers.at("x-partoo-signature-v1").empty());
  EXPECT_EQ(engine_->stats().signed_off_worker, 0u);
}

// partoo_signature = false: a key is configured, yet no delivery carries X-Partoo-Signature-v1,
// and the signing threads asked for are not started (nothing for them to sign).
TEST_F(EngineTest, WithoutThePartooSignatureNothingIsSigned) {
  Receiver rx([](const Received&, std::size_t) { return 200; });
  EngineOptions o = test_options();
  o.signing_key_pem = engine::Signer::generate().private_key_pem();
  o.partoo_signature = false;
  o.signing_threads = 2;
  start(o, rx.port());
  auto p = engine_->make_producer();
  for (int i = 0; i < 5; ++i) {
    ASSERT_EQ(p.publish(event("u" + std::to_string(i))).status, PublishStatus::kAccepted);
  }
  ASSERT_TRUE(collector_.wait_for(5));
  const auto got = rx.received();
  ASSERT_EQ(got.size(), 5u);
  for (const auto& r : got) {
    EXPECT_EQ(r.headers.count("x-partoo-signature-v1"), 0u);
    EXPECT_EQ(r.headers.count("x-partoo-event-id"), 1u);
  }
  EXPECT_EQ(engine_->stats().signed_off_worker, 0u);
}

TEST(EngineOptionsTest, SigningThreadsAreBounded) {
  fanout::testing::Collector collector;
  EngineOptions o = test_options();
  o.signing_threads = 257;
  auto e = Engine::create(o, &collector);
  ASSERT_FALSE(e.has_value());
  EXPECT_EQ(e.error(), "signing_threads: at most 256");
}

// While a delivery waits for its retry it is a WaitingRetry, not a Delivery (engine/worker.h):
// the retry must go out exactly as the first attempt did (id, body, signature, custom headers),
// with the attempt number moved on.
TEST_F(EngineTest, ARetryIsSentAsTheFirstAttemptWasWithItsSignature) {
  Receiver rx([](const Received&, std::size_t i) { return i < 2 ? 503 : 200; });
  const engine::Signer key = engine::Signer::generate();
  EngineOptions o = test_options();
  o.signing_key_pem = key.private_key_pem();
  start(o, rx.port());
  auto p = engine_->make_producer();
  ASSERT_EQ(p.publish(event("again")).status, PublishStatus::kAccepted);
  ASSERT_TRUE(collector_.wait_for(1));
  EXPECT_EQ(collector_.outcomes()[0].kind, OutcomeKind::kDelivered);
  const auto got = rx.received();
  ASSERT_EQ(got.size(), 3u);
  const std::string& sig = got[0].headers.at("x-partoo-signature-v1");
  EXPECT_TRUE(engine::Signer::verify_base64(key.public_key(), got[0].body, sig));
  for (std::size_t i = 1; i < got.size(); ++i) {
    EXPECT_EQ(got[i].body, got[0].body);
    EXPECT_EQ(got[i].headers.at("x-partoo-signature-v1"), sig) << "attempt " << i + 1;
    EXPECT_EQ(got[i].headers.at("x-partoo-event-id"), "again");
    EXPECT_EQ(got[i].headers.at("x-auth-token"), "s3cr3t");
    EXPECT_EQ(got[i].headers.at("x-tenant"), "acme");
    EXPECT_EQ(got[i].headers.at("x-partoo-attempt"), std::to_string(i + 1));
  }
  EXPECT_EQ(engine_->stats().waiting_retry_bytes, 0u);
}

// Issue 16: a waiting retry costs at most 300 bytes beyond its body. The engine counts what its
// blocks hold (waiting_retry_bytes: state, id, body); malloc adds at most 23 (its 8-byte header,
// rounded up to 16), so the state and the id must stay within 277.
TEST_F(EngineTest, AWaitingRetryHoldsLittleMoreThanItsBody) {
  Receiver rx([](const Received&, std::size_t i) { return i == 0 ? 503 : 200; });
  const engine::Signer key = engine::Signer::generate();
  EngineOptions o = test_options();
  o.signing_key_pem = key.private_key_pem();
  o.retry.base_ms = 600'000;  // waits for the rest of the test
  start(o, rx.port());
  auto p = engine_->make_producer();
  ASSERT_EQ(p.publish(event("waits")).status, PublishStatus::kAccepted);
  ASSERT_TRUE(rx.wait_for(1));
  // Answered on the same connection after the 503: once its outcome is in, "waits" waits.
  ASSERT_EQ(p.publish(event("barrier")).status, PublishStatus::kAccepted);
  ASSERT_TRUE(collector_.wait_for(1));
  const EngineStats st = engine_->stats();
  ASSERT_EQ(st.waiting_retry, 1u);
  const std::size_t body = rx.received()[0].body.size();
  ASSERT_GT(st.waiting_retry_bytes, body);
  std::printf("a waiting retry: %ju bytes for a %zu-byte body\n",
              static_cast<std::uintmax_t>(st.waiting_retry_bytes), body);
  EXPECT_LE(st.waiting_retry_bytes - body, 277u);
  auto left = engine_->stop(std::chrono::milliseconds(0));
  ASSERT_EQ(left.size(), 1u);
  EXPECT_EQ(left[0].event_id, "waits");
  EXPECT_EQ(left[0].body, rx.received()[0].body);
  EXPECT_EQ(left[0].attempts, 1u);
  EXPECT_EQ(engine_->stats().waiting_retry_bytes, 0u);
}

TEST_F(EngineTest, RefusesInvalidEventsAndPairsWithoutSubscription) {
  Receiver rx([](const Received&, std::size_t) { return 200; });
  start(test_options(), rx.port());
  auto p = engine_->make_producer();
  const PublishResult bad = p.publish(R"({"org_id":42,"type":"nope","payload":{}})");
  EXPECT_EQ(bad.status, PublishStatus::kInvalid);
  EXPECT_EQ(bad.reason, "unknown_type");
  EXPECT_EQ(p.publish(R"({"org_id":43,"type":"business_updated","payload":{}})").status,
            PublishStatus::kNoSubscription);
  const EngineStats st = engine_->stats();
  EXPECT_EQ(st.refused_invalid, 1u);
  EXPECT_EQ(st.refused_no_subscription, 1u);
  EXPECT_EQ(st.published, 0u);
}

TEST_F(EngineTest, PublishHandsBackTheParsedEnvelope) {
  Receiver rx([](const Received&, std::size_t) { return 200; });
  start(test_options(), rx.port());
  auto p = engine_->make_producer();
  const PublishResult ok =
      p.publish(R"({"id":"env-1","org_id":42,"type":"business_updated","payload": {"a": 1} })");
  ASSERT_EQ(ok.status, PublishStatus::kAccepted);
  EXPECT_EQ(ok.event_id, "env-1");
  EXPECT_EQ(ok.org_id, 42);
  EXPECT_EQ(engine_->catalogue().name(ok.type), "business_updated");
  EXPECT_EQ(ok.payload, R"({"a": 1})");
  const PublishResult none =
      p.publish(R"({"id":"env-2","org_id":43,"type":"lead_received","payload":{}})");
  ASSERT_EQ(none.status, PublishStatus::kNoSubscription);
  EXPECT_EQ(none.event_id, "env-2");
  EXPECT_EQ(none.org_id, 43);
  EXPECT_EQ(engine_->catalogue().name(none.type), "lead_received");
  EXPECT_EQ(none.payload, "{}");
  ASSERT_TRUE(collector_.wait_for(1));
}

TEST_F(EngineTest, DeletedSubscriptionDropsTheNextAttempt) {
  // The receiver holds the first attempt until the subscription is gone, then answers 503: the
  // retry finds no subscription whatever the backoff (the order is the test's, not a clock's).
  Receiver rx([](const Received&, std::size_t) { return Receiver::kHold; });
  start(test_options(), rx.port());
  auto p = engine_->make_producer();
  ASSERT_EQ(p.publish(event("drop-me")).status, PublishStatus::kAccepted);
  ASSERT_TRUE(rx.wait_for(1));
  EXPECT_TRUE(engine_->remove(42, "business_updated"));
  rx.release_held(503);
  ASSERT_TRUE(collector_.wait_for(1));
  EXPECT_EQ(collector_.outcomes()[0].kind, OutcomeKind::kDropped);
  EXPECT_EQ(collector_.outcomes()[0].attempts, 1u);
  EXPECT_EQ(rx.count(), 1u);
}

TEST_F(EngineTest, BusyWhenTheBudgetIsFullAndNothingIsLost) {
  Receiver rx([](const Received&, std::size_t) { return 0; });  // black hole: nothing completes
  EngineOptions o = test_options();
  o.max_in_flight = 3;
  start(o, rx.port());
  auto p = engine_->make_producer();
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(p.publish(event("b" + std::to_string(i))).status, PublishStatus::kAccepted);
  }
  EXPECT_EQ(p.publish(event("b3")).status, PublishStatus::kBusy);
  EXPECT_EQ(engine_->stats().refused_busy, 1u);
  // Stopping hands the three back: accepted events are never lost.
  auto left = engine_->stop(std::chrono::milliseconds(0));
  EXPECT_EQ(left.size(), 3u);
  std::set<std::string> ids;
  for (const auto& u : left) ids.insert(u.event_id);
  EXPECT_EQ(ids, (std::set<std::string>{"b0", "b1", "b2"}));
  EXPECT_EQ(p.publish(event("late")).status, PublishStatus::kStopped);
  // TearDown's stop() returns nothing more (stop is idempotent). The engine itself stays until
  // then: a Producer must not outlive its Engine.
}

// PublishResult::event_id is the Producer's own copy: the Delivery may be freed by the worker as
// soon as it is queued (a view into it would be a TSan race and an ASan use-after-free).
TEST_F(EngineTest, EventIdOfTheResultStaysValidUntilTheNextPublish) {
  Receiver rx([](const Received&, std::size_t) { return 200; });
  start(test_options(), rx.port());
  auto p = engine_->make_producer();
  const std::string id(40, 'k');  // longer than any small-string buffer: its bytes are on the heap
  const PublishResult r = p.publish(event(id));
  ASSERT_EQ(r.status, PublishStatus::kAccepted);
  ASSERT_TRUE(collector_.wait_for(1));
  EXPECT_TRUE(engine_->stop(std::chrono::milliseconds(0)).empty());
  // No publish() since: the view must still be valid.
  EXPECT_EQ(std::string(r.event_id), id);
}

// --- Routing changes between attempts -----------------------------------------------------------

TEST_F(EngineTest, AFullOriginQueueIsNotAnAttempt) {
  // One stream and room for two more in the origin's queue; the first request is held, so the
  // other 17 are refused by the client (queue full) before anything is sent. They wait in the
  // worker and go out as room returns: each is delivered at its first attempt.
  Receiver rx([](const Received&, std::size_t i) { return i == 0 ? Receiver::kHold : 200; });
  EngineOptions o = test_options();
  o.max_connections_per_origin = 1;
  o.max_streams_per_connection = 1;
  o.max_pending_per_origin = 2;
  start(o, rx.port());
  auto p = engine_->make_producer();
  constexpr int kEvents = 20;
  for (int i = 0; i < kEvents; ++i) {
    ASSERT_EQ(p.publish(event("q" + std::to_string(i))).status, PublishStatus::kAccepted);
  }
  ASSERT_TRUE(rx.wait_for(1));
  rx.release_held(200);
  ASSERT_TRUE(collector_.wait_for(kEvents));
  for (const auto& o2 : collector_.outcomes()) {
    EXPECT_EQ(o2.kind, OutcomeKind::kDelivered) << o2.event_id;
    EXPECT_EQ(o2.attempts, 1u) << o2.event_id << ": a local refusal counted as an attempt";
  }
  const auto got = rx.received();
  ASSERT_EQ(got.size(), static_cast<std::size_t>(kEvents));
  for (const auto& g : got) EXPECT_EQ(g.headers.at("x-partoo-attempt"), "1");
  EXPECT_EQ(engine_->stats().attempts, static_cast<std::uint64_t>(kEvents));
}

TEST_F(EngineTest, UrlChangeTakesEffectForTheRetry) {
  // The first receiver holds the first attempt until the route has moved, then answers 503:
  // the order of events is fixed by the test, not by a clock.
  Receiver before([](const Received&, std::size_t) { return Receiver::kHold; });
  Receiver after([](const Received&, std::size_t) { return 200; });
  start(test_options(), before.port());
  auto p = engine_->make_producer();
  ASSERT_EQ(p.publish(event("moved")).status, PublishStatus::kAccepted);
  ASSERT_TRUE(before.wait_for(1));
  subscribe(7, 42, after.url("/new"), {{"X-Tenant", "globex"}});  // same id, new URL and headers
  before.release_held(503);
  ASSERT_TRUE(collector_.wait_for(1));
  const auto out = collector_.outcomes();
  EXPECT_EQ(out[0].kind, OutcomeKind::kDelivered);
  EXPECT_EQ(out[0].attempts, 2u);
  EXPECT_EQ(out[0].subscription_id, 7);
  EXPECT_EQ(before.count(), 1u);
  const auto got = after.received();
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].path, "/new");
  EXPECT_EQ(got[0].headers.at("x-partoo-attempt"), "2");
  EXPECT_EQ(got[0].headers.at("x-partoo-event-id"), "moved");
  EXPECT_EQ(got[0].headers.at("x-tenant"), "globex");
  EXPECT_EQ(got[0].headers.count("x-auth-token"), 0u) << "the old headers went with the old URL";
}

TEST_F(EngineTest, SubscriptionReplacedByAnotherIdDropsTheRetry) {
  Receiver before([](const Received&, std::size_t) { return Receiver::kHold; });
  Receiver after([](const Received&, std::size_t) { return 200; });
  start(test_options(), before.port());
  auto p = engine_->make_producer();
  ASSERT_EQ(p.publish(event("replaced")).status, PublishStatus::kAccepted);
  ASSERT_TRUE(before.wait_for(1));
  subscribe(8, 42, after.url());  // the same (org, type) under a new id
  before.release_held(503);
  ASSERT_TRUE(collector_.wait_for(1));
  const auto out = collector_.outcomes();
  EXPECT_EQ(out[0].kind, OutcomeKind::kDropped);
  EXPECT_EQ(out[0].attempts, 1u);
  EXPECT_EQ(out[0].subscription_id, 7);
  EXPECT_EQ(after.count(), 0u);
  // Later events go to the new subscription.
  ASSERT_EQ(p.publish(event("next")).status, PublishStatus::kAccepted);
  ASSERT_TRUE(collector_.wait_for(2));
  EXPECT_EQ(collector_.outcomes()[1].kind, OutcomeKind::kDelivered);
  EXPECT_EQ(collector_.outcomes()[1].subscription_id, 8);
  EXPECT_EQ(after.count(), 1u);
}

}  // namespace
}  // namespace fanout
