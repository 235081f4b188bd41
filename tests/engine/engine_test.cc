#include "fanout/engine.h"

#include <gtest/gtest.h>

#include <condition_variable>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "engine/signer.h"
#include "fanout/version.h"
#include "tests/engine/receiver.h"

namespace fanout {
namespace {

using fanout::testing::Received;
using fanout::testing::Receiver;

// Collects outcomes; wait_for(n) blocks until n arrived (condition variable, no sleeping).
class Collector final : public Observer {
 public:
  struct Copy {
    std::string event_id;
    std::int64_t org_id = 0;
    std::string event_type;
    std::int64_t subscription_id = 0;
    OutcomeKind kind = OutcomeKind::kDelivered;
    std::uint32_t attempts = 0;
    int last_status = 0;
    std::string last_failure;
  };
  void on_outcomes(std::span<const Outcome> outcomes) noexcept override {
    std::lock_guard lock(mu_);
    for (const Outcome& o : outcomes) {
      got_.push_back({std::string(o.event_id), o.org_id, std::string(o.event_type),
                      o.subscription_id, o.kind, o.attempts, o.last_status,
                      std::string(o.last_failure)});
    }
    cv_.notify_all();
  }
  // True once `n` outcomes arrived; false after 60 s (a failure, never a timing assertion).
  bool wait_for(std::size_t n) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, std::chrono::seconds(60), [&] { return got_.size() >= n; });
  }
  std::vector<Copy> outcomes() {
    std::lock_guard lock(mu_);
    return got_;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<Copy> got_;
};

EngineOptions test_options() {
  EngineOptions o;
  o.workers = 1;
  o.insecure = true;
  o.allow_subnets = {"127.0.0.1/32"};
  // Milliseconds instead of minutes: the schedule's shape is tested on backoff_ms itself.
  o.retry.base_ms = 1;
  o.retry.factor = 2;
  o.retry.jitter = 0;
  return o;
}

class EngineTest : public ::testing::Test {
 protected:
  void start(EngineOptions o, std::uint16_t port) {
    auto e = Engine::create(std::move(o), &collector_);
    ASSERT_TRUE(e.has_value()) << e.error();
    engine_ = std::move(*e);
    routing::SubscriptionSpec spec;
    spec.org_id = 42;
    spec.event_type = "business_updated";
    spec.url = "http://127.0.0.1:" + std::to_string(port) + "/hook?x=1";
    spec.custom_headers = {{"X-Auth-Token", "s3cr3t"}, {"X-Tenant", "acme"}};
    auto s = engine_->upsert(7, spec);
    ASSERT_TRUE(s.has_value());
    auto started = engine_->start();
    ASSERT_TRUE(started.has_value()) << started.error();
  }
  void TearDown() override {
    if (engine_) {
      auto left = engine_->stop(std::chrono::milliseconds(0));
      EXPECT_TRUE(left.empty());
    }
  }
  static std::string event(const std::string& id) {
    return R"({"id":")" + id +
           R"(","org_id":42,"type":"business_updated","payload":{"business":{"id":"b1","name":"Café"}}})";
  }
  Collector collector_;
  std::unique_ptr<Engine> engine_;
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
  Receiver rx([](const Received&, std::size_t) { return 302; });
  start(test_options(), rx.port());
  auto p = engine_->make_producer();
  ASSERT_EQ(p.publish(event("e302")).status, PublishStatus::kAccepted);
  ASSERT_TRUE(collector_.wait_for(1));
  EXPECT_EQ(collector_.outcomes()[0].kind, OutcomeKind::kRejected);
  EXPECT_EQ(collector_.outcomes()[0].last_status, 302);
  EXPECT_EQ(rx.count(), 1u);
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

TEST_F(EngineTest, DeletedSubscriptionDropsTheNextAttempt) {
  Receiver rx([](const Received&, std::size_t) { return 503; });
  EngineOptions o = test_options();
  o.retry.base_ms = 200;  // time for the test thread to remove the subscription
  start(o, rx.port());
  auto p = engine_->make_producer();
  ASSERT_EQ(p.publish(event("drop-me")).status, PublishStatus::kAccepted);
  // The first attempt happens; then the subscription goes before the retry.
  ASSERT_TRUE(rx.wait_for(1));
  EXPECT_TRUE(engine_->remove(42, "business_updated"));
  ASSERT_TRUE(collector_.wait_for(1));
  EXPECT_EQ(collector_.outcomes()[0].kind, OutcomeKind::kDropped);
  EXPECT_EQ(collector_.outcomes()[0].attempts, 1u);
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
  engine_.reset();
}

}  // namespace
}  // namespace fanout
