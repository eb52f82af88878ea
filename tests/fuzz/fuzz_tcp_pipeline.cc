// libFuzzer target: one tracked connection through the TCP pipeline, as the agent's event loop
// drives it: the open, its syscalls (syscall_input.h; the server is the pod on an inbound
// connection, the peer on an outbound one), the close, then a scrape. This covers TLS detection,
// the HTTP/1.x vs HTTP/2 decision, both parsers behind it, route matching, and the label
// cleaning and escaping between wire bytes and the exposition. The first input byte picks the
// connection's direction (bit 0: inbound).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "agent/conn/tcp_pipeline.h"
#include "agent/metrics/aggregator.h"
#include "agent/protocols/routes.h"
#include "exporter/text_format.h"
#include "tests/fuzz/syscall_input.h"

namespace {

constexpr uint64_t kConnId = 7;
constexpr size_t kMaxLabelValueBytes = 64;

podtap::RouteTable Routes() {
  std::string error;
  auto routes = podtap::ParseRoutes(
      R"({"routes":[{"name":"get-item","method":"GET","path_regex":"/items/[0-9]+"},
                    {"name":"any","path_regex":"/.*"}]})",
      &error);
  if (!routes) abort();
  return *routes;
}

// Every label value that reached the snapshot is capped and valid UTF-8.
void CheckLabels(const podtap::Snapshot& snap) {
  for (const auto& family : snap.families) {
    for (const auto& sample : family.samples) {
      for (const auto& [name, value] : sample.labels) {
        if (value.size() > kMaxLabelValueBytes) abort();
        std::string valid;
        podtap::AppendValidUtf8(valid, value);
        if (valid != value) abort();
      }
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  static const podtap::RouteTable routes = Routes();
  podtap::AggregatorOptions opts;
  opts.max_label_value_bytes = kMaxLabelValueBytes;
  podtap::Aggregator agg(opts);
  podtap::TcpPipeline pipe(&agg, 4, {}, /*capture_payload=*/true);
  pipe.SetRoutes(routes);

  podtap::TcpOpen open;
  open.conn_id = kConnId;
  open.open_ns = 1;
  open.direction = (data[0] & 1) ? podtap::Direction::kInbound : podtap::Direction::kOutbound;
  open.base_acked = 1;
  pipe.OnOpen(open);

  // The pod is the server on an inbound connection: it receives what the client writes.
  bool pod_is_server = open.direction == podtap::Direction::kInbound;
  podtap::fuzz::SyscallReader reader(data + 1, size - 1);
  podtap::fuzz::Syscall s;
  uint64_t ts = 2, sent = 0, received = 0;
  while (reader.Next(&s)) {
    podtap::PayloadEvent e;
    e.conn_id = kConnId;
    e.ts_ns = ts++;
    e.dir = s.server == pod_is_server ? podtap::DataDir::kSend : podtap::DataDir::kRecv;
    e.total_len = s.total_len;
    e.captured = static_cast<uint32_t>(s.captured.size());
    (e.dir == podtap::DataDir::kSend ? sent : received) += s.total_len;
    if (!pipe.OnPayload(e, s.captured)) abort();  // the connection is tracked
    for (const auto& v : pipe.TakeVerdicts()) {
      if (v.conn_id != kConnId) abort();
    }
  }

  podtap::TcpClose close;
  close.conn_id = kConnId;
  close.ts_ns = ts;
  close.kernel_saw_open = true;
  close.acked_total = 1 + sent;
  close.received_total = received;
  pipe.OnClose(close);
  if (pipe.tracked() != 0) abort();

  podtap::Snapshot snap = agg.Collect();
  CheckLabels(snap);
  podtap::WriteTextFormat(snap);
  podtap::WriteOpenMetrics(snap);
  return 0;
}
