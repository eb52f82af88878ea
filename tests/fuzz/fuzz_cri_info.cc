// libFuzzer target: what the container runtime says about a pod sandbox
// (agent/metadata/cri_info.h): the verbose status "info" JSON (ParseSandboxInfo), the cgroup
// directory of its cgroupsPath (CgroupDir), and the owner derived from the labels CRI carries
// (DeriveOwnerFromLabels, fed the document's config.metadata.name and config.labels, where
// containerd puts the sandbox config). A runtime's answer must be an error message or a result,
// never a crash.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <string>

#include "agent/metadata/cri_info.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  std::string error;
  auto info = podtap::ParseSandboxInfo(text, &error);
  if (!info) {
    if (error.empty()) abort();  // a rejection always says why
    return 0;
  }
  const std::string root = "/sys/fs/cgroup";
  const std::string dir = podtap::CgroupDir(root, info->cgroups_path);
  if (dir.rfind(root, 0) != 0) abort();  // always the mount's path, then the cgroupsPath

  // The document parsed as an object, so this parse does too.
  const nlohmann::json doc = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  podtap::PodMeta pod;
  const auto config = doc.find("config");
  if (config != doc.end() && config->is_object()) {
    const auto meta = config->find("metadata");
    if (meta != config->end() && meta->is_object()) {
      const auto name = meta->find("name");
      if (name != meta->end() && name->is_string()) pod.name = name->get<std::string>();
    }
    const auto labels = config->find("labels");
    if (labels != config->end() && labels->is_object()) {
      for (const auto& [key, value] : labels->items()) {
        if (value.is_string()) pod.labels[key] = value.get<std::string>();
      }
    }
  }
  podtap::DeriveOwnerFromLabels(&pod);
  if (pod.owner_kind.empty() != pod.owner_name.empty()) abort();
  return 0;
}
