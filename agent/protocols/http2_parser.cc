// Incremental HTTP/2 framing over captured prefixes: frames by length, header blocks through
// nghttp2's HPACK inflater, streams paired into requests and responses.
#include "agent/protocols/http2_parser.h"

#include <nghttp2/nghttp2.h>

#include <algorithm>
#include <cstring>
#include <string_view>

namespace podtap {
namespace {

constexpr std::string_view kPreface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

// RFC 9113 section 6.
enum FrameType : uint8_t {
  kData = 0,
  kHeaders = 1,
  kRstStream = 3,
  kSettings = 4,
  kPushPromise = 5,
  kGoaway = 7,
  kContinuation = 9,
};
constexpr uint8_t kFlagEndStream = 0x1;
constexpr uint8_t kFlagAck = 0x1;
constexpr uint8_t kFlagEndHeaders = 0x4;
constexpr uint8_t kFlagPadded = 0x8;
constexpr uint8_t kFlagPriority = 0x20;
constexpr size_t kPriorityBytes = 5;        // stream dependency and weight in HEADERS
constexpr size_t kPromisedStreamBytes = 4;  // in PUSH_PROMISE
constexpr uint16_t kSettingsHeaderTableSize = 0x1;
constexpr size_t kSettingsEntryBytes = 6;
// Every setting defined so far, several times over; entries past this are not read.
constexpr size_t kMaxSettingsBytes = 64 * kSettingsEntryBytes;
// GOAWAY's last-stream-id; the error code and debug data are not needed.
constexpr size_t kGoawayBytes = 4;
constexpr uint32_t kStreamIdMask = 0x7fffffff;

// RFC 7541: the dynamic table size every decoder starts with.
constexpr size_t kDefaultHeaderTable = 4096;
// The aggregator caps label values again; this only bounds what a stream keeps.
constexpr size_t kMaxField = 256;
// Buffers are dropped after use past this, so idle connections stay small.
constexpr size_t kKeepBuffer = 512;

uint32_t Be32(const uint8_t* p) {
  return uint32_t{p[0]} << 24 | uint32_t{p[1]} << 16 | uint32_t{p[2]} << 8 | p[3];
}

uint32_t Be32(std::string_view s) { return Be32(reinterpret_cast<const uint8_t*>(s.data())); }

void Release(std::string& s) {
  if (s.capacity() > kKeepBuffer) std::string().swap(s);
  s.clear();
}

std::string Clip(std::string_view v) { return std::string(v.substr(0, kMaxField)); }

// A non-negative decimal of at most `digits` digits, else -1.
int ParseDecimal(std::string_view v, size_t digits) {
  if (v.empty() || v.size() > digits) return -1;
  int n = 0;
  for (char c : v) {
    if (c < '0' || c > '9') return -1;
    n = n * 10 + (c - '0');
  }
  return n;
}

// An HPACK integer with an n-bit prefix (RFC 7541 section 5.1). False when it runs past the end
// of `b` or past 32 bits, which no real index, length or table size needs.
bool ReadInt(std::string_view b, size_t& pos, int prefix_bits, uint64_t& out) {
  if (pos >= b.size()) return false;
  const uint64_t max = (uint64_t{1} << prefix_bits) - 1;
  out = static_cast<uint8_t>(b[pos++]) & max;
  if (out < max) return true;
  for (int shift = 0; shift <= 28; shift += 7) {
    if (pos >= b.size()) return false;
    const uint8_t c = static_cast<uint8_t>(b[pos++]);
    out += uint64_t{c & 0x7fu} << shift;
    if ((c & 0x80) == 0) return out <= UINT32_MAX;
  }
  return false;
}

bool SkipString(std::string_view b, size_t& pos) {
  uint64_t len = 0;
  if (!ReadInt(b, pos, 7, len) || len > b.size() - pos) return false;
  pos += len;
  return true;
}

void WriteInt(std::string& out, uint8_t first, int prefix_bits, uint64_t v) {
  const uint64_t max = (uint64_t{1} << prefix_bits) - 1;
  if (v < max) {
    out.push_back(static_cast<char>(first | v));
    return;
  }
  out.push_back(static_cast<char>(first | max));
  for (v -= max; v >= 0x80; v >>= 7) out.push_back(static_cast<char>(0x80 | (v & 0x7f)));
  out.push_back(static_cast<char>(v));
}

// One field representation of a header block, located without decoding it (RFC 7541 section 6).
struct Representation {
  enum class Kind : uint8_t { kIndexed, kIncremental, kLiteral, kSizeUpdate };
  Kind kind = Kind::kIndexed;
  uint64_t index = 0;   // of the field or of its name; 0 for a new name; the size for kSizeUpdate
  size_t value_at = 0;  // literals: where the value string starts
  size_t end = 0;
};

// False when the representation at `pos` runs past the end of `b`.
bool NextRepresentation(std::string_view b, size_t pos, Representation& r) {
  using Kind = Representation::Kind;
  const uint8_t c = static_cast<uint8_t>(b[pos]);
  int prefix_bits = 4;
  if (c & 0x80) {
    r.kind = Kind::kIndexed;
    prefix_bits = 7;
  } else if (c & 0x40) {
    r.kind = Kind::kIncremental;
    prefix_bits = 6;
  } else if (c & 0x20) {
    r.kind = Kind::kSizeUpdate;
    prefix_bits = 5;
  } else {
    r.kind = Kind::kLiteral;  // without indexing (0000) or never indexed (0001)
  }
  if (!ReadInt(b, pos, prefix_bits, r.index)) return false;
  if (r.kind == Kind::kIncremental || r.kind == Kind::kLiteral) {
    if (r.index == 0 && !SkipString(b, pos)) return false;
    r.value_at = pos;
    if (!SkipString(b, pos)) return false;
  }
  r.end = pos;
  return true;
}

}  // namespace

// The fields of a header block that requests and responses are made of.
struct Http2Fields {
  std::string method, authority, host, path;
  bool grpc = false;
  int status = 0;
  int grpc_status = -1;

