// engine/worker.cc: the per-subscription targets a worker keeps (URL, headers) are freed when
// their subscription is deleted or changed, once no delivery refers to them
// (EngineStats::targets). Waits are on conditions (outcomes, the receiver's count, the stats),
// never on time.
#include <gtest/gtest.h>

#include <chrono>
#include <string>
#include <thread>

#include "fanout/engine.h"
#include "tests/engine/collector.h"
#include "tests/engine/receiver.h"

namespace fanout {
namespace {

using fanout::testing::Collector;
using fanout::testing::Received;
using fanout::testing::Receiver;

constexpr const char* kEvent42 = R"({"org_id":42,"type":"business_updated","payload":{"n":1}})";
constexpr const char* kEvent43 = R"({"org_id":43,"type":"business_updated","payload":{"n":1}})";

class WorkerTest : public ::testing::Test {
 protected:
  void start() {
    EngineOptions o;
    o.workers = 1;
    o.insecure = true;
    o.allow_subnets = {"127.0.0.1/32"};
    auto e = Engine::create(std::move(o), &collector_);
    ASSERT_TRUE(e.has_value()) << e.error();
    engine_ = std::move(*e);
    ASSERT_TRUE(engine_->start().has_value());
  }
  void subscribe(std::int64_t id, std::int64_t org, std::uint16_t port, const std::string& path) {
    routing::SubscriptionSpec spec;
    spec.org_id = org;
    spec.event_type = "business_updated";
    spec.url = "http://127.0.0.1:" + std::to_string(port) + path;
    ASSERT_TRUE(engine_->upsert(id, spec).has_value());
  }
  // Waits (bounded by a 60 s guard) until the workers keep `n` targets.
  bool wait_targets(std::uint64_t n) {
    const auto limit = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    while (engine_->stats().targets != n) {
      if (std::chrono::steady_clock::now() > limit) return false;
      std::this_thread::yield();
    }
    return true;
  }
  void TearDown() override {
    if (engine_) {
      EXPECT_TRUE(engine_->stop(std::chrono::milliseconds(0)).empty());
    }
  }
  Collector collector_;
  std::unique_ptr<Engine> engine_;
};

TEST_F(WorkerTest, TargetOfADeletedSubscriptionIsFreedOnceItsDeliveryEnds) {
  Receiver rx([](const Received&, std::size_t i) { return i == 0 ? Receiver::kHold : 200; });
  start();
  subscribe(1, 42, rx.port(), "/hook");
  auto p = engine_->make_producer();
  ASSERT_EQ(p.publish(kEvent42).status, PublishStatus::kAccepted);
  // The attempt is at the receiver, held: its delivery refers to the target.
  const auto limit = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (rx.count() == 0 && std::chrono::steady_clock::now() < limit) std::this_thread::yield();
  ASSERT_EQ(rx.count(), 1u);
  EXPECT_EQ(engine_->stats().targets, 1u);
  ASSERT_TRUE(engine_->remove(42, "business_updated"));
  rx.release_held(200);
  ASSERT_TRUE(collector_.wait_for(1));
  EXPECT_EQ(collector_.outcomes()[0].kind, OutcomeKind::kDelivered);
  // No delivery and no event for it any more: the sweep frees it.
  EXPECT_TRUE(wait_targets(0)) << engine_->stats().targets;
}

TEST_F(WorkerTest, ChangedSubscriptionReplacesItsTarget) {
  Receiver rx([](const Received&, std::size_t) { return 200; });
  start();
  subscribe(1, 42, rx.port(), "/a");
  subscribe(2, 43, rx.port(), "/b");
  auto p = engine_->make_producer();
  ASSERT_EQ(p.publish(kEvent42).status, PublishStatus::kAccepted);
  ASSERT_EQ(p.publish(kEvent43).status, PublishStatus::kAccepted);
  ASSERT_TRUE(collector_.wait_for(2));
  EXPECT_TRUE(wait_targets(2));
  // Subscription 2 moves to another path; subscription 1 is deleted and nothing is published
  // for it again.
  subscribe(2, 43, rx.port(), "/c");
  ASSERT_TRUE(engine_->remove(42, "business_updated"));
  EXPECT_TRUE(wait_targets(0)) << engine_->stats().targets;
  ASSERT_EQ(p.publish(kEvent43).status, PublishStatus::kAccepted);
  ASSERT_TRUE(collector_.wait_for(3));
  EXPECT_EQ(rx.received().back().path, "/c");
  EXPECT_TRUE(wait_targets(1));
}

}  // namespace
}  // namespace fanout
