// Applies decoded events to the connection table and the aggregator:
// attribution to pods, payload byte accounting (live and at close), opens,
// closes and failures, and socket data to each connection's HTTP parser.
#pragma once

#include <deque>
#include <functional>
#include <set>
#include <span>
#include <string>
#include <tuple>
#include <unordered_map>
#include <utility>
#include <vector>

#include "agent/conn/conn_table.h"
#include "agent/conn/exchange_observer.h"
#include "agent/kernel/capture.h"
#include "agent/kernel/tcp_event.h"
#include "agent/metadata/pods.h"
#include "agent/metrics/aggregator.h"
#include "agent/protocols/routes.h"

namespace podtap {

class TcpPipeline {
 public:
  // With `capture_payload` off no data will tell TLS apart, so opens are
  // counted at once with tls="false".
  TcpPipeline(Aggregator* agg, size_t max_connections, std::set<std::string> allowed_pod_labels,
              bool capture_payload);
  // Its connections' HTTP state points into it (http_shared_).
  TcpPipeline(const TcpPipeline&) = delete;
  TcpPipeline& operator=(const TcpPipeline&) = delete;

  // Payload capture turned out unavailable (no socket data build loads):
  // count opens at once, as with capture off.
  void DisableCapture() { capture_payload_ = false; }

  void SetPods(const PodList& pods);
  void SetRoutes(RouteTable routes) { routes_ = std::move(routes); }
  // The cluster's DNS domain, for the TCP authority label of connections to Services.
  void SetClusterDomain(std::string domain) {
    cluster_domain_ = std::move(domain);
    label_cache_.clear();
  }
  // Also reports each connection's ends, bytes and exchanges to `observer` (the query service's
  // recorder); null: off.
  void SetObserver(ExchangeObserver* observer) { observer_ = observer; }
  const ConnTable& conns() const { return conns_; }
  const PodIndex& pods() const { return index_; }

  void OnOpen(const TcpOpen& e);
  // A connection that was open before the agent started (found by sock_diag at start; `e` holds
  // its counters now as base, so its bytes count from now). Handled like a new open, except that
  // its duration is unknown, so its close observes no tcp_connection_duration_ms. False when the
  // connection is already tracked (its open event came after all).
  bool Adopt(const TcpOpen& e);
  void OnClose(const TcpClose& e);
  void OnConnectFail(const TcpConnectFail& e);
  // Counters of an ESTABLISHED socket (so no FIN is in them yet).
  // `now_ns` on the kernel's monotonic clock.
  void OnLive(const LiveCounters& c, uint64_t now_ns);
  // False when the connection is not (yet) tracked; the caller may retry
  // once after the next batch, whose open event may still be on its way.
  bool OnPayload(const PayloadEvent& e, std::span<const uint8_t> captured);

  // Capture decisions for the kernel's verdict map, taken after each batch.
  struct VerdictOp {
    enum class Kind : uint8_t {
      kStop,    // not a protocol we parse: stop copying its bytes
      kForget,  // the connection closed: drop its verdict (the kernel's HTTP/2 one too)
    };
    Kind kind;
    uint64_t conn_id;
  };
  std::vector<VerdictOp> TakeVerdicts() { return std::exchange(verdicts_, {}); }
  // Set in a VerdictOp's conn_id: the verdict of the connection's TLS plaintext
  // (kTlsKeyBit), apart from that of its bytes on the wire.
  static constexpr uint64_t kTlsVerdictBit = kTlsKeyBit;

  // Counts the opens of connections that sent and received nothing for
  // kOpenGraceNs (tls="false"). `now_ns` is on the kernel's monotonic clock.
  void FlushPendingOpens(uint64_t now_ns);
  static constexpr uint64_t kOpenGraceNs = 1'000'000'000;

  // Ends the HTTP parsing of connections closed at least kCloseLingerNs
  // before `now_ns` (kernel monotonic clock): a request still waiting for
  // its response is then cut off. Until then, records of syscalls that
  // completed after the close still reach the parsers: a reader that
  // half-closed its side (shutdown(SHUT_WR)) takes the peer's reply after
  // the socket reached CLOSE, and a read racing a reset on another CPU is
  // stamped after the close event.
  void FinishCloses(uint64_t now_ns);
  static constexpr uint64_t kCloseLingerNs = 1'000'000'000;
  // Closed connections whose parsing has not ended yet, at most this many
  // (the oldest is ended early past it).
  static constexpr size_t kMaxClosing = 16384;

  size_t tracked() const { return conns_.size(); }

  // The overload guard's step (OverloadGuard): stops the HTTP capture of the connections that
  // sent the most socket data records since the last call, busiest first, until they add up to
  // `share` (0 to 1) of all records; the kernel stops copying their bytes (a kStop verdict),
  // their requests in flight are counted as unanswered, and their TCP series go on exactly. A
  // shed connection stays shed until it closes: HTTP/1 cannot be picked up again mid-stream for
  // sure. Each call starts a new count. Returns how many connections were shed.
  size_t Shed(double share);

 private:
  // A connection's label sets: for its HTTP series, and for its transport series
  // (with the authority of a Service destination).
  struct ConnLabels {
    Aggregator::LabelRef http, tcp;
  };
  ConnLabels LabelsFor(uint64_t cgroup_id, uint32_t netns_ino, Direction dir, const IpAddr& remote,
                       uint16_t remote_port);
  void Report(Conn* c, uint64_t read, uint64_t written, uint64_t ts_ns);
  void CountOpen(Conn* c);
  // Feeds the connection's HTTP parser of its bytes on the wire, or of its TLS plaintext.
  void FeedHttp(Conn* c, const PayloadEvent& e, const Capture& cap, bool tls);
  // Ends a closed connection's parsing and forgets its kernel verdicts.
  void Finish(Conn& c, uint64_t close_ns);
  // Stops a connection's HTTP parsing and capture (Shed).
  void ShedOne(Conn& c);

  Aggregator* agg_;
  // Before the connections, whose parsers it lends.
  Http1ParserPool h1_pool_;
  RouteTable routes_;
  HttpShared http_shared_{agg_, &routes_, &h1_pool_};
  ConnTable conns_;
  std::vector<VerdictOp> verdicts_;
  ExchangeObserver* observer_ = nullptr;
  // Connections whose open is not counted yet, in open order.
  std::deque<std::pair<uint64_t, uint64_t>> pending_opens_;  // (open_ns, conn_id)
  // Closed connections (transport counted) whose parsing lingers, by id, and
  // their ids in close order with the close's time.
  std::unordered_map<uint64_t, Conn> closing_;
  std::deque<std::pair<uint64_t, uint64_t>> closing_order_;  // (close ns, conn_id)
  std::set<std::string> allowed_labels_;
  bool capture_payload_;
  PodIndex index_;
  std::string cluster_domain_ = "cluster.local";
  // (local pod, remote pod, remote port when it names a Service port, else 0)
  // -> interned label sets, held while cached; cleared when pods change.
  using LabelKey = std::tuple<const PodMeta*, const PodMeta*, uint16_t>;
  struct KeyHash {
    size_t operator()(const LabelKey& k) const {
      return (std::hash<const void*>()(std::get<0>(k)) * 31 +
              std::hash<const void*>()(std::get<1>(k))) *
                 31 +
             std::get<2>(k);
    }
  };
  std::unordered_map<LabelKey, ConnLabels, KeyHash> label_cache_;
};

}  // namespace podtap
