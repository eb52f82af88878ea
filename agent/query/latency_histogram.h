// Latencies in fine log-linear buckets for the query service: what Stat, Top
// and Edges read their percentiles from, and what agents' answers merge by.
#pragma once

#include <cstdint>
#include <utility>
#include <vector>

namespace podtap {

// Buckets of nanoseconds, the same on every agent and in the CLI, so two
// histograms merge by adding counts. Below 64 ns a bucket is one nanosecond;
// above, each power of two [2^k, 2^(k+1)) is cut into 32 equal buckets, so a
// bucket is at most 1/32 of its lower bound wide and its midpoint is within
// 1/64 (1.6%) of every latency it holds. Latencies of 2^50 ns (13 days) and
// more count in the last bucket.
//
// Only buckets with observations are stored, in index order: a series holds
// at most kBuckets entries, and as many as the distinct buckets its
// latencies fell in (a handful to a few dozen for one path).
class LatencyHistogram {
 public:
  static constexpr int kSubBits = 5;  // 32 buckets per power of two
  static constexpr uint32_t kSub = 1u << kSubBits;
  static constexpr int kMaxBits = 50;
  static constexpr uint32_t kBuckets = (kMaxBits - kSubBits + 1) * kSub;

  // The bucket of a latency in nanoseconds.
  static uint32_t IndexOf(uint64_t ns);
  // The bucket's bounds: [LowerNs, LowerNs + WidthNs).
  static uint64_t LowerNs(uint32_t index);
  static uint64_t WidthNs(uint32_t index);

  void Observe(uint64_t ns) { Add(IndexOf(ns), 1); }
  // Milliseconds, rounded to the nanosecond; negative counts as 0.
  void ObserveMs(double ms);
  // Adds `n` observations to bucket `index`; false (and nothing added) for an
  // index past the last bucket.
  bool Add(uint32_t index, uint64_t n);
  void Merge(const LatencyHistogram& o);

  uint64_t count() const { return count_; }
  // The q-quantile (0..1) in milliseconds: the midpoint of the bucket holding
  // the observation of rank ceil(q * count) (the nearest rank; the first for
  // q = 0); 0 with no observations.
  double QuantileMs(double q) const;
  // (index, count) of every bucket with observations, by index.
  const std::vector<std::pair<uint32_t, uint64_t>>& buckets() const { return buckets_; }

 private:
  std::vector<std::pair<uint32_t, uint64_t>> buckets_;
  uint64_t count_ = 0;
};

}  // namespace podtap
