// List+watch reflectors of the Kubernetes API and the pod source built on them.
#include "agent/metadata/kube_source.h"

#include <spdlog/spdlog.h>

namespace podtap {
namespace {

size_t Index(KubeResource r) { return static_cast<size_t>(r); }

// Percent-encodes a query value (continue tokens hold '=', '+', '/').
std::string QueryEscape(const std::string& s) {
  static const char* hex = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    if (isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out.push_back(static_cast<char>(c));
    } else {
      out.push_back('%');
      out.push_back(hex[c >> 4]);
      out.push_back(hex[c & 15]);
    }
  }
  return out;
}

std::string Short(const std::string& body) {
  std::string s = body.substr(0, 200);
  for (char& c : s) {
    if (c == '\n' || c == '\r') c = ' ';
  }
  return s;
}

}  // namespace

// --- KubeState ----------------------------------------------------------------

KubeState::KubeState() {
  for (const char* reason : {"connect", "http_status", "gone", "stream_broken", "decode",
                             "line_too_long", "response_too_large", "watch_error"}) {
    errors_[reason] = 0;
  }
}

void KubeState::Replace(KubeResource r, std::vector<KubeObject> items) {
  std::lock_guard<std::mutex> lock(mu_);
  cache_.Replace(r, std::move(items));
  version_++;
}

void KubeState::Apply(const KubeWatchEvent& ev) {
  if (!ev.object) return;
  std::lock_guard<std::mutex> lock(mu_);
  if (ev.type == KubeWatchEvent::Type::kDeleted) {
    cache_.Erase(*ev.object);
  } else {
    cache_.Upsert(*ev.object);
  }
  version_++;
}

void KubeState::CountError(KubeResource r, const std::string& reason, const std::string& message) {
  std::lock_guard<std::mutex> lock(mu_);
  errors_[reason]++;
  up_[Index(r)] = false;
  detail_[Index(r)] = reason + ": " + message;
}

void KubeState::CountRelist(KubeResource r) {
  std::lock_guard<std::mutex> lock(mu_);
  relists_[Index(r)]++;
}

void KubeState::CountWatchRestart(KubeResource r) {
  std::lock_guard<std::mutex> lock(mu_);
  restarts_[Index(r)]++;
}

void KubeState::SetUp(KubeResource r, bool up, const std::string& detail) {
  std::lock_guard<std::mutex> lock(mu_);
  up_[Index(r)] = up;
  detail_[Index(r)] = detail;
}

uint64_t KubeState::version() const {
  std::lock_guard<std::mutex> lock(mu_);
  return version_;
}

void KubeState::Read(const std::function<void(const KubeCache&)>& fn) const {
  std::lock_guard<std::mutex> lock(mu_);
  fn(cache_);
}

MetadataSourceStatus KubeState::Status() const {
  std::lock_guard<std::mutex> lock(mu_);
  MetadataSourceStatus s;
  s.up = true;
  s.errors = errors_;
  for (size_t i = 0; i < kKubeResourceCount; i++) {
    auto r = static_cast<KubeResource>(i);
    s.up = s.up && up_[i];
    s.relists[KubeResourceName(r)] = relists_[i];
    s.watch_restarts[KubeResourceName(r)] = restarts_[i];
    s.objects[KubeResourceName(r)] = cache_.Count(r);
  }
  return s;
}

std::string KubeState::Detail() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::string out;
  for (size_t i = 0; i < kKubeResourceCount; i++) {
    auto r = static_cast<KubeResource>(i);
    if (!out.empty()) out += "; ";
    out += std::string(KubeResourceName(r)) + ": " +
           (detail_[i].empty() ? "not listed yet" : detail_[i]) + " (" +
           std::to_string(cache_.Count(r)) + " objects)";
  }
  return out;
}

// --- KubeReflector --------------------------------------------------------------

KubeReflector::KubeReflector(KubeResource resource, KubeTransport* transport,
                             const KubeOptions& opts, KubeState* state,
                             const std::atomic<bool>* stop, Sleep sleep)
    : resource_(resource),
      transport_(transport),
      opts_(opts),
      state_(state),
      stop_(stop),
      sleep_(std::move(sleep)) {}

