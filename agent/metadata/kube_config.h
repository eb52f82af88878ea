// Where the Kubernetes API is and how to authenticate to it: the in-cluster
// service account, or a kubeconfig file (its current context).
#pragma once

#include <functional>
#include <optional>
#include <string>

namespace podtap {

struct KubeConfig {
  std::string server;  // "https://host:port", no trailing slash
  // Trust: a PEM file or PEM text; neither: the system's CAs.
  std::string ca_file;
  std::string ca_data;
  bool insecure_skip_tls_verify = false;
  // Bearer token: literal, or a file re-read whenever it changes (service
  // account tokens are rotated by the kubelet).
  std::string token;
  std::string token_file;
  // Client certificate and key, as files or PEM text.
  std::string client_cert_file;
  std::string client_cert_data;
  std::string client_key_file;
  std::string client_key_data;
  std::string origin;  // "in-cluster service account" or "kubeconfig PATH, context NAME"
};

// The service account mounted into the pod: KUBERNETES_SERVICE_HOST and
// KUBERNETES_SERVICE_PORT from `getenv`, token and CA from `sa_dir`
// (normally /var/run/secrets/kubernetes.io/serviceaccount).
std::optional<KubeConfig> InClusterConfig(const std::function<const char*(const char*)>& getenv,
                                          const std::string& sa_dir, std::string* error);

// A kubeconfig document (YAML or JSON): the cluster and user of its current
// context. Relative file paths are taken from `dir` (the file's directory).
// Supported: server, certificate-authority(-data), insecure-skip-tls-verify,
// token, tokenFile, client-certificate(-data), client-key(-data). A context
// whose user authenticates another way (exec, auth-provider, username and
// password, impersonation) or a cluster behind a proxy-url is an error that
// names the field.
std::optional<KubeConfig> ParseKubeconfig(const std::string& text, const std::string& dir,
                                          std::string* error);

// Reads and parses the file at `path`.
std::optional<KubeConfig> LoadKubeconfig(const std::string& path, std::string* error);

// What --kubernetes MODE (auto|on|off) and --kubeconfig PATH select: no API
// (nullopt with an empty error), a config, or an error. "auto" is on when
// KUBERNETES_SERVICE_HOST is set or a kubeconfig is given; an auto in-cluster
// config that cannot be read turns the API off with `*warning` saying why.
std::optional<KubeConfig> SelectKubeConfig(const std::string& mode, const std::string& kubeconfig,
                                           const std::function<const char*(const char*)>& getenv,
                                           const std::string& sa_dir, std::string* error,
                                           std::string* warning);

// Standard base64 (with or without padding); nullopt on any other character.
std::optional<std::string> DecodeBase64(const std::string& text);

}  // namespace podtap
