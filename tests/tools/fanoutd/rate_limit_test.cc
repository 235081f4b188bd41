// The management API's per-organisation token bucket (tools/fanoutd/rate_limit.h), driven with
// explicit times: no clock, no sleeps.
#include "tools/fanoutd/rate_limit.h"

#include <gtest/gtest.h>

namespace fanout::daemon {
namespace {

TEST(RateLimiterTest, AFullMinuteOfRequestsThenRetryAfter) {
  RateLimiter limiter(300);
  for (int i = 0; i < 300; ++i) ASSERT_EQ(limiter.take(42, 1'000), 0u) << "request " << i;
  // 300 per minute refill one token every 200 ms: the 301st waits 1 s (rounded up).
  EXPECT_EQ(limiter.take(42, 1'000), 1u);
  EXPECT_EQ(limiter.take(42, 1'100), 1u);
  EXPECT_EQ(limiter.take(42, 1'200), 0u) << "one token back after 200 ms";
  EXPECT_EQ(limiter.take(42, 1'200), 1u);
}

TEST(RateLimiterTest, OrganisationsAreIndependent) {
  RateLimiter limiter(2);
  EXPECT_EQ(limiter.take(1, 0), 0u);
  EXPECT_EQ(limiter.take(1, 0), 0u);
  EXPECT_NE(limiter.take(1, 0), 0u);
  EXPECT_EQ(limiter.take(2, 0), 0u) << "another organisation has its own bucket";
}

TEST(RateLimiterTest, RetryAfterIsTheWholeSecondsUntilATokenIsBack) {
  RateLimiter limiter(1);  // one token a minute
  EXPECT_EQ(limiter.take(7, 0), 0u);
  EXPECT_EQ(limiter.take(7, 0), 60u);
  EXPECT_EQ(limiter.take(7, 30'000), 30u);
  EXPECT_EQ(limiter.take(7, 59'001), 1u);
  EXPECT_EQ(limiter.take(7, 60'000), 0u);
}

TEST(RateLimiterTest, TheBucketNeverHoldsMoreThanAMinute) {
  RateLimiter limiter(5);
  EXPECT_EQ(limiter.take(3, 0), 0u);
  // An hour idle refills to 5, not to 300.
  for (int i = 0; i < 5; ++i) ASSERT_EQ(limiter.take(3, 3'600'000), 0u);
  EXPECT_NE(limiter.take(3, 3'600'000), 0u);
}

TEST(RateLimiterTest, TimeGoingBackwardsGrantsNothing) {
  RateLimiter limiter(2);
  EXPECT_EQ(limiter.take(9, 10'000), 0u);
  EXPECT_EQ(limiter.take(9, 10'000), 0u);
  EXPECT_NE(limiter.take(9, 5'000), 0u);
}

TEST(RateLimiterTest, ManyOrganisationsStayBounded) {
  RateLimiter limiter(10);
  // 10,000 organisations one request each at t=0, then 10,000 others a minute later: the first
  // wave's buckets are full again by then and are swept once the map has doubled, so the map
  // ends with the second wave only.
  for (std::int64_t org = 1; org <= 10'000; ++org) ASSERT_EQ(limiter.take(org, 0), 0u);
  for (std::int64_t org = 10'001; org <= 20'000; ++org) ASSERT_EQ(limiter.take(org, 60'000), 0u);
  EXPECT_EQ(limiter.size(), 10'000u);
  EXPECT_EQ(limiter.take(1, 60'000), 0u) << "a swept organisation starts with a full bucket";
}

}  // namespace
}  // namespace fanout::daemon
