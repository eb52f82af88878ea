#include "agent/kernel/capture.h"

#include <cstring>

extern "C" {
#include "bpf/podtap.h"
}

namespace podtap {
namespace {

constexpr size_t kSegHeader = sizeof(podtap_segment);

podtap_segment SegmentAt(std::span<const uint8_t> raw, size_t at) {
  podtap_segment s;
  std::memcpy(&s, raw.data() + at, kSegHeader);
  return s;
}

}  // namespace

bool Capture::Valid(std::span<const uint8_t> raw, uint64_t total_len) {
  uint64_t end = 0;  // syscall offset past the previous segment
  size_t at = 0;
  while (at < raw.size()) {
    if (raw.size() - at < kSegHeader) return false;
    podtap_segment s = SegmentAt(raw, at);
    at += kSegHeader;
    if (s.len == 0 || s.len > raw.size() - at) return false;
    if (s.offset < end || uint64_t{s.offset} + s.len > total_len) return false;
    end = uint64_t{s.offset} + s.len;
    at += s.len;
  }
  return true;
}

std::span<const uint8_t> Capture::At(uint64_t pos) const {
  if (!segmented_) return pos < raw_.size() ? raw_.subspan(pos) : std::span<const uint8_t>{};
  for (size_t at = 0; at < raw_.size();) {
    podtap_segment s = SegmentAt(raw_, at);
    at += kSegHeader;
    if (pos < s.offset) break;
    if (pos < uint64_t{s.offset} + s.len)
      return raw_.subspan(at + (pos - s.offset), s.offset + s.len - pos);
    at += s.len;
  }
  return {};
}

}  // namespace podtap
