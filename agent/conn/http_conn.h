// HTTP on one connection: decides from the client's first bytes whether it
// speaks HTTP/1.x or HTTP/2 (prior knowledge: the connection preface), feeds
// the matching parser (which half is the request stream depends on who
// connected), and counts requests, responses and latency into the aggregator.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "agent/conn/exchange_observer.h"
#include "agent/kernel/capture.h"
#include "agent/kernel/tcp_event.h"
#include "agent/metrics/aggregator.h"
#include "agent/protocols/http1_parser.h"
#include "agent/protocols/http2_parser.h"
#include "agent/protocols/routes.h"

namespace podtap {

// HTTP/1.x parsers lent to connections while a message is in flight. Between messages a
// connection holds none (Http1Parser::AtRest), and most of many open connections are between
// messages at any moment: the parser and its request queue were the largest part of what one
// cost (bench/memory.py). Taking one allocates only when none is kept.
class Http1ParserPool {
 public:
  static constexpr size_t kMaxKept = 1024;
  // A parser as Http1Parser::Reset(sink, http_seen) makes it.
  std::unique_ptr<Http1Parser> Take(Http1Sink* sink, bool http_seen);
  // Kept for a later Take, up to kMaxKept; freed past that.
  void Give(std::unique_ptr<Http1Parser> parser);
  size_t kept() const { return kept_.size(); }

 private:
  std::vector<std::unique_ptr<Http1Parser>> kept_;
};

// What every HttpConn of a pipeline uses, held once for all of them; it must outlive them.
struct HttpShared {
  Aggregator* agg;
  const RouteTable* routes;
  Http1ParserPool* h1_pool;  // lends the HTTP/1.x parsers
};

class HttpConn : public Http1Sink, public Http2Sink {
 public:
  // `tls`: fed TLS plaintext from the TLS library's probes (series get tls="true").
  HttpConn(const HttpShared* shared, Aggregator::LabelSetId labels, Direction direction,
           bool tls = false);

  void Feed(DataDir dir, Capture captured, uint64_t total_len, uint64_t ts_ns);
  void OnClose(uint64_t ts_ns);
  // Stops parsing at the agent's request (TcpPipeline::Shed): requests in flight are counted as
  // unanswered, not as failures.
  void Abandon();
  bool gave_up() const;
  // "http1", "http2", or "http" while undecided.
  const char* protocol() const;
  // True once, right after the connection turned out to be HTTP/2 (the
  // kernel follows its frames from the preface on, under a verdict of its own).
  bool TakeHttp2Detected() { return std::exchange(http2_detected_, false); }
  // Also reports each completed exchange to `observer`, naming the connection's ends as it did.
  void ReportTo(ExchangeObserver* observer, EndpointsRef::Id endpoints) {
    observer_ = observer;
    endpoints_ = endpoints;
  }

  void OnRequest(const Http1Request& r) override;
  void OnResponse(const Http1Response& r) override;
  void OnError(Http1Error e) override;
  void OnUnanswered(size_t n) override;
  void OnRequest(const Http2Request& r) override;
  void OnResponse(const Http2Response& r) override;
  void OnError(Http2Error e) override;

 private:
  // Server bytes seen before the client's first bytes (HTTP/2 servers send
  // SETTINGS at once), replayed once the protocol is known.
  struct Early {
    std::vector<uint8_t> captured;
    bool segmented;
    uint64_t total_len;
    uint64_t ts_ns;
  };
  static constexpr size_t kMaxEarly = 4;

  void Dispatch(HttpStream stream, Capture captured, uint64_t total_len, uint64_t ts_ns);
  // The series of an exchange, from the aggregator or, when the connection
  // asks for the same ones again (keep-alive traffic mostly does), from the
  // last answer it got.
  HttpSeries* HttpSeriesOf(const std::string& authority);
  HttpSeries* RouteSeriesOf(const std::string& authority, const std::string& route);
  void CountRequest(const std::string& method, const std::string& authority,
                    const std::string& path);
  void CountResponse(const std::string& method, const std::string& authority,
                     const std::string& path, int status, int grpc_status, bool failed,
                     uint64_t headers_end_ns, uint64_t first_byte_ns);

  const HttpShared* shared_;
  Aggregator::LabelSetId labels_;
  Direction direction_;
  bool tls_;
  bool h1_at_rest_ = false;
  bool http2_detected_ = false;
  // HTTP/1.x: the parser while a message is in flight; between messages none, and h1_at_rest_.
  std::unique_ptr<Http1Parser> h1_;
  std::unique_ptr<Http2Parser> h2_;
  std::unique_ptr<std::vector<Early>> early_;  // null but while it holds some
  ExchangeObserver* observer_ = nullptr;
  EndpointsRef::Id endpoints_ = 0;
  // Forgets the series looked up unless they are of `authority` and still there (the
  // aggregator's generation is the one they were found in).
  void KeepCacheFor(const std::string& authority);

  // The last exchange's series, of one authority (and route): one copy of the authority for both.
  uint64_t cache_generation_ = 0;
  std::string cached_authority_;
  std::string cached_route_;
  HttpSeries* cached_http_ = nullptr;
  HttpSeries* cached_route_series_ = nullptr;
};

}  // namespace podtap
