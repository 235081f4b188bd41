// ClockScope (client.h): the time requests are stamped with is read once per scope, nested scopes
// keep the outermost one's time, and each thread has its own.
#include <gtest/gtest.h>

#include <cstdint>
#include <thread>

#include "transport/client/client.h"

namespace fanout::transport {
namespace {

TEST(ClockScopeTest, OneReadForTheWholeScope) {
  const ClockScope scope;
  const std::uint64_t t = ClockScope::now_ns();
  ASSERT_NE(t, 0u);
  // However long the scope lasts, every stamp in it is the time it opened.
  for (int i = 0; i < 1000; ++i) ASSERT_EQ(ClockScope::now_ns(), t);
}

TEST(ClockScopeTest, NestedScopesKeepTheOutermostTime) {
  std::uint64_t outer = 0;
  {
    const ClockScope a;
    outer = ClockScope::now_ns();
    {
      const ClockScope b;  // a completion that submits again, inside a read
      EXPECT_EQ(ClockScope::now_ns(), outer);
    }
    EXPECT_EQ(ClockScope::now_ns(), outer) << "closing the inner scope keeps the outer one";
  }
  // Closed: the next scope reads the clock again, never earlier.
  const ClockScope c;
  EXPECT_GE(ClockScope::now_ns(), outer);
}

TEST(ClockScopeTest, EachThreadHasItsOwn) {
  const ClockScope scope;
  const std::uint64_t here = ClockScope::now_ns();
  std::uint64_t there = 0;
  std::uint64_t there_in_scope = 0;
  std::thread other([&] {
    there = ClockScope::now_ns();  // no scope on this thread: a live read, after `here`
    const ClockScope own;
    there_in_scope = ClockScope::now_ns();
  });
  other.join();
  EXPECT_GE(there, here);
  EXPECT_GE(there_in_scope, there);
  EXPECT_EQ(ClockScope::now_ns(), here) << "the other thread's scope is not this one's";
}

}  // namespace
}  // namespace fanout::transport
