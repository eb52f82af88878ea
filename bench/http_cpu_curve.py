#!/usr/bin/python3
"""CPU per request below saturation (issue #17): what podtap costs for each request at fixed
request rates, HTTP/1.1 keep-alive and HTTP/2 (cleartext, prior knowledge): its kernel programs'
run time (kernel.bpf_stats_enabled: every run of each program the agent attached, whichever
process ran it) and the agent's own CPU (every thread's time on CPU, /proc/PID/task/*/schedstat),
per request and per observed side (both ends of every request are on the node, so both are
traced), and the latency it adds. The baseline, measured in the same run: the CPU the request
itself costs, client and server, without an agent (their schedstat), and its latency.

A paced client (this file with --client, in the client pod) sends GET requests on one
connection to nginx in the server pod (one worker; the client and nginx pinned to two CPUs),
request i at t0 + i/rate, one at a time, for a fixed time; a run that kept less than 97% of its
rate fails. Each request's latency is from its send to the last byte of its response; a run
reports their p50 and p99. HTTP/2 needs a client of its own here, h2load cannot pace: one
stream per request, the next only once the previous ended. Each round runs, at each rate and
for each protocol: no agent, podtap with HTTP parsing on each syscall hook (one program at
tp_btf/sys_exit; entry and exit programs on each syscall's tracepoints), podtap with TCP only,
no agent again.
With HTTP parsing the agent must have counted every response on both sides
(response_total{authority="bench"}), or the run fails. Medians of the rounds; the added
latency of a round is the mode's p50 (p99) minus the mean of its two runs without an agent.
Writes a markdown table to stdout and, with --png, the curves (one per protocol and mode)
through gnuplot (Debian's gnuplot-nox, `make deps`). What this leaves out: the syscall slow
path a traced task takes and cache effects, which only a throughput ratio shows
(bench/http_overhead.py); and the shape with only the server on the node: the agent traces
every TCP socket of the machine (no pod or namespace filter), so a client on this machine is
always traced too. The programs also run for the machine's other syscalls (they return at once
for a socket they do not track): run it on a quiet machine. Root only; traffic stays on the
test's veth.

  /usr/bin/python3 bench/http_cpu_curve.py [--rates 1000,3000,10000] [--seconds 5] \\
      [--rounds 3] [--protocols http1,http2] [--png docs/http_cpu_curve.png]
"""

import argparse
import json
import os
import shutil
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "e2e"))
sys.path.insert(0, HERE)
import harness  # noqa: E402
import http_overhead as ho  # noqa: E402  (its nginx, CPU pinning and agent modes)

STATS = "/proc/sys/kernel/bpf_stats_enabled"
SETTLE_S = 3
COUNT_WAIT_S = 5  # for the agent's counters to take the run's last responses
SIDES = 2  # observed sides per request: the client's and the server's
AUTHORITY = "bench"
REQUEST = b"GET / HTTP/1.1\r\nHost: %s\r\n\r\n" % AUTHORITY.encode()

# HTTP/2 (RFC 9113): frame types and flags the client uses.
H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, RST_STREAM, SETTINGS, GOAWAY, WINDOW_UPDATE = 0x0, 0x1, 0x3, 0x4, 0x7, 0x8
END_STREAM, ACK, END_HEADERS = 0x1, 0x1, 0x4
# The request's header block in HPACK (RFC 7541) from the static table only, so that it is the
# same bytes every time: :method GET (index 2), :scheme http (6), :path / (4), each indexed,
# then :authority as a literal without indexing of name index 1.
H2_BLOCK = b"\x82\x86\x84\x01" + bytes([len(AUTHORITY)]) + AUTHORITY.encode()
# nginx's :status 200 is the static table's index 8, indexed.
H2_STATUS_200 = 0x88
# The connection's receive window, the protocol's initial one (the client never raises it):
# DATA bytes received are given back with a WINDOW_UPDATE once they reach half of it.
H2_WINDOW = 65535
# Frames one response may take: HEADERS and DATA, and the odd SETTINGS or WINDOW_UPDATE.
H2_MAX_FRAMES = 64


