// Tests the family declarations: valid and unique names and labels, every family a full
// collect exposes declared (name, type, help, unit, label names), and METRICS.md's contract.
#include "agent/metrics/metric_families.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <regex>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "agent/metrics/aggregator.h"
#include "agent/query/query_recorder.h"
#include "exporter/http_server.h"
#include "exporter/process_metrics.h"

namespace podtap {
namespace {

std::vector<const FamilyDef*> AllDefs() {
  std::vector<const FamilyDef*> all(linkerd::kAll.begin(), linkerd::kAll.end());
  all.insert(all.end(), self_metrics::kAll.begin(), self_metrics::kAll.end());
  all.insert(all.end(), process_metrics::kAll.begin(), process_metrics::kAll.end());
  return all;
}

const FamilyDef* FindDef(const std::string& name) {
  for (const FamilyDef* def : AllDefs()) {
    if (def->name == name) return def;
  }
  return nullptr;
}

TEST(MetricFamiliesTest, NamesAreValidAndUnique) {
  const std::regex metric_name("[a-zA-Z_:][a-zA-Z0-9_:]*");
  std::set<std::string_view> names;
  for (const FamilyDef* def : AllDefs()) {
    EXPECT_TRUE(std::regex_match(std::string(def->name), metric_name)) << def->name;
    EXPECT_TRUE(names.insert(def->name).second) << "declared twice: " << def->name;
    EXPECT_FALSE(def->help.empty()) << def->name;
    if (def->type == MetricType::kCounter) {
      EXPECT_TRUE(def->name.ends_with("_total")) << def->name;
    }
  }
}

TEST(MetricFamiliesTest, UnitsEndTheirNames) {
  for (const FamilyDef* def : AllDefs()) {
    if (def->unit.empty()) continue;
    std::string_view base = def->name;
    if (def->type == MetricType::kCounter) base.remove_suffix(std::string_view("_total").size());
    EXPECT_TRUE(base.ends_with("_" + std::string(def->unit))) << def->name;
  }
}

TEST(MetricFamiliesTest, LabelNamesAreValidAndNotRepeated) {
  const std::regex label_name("[a-zA-Z_][a-zA-Z0-9_]*");
  for (const FamilyDef* def : AllDefs()) {
    std::set<std::string_view> seen;
    for (std::string_view label : def->labels) {
      EXPECT_TRUE(std::regex_match(std::string(label), label_name)) << def->name << " " << label;
      EXPECT_FALSE(label.starts_with("__")) << def->name << " " << label;  // reserved
      EXPECT_TRUE(seen.insert(label).second) << def->name << " repeats " << label;
      if (def->type == MetricType::kHistogram) {
        EXPECT_NE(label, "le") << def->name;
      }
    }
  }
}

TEST(MetricFamiliesTest, NewFamilyCopiesTheDeclaration) {
  const MetricFamily f = NewFamily(linkerd::kResponseLatencyMs);
  EXPECT_EQ(f.name, "response_latency_ms");
  EXPECT_EQ(f.type, MetricType::kHistogram);
  EXPECT_EQ(f.help, linkerd::kResponseLatencyMs.help);
  EXPECT_EQ(f.unit, "ms");
  EXPECT_TRUE(f.samples.empty());
}

// The pod label sets the series below are keyed by.
const Labels kApi = {{"namespace", "shop"}, {"pod", "api-0"}, {"deployment", "api"}};
const Labels kWebToApi = {
    {"namespace", "shop"}, {"pod", "web-0"}, {"dst_namespace", "shop"}, {"dst_pod", "api-0"}};

// Every family the agent serves, with a series in each Linkerd family and every self family.
Snapshot FullCollect() {
  Aggregator agg({.max_series_per_family = 2});
  const auto api = agg.Intern(kApi);
  const auto web = agg.Intern(kWebToApi);
  // A connection to a Service: its TCP series name the Service (TcpPipeline).
  Labels to_service = kWebToApi;
  to_service.emplace_back(kLabelAuthority, "api.shop.svc.cluster.local:80");
  const auto web_tcp = agg.Intern(to_service);
  for (const auto& [http_id, tcp_id, d] :
       {std::tuple{api.id(), api.id(), Direction::kInbound},
        std::tuple{web.id(), web_tcp.id(), Direction::kOutbound}}) {
    TransportSeries* t = agg.Transport(tcp_id, d, false);
    t->open_total++;
    t->Close(Classification::kFailure, 104).duration_ms.Observe(3);
    t->errors[static_cast<size_t>(TcpError::kReset)]++;
    agg.Http(http_id, d, "api.shop:80")->CountResponse(200, 0, false, 12);
    agg.Route(http_id, d, "api.shop:80", "[DEFAULT]")->CountResponse(0, -1, true, 1);
  }
  agg.Http(api.id(), Direction::kInbound, "past-the-cap")->requests++;  // the overflow series
  SelfStats& st = agg.self();
  st.parse_errors[{"http1", "bad_header"}] = 1;
  st.given_up["http2"] = 1;
  MetadataSourceStatus& kube = st.metadata_sources["kubernetes"];
  kube.up = true;
  kube.errors["timeout"] = 1;
  kube.relists["pods"] = 1;
  kube.watch_restarts["pods"] = 1;
  kube.objects["pods"] = 3;
  st.kernel_features = {{"bpf_loop", true}};

  Snapshot s = agg.Collect();
  TapHub taps;
  QueryRecorder recorder(&taps);
  AppendQueryMetrics(recorder, taps, &s);
  const HttpServer server(
      "127.0.0.1:0", [] { return Snapshot(); }, [] { return std::string(); });
  server.AppendSelfMetrics(&s);
  for (MetricFamily& f : ProcessMetrics()) s.families.push_back(std::move(f));
  return s;
}

TEST(MetricFamiliesTest, EveryCollectedFamilyIsDeclaredAndUsesOnlyItsLabels) {
  // Pod labels come from the series' label sets, not from the family.
  std::set<std::string> pod_labels = {kLabelOverflow};
  for (const Labels* set : {&kApi, &kWebToApi}) {
    for (const auto& [name, value] : *set) pod_labels.insert(name);
  }
  const Snapshot s = FullCollect();
  std::set<std::string> collected;
  for (const MetricFamily& f : s.families) {
    EXPECT_TRUE(collected.insert(f.name).second) << "collected twice: " << f.name;
    const FamilyDef* def = FindDef(f.name);
    ASSERT_NE(def, nullptr) << "not declared: " << f.name;
    EXPECT_EQ(f.type, def->type) << f.name;
    EXPECT_EQ(f.help, def->help) << f.name;
    EXPECT_EQ(f.unit, def->unit) << f.name;
    for (const Sample& sample : f.samples) {
      // The family's own labels come in their declared order, pod labels among them.
      auto next = def->labels.begin();
      for (const auto& [name, value] : sample.labels) {
        const auto declared = std::find(next, def->labels.end(), name);
        if (declared != def->labels.end()) {
          next = declared + 1;
        } else {
          EXPECT_TRUE(pod_labels.contains(name))
              << f.name << ": label " << name << " undeclared or out of order";
        }
      }
    }
  }
  // The process_* families depend on /proc; the others are always there.
  for (const FamilyDef* def : AllDefs()) {
    if (def->name.starts_with("process_")) continue;
    EXPECT_TRUE(collected.contains(std::string(def->name))) << "not collected: " << def->name;
  }
}

// METRICS.md: the families Linkerd's tools query, with their types and the labels beyond the
// common ones (direction is common to all of them).
TEST(MetricFamiliesTest, MetricsContractFamiliesExist) {
  struct Contract {
    std::string_view name;
    MetricType type;
    std::vector<std::string_view> labels;
  };
  const std::vector<Contract> contract = {
      {"request_total", MetricType::kCounter, {"authority", "tls"}},
      {"response_total",
       MetricType::kCounter,
       {"authority", "tls", "status_code", "classification", "grpc_status_code"}},
      {"response_latency_ms", MetricType::kHistogram, {"authority", "tls", "status_code"}},
      {"route_request_total", MetricType::kCounter, {"dst", "rt_route"}},
      {"route_response_total",
       MetricType::kCounter,
       {"dst", "rt_route", "status_code", "classification", "grpc_status_code"}},
      {"route_response_latency_ms", MetricType::kHistogram, {"dst", "rt_route", "status_code"}},
      {"tcp_open_total", MetricType::kCounter, {"peer"}},
      {"tcp_close_total", MetricType::kCounter, {"peer", "classification"}},
      {"tcp_open_connections", MetricType::kGauge, {"peer"}},
      {"tcp_read_bytes_total", MetricType::kCounter, {"peer"}},
      {"tcp_write_bytes_total", MetricType::kCounter, {"peer"}},
      {"tcp_connection_duration_ms", MetricType::kHistogram, {"peer", "classification"}},
      {"inbound_tcp_errors_total", MetricType::kCounter, {"error"}},
      {"outbound_tcp_errors_total", MetricType::kCounter, {"error"}},
  };
  for (const Contract& c : contract) {
    const FamilyDef* def = FindDef(std::string(c.name));
    ASSERT_NE(def, nullptr) << c.name;
    EXPECT_EQ(def->type, c.type) << c.name;
    for (std::string_view label : c.labels) {
      EXPECT_NE(std::find(def->labels.begin(), def->labels.end(), label), def->labels.end())
          << c.name << " lacks " << label;
    }
    EXPECT_NE(std::find(def->labels.begin(), def->labels.end(), kLabelDirection), def->labels.end())
        << c.name;
  }
}

}  // namespace
}  // namespace podtap
