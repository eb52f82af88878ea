// The query service's listeners (a root-only unix socket; TCP with TLS and a bearer token) and
// its options; the handlers are agent/query_handlers.cc's.
#include "agent/query_service.h"

#include <fcntl.h>
#include <grpcpp/security/server_credentials.h>
#include <grpcpp/server_posix.h>
#include <poll.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "agent/query_handlers.h"

namespace podtap {
namespace {

std::string ReadFile(const std::string& path, std::string* error) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    *error = "cannot read " + path + ": " + std::strerror(errno);
    return "";
  }
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

}  // namespace

std::string CheckQueryOptions(const QueryServerOptions& o) {
  bool any_tls = !o.tls_cert.empty() || !o.tls_key.empty() || !o.token_file.empty();
  if (o.listen.empty()) {
    if (any_tls) {
      return "--query-tls-cert, --query-tls-key and --query-token-file only apply with "
             "--query-listen";
    }
    return "";
  }
  if (o.tls_cert.empty() || o.tls_key.empty() || o.token_file.empty()) {
    return "--query-listen " + o.listen +
           " serves the query service over TCP, which needs TLS and a bearer token: pass "
           "--query-tls-cert, --query-tls-key and --query-token-file (a plain TCP query "
           "port would let anyone on the network tap this node's requests)";
  }
  return "";
}

QueryServer::QueryServer(Agent* agent, QueryServerOptions opts)
    : agent_(agent), opts_(std::move(opts)) {}

QueryServer::~QueryServer() { Stop(); }

std::string QueryServer::Describe() const {
  std::string out;
  if (!opts_.socket_path.empty()) out = "unix socket " + opts_.socket_path + " (root only)";
  if (!opts_.listen.empty()) {
    out +=
        (out.empty() ? "" : " and ") + std::string("TCP ") + opts_.listen + " (TLS, bearer token)";
  }
  return out;
}

std::string QueryServer::BindUnixSocket() {
  namespace fs = std::filesystem;
  const std::string& path = opts_.socket_path;
  sockaddr_un addr{};
  if (path.size() >= sizeof(addr.sun_path)) return "query socket path too long: " + path;
  fs::path dir = fs::path(path).parent_path();
  std::error_code ec;
  if (!dir.empty() && !fs::exists(dir, ec)) {
    fs::create_directories(dir, ec);
    if (ec) return "cannot create " + dir.string() + ": " + ec.message();
    // Only root may even reach the socket. A directory that was there keeps its mode: the
    // socket's own 0600 and the peer check keep others out, and a shared directory named
    // here (/run, /tmp) must not be closed to the rest of the node.
    if (chmod(dir.c_str(), 0700) != 0) {
      return "cannot chmod 0700 " + dir.string() + ": " + std::strerror(errno);
    }
  }
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.c_str(), path.size());
  struct stat st {};
  if (lstat(path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) return path + " exists and is not a socket; not replacing it";
    int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    bool live = probe >= 0 && connect(probe, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
    if (probe >= 0) close(probe);
    if (live) {
      return "query socket " + path +
             " is in use by another process (another podtap-agent?); pass --query-socket "
             "with another path, or \"\" to serve none";
    }
    unlink(path.c_str());  // left by an agent that did not stop cleanly
  }
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return std::string("socket(AF_UNIX): ") + std::strerror(errno);
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    std::string err = "cannot bind " + path + ": " + std::strerror(errno);
    close(fd);
    return err;
  }
  if (chmod(path.c_str(), 0600) != 0 || listen(fd, 64) != 0) {
    std::string err = "cannot serve " + path + ": " + std::strerror(errno);
    close(fd);
    unlink(path.c_str());
    return err;
  }
  listen_fd_ = fd;
  return "";
}

std::string QueryServer::Start() {
  if (std::string err = CheckQueryOptions(opts_); !err.empty()) return err;
  std::string token;
  grpc::ServerBuilder builder;
  if (!opts_.listen.empty()) {
    std::string err;
    token = ReadFile(opts_.token_file, &err);
    while (!token.empty() && std::isspace(static_cast<unsigned char>(token.back()))) {
      token.pop_back();
    }
    if (err.empty() && token.empty()) err = "token file " + opts_.token_file + " is empty";
    grpc::SslServerCredentialsOptions ssl;
    grpc::SslServerCredentialsOptions::PemKeyCertPair pair;
    if (err.empty()) pair.private_key = ReadFile(opts_.tls_key, &err);
    if (err.empty()) pair.cert_chain = ReadFile(opts_.tls_cert, &err);
    if (!err.empty()) return "query service: " + err;
    ssl.pem_key_cert_pairs.push_back(pair);
    builder.AddListeningPort(opts_.listen, grpc::SslServerCredentials(ssl));
  }
  service_ = std::make_unique<QueryServiceImpl>(agent_, token);
  builder.RegisterService(service_.get());
  if (!opts_.socket_path.empty()) {
    if (std::string err = BindUnixSocket(); !err.empty()) return err;
  }
  server_ = builder.BuildAndStart();
  if (!server_) {
    return "query service: cannot listen on " + opts_.listen +
           " (address in use, or the TLS certificate and key do not load)";
  }
  if (listen_fd_ >= 0) acceptor_ = std::thread([this] { AcceptLoop(); });
  return "";
}

void QueryServer::AcceptLoop() {
  while (!stopping_.load()) {
    pollfd p{listen_fd_, POLLIN, 0};
    if (poll(&p, 1, 200) <= 0) continue;
    int fd = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (fd < 0) continue;
    ucred cred{};
    socklen_t len = sizeof(cred);
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) {
      close(fd);
      continue;
    }
    // Every call checks the uid (PERMISSION_DENIED with a message the
    // client shows), which a closed connection could not tell it.
    service_->RememberPeer(fd, cred.uid);
    grpc::AddInsecureChannelFromFd(server_.get(), fd);
  }
}

void QueryServer::Stop() {
  if (!server_) return;
  agent_->taps().Close();  // live Tap handlers return
  stopping_ = true;
  if (acceptor_.joinable()) acceptor_.join();
  server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
  server_.reset();
  if (listen_fd_ >= 0) {
    close(listen_fd_);
    listen_fd_ = -1;
    unlink(opts_.socket_path.c_str());
  }
}

}  // namespace podtap
