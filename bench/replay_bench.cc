// Benchmark (not a test): records a realistic ring-buffer event stream in memory (raw
// podtap_tcp_event and podtap_payload_event records, exactly as bpf/ emits them, for connections
// between 100 pods), then replays it through the agent's userspace path without the kernel:
// DecodeEvent -> batch sorted by timestamp -> TcpPipeline (connection table, HTTP/1.1 and HTTP/2
// parsers) -> Aggregator, as Agent::ApplyBatch does. Prints events per second on one core, median
// of the runs, for (a) TCP lifecycle events only and (b) HTTP payload events, next to decoding
// alone. Every run's counters are checked against what was recorded; any mismatch exits 1.
// See docs/benchmarks.md.
#include <nghttp2/nghttp2.h>
#include <sched.h>
#include <sys/socket.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "agent/conn/tcp_pipeline.h"
#include "agent/kernel/event_decoder.h"
#include "agent/metrics/aggregator.h"
#include "agent/query/query_recorder.h"
#include "agent/query/tap.h"

extern "C" {
#include "bpf/podtap.h"
}

namespace {

using podtap::DecodedEvent;

constexpr int kPods = 100;
constexpr uint32_t kNetnsBase = 4026532000u;
constexpr uint32_t kPrefixLen = 256;  // the agent's default --payload-prefix
constexpr uint16_t kServerPort = 8080;
// Linux TCP states (include/net/tcp_states.h) a closing socket leaves.
constexpr uint8_t kFinWait2 = 5;
constexpr uint8_t kLastAck = 9;

std::array<uint8_t, 4> PodIp(int pod) {
  return {10, 1, static_cast<uint8_t>(pod / 250), static_cast<uint8_t>(pod % 250 + 2)};
}

std::string PodName(int pod) {
  return "api-5f7c9d8b" + std::to_string(pod % 10) + "-x" + std::to_string(pod);
}

podtap::PodList MakePods() {
  podtap::PodList pods;
  for (int p = 0; p < kPods; p++) {
    auto m = std::make_shared<podtap::PodMeta>();
    const std::string hash = "5f7c9d8b" + std::to_string(p % 10);
    m->uid = "uid-" + std::to_string(p);
    m->ns = "shop";
    m->name = PodName(p);
    m->labels = {{"app", "api"}, {"pod-template-hash", hash}};
    m->owner_kind = "ReplicaSet";
    m->owner_name = "api-" + hash;
    podtap::IpAddr ip;
    const auto raw = PodIp(p);
    std::copy(raw.begin(), raw.end(), ip.bytes.begin());
    m->ips = {ip};
    m->netns_ino = kNetnsBase + static_cast<uint32_t>(p);
    pods.push_back(std::move(m));
  }
  return pods;
}

// What the stream must make the aggregator count.
struct Expected {
  uint64_t opens = 0;  // sockets, both ends of each connection
  uint64_t closes = 0;
  uint64_t read_bytes = 0;
  uint64_t write_bytes = 0;
  uint64_t requests = 0;  // request_total, both ends
  uint64_t failures = 0;  // response_total{classification="failure"}, both ends
  uint64_t payload_records = 0;
  uint64_t lifecycle_records = 0;
  // Verdicts to forget at close: both sockets of each HTTP/2 connection (the kernel wrote one on
  // the preface).
  uint64_t forgets = 0;
};

// The recorded ring-buffer records, back to back, in timestamp order.
struct Stream {
  std::vector<uint8_t> bytes;
  std::vector<std::pair<uint32_t, uint32_t>> records;  // (offset, size)
  Expected want;

  void Add(const void* rec, size_t size) {
    records.emplace_back(static_cast<uint32_t>(bytes.size()), static_cast<uint32_t>(size));
    const auto* b = static_cast<const uint8_t*>(rec);
    bytes.insert(bytes.end(), b, b + size);
  }
};

// One socket's end of a connection: what the kernel knows of it.
struct Sock {
  uint64_t cookie;
  int pod;
  int peer;
  uint16_t port, peer_port;
  uint8_t direction;  // PODTAP_DIR_*
  uint64_t base_acked, base_received;
  uint64_t sent = 0, received = 0;
};

class Recorder {
 public:
  explicit Recorder(Stream* s) : s_(s) {}
  uint64_t Tick(uint64_t ns) { return now_ += ns; }

