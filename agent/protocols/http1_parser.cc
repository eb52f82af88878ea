// Incremental HTTP/1.x framing over captured prefixes: start lines, headers, bodies by count.
#include "agent/protocols/http1_parser.h"

#include <algorithm>
#include <array>
#include <cstring>
#include <string_view>
#include <utility>

namespace podtap {
namespace {

// Longer method tokens exist in no registry, and the bound rejects uppercase text quickly.
constexpr size_t kMaxMethod = 24;
// The aggregator caps label values again; this only bounds what a request keeps.
constexpr size_t kMaxField = 256;
// Buffers are dropped between messages past this, so idle connections stay small.
constexpr size_t kKeepBuffer = 512;
// The blank line that ends a header block: the least that can be left after a cut.
constexpr uint64_t kMinHeadTail = 2;
// "0\r\n\r\n": the last chunk with no trailers.
constexpr uint64_t kLastChunkBytes = 5;

enum class Verdict : uint8_t { kNo, kMaybe, kYes };

std::string_view View(std::span<const uint8_t> b) {
  return {reinterpret_cast<const char*>(b.data()), b.size()};
}

char Lower(char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; }

bool IEquals(std::string_view a, std::string_view b) {
  return a.size() == b.size() &&
         std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) { return Lower(x) == y; });
}

// b is lowercase.
bool IStartsWith(std::string_view a, std::string_view b) {
  return a.size() >= b.size() && IEquals(a.substr(0, b.size()), b);
}

bool IsDigit(char c) { return c >= '0' && c <= '9'; }

// s == lit, comparing a constant number of bytes, which the compiler does inline.
template <size_t N>
bool Is(std::string_view s, const char (&lit)[N]) {
  return s.size() == N - 1 && std::memcmp(s.data(), lit, N - 1) == 0;
}

// s.find_first_of(set), whose library version calls memchr once per byte of s.
template <size_t N>
size_t FindAny(std::string_view s, const char (&set)[N]) {
  for (size_t i = 0; i < s.size(); ++i) {
    for (size_t k = 0; k + 1 < N; ++k) {
      if (s[i] == set[k]) return i;
    }
  }
  return std::string_view::npos;
}

constexpr std::string_view kVersion = "HTTP/1.";

// Whether v and "HTTP/1." agree on their common length.
bool VersionPrefix(std::string_view v) {
  size_t n = std::min(v.size(), kVersion.size());
  if (n == kVersion.size()) return std::memcmp(v.data(), kVersion.data(), kVersion.size()) == 0;
  return v == kVersion.substr(0, n);
}

// RFC 9110 tchar, as a table: every byte of every header name goes through it.
constexpr auto kTchar = [] {
  std::array<bool, 256> t{};
  for (int c = 0; c < 256; ++c) {
    t[c] = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
  }
  for (char c : std::string_view("!#$%&'*+-.^_`|~")) t[static_cast<uint8_t>(c)] = true;
  return t;
}();

bool IsTchar(char c) { return kTchar[static_cast<uint8_t>(c)]; }

bool IsMethodChar(char c, size_t i) {
  return (c >= 'A' && c <= 'Z') || (i > 0 && (c == '-' || c == '_'));
}

bool IsAuthorityChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || IsDigit(c) || c == '[';
}

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

std::string_view StripCr(std::string_view line) {
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  return line;
}

// Could v (the first bytes of a message) be a request line? Only the method and the first byte
// of the target are judged, which is enough to turn away TLS, binary and text protocols.
Verdict RequestStart(std::string_view v) {
  size_t i = 0;
  while (i < v.size() && v[i] != ' ') {
    if (i >= kMaxMethod || !IsMethodChar(v[i], i)) return Verdict::kNo;
    ++i;
  }
  if (i == v.size()) return Verdict::kMaybe;
  if (i == 0) return Verdict::kNo;
  std::string_view method = v.substr(0, i);
  std::string_view target = v.substr(i + 1);
  if (target.empty()) return Verdict::kMaybe;
  Verdict verdict = Verdict::kNo;
  if (target[0] == '/' || target[0] == '*') {
    verdict = Verdict::kYes;
  } else if (Is(method, "CONNECT")) {
    verdict = IsAuthorityChar(target[0]) ? Verdict::kYes : Verdict::kNo;
  } else {
    for (std::string_view scheme : {"http://", "https://"}) {
      size_t n = std::min(target.size(), scheme.size());
      if (IEquals(target.substr(0, n), scheme.substr(0, n))) {
        verdict = n == scheme.size() ? Verdict::kYes : Verdict::kMaybe;
      }
    }
  }
  if (verdict == Verdict::kNo) return verdict;
  // Text that merely starts like a request ("GET / is ...") fails at the version.
  size_t end = FindAny(target, " \r\n");
  if (end == std::string_view::npos) return verdict;
  if (target[end] != ' ') return Verdict::kNo;
  std::string_view version = target.substr(end + 1, 8);
  if (!VersionPrefix(version)) return Verdict::kNo;
  if (version.size() == 8 && !IsDigit(version[7])) return Verdict::kNo;
  return verdict;
}

