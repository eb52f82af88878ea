// What the container runtime says about a pod sandbox, decoded: its verbose
// status "info" JSON (containerd, CRI-O), the cgroup directory of its OCI
// cgroups path, and its owner from the labels the controllers set.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "agent/metadata/pods.h"

namespace podtap {

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

}  // namespace podtap
