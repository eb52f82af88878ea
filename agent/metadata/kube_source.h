// Pod metadata from the Kubernetes API: one list+watch loop (a reflector)
// per resource on a thread of its own, feeding a cache that the agent merges
// with the pods of its local source (CRI or pods file) at most once a poll.
// The event loop never waits on the network: it only takes a mutex that the
// reflectors hold for in-memory updates.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "agent/metadata/kube_client.h"
#include "agent/metadata/kube_config.h"
#include "agent/metadata/kube_objects.h"
#include "agent/metadata/pods.h"

namespace podtap {

struct KubeOptions {
  KubeConfig config;
  KubeDecodeOptions decode;
  // Waits after consecutive errors: initial, doubling up to max (+-20% jitter).
  std::chrono::milliseconds backoff_initial{500};
  std::chrono::milliseconds backoff_max{30000};
  // The watch's timeoutSeconds: the server ends it, the reflector resumes it.
  std::chrono::seconds watch_timeout{300};
  size_t max_line_bytes = size_t{8} << 20;   // one watch event
  size_t max_page_bytes = size_t{64} << 20;  // one list page
  size_t page_limit = 500;                   // objects per list page
};

// The cache and the reflectors' health, shared between their threads and
// the agent's.
class KubeState {
 public:
  // Every error reason starts at 0, so rate() sees its first increment.
  KubeState();
  // Every update bumps the version; the agent merges when it moved.
  void Replace(KubeResource r, std::vector<KubeObject> items);
  void Apply(const KubeWatchEvent& ev);
  void CountError(KubeResource r, const std::string& reason, const std::string& message);
  void CountRelist(KubeResource r);
  void CountWatchRestart(KubeResource r);
  void SetUp(KubeResource r, bool up, const std::string& detail);

  uint64_t version() const;
  // Runs `fn` on the cache under the lock.
  void Read(const std::function<void(const KubeCache&)>& fn) const;
  MetadataSourceStatus Status() const;
  // One line per resource: "pods: watching (12 objects)" or its last error.
  std::string Detail() const;

 private:
  mutable std::mutex mu_;
  KubeCache cache_;
  uint64_t version_ = 0;
  std::map<std::string, uint64_t> errors_;
  std::array<uint64_t, kKubeResourceCount> relists_{}, restarts_{};
  std::array<bool, kKubeResourceCount> up_{};
  std::array<std::string, kKubeResourceCount> detail_{};
};

// List, then watch from the list's resourceVersion (bookmarks on), resume a
// watch that ends or breaks from the last resourceVersion seen, re-list on
// 410 Gone (HTTP status or an ERROR event) and on anything it cannot decode,
// and back off exponentially while errors repeat.
class KubeReflector {
 public:
  using Sleep = std::function<void(std::chrono::milliseconds)>;
  KubeReflector(KubeResource resource, KubeTransport* transport, const KubeOptions& opts,
                KubeState* state, const std::atomic<bool>* stop, Sleep sleep);
  // Until *stop.
  void Run();

 private:
  enum class WatchEnd : uint8_t { kEnded, kBroken, kGone, kResync };
  bool List();
  WatchEnd Watch();
  void Backoff();
  void Error(const std::string& reason, const std::string& message);

  KubeResource resource_;
  KubeTransport* transport_;
  const KubeOptions& opts_;
  KubeState* state_;
  const std::atomic<bool>* stop_;
  Sleep sleep_;
  std::string rv_;
  int failures_ = 0;
  bool listed_once_ = false;
  uint64_t jitter_ = 0x9e3779b97f4a7c15ull;
};

// The agent's pod source when the Kubernetes API is on: the local source's
// pods (may be none) merged with the API's (MergeKubePods). While the local
// source fails, the `fallback`'s pods (ProcPodSource) stand in for them.
class KubePodSource : public PodSource {
 public:
  // Starts one reflector thread per resource.
  KubePodSource(std::unique_ptr<PodSource> local, KubeOptions opts,
                std::unique_ptr<PodSource> fallback = nullptr);
  // Stops the reflectors (within about a second) and joins them.
  ~KubePodSource() override;
  std::string Describe() const override;
  // The local source's poll (its error, if any, is returned) and, when the
  // local pods or the API cache changed, a fresh merged list. Until the local
  // source has answered once, only its error.
  PodListResult Poll() override;
  MetadataSourceStatus Status() const { return state_.Status(); }
  // The API's state, and whether the fallback stands in for the local source.
  std::string Detail() const;

 private:
  std::unique_ptr<PodSource> local_;
  std::unique_ptr<PodSource> fallback_;
  PodList primary_pods_;   // the local source's last good list
  PodList fallback_pods_;  // the fallback's last good list
  std::atomic<bool> using_fallback_{false};
  KubeOptions opts_;
  KubeState state_;
  std::atomic<bool> stop_{false};
  std::vector<std::thread> threads_;
  PodList local_pods_;
  bool local_loaded_ = false;
  bool local_changed_ = false;
  uint64_t merged_version_ = ~uint64_t{0};
};

}  // namespace podtap