Verdict ResponseStart(std::string_view v) {
  if (!VersionPrefix(v)) return Verdict::kNo;
  return v.size() >= kVersion.size() ? Verdict::kYes : Verdict::kMaybe;
}

Verdict StartVerdict(HttpStream which, std::string_view v) {
  return which == HttpStream::kRequest ? RequestStart(v) : ResponseStart(v);
}

bool IsVersion(std::string_view v) { return v.size() == 8 && VersionPrefix(v) && IsDigit(v[7]); }

}  // namespace

enum class Http1HeadResult : uint8_t { kOk, kNoStartLine, kBadStartLine, kMalformed, kBadLength };

struct Http1Head {
  std::string_view method, target;
  int status = 0;
  std::string_view host;
  bool has_host = false;
  bool has_length = false;
  uint64_t length = 0;
  bool has_te = false;
  bool chunked = false;
  // Where the reading stopped, when it succeeded: one past the blank line that ends the block
  // (npos when the block does not hold it), and one past the last line read.
  size_t end = std::string_view::npos;
  size_t lines_end = 0;
};

namespace {

using HeadResult = Http1HeadResult;

bool ParseRequestLine(std::string_view line, Http1Head* h) {
  if (RequestStart(line) != Verdict::kYes) return false;
  size_t sp1 = line.find(' ');
  size_t sp2 = line.find(' ', sp1 + 1);
  if (sp2 == std::string_view::npos || sp2 == sp1 + 1) return false;
  std::string_view target = line.substr(sp1 + 1, sp2 - sp1 - 1);
  if (!std::all_of(target.begin(), target.end(), [](char c) { return c > ' ' && c != '\x7f'; })) {
    return false;
  }
  if (!IsVersion(line.substr(sp2 + 1))) return false;
  h->method = line.substr(0, sp1);
  h->target = target;
  return true;
}

// A status line cut by the prefix still counts once its code is seen.
bool ParseStatusLine(std::string_view line, Http1Head* h) {
  if (line.size() < 12 || !IsVersion(line.substr(0, 8)) || line[8] != ' ') return false;
  if (!IsDigit(line[9]) || !IsDigit(line[10]) || !IsDigit(line[11])) return false;
  if (line.size() > 12 && line[12] != ' ') return false;
  h->status = (line[9] - '0') * 100 + (line[10] - '0') * 10 + (line[11] - '0');
  return h->status >= 100;
}

// RFC 9110 allows a list of identical values; anything else could be a smuggling attempt or a
// broken peer, and in both cases counting bytes by it would desynchronise the stream.
bool AddContentLength(std::string_view value, uint64_t max, Http1Head* h) {
  while (true) {
    size_t comma = value.find(',');
    std::string_view item = Trim(value.substr(0, comma));
    if (item.empty() || item.size() > 20) return false;
    uint64_t n = 0;
    for (char c : item) {
      if (!IsDigit(c)) return false;
      uint64_t d = static_cast<uint64_t>(c - '0');
      if (n > (max - d) / 10) return false;
      n = n * 10 + d;
    }
    if (h->has_length && n != h->length) return false;
    h->has_length = true;
    h->length = n;
    if (comma == std::string_view::npos) return true;
    value.remove_prefix(comma + 1);
  }
}

// Only header lines complete in `block` are read: past a cut, the last line may be partial.
// Reading stops at the blank line, so a block that arrived whole is parsed and its end found in
// one pass.
HeadResult ParseHead(HttpStream which, std::string_view block, uint64_t max_length, Http1Head* h) {
  size_t nl = block.find('\n');
  std::string_view start = StripCr(block.substr(0, nl));
  if (which == HttpStream::kResponse) {
    if (!ParseStatusLine(start, h)) {
      return nl == std::string_view::npos ? HeadResult::kNoStartLine : HeadResult::kBadStartLine;
    }
  } else if (nl != std::string_view::npos) {
    if (!ParseRequestLine(start, h)) return HeadResult::kBadStartLine;
  } else {
    if (RequestStart(start) != Verdict::kYes) return HeadResult::kNoStartLine;
    size_t sp = start.find(' ');
    h->method = start.substr(0, sp);
    h->target = start.substr(sp + 1);
    h->target = h->target.substr(0, h->target.find(' '));
  }
  if (nl == std::string_view::npos) return HeadResult::kOk;
  h->lines_end = nl + 1;
  while (const void* found =
             std::memchr(block.data() + h->lines_end, '\n', block.size() - h->lines_end)) {
    size_t e = static_cast<size_t>(static_cast<const char*>(found) - block.data());
    std::string_view line = StripCr(block.substr(h->lines_end, e - h->lines_end));
    h->lines_end = e + 1;
    if (line.empty()) {
      h->end = h->lines_end;
      break;
    }
    // obs-fold continues the previous value; no framing header is worth reading that way.
    if (line[0] == ' ' || line[0] == '\t') continue;
    // The name's bytes are checked and its colon found in one pass; a byte that is not a tchar
    // ends the name, and it has to be the colon.
    size_t colon = 0;
    while (colon < line.size() && IsTchar(line[colon])) ++colon;
    if (colon == 0 || colon == line.size() || line[colon] != ':') return HeadResult::kMalformed;
    std::string_view name = line.substr(0, colon);
    std::string_view value = line.substr(colon + 1);
    // Only three names matter; most lines are told apart by their length.
    switch (name.size()) {
      case 4:
        if (IEquals(name, "host")) {
          if (!h->has_host) h->host = Trim(value);
          h->has_host = true;
        }
        break;
      case 14:
        if (IEquals(name, "content-length") && !AddContentLength(Trim(value), max_length, h)) {
          return HeadResult::kBadLength;
        }
        break;
      case 17:
        if (IEquals(name, "transfer-encoding")) {
          // The last coding applied decides the framing, even across repeated headers.
          value = Trim(value);
          size_t comma = value.rfind(',');
          std::string_view last =
              Trim(comma == std::string_view::npos ? value : value.substr(comma + 1));
          h->has_te = true;
          h->chunked = IEquals(last, "chunked");
        }
        break;
      default:
        break;
    }
  }
  return HeadResult::kOk;
}

std::string Bounded(std::string_view s) { return std::string(s.substr(0, kMaxField)); }

Http1Request MakeRequest(const Http1Head& h, uint64_t ts) {
  Http1Request r;
  r.method = Bounded(h.method);
  r.headers_end_ns = ts;
  std::string_view target = h.target;
  std::string_view authority;
  if (Is(h.method, "CONNECT")) {
    authority = target;
    target = {};
  } else {
    for (std::string_view scheme : {"http://", "https://"}) {
      if (!IStartsWith(target, scheme)) continue;
      target.remove_prefix(scheme.size());
      size_t end = std::min(FindAny(target, "/?#"), target.size());
      authority = target.substr(0, end);
      target.remove_prefix(end);
      if (target.empty() || target[0] != '/') target = "/";
      break;
    }
  }
  r.path = Bounded(target.substr(0, FindAny(target, "?#")));
  r.authority = Bounded(h.has_host ? h.host : authority);
  return r;
}

void Release(std::string* buf) {
  if (buf->capacity() > kKeepBuffer) {
    std::string().swap(*buf);
  } else {
    buf->clear();
  }
}

// Appends the captured bytes of one line (through its '\n') to *buf.
enum class Line : uint8_t { kDone, kMore, kUnseen, kTooLong };
Line ReadLine(std::string* buf, std::span<const uint8_t> cap, uint64_t* pos, size_t max) {
  if (*pos >= cap.size()) return Line::kUnseen;
  const uint8_t* p = cap.data() + *pos;
  size_t n = cap.size() - *pos;
  const void* nl = std::memchr(p, '\n', n);
  size_t take = nl ? static_cast<size_t>(static_cast<const uint8_t*>(nl) - p) + 1 : n;
  // The line's '\r' may still be to come, so only past max + 1 is it surely too long.
  if (buf->size() + take > max + (nl ? 2 : 1)) return Line::kTooLong;
  buf->append(reinterpret_cast<const char*>(p), take);
  *pos += take;
  if (!nl) return Line::kMore;
  return StripCr(std::string_view(*buf).substr(0, buf->size() - 1)).size() > max ? Line::kTooLong
                                                                                 : Line::kDone;
}

// "1a;ext=v" -> 26. False for anything that is not a hex size with optional extensions.
bool ParseChunkSize(std::string_view line, uint64_t max, uint64_t* size) {
  size_t i = 0;
  uint64_t n = 0;
  for (; i < line.size(); ++i) {
    char c = Lower(line[i]);
    int d = IsDigit(c) ? c - '0' : (c >= 'a' && c <= 'f') ? c - 'a' + 10 : -1;
    if (d < 0) break;
    if (n > (max - static_cast<uint64_t>(d)) / 16) return false;
    n = n * 16 + static_cast<uint64_t>(d);
  }
  if (i == 0) return false;
  std::string_view rest = Trim(line.substr(i));
  if (!rest.empty() && rest[0] != ';') return false;
  *size = n;
  return true;
}

}  // namespace

