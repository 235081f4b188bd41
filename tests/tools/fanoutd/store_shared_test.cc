// Several Stores on one database (tools/fanoutd/store_shared.cc): the change log other
// instances follow (data_version, changes_since) and taking saved deliveries back once.
// Two Store objects stand for two processes: each has its own connection and writer id.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <stdlib.h>

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "routing/catalogue.h"
#include "routing/subscription.h"
#include "tools/fanoutd/store.h"

namespace fanout::daemon {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::SizeIs;

class StoreSharedTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern = (fs::temp_directory_path() / "fanoutd_store_shared.XXXXXX").string();
    ASSERT_NE(mkdtemp(pattern.data()), nullptr);
    root_ = pattern;
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(root_, ec);
  }

  std::unique_ptr<Store> open_store(const routing::EventCatalogue& catalogue) {
    auto store = Store::open(root_ / "data", catalogue);
    EXPECT_TRUE(store.has_value()) << (store ? std::string() : store.error());
    return store ? std::move(*store) : nullptr;
  }
  std::unique_ptr<Store> open_store() { return open_store(catalogue_); }

  routing::Subscription sub(std::int64_t org_id, std::string_view type, std::string url,
                            const routing::EventCatalogue* catalogue = nullptr) {
    routing::SubscriptionSpec spec{org_id, std::string(type), std::move(url), {}};
    auto s = routing::validate(spec, catalogue != nullptr ? *catalogue : catalogue_,
                               {.allow_insecure_http = true});
    EXPECT_TRUE(s.has_value());
    return s ? std::move(*s) : routing::Subscription{};
  }

  static Store::Changes changes(Store& store, std::int64_t since) {
    auto c = store.changes_since(since);
    EXPECT_TRUE(c.has_value()) << (c ? std::string() : c.error());
    return c ? std::move(*c) : Store::Changes{};
  }

  fs::path root_;
  routing::EventCatalogue catalogue_;
};

TEST_F(StoreSharedTest, DataVersionMovesOnlyForOtherConnections) {
  auto a = open_store();
  auto b = open_store();
  ASSERT_TRUE(a && b);
  auto v0 = a->data_version();
  ASSERT_TRUE(v0.has_value()) << v0.error();
  ASSERT_TRUE(a->create({sub(1, "business_created", "https://a.example/")}, 1).has_value());
  EXPECT_EQ(*a->data_version(), *v0) << "its own commit";
  ASSERT_TRUE(b->create({sub(2, "business_created", "https://b.example/")}, 2).has_value());
  EXPECT_NE(*a->data_version(), *v0) << "another connection's commit";
}

TEST_F(StoreSharedTest, ChangesSinceReadsWhatOtherWritersChanged) {
  auto a = open_store();
  auto b = open_store();
  ASSERT_TRUE(a && b);
  std::int64_t seq = -1;
  auto all = a->all_subscriptions(&seq);
  ASSERT_TRUE(all.has_value()) << all.error();
  EXPECT_EQ(seq, 0);

  auto created = b->create({sub(42, "business_updated", "https://one.example/")}, 10);
  ASSERT_TRUE(created.has_value()) << created.error().message;
  Store::Changes c = changes(*a, seq);
  EXPECT_TRUE(c.complete);
  ASSERT_THAT(c.upserts, SizeIs(1));
  EXPECT_EQ(c.upserts[0], created->at(0));
  EXPECT_THAT(c.removed, IsEmpty());
  EXPECT_EQ(c.count, 1);
  EXPECT_GT(c.seq, seq);
  seq = c.seq;

  // Nothing new: an empty answer at the same position.
  c = changes(*a, seq);
  EXPECT_TRUE(c.complete);
  EXPECT_THAT(c.upserts, IsEmpty());
  EXPECT_EQ(c.seq, seq);
  EXPECT_EQ(c.count, -1);

  routing::Subscription moved = sub(42, "business_updated", "https://two.example/");
  moved.id = created->at(0).id;
  ASSERT_TRUE(b->update(moved, 20).has_value());
  c = changes(*a, seq);
  ASSERT_THAT(c.upserts, SizeIs(1));
  EXPECT_EQ(c.upserts[0].url, "https://two.example/");
  seq = c.seq;

  ASSERT_TRUE(b->remove(moved.id).has_value());
  c = changes(*a, seq);
  EXPECT_THAT(c.upserts, IsEmpty());
  ASSERT_THAT(c.removed, SizeIs(1));
  EXPECT_EQ(c.removed[0].org_id, 42);
  EXPECT_EQ(c.removed[0].event_type, "business_updated");
  EXPECT_EQ(c.count, 0);
}

