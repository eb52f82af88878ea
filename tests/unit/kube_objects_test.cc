// Decoding of Kubernetes list and watch JSON, owner resolution and the merge
// of API pods with local pods into dst_* and owner labels.
#include "agent/metadata/kube_objects.h"

#include <gtest/gtest.h>

#include <algorithm>

#include "agent/metrics/pod_labels.h"

namespace podtap {
namespace {

IpAddr Ip(const char* s) { return *IpAddr::Parse(s); }

// A pod as the API serves it (fields podtap ignores included).
std::string PodJson(const std::string& ns, const std::string& name, const std::string& uid,
                    const std::string& owner_kind, const std::string& owner_name,
                    const std::string& ip, const std::string& node = "node-a",
                    const std::string& extra_labels = "") {
  std::string owner = owner_kind.empty()
                          ? ""
                          : R"(,"ownerReferences":[{"apiVersion":"apps/v1","kind":")" + owner_kind +
                                R"(","name":")" + owner_name +
                                R"(","uid":"o1","controller":true,"blockOwnerDeletion":true}])";
  return R"({"metadata":{"name":")" + name + R"(","namespace":")" + ns + R"(","uid":")" + uid +
         R"(","resourceVersion":"100","labels":{"app":"x")" + extra_labels + "}" + owner +
         R"(},"spec":{"nodeName":")" + node +
         R"(","containers":[{"name":"c","image":"busybox"}]},"status":{"phase":"Running",)"
         R"("podIP":")" +
         ip + R"(","podIPs":[{"ip":")" + ip + R"("}]}})";
}

KubePod DecodePodOrDie(const std::string& json, const KubeDecodeOptions& opts = {}) {
  std::string err;
  auto o = DecodeKubeObject(KubeResource::kPods, nlohmann::json::parse(json), opts, &err);
  EXPECT_TRUE(o) << err;
  return std::get<KubePod>(*o);
}

Labels Sorted(Labels l) {
  std::sort(l.begin(), l.end());
  return l;
}

TEST(KubeDecode, PodKeepsOnlyWhatPodtapUses) {
  KubeDecodeOptions opts{"node-a", {"app"}};
  KubePod p = DecodePodOrDie(
      PodJson("shop", "api-5f7c9d8b6-abcde", "u1", "ReplicaSet", "api-5f7c9d8b6", "10.1.2.3",
              "node-a", R"(,"pod-template-hash":"5f7c9d8b6","team":"t")"),
      opts);
  EXPECT_EQ(p.ns, "shop");
  EXPECT_EQ(p.name, "api-5f7c9d8b6-abcde");
  EXPECT_EQ(p.uid, "u1");
  EXPECT_EQ(p.node, "node-a");
  EXPECT_EQ(p.owner_kind, "ReplicaSet");
  EXPECT_EQ(p.owner_name, "api-5f7c9d8b6");
  EXPECT_EQ(p.labels,
            (std::map<std::string, std::string>{{"app", "x"}, {"pod-template-hash", "5f7c9d8b6"}}));
  ASSERT_EQ(p.ips.size(), 1u);  // podIP and podIPs name the same address once
  EXPECT_EQ(p.ips[0], Ip("10.1.2.3"));

  // Another node's pod: only pod-template-hash stays.
  KubePod remote = DecodePodOrDie(
      PodJson("shop", "r", "u2", "", "", "10.1.2.4", "node-b", R"(,"pod-template-hash":"h")"),
      opts);
  EXPECT_EQ(remote.labels, (std::map<std::string, std::string>{{"pod-template-hash", "h"}}));
}

TEST(KubeDecode, OnlyTheControllerReferenceIsTheOwner) {
  std::string err;
  auto o = DecodeKubeObject(KubeResource::kPods, nlohmann::json::parse(R"({"metadata":{
      "name":"p","namespace":"n","ownerReferences":[
        {"kind":"ConfigMap","name":"not-me"},
        {"kind":"StatefulSet","name":"db","controller":true}]}})"),
                            {}, &err);
  ASSERT_TRUE(o) << err;
  EXPECT_EQ(std::get<KubePod>(*o).owner_kind, "StatefulSet");
  EXPECT_EQ(std::get<KubePod>(*o).owner_name, "db");
}

