#include "source/redis/entries.h"

#include <charconv>

namespace fanout::source {

std::string_view EntryId::format(char* out) const noexcept {
  char* p = std::to_chars(out, out + 20, ms).ptr;
  *p++ = '-';
  p = std::to_chars(p, p + 20, seq).ptr;
  return {out, static_cast<std::size_t>(p - out)};
}

std::optional<EntryId> EntryId::parse(std::string_view text) noexcept {
  const std::size_t dash = text.find('-');
  if (dash == std::string_view::npos || dash == 0 || dash + 1 >= text.size()) return std::nullopt;
  EntryId id;
  const char* end = text.data() + dash;
  auto r = std::from_chars(text.data(), end, id.ms);
  if (r.ec != std::errc() || r.ptr != end) return std::nullopt;
  end = text.data() + text.size();
  r = std::from_chars(text.data() + dash + 1, end, id.seq);
  if (r.ec != std::errc() || r.ptr != end) return std::nullopt;
  return id;
}

std::uint32_t EntryTable::acquire(const EntryId& id) {
  std::uint32_t index;
  if (!free_.empty()) {
    index = free_.back();
    free_.pop_back();
  } else {
    index = static_cast<std::uint32_t>(slots_.size());
    slots_.emplace_back();
  }
  Slot& s = slots_[index];
  s.id = id;
  s.in_use = true;
  s.retry_state = false;
  index_.emplace(id, index);
  return index;
}

void EntryTable::release(std::uint32_t index) noexcept {
  Slot& s = slots_[index];
  if (!s.in_use) return;
  s.in_use = false;
  index_.erase(s.id);
  free_.push_back(index);
}

}  // namespace fanout::source
