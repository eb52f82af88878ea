// Merging agents' answers (cli/merge.h).
#include "cli/merge.h"

#include <algorithm>
#include <map>
#include <tuple>

#include "agent/query/latency_histogram.h"

namespace podtap {
namespace {

namespace pb = ::podtap::v1;

LatencyHistogram FromProto(const pb::LatencyHistogram& h) {
  LatencyHistogram out;
  for (int i = 0; i < h.bucket_size(); i++) out.Add(h.bucket(i), h.count(i));
  return out;
}

void ToProto(const LatencyHistogram& h, pb::LatencyHistogram* out) {
  out->Clear();
  for (const auto& [bucket, n] : h.buckets()) {
    out->add_bucket(bucket);
    out->add_count(n);
  }
}

using EndpointKey =
    std::tuple<std::string, std::string, std::string, std::string, std::string, bool>;

EndpointKey KeyOf(const pb::Endpoint& e) {
  return {e.namespace_(), e.pod(), e.workload_kind(), e.workload(), e.address(), e.host()};
}

double Rate(uint64_t part, uint64_t whole) {
  return whole == 0 ? 0 : static_cast<double>(part) / static_cast<double>(whole);
}

}  // namespace

bool CheckHistogram(const pb::LatencyHistogram& h, std::string* error) {
  if (h.bucket_size() != h.count_size()) {
    *error = "a latency histogram with " + std::to_string(h.bucket_size()) + " buckets but " +
             std::to_string(h.count_size()) + " counts";
    return false;
  }
  for (uint32_t b : h.bucket()) {
    if (b >= LatencyHistogram::kBuckets) {
      *error = "a latency bucket past the last one: " + std::to_string(b);
      return false;
    }
  }
  return true;
}

bool CheckValid(const pb::StatResponse& r, std::string* error) {
  return std::all_of(r.rows().begin(), r.rows().end(),
                     [&](const pb::StatRow& row) { return CheckHistogram(row.latency(), error); });
}

bool CheckValid(const pb::TopResponse& r, std::string* error) {
  return std::all_of(r.rows().begin(), r.rows().end(),
                     [&](const pb::TopRow& row) { return CheckHistogram(row.latency(), error); });
}

bool CheckValid(const pb::EdgesResponse& r, std::string* error) {
  return std::all_of(r.edges().begin(), r.edges().end(),
                     [&](const pb::Edge& e) { return CheckHistogram(e.latency(), error); });
}

bool CheckValid(const pb::ConnsResponse&, std::string*) { return true; }

pb::StatResponse MergeStat(const std::vector<pb::StatResponse>& in) {
  struct Acc {
    pb::StatRow row;
    LatencyHistogram latency;
  };
  std::map<std::pair<EndpointKey, int>, Acc> rows;
  pb::StatResponse out;
  for (const pb::StatResponse& r : in) {
    out.set_window_seconds(std::max(out.window_seconds(), r.window_seconds()));
    for (const pb::StatRow& row : r.rows()) {
      auto [it, fresh] = rows.try_emplace({KeyOf(row.resource()), row.direction()});
      pb::StatRow& o = it->second.row;
      if (fresh) {
        *o.mutable_resource() = row.resource();
        o.set_direction(row.direction());
      }
      o.set_requests(o.requests() + row.requests());
      o.set_successes(o.successes() + row.successes());
      o.set_rps(o.rps() + row.rps());
      o.set_tcp_open_connections(o.tcp_open_connections() + row.tcp_open_connections());
      o.set_read_bytes(o.read_bytes() + row.read_bytes());
      o.set_write_bytes(o.write_bytes() + row.write_bytes());
      it->second.latency.Merge(FromProto(row.latency()));
    }
  }
  for (auto& [key, a] : rows) {
    pb::StatRow* r = out.add_rows();
    *r = std::move(a.row);
    r->set_success_rate(Rate(r->successes(), r->requests()));
    r->set_latency_p50_ms(a.latency.QuantileMs(0.5));
    r->set_latency_p95_ms(a.latency.QuantileMs(0.95));
    r->set_latency_p99_ms(a.latency.QuantileMs(0.99));
    ToProto(a.latency, r->mutable_latency());
  }
  return out;
}

pb::TopResponse MergeTop(const std::vector<pb::TopResponse>& in, const std::string& sort,
                         uint32_t limit) {
  struct Acc {
    pb::TopRow row;
    LatencyHistogram latency;
  };
  std::map<std::tuple<int, std::string, std::string>, Acc> rows;
  pb::TopResponse out;
  for (const pb::TopResponse& r : in) {
    out.set_window_seconds(std::max(out.window_seconds(), r.window_seconds()));
    out.set_dropped(out.dropped() + r.dropped());
    for (const pb::TopRow& row : r.rows()) {
      auto [it, fresh] = rows.try_emplace({row.direction(), row.method(), row.key()});
      pb::TopRow& o = it->second.row;
      if (fresh) {
        o.set_direction(row.direction());
        o.set_method(row.method());
        o.set_key(row.key());
      }
      o.set_requests(o.requests() + row.requests());
      o.set_failures(o.failures() + row.failures());
      it->second.latency.Merge(FromProto(row.latency()));
    }
  }
  std::vector<Acc*> sorted;
  for (auto& [key, a] : rows) sorted.push_back(&a);
  bool by_failures = sort == "failures";
  std::stable_sort(sorted.begin(), sorted.end(), [by_failures](const Acc* a, const Acc* b) {
    if (by_failures && a->row.failures() != b->row.failures()) {
      return a->row.failures() > b->row.failures();
    }
    return a->row.requests() > b->row.requests();
  });
  for (size_t i = 0; i < sorted.size() && i < limit; i++) {
    pb::TopRow* r = out.add_rows();
    *r = std::move(sorted[i]->row);
    r->set_success_rate(Rate(r->requests() - r->failures(), r->requests()));
    r->set_latency_p50_ms(sorted[i]->latency.QuantileMs(0.5));
    r->set_latency_p99_ms(sorted[i]->latency.QuantileMs(0.99));
    ToProto(sorted[i]->latency, r->mutable_latency());
  }
  return out;
}

pb::EdgesResponse MergeEdges(const std::vector<pb::EdgesResponse>& in) {
  struct Acc {
    pb::Edge edge;
    LatencyHistogram latency;
  };
  // (source, destination) -> the views from each side
  std::map<std::pair<EndpointKey, EndpointKey>, std::map<int, Acc>> edges;
  pb::EdgesResponse out;
  for (const pb::EdgesResponse& r : in) {
    out.set_window_seconds(std::max(out.window_seconds(), r.window_seconds()));
    for (const pb::Edge& e : r.edges()) {
      auto [it, fresh] =
          edges[{KeyOf(e.source()), KeyOf(e.destination())}].try_emplace(e.observed());
      pb::Edge& o = it->second.edge;
      if (fresh) {
        *o.mutable_source() = e.source();
        *o.mutable_destination() = e.destination();
        o.set_observed(e.observed());
      }
      o.set_requests(o.requests() + e.requests());
      o.set_successes(o.successes() + e.successes());
      o.set_tcp_open_connections(o.tcp_open_connections() + e.tcp_open_connections());
      o.set_bytes(o.bytes() + e.bytes());
      it->second.latency.Merge(FromProto(e.latency()));
    }
  }
  for (auto& [key, views] : edges) {
    auto client = views.find(pb::OUTBOUND);
    Acc& a = client != views.end() ? client->second : views.begin()->second;
    pb::Edge* e = out.add_edges();
    *e = std::move(a.edge);
    e->set_success_rate(Rate(e->successes(), e->requests()));
    e->set_latency_p50_ms(a.latency.QuantileMs(0.5));
    e->set_latency_p95_ms(a.latency.QuantileMs(0.95));
    e->set_latency_p99_ms(a.latency.QuantileMs(0.99));
    ToProto(a.latency, e->mutable_latency());
  }
  return out;
}

pb::ConnsResponse MergeConns(const std::vector<pb::ConnsResponse>& in, uint32_t limit) {
  std::vector<const pb::Conn*> all;
  pb::ConnsResponse out;
  for (const pb::ConnsResponse& r : in) {
    out.set_total(out.total() + r.total());
    for (const pb::Conn& c : r.conns()) all.push_back(&c);
  }
  std::stable_sort(all.begin(), all.end(), [](const pb::Conn* a, const pb::Conn* b) {
    return a->age_seconds() > b->age_seconds();
  });
  for (size_t i = 0; i < all.size() && i < limit; i++) *out.add_conns() = *all[i];
  return out;
}

}  // namespace podtap
