// Pod uids and network namespaces from /proc/PID/cgroup and /proc/PID/ns/net.
#include "agent/metadata/proc_pods.h"

#include <dirent.h>
#include <sys/stat.h>

#include <algorithm>
#include <fstream>

namespace podtap {
namespace {

bool IsHex(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
  });
}

// "cri-containerd-<id>.scope", "crio-<id>.scope", "docker-<id>.scope" or a
// bare id: the id (64 hex digits).
std::string ContainerId(std::string_view seg) {
  if (seg.ends_with(".scope")) {
    seg.remove_suffix(6);
    size_t dash = seg.rfind('-');
    if (dash == std::string_view::npos) return "";
    seg.remove_prefix(dash + 1);
  }
  return seg.size() == 64 && IsHex(seg) ? std::string(seg) : "";
}

bool Stat(const std::string& path, struct stat* st) { return stat(path.c_str(), st) == 0; }

}  // namespace

std::optional<KubeletCgroup> ParseKubeletCgroup(std::string_view path) {
  if (path.find("kubepods") == std::string_view::npos) return std::nullopt;
  std::vector<std::string_view> segs;
  while (!path.empty()) {
    size_t slash = path.find('/');
    std::string_view seg = path.substr(0, slash);
    if (!seg.empty()) segs.push_back(seg);
    if (slash == std::string_view::npos) break;
    path.remove_prefix(slash + 1);
  }
  for (size_t i = 0; i < segs.size(); i++) {
    std::string_view seg = segs[i];
    std::string uid;
    if (seg.starts_with("pod")) {  // cgroupfs: pod<uid>
      uid = seg.substr(3);
    } else if (seg.ends_with(".slice") && seg.find("-pod") != std::string_view::npos) {
      // systemd: kubepods-<qos>-pod<uid with '_' for '-'>.slice
      std::string_view rest = seg.substr(seg.rfind("-pod") + 4);
      rest.remove_suffix(6);
      uid = rest;
      std::replace(uid.begin(), uid.end(), '_', '-');
    } else {
      continue;
    }
    // A uid is 36 characters of hex and dashes.
    if (uid.size() != 36 || !std::all_of(uid.begin(), uid.end(), [](char c) {
          return c == '-' || IsHex({&c, 1});
        })) {
      continue;
    }
    KubeletCgroup k{uid, ""};
    if (i + 1 < segs.size()) k.container_id = ContainerId(segs[i + 1]);
    return k;
  }
  return std::nullopt;
}

ProcPodSource::ProcPodSource(std::string proc_root, std::string cgroup_root)
    : proc_root_(std::move(proc_root)), cgroup_root_(std::move(cgroup_root)) {
  if (cgroup_root_.empty()) {
    struct stat st;
    cgroup_root_ = Stat("/sys/fs/cgroup/unified/cgroup.procs", &st) ? "/sys/fs/cgroup/unified"
                                                                    : "/sys/fs/cgroup";
  }
}

std::string ProcPodSource::Describe() const { return "processes' cgroups under " + proc_root_; }

PodListResult ProcPodSource::Poll() {
  PodListResult r;
  struct stat st;
  // The agent runs in the host's network namespace (PID 1's may not be
  // readable, e.g. under a VM's init).
  if (!Stat(proc_root_ + "/self/ns/net", &st)) {
    r.error = "cannot read " + proc_root_ + "/self/ns/net (the host's network namespace)";
    return r;
  }
  const uint32_t host_netns = static_cast<uint32_t>(st.st_ino);
  DIR* dir = opendir(proc_root_.c_str());
  if (dir == nullptr) {
    r.error = "cannot list " + proc_root_;
    return r;
  }
  std::map<std::string, Found> found;
  while (dirent* e = readdir(dir)) {
    std::string_view name = e->d_name;
    if (name.empty() || !std::all_of(name.begin(), name.end(), ::isdigit)) continue;
    std::string pid_dir = proc_root_ + "/" + std::string(name);
    std::ifstream in(pid_dir + "/cgroup");
    std::string line, path;
    while (std::getline(in, line)) {
      if (line.starts_with("0::")) path = line.substr(3);  // the cgroup v2 line
    }
    auto k = ParseKubeletCgroup(path);
    // A process that exits while it is read is simply not seen.
    if (!k || !Stat(pid_dir + "/ns/net", &st)) continue;
    auto& pod = found[k->pod_uid];
    uint32_t netns = static_cast<uint32_t>(st.st_ino);
    if (netns != host_netns) {
      pod.netns_ino = netns;
      pod.netns_path = pid_dir + "/ns/net";
    } else if (!k->container_id.empty() && Stat(cgroup_root_ + path, &st)) {
      // Host network: sockets are told apart by their container's cgroup.
      pod.container_cgroup_ids.push_back(st.st_ino);
    }
  }
  closedir(dir);
  for (auto& [uid, pod] : found) {
    auto& ids = pod.container_cgroup_ids;
    std::sort(ids.begin(), ids.end());
    ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
  }
  if (reported_ && found == last_) return r;
  for (const auto& [uid, pod] : found) {
    if (pod.netns_ino == 0 && pod.container_cgroup_ids.empty()) continue;
    auto m = std::make_shared<PodMeta>();
    m->uid = uid;
    m->netns_ino = pod.netns_ino;
    m->netns_path = pod.netns_path;
    m->container_cgroup_ids = pod.container_cgroup_ids;
    r.pods.push_back(std::move(m));
  }
  last_ = std::move(found);
  reported_ = true;
  r.changed = true;
  return r;
}

}  // namespace podtap
