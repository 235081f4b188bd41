// The event-type catalogue: the names an event's "type" and a subscription's "event_type" may
// take, each mapped to a small dense id that the routing table keys on.
//
// The default catalogue is Partoo's (docs/webhook-contract.md §3), with fixed ids in this order:
//   0 business_created   1 business_updated   2 business_deleted
//   3 message_created    4 message_updated    5 lead_received
// An operator may add names (docs/webhook-contract.md §3, [decision]); added names take the next
// ids.
//
// Threading: add() is not thread-safe. Build the catalogue completely, then share it read-only;
// every const member may be called from any thread at once.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <tl/expected.hpp>

namespace fanout::routing {

// Dense id of an event type inside one catalogue; only meaningful with that catalogue.
using EventTypeId = std::uint16_t;

// A catalogue never holds more names than this (ids stay well inside EventTypeId).
inline constexpr std::size_t kMaxEventTypes = 256;
// Longest event-type name accepted by add().
inline constexpr std::size_t kMaxEventTypeNameLength = 64;

enum class CatalogueError : std::uint8_t {
  kBadName,    // not 1..64 characters of [a-z0-9_] starting with a letter
  kDuplicate,  // the name is already in the catalogue
  kFull,       // kMaxEventTypes names already
};

// A short English phrase for the error, e.g. "name already in the catalogue".
[[nodiscard]] std::string_view to_string(CatalogueError e) noexcept;

class EventCatalogue {
 public:
  // Partoo's six event types, ids as listed in the file comment.
  EventCatalogue();

  // Adds `name` with the next id. Names are 1..64 characters of [a-z0-9_] starting with a
  // letter, so they never need escaping in JSON or HTTP. On error nothing changes.
  [[nodiscard]] tl::expected<EventTypeId, CatalogueError> add(std::string_view name);

  // The id of `name` (exact, case-sensitive match), or nullopt when it is not in the catalogue.
  // O(log n), no allocation.
  [[nodiscard]] std::optional<EventTypeId> find(std::string_view name) const noexcept;

  // The name of `id`; empty when `id` is out of range. The view stays valid as long as the
  // catalogue lives: names are never removed, and names_ never reallocates.
  [[nodiscard]] std::string_view name(EventTypeId id) const noexcept;

  [[nodiscard]] std::size_t size() const noexcept { return names_.size(); }

  // Every name in id order, for listings such as GET /v2/webhooks/events.
  [[nodiscard]] std::vector<std::string_view> names() const;

 private:
  // A deque: push_back never moves existing strings, so views into them (small-buffer ones
  // included) stay valid while names are added; copies are deep and independent.
  std::deque<std::string> names_;
  // Ids ordered by their name, for find().
  std::vector<EventTypeId> sorted_;
};

}  // namespace fanout::routing