TEST(KubeDecode, HostNetworkAndFinishedPodsNameNoAddress) {
  std::string err;
  auto host = DecodeKubeObject(KubeResource::kPods, nlohmann::json::parse(R"({
      "metadata":{"name":"h","namespace":"kube-system"},"spec":{"hostNetwork":true},
      "status":{"phase":"Running","podIP":"192.168.0.10"}})"),
                               {}, &err);
  ASSERT_TRUE(host) << err;
  EXPECT_TRUE(std::get<KubePod>(*host).ips.empty());
  auto done = DecodeKubeObject(KubeResource::kPods, nlohmann::json::parse(R"({
      "metadata":{"name":"j","namespace":"n"},"status":{"phase":"Succeeded","podIP":"10.0.0.9"}})"),
                               {}, &err);
  ASSERT_TRUE(done) << err;
  EXPECT_TRUE(std::get<KubePod>(*done).ips.empty());
}

TEST(KubeDecode, ServiceReplicaSetAndEndpointSlice) {
  std::string err;
  auto svc = DecodeKubeObject(KubeResource::kServices, nlohmann::json::parse(R"({
      "kind":"Service","metadata":{"name":"api","namespace":"shop"},
      "spec":{"clusterIP":"10.96.0.10","clusterIPs":["10.96.0.10","fd00:96::a"],
              "ports":[{"port":80}]}})"),
                              {}, &err);
  ASSERT_TRUE(svc) << err;
  EXPECT_EQ(std::get<KubeService>(*svc).cluster_ips,
            (std::vector<IpAddr>{Ip("10.96.0.10"), Ip("fd00:96::a")}));
  EXPECT_EQ(std::get<KubeService>(*svc).ports, (std::vector<KubePort>{{"", 80}}));
  auto multi = DecodeKubeObject(KubeResource::kServices, nlohmann::json::parse(R"({
      "metadata":{"name":"dns","namespace":"kube-system"},"spec":{"clusterIP":"10.96.0.53",
      "ports":[{"name":"dns","port":53,"protocol":"UDP","targetPort":53},
               {"name":"dns-tcp","port":53,"protocol":"TCP","targetPort":53},
               {"name":"metrics","port":9153,"protocol":"TCP","targetPort":9153}]}})"),
                                {}, &err);
  ASSERT_TRUE(multi) << err;
  EXPECT_EQ(std::get<KubeService>(*multi).ports,
            (std::vector<KubePort>{{"dns-tcp", 53}, {"metrics", 9153}}));
  auto headless = DecodeKubeObject(KubeResource::kServices, nlohmann::json::parse(R"({
      "metadata":{"name":"db","namespace":"shop"},"spec":{"clusterIP":"None",
      "clusterIPs":["None"]}})"),
                                   {}, &err);
  ASSERT_TRUE(headless) << err;
  EXPECT_TRUE(std::get<KubeService>(*headless).cluster_ips.empty());

  auto rs = DecodeKubeObject(KubeResource::kReplicaSets, nlohmann::json::parse(R"({
      "metadata":{"name":"api-5f7c9d8b6","namespace":"shop","ownerReferences":[
        {"apiVersion":"apps/v1","kind":"Deployment","name":"api","controller":true}]}})"),
                             {}, &err);
  ASSERT_TRUE(rs) << err;
  EXPECT_EQ(std::get<KubeReplicaSet>(*rs).deployment, "api");

  auto slice = DecodeKubeObject(KubeResource::kEndpointSlices, nlohmann::json::parse(R"({
      "metadata":{"name":"api-x7k2p","namespace":"shop",
                  "labels":{"kubernetes.io/service-name":"api"}},
      "addressType":"IPv4",
      "endpoints":[{"addresses":["10.1.2.3"],"conditions":{"ready":true},
                    "targetRef":{"kind":"Pod","name":"api-1","namespace":"shop"}},
                   {"addresses":["10.1.2.4"]}],
      "ports":[{"port":8080}]})"),
                                {}, &err);
  ASSERT_TRUE(slice) << err;
  EXPECT_EQ(std::get<KubeEndpointSlice>(*slice).service, "api");
  EXPECT_EQ(std::get<KubeEndpointSlice>(*slice).addresses,
            (std::vector<IpAddr>{Ip("10.1.2.3"), Ip("10.1.2.4")}));
  EXPECT_EQ(std::get<KubeEndpointSlice>(*slice).ports, (std::vector<KubePort>{{"", 8080}}));
}

