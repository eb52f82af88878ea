#!/usr/bin/python3
"""Churn: 1,000 new connections per second for 60 s, with the agent attached.

Two namespace pods (the e2e topology); nginx in the server pod; in the client
pod a paced client (this file, run with --client) starts connection i at
t0 + i/rate: connect, one HTTP/1.1 GET with `Connection: close`, read the
response to EOF (nginx closes first), close. The agent (default flags) runs
throughout; its CPU time (utime + stime of /proc/PID/stat) is read over an
idle stretch before the churn (the baseline) and over the churn itself.

It reports the agent's CPU share (CPU seconds / wall seconds) idle and under
churn, and CPU time per connection, and checks that nothing was lost: every
podtap_events_lost_total reason is 0, and tcp_open_total, tcp_close_total,
request_total and response_total grew by exactly the number of connections the
client made, on both ends (client pod outbound, server pod inbound). Exits 1
when a check fails or the client missed its pace by more than 2%. Root only;
traffic stays on the test's veth.

  /usr/bin/python3 bench/churn.py [--rate 1000] [--seconds 60]

PODTAP_AGENT overrides the agent binary (default build/podtap-agent).
"""

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "e2e"))
import harness  # noqa: E402
import nginx  # noqa: E402

PORT = 8080
IDLE_SECONDS = 10
PACE_SLACK = 0.02  # the client may take this much longer than planned
COUNT_TIMEOUT = 30
HTTP = """
    access_log off;
    server {
        listen %(addr)s:%(port)d;
        location / { return 200 "ok\\n"; }
    }
"""


def paced_client(addr, port, rate, seconds):
    """Connection i starts at t0 + i/rate (at once when behind); prints a JSON
    summary: connections made, answered with 200, wall time, worst lag."""
    req = ("GET / HTTP/1.1\r\nHost: %s:%d\r\nUser-Agent: podtap-churn\r\n"
           "Connection: close\r\n\r\n" % (addr, port)).encode()
    n = int(rate * seconds)
    ok = 0
    max_lag = 0.0
    t0 = time.monotonic()
    for i in range(n):
        lag = time.monotonic() - (t0 + i / rate)
        if lag < 0:
            time.sleep(-lag)
        max_lag = max(max_lag, lag)
        with socket.create_connection((addr, port), timeout=10) as s:
            s.sendall(req)
            resp = b""
            while True:
                chunk = s.recv(4096)
                if not chunk:
                    break
                resp += chunk
        ok += resp.startswith(b"HTTP/1.1 200 ")
    print(json.dumps({"connections": n, "ok": ok, "seconds": time.monotonic() - t0,
                      "max_lag": max_lag}))


