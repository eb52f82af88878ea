// The input format of the connection-level fuzz targets: a sequence of socket syscalls as the
// kernel reports them, each a captured prefix (at most PODTAP_PAYLOAD_MAX bytes) plus the full
// length the syscall moved, so that the parsers are driven exactly the way the agent drives them.
//
// One record per syscall:
//   u8      bit 0: which side wrote the bytes (0: the client, 1: the server)
//   u16 LE  captured bytes that follow (cut at PODTAP_PAYLOAD_MAX and at the input's end)
//   u32 LE  bytes the syscall moved past the captured ones
//   the captured bytes
// A record whose 7-byte head is cut by the end of the input ends the sequence.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

namespace podtap::fuzz {

// PODTAP_PAYLOAD_MAX in bpf/podtap.h: the kernel never captures more per syscall.
inline constexpr size_t kMaxCaptured = 4096;
inline constexpr size_t kRecordHeadBytes = 7;

struct Syscall {
  bool server = false;  // the server wrote these bytes (the response stream)
  std::span<const uint8_t> captured;
  uint64_t total_len = 0;  // captured.size() plus the bytes past the capture
};

class SyscallReader {
 public:
  SyscallReader(const uint8_t* data, size_t size) : data_(data), size_(size) {}

  bool Next(Syscall* s) {
    if (size_ - pos_ < kRecordHeadBytes) return false;
    const uint8_t* h = data_ + pos_;
    size_t captured = h[1] | size_t{h[2]} << 8;
    uint64_t past = h[3] | uint64_t{h[4]} << 8 | uint64_t{h[5]} << 16 | uint64_t{h[6]} << 24;
    pos_ += kRecordHeadBytes;
    if (captured > kMaxCaptured) captured = kMaxCaptured;
    if (captured > size_ - pos_) captured = size_ - pos_;
    s->server = (h[0] & 1) != 0;
    s->captured = {data_ + pos_, captured};
    s->total_len = captured + past;
    pos_ += captured;
    return true;
  }

 private:
  const uint8_t* data_;
  size_t size_;
  size_t pos_ = 0;
};

// Appends one record: a syscall that moved `bytes`, of which the kernel captured the first
// `capture` (the seed corpus generator writes inputs with this).
inline void AppendSyscall(std::string* out, bool server, std::string_view bytes,
                          size_t capture = kMaxCaptured) {
  size_t captured = bytes.size() < capture ? bytes.size() : capture;
  uint64_t past = bytes.size() - captured;
  out->push_back(static_cast<char>(server ? 1 : 0));
  out->push_back(static_cast<char>(captured & 0xff));
  out->push_back(static_cast<char>(captured >> 8));
  for (int i = 0; i < 4; i++) out->push_back(static_cast<char>((past >> (8 * i)) & 0xff));
  out->append(bytes.substr(0, captured));
}

}  // namespace podtap::fuzz