TEST_F(StoreSharedTest, OwnChangesAreLeftOutButMoveThePosition) {
  auto a = open_store();
  auto b = open_store();
  ASSERT_TRUE(a && b);
  ASSERT_TRUE(a->create({sub(7, "lead_received", "https://own.example/")}, 1).has_value());
  Store::Changes c = changes(*a, 0);
  EXPECT_TRUE(c.complete);
  EXPECT_THAT(c.upserts, IsEmpty());
  EXPECT_EQ(c.seq, 1);
  // The other store sees it.
  c = changes(*b, 0);
  ASSERT_THAT(c.upserts, SizeIs(1));
  EXPECT_EQ(c.upserts[0].url, "https://own.example/");
}

// own_changes_seq() is the newest log row this Store committed: it follows its creates,
// updates, deletes and secret rotations, not another Store's; a write refused (no such row)
// leaves it where it was, and clamp_own_changes() lowers it only.
TEST_F(StoreSharedTest, OwnChangesSeqFollowsThisStoresCommitsOnly) {
  auto a = open_store();
  auto b = open_store();
  ASSERT_TRUE(a && b);
  EXPECT_EQ(a->own_changes_seq(), 0);
  auto made = a->create({sub(1, "business_created", "https://a.example/"),
                         sub(1, "business_updated", "https://a.example/")},
                        1);
  ASSERT_TRUE(made.has_value());
  EXPECT_EQ(a->own_changes_seq(), 2);
  ASSERT_TRUE(b->create({sub(2, "lead_received", "https://b.example/")}, 2).has_value());
  EXPECT_EQ(b->own_changes_seq(), 3);
  EXPECT_EQ(a->own_changes_seq(), 2);
  routing::Subscription changed = made->at(0);
  changed.url = "https://a2.example/";
  ASSERT_TRUE(a->update(changed, 3).has_value());
  EXPECT_EQ(a->own_changes_seq(), 4);
  ASSERT_TRUE(a->rotate_secret(made->at(0).id, std::string(32, 'k')).has_value());
  EXPECT_EQ(a->own_changes_seq(), 5);
  ASSERT_TRUE(a->remove(made->at(1).id).has_value());
  EXPECT_EQ(a->own_changes_seq(), 6);
  EXPECT_FALSE(a->remove(made->at(1).id).has_value()) << "already deleted";
  changed.id = 999;
  EXPECT_FALSE(a->update(changed, 5).has_value()) << "no such subscription";
  EXPECT_EQ(a->own_changes_seq(), 6);
  EXPECT_EQ(changes(*b, 0).seq, 6);
  a->clamp_own_changes(9);
  EXPECT_EQ(a->own_changes_seq(), 6);
  a->clamp_own_changes(4);  // the log read back ends at 4 (an older database)
  EXPECT_EQ(a->own_changes_seq(), 4);
}

// A pair deleted and created again (a new id) elsewhere reads as the new subscription, not as
// a removal: the order of the changes does not matter.
TEST_F(StoreSharedTest, PairRecreatedReadsAsItsNewSubscription) {
  auto a = open_store();
  auto b = open_store();
  ASSERT_TRUE(a && b);
  auto first = b->create({sub(5, "message_created", "https://old.example/")}, 1);
  ASSERT_TRUE(first.has_value());
  const std::int64_t since = changes(*a, 0).seq;
  ASSERT_TRUE(b->remove(first->at(0).id).has_value());
  auto second = b->create({sub(5, "message_created", "https://new.example/")}, 2);
  ASSERT_TRUE(second.has_value());
  Store::Changes c = changes(*a, since);
  EXPECT_THAT(c.removed, IsEmpty());
  ASSERT_THAT(c.upserts, SizeIs(1));
  EXPECT_EQ(c.upserts[0].id, second->at(0).id);
  EXPECT_EQ(c.upserts[0].url, "https://new.example/");
}

TEST_F(StoreSharedTest, TrimmedLogAsksForAFullReload) {
  auto a = open_store();
  auto b = open_store();
  ASSERT_TRUE(a && b);
  ASSERT_TRUE(b->create({sub(1, "business_created", "https://x.example/")}, 1).has_value());
  std::vector<routing::Subscription> many;
  for (std::int64_t org = 2; org <= Store::kChangesKept + 2; ++org) {
    many.push_back(sub(org, "business_created", "https://x.example/"));
  }
  ASSERT_TRUE(b->create(std::move(many), 2).has_value());
  Store::Changes c = changes(*a, 0);
  EXPECT_FALSE(c.complete);
  EXPECT_THAT(c.upserts, IsEmpty());
  // From the newest position, the log is complete again.
  std::int64_t seq = 0;
  auto all = a->all_subscriptions(&seq);
  ASSERT_TRUE(all.has_value());
  EXPECT_THAT(*all, SizeIs(static_cast<std::size_t>(Store::kChangesKept + 2)));
  EXPECT_EQ(seq, c.seq);
  EXPECT_TRUE(changes(*a, seq).complete);
}