TEST(KubeDecode, ListPage) {
  std::string err;
  std::string body = R"({"kind":"PodList","apiVersion":"v1","metadata":{"resourceVersion":"4711",
      "continue":"eyJ2IjoibWV0YS5rOHMuaW8vdjEifQ=="},"items":[)" +
                     PodJson("a", "p1", "u1", "", "", "10.0.0.1") + "," +
                     PodJson("b", "p2", "u2", "Job", "backup", "10.0.0.2") + "]}";
  auto page = DecodeKubeList(KubeResource::kPods, body, {}, &err);
  ASSERT_TRUE(page) << err;
  EXPECT_EQ(page->resource_version, "4711");
  EXPECT_EQ(page->continue_token, "eyJ2IjoibWV0YS5rOHMuaW8vdjEifQ==");
  ASSERT_EQ(page->items.size(), 2u);
  EXPECT_EQ(KubeObjectKey(page->items[1]), "b/p2");

  EXPECT_FALSE(DecodeKubeList(KubeResource::kPods, R"({"items":[]})", {}, &err));
  EXPECT_NE(err.find("resourceVersion"), std::string::npos) << err;
  EXPECT_FALSE(DecodeKubeList(KubeResource::kPods,
                              R"({"metadata":{"resourceVersion":"1"},"items":[{"metadata":{}}]})",
                              {}, &err));
  EXPECT_NE(err.find("item 0"), std::string::npos) << err;
  EXPECT_FALSE(DecodeKubeList(KubeResource::kPods, "{not json", {}, &err));
}

TEST(KubeDecode, WatchEvents) {
  std::string err;
  auto added = DecodeKubeWatchEvent(
      KubeResource::kPods,
      R"({"type":"ADDED","object":)" + PodJson("a", "p1", "u1", "", "", "10.0.0.1") + "}", {},
      &err);
  ASSERT_TRUE(added) << err;
  EXPECT_EQ(added->type, KubeWatchEvent::Type::kAdded);
  EXPECT_EQ(added->resource_version, "100");
  ASSERT_TRUE(added->object);

  auto bookmark = DecodeKubeWatchEvent(
      KubeResource::kPods,
      R"({"type":"BOOKMARK","object":{"kind":"Pod","apiVersion":"v1","metadata":{
          "resourceVersion":"12746","annotations":{"k8s.io/initial-events-end":"true"}}}})",
      {}, &err);
  ASSERT_TRUE(bookmark) << err;
  EXPECT_EQ(bookmark->type, KubeWatchEvent::Type::kBookmark);
  EXPECT_EQ(bookmark->resource_version, "12746");
  EXPECT_FALSE(bookmark->object);

  auto gone = DecodeKubeWatchEvent(
      KubeResource::kPods,
      R"j({"type":"ERROR","object":{"kind":"Status","apiVersion":"v1","metadata":{},
          "status":"Failure","message":"too old resource version: 5 (4711)",
          "reason":"Expired","code":410}})j",
      {}, &err);
  ASSERT_TRUE(gone) << err;
  EXPECT_EQ(gone->type, KubeWatchEvent::Type::kError);
  EXPECT_EQ(gone->error_code, 410);
  EXPECT_EQ(gone->error_message, "too old resource version: 5 (4711)");

  EXPECT_FALSE(
      DecodeKubeWatchEvent(KubeResource::kPods, R"({"type":"SYNC","object":{}})", {}, &err));
  EXPECT_NE(err.find("SYNC"), std::string::npos) << err;
  EXPECT_FALSE(
      DecodeKubeWatchEvent(KubeResource::kPods, R"({"type":"ADDED","object":{"met)", {}, &err));
  EXPECT_FALSE(
      DecodeKubeWatchEvent(KubeResource::kPods, R"({"type":"BOOKMARK","object":{}})", {}, &err));
}

