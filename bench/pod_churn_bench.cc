// Benchmark (not a test): memory through pod churn. 10,000 pods come in waves
// of 1,000 (a pod list each), each is called by a pod that stays, calls one
// and is refused once, then goes; the pipeline, the aggregator and the query
// recorder run as in the agent (expiry, window ageing). Prints, before the
// churn, at the highest wave's end and after it (twice over), the label sets,
// endpoint pairs and series held, the heap in use and the RSS (also after
// malloc_trim); exits 1 when what is held after a churn differs from before
// it. See docs/benchmarks.md.
#include <malloc.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <string>

#include "tests/churn_node.h"

namespace podtap {
namespace {

struct Level {
  size_t label_sets = 0, endpoint_pairs = 0, series = 0;
  size_t heap = 0;  // bytes malloc has handed out and not had back
  size_t rss = 0;
  bool SameHeld(const Level& o) const {
    return label_sets == o.label_sets && endpoint_pairs == o.endpoint_pairs && series == o.series;
  }
};

size_t RssBytes() {
  std::ifstream statm("/proc/self/statm");
  size_t size = 0, resident = 0;
  statm >> size >> resident;
  return resident * static_cast<size_t>(sysconf(_SC_PAGESIZE));
}

Level LevelOf(const ChurnNode& node) {
  Level l;
  l.label_sets = node.agg.LabelSetCount();
  l.endpoint_pairs = node.rec.endpoints().size();
  for (auto g : {SeriesGroup::kTcp, SeriesGroup::kHttp, SeriesGroup::kRoute}) {
    l.series += node.agg.SeriesCount(g);
  }
  l.heap = mallinfo2().uordblks;
  l.rss = RssBytes();
  return l;
}

// One churn of ChurnNode::kPods; `peak` gets the highest level seen at a wave's end.
void Churn(ChurnNode* node, Level* peak) {
  for (int wave = 0; wave < ChurnNode::kPods / ChurnNode::kWave; wave++) {
    node->WaveComes();
    const Level l = LevelOf(*node);
    if (l.heap > peak->heap) *peak = l;
    node->WaveGoes();
  }
  node->now += ChurnNode::kPastWindow;
  node->Housekeeping();
}

void Print(const char* what, const Level& l) {
  std::printf("%-22s %10zu %14zu %8zu %12.1f %9.1f\n", what, l.label_sets, l.endpoint_pairs,
              l.series, static_cast<double>(l.heap) / 1024, static_cast<double>(l.rss) / 1048576);
}

int Run() {
  ChurnNode node;
  node.Settle();
  const Level before = LevelOf(node);
  std::printf("%d pods in waves of %d, twice over\n", ChurnNode::kPods, ChurnNode::kWave);
  std::printf("%-22s %10s %14s %8s %12s %9s\n", "", "label sets", "endpoint pairs", "series",
              "heap (KiB)", "RSS (MiB)");
  Print("before", before);
  bool ok = true;
  for (int round = 1; round <= 2; round++) {
    Level peak;
    Churn(&node, &peak);
    const Level after = LevelOf(node);
    const std::string n = std::to_string(round);
    Print(("churn " + n + ": wave's peak").c_str(), peak);
    Print(("churn " + n + ": after").c_str(), after);
    ok = ok && after.SameHeld(before);
    // What malloc keeps of the freed memory, and gives back when asked.
    malloc_trim(0);
    Print(("churn " + n + ": malloc_trim").c_str(), LevelOf(node));
  }
  if (node.unmatched() != 0) {
    std::printf("FAIL: %llu payload records for connections the pipeline did not know\n",
                static_cast<unsigned long long>(node.unmatched()));
    ok = false;
  }
  if (!ok) std::printf("FAIL: what is held after a churn differs from before it\n");
  return ok ? 0 : 1;
}

}  // namespace
}  // namespace podtap

int main() { return podtap::Run(); }
