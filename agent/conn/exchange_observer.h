// What the connection stage reports beyond the metrics store: each connection's two ends, its
// payload bytes as they are counted, and every completed HTTP exchange. The query service's
// recorder (agent/query/query_recorder.h) is the observer; the connection stage knows only this
// interface, so it cannot reach up into the query stage (docs/design.md, "The code by stage").
#pragma once

#include <cstdint>
#include <string_view>
#include <utility>

#include "agent/kernel/tcp_event.h"
#include "agent/metadata/pods.h"

namespace podtap {

class ExchangeObserver;

// An observer's name for a connection's two ends (ExchangeObserver::EndpointsOf): held by the
// connection while it is tracked (copies hold it too) and released with the last holder. A
// default EndpointsRef holds nothing and its id is 0. The observer must outlive its refs.
class EndpointsRef {
 public:
  using Id = uint64_t;

  EndpointsRef() = default;
  // Holds `id` of `owner` (one more hold of it).
  EndpointsRef(ExchangeObserver* owner, Id id);
  EndpointsRef(const EndpointsRef& o) : EndpointsRef(o.owner_, o.id_) {}
  EndpointsRef(EndpointsRef&& o) noexcept : owner_(std::exchange(o.owner_, nullptr)), id_(o.id_) {}
  EndpointsRef& operator=(EndpointsRef o) noexcept {
    std::swap(owner_, o.owner_);
    std::swap(id_, o.id_);
    return *this;
  }
  ~EndpointsRef();

  Id id() const { return id_; }

 private:
  ExchangeObserver* owner_ = nullptr;
  Id id_ = 0;
};

// A completed HTTP exchange (request and its response), as HttpConn reports it.
struct Exchange {
  EndpointsRef::Id endpoints = 0;
  Direction direction = Direction::kOutbound;
  std::string_view method, authority, path, route;
  int status = 0;        // 0: cut off before a status
  int grpc_status = -1;  // -1: not gRPC
  bool failed = false;
  double latency_ms = 0;
  uint64_t ts_ns = 0;  // when the request's headers were seen (kernel monotonic clock)
};

// Called on the event loop, under its lock.
class ExchangeObserver {
 public:
  virtual ~ExchangeObserver() = default;

  // A connection's two ends, once when it is tracked: the pod whose socket it is and the pod at
  // the other end (null: a host process, or an address no known pod has).
  virtual EndpointsRef EndpointsOf(const PodMeta* local, const PodMeta* remote) = 0;
  // Payload bytes newly counted on a connection (live reads and the close).
  virtual void OnBytes(EndpointsRef::Id endpoints, Direction dir, uint64_t read, uint64_t written,
                       uint64_t ts_ns) = 0;
  // The exchange's endpoints are held by its connection while this runs.
  virtual void OnExchange(const Exchange& x) = 0;
  // The pod list is about to be replaced: pod pointers seen so far go stale.
  virtual void OnPodsChanged() = 0;

 protected:
  friend class EndpointsRef;
  virtual void HoldEndpoints(EndpointsRef::Id id) = 0;
  virtual void ReleaseEndpoints(EndpointsRef::Id id) = 0;
};

inline EndpointsRef::EndpointsRef(ExchangeObserver* owner, Id id) : owner_(owner), id_(id) {
  if (owner_ != nullptr) owner_->HoldEndpoints(id_);
}

inline EndpointsRef::~EndpointsRef() {
  if (owner_ != nullptr) owner_->ReleaseEndpoints(id_);
}

}  // namespace podtap
