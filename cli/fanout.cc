// Asking podtap agents, one or all at once (cli/fanout.h).
#include "cli/fanout.h"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

namespace podtap {
namespace {

bool ReadWhole(const std::string& path, const char* what, std::string* out, std::string* error) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    *error = std::string("cannot read ") + what + " " + path + ": " + std::strerror(errno);
    return false;
  }
  std::stringstream s;
  s << in.rdbuf();
  *out = s.str();
  return true;
}

// gRPC only says "unavailable" about a socket it cannot open; say why.
std::string CheckSocket(const std::string& path) {
  sockaddr_un addr{};
  if (path.size() >= sizeof(addr.sun_path)) return "socket path too long: " + path;
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.c_str(), path.size());
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return std::string("socket: ") + std::strerror(errno);
  int rc = connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  int err = errno;
  close(fd);
  if (rc == 0) return "";
  if (err == EACCES || err == EPERM) {
    return "permission denied opening the agent's socket " + path +
           ": only root may query podtap (try sudo)";
  }
  if (err == ENOENT) {
    return "cannot reach the agent: no socket at " + path +
           " (is podtap-agent running on this node? it serves --query-socket)";
  }
  if (err == ECONNREFUSED) {
    return "cannot reach the agent: nothing listens on " + path +
           " (a socket left by an agent that is no longer running?)";
  }
  return "cannot reach the agent at " + path + ": " + std::strerror(err);
}

}  // namespace

std::unique_ptr<AgentClient> AgentClient::Make(const AgentAuth& auth, const std::string& target,
                                               std::string* error) {
  std::unique_ptr<AgentClient> c(new AgentClient(auth, target));
  std::shared_ptr<grpc::Channel> channel;
  if (target.starts_with("unix://")) {
    if (*error = CheckSocket(target.substr(7)); !error->empty()) return nullptr;
    if (!auth.ca_file.empty() || !auth.token_file.empty()) {
      *error =
          "--ca and --token-file are for a host:port agent; the unix socket checks who you are "
          "instead";
      return nullptr;
    }
    channel = grpc::CreateChannel(target, grpc::InsecureChannelCredentials());
  } else if (auth.plaintext) {
    channel = grpc::CreateChannel(target, grpc::InsecureChannelCredentials());
  } else {
    if (auth.ca_file.empty() || auth.token_file.empty()) {
      *error = "--agent " + target +
               " is a TCP address: the agent serves it with TLS and a bearer token, so pass "
               "--ca (the CA that signed its certificate) and --token-file";
      return nullptr;
    }
    grpc::SslCredentialsOptions ssl;
    if (!ReadWhole(auth.ca_file, "CA file", &ssl.pem_root_certs, error) ||
        !ReadWhole(auth.token_file, "token file", &c->token_, error)) {
      return nullptr;
    }
    while (!c->token_.empty() && std::isspace(static_cast<unsigned char>(c->token_.back()))) {
      c->token_.pop_back();
    }
    if (c->token_.empty()) {
      *error = "token file " + auth.token_file + " is empty";
      return nullptr;
    }
    grpc::ChannelArguments args;
    // One certificate for every node's agent names them all alike.
    if (!auth.tls_server_name.empty()) args.SetSslTargetNameOverride(auth.tls_server_name);
    channel = grpc::CreateCustomChannel(target, grpc::SslCredentials(ssl), args);
  }
  c->stub_ = v1::Query::NewStub(channel);
  return c;
}

std::unique_ptr<grpc::ClientContext> AgentClient::Context(bool deadline) const {
  auto ctx = std::make_unique<grpc::ClientContext>();
  if (deadline) {
    ctx->set_deadline(std::chrono::system_clock::now() +
                      std::chrono::milliseconds(static_cast<int64_t>(auth_.timeout_s * 1000)));
  }
  if (!token_.empty()) ctx->AddMetadata("authorization", "Bearer " + token_);
  if (!auth_.node.empty()) ctx->AddMetadata(kNodeMetadata, auth_.node);
  return ctx;
}

std::string AgentClient::Explain(const grpc::Status& st) const {
  if (auth_.role == "relay") {
    // The relay's own answers (no agent answered, ...) say what happened;
    // only a relay that cannot be reached needs explaining.
    bool unreachable = st.error_code() == grpc::StatusCode::UNAVAILABLE &&
                       st.error_message().find("none of the") == std::string::npos;
    if (unreachable || st.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED) {
      return "cannot reach podtap-relay at " + target_ + ": " + st.error_message();
    }
    return st.error_message();
  }
  switch (st.error_code()) {
    case grpc::StatusCode::UNAVAILABLE:
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      return "cannot reach the agent at " + target_ + ": " + st.error_message() +
             " (is podtap-agent running there, and is this its --query-socket or "
             "--query-listen address?)";
    case grpc::StatusCode::PERMISSION_DENIED:
    case grpc::StatusCode::UNAUTHENTICATED:
      return "the agent refused this call: " + st.error_message();
    default:
      return st.error_message();
  }
}

std::string NoneAnswered(const v1::Coverage& coverage) {
  std::string why;
  for (const auto& u : coverage.unanswered()) why += "\n  " + u.agent() + ": " + u.error();
  return "none of the " + std::to_string(coverage.asked()) + " agents answered:" + why;
}

