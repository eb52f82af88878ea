// Pod metadata: what a pod is (identity, owner, labels, addresses) and the
// keys that tie a socket to it (network namespace inode, cgroup id). Sources
// of pod metadata implement PodSource; this source is a JSON file.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "agent/kernel/tcp_event.h"

namespace podtap {

struct PodMeta {
  std::string uid;
  std::string ns;
  std::string name;
  std::map<std::string, std::string> labels;
  std::string owner_kind;  // ReplicaSet, StatefulSet, DaemonSet, Job, ...
  std::string owner_name;
  std::vector<IpAddr> ips;
  std::string netns_path;   // resolved to netns_ino
  std::string cgroup_path;  // resolved to cgroup_id (host-network pods)
  uint32_t netns_ino = 0;
  uint64_t cgroup_id = 0;
  // Host-network pods: the cgroups of the pod's containers (children of
  // cgroup_path), where their sockets are created.
  std::vector<uint64_t> container_cgroup_ids;
  // From the Kubernetes API: the Deployment owning owner_name (a ReplicaSet),
  // "" when none; unset: derived from the names (see pod_labels.cc).
  std::optional<std::string> deployment;
  // dst_service of this remote end: the Service whose ClusterIP or
  // EndpointSlice address it is. An entry with a service and no name is a
  // Service address, not a pod.
  std::string service;
  // With `service`: (destination port as connected, Service port) pairs
  // that give an outbound connection here the TCP authority label
  // SERVICE.NS.svc.CLUSTER_DOMAIN:SERVICE_PORT. Only the ports the Service
  // declares, so the label stays bounded.
  std::vector<std::pair<uint16_t, uint16_t>> authority_ports;
};

using PodList = std::vector<std::shared_ptr<const PodMeta>>;

// Outcome of asking a source for the current pods.
struct PodListResult {
  bool changed = false;  // false: keep the previous list
  PodList pods;
  std::string error;  // non-empty: the source failed; keep the previous list
  // What changed, one line per pod, for the log: written by the agent once the list is in use
  // (a pod named there is attributed from then on).
  std::vector<std::string> changes;
};

// Health of one metadata source, for the podtap_metadata_* self metrics.
struct MetadataSourceStatus {
  bool up = false;
  std::map<std::string, uint64_t> errors;          // reason -> count
  std::map<std::string, uint64_t> relists;         // resource -> lists after the first
  std::map<std::string, uint64_t> watch_restarts;  // resource -> watches resumed
  std::map<std::string, uint64_t> objects;         // resource -> objects held now
};

class PodSource {
 public:
  virtual ~PodSource() = default;
  virtual std::string Describe() const = 0;
  // Cheap when nothing changed; called from the event thread about once a second.
  virtual PodListResult Poll() = 0;
};

// Parses a pods file ({"pods":[...]}); errors name the offending pod entry.
// Network namespace and cgroup paths are resolved to inode / cgroup id here.
std::optional<PodList> ParsePodsJson(const std::string& text, std::string* error);

// Re-reads the file whenever its modification time or size changes.
class PodsFileSource : public PodSource {
 public:
  explicit PodsFileSource(std::string path);
  std::string Describe() const override;
  PodListResult Poll() override;

 private:
  std::string path_;
  int64_t mtime_ns_ = -1;
  int64_t size_ = -1;
};

// Lookup from socket keys to pods, rebuilt whenever the pod list changes.
class PodIndex {
 public:
  PodIndex() = default;
  explicit PodIndex(const PodList& pods);
  // The pod owning a socket: a cgroup match first (host-network pods share
  // the host's namespace), then the network namespace.
  const PodMeta* ForSocket(uint64_t cgroup_id, uint32_t netns_ino) const;
  const PodMeta* ForIp(const IpAddr& ip) const;
  // Paths of every pod network namespace, by inode.
  std::vector<std::pair<uint32_t, std::string>> Netns() const;
  size_t size() const { return pods_.size(); }
  const PodList& all() const { return pods_; }

 private:
  PodList pods_;
  std::unordered_map<uint64_t, const PodMeta*> by_cgroup_;
  std::unordered_map<uint32_t, const PodMeta*> by_netns_;
  std::map<std::array<uint8_t, 17>, const PodMeta*> by_ip_;
};

}  // namespace podtap
