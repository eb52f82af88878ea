// Asking podtap agents over gRPC, one or all at once: a connection with its
// credentials, the agents to ask, every call bounded by the timeout, and
// which agents answered. Shared by the podtap CLI and podtap-relay.
#pragma once

#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "cli/merge.h"
#include "cli/rate_limit.h"
#include "query.grpc.pb.h"

namespace podtap {

// The gRPC metadata key with which a caller asks podtap-relay for one node's
// agent only.
inline constexpr const char* kNodeMetadata = "podtap-node";
// The initial metadata with which podtap-relay says which agents a tap
// attached to (a line as the CLI prints it).
inline constexpr const char* kTapCoverageMetadata = "podtap-tap-coverage";

// How to reach agents: unix:///PATH needs nothing; host:port needs the CA that
// signed the agents' certificate and the token they expect, unless
// `plaintext` (a relay on 127.0.0.1, reached through kubectl port-forward).
struct AgentAuth {
  std::string ca_file;
  std::string token_file;
  std::string tls_server_name;  // "": the certificate must name the address
  bool plaintext = false;
  double timeout_s = 10;
  std::string role = "agent";  // what the target is, in messages: "agent" or "relay"
  std::string node;            // to a relay: ask only this node's agent
};

// One agent (or relay) to call.
class AgentClient {
 public:
  // nullptr with `error` set when the credentials are missing or unreadable,
  // or a unix socket cannot be opened (with why, for the user).
  static std::unique_ptr<AgentClient> Make(const AgentAuth& auth, const std::string& target,
                                           std::string* error);

  v1::Query::Stub& stub() { return *stub_; }
  // A context for one call bounded by the timeout (`deadline`), carrying the
  // token.
  std::unique_ptr<grpc::ClientContext> Context(bool deadline = true) const;
  // What a failed call means, for the user.
  std::string Explain(const grpc::Status& st) const;

 private:
  AgentClient(const AgentAuth& auth, std::string target)
      : auth_(auth), target_(std::move(target)) {}
  const AgentAuth auth_;
  const std::string target_;
  std::string token_;
  std::unique_ptr<v1::Query::Stub> stub_;
};

// The agents one question goes to: addresses[i] is named names[i] in
// answers; `not_asked` are agents known but not askable (a pod not running).
struct AgentSet {
  std::vector<std::string> addresses;
  std::vector<std::string> names;
  std::vector<v1::Unanswered> not_asked;
};

// What asking every agent gave: the answers (agents with no pod the selector
// names count as answered, with nothing), who answered in `coverage`, and
// `not_found` set when every agent that answered said NOT_FOUND.
template <typename Resp>
struct FanOut {
  std::vector<Resp> answers;
  v1::Coverage coverage;
  std::string not_found;
};

// Asks every agent at once, a thread each, each call bounded by the timeout,
// so an agent slow or gone costs at most that and never blocks the others.
template <typename Resp>
FanOut<Resp> AskAll(
    const AgentAuth& auth, const AgentSet& agents,
    const std::function<grpc::Status(AgentClient&, grpc::ClientContext*, Resp*)>& call) {
  struct Result {
    Resp resp;
    std::string error;
    bool nothing_matches = false;
  };
  std::vector<Result> results(agents.addresses.size());
  std::vector<std::thread> threads;
  for (size_t i = 0; i < agents.addresses.size(); i++) {
    threads.emplace_back([&auth, &agents, &call, &results, i] {
      Result& r = results[i];
      std::unique_ptr<AgentClient> c = AgentClient::Make(auth, agents.addresses[i], &r.error);
      if (!c) return;
      auto ctx = c->Context();
      grpc::Status st = call(*c, ctx.get(), &r.resp);
      if (st.error_code() == grpc::StatusCode::NOT_FOUND) {
        r.nothing_matches = true;
        r.error = st.error_message();
        r.resp.Clear();
      } else if (!st.ok()) {
        r.error = c->Explain(st);
      } else if (std::string bad; !CheckValid(r.resp, &bad)) {
        r.error = "the agent sent " + bad;
      }
    });
  }
  for (auto& t : threads) t.join();
  FanOut<Resp> out;
  out.coverage.set_asked(static_cast<uint32_t>(agents.addresses.size() + agents.not_asked.size()));
  std::string not_found;
  bool all_not_found = true;
  for (size_t i = 0; i < results.size(); i++) {
    if (results[i].nothing_matches) not_found = results[i].error;
    if (results[i].error.empty() || results[i].nothing_matches) {
      out.coverage.add_answered(agents.names[i]);
      out.answers.push_back(std::move(results[i].resp));
      all_not_found = all_not_found && results[i].nothing_matches;
    } else {
      v1::Unanswered* u = out.coverage.add_unanswered();
      u->set_agent(agents.names[i]);
      u->set_error(results[i].error);
    }
  }
  for (const v1::Unanswered& u : agents.not_asked) *out.coverage.add_unanswered() = u;
  if (!out.answers.empty() && all_not_found) out.not_found = not_found;
  return out;
}

// "none of the N agents answered:" and each one's reason, one a line.
std::string NoneAnswered(const v1::Coverage& coverage);
// "answers from N of M agents", then "; NO ANSWER from AGENT: why" for each
// agent that did not answer.
std::string CoverageLine(const v1::Coverage& coverage);

// Taps every agent at once and passes on their requests as they come, with
// the request's max_rps applied over all of them together.
class TapFanOut {
 public:
  // `duration_s` > 0 ends every stream after that long.
  TapFanOut(const AgentAuth& auth, const AgentSet& agents, const v1::TapRequest& req,
            double duration_s);
  ~TapFanOut();

  // Starts every tap and waits until each attached, refused or the timeout
  // passed. `coverage`: agents attached (answered), failed or not attached in
  // time (unanswered); `nothing_here` counts agents with no pod it selects
  // and `not_found` holds one's message. False when none attached (every
  // stream is then stopped).
  struct Attached {
    v1::Coverage coverage;
    size_t nothing_here = 0;
    std::string not_found;
  };
  bool Attach(Attached* out);

  // Calls `on_event` for each event that passes the rate limit, one at a
  // time, until it returns false, Stop() or every stream ended. An event's
  // skipped_before counts what was dropped before it on every stream.
  // `on_end` hears of a stream that ended with an error other than the end
  // of --duration or a Stop (agent name, why).
  void Run(const std::function<bool(const v1::TapEvent&)>& on_event,
           const std::function<void(const std::string&, const std::string&)>& on_end);
  // Ends every stream (any thread).
  void Stop();

 private:
  enum class State { kWaiting, kAttached, kNothingHere, kFailed };
  struct Stream {
    std::unique_ptr<AgentClient> client;
    std::unique_ptr<grpc::ClientContext> ctx;
    std::unique_ptr<grpc::ClientReader<v1::TapEvent>> reader;
    State state = State::kWaiting;
    std::string error;
  };
  void Follow(size_t i);

  const AgentAuth auth_;
  const AgentSet agents_;
  const v1::TapRequest req_;
  const double duration_s_;
  std::vector<Stream> streams_;
  std::vector<std::thread> threads_;
  std::mutex mu_;
  std::condition_variable changed_;
  bool done_ = false;
  bool running_ = false;
  uint64_t skipped_ = 0;
  RateLimit limit_;
  std::function<bool(const v1::TapEvent&)> on_event_;
  std::function<void(const std::string&, const std::string&)> on_end_;
};

}  // namespace podtap
