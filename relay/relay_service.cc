// podtap-relay's query service (relay/relay_service.h).
#include "relay/relay_service.h"

#include <arpa/inet.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <iostream>
#include <thread>

#include "cli/discovery.h"
#include "cli/merge.h"

namespace podtap {
namespace {

// Rows asked of each agent when merging Top: all it has, so the merged
// ranking misses none (the CLI asks the same).
constexpr uint32_t kAllTopRows = 1'000'000;

void Log(const std::string& line) { std::cerr << "podtap-relay: " << line << "\n" << std::flush; }

template <typename Resp>
grpc::Status Merged(
    const AgentAuth& auth, const AgentSet& set,
    const std::function<grpc::Status(AgentClient&, grpc::ClientContext*, Resp*)>& call,
    const std::function<Resp(const std::vector<Resp>&)>& merge, Resp* resp) {
  FanOut<Resp> r = AskAll<Resp>(auth, set, call);
  for (const auto& u : r.coverage.unanswered())
    Log("no answer from " + u.agent() + ": " + u.error());
  grpc::Status st = FanOutStatus(r.coverage, !r.answers.empty(), r.not_found);
  if (!st.ok()) return st;
  *resp = merge(r.answers);
  *resp->mutable_coverage() = r.coverage;
  return grpc::Status::OK;
}

}  // namespace

std::string CheckLoopbackListen(const std::string& listen) {
  auto colon = listen.rfind(':');
  std::string host = colon == std::string::npos ? "" : listen.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  in_addr v4{};
  in6_addr v6{};
  bool loopback = host == "localhost" ||
                  (inet_pton(AF_INET, host.c_str(), &v4) == 1 && (ntohl(v4.s_addr) >> 24) == 127) ||
                  (inet_pton(AF_INET6, host.c_str(), &v6) == 1 && IN6_IS_ADDR_LOOPBACK(&v6));
  if (loopback && colon + 1 < listen.size()) return "";
  return "--listen " + listen +
         ": podtap-relay listens on a loopback address only (127.0.0.1:PORT or [::1]:PORT): "
         "it has no TLS or tokens of its own, and kubectl port-forward, which the API server "
         "authorizes, is the way in";
}

double AgentTimeout(double relay_timeout_s, std::chrono::system_clock::time_point deadline,
                    std::chrono::system_clock::time_point now) {
  double left = std::chrono::duration<double>(deadline - now).count() - 0.25;
  return std::max(0.1, std::min(relay_timeout_s, left));
}

grpc::Status FanOutStatus(const v1::Coverage& coverage, bool any_answer,
                          const std::string& not_found) {
  if (!any_answer) return {grpc::StatusCode::UNAVAILABLE, NoneAnswered(coverage)};
  if (!not_found.empty()) {
    return {grpc::StatusCode::NOT_FOUND,
            not_found + " (nor on any other node that answered: " + CoverageLine(coverage) + ")"};
  }
  return grpc::Status::OK;
}

grpc::Status RelayService::Agents(const grpc::ServerContext* ctx, AgentSet* set,
                                  AgentAuth* auth) const {
  *auth = opts_.auth;
  auth->timeout_s =
      AgentTimeout(opts_.auth.timeout_s, ctx->deadline(), std::chrono::system_clock::now());
  std::string node;
  auto it = ctx->client_metadata().find(kNodeMetadata);
  if (it != ctx->client_metadata().end()) node.assign(it->second.data(), it->second.size());
  if (!opts_.kube) {
    if (!node.empty()) {
      return {grpc::StatusCode::FAILED_PRECONDITION,
              "this podtap-relay asks a fixed list of agents (--agent) and knows no nodes: "
              "drop --node"};
    }
    set->addresses = opts_.agents;
    set->names = opts_.agents;
    return grpc::Status::OK;
  }
  std::vector<AgentTarget> found;
  std::string error;
  if (!FindAgents(*opts_.kube, opts_.podtap_namespace, opts_.agent_selector, node, auth->timeout_s,
                  &found, &error)) {
    Log(error);
    return {grpc::StatusCode::UNAVAILABLE, "podtap-relay cannot find the agents: " + error};
  }
  if (found.empty()) {
    return {grpc::StatusCode::UNAVAILABLE, "podtap-relay finds no podtap agent" +
                                               (node.empty() ? "" : " on node " + node) +
                                               " among the pods labelled " + opts_.agent_selector +
                                               " in namespace " + opts_.podtap_namespace};
  }
  for (const AgentTarget& t : found) {
    if (t.address.empty()) {
      v1::Unanswered u;
      u.set_agent(t.node);
      u.set_error(t.error);
      set->not_asked.push_back(std::move(u));
    } else {
      set->addresses.push_back(t.address);
      set->names.push_back(t.node + " (" + t.address + ")");
    }
  }
  return grpc::Status::OK;
}

grpc::Status RelayService::Stat(grpc::ServerContext* ctx, const v1::StatRequest* req,
                                v1::StatResponse* resp) {
  AgentSet set;
  AgentAuth auth;
  if (grpc::Status st = Agents(ctx, &set, &auth); !st.ok()) return st;
  return Merged<v1::StatResponse>(
      auth, set,
      [req](AgentClient& a, grpc::ClientContext* c, v1::StatResponse* out) {
        return a.stub().Stat(c, *req, out);
      },
      [](const std::vector<v1::StatResponse>& in) { return MergeStat(in); }, resp);
}

grpc::Status RelayService::Top(grpc::ServerContext* ctx, const v1::TopRequest* req,
                               v1::TopResponse* resp) {
  AgentSet set;
  AgentAuth auth;
  if (grpc::Status st = Agents(ctx, &set, &auth); !st.ok()) return st;
  v1::TopRequest all = *req;
  all.set_limit(kAllTopRows);
  std::string sort = req->sort().empty() ? "requests" : req->sort();
  uint32_t limit = req->limit() == 0 ? 20 : req->limit();
  return Merged<v1::TopResponse>(
      auth, set,
      [&all](AgentClient& a, grpc::ClientContext* c, v1::TopResponse* out) {
        return a.stub().Top(c, all, out);
      },
      [&sort, limit](const std::vector<v1::TopResponse>& in) { return MergeTop(in, sort, limit); },
      resp);
}

grpc::Status RelayService::Conns(grpc::ServerContext* ctx, const v1::ConnsRequest* req,
                                 v1::ConnsResponse* resp) {
  AgentSet set;
  AgentAuth auth;
  if (grpc::Status st = Agents(ctx, &set, &auth); !st.ok()) return st;
  uint32_t limit = req->limit() == 0 ? 1000 : req->limit();
  return Merged<v1::ConnsResponse>(
      auth, set,
      [req](AgentClient& a, grpc::ClientContext* c, v1::ConnsResponse* out) {
        return a.stub().Conns(c, *req, out);
      },
      [limit](const std::vector<v1::ConnsResponse>& in) { return MergeConns(in, limit); }, resp);
}

grpc::Status RelayService::Edges(grpc::ServerContext* ctx, const v1::EdgesRequest* req,
                                 v1::EdgesResponse* resp) {
  AgentSet set;
  AgentAuth auth;
  if (grpc::Status st = Agents(ctx, &set, &auth); !st.ok()) return st;
  return Merged<v1::EdgesResponse>(
      auth, set,
      [req](AgentClient& a, grpc::ClientContext* c, v1::EdgesResponse* out) {
        return a.stub().Edges(c, *req, out);
      },
      [](const std::vector<v1::EdgesResponse>& in) { return MergeEdges(in); }, resp);
}

grpc::Status RelayService::Tap(grpc::ServerContext* ctx, const v1::TapRequest* req,
                               grpc::ServerWriter<v1::TapEvent>* writer) {
  AgentSet set;
  AgentAuth auth;
  if (grpc::Status st = Agents(ctx, &set, &auth); !st.ok()) return st;
  // A tap has no deadline; attaching is bounded by the relay's timeout.
  auth.timeout_s = opts_.auth.timeout_s;
  TapFanOut tap(auth, set, *req, 0);
  TapFanOut::Attached a;
  if (!tap.Attach(&a)) {
    if (!a.not_found.empty()) {
      return {grpc::StatusCode::NOT_FOUND, a.not_found + " (nor on any other node that answered: " +
                                               CoverageLine(a.coverage) + ")"};
    }
    return {grpc::StatusCode::UNAVAILABLE,
            "no agent attached the tap: " + CoverageLine(a.coverage)};
  }
  ctx->AddInitialMetadata("podtap-tap", "attached");
  std::string line = "tap attached to " + std::to_string(a.coverage.answered_size()) + " of " +
                     std::to_string(a.coverage.asked()) + " agents";
  if (a.nothing_here > 0) {
    line += " (" + std::to_string(a.nothing_here) + " have no pod it selects)";
  }
  for (const auto& u : a.coverage.unanswered())
    line += "; NO ANSWER from " + u.agent() + ": " + u.error();
  ctx->AddInitialMetadata(kTapCoverageMetadata, line);
  writer->SendInitialMetadata();
  // The caller going away ends every agent's stream, events flowing or not.
  std::atomic<bool> ended{false};
  std::thread watch([&] {
    while (!ended.load()) {
      if (ctx->IsCancelled()) {
        tap.Stop();
        return;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  });
  tap.Run([writer](const v1::TapEvent& ev) { return writer->Write(ev); },
          [](const std::string& agent, const std::string& why) {
            Log("the tap of " + agent + " ended: " + why);
          });
  ended = true;
  watch.join();
  return grpc::Status::OK;
}

}  // namespace podtap
