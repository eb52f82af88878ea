// Decoding of Kubernetes API objects and the merge with local pods.
#include "agent/metadata/kube_objects.h"

#include <stdexcept>
#include <unordered_map>

namespace podtap {
namespace {

using nlohmann::json;

constexpr const char* kTemplateHash = "pod-template-hash";
constexpr const char* kServiceNameLabel = "kubernetes.io/service-name";

const json& Field(const json& j, const char* key) {
  static const json null_value;
  if (!j.is_object()) return null_value;
  auto it = j.find(key);
  return it == j.end() ? null_value : *it;
}

std::string Str(const json& j, const char* key) {
  const json& v = Field(j, key);
  if (v.is_null()) return "";
  if (!v.is_string()) throw std::runtime_error(std::string("\"") + key + "\" is not a string");
  return v.get<std::string>();
}

const json& Object(const json& j, const char* key) {
  const json& v = Field(j, key);
  if (!v.is_null() && !v.is_object()) {
    throw std::runtime_error(std::string("\"") + key + "\" is not an object");
  }
  return v;
}

const json& Array(const json& j, const char* key) {
  const json& v = Field(j, key);
  if (!v.is_null() && !v.is_array()) {
    throw std::runtime_error(std::string("\"") + key + "\" is not an array");
  }
  return v;
}

// Parses an address field; a value that is not an IP (e.g. "None" of a
// headless Service, or an FQDN endpoint) is skipped.
void AddIp(const std::string& text, std::vector<IpAddr>* out) {
  auto ip = IpAddr::Parse(text);
  if (!ip) return;
  for (const auto& seen : *out) {
    if (seen == *ip) return;
  }
  out->push_back(*ip);
}

struct Meta {
  std::string ns, name, uid, resource_version;
  std::string owner_kind, owner_name;  // the controller reference
};

Meta DecodeMeta(const json& obj) {
  const json& m = Object(obj, "metadata");
  Meta meta;
  meta.ns = Str(m, "namespace");
  meta.name = Str(m, "name");
  meta.uid = Str(m, "uid");
  meta.resource_version = Str(m, "resourceVersion");
  for (const auto& ref : Array(m, "ownerReferences")) {
    const json& controller = Field(ref, "controller");
    if (controller.is_boolean() && controller.get<bool>()) {
      meta.owner_kind = Str(ref, "kind");
      meta.owner_name = Str(ref, "name");
    }
  }
  return meta;
}

KubePod DecodePod(const json& obj, const Meta& meta, const KubeDecodeOptions& opts) {
  KubePod p;
  p.ns = meta.ns;
  p.name = meta.name;
  p.uid = meta.uid;
  p.owner_kind = meta.owner_kind;
  p.owner_name = meta.owner_name;
  const json& spec = Object(obj, "spec");
  const json& status = Object(obj, "status");
  p.node = Str(spec, "nodeName");
  bool maybe_local = opts.node.empty() || p.node == opts.node;
  for (const auto& [k, v] : Object(Object(obj, "metadata"), "labels").items()) {
    if (!v.is_string()) throw std::runtime_error("label \"" + k + "\" is not a string");
    if (k == kTemplateHash || (maybe_local && opts.label_allowlist.contains(k))) {
      p.labels[k] = v.get<std::string>();
    }
  }
  // A host-network pod's address is its node's, shared with every other
  // such pod; a finished pod's address may already belong to a new pod.
  const json& host_network = Field(spec, "hostNetwork");
  std::string phase = Str(status, "phase");
  if ((host_network.is_boolean() && host_network.get<bool>()) || phase == "Succeeded" ||
      phase == "Failed") {
    return p;
  }
  for (const auto& entry : Array(status, "podIPs")) AddIp(Str(entry, "ip"), &p.ips);
  AddIp(Str(status, "podIP"), &p.ips);
  return p;
}

// TCP entries of a "ports" array (protocol defaults to TCP).
std::vector<KubePort> TcpPorts(const json& ports) {
  std::vector<KubePort> out;
  for (const auto& p : ports) {
    const json& port = Field(p, "port");
    std::string protocol = Str(p, "protocol");
    if (!port.is_number_integer() || (!protocol.empty() && protocol != "TCP")) continue;
    auto n = port.get<int64_t>();
    if (n <= 0 || n > 65535) continue;
    out.push_back({Str(p, "name"), static_cast<uint16_t>(n)});
  }
  return out;
}

KubeService DecodeService(const json& obj, const Meta& meta) {
  KubeService s{meta.ns, meta.name, {}, {}};
  const json& spec = Object(obj, "spec");
  s.ports = TcpPorts(Array(spec, "ports"));
  for (const auto& ip : Array(spec, "clusterIPs")) {
    if (ip.is_string()) AddIp(ip.get<std::string>(), &s.cluster_ips);
  }
  AddIp(Str(spec, "clusterIP"), &s.cluster_ips);
  return s;
}

KubeEndpointSlice DecodeSlice(const json& obj, const Meta& meta) {
  KubeEndpointSlice e{meta.ns, meta.name, "", {}, {}};
  const json& labels = Object(Object(obj, "metadata"), "labels");
  e.service = Str(labels, kServiceNameLabel);
  e.ports = TcpPorts(Array(obj, "ports"));
  std::string type = Str(obj, "addressType");
  if (type != "IPv4" && type != "IPv6") return e;  // FQDN endpoints name no address
  for (const auto& ep : Array(obj, "endpoints")) {
    for (const auto& a : Array(ep, "addresses")) {
      if (a.is_string()) AddIp(a.get<std::string>(), &e.addresses);
    }
  }
  return e;
}

std::optional<KubeObject> Decode(KubeResource resource, const json& j,
                                 const KubeDecodeOptions& opts, std::string* rv) {
  if (!j.is_object()) throw std::runtime_error("object is not a JSON object");
  Meta meta = DecodeMeta(j);
  if (meta.name.empty()) throw std::runtime_error("object without metadata.name");
  if (rv != nullptr) *rv = meta.resource_version;
  switch (resource) {
    case KubeResource::kPods:
      return DecodePod(j, meta, opts);
    case KubeResource::kReplicaSets:
      return KubeReplicaSet{meta.ns, meta.name,
                            meta.owner_kind == "Deployment" ? meta.owner_name : ""};
    case KubeResource::kServices:
      return DecodeService(j, meta);
    case KubeResource::kEndpointSlices:
      return DecodeSlice(j, meta);
  }
  return std::nullopt;
}

template <typename T>
void ReplaceAll(std::map<std::string, T>* dst, std::vector<KubeObject>& items) {
  dst->clear();
  for (auto& o : items) {
    std::string key = KubeObjectKey(o);
    dst->insert_or_assign(std::move(key), std::get<T>(std::move(o)));
  }
}

}  // namespace

const char* KubeResourceName(KubeResource r) {
  switch (r) {
    case KubeResource::kPods:
      return "pods";
    case KubeResource::kReplicaSets:
      return "replicasets";
    case KubeResource::kServices:
      return "services";
    case KubeResource::kEndpointSlices:
      return "endpointslices";
  }
  return "";
}

const char* KubeResourcePath(KubeResource r) {
  switch (r) {
    case KubeResource::kPods:
      return "/api/v1/pods";
    case KubeResource::kReplicaSets:
      return "/apis/apps/v1/replicasets";
    case KubeResource::kServices:
      return "/api/v1/services";
    case KubeResource::kEndpointSlices:
      return "/apis/discovery.k8s.io/v1/endpointslices";
  }
  return "";
}

std::optional<KubeObject> DecodeKubeObject(KubeResource resource, const json& j,
                                           const KubeDecodeOptions& opts, std::string* error) {
  try {
    return Decode(resource, j, opts, nullptr);
  } catch (const std::exception& e) {
    *error = e.what();
    return std::nullopt;
  }
}

std::string KubeObjectKey(const KubeObject& o) {
  return std::visit([](const auto& x) { return x.ns + "/" + x.name; }, o);
}

std::optional<KubeListPage> DecodeKubeList(KubeResource resource, std::string_view body,
                                           const KubeDecodeOptions& opts, std::string* error) {
  json doc = json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded()) {
    *error = std::string(KubeResourceName(resource)) + " list: not valid JSON";
    return std::nullopt;
  }
  KubeListPage page;
  size_t i = 0;
  try {
    if (!doc.is_object()) throw std::runtime_error("not a JSON object");
    const json& meta = Object(doc, "metadata");
    page.resource_version = Str(meta, "resourceVersion");
    page.continue_token = Str(meta, "continue");
    if (page.resource_version.empty()) throw std::runtime_error("no metadata.resourceVersion");
    for (const auto& item : Array(doc, "items")) {
      if (auto o = Decode(resource, item, opts, nullptr)) page.items.push_back(std::move(*o));
      i++;
    }
  } catch (const std::exception& e) {
    *error = std::string(KubeResourceName(resource)) + " list, item " + std::to_string(i) + ": " +
             e.what();
    return std::nullopt;
  }
  return page;
}

