#!/usr/bin/python3
"""Overhead of podtap on a real HTTP server: wrk (HTTP/1.1 keep-alive) and
h2load (HTTP/2 over cleartext, 10 streams in flight per connection) against
nginx between two namespace pods. The client is pinned to one CPU and nginx
to another (taskset; unpinned, the scheduler's placement of the two swung the
same mode between 48k and 75k requests/s from run to run), the agent runs
where it may.

Each round, for each client: a baseline run, one run in each mode, another
baseline run; a mode's ratio is its throughput over the mean of the round's
two baselines, so drift of the machine hits every mode alike. The modes:
empty BPF programs on each hook podtap could use (the hook's floor: what it
costs before any work is done in it; bpf/floor.bpf.c through
podtap-hook-floor), then podtap with HTTP parsing on each of its syscall
hooks (one program at tp_btf/sys_exit; entry and exit programs on each
syscall's tracepoints, --syscall-hook pairs) and with TCP metrics only.
Reports the median ratio per client and mode, the added p99 latency wrk
measured (h2load reports no percentiles), and each parsing mode's distance
from the floor of its own hook. Root only; traffic stays on the test's veth.

  /usr/bin/python3 bench/http_overhead.py --hook-floor build/podtap-hook-floor \
      [--pairs 5] [--seconds 4] [--bpf-stats] [--client-cpu 0] [--server-cpu 1]

--bpf-stats adds one more run with the agent (HTTP parsing) during which the
kernel's BPF statistics are on (kernel.bpf_stats_enabled): it reports run
time per invocation of each of the agent's programs, and the agent's own CPU
time from /proc/PID/stat.
"""

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "e2e"))
import harness  # noqa: E402

PORT = 8080
H2_PORT = 8081
NGINX_CONF = """
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log;
events {{ worker_connections 1024; }}
http {{
  access_log off;
  keepalive_requests 1000000;
  server {{
    listen {addr}:{port};
    location / {{ return 200 "ok\\n"; }}
  }}
  server {{
    listen {addr}:{h2port} http2;
    location / {{ return 200 "ok\\n"; }}
  }}
}}
"""


# taskset prefixes (set by main from --client-cpu and --server-cpu).
PIN = {"client": [], "server": []}


def start_nginx(ns, workdir, addr):
    conf = os.path.join(workdir, "nginx.conf")
    with open(conf, "w") as f:
        f.write(NGINX_CONF.format(dir=workdir, addr=addr, port=PORT, h2port=H2_PORT))
    p = subprocess.Popen(["ip", "netns", "exec", ns] + PIN["server"]
                         + ["/usr/sbin/nginx", "-p", workdir, "-c", conf, "-g", "daemon off;"],
                         stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        r = subprocess.run(["ip", "netns", "exec", ns, "ss", "-Htln", "sport = :%d" % PORT],
                           capture_output=True, text=True)
        if r.stdout.strip():
            return p
        time.sleep(0.1)
    p.terminate()
    raise RuntimeError("nginx did not listen within 10 s; see %s/error.log" % workdir)


def wrk(ns, addr, seconds):
    """(requests per second, p99 latency in ms) of one wrk run."""
    out = subprocess.run(["ip", "netns", "exec", ns] + PIN["client"]
                         + ["wrk", "-t1", "-c8", "-d%ds" % seconds,
                            "--latency", "http://%s:%d/" % (addr, PORT)],
                         capture_output=True, text=True, timeout=seconds + 30).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    m = re.search(r"99%\s+([\d.]+)(us|ms|s)\b", out)
    p99 = float(m.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)]
    return rps, p99


