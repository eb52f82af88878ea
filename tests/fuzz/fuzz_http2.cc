// libFuzzer target: the HTTP/2 frame parser and its HPACK decoding fed one connection's syscalls
// (syscall_input.h), as HttpConn feeds it once the client's first bytes were the preface. The
// first input byte picks the options: bit 0 uses tight limits (so that every limit is reached
// within a short input).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <set>

#include "agent/protocols/http2_parser.h"
#include "tests/fuzz/syscall_input.h"

namespace {

using podtap::Http2Error;
using podtap::Http2Request;
using podtap::Http2Response;

// Checks what the parser promises its sink; any breach aborts, which libFuzzer reports.
class CheckingSink : public podtap::Http2Sink {
 public:
  void OnRequest(const Http2Request& r) override {
    Callback();
    // A request is a header block on a stream id above every one before (the parser's contract;
    // it does not insist on odd ids), so each stream is a request once and never stream 0.
    if (r.stream_id == 0 || (!requests_.empty() && r.stream_id <= *requests_.rbegin())) abort();
    requests_.insert(r.stream_id);
  }
  void OnResponse(const Http2Response& r) override {
    Callback();
    // A response belongs to a request reported before, and ends once.
    if (!requests_.contains(r.request.stream_id)) abort();
    if (!responses_.insert(r.request.stream_id).second) abort();
    // :status is decoded as at most three digits, 0 when it did not decode.
    if (r.status < 0 || r.status > 999) abort();
    if (r.first_byte_ns > r.end_ns) abort();
  }
  void OnError(Http2Error e) override {
    Callback();
    if (e >= Http2Error::kCount) abort();
  }
  bool closed = false;

 private:
  // The parser ignores Feeds after OnClose.
  void Callback() const {
    if (closed) abort();
  }
  std::set<uint32_t> requests_, responses_;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  podtap::Http2Limits limits;
  if (data[0] & 1) {
    limits.max_frame_size = 1 << 14;
    limits.max_open_streams = 4;
    limits.max_header_block = 64;
    limits.max_header_table = 256;
  }
  CheckingSink sink;
  podtap::Http2Parser parser(&sink, limits);
  podtap::fuzz::SyscallReader reader(data + 1, size - 1);
  podtap::fuzz::Syscall s;
  uint64_t ts = 1;
  while (reader.Next(&s)) {
    auto stream = s.server ? podtap::HttpStream::kResponse : podtap::HttpStream::kRequest;
    // Bit 1 of the first byte: the captures are the kernel's segment lists (an HTTP/2
    // connection's frame walk, bpf/sockdata.bpf.c) wherever they are well formed.
    if ((data[0] & 2) && podtap::Capture::Valid(s.captured, s.total_len)) {
      parser.Feed(stream, podtap::Capture::Segments(s.captured), s.total_len, ts++);
    } else {
      parser.Feed(stream, s.captured, s.total_len, ts++);
    }
  }
  parser.OnClose(ts++);
  sink.closed = true;
  parser.Feed(podtap::HttpStream::kResponse, std::span<const uint8_t>(data, size), size, ts);
  return 0;
}
