// Label set construction for pods; runs once per connection, never per event.
#include "agent/metrics/pod_labels.h"

#include <algorithm>

#include "agent/metrics/metric_families.h"

namespace podtap {
namespace {

constexpr const char* kTemplateHashLabel = "pod-template-hash";

// Names podtap itself sets; a pod label sanitised to one of these is dropped
// rather than allowed to shadow it.
const std::set<std::string>& ReservedNames() {
  static const std::set<std::string> names = {
      kLabelDirection, kLabelPeer, kLabelClassification, kLabelError, "namespace", "pod",
      "pod_template_hash", "deployment", "replicaset", "statefulset", "daemonset", "k8s_job",
      "replicationcontroller", "host_process", kLabelAuthority, kLabelTls, kLabelStatusCode,
      kLabelGrpcStatusCode, "le",
      // route_* series and the overflow series
      kLabelDst, kLabelRoute, kLabelOverflow,
      // tcp_close_total of a failed connection
      kLabelErrno};
  return names;
}

// Owner labels in Linkerd's naming. A ReplicaSet whose name is
// "<deployment>-<pod-template-hash>" also names its Deployment.
void AddOwner(const PodMeta& pod, const std::string& prefix, Labels* out) {
  const std::string& kind = pod.owner_kind;
  const std::string& name = pod.owner_name;
  if (name.empty()) return;
  if (kind == "ReplicaSet" && pod.deployment) {
    if (!pod.deployment->empty()) out->emplace_back(prefix + "deployment", *pod.deployment);
    out->emplace_back(prefix + "replicaset", name);
  } else if (kind == "ReplicaSet") {
    auto hash = pod.labels.find(kTemplateHashLabel);
    if (hash != pod.labels.end() && name.size() > hash->second.size() + 1 &&
        name.ends_with("-" + hash->second)) {
      out->emplace_back(prefix + "deployment",
                        name.substr(0, name.size() - hash->second.size() - 1));
    }
    out->emplace_back(prefix + "replicaset", name);
  } else if (kind == "StatefulSet") {
    out->emplace_back(prefix + "statefulset", name);
  } else if (kind == "DaemonSet") {
    out->emplace_back(prefix + "daemonset", name);
  } else if (kind == "Job") {
    out->emplace_back(prefix + "k8s_job", name);
  } else if (kind == "ReplicationController") {
    out->emplace_back(prefix + "replicationcontroller", name);
  }
}

void AddIdentity(const PodMeta& pod, const std::string& prefix, Labels* out) {
  out->emplace_back(prefix + "namespace", pod.ns);
  out->emplace_back(prefix + "pod", pod.name);
  if (auto hash = pod.labels.find(kTemplateHashLabel); hash != pod.labels.end()) {
    out->emplace_back(prefix + "pod_template_hash", hash->second);
  }
  AddOwner(pod, prefix, out);
}

}  // namespace

std::string SanitizeLabelName(const std::string& name) {
  std::string out;
  out.reserve(name.size() + 1);
  for (char c : name) {
    bool ok =
        (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
    out.push_back(ok ? c : '_');
  }
  if (out.empty() || (out[0] >= '0' && out[0] <= '9')) out.insert(out.begin(), '_');
  return out;
}

Labels PodLabels(const PodMeta* pod, const std::set<std::string>& allowed) {
  Labels out;
  if (pod == nullptr) {
    out.emplace_back("namespace", "");
    out.emplace_back("pod", "");
    out.emplace_back("host_process", "true");
    return out;
  }
  AddIdentity(*pod, "", &out);
  for (const auto& [key, value] : pod->labels) {
    if (!allowed.contains(key)) continue;
    std::string name = SanitizeLabelName(key);
    bool taken =
        ReservedNames().contains(name) || name.starts_with("dst_") ||
        std::any_of(out.begin(), out.end(), [&](const auto& l) { return l.first == name; });
    if (!taken) out.emplace_back(name, value);
  }
  return out;
}

std::string ServiceAuthority(const PodMeta* peer, uint16_t port,
                             const std::string& cluster_domain) {
  if (peer == nullptr || peer->service.empty()) return "";
  for (const auto& [dst_port, service_port] : peer->authority_ports) {
    if (dst_port != port) continue;
    return peer->service + "." + peer->ns + ".svc." + cluster_domain + ":" +
           std::to_string(service_port);
  }
  return "";
}

Labels DstPodLabels(const PodMeta& pod) {
  Labels out;
  if (pod.name.empty()) {  // a Service address
    out.emplace_back("dst_namespace", pod.ns);
  } else {
    AddIdentity(pod, "dst_", &out);
  }
  if (!pod.service.empty()) out.emplace_back("dst_service", pod.service);
  return out;
}

}  // namespace podtap
