// The query window's log-linear latency histogram: bucket bounds and their
// error, nearest-rank quantiles, and merging.
#include "agent/query/latency_histogram.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

namespace podtap {
namespace {

using H = LatencyHistogram;

TEST(LatencyHistogram, BucketsTileTheRangeWithoutGapsOrOverlap) {
  EXPECT_EQ(H::LowerNs(0), 0u);
  for (uint32_t i = 0; i + 1 < H::kBuckets; i++) {
    ASSERT_EQ(H::LowerNs(i) + H::WidthNs(i), H::LowerNs(i + 1)) << i;
    ASSERT_EQ(H::IndexOf(H::LowerNs(i)), i) << i;
    ASSERT_EQ(H::IndexOf(H::LowerNs(i + 1) - 1), i) << i;
  }
  EXPECT_EQ(H::LowerNs(H::kBuckets - 1) + H::WidthNs(H::kBuckets - 1), uint64_t{1} << 50);
  EXPECT_EQ(H::IndexOf(uint64_t{1} << 50), H::kBuckets - 1);
  EXPECT_EQ(H::IndexOf(UINT64_MAX), H::kBuckets - 1);
}

TEST(LatencyHistogram, EveryLatencyFromAMicrosecondIsWithinOnePointSixPercent) {
  // Every bucket is at most 1/32 of its lower bound wide from 1 us up.
  for (uint32_t i = H::IndexOf(1000); i < H::kBuckets; i++) {
    ASSERT_LE(H::WidthNs(i) * 32, H::LowerNs(i)) << i;
  }
  // A single latency's quantile is its bucket's midpoint: within 1/64.
  std::mt19937_64 rng(7);
  std::uniform_real_distribution<double> exponent(3, 15);  // 1 us to 1e15 ns
  for (int n = 0; n < 200000; n++) {
    auto ns = static_cast<uint64_t>(std::pow(10.0, exponent(rng)));
    H h;
    h.Observe(ns);
    double got = h.QuantileMs(0.99) * 1e6;
    ASSERT_LE(std::abs(got - static_cast<double>(ns)), static_cast<double>(ns) / 64 + 0.5) << ns;
  }
}

TEST(LatencyHistogram, QuantilesAreTheNearestRankBucket) {
  H h;
  EXPECT_EQ(h.QuantileMs(0.5), 0);
  // 50 at 0.2 ms, 45 at 30 ms, 5 at 800 ms, in no order.
  std::vector<double> ms;
  ms.insert(ms.end(), 50, 0.2);
  ms.insert(ms.end(), 45, 30);
  ms.insert(ms.end(), 5, 800);
  std::shuffle(ms.begin(), ms.end(), std::mt19937(1));
  for (double v : ms) h.ObserveMs(v);
  EXPECT_EQ(h.count(), 100u);
  auto mid = [](uint64_t ns) {
    uint32_t i = H::IndexOf(ns);
    return (static_cast<double>(H::LowerNs(i)) + static_cast<double>(H::WidthNs(i)) / 2) / 1e6;
  };
  EXPECT_DOUBLE_EQ(h.QuantileMs(0.5), mid(200'000));       // rank 50: the last 0.2 ms
  EXPECT_DOUBLE_EQ(h.QuantileMs(0.51), mid(30'000'000));   // rank 51
  EXPECT_DOUBLE_EQ(h.QuantileMs(0.95), mid(30'000'000));   // rank 95
  EXPECT_DOUBLE_EQ(h.QuantileMs(0.99), mid(800'000'000));  // rank 99, not 100
  EXPECT_DOUBLE_EQ(h.QuantileMs(0), mid(200'000));
  EXPECT_DOUBLE_EQ(h.QuantileMs(1), mid(800'000'000));
  // Three buckets stored, not one per observation.
  EXPECT_EQ(h.buckets().size(), 3u);
}

TEST(LatencyHistogram, MergingEqualsObservingEverything) {
  std::mt19937_64 rng(3);
  std::lognormal_distribution<double> ms(1.0, 2.0);
  H a, b, all;
  for (int n = 0; n < 5000; n++) {
    double v = ms(rng);
    (n % 3 == 0 ? a : b).ObserveMs(v);
    all.ObserveMs(v);
  }
  H ab = a, ba = b;
  ab.Merge(b);
  ba.Merge(a);
  EXPECT_EQ(ab.buckets(), all.buckets());
  EXPECT_EQ(ba.buckets(), all.buckets());
  EXPECT_EQ(ab.count(), 5000u);
  for (double q : {0.5, 0.95, 0.99}) EXPECT_EQ(ab.QuantileMs(q), all.QuantileMs(q)) << q;
  H empty;
  ab.Merge(empty);
  EXPECT_EQ(ab.buckets(), all.buckets());
  empty.Merge(all);
  EXPECT_EQ(empty.buckets(), all.buckets());
}

TEST(LatencyHistogram, MergedPercentilesAreNotAveragedPercentiles) {
  // One agent saw 99 fast requests, another one slow one: the cluster's p99
  // is the fast bucket, p100 the slow one; averaging p99s would say ~half.
  H fast, slow;
  for (int n = 0; n < 99; n++) fast.ObserveMs(1);
  slow.ObserveMs(1000);
  fast.Merge(slow);
  EXPECT_EQ(H::IndexOf(static_cast<uint64_t>(fast.QuantileMs(0.99) * 1e6)), H::IndexOf(1'000'000));
  EXPECT_EQ(H::IndexOf(static_cast<uint64_t>(fast.QuantileMs(1) * 1e6)), H::IndexOf(1'000'000'000));
}

TEST(LatencyHistogram, OutOfRangeInputs) {
  H h;
  EXPECT_FALSE(h.Add(H::kBuckets, 1));
  EXPECT_EQ(h.count(), 0u);
  EXPECT_TRUE(h.Add(H::kBuckets - 1, 2));
  EXPECT_TRUE(h.Add(5, 0));
  EXPECT_EQ(h.buckets().size(), 1u);
  h.ObserveMs(-3);  // a clock step: counted as 0
  h.ObserveMs(1e300);
  EXPECT_EQ(h.count(), 4u);
  EXPECT_EQ(h.buckets().front(), std::make_pair(uint32_t{0}, uint64_t{1}));
  EXPECT_EQ(h.buckets().back(), std::make_pair(H::kBuckets - 1, uint64_t{3}));
}

}  // namespace
}  // namespace podtap
