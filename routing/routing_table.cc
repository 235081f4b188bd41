#include "routing/routing_table.h"

#include <algorithm>
#include <array>
#include <bit>
#include <cassert>
#include <functional>
#include <limits>
#include <utility>

namespace fanout::routing {

namespace {

// org_id 0 never names an organisation (validate() requires > 0), so it marks an empty entry.
struct Entry {
  std::int64_t org_id = 0;
  EventTypeId type = 0;
  const Subscription* sub = nullptr;
};

// splitmix64's finaliser: cheap, and every input bit reaches the top bits that pick the shard.
std::uint64_t hash_key(std::int64_t org_id, EventTypeId type) noexcept {
  std::uint64_t x = static_cast<std::uint64_t>(org_id) * 0x9E3779B97F4A7C15ULL ^ type;
  x ^= x >> 30;
  x *= 0xBF58476D1CE4E5B9ULL;
  x ^= x >> 27;
  x *= 0x94D049BB133111EBULL;
  x ^= x >> 31;
  return x;
}

std::size_t shard_of(std::uint64_t h) noexcept {
  return static_cast<std::size_t>(h >> (64 - RoutingTable::kShardBits));
}

constexpr std::size_t kMinShardCapacity = 8;

// Smallest power of two >= 2 * count (load factor <= 1/2), at least kMinShardCapacity.
std::size_t capacity_for(std::size_t count) noexcept {
  return std::max(kMinShardCapacity, std::bit_ceil(count * 2));
}

// Lookup in an entries array; also used while building shards.
const Entry* probe(const Entry* entries, std::size_t mask, std::uint64_t h, std::int64_t org_id,
                   EventTypeId type) noexcept {
  for (std::size_t i = h & mask;; i = (i + 1) & mask) {
    const Entry& e = entries[i];
    if (e.org_id == 0) return nullptr;
    if (e.org_id == org_id && e.type == type) return &e;
  }
}

// One shared, always-empty table for shards that hold nothing, so find() needs no null check.
const Entry kEmptyEntries[1] = {};

}  // namespace

struct RoutingTable::Shard {
  std::vector<Entry> entries;  // capacity is a power of two; never resized once published
  std::size_t count = 0;
};

struct RoutingTable::Root {
  struct Ref {
    const Shard* shard = nullptr;  // nullptr: empty shard
    const Entry* entries = kEmptyEntries;
    std::size_t mask = 0;
  };
  std::uint64_t version = 0;
  std::size_t size = 0;
  std::array<Ref, kShardCount> shards{};
};

// A reader's hazard slot: cache-line aligned so readers on different threads never share a line.
struct alignas(64) RoutingTable::Slot {
  std::atomic<const Root*> hazard{nullptr};
  std::atomic<bool> in_use{false};
  Slot* next = nullptr;  // immutable once the slot is linked
  const std::atomic<const Root*>* current = nullptr;
};

struct RoutingTable::Retired {
  enum class Kind : std::uint8_t { kRoot, kShard, kSubscription };
  std::uint64_t last_visible = 0;  // version of the last root that could reach the item
  Kind kind = Kind::kRoot;
  const void* ptr = nullptr;
};

namespace {

// A mutable shard under construction (writer side only).
class ShardBuilder {
 public:
  explicit ShardBuilder(std::size_t capacity) : entries_(capacity) {}

  std::vector<Entry> take() && { return std::move(entries_); }
  std::size_t count() const noexcept { return count_; }

  // Returns the subscription it replaced, or nullptr.
  const Subscription* upsert(const Subscription* sub, std::uint64_t h) {
    if ((count_ + 1) * 2 > entries_.size()) rehash(entries_.size() * 2);
    const std::size_t mask = entries_.size() - 1;
    for (std::size_t i = h & mask;; i = (i + 1) & mask) {
      Entry& e = entries_[i];
      if (e.org_id == 0) {
        e = Entry{sub->org_id, sub->event_type, sub};
        ++count_;
        return nullptr;
      }
      if (e.org_id == sub->org_id && e.type == sub->event_type) {
        return std::exchange(e.sub, sub);
      }
    }
  }

