// libFuzzer target: the Kubernetes API decoding as KubeSource feeds it (list pages and watch
// event lines of pods, ReplicaSets, Services and EndpointSlices) into a KubeCache, then the merge
// with this node's pods, the socket -> pod index and the label sets built from the result. The
// API server is trusted, but a proxy, a bug or a version skew can send anything: a bad object must
// be an error message, never a crash.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "agent/metadata/kube_objects.h"
#include "agent/metadata/pods.h"
#include "agent/metrics/pod_labels.h"

namespace {

using podtap::KubeObject;
using podtap::KubeResource;

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

// Only pod-template-hash, and the allow-listed keys of pods that may be this node's, are kept.
void CheckPod(const podtap::KubePod& pod, const podtap::KubeDecodeOptions& opts) {
  const bool maybe_local = opts.node.empty() || pod.node == opts.node;
  for (const auto& [key, value] : pod.labels) {
    if (key != "pod-template-hash" && !(maybe_local && opts.label_allowlist.contains(key))) {
      abort();
    }
  }
}

// The object is of the resource asked for (the variant follows KubeResource's order) and named.
void CheckObject(KubeResource resource, const KubeObject& o,
                 const podtap::KubeDecodeOptions& opts) {
  if (o.index() != static_cast<size_t>(resource)) abort();
  if (std::visit([](const auto& x) { return x.name.empty(); }, o)) abort();  // a name is required
  if (const auto* pod = std::get_if<podtap::KubePod>(&o)) CheckPod(*pod, opts);
}

// This node's pods as a local source reports them: one the API may know by uid ("u-web"), one
// known only by namespace/name, and one without a name (ProcPodSource).
podtap::PodList LocalPods() {
  podtap::PodList local;
  auto web = std::make_shared<podtap::PodMeta>();
  web->uid = "u-web";
  web->ns = "shop";
  web->name = "web-7d4b9c6f5-x2x9z";
  web->netns_path = "/proc/self/ns/net";
  web->netns_ino = 4026531992;
  local.push_back(web);
  auto db = std::make_shared<podtap::PodMeta>();
  db->ns = "shop";
  db->name = "db-0";
  db->ips = {*podtap::IpAddr::Parse("10.244.1.7")};
  db->netns_ino = 4026531993;
  local.push_back(db);
  auto unnamed = std::make_shared<podtap::PodMeta>();
  unnamed->uid = "u-cache";
  unnamed->netns_ino = 4026531994;
  local.push_back(unnamed);
  return local;
}

}  // namespace

// Input: an options byte (bit 0: this node is "node-a", else every pod may be local; bit 1: keep
// the labels "app" and "version"), then lines. Each line's first byte picks the resource (bits
// 0-1, KubeResource order) and what the rest is (bit 2: a list page, else a watch event line).
extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  podtap::KubeDecodeOptions opts;
  if (data[0] & 1) opts.node = "node-a";
  if (data[0] & 2) opts.label_allowlist = {"app", "version"};
  std::string_view rest(reinterpret_cast<const char*>(data) + 1, size - 1);

  podtap::KubeCache cache;
  while (!rest.empty()) {
    const size_t nl = rest.find('\n');
    std::string_view line = rest.substr(0, nl);
    rest = nl == std::string_view::npos ? std::string_view() : rest.substr(nl + 1);
    if (line.empty()) continue;
    const auto resource = static_cast<KubeResource>(line[0] & 3);
    const bool list = (line[0] & 4) != 0;
    line.remove_prefix(1);
    std::string error;
    if (list) {
      auto page = podtap::DecodeKubeList(resource, line, opts, &error);
      if (!page) {
        if (error.empty()) abort();  // a rejection always says why
        continue;
      }
      if (page->resource_version.empty()) abort();
      std::set<std::string> keys;
      for (const auto& o : page->items) {
        CheckObject(resource, o, opts);
        keys.insert(podtap::KubeObjectKey(o));
      }
      cache.Replace(resource, std::move(page->items));
      if (cache.Count(resource) != keys.size()) abort();
      continue;
    }
    auto ev = podtap::DecodeKubeWatchEvent(resource, line, opts, &error);
    if (!ev) {
      if (error.empty()) abort();
      continue;
    }
    using Type = podtap::KubeWatchEvent::Type;
    if (ev->type == Type::kError || ev->type == Type::kBookmark) {
      if (ev->object) abort();
      if (ev->type == Type::kBookmark && ev->resource_version.empty()) abort();
      continue;
    }
    if (!ev->object) abort();
    CheckObject(resource, *ev->object, opts);
    const size_t before = cache.Count(resource);
    if (ev->type == Type::kDeleted) {
      cache.Erase(*ev->object);
      if (cache.Count(resource) > before) abort();
    } else {
      cache.Upsert(*ev->object);
      if (cache.Count(resource) < before || cache.Count(resource) > before + 1) abort();
    }
  }

  const podtap::PodList merged = podtap::MergeKubePods(LocalPods(), cache);
  podtap::PodIndex index(merged);
  for (const auto& pod : merged) {
    if (pod == nullptr) abort();
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
