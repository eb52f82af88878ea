// The Kubernetes objects podtap reads (pods, ReplicaSets, Services,
// EndpointSlices), cut down to the fields it uses; decoding of their list and
// watch-event JSON; and the merge of what the API says with the pods a local
// source (CRI, pods file) found on this node.
#pragma once

#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "agent/metadata/pods.h"

namespace podtap {

enum class KubeResource : uint8_t { kPods, kReplicaSets, kServices, kEndpointSlices };
inline constexpr size_t kKubeResourceCount = 4;
const char* KubeResourceName(KubeResource r);  // "pods", "replicasets", ...
// The collection's API path, e.g. "/apis/apps/v1/replicasets".
const char* KubeResourcePath(KubeResource r);

struct KubePod {
  std::string ns, name, uid, node;
  std::map<std::string, std::string> labels;  // only the kept keys (KubeDecodeOptions)
  std::string owner_kind, owner_name;         // the controller owner reference
  std::vector<IpAddr> ips;                    // none for host-network pods and finished pods
};

struct KubeReplicaSet {
  std::string ns, name;
  std::string deployment;  // the controlling Deployment; "" when none
};

// A TCP port of a Service or EndpointSlice and its name ("" when the
// Service has a single unnamed port; the slice's ports carry the Service's names).
struct KubePort {
  std::string name;
  uint16_t port = 0;
  bool operator==(const KubePort&) const = default;
};

struct KubeService {
  std::string ns, name;
  std::vector<IpAddr> cluster_ips;  // none for headless services
  std::vector<KubePort> ports;      // spec.ports (TCP)
};

struct KubeEndpointSlice {
  std::string ns, name;
  std::string service;  // label kubernetes.io/service-name
  std::vector<IpAddr> addresses;
  std::vector<KubePort> ports;  // the endpoints' ports (TCP)
};

using KubeObject = std::variant<KubePod, KubeReplicaSet, KubeService, KubeEndpointSlice>;

// Which pod labels are kept in memory: "pod-template-hash" for every pod (it
// names dst_pod_template_hash), the allow-listed ones only for pods that may
// be this node's (spec.nodeName is `node`, or every pod when `node` is "").
struct KubeDecodeOptions {
  std::string node;
  std::set<std::string> label_allowlist;
};

// One object of `resource` from its JSON; an error names what is wrong.
std::optional<KubeObject> DecodeKubeObject(KubeResource resource, const nlohmann::json& j,
                                           const KubeDecodeOptions& opts, std::string* error);

// "namespace/name" of any object.
std::string KubeObjectKey(const KubeObject& o);

// A page of a list response (PodList, ...).
struct KubeListPage {
  std::string resource_version;
  std::string continue_token;
  std::vector<KubeObject> items;
};
std::optional<KubeListPage> DecodeKubeList(KubeResource resource, std::string_view body,
                                           const KubeDecodeOptions& opts, std::string* error);

// One line of a watch stream: {"type":"ADDED|MODIFIED|DELETED|BOOKMARK|ERROR","object":{...}}.
struct KubeWatchEvent {
  enum class Type : uint8_t { kAdded, kModified, kDeleted, kBookmark, kError } type;
  std::string resource_version;      // the object's (or bookmark's)
  std::optional<KubeObject> object;  // ADDED, MODIFIED, DELETED
  int error_code = 0;                // ERROR: the Status' code (410: resource version expired)
  std::string error_message;
};
std::optional<KubeWatchEvent> DecodeKubeWatchEvent(KubeResource resource, std::string_view line,
                                                   const KubeDecodeOptions& opts,
                                                   std::string* error);

// Everything the API currently says, per resource, keyed "namespace/name".
struct KubeCache {
  std::map<std::string, KubePod> pods;
  std::map<std::string, KubeReplicaSet> replicasets;
  std::map<std::string, KubeService> services;
  std::map<std::string, KubeEndpointSlice> endpointslices;

  void Upsert(KubeObject o);
  void Erase(const KubeObject& o);
  // Replaces every object of `resource` with `items` (a fresh list).
  void Replace(KubeResource resource, std::vector<KubeObject> items);
  size_t Count(KubeResource resource) const;
};

// The pod list the agent indexes: the `local` pods (socket keys from CRI or
// the pods file) enriched by their API pod (matched by uid, else
// namespace/name: owner from the controller reference, a ReplicaSet's
// Deployment from the ReplicaSet's own owner, labels, IPs when the local
// source had none); then every other API pod, Service ClusterIP and
// EndpointSlice address as a remote end only (no socket keys), for dst_*
// labels. A pod IP listed by exactly one Service's EndpointSlices also names
// that Service (dst_service). Service addresses carry the authority ports
// (PodMeta::authority_ports): a ClusterIP its Service's ports, an endpoint
// address each slice port that has a Service port of the same name. A local pod without a name
// (ProcPodSource) takes its API pod's, and is left out when the API does not know its uid.
PodList MergeKubePods(const PodList& local, const KubeCache& cache);

}  // namespace podtap