class Http1:
    """HTTP/1.1 keep-alive: GET /, then one whole response (headers, then Content-Length bytes
    of body)."""

    def __init__(self, s):
        self.s = s
        self.buf = b""
        self.done = 0

    def exchange(self):
        self.s.sendall(REQUEST)
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end >= 0:
                head = self.buf[:end].decode("latin-1").lower()
                length = int(head.split("content-length:")[1].split("\r\n")[0])
                if len(self.buf) >= end + 4 + length:
                    if not head.startswith("http/1.1 200"):
                        raise RuntimeError("unexpected response: %r" % head[:40])
                    self.buf = self.buf[end + 4 + length:]
                    self.done += 1
                    return
            data = self.s.recv(65536)
            if not data:
                raise RuntimeError("connection closed after %d responses" % self.done)
            self.buf += data


def h2_frame(ftype, flags, stream, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes([ftype, flags]) \
        + struct.pack(">I", stream) + payload


class Http2:
    """HTTP/2 with prior knowledge: the connection preface, then per request one HEADERS frame
    (END_STREAM: a GET has no body) on the next odd stream id, and its response's frames up to
    that stream's END_STREAM."""

    def __init__(self, s):
        self.s = s
        self.buf = b""
        self.stream = 1
        self.done = 0
        self.unacked = 0  # DATA bytes received and not given back yet
        s.sendall(H2_PREFACE + h2_frame(SETTINGS, 0, 0))
        # The server's preface is a SETTINGS frame, first; it wants an ACK.
        ftype, flags, _, _ = self.read_frame()
        if ftype != SETTINGS or flags & ACK:
            raise RuntimeError("the server's first frame is type %d flags %d, not SETTINGS"
                               % (ftype, flags))
        s.sendall(h2_frame(SETTINGS, ACK, 0))

    def read_frame(self):
        """(type, flags, stream id, payload) of the next frame."""
        # Each recv adds at least a byte to a frame of at most 16 KiB (the default
        # SETTINGS_MAX_FRAME_SIZE, which the client does not raise).
        while len(self.buf) < 9 or len(self.buf) < 9 + int.from_bytes(self.buf[:3], "big"):
            data = self.s.recv(65536)
            if not data:
                raise RuntimeError("connection closed after %d responses" % self.done)
            self.buf += data
        length = int.from_bytes(self.buf[:3], "big")
        frame = (self.buf[3], self.buf[4], int.from_bytes(self.buf[5:9], "big") & 0x7fffffff,
                 self.buf[9:9 + length])
        self.buf = self.buf[9 + length:]
        return frame

    def exchange(self):
        stream = self.stream
        self.stream += 2
        self.s.sendall(h2_frame(HEADERS, END_STREAM | END_HEADERS, stream, H2_BLOCK))
        for _ in range(H2_MAX_FRAMES):
            ftype, flags, sid, payload = self.read_frame()
            if ftype == DATA:
                self.unacked += len(payload)  # padding included: it counts against the window
            if ftype == GOAWAY or (ftype == RST_STREAM and sid == stream):
                raise RuntimeError("stream %d: the server sent frame type %d" % (stream, ftype))
            if ftype == SETTINGS and not flags & ACK:
                self.s.sendall(h2_frame(SETTINGS, ACK, 0))
            if sid != stream:
                continue
            if ftype == HEADERS and payload[:1] != bytes([H2_STATUS_200]):
                raise RuntimeError("stream %d: unexpected response header block %r"
                                   % (stream, payload[:16]))
            if ftype in (HEADERS, DATA) and flags & END_STREAM:
                break
        else:
            raise RuntimeError("stream %d: no END_STREAM in %d frames" % (stream, H2_MAX_FRAMES))
        self.done += 1
        if self.unacked >= H2_WINDOW // 2:
            self.s.sendall(h2_frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", self.unacked)))
            self.unacked = 0


# Per protocol: its name in the table, nginx's port for it, the client's connection.
PROTOCOLS = {"http1": ("HTTP/1.1", ho.PORT, Http1), "http2": ("HTTP/2", ho.H2_PORT, Http2)}


def client(proto, addr, rate, seconds):
    """The paced client: prints one JSON line {requests, cpu_ns (its whole life), elapsed_s,
    p50_us, p99_us}. Its socket blocks without a timeout (a timeout would add a poll syscall to
    every send and recv, which the programs would see too); the parent's timeout bounds it."""
    _, port, conn = PROTOCOLS[proto]
    s = socket.create_connection((addr, port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    c = conn(s)
    n = int(rate * seconds)
    latencies = []
    t0 = time.monotonic()
    for i in range(n):
        due = t0 + i / rate
        now = time.monotonic()
        if now < due:
            time.sleep(due - now)
        sent = time.monotonic()
        c.exchange()
        latencies.append(time.monotonic() - sent)
    elapsed = time.monotonic() - t0
    s.close()
    cuts = statistics.quantiles(latencies, n=100)
    print(json.dumps({"requests": n, "cpu_ns": on_cpu_ns(os.getpid()), "elapsed_s": elapsed,
                      "p50_us": cuts[49] * 1e6, "p99_us": cuts[98] * 1e6}))


def on_cpu_ns(pid):
    """Time every thread of `pid` has spent on a CPU, in ns (schedstat's first field)."""
    total = 0
    for tid in os.listdir("/proc/%d/task" % pid):
        with open("/proc/%d/task/%s/schedstat" % (pid, tid)) as f:
            total += int(f.read().split()[0])
    return total


def prog_run_ns(ids):
    """Total run time of the programs `ids`, in ns (kernel.bpf_stats_enabled must be on)."""
    shown = json.loads(subprocess.run(["bpftool", "-j", "prog", "show"], capture_output=True,
                                      text=True, check=True).stdout)
    return sum(p.get("run_time_ns", 0) for p in shown if p["id"] in ids)


def worker_pid(master):
    with open("/proc/%d/task/%d/children" % (master, master)) as f:
        children = [int(p) for p in f.read().split()]
    if len(children) != 1:
        raise RuntimeError("nginx has %d workers, expected 1" % len(children))
    return children[0]


def run_client(topo, proto, rate, seconds):
    out = subprocess.run(["ip", "netns", "exec", topo.client_ns] + ho.PIN["client"]
                         + ["/usr/bin/python3", os.path.abspath(__file__), "--client", proto,
                            topo.SERVER_IP4, str(rate), str(seconds)],
                         capture_output=True, text=True, timeout=seconds + 60, check=True)
    return json.loads(out.stdout)


def responses(agent):
    """Responses the agent counted for the paced client, both sides."""
    return agent.scrape().sum("response_total", {"authority": AUTHORITY})


def check_counted(agent, base, expected):
    deadline = time.monotonic() + COUNT_WAIT_S
    while True:
        got = responses(agent) - base
        if got == expected:
            return
        if got > expected or time.monotonic() > deadline:
            raise RuntimeError("the agent counted %d responses, expected %d (both sides)"
                               % (got, expected))
        time.sleep(0.2)


def measure(topo, nginx_worker, proto, rate, seconds, agent=None, parsing=False):
    """The run's requests, CPU ns (the client's and the server's, and with an agent its kernel
    programs' and its own) and latency percentiles in µs; with `parsing`, checks that the agent
    counted every response on both sides."""
    server0 = on_cpu_ns(nginx_worker)
    if agent:
        ids = {int(p["prog_id"]) for p in agent.attached_programs() if p["prog_id"]}
        # Scraped outside the measured span: a scrape is the agent's work, and traffic too.
        base = responses(agent) if parsing else 0
        progs0, agent0 = prog_run_ns(ids), on_cpu_ns(agent.popen.pid)
    r = run_client(topo, proto, rate, seconds)
    out = {"requests": r["requests"], "client": r["cpu_ns"],
           "server": on_cpu_ns(nginx_worker) - server0, "progs": 0, "agent": 0,
           "p50": r["p50_us"], "p99": r["p99_us"]}
    if agent:
        out["progs"] = prog_run_ns(ids) - progs0
        out["agent"] = on_cpu_ns(agent.popen.pid) - agent0
        if parsing:
            check_counted(agent, base, SIDES * r["requests"])
    if r["elapsed_s"] > seconds * 1.03:
        raise RuntimeError("the client kept %.0f req/s of the %d asked: the rate is above what "
                           "this machine serves; lower --rates"
                           % (r["requests"] / r["elapsed_s"], rate))
    return out


# HTTP parsing on each syscall hook of the socket data programs (--syscall-hook), and TCP only.
PARSING = ("podtap: HTTP parsing, sys_exit", "podtap: HTTP parsing, syscall pairs")
MODES = {PARSING[0]: ["--syscall-hook", "sys_exit"], PARSING[1]: ["--syscall-hook", "pairs"],
         "podtap: TCP only": ["--capture-payload", "false"]}


def plot(curve, protos, rates, path):
    data = path + ".dat"
    curves = [(p, m) for p in protos for m in MODES]
    with open(data, "w") as f:
        for rate in rates:
            f.write("%d %s\n" % (rate, " ".join("%.4f" % curve[(p, m, rate)] for p, m in curves)))
    lines = ["'%s' using 1:%d with linespoints title '%s, %s'"
             % (data, col, PROTOCOLS[p][0], m.split(": ")[1])
             for col, (p, m) in enumerate(curves, start=2)]
    script = ("set terminal pngcairo size 800,480 noenhanced; set output '%s';"
              "set title 'podtap CPU (kernel programs + agent) per request per observed side';"
              "set xlabel 'requests per second (one connection, one request at a time)';"
              "set ylabel 'microseconds of CPU';"
              "set logscale x; set xrange [%g:%g]; set yrange [0:*]; set key top right;"
              "set grid;"
              "plot %s, 0.5 with lines dashtype 2 title 'goal: 0.5 us'"
              % (path, rates[0] * 0.8, rates[-1] * 1.25, ", ".join(lines)))
    subprocess.run(["gnuplot", "-e", script], check=True)
    os.unlink(data)


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--client":
        client(sys.argv[2], sys.argv[3], float(sys.argv[4]), float(sys.argv[5]))
        return
    ap = argparse.ArgumentParser()
    ap.add_argument("--rates", default="1000,3000,10000")
    ap.add_argument("--seconds", type=float, default=5)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--protocols", default="http1,http2",
                    help="comma-separated, of %s" % ", ".join(PROTOCOLS))
    ap.add_argument("--client-cpu", type=int, default=0)
    ap.add_argument("--server-cpu", type=int, default=1)
    ap.add_argument("--png", help="write the curves as a PNG plot here")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench/http_cpu_curve.py: run as root")
    rates = [int(r) for r in args.rates.split(",")]
    protos = list(dict.fromkeys(args.protocols.split(",")))
    if any(p not in PROTOCOLS for p in protos):
        sys.exit("bench/http_cpu_curve.py: --protocols takes %s" % ", ".join(PROTOCOLS))
    ho.PIN["client"] = ["taskset", "-c", str(args.client_cpu)]
    ho.PIN["server"] = ["taskset", "-c", str(args.server_cpu)]
    harness.cleanup_stale_namespaces()
    topo = harness.Topology().create()
    workdir = tempfile.mkdtemp(prefix="podtap-bench-")
    nginx = None
    stats_old = None
    try:
        pods = list(harness.make_pods(topo))
        nginx = ho.start_nginx(topo.server_ns, workdir, topo.SERVER_IP4)
        worker = worker_pid(nginx.pid)
        for proto in protos:
            run_client(topo, proto, 1000, 1)  # warm-up
        with open(STATS) as f:
            stats_old = f.read().strip()
        with open(STATS, "w") as f:
            f.write("1")
        keys = [(p, m, r) for p in protos for m in MODES for r in rates]
        progs = {k: [] for k in keys}
        agent = {k: [] for k in keys}
        added = {k: [] for k in keys}  # (p50, p99) minus the round's runs without an agent, µs
        app = {(p, r): [] for p in protos for r in rates}
        latency = {(p, r): [] for p in protos for r in rates}  # (p50, p99) without an agent
        for i in range(args.rounds):
            for rate in rates:
                for proto in protos:
                    before = measure(topo, worker, proto, rate, args.seconds)
                    runs = {}
                    for mode, extra in MODES.items():
                        held = ho.AgentMode(workdir, pods, extra)
                        try:
                            # Its start-up work (TLS library scans, adoption) is not per request.
                            time.sleep(SETTLE_S)
                            runs[mode] = measure(topo, worker, proto, rate, args.seconds,
                                                 held.agent, mode in PARSING)
                        finally:
                            held.stop()
                    after = measure(topo, worker, proto, rate, args.seconds)
                    base = (before, after)
                    app[(proto, rate)].append(statistics.mean(
                        (b["client"] + b["server"]) / b["requests"] / 1e3 for b in base))
                    latency[(proto, rate)].append(
                        tuple(statistics.mean(b[q] for b in base) for q in ("p50", "p99")))
                    for mode, run in runs.items():
                        k = (proto, mode, rate)
                        # Per request and per observed side, in µs.
                        progs[k].append(run["progs"] / run["requests"] / SIDES / 1e3)
                        agent[k].append(run["agent"] / run["requests"] / SIDES / 1e3)
                        added[k].append(tuple(run[q] - b for q, b in
                                              zip(("p50", "p99"), latency[(proto, rate)][-1])))
                        print("round %d %6d req/s %-8s %-22s per side: programs %.3f us, "
                              "agent %.3f us; the request itself %.1f us (client + server, "
                              "no agent); added p50 %+.1f us, p99 %+.1f us"
                              % (i + 1, rate, PROTOCOLS[proto][0], mode, progs[k][-1],
                                 agent[k][-1], app[(proto, rate)][-1], *added[k][-1]),
                              flush=True)
        med = statistics.median

        def med2(pairs):
            return tuple(med(q) for q in zip(*pairs))

        total = {k: med(a + b for a, b in zip(progs[k], agent[k])) for k in keys}
        print()
        print("| requests/s | protocol | mode | kernel programs, µs | agent, µs | podtap per "
              "request per observed side, µs | the request's own CPU (client + server, no "
              "agent), µs | podtap (both sides) / the request's own CPU | latency p50 / p99, "
              "no agent, µs | added p50 / p99 latency, µs |")
        print("|---:|---|---|---:|---:|---:|---:|---:|---:|---:|")
        for rate in rates:
            for proto in protos:
                own = med(app[(proto, rate)])
                for mode in MODES:
                    k = (proto, mode, rate)
                    print("| %d | %s | %s | %.3f | %.3f | **%.3f** | %.1f | %.3f | %.0f / %.0f "
                          "| %+.1f / %+.1f |"
                          % (rate, PROTOCOLS[proto][0], mode, med(progs[k]), med(agent[k]),
                             total[k], own, SIDES * total[k] / own,
                             *med2(latency[(proto, rate)]), *med2(added[k])))
        print("\nmedians of %d rounds of %g s per rate, protocol and mode"
              % (args.rounds, args.seconds))
        if args.png:
            plot(total, protos, rates, args.png)
            print("plot written to %s" % args.png)
    finally:
        if stats_old is not None:
            with open(STATS, "w") as f:
                f.write(stats_old)
        if nginx is not None:
            nginx.terminate()
            nginx.wait(timeout=10)
        topo.destroy()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