const char* Http1ErrorName(Http1Error e) {
  switch (e) {
    case Http1Error::kNotHttp:
      return "not_http";
    case Http1Error::kMalformed:
      return "malformed";
    case Http1Error::kHeadersTooLarge:
      return "headers_too_large";
    case Http1Error::kBadLength:
      return "bad_length";
    case Http1Error::kLostSync:
      return "lost_sync";
    case Http1Error::kTooManyPipelined:
      return "too_many_pipelined";
    case Http1Error::kResponseWithoutRequest:
      return "response_without_request";
    case Http1Error::kCount:
      break;
  }
  return "unknown";
}

Http1Parser::Http1Parser(Http1Sink* sink, Limits limits, Attach attach)
    : sink_(sink), limits_(limits) {
  response_.slots = &response_slots_;
  if (attach == Attach::kMidConnection) {
    request_.phase = Phase::kSeek;
    response_.phase = Phase::kSeek;
  }
}

bool Http1Parser::AtRest() const {
  auto at_start = [](const Stream& s) {
    return s.phase == Phase::kStart && !s.tentative && s.buf.empty() && s.seek_feeds == 0 &&
           s.skip == 0;
  };
  return state_ == State::kHttp && !closed_ && queue_.empty() && !response_slots_.current &&
         !response_slots_.pending && at_start(request_) && at_start(response_);
}

