// The label sets that name a pod in every series: identity, owner as Linkerd
// names it, allowed Kubernetes labels, and the dst_* labels of a remote pod.
#pragma once

#include <set>
#include <string>

#include "agent/pods.h"
#include "agent/snapshot.h"

namespace podtap {

// Labels of the pod a socket belongs to; a null pod is a host process.
// `allowed` lists the Kubernetes label keys (before sanitising) to copy.
Labels PodLabels(const PodMeta* pod, const std::set<std::string>& allowed);

// dst_* labels of the pod (or Service address) at the remote end of an
// outbound connection.
Labels DstPodLabels(const PodMeta& pod);

// "pod-template-hash" -> "pod_template_hash"; a leading digit gets "_".
std::string SanitizeLabelName(const std::string& name);

}  // namespace podtap
