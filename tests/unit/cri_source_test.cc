// The CRI pod source against a fake runtime: the real generated RuntimeService
// served by an in-process gRPC server on a temporary unix socket; plus the
// info, cgroup path and owner helpers on their own.
#include "agent/metadata/cri_source.h"

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>

// CRI messages have fields named "linux", a macro in GNU C++ mode.
#undef linux
#include "cri.grpc.pb.h"

namespace podtap {
namespace {

namespace cri = runtime::v1;

uint64_t Inode(const std::string& path) {
  struct stat st;
  EXPECT_EQ(stat(path.c_str(), &st), 0) << path;
  return st.st_ino;
}

// containerd's verbose info document, as far as podtap reads it.
std::string ContainerdInfo(int64_t pid, const std::string& netns, const std::string& cgroups) {
  nlohmann::json ns = nlohmann::json::array({{{"type", "pid"}}, {{"type", "ipc"}}});
  if (!netns.empty()) ns.push_back({{"type", "network"}, {"path", netns}});
  return nlohmann::json{
      {"pid", pid},
      {"processStatus", "running"},
      {"runtimeSpec", {{"linux", {{"cgroupsPath", cgroups}, {"namespaces", ns}}}}}}
      .dump();
}

class FakeRuntime final : public cri::RuntimeService::Service {
 public:
  struct Sandbox {
    cri::PodSandboxStatus status;
    std::string info;
  };

  void Put(const std::string& id, const std::string& ns, const std::string& name,
           std::map<std::string, std::string> labels, const std::string& info,
           std::vector<std::string> ips = {}, cri::PodSandboxState state = cri::SANDBOX_READY,
           cri::NamespaceMode network = cri::POD) {
    Sandbox sb;
    sb.status.set_id(id);
    sb.status.mutable_metadata()->set_namespace_(ns);
    sb.status.mutable_metadata()->set_name(name);
    sb.status.mutable_metadata()->set_uid("uid-" + name);
    sb.status.set_state(state);
    sb.status.mutable_labels()->insert(labels.begin(), labels.end());
    sb.status.mutable_linux()->mutable_namespaces()->mutable_options()->set_network(network);
    for (size_t i = 0; i < ips.size(); ++i) {
      if (i == 0) {
        sb.status.mutable_network()->set_ip(ips[0]);
      } else {
        sb.status.mutable_network()->add_additional_ips()->set_ip(ips[i]);
      }
    }
    sb.info = info;
    std::lock_guard<std::mutex> lock(mu_);
    sandboxes_[id] = std::move(sb);
  }
  void Remove(const std::string& id) {
    std::lock_guard<std::mutex> lock(mu_);
    sandboxes_.erase(id);
  }

  std::atomic<int> list_calls{0};
  std::atomic<int> status_calls{0};
  std::atomic<int> list_delay_ms{0};
  std::atomic<bool> last_filter_ready{false};

  grpc::Status ListPodSandbox(grpc::ServerContext*, const cri::ListPodSandboxRequest* req,
                              cri::ListPodSandboxResponse* resp) override {
    list_calls++;
    if (int d = list_delay_ms.load()) std::this_thread::sleep_for(std::chrono::milliseconds(d));
    last_filter_ready = req->has_filter() && req->filter().has_state() &&
                        req->filter().state().state() == cri::SANDBOX_READY;
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& [id, sb] : sandboxes_) {
      if (req->filter().has_state() && sb.status.state() != req->filter().state().state()) {
        continue;
      }
      auto* item = resp->add_items();
      item->set_id(id);
      *item->mutable_metadata() = sb.status.metadata();
      item->set_state(sb.status.state());
      *item->mutable_labels() = sb.status.labels();
    }
    return grpc::Status::OK;
  }