void Http1Parser::Reset(Http1Sink* sink, bool http_seen) {
  sink_ = sink;
  state_ = http_seen ? State::kHttp : State::kUnknown;
  closed_ = false;
  request_ = Stream{};
  response_ = Stream{};
  response_.slots = &response_slots_;
  response_slots_.current.reset();
  response_slots_.current_orphan = false;
  response_slots_.pending.reset();
  response_slots_.pending_end_known = false;
  queue_.clear();
}

void Http1Parser::Feed(HttpStream which, std::span<const uint8_t> captured, uint64_t total_len,
                       uint64_t ts_ns) {
  if (state_ == State::kGaveUp || closed_) return;
  total_len = std::max<uint64_t>(total_len, captured.size());
  if (total_len == 0) return;
  Stream& s = stream(which);
  if ((s.phase == Phase::kSeek || s.phase == Phase::kResync) &&
      !BeginAtFeedStart(s, which, captured, total_len, ts_ns)) {
    return;
  }
  uint64_t pos = 0;
  while (pos < total_len && state_ != State::kGaveUp) {
    switch (s.phase) {
      case Phase::kStart:
        pos = StartMessage(s, which, captured, pos, total_len, ts_ns);
        break;
      case Phase::kHeaders:
        pos = ConsumeHead(s, which, captured, pos, total_len, ts_ns);
        break;
      case Phase::kBody:
      case Phase::kChunkData: {
        uint64_t n = std::min(s.remaining, total_len - pos);
        if (n > 0) MarkBody(s, ts_ns);
        pos += n;
        s.remaining -= n;
        if (s.remaining > 0) break;
        if (s.phase == Phase::kBody) {
          EndMessage(s, ts_ns, false);
        } else {
          s.phase = Phase::kChunkEnd;
          s.crlf_left = 2;
        }
        break;
      }
      case Phase::kChunkLine:
        pos = ConsumeChunkLine(s, captured, pos, total_len, ts_ns);
        break;
      case Phase::kChunkEnd:
        if (pos >= captured.size()) {
          uint64_t n = std::min<uint64_t>(s.crlf_left, total_len - pos);
          pos += n;
          s.crlf_left = static_cast<uint8_t>(s.crlf_left - n);
        } else if (captured[pos] == '\r' && s.crlf_left == 2) {
          ++pos;
          s.crlf_left = 1;
        } else if (captured[pos] == '\n') {
          ++pos;
          s.crlf_left = 0;
        } else {
          LoseFraming(s, ts_ns);
          pos = total_len;
          break;
        }
        if (s.crlf_left == 0) s.phase = Phase::kChunkLine;
        break;
      case Phase::kTrailers:
        pos = ConsumeTrailers(s, captured, pos, total_len, ts_ns);
        break;
      case Phase::kUntilClose:
        MarkBody(s, ts_ns);
        pos = total_len;
        break;
      case Phase::kTunnel:
      case Phase::kResync:
      case Phase::kSeek:
        pos = total_len;
        break;
    }
  }
}

