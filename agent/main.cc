// podtap-agent: the node daemon. Parses flags, checks the system, attaches the
// probes, serves metrics, and runs the event loop until SIGTERM or SIGINT;
// SIGHUP re-reads --config.
#include <signal.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <thread>

#include "agent/agent.h"
#include "agent/memory_budget.h"
#include "agent/overload_guard.h"
#include "agent/query_service.h"
#include "exporter/http_server.h"
#include "exporter/process_metrics.h"
#include "exporter/statsd.h"

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

// The routes of a --config file; nullopt with *error saying why.
std::optional<podtap::RouteTable> LoadRoutes(const std::string& path, std::string* error) {
  std::ifstream in(path);
  if (!in) {
    *error = std::string("cannot read: ") + std::strerror(errno);
    return std::nullopt;
  }
  std::stringstream text;
  text << in.rdbuf();
  return podtap::ParseRoutes(text.str(), error);
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
  std::string payload_probes = "auto";
  std::string syscall_hook = "auto";
  // The rings by the CPUs that write into them (memory_budget.h).
  const podtap::MemoryPlan node_defaults =
      podtap::DefaultPlan(static_cast<unsigned>(std::max(sysconf(_SC_NPROCESSORS_ONLN), 1L)));
  uint32_t ringbuf_bytes = node_defaults.ringbuf_bytes;
  size_t max_connections = node_defaults.max_connections;
  std::string log_level = "info";
  bool capture_payload = true;
  uint32_t prefix_len = 256;
  uint32_t payload_ringbuf_bytes = node_defaults.payload_ringbuf_bytes;
  // Runs before CLI11 converts the value, so it also refuses what is not a
  // number (which the conversion would otherwise get first, with a vaguer message).
  auto power_of_two = [](const std::string& v) -> std::string {
    uint64_t n = 0;
    auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
    if (ec != std::errc() || end != v.data() + v.size() || v.empty()) {
      return "must be a whole number of bytes (a power of two >= 4096), not \"" + v + "\"";
    }
    return (n >= 4096 && n <= (uint64_t{1} << 31) && (n & (n - 1)) == 0)
               ? ""
               : "must be a power of two from 4096 to 2147483648";
  };
  app.add_option("--listen", listen, "Address to serve /metrics, /healthz and /readyz on")
      ->capture_default_str();
  app.add_option("--pods-file", pods_file,
                 "JSON file describing the pods on this node (see README); re-read when it "
                 "changes. Without it every connection counts as a host process");
  std::string cri_socket;
  auto* cri_opt =
      app.add_option("--cri-socket", cri_socket,
                     "Take pods from the container runtime over CRI (gRPC) at this unix socket; "
                     "no value or \"auto\": /run/containerd/containerd.sock if it exists, else "
                     "/var/run/crio/crio.sock")
          ->expected(0, 1)
          ->excludes("--pods-file");
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
  app.add_option("--payload-probes", payload_probes,
                 "Build of the socket data programs: auto (the best this kernel's features "
                 "allow, falling back to the next, then to TCP metrics only), btf_cast (6.2+), "
                 "probe_read (5.17+) or compat (5.8+); a named build that does not load is an "
                 "error")
      ->capture_default_str()
      ->check(CLI::IsMember({"auto", "btf_cast", "probe_read", "compat"}));
  app.add_option("--syscall-hook", syscall_hook,
                 "How the socket data programs see the syscalls: auto (sys_exit where it loads, "
                 "else pairs), sys_exit (one program at tp_btf/sys_exit, with the btf_cast or "
                 "probe_read build) or pairs (entry and exit programs on each syscall's "
                 "tracepoints); a named hook that does not load is an error")
      ->capture_default_str()
      ->check(CLI::IsMember({"auto", "sys_exit", "pairs"}));
  auto* ringbuf_opt =
      app.add_option("--ringbuf-size", ringbuf_bytes,
                     "Kernel-to-agent ring buffer size in bytes (a power of two, >= 4096); "
                     "default: 512 KiB per CPU, at most 4 MiB")
          ->capture_default_str()
          ->check(power_of_two);
  auto* max_connections_opt =
      app.add_option("--max-connections", max_connections,
                     "Most connections tracked at once (kernel map and agent table); default: "
                     "from --memory-limit")
          ->capture_default_str()
          ->check(CLI::Range(size_t{1}, size_t{1} << 24));
  app.add_option("--capture-payload", capture_payload,
                 "Capture socket data for HTTP metrics (false: TCP metrics only)")
      ->capture_default_str();
  app.add_option("--payload-prefix", prefix_len,
                 "Bytes of each read/write captured for the protocol parsers")
      ->capture_default_str()
      ->check(CLI::Range(16u, 4096u));
  auto* payload_ringbuf_opt =
      app.add_option("--payload-ringbuf-size", payload_ringbuf_bytes,
                     "Ring buffer for socket data, in bytes (a power of two, >= 4096); default: "
                     "1 MiB per CPU, at most 8 MiB")
          ->capture_default_str()
          ->check(power_of_two);
  std::string memory_limit = "auto";
  app.add_option("--memory-limit", memory_limit,
                 "Memory the agent may use (bytes, or 512Mi, 2Gi...): sizes --max-connections "
                 "and the ring buffers when they are not given, so that past it connections are "
                 "refused and counted rather than the agent OOM-killed. auto: its cgroup's "
                 "limit; none: the defaults (rings by CPUs, 262144 connections)")
      ->capture_default_str()
      ->check([](const std::string& v) -> std::string {
        return v == "auto" || v == "none" || podtap::ParseByteQuantity(v)
                   ? ""
                   : "must be auto, none or a byte quantity (536870912, 512Mi, 2Gi), not \"" + v +
                         "\"";
      });
  std::string max_cpu = "auto";
  app.add_option("--max-cpu", max_cpu,
                 "CPU the agent may use, in cores (0.5, 2): above it for two seconds, HTTP "
                 "capture is shed from the busiest connections (counted in "
                 "podtap_http_shed_connections_total) while TCP metrics stay exact. auto: 80% of "
                 "its cgroup's CPU limit (none without one); none: no budget")
      ->capture_default_str()
      ->check([](const std::string& v) -> std::string {
        if (v == "auto" || v == "none") return "";
        double cores = 0;
        auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), cores);
        return ec == std::errc() && end == v.data() + v.size() && cores > 0 && cores <= 4096
                   ? ""
                   : "must be auto, none or a number of cores above 0 (0.5, 2), not \"" + v + "\"";
      });
  bool tls_probes = true;
  app.add_flag("--tls-probes,!--no-tls-probes", tls_probes,
               "Read TLS plaintext through uprobes on the OpenSSL (libssl) files the node's "
               "processes map")
      ->capture_default_str();
  double tls_rescan_s = 30;
  app.add_option("--tls-rescan-interval", tls_rescan_s,
                 "Seconds between reads of every process's memory maps for the TLS probes "
                 "(libraries loaded later with dlopen; files no process maps any more are "
                 "detached); processes that called exec are read every second")
      ->capture_default_str()
      ->check(CLI::Range(1.0, 3600.0));
  app.add_option("--log-level", log_level, "debug, info, warn or error")
      ->capture_default_str()
      ->check(CLI::IsMember({"debug", "info", "warn", "error"}));
  // Exporter: cardinality bounds, series expiry and StatsD push.
  const std::map<std::string, double> kSecondsUnits = {
      {"ms", 0.001}, {"s", 1}, {"m", 60}, {"h", 3600}};
  podtap::AggregatorOptions agg_opts;
  double series_retention_s = 300;
  podtap::StatsdOptions statsd_opts;
  double statsd_interval_s = 10;
  app.add_option("--max-series-per-family", agg_opts.max_series_per_family,
                 "Most label sets per metric family; past it new ones are counted in one "
                 "podtap_overflow=\"true\" series and in podtap_series_dropped_total")
      ->capture_default_str()
      ->check(CLI::Range(size_t{1}, size_t{1} << 24));
  app.add_option("--max-label-value-bytes", agg_opts.max_label_value_bytes,
                 "Label values (e.g. a client's Host header) are cut to this many bytes")
      ->capture_default_str()
      ->check(CLI::Range(size_t{16}, size_t{65536}));
  app.add_option("--series-retention", series_retention_s,
                 "Series of pods that are gone are removed after being idle this long "
                 "(e.g. 90s, 5m, 1h; a bare number is seconds)")
      ->default_str("5m")
      ->transform(CLI::AsNumberWithUnit(kSecondsUnits))
      ->check(CLI::Range(1.0, 86400.0 * 30));
  app.add_option("--statsd-host", statsd_opts.host,
                 "Push metrics to this StatsD server over UDP (empty: no push)");
  app.add_option("--statsd-port", statsd_opts.port, "StatsD UDP port")->capture_default_str();
  app.add_option("--statsd-prefix", statsd_opts.prefix, "Prefix of StatsD metric names")
      ->capture_default_str();
  app.add_option("--statsd-sample-rate", statsd_opts.sample_rate,
                 "Probability each counter delta is sent (tagged |@rate)")
      ->capture_default_str()
      ->check(CLI::Range(0.000001, 1.0));
  app.add_option("--statsd-interval", statsd_interval_s,
                 "Time between StatsD pushes (counters as deltas, gauges as values)")
      ->default_str("10s")
      ->transform(CLI::AsNumberWithUnit(kSecondsUnits))
      ->check(CLI::Range(0.01, 3600.0));
  // Kubernetes API metadata (owners, dst_* of Services and remote pods).
  std::string kubernetes_mode = "auto";
  std::string kubeconfig;
  const char* node_env = std::getenv("NODE_NAME");
  std::string node_name = node_env != nullptr ? node_env : "";
  app.add_option("--kubernetes", kubernetes_mode,
                 "Read pods, ReplicaSets, Services and EndpointSlices from the Kubernetes API: "
                 "auto (when KUBERNETES_SERVICE_HOST is set or --kubeconfig given), on, off")
      ->capture_default_str()
      ->check(CLI::IsMember({"auto", "on", "off"}));
  app.add_option("--kubeconfig", kubeconfig,
                 "kubeconfig file for the Kubernetes API (default: the in-cluster service "
                 "account)")
      ->check(CLI::ExistingFile);
  std::string cluster_domain = "cluster.local";
  app.add_option("--cluster-domain", cluster_domain,
                 "The cluster's DNS domain: outbound TCP series to a Service carry "
                 "authority=\"NAME.NAMESPACE.svc.DOMAIN:PORT\", as Linkerd's proxy names it")
      ->capture_default_str();
  app.add_option("--node-name", node_name,
                 "This node's name; only its pods keep their allow-listed labels in memory "
                 "(default: $NODE_NAME)");
  bool check_config = false;
  app.add_flag("--check-config", check_config,
               "Check the flags, the listen address and the --config file, print \"config ok\" "
               "or the error, and exit 0 or 1; needs no root and touches no kernel state");
  // Operator query service (the podtap CLI).
  podtap::QueryServerOptions query_opts;
  podtap::TapOptions tap_opts;
  app.add_option("--query-socket", query_opts.socket_path,
                 "Unix socket of the query service for the podtap CLI; only root may use it "
                 "(directory 0700, socket 0600, peer uid checked); \"\" serves none")
      ->capture_default_str();
  app.add_option("--query-listen", query_opts.listen,
                 "Also serve the query service on this host:port, with TLS and a bearer token "
                 "(needs --query-tls-cert, --query-tls-key, --query-token-file)");
  app.add_option("--query-tls-cert", query_opts.tls_cert, "PEM certificate for --query-listen")
      ->check(CLI::ExistingFile);
  app.add_option("--query-tls-key", query_opts.tls_key, "PEM private key for --query-listen")
      ->check(CLI::ExistingFile);
  app.add_option("--query-token-file", query_opts.token_file,
                 "File holding the bearer token --query-listen callers must present")
      ->check(CLI::ExistingFile);
  app.add_option("--query-max-taps", tap_opts.max_taps, "Most live taps at once")
      ->capture_default_str()
      ->check(CLI::Range(size_t{1}, size_t{1024}));
  app.add_option("--query-tap-rps", tap_opts.max_rps,
                 "Most requests a second one tap sends; past it they are skipped and counted")
      ->capture_default_str()
      ->check(CLI::Range(1u, 1000000u));
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // --help exits 0; a bad flag exits 1 like every other reason not to run.
    return app.exit(e) == 0 ? 0 : 1;
  }
  if (std::string err = podtap::CheckQueryOptions(query_opts); !err.empty()) {
    std::fprintf(stderr, "%s\n", err.c_str());
    return 1;
  }

  auto logger = spdlog::stderr_color_mt("podtap");
  spdlog::set_default_logger(logger);
  spdlog::set_level(spdlog::level::from_str(log_level));

  podtap::AgentOptions opts;
  if (!config_file.empty()) {
    std::string err;
    auto routes = LoadRoutes(config_file, &err);
    if (!routes) {
      spdlog::critical("config {}: {}", config_file, err);
      return 1;
    }
    spdlog::info("loaded {} routes from {}", routes->size(), config_file);
    opts.routes = std::move(*routes);
  }
  if (check_config) {
    if (std::string err = podtap::HttpServer::CheckListenAddress(listen); !err.empty()) {
      spdlog::critical("{}", err);
      return 1;
    }
    std::printf("config ok\n");
    return 0;
  }

  // Signals are taken by one thread with sigwait; block them everywhere else
  // (threads started below inherit the mask).
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  if (std::string err = podtap::PrepareSystem(); !err.empty()) {
    spdlog::critical("{}", err);
    return 1;
  }

  opts.probes.mode = probe_mode == "tp_btf"       ? podtap::ProbeMode::kTpBtf
                     : probe_mode == "tracepoint" ? podtap::ProbeMode::kTracepoint
                                                  : podtap::ProbeMode::kAuto;
  opts.probes.payload_variant = payload_probes == "btf_cast" ? podtap::PayloadVariant::kBtfCast
                                : payload_probes == "probe_read"
                                    ? podtap::PayloadVariant::kProbeRead
                                : payload_probes == "compat" ? podtap::PayloadVariant::kCompat
                                                             : podtap::PayloadVariant::kAuto;
  opts.probes.syscall_hook = syscall_hook == "sys_exit" ? podtap::SyscallHook::kSysExit
                             : syscall_hook == "pairs"  ? podtap::SyscallHook::kPairs
                                                        : podtap::SyscallHook::kAuto;
  {
    uint64_t limit = 0;
    std::string source = "--memory-limit";
    if (memory_limit == "auto") {
      std::ifstream f("/proc/self/cgroup");
      std::stringstream text;
      text << f.rdbuf();
      limit = podtap::CgroupMemoryLimit(text.str(), "/sys/fs/cgroup");
      source = "its cgroup";
    } else if (memory_limit != "none") {
      limit = *podtap::ParseByteQuantity(memory_limit);
    }
    podtap::MemoryPlan defaults{max_connections, ringbuf_bytes, payload_ringbuf_bytes};
    podtap::MemoryPlan plan = podtap::PlanMemory(limit, defaults);
    if (max_connections_opt->count() == 0) max_connections = plan.max_connections;
    if (ringbuf_opt->count() == 0) ringbuf_bytes = plan.ringbuf_bytes;
    if (payload_ringbuf_opt->count() == 0) payload_ringbuf_bytes = plan.payload_ringbuf_bytes;
    if (limit == 0) {
      spdlog::info("no memory limit ({}): tracking at most {} connections",
                   memory_limit == "auto" ? "its cgroup has none" : "--memory-limit none",
                   max_connections);
    } else {
      spdlog::info(
          "memory limit {} MiB (from {}): tracking at most {} connections, ring buffers {} KiB and "
          "{} KiB",
          limit >> 20, source, max_connections, ringbuf_bytes >> 10, payload_ringbuf_bytes >> 10);
      if (limit < podtap::SmallestLimitBytes(plan)) {
        spdlog::warn(
            "a memory limit of {} MiB is below the {} MiB the agent needs (the kernel's "
            "verifier alone charges up to 145 MiB to its cgroup while the programs load): it "
            "may be OOM-killed at start",
            limit >> 20, podtap::SmallestLimitBytes(plan) >> 20);
      }
    }
  }
  if (max_cpu == "auto") {
    std::ifstream f("/proc/self/cgroup");
    std::stringstream text;
    text << f.rdbuf();
    const double limit = podtap::CgroupCpuLimit(text.str(), "/sys/fs/cgroup");
    opts.max_cpu = podtap::kAutoCpuShare * limit;
    if (limit > 0) {
      spdlog::info("CPU budget {:.2f} cores (80% of its cgroup's limit of {:.2f})", opts.max_cpu,
                   limit);
    } else {
      spdlog::info("no CPU budget: its cgroup has no CPU limit (--max-cpu sets one)");
    }
  } else if (max_cpu != "none") {
    std::from_chars(max_cpu.data(), max_cpu.data() + max_cpu.size(), opts.max_cpu);
    spdlog::info("CPU budget {:.2f} cores (--max-cpu)", opts.max_cpu);
  }
  opts.probes.ringbuf_bytes = ringbuf_bytes;
  opts.probes.max_sockets = static_cast<uint32_t>(max_connections);
  opts.probes.capture_payload = capture_payload;
  opts.probes.prefix_len = prefix_len;
  opts.probes.payload_ringbuf_bytes = payload_ringbuf_bytes;
  opts.max_connections = max_connections;
  opts.pods_file = pods_file;
  opts.tls_probes = tls_probes;
  opts.tls_rescan_interval = std::chrono::milliseconds(static_cast<int64_t>(tls_rescan_s * 1000));
  if (cri_opt->count() > 0) opts.cri_socket = cri_socket == "auto" ? "" : cri_socket;
  opts.pod_label_allowlist = SplitList(allowlist);
  opts.cluster_domain = cluster_domain;
  opts.aggregator = agg_opts;
  opts.series_retention =
      std::chrono::milliseconds(static_cast<int64_t>(series_retention_s * 1000));
  statsd_opts.interval = std::chrono::milliseconds(static_cast<int64_t>(statsd_interval_s * 1000));
  opts.diag_interval = std::chrono::milliseconds(static_cast<int64_t>(diag_interval_s * 1000));
  opts.taps = tap_opts;

  {
    std::string err, warning;
    auto kube =
        podtap::SelectKubeConfig(kubernetes_mode, kubeconfig, std::getenv,
                                 "/var/run/secrets/kubernetes.io/serviceaccount", &err, &warning);
    if (!err.empty()) {
      spdlog::critical("{}", err);
      return 1;
    }
    if (!warning.empty()) spdlog::warn("{}", warning);
    if (kube) {
      podtap::KubeOptions k;
      k.config = std::move(*kube);
      k.decode.node = node_name;
      k.decode.label_allowlist = opts.pod_label_allowlist;
      opts.kubernetes = std::move(k);
    }
  }
  podtap::Agent agent(opts);
  if (std::string err = agent.Start(); !err.empty()) {
    spdlog::critical("{}", err);
    return 1;
  }
  podtap::HttpServer http(
      listen, [&agent] { return agent.Collect(); }, [&agent] { return agent.NotReadyReason(); },
      [&agent] { return agent.ReadyDetail(); });
  // After the agent's own families, in every snapshot (statsd's too). The server outlives
  // every Collect(): statsd, the other caller, stops and is destroyed before it.
  agent.metric_sources().Register([&http](podtap::Snapshot* s) { http.AppendSelfMetrics(s); });
  agent.metric_sources().Register([](podtap::Snapshot* s) {
    for (podtap::MetricFamily& f : podtap::ProcessMetrics()) s->families.push_back(std::move(f));
  });
  if (std::string err = http.Start(); !err.empty()) {
    spdlog::critical("{}", err);
    return 1;
  }
  spdlog::info("serving metrics on {} (port {})", listen, http.port());
  podtap::StatsdPusher statsd(statsd_opts, [&agent] { return agent.Collect(); });
  if (!statsd_opts.host.empty()) {
    if (std::string err = statsd.Start(); !err.empty()) {
      spdlog::critical("{}", err);
      return 1;
    }
    spdlog::info("pushing to statsd {}:{} every {}s", statsd_opts.host, statsd_opts.port,
                 statsd_interval_s);
  }

  podtap::QueryServer query(&agent, query_opts);
  if (!query_opts.socket_path.empty() || !query_opts.listen.empty()) {
    if (std::string err = query.Start(); !err.empty()) {
      spdlog::critical("{}", err);
      return 1;
    }
    spdlog::info("query service on {}", query.Describe());
  }

  std::atomic<bool> stop{false};
  std::thread waiter([&stop, &signals, &agent, &config_file] {
    for (;;) {
      int sig = 0;
      sigwait(&signals, &sig);
      if (sig != SIGHUP) {
        spdlog::info("received {}, detaching probes and exiting", strsignal(sig));
        stop = true;
        return;
      }
      if (config_file.empty()) {
        spdlog::warn("received SIGHUP, but there is no --config to reload");
        continue;
      }
      // Counts so far stay under the routes they were counted with.
      std::string err;
      auto routes = LoadRoutes(config_file, &err);
      if (routes) {
        spdlog::info("SIGHUP: reloaded {} routes from {}", routes->size(), config_file);
      } else {
        spdlog::error("SIGHUP: config {}: {} (keeping the previous routes)", config_file, err);
      }
      agent.ReloadRoutes(std::move(routes));
    }
  });
  agent.Run(stop);
  waiter.join();
  agent.DetachProbes();
  query.Stop();
  statsd.Stop();
  http.Stop();
  return 0;
}
