// Decoding of what the container runtime says about a pod sandbox: its verbose
// status "info" JSON, its OCI cgroups path, and its owner from its labels.
#include "agent/metadata/cri_info.h"

#include <nlohmann/json.hpp>

namespace podtap {
namespace {

// "a-b-c.slice" -> "/a.slice/a-b.slice/a-b-c.slice", as systemd nests slices.
std::string ExpandSlice(const std::string& slice) {
  if (slice.empty() || slice == "-.slice") return "";
  std::string stem = slice.ends_with(".slice") ? slice.substr(0, slice.size() - 6) : slice;
  std::string out;
  size_t pos = 0;
  while (true) {
    size_t dash = stem.find('-', pos);
    out += "/" + stem.substr(0, dash) + ".slice";
    if (dash == std::string::npos) break;
    pos = dash + 1;
  }
  return out;
}

}  // namespace

std::optional<SandboxRuntimeInfo> ParseSandboxInfo(const std::string& json, std::string* error) {
  nlohmann::json doc = nlohmann::json::parse(json, nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded() || !doc.is_object()) {
    *error = "sandbox info is not a JSON object";
    return std::nullopt;
  }
  SandboxRuntimeInfo info;
  if (auto pid = doc.find("pid"); pid != doc.end() && pid->is_number_integer()) {
    info.pid = pid->get<int64_t>();
  }
  const nlohmann::json* linux_spec = nullptr;
  if (auto spec = doc.find("runtimeSpec"); spec != doc.end() && spec->is_object()) {
    if (auto l = spec->find("linux"); l != spec->end() && l->is_object()) linux_spec = &*l;
  }
  if (linux_spec == nullptr) return info;
  if (auto cg = linux_spec->find("cgroupsPath"); cg != linux_spec->end() && cg->is_string()) {
    info.cgroups_path = cg->get<std::string>();
  }
  if (auto nss = linux_spec->find("namespaces"); nss != linux_spec->end() && nss->is_array()) {
    for (const auto& ns : *nss) {
      // Not ns.value("type", ""): it throws when "type" is there but not a
      // string, and the exception would end the agent (fuzz_cri_info).
      if (!ns.is_object()) continue;
      const auto type = ns.find("type");
      if (type == ns.end() || !type->is_string() || type->get<std::string>() != "network") continue;
      if (auto path = ns.find("path"); path != ns.end() && path->is_string()) {
        info.netns_path = path->get<std::string>();
      }
    }
  }
  return info;
}

std::string CgroupDir(const std::string& root, const std::string& cgroups_path) {
  if (cgroups_path.empty() || cgroups_path[0] == '/') return root + cgroups_path;
  // systemd driver: "<parent slice>:<prefix>:<name>" -> <slices>/<prefix>-<name>.scope
  size_t a = cgroups_path.find(':');
  size_t b = a == std::string::npos ? a : cgroups_path.find(':', a + 1);
  if (b == std::string::npos) return root + "/" + cgroups_path;
  std::string slice = cgroups_path.substr(0, a);
  std::string prefix = cgroups_path.substr(a + 1, b - a - 1);
  std::string name = cgroups_path.substr(b + 1);
  if (name.ends_with(".slice")) return root + ExpandSlice(name);
  return root + ExpandSlice(slice) + "/" + (prefix.empty() ? "" : prefix + "-") + name + ".scope";
}

void DeriveOwnerFromLabels(PodMeta* pod) {
  auto label = [&](const char* key) -> const std::string* {
    auto it = pod->labels.find(key);
    return it == pod->labels.end() ? nullptr : &it->second;
  };
  // Controllers name pods "<owner>-<suffix>".
  size_t last_dash = pod->name.rfind('-');
  std::string minus_suffix =
      last_dash == std::string::npos || last_dash == 0 ? "" : pod->name.substr(0, last_dash);
  if (const std::string* hash = label("pod-template-hash"); hash && !hash->empty()) {
    if (minus_suffix.size() > hash->size() + 1 && minus_suffix.ends_with("-" + *hash)) {
      pod->owner_kind = "ReplicaSet";
      pod->owner_name = minus_suffix;
    }
    return;
  }
  const std::string* job = label("batch.kubernetes.io/job-name");
  if (job == nullptr) job = label("job-name");
  if (job && !job->empty()) {
    pod->owner_kind = "Job";
    pod->owner_name = *job;
    return;
  }
  if (const std::string* sts = label("statefulset.kubernetes.io/pod-name");
      sts && *sts == pod->name && !minus_suffix.empty() &&
      pod->name.find_first_not_of("0123456789", last_dash + 1) == std::string::npos &&
      last_dash + 1 < pod->name.size()) {
    pod->owner_kind = "StatefulSet";
    pod->owner_name = minus_suffix;
    return;
  }
  if (label("pod-template-generation") && label("controller-revision-hash") &&
      !minus_suffix.empty()) {
    pod->owner_kind = "DaemonSet";
    pod->owner_name = minus_suffix;
  }
}

}  // namespace podtap