  // Backward-shift deletion keeps probe sequences intact without tombstones. Returns the
  // removed subscription, or nullptr when the key was absent.
  const Subscription* remove(std::int64_t org_id, EventTypeId type, std::uint64_t h) {
    const std::size_t mask = entries_.size() - 1;
    std::size_t i = h & mask;
    for (;; i = (i + 1) & mask) {
      const Entry& e = entries_[i];
      if (e.org_id == 0) return nullptr;
      if (e.org_id == org_id && e.type == type) break;
    }
    const Subscription* removed = entries_[i].sub;
    for (std::size_t j = (i + 1) & mask;; j = (j + 1) & mask) {
      Entry& e = entries_[j];
      if (e.org_id == 0) break;
      const std::size_t home = hash_key(e.org_id, e.type) & mask;
      // Move e back into the hole unless its home lies cyclically in (i, j].
      const bool home_in_range = i <= j ? (i < home && home <= j) : (i < home || home <= j);
      if (!home_in_range) {
        entries_[i] = e;
        i = j;
      }
    }
    entries_[i] = Entry{};
    --count_;
    if (entries_.size() > kMinShardCapacity && count_ * 8 < entries_.size()) {
      rehash(capacity_for(count_));
    }
    return removed;
  }

 private:
  void rehash(std::size_t capacity) {
    std::vector<Entry> old = std::exchange(entries_, std::vector<Entry>(capacity));
    const std::size_t mask = capacity - 1;
    for (const Entry& e : old) {
      if (e.org_id == 0) continue;
      std::size_t i = hash_key(e.org_id, e.type) & mask;
      while (entries_[i].org_id != 0) i = (i + 1) & mask;
      entries_[i] = e;
    }
  }

  std::vector<Entry> entries_;
  std::size_t count_ = 0;

