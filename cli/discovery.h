// Where podtap's agents are, from the Kubernetes API: the pods of its
// DaemonSet (found by label in its namespace), each asked at its pod IP and
// the port of its container port named "query" (the agent's --query-listen).
#pragma once

#include <string>
#include <vector>

#include "agent/metadata/kube_config.h"

namespace podtap {

struct AgentTarget {
  std::string node;     // the pod's spec.nodeName
  std::string pod;      // namespace/name
  std::string address;  // "ip:port"; empty when it cannot be asked
  std::string error;    // why not: not running, no IP, no query port
};

// The agents of a PodList (JSON), by node name; only `node`'s when it is not
// empty. False with `error` set for a body that is not a PodList.
bool AgentsOfPodList(const std::string& body, const std::string& node,
                     std::vector<AgentTarget>* out, std::string* error);

// Lists the pods labelled `selector` in `ns` through the API (one GET,
// bounded by `timeout_s`) and returns AgentsOfPodList's answer.
bool FindAgents(const KubeConfig& config, const std::string& ns, const std::string& selector,
                const std::string& node, double timeout_s, std::vector<AgentTarget>* out,
                std::string* error);

}  // namespace podtap
