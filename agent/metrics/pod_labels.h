// The label sets that name a pod in every series: identity, owner as Linkerd
// names it, allowed Kubernetes labels, and the dst_* labels of a remote pod.
#pragma once

#include <set>
#include <string>

#include "agent/metadata/pods.h"
#include "agent/metrics/snapshot.h"

namespace podtap {

// Labels of the pod a socket belongs to; a null pod is a host process.
// `allowed` lists the Kubernetes label keys (before sanitising) to copy.
Labels PodLabels(const PodMeta* pod, const std::set<std::string>& allowed);

// dst_* labels of the pod (or Service address) at the remote end of an
// outbound connection.
Labels DstPodLabels(const PodMeta& pod);

// The authority Linkerd's proxy labels an outbound TCP connection with when
// it went to a Service: "NAME.NS.svc.CLUSTER_DOMAIN:PORT" when `peer` is a
// Service address (ClusterIP, or an endpoint of a known Service) and
// `port`, the destination port as the socket has it, is one its Service
// declares (PORT is then the Service's port); "" otherwise.
std::string ServiceAuthority(const PodMeta* peer, uint16_t port, const std::string& cluster_domain);

// "pod-template-hash" -> "pod_template_hash"; a leading digit gets "_".
std::string SanitizeLabelName(const std::string& name);

}  // namespace podtap