def h2load(ns, addr, seconds):
    """(requests per second, None) of one h2load run: 8 connections, 10
    streams in flight on each."""
    out = subprocess.run(["ip", "netns", "exec", ns] + PIN["client"]
                         + ["h2load", "-t1", "-c8", "-m10",
                            "-D%d" % seconds, "http://%s:%d/" % (addr, H2_PORT)],
                         capture_output=True, text=True, timeout=seconds + 30).stdout
    rps = float(re.search(r"finished in [\d.]+m?s, ([\d.]+) req/s", out).group(1))
    if not re.search(r"requests: \d+ total, \d+ started, (\d+) done, \1 succeeded", out):
        raise RuntimeError("h2load saw failed requests:\n" + out)
    return rps, None


CLIENTS = {"HTTP/1.1 (wrk)": wrk, "HTTP/2 (h2load)": h2load}


def cpu_seconds(pid):
    fields = open("/proc/%d/stat" % pid).read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def bpf_stats_run(topo, workdir, pods, seconds):
    """One wrk run with the agent and kernel.bpf_stats_enabled=1."""
    agent = harness.Agent(workdir, pods, log_level="warn").start()
    agent.wait_ready()
    old = open("/proc/sys/kernel/bpf_stats_enabled").read().strip()
    try:
        with open("/proc/sys/kernel/bpf_stats_enabled", "w") as f:
            f.write("1")
        cpu0 = cpu_seconds(agent.popen.pid)
        rps, p99 = wrk(topo.client_ns, topo.SERVER_IP4, seconds)
        cpu = cpu_seconds(agent.popen.pid) - cpu0
        progs = harness.attached_programs(agent.popen.pid)
        shown = subprocess.run(["bpftool", "-j", "prog", "show"], capture_output=True,
                               text=True, check=True).stdout
    finally:
        with open("/proc/sys/kernel/bpf_stats_enabled", "w") as f:
            f.write(old)
        agent.stop()
    ids = {int(p["prog_id"]) for p in progs if p.get("prog_id")}
    print()
    print("with the agent: %.0f req/s, p99 %.2f ms; agent CPU %.2f s in %d s (%.0f%% of one "
          "core)" % (rps, p99, cpu, seconds, 100 * cpu / seconds))
    print()
    print("| program | runs | ns per run |")
    print("|---|---|---|")
    for p in json.loads(shown):
        if p["id"] in ids and p.get("run_cnt"):
            print("| %s | %d | %.0f |" % (p["name"], p["run_cnt"], p["run_time_ns"] / p["run_cnt"]))


class HookFloor:
    """podtap-hook-floor holding empty programs on one hook until stopped."""

    def __init__(self, binary, hook):
        self.p = subprocess.Popen([binary, hook], stdout=subprocess.PIPE, text=True,
                                  stdin=subprocess.DEVNULL)
        line = self.p.stdout.readline()
        if not line.startswith("attached "):
            self.stop()
            raise RuntimeError("podtap-hook-floor %s did not attach (exit %s)"
                               % (hook, self.p.returncode))

    def stop(self):
        if self.p.poll() is None:
            self.p.terminate()
        self.p.wait(timeout=30)
        self.p.stdout.close()


class AgentMode:
    def __init__(self, workdir, pods, extra):
        self.agent = harness.Agent(workdir, pods, log_level="warn", extra_args=extra).start()
        self.agent.wait_ready()

    def stop(self):
        self.agent.stop()


# Each podtap mode with HTTP parsing, and the floor of the hook its socket data programs are on:
# one program at tp_btf/sys_exit (the default where it loads), or entry and exit programs on
# each syscall's tracepoints (--syscall-hook pairs).
PARSING_FLOORS = {
    "podtap: HTTP parsing (sys_exit)": "floor: tp_btf/sys_exit",
    "podtap: HTTP parsing (syscall pairs)": "floor: syscall tracepoints",
}