  void Open(const Sock& k) {
    podtap_tcp_event e = Base(k, PODTAP_EV_TCP_OPEN);
    e.open_ns = now_;
    e.bytes_acked = e.base_acked = k.base_acked;
    e.bytes_received = e.base_received = k.base_received;
    e.old_state = k.direction == PODTAP_DIR_OUTBOUND ? 2 : 3;  // SYN_SENT, SYN_RECV
    s_->Add(&e, sizeof(e));
    s_->want.opens++;
    s_->want.lifecycle_records++;
  }

  // An orderly close: both FINs exchanged; the client closed first.
  void Close(const Sock& k, uint64_t open_ns) {
    podtap_tcp_event e = Base(k, PODTAP_EV_TCP_CLOSE);
    e.open_ns = open_ns;
    e.flags = PODTAP_F_FIN_RECEIVED | PODTAP_F_FIN_ACKED;
    e.base_acked = k.base_acked;
    e.base_received = k.base_received;
    e.bytes_acked = k.base_acked + k.sent + 1;
    e.bytes_received = k.base_received + k.received + 1;
    e.old_state = k.direction == PODTAP_DIR_OUTBOUND ? kFinWait2 : kLastAck;
    s_->Add(&e, sizeof(e));
    s_->want.closes++;
    s_->want.read_bytes += k.received;
    s_->want.write_bytes += k.sent;
    s_->want.lifecycle_records++;
  }

  // One syscall that moved `bytes` (all of it): its prefix, as for a connection without a verdict.
  void Prefix(Sock* k, uint8_t dir, std::string_view bytes) {
    const size_t n = std::min<size_t>(bytes.size(), kPrefixLen);
    Payload(k, dir, 0, bytes.size(), {reinterpret_cast<const uint8_t*>(bytes.data()), n});
  }

  // The same on an HTTP/2 connection whose frames the kernel follows.
  void Segments(Sock* k, uint8_t dir, std::string_view bytes, bool preface) {
    const std::string segs = KernelSegments(bytes, preface);
    Payload(k, dir, PODTAP_PF_SEGMENTS, bytes.size(),
            {reinterpret_cast<const uint8_t*>(segs.data()), segs.size()});
  }

 private:
  podtap_tcp_event Base(const Sock& k, uint32_t kind) const {
    podtap_tcp_event e{};
    e.kind = kind;
    e.ts_ns = now_;
    e.conn_id = k.cookie;
    e.cgroup_id = 7000 + static_cast<uint64_t>(k.pod);  // a container's cgroup, not a pod's key
    e.netns_ino = kNetnsBase + static_cast<uint32_t>(k.pod);
    e.family = AF_INET;
    e.sport = k.port;
    e.dport = k.peer_port;
    e.direction = k.direction;
    const auto local = PodIp(k.pod), remote = PodIp(k.peer);
    std::copy(local.begin(), local.end(), e.saddr);
    std::copy(remote.begin(), remote.end(), e.daddr);
    return e;
  }

  void Payload(Sock* k, uint8_t dir, uint8_t flags, size_t total, std::span<const uint8_t> data) {
    const size_t header = offsetof(podtap_payload_event, data);
    rec_.resize(header + data.size());
    podtap_payload_event h{};
    h.kind = PODTAP_EV_PAYLOAD;
    h.dir = dir;
    h.flags = flags;
    h.captured = static_cast<uint16_t>(data.size());
    h.ts_ns = now_;
    h.conn_id = k->cookie;
    h.total_len = static_cast<int64_t>(total);
    std::memcpy(rec_.data(), &h, header);
    std::memcpy(rec_.data() + header, data.data(), data.size());
    s_->Add(rec_.data(), rec_.size());
    (dir == PODTAP_DATA_SEND ? k->sent : k->received) += total;
    s_->want.payload_records++;
  }

