// Stream entry ids ("<ms>-<seq>") and the table of entries a source holds (read, published,
// not yet acknowledged).
//
// The table is a vector of slots with a free list: a slot's index + 1 is the delivery's engine
// tag (PublishOptions::tag), so an outcome finds its entry in O(1). An index from entry id to
// slot (for entries read again after a reconnect or claimed by XAUTOCLAIM while still held)
// lives in a pool-allocated hash map: after warm-up neither the slots nor the map allocate per
// entry.
//
// Invariant: a slot is in use exactly while its entry is held, and then index_ maps its id to
// it; held() counts them.
#pragma once

#include <compare>
#include <cstddef>
#include <cstdint>
#include <memory_resource>
#include <optional>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace fanout::source {

struct EntryId {
  std::uint64_t ms = 0;
  std::uint64_t seq = 0;
  friend auto operator<=>(const EntryId&, const EntryId&) = default;  // stream order
  // "<ms>-<seq>" into `out` (at least kMaxText bytes); returns the text.
  static constexpr std::size_t kMaxText = 41;
  std::string_view format(char* out) const noexcept;
  [[nodiscard]] static std::optional<EntryId> parse(std::string_view text) noexcept;
};

struct EntryIdHash {
  std::size_t operator()(const EntryId& id) const noexcept {
    return static_cast<std::size_t>((id.ms * 0x9E3779B97F4A7C15ULL) ^ (id.seq + (id.ms >> 17)));
  }
};

class EntryTable {
 public:
  struct Slot {
    EntryId id;
    bool in_use = false;
    bool retry_state = false;  // an attempts record exists in Redis (HDEL it with the XACK)
  };

  EntryTable() : index_(&pool_) {}

  // A free slot for `id` (now held); its tag is index + 1.
  std::uint32_t acquire(const EntryId& id);
  // The slot back (its entry acknowledged or abandoned).
  void release(std::uint32_t index) noexcept;
  [[nodiscard]] bool holds(const EntryId& id) const { return index_.contains(id); }
  [[nodiscard]] Slot* from_tag(std::uint64_t tag) noexcept {
    if (tag == 0 || tag > slots_.size()) return nullptr;
    Slot& s = slots_[tag - 1];
    return s.in_use ? &s : nullptr;
  }
  [[nodiscard]] std::size_t held() const noexcept { return index_.size(); }
  // Every held entry, for the idle-time refresh.
  template <typename F>
  void for_each_held(F&& f) const {
    for (const Slot& s : slots_) {
      if (s.in_use) f(s.id);
    }
  }

 private:
  std::vector<Slot> slots_;
  std::vector<std::uint32_t> free_;
  std::pmr::unsynchronized_pool_resource pool_;
  std::pmr::unordered_map<EntryId, std::uint32_t, EntryIdHash> index_;
};

}  // namespace fanout::source
