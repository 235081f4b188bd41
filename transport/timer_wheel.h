// A hierarchical timer wheel: the loop primitive for connect, response and idle timeouts and for
// retry backoffs, sized for a million live timers per worker.
//
// Shape (tokio's levels, h2o's intrusive entries, libuv's FIFO tie-break). Time is an integer
// count of milliseconds, injected by the caller: the wheel has no clock of its own, advance(now)
// moves it. There are kLevels = 6 levels of kSlots = 64 slots. A slot of level L is 64^L ms wide,
// so level L spans 64^(L+1) ms and the whole wheel spans 64^6 = 2^36 ms (about 795 days). Each
// slot is an intrusive FIFO list of TimerEntry; each level has a uint64_t occupancy bitmap (bit s
// set <=> slot s non-empty), so finding the next slot with work is a mask and a countr_zero per
// level, never a scan of empty slots.
//
// Placement. Write times in base 64: digit L of t is (t >> 6L) & 63. An entry with deadline d
// goes to the level of the highest digit in which d differs from the wheel's current time
// `now()`, into the slot numbered by that digit of d. Hence an entry at level L agrees with now()
// on every digit above L and is due in a later level-L slot than now() is in (level 0: the same
// or a later one): every entry of level L is due before every entry of level L+1, and the lowest
// non-empty level holds the earliest deadlines. (The top level wraps around; see the last line
// of the example.)
//
// Worked example (now() = 1000 = digits [15, 40], most significant first):
//   deadline 1010 = [15, 50]     -> level 0, slot 50. Fires when advance() reaches 1010.
//   deadline 1050 = [16, 26]     -> level 1, slot 16, which covers [1024, 1088). When advance()
//                                   passes 1024 the slot is emptied and its entries are placed
//                                   again against now = 1024 = [16, 0] (cascading): 1050 then
//                                   lands in level 0, slot 26, and fires at 1050.
//   deadline 5000 = [1, 14, 8]   -> level 2, slot 1, covering [4096, 8192). At 4096 it cascades
//                                   to level 1, slot 14 = [4992, 5056); at 4992 to level 0,
//                                   slot 8; it fires at 5000.
//   deadline 2^36 + 1005         -> differs from now() above the top level: clamped to level 5,
//                                   slot (d >> 30) & 63 = 0, the slot now() itself is in. The top
//                                   level is circular and its current slot counts as one full
//                                   turn ahead, so it is visited at 2^36 and cascades then to
//                                   level 1 (2^36 + 1005 = 2^36 + [15, 45]) and fires at its
//                                   deadline. A deadline k turns ahead is re-placed into the same
//                                   top slot k-1 times before it moves down: it costs one
//                                   cascade per 2^36 ms and is never fired early.
//
// Firing (h2o's collect-then-fire). advance(now) first visits, in time order, every slot whose
// start is <= now: a level-0 slot moves its entries, in list order, to a private pending list; a
// higher slot cascades. Only then are the pending entries fired one by one, each unlinked and
// disarmed before its callback runs. So a callback may schedule or cancel any entry, including
// one still pending in the same batch (a cancelled one then does not fire), and an entry scheduled
// from a callback lands in the wheel proper, never in the batch being fired: if it is already due
// it fires in the next advance() call, never in the current one (no livelock).
//
// Order. Entries fire in deadline order; entries with equal deadlines fire in the order they
// were scheduled (or last re-scheduled), as libuv breaks ties. Lists are appended at the tail
// and cascades walk them head to tail, so relative order survives every move. A deadline earlier
// than now() is treated as now(): the entry fires at the next advance(), after entries already due
// at now() that were scheduled before it; deadline() then reports now().
//
// Cost. schedule O(1); cancel O(1); advance O(levels) per visited slot plus O(1) per fired entry
// plus one O(1) move per cascade (an entry cascades at most kLevels - 1 times, plus once per 2^36
// ms beyond the span). No allocation ever: the wheel is a fixed array of list heads.
//
// Threading: single-threaded. A wheel and its entries belong to one thread (one worker's loop)
// and are used only from it. Nothing here is thread-safe.
#pragma once

#include <array>
#include <cassert>
#include <cstddef>
#include <cstdint>
#include <optional>

