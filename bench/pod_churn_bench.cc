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

#include <array>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <memory>
#include <string>

#include "agent/aggregator.h"
#include "agent/query_recorder.h"
#include "agent/tcp_pipeline.h"

namespace podtap {
namespace {

using namespace std::chrono_literals;

constexpr int kPods = 10'000;
constexpr int kWave = 1'000;
constexpr uint64_t kMs = 1'000'000;
constexpr uint64_t kSec = 1'000 * kMs;
constexpr uint64_t kPastWindow = 13 * 60 * kSec;  // past the query window's oldest bucket

IpAddr V4(uint8_t a, uint8_t b, uint8_t c, uint8_t d) {
  IpAddr ip;
  ip.bytes = {a, b, c, d};
  return ip;
}

std::shared_ptr<PodMeta> Pod(std::string ns, std::string name, uint32_t netns, IpAddr ip,
                             std::string owner_kind, std::string owner) {
  auto p = std::make_shared<PodMeta>();
  p->ns = std::move(ns);
  p->name = std::move(name);
  p->netns_ino = netns;
  p->ips = {ip};
  p->owner_kind = std::move(owner_kind);
  p->owner_name = std::move(owner);
  return p;
}

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

class Node {
 public:
  Node() {
    api_ = Pod("shop", "api-0", 1, V4(10, 0, 0, 1), "StatefulSet", "api");
    web_ = Pod("shop", "web-0", 2, V4(10, 0, 0, 2), "StatefulSet", "web");
    pipe_.SetRecorder(&rec_);
    SetPods({api_, web_});
    Call(1, 2, Direction::kOutbound, api_->ips[0]);
    Call(2, 1, Direction::kInbound, web_->ips[0]);
    Call(3, 2, Direction::kOutbound, api_->ips[0], /*keep_open=*/true);
    SetPods({api_, web_});
    now_ += kPastWindow;
    Housekeeping();
  }

  // One churn of kPods; `peak` gets the highest level seen at a wave's end.
  void Churn(Level* peak) {
    for (int wave = 0; wave < kPods / kWave; wave++) {
      PodList pods = {api_, web_};
      for (int i = wave * kWave; i < (wave + 1) * kWave; i++) {
        const std::string name = "job-" + std::to_string(next_job_ + i);
        pods.push_back(Pod("batch", name, 1'000 + static_cast<uint32_t>(i),
                           V4(10, 1, static_cast<uint8_t>(i / 256), static_cast<uint8_t>(i % 256)),
                           "Job", name));
      }
      SetPods(pods);
      for (size_t p = 2; p < pods.size(); p++) {
        const PodMeta& job = *pods[p];
        Call(conn_++, job.netns_ino, Direction::kInbound, web_->ips[0]);
        Call(conn_++, 2, Direction::kOutbound, job.ips[0]);
        Call(conn_++, job.netns_ino, Direction::kOutbound, api_->ips[0]);
        Call(conn_++, 1, Direction::kInbound, job.ips[0]);
        TcpConnectFail f;
        f.ts_ns = Tick();
        f.netns_ino = job.netns_ino;
        f.remote = api_->ips[0];
        f.remote_port = 80;
        f.error = TcpError::kConnectionRefused;
        f.err = ECONNREFUSED;
        pipe_.OnConnectFail(f);
      }
      const Level l = Now();
      if (l.heap > peak->heap) *peak = l;
      SetPods({api_, web_});
      now_ += 2 * kSec;
      Housekeeping();
    }
    next_job_ += kPods;  // new names next time, as new pods have
    now_ += kPastWindow;
    Housekeeping();
  }

  Level Now() const {
    Level l;
    l.label_sets = agg_.LabelSetCount();
    l.endpoint_pairs = rec_.endpoints().size();
    for (auto g : {SeriesGroup::kTcp, SeriesGroup::kHttp, SeriesGroup::kRoute}) {
      l.series += agg_.SeriesCount(g);
    }
    l.heap = mallinfo2().uordblks;
    l.rss = RssBytes();
    return l;
  }

