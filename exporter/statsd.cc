// StatsD line encoding and the UDP push loop.
#include "exporter/statsd.h"

#include <netdb.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstring>

#include "exporter/text_format.h"

namespace podtap {
namespace {

std::string Tags(const Labels& labels) {
  std::string out;
  for (const auto& [name, value] : labels) {
    if (value.empty()) continue;
    out += out.empty() ? "|#" : ",";
    out += name;
    out += ':';
    std::string valid;
    AppendValidUtf8(valid, value);
    for (char c : valid) out += (c == ',' || c == '|' || c == '\n' || c == '\r') ? '_' : c;
  }
  return out;
}

std::string Number(double v) {
  std::string out;
  text_format::AppendNumber(out, v);
  return out;
}

}  // namespace

StatsdEncoder::StatsdEncoder(StatsdOptions opts, uint32_t seed)
    : opts_(std::move(opts)), rng_(seed) {}

void StatsdEncoder::Counter(const std::string& key, double value, std::vector<std::string>* out,
                            std::unordered_map<std::string, double>* seen) {
  if (!std::isfinite(value)) return;
  auto it = last_.find(key);
  const double delta = it == last_.end() || value < it->second ? value : value - it->second;
  (*seen)[key] = value;
  if (delta <= 0) return;
  std::string rate;
  if (opts_.sample_rate < 1) {
    if (std::uniform_real_distribution<double>(0, 1)(rng_) >= opts_.sample_rate) return;
    rate = "|@" + Number(opts_.sample_rate);
  }
  const size_t bar = key.find('|');
  const std::string name = key.substr(0, bar);
  const std::string tags = bar == std::string::npos ? "" : key.substr(bar);
  out->push_back(name + ":" + Number(delta) + "|c" + rate + tags);
}

std::vector<std::string> StatsdEncoder::Encode(const Snapshot& snapshot) {
  std::vector<std::string> out;
  std::unordered_map<std::string, double> seen;
  for (const MetricFamily& family : snapshot.families) {
    const std::string name = opts_.prefix.empty() ? family.name : opts_.prefix + "." + family.name;
    for (const Sample& sample : family.samples) {
      const std::string tags = Tags(sample.labels);
      switch (family.type) {
        case MetricType::kCounter:
          Counter(name + tags, sample.value, &out, &seen);
          break;
        case MetricType::kHistogram:
          Counter(name + ".count" + tags, static_cast<double>(sample.histogram.count), &out, &seen);
          Counter(name + ".sum" + tags, sample.histogram.sum, &out, &seen);
          break;
        case MetricType::kGauge:
          if (!std::isfinite(sample.value)) break;
          if (sample.value < 0) out.push_back(name + ":0|g" + tags);
          out.push_back(name + ":" + Number(sample.value) + "|g" + tags);
          break;
      }
    }
  }
  // Series gone from the snapshot are forgotten, so this map stays bounded.
  last_ = std::move(seen);
  return out;
}

StatsdPusher::StatsdPusher(StatsdOptions opts, SnapshotProvider snapshot)
    : encoder_(opts), opts_(std::move(opts)), snapshot_(std::move(snapshot)) {}

StatsdPusher::~StatsdPusher() { Stop(); }

std::string StatsdPusher::Start() {
  const std::string prefix = "statsd " + opts_.host + ":" + std::to_string(opts_.port) + ": ";
  addrinfo hints{};
  hints.ai_socktype = SOCK_DGRAM;
  addrinfo* res = nullptr;
  const int rc = getaddrinfo(opts_.host.c_str(), std::to_string(opts_.port).c_str(), &hints, &res);
  if (rc != 0) return prefix + "cannot resolve: " + gai_strerror(rc);
  std::string error;
  for (addrinfo* ai = res; ai != nullptr; ai = ai->ai_next) {
    const int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd < 0) {
      error = std::strerror(errno);
      continue;
    }
    // connect() on UDP only fixes the destination, so send() needs no address.
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0) {
      fd_ = fd;
      break;
    }
    error = std::strerror(errno);
    close(fd);
  }
  freeaddrinfo(res);
  if (fd_ < 0) return prefix + error;
  thread_ = std::thread([this] {
    std::unique_lock lock(mu_);
    while (!stop_) {
      wake_.wait_for(lock, opts_.interval, [this] { return stop_; });
      lock.unlock();
      PushOnce();
      lock.lock();
    }
  });
  return {};
}

void StatsdPusher::Stop() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
  if (fd_ >= 0) close(fd_);
  fd_ = -1;
}

void StatsdPusher::PushOnce() {
  std::vector<std::string> lines;
  try {
    lines = encoder_.Encode(snapshot_());
  } catch (const std::exception& e) {
    spdlog::error("statsd: snapshot failed: {}", e.what());
    return;
  }
  std::string packet;
  auto flush = [&] {
    if (packet.empty()) return;
    // UDP: a lost datagram is lost; the error is logged, not retried.
    if (send(fd_, packet.data(), packet.size(), 0) < 0 && send_errors_++ % 100 == 0) {
      spdlog::warn("statsd: send to {}:{} failed: {} ({} failures so far)", opts_.host, opts_.port,
                   std::strerror(errno), send_errors_);
    }
    packet.clear();
  };
  for (const std::string& line : lines) {
    if (!packet.empty() && packet.size() + 1 + line.size() > opts_.max_packet_bytes) flush();
    if (!packet.empty()) packet += '\n';
    packet += line;
  }
  flush();
}

}  // namespace podtap