  grpc::Status PodSandboxStatus(grpc::ServerContext*, const cri::PodSandboxStatusRequest* req,
                                cri::PodSandboxStatusResponse* resp) override {
    status_calls++;
    std::lock_guard<std::mutex> lock(mu_);
    auto it = sandboxes_.find(req->pod_sandbox_id());
    if (it == sandboxes_.end()) {
      return grpc::Status(grpc::StatusCode::NOT_FOUND, "no sandbox " + req->pod_sandbox_id());
    }
    *resp->mutable_status() = it->second.status;
    if (req->verbose()) (*resp->mutable_info())["info"] = it->second.info;
    return grpc::Status::OK;
  }

 private:
  std::mutex mu_;
  std::map<std::string, Sandbox> sandboxes_;
};

class CriSourceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/podtap-cri-test-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    socket_ = dir_ + "/runtime.sock";
  }
  void TearDown() override {
    StopServer();
    std::filesystem::remove_all(dir_);
  }
  void StartServer() {
    grpc::ServerBuilder b;
    b.AddListeningPort("unix://" + socket_, grpc::InsecureServerCredentials());
    b.RegisterService(&fake_);
    server_ = b.BuildAndStart();
    ASSERT_NE(server_, nullptr);
  }
  void StopServer() {
    if (!server_) return;
    server_->Shutdown(std::chrono::system_clock::now());
    server_->Wait();
    server_.reset();
    std::filesystem::remove(socket_);
  }
  static const PodMeta* Find(const PodList& pods, const std::string& name) {
    for (const auto& p : pods) {
      if (p->name == name) return p.get();
    }
    return nullptr;
  }

  std::string dir_;
  std::string socket_;
  FakeRuntime fake_;
  std::unique_ptr<grpc::Server> server_;
};

TEST_F(CriSourceTest, ReadySandboxesBecomePodsWithTheirKeys) {
  fake_.Put(
      "sb-api", "shop", "api-5f7c9d8b6-abcde", {{"app", "api"}, {"pod-template-hash", "5f7c9d8b6"}},
      ContainerdInfo(1, "/proc/self/ns/net", "/kubepods/pod1/sb-api"), {"10.1.2.3", "fd00::3"});
  fake_.Put("sb-old", "shop", "old-1", {}, ContainerdInfo(1, "/proc/self/ns/net", ""), {},
            cri::SANDBOX_NOTREADY);
  StartServer();
  CriPodSource src(socket_);
  PodListResult r = src.Poll();
  ASSERT_EQ(r.error, "");
  EXPECT_TRUE(fake_.last_filter_ready);
  ASSERT_TRUE(r.changed);
  ASSERT_EQ(r.pods.size(), 1u);
  const PodMeta& p = *r.pods[0];
  EXPECT_EQ(p.ns, "shop");
  EXPECT_EQ(p.name, "api-5f7c9d8b6-abcde");
  EXPECT_EQ(p.uid, "uid-api-5f7c9d8b6-abcde");
  EXPECT_EQ(p.labels.at("app"), "api");
  EXPECT_EQ(p.owner_kind, "ReplicaSet");
  EXPECT_EQ(p.owner_name, "api-5f7c9d8b6");
  EXPECT_EQ(p.netns_path, "/proc/self/ns/net");
  EXPECT_EQ(p.netns_ino, static_cast<uint32_t>(Inode("/proc/self/ns/net")));
  EXPECT_EQ(p.cgroup_id, 0u);
  ASSERT_EQ(p.ips.size(), 2u);
  EXPECT_FALSE(p.ips[0].v6);
  EXPECT_TRUE(p.ips[1].v6);
  PodIndex idx(r.pods);
  EXPECT_EQ(idx.ForSocket(0, p.netns_ino), &p);
  EXPECT_EQ(idx.ForIp(p.ips[0]), &p);
}

