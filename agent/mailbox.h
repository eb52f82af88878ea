// Hands the control thread's results to the event thread. The control thread
// does everything that may block (the container runtime's and the Kubernetes
// API's pods, /proc scans, sock_diag dumps in every pod namespace) and posts
// each result as an update that owns its data; the event thread, which drains
// the kernel's rings, applies the updates between batches and never waits on
// a slow source.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <mutex>

namespace podtap {

class Mailbox {
 public:
  using Update = std::function<void()>;

  // At most `capacity` updates wait at once (bounded memory); Post waits
  // for room rather than dropping one.
  explicit Mailbox(size_t capacity) : capacity_(capacity) {}

  // Queues `update`, waiting while the mailbox is full. Returns false, and
  // drops the update, only when `stop` became true while it waited (the agent
  // is shutting down and nobody will apply it).
  bool Post(Update update, const std::atomic<bool>& stop);

  // Runs every queued update in the order posted, on the caller's thread;
  // returns how many ran.
  size_t Drain();

 private:
  const size_t capacity_;
  std::mutex mu_;
  std::condition_variable room_;
  std::deque<Update> queue_;
};

}  // namespace podtap
