// The bytes the kernel captured of one read or write: its first bytes (a prefix), or, on an
// HTTP/2 connection whose frames the kernel follows, segments found anywhere in the syscall's
// bytes (every frame header and header block; bpf/podtap.h, PODTAP_PF_SEGMENTS).
#pragma once

#include <cstdint>
#include <span>

namespace podtap {

class Capture {
 public:
  Capture() = default;
  // A prefix: the bytes at offsets 0 .. size-1.
  Capture(std::span<const uint8_t> prefix) : raw_(prefix) {}  // NOLINT: implicit by design
  // Segments as the kernel encodes them (struct podtap_segment, then its bytes, ...). The
  // encoding must have passed Valid().
  static Capture Segments(std::span<const uint8_t> raw) {
    Capture c(raw);
    c.segmented_ = true;
    return c;
  }
  // True if raw is a well-formed segment list for a syscall of total_len bytes: headers whole,
  // lengths within raw, offsets increasing, not overlapping and within total_len.
  static bool Valid(std::span<const uint8_t> raw, uint64_t total_len);

  // The captured bytes from offset pos to the end of their run; empty when pos was not captured.
  std::span<const uint8_t> At(uint64_t pos) const;
  bool segmented() const { return segmented_; }
  std::span<const uint8_t> raw() const { return raw_; }

 private:
  std::span<const uint8_t> raw_;
  bool segmented_ = false;
};

}  // namespace podtap
