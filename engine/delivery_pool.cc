// DeliveryPool (delivery_pool.h).
#include "engine/delivery_pool.h"

#include <bit>
#include <new>

namespace fanout::engine {

DeliveryPool::~DeliveryPool() {
  for (Class& c : classes_) {
    void* block = nullptr;
    while (c.free.try_dequeue(block)) ::operator delete(block);
  }
}

std::uint8_t DeliveryPool::class_of(std::size_t size) noexcept {
  if (size > class_size(kClasses - 1)) return kUnpooled;
  if (size <= class_size(0)) return 0;
  // 2^(b-1) < size <= 2^b: the power-of-two class 2^b, or the one below it (3 x 2^(b-2)) when
  // that holds `size`.
  const unsigned b = static_cast<unsigned>(std::bit_width(size - 1));
  const auto power_class = static_cast<std::uint8_t>(2 * (b - kMinShift));
  return size <= (std::size_t{3} << (b - 2)) ? static_cast<std::uint8_t>(power_class - 1)
                                             : power_class;
}

void* DeliveryPool::take(std::size_t size, std::uint8_t& cls) {
  cls = class_of(size);
  if (cls == kUnpooled) return ::operator new(size);
  Class& c = classes_[cls];
  void* block = nullptr;
  if (c.free.try_dequeue(block)) {
    c.count.fetch_sub(1, std::memory_order_relaxed);
    return block;
  }
  return ::operator new(class_size(cls));
}

void DeliveryPool::give(void* block, std::uint8_t cls) noexcept {
  if (cls >= kClasses) {
    ::operator delete(block);
    return;
  }
  Class& c = classes_[cls];
  const auto cap = static_cast<std::int64_t>(kMaxPooledBytes / class_size(cls));
  // Reserve a place first, so that concurrent givers cannot overshoot the bound.
  if (c.count.fetch_add(1, std::memory_order_relaxed) >= cap || !c.free.enqueue(block)) {
    c.count.fetch_sub(1, std::memory_order_relaxed);
    ::operator delete(block);
  }
}

std::size_t DeliveryPool::pooled_blocks() const noexcept {
  std::size_t n = 0;
  for (const Class& c : classes_) {
    const std::int64_t k = c.count.load(std::memory_order_relaxed);
    n += k > 0 ? static_cast<std::size_t>(k) : 0;
  }
  return n;
}

}  // namespace fanout::engine
