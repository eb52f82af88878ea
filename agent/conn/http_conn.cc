// Per-connection HTTP/1.x and HTTP/2 accounting.
#include "agent/conn/http_conn.h"

namespace podtap {

std::unique_ptr<Http1Parser> Http1ParserPool::Take(Http1Sink* sink, bool http_seen) {
  std::unique_ptr<Http1Parser> parser;
  if (kept_.empty()) {
    parser = std::make_unique<Http1Parser>(sink);
  } else {
    parser = std::move(kept_.back());
    kept_.pop_back();
  }
  parser->Reset(sink, http_seen);
  return parser;
}

void Http1ParserPool::Give(std::unique_ptr<Http1Parser> parser) {
  if (kept_.size() < kMaxKept) kept_.push_back(std::move(parser));
}

HttpConn::HttpConn(const HttpShared* shared, Aggregator::LabelSetId labels, Direction direction,
                   bool tls)
    : shared_(shared), labels_(labels), direction_(direction), tls_(tls) {}

void HttpConn::Feed(DataDir dir, Capture captured, uint64_t total_len, uint64_t ts_ns) {
  // The client writes requests: on a connection the pod accepted (inbound)
  // that is what it receives, on one it opened (outbound) what it sends.
  bool request = (direction_ == Direction::kInbound) == (dir == DataDir::kRecv);
  HttpStream stream = request ? HttpStream::kRequest : HttpStream::kResponse;
  if (!h1_ && !h2_ && !h1_at_rest_) {
    if (!request) {
      if (!early_) early_ = std::make_unique<std::vector<Early>>();
      if (early_->size() < kMaxEarly) {
        early_->push_back({{captured.raw().begin(), captured.raw().end()},
                           captured.segmented(),
                           total_len,
                           ts_ns});
      } else {
        shared_->agg->self().parse_errors[{"http", "server_spoke_first"}]++;
      }
      return;
    }
    if (LooksLikeHttp2Preface(captured.At(0))) {
      h2_ = std::make_unique<Http2Parser>(this);
      http2_detected_ = true;
    } else {
      h1_ = shared_->h1_pool->Take(this, false);
    }
    Dispatch(stream, captured, total_len, ts_ns);
    if (!early_) return;
    const std::unique_ptr<std::vector<Early>> early = std::move(early_);
    for (const auto& e : *early) {
      Dispatch(HttpStream::kResponse,
               e.segmented ? Capture::Segments(e.captured) : Capture(e.captured), e.total_len,
               e.ts_ns);
    }
    return;
  }
  Dispatch(stream, captured, total_len, ts_ns);
}

void HttpConn::Dispatch(HttpStream stream, Capture captured, uint64_t total_len, uint64_t ts_ns) {
  if (h2_) {
    h2_->Feed(stream, captured, total_len, ts_ns);
    return;
  }
  if (h1_at_rest_) {
    h1_ = shared_->h1_pool->Take(this, true);
    h1_at_rest_ = false;
  }
  h1_->Feed(stream, captured.At(0), total_len, ts_ns);
  if (h1_->AtRest()) {
    shared_->h1_pool->Give(std::move(h1_));
    h1_at_rest_ = true;
  }
}

void HttpConn::OnClose(uint64_t ts_ns) {
  if (h2_) h2_->OnClose(ts_ns);
  if (h1_) h1_->OnClose(ts_ns);  // one at rest has nothing to end
}

void HttpConn::Abandon() {
  if (h2_) shared_->agg->self().http2_unanswered += h2_->Abandon();
  if (h1_) h1_->Abandon();  // one at rest has no request in flight
}

bool HttpConn::gave_up() const {
  if (h2_) return h2_->state() == Http2Parser::State::kGaveUp;
  return h1_ && h1_->state() == Http1Parser::State::kGaveUp;
}

const char* HttpConn::protocol() const {
  return h2_ ? "http2" : h1_ || h1_at_rest_ ? "http1" : "http";
}

void HttpConn::KeepCacheFor(const std::string& authority) {
  if (cache_generation_ == shared_->agg->generation() && cached_authority_ == authority) return;
  cache_generation_ = shared_->agg->generation();
  cached_authority_ = authority;
  cached_http_ = nullptr;
  cached_route_series_ = nullptr;
}

HttpSeries* HttpConn::HttpSeriesOf(const std::string& authority) {
  KeepCacheFor(authority);
  if (cached_http_ == nullptr)
    cached_http_ = shared_->agg->Http(labels_, direction_, authority, tls_);
  return cached_http_;
}

HttpSeries* HttpConn::RouteSeriesOf(const std::string& authority, const std::string& route) {
  KeepCacheFor(authority);
  if (cached_route_series_ == nullptr || cached_route_ != route) {
    cached_route_series_ = shared_->agg->Route(labels_, direction_, authority, route);
    cached_route_ = route;
  }
  return cached_route_series_;
}

void HttpConn::CountRequest(const std::string& method, const std::string& authority,
                            const std::string& path) {
  HttpSeriesOf(authority)->requests++;
  RouteSeriesOf(authority, shared_->routes->Match(method, path))->requests++;
}

void HttpConn::CountResponse(const std::string& method, const std::string& authority,
                             const std::string& path, int status, int grpc_status, bool failed,
                             uint64_t headers_end_ns, uint64_t first_byte_ns) {
  uint64_t latency_ns = first_byte_ns > headers_end_ns ? first_byte_ns - headers_end_ns : 0;
  double latency_ms = static_cast<double>(latency_ns) / 1e6;
  HttpSeriesOf(authority)->CountResponse(status, grpc_status, failed, latency_ms);
  const std::string& route = shared_->routes->Match(method, path);
  RouteSeriesOf(authority, route)->CountResponse(status, grpc_status, failed, latency_ms);
  if (observer_ != nullptr) {
    observer_->OnExchange({endpoints_, direction_, method, authority, path, route, status,
                           grpc_status, failed, latency_ms, headers_end_ns});
  }
}

void HttpConn::OnRequest(const Http1Request& r) { CountRequest(r.method, r.authority, r.path); }

void HttpConn::OnResponse(const Http1Response& r) {
  // A response cut off by the close is a failure, whatever its status said.
  bool failed = r.cut_off || r.status >= 500;
  CountResponse(r.request.method, r.request.authority, r.request.path, r.status, -1, failed,
                r.request.headers_end_ns, r.first_byte_ns ? r.first_byte_ns : r.end_ns);
}

void HttpConn::OnError(Http1Error e) {
  shared_->agg->self().parse_errors[{"http1", Http1ErrorName(e)}]++;
}

void HttpConn::OnUnanswered(size_t n) { shared_->agg->self().http1_unanswered += n; }

void HttpConn::OnRequest(const Http2Request& r) { CountRequest(r.method, r.authority, r.path); }

void HttpConn::OnResponse(const Http2Response& r) {
  // gRPC's status decides when present (non-zero: failure); HTTP's otherwise.
  bool failed = r.cut_off || (r.grpc_status >= 0 ? r.grpc_status != 0 : r.status >= 500);
  CountResponse(r.request.method, r.request.authority, r.request.path, r.status,
                r.request.grpc ? r.grpc_status : -1, failed, r.request.headers_end_ns,
                r.first_byte_ns ? r.first_byte_ns : r.end_ns);
}

void HttpConn::OnError(Http2Error e) {
  shared_->agg->self().parse_errors[{"http2", Http2ErrorName(e)}]++;
}

}  // namespace podtap
