// The handlers of podtap.v1.Query (proto/query.proto): Stat, Top, Tap, Conns and Edges answered
// from the agent's window, connection table and taps, each after checking its caller. The
// listeners that serve them are agent/query_service.cc's.
#pragma once

#include <grpcpp/grpcpp.h>
#include <sys/types.h>

#include <mutex>
#include <string>
#include <unordered_map>

#include "agent/agent.h"
#include "query.grpc.pb.h"

namespace podtap {

class QueryServiceImpl final : public v1::Query::Service {
 public:
  QueryServiceImpl(Agent* agent, std::string token) : agent_(agent), token_(std::move(token)) {}

  // Called by the unix socket's acceptor before gRPC sees the connection.
  void RememberPeer(int fd, uid_t uid) {
    std::lock_guard<std::mutex> lock(mu_);
    peer_uid_[fd] = uid;
  }

  grpc::Status Stat(grpc::ServerContext* ctx, const v1::StatRequest* req,
                    v1::StatResponse* resp) override;
  grpc::Status Top(grpc::ServerContext* ctx, const v1::TopRequest* req,
                   v1::TopResponse* resp) override;
  grpc::Status Tap(grpc::ServerContext* ctx, const v1::TapRequest* req,
                   grpc::ServerWriter<v1::TapEvent>* writer) override;
  grpc::Status Conns(grpc::ServerContext* ctx, const v1::ConnsRequest* req,
                     v1::ConnsResponse* resp) override;
  grpc::Status Edges(grpc::ServerContext* ctx, const v1::EdgesRequest* req,
                     v1::EdgesResponse* resp) override;

 private:
  grpc::Status Authorize(grpc::ServerContext* ctx);

  Agent* agent_;
  const std::string token_;  // TCP callers must present it
  std::mutex mu_;
  // Unix socket connections are handed to gRPC as file descriptors, whose
  // peer string is "fd:N"; the acceptor records each one's peer uid first.
  std::unordered_map<int, uid_t> peer_uid_;
};

}  // namespace podtap
