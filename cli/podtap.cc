// podtap: the operator CLI. Asks a node's podtap-agent (gRPC, proto/query.proto),
// or several at once and merges their answers, for stat, top, tap, conns and
// edges, and prints aligned tables or JSON.
#include <google/protobuf/util/json_util.h>
#include <grpcpp/grpcpp.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <iostream>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "agent/query/latency_histogram.h"
#include "cli/discovery.h"
#include "cli/fanout.h"
#include "cli/merge.h"
#include "cli/port_forward.h"
#include "query.grpc.pb.h"

namespace {

namespace pb = ::podtap::v1;

constexpr const char* kDefaultAgent = "unix:///run/podtap/podtap.sock";
constexpr size_t kMaxAgents = 1000;  // asked at once, a thread each
constexpr int kRelayPort = 4193;     // podtap-relay's --listen in its pod (deploy/relay)

struct Global {
  std::vector<std::string> agents = {kDefaultAgent};
  podtap::AgentAuth auth;
  std::string output = "table";
  // --relay: one podtap-relay answers for every agent.
  std::string relay;
  // --kube: the agents are the pods the Kubernetes API lists.
  bool kube = false;
  std::string kubeconfig;
  std::string podtap_namespace = "podtap";
  std::string agent_selector = "app.kubernetes.io/name=podtap";
  std::string node;
  // Resolved before any call: the agents asked when answers are merged
  // (fan_out), how answers name them and the agent pods that cannot be asked
  // (not running, ...).
  podtap::AgentSet set;
  bool fan_out = false;
};

// A failure the user should read; main prints it and exits 1.
struct Failure {
  std::string message;
};

// --- talking to the agent ------------------------------------------------------

// One agent or relay; a failure to set it up is the user's to read.
class Client {
 public:
  Client(const Global& g, const std::string& target) {
    std::string error;
    c_ = podtap::AgentClient::Make(g.auth, target, &error);
    if (!c_) throw Failure{error};
  }
  pb::Query::Stub& stub() { return c_->stub(); }
  std::unique_ptr<grpc::ClientContext> Context(bool deadline = true) const {
    return c_->Context(deadline);
  }
  std::string Explain(const grpc::Status& st) const { return c_->Explain(st); }
  [[noreturn]] void Fail(const grpc::Status& st) const { throw Failure{Explain(st)}; }

 private:
  std::unique_ptr<podtap::AgentClient> c_;
};

// --- formatting ----------------------------------------------------------------

std::string Fmt(const char* f, double v) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), f, v);
  return buf;
}

// Three significant digits (two under 10us): finer than the histogram's
// buckets, so a printed percentile stays in the bucket it came from.
std::string Ms(double ms) {
  if (ms >= 10000) return Fmt("%.1fs", ms / 1000);
  if (ms >= 1000) return Fmt("%.2fs", ms / 1000);
  if (ms >= 100) return Fmt("%.0fms", ms);
  if (ms >= 10) return Fmt("%.1fms", ms);
  if (ms >= 1) return Fmt("%.2fms", ms);
  if (ms >= 0.1) return Fmt("%.0fus", ms * 1000);
  return Fmt("%.1fus", ms * 1000);
}

// p50, p95 and p99 of `h` as the table prints them; "-" with no requests.
std::vector<std::string> Percentiles(const pb::LatencyHistogram& proto) {
  if (std::string error; !podtap::CheckHistogram(proto, &error)) {
    throw Failure{"the agent sent " + error};
  }
  podtap::LatencyHistogram h;
  for (int i = 0; i < proto.bucket_size(); i++) h.Add(proto.bucket(i), proto.count(i));
  if (h.count() == 0) return {"-", "-", "-"};
  return {Ms(h.QuantileMs(0.5)), Ms(h.QuantileMs(0.95)), Ms(h.QuantileMs(0.99))};
}

