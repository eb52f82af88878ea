#!/usr/bin/python3
"""Soak: the agent under connection churn for a long run, watched for leaks.

Two namespace pods (the e2e topology); in the server pod nginx serves HTTP/1.1
and h2c, and a TCP sink reads and discards whatever it gets. From the client
pod, three workloads run side by side until the time is up:
  - HTTP/1: wrk with `Connection: close` (a new connection per request) in
    10 s rounds, alternating with curl batches of 50 keep-alive requests;
  - HTTP/2: h2load rounds (4 connections, 10 streams in flight, 2000
    requests) against nginx's h2c listener;
  - garbage: short connections writing 1 to 65536 random bytes to the sink.
Every 10 s the agent's RSS (VmRSS of /proc/PID/status) and open file
descriptors (/proc/PID/fd) are sampled. It passes when the agent never exited,
RSS and fds are flat after the warm-up (the mean of the last three samples is
less than 5% above the mean of the first three after the warm-up), and every
podtap_events_lost_total reason is 0 or explained (see EXPLAINED). The self
metrics are printed at the end. Root only; traffic stays on the test's veth.

  /usr/bin/python3 bench/soak.py [--minutes 10] [--warmup-minutes 2]

PODTAP_AGENT overrides the agent binary (default build/podtap-agent).
"""

import argparse
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "e2e"))
import harness  # noqa: E402
from http_overhead import NGINX_CONF  # noqa: E402  (the same nginx: HTTP/1.1 and h2c)

H1_PORT, H2_PORT, SINK_PORT = 8080, 8081, 8082
SAMPLE_SECONDS = 10
GROWTH_LIMIT = 0.05

# Loss reasons that can be non-zero on a busy node without anything being
# wrong, and why. The check for each gets the final scrape.
EXPLAINED = {
    # Lifecycle records the ring refused are explained when they were
    # recovered (podtap_events_recovered_total).
    "ringbuf_full": lambda ex: ex.sum("podtap_events_recovered_total"),
}


def sink(addr, port, stop_file):
    """The TCP sink (run in the server pod): reads and discards until EOF."""
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((addr, port))
    srv.listen(128)
    srv.settimeout(1.0)

    def drain(conn):
        with conn:
            conn.settimeout(10)
            try:
                while conn.recv(65536):
                    pass
            except OSError:
                pass

    while not os.path.exists(stop_file):
        try:
            conn, _ = srv.accept()
        except socket.timeout:
            continue
        threading.Thread(target=drain, args=(conn,), daemon=True).start()


def garbage(addr, port, seconds, seed):
    """Garbage client (run in the client pod): short connections of random
    bytes to the sink for `seconds`; prints how many."""
    rng = random.Random(seed)
    n = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        with socket.create_connection((addr, port), timeout=5) as s:
            s.sendall(rng.randbytes(rng.randint(1, 65536)))
        n += 1
        time.sleep(0.02)
    print(n)