TEST_F(StoreSharedTest, PositionAheadOfTheLogAsksForAFullReload) {
  auto a = open_store();
  ASSERT_TRUE(a);
  EXPECT_FALSE(changes(*a, 99).complete);
}

// Instances configured with different event types: what this one cannot route is skipped
// with a message; the rest still applies.
TEST_F(StoreSharedTest, UnknownEventTypeIsSkippedNotFatal) {
  routing::EventCatalogue extended;
  ASSERT_TRUE(extended.add("invoice_paid").has_value());
  auto plain = open_store(catalogue_);
  auto other = open_store(extended);
  ASSERT_TRUE(plain && other);
  ASSERT_TRUE(other
                  ->create({sub(3, "invoice_paid", "https://i.example/", &extended),
                            sub(3, "business_created", "https://b.example/", &extended)},
                           1)
                  .has_value());
  Store::Changes c = changes(*plain, 0);
  EXPECT_TRUE(c.complete);
  ASSERT_THAT(c.upserts, SizeIs(1));
  EXPECT_EQ(c.upserts[0].url, "https://b.example/");
  ASSERT_THAT(c.skipped, SizeIs(1));
  EXPECT_THAT(c.skipped[0], HasSubstr("invoice_paid"));
}

std::vector<PendingDelivery> deliveries(int n) {
  std::vector<PendingDelivery> out;
  for (int i = 0; i < n; ++i) {
    out.push_back({"evt-" + std::to_string(i), 42, "business_updated", "{}", 7,
                   static_cast<std::uint32_t>(i % 3), 0});
  }
  return out;
}

TEST_F(StoreSharedTest, TakePendingKeepsWhatWasNotTaken) {
  auto a = open_store();
  ASSERT_TRUE(a);
  ASSERT_TRUE(a->save_pending(deliveries(5)).has_value());
  std::vector<std::string> seen;
  auto taken = a->take_pending(
      [&](const PendingDelivery& d) {
        seen.push_back(d.event_id);
        return d.event_id != "evt-1" && d.event_id != "evt-3";
      },
      [] { return true; });
  ASSERT_TRUE(taken.has_value()) << taken.error();
  EXPECT_EQ(*taken, 3u);
  EXPECT_EQ(seen, (std::vector<std::string>{"evt-0", "evt-1", "evt-2", "evt-3", "evt-4"}));
  auto left = a->pending();
  ASSERT_TRUE(left.has_value());
  ASSERT_THAT(*left, SizeIs(2));
  EXPECT_EQ((*left)[0].event_id, "evt-1");
  EXPECT_EQ((*left)[1].event_id, "evt-3");
}

TEST_F(StoreSharedTest, TakePendingNotSettledForgetsNothing) {
  auto a = open_store();
  ASSERT_TRUE(a);
  ASSERT_TRUE(a->save_pending(deliveries(3)).has_value());
  auto taken = a->take_pending([](const PendingDelivery&) { return true; }, [] { return false; });
  ASSERT_TRUE(taken.has_value()) << taken.error();
  EXPECT_EQ(*taken, 0u);
  auto left = a->pending();
  ASSERT_TRUE(left.has_value());
  EXPECT_THAT(*left, SizeIs(3));
}

// Two processes starting at once (more than one chunk saved): every saved delivery is resumed
// by exactly one of them.
TEST_F(StoreSharedTest, TwoTakersNeverGetTheSameDelivery) {
  constexpr int kSaved = 3 * static_cast<int>(Store::kTakeChunk) / 2;
  {
    auto saver = open_store();
    ASSERT_TRUE(saver);
    ASSERT_TRUE(saver->save_pending(deliveries(kSaved)).has_value());
  }
  std::vector<std::string> got[2];
  std::string errors[2];
  {
    std::vector<std::jthread> takers;
    for (int t = 0; t < 2; ++t) {
      takers.emplace_back([&, t] {
        auto store = Store::open(root_ / "data", catalogue_);
        if (!store) {
          errors[t] = store.error();
          return;
        }
        auto taken = (*store)->take_pending(
            [&](const PendingDelivery& d) {
              got[t].push_back(d.event_id);
              return true;
            },
            [] { return true; });
        if (!taken) errors[t] = taken.error();
      });
    }
  }
  EXPECT_EQ(errors[0], "");
  EXPECT_EQ(errors[1], "");
  std::set<std::string> all(got[0].begin(), got[0].end());
  for (const std::string& id : got[1]) {
    EXPECT_TRUE(all.insert(id).second) << id << " taken twice";
  }
  EXPECT_EQ(all.size(), static_cast<std::size_t>(kSaved));
  auto left = open_store()->pending();
  ASSERT_TRUE(left.has_value());
  EXPECT_THAT(*left, IsEmpty());
}

}  // namespace
}  // namespace fanout::daemon