#include "transport/intrusive_list.h"

namespace fanout::transport {

class TimerWheel;

// One timer, embedded in its owner (a connection, a stream, a waiting delivery): the wheel links
// it into its slot lists and never allocates, owns or frees it.
//
// Callback form: a plain function pointer plus a `void* data`, the shape of every libuv and
// nghttp2 callback here. It costs the same single indirect call as a virtual on_timer(), but the
// owner needs no base class and may embed several entries (connect, idle, retry) that each call a
// different member; TimerEntry::bind<&Owner::member>(this) writes the trampoline for you. The
// price is 8 bytes for `data`; an entry is 48 bytes.
//
// Lifetime: an entry must not be destroyed, moved or copied while armed (it is not copyable or
// movable at all; the destructor asserts !armed() in debug builds). Cancel it first, typically in
// the owner's destructor. Auto-cancel would need a back pointer to the wheel in every entry and
// would hide teardown-order bugs (a wheel destroyed before its entries).
//
// Threading: the thread of the wheel it is scheduled on.
class TimerEntry : private ListNode<TimerEntry> {
 public:
  // Called by TimerWheel::advance with the entry already disarmed. `data` is the pointer given
  // to the constructor or set_callback. The callback may schedule, re-schedule or cancel any
  // entry of the same wheel (this one included) and may destroy this entry's owner; it must not
  // call advance() on the same wheel (asserted in debug builds).
  using Callback = void (*)(TimerEntry& entry, void* data) noexcept;

  TimerEntry() noexcept = default;
  TimerEntry(Callback callback, void* data) noexcept : callback_(callback), data_(data) {}
  ~TimerEntry() { assert(!armed() && "destroying an armed TimerEntry: cancel it first"); }
  TimerEntry(const TimerEntry&) = delete;
  TimerEntry& operator=(const TimerEntry&) = delete;

  // Sets what runs on expiry. Allowed while armed: the callback read at fire time is used. A
  // TimerEntry with no callback must not fire (asserted).
  void set_callback(Callback callback, void* data) noexcept {
    callback_ = callback;
    data_ = data;
  }

  // Makes expiry call `(owner->*kMethod)()`, e.g. `idle_timer_.bind<&Conn::on_idle>(this)`.
  // kMethod must be a noexcept-callable member function taking no arguments.
  template <auto kMethod, class Owner>
  void bind(Owner* owner) noexcept {
    set_callback([](TimerEntry&, void* d) noexcept { (static_cast<Owner*>(d)->*kMethod)(); },
                 owner);
  }

  // True from schedule() until it fires or is cancelled (or its wheel is cleared or destroyed).
  // While the callback runs the entry is already disarmed.
  [[nodiscard]] bool armed() const noexcept { return linked(); }
  // The effective deadline: max(requested deadline, wheel's now() at schedule time). Meaningful
  // while armed; after firing it still holds the deadline that fired.
  [[nodiscard]] std::uint64_t deadline() const noexcept { return deadline_; }
  [[nodiscard]] void* data() const noexcept { return data_; }

 private:
  friend class TimerWheel;
  friend class IntrusiveList<TimerEntry>;  // the wheel's slot lists: linked <=> armed

  std::uint64_t deadline_ = 0;
  Callback callback_ = nullptr;
  void* data_ = nullptr;
  // Index of the list the entry is linked in: level * kSlots + slot, or kPendingSlot while it
  // waits in advance()'s batch. Meaningful only while armed.
  std::uint16_t slot_ = 0;
};

class TimerWheel {
 public:
  static constexpr unsigned kSlotBits = 6;
  static constexpr unsigned kSlots = 1U << kSlotBits;  // per level
  static constexpr unsigned kLevels = 6;
  // Milliseconds covered by the levels; later deadlines are clamped to the top level and
  // re-cascaded (see the worked example above), never fired early.
  static constexpr std::uint64_t kSpanMs = std::uint64_t{1} << (kSlotBits * kLevels);