void Http1Parser::MarkBody(Stream& s, uint64_t ts) {
  if (s.slots != nullptr && s.slots->current && s.slots->current->first_byte_ns == 0) {
    s.slots->current->first_byte_ns = ts;
  }
}

// In kSeek / kResync only a Feed start can be a message start: nothing says where else one
// could begin.
bool Http1Parser::BeginAtFeedStart(Stream& s, HttpStream which, std::span<const uint8_t> cap,
                                   uint64_t total, uint64_t ts) {
  Verdict v = s.skip > 0 ? Verdict::kNo : StartVerdict(which, View(cap));
  if (v == Verdict::kYes || (v == Verdict::kMaybe && cap.size() == total)) {
    FinishPending(s);
    s.resume = s.phase;
    BeginHead(s, ts);
    s.tentative = true;
    return true;
  }
  if (s.phase == Phase::kSeek) {
    CountSeekFeed(s);
  } else {
    AttributeToPending(s, total, ts);
  }
  return false;
}

uint64_t Http1Parser::StartMessage(Stream& s, HttpStream which, std::span<const uint8_t> cap,
                                   uint64_t pos, uint64_t total, uint64_t ts) {
  if (pos >= cap.size()) {
    // A whole message may be hiding in bytes we cannot see.
    if (state_ != State::kHttp) {
      Fail(Http1Error::kNotHttp);
      return total;
    }
    sink_->OnError(Http1Error::kLostSync);
    s.phase = Phase::kResync;
    return total;
  }
  std::string_view v = View(cap.subspan(pos));
  // Some clients send a stray CRLF after a body; RFC 9112 asks servers to ignore it.
  if (state_ == State::kHttp && (v[0] == '\r' || v[0] == '\n')) return pos + 1;
  if (StartVerdict(which, v) == Verdict::kNo) {
    if (state_ != State::kHttp) {
      Fail(Http1Error::kNotHttp);
    } else {
      sink_->OnError(Http1Error::kLostSync);
      EnterSeek(s);
    }
    return total;
  }
  BeginHead(s, ts);
  return pos;
}

uint64_t Http1Parser::ConsumeHead(Stream& s, HttpStream which, std::span<const uint8_t> cap,
                                  uint64_t pos, uint64_t total, uint64_t ts) {
  std::string_view fresh = pos < cap.size() ? View(cap.subspan(pos)) : std::string_view();
  // A guess that has not shown a whole start line yields to a Feed that starts a message itself.
  if (s.tentative && !s.start_line_done && pos == 0 && !s.buf.empty() &&
      StartVerdict(which, fresh) == Verdict::kYes) {
    Phase resume = s.resume;
    BeginHead(s, ts);
    s.tentative = true;
    s.resume = resume;
  }
  // Parsed where it lies when the whole block is in this Feed; buffered only when split.
  bool in_place = s.buf.empty();
  size_t old = s.buf.size();
  std::string_view block;
  if (in_place) {
    block = fresh.substr(0, limits_.max_header_bytes);
  } else {
    s.buf.append(fresh.substr(0, limits_.max_header_bytes - old));
    block = s.buf;
  }
  // A block that starts in this Feed (nothing scanned yet) is parsed at once, which also finds
  // its end. A parse error is only acted on below, once the scan has shown whether the block
  // ends here: running out of room or a cut may come first.
  Http1Head h;
  bool parsed =
      in_place && ParseHead(which, block, limits_.max_content_length, &h) == HeadResult::kOk;
  if (parsed && h.end != std::string_view::npos) {
    CompleteHead(s, which, HeadResult::kOk, h, false, 0, ts);
    Release(&s.buf);
    return pos + h.end;
  }
  size_t end = std::string_view::npos;
  if (parsed) {
    // Every line was read and none was blank: the scan would find what the parse did.
    s.line_start = h.lines_end;
  } else {
    for (size_t i = s.scan; i < block.size(); ++i) {
      const void* nl = std::memchr(block.data() + i, '\n', block.size() - i);
      if (!nl) break;
      i = static_cast<size_t>(static_cast<const char*>(nl) - block.data());
      size_t len = i - s.line_start;
      bool blank = len == 0 || (len == 1 && block[s.line_start] == '\r');
      s.line_start = i + 1;
      if (blank) {
        end = i + 1;
        break;
      }
    }
  }
  s.scan = end == std::string_view::npos ? block.size() : end;
  if (!s.start_line_done && !CheckStartLine(s, which, block.substr(0, s.scan))) return total;
  if (end != std::string_view::npos) {
    h = {};
    CompleteHead(s, which, ParseHead(which, block.substr(0, end), limits_.max_content_length, &h),
                 h, false, 0, ts);
    Release(&s.buf);
    return pos + (end - old);
  }
  pos += block.size() - old;
  if (block.size() >= limits_.max_header_bytes) {
    Fail(Http1Error::kHeadersTooLarge);
    return total;
  }
  if (pos < total) {
    // A block parsed above was the same bytes as this one.
    HeadResult result = HeadResult::kOk;
    if (!parsed) {
      h = {};
      result = ParseHead(which, block, limits_.max_content_length, &h);
    }
    CompleteHead(s, which, result, h, true, total - pos, ts);
    Release(&s.buf);
    return total;
  }
  if (in_place) s.buf.assign(block);
  return pos;
}