class Workloads:
    """The three client loops, each in a thread, until `deadline`."""

    def __init__(self, ns, addr, deadline):
        self.ns, self.addr, self.deadline = ns, addr, deadline
        self.counts = {"wrk requests": 0, "curl requests": 0, "h2load requests": 0,
                       "garbage connections": 0}
        self.errors = []
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._loop, args=(f,), daemon=True)
                        for f in (self._http1, self._http2, self._garbage)]

    def _run(self, args, timeout):
        p = subprocess.run(harness._orphan_guard("KILL") + ["ip", "netns", "exec", self.ns] + args,
                           capture_output=True, text=True, timeout=timeout,
                           stdin=subprocess.DEVNULL)
        if p.returncode != 0:
            raise RuntimeError("%s: rc %d: %s" % (args[0], p.returncode, p.stderr[-300:]))
        return p.stdout

    def _add(self, key, n):
        with self.lock:
            self.counts[key] += n

    def _loop(self, step):
        round_ = 0
        while time.monotonic() < self.deadline - 1:
            try:
                step(round_, max(1, int(min(10, self.deadline - time.monotonic()))))
            except (RuntimeError, subprocess.TimeoutExpired, AttributeError) as e:
                with self.lock:
                    self.errors.append(str(e))
                time.sleep(1)
            round_ += 1

    def _http1(self, round_, seconds):
        url = "http://%s:%d/" % (self.addr, H1_PORT)
        if round_ % 2 == 0:
            out = self._run(["wrk", "-t1", "-c4", "-d%ds" % seconds, "-H", "Connection: close",
                             url], seconds + 30)
            self._add("wrk requests", int(re.search(r"(\d+) requests in", out).group(1)))
        else:
            out = self._run(["curl", "-sS", "--noproxy", "*", "-w", "%{http_code}\\n"]
                            + ["-o", "/dev/null", url] * 50, 60)
            self._add("curl requests", out.split().count("200"))

    def _http2(self, round_, seconds):
        out = self._run(["h2load", "-n2000", "-c4", "-m10",
                         "http://%s:%d/" % (self.addr, H2_PORT)], 120)
        self._add("h2load requests",
                  int(re.search(r"requests: \d+ total, \d+ started, (\d+) done", out).group(1)))

    def _garbage(self, round_, seconds):
        out = self._run(["/usr/bin/python3", os.path.abspath(__file__), "--garbage", self.addr,
                         str(SINK_PORT), str(seconds), str(round_)], seconds + 30)
        self._add("garbage connections", int(out.strip()))


def sample(pid):
    with open("/proc/%d/status" % pid) as f:
        rss_kb = int(re.search(r"^VmRSS:\s+(\d+) kB", f.read(), re.M).group(1))
    return rss_kb, len(os.listdir("/proc/%d/fd" % pid))


def growth(values):
    first = sum(values[:3]) / len(values[:3])
    last = sum(values[-3:]) / len(values[-3:])
    return (last - first) / first


def wait_listening(ns, port, what, proc):
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("%s exited with %s" % (what, proc.returncode))
        out = harness.sh(["ip", "netns", "exec", ns, "ss", "-Htln", "sport = :%d" % port]).stdout
        if out.strip():
            return
        time.sleep(0.1)
    raise RuntimeError("%s not listening on %d within 10 s" % (what, port))


def soak(args):
    harness.cleanup_stale_namespaces()
    topo = harness.Topology().create()
    workdir = tempfile.mkdtemp(prefix="podtap-soak-")
    stop_file = os.path.join(workdir, "stop")
    procs = []
    agent = None
    try:
        client, server = harness.make_pods(topo)
        addr = topo.SERVER_IP4
        conf = os.path.join(workdir, "nginx.conf")
        with open(conf, "w") as f:
            f.write(NGINX_CONF.format(dir=workdir, addr=addr, port=H1_PORT, h2port=H2_PORT))
        nginx = subprocess.Popen(harness._orphan_guard("TERM")
                                 + ["ip", "netns", "exec", topo.server_ns, "/usr/sbin/nginx",
                                    "-p", workdir, "-c", conf, "-g", "daemon off;"],
                                 stdin=subprocess.DEVNULL)
        procs.append(nginx)
        wait_listening(topo.server_ns, H2_PORT, "nginx", nginx)
        sinkp = subprocess.Popen(harness._orphan_guard("TERM")
                                 + ["ip", "netns", "exec", topo.server_ns, "/usr/bin/python3",
                                    os.path.abspath(__file__), "--sink", addr, str(SINK_PORT),
                                    stop_file], stdin=subprocess.DEVNULL)
        procs.append(sinkp)
        wait_listening(topo.server_ns, SINK_PORT, "sink", sinkp)

        agent = harness.Agent(workdir, [client, server], log_level="warn").start()
        agent.wait_ready()
        pid = agent.popen.pid
        start = time.monotonic()
        deadline = start + args.minutes * 60
        work = Workloads(topo.client_ns, addr, deadline)
        for t in work.threads:
            t.start()
        samples = []  # (seconds since start, rss kB, fds)
        crashed = None
        print("time_s rss_kb fds", flush=True)
        while True:
            if agent.popen.poll() is not None:
                crashed = "agent exited with %s\n%s" % (agent.popen.returncode, agent.log_tail())
                break
            rss, fds = sample(pid)
            t = time.monotonic() - start
            samples.append((t, rss, fds))
            print("%6.0f %6d %3d" % (t, rss, fds), flush=True)
            if time.monotonic() + SAMPLE_SECONDS > deadline:
                break
            time.sleep(SAMPLE_SECONDS - (time.monotonic() - start) % SAMPLE_SECONDS)
        for t in work.threads:
            t.join(timeout=150)
        if agent.popen.poll() is not None and crashed is None:
            crashed = "agent exited with %s\n%s" % (agent.popen.returncode, agent.log_tail())
        return report(args, agent, samples, work, crashed)
    finally:
        with open(stop_file, "w"):
            pass
        if agent is not None:
            agent.stop()
        for p in procs:
            harness._stop_pid(p, signal.SIGTERM)
        topo.destroy()
        shutil.rmtree(workdir, ignore_errors=True)


