// engine/worker.cc: the per-subscription targets a worker keeps (URL, headers) are freed when
// their subscription is deleted or changed, once no delivery refers to them
// (EngineStats::targets). Waits are on conditions (outcomes, the receiver's count, the stats),
// never on time.
#include <gtest/gtest.h>

#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "engine/worker.h"
#include "fanout/engine.h"
#include "tests/support/engine_fixture.h"
#include "tests/support/receiver.h"

namespace fanout {
namespace {

using fanout::testing::Received;
using fanout::testing::Receiver;

using fanout::test_support::event_json;

class WorkerTest : public fanout::test_support::EngineFixture {
 protected:
  void start() {
    create(fanout::test_support::loopback_engine_options());
    ASSERT_TRUE(engine_);
    run();
  }
  void subscribe(std::int64_t id, std::int64_t org, std::uint16_t port, const std::string& path) {
    EngineFixture::subscribe(id, org, "http://127.0.0.1:" + std::to_string(port) + path);
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
};

TEST_F(WorkerTest, TargetOfADeletedSubscriptionIsFreedOnceItsDeliveryEnds) {
  Receiver rx([](const Received&, std::size_t i) { return i == 0 ? Receiver::kHold : 200; });
  start();
  subscribe(1, 42, rx.port(), "/hook");
  auto p = engine_->make_producer();
  ASSERT_EQ(p.publish(event_json(42)).status, PublishStatus::kAccepted);
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
  ASSERT_EQ(p.publish(event_json(42)).status, PublishStatus::kAccepted);
  ASSERT_EQ(p.publish(event_json(43)).status, PublishStatus::kAccepted);
  ASSERT_TRUE(collector_.wait_for(2));
  EXPECT_TRUE(wait_targets(2));
  // Subscription 2 moves to another path; subscription 1 is deleted and nothing is published
  // for it again.
  subscribe(2, 43, rx.port(), "/c");
  ASSERT_TRUE(engine_->remove(42, "business_updated"));
  EXPECT_TRUE(wait_targets(0)) << engine_->stats().targets;
  ASSERT_EQ(p.publish(event_json(43)).status, PublishStatus::kAccepted);
  ASSERT_TRUE(collector_.wait_for(3));
  EXPECT_EQ(rx.received().back().path, "/c");
  EXPECT_TRUE(wait_targets(1));
}

// A worker keeps the targets no delivery uses up to a cap, least recently used first out: after
// delivering to more subscriptions than that it keeps the cap (not one per subscription ever
// delivered to), and a subscription whose target went gets a fresh one when it is used again.
TEST_F(WorkerTest, IdleTargetsAreKeptUpToACapLeastRecentlyUsedFirstOut) {
  constexpr auto kCap = static_cast<std::int64_t>(engine::Worker::kKeptIdleTargets);
  constexpr std::int64_t kSubs = kCap + 50;
  Receiver rx([](const Received&, std::size_t) { return 200; }, Receiver::Keep::kAnswersOnly);
  create(fanout::test_support::loopback_engine_options());  // one worker
  ASSERT_TRUE(engine_);
  std::vector<routing::Subscription> subs;
  routing::ValidationOptions vo;
  vo.allow_insecure_http = true;
  for (std::int64_t org = 1; org <= kSubs; ++org) {
    routing::SubscriptionSpec spec;
    spec.org_id = org;
    spec.event_type = "business_updated";
    spec.url = rx.url();
    auto s = routing::validate(spec, engine_->catalogue(), vo);
    ASSERT_TRUE(s.has_value());
    s->id = org;
    subs.push_back(*s);
  }
  engine_->load(std::move(subs));
  run();
  auto p = engine_->make_producer();
  // One at a time, so that each target is idle before the next is made.
  for (std::int64_t org = 1; org <= kSubs; ++org) {
    ASSERT_EQ(p.publish(event_json(org)).status, PublishStatus::kAccepted);
    ASSERT_TRUE(collector_.wait_for(static_cast<std::size_t>(org)));
  }
  EXPECT_EQ(engine_->stats().targets, static_cast<std::uint64_t>(kCap));
  EXPECT_EQ(engine_->stats().delivered, static_cast<std::uint64_t>(kSubs));
  // Organisation 1's target was the least recently used: gone, made again, and another goes.
  ASSERT_EQ(p.publish(event_json(1)).status, PublishStatus::kAccepted);
  ASSERT_TRUE(collector_.wait_for(static_cast<std::size_t>(kSubs) + 1));
  EXPECT_EQ(collector_.outcomes().back().kind, OutcomeKind::kDelivered);
  EXPECT_EQ(engine_->stats().targets, static_cast<std::uint64_t>(kCap));
}

}  // namespace
}  // namespace fanout