TEST(KubeCache, UpsertEraseReplace) {
  KubeCache c;
  c.Upsert(KubePod{"a", "p1", "u1", "", {}, "", "", {}});
  c.Upsert(KubePod{"a", "p1", "u1b", "", {}, "", "", {}});  // MODIFIED
  c.Upsert(KubeService{"a", "s", {}, {}});
  EXPECT_EQ(c.Count(KubeResource::kPods), 1u);
  EXPECT_EQ(c.pods.at("a/p1").uid, "u1b");
  c.Erase(KubePod{"a", "p1", "", "", {}, "", "", {}});
  EXPECT_EQ(c.Count(KubeResource::kPods), 0u);
  EXPECT_EQ(c.Count(KubeResource::kServices), 1u);
  std::vector<KubeObject> fresh = {KubeService{"b", "t", {}, {}}, KubeService{"b", "u", {}, {}}};
  c.Replace(KubeResource::kServices, std::move(fresh));
  EXPECT_EQ(c.Count(KubeResource::kServices), 2u);
  EXPECT_FALSE(c.services.contains("a/s"));
}

// The cache a small cluster gives: this node's pods (web, db-0) and other
// nodes' (api via a Deployment, a DaemonSet, a Job, an RC, a bare pod), a
// Service with a ClusterIP, and EndpointSlices.
KubeCache Cluster() {
  KubeCache c;
  auto pod = [&](const std::string& name, const std::string& uid, const std::string& kind,
                 const std::string& owner, const char* ip, const std::string& hash = "") {
    KubePod p{"shop", name, uid, "", {}, kind, owner, {Ip(ip)}};
    if (!hash.empty()) p.labels["pod-template-hash"] = hash;
    c.Upsert(p);
  };
  pod("web-7d4b9c6f5-x2k9p", "uid-web", "ReplicaSet", "web-7d4b9c6f5", "10.1.0.1", "7d4b9c6f5");
  pod("db-0", "uid-db", "StatefulSet", "db", "10.1.0.2");
  pod("api-5f7c9d8b6-abcde", "uid-api", "ReplicaSet", "api-5f7c9d8b6", "10.2.0.1", "5f7c9d8b6");
  pod("legacy-abc12-zzzzz", "uid-legacy", "ReplicaSet", "legacy-abc12", "10.2.0.2", "abc12");
  pod("agent-q8x7z", "uid-ds", "DaemonSet", "agent", "10.2.0.3");
  pod("backup-28193-k2j4h", "uid-job", "Job", "backup-28193", "10.2.0.4");
  pod("old-rc-h5k2d", "uid-rc", "ReplicationController", "old-rc", "10.2.0.5");
  pod("bare", "uid-bare", "", "", "10.2.0.6");
  c.Upsert(KubeReplicaSet{"shop", "web-7d4b9c6f5", "web"});
  c.Upsert(KubeReplicaSet{"shop", "api-5f7c9d8b6", "api"});
  c.Upsert(KubeReplicaSet{"shop", "legacy-abc12", ""});  // created by hand, no Deployment
  // Service port 80 ("http") is served on the pods' port 8080; 9090 ("admin") on 9090.
  c.Upsert(KubeService{"shop", "api", {Ip("10.96.0.10")}, {{"http", 80}, {"admin", 9090}}});
  c.Upsert(KubeEndpointSlice{"shop", "api-x1", "api", {Ip("10.2.0.1")}, {{"http", 8080}}});
  // A Service without selector: its slice, written by hand, names no known Service object.
  c.Upsert(KubeEndpointSlice{"shop", "ext-1", "payments", {Ip("192.0.2.7")}, {{"", 5432}}});
  // 10.2.0.3 backs two Services: no single dst_service.
  c.Upsert(KubeEndpointSlice{"shop", "m-1", "metrics", {Ip("10.2.0.3")}, {}});
  c.Upsert(KubeEndpointSlice{"shop", "n-1", "node-exporter", {Ip("10.2.0.3")}, {}});
  return c;
}

