// The pool of delivery blocks (engine/delivery_pool.h): size classes, reuse, the bound on what it
// keeps, and blocks given back on other threads than the one that takes them (as workers do).
#include "engine/delivery_pool.h"

#include <gtest/gtest.h>

#include <atomic>
#include <cstring>
#include <thread>
#include <vector>

namespace fanout::engine {
namespace {

TEST(DeliveryPoolTest, ClassesGoByHalfPowersOfTwoFromOneKibToThirtyTwoKib) {
  const std::size_t sizes[] = {1024, 1536,  2048,  3072,  4096, 6144,
                               8192, 12288, 16384, 24576, 32768};
  static_assert(std::size(sizes) == DeliveryPool::kClasses);
  EXPECT_EQ(DeliveryPool::class_of(1), 0);
  for (std::uint8_t c = 0; c < DeliveryPool::kClasses; ++c) {
    EXPECT_EQ(DeliveryPool::class_size(c), sizes[c]);
    EXPECT_EQ(DeliveryPool::class_of(sizes[c]), c) << sizes[c];
    if (c + 1u < DeliveryPool::kClasses) {
      EXPECT_EQ(DeliveryPool::class_of(sizes[c] + 1), c + 1);
    }
  }
  EXPECT_EQ(DeliveryPool::class_of(1400), 1);  // a typical delivery: 1.5 KiB, not 2
  EXPECT_EQ(DeliveryPool::class_of(32769), DeliveryPool::kUnpooled);
  // Every size up to the largest class is in the smallest class that holds it.
  for (std::size_t size = 1; size <= 32768; size += 7) {
    const std::uint8_t c = DeliveryPool::class_of(size);
    ASSERT_LT(c, DeliveryPool::kClasses);
    EXPECT_GE(DeliveryPool::class_size(c), size);
    if (c > 0) {
      EXPECT_LT(DeliveryPool::class_size(static_cast<std::uint8_t>(c - 1)), size);
    }
  }
}

TEST(DeliveryPoolTest, AGivenBlockIsTakenAgainForTheSameClass) {
  DeliveryPool pool;
  std::uint8_t cls = 0;
  void* a = pool.take(1500, cls);
  ASSERT_EQ(cls, 1);
  std::memset(a, 0xab, DeliveryPool::class_size(cls));  // the whole class is usable
  pool.give(a, cls);
  EXPECT_EQ(pool.pooled_blocks(), 1u);
  std::uint8_t other = 0;
  void* b = pool.take(3000, other);  // another class: not this block
  EXPECT_EQ(other, 3);
  EXPECT_NE(b, a);
  void* c = pool.take(1200, cls);
  EXPECT_EQ(c, a);
  EXPECT_EQ(pool.pooled_blocks(), 0u);
  pool.give(b, other);
  pool.give(c, cls);
}

TEST(DeliveryPoolTest, LargeBlocksAreNotKept) {
  DeliveryPool pool;
  std::uint8_t cls = 0;
  void* big = pool.take(100000, cls);
  EXPECT_EQ(cls, DeliveryPool::kUnpooled);
  std::memset(big, 0, 100000);
  pool.give(big, cls);
  EXPECT_EQ(pool.pooled_blocks(), 0u);
}

TEST(DeliveryPoolTest, WhatItKeepsIsBounded) {
  DeliveryPool pool;
  const std::size_t cap = DeliveryPool::kMaxPooledBytes / DeliveryPool::class_size(0);
  std::vector<void*> blocks;
  std::uint8_t cls = 0;
  for (std::size_t i = 0; i < cap + 100; ++i) blocks.push_back(pool.take(1000, cls));
  for (void* b : blocks) pool.give(b, cls);
  EXPECT_EQ(pool.pooled_blocks(), cap);
}

TEST(DeliveryPoolTest, TakenOnOneThreadGivenBackOnOthers) {
  DeliveryPool pool;
  constexpr int kPerGiver = 20000;
  constexpr int kGivers = 2;
  moodycamel::ConcurrentQueue<void*> handoff;
  std::atomic<int> given{0};
  std::vector<std::thread> givers;
  for (int g = 0; g < kGivers; ++g) {
    givers.emplace_back([&] {
      void* b = nullptr;
      while (given.load() < kPerGiver * kGivers) {
        if (!handoff.try_dequeue(b)) continue;
        // The block's class rides in its first byte, as a delivery keeps its own.
        pool.give(b, *static_cast<std::uint8_t*>(b));
        given.fetch_add(1);
      }
    });
  }
  for (int i = 0; i < kPerGiver * kGivers; ++i) {
    std::uint8_t cls = 0;
    void* b = pool.take(static_cast<std::size_t>(1000 + (i % 3) * 2000), cls);
    *static_cast<std::uint8_t*>(b) = cls;
    handoff.enqueue(b);
  }
  for (auto& t : givers) t.join();
  EXPECT_EQ(given.load(), kPerGiver * kGivers);
  EXPECT_GT(pool.pooled_blocks(), 0u);
}

}  // namespace
}  // namespace fanout::engine
