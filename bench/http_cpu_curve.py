#!/usr/bin/python3
"""CPU per request below saturation (issue #17): what podtap costs for each HTTP/1.1 keep-alive
request at fixed request rates: its kernel programs' run time (kernel.bpf_stats_enabled: every
run of each program the agent attached, whichever process ran it) and the agent's own CPU (every
thread's time on CPU, /proc/PID/task/*/schedstat), per request and per observed side (both ends
of every request are on the node, so both are traced). The baseline, measured in the same run:
the CPU the request itself costs, client and server, without an agent (their schedstat).

A paced client (this file with --client, in the client pod) sends GET requests on one
keep-alive connection to nginx in the server pod (one worker; the client and nginx pinned to
two CPUs), request i at t0 + i/rate, for a fixed time; a run that kept less than 97% of its rate
fails. Each round runs, at each rate: no agent, podtap with HTTP parsing, podtap with TCP only,
no agent again. Medians of the rounds. Writes a markdown table to stdout and, with --png, the
curve through gnuplot (Debian's gnuplot-nox, `make deps`). What this leaves out: the syscall
slow path a traced task takes and cache effects, which only a throughput ratio shows
(bench/http_overhead.py). The programs also run for the machine's other syscalls (they return
at once for a socket they do not track): run it on a quiet machine. Root only; traffic stays on
the test's veth.

  /usr/bin/python3 bench/http_cpu_curve.py [--rates 1000,3000,10000] [--seconds 5] \\
      [--rounds 3] [--png docs/http_cpu_curve.png]
"""

import argparse
import json
import os
import shutil
import socket
import statistics
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
REQUEST = b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n"