Labels DstOf(const PodIndex& idx, const char* ip) {
  const PodMeta* m = idx.ForIp(Ip(ip));
  EXPECT_NE(m, nullptr) << ip;
  return m == nullptr ? Labels{} : Sorted(DstPodLabels(*m));
}

TEST(KubeMerge, DstLabelsForPodsAndServices) {
  PodList merged = MergeKubePods({}, Cluster());
  PodIndex idx(merged);
  EXPECT_EQ(DstOf(idx, "10.2.0.1"), Sorted({{"dst_namespace", "shop"},
                                            {"dst_pod", "api-5f7c9d8b6-abcde"},
                                            {"dst_pod_template_hash", "5f7c9d8b6"},
                                            {"dst_deployment", "api"},
                                            {"dst_replicaset", "api-5f7c9d8b6"},
                                            {"dst_service", "api"}}));
  // The ReplicaSet object says it has no Deployment, whatever its name says.
  EXPECT_EQ(DstOf(idx, "10.2.0.2"), Sorted({{"dst_namespace", "shop"},
                                            {"dst_pod", "legacy-abc12-zzzzz"},
                                            {"dst_pod_template_hash", "abc12"},
                                            {"dst_replicaset", "legacy-abc12"}}));
  EXPECT_EQ(
      DstOf(idx, "10.2.0.3"),
      Sorted({{"dst_namespace", "shop"}, {"dst_pod", "agent-q8x7z"}, {"dst_daemonset", "agent"}}));
  EXPECT_EQ(DstOf(idx, "10.2.0.4"), Sorted({{"dst_namespace", "shop"},
                                            {"dst_pod", "backup-28193-k2j4h"},
                                            {"dst_k8s_job", "backup-28193"}}));
  EXPECT_EQ(DstOf(idx, "10.2.0.5"), Sorted({{"dst_namespace", "shop"},
                                            {"dst_pod", "old-rc-h5k2d"},
                                            {"dst_replicationcontroller", "old-rc"}}));
  EXPECT_EQ(DstOf(idx, "10.2.0.6"), Sorted({{"dst_namespace", "shop"}, {"dst_pod", "bare"}}));
  EXPECT_EQ(DstOf(idx, "10.1.0.2"),
            Sorted({{"dst_namespace", "shop"}, {"dst_pod", "db-0"}, {"dst_statefulset", "db"}}));
  EXPECT_EQ(DstOf(idx, "10.96.0.10"), Sorted({{"dst_namespace", "shop"}, {"dst_service", "api"}}));
  EXPECT_EQ(DstOf(idx, "192.0.2.7"),
            Sorted({{"dst_namespace", "shop"}, {"dst_service", "payments"}}));
  EXPECT_EQ(idx.ForIp(Ip("10.9.9.9")), nullptr);
  // Remote ends never match a socket.
  EXPECT_TRUE(idx.Netns().empty());
}

std::string AuthorityOf(const PodIndex& idx, const char* ip, uint16_t port) {
  return ServiceAuthority(idx.ForIp(Ip(ip)), port, "cluster.local");
}

