// The cluster-wide --max-rps of `podtap tap` over several agents: a token
// bucket of `rate` a second holding at most a second's worth.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>

namespace podtap {

class RateLimit {
 public:
  using Clock = std::chrono::steady_clock;
  // 0: no limit.
  RateLimit(uint32_t rate, Clock::time_point now) : rate_(rate), tokens_(rate), last_(now) {}
  // Whether one more event may pass at `now` (never earlier than the last call).
  bool Take(Clock::time_point now) {
    if (rate_ == 0) return true;
    double refill = rate_ * std::chrono::duration<double>(now - last_).count();
    tokens_ = std::min<double>(rate_, tokens_ + refill);
    last_ = now;
    if (tokens_ < 1) return false;
    tokens_ -= 1;
    return true;
  }

 private:
  const uint32_t rate_;
  double tokens_;
  Clock::time_point last_;
};

}  // namespace podtap