TEST_F(CriSourceTest, StatusIsAskedOnlyForNewSandboxes) {
  fake_.Put("sb-a", "shop", "a-1", {}, ContainerdInfo(1, "/proc/self/ns/net", ""));
  StartServer();
  CriPodSource src(socket_);
  ASSERT_TRUE(src.Poll().changed);
  EXPECT_EQ(fake_.status_calls, 1);

  PodListResult same = src.Poll();
  EXPECT_EQ(same.error, "");
  EXPECT_FALSE(same.changed);
  EXPECT_EQ(fake_.list_calls, 2);
  EXPECT_EQ(fake_.status_calls, 1);

  fake_.Put("sb-b", "shop", "b-1", {}, ContainerdInfo(getpid(), "", ""));
  PodListResult added = src.Poll();
  ASSERT_TRUE(added.changed);
  EXPECT_EQ(fake_.status_calls, 2);
  ASSERT_EQ(added.pods.size(), 2u);
  // No namespace path in the spec: the sandbox process' own namespace.
  const PodMeta* b = Find(added.pods, "b-1");
  ASSERT_NE(b, nullptr);
  EXPECT_EQ(b->netns_path, "/proc/" + std::to_string(getpid()) + "/ns/net");
  EXPECT_EQ(b->netns_ino, static_cast<uint32_t>(Inode("/proc/self/ns/net")));

  fake_.Remove("sb-a");
  PodListResult removed = src.Poll();
  ASSERT_TRUE(removed.changed);
  ASSERT_EQ(removed.pods.size(), 1u);
  EXPECT_EQ(removed.pods[0]->name, "b-1");
  EXPECT_EQ(fake_.status_calls, 2);
}

TEST_F(CriSourceTest, SandboxWithoutItsNamespaceYetIsRetried) {
  std::string ns_link = dir_ + "/netns";
  fake_.Put("sb-a", "shop", "a-1", {}, ContainerdInfo(0, ns_link, ""));
  StartServer();
  CriPodSource src(socket_);
  PodListResult first = src.Poll();
  EXPECT_EQ(first.error, "");
  EXPECT_TRUE(first.changed);  // the first list, even empty, is news
  EXPECT_TRUE(first.pods.empty());

  ASSERT_EQ(symlink("/proc/self/ns/net", ns_link.c_str()), 0);
  PodListResult second = src.Poll();
  ASSERT_TRUE(second.changed);
  ASSERT_EQ(second.pods.size(), 1u);
  EXPECT_EQ(second.pods[0]->netns_ino, static_cast<uint32_t>(Inode("/proc/self/ns/net")));
}

TEST_F(CriSourceTest, HostNetworkPodsAreMatchedByTheirContainersCgroups) {
  // A cgroup tree as kubelet lays it out (cgroupfs driver), in a temp dir.
  std::string pod_dir = dir_ + "/cg/kubepods/besteffort/poduid-node-agent-x7k2p";
  std::filesystem::create_directories(pod_dir + "/sb-h");
  std::filesystem::create_directories(pod_dir + "/ctr-1");
  fake_.Put("sb-h", "kube-system", "node-agent-x7k2p",
            {{"controller-revision-hash", "6d5f"}, {"pod-template-generation", "1"}},
            ContainerdInfo(1, "", "/kubepods/besteffort/poduid-node-agent-x7k2p/sb-h"),
            {"192.0.2.10"}, cri::SANDBOX_READY, cri::NODE);
  StartServer();
  CriPodSource src(socket_, std::chrono::milliseconds(1000), dir_ + "/cg");
  PodListResult r = src.Poll();
  ASSERT_EQ(r.error, "");
  ASSERT_EQ(r.pods.size(), 1u);
  const PodMeta& p = *r.pods[0];
  EXPECT_EQ(p.netns_ino, 0u);  // the host's namespace would claim every host socket
  EXPECT_TRUE(p.ips.empty());  // the node's address is not the pod's
  EXPECT_EQ(p.cgroup_path, pod_dir);
  EXPECT_EQ(p.cgroup_id, Inode(pod_dir));
  std::vector<uint64_t> want = {Inode(pod_dir + "/sb-h"), Inode(pod_dir + "/ctr-1")};
  std::sort(want.begin(), want.end());
  EXPECT_EQ(p.container_cgroup_ids, want);
  EXPECT_EQ(p.owner_kind, "DaemonSet");
  EXPECT_EQ(p.owner_name, "node-agent");
  PodIndex idx(r.pods);
  EXPECT_EQ(idx.ForSocket(Inode(pod_dir + "/ctr-1"), 0), &p);

  EXPECT_FALSE(src.Poll().changed);
  // A container started later is picked up by the next poll, no new status.
  std::filesystem::create_directories(pod_dir + "/ctr-2");
  PodListResult more = src.Poll();
  ASSERT_TRUE(more.changed);
  ASSERT_EQ(more.pods.size(), 1u);
  EXPECT_EQ(more.pods[0]->container_cgroup_ids.size(), 3u);
  EXPECT_EQ(PodIndex(more.pods).ForSocket(Inode(pod_dir + "/ctr-2"), 0), more.pods[0].get());
  EXPECT_EQ(fake_.status_calls, 1);
}

