// Pods found from processes when the container runtime cannot be reached:
// kubelet runs every pod's containers under a cgroup named for the pod's uid,
// so a process's cgroup path gives its pod uid (and container id), and its
// /proc/PID/ns/net the pod's network namespace. Names, labels and owners are
// not in /proc: the Kubernetes API supplies them by uid (MergeKubePods).
#pragma once

#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "agent/metadata/pods.h"

namespace podtap {

struct KubeletCgroup {
  std::string pod_uid;
  std::string container_id;  // empty: the pod's own cgroup
};

// A cgroup path kubelet made, with the cgroupfs driver
// (".../kubepods/besteffort/pod<uid>/<container id>") or the systemd driver
// (".../kubepods-besteffort-pod<uid with _ for ->.slice/cri-containerd-<id>.scope");
// nullopt for any other path.
std::optional<KubeletCgroup> ParseKubeletCgroup(std::string_view path);

class ProcPodSource : public PodSource {
 public:
  // `proc_root`: /proc; `cgroup_root`: the cgroup v2 mount ("" : the host's).
  // The host's network namespace is the agent's own (`proc_root`/self).
  explicit ProcPodSource(std::string proc_root = "/proc", std::string cgroup_root = "");
  std::string Describe() const override;
  // One pod per uid seen in a process's cgroup, with no name (the API names
  // it): its network namespace, or for a pod in the host's namespace the
  // cgroup ids of its containers. Changed only when that set changed.
  PodListResult Poll() override;

 private:
  std::string proc_root_;
  std::string cgroup_root_;
  struct Found {
    uint32_t netns_ino = 0;
    std::string netns_path;  // /proc/PID/ns/net of a process in it
    std::vector<uint64_t> container_cgroup_ids;
    bool operator==(const Found& o) const {
      return netns_ino == o.netns_ino && container_cgroup_ids == o.container_cgroup_ids;
    }
  };
  std::map<std::string, Found> last_;  // by pod uid, as last reported
  bool reported_ = false;
};

}  // namespace podtap
