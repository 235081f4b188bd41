// The engine when receivers fail on the network (tests/support/receiver.h, on loopback):
// timeouts at a black hole, stream resets and closed connections retried until exhausted or
// delivered; one origin's trouble kept from another, and what stop() hands back from a full
// pool. The contract's outcomes, signing, refusals and routing changes: engine_test.cc.
#include "fanout/engine.h"

#include <gtest/gtest.h>

#include <chrono>
#include <cstddef>
#include <set>
#include <string>

#include "tests/engine/engine_cases.h"

namespace fanout {
namespace {

using namespace engine_testing;  // EngineTest and its helpers (engine_cases.h)

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

}  // namespace
}  // namespace fanout
