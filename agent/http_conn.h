// HTTP/1.x on one connection: feeds the connection's payload to its parser
// (which half is the request stream depends on who connected) and counts
// requests, responses and latency into the aggregator.
#pragma once

#include <cstdint>
#include <span>

#include "agent/aggregator.h"
#include "agent/http1_parser.h"
#include "agent/routes.h"
#include "agent/tcp_event.h"

namespace podtap {

class HttpConn : public Http1Sink {
 public:
  HttpConn(Aggregator* agg, const RouteTable* routes, Aggregator::LabelSetId labels,
           Direction direction);

  void Feed(DataDir dir, std::span<const uint8_t> captured, uint64_t total_len, uint64_t ts_ns);
  void OnClose(uint64_t ts_ns) { parser_.OnClose(ts_ns); }
  bool gave_up() const { return parser_.state() == Http1Parser::State::kGaveUp; }

  void OnRequest(const Http1Request& r) override;
  void OnResponse(const Http1Response& r) override;
  void OnError(Http1Error e) override;

 private:
  Aggregator* agg_;
  const RouteTable* routes_;
  Aggregator::LabelSetId labels_;
  Direction direction_;
  Http1Parser parser_;
};

}  // namespace podtap
