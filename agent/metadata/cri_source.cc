// CRI pod source: ListPodSandbox every poll, PodSandboxStatus(verbose) once per
// new sandbox, resolved to the keys sockets carry.
#include "agent/metadata/cri_source.h"

#include <arpa/inet.h>
#include <grpcpp/grpcpp.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <map>
#include <variant>

// CRI messages have fields named "linux", a macro in GNU C++ mode.
#undef linux
#include "cri.grpc.pb.h"

namespace podtap {
namespace {

namespace cri = runtime::v1;

bool Exists(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0;
}

// The cgroup v2 mount: beside the v1 controllers on hybrid hosts, else the root.
std::string CgroupV2Root() {
  return Exists("/sys/fs/cgroup/unified") ? "/sys/fs/cgroup/unified" : "/sys/fs/cgroup";
}

// kubelet's pod cgroup: "pod<uid>" (cgroupfs) or "...-pod<uid with _>.slice"
// (systemd), holding the sandbox's and every container's cgroup.
bool IsPodCgroup(const std::string& dir, const std::string& uid) {
  if (uid.empty()) return false;
  std::string base = dir.substr(dir.rfind('/') + 1);
  std::string underscored = uid;
  std::replace(underscored.begin(), underscored.end(), '-', '_');
  return base.find("pod" + uid) != std::string::npos ||
         base.find("pod" + underscored) != std::string::npos;
}

// Cgroup ids (directory inodes) of a cgroup's children, sorted.
std::vector<uint64_t> ChildCgroups(const std::string& dir) {
  std::vector<uint64_t> ids;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(dir, ec)) {
    struct stat st;
    if (e.is_directory(ec) && stat(e.path().c_str(), &st) == 0) ids.push_back(st.st_ino);
  }
  std::sort(ids.begin(), ids.end());
  return ids;
}

std::string RpcError(const char* rpc, const grpc::Status& s) {
  return std::string(rpc) + " failed: " + s.error_message() + " (gRPC code " +
         std::to_string(static_cast<int>(s.error_code())) + ")";
}

}  // namespace

struct CriPodSource::Impl {
  std::string configured;  // empty: DefaultCriSockets()
  std::string cgroup_root;
  std::chrono::milliseconds deadline;
  std::string socket;  // the one connected to (or last tried)
  std::shared_ptr<grpc::Channel> channel;
  std::unique_ptr<cri::RuntimeService::Stub> stub;
  std::map<std::string, std::shared_ptr<const PodMeta>> pods;  // by sandbox id
  bool listed_once = false;
  bool answering = false;  // the last ListPodSandbox succeeded

  std::unique_ptr<grpc::ClientContext> Context() const {
    auto ctx = std::make_unique<grpc::ClientContext>();
    ctx->set_deadline(std::chrono::system_clock::now() + deadline);
    return ctx;
  }

  // Picks the socket and opens a channel; an error when no socket exists.
  std::string Connect() {
    socket.clear();
    if (!configured.empty()) {
      socket = configured;
    } else {
      for (const auto& s : DefaultCriSockets()) {
        if (Exists(s)) {
          socket = s;
          break;
        }
      }
      if (socket.empty()) {
        return "no container runtime socket (looked for " + DefaultCriSockets()[0] + " and " +
               DefaultCriSockets()[1] + "; name one with --cri-socket)";
      }
    }
    if (!Exists(socket)) {
      return "container runtime socket " + socket + " does not exist (is the runtime running?)";
    }
    grpc::ChannelArguments args;
    // A runtime that restarts is picked up on the next poll, not after
    // gRPC's reconnect backoff (up to two minutes by default).
    args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 200);
    args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
    args.SetMaxReceiveMessageSize(16 << 20);
    channel =
        grpc::CreateCustomChannel("unix://" + socket, grpc::InsecureChannelCredentials(), args);
    stub = cri::RuntimeService::NewStub(channel);
    spdlog::debug("CRI: connecting to the container runtime at {}", socket);
    return "";
  }

  void Disconnect() {
    answering = false;
    stub.reset();
    channel.reset();
  }

  // A pod from its sandbox's status, or why it cannot be matched to sockets yet.
  std::variant<std::shared_ptr<const PodMeta>, std::string> Resolve(const std::string& id) {
    cri::PodSandboxStatusRequest req;
    req.set_pod_sandbox_id(id);
    req.set_verbose(true);
    cri::PodSandboxStatusResponse resp;
    auto ctx = Context();
    grpc::Status s = stub->PodSandboxStatus(ctx.get(), req, &resp);
    if (!s.ok()) return RpcError("PodSandboxStatus", s);
    const cri::PodSandboxStatus& st = resp.status();
    auto pod = std::make_shared<PodMeta>();
    pod->ns = st.metadata().namespace_();
    pod->name = st.metadata().name();
    pod->uid = st.metadata().uid();
    pod->labels.insert(st.labels().begin(), st.labels().end());
    DeriveOwnerFromLabels(pod.get());

    SandboxRuntimeInfo info;
    if (auto it = resp.info().find("info"); it != resp.info().end()) {
      std::string err;
      auto parsed = ParseSandboxInfo(it->second, &err);
      if (!parsed) return err;
      info = *parsed;
    }
    bool host_network = st.linux().namespaces().options().network() == cri::NODE;
    struct stat sb;
    if (host_network) {
      // The host's namespace is shared by every host process: only the
      // cgroup tells this pod's sockets apart.
      if (info.cgroups_path.empty()) return "host-network sandbox without a cgroups path";
      std::string own = CgroupDir(cgroup_root, info.cgroups_path);
      std::string parent = own.substr(0, own.rfind('/'));
      // Without a pod cgroup (a runtime driven by something other than
      // kubelet) only the sandbox's own cgroup is known to be this pod's.
      pod->cgroup_path = IsPodCgroup(parent, pod->uid) ? parent : own;
      if (stat(pod->cgroup_path.c_str(), &sb) != 0) {
        return "cannot stat cgroup " + pod->cgroup_path + ": " + std::strerror(errno);
      }
      pod->cgroup_id = sb.st_ino;
      if (pod->cgroup_path == parent) pod->container_cgroup_ids = ChildCgroups(parent);
      return pod;
    }
    // The spec's path when the runtime bind-mounts the namespace, else the
    // sandbox process' own; both name the same namespace inode.
    pod->netns_path = !info.netns_path.empty() ? info.netns_path
                      : info.pid > 0           ? "/proc/" + std::to_string(info.pid) + "/ns/net"
                                               : "";
    if (pod->netns_path.empty()) return "sandbox info names neither a network namespace nor a pid";
    if (stat(pod->netns_path.c_str(), &sb) != 0) {
      return "cannot stat network namespace " + pod->netns_path + ": " + std::strerror(errno);
    }
    pod->netns_ino = static_cast<uint32_t>(sb.st_ino);
    std::vector<std::string> ips;
    if (!st.network().ip().empty()) ips.push_back(st.network().ip());
    for (const auto& extra : st.network().additional_ips()) ips.push_back(extra.ip());
    for (const auto& ip : ips) {
      if (auto parsed = IpAddr::Parse(ip)) pod->ips.push_back(*parsed);
    }
    return pod;
  }
};

