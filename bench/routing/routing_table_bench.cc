// Routing-table benchmarks. Run: build/release/bench/routing_table_bench
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <vector>

#include "bench/checked_main.h"
#include "routing/routing_table.h"

namespace fanout::routing {
namespace {

constexpr EventTypeId kTypes = 6;

// The bench-smoke test (FANOUT_BENCH_SMOKE=1) checks every benchmark runs, not its speed: it caps
// table sizes so a sanitizer build finishes in seconds.
std::size_t table_size(std::int64_t arg) {
  const auto n = static_cast<std::size_t>(arg);
  return std::getenv("FANOUT_BENCH_SMOKE") != nullptr ? std::min<std::size_t>(n, 10'000) : n;
}

Subscription make_sub(std::int64_t org, EventTypeId type) {
  Subscription s;
  s.org_id = org;
  s.event_type = type;
  s.url = "https://hooks.example.com/partoo/" + std::to_string(org);
  s.parts = UrlParts{Scheme::kHttps, "hooks.example.com", 443, s.url.substr(25)};
  return s;
}

// A table of `n` subscriptions over n / 3 organisations (each subscribes to 3 of the 6 types),
// with org ids spread over a wide range as a real tenant base would be, plus 64Ki lookup keys
// in random order that all hit. Built once per size and shared by every benchmark and thread.
struct Fixture {
  RoutingTable table;
  std::vector<RouteKey> keys;
  bool keys_hit = false;  // the premise, checked once: every lookup key finds its subscription
};

Fixture& fixture(std::size_t n) {
  static std::mutex mu;
  static std::map<std::size_t, std::unique_ptr<Fixture>> fixtures;
  std::lock_guard lock(mu);
  auto& f = fixtures[n];
  if (f) return *f;
  f = std::make_unique<Fixture>();
  std::mt19937_64 rng(n);
  std::vector<Subscription> subs;
  subs.reserve(n);
  std::vector<RouteKey> all;
  all.reserve(n);
  for (std::size_t i = 0; subs.size() < n; ++i) {
    const auto org = static_cast<std::int64_t>(i * 7919 + 1);
    for (EventTypeId t = static_cast<EventTypeId>(i % 2); t < kTypes && subs.size() < n; t += 2) {
      subs.push_back(make_sub(org, t));
      all.push_back({org, t});
    }
  }
  f->table.load(std::move(subs));
  std::uniform_int_distribution<std::size_t> pick(0, all.size() - 1);
  f->keys.resize(1 << 16);
  for (auto& k : f->keys) k = all[pick(rng)];
  auto reader = f->table.make_reader();
  auto pin = reader.pin();
  f->keys_hit = std::ranges::all_of(
      f->keys, [&](const RouteKey& k) { return pin.find(k.org_id, k.event_type) != nullptr; });
  return *f;
}

// The fixture of size n, or nullptr after SkipWithError when its lookup keys do not all hit
// (the bench-smoke test then fails: bench/checked_main.h).
Fixture* hitting_fixture(benchmark::State& state, std::size_t n) {
  Fixture& f = fixture(n);
  if (f.keys_hit) return &f;
  state.SkipWithError("a lookup key of the fixture finds no subscription");
  return nullptr;
}

// Organisations the miss benchmark asks for: 2 + k * 7919, never 1 mod 7919 as the fixture's are.
constexpr std::size_t kMissOrgs = 1 << 16;
std::int64_t miss_org(std::size_t k) {
  return 2 + static_cast<std::int64_t>(k & (kMissOrgs - 1)) * 7919;
}

// One routing decision as publish() makes it: pin the current snapshot, find the key, unpin.
// Keys are random over the whole table, so at 1M the hash-table line misses the cache: the sweep
// over 1k / 100k / 1M shows the step from cache-resident to memory-bound. Goal: well under
// 100 ns at 1M.
void BM_RouteLookup(benchmark::State& state) {
  Fixture* fp = hitting_fixture(state, table_size(state.range(0)));
  if (fp == nullptr) return;
  Fixture& f = *fp;
  auto reader = f.table.make_reader();
  std::size_t i = static_cast<std::size_t>(state.thread_index()) * 9973;
  for (auto _ : state) {
    const RouteKey& k = f.keys[i++ & (f.keys.size() - 1)];
    auto pin = reader.pin();
    benchmark::DoNotOptimize(pin.find(k.org_id, k.event_type));
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_RouteLookup)->Arg(1'000)->Arg(100'000)->Arg(1'000'000);
// The same from two threads at once (this machine has two cores): readers share nothing
// writable, so the per-thread rate should hold.
BENCHMARK(BM_RouteLookup)->Arg(1'000'000)->Threads(2)->UseRealTime();

// Lookups under one pin (a batch of events routed together): the pin's seq_cst store and
// re-check amortised away, leaving the hash probe alone.
void BM_RouteLookupOnePin(benchmark::State& state) {
  Fixture* fp = hitting_fixture(state, table_size(state.range(0)));
  if (fp == nullptr) return;
  Fixture& f = *fp;
  auto reader = f.table.make_reader();
  std::size_t i = 0;
  auto pin = reader.pin();
  for (auto _ : state) {
    const RouteKey& k = f.keys[i++ & (f.keys.size() - 1)];
    benchmark::DoNotOptimize(pin.find(k.org_id, k.event_type));
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_RouteLookupOnePin)->Arg(1'000)->Arg(1'000'000);

// A lookup that misses (an event for a pair nobody subscribed to: the common "dropped" case).
void BM_RouteLookupMiss(benchmark::State& state) {
  Fixture& f = fixture(table_size(state.range(0)));
  auto reader = f.table.make_reader();
  {
    auto pin = reader.pin();
    for (std::size_t k = 0; k < kMissOrgs; ++k) {
      if (pin.find(miss_org(k), 1) != nullptr) {
        state.SkipWithError("a lookup meant to miss found a subscription");
        return;
      }
    }
  }
  std::size_t k = 0;
  for (auto _ : state) {
    auto pin = reader.pin();
    benchmark::DoNotOptimize(pin.find(miss_org(k++), 1));
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_RouteLookupMiss)->Arg(1'000'000);

// One upsert committed alone into a table of n: copies one shard and the root, so the cost
// should grow as n / 256, not n (compare 1k, 100k and 1M).
void BM_RouteUpsert(benchmark::State& state) {
  const std::size_t n = table_size(state.range(0));
  Fixture& f = fixture(n);
  std::size_t i = 0;
  for (auto _ : state) {
    const RouteKey& k = f.keys[i++ & (f.keys.size() - 1)];
    f.table.upsert(make_sub(k.org_id, k.event_type));
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_RouteUpsert)->Arg(1'000)->Arg(100'000)->Arg(1'000'000);

// Bulk load of n subscriptions (start-up from the store); items/s is subscriptions per second.
void BM_RouteLoad(benchmark::State& state) {
  const std::size_t n = table_size(state.range(0));
  std::vector<Subscription> subs;
  subs.reserve(n);
  for (std::size_t i = 0; i < n; ++i) {
    subs.push_back(
        make_sub(static_cast<std::int64_t>(i / kTypes + 1), static_cast<EventTypeId>(i % kTypes)));
  }
  for (auto _ : state) {
    RoutingTable table;
    table.load(subs);
    benchmark::DoNotOptimize(table.stats().subscriptions);
  }
  state.SetItemsProcessed(state.iterations() * static_cast<std::int64_t>(n));
}
BENCHMARK(BM_RouteLoad)->Arg(1'000'000)->Unit(benchmark::kMillisecond)->Iterations(2);

}  // namespace
}  // namespace fanout::routing

FANOUT_BENCHMARK_MAIN();
