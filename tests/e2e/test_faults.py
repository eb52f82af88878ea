#!/usr/bin/python3
"""Real-kernel fault tests: the agent under conditions that make it lose
events, which must never make its numbers wrong.

Ring buffer flood: the agent runs with the smallest lifecycle and payload ring
buffers (one page each) and is stopped (SIGSTOP) while a burst of short
connections runs between the two pods, so the rings fill and stay full for
the whole burst: every record past the first page is refused by the kernel.
Then the agent goes on (SIGCONT) and must report the drops in
podtap_events_lost_total, keep serving, and still get every TCP total exact:
opens lost to the ring are rebuilt at close from the kernel's socket map, and
closes the ring refused wait in the kernel's pending closes map until the
agent's next poll (podtap_events_recovered_total). HTTP numbers cannot be
rebuilt from lost payload: the agent must count the loss and never report
more requests or responses than were made.

Memory limit: the agent starts in a memory cgroup of 256 MiB and sizes its
connection table and rings from it (--memory-limit auto); 16,000 connections
are then held open between the pods, 32,000 sockets the agent would track,
more than the table holds. It must refuse the rest and count every one
(podtap_connections_untracked_total{reason="table_full"}) instead of
outgrowing the limit: it is not OOM-killed, and every socket of the pods is
either counted open or counted refused.

Run as root: tests/e2e/run.sh test_faults. PODTAP_AGENT overrides the agent
binary's path; PODTAP_E2E_ARTIFACTS the folder where failing cases leave the
agent's log and its last scrape.
"""

import os
import signal
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import test_tcp_exact  # noqa: E402  (its ground-truth helpers, not its cases)
from harness import Expect  # noqa: E402
from nginx import Nginx, nginx_conf  # noqa: E402

SERVER_PORT = 18080
HTTP_PORT = 18090
CURL = "/usr/bin/curl"
CLIENT_TIMEOUT = 120
ARTIFACTS = os.environ.get("PODTAP_E2E_ARTIFACTS") or tempfile.mkdtemp(prefix="ptE2e-artifacts-")
# One page each: the smallest ring buffers the kernel accepts.
TINY_RINGS = ["--ringbuf-size", "4096", "--payload-ringbuf-size", "4096"]

NGINX_CONF = nginx_conf(r"""
    access_log %(dir)s/access.log;
    keepalive_requests 100000;
    server {
        listen %(ip4)s:%(port)d;
        location / { return 200 "ok\n"; }
    }
""")


def tearDownModule():
    for folder in (ARTIFACTS, test_tcp_exact.ARTIFACTS):
        try:
            os.rmdir(folder)
        except OSError:
            harness.log("artifacts kept in %s" % folder)