CriPodSource::CriPodSource(std::string socket, std::chrono::milliseconds deadline,
                           std::string cgroup_root)
    : impl_(std::make_unique<Impl>()) {
  impl_->configured = std::move(socket);
  impl_->deadline = deadline;
  impl_->cgroup_root = cgroup_root.empty() ? CgroupV2Root() : std::move(cgroup_root);
}

CriPodSource::~CriPodSource() = default;

std::string CriPodSource::Describe() const {
  const std::string& s = impl_->socket.empty() ? impl_->configured : impl_->socket;
  return "CRI runtime at " + (s.empty() ? std::string("(auto-detected socket)") : s);
}

PodListResult CriPodSource::Poll() {
  Impl& im = *impl_;
  PodListResult r;
  if (!im.stub) {
    if (std::string err = im.Connect(); !err.empty()) {
      r.error = "CRI: " + err;
      return r;
    }
  }
  cri::ListPodSandboxRequest req;
  req.mutable_filter()->mutable_state()->set_state(cri::SANDBOX_READY);
  cri::ListPodSandboxResponse resp;
  auto ctx = im.Context();
  grpc::Status s = im.stub->ListPodSandbox(ctx.get(), req, &resp);
  if (!s.ok()) {
    r.error = "CRI " + im.socket + ": " + RpcError("ListPodSandbox", s);
    im.Disconnect();
    return r;
  }
  if (!im.answering) {
    spdlog::info("CRI: the container runtime at {} answers", im.socket);
    im.answering = true;
  }
  bool changed = !im.listed_once;
  im.listed_once = true;
  std::map<std::string, std::shared_ptr<const PodMeta>> next;
  for (const auto& sb : resp.items()) {
    if (sb.state() != cri::SANDBOX_READY) continue;
    if (auto it = im.pods.find(sb.id()); it != im.pods.end()) {
      next.emplace(sb.id(), it->second);
      continue;
    }
    auto resolved = im.Resolve(sb.id());
    if (auto* err = std::get_if<std::string>(&resolved)) {
      // Retried on the next poll: a sandbox can be listed a moment before its
      // network is set up, or just before it goes away.
      spdlog::debug("CRI: sandbox {} ({}/{}) not attributable yet: {}", sb.id(),
                    sb.metadata().namespace_(), sb.metadata().name(), *err);
      continue;
    }
    auto pod = std::get<std::shared_ptr<const PodMeta>>(resolved);
    r.changes.push_back(fmt::format(
        "CRI: pod {}/{} (sandbox {}) netns inode {} cgroup id {} ({} container cgroups)", pod->ns,
        pod->name, sb.id().substr(0, 12), pod->netns_ino, pod->cgroup_id,
        pod->container_cgroup_ids.size()));
    next.emplace(sb.id(), std::move(pod));
    changed = true;
  }
  // Containers of host-network pods come and go without a new sandbox.
  for (auto& [id, pod] : next) {
    if (pod->container_cgroup_ids.empty()) continue;
    std::vector<uint64_t> now = ChildCgroups(pod->cgroup_path);
    if (now == pod->container_cgroup_ids) continue;
    auto updated = std::make_shared<PodMeta>(*pod);
    updated->container_cgroup_ids = std::move(now);
    pod = std::move(updated);
    changed = true;
  }
  for (const auto& [id, pod] : im.pods) {
    if (!next.contains(id)) {
      r.changes.push_back(
          fmt::format("CRI: pod {}/{} (sandbox {}) is gone", pod->ns, pod->name, id.substr(0, 12)));
      changed = true;
    }
  }
  im.pods = std::move(next);
  if (!changed) return r;
  r.changed = true;
  for (const auto& [id, pod] : im.pods) r.pods.push_back(pod);
  return r;
}

}  // namespace podtap
