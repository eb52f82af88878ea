// Benchmark (not a test): builds 100k series in the aggregator with
// Linkerd-shaped label sets and times Collect(), the text and OpenMetrics
// writers, gzip of the text, JSON and InfluxDB line protocol; prints time
// (best and median of the runs) and bytes per step. See docs/benchmarks.md.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>
#include <vector>

#include "agent/metrics/aggregator.h"
#include "exporter/gzip.h"
#include "exporter/influx_format.h"
#include "exporter/json_format.h"
#include "exporter/text_format.h"

namespace {

using podtap::Aggregator;
using podtap::Direction;
using podtap::Labels;

// 100 pods x 1000 authorities = 100k request_total series (and as many
// response_total series and latency histograms, the largest families).
void Fill(Aggregator* agg, int pods, int authorities) {
  for (int p = 0; p < pods; p++) {
    const std::string hash = "5f7c9d8b" + std::to_string(p % 10);
    const Labels labels = {{"namespace", "shop"},
                           {"pod", "api-" + hash + "-x" + std::to_string(p)},
                           {"pod_template_hash", hash},
                           {"replicaset", "api-" + hash},
                           {"deployment", "api"}};
    const auto held = agg->Intern(labels);
    const auto id = held.id();
    for (int a = 0; a < authorities; a++) {
      podtap::HttpSeries* s = agg->Http(
          id, Direction::kInbound, "svc-" + std::to_string(a) + ".shop.svc.cluster.local:8080");
      s->requests += 1000 + static_cast<uint64_t>(a);
    }
  }
}

struct Timing {
  double best_ms;
  double median_ms;
};

Timing Time(int runs, const std::function<void()>& f) {
  std::vector<double> ms;
  for (int i = 0; i < runs; i++) {
    const auto t0 = std::chrono::steady_clock::now();
    f();
    ms.push_back(
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(ms.begin(), ms.end());
  return {ms.front(), ms[ms.size() / 2]};
}

void Row(const char* what, Timing t, size_t bytes) {
  std::printf("%-28s %10.1f %10.1f %14zu\n", what, t.best_ms, t.median_ms, bytes);
}

}  // namespace

int main(int argc, char** argv) {
  const int runs = argc > 1 ? std::atoi(argv[1]) : 7;
  Aggregator agg({.max_series_per_family = 1 << 20});
  Fill(&agg, 100, 1000);
  podtap::Snapshot snap;
  const Timing collect = Time(runs, [&] { snap = agg.Collect(); });
  size_t series = 0;
  for (const auto& f : snap.families) {
    if (f.name == "request_total") series = f.samples.size();
  }
  std::printf("%zu request_total series (%d runs)\n", series, runs);
  std::printf("%-28s %10s %10s %14s\n", "step", "best ms", "median ms", "bytes");
  Row("Collect()", collect, 0);

  // Each step's output is kept so its size can be printed after timing it.
  std::string out;
  auto step = [&](const char* what, const std::function<std::string()>& f) {
    const Timing t = Time(runs, [&] { out = f(); });
    Row(what, t, out.size());
  };
  step("text format 0.0.4", [&] { return podtap::WriteTextFormat(snap); });
  const std::string text = out;
  step("OpenMetrics 1.0", [&] { return podtap::WriteOpenMetrics(snap); });
  step("gzip of the text", [&] { return podtap::Gzip(text); });
  step("text + gzip", [&] { return podtap::Gzip(podtap::WriteTextFormat(snap)); });
  step("JSON", [&] { return podtap::WriteJson(snap, false); });
  step("InfluxDB line protocol",
       [&] { return podtap::WriteInfluxLineProtocol(snap, 1700000000000000000); });
  return 0;
}
