// Turns the captured prefixes of one cleartext HTTP/2 connection's reads and writes into per-stream
// requests and responses, following frames by their lengths and decoding header blocks with
// nghttp2's HPACK inflater.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>

#include "agent/kernel/capture.h"
#include "agent/protocols/http1_parser.h"

namespace podtap {

// True if `b` is non-empty and starts with the client connection preface
// "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", or is a prefix of it.
bool LooksLikeHttp2Preface(std::span<const uint8_t> b);

struct Http2Request {
  std::string method;     // :method
  std::string authority;  // :authority, else Host
  std::string path;       // :path without query string or fragment
  uint32_t stream_id = 0;
  bool grpc = false;            // content-type application/grpc*, the request's or the response's
  uint64_t headers_end_ns = 0;  // ts of the Feed that completed the request's header block
};

// Fields that could not be decoded (see kHpackFailed) are empty, 0 or -1.
struct Http2Response {
  Http2Request request;
  int status = 0;              // final :status; 0 when unknown or cut off before it
  int grpc_status = -1;        // from trailers or a trailers-only HEADERS; -1 when absent
  uint64_t first_byte_ns = 0;  // ts of the Feed carrying the first DATA frame's header, else end_ns
  uint64_t end_ns = 0;         // ts of the Feed that ended the stream, or of the reset or close
  bool cut_off = false;  // RST_STREAM, GOAWAY or the close came before the server's END_STREAM
};

enum class Http2Error : uint8_t {
  kBadPreface,     // the request stream did not begin with the client connection preface
  kFrameTooLarge,  // a frame length past Http2Limits::max_frame_size
  // A header block decoded only in part: not captured whole, or referring to dynamic table
  // entries lost earlier. Counted once per block; parsing goes on with the fields that decoded.
  kHpackFailed,
  kLostSync,  // a frame header fell past a captured prefix, so frame boundaries are lost
  // Frames that break HTTP/2's grammar (no SETTINGS first, stream frames on stream 0, a broken
  // CONTINUATION sequence, padding longer than the frame), or more than max_open_streams streams.
  kProtocol,
  kCount
};

// snake_case, for a metric label.
const char* Http2ErrorName(Http2Error e);

class Http2Sink {
 public:
  virtual ~Http2Sink() = default;
  virtual void OnRequest(const Http2Request& r) = 0;
  virtual void OnResponse(const Http2Response& r) = 0;
  virtual void OnError(Http2Error e) = 0;
};

// Outside the parser class so that it can be a defaulted constructor argument.
struct Http2Limits {
  uint32_t max_frame_size = 1 << 24;  // the default is what a 24-bit length can say anyway
  size_t max_open_streams = 1024;     // requests without a finished response
  // Header block bytes kept per direction (HEADERS or PUSH_PROMISE plus CONTINUATIONs); bytes
  // past it are treated as uncaptured.
  size_t max_header_block = 65536;
  // HPACK dynamic table per direction, whatever SETTINGS_HEADER_TABLE_SIZE allows; a table size
  // update above it is not applied (later references past the smaller table count kHpackFailed).
  size_t max_header_table = 65536;
};

class Http2Hpack;    // one direction's HPACK decoder, private to http2_parser.cc
struct Http2Fields;  // the fields of one decoded header block, private to http2_parser.cc

// One per connection, started only on a connection whose request stream begins with the preface
// (prior-knowledge h2c): attaching in mid-connection is not supported, since neither frame
// boundaries nor the HPACK tables can be recovered there. Not thread-safe. Every transition to
// kGaveUp is reported through OnError first; streams still open then are dropped, not reported.
//
// Capture rule. Frames are followed by their 9-byte headers and lengths, so payload bytes that
// were not captured (a 100 KB DATA frame of which only the header was) are skipped by count. The
// kernel follows the frames too and captures every frame header and header block as segments
// wherever they lie in a syscall; a frame header that was nevertheless not captured (a record out
// of room, a connection seen only by its prefix) is kLostSync: HTTP/2 has no resync point (a frame
// can start anywhere in a write). A header block not captured whole is decoded as far as
// captured; its stream is still counted from the frame header (stream id, END_STREAM), and the
// direction's HPACK table is then rebuilt from empty: it holds exactly the entries inserted since,
// which are the newest ones and therefore at the same indexes as in the real table, so what it
// decodes is right; references to older entries decode as unknown fields (kHpackFailed).
//
// SETTINGS_HEADER_TABLE_SIZE. The value a peer sends is the limit of its own decoder, so it bounds
// the encoder of the opposite direction: SETTINGS seen on the response stream apply to the request
// stream's inflater and vice versa. A raise is applied on sight (the encoder can only use it after
// receiving it, which orders it before the blocks that do). A reduction needs nothing: the encoder
// must announce its smaller table with a table size update in its next block, which the inflater
// follows; ACKs are ignored.
//
// Streams. A HEADERS block on the request stream with a stream id above any seen before is a
// request; later ones on that stream are trailers. On the response stream, 1xx blocks are interim
// and skipped, the first other block gives :status, any block may carry grpc-status, and the
// server's END_STREAM (HEADERS or DATA) ends the response; END_STREAM from the client only ends the
// request body. RST_STREAM from either side cuts the response off. A GOAWAY from the server cuts
// off the streams above its last-stream-id at once; those at or below it may still finish (or are
// cut off at close). A GOAWAY from the client concerns pushed streams only, which are not counted:
// PUSH_PROMISE blocks are decoded only to keep the table right.
class Http2Parser {
 public:
  using Limits = Http2Limits;
  enum class State : uint8_t { kActive, kGaveUp };