// Judges the start line as early as its bytes allow, so garbage is turned away from the first
// few bytes instead of after a header block's worth of buffering.
bool Http1Parser::CheckStartLine(Stream& s, HttpStream which, std::string_view block) {
  size_t nl = block.find('\n');
  Verdict v;
  if (nl == std::string_view::npos) {
    v = StartVerdict(which, block);
  } else {
    Http1Head h;
    std::string_view line = StripCr(block.substr(0, nl));
    bool ok =
        which == HttpStream::kRequest ? ParseRequestLine(line, &h) : ParseStatusLine(line, &h);
    v = ok ? Verdict::kYes : Verdict::kNo;
    s.start_line_done = ok;
  }
  if (v != Verdict::kNo) return true;
  RejectStart(s);
  return false;
}

void Http1Parser::CompleteHead(Stream& s, HttpStream which, HeadResult result, const Http1Head& h,
                               bool cut, uint64_t unseen, uint64_t ts) {
  switch (result) {
    case HeadResult::kOk:
      break;
    case HeadResult::kNoStartLine:
      if (s.tentative || state_ != State::kHttp) {
        RejectStart(s);
      } else {
        sink_->OnError(Http1Error::kLostSync);
        s.phase = Phase::kResync;
      }
      return;
    case HeadResult::kBadStartLine:
      RejectStart(s);
      return;
    case HeadResult::kMalformed:
      Fail(Http1Error::kMalformed);
      return;
    case HeadResult::kBadLength:
      Fail(Http1Error::kBadLength);
      return;
  }
  state_ = State::kHttp;
  s.tentative = false;
  s.seek_feeds = 0;
  if (which == HttpStream::kRequest) {
    RequestHead(s, h, cut, unseen, ts);
  } else {
    ResponseHead(s, h, cut, unseen, ts);
  }
}

void Http1Parser::RequestHead(Stream& s, const Http1Head& h, bool cut, uint64_t unseen,
                              uint64_t ts) {
  if (h.has_te && !h.chunked) {
    // RFC 9112 6.3: a request body of unknown length cannot be framed at all.
    Fail(Http1Error::kBadLength);
    return;
  }
  if (queue_.size() >= limits_.max_pipelined) {
    Fail(Http1Error::kTooManyPipelined);
    return;
  }
  // A client that does not pipeline has read its last response whole before this request.
  if (response_slots_.pending && !response_slots_.pending_end_known) FinishPending(response_);
  Http1Request r = MakeRequest(h, ts);
  sink_->OnRequest(r);
  queue_.push_back(std::move(r));
  if (Is(h.method, "CONNECT")) {
    s.phase = Phase::kTunnel;
  } else if (cut) {
    if (h.has_te) sink_->OnError(Http1Error::kLostSync);
    s.phase = Phase::kResync;
    uint64_t need = h.length + kMinHeadTail;
    if (h.has_length && !h.has_te && need > unseen) s.skip = need - unseen;
  } else if (h.has_te) {
    s.phase = Phase::kChunkLine;
  } else if (h.length > 0) {
    s.phase = Phase::kBody;
    s.remaining = h.length;
  } else {
    EndMessage(s, ts, false);
  }
}

