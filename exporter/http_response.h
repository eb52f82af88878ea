// The metrics server's responses: whole, and the connection closes after each.
#pragma once

#include <string>

namespace podtap {

inline constexpr const char* kPlainText = "text/plain; charset=utf-8";

// A whole response: status line, Content-Type (and Content-Encoding: gzip when `gzipped`),
// Content-Length, Allow when given, Connection: close, then `body`.
std::string Respond(int status, const char* content_type, const std::string& body,
                    const char* allow = nullptr, bool gzipped = false);

}  // namespace podtap
