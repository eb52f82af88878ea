// kubeconfig parsing, the in-cluster config and the --kubernetes selection.
#include "agent/metadata/kube_config.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <map>

namespace podtap {
namespace {

// A directory of files for one test, removed afterwards.
class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/podtap-kubeconfig-XXXXXX";
    path_ = mkdtemp(tmpl);
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  std::string Write(const std::string& name, const std::string& text) const {
    std::ofstream(path_ + "/" + name) << text;
    return path_ + "/" + name;
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

std::function<const char*(const char*)> Env(std::map<std::string, std::string> vars) {
  return [vars = std::move(vars)](const char* name) -> const char* {
    auto it = vars.find(name);
    return it == vars.end() ? nullptr : it->second.c_str();
  };
}

TEST(Base64, DecodesStandardAlphabet) {
  EXPECT_EQ(DecodeBase64("cG9kdGFw"), "podtap");
  EXPECT_EQ(DecodeBase64("cG9kdGFwIQ=="), "podtap!");
  EXPECT_EQ(DecodeBase64("cG9k\ndGFw"), "podtap");
  EXPECT_FALSE(DecodeBase64("cG9k*GFw"));
  EXPECT_FALSE(DecodeBase64("cG9=kdGFw"));
}

constexpr const char* kKubeconfig = R"(apiVersion: v1
kind: Config
current-context: replay
clusters:
- name: other
  cluster:
    server: https://other.example:6443
- name: replay
  cluster:
    server: https://127.0.0.1:6443/
    certificate-authority: pki/ca.crt
    certificate-authority-data: LS0tLS1CRUdJTg==
contexts:
- name: replay
  context:
    cluster: replay
    user: agent
    namespace: ignored
users:
- name: agent
  user:
    token: s3cr3t
    client-certificate: /abs/client.crt
    client-key-data: a2V5
)";

TEST(Kubeconfig, CurrentContextsClusterAndUser) {
  std::string err;
  auto c = ParseKubeconfig(kKubeconfig, "/etc/podtap", &err);
  ASSERT_TRUE(c) << err;
  EXPECT_EQ(c->server, "https://127.0.0.1:6443");
  EXPECT_EQ(c->ca_file, "/etc/podtap/pki/ca.crt");  // relative to the file
  EXPECT_EQ(c->ca_data, "-----BEGIN");
  EXPECT_FALSE(c->insecure_skip_tls_verify);
  EXPECT_EQ(c->token, "s3cr3t");
  EXPECT_EQ(c->client_cert_file, "/abs/client.crt");
  EXPECT_EQ(c->client_key_data, "key");
  EXPECT_EQ(c->origin, "context replay");
}

TEST(Kubeconfig, JsonTokenFileAndInsecure) {
  std::string err;
  auto c = ParseKubeconfig(R"({"current-context":"c","contexts":[{"name":"c","context":
      {"cluster":"k","user":"u"}}],"clusters":[{"name":"k","cluster":{"server":
      "https://10.0.0.1","insecure-skip-tls-verify":true}}],"users":[{"name":"u","user":
      {"tokenFile":"token"}}]})",
                           "/d", &err);
  ASSERT_TRUE(c) << err;
  EXPECT_TRUE(c->insecure_skip_tls_verify);
  EXPECT_EQ(c->token_file, "/d/token");
}

TEST(Kubeconfig, ClearErrors) {
  struct Case {
    std::string text;
    const char* want;
  };
  const std::string head =
      "current-context: c\ncontexts:\n- name: c\n  context: {cluster: k, user: u}\n"
      "clusters:\n- name: k\n  cluster: {server: 'https://h'}\n";
  const Case cases[] = {
      {"- a\n- b\n", "expected a mapping"},
      {"clusters: []\n", "current-context is not set"},
      {"current-context: x\ncontexts: []\n", "no context named \"x\""},
      {head + "users:\n- name: u\n  user:\n    exec: {command: aws}\n",
       "user u uses exec, which podtap does not support"},
      {head + "users:\n- name: u\n  user:\n    auth-provider: {name: gcp}\n", "auth-provider"},
      {head + "users:\n- name: u\n  user: {username: a, password: b}\n", "uses username"},
      {head + "users:\n- name: u\n  user: {client-certificate: c.crt}\n",
       "client certificate without a key"},
      {head + "users:\n- name: u\n  user: {client-key-data: '!!'}\n", "not valid base64"},
      {head + "users: []\n", "no user named \"u\""},
      {"current-context: c\ncontexts:\n- name: c\n  context: {cluster: k}\nclusters:\n- name: k\n"
       "  cluster: {server: 'https://h', proxy-url: 'http://p:3128'}\n",
       "cluster k sets proxy-url"},
      {"current-context: c\ncontexts:\n- name: c\n  context: {cluster: k}\nclusters:\n- name: k\n"
       "  cluster: {server: 'h:6443'}\n",
       "is not an http(s) URL"},
      {"current-context: c\ncontexts:\n- name: c\n  context: {cluster: k}\nclusters:\n- name: k\n"
       "  cluster: {}\n",
       "cluster k has no server"},
      {"current-context: [", "not valid YAML"},
  };
  for (const auto& tc : cases) {
    std::string err;
    EXPECT_FALSE(ParseKubeconfig(tc.text, "/d", &err)) << tc.text;
    EXPECT_NE(err.find(tc.want), std::string::npos) << "error: " << err << "\nwant: " << tc.want;
  }
}