std::string Bytes(uint64_t b) {
  static const char* kUnits[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(b);
  size_t u = 0;
  while (v >= 1024 && u + 1 < std::size(kUnits)) {
    v /= 1024;
    u++;
  }
  return u == 0 ? std::to_string(b) + "B" : Fmt("%.1f", v) + kUnits[u];
}

std::string Age(double s) {
  auto t = static_cast<uint64_t>(s);
  if (t < 60) return Fmt("%.1fs", s);
  if (t < 3600) return std::to_string(t / 60) + "m" + std::to_string(t % 60) + "s";
  return std::to_string(t / 3600) + "h" + std::to_string(t / 60 % 60) + "m";
}

std::string Percent(double rate, uint64_t requests) {
  return requests == 0 ? "-" : Fmt("%.2f%%", rate * 100);
}

const char* Dir(pb::Direction d) {
  return d == pb::INBOUND ? "inbound" : d == pb::OUTBOUND ? "outbound" : "-";
}

// "ns/pod", "ns/kind/workload", "(host)" for a process outside any pod on
// the node, else the address no known pod has (or "(unknown)").
std::string Name(const pb::Endpoint& e) {
  if (!e.pod().empty()) return e.namespace_() + "/" + e.pod();
  if (!e.workload().empty()) return e.namespace_() + "/" + e.workload_kind() + "/" + e.workload();
  if (e.host()) return "(host)";
  return e.address().empty() ? "(unknown)" : e.address();
}

// Prints rows as columns padded to their widest cell.
void PrintTable(const std::vector<std::string>& header,
                const std::vector<std::vector<std::string>>& rows) {
  std::vector<size_t> width(header.size());
  for (size_t i = 0; i < header.size(); i++) width[i] = header[i].size();
  for (const auto& r : rows) {
    for (size_t i = 0; i < r.size(); i++) width[i] = std::max(width[i], r[i].size());
  }
  auto line = [&](const std::vector<std::string>& r) {
    std::string out;
    for (size_t i = 0; i < r.size(); i++) {
      out += r[i];
      if (i + 1 < r.size()) out += std::string(width[i] - r[i].size() + 2, ' ');
    }
    std::cout << out << "\n";
  };
  line(header);
  for (const auto& r : rows) line(r);
}

void PrintJson(const google::protobuf::Message& m, bool pretty) {
  google::protobuf::util::JsonPrintOptions o;
  o.always_print_primitive_fields = true;
  o.preserve_proto_field_names = true;
  o.add_whitespace = pretty;
  std::string out;
  (void)google::protobuf::util::MessageToJsonString(m, &out, o);
  std::cout << out << (pretty ? "" : "\n") << std::flush;
}

void NothingIn(const std::string& what, uint32_t window_s, const pb::Coverage& cov) {
  std::cerr << "podtap: no " << what << " matches";
  if (window_s != 0) std::cerr << " in the last " << window_s << "s";
  std::cerr << (cov.asked() > 0 ? " on the nodes that answered\n" : " on this node\n");
}

// After a merged answer: how many agents answered, and who did not and why.
void PrintCoverage(const pb::Coverage& cov) {
  if (cov.asked() == 0) return;
  std::cerr << "podtap: " << podtap::CoverageLine(cov) << "\n";
}

// --- several agents ----------------------------------------------------------------

// Asks every agent at once (podtap::AskAll): the answers that came, and who
// answered in `cov`. Throws when none answered, or when every agent that
// answered knows no pod the selector names.
template <typename Resp>
std::vector<Resp> AskAll(
    const Global& g, pb::Coverage* cov,
    const std::function<grpc::Status(podtap::AgentClient&, grpc::ClientContext*, Resp*)>& call) {
  podtap::FanOut<Resp> r = podtap::AskAll<Resp>(g.auth, g.set, call);
  *cov = r.coverage;
  if (r.answers.empty()) throw Failure{podtap::NoneAnswered(r.coverage)};
  if (!r.not_found.empty()) {
    PrintCoverage(*cov);
    throw Failure{r.not_found + " (nor on any other node that answered)"};
  }
  return std::move(r.answers);
}

// Which agents to ask: --agent as given, or with --kube the pods of podtap's
// DaemonSet the Kubernetes API lists (only --node's with --node).
void ResolveAgents(Global& g, bool agent_given) {
  if (!g.relay.empty()) {
    if (g.kube || agent_given)
      throw Failure{"--relay asks every agent itself: drop --agent and --kube"};
    if (!g.auth.ca_file.empty() || !g.auth.token_file.empty()) {
      throw Failure{
          "--ca and --token-file are for agents; podtap-relay listens on its pod's loopback, "
          "reached through kubectl port-forward, and holds the agents' credentials itself"};
    }
    // The relay merges: to podtap it is one agent whose answers carry coverage.
    g.auth.plaintext = true;
    g.auth.role = "relay";
    g.auth.node = g.node;
    g.agents = {g.relay};
    return;
  }
  if (!g.kube) {
    if (!g.node.empty()) {
      throw Failure{
          "--node picks one node's agent among those the Kubernetes API lists: "
          "pass --kube or --relay too (or --agent with that agent's address)"};
    }
    g.set.addresses = g.agents;
    g.set.names = g.agents;
    g.fan_out = g.agents.size() > 1;
    return;
  }
  if (agent_given) throw Failure{"--kube finds the agents itself: drop --agent"};
  std::string error;
  std::optional<podtap::KubeConfig> config;
  std::string path = g.kubeconfig;
  if (path.empty() && std::getenv("KUBECONFIG") != nullptr) {
    // A list as kubectl takes it: the first file there is (kubectl merges them).
    std::stringstream list(std::getenv("KUBECONFIG"));
    for (std::string item; path.empty() && std::getline(list, item, ':');) {
      if (!item.empty() && access(item.c_str(), R_OK) == 0) path = item;
    }
  }
  if (path.empty() && std::getenv("HOME") != nullptr) {
    std::string home = std::string(std::getenv("HOME")) + "/.kube/config";
    if (access(home.c_str(), R_OK) == 0) path = home;
  }
  if (!path.empty()) {
    config = podtap::LoadKubeconfig(path, &error);
  } else {
    config = podtap::InClusterConfig([](const char* name) { return std::getenv(name); },
                                     "/var/run/secrets/kubernetes.io/serviceaccount", &error);
  }
  if (!config) throw Failure{"--kube: " + error};
  std::vector<podtap::AgentTarget> found;
  if (!podtap::FindAgents(*config, g.podtap_namespace, g.agent_selector, g.node, g.auth.timeout_s,
                          &found, &error)) {
    throw Failure{"--kube: " + error};
  }
  g.agents.clear();
  for (const auto& t : found) {
    if (t.address.empty()) {
      pb::Unanswered u;
      u.set_agent(t.node);
      u.set_error(t.error);
      g.set.not_asked.push_back(std::move(u));
    } else {
      g.agents.push_back(t.address);
      g.set.addresses.push_back(t.address);
      g.set.names.push_back(t.node + " (" + t.address + ")");
    }
  }
  if (found.empty()) {
    std::string where = "pods labelled " + g.agent_selector + " in namespace " +
                        g.podtap_namespace + " (" + config->origin + ")";
    throw Failure{g.node.empty()
                      ? "--kube: no podtap agent: no " + where
                      : "--kube: no podtap agent on node " + g.node + " among the " + where};
  }
  g.fan_out = true;
}

// Rows asked of each agent when merging Top: all it has (it keeps at most
// 10000 kinds per bucket), so the merged ranking misses none.
constexpr uint32_t kAllTopRows = 1'000'000;

// --- selectors -------------------------------------------------------------------

// Resource types as kubectl and linkerd spell them -> the agent's workload kind
// ("" for pods).
const std::map<std::string, std::string>& ResourceTypes() {
  static const std::map<std::string, std::string> types = {
      {"po", ""},
      {"pod", ""},
      {"pods", ""},
      {"deploy", "deployment"},
      {"deployment", "deployment"},
      {"deployments", "deployment"},
      {"sts", "statefulset"},
      {"statefulset", "statefulset"},
      {"statefulsets", "statefulset"},
      {"ds", "daemonset"},
      {"daemonset", "daemonset"},
      {"daemonsets", "daemonset"},
      {"job", "job"},
      {"jobs", "job"},
      {"rs", "replicaset"},
      {"replicaset", "replicaset"},
      {"replicasets", "replicaset"},
      {"rc", "replicationcontroller"},
      {"replicationcontroller", "replicationcontroller"},
  };
  return types;
}

struct SelectorFlags {
  std::string resource;  // TYPE[/NAME]
  std::string ns;
  std::string pod;
  std::string direction;

  void Add(CLI::App* cmd, const char* resource_help) {
    cmd->add_option("resource", resource, resource_help);
    cmd->add_option("-n,--namespace", ns, "Only this namespace (default: all)");
    cmd->add_option("--pod", pod, "Only this pod");
    cmd->add_option("--direction", direction, "Only inbound or outbound traffic")
        ->check(CLI::IsMember({"inbound", "outbound"}));
  }

  // Whether the resource names a pod type (or none).
  bool PodType() const {
    std::string type = resource.substr(0, resource.find('/'));
    return type.empty() || ResourceTypes().at(type).empty();
  }

  pb::Selector Build() const {
    pb::Selector s;
    s.set_namespace_(ns);
    s.set_pod(pod);
    if (!resource.empty()) {
      auto slash = resource.find('/');
      std::string type = resource.substr(0, slash);
      std::string name = slash == std::string::npos ? "" : resource.substr(slash + 1);
      auto it = ResourceTypes().find(type);
      if (it == ResourceTypes().end()) {
        throw Failure{"unknown resource type \"" + type +
                      "\": use pod, deploy, sts, ds, job, rs or rc, with /NAME for one"};
      }
      if (slash != std::string::npos && name.empty()) throw Failure{"no name after " + type + "/"};
      if (it->second.empty()) {
        if (!name.empty()) {
          if (!pod.empty() && pod != name)
            throw Failure{"two different pods: " + name + ", " + pod};
          s.set_pod(name);
        }
      } else {
        s.set_workload_kind(it->second);
        s.set_workload(name);
      }
    }
    if (direction == "inbound") s.set_direction(pb::INBOUND);
    if (direction == "outbound") s.set_direction(pb::OUTBOUND);
    return s;
  }
};

// "90s", "5m", "1h" or bare seconds.
uint32_t ParseWindow(const std::string& text) {
  if (text.empty()) return 0;
  size_t pos = 0;
  double v = 0;
  try {
    v = std::stod(text, &pos);
  } catch (const std::exception&) {
    throw Failure{"window \"" + text + "\" is not a duration (e.g. 30s, 1m, 10m)"};
  }
  std::string unit = text.substr(pos);
  double scale = unit.empty() || unit == "s" ? 1 : unit == "m" ? 60 : unit == "h" ? 3600 : -1;
  if (scale < 0 || v <= 0)
    throw Failure{"window \"" + text + "\" is not a duration (e.g. 30s, 1m)"};
  return static_cast<uint32_t>(std::ceil(v * scale));
}

// --- commands --------------------------------------------------------------------

void Stat(const Global& g, const SelectorFlags& sf, const std::string& window) {
  pb::StatRequest req;
  *req.mutable_selector() = sf.Build();
  req.set_group_by(sf.PodType() ? "pod" : "workload");
  req.set_window_seconds(ParseWindow(window));
  pb::StatResponse resp;
  if (g.fan_out) {
    pb::Coverage cov;
    resp = podtap::MergeStat(AskAll<pb::StatResponse>(
        g, &cov, [&req](podtap::AgentClient& a, grpc::ClientContext* ctx, pb::StatResponse* out) {
          return a.stub().Stat(ctx, req, out);
        }));
    *resp.mutable_coverage() = cov;
  } else {
    Client c(g, g.agents[0]);
    auto ctx = c.Context();
    if (auto st = c.stub().Stat(ctx.get(), req, &resp); !st.ok()) c.Fail(st);
  }
  if (g.output == "json") return PrintJson(resp, true);
  std::vector<pb::StatRow> rows(resp.rows().begin(), resp.rows().end());
  std::sort(rows.begin(), rows.end(), [](const pb::StatRow& a, const pb::StatRow& b) {
    return std::make_tuple(Name(a.resource()), a.direction()) <
           std::make_tuple(Name(b.resource()), b.direction());
  });
  std::vector<std::vector<std::string>> table;
  for (const auto& r : rows) {
    bool any = r.requests() > 0;
    std::vector<std::string> p = Percentiles(r.latency());
    table.push_back({Name(r.resource()), Dir(r.direction()), std::to_string(r.requests()),
                     Percent(r.success_rate(), r.requests()), any ? Fmt("%.1f", r.rps()) : "-",
                     p[0], p[1], p[2], std::to_string(r.tcp_open_connections()),
                     Bytes(r.read_bytes()), Bytes(r.write_bytes())});
  }
  if (table.empty()) {
    NothingIn("traffic", resp.window_seconds(), resp.coverage());
  } else {
    PrintTable({"NAME", "DIRECTION", "REQUESTS", "SUCCESS", "RPS", "P50", "P95", "P99", "TCP_CONN",
                "READ", "WRITTEN"},
               table);
  }
  PrintCoverage(resp.coverage());
}

void Top(const Global& g, const SelectorFlags& sf, const std::string& window, const std::string& by,
         const std::string& sort, uint32_t limit) {
  pb::TopRequest req;
  *req.mutable_selector() = sf.Build();
  req.set_by(by);
  req.set_sort(sort);
  req.set_limit(limit);
  req.set_window_seconds(ParseWindow(window));
  pb::TopResponse resp;
  if (g.fan_out) {
    pb::Coverage cov;
    req.set_limit(kAllTopRows);
    resp =
        podtap::MergeTop(AskAll<pb::TopResponse>(
                             g, &cov,
                             [&req](podtap::AgentClient& a, grpc::ClientContext* ctx,
                                    pb::TopResponse* out) { return a.stub().Top(ctx, req, out); }),
                         sort, limit == 0 ? 20 : limit);
    *resp.mutable_coverage() = cov;
  } else {
    Client c(g, g.agents[0]);
    auto ctx = c.Context();
    if (auto st = c.stub().Top(ctx.get(), req, &resp); !st.ok()) c.Fail(st);
  }
  if (g.output == "json") return PrintJson(resp, true);
  std::vector<std::vector<std::string>> table;
  for (const auto& r : resp.rows()) {
    std::vector<std::string> row = {Dir(r.direction())};
    if (by == "path") row.push_back(r.method());
    std::vector<std::string> p = Percentiles(r.latency());
    row.insert(row.end(),
               {r.key().empty() ? "-" : r.key(), std::to_string(r.requests()),
                std::to_string(r.failures()), Percent(r.success_rate(), r.requests()), p[0], p[2]});
    table.push_back(std::move(row));
  }
  if (table.empty()) {
    NothingIn("request", resp.window_seconds(), resp.coverage());
    return PrintCoverage(resp.coverage());
  }
  std::string key = by == "path" ? "PATH" : by == "authority" ? "AUTHORITY" : "ROUTE";
  std::vector<std::string> header = {"DIRECTION"};
  if (by == "path") header.push_back("METHOD");
  header.insert(header.end(), {key, "REQUESTS", "FAILURES", "SUCCESS", "P50", "P99"});
  PrintTable(header, table);
  if (resp.dropped() > 0) {
    std::cerr << "podtap: " << resp.dropped()
              << " requests of kinds past the agent's per-bucket limit are not in this list\n";
  }
  PrintCoverage(resp.coverage());
}

std::string Clock(int64_t unix_nanos) {
  time_t s = static_cast<time_t>(unix_nanos / 1'000'000'000);
  tm t{};
  gmtime_r(&s, &t);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%H:%M:%S", &t);
  return std::string(buf) + Fmt(".%03.0f", static_cast<double>(unix_nanos / 1'000'000 % 1000));
}

void PrintTapEvent(const Global& g, const pb::TapEvent& ev) {
  if (g.output == "json") return PrintJson(ev, false);
  std::string line = Clock(ev.unix_nanos()) + " " + Dir(ev.direction()) + " " + Name(ev.source()) +
                     " -> " + Name(ev.destination()) + " " + ev.method() + " " + ev.authority() +
                     ev.path() + " :status=" + std::to_string(ev.status());
  if (ev.grpc_status() >= 0) line += " grpc-status=" + std::to_string(ev.grpc_status());
  line += " latency=" + Ms(ev.latency_ms());
  if (ev.failure()) line += " FAILURE";
  if (ev.skipped_before() > 0) line += " (skipped " + std::to_string(ev.skipped_before()) + ")";
  std::cout << line << "\n" << std::flush;
}

// Taps every agent at once and prints their requests as they come, with
// --max-rps over all of them; says which agents attached within --timeout.
int TapAll(const Global& g, const pb::TapRequest& req, uint64_t count, double duration_s) {
  podtap::TapFanOut tap(g.auth, g.set, req, duration_s);
  podtap::TapFanOut::Attached a;
  bool any = tap.Attach(&a);
  std::cerr << "podtap: tap attached to " << a.coverage.answered_size() << " of "
            << a.coverage.asked() << " agents";
  if (a.nothing_here > 0) std::cerr << " (" << a.nothing_here << " have no pod it selects)";
  for (const auto& u : a.coverage.unanswered()) {
    std::cerr << "; NO ANSWER from " << u.agent() << ": " << u.error();
  }
  std::cerr << "\n" << std::flush;
  if (!any) {
    throw Failure{a.not_found.empty() ? "no agent attached the tap"
                                      : a.not_found + " (nor on any other node that answered)"};
  }
  uint64_t seen = 0;
  tap.Run(
      [&g, &seen, count](const pb::TapEvent& ev) {
        PrintTapEvent(g, ev);
        return count == 0 || ++seen < count;
      },
      [](const std::string& agent, const std::string& why) {
        std::cerr << "podtap: the tap of " << agent << " ended: " << why << "\n";
      });
  return 0;
}

pb::TapRequest TapRequestOf(const SelectorFlags& sf, const std::string& authority,
                            const std::string& path, const std::string& status, uint32_t max_rps) {
  pb::TapRequest req;
  *req.mutable_selector() = sf.Build();
  req.set_authority(authority);
  req.set_path_prefix(path);
  if (!status.empty()) {
    char cls = status[0];
    bool ok = cls >= '1' && cls <= '5' &&
              (status.size() == 1 || status.substr(1) == "xx" || status.substr(1) == "XX");
    if (!ok) throw Failure{"--status \"" + status + "\": use a class, 2xx to 5xx"};
    req.set_status_class(static_cast<uint32_t>(cls - '0'));
  }
  req.set_max_rps(max_rps);
  return req;
}

int Tap(Client& c, const Global& g, const pb::TapRequest& req, uint64_t count, double duration_s) {
  auto ctx = c.Context(false);
  if (duration_s > 0) {
    ctx->set_deadline(std::chrono::system_clock::now() +
                      std::chrono::milliseconds(static_cast<int64_t>(duration_s * 1000)));
  }
  auto reader = c.stub().Tap(ctx.get(), req);
  reader->WaitForInitialMetadata();
  if (ctx->GetServerInitialMetadata().count("podtap-tap") == 0) {
    // No metadata: the call failed before the tap was attached.
    if (auto st = reader->Finish(); !st.ok()) c.Fail(st);
  }
  // A relay says which agents the tap reached.
  auto cov = ctx->GetServerInitialMetadata().find(podtap::kTapCoverageMetadata);
  std::string attached = cov == ctx->GetServerInitialMetadata().end()
                             ? "tap attached"
                             : std::string(cov->second.data(), cov->second.size());
  std::cerr << "podtap: " << attached << "\n" << std::flush;
  pb::TapEvent ev;
  uint64_t seen = 0;
  while ((count == 0 || seen < count) && reader->Read(&ev)) {
    seen++;
    PrintTapEvent(g, ev);
  }
  if (count != 0 && seen >= count) {
    ctx->TryCancel();
    return 0;
  }
  grpc::Status st = reader->Finish();
  if (st.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED && duration_s > 0) return 0;
  if (!st.ok()) c.Fail(st);
  return 0;
}

void Conns(const Global& g, const SelectorFlags& sf, uint32_t limit) {
  pb::ConnsRequest req;
  *req.mutable_selector() = sf.Build();
  req.set_limit(limit);
  pb::ConnsResponse resp;
  if (g.fan_out) {
    pb::Coverage cov;
    resp = podtap::MergeConns(
        AskAll<pb::ConnsResponse>(
            g, &cov,
            [&req](podtap::AgentClient& a, grpc::ClientContext* ctx, pb::ConnsResponse* out) {
              return a.stub().Conns(ctx, req, out);
            }),
        limit == 0 ? 1000 : limit);
    *resp.mutable_coverage() = cov;
  } else {
    Client c(g, g.agents[0]);
    auto ctx = c.Context();
    if (auto st = c.stub().Conns(ctx.get(), req, &resp); !st.ok()) c.Fail(st);
  }
  if (g.output == "json") return PrintJson(resp, true);
  std::vector<std::vector<std::string>> table;
  for (const auto& r : resp.conns()) {
    table.push_back({Name(r.local()), r.local().address(), Dir(r.direction()), Name(r.remote()),
                     r.remote().address(), Age(r.age_seconds()), Bytes(r.read_bytes()),
                     Bytes(r.write_bytes()), r.protocol()});
  }
  if (table.empty()) {
    NothingIn("open connection", 0, resp.coverage());
    return PrintCoverage(resp.coverage());
  }
  PrintTable({"POD", "LOCAL", "DIRECTION", "PEER", "REMOTE", "AGE", "READ", "WRITTEN", "PROTOCOL"},
             table);
  if (resp.total() > static_cast<uint64_t>(resp.conns_size())) {
    std::cerr << "podtap: " << resp.total() - resp.conns_size()
              << " more connections match (raise --limit)\n";
  }
  PrintCoverage(resp.coverage());
}

void Edges(const Global& g, const SelectorFlags& sf, const std::string& window) {
  pb::EdgesRequest req;
  *req.mutable_selector() = sf.Build();
  req.set_window_seconds(ParseWindow(window));
  pb::EdgesResponse resp;
  if (g.fan_out) {
    pb::Coverage cov;
    resp = podtap::MergeEdges(AskAll<pb::EdgesResponse>(
        g, &cov, [&req](podtap::AgentClient& a, grpc::ClientContext* ctx, pb::EdgesResponse* out) {
          return a.stub().Edges(ctx, req, out);
        }));
    *resp.mutable_coverage() = cov;
  } else {
    Client c(g, g.agents[0]);
    auto ctx = c.Context();
    if (auto st = c.stub().Edges(ctx.get(), req, &resp); !st.ok()) c.Fail(st);
  }
  if (g.output == "json") return PrintJson(resp, true);
  std::vector<pb::Edge> edges(resp.edges().begin(), resp.edges().end());
  std::sort(edges.begin(), edges.end(), [](const pb::Edge& a, const pb::Edge& b) {
    return std::make_pair(Name(a.source()), Name(a.destination())) <
           std::make_pair(Name(b.source()), Name(b.destination()));
  });
  std::vector<std::vector<std::string>> table;
  for (const auto& e : edges) {
    std::vector<std::string> p = Percentiles(e.latency());
    table.push_back({Name(e.source()), Name(e.destination()), std::to_string(e.requests()),
                     Percent(e.success_rate(), e.requests()), p[0], p[2],
                     std::to_string(e.tcp_open_connections()), Bytes(e.bytes())});
  }
  if (table.empty()) {
    NothingIn("edge", resp.window_seconds(), resp.coverage());
  } else {
    PrintTable({"SRC", "DST", "REQUESTS", "SUCCESS", "P50", "P99", "TCP_CONN", "BYTES"}, table);
  }
  PrintCoverage(resp.coverage());
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"podtap: ask this node's podtap-agent, or several at once, about pods' traffic"};
  app.require_subcommand(1);
  Global g;
  auto* agent_opt =
      app.add_option("--agent", g.agents,
                     "unix:///PATH (the agent's --query-socket) or host:port (its --query-listen); "
                     "repeat it to ask several agents at once and merge their answers (stat, top, "
                     "edges, conns)")
          ->expected(1)
          ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll)
          ->capture_default_str();
  app.add_option("--tls-server-name", g.auth.tls_server_name,
                 "host:port only: the name the agent's certificate must have (default: the "
                 "address); one name for every node's agent, as with --kube");
  app.add_option("--ca", g.auth.ca_file,
                 "host:port only: PEM CA that signed the agent's certificate")
      ->check(CLI::ExistingFile);
  app.add_option("--token-file", g.auth.token_file, "host:port only: file holding the bearer token")
      ->check(CLI::ExistingFile);
  app.add_option("-o,--output", g.output, "table or json")
      ->capture_default_str()
      ->check(CLI::IsMember({"table", "json"}));
  app.add_option("--timeout", g.auth.timeout_s, "Seconds to wait for an answer")
      ->capture_default_str();
  app.add_flag("--kube", g.kube,
               "Ask every agent: the pods of podtap's DaemonSet the Kubernetes API lists, each "
               "at its IP and container port named query (credentials: --kubeconfig, "
               "$KUBECONFIG, ~/.kube/config, else the pod's service account)");
  app.add_option("--kubeconfig", g.kubeconfig, "With --kube: the kubeconfig to use")
      ->check(CLI::ExistingFile);
  app.add_option("--podtap-namespace", g.podtap_namespace, "With --kube: podtap's namespace")
      ->capture_default_str();
  app.add_option("--agent-selector", g.agent_selector, "With --kube: the agent pods' labels")
      ->capture_default_str();
  app.add_option("--node", g.node, "With --kube or --relay: only this node's agent");
  app.add_option("--relay", g.relay,
                 "host:port of podtap-relay (e.g. what kubectl port-forward "
                 "deploy/podtap-relay forwards): it asks every agent and merges their answers");

  SelectorFlags stat_sel, top_sel, tap_sel, conns_sel, edges_sel;
  std::string stat_window = "1m", top_window = "1m", edges_window = "1m";
  auto* stat = app.add_subcommand("stat",
                                  "Requests per second, success rate, latency, "
                                  "connections and bytes per pod or workload");
  stat_sel.Add(stat, "pod (default), deploy, sts, ds, job, rs or rc; TYPE/NAME for one");
  stat->add_option("--window", stat_window, "Over the last ... (e.g. 30s, 1m, 10m)")
      ->capture_default_str();

  std::string top_by = "path", top_sort = "requests";
  uint32_t top_limit = 20;
  auto* top = app.add_subcommand("top",
                                 "The busiest or most failing paths, authorities or "
                                 "routes");
  top_sel.Add(top, "TYPE[/NAME] whose traffic to rank (default: all)");
  top->add_option("--window", top_window, "Over the last ...")->capture_default_str();
  top->add_option("--by", top_by, "path, authority or route")
      ->capture_default_str()
      ->check(CLI::IsMember({"path", "authority", "route"}));
  top->add_option("--sort", top_sort, "requests or failures")
      ->capture_default_str()
      ->check(CLI::IsMember({"requests", "failures"}));
  top->add_option("--limit", top_limit, "Rows")->capture_default_str();

  std::string tap_authority, tap_path, tap_status;
  uint32_t tap_rps = 0;
  uint64_t tap_count = 0;
  double tap_duration = 0;
  auto* tap = app.add_subcommand("tap", "Requests live as they complete (Ctrl-C ends it)");
  tap_sel.Add(tap, "TYPE[/NAME] of the pods whose requests to show");
  tap->add_option("--authority", tap_authority, "Only requests to this authority (Host)");
  tap->add_option("--path", tap_path, "Only paths starting with this");
  tap->add_option("--status", tap_status, "Only responses of this class: 2xx, 3xx, 4xx or 5xx");
  tap->add_option("--max-rps", tap_rps,
                  "At most this many requests a second (0: the agent's "
                  "limit)");
  tap->add_option("-c,--count", tap_count, "Stop after this many requests (0: no limit)");
  tap->add_option("--duration", tap_duration, "Stop after this many seconds (0: no limit)");

  uint32_t conns_limit = 1000;
  auto* conns = app.add_subcommand("conns", "Open TCP connections now, oldest first");
  conns_sel.Add(conns, "TYPE[/NAME] of the pods whose connections to list");
  conns->add_option("--limit", conns_limit, "Rows")->capture_default_str();

  auto* edges = app.add_subcommand("edges",
                                   "Who talks to whom: requests, success rate and "
                                   "connections per pair");
  edges_sel.Add(edges, "TYPE[/NAME] at either end (default: all)");
  edges->add_option("--window", edges_window, "Over the last ...")->capture_default_str();

  // Installed as kubectl-podtap, kubectl runs it as `kubectl podtap`; then,
  // without --agent, --kube or --relay, it reaches podtap-relay through a
  // kubectl port-forward of its own, so the API server authorizes the user.
  bool plugin = std::filesystem::path(argv[0]).filename() == "kubectl-podtap";
  std::string relay_namespace = "podtap-relay";
  std::string kubectl = "kubectl";
  app.add_option("--relay-namespace", relay_namespace,
                 "kubectl podtap: the namespace of Deployment podtap-relay")
      ->capture_default_str();
  app.add_option("--kubectl", kubectl, "kubectl podtap: the kubectl that runs port-forward")
      ->capture_default_str();
  std::string context;
  app.add_option("--context", context,
                 "kubectl podtap: the kubeconfig context kubectl port-forward uses");
  CLI11_PARSE(app, argc, argv);
  std::unique_ptr<podtap::PortForward> forward;
  try {
    if (plugin && agent_opt->count() == 0 && !g.kube && g.relay.empty()) {
      std::vector<std::string> args = {"port-forward", "-n", relay_namespace, "deploy/podtap-relay",
                                       ":" + std::to_string(kRelayPort)};
      if (!context.empty()) args.insert(args.begin(), {"--context", context});
      if (!g.kubeconfig.empty()) args.insert(args.begin(), {"--kubeconfig", g.kubeconfig});
      std::string error;
      forward = podtap::PortForward::Start(kubectl, args, g.auth.timeout_s, &error);
      if (!forward) throw Failure{"cannot reach podtap-relay: " + error};
      g.relay = "127.0.0.1:" + std::to_string(forward->port());
    } else if (!context.empty()) {
      throw Failure{
          "--context picks the context of kubectl podtap's port-forward to podtap-relay; "
          "--kube uses the kubeconfig's current context"};
    }
    ResolveAgents(g, agent_opt->count() > 0);
    // A thread per agent: bounded, and an agent named twice would count twice.
    if (g.agents.size() > kMaxAgents) {
      throw Failure{std::to_string(g.agents.size()) + " agents: at most " +
                    std::to_string(kMaxAgents) + " at once"};
    }
    for (size_t i = 0; i < g.agents.size(); i++) {
      if (std::find(g.agents.begin(), g.agents.begin() + i, g.agents[i]) != g.agents.begin() + i) {
        throw Failure{"--agent " + g.agents[i] + " is given twice (its answer would count twice)"};
      }
    }
    if (stat->parsed()) Stat(g, stat_sel, stat_window);
    if (top->parsed()) Top(g, top_sel, top_window, top_by, top_sort, top_limit);
    if (tap->parsed()) {
      pb::TapRequest req = TapRequestOf(tap_sel, tap_authority, tap_path, tap_status, tap_rps);
      if (g.fan_out) return TapAll(g, req, tap_count, tap_duration);
      Client client(g, g.agents[0]);
      return Tap(client, g, req, tap_count, tap_duration);
    }
    if (conns->parsed()) Conns(g, conns_sel, conns_limit);
    if (edges->parsed()) Edges(g, edges_sel, edges_window);
  } catch (const Failure& f) {
    std::cerr << "podtap: " << f.message << "\n";
    return 1;
  }
  return 0;
}
