// Pushes the snapshot to a StatsD server over UDP (off unless a host is
// configured): counters as deltas since the previous push, gauges as values.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "agent/metrics/snapshot.h"

namespace podtap {

struct StatsdOptions {
  std::string host{};  // empty: no push
  uint16_t port = 8125;
  std::string prefix = "podtap";  // metric names are "<prefix>.<family>"
  // Each counter delta is sent with this probability, tagged "|@rate" so
  // the server scales it back; gauges are always sent.
  double sample_rate = 1.0;
  std::chrono::milliseconds interval{10000};  // between pushes (gauges included)
  size_t max_packet_bytes = 1432;             // lines are packed into datagrams up to this size
};

// The lines of one push, in DogStatsD form ("name:value|type|@rate|#k:v,..."),
// which Datadog, Telegraf's statsd input and statsd_exporter read; plain
// StatsD servers ignore nothing they need but do not see the labels.
// Counters: "|c" with the increase since the previous Encode() (a series
// seen for the first time, or whose value went down because it expired and
// came back, sends its whole value; zero deltas are not sent). Gauges: "|g"
// (a negative one is preceded by ":0|g", since a signed gauge value means
// "adjust by" in StatsD). Histograms: "<name>.count" and "<name>.sum" as
// counters. Label values have ',', '|' and line breaks replaced by '_';
// empty ones are left out.
class StatsdEncoder {
 public:
  explicit StatsdEncoder(StatsdOptions opts, uint32_t seed = std::random_device{}());
  std::vector<std::string> Encode(const Snapshot& snapshot);

 private:
  void Counter(const std::string& key, double value, std::vector<std::string>* out,
               std::unordered_map<std::string, double>* seen);

  StatsdOptions opts_;
  std::mt19937 rng_;
  std::unordered_map<std::string, double> last_;  // counter "name|#tags" -> value pushed
};

class StatsdPusher {
 public:
  using SnapshotProvider = std::function<Snapshot()>;

  StatsdPusher(StatsdOptions opts, SnapshotProvider snapshot);
  ~StatsdPusher();
  StatsdPusher(const StatsdPusher&) = delete;
  StatsdPusher& operator=(const StatsdPusher&) = delete;

  // Resolves the host, opens the socket and starts pushing every interval on
  // a thread of its own. Empty on success, else a message for the operator.
  std::string Start();
  // Pushes once more (so the last deltas are not lost) and stops.
  void Stop();

 private:
  void PushOnce();

  StatsdEncoder encoder_;
  const StatsdOptions opts_;
  const SnapshotProvider snapshot_;
  int fd_ = -1;
  std::thread thread_;
  std::mutex mu_;
  std::condition_variable wake_;
  bool stop_ = false;
  uint64_t send_errors_ = 0;
};

}  // namespace podtap
