// Pods from /proc: kubelet cgroup paths, a fake /proc tree, and the merge
// that names them from the Kubernetes API.
#include "agent/metadata/proc_pods.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>

#include "agent/metadata/kube_objects.h"
#include "agent/metrics/pod_labels.h"

namespace podtap {
namespace {

namespace fs = std::filesystem;

constexpr const char* kUid = "1f2e3d4c-5b6a-4978-8a9b-0c1d2e3f4a5b";
constexpr const char* kUid2 = "aaaabbbb-cccc-4ddd-8eee-ffff00001111";
const std::string kCid(64, 'c');

TEST(KubeletCgroup, CgroupfsAndSystemdDrivers) {
  auto a = ParseKubeletCgroup(std::string("/kubepods/besteffort/pod") + kUid + "/" + kCid);
  ASSERT_TRUE(a);
  EXPECT_EQ(a->pod_uid, kUid);
  EXPECT_EQ(a->container_id, kCid);
  auto b = ParseKubeletCgroup(
      "/kubepods.slice/kubepods-burstable.slice/"
      "kubepods-burstable-pod1f2e3d4c_5b6a_4978_8a9b_0c1d2e3f4a5b.slice/cri-containerd-" +
      kCid + ".scope");
  ASSERT_TRUE(b);
  EXPECT_EQ(b->pod_uid, kUid);
  EXPECT_EQ(b->container_id, kCid);
  auto pod_only = ParseKubeletCgroup(std::string("/kubepods/pod") + kUid);
  ASSERT_TRUE(pod_only);
  EXPECT_EQ(pod_only->container_id, "");
  EXPECT_FALSE(ParseKubeletCgroup("/system.slice/containerd.service"));
  EXPECT_FALSE(ParseKubeletCgroup("/user.slice/pod-not-a-uid"));
  EXPECT_FALSE(ParseKubeletCgroup("/kubepods/besteffort/podnot-a-uid/" + kCid));
}

// proc/<pid>/{cgroup,ns/net}: ns/net are plain files, so each has an inode
// of its own, and a hard link shares one (the host's namespace).
class FakeProc : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/podtap-proc-XXXXXX";
    root_ = mkdtemp(tmpl);
    Process("self", "0::/system.slice/podtap.service\n", "");  // the agent: the host's netns
  }
  void TearDown() override { fs::remove_all(root_); }

  // `netns_of`: "" a namespace of its own; a pid: share that process's.
  void Process(const std::string& pid, const std::string& cgroup, const std::string& netns_of) {
    std::string dir = root_ + "/proc/" + pid;
    fs::create_directories(dir + "/ns");
    std::ofstream(dir + "/cgroup") << "12:memory:/v1/ignored\n" << cgroup;
    if (netns_of.empty()) {
      std::ofstream(dir + "/ns/net") << "";
    } else {
      fs::create_hard_link(root_ + "/proc/" + netns_of + "/ns/net", dir + "/ns/net");
    }
  }
  uint64_t Inode(const std::string& path) {
    struct stat st;
    EXPECT_EQ(stat(path.c_str(), &st), 0) << path;
    return st.st_ino;
  }
  std::string root_;
};

TEST_F(FakeProc, PodsByUidWithTheirNamespaceOrContainerCgroups) {
  const std::string pod_path = std::string("/kubepods/besteffort/pod") + kUid;
  Process("100", "0::" + pod_path + "/" + std::string(64, 'a') + "\n", "");  // the sandbox
  Process("101", "0::" + pod_path + "/" + kCid + "\n", "100");               // a container
  // A host-network pod: the host's namespace, told apart by container cgroup.
  const std::string host_pod = std::string("/kubepods/pod") + kUid2 + "/" + kCid;
  fs::create_directories(root_ + "/cg" + host_pod);
  Process("200", "0::" + host_pod + "\n", "self");
  Process("300", "0::/system.slice/sshd.service\n", "self");  // not a pod

  ProcPodSource src(root_ + "/proc", root_ + "/cg");
  PodListResult r = src.Poll();
  ASSERT_EQ(r.error, "");
  ASSERT_TRUE(r.changed);
  ASSERT_EQ(r.pods.size(), 2u);
  const PodMeta& netns_pod = *r.pods[0];  // ordered by uid
  EXPECT_EQ(netns_pod.uid, kUid);
  EXPECT_EQ(netns_pod.name, "");
  EXPECT_EQ(netns_pod.netns_ino, static_cast<uint32_t>(Inode(root_ + "/proc/100/ns/net")));
  EXPECT_TRUE(netns_pod.container_cgroup_ids.empty());
  const PodMeta& host = *r.pods[1];
  EXPECT_EQ(host.uid, kUid2);
  EXPECT_EQ(host.netns_ino, 0u);
  EXPECT_EQ(host.container_cgroup_ids, std::vector<uint64_t>{Inode(root_ + "/cg" + host_pod)});

  EXPECT_FALSE(src.Poll().changed);  // nothing moved
  fs::remove_all(root_ + "/proc/200");
  r = src.Poll();
  ASSERT_TRUE(r.changed);
  EXPECT_EQ(r.pods.size(), 1u);

  EXPECT_NE(ProcPodSource(root_ + "/nothing", root_).Poll().error, "");
}

TEST(KubeMerge, ProcPodsAreNamedByTheirApiPod) {
  auto found = std::make_shared<PodMeta>();
  found->uid = kUid;
  found->netns_ino = 4026532100;
  auto unknown = std::make_shared<PodMeta>();
  unknown->uid = kUid2;
  unknown->netns_ino = 4026532101;
  KubeCache cache;
  cache.Upsert(KubePod{"shop", "db-0", kUid, "", {}, "StatefulSet", "db", {}});
  PodList merged = MergeKubePods({found, unknown}, cache);
  PodIndex idx(merged);
  const PodMeta* p = idx.ForSocket(0, 4026532100);
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(PodLabels(p, {}),
            (Labels{{"namespace", "shop"}, {"pod", "db-0"}, {"statefulset", "db"}}));
  EXPECT_EQ(idx.ForSocket(0, 4026532101), nullptr);  // nobody's: a host process
}

}  // namespace
}  // namespace podtap