def cpu_seconds(pid):
    """utime + stime of process `pid` (all its threads), seconds."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def counts(ex, client, server):
    """(family, end) -> value, for the families checked."""
    ends = {"client outbound": {"pod": client.name, "direction": "outbound"},
            "server inbound": {"pod": server.name, "direction": "inbound"}}
    return {(fam, end): ex.sum(fam, match)
            for fam in ("tcp_open_total", "tcp_close_total", "request_total", "response_total")
            for end, match in ends.items()}


def churn(args):
    harness.cleanup_stale_namespaces()
    topo = harness.Topology().create()
    workdir = tempfile.mkdtemp(prefix="podtap-churn-")
    server_nginx = None
    agent = None
    try:
        client, server = harness.make_pods(topo)
        # 60,000 connections a minute from one address: the whole port range.
        harness.sh(["ip", "netns", "exec", topo.client_ns, "sysctl", "-q", "-w",
                    "net.ipv4.ip_local_port_range=1024 65535"])
        server_nginx = nginx.Nginx(topo.server_ns, nginx.nginx_conf(HTTP),
                                   {"addr": topo.SERVER_IP4, "port": PORT}, {}, [PORT], 1,
                                   prefix="podtap-churn-nginx-").start()
        agent = harness.Agent(workdir, [client, server], log_level="warn").start()
        agent.wait_ready()
        pid = agent.popen.pid
        before = counts(agent.scrape(), client, server)

        c0, t0 = cpu_seconds(pid), time.monotonic()
        time.sleep(IDLE_SECONDS)
        idle_cpu, idle_wall = cpu_seconds(pid) - c0, time.monotonic() - t0

        c0, t0 = cpu_seconds(pid), time.monotonic()
        p = subprocess.run(harness._orphan_guard("KILL")
                           + ["ip", "netns", "exec", topo.client_ns, harness.PY,
                              os.path.abspath(__file__), "--client", topo.SERVER_IP4, str(PORT),
                              str(args.rate), str(args.seconds)],
                           capture_output=True, text=True, stdin=subprocess.DEVNULL,
                           timeout=args.seconds * 3 + 30)
        churn_cpu, churn_wall = cpu_seconds(pid) - c0, time.monotonic() - t0
        if p.returncode != 0:
            raise RuntimeError("client: rc %d: %s" % (p.returncode, p.stderr[-500:]))
        made = json.loads(p.stdout)
        n = made["connections"]

        # Every close is in the agent's counters shortly after the client is done.
        deadline = time.monotonic() + COUNT_TIMEOUT
        while True:
            ex = agent.scrape()
            after = counts(ex, client, server)
            if all(after[k] - before[k] >= n for k in after) or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        lost = {s.labels["reason"]: s.value for s in ex.select("podtap_events_lost_total")}
        return report(args, made, idle_cpu, idle_wall, churn_cpu, churn_wall,
                      {k: after[k] - before[k] for k in after}, lost)
    finally:
        if agent is not None:
            agent.stop()
        if server_nginx is not None:
            server_nginx.remove(workdir)
        topo.destroy()
        shutil.rmtree(workdir, ignore_errors=True)


def report(args, made, idle_cpu, idle_wall, churn_cpu, churn_wall, grew, lost):
    n = made["connections"]
    ok = True
    rate = n / made["seconds"]
    print("client: %d connections (%d answered 200) in %.2f s: %.0f/s (planned %d/s for %d s), "
          "worst lag %.1f ms" % (n, made["ok"], made["seconds"], rate, args.rate, args.seconds,
                                 1000 * made["max_lag"]))
    if made["ok"] != n or made["seconds"] > args.seconds * (1 + PACE_SLACK):
        print("FAIL: the client did not make every connection on pace")
        ok = False
    print("agent CPU idle: %.2f s over %.1f s = %.2f%% of one core"
          % (idle_cpu, idle_wall, 100 * idle_cpu / idle_wall))
    print("agent CPU under churn: %.2f s over %.1f s = %.2f%% of one core; %.1f us per connection "
          "(two sockets, four lifecycle events and their payload records)"
          % (churn_cpu, churn_wall, 100 * churn_cpu / churn_wall, 1e6 * churn_cpu / n))
    for (fam, end), v in sorted(grew.items()):
        good = v == n
        ok = ok and good
        print("  %-16s %-16s +%d%s" % (fam, end, v, "" if good else "  MISMATCH (want +%d)" % n))
    for reason, v in sorted(lost.items()):
        ok = ok and v == 0
        print("  podtap_events_lost_total{reason=%r} %d%s"
              % (reason, v, "" if v == 0 else "  LOST"))
    print("churn: %s" % ("PASS" if ok else "FAIL"))
    return ok


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rate", type=int, default=1000)
    ap.add_argument("--seconds", type=int, default=60)
    ap.add_argument("--client", nargs=4, metavar=("ADDR", "PORT", "RATE", "SECONDS"),
                    help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.client:
        return paced_client(args.client[0], int(args.client[1]), float(args.client[2]),
                            float(args.client[3]))
    if os.geteuid() != 0:
        sys.exit("bench/churn.py: run as root")
    sys.exit(0 if churn(args) else 1)


if __name__ == "__main__":
    main()