def client(addr, port, rate, seconds):
    """The paced client: prints one JSON line {requests, cpu_ns (its whole life), elapsed_s}."""
    s = socket.create_connection((addr, port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    n = int(rate * seconds)
    buf = b""
    t0 = time.monotonic()
    for i in range(n):
        due = t0 + i / rate
        now = time.monotonic()
        if now < due:
            time.sleep(due - now)
        s.sendall(REQUEST)
        # One whole response: headers, then Content-Length bytes of body.
        while True:
            end = buf.find(b"\r\n\r\n")
            if end >= 0:
                head = buf[:end].decode("latin-1").lower()
                length = int(head.split("content-length:")[1].split("\r\n")[0])
                if len(buf) >= end + 4 + length:
                    if not head.startswith("http/1.1 200"):
                        raise RuntimeError("unexpected response: %r" % head[:40])
                    buf = buf[end + 4 + length:]
                    break
            data = s.recv(65536)
            if not data:
                raise RuntimeError("connection closed after %d responses" % i)
            buf += data
    elapsed = time.monotonic() - t0
    s.close()
    print(json.dumps({"requests": n, "cpu_ns": on_cpu_ns(os.getpid()), "elapsed_s": elapsed}))


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


def run_client(topo, rate, seconds):
    out = subprocess.run(["ip", "netns", "exec", topo.client_ns] + ho.PIN["client"]
                         + ["/usr/bin/python3", os.path.abspath(__file__), "--client",
                            topo.SERVER_IP4, str(ho.PORT), str(rate), str(seconds)],
                         capture_output=True, text=True, timeout=seconds + 60, check=True)
    return json.loads(out.stdout)


def measure(topo, nginx_worker, rate, seconds, agent_pid=None):
    """The run's requests and CPU ns: the client's and the server's, and with an agent its
    kernel programs' and its own."""
    server0 = on_cpu_ns(nginx_worker)
    ids = set()
    if agent_pid:
        ids = {int(p["prog_id"]) for p in harness.attached_programs(agent_pid) if p["prog_id"]}
        progs0, agent0 = prog_run_ns(ids), on_cpu_ns(agent_pid)
    r = run_client(topo, rate, seconds)
    out = {"requests": r["requests"], "client": r["cpu_ns"],
           "server": on_cpu_ns(nginx_worker) - server0, "progs": 0, "agent": 0}
    if agent_pid:
        out["progs"] = prog_run_ns(ids) - progs0
        out["agent"] = on_cpu_ns(agent_pid) - agent0
    if r["elapsed_s"] > seconds * 1.03:
        raise RuntimeError("the client kept %.0f req/s of the %d asked: the rate is above what "
                           "this machine serves; lower --rates"
                           % (r["requests"] / r["elapsed_s"], rate))
    return out


MODES = {"podtap: HTTP parsing": [], "podtap: TCP only": ["--capture-payload", "false"]}


def plot(curve, rates, path):
    data = path + ".dat"
    with open(data, "w") as f:
        for rate in rates:
            f.write("%d %s\n" % (rate, " ".join("%.4f" % curve[(m, rate)] for m in MODES)))
    script = ("set terminal pngcairo size 800,480; set output '%s';"
              "set title 'podtap CPU (kernel programs + agent) per HTTP/1.1 request per observed side';"
              "set xlabel 'requests per second (one keep-alive connection)';"
              "set ylabel 'microseconds of CPU';"
              "set logscale x; set xrange [%g:%g]; set yrange [0:*]; set key top right;"
              "set grid;"
              "plot '%s' using 1:2 with linespoints title 'HTTP parsing', "
              "'%s' using 1:3 with linespoints title 'TCP only', "
              "0.5 with lines dashtype 2 title 'goal: 0.5 us'"
              % (path, rates[0] * 0.8, rates[-1] * 1.25, data, data))
    subprocess.run(["gnuplot", "-e", script], check=True)
    os.unlink(data)


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--client":
        client(sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5]))
        return
    ap = argparse.ArgumentParser()
    ap.add_argument("--rates", default="1000,3000,10000")
    ap.add_argument("--seconds", type=float, default=5)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--client-cpu", type=int, default=0)
    ap.add_argument("--server-cpu", type=int, default=1)
    ap.add_argument("--png", help="write the curve as a PNG plot here")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("bench/http_cpu_curve.py: run as root")
    rates = [int(r) for r in args.rates.split(",")]
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
        run_client(topo, 1000, 1)  # warm-up
        with open(STATS) as f:
            stats_old = f.read().strip()
        with open(STATS, "w") as f:
            f.write("1")
        keys = [(m, r) for m in MODES for r in rates]
        progs = {k: [] for k in keys}
        agent = {k: [] for k in keys}
        app = {r: [] for r in rates}
        for i in range(args.rounds):
            for rate in rates:
                before = measure(topo, worker, rate, args.seconds)
                runs = {}
                for mode, extra in MODES.items():
                    held = ho.AgentMode(workdir, pods, extra)
                    try:
                        # Its start-up work (TLS library scans, adoption) is not per request.
                        time.sleep(SETTLE_S)
                        runs[mode] = measure(topo, worker, rate, args.seconds,
                                             held.agent.popen.pid)
                    finally:
                        held.stop()
                after = measure(topo, worker, rate, args.seconds)
                app[rate].append(statistics.mean(
                    (b["client"] + b["server"]) / b["requests"] / 1e3 for b in (before, after)))
                for mode, run in runs.items():
                    # Per request and per observed side (two sides), in µs.
                    progs[(mode, rate)].append(run["progs"] / run["requests"] / 2 / 1e3)
                    agent[(mode, rate)].append(run["agent"] / run["requests"] / 2 / 1e3)
                    print("round %d %6d req/s %-22s per side: programs %.3f us, agent %.3f us; "
                          "the request itself %.1f us (client + server, no agent)"
                          % (i + 1, rate, mode, progs[(mode, rate)][-1],
                             agent[(mode, rate)][-1], app[rate][-1]), flush=True)
        med = statistics.median
        total = {k: med(a + b for a, b in zip(progs[k], agent[k])) for k in keys}
        print()
        print("| requests/s | mode | kernel programs, µs | agent, µs | podtap per request per "
              "observed side, µs | the request's own CPU (client + server, no agent), µs | "
              "podtap (both sides) / the request's own CPU |")
        print("|---:|---|---:|---:|---:|---:|---:|")
        for rate in rates:
            for mode in MODES:
                k = (mode, rate)
                print("| %d | %s | %.3f | %.3f | **%.3f** | %.1f | %.3f |"
                      % (rate, mode, med(progs[k]), med(agent[k]), total[k], med(app[rate]),
                         2 * total[k] / med(app[rate])))
        print("\nmedians of %d rounds of %g s per rate and mode" % (args.rounds, args.seconds))
        if args.png:
            plot(total, rates, args.png)
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