  // What bpf/sockdata.bpf.c's frame walk captures of one syscall that begins at a frame boundary
  // (or at the client preface): every frame header, and the payload of HEADERS, SETTINGS,
  // PUSH_PROMISE, GOAWAY and CONTINUATION frames, adjacent captures in one segment.
  static std::string KernelSegments(std::string_view bytes, bool preface) {
    std::vector<std::pair<size_t, size_t>> runs;  // (offset, length)
    auto keep = [&runs](size_t off, size_t len) {
      if (!runs.empty() && runs.back().first + runs.back().second == off) {
        runs.back().second += len;
      } else {
        runs.emplace_back(off, len);
      }
    };
    size_t off = 0;
    if (preface) {
      keep(0, NGHTTP2_CLIENT_MAGIC_LEN);
      off = NGHTTP2_CLIENT_MAGIC_LEN;
    }
    while (off + 9 <= bytes.size()) {
      const auto* h = reinterpret_cast<const uint8_t*>(bytes.data() + off);
      const size_t len = size_t{h[0]} << 16 | size_t{h[1]} << 8 | h[2];
      const uint8_t type = h[3];
      const bool whole = type == NGHTTP2_HEADERS || type == NGHTTP2_SETTINGS ||
                         type == NGHTTP2_PUSH_PROMISE || type == NGHTTP2_GOAWAY ||
                         type == NGHTTP2_CONTINUATION;
      keep(off, 9 + (whole ? len : 0));
      off += 9 + len;
    }
    std::string out;
    for (auto [at, len] : runs) {
      podtap_segment seg{static_cast<uint32_t>(at), static_cast<uint16_t>(len), 0};
      out.append(reinterpret_cast<const char*>(&seg), sizeof(seg));
      out.append(bytes.substr(at, len));
    }
    return out;
  }

  Stream* s_;
  uint64_t now_ = 1'000'000'000;
  std::vector<uint8_t> rec_;
};

// A pair of sockets: the client's (outbound) and the server's (inbound) end of one connection.
struct Conn {
  Sock client, server;
  uint64_t open_ns = 0;
};

Conn MakeConn(uint64_t k) {
  const int client = static_cast<int>(k % kPods);
  int server = static_cast<int>((k * 7 + 1) % kPods);
  if (server == client) server = (server + 1) % kPods;
  const auto eph = static_cast<uint16_t>(32768 + k % 28000);
  Conn c;
  c.client = {2 * k + 1, client, server, eph, kServerPort, PODTAP_DIR_OUTBOUND, 1, 0};
  c.server = {2 * k + 2, server, client, kServerPort, eph, PODTAP_DIR_INBOUND, 0, 1};
  return c;
}

void OpenConn(Recorder* r, Conn* c) {
  c->open_ns = r->Tick(1000);
  r->Open(c->client);
  r->Tick(500);
  r->Open(c->server);
}

void CloseConn(Recorder* r, const Conn& c) {
  r->Tick(1000);
  r->Close(c.client, c.open_ns);
  r->Tick(500);
  r->Close(c.server, c.open_ns);
}

// (a) Lifecycle only: `conns` connections, `window` of them open at any time.
Stream RecordTcp(uint64_t conns, uint64_t window) {
  Stream s;
  Recorder r(&s);
  std::vector<Conn> open(window);
  for (uint64_t k = 0; k < conns + window; k++) {
    Conn& slot = open[k % window];
    if (k >= window) CloseConn(&r, slot);
    if (k < conns) {
      slot = MakeConn(k);
      // Bytes the connection moved, as its counters say at close.
      slot.client.sent = slot.server.received = 80 + k % 61;
      slot.server.sent = slot.client.received = 160 + k % 977;
      OpenConn(&r, &slot);
    }
  }
  return s;
}

// HTTP/1.1 as curl sends it and nginx answers it; every 16th response a 503.
std::string Http1Request(int server, uint64_t n) {
  return "GET /api/v1/items/" + std::to_string(n % 50) + "?page=2 HTTP/1.1\r\nHost: svc-" +
         std::to_string(server) +
         ".shop.svc.cluster.local:8080\r\nUser-Agent: curl/7.88.1\r\nAccept: */*\r\n\r\n";
}

std::string Http1Response(uint64_t n) {
  const bool fail = n % 16 == 15;
  const std::string body = fail ? "<html><body>busy</body></html>\n"
                                : "{\"items\":[" + std::to_string(n) + "],\"next\":null}\n";
  return std::string(fail ? "HTTP/1.1 503 Service Temporarily Unavailable" : "HTTP/1.1 200 OK") +
         "\r\nServer: nginx/1.22.1\r\nDate: Thu, 26 Nov 2026 01:20:46 GMT\r\nContent-Type: " +
         (fail ? "text/html" : "application/json") +
         "\r\nContent-Length: " + std::to_string(body.size()) +
         "\r\nConnection: keep-alive\r\n\r\n" + body;
}

// One endpoint's HPACK encoder (nghttp2's).
class Hpack {
 public:
  Hpack() {
    if (nghttp2_hd_deflate_new(&d_, 4096) != 0) std::abort();
  }
  ~Hpack() { nghttp2_hd_deflate_del(d_); }
  Hpack(const Hpack&) = delete;
  Hpack& operator=(const Hpack&) = delete;