  // `now_ms` is the starting time; it need not be aligned to anything.
  explicit TimerWheel(std::uint64_t now_ms = 0) noexcept;
  // Disarms every entry still armed, without firing it (see clear()). The entries themselves
  // are not touched otherwise and remain owned by their owners.
  ~TimerWheel();
  // Not copyable or movable: armed entries point into the wheel.
  TimerWheel(const TimerWheel&) = delete;
  TimerWheel& operator=(const TimerWheel&) = delete;

  // Arms `entry` to fire at the first advance(now) with now >= deadline_ms; a deadline before
  // now() counts as now(). If the entry is already armed it is moved (re-scheduled), and it
  // counts as scheduled now for the FIFO order among equal deadlines. O(1), never allocates. The
  // entry must not be armed in another wheel and must outlive its armed period. From inside a
  // callback: allowed for any entry; an entry due at or before now() fires in the next advance()
  // call, not in the current one.
  void schedule(TimerEntry& entry, std::uint64_t deadline_ms) noexcept;

  // Disarms `entry` if armed; it will not fire. O(1) and idempotent (a no-op on a disarmed
  // entry). From inside a callback: allowed for any entry, including one of the batch being
  // fired that has not fired yet.
  void cancel(TimerEntry& entry) noexcept;

  // Same as entry.armed(). (An entry armed in another wheel also reports true: an entry must be
  // used with one wheel only.)
  [[nodiscard]] bool armed(const TimerEntry& entry) const noexcept { return entry.armed(); }
  // Armed entries, including those collected by a running advance() and not fired yet. O(1).
  [[nodiscard]] std::size_t size() const noexcept { return size_; }
  [[nodiscard]] bool empty() const noexcept { return size_ == 0; }
  // The wheel's time: the largest now_ms passed to advance() (or the constructor).
  [[nodiscard]] std::uint64_t now() const noexcept { return now_; }

  // The earliest time at which advance() has work, or nullopt when nothing is armed (entries
  // pending inside a running advance() are not counted). Precisely: the start time of the first
  // occupied slot of the lowest non-empty level. When that is level 0 it equals the earliest
  // deadline exactly; otherwise it is a lower bound (<= the earliest deadline) at which
  // advance() cascades that slot to lower levels. Either way advance(*next_deadline()) makes
  // progress, so a driver that sleeps until next_deadline(), advances, and asks again reaches
  // every deadline on time, with extra wake-ups only at cascade points (at most kLevels - 1 per
  // earliest entry, plus one per 2^36 ms beyond the span). The result may be <= now() (entries
  // already due). O(kLevels), const, no side effects.
  [[nodiscard]] std::optional<std::uint64_t> next_deadline() const noexcept;

  // Moves the wheel to `now_ms` and fires every entry whose deadline is <= now_ms: in deadline
  // order, equal deadlines in scheduling order. Returns how many callbacks ran. Entries are
  // collected first and fired after, so callbacks may schedule and cancel freely (see the class
  // comment); what they schedule due now fires in the next call. A now_ms below now() is
  // treated as now() (time never moves backwards). Must not be called from one of this wheel's
  // callbacks (asserted in debug builds). Cost: see the class comment; an advance with nothing
  // due is O(kLevels).
  std::size_t advance(std::uint64_t now_ms) noexcept;

  // Disarms every armed entry without firing it. O(size() + kLevels * kSlots). For shutdown.
  // Allowed from a callback: entries still pending in the running batch are disarmed and do not
  // fire.
  void clear() noexcept;

 private:
  using List = IntrusiveList<TimerEntry>;
  static constexpr std::uint16_t kPendingSlot = kLevels * kSlots;

  // Next slot to visit: its level, its slot number and the time it starts.
  struct Visit {
    unsigned level;
    unsigned slot;
    std::uint64_t start;
  };
  [[nodiscard]] std::optional<Visit> next_visit() const noexcept;
  void place(TimerEntry& entry) noexcept;
  void unlink(TimerEntry& entry) noexcept;

  std::uint64_t now_;
  std::size_t size_ = 0;
  std::array<std::uint64_t, kLevels> occupied_{};
  // heads_[level * kSlots + slot]; heads_[kPendingSlot] is advance()'s batch of due entries.
  std::array<List, kLevels * kSlots + 1> heads_;
  bool firing_ = false;
};

}  // namespace fanout::transport
