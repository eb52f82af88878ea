// Aggregated transport metrics and their conversion to the snapshot writers read.
#include "agent/aggregator.h"

#include <algorithm>

namespace podtap {

void Histogram::Observe(double v) {
  auto it = std::lower_bound(kLatencyBoundsMs.begin(), kLatencyBoundsMs.end(), v);
  buckets_[static_cast<size_t>(it - kLatencyBoundsMs.begin())]++;
  sum_ += v;
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

Aggregator::LabelSetId Aggregator::Intern(const Labels& labels) {
  auto [it, inserted] = ids_.try_emplace(labels, static_cast<LabelSetId>(label_sets_.size()));
  if (inserted) label_sets_.push_back(labels);
  return it->second;
}

TransportSeries* Aggregator::Transport(LabelSetId id, Direction direction) {
  auto& slot = transport_[Key{id, direction}];
  if (!slot) slot = std::make_unique<TransportSeries>();
  return slot.get();
}

namespace {

const char* ClassificationName(size_t c) { return c == 0 ? "success" : "failure"; }

MetricFamily Family(const char* name, const char* help, MetricType type) {
  MetricFamily f;
  f.name = name;
  f.help = help;
  f.type = type;
  return f;
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

}  // namespace

Snapshot Aggregator::Collect() const {
  auto open_total = Family("tcp_open_total", "Total count of opened connections.",
                           MetricType::kCounter);
  auto close_total = Family("tcp_close_total", "Total count of closed connections.",
                            MetricType::kCounter);
  auto open_now = Family("tcp_open_connections", "Number of currently-open connections.",
                         MetricType::kGauge);
  auto read_bytes = Family("tcp_read_bytes_total",
                           "Total count of payload bytes read from peers (live and closed "
                           "connections).",
                           MetricType::kCounter);
  auto write_bytes = Family("tcp_write_bytes_total",
                            "Total count of payload bytes written to peers (live and closed "
                            "connections).",
                            MetricType::kCounter);
  auto duration = Family("tcp_connection_duration_ms", "Connection lifetimes in milliseconds.",
                         MetricType::kHistogram);
  std::array<MetricFamily, kDirectionCount> errors = {
      Family("outbound_tcp_errors_total", "Total count of outbound TCP connection failures.",
             MetricType::kCounter),
      Family("inbound_tcp_errors_total", "Total count of inbound TCP connection failures.",
             MetricType::kCounter)};

  for (const auto& [key, s] : transport_) {
    const Labels& base = label_sets_[key.id];
    Labels dir = {{"direction", DirectionName(key.direction)}, {"peer", PeerName(key.direction)}};
    Labels with_peer = With(dir, base);
    AddValue(&open_total, with_peer, static_cast<double>(s->open_total));
    AddValue(&open_now, with_peer, static_cast<double>(s->open_now));
    AddValue(&read_bytes, with_peer, static_cast<double>(s->read_bytes));
    AddValue(&write_bytes, with_peer, static_cast<double>(s->write_bytes));
    for (size_t c = 0; c < 2; c++) {
      if (s->close_total[c] == 0) continue;
      Labels l = With(with_peer, {{"classification", ClassificationName(c)}});
      AddValue(&close_total, l, static_cast<double>(s->close_total[c]));
      Sample h;
      h.labels = std::move(l);
      h.histogram = s->duration_ms[c].ToData();
      duration.samples.push_back(std::move(h));
    }
    for (size_t e = 0; e < kTcpErrorCount; e++) {
      if (s->errors[e] == 0) continue;
      Labels l = With({{"direction", DirectionName(key.direction)}}, base);
      l.emplace_back("error", TcpErrorName(static_cast<TcpError>(e)));
      AddValue(&errors[static_cast<size_t>(key.direction)], l, static_cast<double>(s->errors[e]));
    }
  }

  Snapshot snap;
  for (auto* f : {&open_total, &close_total, &open_now, &read_bytes, &write_bytes, &duration,
                  &errors[0], &errors[1]}) {
    snap.families.push_back(std::move(*f));
  }

  auto lost = Family("podtap_events_lost_total",
                     "Events the kernel could not hand to the agent, by reason.",
                     MetricType::kCounter);
  AddValue(&lost, {{"reason", "ringbuf_full"}}, static_cast<double>(self_.events_lost_ringbuf));
  AddValue(&lost, {{"reason", "decode_error"}}, static_cast<double>(self_.decode_errors));
  snap.families.push_back(std::move(lost));

  auto untracked = Family("podtap_connections_untracked_total",
                          "Connections not counted, by reason: the connection table was full, "
                          "or the socket was opened before the probes were attached.",
                          MetricType::kCounter);
  AddValue(&untracked, {{"reason", "table_full"}}, static_cast<double>(self_.conn_table_full));
  AddValue(&untracked, {{"reason", "opened_before_start"}},
           static_cast<double>(self_.closes_without_open));
  snap.families.push_back(std::move(untracked));

  auto sockmap = Family("podtap_kernel_socket_map_full_total",
                        "Opens the kernel could not remember because its socket map was full "
                        "(the agent's own table still counts them if their open event arrived).",
                        MetricType::kCounter);
  AddValue(&sockmap, {}, static_cast<double>(self_.kernel_sockmap_full));
  snap.families.push_back(std::move(sockmap));

  auto tracked = Family("podtap_connections_tracked", "Open connections the agent tracks now.",
                        MetricType::kGauge);
  AddValue(&tracked, {}, static_cast<double>(self_.connections_tracked));
  snap.families.push_back(std::move(tracked));

  auto pods = Family("podtap_metadata_pods", "Pods known to the metadata source.",
                     MetricType::kGauge);
  AddValue(&pods, {}, static_cast<double>(self_.pods_known));
  snap.families.push_back(std::move(pods));

  auto md_errors = Family("podtap_metadata_errors_total",
                          "Failed reads of the pod metadata source (the last good list is kept).",
                          MetricType::kCounter);
  AddValue(&md_errors, {}, static_cast<double>(self_.metadata_errors));
  snap.families.push_back(std::move(md_errors));

  auto md_time = Family("podtap_metadata_last_success_timestamp_seconds",
                        "Unix time of the last successful read of the pod metadata source.",
                        MetricType::kGauge);
  AddValue(&md_time, {}, self_.metadata_last_success_unix);
  snap.families.push_back(std::move(md_time));

  auto build = Family("podtap_build_info", "podtap version and the probe set attached.",
                      MetricType::kGauge);
  AddValue(&build, {{"version", PODTAP_VERSION}, {"probe_mode", self_.probe_mode}}, 1);
  snap.families.push_back(std::move(build));
  return snap;
}

}  // namespace podtap
