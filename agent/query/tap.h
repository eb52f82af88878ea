// Live requests for the query service's Tap: the event loop publishes each
// completed exchange to the streams whose filter it matches, each with its
// own rate limit and bounded queue, so a slow tap client never holds the
// event loop up; whatever a stream cannot take is counted, never waited for.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "agent/kernel/tcp_event.h"
#include "agent/query/window.h"

namespace podtap {

// A completed request as a tap shows it: the named fields only, never other
// headers or bodies.
struct TapRecord {
  uint64_t ts_ns = 0;  // when the request's headers were seen (kernel monotonic clock)
  Direction direction = Direction::kOutbound;
  Endpoint local, remote;  // the observing pod, and its peer
  std::string method, authority;
  std::string path;  // without query string or fragment
  int status = 0;
  int grpc_status = -1;
  double latency_ms = 0;
  bool failed = false;
};

// Empty fields match everything. Namespace, pod and workload name the pod
// that observed the request (the local end).
struct TapFilter {
  std::string ns, pod, workload_kind, workload;
  std::optional<Direction> direction;
  std::string authority;  // exact
  std::string path_prefix;
  int status_class = 0;  // 2 for 2xx ... 5 for 5xx; 0: any
  bool Matches(const TapRecord& r) const;
};

class TapHub;

// One subscriber. Its reader calls Next(); the hub pushes into it.
class TapStream {
 public:
  struct Item {
    TapRecord record;
    uint64_t skipped_before = 0;  // records this stream skipped just before it
  };
  // The next record, or nullopt after `timeout_ms` without one or once the
  // hub closed (then closed() is true).
  std::optional<Item> Next(int timeout_ms);
  bool closed() const;

 private:
  friend class TapHub;
  TapStream(TapFilter filter, uint32_t max_rps, size_t queue_len);
  // Event loop side: queued, or skipped and why.
  enum class Offer : uint8_t { kQueued, kRateLimited, kQueueFull };
  Offer Push(const TapRecord& r, uint64_t now_ns);
  void Close();

  const TapFilter filter_;
  // Token bucket: max_rps tokens a second, at most max_rps (at least 1) held.
  const double rate_;
  double tokens_;
  uint64_t last_refill_ns_ = 0;
  const size_t queue_len_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Item> queue_;
  uint64_t skipped_ = 0;  // since the last queued record
  bool closed_ = false;
};

struct TapOptions {
  size_t max_taps = 4;      // concurrent streams
  uint32_t max_rps = 100;   // per stream; a stream may ask for less
  size_t queue_len = 1024;  // records waiting for a slow reader, per stream
};

class TapHub {
 public:
  explicit TapHub(TapOptions opts = {}) : opts_(opts) {}
  ~TapHub() { Close(); }

  // Null when `max_taps` streams are open; *error then says so.
  std::shared_ptr<TapStream> Subscribe(TapFilter filter, uint32_t max_rps, std::string* error);
  void Unsubscribe(const std::shared_ptr<TapStream>& s);
  // Cheap when no one taps: the event loop checks this before building records.
  bool active() const;
  size_t streams() const { return active_.load(std::memory_order_relaxed); }
  void Publish(const TapRecord& r, uint64_t now_ns);
  // Ends every stream (shutdown); later Subscribe calls fail.
  void Close();

  uint64_t dropped_rate_limited() const;
  uint64_t dropped_queue_full() const;
  const TapOptions& options() const { return opts_; }

 private:
  TapOptions opts_;
  mutable std::mutex mu_;
  std::vector<std::shared_ptr<TapStream>> streams_;
  std::atomic<size_t> active_{0};  // streams_.size(), read without the lock
  bool closed_ = false;
  uint64_t rate_limited_ = 0;
  uint64_t queue_full_ = 0;
};

}  // namespace podtap
