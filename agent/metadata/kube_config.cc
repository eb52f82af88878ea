// In-cluster and kubeconfig configuration of the Kubernetes API client.
#include "agent/metadata/kube_config.h"

#include <yaml-cpp/yaml.h>

#include <fstream>
#include <sstream>
#include <stdexcept>

namespace podtap {
namespace {

bool ReadFile(const std::string& path, std::string* out) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return false;
  std::stringstream buf;
  buf << in.rdbuf();
  *out = buf.str();
  return true;
}

// The value of `key` in a mapping as a string; "" when absent or null.
std::string Str(const YAML::Node& map, const char* key, const std::string& where) {
  YAML::Node v = map[key];
  if (!v || v.IsNull()) return "";
  if (!v.IsScalar()) throw std::runtime_error(where + "." + key + " must be a string");
  return v.as<std::string>();
}

// The entry named `name` of a list like "clusters: [{name: x, cluster: {...}}]",
// returning its `field` mapping.
YAML::Node Named(const YAML::Node& doc, const char* list, const char* field,
                 const std::string& name) {
  YAML::Node entries = doc[list];
  if (entries && !entries.IsNull() && !entries.IsSequence()) {
    throw std::runtime_error(std::string(list) + " must be a list");
  }
  if (entries) {
    for (const auto& e : entries) {
      if (!e.IsMap() || Str(e, "name", list) != name) continue;
      YAML::Node f = e[field];
      if (!f || f.IsNull()) return YAML::Node(YAML::NodeType::Map);
      if (!f.IsMap())
        throw std::runtime_error(std::string(list) + " " + name + ": " + field +
                                 " must be a mapping");
      return f;
    }
  }
  throw std::runtime_error(std::string("no ") + field + " named \"" + name + "\" in " + list);
}

std::string Resolve(const std::string& dir, const std::string& path) {
  if (path.empty() || path[0] == '/' || dir.empty()) return path;
  return dir + "/" + path;
}

std::string Base64Field(const YAML::Node& map, const char* key, const std::string& where) {
  std::string text = Str(map, key, where);
  if (text.empty()) return "";
  auto decoded = DecodeBase64(text);
  if (!decoded) throw std::runtime_error(where + "." + key + " is not valid base64");
  return *decoded;
}

}  // namespace

std::optional<std::string> DecodeBase64(const std::string& text) {
  std::string out;
  uint32_t acc = 0;
  int bits = 0;
  size_t pad = 0;
  for (char c : text) {
    int v;
    if (c >= 'A' && c <= 'Z') {
      v = c - 'A';
    } else if (c >= 'a' && c <= 'z') {
      v = c - 'a' + 26;
    } else if (c >= '0' && c <= '9') {
      v = c - '0' + 52;
    } else if (c == '+') {
      v = 62;
    } else if (c == '/') {
      v = 63;
    } else if (c == '=') {
      pad++;
      continue;
    } else if (c == '\n' || c == '\r' || c == ' ') {
      continue;
    } else {
      return std::nullopt;
    }
    if (pad > 0) return std::nullopt;  // data after padding
    acc = (acc << 6) | static_cast<uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<char>((acc >> bits) & 0xff));
    }
  }
  if (pad > 2 || bits >= 6) return std::nullopt;
  return out;
}

std::optional<KubeConfig> InClusterConfig(const std::function<const char*(const char*)>& getenv,
                                          const std::string& sa_dir, std::string* error) {
  const char* host = getenv("KUBERNETES_SERVICE_HOST");
  const char* port = getenv("KUBERNETES_SERVICE_PORT");
  if (host == nullptr || *host == '\0') {
    *error = "KUBERNETES_SERVICE_HOST is not set (not running in a pod; use --kubeconfig)";
    return std::nullopt;
  }
  KubeConfig c;
  std::string h = host;
  // An IPv6 service address needs brackets in a URL.
  if (h.find(':') != std::string::npos) h = "[" + h + "]";
  c.server = "https://" + h + ":" + (port != nullptr && *port != '\0' ? port : "443");
  c.token_file = sa_dir + "/token";
  c.ca_file = sa_dir + "/ca.crt";
  std::string probe;
  if (!ReadFile(c.token_file, &probe)) {
    *error = "cannot read the service account token " + c.token_file;
    return std::nullopt;
  }
  if (!ReadFile(c.ca_file, &probe)) {
    *error = "cannot read the service account CA " + c.ca_file;
    return std::nullopt;
  }
  c.origin = "in-cluster service account";
  return c;
}

