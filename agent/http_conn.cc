// Per-connection HTTP/1.x accounting.
#include "agent/http_conn.h"

namespace podtap {

HttpConn::HttpConn(Aggregator* agg, const RouteTable* routes, Aggregator::LabelSetId labels,
                   Direction direction)
    : agg_(agg), routes_(routes), labels_(labels), direction_(direction), parser_(this) {}

void HttpConn::Feed(DataDir dir, std::span<const uint8_t> captured, uint64_t total_len,
                    uint64_t ts_ns) {
  // The client writes requests: on a connection the pod accepted (inbound)
  // that is what it receives, on one it opened (outbound) what it sends.
  bool request = (direction_ == Direction::kInbound) == (dir == DataDir::kRecv);
  parser_.Feed(request ? HttpStream::kRequest : HttpStream::kResponse, captured, total_len, ts_ns);
}

void HttpConn::OnRequest(const Http1Request& r) {
  agg_->Http(labels_, direction_, r.authority)->requests++;
  agg_->Route(labels_, direction_, r.authority, routes_->Match(r.method, r.path))->requests++;
}

void HttpConn::OnResponse(const Http1Response& r) {
  // A response cut off by the close is a failure, whatever its status said.
  bool failed = r.cut_off || r.status >= 500;
  uint64_t first = r.first_byte_ns ? r.first_byte_ns : r.end_ns;
  uint64_t latency_ns = first > r.request.headers_end_ns ? first - r.request.headers_end_ns : 0;
  double latency_ms = static_cast<double>(latency_ns) / 1e6;
  const std::string& route = routes_->Match(r.request.method, r.request.path);
  for (HttpSeries* s : {agg_->Http(labels_, direction_, r.request.authority),
                        agg_->Route(labels_, direction_, r.request.authority, route)}) {
    auto& series = s->responses[{r.status, failed}];
    series.count++;
    series.latency_ms.Observe(latency_ms);
  }
}

void HttpConn::OnError(Http1Error e) { agg_->self().http1_errors[Http1ErrorName(e)]++; }

}  // namespace podtap
