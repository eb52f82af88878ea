// Pods file parsing, change detection and the socket -> pod index.
#include "agent/metadata/pods.h"

#include <arpa/inet.h>
#include <sys/stat.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

namespace podtap {
namespace {

std::array<uint8_t, 17> IpKey(const IpAddr& ip) {
  std::array<uint8_t, 17> k{};
  k[0] = ip.v6 ? 6 : 4;
  std::copy(ip.bytes.begin(), ip.bytes.end(), k.begin() + 1);
  return k;
}

std::string StringField(const nlohmann::json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return "";
  if (!it->is_string()) throw std::runtime_error(std::string("\"") + key + "\" must be a string");
  return it->get<std::string>();
}

}  // namespace

std::optional<PodList> ParsePodsJson(const std::string& text, std::string* error) {
  nlohmann::json doc = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (doc.is_discarded()) {
    *error = "not valid JSON";
    return std::nullopt;
  }
  if (!doc.is_object() || !doc.contains("pods") || !doc["pods"].is_array()) {
    *error = "expected an object with a \"pods\" array";
    return std::nullopt;
  }
  PodList pods;
  size_t i = 0;
  for (const auto& p : doc["pods"]) {
    std::string where = "pods[" + std::to_string(i++) + "]";
    try {
      if (!p.is_object()) throw std::runtime_error("must be an object");
      auto m = std::make_shared<PodMeta>();
      m->ns = StringField(p, "namespace");
      m->name = StringField(p, "name");
      m->uid = StringField(p, "uid");
      if (m->name.empty()) throw std::runtime_error("\"name\" is required");
      where += " (" + m->ns + "/" + m->name + ")";
      if (p.contains("labels")) {
        if (!p["labels"].is_object()) throw std::runtime_error("\"labels\" must be an object");
        for (const auto& [k, v] : p["labels"].items()) {
          if (!v.is_string()) throw std::runtime_error("label \"" + k + "\" must be a string");
          m->labels[k] = v.get<std::string>();
        }
      }
      if (p.contains("owner") && !p["owner"].is_null()) {
        if (!p["owner"].is_object()) throw std::runtime_error("\"owner\" must be an object");
        m->owner_kind = StringField(p["owner"], "kind");
        m->owner_name = StringField(p["owner"], "name");
      }
      if (p.contains("ips")) {
        if (!p["ips"].is_array()) throw std::runtime_error("\"ips\" must be an array");
        for (const auto& ip : p["ips"]) {
          auto parsed = ip.is_string() ? IpAddr::Parse(ip.get<std::string>()) : std::nullopt;
          if (!parsed) throw std::runtime_error("bad IP address " + ip.dump());
          m->ips.push_back(*parsed);
        }
      }
      m->netns_path = StringField(p, "netns");
      m->cgroup_path = StringField(p, "cgroup");
      if (m->netns_path.empty() && m->cgroup_path.empty()) {
        throw std::runtime_error("needs \"netns\" or \"cgroup\" to match sockets");
      }
      struct stat st;
      if (!m->netns_path.empty()) {
        if (stat(m->netns_path.c_str(), &st) != 0) {
          throw std::runtime_error("cannot stat netns " + m->netns_path);
        }
        m->netns_ino = static_cast<uint32_t>(st.st_ino);
      }
      if (!m->cgroup_path.empty()) {
        // On cgroup v2 a cgroup's id is its directory's inode number.
        if (stat(m->cgroup_path.c_str(), &st) != 0) {
          throw std::runtime_error("cannot stat cgroup " + m->cgroup_path);
        }
        m->cgroup_id = st.st_ino;
      }
      pods.push_back(std::move(m));
    } catch (const std::exception& e) {
      *error = where + ": " + e.what();
      return std::nullopt;
    }
  }
  return pods;
}

PodsFileSource::PodsFileSource(std::string path) : path_(std::move(path)) {}

std::string PodsFileSource::Describe() const { return "pods file " + path_; }

PodListResult PodsFileSource::Poll() {
  PodListResult r;
  struct stat st;
  if (stat(path_.c_str(), &st) != 0) {
    r.error = "cannot read pods file " + path_ + ": " + std::strerror(errno);
    return r;
  }
  int64_t mtime = int64_t{st.st_mtim.tv_sec} * 1000000000 + st.st_mtim.tv_nsec;
  if (mtime == mtime_ns_ && st.st_size == size_) return r;
  std::ifstream in(path_);
  std::stringstream buf;
  buf << in.rdbuf();
  std::string err;
  auto pods = ParsePodsJson(buf.str(), &err);
  if (!pods) {
    r.error = "pods file " + path_ + ": " + err;
    return r;
  }
  mtime_ns_ = mtime;
  size_ = st.st_size;
  r.changed = true;
  r.pods = std::move(*pods);
  return r;
}

PodIndex::PodIndex(const PodList& pods) : pods_(pods) {
  for (const auto& p : pods_) {
    if (p->cgroup_id) by_cgroup_[p->cgroup_id] = p.get();
    for (uint64_t id : p->container_cgroup_ids) by_cgroup_[id] = p.get();
    if (p->netns_ino) by_netns_[p->netns_ino] = p.get();
    for (const auto& ip : p->ips) by_ip_[IpKey(ip)] = p.get();
  }
}

const PodMeta* PodIndex::ForSocket(uint64_t cgroup_id, uint32_t netns_ino) const {
  if (auto it = by_cgroup_.find(cgroup_id); it != by_cgroup_.end()) return it->second;
  if (auto it = by_netns_.find(netns_ino); it != by_netns_.end()) return it->second;
  return nullptr;
}

const PodMeta* PodIndex::ForIp(const IpAddr& ip) const {
  auto it = by_ip_.find(IpKey(ip));
  return it == by_ip_.end() ? nullptr : it->second;
}

std::vector<std::pair<uint32_t, std::string>> PodIndex::Netns() const {
  std::vector<std::pair<uint32_t, std::string>> out;
  for (const auto& [ino, pod] : by_netns_) out.emplace_back(ino, pod->netns_path);
  return out;
}

}  // namespace podtap
