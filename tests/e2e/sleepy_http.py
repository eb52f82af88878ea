#!/usr/bin/python3
"""An HTTP/1.1 server whose latencies the test chooses, for the query
service's percentile tests; run inside a pod's network namespace:

    ip netns exec NS /usr/bin/python3 sleepy_http.py ADDR PORT

`GET /sleep/N` waits N microseconds, then answers 200 with a 3-byte body, in
one write of the whole response; the connection stays open for the next
request. One JSON line per line of state on stdout: {"event": "listening"}
once, then {"event": "served", "path": P, "ns": D} per request, where D is
the time from the moment the request's headers were read to the moment just
before the response was written (CLOCK_MONOTONIC). The agent measures from
the read of the request headers to the write of the response, so its latency
for a request is D plus what the two syscalls add, never less.
"""

import json
import socket
import sys
import threading
import time

MAX_HEADERS = 16384
SPIN_NS = 2_000_000


def say(**record):
    sys.stdout.write(json.dumps(record) + "\n")
    sys.stdout.flush()


def serve(conn):
    buf = b""
    with conn:
        while True:
            while b"\r\n\r\n" not in buf:
                chunk = conn.recv(4096)
                if not chunk or len(buf) > MAX_HEADERS:
                    return
                buf += chunk
            start = time.monotonic_ns()
            head, buf = buf.split(b"\r\n\r\n", 1)
            path = head.split(b"\r\n", 1)[0].split(b" ")[1].decode()
            micros = int(path.rsplit("/", 1)[1]) if path.startswith("/sleep/") else 0
            deadline = start + micros * 1000
            # Sleep to 2 ms short of the deadline, then spin: a loaded machine
            # wakes a sleeper milliseconds late, a running thread is on time.
            while True:
                left = deadline - time.monotonic_ns()
                if left <= SPIN_NS:
                    break
                time.sleep((left - SPIN_NS) / 1e9)
            while time.monotonic_ns() < deadline:
                pass
            done = time.monotonic_ns()
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n"
                         b"Content-Type: text/plain\r\n\r\nok\n")
            say(event="served", path=path, ns=done - start)


def main():
    addr, port = sys.argv[1], int(sys.argv[2])
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((addr, port))
    srv.listen(16)
    say(event="listening")
    while True:
        conn, _ = srv.accept()
        threading.Thread(target=serve, args=(conn,), daemon=True).start()


if __name__ == "__main__":
    main()
