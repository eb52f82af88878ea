// podtap-relay's query service: the same podtap.v1.Query the agents serve,
// answered by asking every agent (found through the Kubernetes API, or
// given) and merging their answers, with the coverage saying who answered.
#pragma once

#include <grpcpp/grpcpp.h>

#include <optional>
#include <string>
#include <vector>

#include "agent/metadata/kube_config.h"
#include "cli/fanout.h"
#include "query.grpc.pb.h"

namespace podtap {

struct RelayOptions {
  AgentAuth auth;                   // to the agents; timeout_s bounds each agent
  std::vector<std::string> agents;  // fixed agents (no Kubernetes API)
  std::optional<KubeConfig> kube;   // else: the agents are the pods it lists
  std::string podtap_namespace = "podtap";
  std::string agent_selector = "app.kubernetes.io/name=podtap";
};

// Whether `listen` ("host:port") is a loopback address: the relay serves
// without TLS or tokens of its own, so only kubectl port-forward (authorized
// by the API server) may reach it. Empty when it is; why not otherwise.
std::string CheckLoopbackListen(const std::string& listen);

// The per-agent timeout for a call whose caller gives up at `deadline`: the
// relay's own, shortened so merged answers reach the caller in time (250 ms
// before its deadline, at least 100 ms).
double AgentTimeout(double relay_timeout_s, std::chrono::system_clock::time_point deadline,
                    std::chrono::system_clock::time_point now);

// The status the relay answers a fan-out with: OK when some agent answered
// with rows (or none with NOT_FOUND); UNAVAILABLE naming every agent and why
// when none answered; NOT_FOUND when every agent that answered knows no pod
// the selector names, with the coverage in the message.
grpc::Status FanOutStatus(const v1::Coverage& coverage, bool any_answer,
                          const std::string& not_found);

class RelayService final : public v1::Query::Service {
 public:
  explicit RelayService(RelayOptions opts) : opts_(std::move(opts)) {}

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
  // The agents to ask for this call (only the node the caller names in
  // kNodeMetadata, if any) and the credentials with the call's timeout.
  grpc::Status Agents(const grpc::ServerContext* ctx, AgentSet* set, AgentAuth* auth) const;

  const RelayOptions opts_;
};

}  // namespace podtap