std::string CoverageLine(const v1::Coverage& coverage) {
  std::string line = "answers from " + std::to_string(coverage.answered_size()) + " of " +
                     std::to_string(coverage.asked()) + " agents";
  for (const auto& u : coverage.unanswered()) {
    line += "; NO ANSWER from " + u.agent() + ": " + u.error();
  }
  return line;
}

// --- tap ---------------------------------------------------------------------------

TapFanOut::TapFanOut(const AgentAuth& auth, const AgentSet& agents, const v1::TapRequest& req,
                     double duration_s)
    : auth_(auth),
      agents_(agents),
      req_(req),
      duration_s_(duration_s),
      streams_(agents.addresses.size()),
      limit_(req.max_rps(), std::chrono::steady_clock::now()) {}

TapFanOut::~TapFanOut() {
  Stop();
  for (auto& t : threads_) t.join();
}

void TapFanOut::Stop() {
  std::lock_guard<std::mutex> lock(mu_);
  done_ = true;
  for (auto& s : streams_) {
    if (s.ctx) s.ctx->TryCancel();
  }
  changed_.notify_all();
}

bool TapFanOut::Attach(Attached* out) {
  for (size_t i = 0; i < streams_.size(); i++) {
    Stream& s = streams_[i];
    s.client = AgentClient::Make(auth_, agents_.addresses[i], &s.error);
    if (!s.client) {
      s.state = State::kFailed;
      continue;
    }
    s.ctx = s.client->Context(false);
    if (duration_s_ > 0) {
      s.ctx->set_deadline(std::chrono::system_clock::now() +
                          std::chrono::milliseconds(static_cast<int64_t>(duration_s_ * 1000)));
    }
  }
  for (size_t i = 0; i < streams_.size(); i++) {
    if (streams_[i].client) threads_.emplace_back(&TapFanOut::Follow, this, i);
  }
  std::unique_lock<std::mutex> lock(mu_);
  changed_.wait_for(
      lock, std::chrono::milliseconds(static_cast<int64_t>(auth_.timeout_s * 1000)), [this] {
        return std::none_of(streams_.begin(), streams_.end(),
                            [](const Stream& s) { return s.state == State::kWaiting; });
      });
  v1::Coverage& cov = out->coverage;
  cov.set_asked(static_cast<uint32_t>(streams_.size() + agents_.not_asked.size()));
  for (size_t i = 0; i < streams_.size(); i++) {
    switch (streams_[i].state) {
      case State::kAttached:
        cov.add_answered(agents_.names[i]);
        break;
      case State::kNothingHere:
        out->nothing_here++;
        out->not_found = streams_[i].error;
        break;
      case State::kWaiting:
      case State::kFailed: {
        v1::Unanswered* u = cov.add_unanswered();
        u->set_agent(agents_.names[i]);
        u->set_error(streams_[i].state == State::kWaiting ? "not attached within --timeout"
                                                          : streams_[i].error);
        break;
      }
    }
  }
  for (const v1::Unanswered& u : agents_.not_asked) *cov.add_unanswered() = u;
  if (cov.answered_size() > 0) return true;
  done_ = true;
  for (auto& s : streams_) {
    if (s.ctx) s.ctx->TryCancel();
  }
  changed_.notify_all();
  return false;
}

void TapFanOut::Run(const std::function<bool(const v1::TapEvent&)>& on_event,
                    const std::function<void(const std::string&, const std::string&)>& on_end) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    on_event_ = on_event;
    on_end_ = on_end;
    running_ = true;
    changed_.notify_all();
  }
  for (auto& t : threads_) t.join();
  threads_.clear();
}

void TapFanOut::Follow(size_t i) {
  Stream& s = streams_[i];
  s.reader = s.client->stub().Tap(s.ctx.get(), req_);
  s.reader->WaitForInitialMetadata();
  if (s.ctx->GetServerInitialMetadata().count("podtap-tap") == 0) {
    grpc::Status st = s.reader->Finish();
    std::lock_guard<std::mutex> lock(mu_);
    s.state = st.error_code() == grpc::StatusCode::NOT_FOUND ? State::kNothingHere : State::kFailed;
    s.error = s.client->Explain(st);
    changed_.notify_all();
    return;
  }
  {
    std::unique_lock<std::mutex> lock(mu_);
    s.state = State::kAttached;
    changed_.notify_all();
    // Events wait in the stream until there is someone to pass them to.
    changed_.wait(lock, [this] { return running_ || done_; });
  }
  v1::TapEvent ev;
  while (s.reader->Read(&ev)) {
    std::lock_guard<std::mutex> lock(mu_);
    if (done_) break;
    skipped_ += ev.skipped_before();
    if (!limit_.Take(std::chrono::steady_clock::now())) {
      skipped_++;
      continue;
    }
    ev.set_skipped_before(skipped_);
    skipped_ = 0;
    if (!on_event_(ev)) {
      done_ = true;
      for (auto& other : streams_) {
        if (other.ctx) other.ctx->TryCancel();
      }
    }
  }
  grpc::Status st = s.reader->Finish();
  std::lock_guard<std::mutex> lock(mu_);
  bool expected =
      done_ || (duration_s_ > 0 && st.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED);
  if (!st.ok() && !expected && on_end_) on_end_(agents_.names[i], s.client->Explain(st));
}

}  // namespace podtap
