#include "routing/catalogue.h"

#include <algorithm>
#include <array>

namespace fanout::routing {

namespace {

constexpr std::array<std::string_view, 6> kPartooTypes = {
    "business_created", "business_updated", "business_deleted",
    "message_created",  "message_updated",  "lead_received",
};

bool is_valid_name(std::string_view name) noexcept {
  if (name.empty() || name.size() > kMaxEventTypeNameLength) return false;
  if (name.front() < 'a' || name.front() > 'z') return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
  });
}

}  // namespace

std::string_view to_string(CatalogueError e) noexcept {
  switch (e) {
    case CatalogueError::kBadName:
      return "event type names are 1 to 64 characters of a-z, 0-9 and _, starting with a letter";
    case CatalogueError::kDuplicate:
      return "event type is already in the catalogue";
    case CatalogueError::kFull:
      return "the catalogue holds 256 event types at most";
  }
  return "unknown catalogue error";
}

EventCatalogue::EventCatalogue() {
  sorted_.reserve(kMaxEventTypes);
  for (std::string_view name : kPartooTypes) {
    // The built-in names are valid and distinct; add() cannot fail here.
    (void)add(name);
  }
}

tl::expected<EventTypeId, CatalogueError> EventCatalogue::add(std::string_view name) {
  if (!is_valid_name(name)) return tl::unexpected(CatalogueError::kBadName);
  if (find(name)) return tl::unexpected(CatalogueError::kDuplicate);
  if (names_.size() >= kMaxEventTypes) return tl::unexpected(CatalogueError::kFull);
  const auto id = static_cast<EventTypeId>(names_.size());
  names_.emplace_back(name);
  const auto pos =
      std::upper_bound(sorted_.begin(), sorted_.end(), name,
                       [this](std::string_view n, EventTypeId e) { return n < names_[e]; });
  sorted_.insert(pos, id);
  return id;
}

std::optional<EventTypeId> EventCatalogue::find(std::string_view name) const noexcept {
  const auto it =
      std::lower_bound(sorted_.begin(), sorted_.end(), name,
                       [this](EventTypeId e, std::string_view n) { return names_[e] < n; });
  if (it == sorted_.end() || names_[*it] != name) return std::nullopt;
  return *it;
}

std::string_view EventCatalogue::name(EventTypeId id) const noexcept {
  return id < names_.size() ? std::string_view(names_[id]) : std::string_view();
}

std::vector<std::string_view> EventCatalogue::names() const {
  return {names_.begin(), names_.end()};
}

}  // namespace fanout::routing