std::optional<KubeWatchEvent> DecodeKubeWatchEvent(KubeResource resource, std::string_view line,
                                                   const KubeDecodeOptions& opts,
                                                   std::string* error) {
  json doc = json::parse(line, nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded()) {
    *error = "watch event is not valid JSON";
    return std::nullopt;
  }
  try {
    std::string type = Str(doc, "type");
    const json& obj = Object(doc, "object");
    if (obj.is_null()) throw std::runtime_error("no \"object\"");
    KubeWatchEvent ev{};
    if (type == "ERROR") {
      // A Status object: {"kind":"Status","code":410,"reason":"Expired",...}.
      ev.type = KubeWatchEvent::Type::kError;
      const json& code = Field(obj, "code");
      ev.error_code = code.is_number_integer() ? code.get<int>() : 0;
      ev.error_message = Str(obj, "message");
      return ev;
    }
    if (type == "BOOKMARK") {
      // Only metadata.resourceVersion is meaningful in a bookmark.
      ev.type = KubeWatchEvent::Type::kBookmark;
      ev.resource_version = Str(Object(obj, "metadata"), "resourceVersion");
      if (ev.resource_version.empty()) throw std::runtime_error("bookmark without resourceVersion");
      return ev;
    }
    if (type == "ADDED") {
      ev.type = KubeWatchEvent::Type::kAdded;
    } else if (type == "MODIFIED") {
      ev.type = KubeWatchEvent::Type::kModified;
    } else if (type == "DELETED") {
      ev.type = KubeWatchEvent::Type::kDeleted;
    } else {
      throw std::runtime_error("unknown event type \"" + type + "\"");
    }
    ev.object = Decode(resource, obj, opts, &ev.resource_version);
    return ev;
  } catch (const std::exception& e) {
    *error = std::string("watch event: ") + e.what();
    return std::nullopt;
  }
}

