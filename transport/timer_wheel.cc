#include "transport/timer_wheel.h"

#include <algorithm>
#include <bit>
#include <limits>

namespace fanout::transport {
namespace {

constexpr std::uint64_t kSlotMask = TimerWheel::kSlots - 1;
constexpr unsigned kTop = TimerWheel::kLevels - 1;

constexpr unsigned shift_of(unsigned level) {
  return level * TimerWheel::kSlotBits;
}

// The level of the highest base-64 digit in which `deadline` differs from `now`; differences
// above the top level clamp to it. The `| kSlotMask` makes equal times land on level 0.
unsigned level_for(std::uint64_t now, std::uint64_t deadline) {
  const auto highest_bit = static_cast<unsigned>(std::bit_width((now ^ deadline) | kSlotMask)) - 1;
  return std::min(highest_bit / TimerWheel::kSlotBits, kTop);
}

}  // namespace

TimerWheel::TimerWheel(std::uint64_t now_ms) noexcept : now_(now_ms) {}

TimerWheel::~TimerWheel() {
  clear();
}

void TimerWheel::unlink(TimerEntry& entry) noexcept {
  List::erase(&entry);
  // Keep the bitmap exact so next_deadline() never reports a slot emptied by cancels: a stale bit
  // would wake the loop for nothing, and most timeouts end cancelled.
  if (entry.slot_ != kPendingSlot) {
    if (heads_[entry.slot_].empty()) {
      occupied_[entry.slot_ / kSlots] &= ~(std::uint64_t{1} << (entry.slot_ % kSlots));
    }
  }
}

void TimerWheel::place(TimerEntry& entry) noexcept {
  const unsigned level = level_for(now_, entry.deadline_);
  // For the top level this is also right for clamped deadlines: the slot is a function of the
  // deadline alone, so equal deadlines scheduled at different times share a list and keep their
  // FIFO order through every re-cascade.
  const auto slot = static_cast<unsigned>((entry.deadline_ >> shift_of(level)) & kSlotMask);
  const auto index = static_cast<std::uint16_t>(level * kSlots + slot);
  entry.slot_ = index;
  heads_[index].push_back(&entry);
  occupied_[level] |= std::uint64_t{1} << slot;
}

void TimerWheel::schedule(TimerEntry& entry, std::uint64_t deadline_ms) noexcept {
  if (entry.armed()) {
    unlink(entry);
  } else {
    ++size_;
  }
  entry.deadline_ = std::max(deadline_ms, now_);
  place(entry);
}

void TimerWheel::cancel(TimerEntry& entry) noexcept {
  if (!entry.armed()) return;
  unlink(entry);
  --size_;
}

std::optional<TimerWheel::Visit> TimerWheel::next_visit() const noexcept {
  // Levels 0..kTop-1 never hold entries in slots before now_'s own digit (they would have been
  // visited already), so a mask suffices there. Lower levels are always due first.
  for (unsigned level = 0; level < kTop; ++level) {
    const unsigned shift = shift_of(level);
    const auto digit = static_cast<unsigned>((now_ >> shift) & kSlotMask);
    const std::uint64_t bits = occupied_[level] & (~std::uint64_t{0} << digit);
    if (bits == 0) continue;
    const auto slot = static_cast<unsigned>(std::countr_zero(bits));
    const std::uint64_t level_start = now_ & ~((std::uint64_t{1} << (shift + kSlotBits)) - 1);
    return Visit{level, slot, level_start | (std::uint64_t{slot} << shift)};
  }
  // The top level is circular: search from the slot after now_'s, wrapping, so that now_'s own
  // slot (holding only deadlines at least one full turn ahead) comes last.
  if (occupied_[kTop] == 0) return std::nullopt;
  const unsigned shift = shift_of(kTop);
  const std::uint64_t current = now_ >> shift;  // absolute top-slot number
  const auto first = static_cast<int>((current + 1) & kSlotMask);
  const auto ahead = static_cast<unsigned>(std::countr_zero(std::rotr(occupied_[kTop], first)));
  const std::uint64_t absolute = current + 1 + ahead;
  const auto slot = static_cast<unsigned>(absolute & kSlotMask);
  // Saturate instead of wrapping for times within 2^36 ms of the end of uint64_t.
  const std::uint64_t start = absolute > (std::numeric_limits<std::uint64_t>::max() >> shift)
                                  ? std::numeric_limits<std::uint64_t>::max()
                                  : absolute << shift;
  return Visit{kTop, slot, start};
}

std::optional<std::uint64_t> TimerWheel::next_deadline() const noexcept {
  const auto visit = next_visit();
  if (!visit) return std::nullopt;
  return visit->start;
}

std::size_t TimerWheel::advance(std::uint64_t now_ms) noexcept {
  assert(!firing_ && "TimerWheel::advance called from one of its own callbacks");
  List& pending = heads_[kPendingSlot];

  // Collect. now_ only ever moves to the start of the next slot with work, so the placement
  // invariant (see the header) holds at every step and a cascade never skips a slot.
  while (true) {
    const auto visit = next_visit();
    if (!visit || visit->start > now_ms) break;
    now_ = std::max(now_, visit->start);
    const unsigned index = visit->level * kSlots + visit->slot;
    List& head = heads_[index];
    occupied_[visit->level] &= ~(std::uint64_t{1} << visit->slot);
    if (head.empty()) continue;
    if (visit->level == 0) {
      // Due: the whole slot joins the batch, in order.
      for (TimerEntry& entry : head) entry.slot_ = kPendingSlot;
      pending.splice_back(head);
      continue;
    }
    // Detach the whole list first: a top-level cascade may put entries back into this slot.
    List cascade;
    cascade.splice_back(head);
    while (TimerEntry* entry = cascade.pop_front()) place(*entry);
  }
  now_ = std::max(now_, now_ms);

  // Fire. Each entry leaves the batch before its callback runs, so callbacks see a consistent
  // wheel and whatever they cancel in the batch is simply no longer there.
  firing_ = true;
  std::size_t fired = 0;
  while (TimerEntry* due = pending.front()) {
    TimerEntry& entry = *due;
    unlink(entry);
    --size_;
    ++fired;
    assert(entry.callback_ != nullptr && "TimerEntry fired without a callback");
    entry.callback_(entry, entry.data_);
  }
  firing_ = false;
  return fired;
}

void TimerWheel::clear() noexcept {
  for (List& head : heads_) {
    while (head.pop_front() != nullptr) {
    }
  }
  occupied_.fill(0);
  size_ = 0;
}

}  // namespace fanout::transport
