// In-flight budgets per organisation and per origin (engine/budget.h, EngineOptions org_* and
// origin_*): the table itself, then an engine where one organisation's receiver is a black hole
// and another's is healthy. Without these budgets the black-holed organisation fills the global
// budget and the healthy one is refused busy.
#include "engine/budget.h"

#include <gtest/gtest.h>

#include <string>
#include <thread>
#include <vector>

#include "fanout/engine.h"
#include "tests/support/engine_fixture.h"
#include "tests/support/receiver.h"

namespace fanout {
namespace {

using fanout::testing::Received;
using fanout::testing::Receiver;

TEST(BudgetTableTest, KeysKeepTheirEntryAndLimitsHoldInCountAndBytes) {
  engine::BudgetTable t(64);
  auto* a = t.find(7);
  EXPECT_EQ(t.find(7), a);
  auto* b = t.find(8);
  EXPECT_NE(a, b);
  EXPECT_EQ(t.keys(), 2u);
  EXPECT_TRUE(engine::BudgetTable::take(*a, 10, 2, 0));
  EXPECT_TRUE(engine::BudgetTable::take(*a, 10, 2, 0));
  EXPECT_FALSE(engine::BudgetTable::take(*a, 10, 2, 0)) << "a third event past max_count 2";
  EXPECT_EQ(a->count.load(), 2);
  EXPECT_EQ(a->bytes.load(), 20);
  EXPECT_FALSE(engine::BudgetTable::take(*b, 101, 0, 100)) << "past max_bytes";
  EXPECT_TRUE(engine::BudgetTable::take(*b, 100, 0, 100));
  engine::BudgetTable::give_back(*a, 10);
  EXPECT_TRUE(engine::BudgetTable::take(*a, 10, 2, 0));
}

TEST(BudgetTableTest, AFullTableSharesTheOverflowEntry) {
  engine::BudgetTable t(64);
  std::vector<engine::BudgetTable::Entry*> seen;
  for (std::uint64_t k = 1; k <= 200; ++k) seen.push_back(t.find(k));
  EXPECT_EQ(t.keys(), 64u);  // every slot taken, the rest overflow
  std::size_t overflow = 0;
  for (auto* e : seen) overflow += e == &t.overflow() ? 1U : 0U;
  EXPECT_EQ(overflow, 200u - 64u);
  for (std::uint64_t k = 1; k <= 200; ++k) EXPECT_EQ(t.find(k), seen[k - 1]) << k;
}

TEST(BudgetTableTest, ConcurrentTakersNeverPassTheLimit) {
  engine::BudgetTable t(1024);
  constexpr int kThreads = 4, kTries = 20000, kLimit = 1000;
  std::atomic<int> taken{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < kThreads; ++i) {
    threads.emplace_back([&] {
      auto* e = t.find(42);
      for (int j = 0; j < kTries; ++j) {
        if (engine::BudgetTable::take(*e, 1, kLimit, 0)) {
          taken.fetch_add(1);
          if (j % 3 == 0) {
            engine::BudgetTable::give_back(*e, 1);
            taken.fetch_sub(1);
          }
        }
        EXPECT_LE(e->count.load(), kLimit + kThreads);  // adds before checks, undone at once
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(t.find(42)->count.load(), taken.load());
  EXPECT_LE(taken.load(), kLimit);
}

std::string event(int org, int n) {
  return fanout::test_support::event_json(org, {}, R"({"n":)" + std::to_string(n) + "}");
}

class BudgetEngineTest : public fanout::test_support::EngineFixture {
 protected:
  // Deliveries to black holes are still in flight when TearDown stops the engine.
  BudgetEngineTest() { expect_nothing_left_ = false; }

  void start(EngineOptions o, const std::vector<std::pair<int, std::string>>& routes) {
    o.workers = 1;
    o.insecure = true;
    o.allow_subnets = {"127.0.0.1/32"};
    create(std::move(o));
    ASSERT_TRUE(engine_);
    std::int64_t id = 1;
    for (const auto& [org, url] : routes) subscribe(id++, org, url);
    run();
  }
};

// Organisation 1 black-holed, organisation 2 healthy, a global budget of 200: org 1 is held to
// its 50, org 2 is never refused and every one of its events is delivered.
TEST_F(BudgetEngineTest, ABlackHoledOrganisationDoesNotBlockAHealthyOne) {
  Receiver hole([](const Received&, std::size_t) { return Receiver::kNoAnswer; });
  Receiver ok([](const Received&, std::size_t) { return 200; });
  EngineOptions o;
  o.max_in_flight = 200;
  o.org_max_in_flight = 50;
  o.origin_max_in_flight = 0;
  start(o, {{1, hole.url()}, {2, ok.url()}});
  auto p = engine_->make_producer();
  int accepted = 0, org_busy = 0;
  for (int i = 0; i < 300; ++i) {
    const PublishResult r = p.publish(event(1, i));
    if (r.status == PublishStatus::kAccepted) ++accepted;
    if (r.status == PublishStatus::kBusy) {
      EXPECT_EQ(r.reason, "org_busy");
      ++org_busy;
    }
  }
  EXPECT_EQ(accepted, 50);
  EXPECT_EQ(org_busy, 250);
  // In bursts of 40 (org 2 has a budget of 50 too), each waited for.
  for (int i = 0; i < 500; ++i) {
    const PublishResult r = p.publish(event(2, i));
    ASSERT_EQ(r.status, PublishStatus::kAccepted) << i << " " << r.reason;
    if (i % 40 == 39) {
      ASSERT_TRUE(collector_.wait_for(static_cast<std::size_t>(i + 1)));
    }
  }
  ASSERT_TRUE(collector_.wait_for(500));
  const EngineStats st = engine_->stats();
  EXPECT_EQ(st.delivered, 500u);
  EXPECT_EQ(st.refused_org_busy, 250u);
  EXPECT_EQ(st.refused_origin_busy, 0u);
  EXPECT_EQ(st.in_flight, 50u);  // org 1's, still in the black hole
}

// Bytes: an organisation's budget in bytes holds however small its count limit is not reached.
TEST_F(BudgetEngineTest, ByteBudgetsHoldPerOrganisationAndGlobally) {
  Receiver hole([](const Received&, std::size_t) { return Receiver::kNoAnswer; });
  EngineOptions o;
  o.org_max_in_flight_bytes = 10 * 1024;
  o.max_in_flight_bytes = 25 * 1024;
  o.origin_max_in_flight = 0;
  o.origin_max_in_flight_bytes = 0;
  start(o, {{1, hole.url()}, {2, hole.url("/two")}, {3, hole.url("/three")}});
  auto p = engine_->make_producer();
  const std::string pad(1000, 'x');
  auto big = [&](int org) {
    return R"({"org_id":)" + std::to_string(org) +
           R"(,"type":"business_updated","payload":{"pad":")" + pad + R"("}})";
  };
  auto fill = [&](int org) {
    int n = 0;
    PublishResult r;
    while ((r = p.publish(big(org))).status == PublishStatus::kAccepted) ++n;
    EXPECT_EQ(r.status, PublishStatus::kBusy);
    return std::make_pair(n, std::string(r.reason));
  };
  const auto [n1, why1] = fill(1);
  EXPECT_EQ(why1, "org_busy");
  EXPECT_GE(n1, 8);  // about 1.1 KB each: 9 fit in 10 KiB
  EXPECT_LE(n1, 10);
  const auto [n2, why2] = fill(2);
  EXPECT_EQ(why2, "org_busy");
  EXPECT_EQ(n2, n1);
  const auto [n3, why3] = fill(3);
  EXPECT_EQ(why3, "busy") << "the global 25 KiB ran out first";
  EXPECT_LT(n3, n1);
  EXPECT_LE(engine_->stats().in_flight_bytes, 25u * 1024);
}

// Origins: two organisations sending to one dead origin share its budget; another origin of the
// same organisation is unaffected.
TEST_F(BudgetEngineTest, OrganisationsShareTheBudgetOfAnOrigin) {
  Receiver hole([](const Received&, std::size_t) { return Receiver::kNoAnswer; });
  Receiver ok([](const Received&, std::size_t) { return 200; });
  EngineOptions o;
  o.origin_max_in_flight = 30;
  start(o, {{1, hole.url("/a")}, {2, hole.url("/b")}, {3, ok.url()}});
  auto p = engine_->make_producer();
  int accepted = 0;
  for (int i = 0; i < 40; ++i) {
    for (int org : {1, 2}) {
      const PublishResult r = p.publish(event(org, i));
      if (r.status == PublishStatus::kAccepted) {
        ++accepted;
      } else {
        EXPECT_EQ(r.reason, "origin_busy");
      }
    }
  }
  EXPECT_EQ(accepted, 30);
  for (int i = 0; i < 100; ++i) {  // in bursts of 25: its own origin has a budget of 30
    ASSERT_EQ(p.publish(event(3, i)).status, PublishStatus::kAccepted) << i;
    if (i % 25 == 24) {
      ASSERT_TRUE(collector_.wait_for(static_cast<std::size_t>(i + 1)));
    }
  }
  EXPECT_EQ(engine_->stats().refused_origin_busy, 50u);
}

// The backlog (max_backlog): deliveries neither final nor waiting for a retry. Attempts held
// unanswered fill it, and publish() answers busy; answered 503, they wait an hour for their retry
// and leave the backlog, so as many again are accepted while every one of them is still in
// flight. Tagged, so the collector hears each retry once it waits (Observer::on_retry).
TEST_F(BudgetEngineTest, TheBacklogHoldsDeliveriesNotWaitingForARetry) {
  Receiver held([](const Received&, std::size_t) { return Receiver::kHold; });
  EngineOptions o;
  o.max_backlog = 20;
  o.org_max_in_flight = 0;
  o.origin_max_in_flight = 0;
  o.retry.base_ms = 3'600'000;
  o.retry.jitter = 0;
  start(o, {{1, held.url()}});
  auto p = engine_->make_producer();
  PublishOptions tagged;
  tagged.tag = 7;
  auto fill = [&](int from) {
    int accepted = 0;
    for (int i = from; i < from + 30; ++i) {
      const PublishResult r = p.publish(event(1, i), tagged);
      if (r.status == PublishStatus::kAccepted) {
        ++accepted;
      } else {
        EXPECT_EQ(r.status, PublishStatus::kBusy) << i;
        EXPECT_EQ(r.reason, "busy") << i;
      }
    }
    return accepted;
  };
  EXPECT_EQ(fill(0), 20);
  EngineStats st = engine_->stats();
  EXPECT_EQ(st.refused_backlog_busy, 10u);
  EXPECT_EQ(st.refused_busy, 10u);
  ASSERT_TRUE(held.wait_for(20));
  held.release_held(503);
  ASSERT_TRUE(collector_.wait_for_retries(20));
  EXPECT_EQ(fill(100), 20) << "the 20 waiting retries left the backlog";
  st = engine_->stats();
  EXPECT_EQ(st.refused_backlog_busy, 20u);
  EXPECT_EQ(st.in_flight, 40u);
  EXPECT_EQ(st.waiting_retry, 20u);
}

// max_backlog 0 is no limit: a hundred attempts held unanswered, none refused.
TEST_F(BudgetEngineTest, NoBacklogBoundWhenZero) {
  Receiver held([](const Received&, std::size_t) { return Receiver::kHold; });
  EngineOptions o;
  o.max_backlog = 0;
  start(o, {{1, held.url()}});
  auto p = engine_->make_producer();
  for (int i = 0; i < 100; ++i) ASSERT_EQ(p.publish(event(1, i)).status, PublishStatus::kAccepted);
  EXPECT_EQ(engine_->stats().refused_backlog_busy, 0u);
  ASSERT_TRUE(held.wait_for(100));
}

}  // namespace
}  // namespace fanout