class FaultsTest(harness.PodPairTest):
    ARTIFACTS = ARTIFACTS
    TIMEOUT = 30.0
    SETTLE = 2.5

    # The ground truth of peer.py plans (checked against the peers' and the
    # kernel's counts) and the transport expectations, as the TCP suite has them.
    run_plans = test_tcp_exact.TcpExactTest.run_plans
    transport_expects = test_tcp_exact.TcpExactTest.transport_expects

    @classmethod
    def setUpClass(cls):
        if not os.access(CURL, os.X_OK):
            raise RuntimeError("missing %s: install the Debian package curl (make deps)" % CURL)
        super().setUpClass()
        cls.nginx = Nginx(cls.topo.server_ns, NGINX_CONF,
                          {"ip4": cls.topo.SERVER_IP4, "port": HTTP_PORT}, {},
                          ports=(HTTP_PORT,), listeners=1)
        cls.addClassCleanup(cls.nginx.remove, ARTIFACTS)
        cls.nginx.start()

    # ---- helpers -----------------------------------------------------------

    def pause_agent(self):
        """SIGSTOP the agent (its event loop and its HTTP server) until
        resume_agent; a cleanup resumes it whatever happens."""
        pid = self.agent.popen.pid
        os.kill(pid, signal.SIGSTOP)
        self.addCleanup(self.resume_agent)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            with open("/proc/%d/stat" % pid) as f:
                if f.read().rsplit(")", 1)[1].split()[0] == "T":
                    return
            time.sleep(0.01)
        self.fail("agent %d not stopped 5 s after SIGSTOP" % pid)

    def resume_agent(self):
        if self.agent.popen.poll() is None:
            os.kill(self.agent.popen.pid, signal.SIGCONT)

    def assert_serving(self):
        status, _, body = self.agent.get("/healthz")
        self.assertEqual(status, 200, "GET /healthz after the flood: %s %r" % (status, body))
        self.assertIsNone(self.agent.popen.poll(), "the agent exited")

    def start_curl(self, n):
        """One curl process in the client pod making `n` GETs on one
        keep-alive connection; returns the Popen (stdout: one status a line)."""
        url = "http://%s:%d/r" % (self.topo.SERVER_IP4, HTTP_PORT)
        cmd = (harness._orphan_guard("KILL")
               + ["ip", "netns", "exec", self.topo.client_ns, CURL, "-sS", "--noproxy", "*",
                  "-w", "%{http_code}\\n"] + ["-o", "/dev/null", url] * n)
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             stdin=subprocess.DEVNULL)
        self.addCleanup(self.stop_curl, p)
        return p

    def stop_curl(self, p):
        if p.poll() is None:
            harness._stop_pid(p, signal.SIGKILL)
        for f in (p.stdout, p.stderr):
            f.close()

    def finish_curl(self, p, n):
        out, err = p.communicate(timeout=CLIENT_TIMEOUT)
        codes = out.split()
        self.assertEqual((p.returncode, codes), (0, ["200"] * n),
                         "curl's own view of its %d requests; stderr: %s" % (n, err[-500:]))

    def lost(self, ex, reason):
        return ex.sum("podtap_events_lost_total", {"reason": reason}) - \
            self.baseline.sum("podtap_events_lost_total", {"reason": reason})

    def recovered(self, ex, kind):
        return ex.sum("podtap_events_recovered_total", {"kind": kind}) - \
            self.baseline.sum("podtap_events_recovered_total", {"kind": kind})

    # ---- the cases ---------------------------------------------------------

    def test_a_flood_tcp_exact(self):
        self.start_agent(log_level="info", extra_args=TINY_RINGS)
        server = harness.start_server(self.topo.server_ns, self.topo.SERVER_IP4, SERVER_PORT)
        self.addCleanup(server.stop)
        addr = self.topo.SERVER_IP4
        # 4 clients at once, 60 short connections each: 480 opens and 480
        # closes against rings with room for about 30 lifecycle records.
        runs = [(addr, SERVER_PORT, test_tcp_exact.random_plan(700 + i, 60), 700 + i)
                for i in range(4)]
        runs[0][2][0] = (0, 0, "normal")
        self.pause_agent()
        burst = self.run_plans(runs, {addr: server})
        self.resume_agent()
        ex = self.wait_equal(self.transport_expects(burst))
        self.assert_serving()
        ringbuf_full = self.lost(ex, "ringbuf_full")
        closes = self.recovered(ex, "close")
        opens = self.recovered(ex, "open")
        harness.log("flood: %d connections; ringbuf_full %d, recovered closes %d, opens %d"
                    % (burst.opened, ringbuf_full, closes, opens))
        self.assertGreater(ringbuf_full, 0, "the flood must overflow the lifecycle ring")
        self.assertGreater(closes, 0, "closes the ring refused must come from the pending map")
        # Recovered events are ring drops; the node's other sockets (outside
        # the test) can add drops whose sockets are still open, never recoveries.
        self.assertLessEqual(closes + opens, ringbuf_full)
        self.assertGreaterEqual(opens + closes, 4 * burst.opened - 64,
                                "nearly every open and close of the burst was refused by "
                                "the ring (room for ~30) and must have been recovered")
        self.assertEqual(self.lost(ex, "close_map_full"), 0)
        self.assertEqual(self.recovered(ex, "connect_fail"), 0)

        # The agent goes on counting exactly after the flood.
        later = self.run_plans([(addr, SERVER_PORT, test_tcp_exact.random_plan(800, 10), 800)],
                               {addr: server})
        total = test_tcp_exact.Truth()
        for k in vars(total):
            setattr(total, k, getattr(burst, k) + getattr(later, k))
        self.wait_equal(self.transport_expects(total))
        self.assert_serving()

    def test_b_flood_http_losses_reported(self):
        self.start_agent(log_level="info", extra_args=TINY_RINGS)
        clients, per_client = 4, 200
        self.pause_agent()
        procs = [self.start_curl(per_client) for _ in range(clients)]
        for p in procs:
            self.finish_curl(p, per_client)
        self.resume_agent()
        made = clients * per_client
        inbound = self.labels("server", direction="inbound")
        outbound = self.labels("client", direction="outbound")
        # Every connection's close arrives (pending map), so its TCP numbers
        # settle; then the HTTP numbers are final too.
        self.wait_equal([Expect("tcp_close_total", dict(inbound, peer="src"), clients),
                         Expect("tcp_close_total", dict(outbound, peer="dst"), clients),
                         Expect("tcp_open_connections", dict(inbound, peer="src"), 0, True),
                         Expect("tcp_open_connections", dict(outbound, peer="dst"), 0, True)])
        self.assert_serving()
        ex = self.agent.scrape()
        payload_lost = self.lost(ex, "payload_ringbuf_full")
        counts = {}
        for side, lbl in (("inbound", inbound), ("outbound", outbound)):
            for name in ("request_total", "response_total"):
                counts[(side, name)] = (ex.sum(name, lbl) - self.baseline.sum(name, lbl))
        harness.log("HTTP flood: %d requests made; payload_ringbuf_full %d; counted %s"
                    % (made, payload_lost, counts))
        self.assertGreater(payload_lost, 0, "the flood must overflow the payload ring")
        for key, n in counts.items():
            self.assertLessEqual(n, made, "%s %s: more than were made" % key)
        self.assertEqual(ex.sum("podtap_events_lost_total", {"reason": "decode_error"}), 0)

    def memory_cgroup(self, limit):
        """A memory cgroup of `limit` bytes (v1's memory hierarchy where the
        host has one, else v2); returns (its cgroup.procs, a function giving
        its OOM kill count). Removed by a cleanup once the agent left it."""
        name = "podtap-e2e-mem-%d" % os.getpid()
        if os.path.isdir("/sys/fs/cgroup/memory"):
            path = os.path.join("/sys/fs/cgroup/memory", name)
            limit_file, events, key = "memory.limit_in_bytes", "memory.oom_control", "oom_kill"
        else:
            path = os.path.join("/sys/fs/cgroup", name)
            limit_file, events, key = "memory.max", "memory.events", "oom_kill"
        os.makedirs(path, exist_ok=True)
        self.addCleanup(os.rmdir, path)
        with open(os.path.join(path, limit_file), "w") as f:
            f.write(str(limit))

        def oom_kills():
            with open(os.path.join(path, events)) as f:
                for line in f:
                    k, _, v = line.partition(" ")
                    if k == key:
                        return int(v)
            return 0

        return os.path.join(path, "cgroup.procs"), oom_kills

    def start_holder(self, ns, script, n):
        """One hold script in namespace `ns`, stopped by a cleanup."""
        p = subprocess.Popen(
            harness._orphan_guard("KILL") + ["ip", "netns", "exec", ns, "/usr/bin/python3", "-c",
                                             script, self.topo.SERVER_IP4, str(HOLD_PORT),
                                             str(n)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        harness._live_procs[p.pid] = p
        self.addCleanup(self.stop_holder, p)
        return p

    def hold_connections(self, n):
        """n TCP connections from the client pod to the server pod, held open
        until the cleanup (which closes them)."""
        server = self.start_holder(self.topo.server_ns, HOLD_SERVER, n)
        self.assertEqual(server.stdout.readline().strip(), "listening")
        client = self.start_holder(self.topo.client_ns, HOLD_CLIENT, n)
        self.assertEqual(client.stdout.readline().strip(), "connected %d" % n)
        self.assertEqual(server.stdout.readline().strip(), "accepted %d" % n)
        return client, server

    @staticmethod
    def stop_holder(p):
        harness._stop_pid(p)
        for f in (p.stdin, p.stdout):
            f.close()

    def test_c_memory_limit_refuses_and_counts(self):
        # 256 MiB: loading the programs takes up to 160 MiB (memory_budget.h).
        procs, oom_kills = self.memory_cgroup(256 << 20)
        self.start_agent(log_level="info", cgroup_procs=procs)
        self.assertIn("memory limit 256 MiB (from its cgroup)", self.agent.log_text())
        table = self.baseline.sum("podtap_connections_max")
        self.assertEqual(table, 30535, "the plan for 256 MiB (README, --memory-limit)")
        conns = 16000
        self.hold_connections(conns)
        inbound = self.labels("server", direction="inbound", peer="src")
        outbound = self.labels("client", direction="outbound", peer="dst")
        scrapes = 0
        deadline = time.monotonic() + self.TIMEOUT
        while True:
            ex = self.agent.scrape()
            scrapes += 1
            held = (ex.sum("tcp_open_connections", inbound)
                    + ex.sum("tcp_open_connections", outbound))
            refused = (ex.sum("podtap_connections_untracked_total", {"reason": "table_full"})
                       - self.baseline.sum("podtap_connections_untracked_total",
                                           {"reason": "table_full"}))
            # Each scrape made while the table is full is refused too: its two
            # sockets (the test's and the agent's end) are host sockets.
            if 2 * conns <= held + refused <= 2 * conns + 2 * scrapes:
                break
            if time.monotonic() > deadline:
                self.fail("%d sockets of the pods held open: %d counted open, %d refused "
                          "(%d scrapes)\n%s" % (2 * conns, held, refused, scrapes,
                                                 self.agent.log_tail()))
            time.sleep(0.5)
        harness.log("memory limit 256 MiB: table of %d; %d sockets held: %d tracked, %d refused"
                    % (table, 2 * conns, held, refused))
        self.assertLessEqual(held, table)
        self.assertGreater(refused, 2 * conns - table - 1)
        self.assertEqual(oom_kills(), 0)
        self.assert_serving()


# Hold servers and clients for test_c: stdlib Python in a pod's namespace,
# many descriptors (RLIMIT_NOFILE raised to its hard limit, 20,000 on the
# test machines, which root cannot raise there), held until stdin closes.
HOLD_PORT = 18100
# Both scripts start alike: arguments, then as many descriptors as allowed.
HOLD_PRELUDE = r"""
import resource, socket, sys
addr, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
if hard != resource.RLIM_INFINITY and hard < n + 64:
    sys.exit("RLIMIT_NOFILE's hard limit %d is below %d descriptors" % (hard, n + 64))
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
"""
HOLD_SERVER = HOLD_PRELUDE + r"""
ls = socket.create_server((addr, port), backlog=4096)
print("listening", flush=True)
held = [ls.accept()[0] for _ in range(n)]
print("accepted %d" % len(held), flush=True)
sys.stdin.read()
"""
HOLD_CLIENT = HOLD_PRELUDE + r"""
held = [socket.create_connection((addr, port), timeout=30) for _ in range(n)]
print("connected %d" % len(held), flush=True)
sys.stdin.read()
"""


if __name__ == "__main__":
    unittest.main(verbosity=2)