void KubeReflector::Error(const std::string& reason, const std::string& message) {
  spdlog::warn("kubernetes {}: {}: {}", KubeResourceName(resource_), reason, message);
  state_->CountError(resource_, reason, message);
}

void KubeReflector::Backoff() {
  failures_++;
  auto wait = opts_.backoff_initial;
  for (int i = 1; i < failures_ && wait < opts_.backoff_max; i++) wait *= 2;
  wait = std::min(wait, opts_.backoff_max);
  // +-20% so that a node's worth of agents does not retry in step.
  jitter_ = jitter_ * 6364136223846793005ull + 1442695040888963407ull;
  int64_t spread = wait.count() / 5;
  if (spread > 0) {
    uint64_t span = static_cast<uint64_t>(2 * spread + 1);
    wait += std::chrono::milliseconds(static_cast<int64_t>((jitter_ >> 33) % span) - spread);
  }
  sleep_(wait);
}

bool KubeReflector::List() {
  std::vector<KubeObject> items;
  std::string rv, token;
  do {
    std::string path =
        std::string(KubeResourcePath(resource_)) + "?limit=" + std::to_string(opts_.page_limit);
    if (!token.empty()) path += "&continue=" + QueryEscape(token);
    HttpResult r = transport_->Get(path, opts_.max_page_bytes);
    if (stop_->load()) return false;  // shutting down: not an error
    if (r.too_large) {
      Error("response_too_large", r.error);
      return false;
    }
    if (!r.error.empty()) {
      Error("connect", "list: " + r.error);
      return false;
    }
    if (r.status == 410) {  // the continue token expired: start over
      Error("gone", "list continuation expired");
      return false;
    }
    if (r.status != 200) {
      Error("http_status", "list: HTTP " + std::to_string(r.status) + ": " + Short(r.body));
      return false;
    }
    std::string err;
    auto page = DecodeKubeList(resource_, r.body, opts_.decode, &err);
    if (!page) {
      Error("decode", err);
      return false;
    }
    if (rv.empty()) rv = page->resource_version;
    token = page->continue_token;
    for (auto& o : page->items) items.push_back(std::move(o));
  } while (!token.empty() && !stop_->load());
  size_t n = items.size();
  state_->Replace(resource_, std::move(items));
  if (listed_once_) state_->CountRelist(resource_);
  listed_once_ = true;
  rv_ = rv;
  spdlog::info("kubernetes {}: listed {} at resourceVersion {}", KubeResourceName(resource_), n,
               rv_);
  return true;
}

KubeReflector::WatchEnd KubeReflector::Watch() {
  std::string path = std::string(KubeResourcePath(resource_)) +
                     "?watch=1&allowWatchBookmarks=true&resourceVersion=" + QueryEscape(rv_) +
                     "&timeoutSeconds=" + std::to_string(opts_.watch_timeout.count());
  bool gone = false, resync = false;
  auto on_open = [&] {
    failures_ = 0;
    state_->SetUp(resource_, true, "watching from resourceVersion " + rv_);
  };
  HttpResult r =
      transport_->Stream(path, opts_.max_line_bytes, on_open, [&](std::string_view line) {
        std::string err;
        auto ev = DecodeKubeWatchEvent(resource_, line, opts_.decode, &err);
        if (!ev) {
          Error("decode", err);
          resync = true;
          return false;
        }
        if (ev->type == KubeWatchEvent::Type::kError) {
          if (ev->error_code == 410) {
            gone = true;
          } else {
            Error("watch_error",
                  "ERROR event, code " + std::to_string(ev->error_code) + ": " + ev->error_message);
            resync = true;
          }
          return false;
        }
        state_->Apply(*ev);
        if (!ev->resource_version.empty()) rv_ = ev->resource_version;
        return true;
      });
  if (r.too_large) {
    Error("line_too_long", r.error);
    return WatchEnd::kResync;
  }
  if (gone || r.status == 410) {
    Error("gone", "resourceVersion " + rv_ + " expired; re-listing");
    return WatchEnd::kGone;
  }
  if (resync) return WatchEnd::kResync;
  if (stop_->load()) return WatchEnd::kEnded;  // shutting down: not an error
  if (!r.error.empty()) {
    Error(r.status == 0 ? "connect" : "stream_broken", "watch: " + r.error);
    return WatchEnd::kBroken;
  }
  if (r.status != 200) {
    Error("http_status", "watch: HTTP " + std::to_string(r.status) + ": " + Short(r.body));
    return WatchEnd::kBroken;
  }
  return WatchEnd::kEnded;
}

