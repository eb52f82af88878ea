// gzip (RFC 1952) compression of a response body with zlib.
#pragma once

#include <string>
#include <string_view>

namespace podtap {

// zlib's fastest level: the expositions are repetitive text that compresses
// about tenfold even so, and a scrape should not spend its time here.
std::string Gzip(std::string_view data);

}  // namespace podtap