void KubeCache::Upsert(KubeObject o) {
  std::string key = KubeObjectKey(o);
  std::visit(
      [&](auto&& x) {
        using T = std::decay_t<decltype(x)>;
        if constexpr (std::is_same_v<T, KubePod>) {
          pods.insert_or_assign(key, std::move(x));
        } else if constexpr (std::is_same_v<T, KubeReplicaSet>) {
          replicasets.insert_or_assign(key, std::move(x));
        } else if constexpr (std::is_same_v<T, KubeService>) {
          services.insert_or_assign(key, std::move(x));
        } else {
          endpointslices.insert_or_assign(key, std::move(x));
        }
      },
      std::move(o));
}

void KubeCache::Erase(const KubeObject& o) {
  std::string key = KubeObjectKey(o);
  switch (o.index()) {
    case 0:
      pods.erase(key);
      break;
    case 1:
      replicasets.erase(key);
      break;
    case 2:
      services.erase(key);
      break;
    default:
      endpointslices.erase(key);
      break;
  }
}

void KubeCache::Replace(KubeResource resource, std::vector<KubeObject> items) {
  switch (resource) {
    case KubeResource::kPods:
      ReplaceAll(&pods, items);
      break;
    case KubeResource::kReplicaSets:
      ReplaceAll(&replicasets, items);
      break;
    case KubeResource::kServices:
      ReplaceAll(&services, items);
      break;
    case KubeResource::kEndpointSlices:
      ReplaceAll(&endpointslices, items);
      break;
  }
}

size_t KubeCache::Count(KubeResource resource) const {
  switch (resource) {
    case KubeResource::kPods:
      return pods.size();
    case KubeResource::kReplicaSets:
      return replicasets.size();
    case KubeResource::kServices:
      return services.size();
    case KubeResource::kEndpointSlices:
      return endpointslices.size();
  }
  return 0;
}

namespace {

struct IpHash {
  size_t operator()(const IpAddr& ip) const {
    size_t h = ip.v6 ? 1469598103934665603ull : 0;
    for (uint8_t b : ip.bytes) h = (h ^ b) * 1099511628211ull;
    return h;
  }
};

// Owner of an API pod into `m`; a ReplicaSet's Deployment when the
// ReplicaSet is known (otherwise pod_labels.cc derives it from the names).
void ApplyOwner(const KubePod& p, const KubeCache& cache, PodMeta* m) {
  m->owner_kind = p.owner_kind;
  m->owner_name = p.owner_name;
  m->deployment.reset();
  if (p.owner_kind != "ReplicaSet") return;
  auto rs = cache.replicasets.find(p.ns + "/" + p.owner_name);
  if (rs != cache.replicasets.end()) m->deployment = rs->second.deployment;
}

}  // namespace