  friend ShardBuilder copy_of(const std::vector<Entry>&, std::size_t);
};

ShardBuilder copy_of(const std::vector<Entry>& entries, std::size_t count) {
  ShardBuilder b(0);
  b.entries_ = entries;
  b.count_ = count;
  return b;
}

}  // namespace

void RoutingTable::free_retired(const Retired& r) {
  switch (r.kind) {
    case Retired::Kind::kRoot:
      delete static_cast<const Root*>(r.ptr);
      break;
    case Retired::Kind::kShard:
      delete static_cast<const Shard*>(r.ptr);
      break;
    case Retired::Kind::kSubscription:
      delete static_cast<const Subscription*>(r.ptr);
      break;
  }
}

// --- Reader side ---------------------------------------------------------------------------------

const RoutingTable::Root* RoutingTable::pin_root(Slot* slot,
                                                 const std::atomic<const Root*>& current) noexcept {
  const Root* root = current.load(std::memory_order_acquire);
#ifdef FANOUT_ROUTING_TESTING
  if (auto* hook = pin_hook_for_testing.load(std::memory_order_acquire)) hook(PinStep::kLoaded);
#endif
  for (;;) {
    // seq_cst on both: the writer's publish-then-scan and this store-then-recheck must be
    // totally ordered, or a writer could miss this hazard and free `root` under us.
    slot->hazard.store(root, std::memory_order_seq_cst);
#ifdef FANOUT_ROUTING_TESTING
    if (auto* hook = pin_hook_for_testing.load(std::memory_order_acquire)) {
      hook(PinStep::kPublished);
    }
#endif
    const Root* again = current.load(std::memory_order_seq_cst);
    if (again == root) return root;
    root = again;
#ifdef FANOUT_ROUTING_TESTING
    if (auto* hook = pin_hook_for_testing.load(std::memory_order_acquire)) {
      hook(PinStep::kReloaded);
    }
#endif
  }
}

RoutingTable::Pin RoutingTable::Reader::pin() noexcept {
  assert(slot_ != nullptr);
  assert(slot_->hazard.load(std::memory_order_relaxed) == nullptr && "one Pin per Reader");
  return Pin(slot_, pin_root(slot_, *slot_->current));
}

RoutingTable::Pin::Pin(Pin&& other) noexcept
    : slot_(std::exchange(other.slot_, nullptr)), root_(other.root_) {}

RoutingTable::Pin::~Pin() {
  if (slot_ != nullptr) slot_->hazard.store(nullptr, std::memory_order_release);
}

const Subscription* RoutingTable::Pin::find(std::int64_t org_id, EventTypeId type) const noexcept {
  const std::uint64_t h = hash_key(org_id, type);
  const Root::Ref& ref = root_->shards[shard_of(h)];
  const Entry* e = probe(ref.entries, ref.mask, h, org_id, type);
  return e != nullptr ? e->sub : nullptr;
}

void RoutingTable::Pin::prefetch(std::int64_t org_id, EventTypeId type) const noexcept {
  const std::uint64_t h = hash_key(org_id, type);
  const Root::Ref& ref = root_->shards[shard_of(h)];
  __builtin_prefetch(&ref.entries[h & ref.mask]);
}

std::size_t RoutingTable::Pin::size() const noexcept {
  return root_->size;
}
std::uint64_t RoutingTable::Pin::version() const noexcept {
  return root_->version;
}

RoutingTable::Reader::Reader(Reader&& other) noexcept
    : slot_(std::exchange(other.slot_, nullptr)) {}

RoutingTable::Reader::~Reader() {
  if (slot_ == nullptr) return;
  assert(slot_->hazard.load(std::memory_order_relaxed) == nullptr && "Pin outlived its Reader");
  slot_->in_use.store(false, std::memory_order_release);
}

// --- Writer side ---------------------------------------------------------------------------------

RoutingTable::RoutingTable() : current_(new Root{}), slots_(nullptr) {}

RoutingTable::~RoutingTable() {
  std::lock_guard lock(write_mu_);
  for (Slot* s = slots_.load(std::memory_order_acquire); s != nullptr;) {
    assert(!s->in_use.load(std::memory_order_relaxed) && "a Reader outlived its RoutingTable");
    Slot* next = s->next;
    delete s;
    s = next;
  }
  // Everything retired is unreachable now that no reader exists.
  for (const Retired& r : retired_) free_retired(r);
  const Root* root = current_.load(std::memory_order_relaxed);
  for (const Root::Ref& ref : root->shards) {
    if (ref.shard == nullptr) continue;
    for (const Entry& e : ref.shard->entries) delete e.sub;
    delete ref.shard;
  }
  delete root;
}

RoutingTable::Slot* RoutingTable::acquire_slot() {
  std::lock_guard lock(write_mu_);
  for (Slot* s = slots_.load(std::memory_order_relaxed); s != nullptr; s = s->next) {
    if (!s->in_use.load(std::memory_order_acquire)) {
      s->in_use.store(true, std::memory_order_relaxed);
      return s;
    }
  }
  // One scratch entry per slot, so reclaim_locked() never allocates.
  hazards_.reserve(hazards_.capacity() + 1);
  auto* s = new Slot;
  s->in_use.store(true, std::memory_order_relaxed);
  s->current = &current_;
  s->next = slots_.load(std::memory_order_relaxed);
  slots_.store(s, std::memory_order_release);
  return s;
}

RoutingTable::Reader RoutingTable::make_reader() {
  return Reader(acquire_slot());
}

void RoutingTable::upsert(Subscription s) {
  RouteChange change = RouteChange::upsert(std::move(s));
  apply(std::span<RouteChange>(&change, 1));
}

bool RoutingTable::remove(RouteKey key) {
  std::lock_guard lock(write_mu_);
  const Root* root = current_.load(std::memory_order_relaxed);
  const std::uint64_t h = hash_key(key.org_id, key.event_type);
  const Root::Ref& ref = root->shards[shard_of(h)];
  if (probe(ref.entries, ref.mask, h, key.org_id, key.event_type) == nullptr) return false;
  RouteChange change = RouteChange::remove(key);
  apply_locked(std::span<RouteChange>(&change, 1));
  return true;
}

void RoutingTable::apply(std::span<RouteChange> changes) {
  std::lock_guard lock(write_mu_);
  apply_locked(changes);
}

void RoutingTable::apply_locked(std::span<RouteChange> changes) {
  const Root* old_root = current_.load(std::memory_order_relaxed);
  auto next = std::make_unique<Root>(*old_root);

  // Group changes by shard, keeping their order within a shard.
  std::vector<std::pair<std::size_t, std::size_t>> order;  // (shard, index in changes)
  order.reserve(changes.size());
  for (std::size_t i = 0; i < changes.size(); ++i) {
    const RouteKey& k = changes[i].key;
    assert(k.org_id > 0 && "org_id must be > 0 (validate() guarantees it)");
    order.emplace_back(shard_of(hash_key(k.org_id, k.event_type)), i);
  }
  std::stable_sort(order.begin(), order.end(),
                   [](const auto& a, const auto& b) { return a.first < b.first; });

  std::vector<const Shard*> replaced_shards;
  std::vector<const Subscription*> removed_subs;
  std::size_t size = old_root->size;

  for (std::size_t begin = 0; begin < order.size();) {
    const std::size_t shard_index = order[begin].first;
    std::size_t end = begin;
    while (end < order.size() && order[end].first == shard_index) ++end;

    Root::Ref& ref = next->shards[shard_index];
    ShardBuilder builder = ref.shard != nullptr ? copy_of(ref.shard->entries, ref.shard->count)
                                                : ShardBuilder(kMinShardCapacity);
    for (std::size_t k = begin; k < end; ++k) {
      RouteChange& change = changes[order[k].second];
      const RouteKey& key = change.key;
      const std::uint64_t h = hash_key(key.org_id, key.event_type);
      const Subscription* gone = nullptr;
      if (change.subscription) {
        auto* sub = new Subscription(std::move(*change.subscription));
        sub->org_id = key.org_id;
        sub->event_type = key.event_type;
        gone = builder.upsert(sub, h);
        if (gone == nullptr) ++size;
      } else {
        gone = builder.remove(key.org_id, key.event_type, h);
        if (gone != nullptr) --size;
      }
      if (gone != nullptr) removed_subs.push_back(gone);
    }
    if (ref.shard != nullptr) replaced_shards.push_back(ref.shard);
    if (builder.count() == 0) {
      ref = Root::Ref{};
    } else {
      const std::size_t count = builder.count();
      auto* shard = new Shard{std::move(builder).take(), count};
      ref = Root::Ref{shard, shard->entries.data(), shard->entries.size() - 1};
    }
    begin = end;
  }
  next->size = size;
  publish_locked(std::move(next), std::move(replaced_shards), std::move(removed_subs));
}

void RoutingTable::load(std::vector<Subscription> subscriptions) {
  // Count per shard first so every shard is allocated once at its final capacity.
  std::vector<std::uint64_t> hashes(subscriptions.size());
  std::array<std::size_t, kShardCount> counts{};
  for (std::size_t i = 0; i < subscriptions.size(); ++i) {
    hashes[i] = hash_key(subscriptions[i].org_id, subscriptions[i].event_type);
    ++counts[shard_of(hashes[i])];
  }
  std::array<std::unique_ptr<ShardBuilder>, kShardCount> builders;
  for (std::size_t s = 0; s < kShardCount; ++s) {
    if (counts[s] != 0) builders[s] = std::make_unique<ShardBuilder>(capacity_for(counts[s]));
  }
  std::vector<const Subscription*> duplicates;
  for (std::size_t i = 0; i < subscriptions.size(); ++i) {
    assert(subscriptions[i].org_id > 0 && "org_id must be > 0 (validate() guarantees it)");
    auto* sub = new Subscription(std::move(subscriptions[i]));
    if (const Subscription* gone = builders[shard_of(hashes[i])]->upsert(sub, hashes[i])) {
      duplicates.push_back(gone);
    }
  }
  subscriptions.clear();
  // Never visible to a reader: free at once.
  for (const Subscription* d : duplicates) delete d;

  auto next = std::make_unique<Root>();
  for (std::size_t s = 0; s < kShardCount; ++s) {
    if (!builders[s]) continue;
    const std::size_t count = builders[s]->count();
    auto* shard = new Shard{std::move(*builders[s]).take(), count};
    next->shards[s] = Root::Ref{shard, shard->entries.data(), shard->entries.size() - 1};
    next->size += count;
  }

  std::lock_guard lock(write_mu_);
  const Root* old_root = current_.load(std::memory_order_relaxed);
  std::vector<const Shard*> replaced_shards;
  std::vector<const Subscription*> removed_subs;
  removed_subs.reserve(old_root->size);
  for (const Root::Ref& ref : old_root->shards) {
    if (ref.shard == nullptr) continue;
    replaced_shards.push_back(ref.shard);
    for (const Entry& e : ref.shard->entries) {
      if (e.sub != nullptr) removed_subs.push_back(e.sub);
    }
  }
  publish_locked(std::move(next), std::move(replaced_shards), std::move(removed_subs));
}

void RoutingTable::publish_locked(std::unique_ptr<Root> next,
                                  std::vector<const Shard*> replaced_shards,
                                  std::vector<const Subscription*> removed_subs) {
  const Root* old_root = current_.load(std::memory_order_relaxed);
  next->version = next_version_++;
  current_.store(next.release(), std::memory_order_seq_cst);

  const std::uint64_t tag = old_root->version;
  retired_.reserve(retired_.size() + 1 + replaced_shards.size() + removed_subs.size());
  retired_.push_back({tag, Retired::Kind::kRoot, old_root});
  for (const Shard* s : replaced_shards) retired_.push_back({tag, Retired::Kind::kShard, s});
  for (const Subscription* s : removed_subs) {
    retired_.push_back({tag, Retired::Kind::kSubscription, s});
  }
  reclaim_locked();
}

void RoutingTable::reclaim() {
  std::lock_guard lock(write_mu_);
  reclaim_locked();
}

void RoutingTable::reclaim_locked() {
  if (retired_.empty()) return;
  // A hazard slot may hold a root that is already freed, so reclamation compares hazards with the
  // roots it knows to be alive and never reads through them. Reading `r->version` for each
  // hazard r would lose this race (a heap-use-after-free under ASan):
  //   1. reader: root = current_ (root v); not yet published in its slot;
  //   2. writer: publishes v+1, retires v, scans the slots (this one still empty), frees v;
  //   3. reader: publishes v, already freed, in its slot (its re-check will fail: it retries);
  //   4. writer, before that re-check: publishes v+2, scans the slots, finds v, reads v->version.
  // The value read would be garbage at best (once the memory is reused, anything at all).
  //
  // Why addresses suffice: a hazard protects a root only if its reader's re-check then finds that
  // root current (pin_root()). A root so pinned is either still current (it is not retired, and
  // every retired item has a tag below its version, so it holds nothing back) or was retired
  // after the hazard became visible (seq_cst), so no scan since has missed it and it is alive:
  // one of the kRoot entries of retired_, whose tag is its own version. The oldest pinned
  // version is therefore the tag of the first retired root (retired_ is in tag order) that some
  // slot names. A slot naming no live root holds a freed one whose reader will fail its re-check
  // and retry, and protects nothing. If a freed root's address has been reused by a live root,
  // the slot counts as pinning that root: conservative, and exactly right when the reader's
  // re-check then succeeds on it (the pointer it holds is that root). Loading and comparing a
  // freed pointer value, never dereferenced, is what every hazard-pointer scheme does.
  hazards_.clear();
  for (Slot* s = slots_.load(std::memory_order_acquire); s != nullptr; s = s->next) {
    if (const Root* r = s->hazard.load(std::memory_order_seq_cst)) hazards_.push_back(r);
  }
  std::sort(hazards_.begin(), hazards_.end(), std::less<>{});
  std::uint64_t oldest_pinned = std::numeric_limits<std::uint64_t>::max();
  for (const Retired& r : retired_) {
    if (r.kind == Retired::Kind::kRoot &&
        std::binary_search(hazards_.begin(), hazards_.end(), static_cast<const Root*>(r.ptr),
                           std::less<>{})) {
      oldest_pinned = r.last_visible;
      break;
    }
  }
  // Retired items are in non-decreasing tag order: free the prefix no reader can reach. (The
  // search above stopped at the first retired root pinned, the first item this loop keeps.)
  std::size_t freed = 0;
  for (; freed < retired_.size() && retired_[freed].last_visible < oldest_pinned; ++freed) {
    free_retired(retired_[freed]);
  }
  retired_.erase(retired_.begin(), retired_.begin() + static_cast<std::ptrdiff_t>(freed));
}

std::optional<Subscription> RoutingTable::get(RouteKey key) const {
  // Holding the writer mutex keeps the current root alive: only writers free, under it.
  std::lock_guard lock(write_mu_);
  const Root* root = current_.load(std::memory_order_relaxed);
  const std::uint64_t h = hash_key(key.org_id, key.event_type);
  const Root::Ref& ref = root->shards[shard_of(h)];
  const Entry* e = probe(ref.entries, ref.mask, h, key.org_id, key.event_type);
  if (e == nullptr) return std::nullopt;
  return *e->sub;
}

RoutingStats RoutingTable::stats() const {
  std::lock_guard lock(write_mu_);
  RoutingStats st;
  const Root* root = current_.load(std::memory_order_relaxed);
  st.subscriptions = root->size;
  st.version = root->version;
  st.retired_pending = retired_.size();
  for (Slot* s = slots_.load(std::memory_order_acquire); s != nullptr; s = s->next) {
    if (s->in_use.load(std::memory_order_acquire)) ++st.readers;
  }
  return st;
}

}  // namespace fanout::routing
