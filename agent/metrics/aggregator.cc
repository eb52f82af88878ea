// Aggregated transport metrics and their conversion to the snapshot writers read.
#include "agent/metrics/aggregator.h"

#include <algorithm>
#include <cmath>

namespace podtap {

void Histogram::Observe(double v) {
  // Linkerd's proxy records whole milliseconds (a Duration truncated), so
  // 10.7 ms is 10 and falls in le="10", as it does there; the sum adds them too.
  const double ms = std::floor(v);
  auto it = std::lower_bound(kLatencyBoundsMs.begin(), kLatencyBoundsMs.end(), ms);
  buckets_[static_cast<size_t>(it - kLatencyBoundsMs.begin())]++;
  sum_ += ms;
  count_++;
}

HistogramData Histogram::ToData() const {
  HistogramData d;
  d.bounds.assign(kLatencyBoundsMs.begin(), kLatencyBoundsMs.end());
  uint64_t running = 0;
  for (uint64_t b : buckets_) {
    running += b;
    d.cumulative_counts.push_back(running);
  }
  d.sum = sum_;
  d.count = count_;
  return d;
}

const char* SeriesGroupName(SeriesGroup g) {
  switch (g) {
    case SeriesGroup::kTcp:
      return "tcp";
    case SeriesGroup::kHttp:
      return "http";
    case SeriesGroup::kRoute:
      return "route";
  }
  return "unknown";  // unreachable; GCC does not treat the switch as exhaustive
}

std::string CleanLabelValue(std::string_view value, size_t max_bytes) {
  std::string valid;
  AppendValidUtf8(valid, value);
  if (valid.size() <= max_bytes) return valid;
  size_t cut = max_bytes;
  // Back off continuation bytes so the cut never splits a character.
  while (cut > 0 && (static_cast<unsigned char>(valid[cut]) & 0xC0) == 0x80) cut--;
  valid.resize(cut);
  return valid;
}

bool LabelSetPodsExist(const Labels& labels, const PodKeys& live) {
  std::string ns, pod, dst_ns, dst_pod;
  for (const auto& [name, value] : labels) {
    if (name == "namespace") ns = value;
    if (name == "pod") pod = value;
    if (name == "dst_namespace") dst_ns = value;
    if (name == "dst_pod") dst_pod = value;
  }
  const bool local = (ns.empty() && pod.empty()) || live.contains({ns, pod});
  return local && (dst_pod.empty() || live.contains({dst_ns, dst_pod}));
}

namespace {

uint64_t Activity(const TransportSeries& s) {
  uint64_t a = s.open_total + s.read_bytes + s.write_bytes;
  for (const CloseClass& c : s.closes) a += c.total;
  for (uint64_t e : s.errors) a += e;
  return a;
}

// The value of `key` in a vector of (key, value) sorted by key, added (as V{})
// when missing.
template <typename K, typename V>
V& SortedEntry(std::vector<std::pair<K, V>>& entries, const K& key) {
  auto it = std::lower_bound(entries.begin(), entries.end(), key,
                             [](const std::pair<K, V>& e, const K& k) { return e.first < k; });
  if (it == entries.end() || it->first != key) it = entries.insert(it, {key, V{}});
  return it->second;
}

uint64_t Activity(const HttpSeries& s) {
  uint64_t a = s.requests;
  for (const auto& [key, n] : s.responses) a += n;
  return a;
}

}  // namespace

Aggregator::Aggregator(AggregatorOptions opts)
    : opts_(opts), overflow_(Intern({{"podtap_overflow", "true"}})), overflow_id_(overflow_.id()) {}

Aggregator::LabelRef Aggregator::Intern(const Labels& labels) {
  Labels clean;
  clean.reserve(labels.size());
  for (const auto& [name, value] : labels) {
    clean.emplace_back(name, CleanLabelValue(value, opts_.max_label_value_bytes));
  }
  return label_sets_.Intern(std::move(clean));
}

std::string Aggregator::Clean(const std::string& value) const {
  if (value.size() <= opts_.max_label_value_bytes && IsAscii(value)) return value;
  return CleanLabelValue(value, opts_.max_label_value_bytes);
}

bool Aggregator::Admit(SeriesGroup g) {
  const auto i = static_cast<size_t>(g);
  if (keys_[i] >= opts_.max_series_per_family) {
    dropped_[i]++;
    return false;
  }
  keys_[i]++;
  return true;
}

// Finds `key` in `map`, or creates it when the group admits a new key, or
// else returns the series at `overflow_key`. A new series holds its label set.
template <typename Map>
auto* Aggregator::FindOrCreate(Map& map, typename Map::key_type key, LabelSetId id,
                               const typename Map::key_type& overflow_key, SeriesGroup g) {
  auto it = map.find(key);
  if (it == map.end()) {
    if (!Admit(g)) {
      it = map.find(overflow_key);
      if (it == map.end()) it = map.try_emplace(overflow_key).first;
      id = overflow_id_;
    } else {
      it = map.try_emplace(std::move(key)).first;
    }
    if (!it->second.label_set.held()) {
      it->second.idle.last_change = std::chrono::steady_clock::now();
      it->second.label_set = label_sets_.Hold(id);
    }
  }
  return &it->second.series;
}

CloseClass& TransportSeries::Close(Classification c, int err) {
  for (CloseClass& cc : closes) {
    if (cc.classification == c && cc.err == err) return cc;
  }
  CloseClass& cc = closes.emplace_back();
  cc.classification = c;
  cc.err = err;
  return cc;
}

TransportSeries* Aggregator::Transport(LabelSetId id, Direction direction, bool tls) {
  return FindOrCreate(transport_, {Key{id, direction}, tls}, id,
                      {Key{overflow_id_, direction}, false}, SeriesGroup::kTcp);
}

void HttpSeries::CountResponse(int status, int grpc_status, bool failed, double latency) {
  SortedEntry(responses, std::tuple<int, int, bool>(status, grpc_status, failed))++;
  SortedEntry(latency_ms, status).Observe(latency);
}

HttpSeries* Aggregator::Http(LabelSetId id, Direction direction, const std::string& authority,
                             bool tls) {
  return FindOrCreate(http_, {Key{id, direction}, Clean(authority), tls}, id,
                      {Key{overflow_id_, direction}, std::string(), false}, SeriesGroup::kHttp);
}

HttpSeries* Aggregator::Route(LabelSetId id, Direction direction, const std::string& dst,
                              const std::string& route) {
  return FindOrCreate(routes_, {Key{id, direction}, Clean(dst), Clean(route)}, id,
                      {Key{overflow_id_, direction}, std::string(), std::string()},
                      SeriesGroup::kRoute);
}

size_t Aggregator::SeriesCount(SeriesGroup g) const {
  switch (g) {
    case SeriesGroup::kTcp:
      return transport_.size();
    case SeriesGroup::kHttp:
      return http_.size();
    case SeriesGroup::kRoute:
      return routes_.size();
  }
  return 0;
}

size_t Aggregator::Expire(Clock::time_point now, Clock::duration retention,
                          const std::function<bool(const Labels&)>& pod_exists) {
  // Asked once per label set per sweep, by slot: -1 unknown, 0 gone, 1 exists.
  // (No label set is interned during the sweep, so no slot changes hands.)
  std::vector<int8_t> exists(label_sets_.slots(), -1);
  auto pod_gone = [&](LabelSetId id) {
    int8_t& e = exists[LabelSets::SlotOf(id)];
    if (e < 0) e = pod_exists(label_sets_.Get(id)) ? 1 : 0;
    return e == 0;
  };
  size_t removed = 0;
  auto sweep = [&](auto& map, SeriesGroup g, auto&& pinned, auto&& key_of) {
    for (auto it = map.begin(); it != map.end();) {
      const Key& key = key_of(it->first);
      Idle& idle = it->second.idle;
      const uint64_t activity = Activity(it->second.series);
      bool expire = false;
      if (activity != idle.activity_at_sweep) {
        idle.activity_at_sweep = activity;
        idle.last_change = now;
      } else {
        expire = key.id != overflow_id_ && !pinned(it->second.series) &&
                 activity == idle.activity_at_collect && now - idle.last_change >= retention &&
                 pod_gone(key.id);
      }
      if (expire) {
        it = map.erase(it);
        keys_[static_cast<size_t>(g)]--;
        removed++;
      } else {
        ++it;
      }
    }
  };
  // A connection holds its TransportSeries pointer from its counted open to
  // its close, exactly the span in which it adds one to open_now.
  sweep(
      transport_, SeriesGroup::kTcp, [](const TransportSeries& s) { return s.open_now > 0; },
      [](const auto& k) -> const Key& { return k.first; });
  sweep(
      http_, SeriesGroup::kHttp, [](const HttpSeries&) { return false; },
      [](const auto& k) -> const Key& { return std::get<0>(k); });
  sweep(
      routes_, SeriesGroup::kRoute, [](const HttpSeries&) { return false; },
      [](const auto& k) -> const Key& { return std::get<0>(k); });
  if (removed > 0) generation_++;
  return removed;
}

namespace {

const char* ClassificationName(Classification c) {
  return c == Classification::kSuccess ? "success" : "failure";
}

Labels With(Labels head, const Labels& tail) {
  head.insert(head.end(), tail.begin(), tail.end());
  return head;
}

void AddValue(MetricFamily* f, Labels labels, double v) {
  Sample s;
  s.labels = std::move(labels);
  s.value = v;
  f->samples.push_back(std::move(s));
}

// request_total, response_total and response_latency_ms samples of one
// series (or their route_* twins).
void AddHttp(const HttpSeries& s, const Labels& labels, MetricFamily* requests,
             MetricFamily* responses, MetricFamily* latency) {
  AddValue(requests, labels, static_cast<double>(s.requests));
  auto status_label = [](int status) { return status > 0 ? std::to_string(status) : ""; };
  for (const auto& [rkey, n] : s.responses) {
    const auto& [status, grpc_status, failed] = rkey;
    Labels l = labels;
    l.emplace_back("status_code", status_label(status));
    l.emplace_back("classification", failed ? "failure" : "success");
    if (grpc_status >= 0) l.emplace_back("grpc_status_code", std::to_string(grpc_status));
    AddValue(responses, l, static_cast<double>(n));
  }
  for (const auto& [status, h] : s.latency_ms) {
    Sample sample;
    sample.labels = labels;
    sample.labels.emplace_back("status_code", status_label(status));
    sample.histogram = h.ToData();
    latency->samples.push_back(std::move(sample));
  }
}

}  // namespace

Snapshot Aggregator::Collect() const {
  auto open_total =
      NewFamily("tcp_open_total", "Total count of opened connections.", MetricType::kCounter);
  auto close_total =
      NewFamily("tcp_close_total", "Total count of closed connections.", MetricType::kCounter);
  auto open_now = NewFamily("tcp_open_connections", "Number of currently-open connections.",
                            MetricType::kGauge);
  auto read_bytes = NewFamily("tcp_read_bytes_total",
                              "Total count of payload bytes read from peers (live and closed "
                              "connections).",
                              MetricType::kCounter, "bytes");
  auto write_bytes = NewFamily("tcp_write_bytes_total",
                               "Total count of payload bytes written to peers (live and closed "
                               "connections).",
                               MetricType::kCounter, "bytes");
  auto duration = NewFamily("tcp_connection_duration_ms", "Connection lifetimes in milliseconds.",
                            MetricType::kHistogram, "ms");
  std::array<MetricFamily, kDirectionCount> errors = {
      NewFamily("outbound_tcp_errors_total", "Total count of outbound TCP connection failures.",
                MetricType::kCounter),
      NewFamily("inbound_tcp_errors_total", "Total count of inbound TCP connection failures.",
                MetricType::kCounter)};

  for (const auto& [tkey, entry] : transport_) {
    const auto& [key, tls] = tkey;
    const TransportSeries* s = &entry.series;
    entry.idle.activity_at_collect = Activity(*s);
    const Labels& base = label_sets_.Get(key.id);
    Labels dir = {{"direction", DirectionName(key.direction)},
                  {"peer", PeerName(key.direction)},
                  {"tls", tls ? "true" : "false"}};
    Labels with_peer = With(dir, base);
    AddValue(&open_total, with_peer, static_cast<double>(s->open_total));
    AddValue(&open_now, with_peer, static_cast<double>(s->open_now));
    AddValue(&read_bytes, with_peer, static_cast<double>(s->read_bytes));
    AddValue(&write_bytes, with_peer, static_cast<double>(s->write_bytes));
    for (const CloseClass& c : s->closes) {
      Labels l = With(with_peer, {{"classification", ClassificationName(c.classification)},
                                  {"errno", ErrnoName(c.err)}});
      AddValue(&close_total, l, static_cast<double>(c.total));
      Sample h;
      h.labels = std::move(l);
      h.histogram = c.duration_ms.ToData();
      duration.samples.push_back(std::move(h));
    }
    for (size_t e = 0; e < kTcpErrorCount; e++) {
      if (s->errors[e] == 0) continue;
      Labels l = With(
          {{"direction", DirectionName(key.direction)}, {"tls", tls ? "true" : "false"}}, base);
      l.emplace_back("error", TcpErrorName(static_cast<TcpError>(e)));
      AddValue(&errors[static_cast<size_t>(key.direction)], l, static_cast<double>(s->errors[e]));
    }
  }

  auto requests = NewFamily("request_total", "Total count of HTTP requests.", MetricType::kCounter);
  auto responses =
      NewFamily("response_total", "Total count of HTTP responses.", MetricType::kCounter);
  auto latency = NewFamily("response_latency_ms",
                           "Elapsed times between a request's headers and the first byte of its "
                           "response, in milliseconds.",
                           MetricType::kHistogram, "ms");
  for (const auto& [key, entry] : http_) {
    const auto& [tkey, authority, tls] = key;
    const HttpSeries* s = &entry.series;
    entry.idle.activity_at_collect = Activity(*s);
    Labels head = {{"direction", DirectionName(tkey.direction)},
                   {"authority", authority},
                   {"tls", tls ? "true" : "false"}};
    AddHttp(*s, With(head, label_sets_.Get(tkey.id)), &requests, &responses, &latency);
  }
  auto route_requests = NewFamily("route_request_total", "Total count of HTTP requests, per route.",
                                  MetricType::kCounter);
  auto route_responses = NewFamily(
      "route_response_total", "Total count of HTTP responses, per route.", MetricType::kCounter);
  auto route_latency = NewFamily("route_response_latency_ms",
                                 "Elapsed times between a request's headers and the first byte of "
                                 "its response, in milliseconds, per route.",
                                 MetricType::kHistogram, "ms");
  for (const auto& [key, entry] : routes_) {
    const auto& [tkey, dst, route] = key;
    const HttpSeries* s = &entry.series;
    entry.idle.activity_at_collect = Activity(*s);
    Labels head = {{"direction", DirectionName(tkey.direction)}, {"dst", dst}, {"rt_route", route}};
    AddHttp(*s, With(head, label_sets_.Get(tkey.id)), &route_requests, &route_responses,
            &route_latency);
  }

  Snapshot snap;
  auto series =
      NewFamily("podtap_series", "Series held per exposed metric family.", MetricType::kGauge);
  for (auto* f : {&requests, &responses, &latency, &route_requests, &route_responses,
                  &route_latency, &open_total, &close_total, &open_now, &read_bytes, &write_bytes,
                  &duration, &errors[0], &errors[1]}) {
    AddValue(&series, {{"family", f->name}}, static_cast<double>(f->samples.size()));
    snap.families.push_back(std::move(*f));
  }
  snap.families.push_back(std::move(series));

  auto label_sets = NewFamily("podtap_label_sets",
                              "Label sets interned now (pod and peer labels of series and open "
                              "connections); those of pods that are gone are freed with their last "
                              "series and connection.",
                              MetricType::kGauge);
  AddValue(&label_sets, {}, static_cast<double>(label_sets_.size()));
  snap.families.push_back(std::move(label_sets));

  auto dropped =
      NewFamily("podtap_series_dropped_total",
                "Lookups of a new label set that found its series group at the "
                "--max-series-per-family cap and were counted in the group's overflow "
                "series (podtap_overflow=\"true\") instead, by group (tcp, http, route).",
                MetricType::kCounter);
  for (size_t g = 0; g < kSeriesGroupCount; g++) {
    AddValue(&dropped, {{"family", SeriesGroupName(static_cast<SeriesGroup>(g))}},
             static_cast<double>(dropped_[g]));
  }
  snap.families.push_back(std::move(dropped));

  auto lost =
      NewFamily("podtap_events_lost_total",
                "Events the kernel could not hand to the agent, by reason.", MetricType::kCounter);
  AddValue(&lost, {{"reason", "ringbuf_full"}}, static_cast<double>(self_.events_lost_ringbuf));
  AddValue(&lost, {{"reason", "decode_error"}}, static_cast<double>(self_.decode_errors));
  AddValue(&lost, {{"reason", "payload_ringbuf_full"}},
           static_cast<double>(self_.payload_lost_ringbuf));
  AddValue(&lost, {{"reason", "syscall_map_full"}}, static_cast<double>(self_.payload_lost_args));
  AddValue(&lost, {{"reason", "h2_capture_full"}}, static_cast<double>(self_.h2_capture_full));
  AddValue(&lost, {{"reason", "h2_walk_lost"}}, static_cast<double>(self_.h2_walk_lost));
  AddValue(&lost, {{"reason", "h2_walk_out_of_order"}},
           static_cast<double>(self_.h2_walk_out_of_order));
  AddValue(&lost, {{"reason", "tls_unmapped"}}, static_cast<double>(self_.tls_unmapped));
  AddValue(&lost, {{"reason", "payload_unmatched"}}, static_cast<double>(self_.payload_unmatched));
  AddValue(&lost, {{"reason", "close_map_full"}}, static_cast<double>(self_.close_map_full));
  snap.families.push_back(std::move(lost));

  auto recovered =
      NewFamily("podtap_events_recovered_total",
                "Lifecycle events the ring buffer had no room for (counted in "
                "podtap_events_lost_total{reason=\"ringbuf_full\"}) that were applied "
                "anyway, by kind: opens rebuilt at close from the kernel's socket map, "
                "closes and failed connects from its pending closes map.",
                MetricType::kCounter);
  AddValue(&recovered, {{"kind", "open"}}, static_cast<double>(self_.opens_recovered));
  AddValue(&recovered, {{"kind", "close"}}, static_cast<double>(self_.closes_recovered));
  AddValue(&recovered, {{"kind", "connect_fail"}},
           static_cast<double>(self_.connect_fails_recovered));
  snap.families.push_back(std::move(recovered));

  auto payload =
      NewFamily("podtap_payload_events_total",
                "Socket data records applied to the protocol parsers.", MetricType::kCounter);
  AddValue(&payload, {}, static_cast<double>(self_.payload_events));
  snap.families.push_back(std::move(payload));

  auto parse_errors = NewFamily("podtap_parse_errors_total",
                                "Protocol parse problems, by protocol and kind (resyncs included).",
                                MetricType::kCounter);
  for (const auto& [key, n] : self_.parse_errors) {
    AddValue(&parse_errors, {{"protocol", key.first}, {"error", key.second}},
             static_cast<double>(n));
  }
  snap.families.push_back(std::move(parse_errors));

  auto given_up = NewFamily("podtap_connections_given_up_total",
                            "Connections whose payload is no longer parsed (not the protocol, "
                            "upgraded, or lost), by protocol.",
                            MetricType::kCounter);
  for (const char* protocol : {"http1", "http2"}) {
    auto it = self_.given_up.find(protocol);
    AddValue(&given_up, {{"protocol", protocol}},
             static_cast<double>(it == self_.given_up.end() ? 0 : it->second));
  }
  snap.families.push_back(std::move(given_up));

  auto unanswered = NewFamily("podtap_http_requests_unanswered_total",
                              "Requests counted in request_total whose response will never be "
                              "counted: the parser gave up on their connection, or the agent shed "
                              "it (podtap_http_shed_connections_total), while they waited.",
                              MetricType::kCounter);
  AddValue(&unanswered, {{"protocol", "http1"}}, static_cast<double>(self_.http1_unanswered));
  AddValue(&unanswered, {{"protocol", "http2"}}, static_cast<double>(self_.http2_unanswered));
  snap.families.push_back(std::move(unanswered));

  auto budget =
      NewFamily("podtap_cpu_budget_cores",
                "The agent's CPU budget (--max-cpu) in cores; 0: no budget.", MetricType::kGauge);
  AddValue(&budget, {}, self_.cpu_budget_cores);
  snap.families.push_back(std::move(budget));
  auto shed =
      NewFamily("podtap_http_shed_connections_total",
                "Connections whose HTTP capture the agent stopped to stay within its CPU "
                "budget (their TCP series stay exact; their later exchanges are not counted).",
                MetricType::kCounter);
  AddValue(&shed, {}, static_cast<double>(self_.shed_connections));
  snap.families.push_back(std::move(shed));
  auto shed_records =
      NewFamily("podtap_http_shed_records_total",
                "Socket data records of shed connections that were already on their "
                "way from the kernel, dropped unparsed.",
                MetricType::kCounter);
  AddValue(&shed_records, {}, static_cast<double>(self_.shed_records));
  snap.families.push_back(std::move(shed_records));

  auto untracked = NewFamily("podtap_connections_untracked_total",
                             "Connections not counted, by reason: the connection table was full, "
                             "or the socket was opened before the probes were attached.",
                             MetricType::kCounter);
  AddValue(&untracked, {{"reason", "table_full"}}, static_cast<double>(self_.conn_table_full));
  AddValue(&untracked, {{"reason", "opened_before_start"}},
           static_cast<double>(self_.closes_without_open));
  snap.families.push_back(std::move(untracked));

  auto adopted = NewFamily("podtap_connections_adopted_total",
                           "Connections already open when the agent started, found through the "
                           "kernel's socket diagnostics and tracked from then on.",
                           MetricType::kCounter);
  AddValue(&adopted, {}, static_cast<double>(self_.connections_adopted));
  snap.families.push_back(std::move(adopted));

  auto sockmap = NewFamily("podtap_kernel_socket_map_full_total",
                           "Opens the kernel could not remember because its socket map was full "
                           "(the agent's own table still counts them if their open event arrived).",
                           MetricType::kCounter);
  AddValue(&sockmap, {}, static_cast<double>(self_.kernel_sockmap_full));
  snap.families.push_back(std::move(sockmap));

  auto tls_libs = NewFamily("podtap_tls_libraries",
                            "Executable files (libraries and programs) the node's processes map: "
                            "those with the OpenSSL API by whether the TLS plaintext probes are "
                            "attached to them, Go programs with crypto/tls the Go TLS probes are "
                            "attached to (go), the other files, of those the Go programs with "
                            "crypto/tls not covered (not decrypted), and failed tries to read one.",
                            MetricType::kGauge);
  AddValue(&tls_libs, {{"state", "attached"}}, static_cast<double>(self_.tls_libraries));
  AddValue(&tls_libs, {{"state", "failed"}}, static_cast<double>(self_.tls_attach_errors));
  AddValue(&tls_libs, {{"state", "without_openssl"}},
           static_cast<double>(self_.tls_without_openssl));
  AddValue(&tls_libs, {{"state", "go"}}, static_cast<double>(self_.tls_go_attached));
  AddValue(&tls_libs, {{"state", "go_not_covered"}}, static_cast<double>(self_.tls_go_not_covered));
  AddValue(&tls_libs, {{"state", "unreadable"}}, static_cast<double>(self_.tls_unreadable));
  snap.families.push_back(std::move(tls_libs));

  auto tracked = NewFamily("podtap_connections_tracked", "Open connections the agent tracks now.",
                           MetricType::kGauge);
  AddValue(&tracked, {}, static_cast<double>(self_.connections_tracked));
  snap.families.push_back(std::move(tracked));

  auto max_tracked =
      NewFamily("podtap_connections_max",
                "The most connections the agent tracks at once (--max-connections, or "
                "sized from --memory-limit); past it they are refused and counted.",
                MetricType::kGauge);
  AddValue(&max_tracked, {}, static_cast<double>(self_.connections_max));
  snap.families.push_back(std::move(max_tracked));

  auto pods =
      NewFamily("podtap_metadata_pods", "Pods known to the metadata source.", MetricType::kGauge);
  AddValue(&pods, {}, static_cast<double>(self_.pods_known));
  snap.families.push_back(std::move(pods));

  auto md_up = NewFamily("podtap_metadata_source_up",
                         "1 when the metadata source's last read succeeded (kubernetes: every "
                         "resource listed and its watch running), by source.",
                         MetricType::kGauge);
  auto md_errors =
      NewFamily("podtap_metadata_errors_total",
                "Failed reads of a pod metadata source, by source and reason (the last "
                "good data is kept).",
                MetricType::kCounter);
  auto md_relists = NewFamily("podtap_metadata_relists_total",
                              "Lists of a Kubernetes resource after its first (410 Gone, decode "
                              "errors), by source and resource.",
                              MetricType::kCounter);
  auto md_restarts = NewFamily("podtap_metadata_watch_restarts_total",
                               "Watches resumed from their last resourceVersion (the stream ended "
                               "or broke), by source and resource.",
                               MetricType::kCounter);
  auto md_objects =
      NewFamily("podtap_metadata_objects",
                "Objects held from a metadata source, by source and resource.", MetricType::kGauge);
  for (const auto& [source, st] : self_.metadata_sources) {
    AddValue(&md_up, {{"source", source}}, st.up ? 1 : 0);
    for (const auto& [reason, n] : st.errors) {
      AddValue(&md_errors, {{"source", source}, {"reason", reason}}, static_cast<double>(n));
    }
    for (const auto& [resource, n] : st.relists) {
      AddValue(&md_relists, {{"source", source}, {"resource", resource}}, static_cast<double>(n));
    }
    for (const auto& [resource, n] : st.watch_restarts) {
      AddValue(&md_restarts, {{"source", source}, {"resource", resource}}, static_cast<double>(n));
    }
    for (const auto& [resource, n] : st.objects) {
      AddValue(&md_objects, {{"source", source}, {"resource", resource}}, static_cast<double>(n));
    }
  }
  for (auto* f : {&md_up, &md_errors, &md_relists, &md_restarts, &md_objects}) {
    snap.families.push_back(std::move(*f));
  }

  auto md_time = NewFamily("podtap_metadata_last_success_timestamp_seconds",
                           "Unix time of the last successful read of the pod metadata source.",
                           MetricType::kGauge, "seconds");
  AddValue(&md_time, {}, self_.metadata_last_success_unix);
  snap.families.push_back(std::move(md_time));

  auto reloads = NewFamily("podtap_config_reloads_total",
                           "SIGHUP re-reads of --config, by result (error: the previous config "
                           "stays).",
                           MetricType::kCounter);
  AddValue(&reloads, {{"result", "ok"}}, static_cast<double>(self_.config_reloads_ok));
  AddValue(&reloads, {{"result", "error"}}, static_cast<double>(self_.config_reloads_error));
  snap.families.push_back(std::move(reloads));

  auto build = NewFamily("podtap_build_info", "podtap version and the probe set attached.",
                         MetricType::kGauge);
  AddValue(&build,
           {{"version", PODTAP_VERSION},
            {"probe_mode", self_.probe_mode},
            {"payload_probes", self_.payload_probes}},
           1);
  snap.families.push_back(std::move(build));

  auto features = NewFamily("podtap_kernel_feature",
                            "Kernel features the probe loader checked at start (1 per feature, "
                            "state available or missing); podtap_build_info names the builds they "
                            "chose.",
                            MetricType::kGauge);
  for (const auto& [name, available] : self_.kernel_features) {
    AddValue(&features, {{"feature", name}, {"state", available ? "available" : "missing"}}, 1);
  }
  snap.families.push_back(std::move(features));
  return snap;
}

}  // namespace podtap
