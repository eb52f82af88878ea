// Finding the agents through the Kubernetes API (cli/discovery.h).
#include "cli/discovery.h"

#include <curl/curl.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <nlohmann/json.hpp>

#include "agent/metadata/kube_client.h"

namespace podtap {
namespace {

using json = nlohmann::json;

constexpr size_t kMaxPodListBytes = 64 << 20;

std::string Text(const json& j, const char* key) {
  auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : "";
}

const json& Object(const json& j, const char* key) {
  static const json kEmpty = json::object();
  auto it = j.find(key);
  return it != j.end() && it->is_object() ? *it : kEmpty;
}

// The containerPort of the first container port named "query"; 0: none.
long QueryPort(const json& spec) {
  auto containers = spec.find("containers");
  if (containers == spec.end() || !containers->is_array()) return 0;
  for (const auto& c : *containers) {
    auto ports = c.find("ports");
    if (!c.is_object() || ports == c.end() || !ports->is_array()) continue;
    for (const auto& p : *ports) {
      auto port = p.find("containerPort");
      if (p.is_object() && Text(p, "name") == "query" && port != p.end() &&
          port->is_number_integer()) {
        return port->get<long>();
      }
    }
  }
  return 0;
}

std::string Escape(const std::string& s) {
  char* e = curl_easy_escape(nullptr, s.c_str(), static_cast<int>(s.size()));
  std::string out = e != nullptr ? e : "";
  curl_free(e);
  return out;
}

}  // namespace

bool AgentsOfPodList(const std::string& body, const std::string& node,
                     std::vector<AgentTarget>* out, std::string* error) {
  json doc = json::parse(body, nullptr, false);
  auto items = doc.is_object() ? doc.find("items") : doc.end();
  if (!doc.is_object() || Text(doc, "kind") != "PodList" || items == doc.end() ||
      !items->is_array()) {
    *error = "the API's answer is not a PodList";
    return false;
  }
  out->clear();
  for (const auto& p : *items) {
    if (!p.is_object()) continue;
    const json& meta = Object(p, "metadata");
    const json& spec = Object(p, "spec");
    const json& status = Object(p, "status");
    AgentTarget t;
    t.node = Text(spec, "nodeName");
    t.pod = Text(meta, "namespace") + "/" + Text(meta, "name");
    if (!node.empty() && t.node != node) continue;
    std::string phase = Text(status, "phase");
    std::string ip = Text(status, "podIP");
    long port = QueryPort(spec);
    if (phase != "Running") {
      t.error = "pod " + t.pod + " is " + (phase.empty() ? "in no phase" : phase);
    } else if (ip.empty()) {
      t.error = "pod " + t.pod + " has no IP";
    } else if (port <= 0 || port > 65535) {
      t.error = "pod " + t.pod + " has no container port named query (--query-listen)";
    } else {
      t.address =
          (ip.find(':') != std::string::npos ? "[" + ip + "]" : ip) + ":" + std::to_string(port);
    }
    out->push_back(std::move(t));
  }
  std::sort(out->begin(), out->end(),
            [](const AgentTarget& a, const AgentTarget& b) { return a.node < b.node; });
  return true;
}

bool FindAgents(const KubeConfig& config, const std::string& ns, const std::string& selector,
                const std::string& node, double timeout_s, std::vector<AgentTarget>* out,
                std::string* error) {
  std::atomic<bool> stop{false};
  auto timeout = std::chrono::seconds(std::max<int64_t>(1, std::llround(timeout_s)));
  KubeHttp http(config, &stop, timeout, timeout);
  std::string path = "/api/v1/namespaces/" + Escape(ns) + "/pods?labelSelector=" + Escape(selector);
  HttpResult r = http.Get(path, kMaxPodListBytes);
  if (!r.error.empty() || r.status != 200) {
    *error = "cannot list podtap's pods (" + config.origin + ", GET " + path + "): " +
             (r.error.empty() ? "HTTP " + std::to_string(r.status) + " " + r.body.substr(0, 300)
                              : r.error);
    return false;
  }
  return AgentsOfPodList(r.body, node, out, error);
}

}  // namespace podtap
