#!/usr/bin/python3
"""Real-kernel end-to-end tests: every TCP connection between two pods
(network namespaces) must show up in podtap's Linkerd-compatible transport
metrics with exact counts and payload bytes.

Each test starts a fresh agent, takes a baseline scrape once it is ready, runs
traffic whose ground truth is known three ways (the plan, the peers' own
counts, the kernel's TCP_INFO), and polls /metrics until the deltas equal the
ground truth exactly or a deadline passes.

Run as root: tests/e2e/run.sh [CASE...], or /usr/bin/python3
tests/e2e/test_tcp_exact.py. PODTAP_AGENT overrides the agent binary's path;
PODTAP_E2E_ARTIFACTS the folder where failing cases leave the agent's log, its
pods file and its last scrape.
"""

import os
import random
import signal
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import HEADER_LEN, Expect  # noqa: E402

SERVER_PORT = 18080
CLOSED_PORT = 18081  # nothing listens here: connects to it are refused
SETTLE = 2.5  # seconds the values must stay equal once reached
TIMEOUT = 15.0  # seconds for the agent's numbers to reach the ground truth
ARTIFACTS = os.environ.get("PODTAP_E2E_ARTIFACTS") or tempfile.mkdtemp(prefix="ptE2e-artifacts-")


def random_plan(seed, n, behaviour="normal", min_recv=0):
    rng = random.Random(seed)
    return [(rng.randint(0, 200000), rng.randint(min_recv, 200000), behaviour) for _ in range(n)]


def tearDownModule():
    # Artifacts of passing tests are removed one by one; keep the folder only
    # when something is left in it.
    try:
        os.rmdir(ARTIFACTS)
    except OSError:
        harness.log("artifacts kept in %s" % ARTIFACTS)


class Truth:
    """What each pod did, from the plan, checked against what the peers and the
    kernel saw."""

    def __init__(self):
        self.opened = 0
        self.ok = 0
        self.reset = 0
        self.refused = 0
        self.timeout = 0
        self.client_written = 0
        self.client_read = 0
        self.server_read = 0
        self.server_written = 0

    def __str__(self):
        return ("opened=%d ok=%d reset=%d refused=%d timeout=%d client wrote=%d read=%d, "
                "server read=%d wrote=%d" % (self.opened, self.ok, self.reset, self.refused,
                                             self.timeout, self.client_written,
                                             self.client_read, self.server_read,
                                             self.server_written))


