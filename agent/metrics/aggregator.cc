// Aggregated transport metrics and their conversion to the snapshot writers read.
#include "agent/metrics/aggregator.h"

#include <algorithm>
#include <cmath>

#include "agent/metrics/metric_families.h"

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
    : opts_(opts), overflow_(Intern({{kLabelOverflow, "true"}})), overflow_id_(overflow_.id()) {}

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
    l.emplace_back(kLabelStatusCode, status_label(status));
    l.emplace_back(kLabelClassification, failed ? "failure" : "success");
    if (grpc_status >= 0) l.emplace_back(kLabelGrpcStatusCode, std::to_string(grpc_status));
    AddValue(responses, l, static_cast<double>(n));
  }
  for (const auto& [status, h] : s.latency_ms) {
    Sample sample;
    sample.labels = labels;
    sample.labels.emplace_back(kLabelStatusCode, status_label(status));
    sample.histogram = h.ToData();
    latency->samples.push_back(std::move(sample));
  }
}

}  // namespace

Snapshot Aggregator::Collect() const {
  auto open_total = NewFamily(linkerd::kTcpOpenTotal);
  auto close_total = NewFamily(linkerd::kTcpCloseTotal);
  auto open_now = NewFamily(linkerd::kTcpOpenConnections);
  auto read_bytes = NewFamily(linkerd::kTcpReadBytesTotal);
  auto write_bytes = NewFamily(linkerd::kTcpWriteBytesTotal);
  auto duration = NewFamily(linkerd::kTcpConnectionDurationMs);
  std::array<MetricFamily, kDirectionCount> errors = {NewFamily(linkerd::kOutboundTcpErrorsTotal),
                                                      NewFamily(linkerd::kInboundTcpErrorsTotal)};

  for (const auto& [tkey, entry] : transport_) {
    const auto& [key, tls] = tkey;
    const TransportSeries* s = &entry.series;
    entry.idle.activity_at_collect = Activity(*s);
    const Labels& base = label_sets_.Get(key.id);
    Labels dir = {{kLabelDirection, DirectionName(key.direction)},
                  {kLabelPeer, PeerName(key.direction)},
                  {kLabelTls, tls ? "true" : "false"}};
    Labels with_peer = With(dir, base);
    AddValue(&open_total, with_peer, static_cast<double>(s->open_total));
    AddValue(&open_now, with_peer, static_cast<double>(s->open_now));
    AddValue(&read_bytes, with_peer, static_cast<double>(s->read_bytes));
    AddValue(&write_bytes, with_peer, static_cast<double>(s->write_bytes));
    for (const CloseClass& c : s->closes) {
      Labels l = With(with_peer, {{kLabelClassification, ClassificationName(c.classification)},
                                  {kLabelErrno, ErrnoName(c.err)}});
      AddValue(&close_total, l, static_cast<double>(c.total));
      Sample h;
      h.labels = std::move(l);
      h.histogram = c.duration_ms.ToData();
      duration.samples.push_back(std::move(h));
    }
    for (size_t e = 0; e < kTcpErrorCount; e++) {
      if (s->errors[e] == 0) continue;
      Labels l = With(
          {{kLabelDirection, DirectionName(key.direction)}, {kLabelTls, tls ? "true" : "false"}},
          base);
      l.emplace_back(kLabelError, TcpErrorName(static_cast<TcpError>(e)));
      AddValue(&errors[static_cast<size_t>(key.direction)], l, static_cast<double>(s->errors[e]));
    }
  }

  auto requests = NewFamily(linkerd::kRequestTotal);
  auto responses = NewFamily(linkerd::kResponseTotal);
  auto latency = NewFamily(linkerd::kResponseLatencyMs);
  for (const auto& [key, entry] : http_) {
    const auto& [tkey, authority, tls] = key;
    const HttpSeries* s = &entry.series;
    entry.idle.activity_at_collect = Activity(*s);
    Labels head = {{kLabelDirection, DirectionName(tkey.direction)},
                   {kLabelAuthority, authority},
                   {kLabelTls, tls ? "true" : "false"}};
    AddHttp(*s, With(head, label_sets_.Get(tkey.id)), &requests, &responses, &latency);
  }
  auto route_requests = NewFamily(linkerd::kRouteRequestTotal);
  auto route_responses = NewFamily(linkerd::kRouteResponseTotal);
  auto route_latency = NewFamily(linkerd::kRouteResponseLatencyMs);
  for (const auto& [key, entry] : routes_) {
    const auto& [tkey, dst, route] = key;
    const HttpSeries* s = &entry.series;
    entry.idle.activity_at_collect = Activity(*s);
    Labels head = {
        {kLabelDirection, DirectionName(tkey.direction)}, {kLabelDst, dst}, {kLabelRoute, route}};
    AddHttp(*s, With(head, label_sets_.Get(tkey.id)), &route_requests, &route_responses,
            &route_latency);
  }

  Snapshot snap;
  auto series = NewFamily(self_metrics::kSeries);
  for (auto* f : {&requests, &responses, &latency, &route_requests, &route_responses,
                  &route_latency, &open_total, &close_total, &open_now, &read_bytes, &write_bytes,
                  &duration, &errors[0], &errors[1]}) {
    AddValue(&series, {{kLabelFamily, f->name}}, static_cast<double>(f->samples.size()));
    snap.families.push_back(std::move(*f));
  }
  snap.families.push_back(std::move(series));

  auto label_sets = NewFamily(self_metrics::kLabelSets);
  AddValue(&label_sets, {}, static_cast<double>(label_sets_.size()));
  snap.families.push_back(std::move(label_sets));

  auto dropped = NewFamily(self_metrics::kSeriesDroppedTotal);
  for (size_t g = 0; g < kSeriesGroupCount; g++) {
    AddValue(&dropped, {{kLabelFamily, SeriesGroupName(static_cast<SeriesGroup>(g))}},
             static_cast<double>(dropped_[g]));
  }
  snap.families.push_back(std::move(dropped));

  auto lost = NewFamily(self_metrics::kEventsLostTotal);
  AddValue(&lost, {{kLabelReason, "ringbuf_full"}}, static_cast<double>(self_.events_lost_ringbuf));
  AddValue(&lost, {{kLabelReason, "decode_error"}}, static_cast<double>(self_.decode_errors));
  AddValue(&lost, {{kLabelReason, "payload_ringbuf_full"}},
           static_cast<double>(self_.payload_lost_ringbuf));
  AddValue(&lost, {{kLabelReason, "syscall_map_full"}},
           static_cast<double>(self_.payload_lost_args));
  AddValue(&lost, {{kLabelReason, "h2_capture_full"}}, static_cast<double>(self_.h2_capture_full));
  AddValue(&lost, {{kLabelReason, "h2_walk_lost"}}, static_cast<double>(self_.h2_walk_lost));
  AddValue(&lost, {{kLabelReason, "h2_walk_out_of_order"}},
           static_cast<double>(self_.h2_walk_out_of_order));
  AddValue(&lost, {{kLabelReason, "tls_unmapped"}}, static_cast<double>(self_.tls_unmapped));
  AddValue(&lost, {{kLabelReason, "payload_unmatched"}},
           static_cast<double>(self_.payload_unmatched));
  AddValue(&lost, {{kLabelReason, "close_map_full"}}, static_cast<double>(self_.close_map_full));
  AddValue(&lost, {{kLabelReason, "exec_map_full"}}, static_cast<double>(self_.exec_map_full));
  AddValue(&lost, {{kLabelReason, "program_nested"}}, static_cast<double>(self_.program_nested));
  snap.families.push_back(std::move(lost));

  auto recovered = NewFamily(self_metrics::kEventsRecoveredTotal);
  AddValue(&recovered, {{kLabelKind, "open"}}, static_cast<double>(self_.opens_recovered));
  AddValue(&recovered, {{kLabelKind, "close"}}, static_cast<double>(self_.closes_recovered));
  AddValue(&recovered, {{kLabelKind, "connect_fail"}},
           static_cast<double>(self_.connect_fails_recovered));
  snap.families.push_back(std::move(recovered));

  auto payload = NewFamily(self_metrics::kPayloadEventsTotal);
  AddValue(&payload, {}, static_cast<double>(self_.payload_events));
  snap.families.push_back(std::move(payload));

  auto parse_errors = NewFamily(self_metrics::kParseErrorsTotal);
  for (const auto& [key, n] : self_.parse_errors) {
    AddValue(&parse_errors, {{kLabelProtocol, key.first}, {kLabelError, key.second}},
             static_cast<double>(n));
  }
  snap.families.push_back(std::move(parse_errors));

  auto given_up = NewFamily(self_metrics::kConnectionsGivenUpTotal);
  for (const char* protocol : {"http1", "http2"}) {
    auto it = self_.given_up.find(protocol);
    AddValue(&given_up, {{kLabelProtocol, protocol}},
             static_cast<double>(it == self_.given_up.end() ? 0 : it->second));
  }
  snap.families.push_back(std::move(given_up));

  auto unanswered = NewFamily(self_metrics::kHttpRequestsUnansweredTotal);
  AddValue(&unanswered, {{kLabelProtocol, "http1"}}, static_cast<double>(self_.http1_unanswered));
  AddValue(&unanswered, {{kLabelProtocol, "http2"}}, static_cast<double>(self_.http2_unanswered));
  snap.families.push_back(std::move(unanswered));

  auto budget = NewFamily(self_metrics::kCpuBudgetCores);
  AddValue(&budget, {}, self_.cpu_budget_cores);
  snap.families.push_back(std::move(budget));
  auto shed = NewFamily(self_metrics::kHttpShedConnectionsTotal);
  AddValue(&shed, {}, static_cast<double>(self_.shed_connections));
  snap.families.push_back(std::move(shed));
  auto shed_records = NewFamily(self_metrics::kHttpShedRecordsTotal);
  AddValue(&shed_records, {}, static_cast<double>(self_.shed_records));
  snap.families.push_back(std::move(shed_records));

  auto untracked = NewFamily(self_metrics::kConnectionsUntrackedTotal);
  AddValue(&untracked, {{kLabelReason, "table_full"}}, static_cast<double>(self_.conn_table_full));
  AddValue(&untracked, {{kLabelReason, "opened_before_start"}},
           static_cast<double>(self_.closes_without_open));
  snap.families.push_back(std::move(untracked));

  auto adopted = NewFamily(self_metrics::kConnectionsAdoptedTotal);
  AddValue(&adopted, {}, static_cast<double>(self_.connections_adopted));
  snap.families.push_back(std::move(adopted));

  auto sockmap = NewFamily(self_metrics::kKernelSocketMapFullTotal);
  AddValue(&sockmap, {}, static_cast<double>(self_.kernel_sockmap_full));
  snap.families.push_back(std::move(sockmap));

  auto tls_libs = NewFamily(self_metrics::kTlsLibraries);
  AddValue(&tls_libs, {{kLabelState, "attached"}}, static_cast<double>(self_.tls_libraries));
  AddValue(&tls_libs, {{kLabelState, "failed"}}, static_cast<double>(self_.tls_attach_errors));
  AddValue(&tls_libs, {{kLabelState, "without_openssl"}},
           static_cast<double>(self_.tls_without_openssl));
  AddValue(&tls_libs, {{kLabelState, "go"}}, static_cast<double>(self_.tls_go_attached));
  AddValue(&tls_libs, {{kLabelState, "go_not_covered"}},
           static_cast<double>(self_.tls_go_not_covered));
  AddValue(&tls_libs, {{kLabelState, "unreadable"}}, static_cast<double>(self_.tls_unreadable));
  snap.families.push_back(std::move(tls_libs));

  auto tracked = NewFamily(self_metrics::kConnectionsTracked);
  AddValue(&tracked, {}, static_cast<double>(self_.connections_tracked));
  snap.families.push_back(std::move(tracked));

  auto max_tracked = NewFamily(self_metrics::kConnectionsMax);
  AddValue(&max_tracked, {}, static_cast<double>(self_.connections_max));
  snap.families.push_back(std::move(max_tracked));

  auto pods = NewFamily(self_metrics::kMetadataPods);
  AddValue(&pods, {}, static_cast<double>(self_.pods_known));
  snap.families.push_back(std::move(pods));

  auto md_up = NewFamily(self_metrics::kMetadataSourceUp);
  auto md_errors = NewFamily(self_metrics::kMetadataErrorsTotal);
  auto md_relists = NewFamily(self_metrics::kMetadataRelistsTotal);
  auto md_restarts = NewFamily(self_metrics::kMetadataWatchRestartsTotal);
  auto md_objects = NewFamily(self_metrics::kMetadataObjects);
  for (const auto& [source, st] : self_.metadata_sources) {
    AddValue(&md_up, {{kLabelSource, source}}, st.up ? 1 : 0);
    for (const auto& [reason, n] : st.errors) {
      AddValue(&md_errors, {{kLabelSource, source}, {kLabelReason, reason}},
               static_cast<double>(n));
    }
    for (const auto& [resource, n] : st.relists) {
      AddValue(&md_relists, {{kLabelSource, source}, {kLabelResource, resource}},
               static_cast<double>(n));
    }
    for (const auto& [resource, n] : st.watch_restarts) {
      AddValue(&md_restarts, {{kLabelSource, source}, {kLabelResource, resource}},
               static_cast<double>(n));
    }
    for (const auto& [resource, n] : st.objects) {
      AddValue(&md_objects, {{kLabelSource, source}, {kLabelResource, resource}},
               static_cast<double>(n));
    }
  }
  for (auto* f : {&md_up, &md_errors, &md_relists, &md_restarts, &md_objects}) {
    snap.families.push_back(std::move(*f));
  }

  auto md_time = NewFamily(self_metrics::kMetadataLastSuccessTimestampSeconds);
  AddValue(&md_time, {}, self_.metadata_last_success_unix);
  snap.families.push_back(std::move(md_time));

  auto reloads = NewFamily(self_metrics::kConfigReloadsTotal);
  AddValue(&reloads, {{kLabelResult, "ok"}}, static_cast<double>(self_.config_reloads_ok));
  AddValue(&reloads, {{kLabelResult, "error"}}, static_cast<double>(self_.config_reloads_error));
  snap.families.push_back(std::move(reloads));

  auto build = NewFamily(self_metrics::kBuildInfo);
  AddValue(&build,
           {{kLabelVersion, PODTAP_VERSION},
            {kLabelProbeMode, self_.probe_mode},
            {kLabelPayloadProbes, self_.payload_probes},
            {kLabelSyscallHook, self_.syscall_hook}},
           1);
  snap.families.push_back(std::move(build));

  auto features = NewFamily(self_metrics::kKernelFeature);
  for (const auto& [name, available] : self_.kernel_features) {
    AddValue(&features, {{kLabelFeature, name}, {kLabelState, available ? "available" : "missing"}},
             1);
  }
  snap.families.push_back(std::move(features));
  return snap;
}

}  // namespace podtap