  std::string Encode(const std::vector<std::pair<std::string, std::string>>& h) {
    std::vector<nghttp2_nv> nva;
    for (const auto& [name, value] : h) {
      nva.push_back({const_cast<uint8_t*>(reinterpret_cast<const uint8_t*>(name.data())),
                     const_cast<uint8_t*>(reinterpret_cast<const uint8_t*>(value.data())),
                     name.size(), value.size(), NGHTTP2_NV_FLAG_NONE});
    }
    std::string out(nghttp2_hd_deflate_bound(d_, nva.data(), nva.size()), '\0');
    const ssize_t n = nghttp2_hd_deflate_hd(d_, reinterpret_cast<uint8_t*>(out.data()), out.size(),
                                            nva.data(), nva.size());
    if (n < 0) std::abort();
    out.resize(static_cast<size_t>(n));
    return out;
  }

 private:
  nghttp2_hd_deflater* d_ = nullptr;
};

std::string Frame(uint8_t type, uint8_t flags, uint32_t stream, std::string_view payload) {
  std::string f;
  const auto len = static_cast<uint32_t>(payload.size());
  for (int shift : {16, 8, 0}) f.push_back(static_cast<char>(len >> shift));
  f.push_back(static_cast<char>(type));
  f.push_back(static_cast<char>(flags));
  for (int shift : {24, 16, 8, 0}) f.push_back(static_cast<char>(stream >> shift));
  return f + std::string(payload);
}

// Both ends' HPACK state of one HTTP/2 connection (h2load against nginx, prior knowledge).
struct H2Conn {
  Hpack client, server;
};

std::string H2Request(H2Conn* h, int server, uint64_t n, uint32_t stream) {
  const std::string block = h->client.Encode(
      {{":method", "GET"},
       {":path", "/api/v1/items/" + std::to_string(n % 50)},
       {":scheme", "http"},
       {":authority", "svc-" + std::to_string(server) + ".shop.svc.cluster.local:8080"},
       {"user-agent", "h2load nghttp2/1.52.0"}});
  return Frame(NGHTTP2_HEADERS, NGHTTP2_FLAG_END_HEADERS | NGHTTP2_FLAG_END_STREAM, stream, block);
}

std::string H2Response(H2Conn* h, uint64_t n, uint32_t stream) {
  const bool fail = n % 16 == 15;
  const std::string body = fail ? "busy\n" : "{\"items\":[" + std::to_string(n) + "]}\n";
  const std::string block = h->server.Encode({{":status", fail ? "503" : "200"},
                                              {"server", "nginx/1.22.1"},
                                              {"date", "Thu, 26 Nov 2026 01:20:46 GMT"},
                                              {"content-type", "application/json"},
                                              {"content-length", std::to_string(body.size())}});
  return Frame(NGHTTP2_HEADERS, NGHTTP2_FLAG_END_HEADERS, stream, block) +
         Frame(NGHTTP2_DATA, NGHTTP2_FLAG_END_STREAM, stream, body);
}

// (b) HTTP: `conns` keep-alive connections (every 10th HTTP/2), all open at once, each carrying
// `requests` request/response exchanges, round-robin; four payload records per exchange (the
// client's write, the server's read, the server's write, the client's read).
Stream RecordHttp(uint64_t conns, uint64_t requests) {
  Stream s;
  Recorder r(&s);
  std::vector<Conn> cs;
  std::vector<std::unique_ptr<H2Conn>> h2(conns);
  for (uint64_t k = 0; k < conns; k++) {
    cs.push_back(MakeConn(k));
    if (k % 10 == 9) {
      h2[k] = std::make_unique<H2Conn>();
      s.want.forgets += 2;
    }
    OpenConn(&r, &cs.back());
  }
  const std::string settings = Frame(NGHTTP2_SETTINGS, 0, 0, "");
  const std::string settings_ack = Frame(NGHTTP2_SETTINGS, NGHTTP2_FLAG_ACK, 0, "");
  for (uint64_t n = 0; n < requests; n++) {
    for (uint64_t k = 0; k < conns; k++) {
      Conn& c = cs[k];
      std::string req, resp;
      if (h2[k]) {
        const auto stream = static_cast<uint32_t>(2 * n + 1);
        req = H2Request(h2[k].get(), c.server.pod, n, stream);
        resp = H2Response(h2[k].get(), n, stream);
        if (n == 0) {
          req = std::string(NGHTTP2_CLIENT_MAGIC, NGHTTP2_CLIENT_MAGIC_LEN) + settings + req;
          resp = settings + settings_ack + resp;
        } else if (n == 1) {
          req = settings_ack + req;
        }
        r.Tick(2000);
        r.Segments(&c.client, PODTAP_DATA_SEND, req, n == 0);
        r.Tick(15000);
        r.Segments(&c.server, PODTAP_DATA_RECV, req, n == 0);
        r.Tick(60000);
        r.Segments(&c.server, PODTAP_DATA_SEND, resp, false);
        r.Tick(15000);
        r.Segments(&c.client, PODTAP_DATA_RECV, resp, false);
      } else {
        req = Http1Request(c.server.pod, n);
        resp = Http1Response(n);
        r.Tick(2000);
        r.Prefix(&c.client, PODTAP_DATA_SEND, req);
        r.Tick(15000);
        r.Prefix(&c.server, PODTAP_DATA_RECV, req);
        r.Tick(60000);
        r.Prefix(&c.server, PODTAP_DATA_SEND, resp);
        r.Tick(15000);
        r.Prefix(&c.client, PODTAP_DATA_RECV, resp);
      }
      s.want.requests += 2;
      if (n % 16 == 15) s.want.failures += 2;
    }
  }
  for (const Conn& c : cs) CloseConn(&r, c);
  return s;
}

// The userspace path, as Agent::ApplyBatch drives it: decode every record of a batch (into the
// batch's byte arena), sort the batch's (timestamp, index) pairs, apply it to the pipeline, count
// the opens that waited long enough, and take the capture verdicts for the kernel.
class Replayer {
 public:
  Replayer(const podtap::PodList& pods)
      : recorder_(&taps_), pipeline_(&agg_, 262144, {}, /*capture_payload=*/true) {
    pipeline_.SetObserver(&recorder_);
    pipeline_.SetPods(pods);
  }

