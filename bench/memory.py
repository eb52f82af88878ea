#!/usr/bin/python3
"""Memory: the agent's RSS with 10,000 open connections across 100 pods.

100 pods (network namespaces, each with a veth to a router namespace of its
own) and the agent with a pods file naming them. Each run starts a
fresh agent and reads its idle RSS (VmRSS of /proc/PID/status) and the
memlock of its BPF maps (fdinfo) as the baseline; then every pod opens 100
connections to 50 others (10,000 connections, 20,000 tracked sockets: both
ends are in pods), each exchanging one small HTTP/1.1 request and response and
then held open, and the same figures are read again once the agent counts
every one of them (tcp_open_connections, request_total). A server process
accepts in every pod and a client process connects from every pod; each
enters a pod's namespace with setns(2) before creating the pod's sockets.
Prints the median over the runs of the RSS with the connections, of the RSS
growth and of bytes per connection; exits 1 when the agent did not count
exactly what was opened. Root only; traffic stays on the veths it made.

  /usr/bin/python3 bench/memory.py [--runs 5]

PODTAP_AGENT overrides the agent binary (default build/podtap-agent).
"""

import argparse
import ctypes
import os
import re
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "e2e"))
import harness  # noqa: E402

PODS = 100
PER_POD = 100  # connections each pod opens
# ... to this many other pods (two to each): 5,000 outbound and 100 inbound
# label sets, within the agent's default cap of 10,000 series per family.
PEERS = 50
PORT = 8080
PREFIX = "ptMem"  # namespaces: ptMem<pid>r (the router), ptMem<pid>p<i> (pods)
GATEWAY = "169.254.1.1"
CLONE_NEWNET = 0x40000000
TARGET_MIB = 64
# Bounds on the waits, seconds.
SETTLE = 3
COUNT_TIMEOUT = 60
OPEN_TIMEOUT = 120

REQUEST = ("GET /items/%d HTTP/1.1\r\nHost: pod-%d.shop.svc.cluster.local:8080\r\n"
           "User-Agent: curl/7.88.1\r\nAccept: */*\r\n\r\n")
RESPONSE = (b"HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nContent-Type: text/plain\r\n"
            b"Content-Length: 3\r\nConnection: keep-alive\r\n\r\nok\n")


def pod_ip(i):
    return "10.232.%d.%d" % (i // 250, i % 250 + 2)


def ns_name(i):
    return "%s%dp%d" % (PREFIX, os.getpid(), i)


# --------------------------------------------------------------------------
# The two peer processes (run as `memory.py --server` / `--client`).

_libc = ctypes.CDLL(None, use_errno=True)


def enter(ns):
    """Moves this (single-threaded) process into namespace `ns`: sockets made
    from now on are the pod's."""
    fd = os.open("/var/run/netns/" + ns, os.O_RDONLY)
    try:
        if _libc.setns(fd, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), "setns " + ns)
    finally:
        os.close(fd)


def server(names):
    """Listens on PORT in every pod; answers each request with RESPONSE and
    keeps the connection open; exits on SIGTERM."""
    sel = selectors.DefaultSelector()
    for ns in names:
        enter(ns)
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("0.0.0.0", PORT))
        s.listen(1024)
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ, None)
    held = []
    print("listening", flush=True)
    while True:
        for key, _ in sel.select(timeout=1):
            if key.data is None:
                conn, _ = key.fileobj.accept()
                conn.setblocking(False)
                sel.register(conn, selectors.EVENT_READ, b"")
                continue
            conn = key.fileobj
            data = key.data + conn.recv(4096)
            if data.endswith(b"\r\n\r\n"):
                conn.sendall(RESPONSE)
                sel.unregister(conn)
                held.append(conn)
            elif not data:
                sel.unregister(conn)
                conn.close()
            else:
                sel.modify(conn, selectors.EVENT_READ, data)


def client(names):
    """From each pod, PER_POD connections to the other pods, one request and
    response each; prints how many, then holds them until SIGTERM."""
    held = []
    for i, ns in enumerate(names):
        enter(ns)
        for j in range(PER_POD):
            peer = (i + 1 + j % PEERS) % len(names)
            s = socket.create_connection((pod_ip(peer), PORT), timeout=10)
            s.sendall((REQUEST % (j, peer)).encode())
            got = b""
            while len(got) < len(RESPONSE):
                chunk = s.recv(4096)
                if not chunk:
                    raise RuntimeError("connection %d of pod %d closed early" % (j, i))
                got += chunk
            held.append(s)
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    print("open %d" % len(held), flush=True)
    signal.sigwait({signal.SIGTERM})


# --------------------------------------------------------------------------
# The 100 pods.


