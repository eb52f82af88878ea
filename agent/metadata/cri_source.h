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

#include "agent/metadata/cri_info.h"
#include "agent/metadata/pods.h"

namespace podtap {

// The runtime sockets tried, in order, when no socket is named.
inline const std::vector<std::string>& DefaultCriSockets() {
  static const std::vector<std::string> sockets = {"/run/containerd/containerd.sock",
                                                   "/var/run/crio/crio.sock"};
  return sockets;
}

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
