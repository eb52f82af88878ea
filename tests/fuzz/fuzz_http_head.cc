// libFuzzer target: request heads on the metrics port (HeadEnd, ParseHead,
// QueryValues), which anyone who reaches the port writes. A head is either a
// request with a token method, a target without controls and at most the
// allowed header lines, or a 400 or 431; never a crash, a hang or an
// unbounded allocation.
#include <cctype>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "exporter/http_request.h"

namespace {

constexpr size_t kMaxHeaderLines = 8;

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view buf(reinterpret_cast<const char*>(data), size);
  const size_t end = podtap::HeadEnd(buf);
  if (end != std::string_view::npos && (end > size || end < 2)) abort();
  // The server parses only a complete head; the fuzzer also tries the whole input.
  for (std::string_view head : {buf.substr(0, end), buf}) {
    podtap::HttpRequest request;
    const int status = podtap::ParseHead(head, kMaxHeaderLines, &request);
    if (status != 0 && status != 400 && status != 431) abort();
    if (status != 0) continue;
    if (request.method.empty() || request.headers.size() > kMaxHeaderLines) abort();
    for (char c : request.method) {
      if (std::isspace(static_cast<unsigned char>(c)) || c == ':') abort();
    }
    if (request.query.find_first_of(" \r\n") != std::string::npos) abort();
    for (const auto& [name, value] : request.headers) {
      if (name.empty() || request.Header(name).size() > head.size()) abort();
      if (!value.empty() && (value.front() == ' ' || value.back() == '\t')) abort();
    }
    for (const std::string& v : podtap::QueryValues(request.query, "match[]")) {
      if (v.size() > request.query.size()) abort();
    }
  }
  return 0;
}