std::optional<KubeConfig> ParseKubeconfig(const std::string& text, const std::string& dir,
                                          std::string* error) {
  try {
    YAML::Node doc = YAML::Load(text);
    if (!doc.IsMap()) throw std::runtime_error("not a kubeconfig (expected a mapping)");
    std::string context_name = Str(doc, "current-context", "kubeconfig");
    if (context_name.empty()) throw std::runtime_error("current-context is not set");
    YAML::Node context = Named(doc, "contexts", "context", context_name);
    std::string where = "context " + context_name;
    std::string cluster_name = Str(context, "cluster", where);
    std::string user_name = Str(context, "user", where);
    if (cluster_name.empty()) throw std::runtime_error(where + " names no cluster");

    KubeConfig c;
    YAML::Node cluster = Named(doc, "clusters", "cluster", cluster_name);
    where = "cluster " + cluster_name;
    for (const char* unsupported : {"proxy-url", "tls-server-name"}) {
      if (cluster[unsupported]) {
        throw std::runtime_error(where + " sets " + unsupported +
                                 ", which podtap does not support");
      }
    }
    c.server = Str(cluster, "server", where);
    if (c.server.empty()) throw std::runtime_error(where + " has no server");
    if (!c.server.starts_with("https://") && !c.server.starts_with("http://")) {
      throw std::runtime_error(where + ": server \"" + c.server + "\" is not an http(s) URL");
    }
    while (c.server.ends_with("/")) c.server.pop_back();
    c.ca_file = Resolve(dir, Str(cluster, "certificate-authority", where));
    c.ca_data = Base64Field(cluster, "certificate-authority-data", where);
    if (YAML::Node v = cluster["insecure-skip-tls-verify"]; v && !v.IsNull()) {
      c.insecure_skip_tls_verify = v.as<bool>();
    }

    if (!user_name.empty()) {
      YAML::Node user = Named(doc, "users", "user", user_name);
      where = "user " + user_name;
      for (const char* unsupported : {"exec", "auth-provider", "username", "password", "as",
                                      "as-groups", "as-uid", "as-user-extra"}) {
        if (user[unsupported]) {
          throw std::runtime_error(where + " uses " + unsupported +
                                   ", which podtap does not support (use a token, a tokenFile "
                                   "or a client certificate)");
        }
      }
      c.token = Str(user, "token", where);
      c.token_file = Resolve(dir, Str(user, "tokenFile", where));
      c.client_cert_file = Resolve(dir, Str(user, "client-certificate", where));
      c.client_cert_data = Base64Field(user, "client-certificate-data", where);
      c.client_key_file = Resolve(dir, Str(user, "client-key", where));
      c.client_key_data = Base64Field(user, "client-key-data", where);
      bool has_cert = !c.client_cert_file.empty() || !c.client_cert_data.empty();
      bool has_key = !c.client_key_file.empty() || !c.client_key_data.empty();
      if (has_cert != has_key) {
        throw std::runtime_error(where +
                                 " has a client certificate without a key or a key "
                                 "without a certificate");
      }
    }
    c.origin = "context " + context_name;
    return c;
  } catch (const YAML::Exception& e) {
    *error = std::string("not valid YAML: ") + e.what();
  } catch (const std::exception& e) {
    *error = e.what();
  }
  return std::nullopt;
}

std::optional<KubeConfig> LoadKubeconfig(const std::string& path, std::string* error) {
  std::string text;
  if (!ReadFile(path, &text)) {
    *error = "kubeconfig " + path + ": cannot read it";
    return std::nullopt;
  }
  size_t slash = path.rfind('/');
  std::string dir = slash == std::string::npos ? "." : path.substr(0, slash);
  if (dir.empty()) dir = "/";
  auto c = ParseKubeconfig(text, dir, error);
  if (!c) {
    *error = "kubeconfig " + path + ": " + *error;
    return std::nullopt;
  }
  c->origin = "kubeconfig " + path + ", " + c->origin;
  return c;
}

std::optional<KubeConfig> SelectKubeConfig(const std::string& mode, const std::string& kubeconfig,
                                           const std::function<const char*(const char*)>& getenv,
                                           const std::string& sa_dir, std::string* error,
                                           std::string* warning) {
  if (mode == "off") {
    if (!kubeconfig.empty()) *error = "--kubeconfig given with --kubernetes off";
    return std::nullopt;
  }
  if (mode != "on" && mode != "auto") {
    *error = "--kubernetes must be auto, on or off, not \"" + mode + "\"";
    return std::nullopt;
  }
  if (!kubeconfig.empty()) return LoadKubeconfig(kubeconfig, error);
  const char* host = getenv("KUBERNETES_SERVICE_HOST");
  bool in_pod = host != nullptr && *host != '\0';
  if (mode == "auto" && !in_pod) return std::nullopt;
  std::string err;
  auto c = InClusterConfig(getenv, sa_dir, &err);
  if (!c) {
    if (mode == "auto") {
      *warning = "Kubernetes API off: " + err;
    } else {
      *error = "--kubernetes on: " + err;
    }
  }
  return c;
}

}  // namespace podtap
