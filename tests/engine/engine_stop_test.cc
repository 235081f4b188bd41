// The engine's stop and resume (engine/worker_stop.cc, Engine::resume): what stop() hands back
// and with which due time, and how a resumed delivery waits for it.
#include "fanout/engine.h"

#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "tests/engine/engine_cases.h"

namespace fanout {
namespace {

using namespace engine_testing;  // EngineTest and its helpers (engine_cases.h)

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

}  // namespace
}  // namespace fanout
