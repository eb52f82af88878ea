// Pods file parsing, its errors, label building and the socket -> pod index.
#include "agent/metadata/pods.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include "agent/metrics/pod_labels.h"

namespace podtap {
namespace {

uint32_t SelfNetnsIno() {
  struct stat st;
  EXPECT_EQ(stat("/proc/self/ns/net", &st), 0);
  return static_cast<uint32_t>(st.st_ino);
}

TEST(PodsFile, ParsesTheDocumentedShape) {
  std::string err;
  auto pods = ParsePodsJson(R"({"pods":[{"namespace":"shop","name":"api-5f7c9d8b6-abcde",
      "uid":"u1","labels":{"app":"api","pod-template-hash":"5f7c9d8b6"},
      "owner":{"kind":"ReplicaSet","name":"api-5f7c9d8b6"},"ips":["10.1.2.3","fd00::3"],
      "netns":"/proc/self/ns/net"}]})",
                            &err);
  ASSERT_TRUE(pods) << err;
  ASSERT_EQ(pods->size(), 1u);
  const PodMeta& p = *(*pods)[0];
  EXPECT_EQ(p.netns_ino, SelfNetnsIno());
  EXPECT_EQ(p.ips.size(), 2u);
  EXPECT_TRUE(p.ips[1].v6);
  PodIndex idx(*pods);
  EXPECT_EQ(idx.ForSocket(0, SelfNetnsIno()), &p);
  EXPECT_EQ(idx.ForSocket(0, 1), nullptr);
  EXPECT_EQ(idx.ForIp(p.ips[0]), &p);
}

TEST(PodsFile, ErrorsNameTheEntry) {
  struct Case {
    const char* json;
    const char* want;
  };
  for (const auto& c : {
           Case{"{", "not valid JSON"},
           Case{R"({"pod":[]})", "\"pods\" array"},
           Case{R"({"pods":[{"namespace":"a","netns":"/proc/self/ns/net"}]})", "pods[0]"},
           Case{R"({"pods":[{"name":"x","ips":["10.0.0.300"],"netns":"/proc/self/ns/net"}]})",
                "bad IP address"},
           Case{R"({"pods":[{"name":"x"}]})", "needs \"netns\" or \"cgroup\""},
           Case{R"({"pods":[{"name":"x","netns":"/nonexistent/ns"}]})", "cannot stat netns"},
           Case{R"({"pods":[{"name":"x","labels":{"a":1},"netns":"/proc/self/ns/net"}]})",
                "label \"a\" must be a string"},
       }) {
    std::string err;
    EXPECT_FALSE(ParsePodsJson(c.json, &err)) << c.json;
    EXPECT_NE(err.find(c.want), std::string::npos) << c.json << " -> " << err;
  }
}

TEST(PodLabels, CgroupKeyWinsOverNetns) {
  auto host_pod = std::make_shared<PodMeta>();
  host_pod->name = "node-exporter";
  host_pod->cgroup_id = 77;
  auto net_pod = std::make_shared<PodMeta>();
  net_pod->name = "api";
  net_pod->netns_ino = 5;
  PodIndex idx({host_pod, net_pod});
  EXPECT_EQ(idx.ForSocket(77, 5)->name, "node-exporter");
  EXPECT_EQ(idx.ForSocket(78, 5)->name, "api");
}

TEST(PodLabels, OwnersAndAllowedLabels) {
  PodMeta p;
  p.ns = "ns";
  p.name = "job-abc";
  p.owner_kind = "Job";
  p.owner_name = "nightly";
  p.labels = {{"app.kubernetes.io/name", "x"}, {"pod", "shadow"}, {"team", "a"}, {"9x", "y"}};
  Labels l = PodLabels(&p, {"app.kubernetes.io/name", "pod", "9x"});
  Labels want = {{"namespace", "ns"},
                 {"pod", "job-abc"},
                 {"k8s_job", "nightly"},
                 {"_9x", "y"},
                 {"app_kubernetes_io_name", "x"}};
  EXPECT_EQ(l, want);
}

TEST(PodLabels, AllowedLabelsNeverShadowRouteOrOverflowLabels) {
  // A pod label named like one podtap sets on some family would give that
  // family's series the label twice, and Prometheus refuses the whole scrape.
  PodMeta p;
  p.ns = "ns";
  p.name = "web-1";
  p.labels = {{"dst", "a"},   {"rt_route", "b"}, {"podtap_overflow", "c"},
              {"errno", "d"}, {"dst_pod", "e"},  {"team", "f"}};
  Labels l = PodLabels(&p, {"dst", "rt_route", "podtap_overflow", "errno", "dst_pod", "team"});
  Labels want = {{"namespace", "ns"}, {"pod", "web-1"}, {"team", "f"}};
  EXPECT_EQ(l, want);
}

TEST(PodLabels, ReplicaSetWithoutMatchingHashHasNoDeployment) {
  PodMeta p;
  p.name = "x";
  p.owner_kind = "ReplicaSet";
  p.owner_name = "standalone";
  Labels l = PodLabels(&p, {});
  for (const auto& [k, v] : l) EXPECT_NE(k, "deployment");
}

TEST(PodLabels, HostProcess) {
  Labels want = {{"namespace", ""}, {"pod", ""}, {"host_process", "true"}};
  EXPECT_EQ(PodLabels(nullptr, {}), want);
}

}  // namespace
}  // namespace podtap
