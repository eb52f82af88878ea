#include "agent/mailbox.h"

#include <chrono>
#include <utility>

namespace podtap {

bool Mailbox::Post(Update update, const std::atomic<bool>& stop) {
  std::unique_lock<std::mutex> lock(mu_);
  // `stop` is not tied to mu_: look at it again at least every 100 ms.
  while (queue_.size() >= capacity_) {
    if (stop.load()) return false;
    room_.wait_for(lock, std::chrono::milliseconds(100));
  }
  queue_.push_back(std::move(update));
  return true;
}

size_t Mailbox::Drain() {
  std::deque<Update> taken;
  {
    std::lock_guard<std::mutex> lock(mu_);
    taken.swap(queue_);
  }
  room_.notify_all();
  for (Update& u : taken) u();
  return taken.size();
}

}  // namespace podtap
