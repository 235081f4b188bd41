// Recycled heap blocks for deliveries.
//
// Every accepted event is one heap block (worker.h: the Delivery, its id, its body). A block is
// allocated on the publishing thread (an HTTP loop, a broker source) and freed on a worker's
// thread, so with malloc alone each event pays a cross-thread free (glibc hands the chunk back to
// the publisher's arena under that arena's lock) and the publisher's arena grows and trims its
// top again and again (page faults). The pool keeps freed blocks by size class and hands them
// back to the next publish: a lock-free queue per class (moodycamel), no lock, no syscall.
//
// Size classes go from 1 KiB to 32 KiB in steps of a power of two and one and a half times it
// (1, 1.5, 2, 3, 4, 6 ... 24, 32 KiB), so a block wastes at most a third of its size (a typical
// delivery, ~1.4 KiB with a 600-byte body, takes 1.5 KiB, not 2); a larger block is plain
// new/delete. Each class keeps at most kMaxPooledBytes of free blocks: a burst's blocks beyond
// that are freed, so the pool's memory is bounded whatever the in-flight count was.
//
// Thread safety: take() and give() from any thread. Blocks still pooled are freed by the
// destructor; every block taken must have been given back (or freed) by then.
#pragma once

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>

#include <concurrentqueue/concurrentqueue.h>

namespace fanout::engine {

class DeliveryPool {
 public:
  static constexpr unsigned kMinShift = 10;  // 1 KiB
  static constexpr unsigned kClasses = 11;   // 1, 1.5, 2, 3, 4, 6, 8, 12, 16, 24, 32 KiB
  static constexpr std::uint8_t kUnpooled = 0xff;
  static constexpr std::size_t kMaxPooledBytes = std::size_t{8} << 20;  // per class

  DeliveryPool() = default;
  ~DeliveryPool();
  DeliveryPool(const DeliveryPool&) = delete;
  DeliveryPool& operator=(const DeliveryPool&) = delete;

  // The class of a block of `size` bytes, or kUnpooled when it is larger than every class.
  [[nodiscard]] static std::uint8_t class_of(std::size_t size) noexcept;
  // Bytes of a block of class `cls` (cls < kClasses): even classes are powers of two, odd ones
  // one and a half times the class below.
  [[nodiscard]] static constexpr std::size_t class_size(std::uint8_t cls) noexcept {
    const std::size_t power = std::size_t{1} << (kMinShift + cls / 2u);
    return cls % 2u == 0 ? power : power + power / 2;
  }

  // A block of at least `size` bytes; `cls` receives its class (kUnpooled: from operator new
  // at exactly `size`). Throws std::bad_alloc as operator new does.
  [[nodiscard]] void* take(std::size_t size, std::uint8_t& cls);
  // Gives back a block from take() with its class: kept for reuse, or freed when its class is
  // full (or kUnpooled).
  void give(void* block, std::uint8_t cls) noexcept;

  // Free blocks held, all classes (approximate while other threads take and give).
  [[nodiscard]] std::size_t pooled_blocks() const noexcept;

 private:
  struct alignas(64) Class {
    moodycamel::ConcurrentQueue<void*> free;
    std::atomic<std::int64_t> count{0};  // blocks in `free` (a bound, not an exact size)
  };
  std::array<Class, kClasses> classes_;
};

}  // namespace fanout::engine