  explicit Http2Parser(Http2Sink* sink, Limits limits = {});
  ~Http2Parser();
  Http2Parser(const Http2Parser&) = delete;
  Http2Parser& operator=(const Http2Parser&) = delete;

  // captured: what the kernel captured of a read or write of total_len bytes, its first bytes or
  // segments wherever frame headers and header blocks lie (Capture).
  void Feed(HttpStream stream, Capture captured, uint64_t total_len, uint64_t ts_ns);
  // Every stream with a request and no finished response becomes a cut_off response. Later Feeds
  // are ignored.
  void OnClose(uint64_t ts_ns);
  // kGaveUp: stop feeding this connection (not HTTP/2, framing lost, limit hit).
  State state() const { return state_; }
  // Gives up at the agent's request (its CPU budget: OverloadGuard), without cutting off the
  // open streams as a close does: returns how many requests were reported and not answered
  // (they never will be). Later Feeds are ignored.
  size_t Abandon();

 private:
  static constexpr size_t kFrameHeaderBytes = 9;

  struct Frame {
    uint32_t length = 0;
    uint8_t type = 0;
    uint8_t flags = 0;
    uint32_t stream_id = 0;
  };

  struct Direction {
    HttpStream which = HttpStream::kRequest;
    size_t preface_left = 0;  // bytes of the client preface still expected
    bool settings_seen = false;
    // The frame being read: its header while head_have < 9, then `remaining` payload bytes.
    std::array<uint8_t, kFrameHeaderBytes> head{};
    size_t head_have = 0;
    Frame frame;
    uint64_t remaining = 0;
    std::string payload;  // the captured start of the payload, up to `want` bytes
    size_t want = 0;
    bool payload_gap = false;  // payload bytes were dropped, so later ones are not contiguous
    // The header block being gathered across HEADERS or PUSH_PROMISE and CONTINUATION frames.
    bool in_block = false;
    uint32_t block_stream = 0;
    bool block_end_stream = false;
    bool block_push = false;
    bool block_cut = false;  // some of its bytes were not captured
    std::string block;
    std::unique_ptr<Http2Hpack> hpack;
  };

  struct Stream {
    Http2Response response;
    bool final_headers = false;
  };

  Direction& direction(HttpStream s) { return s == HttpStream::kRequest ? request_ : response_; }
  Direction& opposite(const Direction& d) {
    return d.which == HttpStream::kRequest ? response_ : request_;
  }
  uint64_t ConsumePreface(Direction& d, const Capture& cap, uint64_t pos, uint64_t total);
  uint64_t ConsumeFrameHeader(Direction& d, const Capture& cap, uint64_t pos, uint64_t total,
                              uint64_t ts);
  uint64_t ConsumePayload(Direction& d, const Capture& cap, uint64_t pos, uint64_t total,
                          uint64_t ts);
  void BeginFrame(Direction& d, uint64_t ts);
  void EndFrame(Direction& d, uint64_t ts);
  void HeaderFragment(Direction& d, uint64_t ts);
  void EndBlock(Direction& d, uint64_t ts);
  void ApplySettings(const Direction& d);
  void RequestHeaders(const Direction& d, const Http2Fields& f, uint64_t ts);
  void ResponseHeaders(const Direction& d, const Http2Fields& f, uint64_t ts);
  void Finish(std::map<uint32_t, Stream>::iterator it, uint64_t ts, bool cut_off);
  void Fail(Http2Error e);
  // Gives up: frees the streams, buffers and header tables.
  void GiveUp();

  Http2Sink* sink_;
  Limits limits_;
  State state_ = State::kActive;
  bool closed_ = false;
  Direction request_, response_;
  // Open streams by id; ordered so that GOAWAY and close cut them off in stream order.
  std::map<uint32_t, Stream> streams_;
  uint32_t last_request_id_ = 0;  // stream ids only grow, so lower ones are never new requests
};

}  // namespace podtap