  // False when an event was not applied (decode error, or data for an unknown connection).
  bool Replay(const Stream& s, size_t batch_size, bool apply) {
    bool ok = true;
    for (size_t i = 0; i < s.records.size(); i += batch_size) {
      const size_t end = std::min(s.records.size(), i + batch_size);
      for (size_t j = i; j < end; j++) {
        const auto [off, size] = s.records[j];
        batch_.push_back(podtap::DecodeEvent(s.bytes.data() + off, size, &arena_));
      }
      order_.clear();
      for (uint32_t k = 0; k < batch_.size(); k++) order_.emplace_back(Timestamp(batch_[k]), k);
      std::sort(order_.begin(), order_.end());
      if (apply) ok = Apply() && ok;
      last_ts_ = order_.empty() ? last_ts_ : order_.back().first;
      batch_.clear();
      arena_.clear();
    }
    if (apply) {
      // The stream is shorter than the close linger: end every connection's parsing.
      pipeline_.FinishCloses(last_ts_ + podtap::TcpPipeline::kCloseLingerNs);
      verdicts_ += pipeline_.TakeVerdicts().size();
    }
    return ok;
  }

  podtap::Aggregator& agg() { return agg_; }
  const podtap::TcpPipeline& pipeline() const { return pipeline_; }
  size_t verdicts() const { return verdicts_; }

