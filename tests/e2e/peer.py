#!/usr/bin/python3
"""Traffic peers for podtap's end-to-end tests, run inside a pod's network
namespace (`ip netns exec NS /usr/bin/python3 peer.py MODE ...`).

Every byte either side writes or reads is counted here and reported as one JSON
line per connection on stdout, together with the kernel's own view of the same
connection (TCP_INFO bytes_acked / bytes_received), so the harness can check its
ground truth against the kernel before it checks the agent against both.

Wire protocol (client -> server), a fixed header then the payload:

    struct { u8 mode; u8 pad[3]; u32 send_len; u32 recv_len; }  network order

The header is HEADER_LEN bytes of real payload: the kernel counts it, so the
ground truth counts it too. Modes, and why each ends the way it does:

- normal: the server reads header + send_len bytes, writes recv_len bytes,
  waits until the client has acknowledged all of them, closes (FIN). The
  client reads recv_len bytes, then EOF, then closes. The server's data (or its
  FIN) acknowledges everything the client sent, so when either socket reaches
  CLOSE every written byte has been acknowledged and every read byte received.
- reset: as normal, but the server closes with SO_LINGER {1, 0}, so the kernel
  sends RST instead of FIN. It first waits until the client acknowledged every
  byte it wrote, and its data segments carried the ACK of every byte the client
  wrote, so a RST loses nothing that was counted as written. recv_len must be
  at least 1 for that: the ACK field of a RST is not processed by its receiver.
- hold: the long-lived connection. After an exchange the server waits for
  the next header (another round on the same connection) or the client's EOF,
  then closes. The client holds the connection open after each round until it
  is told to go on (SIGUSR1, SIGTERM or --stop-file); after the last round it
  shuts down its sending side, reads the server's EOF and closes.

A client plan may also hold `refused` and `timeout` entries: a connect that
must fail with ECONNREFUSED, or with ETIMEDOUT once the kernel's SYN retries
run out; nothing is sent on them.

What the kernel counts (measured here, and checked on every connection by the
harness through the `kernel` field): tcpi_bytes_acked counts the SYN for the
side that opened the connection (not the SYN-ACK of the side that accepted)
and our FIN once it is acknowledged; tcpi_bytes_received never counts the
peer's SYN but counts its FIN. Payload = those minus the SYN/FIN terms.

Every wait is bounded; nothing here sends to any address it was not given.
"""

import argparse
import errno
import fcntl
import json
import os
import random
import select
import signal
import socket
import struct
import sys
import termios
import threading
import time

HEADER = struct.Struct("!B3xII")
HEADER_LEN = HEADER.size  # 12
MODES = {"normal": 0, "reset": 1, "hold": 2}
MODE_NAMES = {v: k for k, v in MODES.items()}
CHUNK = 65536

_out_lock = threading.Lock()


def emit(obj):
    with _out_lock:
        sys.stdout.write(json.dumps(obj, sort_keys=True) + "\n")
        sys.stdout.flush()


def family_of(addr):
    return socket.AF_INET6 if ":" in addr else socket.AF_INET


def tcp_info(sock):
    """The kernel's byte counters for this socket (Linux struct tcp_info):
    tcpi_bytes_acked at offset 120, tcpi_bytes_received at 128; both count
    the SYN and the FIN as one byte each on top of the payload."""
    try:
        raw = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 256)
    except OSError as e:
        return {"error": str(e)}
    if len(raw) < 136:
        return {"error": "short tcp_info (%d bytes)" % len(raw)}
    state = raw[0]
    acked, received = struct.unpack_from("=QQ", raw, 120)
    return {"state": state, "bytes_acked": acked, "bytes_received": received}


def unacked_bytes(sock):
    """Bytes written but not yet acknowledged by the peer (SIOCOUTQ)."""
    buf = fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, struct.pack("i", 0))
    return struct.unpack("i", buf)[0]


def wait_all_acked(sock, timeout):
    deadline = time.monotonic() + timeout
    while True:
        if unacked_bytes(sock) == 0:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.002)


def recv_exact(sock, n, counter):
    """Reads exactly n bytes (discarding them); counter[0] += bytes read.
    Returns False on a premature EOF."""
    left = n
    while left > 0:
        data = sock.recv(min(CHUNK, left))
        if not data:
            return False
        counter[0] += len(data)
        left -= len(data)
    return True


def send_all(sock, block, n, counter):
    """Writes n bytes taken from `block` (repeated); counter[0] += written."""
    left = n
    while left > 0:
        piece = block[: min(len(block), left)]
        sent = sock.send(piece)
        counter[0] += sent
        left -= sent