TEST_F(CriSourceTest, HostNetworkSandboxOutsideAPodCgroupKeepsItsOwn) {
  // No kubelet pod cgroup above the sandbox: its siblings are other pods'.
  std::filesystem::create_directories(dir_ + "/cg/k8s.io/sb-h");
  std::filesystem::create_directories(dir_ + "/cg/k8s.io/other-pods-container");
  fake_.Put("sb-h", "kube-system", "probe", {}, ContainerdInfo(1, "", "/k8s.io/sb-h"), {},
            cri::SANDBOX_READY, cri::NODE);
  StartServer();
  CriPodSource src(socket_, std::chrono::milliseconds(1000), dir_ + "/cg");
  PodListResult r = src.Poll();
  ASSERT_EQ(r.pods.size(), 1u);
  EXPECT_EQ(r.pods[0]->cgroup_id, Inode(dir_ + "/cg/k8s.io/sb-h"));
  EXPECT_TRUE(r.pods[0]->container_cgroup_ids.empty());
}

TEST_F(CriSourceTest, RuntimeDownIsAnErrorAndRecoveryIsAutomatic) {
  CriPodSource src(socket_);
  PodListResult missing = src.Poll();
  EXPECT_NE(missing.error.find(socket_), std::string::npos) << missing.error;
  EXPECT_NE(missing.error.find("does not exist"), std::string::npos) << missing.error;

  fake_.Put("sb-a", "shop", "a-1", {}, ContainerdInfo(1, "/proc/self/ns/net", ""));
  StartServer();
  PodListResult up = src.Poll();
  ASSERT_EQ(up.error, "");
  ASSERT_EQ(up.pods.size(), 1u);

  StopServer();
  PodListResult down = src.Poll();
  EXPECT_FALSE(down.error.empty());

  // The socket is back (a restarted runtime): the next poll reconnects, and
  // since the pods are the ones already known, nothing changed.
  StartServer();
  PodListResult back = src.Poll();
  EXPECT_EQ(back.error, "");
  EXPECT_FALSE(back.changed);
  EXPECT_EQ(fake_.status_calls, 1);
}

TEST_F(CriSourceTest, ASlowRuntimeHitsTheDeadline) {
  StartServer();
  fake_.list_delay_ms = 700;
  CriPodSource src(socket_, std::chrono::milliseconds(200));
  auto t0 = std::chrono::steady_clock::now();
  PodListResult r = src.Poll();
  auto took = std::chrono::steady_clock::now() - t0;
  EXPECT_NE(r.error.find("ListPodSandbox failed"), std::string::npos) << r.error;
  EXPECT_NE(r.error.find("code 4"), std::string::npos) << r.error;  // DEADLINE_EXCEEDED
  EXPECT_LT(took, std::chrono::milliseconds(600));
}