  void Take(std::string_view name, std::string_view value) {
    if (name == ":method") {
      method = Clip(value);
    } else if (name == ":authority") {
      authority = Clip(value);
    } else if (name == "host") {
      host = Clip(value);
    } else if (name == ":path") {
      path = Clip(value.substr(0, value.find_first_of("?#")));
    } else if (name == "content-type") {
      grpc = value.starts_with("application/grpc");
    } else if (name == ":status") {
      status = std::max(ParseDecimal(value, 3), 0);
    } else if (name == "grpc-status") {
      grpc_status = ParseDecimal(value, 4);
    }
  }
};

// One direction's HPACK decoder. Blocks are walked one representation at a time so that a
// reference to a dynamic table entry the inflater does not hold (lost with an uncaptured block) is
// skipped instead of failing the inflater. Since the last restart the inflater has seen every
// insertion the real decoder has, and both tables list entries newest first, so wherever both hold
// an entry at an index it is the same one. Holding more than the real decoder (a larger table
// size) is harmless, as the encoder never refers past the real table; holding less only loses
// fields.
class Http2Hpack {
 public:
  explicit Http2Hpack(size_t max_table) : max_table_(max_table) { Restart(); }
  ~Http2Hpack() { Drop(); }
  Http2Hpack(const Http2Hpack&) = delete;
  Http2Hpack& operator=(const Http2Hpack&) = delete;

  // The encoder's peer advertised SETTINGS_HEADER_TABLE_SIZE = n.
  void Allow(uint64_t n) {
    n = std::min<uint64_t>(n, max_table_);
    if (n <= allowed_) return;
    allowed_ = n;
    if (inflater_) nghttp2_hd_inflate_change_table_size(inflater_, allowed_);
  }

