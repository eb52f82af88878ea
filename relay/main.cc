// podtap-relay: one podtap.v1.Query endpoint for the whole cluster. Finds
// every node's agent through the Kubernetes API, asks each over its TLS and
// token listener, and answers with the merged result and who answered.
#include <grpcpp/grpcpp.h>
#include <signal.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <memory>

#include "relay/relay_service.h"

int main(int argc, char** argv) {
  CLI::App app{
      "podtap-relay: answers podtap's queries for the whole cluster by asking every agent"};
  std::string listen = "127.0.0.1:4193";
  std::string kubeconfig;
  podtap::RelayOptions opts;
  opts.auth.tls_server_name = "podtap-agent";
  app.add_option("--listen", listen,
                 "Loopback host:port to serve on (reached through kubectl port-forward)")
      ->capture_default_str();
  app.add_option("--agent", opts.agents,
                 "An agent's host:port (--query-listen); repeat for each. Without it the agents "
                 "are the pods the Kubernetes API lists")
      ->expected(1)
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
  app.add_option("--kubeconfig", kubeconfig,
                 "Kubeconfig for the Kubernetes API (default: the pod's service account)")
      ->check(CLI::ExistingFile);
  app.add_option("--podtap-namespace", opts.podtap_namespace, "The agents' namespace")
      ->capture_default_str();
  app.add_option("--agent-selector", opts.agent_selector, "The agent pods' labels")
      ->capture_default_str();
  app.add_option("--ca", opts.auth.ca_file, "PEM CA that signed the agents' certificate")
      ->required()
      ->check(CLI::ExistingFile);
  app.add_option("--token-file", opts.auth.token_file, "File holding the agents' bearer token")
      ->required()
      ->check(CLI::ExistingFile);
  app.add_option("--tls-server-name", opts.auth.tls_server_name,
                 "The name the agents' certificate has")
      ->capture_default_str();
  app.add_option("--timeout", opts.auth.timeout_s,
                 "Seconds to wait for each agent (less when the caller's deadline is nearer)")
      ->capture_default_str()
      ->check(CLI::Range(0.1, 600.0));
  bool check_config = false;
  app.add_flag("--check-config", check_config,
               "Check the flags and the CA and token files, print \"config ok\" and exit (the "
               "Kubernetes API is not asked)");
  CLI11_PARSE(app, argc, argv);

  if (std::string err = podtap::CheckLoopbackListen(listen); !err.empty()) {
    std::cerr << "podtap-relay: " << err << "\n";
    return 1;
  }
  if (!opts.agents.empty() && !kubeconfig.empty()) {
    std::cerr << "podtap-relay: --agent names the agents; --kubeconfig is for finding them\n";
    return 1;
  }
  // A probe with the relay's credentials: a bad CA or token file shows now,
  // not on the first query.
  if (std::string error; !podtap::AgentClient::Make(opts.auth, "127.0.0.1:1", &error)) {
    std::cerr << "podtap-relay: " << error << "\n";
    return 1;
  }
  if (check_config) {
    std::printf("config ok\n");
    return 0;
  }
  if (opts.agents.empty()) {
    std::string error;
    opts.kube = kubeconfig.empty() ? podtap::InClusterConfig(
                                         [](const char* name) { return std::getenv(name); },
                                         "/var/run/secrets/kubernetes.io/serviceaccount", &error)
                                   : podtap::LoadKubeconfig(kubeconfig, &error);
    if (!opts.kube) {
      std::cerr << "podtap-relay: " << error << "\n";
      return 1;
    }
  }
  std::string where = opts.kube ? "agents from " + opts.kube->origin + ", pods labelled " +
                                      opts.agent_selector + " in namespace " + opts.podtap_namespace
                                : std::to_string(opts.agents.size()) + " agents given";

  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  podtap::RelayService service(std::move(opts));
  grpc::ServerBuilder builder;
  builder.AddListeningPort(listen, grpc::InsecureServerCredentials());
  builder.RegisterService(&service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (!server) {
    std::cerr << "podtap-relay: cannot listen on " << listen << " (address in use?)\n";
    return 1;
  }
  std::cerr << "podtap-relay: serving on " << listen << "; " << where << "\n" << std::flush;
  int sig = 0;
  sigwait(&signals, &sig);
  std::cerr << "podtap-relay: signal " << sig << ", stopping\n" << std::flush;
  // Live taps end with the server; calls in flight get a second to finish.
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));
  return 0;
}
