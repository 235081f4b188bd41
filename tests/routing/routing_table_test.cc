#include "routing/routing_table.h"

#include <gtest/gtest.h>

#include <atomic>
#include <cstdint>
#include <map>
#include <random>
#include <string>
#include <thread>
#include <utility>
#include <vector>

// The race tests below drive RoutingTable::pin_hook_for_testing, which only the test build of the
// library has (fanout_routing_testing in routing/CMakeLists.txt).
#ifndef FANOUT_ROUTING_TESTING
#error "routing_table_test must link fanout_routing_testing (FANOUT_ROUTING_TESTING)"
#endif

namespace fanout::routing {
namespace {

// A subscription whose URL encodes its key and a generation, so a reader can check that what it
// found is internally consistent and which write produced it.
Subscription make_sub(std::int64_t org, EventTypeId type, std::uint64_t gen = 0) {
  Subscription s;
  s.id = org * 16 + type;
  s.org_id = org;
  s.event_type = type;
  s.url = "https://hooks.example.com/o" + std::to_string(org) + "/t" + std::to_string(type) + "/g" +
          std::to_string(gen);
  s.parts = UrlParts{Scheme::kHttps, "hooks.example.com", 443, s.url.substr(25)};
  return s;
}

std::string url_of(std::int64_t org, EventTypeId type, std::uint64_t gen) {
  return make_sub(org, type, gen).url;
}

TEST(RoutingTableTest, EmptyTableFindsNothing) {
  RoutingTable table;
  auto reader = table.make_reader();
  auto pin = reader.pin();
  EXPECT_EQ(pin.find(1, 0), nullptr);
  EXPECT_EQ(pin.size(), 0u);
  EXPECT_EQ(table.stats().subscriptions, 0u);
}

TEST(RoutingTableTest, UpsertThenFindReturnsTheSubscription) {
  RoutingTable table;
  table.upsert(make_sub(42, 1));
  auto reader = table.make_reader();
  auto pin = reader.pin();
  const Subscription* s = pin.find(42, 1);
  ASSERT_NE(s, nullptr);
  EXPECT_EQ(*s, make_sub(42, 1));
  EXPECT_EQ(pin.find(42, 2), nullptr);
  EXPECT_EQ(pin.find(43, 1), nullptr);
}

TEST(RoutingTableTest, UpsertReplacesTheOneSubscriptionOfAKey) {
  RoutingTable table;
  table.upsert(make_sub(42, 1, 1));
  table.upsert(make_sub(42, 1, 2));
  EXPECT_EQ(table.stats().subscriptions, 1u);
  auto got = table.get({42, 1});
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(got->url, url_of(42, 1, 2));
}

TEST(RoutingTableTest, ManyKeysMayShareOneUrl) {
  RoutingTable table;
  for (EventTypeId t = 0; t < 6; ++t) {
    Subscription s = make_sub(7, t);
    s.url = "https://same.example.com/hook";
    table.upsert(s);
    Subscription other = make_sub(8, t);
    other.url = s.url;
    table.upsert(other);
  }
  EXPECT_EQ(table.stats().subscriptions, 12u);
  auto reader = table.make_reader();
  auto pin = reader.pin();
  for (EventTypeId t = 0; t < 6; ++t) {
    ASSERT_NE(pin.find(7, t), nullptr);
    EXPECT_EQ(pin.find(8, t)->url, "https://same.example.com/hook");
  }
}

TEST(RoutingTableTest, RemoveReportsWhetherTheKeyWasPresent) {
  RoutingTable table;
  table.upsert(make_sub(5, 3));
  const std::uint64_t v = table.stats().version;
  EXPECT_FALSE(table.remove({5, 4}));
  EXPECT_EQ(table.stats().version, v) << "a no-op remove publishes nothing";
  EXPECT_TRUE(table.remove({5, 3}));
  EXPECT_FALSE(table.remove({5, 3}));
  EXPECT_FALSE(table.get({5, 3}).has_value());
  EXPECT_EQ(table.stats().subscriptions, 0u);
}

TEST(RoutingTableTest, PinKeepsItsSnapshotWhileWritersChangeTheTable) {
  RoutingTable table;
  table.upsert(make_sub(1, 0, 1));
  table.upsert(make_sub(2, 0, 1));
  auto reader = table.make_reader();
  auto pin = reader.pin();
  const Subscription* before = pin.find(1, 0);
  ASSERT_NE(before, nullptr);

  table.upsert(make_sub(1, 0, 2));
  EXPECT_TRUE(table.remove({2, 0}));
  table.upsert(make_sub(3, 0, 1));

  // The pinned snapshot is unchanged, and what it returned is still alive (ASan would see a
  // use-after-free here if reclamation ignored the pin).
  EXPECT_EQ(pin.find(1, 0), before);
  EXPECT_EQ(before->url, url_of(1, 0, 1));
  ASSERT_NE(pin.find(2, 0), nullptr);
  EXPECT_EQ(pin.find(3, 0), nullptr);
  EXPECT_GT(table.stats().retired_pending, 0u);

  auto other_reader = table.make_reader();
  {
    auto fresh = other_reader.pin();
    EXPECT_EQ(fresh.find(1, 0)->url, url_of(1, 0, 2));
    EXPECT_EQ(fresh.find(2, 0), nullptr);
    EXPECT_NE(fresh.find(3, 0), nullptr);
    EXPECT_GT(fresh.version(), pin.version());
  }
}

TEST(RoutingTableTest, ReclaimFreesRetiredItemsOnceNoPinHoldsThem) {
  RoutingTable table;
  table.upsert(make_sub(1, 0, 1));
  auto reader = table.make_reader();
  {
    auto pin = reader.pin();
    table.upsert(make_sub(1, 0, 2));
    table.reclaim();
    EXPECT_GT(table.stats().retired_pending, 0u);
  }
  table.reclaim();
  EXPECT_EQ(table.stats().retired_pending, 0u);
}

TEST(RoutingTableTest, WritersWithoutPinnedReadersReclaimAtOnce) {
  RoutingTable table;
  for (std::uint64_t g = 0; g < 100; ++g) table.upsert(make_sub(1, 0, g));
  EXPECT_EQ(table.stats().retired_pending, 0u);
}

TEST(RoutingTableTest, ApplyPublishesABatchAsOneSnapshot) {
  RoutingTable table;
  table.upsert(make_sub(9, 0, 1));
  auto reader = table.make_reader();
  auto before = reader.pin();

  std::vector<RouteChange> batch;
  for (std::int64_t org = 100; org < 1100; ++org)
    batch.push_back(RouteChange::upsert(make_sub(org, 2)));
  batch.push_back(RouteChange::remove({9, 0}));
  const std::uint64_t v = table.stats().version;
  table.apply(batch);
  EXPECT_EQ(table.stats().version, v + 1);

  EXPECT_EQ(before.size(), 1u);
  EXPECT_EQ(before.find(100, 2), nullptr);
  EXPECT_NE(before.find(9, 0), nullptr);

  auto other = table.make_reader();
  auto after = other.pin();
  EXPECT_EQ(after.size(), 1000u);
  for (std::int64_t org = 100; org < 1100; ++org) ASSERT_NE(after.find(org, 2), nullptr) << org;
  EXPECT_EQ(after.find(9, 0), nullptr);
}

TEST(RoutingTableTest, ApplyKeepsTheOrderOfChangesToOneKey) {
  RoutingTable table;
  std::vector<RouteChange> batch;
  batch.push_back(RouteChange::upsert(make_sub(4, 1, 1)));
  batch.push_back(RouteChange::remove({4, 1}));
  batch.push_back(RouteChange::upsert(make_sub(4, 1, 3)));
  batch.push_back(RouteChange::upsert(make_sub(5, 1, 1)));
  batch.push_back(RouteChange::remove({5, 1}));
  table.apply(batch);
  EXPECT_EQ(table.get({4, 1})->url, url_of(4, 1, 3));
  EXPECT_FALSE(table.get({5, 1}).has_value());
  EXPECT_EQ(table.stats().subscriptions, 1u);
}

TEST(RoutingTableTest, LoadsAMillionSubscriptions) {
  constexpr std::int64_t kOrgs = 1'000'000 / 4;
  std::vector<Subscription> subs;
  subs.reserve(1'000'000);
  for (std::int64_t org = 1; org <= kOrgs; ++org) {
    for (EventTypeId t = 0; t < 4; ++t) subs.push_back(make_sub(org, t));
  }
  RoutingTable table;
  table.upsert(make_sub(kOrgs + 5, 5));  // replaced by load()
  table.load(std::move(subs));
  EXPECT_EQ(table.stats().subscriptions, 1'000'000u);

  auto reader = table.make_reader();
  auto pin = reader.pin();
  EXPECT_EQ(pin.size(), 1'000'000u);
  EXPECT_EQ(pin.find(kOrgs + 5, 5), nullptr);
  for (std::int64_t org = 1; org <= kOrgs; ++org) {
    for (EventTypeId t = 0; t < 6; ++t) {
      const Subscription* s = pin.find(org, t);
      if (t < 4) {
        ASSERT_NE(s, nullptr) << org << "/" << t;
        ASSERT_EQ(s->org_id, org);
        ASSERT_EQ(s->event_type, t);
      } else {
        ASSERT_EQ(s, nullptr);
      }
    }
  }
}

TEST(RoutingTableTest, LoadKeepsTheLastOfDuplicateKeys) {
  RoutingTable table;
  table.load({make_sub(1, 1, 1), make_sub(2, 1, 1), make_sub(1, 1, 2)});
  EXPECT_EQ(table.stats().subscriptions, 2u);
  EXPECT_EQ(table.get({1, 1})->url, url_of(1, 1, 2));
}

// Random upserts, removes and batches against a std::map model, checking every key after each
// step: exercises shard growth, shrinking, and backward-shift deletion across wrap-around.
TEST(RoutingTableTest, MatchesAModelUnderRandomChanges) {
  std::mt19937_64 rng(20261127);
  RoutingTable table;
  std::map<std::pair<std::int64_t, EventTypeId>, std::uint64_t> model;
  auto reader = table.make_reader();
  // Few orgs and types so keys collide often and shards fill and empty repeatedly.
  auto random_key = [&] {
    return std::pair<std::int64_t, EventTypeId>{static_cast<std::int64_t>(rng() % 300) + 1,
                                                static_cast<EventTypeId>(rng() % 6)};
  };
  for (std::uint64_t step = 0; step < 3000; ++step) {
    const auto op = rng() % 10;
    if (op < 5) {
      const auto [org, type] = random_key();
      table.upsert(make_sub(org, type, step));
      model[{org, type}] = step;
    } else if (op < 9) {
      const auto [org, type] = random_key();
      EXPECT_EQ(table.remove({org, type}), model.erase({org, type}) == 1);
    } else {
      std::vector<RouteChange> batch;
      for (int i = 0; i < 50; ++i) {
        const auto [org, type] = random_key();
        if (rng() % 2 != 0) {
          batch.push_back(RouteChange::upsert(make_sub(org, type, step)));
          model[{org, type}] = step;
        } else {
          batch.push_back(RouteChange::remove({org, type}));
          model.erase({org, type});
        }
      }
      table.apply(batch);
    }
    if (step % 100 != 0 && step < 2900) continue;
    auto pin = reader.pin();
    ASSERT_EQ(pin.size(), model.size());
    for (std::int64_t org = 1; org <= 300; ++org) {
      for (EventTypeId t = 0; t < 6; ++t) {
        const Subscription* s = pin.find(org, t);
        const auto it = model.find({org, t});
        if (it == model.end()) {
          ASSERT_EQ(s, nullptr) << "step " << step << " key " << org << "/" << t;
        } else {
          ASSERT_NE(s, nullptr) << "step " << step << " key " << org << "/" << t;
          ASSERT_EQ(s->url, url_of(org, t, it->second));
        }
      }
    }
  }
}

TEST(RoutingTableTest, ReaderSlotsAreReusedAfterReadersGo) {
  RoutingTable table;
  {
    auto a = table.make_reader();
    auto b = table.make_reader();
    EXPECT_EQ(table.stats().readers, 2u);
  }
  EXPECT_EQ(table.stats().readers, 0u);
  auto c = table.make_reader();
  auto moved = std::move(c);
  EXPECT_EQ(table.stats().readers, 1u);
  auto pin = moved.pin();
  EXPECT_EQ(pin.find(1, 1), nullptr);
}

// Readers on several threads while a writer replaces subscriptions: every lookup must return the
// old or the new value, never a torn or freed one; per key, a reader never goes back in time; and
// a batch is seen whole. Run under ThreadSanitizer (label tsan) and AddressSanitizer.
TEST(RoutingTableConcurrencyTest, ReadersSeeOldOrNewValueWhileAWriterReplaces) {
  constexpr std::int64_t kOrgs = 64;
  constexpr EventTypeId kTypes = 6;
  constexpr std::uint64_t kGenerations = 400;
  constexpr int kReaders = 3;

  RoutingTable table;
  {
    std::vector<Subscription> initial;
    for (std::int64_t org = 1; org <= kOrgs; ++org) {
      for (EventTypeId t = 0; t < kTypes; ++t) initial.push_back(make_sub(org, t, 0));
    }
    table.load(std::move(initial));
  }

  std::atomic<bool> done{false};
  std::atomic<std::uint64_t> lookups{0};
  std::vector<std::string> failures(kReaders);
  std::vector<std::thread> readers;
  for (int r = 0; r < kReaders; ++r) {
    readers.emplace_back([&, r] {
      auto reader = table.make_reader();
      std::vector<std::uint64_t> last_gen(static_cast<std::size_t>(kOrgs * kTypes), 0);
      std::uint64_t n = 0;
      auto check = [&](bool final_pass) {
        auto pin = reader.pin();
        // Org 1's six types are always written in one batch: they must agree.
        std::uint64_t batch_gen = UINT64_MAX;
        for (std::int64_t org = 1; org <= kOrgs; ++org) {
          for (EventTypeId t = 0; t < kTypes; ++t) {
            const Subscription* s = pin.find(org, t);
            ++n;
            if (s == nullptr || s->org_id != org || s->event_type != t) {
              failures[static_cast<std::size_t>(r)] = "missing or wrong key";
              return;
            }
            const std::string prefix = "https://hooks.example.com/o" + std::to_string(org) + "/t" +
                                       std::to_string(t) + "/g";
            if (s->url.compare(0, prefix.size(), prefix) != 0) {
              failures[static_cast<std::size_t>(r)] = "torn url " + s->url;
              return;
            }
            const std::uint64_t gen = std::stoull(s->url.substr(prefix.size()));
            auto& last = last_gen[static_cast<std::size_t>((org - 1) * kTypes + t)];
            if (gen < last || gen > kGenerations) {
              failures[static_cast<std::size_t>(r)] = "went back in time at " + s->url;
              return;
            }
            last = gen;
            if (final_pass && gen != kGenerations) {
              failures[static_cast<std::size_t>(r)] = "final value missing at " + s->url;
              return;
            }
            if (org == 1) {
              if (batch_gen == UINT64_MAX) batch_gen = gen;
              if (gen != batch_gen) {
                failures[static_cast<std::size_t>(r)] = "half-applied batch";
                return;
              }
            }
          }
        }
      };
      while (!done.load(std::memory_order_acquire) &&
             failures[static_cast<std::size_t>(r)].empty()) {
        check(false);
      }
      if (failures[static_cast<std::size_t>(r)].empty()) check(true);
      lookups.fetch_add(n, std::memory_order_relaxed);
    });
  }

  for (std::uint64_t g = 1; g <= kGenerations; ++g) {
    std::vector<RouteChange> batch;
    for (EventTypeId t = 0; t < kTypes; ++t)
      batch.push_back(RouteChange::upsert(make_sub(1, t, g)));
    table.apply(batch);
    for (std::int64_t org = 2; org <= kOrgs; ++org) {
      table.upsert(make_sub(org, static_cast<EventTypeId>(g % kTypes), g));
    }
  }
  // Bring every key to the final generation so the last pass can check it.
  std::vector<RouteChange> last;
  for (std::int64_t org = 2; org <= kOrgs; ++org) {
    for (EventTypeId t = 0; t < kTypes; ++t)
      last.push_back(RouteChange::upsert(make_sub(org, t, kGenerations)));
  }
  table.apply(last);
  done.store(true, std::memory_order_release);
  for (auto& t : readers) t.join();

  for (int r = 0; r < kReaders; ++r)
    EXPECT_EQ(failures[static_cast<std::size_t>(r)], "") << "reader " << r;
  EXPECT_GT(lookups.load(), 0u);
  table.reclaim();
  EXPECT_EQ(table.stats().retired_pending, 0u);
}

// --- Reclamation against a reader between loading a root and re-checking it ---
//
// pin() loads current_, publishes that root in its hazard slot, then re-checks current_. If a
// commit frees the loaded root before it is published (no hazard held it yet), the slot then
// holds a freed root until the re-check fails; a commit in that window must not read `version`
// through it in reclaim_locked() (a heap-use-after-free under ASan). A seam runs the test's code
// inside pin().

using PinStep = RoutingTable::PinStep;

// Installs a pin hook for one test and removes it whatever happens.
class ScopedPinHook {
 public:
  explicit ScopedPinHook(void (*hook)(PinStep)) {
    RoutingTable::pin_hook_for_testing.store(hook, std::memory_order_release);
  }
  ~ScopedPinHook() { RoutingTable::pin_hook_for_testing.store(nullptr, std::memory_order_release); }
  ScopedPinHook(const ScopedPinHook&) = delete;
  ScopedPinHook& operator=(const ScopedPinHook&) = delete;
};

// The hook is a plain function pointer: its state lives here (one test at a time uses it).
struct CommitInsidePin {
  RoutingTable* table = nullptr;
  int loaded = 0;
  int published = 0;
};
CommitInsidePin commit_inside_pin;

// One commit while the loaded root is not yet in the hazard slot (it frees that root), then
// another while the freed root sits in the slot, not yet re-checked.
void commit_at_both_steps_once(PinStep step) {
  CommitInsidePin& c = commit_inside_pin;
  if (step == PinStep::kLoaded && c.loaded++ == 0) c.table->upsert(make_sub(1, 0, 2));
  if (step == PinStep::kPublished && c.published++ == 0) c.table->upsert(make_sub(1, 0, 3));
}

// The race step by step on one thread, so it happens on every run.
TEST(RoutingTableReclaimRaceTest, ACommitWhileAFreedRootIsInAHazardSlotDoesNotReadIt) {
  RoutingTable table;
  table.upsert(make_sub(1, 0, 1));
  auto reader = table.make_reader();
  commit_inside_pin = CommitInsidePin{&table, 0, 0};
  {
    ScopedPinHook hook(&commit_at_both_steps_once);
    auto pin = reader.pin();
    EXPECT_EQ(commit_inside_pin.loaded, 1);
    EXPECT_GE(commit_inside_pin.published, 1);
    // Both commits ran inside pin(), which must end on the root they left current.
    ASSERT_NE(pin.find(1, 0), nullptr);
    EXPECT_EQ(pin.find(1, 0)->url, url_of(1, 0, 3));
    EXPECT_EQ(pin.version(), table.stats().version);
  }
  table.reclaim();
  EXPECT_EQ(table.stats().retired_pending, 0u);
}

// Upserts and removes done by the writer of the test below, so a reader inside pin() can let one
// happen.
std::atomic<std::uint64_t> writer_ops{0};

// Yields until the writer has written once more, at most 64 times (so a reader never waits on a
// writer that has finished): a bare yield rarely lets a whole commit in.
void yield_for_a_write() {
  const std::uint64_t seen = writer_ops.load(std::memory_order_acquire);
  for (int i = 0; i < 64 && writer_ops.load(std::memory_order_acquire) == seen; ++i) {
    std::this_thread::yield();
  }
}

// Lets a write land in both windows of a pin's first pass: after loading the root (slot empty)
// and after publishing it (before the re-check). Retries go straight on, so pins succeed often
// and readers keep coming back to the first pass instead of shielding each other with the older
// roots their slots hold while they retry.
void yield_for_writes_in_first_pass(PinStep step) {
  thread_local bool first_pass = false;
  switch (step) {
    case PinStep::kLoaded:
      first_pass = true;
      yield_for_a_write();
      break;
    case PinStep::kPublished:
      if (first_pass) yield_for_a_write();
      break;
    case PinStep::kReloaded:
      first_pass = false;
      break;
  }
}

// The same race from threads: readers pin in a loop, yielding for a write between loading a root
// and publishing it and between publishing it and re-checking it, while a writer upserts and
// removes. Bounded by the writer's count (no clock). Under ASan a reclamation that read through
// a hazard would fail here with a heap-use-after-free in reclaim_locked(); under TSan it checks
// the pin/reclaim ordering.
TEST(RoutingTableReclaimRaceTest, ReadersYieldingInsidePinWhileAWriterCommits) {
  constexpr std::int64_t kOrgs = 4;
  constexpr EventTypeId kTypes = 2;
  constexpr int kWrites = 2000;
  constexpr int kReaders = 3;

  RoutingTable table;
  writer_ops.store(0, std::memory_order_relaxed);
  ScopedPinHook hook(&yield_for_writes_in_first_pass);
  std::atomic<int> ready{0};
  std::atomic<bool> done{false};
  std::vector<std::string> failures(kReaders);
  std::vector<std::thread> readers;
  for (int r = 0; r < kReaders; ++r) {
    readers.emplace_back([&, r] {
      auto reader = table.make_reader();
      std::string& failure = failures[static_cast<std::size_t>(r)];
      std::uint64_t last_version = 0;
      ready.fetch_add(1, std::memory_order_release);
      while (!done.load(std::memory_order_acquire) && failure.empty()) {
        auto pin = reader.pin();
        if (pin.version() < last_version) failure = "went back in time";
        last_version = pin.version();
        for (std::int64_t org = 1; org <= kOrgs; ++org) {
          for (EventTypeId t = 0; t < kTypes; ++t) {
            const Subscription* s = pin.find(org, t);
            if (s == nullptr) continue;  // removed in this snapshot
            std::string prefix = url_of(org, t, 0);
            prefix.pop_back();  // ".../g0" -> ".../g": any generation
            if (s->org_id != org || s->event_type != t || s->url.rfind(prefix, 0) != 0) {
              failure = "wrong subscription " + s->url;
            }
          }
        }
      }
    });
  }
  while (ready.load(std::memory_order_acquire) < kReaders) std::this_thread::yield();

  for (int i = 0; i < kWrites; ++i) {
    const auto org = static_cast<std::int64_t>(i % kOrgs) + 1;
    const auto type = static_cast<EventTypeId>((i / kOrgs) % kTypes);
    if (i % 3 == 2) {
      table.remove(RouteKey{org, type});
    } else {
      table.upsert(make_sub(org, type, static_cast<std::uint64_t>(i)));
    }
    writer_ops.fetch_add(1, std::memory_order_release);
  }
  done.store(true, std::memory_order_release);
  for (auto& t : readers) t.join();

  for (int r = 0; r < kReaders; ++r) {
    EXPECT_EQ(failures[static_cast<std::size_t>(r)], "") << "reader " << r;
  }
  table.reclaim();
  EXPECT_EQ(table.stats().retired_pending, 0u);
}

}  // namespace
}  // namespace fanout::routing