def report(args, agent, samples, work, crashed):
    ok = True
    print()
    print("workload (%.0f min): %s" % (args.minutes, ", ".join(
        "%s %d" % kv for kv in work.counts.items())))
    if work.errors:
        print("workload errors (%d): %s" % (len(work.errors), work.errors[:5]))
        ok = False
    if crashed:
        print("FAIL: " + crashed)
        return False
    after = [s for s in samples if s[0] >= args.warmup_minutes * 60]
    if len(after) < 6:
        print("FAIL: only %d samples after the warm-up; run longer" % len(after))
        return False
    for name, col in (("RSS kB", 1), ("open fds", 2)):
        values = [s[col] for s in after]
        g = growth(values)
        verdict = "ok" if g < GROWTH_LIMIT else "FAIL"
        ok = ok and g < GROWTH_LIMIT
        print("%s after warm-up: first %d, last %d, min %d, max %d; growth %+.1f%% (limit "
              "%.0f%%): %s" % (name, values[0], values[-1], min(values), max(values), 100 * g,
                               100 * GROWTH_LIMIT, verdict))
    ex = agent.scrape()
    print()
    print("self metrics at the end:")
    for line in ex.text.splitlines():
        if line.startswith("podtap_") and "_bucket{" not in line:
            print("  " + line)
    print("  tcp_open_total (all series) %d, request_total (all series) %d"
          % (ex.sum("tcp_open_total"), ex.sum("request_total")))
    for s in ex.select("podtap_events_lost_total"):
        reason = s.labels["reason"]
        if s.value == 0:
            continue
        limit = EXPLAINED[reason](ex) if reason in EXPLAINED else 0
        explained = s.value <= limit
        ok = ok and explained
        print("lost %s = %d: %s" % (reason, s.value, "explained (recovered %d)" % limit
                                    if explained else "UNEXPLAINED"))
    print()
    print("soak: %s" % ("PASS" if ok else "FAIL"))
    return ok


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=10)
    ap.add_argument("--warmup-minutes", type=float, default=2)
    ap.add_argument("--sink", nargs=3, metavar=("ADDR", "PORT", "STOP_FILE"),
                    help=argparse.SUPPRESS)
    ap.add_argument("--garbage", nargs=4, metavar=("ADDR", "PORT", "SECONDS", "SEED"),
                    help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.sink:
        return sink(args.sink[0], int(args.sink[1]), args.sink[2])
    if args.garbage:
        return garbage(args.garbage[0], int(args.garbage[1]), float(args.garbage[2]),
                       int(args.garbage[3]))
    if os.geteuid() != 0:
        sys.exit("bench/soak.py: run as root")
    sys.exit(0 if soak(args) else 1)


if __name__ == "__main__":
    main()
