// Log-linear latency buckets: index arithmetic, merging and quantiles.
#include "agent/query/latency_histogram.h"

#include <algorithm>
#include <bit>
#include <cmath>

namespace podtap {

uint32_t LatencyHistogram::IndexOf(uint64_t ns) {
  if (ns < 2 * kSub) return static_cast<uint32_t>(ns);
  if (ns >> kMaxBits != 0) return kBuckets - 1;
  int k = std::bit_width(ns) - 1;  // ns in [2^k, 2^(k+1)), k >= kSubBits + 1
  uint64_t sub = (ns >> (k - kSubBits)) - kSub;
  return static_cast<uint32_t>((k - kSubBits + 1) * kSub + sub);
}

uint64_t LatencyHistogram::WidthNs(uint32_t index) {
  uint32_t group = index / kSub;
  return group < 2 ? 1 : uint64_t{1} << (group - 1);
}

uint64_t LatencyHistogram::LowerNs(uint32_t index) {
  if (index < 2 * kSub) return index;
  return (kSub + index % kSub) * WidthNs(index);
}

void LatencyHistogram::ObserveMs(double ms) {
  double ns = std::round(ms * 1e6);
  // Past 2^63 the cast is undefined; anything that large is in the last bucket.
  Observe(!(ns > 0) ? 0 : ns >= 9.2e18 ? UINT64_MAX : static_cast<uint64_t>(ns));
}

bool LatencyHistogram::Add(uint32_t index, uint64_t n) {
  if (index >= kBuckets) return false;
  if (n == 0) return true;
  auto it = std::lower_bound(buckets_.begin(), buckets_.end(), index,
                             [](const auto& b, uint32_t i) { return b.first < i; });
  if (it != buckets_.end() && it->first == index) {
    it->second += n;
  } else {
    buckets_.insert(it, {index, n});
  }
  count_ += n;
  return true;
}

void LatencyHistogram::Merge(const LatencyHistogram& o) {
  if (o.buckets_.empty()) return;
  std::vector<std::pair<uint32_t, uint64_t>> out;
  out.reserve(buckets_.size() + o.buckets_.size());
  auto a = buckets_.begin();
  auto b = o.buckets_.begin();
  while (a != buckets_.end() || b != o.buckets_.end()) {
    if (b == o.buckets_.end() || (a != buckets_.end() && a->first < b->first)) {
      out.push_back(*a++);
    } else if (a == buckets_.end() || b->first < a->first) {
      out.push_back(*b++);
    } else {
      out.emplace_back(a->first, a->second + b->second);
      ++a;
      ++b;
    }
  }
  buckets_ = std::move(out);
  count_ += o.count_;
}

double LatencyHistogram::QuantileMs(double q) const {
  if (count_ == 0) return 0;
  // The nearest rank; the epsilon keeps 0.99 * 100 at rank 99, not 100.
  double exact = std::clamp(q, 0.0, 1.0) * static_cast<double>(count_);
  auto rank = static_cast<uint64_t>(std::ceil(exact - 1e-9));
  rank = std::max<uint64_t>(rank, 1);
  uint64_t seen = 0;
  for (const auto& [index, n] : buckets_) {
    seen += n;
    if (seen >= rank) {
      double mid = static_cast<double>(LowerNs(index)) +
                   (WidthNs(index) == 1 ? 0 : static_cast<double>(WidthNs(index)) / 2);
      return mid / 1e6;
    }
  }
  return static_cast<double>(LowerNs(buckets_.back().first)) / 1e6;
}

}  // namespace podtap