 private:
  static uint64_t Timestamp(const DecodedEvent& ev) {
    if (const auto* o = std::get_if<podtap::TcpOpen>(&ev)) return o->open_ns;
    if (const auto* c = std::get_if<podtap::TcpClose>(&ev)) return c->ts_ns;
    if (const auto* f = std::get_if<podtap::TcpConnectFail>(&ev)) return f->ts_ns;
    if (const auto* p = std::get_if<podtap::PayloadEvent>(&ev)) return p->ts_ns;
    return 0;
  }

  bool Apply() {
    bool ok = true;
    for (const auto& [ts, index] : order_) {
      const DecodedEvent& ev = batch_[index];
      if (const auto* o = std::get_if<podtap::TcpOpen>(&ev)) {
        pipeline_.OnOpen(*o);
      } else if (const auto* c = std::get_if<podtap::TcpClose>(&ev)) {
        pipeline_.OnClose(*c);
      } else if (const auto* f = std::get_if<podtap::TcpConnectFail>(&ev)) {
        pipeline_.OnConnectFail(*f);
      } else if (const auto* p = std::get_if<podtap::PayloadEvent>(&ev)) {
        ok = pipeline_.OnPayload(*p, {arena_.data() + p->offset, p->captured}) && ok;
      } else {
        std::fprintf(stderr, "decode error: %s\n",
                     std::get<podtap::DecodeError>(ev).message.c_str());
        ok = false;
      }
    }
    // The agent passes the clock at the end of the batch, which is at or past its last event.
    pipeline_.FlushPendingOpens(order_.back().first);
    pipeline_.FinishCloses(order_.back().first);
    verdicts_ += pipeline_.TakeVerdicts().size();
    return ok;
  }

  podtap::TapHub taps_;
  podtap::QueryRecorder recorder_;
  podtap::Aggregator agg_;
  podtap::TcpPipeline pipeline_;
  std::vector<DecodedEvent> batch_;
  std::vector<std::pair<uint64_t, uint32_t>> order_;  // (timestamp, index), as the agent sorts
  std::vector<uint8_t> arena_;
  size_t verdicts_ = 0;
  uint64_t last_ts_ = 0;
};

double Sum(const podtap::Snapshot& s, const std::string& family,
           const std::function<bool(const podtap::Labels&)>& match = nullptr) {
  double total = 0;
  for (const auto& f : s.families) {
    if (f.name != family) continue;
    for (const auto& sample : f.samples) {
      if (!match || match(sample.labels)) total += sample.value;
    }
  }
  return total;
}

bool HasLabel(const podtap::Labels& labels, const std::string& name, const std::string& value) {
  return std::find(labels.begin(), labels.end(), std::make_pair(name, value)) != labels.end();
}

// Compares what the aggregator counted with what was recorded; prints each mismatch.
bool Check(const char* what, Replayer& r, const Expected& want) {
  const podtap::Snapshot s = r.agg().Collect();
  const podtap::SelfStats& self = r.agg().self();
  bool ok = true;
  auto expect = [&](const char* name, double got, uint64_t wanted) {
    if (got == static_cast<double>(wanted)) return;
    std::fprintf(stderr, "%s: %s is %.0f, recorded %llu\n", what, name, got,
                 static_cast<unsigned long long>(wanted));
    ok = false;
  };
  // Series of pods only: a socket the pipeline did not attribute would count without pod labels.
  auto pod_series = [](const podtap::Labels& l) { return HasLabel(l, "namespace", "shop"); };
  expect("tcp_open_total", Sum(s, "tcp_open_total", pod_series), want.opens);
  expect("tcp_close_total", Sum(s, "tcp_close_total", pod_series), want.closes);
  expect("tcp_open_connections", Sum(s, "tcp_open_connections"), want.opens - want.closes);
  expect("tcp_read_bytes_total", Sum(s, "tcp_read_bytes_total", pod_series), want.read_bytes);
  expect("tcp_write_bytes_total", Sum(s, "tcp_write_bytes_total", pod_series), want.write_bytes);
  expect("request_total", Sum(s, "request_total", pod_series), want.requests);
  expect("response_total", Sum(s, "response_total", pod_series), want.requests);
  expect("response_total{classification=\"failure\"}",
         Sum(s, "response_total",
             [](const podtap::Labels& l) { return HasLabel(l, "classification", "failure"); }),
         want.failures);
  expect("payload records applied", static_cast<double>(self.payload_events), want.payload_records);
  uint64_t parse_errors = 0;
  for (const auto& [key, n] : self.parse_errors) parse_errors += n;
  expect("parse errors", static_cast<double>(parse_errors), 0);
  expect("connections given up", static_cast<double>(self.given_up.size()), 0);
  expect("connection table full", static_cast<double>(self.conn_table_full), 0);
  expect("verdict operations", static_cast<double>(r.verdicts()), want.forgets);
  expect("connections still tracked", static_cast<double>(r.pipeline().tracked()), 0);
  return ok;
}

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

struct Result {
  double decode_only;  // events/s, median
  double full;         // events/s, median
  bool ok;
};

Result Measure(const char* what, const Stream& s, const podtap::PodList& pods, int runs,
               size_t batch) {
  std::vector<double> decode, full;
  bool ok = true;
  // Events of the stream's kind: payload records when it has any (its opens and closes are
  // replayed too, but not counted), else lifecycle records.
  const double n = static_cast<double>(s.want.payload_records > 0 ? s.want.payload_records
                                                                  : s.want.lifecycle_records);
  // Interleaved: a decode-only run, then a full run, each on fresh state.
  for (int i = 0; i < runs; i++) {
    for (bool apply : {false, true}) {
      Replayer r(pods);
      const auto t0 = std::chrono::steady_clock::now();
      const bool applied = r.Replay(s, batch, apply);
      const double sec =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      (apply ? full : decode).push_back(n / sec);
      if (apply) ok = applied && Check(what, r, s.want) && ok;
    }
  }
  return {Median(decode), Median(full), ok};
}

}  // namespace

