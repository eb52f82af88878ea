// podtap-agent: the node daemon. Parses flags, checks the system, attaches the
// probes, serves metrics, and runs the event loop until SIGTERM or SIGINT.
#include <signal.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <set>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>
#include <sstream>
#include <thread>

#include "agent/agent.h"
#include "exporter/http_server.h"

namespace {

std::set<std::string> SplitList(const std::string& s) {
  std::set<std::string> out;
  std::stringstream in(s);
  std::string item;
  while (std::getline(in, item, ',')) {
    if (!item.empty()) out.insert(item);
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"podtap-agent: per-pod TCP traffic metrics from eBPF, served for Prometheus"};
  std::string listen = ":4191";
  std::string pods_file;
  std::string config_file;
  std::string allowlist;
  double diag_interval_s = 5;
  std::string probe_mode = "auto";
  uint32_t ringbuf_bytes = 4u << 20;
  size_t max_connections = 262144;
  std::string log_level = "info";
  bool capture_payload = true;
  uint32_t prefix_len = 256;
  uint32_t payload_ringbuf_bytes = 8u << 20;
  auto power_of_two = [](const std::string& v) -> std::string {
    unsigned long n = std::stoul(v);
    return (n >= 4096 && (n & (n - 1)) == 0) ? "" : "must be a power of two >= 4096";
  };
  app.add_option("--listen", listen, "Address to serve /metrics, /healthz and /readyz on")
      ->capture_default_str();
  app.add_option("--pods-file", pods_file,
                 "JSON file describing the pods on this node (see README); re-read when it "
                 "changes. Without it every connection counts as a host process");
  app.add_option("--config", config_file,
                 "JSON config file; its \"routes\" define the rt_route label of route_* metrics")
      ->check(CLI::ExistingFile);
  app.add_option("--pod-label-allowlist", allowlist,
                 "Comma-separated Kubernetes pod label keys to copy onto series");
  app.add_option("--diag-interval", diag_interval_s,
                 "Seconds between reads of live connections' byte counters (0: only at close)")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 3600.0));
  app.add_option("--probe-mode", probe_mode,
                 "Kernel hook for the TCP lifecycle: auto (tp_btf, falling back to the plain "
                 "tracepoint), tp_btf or tracepoint")
      ->capture_default_str()
      ->check(CLI::IsMember({"auto", "tp_btf", "tracepoint"}));
  app.add_option("--ringbuf-size", ringbuf_bytes,
                 "Kernel-to-agent ring buffer size in bytes (a power of two, >= 4096)")
      ->capture_default_str()
      ->check(power_of_two);
  app.add_option("--max-connections", max_connections,
                 "Most connections tracked at once (kernel map and agent table)")
      ->capture_default_str()
      ->check(CLI::Range(size_t{1}, size_t{1} << 24));
  app.add_option("--capture-payload", capture_payload,
                 "Capture socket data for HTTP metrics (false: TCP metrics only)")
      ->capture_default_str();
  app.add_option("--payload-prefix", prefix_len,
                 "Bytes of each read/write captured for the protocol parsers")
      ->capture_default_str()
      ->check(CLI::Range(16u, 4096u));
  app.add_option("--payload-ringbuf-size", payload_ringbuf_bytes,
                 "Ring buffer for socket data, in bytes (a power of two, >= 4096)")
      ->capture_default_str()
      ->check(power_of_two);
  app.add_option("--log-level", log_level, "debug, info, warn or error")
      ->capture_default_str()
      ->check(CLI::IsMember({"debug", "info", "warn", "error"}));
  CLI11_PARSE(app, argc, argv);

  auto logger = spdlog::stderr_color_mt("podtap");
  spdlog::set_default_logger(logger);
  spdlog::set_level(spdlog::level::from_str(log_level));

  // Signals are taken by one thread with sigwait; block them everywhere else
  // (threads started below inherit the mask).
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  if (std::string err = podtap::PrepareSystem(); !err.empty()) {
    spdlog::critical("{}", err);
    return 1;
  }

  podtap::AgentOptions opts;
  if (!config_file.empty()) {
    std::ifstream in(config_file);
    std::stringstream text;
    text << in.rdbuf();
    std::string err;
    auto routes = podtap::ParseRoutes(text.str(), &err);
    if (!routes) {
      spdlog::critical("config {}: {}", config_file, err);
      return 1;
    }
    spdlog::info("loaded {} routes from {}", routes->size(), config_file);
    opts.routes = std::move(*routes);
  }
  opts.probes.mode = probe_mode == "tp_btf"       ? podtap::ProbeMode::kTpBtf
                     : probe_mode == "tracepoint" ? podtap::ProbeMode::kTracepoint
                                                  : podtap::ProbeMode::kAuto;
  opts.probes.ringbuf_bytes = ringbuf_bytes;
  opts.probes.max_sockets = static_cast<uint32_t>(max_connections);
  opts.probes.capture_payload = capture_payload;
  opts.probes.prefix_len = prefix_len;
  opts.probes.payload_ringbuf_bytes = payload_ringbuf_bytes;
  opts.max_connections = max_connections;
  opts.pods_file = pods_file;
  opts.pod_label_allowlist = SplitList(allowlist);
  opts.diag_interval = std::chrono::milliseconds(static_cast<int64_t>(diag_interval_s * 1000));

  podtap::Agent agent(opts);
  if (std::string err = agent.Start(); !err.empty()) {
    spdlog::critical("{}", err);
    return 1;
  }
  podtap::HttpServer http(
      listen, [&agent] { return agent.Collect(); }, [&agent] { return agent.NotReadyReason(); });
  if (std::string err = http.Start(); !err.empty()) {
    spdlog::critical("{}", err);
    return 1;
  }
  spdlog::info("serving metrics on {} (port {})", listen, http.port());

  std::atomic<bool> stop{false};
  std::thread waiter([&stop, &signals] {
    int sig = 0;
    sigwait(&signals, &sig);
    spdlog::info("received {}, detaching probes and exiting", strsignal(sig));
    stop = true;
  });
  agent.Run(stop);
  waiter.join();
  agent.DetachProbes();
  http.Stop();
  return 0;
}
