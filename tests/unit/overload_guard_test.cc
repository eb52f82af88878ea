// The CPU budget's decisions (OverloadGuard), from readings of CPU and wall time.
#include "agent/overload_guard.h"

#include <gtest/gtest.h>

namespace podtap {
namespace {

constexpr uint64_t kSecond = 1'000'000'000;

TEST(OverloadGuard, OffWithoutABudget) {
  OverloadGuard guard(0);
  EXPECT_EQ(guard.Observe(0, kSecond), 0);
  EXPECT_EQ(guard.Observe(10 * kSecond, 2 * kSecond), 0);
  EXPECT_EQ(guard.Observe(20 * kSecond, 3 * kSecond), 0);
}

TEST(OverloadGuard, WithinTheBudgetShedsNothing) {
  OverloadGuard guard(0.5);
  uint64_t cpu = 0;
  for (uint64_t s = 1; s <= 10; s++) {
    EXPECT_EQ(guard.Observe(cpu, s * kSecond), 0) << s;
    cpu += kSecond / 2;  // exactly the budget
  }
  EXPECT_DOUBLE_EQ(guard.used(), 0.5);
}

TEST(OverloadGuard, OneBusySecondIsNotEnough) {
  OverloadGuard guard(0.5);
  EXPECT_EQ(guard.Observe(0, 1 * kSecond), 0);
  EXPECT_EQ(guard.Observe(kSecond / 10, 2 * kSecond), 0);
  // 0.8 cores for one second (a scrape of many series): over two seconds 0.45 cores.
  EXPECT_EQ(guard.Observe(kSecond / 10 + kSecond * 8 / 10, 3 * kSecond), 0);
  EXPECT_DOUBLE_EQ(guard.used(), 0.45);
}

TEST(OverloadGuard, ShedsDownToTheTargetThenWaitsForTwoFreshSeconds) {
  OverloadGuard guard(0.5);
  EXPECT_EQ(guard.Observe(0, 1 * kSecond), 0);
  EXPECT_EQ(guard.Observe(kSecond, 2 * kSecond), 0);  // one core: one interval only
  // One core for two seconds, budget 0.5: shed down to 0.4 of 1.0, so 60%.
  EXPECT_DOUBLE_EQ(guard.Observe(2 * kSecond, 3 * kSecond), 0.6);
  EXPECT_DOUBLE_EQ(guard.used(), 1.0);
  // Then it waits for two fresh intervals: one is not enough.
  EXPECT_EQ(guard.Observe(3 * kSecond, 4 * kSecond), 0);
  // A full core, then 0.55 cores: 0.775 over the two, still over the budget.
  EXPECT_DOUBLE_EQ(guard.Observe(3 * kSecond + kSecond * 55 / 100, 5 * kSecond),
                   (0.775 - 0.4) / 0.775);
  // Then 0.45 and 0.5 cores: within it.
  EXPECT_EQ(guard.Observe(3 * kSecond + kSecond, 6 * kSecond), 0);
  EXPECT_EQ(guard.Observe(3 * kSecond + kSecond * 150 / 100, 7 * kSecond), 0);
  EXPECT_DOUBLE_EQ(guard.used(), 0.475);
}

TEST(OverloadGuard, FarOverTheBudgetShedsNearlyEverything) {
  OverloadGuard guard(0.01);
  EXPECT_EQ(guard.Observe(0, kSecond), 0);
  EXPECT_EQ(guard.Observe(kSecond, 2 * kSecond), 0);
  EXPECT_NEAR(guard.Observe(2 * kSecond, 3 * kSecond), 0.992, 1e-9);
}

TEST(OverloadGuard, ClockReadingsThatGoBackStartAgain) {
  OverloadGuard guard(0.5);
  EXPECT_EQ(guard.Observe(5 * kSecond, 10 * kSecond), 0);
  EXPECT_EQ(guard.Observe(4 * kSecond, 11 * kSecond), 0);  // CPU time went back: a new start
  EXPECT_EQ(guard.Observe(5 * kSecond, 11 * kSecond), 0);  // no wall time passed
  EXPECT_EQ(guard.used(), 0);
}

}  // namespace
}  // namespace podtap
