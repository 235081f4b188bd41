// The routing table: (org_id, event_type) -> the one Subscription for that key.
//
// Read-mostly and read from every thread. Readers never lock and never see a half-applied
// change; writers serialise on a mutex, build the next immutable snapshot and publish it with one
// atomic store.
//
// Shape. A snapshot is a root array of kShardCount pointers to shards; a shard is an immutable
// open-addressing hash table (linear probing, load factor <= 1/2) of (org_id, event_type,
// Subscription*). A commit copies only the shards it touches and a new root (a persistent
// two-level structure), so one upsert costs O(n / kShardCount + kShardCount), not O(n), and a
// batch of changes becomes visible all at once, because readers reach every shard through the
// root they pinned.
//
//   commit(batch):  root_v ──► [shard0, shard1*, shard2, ...]      (* = copied and changed)
//                   root_v+1 ─► [shard0, shard1', shard2, ...]     shards 0, 2 shared
//
// Reclamation (hazard slots with versions). Every root carries a version. A reader pins a root by
// publishing it in its hazard slot and re-checking that it is still current (seq_cst), and
// unpins by clearing the slot. A writer that replaces root v retires root v, the shards only v
// used and the subscriptions the change removed, tagged "last visible in v". reclaim() frees a
// retired item once no slot names a retired root whose version is <= its tag. Items are freed by
// the writer (under the mutex), never by readers.
//
// reclaim() compares hazards with the retired roots by address and never reads through one: a
// slot may hold a root freed before its reader published it (loaded, freed by a commit, then
// published; the reader's re-check fails and it retries), so that root's `version` is gone.
// See reclaim_locked().
//
// Invariants:
//   - at most one subscription per (org_id, event_type);
//   - a pinned root, everything it reaches, and every Subscription found through it stay valid
//     and unchanged until the pin is released;
//   - versions of published roots strictly increase;
//   - reclamation never dereferences a hazard slot's root (it may already be freed).
//
// Threading: Reader objects are single-threaded (one per thread); RoutingTable's writer functions
// may be called from any thread (they serialise). The table must outlive every Reader.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <vector>

#include "routing/catalogue.h"
#include "routing/subscription.h"

namespace fanout::routing {

struct RouteKey {
  std::int64_t org_id = 0;
  EventTypeId event_type = 0;
  friend bool operator==(const RouteKey&, const RouteKey&) = default;
};

// One change in a batch: upsert when `subscription` is set (its org_id and event_type give the
// key), remove `key` otherwise.
struct RouteChange {
  RouteKey key;
  std::optional<Subscription> subscription;

  static RouteChange upsert(Subscription s) {
    RouteKey k{s.org_id, s.event_type};
    return {k, std::move(s)};
  }
  static RouteChange remove(RouteKey k) { return {k, std::nullopt}; }
};

struct RoutingStats {
  std::size_t subscriptions = 0;    // in the current snapshot
  std::uint64_t version = 0;        // of the current snapshot
  std::size_t retired_pending = 0;  // retired items not yet reclaimed (pinned by a reader)
  std::size_t readers = 0;          // live Reader objects
};

class RoutingTable {
  struct Root;
  struct Shard;
  struct Slot;
  struct Retired;

 public:
  static constexpr std::size_t kShardBits = 8;
  static constexpr std::size_t kShardCount = std::size_t{1} << kShardBits;

  RoutingTable();
  // Every Reader must have been destroyed first.
  ~RoutingTable();
  RoutingTable(const RoutingTable&) = delete;
  RoutingTable& operator=(const RoutingTable&) = delete;

  // --- Readers ----------------------------------------------------------------------------------

  class Reader;

  // While a Pin lives, find() answers from one snapshot and the Subscription pointers it returns
  // stay valid. Keep pins short (one routing decision): a long pin delays reclamation, never
  // writers. A Pin must not outlive its Reader. Not copyable; movable.
  class Pin {
   public:
    Pin(Pin&& other) noexcept;
    Pin& operator=(Pin&&) = delete;
    Pin(const Pin&) = delete;
    Pin& operator=(const Pin&) = delete;
    ~Pin();

