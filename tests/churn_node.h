// A node through pod churn (CronJobs, rollouts), driven the way the agent drives its pipeline:
// two pods that stay (web-0 calls api-0), and waves of job pods that come (a pod list each), call
// and are called over one HTTP/1.1 exchange per connection, are refused once, and go; between
// waves the agent's loops run (lingering closes, the query window, expiry of idle series of pods
// that are gone). Shared by the churn unit test (tests/unit/tcp_pipeline_test.cc) and the churn
// benchmark (bench/pod_churn_bench.cc).
#pragma once

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "agent/conn/tcp_pipeline.h"
#include "agent/metrics/aggregator.h"
#include "agent/query/query_recorder.h"

namespace podtap {

class ChurnNode {
 public:
  static constexpr int kPods = 10'000;
  static constexpr int kWave = 1'000;
  static constexpr uint64_t kMs = 1'000'000;
  static constexpr uint64_t kSec = 1'000 * kMs;
  // Past the oldest bucket of the query window (12 of 1 min).
  static constexpr uint64_t kPastWindow = 13 * 60 * kSec;

  static IpAddr V4(uint8_t a, uint8_t b, uint8_t c, uint8_t d) {
    IpAddr ip;
    ip.bytes = {a, b, c, d};
    return ip;
  }
  static std::shared_ptr<PodMeta> Pod(std::string ns, std::string name, uint32_t netns, IpAddr ip,
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

  ChurnNode() {
    api = Pod("shop", "api-0", 1, V4(10, 0, 0, 1), "StatefulSet", "api");
    web = Pod("shop", "web-0", 2, V4(10, 0, 0, 2), "StatefulSet", "web");
    pipe.SetObserver(&rec);
  }

  // The pods that stay: web-0 calls api-0 over a connection that closes and one that stays
  // open throughout (both ends on this node, conn ids 1 to 3); then a new pod list (the same
  // pods), as the churn's last list will be, and the window past these calls.
  void Settle() {
    SetPods({api, web});
    Call(1, 2, Direction::kOutbound, api->ips[0]);
    Call(2, 1, Direction::kInbound, web->ips[0]);
    Call(3, 2, Direction::kOutbound, api->ips[0], /*keep_open=*/true);
    SetPods({api, web});
    now += kPastWindow;
    Housekeeping();
  }

  // One wave's jobs come and make their calls: web-0 calls each, each calls api-0 (both ends
  // of both calls on this node) and once finds api-0 refusing.
  void WaveComes() {
    PodList pods = {api, web};
    for (int i = next_job_; i < next_job_ + kWave; i++) {
      const std::string name = "job-" + std::to_string(i);
      pods.push_back(
          Pod("batch", name, 1'000 + static_cast<uint32_t>(i % kPods),
              V4(10, 1, static_cast<uint8_t>(i % kPods / 256), static_cast<uint8_t>(i % 256)),
              "Job", name));
    }
    next_job_ += kWave;  // new names next time, as new pods have
    SetPods(pods);
    for (size_t p = 2; p < pods.size(); p++) {
      const PodMeta& job = *pods[p];
      Call(conn_++, job.netns_ino, Direction::kInbound, web->ips[0]);   // web-0 calls it
      Call(conn_++, 2, Direction::kOutbound, job.ips[0]);               // (web-0's end)
      Call(conn_++, job.netns_ino, Direction::kOutbound, api->ips[0]);  // it calls api-0
      Call(conn_++, 1, Direction::kInbound, job.ips[0]);                // (api-0's end)
      TcpConnectFail f;
      f.ts_ns = Tick();
      f.netns_ino = job.netns_ino;
      f.remote = api->ips[0];
      f.remote_port = 80;
      f.error = TcpError::kConnectionRefused;
      f.err = ECONNREFUSED;
      pipe.OnConnectFail(f);
    }
  }
  // The wave's jobs are deleted; two seconds pass.
  void WaveGoes() {
    SetPods({api, web});
    now += 2 * kSec;
    Housekeeping();
  }

  // One connection with one HTTP/1.1 exchange on it, from its open (unless `opened`) to its
  // close (unless `keep_open`). `local_netns` is the socket's pod; outbound: it sent the
  // request.
  void Call(uint64_t id, uint32_t local_netns, Direction dir, const IpAddr& remote,
            bool keep_open = false, bool opened = false) {
    if (!opened) {
      TcpOpen o;
      o.conn_id = id;
      o.open_ns = Tick();
      o.netns_ino = local_netns;
      o.direction = dir;
      o.remote = remote;
      o.remote_port = 80;
      pipe.OnOpen(o);
    }
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
    pipe.OnClose(c);
  }

  // As the agent's loops do once `now` has moved on: end lingering closes, age the window, and
  // expire idle series of pods that are gone (a scrape, a sweep that sees the last change, one
  // past the retention).
  void Housekeeping() {
    using namespace std::chrono_literals;
    pipe.FlushPendingOpens(now);
    pipe.FinishCloses(now);
    rec.Age(now);
    agg.Collect();
    auto exists = [this](const Labels& l) { return LabelSetPodsExist(l, live_); };
    agg.Expire(steady_, 1s, exists);
    steady_ += 2s;
    agg.Expire(steady_, 1s, exists);
  }

  void SetPods(const PodList& pods) {
    live_.clear();
    for (const auto& p : pods) live_.emplace(p->ns, p->name);
    pipe.SetPods(pods);
  }

  // Payload records the pipeline did not take (their connection unknown): 0 when all is right.
  uint64_t unmatched() const { return unmatched_; }

  Aggregator agg;
  TapHub taps;
  QueryRecorder rec{&taps};
  TcpPipeline pipe{&agg, 2 * kWave, {}, /*capture_payload=*/true};
  std::shared_ptr<PodMeta> api, web;
  uint64_t now = 1'000 * kSec;

 private:
  void Send(uint64_t id, DataDir dir, const std::string& bytes) {
    PayloadEvent p;
    p.conn_id = id;
    p.dir = dir;
    p.total_len = bytes.size();
    p.captured = static_cast<uint32_t>(bytes.size());
    p.ts_ns = Tick();
    if (!pipe.OnPayload(p, {reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()})) {
      unmatched_++;
    }
  }
  uint64_t Tick() { return now += kMs; }

  PodKeys live_;
  uint64_t conn_ = 100;
  int next_job_ = 0;
  uint64_t unmatched_ = 0;
  Aggregator::Clock::time_point steady_ = Aggregator::Clock::now();
};

}  // namespace podtap