def read_header(sock, counter):
    """Reads one header; returns (mode, send_len, recv_len), or None on EOF
    before its first byte."""
    hdr = bytearray()
    while len(hdr) < HEADER_LEN:
        data = sock.recv(HEADER_LEN - len(hdr))
        if not data:
            if not hdr:
                return None
            raise EOFError("EOF inside the header after %d bytes" % len(hdr))
        hdr += data
    counter[0] += HEADER_LEN
    return HEADER.unpack(bytes(hdr))


def payload_block(seed):
    return random.Random(seed).randbytes(CHUNK)


# --------------------------------------------------------------------------
# server


class Server:
    def __init__(self, args):
        self.args = args
        self.stop = threading.Event()
        self.threads = []
        self.block = payload_block(args.seed)
        self.count = 0

    def handle(self, conn, peer, index):
        a = self.args
        conn.settimeout(a.io_timeout)
        read = [0]
        written = [0]
        rec = {"event": "conn", "index": index, "peer": peer[0], "peer_port": peer[1],
               "rounds": 0}
        try:
            hdr = read_header(conn, read)
            if hdr is None:
                raise EOFError("EOF before the header")
            mode, send_len, recv_len = hdr
            rec.update(mode=MODE_NAMES.get(mode, str(mode)), send_len=send_len,
                       recv_len=recv_len)
            while True:
                if not recv_exact(conn, send_len, read):
                    raise EOFError("EOF inside the payload")
                send_all(conn, self.block, recv_len, written)
                rec["rounds"] += 1
                rec["all_acked"] = wait_all_acked(conn, a.io_timeout)
                rec["kernel"] = tcp_info(conn)
                if mode != MODES["hold"]:
                    break
                # hold: another round, or the client's EOF.
                hdr = read_header(conn, read)
                if hdr is None:
                    break
                mode, send_len, recv_len = hdr
            if mode == MODES["reset"]:
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                struct.pack("ii", 1, 0))
                rec["outcome"] = "reset_sent"
            else:
                rec["outcome"] = "ok"
        except (OSError, EOFError) as e:
            rec["outcome"] = "error"
            rec["error"] = "%s: %s" % (type(e).__name__, e)
        finally:
            conn.close()
        rec["read"] = read[0]
        rec["written"] = written[0]
        emit(rec)

    def run(self):
        a = self.args
        fam = family_of(a.addr)
        ls = socket.socket(fam, socket.SOCK_STREAM)
        ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if fam == socket.AF_INET6:
            # "::" listens dual-stack: IPv4 clients then show up as
            # IPv4-mapped addresses on an AF_INET6 socket.
            ls.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0 if a.addr == "::" else 1)
        ls.bind((a.addr, a.port))
        ls.listen(128)
        emit({"event": "listening", "addr": a.addr, "port": a.port, "pid": os.getpid()})
        deadline = time.monotonic() + a.max_seconds
        try:
            while not self.stop.is_set() and time.monotonic() < deadline:
                r, _, _ = select.select([ls], [], [], 0.2)
                if not r:
                    continue
                conn, peer = ls.accept()
                t = threading.Thread(target=self.handle, args=(conn, peer, self.count),
                                     daemon=True)
                self.count += 1
                t.start()
                self.threads.append(t)
        finally:
            ls.close()
        # Connections still open get the rest of their I/O timeout to finish.
        for t in self.threads:
            t.join(timeout=a.io_timeout)
        alive = sum(1 for t in self.threads if t.is_alive())
        emit({"event": "stopped", "accepted": self.count, "unfinished": alive,
              "timed_out": not self.stop.is_set()})
        return 0 if alive == 0 else 1


# --------------------------------------------------------------------------
# clients


def client_connection(args, block, send_len, recv_len, behaviour):
    """One connection of a plan. Returns its JSON record."""
    rec = {"event": "conn", "behaviour": behaviour, "send_len": send_len,
           "recv_len": recv_len}
    written = [0]
    read = [0]
    t0 = time.monotonic()
    sock = socket.socket(family_of(args.addr), socket.SOCK_STREAM)
    sock.settimeout(args.io_timeout)
    try:
        try:
            sock.connect((args.addr, args.port))
        except ConnectionRefusedError:
            rec["outcome"] = "refused"
            return rec
        except OSError as e:
            if e.errno != errno.ETIMEDOUT:  # the kernel's SYN retries ran out
                raise
            rec["outcome"] = "timeout"
            return rec
        rec["local_port"] = sock.getsockname()[1]
        if behaviour in ("refused", "timeout"):
            rec["outcome"] = "connected_unexpectedly"
            return rec
        mode = MODES["reset" if behaviour == "reset" else "normal"]
        hdr = HEADER.pack(mode, send_len, recv_len)
        send_all(sock, hdr, len(hdr), written)
        send_all(sock, block, send_len, written)
        if not recv_exact(sock, recv_len, read):
            rec["outcome"] = "premature_eof"
            return rec
        try:
            tail = sock.recv(1)
        except ConnectionResetError:
            rec["outcome"] = "reset"
        else:
            if tail:
                read[0] += len(tail)
                rec["outcome"] = "unexpected_data"
            else:
                rec["outcome"] = "eof"
        rec["kernel"] = tcp_info(sock)
    except OSError as e:
        rec["outcome"] = "error"
        rec["error"] = "%s: %s" % (type(e).__name__, e)
    finally:
        sock.close()
        rec["written"] = written[0]
        rec["read"] = read[0]
        rec["seconds"] = round(time.monotonic() - t0, 6)
    return rec


