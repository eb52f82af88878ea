// libcurl transport of the Kubernetes API client.
#include "agent/metadata/kube_client.h"

#include <curl/curl.h>
#include <sys/stat.h>

#include <fstream>
#include <mutex>
#include <sstream>

namespace podtap {
namespace {

// Bytes of a failed stream's body kept for the error message.
constexpr size_t kErrorBodyBytes = 4096;

std::string TrimmedFile(const std::string& path, bool* ok) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream buf;
  buf << in.rdbuf();
  *ok = static_cast<bool>(in);
  std::string s = buf.str();
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r' || s.back() == ' ')) s.pop_back();
  return s;
}

}  // namespace

struct KubeHttp::Impl {
  KubeConfig config;
  const std::atomic<bool>* stop;
  std::chrono::seconds request_timeout;
  std::chrono::seconds stream_timeout;
  CURL* curl = nullptr;
  // The token file as last read, and what told us it changed.
  std::string token;
  int64_t token_mtime_ns = -1;
  int64_t token_size = -1;

  // Per-request state the callbacks see.
  size_t limit = 0;
  bool streaming = false;
  const std::function<void()>* on_open = nullptr;
  const std::function<bool(std::string_view)>* on_line = nullptr;
  std::string buffer;
  bool too_large = false;
  bool stopped_by_reader = false;

  static size_t OnData(char* data, size_t size, size_t n, void* self_ptr) {
    auto* self = static_cast<Impl*>(self_ptr);
    return self->Consume(std::string_view(data, size * n)) ? size * n : 0;
  }

  // The blank line that ends a response's headers: a 2xx stream is open.
  static size_t OnHeader(char* data, size_t size, size_t n, void* self_ptr) {
    auto* self = static_cast<Impl*>(self_ptr);
    std::string_view line(data, size * n);
    if (self->on_open != nullptr && (line == "\r\n" || line == "\n")) {
      long status = 0;
      curl_easy_getinfo(self->curl, CURLINFO_RESPONSE_CODE, &status);
      if (status >= 200 && status <= 299) (*self->on_open)();
    }
    return size * n;
  }

  static int OnProgress(void* self_ptr, curl_off_t, curl_off_t, curl_off_t, curl_off_t) {
    return static_cast<Impl*>(self_ptr)->stop->load() ? 1 : 0;
  }

  bool Consume(std::string_view data) {
    long status = 0;
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
    if (!streaming || status < 200 || status > 299) {
      size_t cap = streaming ? kErrorBodyBytes : limit;
      if (buffer.size() + data.size() > cap) {
        if (streaming) {  // keep the start of an error body, read no more
          buffer.append(data.substr(0, cap - buffer.size()));
          return false;
        }
        too_large = true;
        return false;
      }
      buffer.append(data);
      return true;
    }
    while (!data.empty()) {
      size_t nl = data.find('\n');
      if (nl == std::string_view::npos) {
        if (buffer.size() + data.size() > limit) {
          too_large = true;
          return false;
        }
        buffer.append(data);
        return true;
      }
      if (buffer.size() + nl > limit) {
        too_large = true;
        return false;
      }
      buffer.append(data.substr(0, nl));
      data.remove_prefix(nl + 1);
      bool go_on = buffer.empty() || (*on_line)(buffer);
      buffer.clear();
      if (!go_on) {
        stopped_by_reader = true;
        return false;
      }
    }
    return true;
  }

  // Re-reads the token file when its mtime or size changed (the kubelet
  // rotates service account tokens by replacing the file).
  std::string CurrentToken(std::string* error) {
    if (config.token_file.empty()) return config.token;
    struct stat st;
    if (stat(config.token_file.c_str(), &st) != 0) {
      *error = "cannot stat token file " + config.token_file;
      return "";
    }
    int64_t mtime = int64_t{st.st_mtim.tv_sec} * 1000000000 + st.st_mtim.tv_nsec;
    if (mtime != token_mtime_ns || st.st_size != token_size) {
      bool ok = false;
      std::string t = TrimmedFile(config.token_file, &ok);
      if (!ok) {
        *error = "cannot read token file " + config.token_file;
        return "";
      }
      token = std::move(t);
      token_mtime_ns = mtime;
      token_size = st.st_size;
    }
    return token;
  }