 private:
  void Call(uint64_t id, uint32_t local_netns, Direction dir, const IpAddr& remote,
            bool keep_open = false) {
    TcpOpen o;
    o.conn_id = id;
    o.open_ns = Tick();
    o.netns_ino = local_netns;
    o.direction = dir;
    o.remote = remote;
    o.remote_port = 80;
    pipe_.OnOpen(o);
    static const std::string kReq = "GET /job HTTP/1.1\r\nHost: svc\r\n\r\n";
    static const std::string kRsp = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
    const bool out = dir == Direction::kOutbound;
    Send(id, out ? DataDir::kSend : DataDir::kRecv, kReq);
    Send(id, out ? DataDir::kRecv : DataDir::kSend, kRsp);
    if (keep_open) return;
    TcpClose c;
    c.conn_id = id;
    c.ts_ns = Tick();
    c.acked_total = out ? kReq.size() : kRsp.size();
    c.received_total = out ? kRsp.size() : kReq.size();
    c.kernel_saw_open = true;
    pipe_.OnClose(c);
  }
  void Send(uint64_t id, DataDir dir, const std::string& bytes) {
    PayloadEvent p;
    p.conn_id = id;
    p.dir = dir;
    p.total_len = bytes.size();
    p.captured = static_cast<uint32_t>(bytes.size());
    p.ts_ns = Tick();
    pipe_.OnPayload(p, {reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()});
  }
  uint64_t Tick() { return now_ += kMs; }
  void SetPods(const PodList& pods) {
    live_.clear();
    for (const auto& p : pods) live_.emplace(p->ns, p->name);
    pipe_.SetPods(pods);
  }
  // As the agent's loops: lingering closes, the window, expiry of idle series
  // of pods that are gone (a scrape, a sweep, one past the retention).
  void Housekeeping() {
    pipe_.FlushPendingOpens(now_);
    pipe_.FinishCloses(now_);
    rec_.Age(now_);
    agg_.Collect();
    auto exists = [this](const Labels& l) { return LabelSetPodsExist(l, live_); };
    agg_.Expire(steady_, 1s, exists);
    steady_ += 2s;
    agg_.Expire(steady_, 1s, exists);
  }

  Aggregator agg_;
  TapHub taps_;
  QueryRecorder rec_{&taps_};
  TcpPipeline pipe_{&agg_, 2 * kWave, {}, /*capture_payload=*/true};
  std::shared_ptr<PodMeta> api_, web_;
  PodKeys live_;
  uint64_t conn_ = 100;
  int next_job_ = 0;
  uint64_t now_ = 1'000 * kSec;
  Aggregator::Clock::time_point steady_ = Aggregator::Clock::now();
};

void Print(const char* what, const Level& l) {
  std::printf("%-22s %10zu %14zu %8zu %12.1f %9.1f\n", what, l.label_sets, l.endpoint_pairs,
              l.series, static_cast<double>(l.heap) / 1024, static_cast<double>(l.rss) / 1048576);
}

int Run() {
  Node node;
  const Level before = node.Now();
  std::printf("%d pods in waves of %d, twice over\n", kPods, kWave);
  std::printf("%-22s %10s %14s %8s %12s %9s\n", "", "label sets", "endpoint pairs", "series",
              "heap (KiB)", "RSS (MiB)");
  Print("before", before);
  bool ok = true;
  for (int round = 1; round <= 2; round++) {
    Level peak;
    node.Churn(&peak);
    const Level after = node.Now();
    const std::string n = std::to_string(round);
    Print(("churn " + n + ": wave's peak").c_str(), peak);
    Print(("churn " + n + ": after").c_str(), after);
    ok = ok && after.SameHeld(before);
    // What malloc keeps of the freed memory, and gives back when asked.
    malloc_trim(0);
    Print(("churn " + n + ": malloc_trim").c_str(), node.Now());
  }
  if (!ok) std::printf("FAIL: what is held after a churn differs from before it\n");
  return ok ? 0 : 1;
}

}  // namespace
}  // namespace podtap

int main() { return podtap::Run(); }