void KubeReflector::Run() {
  bool need_list = true;
  while (!stop_->load()) {
    if (need_list) {
      if (!List()) {
        if (!stop_->load()) Backoff();
        continue;
      }
      failures_ = 0;
      need_list = false;
    }
    WatchEnd end = Watch();
    if (stop_->load()) break;
    switch (end) {
      case WatchEnd::kEnded:  // the server's timeoutSeconds: resume at once
        state_->CountWatchRestart(resource_);
        break;
      case WatchEnd::kBroken:  // resume from the last resourceVersion
        state_->CountWatchRestart(resource_);
        Backoff();
        break;
      case WatchEnd::kGone:  // that resourceVersion is compacted away
        need_list = true;
        break;
      case WatchEnd::kResync:
        need_list = true;
        Backoff();
        break;
    }
  }
}

// --- KubePodSource --------------------------------------------------------------

KubePodSource::KubePodSource(std::unique_ptr<PodSource> local, KubeOptions opts,
                             std::unique_ptr<PodSource> fallback)
    : local_(std::move(local)), fallback_(std::move(fallback)), opts_(std::move(opts)) {
  KubeHttp::GlobalInit();
  auto sleep = [this](std::chrono::milliseconds d) {
    auto until = std::chrono::steady_clock::now() + d;
    while (!stop_.load() && std::chrono::steady_clock::now() < until) {
      std::this_thread::sleep_for(std::min<std::chrono::steady_clock::duration>(
          std::chrono::milliseconds(100), until - std::chrono::steady_clock::now()));
    }
  };
  for (size_t i = 0; i < kKubeResourceCount; i++) {
    auto r = static_cast<KubeResource>(i);
    threads_.emplace_back([this, r, sleep] {
      KubeHttp http(opts_.config, &stop_, std::chrono::seconds(60),
                    opts_.watch_timeout + std::chrono::seconds(30));
      KubeReflector(r, &http, opts_, &state_, &stop_, sleep).Run();
    });
  }
}

KubePodSource::~KubePodSource() {
  stop_ = true;
  for (auto& t : threads_) t.join();
}

std::string KubePodSource::Describe() const {
  std::string api =
      "the Kubernetes API at " + opts_.config.server + " (" + opts_.config.origin + ")";
  std::string local = local_ ? local_->Describe() : "";
  if (fallback_) local += " (while it fails: " + fallback_->Describe() + ")";
  return local_ ? local + " and " + api : api;
}

std::string KubePodSource::Detail() const {
  std::string d = state_.Detail();
  if (using_fallback_) d += "; local pods from " + fallback_->Describe();
  return d;
}

PodListResult KubePodSource::Poll() {
  PodListResult r;
  if (local_) {
    PodListResult lr = local_->Poll();
    r.changes = std::move(lr.changes);
    if (lr.error.empty()) {
      if (lr.changed) primary_pods_ = std::move(lr.pods);
      if (lr.changed || using_fallback_) {
        local_pods_ = primary_pods_;
        local_changed_ = true;
      }
      using_fallback_ = false;
      local_loaded_ = true;
    } else {
      r.error = std::move(lr.error);
      PodListResult fr =
          fallback_ ? fallback_->Poll() : PodListResult{false, {}, "no fallback", {}};
      r.changes.insert(r.changes.end(), fr.changes.begin(), fr.changes.end());
      if (fr.error.empty()) {
        if (fr.changed) fallback_pods_ = std::move(fr.pods);
        if (fr.changed || !using_fallback_) {
          local_pods_ = fallback_pods_;
          local_changed_ = true;
        }
        using_fallback_ = true;
        local_loaded_ = true;
      }
    }
  } else if (!local_loaded_) {
    local_loaded_ = true;
    local_changed_ = true;
  }
  if (!local_loaded_) return r;
  uint64_t version = state_.version();
  if (!local_changed_ && version == merged_version_) return r;
  state_.Read([&](const KubeCache& cache) { r.pods = MergeKubePods(local_pods_, cache); });
  r.changed = true;
  local_changed_ = false;
  merged_version_ = version;
  return r;
}

}  // namespace podtap