class TcpExactTest(harness.PodPairTest):
    ARTIFACTS = ARTIFACTS
    TIMEOUT = TIMEOUT
    SETTLE = SETTLE

    # ---- helpers ---------------------------------------------------------

    def start_server(self, addr, listen=None):
        server = harness.start_server(self.topo.server_ns, listen or addr, SERVER_PORT)
        self.addCleanup(server.stop)
        return server

    def run_plan(self, addr, plan, server, port=SERVER_PORT, seed=1):
        """Runs one client plan; see run_plans."""
        return self.run_plans([(addr, port, plan, seed)], {addr: server} if server else {})

    def run_plans(self, runs, servers):
        """Runs client plans [(addr, port, plan, seed)] at the same time, one
        client process each, against `servers` {addr: server peer} (on
        SERVER_PORT), and returns the summed Truth after checking the plan
        against the peers' and the kernel's counts for every connection."""
        before = {a: len(s.events("conn")) for a, s in servers.items()}
        clients = [harness.ClientRun(self.topo.client_ns, addr, port, plan, seed)
                   for addr, port, plan, seed in runs]
        try:
            results = [c.finish() for c in clients]
        finally:
            for c in clients:
                c.proc.stop()  # no-op for those that finished
        t = Truth()
        problems = []
        expected_at = {a: 0 for a in servers}
        for (addr, port, plan, _), conns in zip(runs, results):
            if port == SERVER_PORT and addr in servers:
                expected_at[addr] += sum(1 for c in conns
                                         if c["outcome"] not in ("refused", "timeout"))
        # Server records by (client port, sizes), oldest first: a client port
        # can come back in a later connection.
        by_key = {}
        for addr, server in servers.items():
            if expected_at[addr]:
                recs = server.wait_event("conn", timeout=30,
                                         count=before[addr] + expected_at[addr])[before[addr]:]
                for r in recs:
                    key = (addr, r["peer_port"], r.get("send_len"), r.get("recv_len"))
                    by_key.setdefault(key, []).append(r)
        for (addr, port, plan, _), conns in zip(runs, results):
            for (send, recv, behaviour), c in zip(plan, conns):
                where = "client -> %s:%d #%d" % (addr, port, c["index"])
                if behaviour in ("refused", "timeout"):
                    setattr(t, behaviour, getattr(t, behaviour) + 1)
                    continue
                t.opened += 1
                if behaviour == "reset":
                    t.reset += 1
                else:
                    t.ok += 1
                w, r = HEADER_LEN + send, recv
                t.client_written += w
                t.client_read += r
                t.server_read += w
                t.server_written += r
                if (c["written"], c["read"]) != (w, r):
                    problems.append("%s: wrote/read %d/%d, plan %d/%d"
                                    % (where, c["written"], c["read"], w, r))
                problems += ["%s: %s" % (where, m)
                             for m in harness.kernel_mismatches(c, "client")]
                pending = by_key.get((addr, c.get("local_port"), send, recv))
                if not pending:
                    problems.append("%s: no server record for port %s"
                                    % (where, c.get("local_port")))
                    continue
                s = pending.pop(0)
                want = "reset_sent" if behaviour == "reset" else "ok"
                if s["outcome"] != want or not s.get("all_acked"):
                    problems.append("server for %s: %s" % (where, s))
                if (s["read"], s["written"]) != (w, r):
                    problems.append("server for %s: read/wrote %d/%d, plan %d/%d"
                                    % (where, s["read"], s["written"], w, r))
                problems += ["server for %s: %s" % (where, m)
                             for m in harness.kernel_mismatches(s, "server")]
        left = [r for recs in by_key.values() for r in recs]
        if left:
            problems.append("server records without a client connection: %s" % left)
        if problems:
            raise RuntimeError("harness ground truth is inconsistent (not an agent "
                               "problem):\n" + "\n".join(problems))
        harness.log("%s: ground truth %s" % (self.id().rsplit(".", 1)[-1], t))
        return t

    def transport_expects(self, t):
        out = self.labels("client", direction="outbound", peer="dst")
        inb = self.labels("server", direction="inbound", peer="src")
        ex = []
        # A failed connect counts as a failed close of the client pod (no open,
        # no duration): tcp_close_total{errno!=""} shows it, as the dashboards want.
        for lbl, written, read, failed in (
                (out, t.client_written, t.client_read, t.reset + t.refused + t.timeout),
                (inb, t.server_written, t.server_read, t.reset)):
            ex += [
                Expect("tcp_open_total", lbl, t.opened),
                Expect("tcp_close_total", dict(lbl, classification="success"), t.ok),
                Expect("tcp_close_total", dict(lbl, classification="failure"), failed),
                Expect("tcp_write_bytes_total", lbl, written),
                Expect("tcp_read_bytes_total", lbl, read),
                Expect("tcp_open_connections", lbl, 0, absolute=True),
                Expect("tcp_connection_duration_ms_count",
                       dict(lbl, classification="success"), t.ok),
                Expect("tcp_connection_duration_ms_count",
                       dict(lbl, classification="failure"), t.reset),
            ]
        ex += [
            # Nothing the other way round: the client pod accepted nothing and
            # the server pod opened nothing.
            Expect("tcp_open_total", self.labels("client", direction="inbound"), 0),
            Expect("tcp_open_total", self.labels("server", direction="outbound"), 0),
            Expect("outbound_tcp_errors_total",
                   self.labels("client", direction="outbound", error="reset"), t.reset),
            Expect("outbound_tcp_errors_total",
                   self.labels("client", direction="outbound", error="connection_refused"),
                   t.refused),
            Expect("outbound_tcp_errors_total",
                   self.labels("client", direction="outbound", error="connect_timeout"),
                   t.timeout),
            Expect("outbound_tcp_errors_total", self.labels("client"),
                   t.reset + t.refused + t.timeout),
            Expect("inbound_tcp_errors_total",
                   self.labels("server", direction="inbound", error="reset"), t.reset),
            Expect("inbound_tcp_errors_total", self.labels("server"), t.reset),
        ]
        return ex

    def exchange(self, addr, n, seed):
        """Case (a)/(b)/(f): n connections, random sizes in both directions;
        the first two are the edge cases (header only, and the maximum)."""
        server = self.start_server(addr)
        plan = [(0, 0, "normal"), (200000, 200000, "normal")] + random_plan(seed, n - 2)
        t = self.run_plan(addr, plan, server, seed=seed)
        self.wait_equal(self.transport_expects(t))

    # ---- the cases ---------------------------------------------------------

    def assert_probe(self, agent, prog_type):
        """The lifecycle hook really is the one the case is about, as the
        kernel sees the agent's BPF links (not as the agent's log says)."""
        progs = agent.attached_programs()
        lifecycle = [p for p in progs if p["tp"] == "inet_sock_set_state"]
        self.assertEqual([p["prog"] for p in lifecycle], [prog_type],
                         "programs this agent attached: %s" % progs)

    def test_a_ipv4_exact(self):
        agent = self.start_agent()
        self.assert_probe(agent, "tracing")  # auto picks tp_btf on this kernel
        self.exchange(self.topo.SERVER_IP4, 20, seed=101)

    def test_b_ipv6_exact(self):
        self.start_agent()
        self.exchange(self.topo.SERVER_IP6, 20, seed=202)

    def test_c_reset_by_server(self):
        self.start_agent()
        server = self.start_server(self.topo.SERVER_IP4)
        # recv >= 1: the server's data is what acknowledges the client's bytes
        # before the RST (see peer.py).
        t = self.run_plan(self.topo.SERVER_IP4, random_plan(303, 5, "reset", min_recv=1),
                          server, seed=303)
        self.wait_equal(self.transport_expects(t))

    def test_d_connection_refused(self):
        self.start_agent()
        plan = [(100, 100, "refused")] * 7
        t = self.run_plan(self.topo.SERVER_IP4, plan, None, port=CLOSED_PORT)
        self.assertEqual(t.refused, 7)
        self.wait_equal(self.transport_expects(t))

    def test_e_long_lived(self):
        self.start_agent(diag_interval=1)
        server = self.start_server(self.topo.SERVER_IP4)
        # Two rounds on the one connection: the live numbers must follow the
        # bytes as they grow, not just show a first value.
        rounds = [(150000, 70000), (30000, 90000)]
        hold = harness.start_hold(self.topo.client_ns, self.topo.SERVER_IP4, SERVER_PORT,
                                  rounds, seed=505)
        self.addCleanup(hold.stop)
        out = self.labels("client", direction="outbound", peer="dst")
        inb = self.labels("server", direction="inbound", peer="src")
        w = r = 0
        for i, (send, recv) in enumerate(rounds):
            ev = hold.wait_event("exchanged", timeout=30, count=i + 1)[i]
            w, r = w + HEADER_LEN + send, r + recv
            self.assertEqual((ev["written"], ev["read"]), (w, r), "hold peer's own counts")
            # The kernel agrees while the connection is open (harness self-check).
            self.assertEqual(harness.kernel_mismatches(
                dict(ev, outcome="open", behaviour="live"), "client"), [])
            srv_ss = harness.ss_established(self.topo.server_ns, SERVER_PORT)
            self.assertEqual([(x["bytes_acked"], x["bytes_received"]) for x in srv_ss],
                             [(r, w)], "ss -tin in the server namespace: %s" % srv_ss)
            live = []
            for lbl, written, read in ((out, w, r), (inb, r, w)):
                live += [Expect("tcp_open_total", lbl, 1),
                         Expect("tcp_close_total", lbl, 0),
                         Expect("tcp_open_connections", lbl, 1, absolute=True),
                         Expect("tcp_write_bytes_total", lbl, written),
                         Expect("tcp_read_bytes_total", lbl, read)]
            # --diag-interval 1: the live bytes must show within 10 s, and stay.
            self.wait_equal(live, timeout=10)
            self.assertIsNone(hold.popen.poll(), "the connection must still be open")
            hold.signal(signal.SIGUSR1)  # next round, or close after the last
        self.assertEqual(hold.wait(timeout=30), 0, "hold peer: %s" % hold.records)
        c = hold.events("conn")[0]
        s = server.wait_event("conn", timeout=30)[0]
        self.assertEqual(harness.kernel_mismatches(c, "client"), [])
        self.assertEqual(harness.kernel_mismatches(s, "server"), [])
        self.assertEqual((c["written"], c["read"], s["read"], s["written"], s["rounds"]),
                         (w, r, w, r, len(rounds)))
        t = Truth()
        t.opened = t.ok = 1
        t.client_written = t.server_read = w
        t.client_read = t.server_written = r
        self.wait_equal(self.transport_expects(t))

    def test_f_tracepoint_fallback(self):
        agent = self.start_agent(probe_mode="tracepoint")
        self.assert_probe(agent, "tracepoint")
        self.exchange(self.topo.SERVER_IP4, 8, seed=606)

    def test_h_concurrent_clients(self):
        # Beyond the required cases: four client processes at once (two over
        # IPv4, two over IPv6), normal and reset connections interleaved.
        self.start_agent()
        servers = {self.topo.SERVER_IP4: self.start_server(self.topo.SERVER_IP4),
                   self.topo.SERVER_IP6: self.start_server(self.topo.SERVER_IP6)}
        runs = []
        for i, addr in enumerate([self.topo.SERVER_IP4, self.topo.SERVER_IP6] * 2):
            rng = random.Random(800 + i)
            plan = [(rng.randint(0, 100000), rng.randint(1, 100000),
                     "reset" if rng.random() < 0.2 else "normal") for _ in range(10)]
            runs.append((addr, SERVER_PORT, plan, 800 + i))
        t = self.run_plans(runs, servers)
        self.wait_equal(self.transport_expects(t))

    def test_i_connect_timeout(self):
        # Beyond the required cases: SYNs that are never answered. The server
        # pod's replies to the client are blackholed, and the client pod gives
        # up after one SYN retry (about 3 s) instead of the default two minutes.
        self.start_agent()
        c_ns, s_ns = self.topo.client_ns, self.topo.server_ns
        old = harness.sh(["ip", "netns", "exec", c_ns, "sysctl", "-n",
                          "net.ipv4.tcp_syn_retries"]).stdout.strip()
        harness.sh(["ip", "netns", "exec", c_ns, "sysctl", "-qw",
                    "net.ipv4.tcp_syn_retries=1"])
        self.addCleanup(harness.sh, ["ip", "netns", "exec", c_ns, "sysctl", "-qw",
                                     "net.ipv4.tcp_syn_retries=%s" % old])
        route = ["blackhole", "%s/32" % self.topo.CLIENT_IP4]
        harness.sh(["ip", "-n", s_ns, "route", "add"] + route)
        self.addCleanup(harness.sh, ["ip", "-n", s_ns, "route", "del"] + route)
        runs = [(self.topo.SERVER_IP4, CLOSED_PORT, [(10, 10, "timeout")], 900 + i)
                for i in range(3)]
        t = self.run_plans(runs, {})
        self.assertEqual(t.timeout, 3)
        self.wait_equal(self.transport_expects(t))

    def test_j_dual_stack_server(self):
        # Beyond the required cases: the server pod listens on [::] (dual
        # stack), so its side of IPv4 connections is an AF_INET6 socket with
        # IPv4-mapped addresses, as with many real servers.
        self.start_agent()
        addr = self.topo.SERVER_IP4
        server = self.start_server(addr, listen="::")
        plan = random_plan(1001, 6) + [(5000, 5000, "reset")]
        t = self.run_plan(addr, plan, server, seed=1001)
        self.wait_equal(self.transport_expects(t))

    def test_g_exposition_valid(self):
        agent = self.start_agent()
        server = self.start_server(self.topo.SERVER_IP4)
        t = self.run_plan(self.topo.SERVER_IP4,
                          [(1000, 2000, "normal"), (3000, 10, "reset")], server, seed=707)
        t2 = self.run_plan(self.topo.SERVER_IP4, [(1, 1, "refused")], None, port=CLOSED_PORT)
        t.refused = t2.refused
        self.wait_equal(self.transport_expects(t))

        status, headers, text = agent.get("/metrics")
        self.assertEqual(status, 200)
        ctype = {k.lower(): v for k, v in headers.items()}.get("content-type", "")
        self.assertTrue(ctype.startswith("text/plain") and "version=0.0.4" in ctype,
                        "Content-Type: %r" % ctype)
        ok, report = harness.promtool_check(text)
        harness.log(report)
        self.assertTrue(ok, "promtool found errors in the exposition:\n%s" % report)
        ex = harness.parse_exposition(text)  # strict: raises on any defect
        want_types = {
            "tcp_open_total": "counter", "tcp_close_total": "counter",
            "tcp_read_bytes_total": "counter", "tcp_write_bytes_total": "counter",
            "inbound_tcp_errors_total": "counter", "outbound_tcp_errors_total": "counter",
            "tcp_open_connections": "gauge", "tcp_connection_duration_ms": "histogram",
            "podtap_events_lost_total": "counter", "podtap_connections_tracked": "gauge",
            "podtap_build_info": "gauge",
        }
        got_types = {n: ex.families[n].type if n in ex.families else None for n in want_types}
        self.assertEqual(got_types, want_types)
        self.assertEqual(harness.histogram_bounds(ex, "tcp_connection_duration_ms"),
                         {tuple(float(b) for b in harness.LINKERD_BUCKETS)})
        self.assertEqual(agent.get("/healthz")[0], 200)
        self.assertEqual(ex.sum("podtap_events_lost_total"), 0)
        # Every reason is there from the start, the kernel's own count of skipped program runs
        # too (read from the programs' statistics, not from a map of ours).
        self.assertEqual(len(ex.select("podtap_events_lost_total", {"reason": "program_nested"})),
                         1)
        rc = agent.stop()
        self.assertEqual(rc, 0, "agent exit code after SIGTERM (%.1fs)\n%s"
                         % (agent.stop_seconds, agent.log_tail()))


if __name__ == "__main__":
    unittest.main(verbosity=2)