def cleanup_stale():
    """Removes namespaces of an earlier run whose process is gone."""
    for line in harness.sh(["ip", "netns", "list"], check=False).stdout.splitlines():
        m = re.match(r"^%s(\d+)[rp]\d*(\s|$)" % PREFIX, line)
        if m and not os.path.exists("/proc/%s" % m.group(1)):
            harness.log("removing stale namespace %s" % line.split()[0])
            harness.sh(["ip", "netns", "del", line.split()[0]], check=False)


def create_pods():
    """The router namespace and PODS pod namespaces routed through it, as a
    CNI like Calico does: each pod has its address as a /32 and a default
    route to 169.254.1.1 on its veth, whose router end holds that address,
    so each pod resolves one neighbour and the router one per pod (a bridge
    would need 100 x 99 ARP entries, past the kernel's neighbour table
    limit, gc_thresh3, which is global). [names], [harness.Pod]."""
    router = "%s%dr" % (PREFIX, os.getpid())
    harness.sh(["ip", "netns", "add", router])
    harness._live_netns.add(router)
    harness.sh(["ip", "netns", "exec", router, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1"])
    pods = []
    for i in range(PODS):
        ns = ns_name(i)
        harness.sh(["ip", "netns", "add", ns])
        harness._live_netns.add(ns)
        harness.sh(["ip", "-n", ns, "link", "set", "lo", "up"])
        harness.sh(["ip", "-n", ns, "link", "add", "eth0", "type", "veth", "peer", "name",
                    "v%d" % i, "netns", router])
        harness.sh(["ip", "-n", router, "addr", "add", GATEWAY + "/32", "dev", "v%d" % i])
        harness.sh(["ip", "-n", router, "link", "set", "v%d" % i, "up"])
        harness.sh(["ip", "-n", router, "route", "add", pod_ip(i) + "/32", "dev", "v%d" % i])
        harness.sh(["ip", "-n", ns, "addr", "add", pod_ip(i) + "/32", "dev", "eth0"])
        harness.sh(["ip", "-n", ns, "link", "set", "eth0", "up"])
        harness.sh(["ip", "-n", ns, "route", "add", GATEWAY, "dev", "eth0", "scope", "link"])
        harness.sh(["ip", "-n", ns, "route", "add", "default", "via", GATEWAY, "dev", "eth0"])
        h = "5f7c9d8b%d" % (i % 10)
        pods.append(harness.Pod("shop", "api-%s-x%d" % (h, i), "mem-uid-%d" % i,
                                {"app": "api", "pod-template-hash": h}, "ReplicaSet",
                                "api-" + h, [pod_ip(i)], "/var/run/netns/" + ns))
    return [router] + [ns_name(i) for i in range(PODS)], pods


# --------------------------------------------------------------------------
# Measuring.


def rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        return int(re.search(r"^VmRSS:\s+(\d+) kB", f.read(), re.M).group(1))


def maps_memlock(pid):
    """Bytes of memlock of the BPF maps process `pid` holds (each map once,
    however many descriptors of it the process has)."""
    maps = {}
    fdinfo = "/proc/%d/fdinfo" % pid
    for fd in os.listdir(fdinfo):
        try:
            with open(os.path.join(fdinfo, fd)) as f:
                text = f.read()
        except OSError:
            continue
        m = re.search(r"^map_id:\s+(\d+)", text, re.M)
        if m:
            maps[m.group(1)] = int(re.search(r"^memlock:\s+(\d+)", text, re.M).group(1))
    return sum(maps.values())


def wait_counted(agent, sockets, requests, timeout):
    """Waits until the agent counts `sockets` open pod connections and
    `requests` requests; returns the last scrape and whether it did."""
    deadline = time.monotonic() + timeout
    while True:
        ex = agent.scrape()
        pod = {"namespace": "shop"}
        got = (ex.sum("tcp_open_connections", pod), ex.sum("request_total", pod))
        if got == (sockets, requests) or time.monotonic() > deadline:
            return ex, got == (sockets, requests)
        time.sleep(1)


def peer(role, names):
    p = subprocess.Popen(harness._orphan_guard("TERM")
                         + [harness.PY, os.path.abspath(__file__), "--" + role] + names,
                         stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True)
    harness._live_procs[p.pid] = p
    return p


def read_line(p, timeout, what):
    """The peer's next stdout line, within `timeout` seconds."""
    sel = selectors.DefaultSelector()
    sel.register(p.stdout, selectors.EVENT_READ)
    if not sel.select(timeout):
        raise RuntimeError("%s: nothing within %ds" % (what, timeout))
    line = p.stdout.readline().strip()
    if not line:
        raise RuntimeError("%s exited with %s" % (what, p.wait(timeout=10)))
    return line


def one_run(workdir, names, pods, n):
    os.makedirs(os.path.join(workdir, "run%d" % n))
    agent = harness.Agent(os.path.join(workdir, "run%d" % n), pods, log_level="warn")
    procs = []
    started = time.monotonic()
    try:
        agent.start()
        agent.wait_ready()
        pid = agent.popen.pid
        time.sleep(SETTLE)
        idle = (rss_kb(pid), maps_memlock(pid))
        srv = peer("server", names)
        procs.append(srv)
        read_line(srv, 30, "server")
        cli = peer("client", names)
        procs.append(cli)
        t0 = time.monotonic()
        line = read_line(cli, OPEN_TIMEOUT, "client")
        open_s = time.monotonic() - t0
        want = PODS * PER_POD
        if line != "open %d" % want:
            raise RuntimeError("client: %r" % line)
        # Read before any scrape: a scrape's copy of 10k series leaves its own
        # mark on the heap, read next.
        time.sleep(SETTLE)
        loaded = (rss_kb(pid), maps_memlock(pid))
        ex, counted = wait_counted(agent, 2 * want, 2 * want, COUNT_TIMEOUT)
        scraped = rss_kb(pid)
        tracked = ex.sum("podtap_connections_tracked")
        lost = ex.sum("podtap_events_lost_total")
        reasons = {s.labels["reason"]: s.value for s in ex.select("podtap_events_lost_total")
                   if s.value}
        got = (ex.sum("tcp_open_connections", {"namespace": "shop"}),
               ex.sum("request_total", {"namespace": "shop"}))
        print("run %d: idle RSS %d kB, maps %.1f MiB; %d connections opened in %.1f s; RSS %d "
              "kB, maps %.1f MiB; agent counts %d open sockets, %d requests, tracks %d, lost %d; "
              "RSS after scrapes %d kB" % (n, idle[0], idle[1] / 2**20, want, open_s, loaded[0],
                                           loaded[1] / 2**20, got[0], got[1], tracked, lost,
                                           scraped), flush=True)
        if reasons:
            print("run %d: lost %s" % (n, reasons), flush=True)
        ok = counted and lost == 0
        if not ok:
            print("run %d: FAIL: the agent counted %s, want (%d, %d) and nothing lost"
                  % (n, got, 2 * want, 2 * want), flush=True)
        return idle, loaded, scraped, ok
    finally:
        for p in reversed(procs):
            harness._stop_pid(p, signal.SIGTERM)
        agent.stop()
        harness.log("run %d took %.1f s" % (n, time.monotonic() - started))


def median(values):
    values = sorted(values)
    return values[len(values) // 2]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--server", nargs="+", help=argparse.SUPPRESS)
    ap.add_argument("--client", nargs="+", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.server:
        return server(args.server)
    if args.client:
        return client(args.client)
    if os.geteuid() != 0:
        sys.exit("bench/memory.py: run as root")
    cleanup_stale()
    workdir = tempfile.mkdtemp(prefix="podtap-memory-")
    try:
        t0 = time.monotonic()
        names, pods = create_pods()
        harness.log("%d pods routed through one namespace in %.1f s"
                    % (PODS, time.monotonic() - t0))
        results = [one_run(workdir, names[1:], pods, n) for n in range(args.runs)]
    finally:
        harness.cleanup_all()
        shutil.rmtree(workdir, ignore_errors=True)
    conns = PODS * PER_POD
    rss = median(r[1][0] for r in results) / 1024
    growth = median(r[1][0] - r[0][0] for r in results)
    per_conn = growth * 1024 / conns
    print()
    print("median of %d runs: RSS idle %.1f MiB, with %d connections (%d sockets) %.1f MiB "
          "(target < %d MiB: %s); growth %.1f MiB = %.0f bytes per connection, %.0f per "
          "tracked socket; BPF maps %.1f MiB idle, %.1f MiB loaded"
          % (len(results), median(r[0][0] for r in results) / 1024, conns, 2 * conns, rss,
             TARGET_MIB, "met" if rss < TARGET_MIB else "MISSED", growth / 1024, per_conn,
             per_conn / 2, median(r[0][1] for r in results) / 2**20,
             median(r[1][1] for r in results) / 2**20))
    print("RSS after the scrapes that checked the counts (each a copy of every series): median "
          "%.1f MiB, largest %.1f MiB" % (median(r[2] for r in results) / 1024,
                                          max(r[2] for r in results) / 1024))
    sys.exit(0 if all(r[3] for r in results) else 1)


if __name__ == "__main__":
    main()