    // The subscription for (org_id, event_type), or nullptr. Valid until this Pin is destroyed.
    // Lock-free, allocation-free, O(1) expected.
    [[nodiscard]] const Subscription* find(std::int64_t org_id, EventTypeId type) const noexcept;
    // Starts loading the memory a find() of this key reads first (a prefetch hint), without
    // waiting for it: a caller that knows the key early (EnvelopeParser's KeyListener) overlaps
    // the cache miss with other work. No effect on what find() answers.
    void prefetch(std::int64_t org_id, EventTypeId type) const noexcept;
    // Subscriptions in the pinned snapshot.
    [[nodiscard]] std::size_t size() const noexcept;
    // Version of the pinned snapshot.
    [[nodiscard]] std::uint64_t version() const noexcept;

   private:
    friend class Reader;
    Pin(Slot* slot, const Root* root) noexcept : slot_(slot), root_(root) {}
    Slot* slot_;
    const Root* root_;
  };

  // A reader's hazard slot. Create one per thread that routes (make_reader()), keep it, and pin
  // through it. One Pin at a time per Reader.
  class Reader {
   public:
    Reader(Reader&& other) noexcept;
    Reader& operator=(Reader&&) = delete;
    Reader(const Reader&) = delete;
    Reader& operator=(const Reader&) = delete;
    ~Reader();

    // Pins the current snapshot. Wait-free apart from retries while writers publish.
    [[nodiscard]] Pin pin() noexcept;

   private:
    friend class RoutingTable;
    explicit Reader(Slot* slot) noexcept : slot_(slot) {}
    Slot* slot_;
  };

  // Registers a hazard slot (takes the writer mutex once; slots of destroyed readers are reused).
  [[nodiscard]] Reader make_reader();

  // --- Writers (any thread; serialised) ---------------------------------------------------------

  // Inserts or replaces the subscription for (s.org_id, s.event_type).
  void upsert(Subscription s);
  // Removes the key; returns whether it was present.
  bool remove(RouteKey key);
  // Applies every change in order, published as one snapshot: readers see all or none.
  void apply(std::span<RouteChange> changes);
  // Replaces the whole content with `subscriptions` (later duplicates of a key win), built
  // shard by shard without intermediate copies. For start-up and bulk imports.
  void load(std::vector<Subscription> subscriptions);

  // A copy of the current subscription for the key (takes no pin beyond the call).
  [[nodiscard]] std::optional<Subscription> get(RouteKey key) const;

  // Frees what no reader can still see. Writers call it after each commit; call it again when
  // readers held pins then, e.g. from a periodic housekeeping task.
  void reclaim();

  [[nodiscard]] RoutingStats stats() const;

#ifdef FANOUT_ROUTING_TESTING
  // Test seam, compiled only into fanout_routing_testing (routing/CMakeLists.txt), which only
  // tests/routing/routing_table_test.cc links: Reader::pin() calls the hook at each step of
  // pinning, so a test can widen the race windows (yield there) or commit from inside them.
  // Production builds have neither the hook nor its check.
  enum class PinStep : std::uint8_t {
    kLoaded,     // a root was loaded from current_; the hazard slot is still empty
    kPublished,  // the root is in the hazard slot and not yet re-checked against current_
    kReloaded,   // the re-check failed: a newer root was loaded; the slot still holds the old one
  };
  static inline std::atomic<void (*)(PinStep)> pin_hook_for_testing{nullptr};
#endif

 private:
  void apply_locked(std::span<RouteChange> changes);
  void publish_locked(std::unique_ptr<Root> next, std::vector<const Shard*> replaced_shards,
                      std::vector<const Subscription*> removed_subs);
  void reclaim_locked();
  static void free_retired(const Retired& r);
  Slot* acquire_slot();
  static const Root* pin_root(Slot* slot, const std::atomic<const Root*>& current) noexcept;

  mutable std::mutex write_mu_;
  std::atomic<const Root*> current_;
  std::atomic<Slot*> slots_;  // append-only list of hazard slots, walked lock-free
  std::vector<Retired> retired_;
  std::vector<const Root*> hazards_;  // reclaim_locked()'s scratch: the slots' roots, sorted
  std::uint64_t next_version_ = 1;
};

}  // namespace fanout::routing
