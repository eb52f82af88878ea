// podtap tap's cluster-wide --max-rps (cli/rate_limit.h).
#include "cli/rate_limit.h"

#include <gtest/gtest.h>

namespace podtap {
namespace {

using std::chrono::milliseconds;

TEST(RateLimit, ASecondsWorthAtOnceThenTheRate) {
  RateLimit::Clock::time_point t0{};
  RateLimit r(4, t0);
  for (int i = 0; i < 4; i++) EXPECT_TRUE(r.Take(t0)) << i;
  EXPECT_FALSE(r.Take(t0));
  EXPECT_FALSE(r.Take(t0 + milliseconds(200)));  // 0.8 of a token
  EXPECT_TRUE(r.Take(t0 + milliseconds(260)));   // 1.04
  EXPECT_FALSE(r.Take(t0 + milliseconds(260)));
  // A long pause refills a second's worth, no more.
  int passed = 0;
  for (int i = 0; i < 10; i++) passed += r.Take(t0 + milliseconds(60000));
  EXPECT_EQ(passed, 4);
}

TEST(RateLimit, ZeroIsNoLimit) {
  RateLimit::Clock::time_point t0{};
  RateLimit r(0, t0);
  for (int i = 0; i < 100000; i++) ASSERT_TRUE(r.Take(t0));
}

}  // namespace
}  // namespace podtap
