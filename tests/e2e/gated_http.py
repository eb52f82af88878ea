#!/usr/bin/python3
"""An HTTP/1.1 keep-alive client whose connection outlives a moment the test
chooses, for the CPU budget case: run inside a pod's network namespace,

    ip netns exec NS /usr/bin/python3 gated_http.py ADDR PORT PATH AFTER

On one connection it sends `GET PATH` and reads the whole response (its
Content-Length), again and again, until SIGUSR1; then exactly AFTER requests
more, then it closes. JSON lines on stdout: {"event": "running"} after the
first response, {"event": "released"} when the signal is taken, and at the end
{"event": "done", "before": B, "after": AFTER}, B being the requests answered
before the signal. It stops by itself after MAX_REQUESTS requests or
MAX_SECONDS without the signal, with {"event": "timeout"}.
"""

import json
import signal
import socket
import sys
import time

MAX_REQUESTS = 500000
MAX_SECONDS = 60


def emit(**record):
    print(json.dumps(record), flush=True)


def exchange(sock, request, pending):
    """Sends one request, reads its response whole; returns the bytes read past it."""
    sock.sendall(request)
    while b"\r\n\r\n" not in pending:
        chunk = sock.recv(65536)
        if not chunk:
            raise RuntimeError("server closed the connection")
        pending += chunk
    head, _, rest = pending.partition(b"\r\n\r\n")
    length = None
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    if length is None:
        raise RuntimeError("response without Content-Length: %r" % head)
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise RuntimeError("server closed the connection in a body")
        rest += chunk
    return rest[length:]


def main():
    addr, port, path, after = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
    released = []
    signal.signal(signal.SIGUSR1, lambda *_: released.append(True))
    request = ("GET %s HTTP/1.1\r\nHost: %s\r\n\r\n" % (path, addr)).encode()
    sock = socket.create_connection((addr, port), timeout=10)
    pending = b""
    before = 0
    deadline = time.monotonic() + MAX_SECONDS
    while not released:
        if before >= MAX_REQUESTS or time.monotonic() > deadline:
            emit(event="timeout", before=before)
            sock.close()
            return 1
        pending = exchange(sock, request, pending)
        before += 1
        if before == 1:
            emit(event="running")
    emit(event="released")
    for _ in range(after):
        pending = exchange(sock, request, pending)
    sock.close()
    emit(event="done", before=before, after=after)
    return 0


if __name__ == "__main__":
    sys.exit(main())
