// libFuzzer target: the HTTP/1.x parser fed one connection's syscalls (syscall_input.h), as
// HttpConn feeds it. The first input byte picks the options: bit 0 attaches in mid-connection,
// bit 1 uses tight limits (so that every limit is reached within a short input).
#include <cstddef>
#include <cstdint>
#include <cstdlib>

#include "agent/protocols/http1_parser.h"
#include "tests/fuzz/syscall_input.h"

namespace {

using podtap::Http1Error;
using podtap::Http1Request;
using podtap::Http1Response;

// Checks what the parser promises its sink; any breach aborts, which libFuzzer reports.
class CheckingSink : public podtap::Http1Sink {
 public:
  CheckingSink(size_t max_header_bytes, size_t max_pipelined)
      : max_header_bytes_(max_header_bytes), max_pipelined_(max_pipelined) {}
  void OnRequest(const Http1Request& r) override {
    Check(r);
    Callback();
  }
  void OnResponse(const Http1Response& r) override {
    Check(r.request);
    // A status is three digits, or 0 when the response was cut off before it.
    if (r.status != 0 && (r.status < 100 || r.status > 999)) abort();
    if (r.first_byte_ns > r.end_ns) abort();
    Callback();
  }
  void OnError(Http1Error e) override {
    if (e >= Http1Error::kCount) abort();
    Callback();
  }
  // At most the queue's limit plus the response being read and the one being estimated.
  void OnUnanswered(size_t n) override {
    if (n == 0 || n > max_pipelined_ + 2) abort();
    Callback();
  }
  bool closed = false;

 private:
  // Fields come from one header block: at most the buffered limit plus one capture.
  void Check(const Http1Request& r) const {
    size_t bound = max_header_bytes_ + podtap::fuzz::kMaxCaptured;
    if (r.method.size() + r.authority.size() + r.path.size() > bound) abort();
  }
  // The parser ignores Feeds after OnClose.
  void Callback() const {
    if (closed) abort();
  }
  size_t max_header_bytes_;
  size_t max_pipelined_;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  podtap::Http1Limits limits;
  if (data[0] & 2) {
    limits.max_header_bytes = 64;
    limits.max_content_length = 1 << 20;
    limits.max_pipelined = 2;
    limits.max_chunk_line = 8;
    limits.max_feeds_without_start = 4;
  }
  auto attach = (data[0] & 1) ? podtap::Http1Parser::Attach::kMidConnection
                              : podtap::Http1Parser::Attach::kAtOpen;
  CheckingSink sink(limits.max_header_bytes, limits.max_pipelined);
  podtap::Http1Parser parser(&sink, limits, attach);
  podtap::fuzz::SyscallReader reader(data + 1, size - 1);
  podtap::fuzz::Syscall s;
  uint64_t ts = 1;
  while (reader.Next(&s)) {
    auto stream = s.server ? podtap::HttpStream::kResponse : podtap::HttpStream::kRequest;
    parser.Feed(stream, s.captured, s.total_len, ts++);
  }
  parser.OnClose(ts++);
  sink.closed = true;
  parser.Feed(podtap::HttpStream::kRequest, {data, size}, size, ts);
  return 0;
}