EXPECTED_OUTCOME = {"normal": "eof", "reset": "reset", "refused": "refused",
                    "timeout": "timeout"}


def run_client(args):
    with open(args.plan) as f:
        plan = json.load(f)
    block = payload_block(args.seed)
    ok = True
    for i, (send_len, recv_len, behaviour) in enumerate(plan):
        rec = client_connection(args, block, int(send_len), int(recv_len), behaviour)
        rec["index"] = i
        if rec.get("outcome") != EXPECTED_OUTCOME.get(behaviour):
            ok = False
        emit(rec)
    emit({"event": "done", "connections": len(plan), "ok": ok})
    return 0 if ok else 2


def run_hold(args):
    """Rounds of exchange on one connection; after each, reports `exchanged`
    and waits to be told to go on (SIGUSR1, or the stop file appearing)
    before the next round or, after the last, the close."""
    go = threading.Event()
    for sig in (signal.SIGUSR1, signal.SIGTERM):
        signal.signal(sig, lambda *_: go.set())
    rounds = [tuple(int(x) for x in r.split(":")) for r in args.rounds.split(",")]
    block = payload_block(args.seed)
    written = [0]
    read = [0]
    rec = {"event": "conn", "behaviour": "hold", "rounds": rounds}
    sock = socket.socket(family_of(args.addr), socket.SOCK_STREAM)
    sock.settimeout(args.io_timeout)
    t0 = time.monotonic()
    told = True
    try:
        sock.connect((args.addr, args.port))
        rec["local_port"] = sock.getsockname()[1]
        for i, (send_len, recv_len) in enumerate(rounds):
            hdr = HEADER.pack(MODES["hold"], send_len, recv_len)
            send_all(sock, hdr, len(hdr), written)
            send_all(sock, block, send_len, written)
            if not recv_exact(sock, recv_len, read):
                raise EOFError("premature EOF")
            acked = wait_all_acked(sock, args.io_timeout)
            # Cleared before the report: a test that signals as soon as it
            # reads it must not have its signal cleared away.
            go.clear()
            emit({"event": "exchanged", "round": i, "written": written[0], "read": read[0],
                  "all_acked": acked, "kernel": tcp_info(sock),
                  "local_port": rec["local_port"]})
            # Hold the connection open until told to go on.
            deadline = time.monotonic() + args.max_seconds
            while not go.is_set() and time.monotonic() < deadline:
                if args.stop_file and os.path.exists(args.stop_file):
                    os.unlink(args.stop_file)
                    break
                go.wait(0.1)
            told = told and time.monotonic() < deadline
        rec["held_until_told"] = told
        sock.shutdown(socket.SHUT_WR)
        tail = sock.recv(CHUNK)
        if tail:
            read[0] += len(tail)
            rec["outcome"] = "unexpected_data"
        else:
            rec["outcome"] = "eof"
        rec["kernel"] = tcp_info(sock)
    except (OSError, EOFError) as e:
        rec["outcome"] = "error"
        rec["error"] = "%s: %s" % (type(e).__name__, e)
    finally:
        sock.close()
    rec["written"] = written[0]
    rec["read"] = read[0]
    rec["seconds"] = round(time.monotonic() - t0, 6)
    emit(rec)
    return 0 if rec["outcome"] == "eof" and rec.get("held_until_told") else 2


def main(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="mode", required=True)
    for name in ("server", "client", "hold"):
        s = sub.add_parser(name)
        s.add_argument("--addr", required=True)
        s.add_argument("--port", type=int, required=True)
        s.add_argument("--seed", type=int, default=1)
        s.add_argument("--io-timeout", type=float, default=30.0)
        if name == "server":
            s.add_argument("--max-seconds", type=float, default=600.0)
        elif name == "client":
            s.add_argument("--plan", required=True,
                           help="JSON list of [send_len, recv_len, normal|reset|refused|timeout]")
        else:
            s.add_argument("--rounds", required=True,
                           help="SEND:RECV[,SEND:RECV...] bytes per round")
            s.add_argument("--stop-file", help="go on when this file appears (it is removed)")
            s.add_argument("--max-seconds", type=float, default=300.0)
    args = p.parse_args(argv)
    if args.mode == "server":
        server = Server(args)
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: server.stop.set())
        return server.run()
    if args.mode == "client":
        return run_client(args)
    return run_hold(args)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