void Http1Parser::ResponseHead(Stream& s, const Http1Head& h, bool cut, uint64_t unseen,
                               uint64_t ts) {
  // Interim responses (100 Continue, 103 Early Hints) answer nothing; the final one follows.
  if (h.status < 200 && h.status != 101) {
    s.phase = cut ? Phase::kResync : Phase::kStart;
    return;
  }
  Slots& slots = response_slots_;
  slots.current_orphan = queue_.empty();
  Http1Response r;
  if (slots.current_orphan) {
    sink_->OnError(Http1Error::kResponseWithoutRequest);
  } else {
    r.request = std::move(queue_.front());
    queue_.erase(queue_.begin());
  }
  r.status = h.status;
  const std::string& method = r.request.method;
  bool connect = Is(method, "CONNECT");
  bool switched = h.status == 101 || (connect && h.status < 300);
  bool no_body = Is(method, "HEAD") || h.status == 204 || h.status == 304;
  // A head cut off by the prefix hides where its body starts: the status line's Feed stands in.
  if (cut && !no_body && !(h.has_length && h.length == 0)) r.first_byte_ns = s.msg_start_ns;
  slots.current = std::move(r);
  if (connect && request_.phase == Phase::kTunnel && !switched) EnterSeek(request_);
  if (switched) {
    // What follows is another protocol (WebSocket, h2c, a tunnel): nothing left to parse.
    EndMessage(s, ts, false);
    Stop();
  } else if (no_body) {
    EndMessage(s, ts, cut);
  } else if (cut && h.has_length && !h.has_te) {
    uint64_t need = h.length + kMinHeadTail;
    if (unseen >= need) {
      EndMessage(s, ts, true);
    } else {
      StartPending(s, ts, true, need - unseen);
    }
  } else if (cut) {
    sink_->OnError(Http1Error::kLostSync);
    StartPending(s, ts, false, 0);
  } else if (h.has_te) {
    // RFC 9112 6.3: a response whose last coding is not chunked runs until the close.
    s.phase = h.chunked ? Phase::kChunkLine : Phase::kUntilClose;
  } else if (h.has_length && h.length > 0) {
    s.phase = Phase::kBody;
    s.remaining = h.length;
  } else if (h.has_length) {
    EndMessage(s, ts, false);
  } else {
    s.phase = Phase::kUntilClose;
  }
}

uint64_t Http1Parser::ConsumeChunkLine(Stream& s, std::span<const uint8_t> cap, uint64_t pos,
                                       uint64_t total, uint64_t ts) {
  switch (ReadLine(&s.buf, cap, &pos, limits_.max_chunk_line)) {
    case Line::kMore:
      return pos;
    case Line::kUnseen:
      if (s.buf.empty() && total - pos == kLastChunkBytes) {
        EndMessage(s, ts, true);
      } else {
        LoseFraming(s, ts);
      }
      return total;
    case Line::kTooLong:
      Fail(Http1Error::kBadLength);
      return total;
    case Line::kDone:
      break;
  }
  uint64_t size = 0;
  bool ok = ParseChunkSize(StripCr(std::string_view(s.buf).substr(0, s.buf.size() - 1)),
                           limits_.max_content_length, &size);
  Release(&s.buf);
  if (!ok) {
    Fail(Http1Error::kBadLength);
    return total;
  }
  if (size == 0) {
    s.phase = Phase::kTrailers;
    s.trailer_bytes = 0;
  } else {
    s.phase = Phase::kChunkData;
    s.remaining = size;
  }
  return pos;
}

uint64_t Http1Parser::ConsumeTrailers(Stream& s, std::span<const uint8_t> cap, uint64_t pos,
                                      uint64_t total, uint64_t ts) {
  switch (ReadLine(&s.buf, cap, &pos, limits_.max_header_bytes - s.trailer_bytes)) {
    case Line::kMore:
      return pos;
    case Line::kUnseen:
      // Past the prefix the rest of the Feed is taken to be the trailers' end.
      EndMessage(s, ts, true);
      return total;
    case Line::kTooLong:
      Fail(Http1Error::kHeadersTooLarge);
      return total;
    case Line::kDone:
      break;
  }
  bool blank = StripCr(std::string_view(s.buf).substr(0, s.buf.size() - 1)).empty();
  s.trailer_bytes += s.buf.size();
  Release(&s.buf);
  if (blank) EndMessage(s, ts, false);
  return pos;
}

