// Open TCP connections the agent tracks, keyed by socket cookie, with a hard
// cap: past it new connections are refused (and counted), never silently lost.
#pragma once

#include <cstdint>
#include <memory>
#include <unordered_map>

#include "agent/conn/exchange_observer.h"
#include "agent/conn/http_conn.h"
#include "agent/kernel/tcp_event.h"
#include "agent/metrics/aggregator.h"

namespace podtap {

// Its fields ordered so that little is padding: one per tracked socket.
struct Conn {
  uint64_t conn_id = 0;
  uint64_t open_ns = 0;
  Direction direction = Direction::kOutbound;
  bool tls = false;
  bool http_given_up = false;
  bool verdict_written = false;  // the kernel holds a verdict to forget at close
  bool adopted = false;          // open before the agent started (TcpPipeline::Adopt)
  bool tls_http_given_up = false;
  bool tls_verdict_written = false;
  // Its HTTP capture was shed (TcpPipeline::Shed), for good.
  bool shed = false;
  uint32_t netns_ino = 0;
  // Socket data records since the overload guard last looked (TcpPipeline::Shed).
  uint32_t records = 0;
  uint16_t local_port = 0, remote_port = 0;
  uint64_t base_acked = 0, base_received = 0;
  // Payload bytes already added to the series' counters (live updates).
  uint64_t reported_read = 0, reported_written = 0;
  // Null until the open is counted: at the first payload record, which tells
  // whether the connection speaks TLS (the series' tls label), or a moment
  // after the open when no data comes.
  TransportSeries* series = nullptr;
  // Held while the connection is tracked (and while its parsing lingers).
  Aggregator::LabelRef labels;
  // The transport series' labels: `labels` plus the TCP authority of an
  // outbound connection to a Service (HTTP series carry their own authority).
  Aggregator::LabelRef tcp_labels;
  // Protocol state, created on the first payload; null once given up.
  std::unique_ptr<HttpConn> http;
  // The same for the TLS plaintext of the connection (SSL_read/SSL_write probes), parsed apart
  // from its bytes on the wire (TLS records, never parsed).
  std::unique_ptr<HttpConn> tls_http;
  // Both ends: for the query service (Conns, Stat, Edges), and to know a connection the kernel
  // reported from one adopted at start (Agent::AdoptOpenConnections).
  EndpointsRef endpoints;
  IpAddr local, remote;
};

class ConnTable {
 public:
  explicit ConnTable(size_t max_entries) : max_(max_entries) {}

  // Null when the table is full; the caller counts that.
  Conn* Insert(uint64_t conn_id, Conn conn);
  Conn* Find(uint64_t conn_id);
  void Erase(uint64_t conn_id) { conns_.erase(conn_id); }
  size_t size() const { return conns_.size(); }
  size_t capacity() const { return max_; }
  template <typename F>
  void ForEach(F&& f) const {
    for (const auto& [id, conn] : conns_) f(conn);
  }
  template <typename F>
  void ForEachMutable(F&& f) {
    for (auto& [id, conn] : conns_) f(conn);
  }

 private:
  size_t max_;
  std::unordered_map<uint64_t, Conn> conns_;
};

}  // namespace podtap
