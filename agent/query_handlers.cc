#include "agent/query_handlers.h"

#include <time.h>

#include <algorithm>
#include <cstdlib>
#include <tuple>

namespace podtap {
namespace {
namespace pb = ::podtap::v1;

uint64_t ClockNs(clockid_t clock) {
  timespec t{};
  clock_gettime(clock, &t);
  return uint64_t(t.tv_sec) * 1'000'000'000 + uint64_t(t.tv_nsec);
}

pb::Direction ToProto(Direction d) { return d == Direction::kInbound ? pb::INBOUND : pb::OUTBOUND; }

void Fill(const Endpoint& e, pb::Endpoint* out) {
  out->set_namespace_(e.ns);
  out->set_pod(e.pod);
  out->set_workload_kind(e.workload_kind);
  out->set_workload(e.workload);
  out->set_host(e.host);
}

std::string Address(const IpAddr& ip, uint16_t port) {
  return ip.v6 ? "[" + ip.ToString() + "]:" + std::to_string(port)
               : ip.ToString() + ":" + std::to_string(port);
}

// Whether traffic observed by `local` in direction `dir` is selected.
bool Selected(const pb::Selector& s, const Endpoint& local, Direction dir) {
  if (!s.namespace_().empty() && local.ns != s.namespace_()) return false;
  if (!s.pod().empty() && local.pod != s.pod()) return false;
  if (!s.workload_kind().empty() && local.workload_kind != s.workload_kind()) return false;
  if (!s.workload().empty() && local.workload != s.workload()) return false;
  if (s.direction() != pb::DIRECTION_UNSPECIFIED && s.direction() != ToProto(dir)) return false;
  return true;
}

bool NamesSomething(const pb::Selector& s) {
  return !s.namespace_().empty() || !s.pod().empty() || !s.workload().empty();
}

std::string Describe(const pb::Selector& s) {
  std::string out;
  auto add = [&out](const std::string& what) { out += (out.empty() ? "" : ", ") + what; };
  if (!s.workload().empty()) {
    add((s.workload_kind().empty() ? "workload" : s.workload_kind()) + " " + s.workload());
  } else if (!s.workload_kind().empty()) {
    add("any " + s.workload_kind());
  }
  if (!s.pod().empty()) add("pod " + s.pod());
  if (!s.namespace_().empty()) add("namespace " + s.namespace_());
  return out.empty() ? "anything" : out;
}

// Whether a pod the agent knows matches the selector's names.
bool AnyPodMatches(const TcpPipeline& pipe, const pb::Selector& s) {
  for (const auto& pod : pipe.pods().all()) {
    Endpoint e = EndpointOf(pod.get());
    if (Selected(s, e, Direction::kInbound) || Selected(s, e, Direction::kOutbound)) return true;
  }
  return false;
}

grpc::Status NothingMatches(const pb::Selector& s) {
  return {grpc::StatusCode::NOT_FOUND,
          "no pod on this node matches " + Describe(s) + " (and no traffic of one was seen)"};
}

// Window in ns from a request's seconds (0: a minute), or an error.
grpc::Status WindowOf(uint32_t seconds, uint64_t* ns, uint32_t* used) {
  *used = seconds == 0 ? 60 : seconds;
  if (*used > Window::kMaxWindowNs / 1'000'000'000) {
    return {grpc::StatusCode::INVALID_ARGUMENT,
            "window of " + std::to_string(*used) + "s is longer than the " +
                std::to_string(Window::kMaxWindowNs / 1'000'000'000) + "s the agent keeps"};
  }
  *ns = uint64_t(*used) * 1'000'000'000;
  return grpc::Status::OK;
}

// Accumulates a Stat or Top row.
struct Acc {
  uint64_t requests = 0, successes = 0, read = 0, written = 0, open = 0;
  LatencyHistogram latency;
};

void Fill(const LatencyHistogram& h, pb::LatencyHistogram* out) {
  for (const auto& [bucket, n] : h.buckets()) {
    out->add_bucket(bucket);
    out->add_count(n);
  }
}

std::string Protocol(const Conn& c) {
  // TLS whose plaintext the SSL probes see is parsed too: "tls/http1".
  if (c.tls) return c.tls_http ? std::string("tls/") + c.tls_http->protocol() : "tls";
  if (c.http) return c.http->protocol();
  if (c.http_given_up) return "opaque";
  return "silent";
}

}  // namespace

grpc::Status QueryServiceImpl::Authorize(grpc::ServerContext* ctx) {
  std::string peer = ctx->peer();
  if (peer.starts_with("fd:")) {
    int fd = std::atoi(peer.c_str() + 3);
    std::lock_guard<std::mutex> lock(mu_);
    auto it = peer_uid_.find(fd);
    if (it == peer_uid_.end() || it->second != 0) {
      std::string who =
          it == peer_uid_.end() ? "an unknown user" : "uid " + std::to_string(it->second);
      return {grpc::StatusCode::PERMISSION_DENIED,
              "the podtap query socket answers root only; this caller is " + who};
    }
    return grpc::Status::OK;
  }
  const auto& md = ctx->client_metadata();
  auto it = md.find("authorization");
  std::string want = "Bearer " + token_;
  if (token_.empty() || it == md.end()) {
    return {grpc::StatusCode::UNAUTHENTICATED, "a bearer token is required (podtap --token-file)"};
  }
  std::string_view got(it->second.data(), it->second.size());
  // Constant time in the token's content.
  unsigned diff = got.size() != want.size();
  for (size_t i = 0; i < want.size(); i++) diff |= (i < got.size() ? got[i] : 0) ^ want[i];
  if (diff != 0) return {grpc::StatusCode::UNAUTHENTICATED, "wrong bearer token"};
  return grpc::Status::OK;
}

grpc::Status QueryServiceImpl::Stat(grpc::ServerContext* ctx, const pb::StatRequest* req,
                                    pb::StatResponse* resp) {
  if (auto st = Authorize(ctx); !st.ok()) return st;
  const std::string& by = req->group_by();
  if (!by.empty() && by != "pod" && by != "workload") {
    return {grpc::StatusCode::INVALID_ARGUMENT, "group_by must be pod or workload, not " + by};
  }
  bool by_workload = by == "workload";
  uint64_t window_ns = 0;
  uint32_t window_s = 0;
  if (auto st = WindowOf(req->window_seconds(), &window_ns, &window_s); !st.ok()) return st;
  resp->set_window_seconds(window_s);
  const pb::Selector& sel = req->selector();
  auto resource = [by_workload](const Endpoint& local) {
    if (!by_workload || local.workload.empty()) return local;
    return Endpoint{local.ns, "", local.workload_kind, local.workload, local.on_node, false};
  };
  std::map<std::pair<Endpoint, Direction>, Acc> rows;
  const uint64_t now_ns = ClockNs(CLOCK_MONOTONIC);
  // Requests over the time actually summed (a long window starts at a minute boundary).
  const double span_s = static_cast<double>(Window::SpanNs(now_ns, window_ns)) / 1e9;
  bool known = agent_->ReadQueryState([&](const QueryRecorder& rec, const TcpPipeline& pipe) {
    for (const auto& [key, t] : rec.window().Sum(now_ns, window_ns)) {
      const Endpoint& local = rec.endpoints().Get(key.first).local;
      if (!Selected(sel, local, key.second)) continue;
      Acc& a = rows[{resource(local), key.second}];
      a.requests += t.requests;
      a.successes += t.successes;
      a.read += t.read_bytes;
      a.written += t.write_bytes;
      a.latency.Merge(t.latency);
    }
    pipe.conns().ForEach([&](const Conn& c) {
      const Endpoint& local = rec.endpoints().Get(c.endpoints.id()).local;
      if (Selected(sel, local, c.direction)) rows[{resource(local), c.direction}].open++;
    });
    return !NamesSomething(sel) || AnyPodMatches(pipe, sel);
  });
  if (rows.empty() && !known) return NothingMatches(sel);
  for (const auto& [key, a] : rows) {
    pb::StatRow* r = resp->add_rows();
    Fill(key.first, r->mutable_resource());
    r->set_direction(ToProto(key.second));
    r->set_requests(a.requests);
    r->set_successes(a.successes);
    r->set_rps(static_cast<double>(a.requests) / span_s);
    r->set_success_rate(a.requests ? static_cast<double>(a.successes) / a.requests : 0);
    r->set_latency_p50_ms(a.latency.QuantileMs(0.5));
    r->set_latency_p95_ms(a.latency.QuantileMs(0.95));
    r->set_latency_p99_ms(a.latency.QuantileMs(0.99));
    Fill(a.latency, r->mutable_latency());
    r->set_tcp_open_connections(a.open);
    r->set_read_bytes(a.read);
    r->set_write_bytes(a.written);
  }
  return grpc::Status::OK;
}

grpc::Status QueryServiceImpl::Top(grpc::ServerContext* ctx, const pb::TopRequest* req,
                                   pb::TopResponse* resp) {
  if (auto st = Authorize(ctx); !st.ok()) return st;
  std::string by = req->by().empty() ? "path" : req->by();
  std::string sort = req->sort().empty() ? "requests" : req->sort();
  if (by != "path" && by != "authority" && by != "route") {
    return {grpc::StatusCode::INVALID_ARGUMENT, "by must be path, authority or route, not " + by};
  }
  if (sort != "requests" && sort != "failures") {
    return {grpc::StatusCode::INVALID_ARGUMENT, "sort must be requests or failures, not " + sort};
  }
  uint64_t window_ns = 0;
  uint32_t window_s = 0;
  if (auto st = WindowOf(req->window_seconds(), &window_ns, &window_s); !st.ok()) return st;
  resp->set_window_seconds(window_s);
  const pb::Selector& sel = req->selector();
  // (direction, method, key) -> counts
  std::map<std::tuple<Direction, std::string, std::string>, Window::TopCounts> groups;
  bool known = agent_->ReadQueryState([&](const QueryRecorder& rec, const TcpPipeline& pipe) {
    uint64_t now = ClockNs(CLOCK_MONOTONIC);
    for (const auto& [key, c] : rec.window().SumTop(now, window_ns)) {
      if (!Selected(sel, rec.endpoints().Get(key.endpoints).local, key.direction)) continue;
      std::tuple<Direction, std::string, std::string> g =
          by == "path"        ? std::make_tuple(key.direction, key.method, key.path)
          : by == "authority" ? std::make_tuple(key.direction, std::string(), key.authority)
                              : std::make_tuple(key.direction, std::string(), c.route);
      Window::TopCounts& o = groups[g];
      o.requests += c.requests;
      o.failures += c.failures;
      o.latency.Merge(c.latency);
    }
    resp->set_dropped(rec.window().TopDropped(now, window_ns));
    return !NamesSomething(sel) || AnyPodMatches(pipe, sel);
  });
  if (groups.empty() && !known) return NothingMatches(sel);
  std::vector<std::pair<std::tuple<Direction, std::string, std::string>, Window::TopCounts>> sorted(
      groups.begin(), groups.end());
  bool by_failures = sort == "failures";
  std::stable_sort(sorted.begin(), sorted.end(), [by_failures](const auto& a, const auto& b) {
    if (by_failures && a.second.failures != b.second.failures) {
      return a.second.failures > b.second.failures;
    }
    return a.second.requests > b.second.requests;
  });
  size_t limit = req->limit() == 0 ? 20 : req->limit();
  for (size_t i = 0; i < sorted.size() && i < limit; i++) {
    const auto& [g, c] = sorted[i];
    pb::TopRow* r = resp->add_rows();
    r->set_direction(ToProto(std::get<0>(g)));
    r->set_method(std::get<1>(g));
    r->set_key(std::get<2>(g));
    r->set_requests(c.requests);
    r->set_failures(c.failures);
    r->set_success_rate(c.requests ? static_cast<double>(c.requests - c.failures) / c.requests : 0);
    r->set_latency_p50_ms(c.latency.QuantileMs(0.5));
    r->set_latency_p99_ms(c.latency.QuantileMs(0.99));
    Fill(c.latency, r->mutable_latency());
  }
  return grpc::Status::OK;
}

grpc::Status QueryServiceImpl::Tap(grpc::ServerContext* ctx, const pb::TapRequest* req,
                                   grpc::ServerWriter<pb::TapEvent>* writer) {
  if (auto st = Authorize(ctx); !st.ok()) return st;
  const pb::Selector& sel = req->selector();
  if (req->status_class() > 5) {
    return {grpc::StatusCode::INVALID_ARGUMENT,
            "status_class must be 1 to 5 (1xx to 5xx) or 0 for any"};
  }
  bool known = agent_->ReadQueryState([&](const QueryRecorder&, const TcpPipeline& pipe) {
    return !NamesSomething(sel) || AnyPodMatches(pipe, sel);
  });
  if (!known) return NothingMatches(sel);
  TapFilter f;
  f.ns = sel.namespace_();
  f.pod = sel.pod();
  f.workload_kind = sel.workload_kind();
  f.workload = sel.workload();
  if (sel.direction() != pb::DIRECTION_UNSPECIFIED) {
    f.direction = sel.direction() == pb::INBOUND ? Direction::kInbound : Direction::kOutbound;
  }
  f.authority = req->authority();
  f.path_prefix = req->path_prefix();
  f.status_class = static_cast<int>(req->status_class());
  std::string error;
  TapHub& hub = agent_->taps();
  auto stream = hub.Subscribe(std::move(f), req->max_rps(), &error);
  if (!stream) return {grpc::StatusCode::RESOURCE_EXHAUSTED, error};
  // The client learns from the initial metadata that the tap is attached.
  ctx->AddInitialMetadata("podtap-tap", "attached");
  writer->SendInitialMetadata();
  while (!ctx->IsCancelled()) {
    auto item = stream->Next(200);
    if (!item) {
      if (stream->closed()) break;
      continue;
    }
    const TapRecord& r = item->record;
    pb::TapEvent ev;
    uint64_t offset = ClockNs(CLOCK_REALTIME) - ClockNs(CLOCK_MONOTONIC);
    ev.set_unix_nanos(static_cast<int64_t>(r.ts_ns + offset));
    ev.set_direction(ToProto(r.direction));
    bool inbound = r.direction == Direction::kInbound;
    Fill(inbound ? r.remote : r.local, ev.mutable_source());
    Fill(inbound ? r.local : r.remote, ev.mutable_destination());
    ev.set_method(r.method);
    ev.set_authority(r.authority);
    ev.set_path(r.path);
    ev.set_status(static_cast<uint32_t>(r.status));
    ev.set_grpc_status(r.grpc_status);
    ev.set_latency_ms(r.latency_ms);
    ev.set_failure(r.failed);
    ev.set_skipped_before(item->skipped_before);
    if (!writer->Write(ev)) break;
  }
  hub.Unsubscribe(stream);
  return grpc::Status::OK;
}

grpc::Status QueryServiceImpl::Conns(grpc::ServerContext* ctx, const pb::ConnsRequest* req,
                                     pb::ConnsResponse* resp) {
  if (auto st = Authorize(ctx); !st.ok()) return st;
  const pb::Selector& sel = req->selector();
  std::vector<pb::Conn> found;
  bool known = agent_->ReadQueryState([&](const QueryRecorder& rec, const TcpPipeline& pipe) {
    uint64_t now = ClockNs(CLOCK_MONOTONIC);
    pipe.conns().ForEach([&](const Conn& c) {
      const EndpointPair& pair = rec.endpoints().Get(c.endpoints.id());
      if (!Selected(sel, pair.local, c.direction)) return;
      pb::Conn& out = found.emplace_back();
      out.set_direction(ToProto(c.direction));
      Fill(pair.local, out.mutable_local());
      out.mutable_local()->set_address(Address(c.local, c.local_port));
      Fill(pair.remote, out.mutable_remote());
      out.mutable_remote()->set_address(Address(c.remote, c.remote_port));
      out.set_age_seconds(static_cast<double>(SubClamped(now, c.open_ns)) / 1e9);
      out.set_read_bytes(c.reported_read);
      out.set_write_bytes(c.reported_written);
      out.set_protocol(Protocol(c));
    });
    return !NamesSomething(sel) || AnyPodMatches(pipe, sel);
  });
  if (found.empty() && !known) return NothingMatches(sel);
  // Oldest first: the long-lived connections an incident is usually about.
  std::sort(found.begin(), found.end(),
            [](const pb::Conn& a, const pb::Conn& b) { return a.age_seconds() > b.age_seconds(); });
  resp->set_total(found.size());
  size_t limit = req->limit() == 0 ? 1000 : req->limit();
  for (size_t i = 0; i < found.size() && i < limit; i++) *resp->add_conns() = std::move(found[i]);
  return grpc::Status::OK;
}

grpc::Status QueryServiceImpl::Edges(grpc::ServerContext* ctx, const pb::EdgesRequest* req,
                                     pb::EdgesResponse* resp) {
  if (auto st = Authorize(ctx); !st.ok()) return st;
  uint64_t window_ns = 0;
  uint32_t window_s = 0;
  if (auto st = WindowOf(req->window_seconds(), &window_ns, &window_s); !st.ok()) return st;
  resp->set_window_seconds(window_s);
  const pb::Selector& sel = req->selector();
  // (source, destination, the direction it was observed in) -> counts
  std::map<std::tuple<Endpoint, Endpoint, Direction>, Acc> edges;
  // Each edge once: the client's outbound view when the client is a pod on
  // this node (its sockets are seen here), otherwise the server's inbound one.
  auto edge = [&](const EndpointPair& pair, Direction dir) -> Acc* {
    bool inbound = dir == Direction::kInbound;
    if (inbound && pair.remote.on_node) return nullptr;
    const Endpoint& src = inbound ? pair.remote : pair.local;
    const Endpoint& dst = inbound ? pair.local : pair.remote;
    pb::Selector any = sel;
    any.set_direction(pb::DIRECTION_UNSPECIFIED);
    if (!Selected(any, src, dir) && !Selected(any, dst, dir)) return nullptr;
    return &edges[{src, dst, dir}];
  };
  bool known = agent_->ReadQueryState([&](const QueryRecorder& rec, const TcpPipeline& pipe) {
    for (const auto& [key, t] : rec.window().Sum(ClockNs(CLOCK_MONOTONIC), window_ns)) {
      Acc* a = edge(rec.endpoints().Get(key.first), key.second);
      if (a == nullptr) continue;
      a->requests += t.requests;
      a->successes += t.successes;
      a->read += t.read_bytes + t.write_bytes;
      a->latency.Merge(t.latency);
    }
    pipe.conns().ForEach([&](const Conn& c) {
      if (Acc* a = edge(rec.endpoints().Get(c.endpoints.id()), c.direction)) a->open++;
    });
    return !NamesSomething(sel) || AnyPodMatches(pipe, sel);
  });
  if (edges.empty() && !known) return NothingMatches(sel);
  for (const auto& [key, a] : edges) {
    pb::Edge* e = resp->add_edges();
    Fill(std::get<0>(key), e->mutable_source());
    Fill(std::get<1>(key), e->mutable_destination());
    e->set_observed(ToProto(std::get<2>(key)));
    e->set_requests(a.requests);
    e->set_successes(a.successes);
    e->set_success_rate(a.requests ? static_cast<double>(a.successes) / a.requests : 0);
    e->set_tcp_open_connections(a.open);
    e->set_bytes(a.read);
    e->set_latency_p50_ms(a.latency.QuantileMs(0.5));
    e->set_latency_p95_ms(a.latency.QuantileMs(0.95));
    e->set_latency_p99_ms(a.latency.QuantileMs(0.99));
    Fill(a.latency, e->mutable_latency());
  }
  return grpc::Status::OK;
}

}  // namespace podtap
