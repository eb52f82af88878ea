#include "exporter/http_response.h"

namespace podtap {
namespace {

const char* StatusText(int status) {
  switch (status) {
    case 200:
      return "OK";
    case 400:
      return "Bad Request";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 431:
      return "Request Header Fields Too Large";
    case 500:
      return "Internal Server Error";
    default:
      return "Service Unavailable";
  }
}

}  // namespace

std::string Respond(int status, const char* content_type, const std::string& body,
                    const char* allow, bool gzipped) {
  std::string out = "HTTP/1.1 " + std::to_string(status) + " " + StatusText(status) + "\r\n";
  out += std::string("Content-Type: ") + content_type + "\r\n";
  if (gzipped) out += "Content-Encoding: gzip\r\n";
  out += "Content-Length: " + std::to_string(body.size()) + "\r\n";
  if (allow != nullptr) out += std::string("Allow: ") + allow + "\r\n";
  out += "Connection: close\r\n\r\n";
  out += body;
  return out;
}

}  // namespace podtap
