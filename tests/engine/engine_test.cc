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
#include "tests/support/collector.h"
#include "tests/support/engine_fixture.h"
#include "tests/support/peers.h"
#include "tests/support/receiver.h"
#include "tests/transport/spawn_on_loop.h"
#include "tests/transport/test_peers.h"

namespace fanout {
namespace {

using fanout::testing::Collector;
using fanout::testing::Received;
using fanout::testing::Receiver;

std::string event_for(std::int64_t org_id, const std::string& id) {
  return fanout::test_support::event_json(org_id, id);
}

// Milliseconds instead of minutes between attempts: the schedule's shape is tested on
// backoff_ms itself.
EngineOptions test_options() {
  return fanout::test_support::loopback_engine_options();
}

class EngineTest : public fanout::test_support::EngineFixture {
 protected:
  void start(EngineOptions o, std::uint16_t port) {
    create(std::move(o));
    ASSERT_TRUE(engine_);
    subscribe(7, 42, "http://127.0.0.1:" + std::to_string(port) + "/hook?x=1",
              {{"X-Auth-Token", "s3cr3t"}, {"X-Tenant", "acme"}});
    run();
  }
  static std::string event(const std::string& id) {
    return fanout::test_support::event_json(42, id, R"({"business":{"id":"b1","name":"Café"}})");
  }
};

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

// --- Network failures ---------------------------------------------------------------------------

TEST_F(EngineTest, BlackHoleTimesOutAndIsRetriedUntilExhausted) {
  Receiver rx([](const Received&, std::size_t) { return Receiver::kNoAnswer; });
  EngineOptions o = test_options();
  o.response_timeout_ms = 50;
  start(o, rx.port());
  auto p = engine_->make_producer();
  ASSERT_EQ(p.publish(event("hole")).status, PublishStatus::kAccepted);
  ASSERT_TRUE(collector_.wait_for(1));
  const auto out = collector_.outcomes();
  EXPECT_EQ(out[0].kind, OutcomeKind::kExhausted);
  EXPECT_EQ(out[0].attempts, 6u);
  EXPECT_EQ(out[0].last_status, 0);
  EXPECT_EQ(out[0].last_failure, "response timeout");
  EXPECT_EQ(out[0].last_response_us, 0u) << "no answer, no round trip";
  // The sixth attempt times out 50 ms after it is sent, which can be before the receiver's
  // thread has taken it in: wait for it rather than read the count at once.
  ASSERT_TRUE(rx.wait_for(6));
  const auto got = rx.received();
  ASSERT_EQ(got.size(), 6u) << "each timed-out attempt reached the receiver";
  for (std::size_t i = 0; i < got.size(); ++i) {
    EXPECT_EQ(got[i].headers.at("x-partoo-attempt"), std::to_string(i + 1));
    EXPECT_EQ(got[i].headers.at("x-partoo-event-id"), "hole");
  }
  // Outcome counters are final once the workers have stopped (the observer hears first).
  EXPECT_TRUE(engine_->stop(std::chrono::milliseconds(0)).empty());
  const EngineStats st = engine_->stats();
  EXPECT_EQ(st.attempts_failed, 6u);
  EXPECT_EQ(st.exhausted, 1u);
  EXPECT_EQ(st.in_flight, 0u);
}

TEST_F(EngineTest, StreamResetsAreRetriedUntilExhausted) {
  Receiver rx([](const Received&, std::size_t) { return Receiver::kReset; });
  start(test_options(), rx.port());
  auto p = engine_->make_producer();
  ASSERT_EQ(p.publish(event("rst")).status, PublishStatus::kAccepted);
  ASSERT_TRUE(collector_.wait_for(1));
  const auto out = collector_.outcomes();
  EXPECT_EQ(out[0].kind, OutcomeKind::kExhausted);
  EXPECT_EQ(out[0].attempts, 6u);
  EXPECT_EQ(out[0].last_failure, "stream reset by peer");
  EXPECT_EQ(rx.count(), 6u);
}

TEST_F(EngineTest, ResetStreamAndClosedConnectionAreRetriedThenDelivered) {
  Receiver rx([](const Received&, std::size_t i) {
    return i == 0 ? Receiver::kReset : i == 1 ? Receiver::kCloseConnection : 200;
  });
  start(test_options(), rx.port());
  auto p = engine_->make_producer();
  ASSERT_EQ(p.publish(event("flaky")).status, PublishStatus::kAccepted);
  ASSERT_TRUE(collector_.wait_for(1));
  const auto out = collector_.outcomes();
  EXPECT_EQ(out[0].kind, OutcomeKind::kDelivered);
  EXPECT_EQ(out[0].attempts, 3u) << "a reset and a lost connection each count as an attempt";
  EXPECT_EQ(out[0].last_status, 200);
  const auto got = rx.received();
  ASSERT_EQ(got.size(), 3u);
  for (std::size_t i = 0; i < got.size(); ++i) {
    EXPECT_EQ(got[i].headers.at("x-partoo-attempt"), std::to_string(i + 1));
    EXPECT_EQ(got[i].headers.at("x-partoo-event-id"), "flaky");
  }
}

// --- Isolation ----------------------------------------------------------------------------------

TEST_F(EngineTest, BlackHoledOriginDoesNotHoldUpAHealthyOne) {
  constexpr int kEach = 200;
  Receiver healthy([](const Received&, std::size_t) { return 200; });
  Receiver hole([](const Received&, std::size_t) { return Receiver::kNoAnswer; });
  EngineOptions o = test_options();
  o.workers = 1;                     // both origins share one loop and one client
  o.response_timeout_ms = 600'000;   // the black hole never produces an outcome by itself
  o.max_streams_per_connection = 8;  // the black hole takes 25 connections, all of them
  o.max_connections_per_origin = 32;
  create(o);
  ASSERT_TRUE(engine_);
  subscribe(1, 1, healthy.url());
  subscribe(2, 2, hole.url());
  run();
  auto p = engine_->make_producer();
  std::set<std::string> hole_ids;
  for (int i = 0; i < kEach; ++i) {
    const std::string id = "hole-" + std::to_string(i);
    ASSERT_EQ(p.publish(event_for(2, id)).status, PublishStatus::kAccepted);
    hole_ids.insert(id);
    ASSERT_EQ(p.publish(event_for(1, "ok-" + std::to_string(i))).status, PublishStatus::kAccepted);
  }
  ASSERT_TRUE(collector_.wait_for(kEach));
  std::size_t healthy_delivered = 0;
  for (const auto& c : collector_.outcomes()) {
    EXPECT_EQ(c.org_id, 1) << c.event_id << " ended (" << to_string(c.kind) << ", "
                           << c.last_failure << ") while its receiver was still silent";
    if (c.org_id == 1 && c.kind == OutcomeKind::kDelivered && c.attempts == 1) ++healthy_delivered;
  }
  EXPECT_EQ(healthy_delivered, static_cast<std::size_t>(kEach));
  EXPECT_EQ(healthy.count(), static_cast<std::size_t>(kEach));
  // Every black-holed request is in flight (sent, unanswered) before the engine stops.
  ASSERT_TRUE(hole.wait_for(kEach));

  auto left = engine_->stop(std::chrono::milliseconds(0));
  ASSERT_EQ(left.size(), static_cast<std::size_t>(kEach));
  std::set<std::string> left_ids;
  for (const auto& u : left) {
    left_ids.insert(u.event_id);
    EXPECT_EQ(u.org_id, 2);
    EXPECT_EQ(u.subscription_id, 2);
    EXPECT_EQ(u.event_type, "business_updated");
    EXPECT_EQ(u.body, R"({"type":"business_updated","payload":{"n":1}})");
    EXPECT_LE(u.attempts, 1u);
  }
  EXPECT_EQ(left_ids, hole_ids);
  EXPECT_EQ(collector_.outcomes().size(), static_cast<std::size_t>(kEach)) << "no late outcome";
  EXPECT_EQ(engine_->stats().in_flight, 0u);
}

// Requests queued behind a full pool are handed back by stop(): Client::close() aborts
// connections first and completes the queue at once, not through the timer wheel the worker
// has already closed by then.
TEST_F(EngineTest, StopHandsBackDeliveriesQueuedBehindAFullPool) {
  constexpr int kEvents = 20;
  Receiver hole([](const Received&, std::size_t) { return Receiver::kNoAnswer; });
  EngineOptions o = test_options();
  o.response_timeout_ms = 600'000;
  o.max_connections_per_origin = 1;
  o.max_streams_per_connection = 4;  // 4 in flight, 16 queued in the origin
  start(o, hole.port());
  auto p = engine_->make_producer();
  for (int i = 0; i < kEvents; ++i) {
    ASSERT_EQ(p.publish(event("q" + std::to_string(i))).status, PublishStatus::kAccepted);
  }
  ASSERT_TRUE(hole.wait_for(4));
  auto left = engine_->stop(std::chrono::milliseconds(0));
  EXPECT_EQ(left.size(), static_cast<std::size_t>(kEvents));
  for (const Unfinished& u : left) {
    EXPECT_EQ(u.attempts, 0u) << u.event_id;
    EXPECT_EQ(u.next_attempt_unix_ms, 0) << u.event_id << ": queued or in flight, due at once";
  }
  EXPECT_TRUE(collector_.outcomes().empty());
  EXPECT_EQ(engine_->stats().in_flight, 0u);
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

// --- Stop and resume: the next attempt's time ---------------------------------------------------

// Wall-clock ms since the epoch, the clock of Unfinished::next_attempt_unix_ms.
std::int64_t wall_ms() {
  using std::chrono::duration_cast;
  using std::chrono::milliseconds;
  using std::chrono::system_clock;
  return static_cast<std::int64_t>(
      duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count());
}

// What a daemon would have persisted for org 42's subscription 7.
Unfinished persisted(const std::string& id, std::uint32_t attempts, std::int64_t next_unix_ms) {
  Unfinished u;
  u.event_id = id;
  u.org_id = 42;
  u.event_type = "business_updated";
  u.body = R"({"type":"business_updated","payload":{"n":1}})";
  u.subscription_id = 7;
  u.attempts = attempts;
  u.next_attempt_unix_ms = next_unix_ms;
  return u;
}

std::map<std::string, Unfinished> by_id(std::vector<Unfinished> left) {
  std::map<std::string, Unfinished> m;
  for (auto& u : left) m.emplace(u.event_id, std::move(u));
  return m;
}

// Slack for the bounds below: clock reads, ms rounding and the loop's cached time, never speed.
constexpr std::int64_t kSlackMs = 1'000;

TEST_F(EngineTest, StopHandsBackAWaitingRetryWithTheTimeItWasDue) {
  Receiver rx([](const Received&, std::size_t i) { return i == 0 ? 503 : 200; });
  Receiver hole([](const Received&, std::size_t) { return Receiver::kNoAnswer; });
  EngineOptions o = test_options();
  o.retry.base_ms = 60'000;
  o.retry.jitter = 0.2;
  o.response_timeout_ms = 600'000;
  create(o);
  ASSERT_TRUE(engine_);
  subscribe(7, 42, rx.url());
  subscribe(8, 43, hole.url());
  run();
  auto p = engine_->make_producer();
  const std::int64_t before = wall_ms();
  ASSERT_EQ(p.publish(event("later")).status, PublishStatus::kAccepted);
  ASSERT_TRUE(rx.wait_for(1));
  // The 503 was written before this one is even sent, on the same h2c connection: once its
  // outcome is in, "later" has been answered and waits for its retry (60 s ± 20 %).
  ASSERT_EQ(p.publish(event("barrier")).status, PublishStatus::kAccepted);
  ASSERT_TRUE(collector_.wait_for(1));
  ASSERT_EQ(collector_.outcomes()[0].event_id, "barrier");
  EXPECT_EQ(engine_->stats().waiting_retry, 1u);
  // And one in flight, unanswered, when the engine stops.
  ASSERT_EQ(p.publish(event_for(43, "in-flight")).status, PublishStatus::kAccepted);
  ASSERT_TRUE(hole.wait_for(1));

  auto left = by_id(engine_->stop(std::chrono::milliseconds(0)));
  const std::int64_t after = wall_ms();
  ASSERT_EQ(left.size(), 2u);
  ASSERT_EQ(left.count("later"), 1u);
  const Unfinished& waiting = left.at("later");
  EXPECT_EQ(waiting.attempts, 1u);
  // Due when its backoff was: the first retry's jitter band, from when it could have started.
  const auto lo = static_cast<std::int64_t>(backoff_ms(o.retry, 1, 0.0));
  const auto hi = static_cast<std::int64_t>(backoff_ms(o.retry, 1, 1.0));
  EXPECT_GE(waiting.next_attempt_unix_ms, before + lo - kSlackMs);
  EXPECT_LE(waiting.next_attempt_unix_ms, after + hi + kSlackMs);
  ASSERT_EQ(left.count("in-flight"), 1u);
  EXPECT_EQ(left.at("in-flight").attempts, 0u) << "the cut attempt does not count";
  EXPECT_EQ(left.at("in-flight").next_attempt_unix_ms, 0) << "in flight: as soon as possible";
  EXPECT_EQ(engine_->stats().waiting_retry, 0u);
  EXPECT_EQ(engine_->stats().in_flight, 0u);
}

// A drain that outlives the attempt: answered 503 around stop(), the delivery is handed back due
// after its backoff, never at once. (Whether the 503 arrives before the worker begins stopping,
// so it waits and is handed back with what is left, or while it drains, so it is handed back
// with a fresh backoff, the time is in the same band.)
TEST_F(EngineTest, RetryAnsweredAroundStopIsHandedBackAfterItsBackoff) {
  Receiver rx([](const Received&, std::size_t) { return Receiver::kHold; });
  EngineOptions o = test_options();
  o.retry.base_ms = 60'000;
  o.retry.jitter = 0.2;
  o.response_timeout_ms = 600'000;
  start(o, rx.port());
  auto p = engine_->make_producer();
  const std::int64_t before = wall_ms();
  ASSERT_EQ(p.publish(event("drained")).status, PublishStatus::kAccepted);
  ASSERT_TRUE(rx.wait_for(1));
  std::vector<Unfinished> left;
  // The drain limit is a bound for failure only: stop() returns once the attempt has ended.
  std::thread stopper([&] { left = engine_->stop(std::chrono::seconds(120)); });
  rx.release_held(503);
  stopper.join();
  const std::int64_t after = wall_ms();
  ASSERT_EQ(left.size(), 1u);
  EXPECT_EQ(left[0].event_id, "drained");
  EXPECT_EQ(left[0].attempts, 1u);
  const auto lo = static_cast<std::int64_t>(backoff_ms(o.retry, 1, 0.0));
  const auto hi = static_cast<std::int64_t>(backoff_ms(o.retry, 1, 1.0));
  EXPECT_GE(left[0].next_attempt_unix_ms, before + lo - kSlackMs);
  EXPECT_LE(left[0].next_attempt_unix_ms, after + hi + kSlackMs);
  EXPECT_TRUE(collector_.outcomes().empty());
}

TEST_F(EngineTest, ResumeIsNeverRefusedBusy) {
  // Deliveries handed back by a stop were accepted once: resuming more of them than the budget
  // holds takes them all (the budget refuses new events only), and all are delivered.
  Receiver rx([](const Received&, std::size_t) { return 200; });
  EngineOptions o = test_options();
  o.max_in_flight = 2;
  start(o, rx.port());
  auto p = engine_->make_producer();
  constexpr int kSaved = 6;
  for (int i = 0; i < kSaved; ++i) {
    EXPECT_EQ(p.resume(persisted("saved" + std::to_string(i), 1, 0)).status,
              PublishStatus::kAccepted);
  }
  ASSERT_TRUE(collector_.wait_for(kSaved));
  for (const auto& c : collector_.outcomes()) {
    EXPECT_EQ(c.kind, OutcomeKind::kDelivered) << c.event_id;
    EXPECT_EQ(c.attempts, 2u) << c.event_id << ": attempts continue from the saved count";
  }
  EXPECT_EQ(engine_->stats().refused_busy, 0u);
}

TEST_F(EngineTest, ResumeWithAPastOrNoDueTimeAttemptsAtOnce) {
  Receiver rx([](const Received&, std::size_t) { return 200; });
  EngineOptions o = test_options();
  // Any wait would be an hour: the collector would give up long before.
  o.retry.base_ms = 3'600'000;
  o.retry.cap_ms = 3'600'000;
  start(o, rx.port());
  auto p = engine_->make_producer();
  const PublishResult r = p.resume(persisted("past", 2, wall_ms() - 5'000));
  ASSERT_EQ(r.status, PublishStatus::kAccepted);
  EXPECT_EQ(r.event_id, "past");
  ASSERT_EQ(p.resume(persisted("asap", 4, 0)).status, PublishStatus::kAccepted);
  ASSERT_TRUE(collector_.wait_for(2));
  std::map<std::string, Collector::Copy> out;
  for (const auto& c : collector_.outcomes()) out[c.event_id] = c;
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(out["past"].kind, OutcomeKind::kDelivered);
  EXPECT_EQ(out["past"].attempts, 3u) << "attempts continue from u.attempts";
  EXPECT_EQ(out["asap"].kind, OutcomeKind::kDelivered);
  EXPECT_EQ(out["asap"].attempts, 5u);
  std::map<std::string, std::string> attempt_header;
  for (const Received& got : rx.received()) {
    attempt_header[got.headers.at("x-partoo-event-id")] = got.headers.at("x-partoo-attempt");
    EXPECT_EQ(got.body, R"({"type":"business_updated","payload":{"n":1}})");
  }
  EXPECT_EQ(attempt_header, (std::map<std::string, std::string>{{"past", "3"}, {"asap", "5"}}));
  EXPECT_EQ(engine_->stats().waiting_retry, 0u);
}

TEST_F(EngineTest, ResumeWithAFutureDueTimeWaitsAndIsHandedBackStillDueThen) {
  Receiver rx([](const Received&, std::size_t) { return 200; });
  EngineOptions o = test_options();
  o.retry.cap_ms = 3'600'000;  // above the minute asked for: no cap here
  start(o, rx.port());
  auto p = engine_->make_producer();
  const std::int64_t due = wall_ms() + 60'000;
  ASSERT_EQ(p.resume(persisted("future", 2, due)).status, PublishStatus::kAccepted);
  // Same producer, same worker, one FIFO inbox: once the barrier's outcome is in, the worker has
  // taken "future" too, and parked it rather than attempting it.
  ASSERT_EQ(p.publish(event("barrier")).status, PublishStatus::kAccepted);
  ASSERT_TRUE(collector_.wait_for(1));
  ASSERT_EQ(collector_.outcomes().size(), 1u);
  EXPECT_EQ(collector_.outcomes()[0].event_id, "barrier");
  const auto answers = rx.answers();
  ASSERT_EQ(answers.size(), 1u) << "the resumed delivery was attempted before its time";
  EXPECT_EQ(answers[0].event_id, "barrier");
  const EngineStats st = engine_->stats();
  EXPECT_EQ(st.waiting_retry, 1u);
  EXPECT_EQ(st.attempts, 1u);

  const auto left = engine_->stop(std::chrono::milliseconds(0));
  ASSERT_EQ(left.size(), 1u);
  EXPECT_EQ(left[0].event_id, "future");
  EXPECT_EQ(left[0].attempts, 2u);
  EXPECT_GE(left[0].next_attempt_unix_ms, due - kSlackMs);
  EXPECT_LE(left[0].next_attempt_unix_ms, due + kSlackMs);
  EXPECT_EQ(left[0].body, R"({"type":"business_updated","payload":{"n":1}})");
  EXPECT_EQ(left[0].subscription_id, 7);
  EXPECT_EQ(collector_.outcomes().size(), 1u);
  EXPECT_EQ(engine_->stats().waiting_retry, 0u);
}

TEST_F(EngineTest, ResumeWaitIsCappedByTheRetryPolicy) {
  Receiver rx([](const Received&, std::size_t) { return 200; });
  EngineOptions o = test_options();
  o.retry.cap_ms = 50;
  start(o, rx.port());
  auto p = engine_->make_producer();
  constexpr std::int64_t kTenDaysMs = 10LL * 24 * 3'600'000;
  ASSERT_EQ(p.resume(persisted("far", 1, wall_ms() + kTenDaysMs)).status, PublishStatus::kAccepted);
  ASSERT_TRUE(collector_.wait_for(1));
  const auto out = collector_.outcomes();
  EXPECT_EQ(out[0].event_id, "far");
  EXPECT_EQ(out[0].kind, OutcomeKind::kDelivered);
  EXPECT_EQ(out[0].attempts, 2u);
  const auto got = rx.received();
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].headers.at("x-partoo-attempt"), "2");
  EXPECT_EQ(engine_->stats().waiting_retry, 0u);
}

// --- Real peers nobody here wrote ---------------------------------------------------------------

// nghttpd (nghttp2's server) over h2c: answers 200 to a POST on a file that exists.
class EngineNghttpdTest : public EngineTest {
 protected:
  void SetUp() override {
    if (!fanout::testing::have_program("nghttpd")) FANOUT_MISSING_PEER("nghttpd");
    dir_.write("hook", "");
  }
  std::uint16_t start_nghttpd() {
    // Port 0: nghttpd binds one itself, read back from its descriptors (/proc).
    peer_ = fanout::testing::Child(
        {"nghttpd", "--address=127.0.0.1", "--echo-upload", "-d", dir_.path(), "--no-tls", "0"});
    const auto ports = fanout::testing::wait_listening(peer_.pid());
    EXPECT_EQ(ports.size(), 1u) << "nghttpd did not start";
    return ports.empty() ? 0 : ports[0];
  }
  fanout::testing::ScratchDir dir_;
  fanout::testing::Child peer_;
};

TEST_F(EngineNghttpdTest, DeliversInOneAttemptOverH2c) {
  constexpr int kEvents = 50;
  const std::uint16_t port = start_nghttpd();
  create(test_options());
  ASSERT_TRUE(engine_);
  subscribe(7, 42, "http://127.0.0.1:" + std::to_string(port) + "/hook");
  run();
  auto p = engine_->make_producer();
  for (int i = 0; i < kEvents; ++i) {
    ASSERT_EQ(p.publish(event("ng-" + std::to_string(i))).status, PublishStatus::kAccepted);
  }
  ASSERT_TRUE(collector_.wait_for(kEvents));
  std::set<std::string> ids;
  for (const auto& c : collector_.outcomes()) {
    EXPECT_EQ(c.kind, OutcomeKind::kDelivered) << c.event_id << ": " << c.last_failure;
    EXPECT_EQ(c.attempts, 1u);
    EXPECT_EQ(c.last_status, 200);
    ids.insert(c.event_id);
  }
  EXPECT_EQ(ids.size(), static_cast<std::size_t>(kEvents));
  const EngineStats st = engine_->stats();
  EXPECT_EQ(st.attempts, static_cast<std::uint64_t>(kEvents));
  EXPECT_EQ(st.attempts_2xx, static_cast<std::uint64_t>(kEvents));
}

// fanout-sink, spawned on port 0 from the test thread's own loop (tests/tools/
// fanout_sink_test.cc does the same); its JSON summary after SIGTERM is the receiver's view.
class EngineSinkTest : public EngineTest {
 protected:
  void SetUp() override {
#ifndef FANOUT_SINK_PATH
    GTEST_SKIP() << "fanout-sink is not built (FANOUT_BUILD_TOOLS=OFF)";
#else
    ASSERT_EQ(uv_loop_init(&loop_), 0);
    loop_ready_ = true;
#endif
  }
  void TearDown() override {
    EngineTest::TearDown();
    if (!loop_ready_) return;
    if (sink_ != nullptr && !sink_->done()) {
      sink_->kill(SIGKILL);
      run_until([&] { return sink_->done(); });
    }
    uv_run(&loop_, UV_RUN_DEFAULT);
    EXPECT_EQ(uv_loop_close(&loop_), 0);
  }
  void run_until(const std::function<bool()>& done) {
    while (!done()) {
      if (uv_run(&loop_, UV_RUN_ONCE) == 0 && !done()) {
        ADD_FAILURE() << "the loop ran out of work";
        return;
      }
    }
  }
  // Starts the sink with `flags`; its port, from "listening on 127.0.0.1:PORT".
  std::uint16_t start_sink(std::vector<std::string> flags) {
#ifdef FANOUT_SINK_PATH
    std::vector<std::string> argv = {FANOUT_SINK_PATH, "--listen", "127.0.0.1:0", "--quiet",
                                     "--json"};
    argv.insert(argv.end(), flags.begin(), flags.end());
    sink_child_ = std::make_unique<fanout::testing::LoopChild>();
    sink_ = sink_child_.get();
    EXPECT_TRUE(sink_->start(&loop_, argv)) << sink_->error();
    run_until([&] { return sink_->out().find('\n') != std::string::npos || sink_->done(); });
    const std::string prefix = "listening on 127.0.0.1:";
    if (sink_->out().rfind(prefix, 0) != 0) {
      ADD_FAILURE() << sink_->describe();
      return 0;
    }
    return static_cast<std::uint16_t>(std::stoi(sink_->out().substr(prefix.size())));
#else
    (void)flags;
    return 0;
#endif
  }
  // SIGTERM; the JSON summary line.
  std::string stop_sink() {
    sink_->kill(SIGTERM);
    run_until([&] { return sink_->done(); });
    EXPECT_EQ(sink_->exit_status(), 0) << sink_->describe();
    return sink_->out().substr(sink_->out().find('\n') + 1);
  }
  // Publishes `n` events to a fresh engine subscribed to the sink; waits for every outcome.
  void deliver(std::uint16_t port, int n) {
    create(test_options());
    ASSERT_TRUE(engine_);
    subscribe(7, 42, "http://127.0.0.1:" + std::to_string(port) + "/hook");
    run();
    auto p = engine_->make_producer();
    for (int i = 0; i < n; ++i) {
      ASSERT_EQ(p.publish(event("sink-" + std::to_string(i))).status, PublishStatus::kAccepted);
    }
    ASSERT_TRUE(collector_.wait_for(static_cast<std::size_t>(n)));
  }

  uv_loop_t loop_{};
  bool loop_ready_ = false;
  std::unique_ptr<fanout::testing::LoopChild> sink_child_;
  fanout::testing::LoopChild* sink_ = nullptr;
};

using fanout::testing::number_after;

TEST_F(EngineSinkTest, EveryEventIsDeliveredOnceWhenTheSinkAnswersOk) {
  constexpr int kEvents = 200;
  const std::uint16_t port = start_sink({"--status-mix", "200:1"});
  ASSERT_NE(port, 0);
  deliver(port, kEvents);
  if (HasFatalFailure()) return;
  std::size_t delivered = 0;
  for (const auto& c : collector_.outcomes()) {
    EXPECT_EQ(c.kind, OutcomeKind::kDelivered) << c.event_id << ": " << c.last_failure;
    EXPECT_EQ(c.attempts, 1u);
    if (c.kind == OutcomeKind::kDelivered) ++delivered;
  }
  const std::string summary = stop_sink();
  EXPECT_EQ(number_after(summary, "\"requests\":"), kEvents) << summary;
  EXPECT_EQ(number_after(summary, "\"unique_event_ids\":"), static_cast<long long>(delivered))
      << summary;
  EXPECT_EQ(number_after(summary, "\"duplicate_event_ids\":"), 0) << summary;
  EXPECT_EQ(number_after(summary, "\"without_event_id\":"), 0) << summary;
  EXPECT_EQ(number_after(summary, "\"by_protocol\":{\"h2\":"), kEvents) << summary;
}

TEST_F(EngineSinkTest, RetriesReachTheSinkAsDuplicateEventIds) {
  constexpr int kEvents = 200;
  // Half the answers are 503: most events need retries, about 1 in 64 uses all six attempts.
  const std::uint16_t port = start_sink({"--status-mix", "200:1,503:1", "--seed", "11"});
  ASSERT_NE(port, 0);
  deliver(port, kEvents);
  if (HasFatalFailure()) return;
  long long attempts = 0, delivered = 0, exhausted = 0;
  for (const auto& c : collector_.outcomes()) {
    attempts += c.attempts;
    if (c.kind == OutcomeKind::kDelivered) {
      ++delivered;
      EXPECT_EQ(c.last_status, 200);
    } else {
      EXPECT_EQ(c.kind, OutcomeKind::kExhausted) << c.event_id;
      EXPECT_EQ(c.attempts, 6u);
      EXPECT_EQ(c.last_status, 503);
      ++exhausted;
    }
  }
  EXPECT_EQ(delivered + exhausted, kEvents);
  EXPECT_GT(attempts, kEvents) << "the 503s were retried";
  const std::string summary = stop_sink();
  EXPECT_EQ(number_after(summary, "\"requests\":"), attempts) << summary;
  EXPECT_EQ(number_after(summary, "\"unique_event_ids\":"), kEvents) << summary;
  EXPECT_EQ(number_after(summary, "\"duplicate_event_ids\":"), attempts - kEvents) << summary;
  EXPECT_EQ(number_after(summary, "\"by_status\":{\"200\":"), delivered) << summary;
  EXPECT_EQ(number_after(summary, "\"503\":"), attempts - delivered) << summary;
  const EngineStats st = engine_->stats();
  EXPECT_EQ(st.attempts_2xx, static_cast<std::uint64_t>(delivered));
  EXPECT_EQ(st.attempts_5xx, static_cast<std::uint64_t>(attempts - delivered));
}

// contract §4: a delivery refused by the receiver's GOAWAY before it was processed (a stream
// above the last-stream-id) is re-sent on a new connection and is not an attempt. The engine
// puts all 40 events on one connection; the sink sends GOAWAY at its 15th request on each, so
// the streams it has not processed yet are refused and re-sent on the next connection: at most
// three connections, so no event is refused the 4 times in a row that would count as a failed
// attempt (transport README, "Refused before processing"). It also checks HttpServer: streams
// above the GOAWAY's last-stream-id that arrive in the same read are refused with
// RST_STREAM(REFUSED_STREAM), not handed to the handler (else the sink would process requests
// the client then re-sends, rightly, as refused).
TEST_F(EngineSinkTest, GoawayRefusedDeliveriesAreResentAndNotCounted) {
  constexpr int kEvents = 40;
  const fanout::testing::ScratchDir dir;
  const std::string record = dir.file("record.ndjson");
  const std::uint16_t port = start_sink({"--goaway-every", "15", "--record", record});
  ASSERT_NE(port, 0);
  deliver(port, kEvents);
  if (HasFatalFailure()) return;
  for (const auto& c : collector_.outcomes()) {
    EXPECT_EQ(c.kind, OutcomeKind::kDelivered) << c.event_id << ": " << c.last_failure;
    EXPECT_EQ(c.attempts, 1u) << c.event_id;
  }
  const EngineStats st = engine_->stats();
  EXPECT_EQ(st.attempts, static_cast<std::uint64_t>(kEvents));
  const std::string summary = stop_sink();
  // Processed once each, all as attempt 1: nothing refused reached the receiver's handler.
  EXPECT_EQ(number_after(summary, "\"requests\":"), kEvents) << summary;
  EXPECT_EQ(number_after(summary, "\"unique_event_ids\":"), kEvents) << summary;
  EXPECT_EQ(number_after(summary, "\"duplicate_event_ids\":"), 0) << summary;
  EXPECT_GE(number_after(summary, "\"goaways\":"), 1) << summary;
  // The receiver's own record: one line per request it processed, each X-Partoo-Attempt: 1.
  std::ifstream in(record);
  std::string line;
  std::set<std::string> seen;
  while (std::getline(in, line)) {
    EXPECT_NE(line.find(R"(["x-partoo-attempt","1"])"), std::string::npos) << line;
    const std::string key = R"(["x-partoo-event-id",")";
    const auto at = line.find(key);
    ASSERT_NE(at, std::string::npos) << line;
    seen.insert(line.substr(at + key.size(), line.find('"', at + key.size()) - at - key.size()));
  }
  EXPECT_EQ(seen.size(), static_cast<std::size_t>(kEvents));
}

// EngineOptions::http1_only: HTTP/1.1 to an http:// receiver instead of h2c (fanout-load --http1).
TEST_F(EngineSinkTest, Http1OnlyDeliversOverHttp11) {
  constexpr int kEvents = 20;
  const std::uint16_t port = start_sink({});
  ASSERT_NE(port, 0);
  EngineOptions o = test_options();
  o.http1_only = true;
  create(std::move(o));
  ASSERT_TRUE(engine_);
  subscribe(7, 42, "http://127.0.0.1:" + std::to_string(port) + "/hook");
  run();
  auto p = engine_->make_producer();
  for (int i = 0; i < kEvents; ++i) {
    ASSERT_EQ(p.publish(event("h1-" + std::to_string(i))).status, PublishStatus::kAccepted);
  }
  ASSERT_TRUE(collector_.wait_for(kEvents));
  for (const auto& c : collector_.outcomes()) {
    EXPECT_EQ(c.kind, OutcomeKind::kDelivered) << c.event_id << ": " << c.last_failure;
  }
  EXPECT_EQ(engine_->stats().connections_h2, 0u);
  const std::string summary = stop_sink();
  EXPECT_EQ(number_after(summary, "\"by_protocol\":{\"h2\":"), 0) << summary;
  EXPECT_EQ(number_after(summary, "\"http/1.1\":"), kEvents) << summary;
}

}  // namespace
}  // namespace fanout
