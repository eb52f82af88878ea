// Writes the seed corpora of the fuzz targets (tests/fuzz/corpus/<target>/): real HTTP/1.x
// exchanges, HTTP/2 exchanges whose every byte nghttp2's client and server sessions wrote, a TLS
// handshake start and pods files, as syscall_input.h records; Kubernetes API lists and watch
// events and CRI sandbox info documents in the shapes the API server and containerd send.
// Usage: podtap-fuzz-seeds <corpus dir>
#include <nghttp2/nghttp2.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "tests/fuzz/syscall_input.h"

namespace {

using podtap::fuzz::AppendSyscall;
using Headers = std::vector<std::pair<std::string, std::string>>;

// The agent's default per-syscall capture (--capture-bytes) before a connection is known HTTP/2.
constexpr size_t kDefaultCapture = 256;

struct Seed {
  std::string name;
  std::string input;  // without the options byte
};

struct Syscall {
  bool server;
  std::string bytes;
  size_t capture = podtap::fuzz::kMaxCaptured;
};

std::string Encode(const std::vector<Syscall>& calls) {
  std::string out;
  for (const auto& c : calls) AppendSyscall(&out, c.server, c.bytes, c.capture);
  return out;
}

std::vector<Seed> Http1Seeds() {
  const std::string body(3000, 'x');
  std::vector<Seed> seeds;
  seeds.push_back(
      {"get_content_length", Encode({{false,
                                      "GET /items/42?color=red HTTP/1.1\r\nHost: shop.example\r\n"
                                      "User-Agent: curl/7.88.1\r\nAccept: */*\r\n\r\n"},
                                     {true,
                                      "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                                      "Content-Length: 5\r\n\r\nhello"}})});
  seeds.push_back(
      {"post_chunked",
       Encode({{false,
                "POST /upload HTTP/1.1\r\nHost: api:8080\r\nTransfer-Encoding: chunked\r\n"
                "\r\n4\r\nabcd\r\n0\r\n\r\n"},
               {true, "HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n"},
               {true, "7\r\ncreated\r\n"},
               {true, "0\r\nX-Trailer: yes\r\n\r\n"}})});
  seeds.push_back({"pipelined_head_204_304",
                   Encode({{false,
                            "HEAD / HTTP/1.1\r\nHost: a\r\n\r\nDELETE /items/1 HTTP/1.1\r\n"
                            "Host: a\r\n\r\nGET /c HTTP/1.1\r\nHost: a\r\n"
                            "If-None-Match: \"v1\"\r\n\r\n"},
                           {true,
                            "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n"
                            "HTTP/1.1 204 No Content\r\n\r\n"
                            "HTTP/1.1 304 Not Modified\r\nETag: \"v1\"\r\n\r\n"}})});
  seeds.push_back(
      {"large_body_past_capture",
       Encode({{false, "GET /big HTTP/1.1\r\nHost: files\r\n\r\n"},
               {true,
                "HTTP/1.1 200 OK\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n" +
                    body,
                kDefaultCapture},
               {false, "GET /after HTTP/1.1\r\nHost: files\r\n\r\n"},
               {true, "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n"}})});
  seeds.push_back(
      {"headers_cut_by_capture",
       Encode({{false,
                "GET /long HTTP/1.1\r\nHost: h\r\nCookie: " + std::string(400, 'c') + "\r\n\r\n",
                kDefaultCapture},
               {true, "HTTP/1.0 500 Internal Server Error\r\n\r\noops"}})});
  seeds.push_back(
      {"expect_continue_and_close",
       Encode({{false,
                "PUT /f HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\nExpect: 100-continue\r\n"
                "\r\n"},
               {true, "HTTP/1.1 100 Continue\r\n\r\n"},
               {false, "data"},
               {true, "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nbody until close"}})});
  seeds.push_back(
      {"connect_and_upgrade", Encode({{false, "CONNECT db:5432 HTTP/1.1\r\nHost: db:5432\r\n\r\n"},
                                      {true, "HTTP/1.1 200 Connection Established\r\n\r\n"},
                                      {false, "\x00\x00\x00\x08\x04\xd2\x16\x2f"}})});
  seeds.push_back({"absolute_form", Encode({{false,
                                             "GET http://proxy.example:3128/p?q=1 HTTP/1.1\r\n"
                                             "\r\n"},
                                            {true,
                                             "HTTP/1.1 404 Not Found\r\n"
                                             "Content-Length: 2\r\n\r\nno"}})});
  return seeds;
}

// One HTTP/2 connection between nghttp2's client and server sessions; every write either side
// makes is recorded as one syscall.
class H2Exchange {
 public:
  struct Request {
    Headers headers;
    std::string body;
    Headers response;
    std::string response_body;
    Headers trailers;    // the server's, after its body
    bool reset = false;  // the server resets the stream instead of answering
  };

  H2Exchange() {
    nghttp2_session_callbacks* cb;
    nghttp2_session_callbacks_new(&cb);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cb, OnFrameRecv);
    nghttp2_session_client_new(&client_, cb, this);
    nghttp2_session_server_new(&server_, cb, this);
    nghttp2_session_callbacks_del(cb);
    nghttp2_submit_settings(client_, NGHTTP2_FLAG_NONE, nullptr, 0);
    nghttp2_settings_entry s[] = {{NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, 100},
                                  {NGHTTP2_SETTINGS_HEADER_TABLE_SIZE, 8192}};
    nghttp2_submit_settings(server_, NGHTTP2_FLAG_NONE, s, 2);
  }
  ~H2Exchange() {
    nghttp2_session_del(client_);
    nghttp2_session_del(server_);
  }
  H2Exchange(const H2Exchange&) = delete;
  H2Exchange& operator=(const H2Exchange&) = delete;

  // Submits the requests together, then lets both sides talk until neither has more to say.
  std::string Run(std::vector<Request> requests, size_t capture) {
    requests_ = std::move(requests);
    for (size_t i = 0; i < requests_.size(); i++) {
      auto nva = Nv(requests_[i].headers);
      nghttp2_data_provider body = Body(&requests_[i].body);
      int32_t id = nghttp2_submit_request(client_, nullptr, nva.data(), nva.size(),
                                          requests_[i].body.empty() ? nullptr : &body, nullptr);
      by_stream_.emplace_back(id, i);
    }
    for (int round = 0; round < 16; round++) {
      bool any = Pump(client_, server_, false, capture);
      any |= Pump(server_, client_, true, capture);
      if (!any) break;
    }
    return Encode(calls_);
  }

 private:
  static std::vector<nghttp2_nv> Nv(Headers& h) {
    std::vector<nghttp2_nv> nva;
    for (auto& [name, value] : h) {
      nva.push_back({reinterpret_cast<uint8_t*>(name.data()),
                     reinterpret_cast<uint8_t*>(value.data()), name.size(), value.size(),
                     NGHTTP2_NV_FLAG_NONE});
    }
    return nva;
  }

  // A body read from a string; the sender's session asks for it chunk by chunk.
  static nghttp2_data_provider Body(std::string* s) {
    nghttp2_data_provider p;
    p.source.ptr = s;
    p.read_callback = [](nghttp2_session*, int32_t, uint8_t* buf, size_t length, uint32_t* flags,
                         nghttp2_data_source* src, void*) -> ssize_t {
      auto* body = static_cast<std::string*>(src->ptr);
      size_t n = std::min(length, body->size());
      std::copy(body->begin(), body->begin() + static_cast<ptrdiff_t>(n), buf);
      body->erase(0, n);
      if (body->empty()) *flags |= NGHTTP2_DATA_FLAG_EOF;
      return static_cast<ssize_t>(n);
    };
    return p;
  }

  // What `from` writes now, as one syscall, delivered to `to`.
  bool Pump(nghttp2_session* from, nghttp2_session* to, bool server, size_t capture) {
    std::string out;
    const uint8_t* chunk;
    ssize_t n;
    while ((n = nghttp2_session_mem_send(from, &chunk)) > 0) {
      out.append(reinterpret_cast<const char*>(chunk), static_cast<size_t>(n));
    }
    if (out.empty()) return false;
    calls_.push_back({server, out, capture});
    nghttp2_session_mem_recv(to, reinterpret_cast<const uint8_t*>(out.data()), out.size());
    return true;
  }

  static int OnFrameRecv(nghttp2_session* session, const nghttp2_frame* frame, void* user) {
    auto* self = static_cast<H2Exchange*>(user);
    if (session != self->server_ || (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) == 0) return 0;
    for (auto& [id, i] : self->by_stream_) {
      if (id != frame->hd.stream_id) continue;
      Request& r = self->requests_[i];
      if (r.reset) {
        nghttp2_submit_rst_stream(session, NGHTTP2_FLAG_NONE, id, NGHTTP2_CANCEL);
        return 0;
      }
      auto nva = Nv(r.response);
      nghttp2_data_provider body = Body(&r.response_body);
      bool has_body = !r.response_body.empty();
      if (r.trailers.empty()) {
        nghttp2_submit_response(session, id, nva.data(), nva.size(), has_body ? &body : nullptr);
      } else {
        // With trailers the body must not end the stream: the trailers' HEADERS does.
        body.read_callback = [](nghttp2_session*, int32_t, uint8_t* buf, size_t length,
                                uint32_t* flags, nghttp2_data_source* src, void*) -> ssize_t {
          auto* s = static_cast<std::string*>(src->ptr);
          size_t n = std::min(length, s->size());
          std::copy(s->begin(), s->begin() + static_cast<ptrdiff_t>(n), buf);
          s->erase(0, n);
          if (s->empty()) *flags |= NGHTTP2_DATA_FLAG_EOF | NGHTTP2_DATA_FLAG_NO_END_STREAM;
          return static_cast<ssize_t>(n);
        };
        nghttp2_submit_response(session, id, nva.data(), nva.size(), &body);
        auto tva = Nv(r.trailers);
        nghttp2_submit_trailer(session, id, tva.data(), tva.size());
      }
    }
    return 0;
  }

  nghttp2_session* client_ = nullptr;
  nghttp2_session* server_ = nullptr;
  std::vector<Request> requests_;
  std::vector<std::pair<int32_t, size_t>> by_stream_;
  std::vector<Syscall> calls_;
};

std::vector<Seed> Http2Seeds() {
  using R = H2Exchange::Request;
  auto get = [](std::string path, std::string status, std::string body) {
    return R{{{":method", "GET"}, {":scheme", "http"}, {":authority", "web:8080"}, {":path", path}},
             "",
             {{":status", status}, {"content-type", "text/plain"}},
             body,
             {},
             false};
  };
  R grpc{{{":method", "POST"},
          {":scheme", "http"},
          {":authority", "greeter:50051"},
          {":path", "/helloworld.Greeter/SayHello"},
          {"content-type", "application/grpc"},
          {"te", "trailers"}},
         std::string("\0\0\0\0\x07\x0a\x05world", 12),
         {{":status", "200"}, {"content-type", "application/grpc"}},
         std::string("\0\0\0\0\x0d\x0a\x0bhello world", 18),
         {{"grpc-status", "0"}},
         false};
  R grpc_fail = grpc;
  grpc_fail.trailers = {{"grpc-status", "14"}, {"grpc-message", "unavailable"}};
  R reset = get("/slow", "200", "");
  reset.reset = true;
  std::vector<Seed> seeds;
  seeds.push_back({"get", H2Exchange().Run({get("/items/42?x=1", "200", "hello")}, 4096)});
  seeds.push_back({"grpc_unary", H2Exchange().Run({grpc, grpc_fail}, 4096)});
  seeds.push_back(
      {"concurrent_reset", H2Exchange().Run({get("/a", "200", "a"), get("/b", "404", "missing"),
                                             reset, get("/a", "304", "")},
                                            4096)});
  seeds.push_back(
      {"body_past_capture", H2Exchange().Run({get("/big", "200", std::string(20000, 'b'))}, 256)});
  return seeds;
}

std::vector<Seed> TlsSeeds() {
  // A ClientHello record start (TLS 1.2 record layer, handshake type 1) and a server's reply.
  std::string hello("\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03", 11);
  hello += std::string(32, '\x5a');
  std::string server_hello("\x16\x03\x03\x00\x5a\x02\x00\x00\x56\x03\x03", 11);
  return {{"tls_client_hello", Encode({{false, hello + std::string(160, '\x01'), 256},
                                       {true, server_hello + std::string(80, '\x02')}})}};
}

std::vector<Seed> PodsSeeds() {
  return {
      {"two_pods", R"({"pods":[
  {"namespace":"shop","name":"api-5f7c9d8b6-abcde","uid":"u1",
   "labels":{"app":"api","pod-template-hash":"5f7c9d8b6","version":"v2"},
   "owner":{"kind":"ReplicaSet","name":"api-5f7c9d8b6"},
   "ips":["10.0.0.2","fd00::2"],"netns":"/proc/self/ns/net"},
  {"namespace":"kube-system","name":"node-agent","labels":{"9starts-with-digit":"x","tls":"y"},
   "owner":{"kind":"DaemonSet","name":"node-agent"},"ips":["::ffff:10.0.0.3"],
   "cgroup":"/sys/fs/cgroup"}]})"},
      {"empty", R"({"pods":[]})"},
      {"bad_ip", R"({"pods":[{"name":"p","ips":["10.0.0.300"],"netns":"/proc/self/ns/net"}]})"}};
}

// fuzz_kube_objects lines: a selector byte (the resource in bits 0-1: pods, replicasets, services,
// endpointslices; bit 2: a list page, else a watch event), then the JSON as the API server sends
// it (objects as `kubectl get -o json` shows them; tests/e2e/kube_replay.py replays the same).
std::string KubeLine(int resource, bool list, const std::string& json) {
  return std::string(1, static_cast<char>(resource | (list ? 4 : 0))) + json + "\n";
}

constexpr const char* kWebPod =
    R"({"metadata":{"name":"web-7d4b9c6f5-x2x9z","namespace":"shop",)"
    R"("uid":"u-web","resourceVersion":"4711","labels":{"app":"web","pod-template-hash":)"
    R"("7d4b9c6f5","version":"v2"},"ownerReferences":[{"apiVersion":"apps/v1","kind":)"
    R"("ReplicaSet","name":"web-7d4b9c6f5","uid":"u-rs","controller":true,)"
    R"("blockOwnerDeletion":true}]},"spec":{"nodeName":"node-a","containers":[{"name":"web",)"
    R"("image":"web:1"}]},"status":{"phase":"Running","podIP":"10.244.1.5","podIPs":[{"ip":)"
    R"("10.244.1.5"},{"ip":"fd00:10:244:1::5"}]}})";
constexpr const char* kDbPod =
    R"({"metadata":{"name":"db-0","namespace":"shop","uid":"u-db",)"
    R"("resourceVersion":"4712","labels":{"app":"db","controller-revision-hash":"db-6c9f8d7b4",)"
    R"("statefulset.kubernetes.io/pod-name":"db-0"},"ownerReferences":[{"apiVersion":"apps/v1",)"
    R"("kind":"StatefulSet","name":"db","uid":"u-sts","controller":true}]},"spec":{"nodeName":)"
    R"("node-a"},"status":{"phase":"Running","podIP":"10.244.1.7","podIPs":[{"ip":"10.244.1.7"}]}})";
constexpr const char* kOtherNodePod =
    R"({"metadata":{"name":"cache-59d8f7b4c-q7w2x","namespace":)"
    R"("shop","uid":"u-cache","labels":{"app":"cache","pod-template-hash":"59d8f7b4c"},)"
    R"("ownerReferences":[{"kind":"ReplicaSet","name":"cache-59d8f7b4c","controller":true}]},)"
    R"("spec":{"nodeName":"node-other"},"status":{"phase":"Running","podIP":"10.244.9.9",)"
    R"("podIPs":[{"ip":"10.244.9.9"}]}})";
constexpr const char* kHostNetworkPod =
    R"({"metadata":{"name":"node-agent-4kz8q","namespace":)"
    R"("kube-system","uid":"u-ds","labels":{"controller-revision-hash":"6b5d","pod-template-)"
    R"(generation":"3"},"ownerReferences":[{"kind":"DaemonSet","name":"node-agent",)"
    R"("controller":true}]},"spec":{"nodeName":"node-a","hostNetwork":true},"status":{"phase":)"
    R"("Running","podIP":"192.168.0.10","podIPs":[{"ip":"192.168.0.10"}]}})";
constexpr const char* kDoneJobPod =
    R"({"metadata":{"name":"migrate-7q2vx","namespace":"shop",)"
    R"("labels":{"batch.kubernetes.io/job-name":"migrate","job-name":"migrate"},)"
    R"("ownerReferences":[{"kind":"Job","name":"migrate","controller":true}]},"spec":{)"
    R"("nodeName":"node-a"},"status":{"phase":"Succeeded","podIP":"10.244.1.9"}})";
constexpr const char* kReplicaSet =
    R"({"metadata":{"name":"web-7d4b9c6f5","namespace":"shop",)"
    R"("uid":"u-rs","resourceVersion":"4700","labels":{"app":"web","pod-template-hash":)"
    R"("7d4b9c6f5"},"ownerReferences":[{"apiVersion":"apps/v1","kind":"Deployment","name":)"
    R"("storefront","uid":"u-dep","controller":true,"blockOwnerDeletion":true}]},"spec":{)"
    R"("replicas":1},"status":{"replicas":1}})";
constexpr const char* kService =
    R"({"metadata":{"name":"db","namespace":"shop","uid":"u-svc",)"
    R"("resourceVersion":"4690"},"spec":{"type":"ClusterIP","clusterIP":"10.96.0.20",)"
    R"("clusterIPs":["10.96.0.20","fd00:96::20"],"ipFamilies":["IPv4","IPv6"],"ports":[{)"
    R"("port":5432,"protocol":"TCP"}],"selector":{"app":"db"}}})";
constexpr const char* kHeadless =
    R"({"metadata":{"name":"db-headless","namespace":"shop"},)"
    R"("spec":{"clusterIP":"None","clusterIPs":["None"],"selector":{"app":"db"}}})";
constexpr const char* kSlice =
    R"({"metadata":{"name":"db-x7k2p","namespace":"shop",)"
    R"("resourceVersion":"4713","labels":{"kubernetes.io/service-name":"db",)"
    R"("endpointslice.kubernetes.io/managed-by":"endpointslice-controller.k8s.io"}},)"
    R"("addressType":"IPv4","endpoints":[{"addresses":["10.244.1.7"],"conditions":{"ready":)"
    R"(true},"nodeName":"node-a","targetRef":{"kind":"Pod","namespace":"shop","name":"db-0",)"
    R"("uid":"u-db"}}],"ports":[{"name":"db","port":5432,"protocol":"TCP"}]})";
constexpr const char* kFqdnSlice =
    R"({"metadata":{"name":"ext-abcde","namespace":"shop",)"
    R"("labels":{"kubernetes.io/service-name":"ext"}},"addressType":"FQDN","endpoints":[{)"
    R"("addresses":["db.example.com"]}]})";

std::string KubeList(const char* kind, const char* api, const char* rv, const char* cont,
                     const std::vector<const char*>& items) {
  std::string out = std::string(R"({"kind":")") + kind + R"(","apiVersion":")" + api +
                    R"(","metadata":{"resourceVersion":")" + rv + "\"";
  if (*cont != '\0') out += std::string(R"(,"continue":")") + cont + R"(","remainingItemCount":7)";
  out += R"(},"items":[)";
  for (size_t i = 0; i < items.size(); i++) out += (i ? "," : "") + std::string(items[i]);
  return out + "]}";
}

std::string KubeEvent(const char* type, const std::string& object) {
  return std::string(R"({"type":")") + type + R"(","object":)" + object + "}";
}

std::vector<Seed> KubeSeeds() {
  const std::string lists =
      KubeLine(0, true,
               KubeList("PodList", "v1", "4720", "",
                        {kWebPod, kDbPod, kOtherNodePod, kHostNetworkPod, kDoneJobPod})) +
      KubeLine(1, true, KubeList("ReplicaSetList", "apps/v1", "4720", "", {kReplicaSet})) +
      KubeLine(2, true, KubeList("ServiceList", "v1", "4720", "", {kService, kHeadless})) +
      KubeLine(
          3, true,
          KubeList("EndpointSliceList", "discovery.k8s.io/v1", "4720", "", {kSlice, kFqdnSlice}));
  const std::string watch =
      KubeLine(0, false, KubeEvent("ADDED", kWebPod)) +
      KubeLine(0, false, KubeEvent("MODIFIED", kDbPod)) +
      KubeLine(1, false, KubeEvent("ADDED", kReplicaSet)) +
      KubeLine(2, false, KubeEvent("ADDED", kService)) +
      KubeLine(3, false, KubeEvent("ADDED", kSlice)) +
      KubeLine(0, false,
               KubeEvent("BOOKMARK", R"({"kind":"Pod","apiVersion":"v1","metadata":{)"
                                     R"("resourceVersion":"4730"}})")) +
      KubeLine(0, false, KubeEvent("DELETED", kDbPod)) +
      KubeLine(2, false,
               KubeEvent("ERROR", R"({"kind":"Status","apiVersion":"v1","metadata":{},"status":)"
                                  R"j("Failure","message":"too old resource version: 1 (4700)",)j"
                                  R"("reason":"Expired","code":410})"));
  const std::string paged =
      KubeLine(0, true,
               KubeList("PodList", "v1", "4720", "eyJ2IjoibWV0YS5rOHMuaW8vdjEifQ", {kWebPod})) +
      KubeLine(0, true, KubeList("PodList", "v1", "4720", "", {kOtherNodePod}));
  // The options byte: 3 is node "node-a" with labels "app" and "version" kept, 0 every pod local.
  return {{"cluster_lists", "\x03" + lists},
          {"watch_events", "\x01" + watch},
          {"paged_list", std::string(1, '\0') + paged}};
}

// fuzz_cri_info: containerd's verbose PodSandboxStatus "info" (cgroupfs and systemd drivers, a
// host-network sandbox without a network namespace), CRI-O's shape, and a regression input.
std::vector<Seed> CriSeeds() {
  return {
      {"containerd_cgroupfs",
       R"({"pid":4242,"processStatus":"running","netNamespaceClosed":false,"image":)"
       R"("registry.k8s.io/pause:3.9","snapshotKey":"abc","snapshotter":"overlayfs",)"
       R"("runtimeHandler":"","runtimeType":"io.containerd.runc.v2","runtimeOptions":null,)"
       R"("config":{"metadata":{"name":"web-7d4b9c6f5-x2x9z","uid":"u-web","namespace":"shop",)"
       R"("attempt":0},"hostname":"web-7d4b9c6f5-x2x9z","log_directory":"/var/log/pods/x",)"
       R"("labels":{"app":"web","io.kubernetes.pod.name":"web-7d4b9c6f5-x2x9z",)"
       R"("pod-template-hash":"7d4b9c6f5"},"linux":{"cgroup_parent":"/kubepods/besteffort/)"
       R"(podu-web"}},"runtimeSpec":{"ociVersion":"1.1.0","process":{"args":["/pause"]},)"
       R"("linux":{"cgroupsPath":"/kubepods/besteffort/podu-web/abc","namespaces":[{"type":)"
       R"("pid"},{"type":"ipc"},{"type":"uts"},{"type":"mount"},{"type":"network","path":)"
       R"("/var/run/netns/cni-0e5c"}]}}})"},
      {"containerd_systemd_hostnetwork",
       R"({"pid":917,"processStatus":"running","config":{"metadata":{"name":"node-agent-4kz8q"},)"
       R"("labels":{"controller-revision-hash":"6b5d","pod-template-generation":"3"}},)"
       R"("runtimeSpec":{"linux":{"cgroupsPath":"kubepods-burstable-podu_ds.slice:cri-)"
       R"(containerd:abc","namespaces":[{"type":"pid"},{"type":"ipc"},{"type":"mount"}]}}})"},
      {"crio",
       R"({"pid":3101,"runtimeSpec":{"linux":{"cgroupsPath":"kubepods-besteffort.slice:crio:x",)"
       R"("namespaces":[{"type":"network","path":"/var/run/netns/5c1e"}]}},"config":{)"
       R"("metadata":{"name":"db-0"},"labels":{"statefulset.kubernetes.io/pod-name":"db-0"}}})"},
      // The input that ended ParseSandboxInfo with an exception before the fix.
      {"namespace_type_not_string",
       R"({"runtimeSpec":{"linux":{"namespaces":[{"type":1,"path":"/x"},{"type":"network",)"
       R"("path":"/var/run/netns/cni-2"}]}}})"},
  };
}

void Write(const std::filesystem::path& dir, const std::vector<Seed>& seeds,
           const std::string& options) {
  std::filesystem::create_directories(dir);
  for (const auto& s : seeds) {
    std::ofstream(dir / s.name, std::ios::binary) << options << s.input;
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s <corpus dir>\n", argv[0]);
    return 2;
  }
  std::filesystem::path root = argv[1];
  // The connection targets read an options byte first; 0 is their defaults (at open, default
  // limits, an outbound connection for tcp_pipeline: the client is the pod).
  const std::string defaults(1, '\0');
  auto h1 = Http1Seeds();
  auto h2 = Http2Seeds();
  auto tls = TlsSeeds();
  Write(root / "http1", h1, defaults);
  Write(root / "http2", h2, defaults);
  Write(root / "tcp_pipeline", h1, defaults);
  Write(root / "tcp_pipeline", h2, std::string(1, '\1'));
  Write(root / "tcp_pipeline", tls, defaults);
  Write(root / "pods_json", PodsSeeds(), "");
  Write(root / "kube_objects", KubeSeeds(), "");
  Write(root / "cri_info", CriSeeds(), "");
  return 0;
}