def print_summary(results):
    print()
    print("| client | mode | median throughput ratio (mode / none) | median added p99 (ms)"
          " | rounds |")
    print("|---|---|---|---|---|")
    for (client, mode), rounds in results.items():
        ratio = statistics.median(m[0] / b[0] for b, m in rounds)
        if rounds[0][0][1] is None:
            added = "–"
        else:
            added = "%+.2f" % statistics.median(m[1] - b[1] for b, m in rounds)
        print("| %s | %s | %.3f | %s | %d |" % (client, mode, ratio, added, len(rounds)))
    print()
    print("| client | podtap mode | its hook's floor | median distance from that floor |")
    print("|---|---|---|---|")
    for client in CLIENTS:
        # TCP only has no program on the syscall hooks: only parsing is measured against them.
        for mode, floor_mode in PARSING_FLOORS.items():
            floor, rounds = results[(client, floor_mode)], results[(client, mode)]
            dist = statistics.median(f[1][0] / f[0][0] - m[1][0] / m[0][0]
                                     for f, m in zip(floor, rounds))
            print("| %s | %s | %s | %.3f |" % (client, mode, floor_mode, dist))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--pairs", type=int, default=5, help="rounds")
    ap.add_argument("--seconds", type=int, default=4)
    ap.add_argument("--bpf-stats", action="store_true")
    ap.add_argument("--hook-floor", required=True, help="the podtap-hook-floor binary")
    ap.add_argument("--client-cpu", type=int, default=0)
    ap.add_argument("--server-cpu", type=int, default=1)
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench/http_overhead.py: run as root")
    if args.client_cpu == args.server_cpu:
        sys.exit("bench/http_overhead.py: --client-cpu and --server-cpu must differ")
    PIN["client"] = ["taskset", "-c", str(args.client_cpu)]
    PIN["server"] = ["taskset", "-c", str(args.server_cpu)]
    harness.cleanup_stale_namespaces()
    topo = harness.Topology().create()
    workdir = tempfile.mkdtemp(prefix="podtap-bench-")
    nginx = None
    try:
        client_pod, server_pod = harness.make_pods(topo)
        pods = [client_pod, server_pod]
        nginx = start_nginx(topo.server_ns, workdir, topo.SERVER_IP4)
        for client in CLIENTS.values():
            client(topo.client_ns, topo.SERVER_IP4, 1)  # warm-up
        modes = {
            "floor: tp_btf/sys_exit": lambda: HookFloor(args.hook_floor, "tp_btf"),
            "floor: raw_tp/sys_exit": lambda: HookFloor(args.hook_floor, "raw_tp"),
            "floor: syscall tracepoints": lambda: HookFloor(args.hook_floor, "tracepoints"),
            "podtap: HTTP parsing (sys_exit)": lambda: AgentMode(
                workdir, pods, ["--syscall-hook", "sys_exit"]),
            "podtap: HTTP parsing (syscall pairs)": lambda: AgentMode(
                workdir, pods, ["--syscall-hook", "pairs"]),
            "podtap: TCP only": lambda: AgentMode(workdir, pods,
                                                  ["--capture-payload", "false"]),
        }
        results = {(c, m): [] for c in CLIENTS for m in modes}
        for i in range(args.pairs):
            for name, client in CLIENTS.items():
                runs = {}
                before = client(topo.client_ns, topo.SERVER_IP4, args.seconds)
                for mode, start in modes.items():
                    held = start()
                    try:
                        runs[mode] = client(topo.client_ns, topo.SERVER_IP4, args.seconds)
                    finally:
                        held.stop()
                after = client(topo.client_ns, topo.SERVER_IP4, args.seconds)
                base = ((before[0] + after[0]) / 2,
                        None if before[1] is None else (before[1] + after[1]) / 2)
                for mode, run in runs.items():
                    results[(name, mode)].append((base, run))
                    print("round %d %-16s %-28s baseline %9.0f req/s | mode %9.0f req/s | "
                          "ratio %.3f" % (i + 1, name, mode, base[0], run[0], run[0] / base[0]),
                          flush=True)
        if args.pairs:
            print_summary(results)
        if args.bpf_stats:
            bpf_stats_run(topo, workdir, pods, args.seconds)
    finally:
        if nginx is not None:
            nginx.terminate()
            nginx.wait(timeout=10)
        topo.destroy()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
