#!/usr/bin/python3
"""Overhead of podtap's Go TLS probes on a Go HTTPS server and client (issue #19): the test's
Go peer (tests/e2e/go_tls_peer.go, built with Debian's Go 1.19) as a net/http TLS server in the
server pod, pinned to one CPU, and as its client in the client pod, pinned to another, making
--requests HTTP/1.1 keep-alive requests one after another over one connection. Both are Go
programs, so both ends carry the Go TLS probes (uprobes at the entry and every RET of
crypto/tls.(*Conn).Read and Write) when the agent parses HTTP.

Each round runs the client once per mode, in this order: no agent, podtap with HTTP parsing,
podtap with TCP only (no socket data, no uprobes), no agent again; a mode's ratio is its
requests per second over the mean of the round's two runs without an agent. With HTTP parsing
the run must also be counted exactly (request_total{tls="true"} on both sides = the requests
made), or the benchmark fails: a fast run that counts nothing would measure nothing. Medians
of the rounds. Root only; traffic stays on the test's veth.

  /usr/bin/python3 bench/go_tls_overhead.py [--requests 20000] [--rounds 5]
"""

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "e2e"))
import harness  # noqa: E402
import test_tls_go as tg  # noqa: E402  (building the Go peer, its certificate)

PORT = 9643
PINS = {"client": ["taskset", "-c", "0"], "server": ["taskset", "-c", "1"]}


def run_client(topo, peer, requests):
    """Requests per second of one client run; every answer must be a 200."""
    start = time.monotonic()
    p = subprocess.run(["ip", "netns", "exec", topo.client_ns] + PINS["client"]
                       + [peer, "client", "h1", "%s:%d" % (topo.SERVER_IP4, PORT)]
                       + ["/r"] * requests, capture_output=True, text=True, timeout=600)
    elapsed = time.monotonic() - start
    answers = p.stdout.split("\n")[:-1]
    if p.returncode != 0 or answers != ["GET 200"] * requests:
        raise RuntimeError("the Go client failed (rc %d, %d answers): %s"
                           % (p.returncode, len(answers), p.stderr[-500:]))
    return requests / elapsed


def counted(agent, base):
    """request_total{tls="true"} over both sides since `base` (a scrape)."""
    ex = agent.scrape()
    return ex.sum("request_total", {"tls": "true"}) - base.sum("request_total", {"tls": "true"})


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=20000)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench/go_tls_overhead.py: run as root")
    harness.cleanup_stale_namespaces()
    workdir = tempfile.mkdtemp(prefix="podtap-bench-go-")
    topo = harness.Topology().create()
    server = None
    try:
        peer = tg.build_go(workdir, "peer", tg.PEER_SOURCE)
        cert, key = tg.make_cert(workdir)
        pods = list(harness.make_pods(topo))
        server = subprocess.Popen(
            ["ip", "netns", "exec", topo.server_ns] + PINS["server"]
            + [peer, "server", "h1", "%s:%d" % (topo.SERVER_IP4, PORT), cert, key,
               os.path.join(workdir, "server.log")],
            stdout=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
        if server.stdout.readline().strip() != "listening":
            raise RuntimeError("the Go server did not start")
        run_client(topo, peer, 1000)  # warm-up
        modes = {"podtap: HTTP parsing": [], "podtap: TCP only": ["--capture-payload", "false"]}
        ratios = {m: [] for m in modes}
        for i in range(args.rounds):
            before = run_client(topo, peer, args.requests)
            runs = {}
            for mode, extra in modes.items():
                agent = harness.Agent(workdir, pods, log_level="warn", extra_args=extra).start()
                try:
                    agent.wait_ready()
                    time.sleep(2)  # the TLS scan that finds the server's binary runs at start
                    base = agent.scrape()
                    runs[mode] = run_client(topo, peer, args.requests)
                    if not extra:
                        want = 2 * args.requests
                        deadline = time.monotonic() + 20
                        while counted(agent, base) != want and time.monotonic() < deadline:
                            time.sleep(0.2)
                        if counted(agent, base) != want:
                            raise RuntimeError("podtap counted %d of the %d requests (both sides)"
                                               % (counted(agent, base), want))
                finally:
                    agent.stop()
            after = run_client(topo, peer, args.requests)
            baseline = (before + after) / 2
            for mode, rps in runs.items():
                ratios[mode].append(rps / baseline)
                print("round %d %-22s baseline %7.0f req/s | mode %7.0f req/s | ratio %.3f"
                      % (i + 1, mode, baseline, rps, rps / baseline), flush=True)
        print()
        print("| Go HTTPS client -> Go HTTPS server, HTTP/1.1 keep-alive | median throughput "
              "ratio (mode / no agent), %d rounds of %d requests |" % (args.rounds,
                                                                       args.requests))
        print("|---|---:|")
        for mode, r in ratios.items():
            print("| %s | %.3f |" % (mode, statistics.median(r)))
    finally:
        if server is not None:
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=10)
            server.stdout.close()
        topo.destroy()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
