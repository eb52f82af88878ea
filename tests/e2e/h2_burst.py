#!/usr/bin/python3
"""An HTTP/2 client (prior-knowledge h2c) that puts many frames in one
syscall: the client preface, SETTINGS and one HEADERS frame per request
(GET, END_STREAM) in a single send, then reads until every stream has ended
and says so on stdout as JSON: {"requests": N, "sends": the burst, the
SETTINGS acknowledgements and the closing GOAWAY}. It is there to feed the kernel's HTTP/2 frame
walk a syscall of a known number of frames (test_h2_exact case f); it
decodes no header block (nginx's log is the ground truth of the statuses).

    h2_burst.py [--splice N] HOST PORT AUTHORITY PATH [PATH ...]

--splice N: the burst goes in three parts, the second through splice(2)
from a pipe, a syscall the agent's probes do not hook: the preface,
SETTINGS and the first request in one send, then the next N bytes spliced
(with N < 9, part of the second request's frame header), then the rest in
one send (test_h2_exact case h).

Exits 1 (with why on stderr) when a stream is reset, the server sends
GOAWAY before every stream ended, or nothing arrives for 10 s.
"""

import json
import os
import socket
import struct
import sys

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, RST_STREAM, SETTINGS, PING, GOAWAY = 0, 1, 3, 4, 6, 7
END_STREAM, ACK, END_HEADERS = 0x1, 0x1, 0x4


def frame(ftype, flags, stream, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes([ftype, flags]) + \
        struct.pack(">I", stream) + payload


def literal(index, value):
    """A header field without indexing, its name from the static table,
    its value a raw string (no Huffman coding)."""
    raw = value.encode()
    if len(raw) >= 127:
        raise ValueError("value too long for this client: %r" % value)
    return bytes([index, len(raw)]) + raw


def request_block(authority, path):
    # :method GET (static 2), :scheme http (static 6), :path (name 4),
    # :authority (name 1).
    return b"\x82\x86" + literal(4, path) + literal(1, authority)


def splice_all(s, data):
    """Sends `data` on `s` through a pipe and splice(2)."""
    r, w = os.pipe()
    try:
        os.write(w, data)
        left = len(data)
        while left:
            left -= os.splice(r, s.fileno(), left)
    finally:
        os.close(r)
        os.close(w)


def main():
    args = sys.argv[1:]
    spliced = 0
    if args[:1] == ["--splice"]:
        spliced, args = int(args[1]), args[2:]
    host, port, authority, paths = args[0], int(args[1]), args[2], args[3:]
    first = PREFACE + frame(SETTINGS, 0, 0)
    rest = b""
    for i, path in enumerate(paths):
        f = frame(HEADERS, END_STREAM | END_HEADERS, 2 * i + 1, request_block(authority, path))
        if i == 0 or not spliced:
            first += f
        else:
            rest += f
    s = socket.create_connection((host, port), timeout=10)
    s.setblocking(True)
    sends = 1
    s.sendall(first)
    if rest:
        splice_all(s, rest[:spliced])
        s.sendall(rest[spliced:])
        sends += 2
    s.settimeout(10)
    open_streams = {2 * i + 1 for i in range(len(paths))}
    buf = b""
    while open_streams:
        chunk = s.recv(65536)
        if not chunk:
            sys.exit("h2_burst: the server closed with %d streams open" % len(open_streams))
        buf += chunk
        while len(buf) >= 9:
            length = int.from_bytes(buf[:3], "big")
            if len(buf) < 9 + length:
                break
            ftype, flags = buf[3], buf[4]
            stream = struct.unpack(">I", buf[5:9])[0] & 0x7FFFFFFF
            buf = buf[9 + length:]
            if ftype == SETTINGS and not flags & ACK:
                s.sendall(frame(SETTINGS, ACK, 0))
                sends += 1
            elif ftype in (DATA, HEADERS) and flags & END_STREAM:
                open_streams.discard(stream)
            elif ftype == RST_STREAM:
                sys.exit("h2_burst: stream %d reset" % stream)
            elif ftype == GOAWAY:
                sys.exit("h2_burst: GOAWAY with %d streams open" % len(open_streams))
    s.sendall(frame(GOAWAY, 0, 0, struct.pack(">II", 0, 0)))
    s.close()
    print(json.dumps({"requests": len(paths), "sends": sends + 1}))


if __name__ == "__main__":
    main()
