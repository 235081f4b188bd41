#include "engine/budget.h"

#include <bit>
#include <string_view>

namespace fanout::engine {

BudgetTable::BudgetTable(std::size_t slots)
    : mask_(std::bit_ceil(std::max<std::size_t>(slots, 64)) - 1),
      slots_(std::make_unique<Entry[]>(mask_ + 1)) {}

BudgetTable::Entry* BudgetTable::find(std::uint64_t key) noexcept {
  const std::size_t h = home(key);
  for (std::size_t i = 0; i < kMaxProbe; ++i) {
    Entry& e = slots_[(h + i) & mask_];
    std::uint64_t seen = e.key.load(std::memory_order_acquire);
    if (seen == key) return &e;
    if (seen == 0) {
      if (e.key.compare_exchange_strong(seen, key, std::memory_order_acq_rel)) {
        used_.fetch_add(1, std::memory_order_relaxed);
        return &e;
      }
      if (seen == key) return &e;  // another thread claimed it for the same key
    }
  }
  return &overflow_;
}

std::uint64_t origin_key(bool tls, std::string_view host, std::uint16_t port) noexcept {
  std::uint64_t h = 0xcbf29ce484222325ULL;
  auto mix = [&h](unsigned char c) { h = (h ^ c) * 0x100000001b3ULL; };
  mix(tls ? 's' : 'p');
  for (const char c : host) mix(static_cast<unsigned char>(c));
  mix(static_cast<unsigned char>(port >> 8));
  mix(static_cast<unsigned char>(port & 0xff));
  return h == 0 ? 1 : h;
}

}  // namespace fanout::engine