int main(int argc, char** argv) {
  const int runs = argc > 1 ? std::atoi(argv[1]) : 7;
  const size_t batch = argc > 2 ? static_cast<size_t>(std::atoll(argv[2])) : 1024;
  const std::string which = argc > 3 ? argv[3] : "ab";
  if (runs < 1 || batch < 1 || (which != "a" && which != "b" && which != "ab")) {
    std::fprintf(stderr, "usage: %s [RUNS >= 1] [BATCH >= 1] [a|b|ab]\n", argv[0]);
    return 2;
  }
  // One core: the one this started on.
  cpu_set_t one;
  CPU_ZERO(&one);
  CPU_SET(sched_getcpu(), &one);
  if (sched_setaffinity(0, sizeof(one), &one) != 0) std::perror("sched_setaffinity");

  const podtap::PodList pods = MakePods();
  struct Bench {
    const char* name;
    Stream stream;
    double target;
  };
  std::vector<Bench> benches;
  if (which.find('a') != std::string::npos) {
    benches.push_back({"(a) TCP lifecycle", RecordTcp(100'000, 5'000), 2e6});
  }
  if (which.find('b') != std::string::npos) {
    benches.push_back({"(b) HTTP payload", RecordHttp(1'000, 60), 1e6});
  }
  std::printf("%d pods; %d runs each, batches of %zu records, pinned to one CPU\n", kPods, runs,
              batch);
  for (const Bench& b : benches) {
    const Expected& w = b.stream.want;
    std::printf(
        "%s: %zu records, %.1f MB: %llu lifecycle, %llu payload (%llu requests counted on "
        "both ends)\n",
        b.name, b.stream.records.size(), static_cast<double>(b.stream.bytes.size()) / 1e6,
        static_cast<unsigned long long>(w.lifecycle_records),
        static_cast<unsigned long long>(w.payload_records),
        static_cast<unsigned long long>(w.requests));
  }
  std::printf("%-20s %18s %18s %12s\n", "stream", "decode+sort ev/s", "full path ev/s",
              "target ev/s");
  bool ok = true;
  for (const Bench& b : benches) {
    const Result r = Measure(b.name, b.stream, pods, runs, batch);
    std::printf("%-20s %18.0f %18.0f %12.0f %s\n", b.name, r.decode_only, r.full, b.target,
                r.full >= b.target ? "met" : "MISSED");
    ok = ok && r.ok;
  }
  std::printf("counters equal to the recording in every run: %s\n", ok ? "yes" : "NO");
  return ok ? 0 : 1;
}
