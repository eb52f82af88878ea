// HTTP/1.x request heads as the metrics server reads them: where a head ends,
// its request line and header lines, and the query string's parameters. Kept
// apart from the server's sockets so that hostile heads can be fuzzed
// (tests/fuzz/fuzz_http_head.cc).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace podtap {

// A request head the front read and accepted.
struct HttpRequest {
  int fd = -1;
  uint64_t seq = 0;  // the connection's, checked when the answer comes back
  std::string method;
  std::string path;   // decoded
  std::string query;  // as sent, without the '?'
  std::vector<std::pair<std::string, std::string>> headers;

  // The first header of that name, or "".
  std::string Header(std::string_view name) const;
};

// Where the head in `buf` ends (the index just past its empty line), or npos.
size_t HeadEnd(std::string_view buf);

// Parses a complete head (request line, header lines, the empty line); 0
// when it is a request, else the status to answer: 400 or 431.
int ParseHead(std::string_view head, size_t max_header_lines, HttpRequest* request);

// Every value of the query parameter `name` (compared decoded), decoded.
std::vector<std::string> QueryValues(std::string_view query, std::string_view name);

}  // namespace podtap