TEST(SandboxInfo, ReadsPidNetnsAndCgroupsPath) {
  std::string err;
  auto info = ParseSandboxInfo(ContainerdInfo(42, "/var/run/netns/cni-1", "/kubepods/p/x"), &err);
  ASSERT_TRUE(info) << err;
  EXPECT_EQ(info->pid, 42);
  EXPECT_EQ(info->netns_path, "/var/run/netns/cni-1");
  EXPECT_EQ(info->cgroups_path, "/kubepods/p/x");
  auto bare = ParseSandboxInfo("{}", &err);
  ASSERT_TRUE(bare);
  EXPECT_EQ(bare->pid, 0);
  EXPECT_EQ(bare->netns_path, "");
  EXPECT_FALSE(ParseSandboxInfo("[1]", &err));
  EXPECT_FALSE(ParseSandboxInfo("not json", &err));
}

// Found by fuzz_cri_info: a namespace whose "type" is not a string threw out
// of ParseSandboxInfo (nlohmann's value() with a string default) and would
// have ended the agent; such an entry is now skipped like any other type.
TEST(SandboxInfo, NamespaceTypeThatIsNotAStringIsSkipped) {
  std::string err;
  auto info = ParseSandboxInfo(
      R"({"runtimeSpec":{"linux":{"namespaces":[{"type":1,"path":"/x"},{"type":null},)"
      R"({"type":"network","path":"/var/run/netns/cni-2"}]}}})",
      &err);
  ASSERT_TRUE(info) << err;
  EXPECT_EQ(info->netns_path, "/var/run/netns/cni-2");
}

TEST(SandboxInfo, CgroupDirForBothDrivers) {
  EXPECT_EQ(CgroupDir("/sys/fs/cgroup", "/kubepods/besteffort/pod1/abc"),
            "/sys/fs/cgroup/kubepods/besteffort/pod1/abc");
  EXPECT_EQ(CgroupDir("/sys/fs/cgroup", "kubepods-besteffort-pod1.slice:cri-containerd:abc"),
            "/sys/fs/cgroup/kubepods.slice/kubepods-besteffort.slice/"
            "kubepods-besteffort-pod1.slice/cri-containerd-abc.scope");
  EXPECT_EQ(CgroupDir("/sys/fs/cgroup", "system.slice:crio:abc"),
            "/sys/fs/cgroup/system.slice/crio-abc.scope");
}

PodMeta Named(const std::string& name, std::map<std::string, std::string> labels) {
  PodMeta p;
  p.name = name;
  p.labels = std::move(labels);
  DeriveOwnerFromLabels(&p);
  return p;
}

TEST(Owner, FromControllerLabels) {
  struct Case {
    const char* name;
    std::map<std::string, std::string> labels;
    const char* kind;
    const char* owner;
  } cases[] = {
      {"web-7d4b9c6f5-x2k9p", {{"pod-template-hash", "7d4b9c6f5"}}, "ReplicaSet", "web-7d4b9c6f5"},
      // A hash that is not in the name: not guessed.
      {"web-abc-x2k9p", {{"pod-template-hash", "7d4b9c6f5"}}, "", ""},
      {"migrate-8xk2p", {{"batch.kubernetes.io/job-name", "migrate"}}, "Job", "migrate"},
      {"migrate-8xk2p", {{"job-name", "migrate"}}, "Job", "migrate"},
      {"db-2", {{"statefulset.kubernetes.io/pod-name", "db-2"}}, "StatefulSet", "db"},
      {"db-x", {{"statefulset.kubernetes.io/pod-name", "db-x"}}, "", ""},
      {"fluentd-4kq9z",
       {{"controller-revision-hash", "5c7d"}, {"pod-template-generation", "3"}},
       "DaemonSet",
       "fluentd"},
      {"bare", {{"app", "bare"}}, "", ""},
  };
  for (const auto& c : cases) {
    PodMeta p = Named(c.name, c.labels);
    EXPECT_EQ(p.owner_kind, c.kind) << c.name;
    EXPECT_EQ(p.owner_name, c.owner) << c.name;
  }
}

}  // namespace
}  // namespace podtap