TEST(KubeMerge, TcpAuthorityOfServiceAddresses) {
  PodList merged = MergeKubePods({}, Cluster());
  PodIndex idx(merged);
  // The ClusterIP, on each port its Service declares, and nothing else.
  EXPECT_EQ(AuthorityOf(idx, "10.96.0.10", 80), "api.shop.svc.cluster.local:80");
  EXPECT_EQ(AuthorityOf(idx, "10.96.0.10", 9090), "api.shop.svc.cluster.local:9090");
  EXPECT_EQ(AuthorityOf(idx, "10.96.0.10", 8080), "");
  // An endpoint of the Service: its port 8080 serves the Service's port 80 ("http").
  EXPECT_EQ(AuthorityOf(idx, "10.2.0.1", 8080), "api.shop.svc.cluster.local:80");
  EXPECT_EQ(AuthorityOf(idx, "10.2.0.1", 80), "");
  EXPECT_EQ(ServiceAuthority(idx.ForIp(Ip("10.2.0.1")), 8080, "corp.example"),
            "api.shop.svc.corp.example:80");
  // No Service object for the slice, or two Services for one address: no authority.
  EXPECT_EQ(AuthorityOf(idx, "192.0.2.7", 5432), "");
  EXPECT_EQ(AuthorityOf(idx, "10.2.0.3", 9100), "");
  // A pod no Service selects, and no remote end at all.
  EXPECT_EQ(AuthorityOf(idx, "10.2.0.6", 80), "");
  EXPECT_EQ(AuthorityOf(idx, "10.9.9.9", 80), "");
}

TEST(KubeMerge, LocalPodsAreEnrichedByUidThenName) {
  auto web = std::make_shared<PodMeta>();  // as CRI reports it: no owner reference
  web->uid = "uid-web";
  web->ns = "shop";
  web->name = "web-7d4b9c6f5-x2k9p";
  web->netns_ino = 4026532000;
  web->ips = {Ip("10.1.0.1")};
  auto db = std::make_shared<PodMeta>();  // a pods file entry without uid or IPs
  db->ns = "shop";
  db->name = "db-0";
  db->netns_ino = 4026532001;
  auto stranger = std::make_shared<PodMeta>();  // not (yet) known to the API
  stranger->ns = "shop";
  stranger->name = "new-pod";
  stranger->netns_ino = 4026532002;
  PodList merged = MergeKubePods({web, db, stranger}, Cluster());
  PodIndex idx(merged);

  const PodMeta* w = idx.ForSocket(0, 4026532000);
  ASSERT_NE(w, nullptr);
  EXPECT_EQ(Sorted(PodLabels(w, {})), Sorted({{"namespace", "shop"},
                                              {"pod", "web-7d4b9c6f5-x2k9p"},
                                              {"pod_template_hash", "7d4b9c6f5"},
                                              {"deployment", "web"},
                                              {"replicaset", "web-7d4b9c6f5"}}));
  const PodMeta* d = idx.ForSocket(0, 4026532001);
  ASSERT_NE(d, nullptr);
  EXPECT_EQ(Sorted(PodLabels(d, {})),
            Sorted({{"namespace", "shop"}, {"pod", "db-0"}, {"statefulset", "db"}}));
  EXPECT_EQ(idx.ForIp(Ip("10.1.0.2")), d);  // the API's IP, on the local entry
  const PodMeta* s = idx.ForSocket(0, 4026532002);
  ASSERT_NE(s, nullptr);
  EXPECT_EQ(Sorted(PodLabels(s, {})), Sorted({{"namespace", "shop"}, {"pod", "new-pod"}}));
  // Matched API pods are not listed twice.
  EXPECT_EQ(std::count_if(merged.begin(), merged.end(),
                          [](const auto& p) { return p->name == "web-7d4b9c6f5-x2k9p"; }),
            1);
}

}  // namespace
}  // namespace podtap