void Http1Parser::BeginHead(Stream& s, uint64_t ts) {
  s.phase = Phase::kHeaders;
  s.tentative = false;
  s.msg_start_ns = ts;
  s.buf.clear();
  s.scan = s.line_start = 0;
  s.start_line_done = false;
  s.skip = 0;
}

// estimated: the end was inferred, not counted, so the next Feed may still carry its bytes.
void Http1Parser::EndMessage(Stream& s, uint64_t ts, bool estimated) {
  if (s.slots != nullptr && s.slots->current) {
    Slots& r = *s.slots;
    if (!r.current_orphan) {
      r.current->end_ns = ts;
      sink_->OnResponse(*r.current);
    }
    r.current.reset();
  }
  s.phase = estimated ? Phase::kResync : Phase::kStart;
}

void Http1Parser::LoseFraming(Stream& s, uint64_t ts) {
  sink_->OnError(Http1Error::kLostSync);
  StartPending(s, ts, false, 0);
}

void Http1Parser::StartPending(Stream& s, uint64_t ts, bool end_known, uint64_t skip) {
  if (s.slots != nullptr) {
    Slots& r = *s.slots;
    if (r.current && !r.current_orphan) {
      r.current->end_ns = ts;
      r.pending = std::move(r.current);
      r.pending_end_known = end_known;
    }
    r.current.reset();
  }
  s.skip = skip;
  s.phase = Phase::kResync;
  Release(&s.buf);
}

void Http1Parser::AttributeToPending(Stream& s, uint64_t total, uint64_t ts) {
  s.skip -= std::min(s.skip, total);
  if (s.slots == nullptr || !s.slots->pending) return;
  s.slots->pending->end_ns = ts;
  if (s.slots->pending_end_known && s.skip == 0) FinishPending(s);
}

void Http1Parser::FinishPending(Stream& s) {
  if (s.slots == nullptr || !s.slots->pending) return;
  sink_->OnResponse(*s.slots->pending);
  s.slots->pending.reset();
}

void Http1Parser::EnterSeek(Stream& s) {
  s.phase = Phase::kSeek;
  s.seek_feeds = 0;
  Release(&s.buf);
}

void Http1Parser::RejectStart(Stream& s) {
  if (!s.tentative) {
    Fail(state_ == State::kHttp ? Http1Error::kMalformed : Http1Error::kNotHttp);
    return;
  }
  s.tentative = false;
  s.phase = s.resume;
  Release(&s.buf);
  if (s.phase == Phase::kSeek) CountSeekFeed(s);
}

void Http1Parser::CountSeekFeed(Stream& s) {
  if (++s.seek_feeds <= limits_.max_feeds_without_start) return;
  Fail(state_ == State::kHttp ? Http1Error::kLostSync : Http1Error::kNotHttp);
}

void Http1Parser::OnClose(uint64_t ts_ns) {
  if (state_ == State::kGaveUp || closed_) return;
  closed_ = true;
  Stream& s = response_;
  Slots& slots = response_slots_;
  if (slots.pending) {
    // A known minimum length not yet reached means the body never arrived whole.
    if (slots.pending_end_known) {
      slots.pending->cut_off = true;
      slots.pending->end_ns = ts_ns;
    }
    FinishPending(s);
  }
  if (slots.current && !slots.current_orphan) {
    slots.current->cut_off = s.phase != Phase::kUntilClose;
    slots.current->end_ns = ts_ns;
    sink_->OnResponse(*slots.current);
  }
  slots.current.reset();
  for (Http1Request& r : queue_) {
    Http1Response cut;
    cut.request = std::move(r);
    cut.end_ns = ts_ns;
    cut.cut_off = true;
    sink_->OnResponse(cut);
  }
  Clear();
}

void Http1Parser::Fail(Http1Error e) {
  sink_->OnError(e);
  Stop();
}

void Http1Parser::Stop() {
  state_ = State::kGaveUp;
  // Every request reported and not answered: waiting in the queue, or the one whose response was
  // being read or having its end estimated.
  size_t unanswered = queue_.size();
  if (response_slots_.current && !response_slots_.current_orphan) unanswered++;
  if (response_slots_.pending) unanswered++;
  if (unanswered > 0) sink_->OnUnanswered(unanswered);
  Clear();
}

void Http1Parser::Clear() {
  queue_.clear();
  for (Stream* s : {&request_, &response_}) std::string().swap(s->buf);
  response_slots_.current.reset();
  response_slots_.pending.reset();
}

}  // namespace podtap
