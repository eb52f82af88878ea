// The operator query service (proto/query.proto): Stat, Top, Tap, Conns and
// Edges answered from the agent's window, connection table and taps. Served
// on a unix socket only root may use (peer credentials checked per call),
// and, when configured, on TCP with TLS and a bearer token.
#pragma once

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>

#include "agent/agent.h"

namespace podtap {

struct QueryServerOptions {
  std::string socket_path = "/run/podtap/podtap.sock";  // "": no unix socket
  std::string listen;  // "host:port": also TCP, with all three below
  std::string tls_cert, tls_key, token_file;
};

// "" when the options can be served, else what is wrong (for the operator).
std::string CheckQueryOptions(const QueryServerOptions& o);

class QueryServiceImpl;

class QueryServer {
 public:
  QueryServer(Agent* agent, QueryServerOptions opts);
  ~QueryServer();
  // Binds and starts serving; an operator-facing error on failure.
  std::string Start();
  // Ends live taps, stops serving and removes the socket.
  void Stop();
  // What it serves, for the log.
  std::string Describe() const;

 private:
  std::string BindUnixSocket();
  void AcceptLoop();

  Agent* agent_;
  QueryServerOptions opts_;
  std::unique_ptr<QueryServiceImpl> service_;
  std::unique_ptr<grpc::Server> server_;
  int listen_fd_ = -1;
  std::thread acceptor_;
  std::atomic<bool> stopping_{false};
};

}  // namespace podtap