  HttpResult Perform(const std::string& path, bool stream, size_t max,
                     const std::function<void()>* opened,
                     const std::function<bool(std::string_view)>* reader) {
    HttpResult r;
    std::string token_error;
    std::string bearer = CurrentToken(&token_error);
    if (!token_error.empty()) {
      r.error = token_error;
      return r;
    }
    curl_easy_reset(curl);
    std::string url = config.server + path;
    curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT, 5L);
    auto timeout = stream ? stream_timeout : request_timeout;
    curl_easy_setopt(curl, CURLOPT_TIMEOUT, static_cast<long>(timeout.count()));
    curl_easy_setopt(curl, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, &Impl::OnData);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, this);
    curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, &Impl::OnHeader);
    curl_easy_setopt(curl, CURLOPT_HEADERDATA, this);
    curl_easy_setopt(curl, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(curl, CURLOPT_XFERINFOFUNCTION, &Impl::OnProgress);
    curl_easy_setopt(curl, CURLOPT_XFERINFODATA, this);
    curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "https,http");
    if (config.insecure_skip_tls_verify) {
      curl_easy_setopt(curl, CURLOPT_SSL_VERIFYPEER, 0L);
      curl_easy_setopt(curl, CURLOPT_SSL_VERIFYHOST, 0L);
    }
    curl_blob ca{}, cert{}, key{};
    if (!config.ca_file.empty()) curl_easy_setopt(curl, CURLOPT_CAINFO, config.ca_file.c_str());
    if (!config.ca_data.empty()) {
      ca = {config.ca_data.data(), config.ca_data.size(), CURL_BLOB_NOCOPY};
      curl_easy_setopt(curl, CURLOPT_CAINFO_BLOB, &ca);
    }
    if (!config.client_cert_file.empty()) {
      curl_easy_setopt(curl, CURLOPT_SSLCERT, config.client_cert_file.c_str());
    }
    if (!config.client_cert_data.empty()) {
      cert = {config.client_cert_data.data(), config.client_cert_data.size(), CURL_BLOB_NOCOPY};
      curl_easy_setopt(curl, CURLOPT_SSLCERT_BLOB, &cert);
      curl_easy_setopt(curl, CURLOPT_SSLCERTTYPE, "PEM");
    }
    if (!config.client_key_file.empty()) {
      curl_easy_setopt(curl, CURLOPT_SSLKEY, config.client_key_file.c_str());
    }
    if (!config.client_key_data.empty()) {
      key = {config.client_key_data.data(), config.client_key_data.size(), CURL_BLOB_NOCOPY};
      curl_easy_setopt(curl, CURLOPT_SSLKEY_BLOB, &key);
      curl_easy_setopt(curl, CURLOPT_SSLKEYTYPE, "PEM");
    }
    curl_slist* headers = curl_slist_append(nullptr, "Accept: application/json");
    std::string auth = "Authorization: Bearer " + bearer;
    if (!bearer.empty()) headers = curl_slist_append(headers, auth.c_str());
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);

    limit = max;
    streaming = stream;
    on_open = opened;
    on_line = reader;
    buffer.clear();
    too_large = false;
    stopped_by_reader = false;
    CURLcode rc = curl_easy_perform(curl);
    curl_slist_free_all(headers);
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &r.status);
    r.too_large = too_large;
    bool ok_status = r.status >= 200 && r.status <= 299;
    if (!stream || !ok_status) r.body = std::move(buffer);
    buffer.clear();
    if (too_large) {
      r.error = stream ? "a watch event line exceeds " + std::to_string(max) + " bytes"
                       : "response exceeds " + std::to_string(max) + " bytes";
    } else if (rc == CURLE_ABORTED_BY_CALLBACK) {
      r.error = "stopped";
    } else if (rc != CURLE_OK && !stopped_by_reader && !(stream && !ok_status && r.status > 0)) {
      r.error = curl_easy_strerror(rc);
    }
    return r;
  }
};

void KubeHttp::GlobalInit() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

KubeHttp::KubeHttp(KubeConfig config, const std::atomic<bool>* stop,
                   std::chrono::seconds request_timeout, std::chrono::seconds stream_timeout)
    : impl_(std::make_unique<Impl>()) {
  GlobalInit();
  impl_->config = std::move(config);
  impl_->stop = stop;
  impl_->request_timeout = request_timeout;
  impl_->stream_timeout = stream_timeout;
  impl_->curl = curl_easy_init();
}

KubeHttp::~KubeHttp() {
  if (impl_->curl != nullptr) curl_easy_cleanup(impl_->curl);
}

HttpResult KubeHttp::Get(const std::string& path, size_t max_body) {
  return impl_->Perform(path, false, max_body, nullptr, nullptr);
}

HttpResult KubeHttp::Stream(const std::string& path, size_t max_line,
                            const std::function<void()>& on_open,
                            const std::function<bool(std::string_view)>& on_line) {
  return impl_->Perform(path, true, max_line, &on_open, &on_line);
}

}  // namespace podtap
