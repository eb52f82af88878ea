#include "agent/mailbox.h"

#include <gtest/gtest.h>

#include <atomic>
#include <thread>
#include <vector>

namespace podtap {
namespace {

TEST(Mailbox, DrainRunsUpdatesInOrderOnTheCallersThread) {
  Mailbox mail(4);
  std::atomic<bool> stop{false};
  std::vector<int> seen;
  const auto drainer = std::this_thread::get_id();
  for (int i = 0; i < 3; i++) {
    ASSERT_TRUE(mail.Post(
        [&seen, &drainer, i] {
          EXPECT_EQ(std::this_thread::get_id(), drainer);
          seen.push_back(i);
        },
        stop));
  }
  EXPECT_EQ(mail.Drain(), 3u);
  EXPECT_EQ(seen, (std::vector<int>{0, 1, 2}));
  EXPECT_EQ(mail.Drain(), 0u);
}

TEST(Mailbox, PostWaitsForRoomInsteadOfDropping) {
  Mailbox mail(2);
  std::atomic<bool> stop{false};
  int applied = 0;
  ASSERT_TRUE(mail.Post([&applied] { applied++; }, stop));
  ASSERT_TRUE(mail.Post([&applied] { applied++; }, stop));
  std::atomic<bool> third_posted{false};
  std::thread poster([&] {
    EXPECT_TRUE(mail.Post([&applied] { applied++; }, stop));
    third_posted = true;
  });
  // The poster stays blocked until a drain makes room; every update is
  // applied exactly once.
  size_t drained = 0;
  while (!third_posted.load()) {
    drained += mail.Drain();
    std::this_thread::yield();
  }
  poster.join();
  drained += mail.Drain();
  EXPECT_EQ(drained, 3u);
  EXPECT_EQ(applied, 3);
}

TEST(Mailbox, StopReleasesAPosterWaitingOnAFullMailbox) {
  Mailbox mail(1);
  std::atomic<bool> stop{false};
  ASSERT_TRUE(mail.Post([] {}, stop));
  std::atomic<int> result{-1};
  std::thread poster([&] { result = mail.Post([] {}, stop) ? 1 : 0; });
  stop = true;
  poster.join();
  EXPECT_EQ(result.load(), 0);
  EXPECT_EQ(mail.Drain(), 1u);  // the one posted before the stop
}

TEST(Mailbox, ManyPostersOneDrainerLoseNothing) {
  Mailbox mail(8);
  std::atomic<bool> stop{false};
  std::atomic<bool> posting{true};
  long total = 0;  // written by the drainer only
  std::vector<std::thread> posters;
  for (int t = 0; t < 4; t++) {
    posters.emplace_back([&] {
      for (int i = 1; i <= 1000; i++) ASSERT_TRUE(mail.Post([&total, i] { total += i; }, stop));
    });
  }
  std::thread drainer([&] {
    while (posting.load()) mail.Drain();
    mail.Drain();
  });
  for (auto& p : posters) p.join();
  posting = false;
  drainer.join();
  EXPECT_EQ(total, 4L * 1000 * 1001 / 2);
}

}  // namespace
}  // namespace podtap
