// Pod metadata from the node's container runtime over the CRI gRPC API
// (containerd, CRI-O): ready pod sandboxes, their identity, labels, IPs and
// the network namespace (or, for host-network pods, cgroup) their sockets
// carry.
#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "agent/pods.h"

namespace podtap {

// The runtime sockets tried, in order, when no socket is named.
inline const std::vector<std::string>& DefaultCriSockets() {
  static const std::vector<std::string> sockets = {"/run/containerd/containerd.sock",
                                                   "/var/run/crio/crio.sock"};
  return sockets;
}

// What a sandbox's verbose status "info" JSON says about where it runs.
struct SandboxRuntimeInfo {
  int64_t pid = 0;
  std::string netns_path;    // the network namespace the spec names; empty for host network
  std::string cgroups_path;  // the OCI spec's linux.cgroupsPath
};

// Reads containerd's / CRI-O's info document ({"pid":..,"runtimeSpec":{"linux":
// {"namespaces":[{"type":"network","path":..}],"cgroupsPath":..}}}). Missing
// fields stay empty; an error only when the text is not a JSON object.
std::optional<SandboxRuntimeInfo> ParseSandboxInfo(const std::string& json, std::string* error);

// The cgroup v2 directory of an OCI cgroupsPath: "/a/b" (cgroupfs driver) or
// "slice:prefix:name" (systemd driver, expanded to nested slices), under
// `root` (the cgroup v2 mount).
std::string CgroupDir(const std::string& root, const std::string& cgroups_path);

// Owner from the labels the Kubernetes controllers put on their pods, since
// CRI carries no owner references: "pod-template-hash" -> ReplicaSet
// "<name minus its last segment>" when that ends in the hash; Job from
// "batch.kubernetes.io/job-name" / "job-name"; StatefulSet from
// "statefulset.kubernetes.io/pod-name" (name minus "-<ordinal>"); DaemonSet from
// "pod-template-generation" + "controller-revision-hash" (name minus its last
// segment). Anything else stays without an owner.
void DeriveOwnerFromLabels(PodMeta* pod);

class CriPodSource : public PodSource {
 public:
  // `socket`: the runtime's unix socket; empty: the first of
  // DefaultCriSockets() that exists, chosen again while none answers.
  // `cgroup_root`: the cgroup v2 mount; empty: the host's.
  explicit CriPodSource(std::string socket,
                        std::chrono::milliseconds deadline = std::chrono::milliseconds(1000),
                        std::string cgroup_root = "");
  ~CriPodSource() override;
  std::string Describe() const override;
  // One ListPodSandbox per call, one PodSandboxStatus per sandbox not seen
  // before, and a read of the pod cgroup of each host-network pod (containers
  // come and go); an error when the runtime cannot be reached (the agent
  // keeps the last list) and a fresh connection on the next call.
  PodListResult Poll() override;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace podtap
