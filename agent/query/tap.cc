// Tap streams: filters, per-stream rate limit, bounded queues.
#include "agent/query/tap.h"

#include <algorithm>
#include <chrono>

namespace podtap {

bool TapFilter::Matches(const TapRecord& r) const {
  if (!ns.empty() && r.local.ns != ns) return false;
  if (!pod.empty() && r.local.pod != pod) return false;
  if (!workload_kind.empty() && r.local.workload_kind != workload_kind) return false;
  if (!workload.empty() && r.local.workload != workload) return false;
  if (direction && r.direction != *direction) return false;
  if (!authority.empty() && r.authority != authority) return false;
  if (!path_prefix.empty() && !r.path.starts_with(path_prefix)) return false;
  if (status_class != 0 && r.status / 100 != status_class) return false;
  return true;
}

TapStream::TapStream(TapFilter filter, uint32_t max_rps, size_t queue_len)
    : filter_(std::move(filter)),
      rate_(max_rps),
      tokens_(std::max(1.0, static_cast<double>(max_rps))),
      queue_len_(queue_len) {}

TapStream::Offer TapStream::Push(const TapRecord& r, uint64_t now_ns) {
  std::lock_guard<std::mutex> lock(mu_);
  if (last_refill_ns_ != 0 && now_ns > last_refill_ns_) {
    double burst = std::max(1.0, rate_);
    tokens_ =
        std::min(burst, tokens_ + rate_ * static_cast<double>(now_ns - last_refill_ns_) / 1e9);
  }
  if (now_ns > last_refill_ns_) last_refill_ns_ = now_ns;
  if (tokens_ < 1.0) {
    skipped_++;
    return Offer::kRateLimited;
  }
  if (queue_.size() >= queue_len_) {
    skipped_++;
    return Offer::kQueueFull;
  }
  tokens_ -= 1.0;
  queue_.push_back({r, skipped_});
  skipped_ = 0;
  cv_.notify_one();
  return Offer::kQueued;
}

std::optional<TapStream::Item> TapStream::Next(int timeout_ms) {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait_for(lock, std::chrono::milliseconds(timeout_ms),
               [this] { return !queue_.empty() || closed_; });
  if (queue_.empty()) return std::nullopt;
  Item item = std::move(queue_.front());
  queue_.pop_front();
  return item;
}

bool TapStream::closed() const {
  std::lock_guard<std::mutex> lock(mu_);
  return closed_;
}

void TapStream::Close() {
  std::lock_guard<std::mutex> lock(mu_);
  closed_ = true;
  cv_.notify_all();
}

std::shared_ptr<TapStream> TapHub::Subscribe(TapFilter filter, uint32_t max_rps,
                                             std::string* error) {
  std::lock_guard<std::mutex> lock(mu_);
  if (closed_) {
    *error = "the agent is shutting down";
    return nullptr;
  }
  if (streams_.size() >= opts_.max_taps) {
    *error = "too many taps: " + std::to_string(streams_.size()) +
             " already running on this agent (its limit, --query-max-taps, is " +
             std::to_string(opts_.max_taps) + "); try again when one ends";
    return nullptr;
  }
  uint32_t rps = max_rps == 0 ? opts_.max_rps : std::min(max_rps, opts_.max_rps);
  std::shared_ptr<TapStream> s(new TapStream(std::move(filter), rps, opts_.queue_len));
  streams_.push_back(s);
  active_ = streams_.size();
  return s;
}

void TapHub::Unsubscribe(const std::shared_ptr<TapStream>& s) {
  std::lock_guard<std::mutex> lock(mu_);
  std::erase(streams_, s);
  active_ = streams_.size();
}

bool TapHub::active() const { return active_.load(std::memory_order_relaxed) > 0; }

void TapHub::Publish(const TapRecord& r, uint64_t now_ns) {
  std::lock_guard<std::mutex> lock(mu_);
  for (const auto& s : streams_) {
    if (!s->filter_.Matches(r)) continue;
    switch (s->Push(r, now_ns)) {
      case TapStream::Offer::kQueued:
        break;
      case TapStream::Offer::kRateLimited:
        rate_limited_++;
        break;
      case TapStream::Offer::kQueueFull:
        queue_full_++;
        break;
    }
  }
}

void TapHub::Close() {
  std::lock_guard<std::mutex> lock(mu_);
  closed_ = true;
  for (const auto& s : streams_) s->Close();
}

uint64_t TapHub::dropped_rate_limited() const {
  std::lock_guard<std::mutex> lock(mu_);
  return rate_limited_;
}

uint64_t TapHub::dropped_queue_full() const {
  std::lock_guard<std::mutex> lock(mu_);
  return queue_full_;
}

}  // namespace podtap
