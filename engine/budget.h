// In-flight budgets per organisation and per origin (EngineOptions::org_* and origin_*), beside
// the global ones: so that one tenant, or one dead receiver, cannot fill the engine for everyone.
//
// A BudgetTable is a fixed array of counters (events and bytes in flight) found by key with
// linear probing. A key (an org_id, or an origin's 64-bit hash) claims its slot with one
// compare-and-swap the first time it is seen and keeps it for the engine's life, so lookups never
// lock and entries never move: a Delivery keeps a pointer to its two entries. When a key finds
// no free slot within kMaxProbe steps (the table is full of other keys), it shares the overflow
// entry, whose limits are those of one key: degraded fairness, never a refusal of its own.
//
// take() adds first and checks after (undoing on refusal), so concurrent publishers may each see
// the other's addition and both be refused near the limit: the budget is never exceeded, and a
// refusal is only ever "slow down".
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>

namespace fanout::engine {

class BudgetTable {
 public:
  struct alignas(64) Entry {  // one cache line: entries of busy keys do not share lines
    std::atomic<std::uint64_t> key{0};
    std::atomic<std::int64_t> count{0};
    std::atomic<std::int64_t> bytes{0};
  };

  // `slots` rounded up to a power of two (at least 64).
  explicit BudgetTable(std::size_t slots);

  // The entry of `key` (non-zero), claimed if new; the overflow entry when none is free nearby.
  [[nodiscard]] Entry* find(std::uint64_t key) noexcept;
  // Loads the slot where find(key) begins, without claiming it and without anything waiting for
  // the value: a publisher that learns the organisation early overlaps the cache miss with its
  // parse. A load, not __builtin_prefetch: measured (bench/README.md, engine, "The routing
  // key's misses"), find() still stalled on the slot after the hint, not after a load.
  void prefetch(std::uint64_t key) const noexcept {
    (void)slots_[home(key)].key.load(std::memory_order_relaxed);
  }

  // Adds one event of `bytes` to `e` unless that would pass `max_count` or `max_bytes` (0: no
  // limit); true when added.
  static bool take(Entry& e, std::int64_t bytes, std::int64_t max_count,
                   std::int64_t max_bytes) noexcept {
    const std::int64_t c = e.count.fetch_add(1, std::memory_order_relaxed) + 1;
    const std::int64_t b = e.bytes.fetch_add(bytes, std::memory_order_relaxed) + bytes;
    if ((max_count != 0 && c > max_count) || (max_bytes != 0 && b > max_bytes)) {
      give_back(e, bytes);
      return false;
    }
    return true;
  }
  static void give_back(Entry& e, std::int64_t bytes) noexcept {
    e.count.fetch_sub(1, std::memory_order_relaxed);
    e.bytes.fetch_sub(bytes, std::memory_order_relaxed);
  }

  // Keys holding a slot (the overflow entry not counted).
  [[nodiscard]] std::size_t keys() const noexcept { return used_.load(std::memory_order_relaxed); }
  [[nodiscard]] const Entry& overflow() const noexcept { return overflow_; }

  static constexpr std::size_t kMaxProbe = 64;

 private:
  // Where `key`'s probe starts: a 64-bit mix (splitmix64's finaliser), so consecutive org ids
  // spread over the table.
  [[nodiscard]] std::size_t home(std::uint64_t key) const noexcept {
    std::uint64_t h = key;
    h = (h ^ (h >> 30)) * 0xbf58476d1ce4e5b9ULL;
    h = (h ^ (h >> 27)) * 0x94d049bb133111ebULL;
    h ^= h >> 31;
    return static_cast<std::size_t>(h) & mask_;
  }

  std::size_t mask_;
  std::unique_ptr<Entry[]> slots_;
  Entry overflow_;
  std::atomic<std::size_t> used_{0};
};

// The key of an origin (scheme, host, port): FNV-1a 64 of the three, never 0.
[[nodiscard]] std::uint64_t origin_key(bool tls, std::string_view host,
                                       std::uint16_t port) noexcept;

}  // namespace fanout::engine