PodList MergeKubePods(const PodList& local, const KubeCache& cache) {
  // Services each pod IP is an endpoint of; "" once a second one is seen.
  std::unordered_map<IpAddr, std::pair<std::string, std::string>, IpHash> endpoint_of;
  for (const auto& [key, slice] : cache.endpointslices) {
    if (slice.service.empty()) continue;
    for (const auto& ip : slice.addresses) {
      auto [it, fresh] = endpoint_of.try_emplace(ip, slice.ns, slice.service);
      if (!fresh && it->second != std::make_pair(slice.ns, slice.service)) it->second = {"", ""};
    }
  }
  auto service_of = [&](const std::vector<IpAddr>& ips, const std::string& ns) -> std::string {
    for (const auto& ip : ips) {
      auto it = endpoint_of.find(ip);
      if (it != endpoint_of.end() && it->second.first == ns) return it->second.second;
    }
    return "";
  };
  // Endpoint port -> Service port, per address, from the slices of the
  // address' Service: a slice port names the Service port it serves.
  std::unordered_map<IpAddr, std::vector<std::pair<uint16_t, uint16_t>>, IpHash> ports_of;
  for (const auto& [key, slice] : cache.endpointslices) {
    auto svc = cache.services.find(slice.ns + "/" + slice.service);
    if (slice.service.empty() || svc == cache.services.end()) continue;
    for (const auto& ip : slice.addresses) {
      auto owner = endpoint_of.find(ip);
      if (owner->second != std::make_pair(slice.ns, slice.service)) continue;
      auto& ports = ports_of[ip];
      for (const KubePort& ep : slice.ports) {
        for (const KubePort& sp : svc->second.ports) {
          if (sp.name == ep.name) ports.emplace_back(ep.port, sp.port);
        }
      }
    }
  }
  auto set_service = [&](PodMeta* m) {
    m->service = service_of(m->ips, m->ns);
    m->authority_ports.clear();
    if (m->service.empty()) return;
    for (const auto& ip : m->ips) {
      auto it = ports_of.find(ip);
      if (it == ports_of.end()) continue;
      m->authority_ports.insert(m->authority_ports.end(), it->second.begin(), it->second.end());
    }
  };

  std::unordered_map<std::string, const KubePod*> by_uid;
  for (const auto& [key, p] : cache.pods) {
    if (!p.uid.empty()) by_uid[p.uid] = &p;
  }
  std::set<const KubePod*> matched;
  PodList locals;
  for (const auto& lp : local) {
    const KubePod* api = nullptr;
    if (auto it = by_uid.find(lp->uid); !lp->uid.empty() && it != by_uid.end()) {
      api = it->second;
    } else if (auto it2 = cache.pods.find(lp->ns + "/" + lp->name); it2 != cache.pods.end()) {
      api = &it2->second;
    }
    // A pod found in /proc has only its uid: without its API pod it is
    // nobody's (its sockets count as host processes).
    if (api == nullptr && lp->name.empty()) continue;
    auto m = std::make_shared<PodMeta>(*lp);
    if (api != nullptr) {
      matched.insert(api);
      m->ns = api->ns;
      m->name = api->name;
      ApplyOwner(*api, cache, m.get());
      for (const auto& [k, v] : api->labels) m->labels[k] = v;
      if (m->ips.empty()) m->ips = api->ips;
    }
    set_service(m.get());
    locals.push_back(std::move(m));
  }

  // Remote ends first: PodIndex keeps the last entry of an address, so a
  // local pod wins over anything the API says about its IP.
  PodList out;
  std::unordered_map<IpAddr, bool, IpHash> pod_ips;
  for (const auto& [key, s] : cache.services) {
    if (s.cluster_ips.empty()) continue;
    auto m = std::make_shared<PodMeta>();
    m->ns = s.ns;
    m->service = s.name;
    m->ips = s.cluster_ips;
    for (const KubePort& p : s.ports) m->authority_ports.emplace_back(p.port, p.port);
    out.push_back(std::move(m));
  }
  for (const auto& [key, p] : cache.pods) {
    for (const auto& ip : p.ips) pod_ips[ip] = true;
    if (matched.contains(&p) || p.ips.empty()) continue;
    auto m = std::make_shared<PodMeta>();
    m->uid = p.uid;
    m->ns = p.ns;
    m->name = p.name;
    m->labels = p.labels;
    ApplyOwner(p, cache, m.get());
    m->ips = p.ips;
    set_service(m.get());
    out.push_back(std::move(m));
  }
  for (const auto& lp : locals) {
    for (const auto& ip : lp->ips) pod_ips[ip] = true;
  }
  // Endpoint addresses that are no pod's (Services without selectors, e.g.
  // a database outside the cluster).
  for (const auto& [ip, svc] : endpoint_of) {
    if (svc.second.empty() || pod_ips.contains(ip)) continue;
    auto m = std::make_shared<PodMeta>();
    m->ns = svc.first;
    m->ips = {ip};
    set_service(m.get());
    out.push_back(std::move(m));
  }
  out.insert(out.end(), locals.begin(), locals.end());
  return out;
}

}  // namespace podtap