TEST(Kubeconfig, LoadNamesTheFile) {
  TempDir dir;
  std::string path = dir.Write("config", kKubeconfig);
  std::string err;
  auto c = LoadKubeconfig(path, &err);
  ASSERT_TRUE(c) << err;
  EXPECT_EQ(c->ca_file, dir.path() + "/pki/ca.crt");
  EXPECT_EQ(c->origin, "kubeconfig " + path + ", context replay");
  EXPECT_FALSE(LoadKubeconfig(dir.path() + "/missing", &err));
  EXPECT_EQ(err, "kubeconfig " + dir.path() + "/missing: cannot read it");
}

TEST(InCluster, ServiceAccountFiles) {
  TempDir sa;
  sa.Write("token", "tok\n");
  sa.Write("ca.crt", "-----BEGIN CERTIFICATE-----\n");
  std::string err;
  auto c = InClusterConfig(
      Env({{"KUBERNETES_SERVICE_HOST", "10.96.0.1"}, {"KUBERNETES_SERVICE_PORT", "443"}}),
      sa.path(), &err);
  ASSERT_TRUE(c) << err;
  EXPECT_EQ(c->server, "https://10.96.0.1:443");
  EXPECT_EQ(c->token_file, sa.path() + "/token");
  EXPECT_EQ(c->ca_file, sa.path() + "/ca.crt");
  auto v6 = InClusterConfig(Env({{"KUBERNETES_SERVICE_HOST", "fd00::1"}}), sa.path(), &err);
  ASSERT_TRUE(v6) << err;
  EXPECT_EQ(v6->server, "https://[fd00::1]:443");

  EXPECT_FALSE(InClusterConfig(Env({}), sa.path(), &err));
  EXPECT_NE(err.find("KUBERNETES_SERVICE_HOST is not set"), std::string::npos);
  EXPECT_FALSE(
      InClusterConfig(Env({{"KUBERNETES_SERVICE_HOST", "h"}}), sa.path() + "/nothing", &err));
  EXPECT_NE(err.find("cannot read the service account token"), std::string::npos) << err;
}

TEST(SelectKubeConfig, AutoOnOff) {
  TempDir sa;
  sa.Write("token", "tok");
  sa.Write("ca.crt", "ca");
  std::string kubeconfig = sa.Write("config", kKubeconfig);
  auto in_pod = Env({{"KUBERNETES_SERVICE_HOST", "10.96.0.1"}});
  auto outside = Env({});
  std::string err, warn;
  EXPECT_FALSE(SelectKubeConfig("auto", "", outside, sa.path(), &err, &warn));
  EXPECT_EQ(err + warn, "");
  auto c = SelectKubeConfig("auto", "", in_pod, sa.path(), &err, &warn);
  ASSERT_TRUE(c) << err;
  EXPECT_EQ(c->origin, "in-cluster service account");
  c = SelectKubeConfig("auto", kubeconfig, outside, sa.path(), &err, &warn);
  ASSERT_TRUE(c) << err;
  EXPECT_EQ(c->server, "https://127.0.0.1:6443");
  EXPECT_FALSE(SelectKubeConfig("off", "", in_pod, sa.path(), &err, &warn));
  EXPECT_EQ(err, "");
  EXPECT_FALSE(SelectKubeConfig("off", kubeconfig, in_pod, sa.path(), &err, &warn));
  EXPECT_EQ(err, "--kubeconfig given with --kubernetes off");
  err.clear();
  // Without a readable service account: auto goes on without the API, on fails.
  EXPECT_FALSE(SelectKubeConfig("auto", "", in_pod, "/nonexistent", &err, &warn));
  EXPECT_EQ(err, "");
  EXPECT_NE(warn.find("Kubernetes API off"), std::string::npos) << warn;
  EXPECT_FALSE(SelectKubeConfig("on", "", outside, sa.path(), &err, &warn));
  EXPECT_NE(err.find("--kubernetes on: KUBERNETES_SERVICE_HOST is not set"), std::string::npos)
      << err;
}

}  // namespace
}  // namespace podtap
