// libFuzzer target: the pods file (ParsePodsJson), then the socket -> pod index and the label
// sets built from what it accepted. The file is operator input, but a broken one must be an
// error message, never a crash.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <set>
#include <string>

#include "agent/metadata/pods.h"
#include "agent/metrics/pod_labels.h"

namespace {

// A Prometheus label name: [a-zA-Z_][a-zA-Z0-9_]*.
bool ValidLabelName(const std::string& name) {
  if (name.empty() || (name[0] >= '0' && name[0] <= '9')) return false;
  for (char c : name) {
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_')) {
      return false;
    }
  }
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string text(reinterpret_cast<const char*>(data), size);
  std::string error;
  auto pods = podtap::ParsePodsJson(text, &error);
  if (!pods) {
    if (error.empty()) abort();  // a rejection always says why
    return 0;
  }
  podtap::PodIndex index(*pods);
  if (index.size() != pods->size()) abort();
  for (const auto& pod : *pods) {
    if (pod->name.empty()) abort();
    for (const auto& ip : pod->ips) {
      if (index.ForIp(ip) == nullptr) abort();
    }
    std::set<std::string> allowed;
    for (const auto& [key, value] : pod->labels) allowed.insert(key);
    // Every name valid and none twice, or the exposition would be rejected.
    std::set<std::string> names;
    for (const auto& [name, value] : podtap::PodLabels(pod.get(), allowed)) {
      if (!ValidLabelName(name) || !names.insert(name).second) abort();
    }
    podtap::DstPodLabels(*pod);
  }
  return 0;
}