  // Decodes a header block, `whole` unless bytes of it were not captured. False when some field
  // could not be decoded.
  bool Decode(std::string_view block, bool whole, Http2Fields& out) {
    using Kind = Representation::Kind;
    if (!inflater_) {
      Restart();
      return false;
    }
    bool complete = whole;
    bool table_known = whole;  // false once the block may have changed the table unseen
    std::string rewritten;
    for (size_t pos = 0; pos < block.size();) {
      Representation r;
      if (!NextRepresentation(block, pos, r)) {
        complete = table_known = false;
        break;
      }
      std::string_view bytes = block.substr(pos, r.end - pos);
      const size_t held = nghttp2_hd_inflate_get_num_table_entries(inflater_);
      bool known = true;
      switch (r.kind) {
        case Kind::kIndexed:
          known = r.index != 0 && r.index <= held;
          break;
        case Kind::kIncremental:
          known = r.index <= held;
          // The value still decodes, and the entry must still be inserted to keep the indexes
          // aligned; an empty name stands for the unknown one (and is never larger, so the table
          // keeps at least the real decoder's entries).
          if (!known) {
            rewritten.assign("\x40\x00", 2);
            rewritten.append(block.substr(r.value_at, r.end - r.value_at));
            bytes = rewritten;
          }
          break;
        case Kind::kLiteral:
          known = r.index <= held;
          break;
        case Kind::kSizeUpdate:
          // Skipping it leaves a table larger than the real one, which is harmless.
          known = r.index <= allowed_;
          break;
      }
      if (!known) {
        complete = false;
        if (bytes.data() != rewritten.data()) bytes = {};
      }
      if (!bytes.empty() && !Inflate(bytes, false, out)) {
        Restart();
        return false;
      }
      pos = r.end;
    }
    if (!table_known || !Inflate({}, true, out)) {
      Restart();
      return false;
    }
    return complete;
  }

 private:
  // A fresh inflater, empty but allowed the largest table the encoder may use, so that it keeps
  // at least the entries the real decoder keeps.
  void Restart() {
    Drop();
    if (nghttp2_hd_inflate_new(&inflater_) != 0) return;
    if (allowed_ == kDefaultHeaderTable) return;
    nghttp2_hd_inflate_change_table_size(inflater_, allowed_);
    std::string update;
    WriteInt(update, 0x20, 5, allowed_);
    Http2Fields ignored;
    Inflate(update, true, ignored);
  }

  // nghttp2_hd_inflate_del does not take null.
  void Drop() {
    if (inflater_) nghttp2_hd_inflate_del(inflater_);
    inflater_ = nullptr;
  }

  bool Inflate(std::string_view bytes, bool final, Http2Fields& out) {
    // nghttp2 takes a non-const pointer but does not write through it.
    auto* in = reinterpret_cast<uint8_t*>(const_cast<char*>(bytes.data()));
    size_t left = bytes.size();
    for (;;) {
      nghttp2_nv nv;
      int flags = 0;
      const ssize_t n = nghttp2_hd_inflate_hd2(inflater_, &nv, &flags, in, left, final);
      if (n < 0) return false;
      in += n;
      left -= static_cast<size_t>(n);
      if (flags & NGHTTP2_HD_INFLATE_EMIT) {
        out.Take({reinterpret_cast<const char*>(nv.name), nv.namelen},
                 {reinterpret_cast<const char*>(nv.value), nv.valuelen});
      }
      if (flags & NGHTTP2_HD_INFLATE_FINAL) {
        nghttp2_hd_inflate_end_headers(inflater_);
        return true;
      }
      if ((flags & NGHTTP2_HD_INFLATE_EMIT) == 0 && left == 0) return !final;
    }
  }

  nghttp2_hd_inflater* inflater_ = nullptr;
  size_t allowed_ = kDefaultHeaderTable;
  size_t max_table_;
};

bool LooksLikeHttp2Preface(std::span<const uint8_t> b) {
  if (b.empty()) return false;
  const size_t n = std::min(b.size(), kPreface.size());
  return std::memcmp(b.data(), kPreface.data(), n) == 0;
}

const char* Http2ErrorName(Http2Error e) {
  switch (e) {
    case Http2Error::kBadPreface:
      return "bad_preface";
    case Http2Error::kFrameTooLarge:
      return "frame_too_large";
    case Http2Error::kHpackFailed:
      return "hpack_failed";
    case Http2Error::kLostSync:
      return "lost_sync";
    case Http2Error::kProtocol:
      return "protocol";
    case Http2Error::kCount:
      break;
  }
  return "unknown";
}

Http2Parser::Http2Parser(Http2Sink* sink, Limits limits) : sink_(sink), limits_(limits) {
  request_.which = HttpStream::kRequest;
  request_.preface_left = kPreface.size();
  response_.which = HttpStream::kResponse;
  for (Direction* d : {&request_, &response_}) {
    d->hpack = std::make_unique<Http2Hpack>(limits_.max_header_table);
  }
}

Http2Parser::~Http2Parser() = default;

void Http2Parser::Feed(HttpStream stream, Capture captured, uint64_t total_len, uint64_t ts_ns) {
  if (state_ == State::kGaveUp || closed_) return;
  Direction& d = direction(stream);
  if (!captured.segmented() && captured.raw().size() > total_len) {
    captured = Capture(captured.raw().first(total_len));
  }
  uint64_t pos = 0;
  while (pos < total_len && state_ == State::kActive) {
    if (d.preface_left > 0) {
      pos += ConsumePreface(d, captured, pos, total_len);
    } else if (d.head_have < kFrameHeaderBytes) {
      pos += ConsumeFrameHeader(d, captured, pos, total_len, ts_ns);
    } else {
      pos += ConsumePayload(d, captured, pos, total_len, ts_ns);
    }
  }
}

uint64_t Http2Parser::ConsumePreface(Direction& d, const Capture& captured, uint64_t pos,
                                     uint64_t total) {
  const uint64_t n = std::min<uint64_t>(d.preface_left, total - pos);
  const size_t at = kPreface.size() - d.preface_left;
  const std::span<const uint8_t> cap = captured.At(pos);
  for (uint64_t i = 0; i < n && i < cap.size(); ++i) {
    if (cap[i] != static_cast<uint8_t>(kPreface[at + i])) {
      Fail(Http2Error::kBadPreface);
      return n;
    }
  }
  d.preface_left -= n;
  return n;
}

uint64_t Http2Parser::ConsumeFrameHeader(Direction& d, const Capture& captured, uint64_t pos,
                                         uint64_t total, uint64_t ts) {
  const std::span<const uint8_t> cap = captured.At(pos);
  if (cap.empty()) {
    Fail(Http2Error::kLostSync);
    return total - pos;
  }
  const size_t n = std::min<uint64_t>({kFrameHeaderBytes - d.head_have, cap.size(), total - pos});
  std::memcpy(d.head.data() + d.head_have, cap.data(), n);
  d.head_have += n;
  if (d.head_have == kFrameHeaderBytes) BeginFrame(d, ts);
  return n;
}

uint64_t Http2Parser::ConsumePayload(Direction& d, const Capture& captured, uint64_t pos,
                                     uint64_t total, uint64_t ts) {
  const uint64_t n = std::min(d.remaining, total - pos);
  if (!d.payload_gap) {
    const std::span<const uint8_t> cap = captured.At(pos);
    const uint64_t have = std::min<uint64_t>(n, cap.size());
    const size_t keep = std::min<uint64_t>(have, d.want - d.payload.size());
    d.payload.append(reinterpret_cast<const char*>(cap.data()), keep);
    d.payload_gap = keep < n;
  }
  d.remaining -= n;
  if (d.remaining == 0) EndFrame(d, ts);
  return n;
}

void Http2Parser::BeginFrame(Direction& d, uint64_t ts) {
  const uint8_t* h = d.head.data();
  Frame& f = d.frame;
  f.length = uint32_t{h[0]} << 16 | uint32_t{h[1]} << 8 | h[2];
  f.type = h[3];
  f.flags = h[4];
  f.stream_id = Be32(h + 5) & kStreamIdMask;
  if (f.length > limits_.max_frame_size) return Fail(Http2Error::kFrameTooLarge);
  // Both endpoints open with SETTINGS: the cheapest proof that this is HTTP/2 at all.
  if (!d.settings_seen && (f.type != kSettings || (f.flags & kFlagAck))) {
    return Fail(Http2Error::kProtocol);
  }
  d.settings_seen = true;
  if (d.in_block != (f.type == kContinuation) || (d.in_block && f.stream_id != d.block_stream)) {
    return Fail(Http2Error::kProtocol);
  }
  const bool stream_frame = f.type == kData || f.type == kHeaders || f.type == kRstStream ||
                            f.type == kPushPromise || f.type == kContinuation;
  if (stream_frame && f.stream_id == 0) return Fail(Http2Error::kProtocol);

  switch (f.type) {
    case kHeaders:
    case kPushPromise:
    case kContinuation:
      d.want = limits_.max_header_block;
      break;
    case kSettings:
      d.want = kMaxSettingsBytes;
      break;
    case kGoaway:
      d.want = kGoawayBytes;
      break;
    default:
      d.want = 0;
  }
  d.remaining = f.length;
  d.payload_gap = false;
  Release(d.payload);
  if (f.type == kData && d.which == HttpStream::kResponse) {
    auto it = streams_.find(f.stream_id);
    if (it != streams_.end() && it->second.response.first_byte_ns == 0) {
      it->second.response.first_byte_ns = ts;
    }
  }
  if (d.remaining == 0) EndFrame(d, ts);
}

void Http2Parser::EndFrame(Direction& d, uint64_t ts) {
  d.head_have = 0;
  const Frame& f = d.frame;
  switch (f.type) {
    case kData:
      if (d.which == HttpStream::kResponse && (f.flags & kFlagEndStream)) {
        auto it = streams_.find(f.stream_id);
        if (it != streams_.end()) Finish(it, ts, false);
      }
      break;
    case kHeaders:
    case kPushPromise:
    case kContinuation:
      HeaderFragment(d, ts);
      break;
    case kRstStream: {
      auto it = streams_.find(f.stream_id);
      if (it != streams_.end()) Finish(it, ts, true);
      break;
    }
    case kSettings:
      if ((f.flags & kFlagAck) == 0) ApplySettings(d);
      break;
    case kGoaway:
      if (d.which == HttpStream::kResponse && d.payload.size() == kGoawayBytes) {
        const uint32_t last = Be32(d.payload) & kStreamIdMask;
        while (state_ == State::kActive) {
          auto it = streams_.upper_bound(last);
          if (it == streams_.end()) break;
          Finish(it, ts, true);
        }
      }
      break;
    default:
      break;
  }
  Release(d.payload);
}

void Http2Parser::HeaderFragment(Direction& d, uint64_t ts) {
  const Frame& f = d.frame;
  if (f.type != kContinuation) {
    d.in_block = true;
    d.block_stream = f.stream_id;
    d.block_end_stream = f.type == kHeaders && (f.flags & kFlagEndStream);
    d.block_push = f.type == kPushPromise;
    d.block_cut = false;
    Release(d.block);
  }
  uint64_t skip = 0;
  uint64_t pad = 0;
  if (f.type != kContinuation && (f.flags & kFlagPadded)) {
    skip = 1;
    if (d.payload.empty()) {
      d.block_cut = true;  // the pad length was not captured, so neither is where the block ends
    } else {
      pad = static_cast<uint8_t>(d.payload[0]);
    }
  }
  if (f.type == kHeaders && (f.flags & kFlagPriority)) skip += kPriorityBytes;
  if (f.type == kPushPromise) skip += kPromisedStreamBytes;
  if (skip + pad > f.length) return Fail(Http2Error::kProtocol);
  if (!d.block_cut) {
    const uint64_t fragment_end = f.length - pad;
    const uint64_t have = std::min<uint64_t>(d.payload.size(), fragment_end);
    if (have > skip) {
      const size_t room =
          limits_.max_header_block - std::min(d.block.size(), limits_.max_header_block);
      const size_t n = std::min<uint64_t>(have - skip, room);
      d.block.append(d.payload, skip, n);
      if (n < have - skip) d.block_cut = true;
    }
    if (have < fragment_end) d.block_cut = true;
  }
  if (f.flags & kFlagEndHeaders) EndBlock(d, ts);
}

void Http2Parser::EndBlock(Direction& d, uint64_t ts) {
  d.in_block = false;
  Http2Fields fields;
  // Decoded even when the stream is of no interest, so that the dynamic table stays right.
  if (!d.hpack->Decode(d.block, !d.block_cut, fields)) sink_->OnError(Http2Error::kHpackFailed);
  Release(d.block);
  if (d.block_push) return;
  if (d.which == HttpStream::kRequest) {
    RequestHeaders(d, fields, ts);
  } else {
    ResponseHeaders(d, fields, ts);
  }
}

void Http2Parser::ApplySettings(const Direction& d) {
  Direction& encoder = opposite(d);
  for (size_t at = 0; at + kSettingsEntryBytes <= d.payload.size(); at += kSettingsEntryBytes) {
    const auto* p = reinterpret_cast<const uint8_t*>(d.payload.data() + at);
    const uint16_t id = static_cast<uint16_t>(p[0] << 8 | p[1]);
    if (id == kSettingsHeaderTableSize) encoder.hpack->Allow(Be32(p + 2));
  }
}

void Http2Parser::RequestHeaders(const Direction& d, const Http2Fields& f, uint64_t ts) {
  const uint32_t id = d.block_stream;
  if (id <= last_request_id_) return;  // trailers, or a stream already finished
  last_request_id_ = id;
  if (streams_.size() >= limits_.max_open_streams) return Fail(Http2Error::kProtocol);
  Http2Request& r = streams_[id].response.request;
  r.method = f.method;
  r.authority = f.authority.empty() ? f.host : f.authority;
  r.path = f.path;
  r.stream_id = id;
  r.grpc = f.grpc;
  r.headers_end_ns = ts;
  sink_->OnRequest(r);
}

void Http2Parser::ResponseHeaders(const Direction& d, const Http2Fields& f, uint64_t ts) {
  auto it = streams_.find(d.block_stream);
  if (it == streams_.end()) return;
  Stream& s = it->second;
  if (!s.final_headers) {
    // An undecodable :status (0) is taken as final: interim responses are rare, and a 1xx
    // mistaken for the final one would only cost its status code.
    if (f.status >= 100 && f.status < 200) return;
    s.final_headers = true;
    s.response.status = f.status;
  }
  s.response.request.grpc |= f.grpc;
  if (f.grpc_status >= 0) s.response.grpc_status = f.grpc_status;
  if (d.block_end_stream) Finish(it, ts, false);
}

void Http2Parser::Finish(std::map<uint32_t, Stream>::iterator it, uint64_t ts, bool cut_off) {
  Http2Response& r = it->second.response;
  r.end_ns = ts;
  if (r.first_byte_ns == 0) r.first_byte_ns = ts;
  r.cut_off = cut_off;
  sink_->OnResponse(r);
  streams_.erase(it);
}

size_t Http2Parser::Abandon() {
  const size_t unanswered = streams_.size();
  GiveUp();
  return unanswered;
}

void Http2Parser::OnClose(uint64_t ts_ns) {
  if (state_ == State::kGaveUp || closed_) return;
  closed_ = true;
  while (!streams_.empty()) Finish(streams_.begin(), ts_ns, true);
}

void Http2Parser::Fail(Http2Error e) {
  sink_->OnError(e);
  GiveUp();
}

void Http2Parser::GiveUp() {
  state_ = State::kGaveUp;
  streams_.clear();
  for (Direction* d : {&request_, &response_}) {
    std::string().swap(d->payload);
    std::string().swap(d->block);
    d->hpack.reset();
  }
}

}  // namespace podtap
