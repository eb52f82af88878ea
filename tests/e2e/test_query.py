#!/usr/bin/python3
"""Real-kernel end-to-end tests of the operator query service and its CLI:
the real `podtap` binary (a real gRPC client) asks the running agent over its
unix socket while real clients in the client pod talk to a real nginx (and
peer.py) in the server pod.

Ground truth. nginx's JSON access log says which requests were answered, with
which status, in which order; peer.py reports every byte of its long-lived
connection and the kernel's own count of them. `stat`, `top` and `edges` must
equal the log's counts; `tap` must show exactly the requests made while it
was attached, in order, and only those its filters select; `conns` must show
the long-lived connection with exactly its bytes; a tap past the agent's cap
and a non-root caller must be refused with a clear message. Percentiles are
checked against sleepy_http.py, a server whose latencies the test chooses and
measures: every printed percentile lies in the fine bucket of the latency of
its rank.

Run as root: tests/e2e/run.sh test_query (all cases) or
tests/e2e/run.sh test_query.QueryTest.test_b_tap_exact_in_order_and_filtered.
PODTAP_AGENT and PODTAP_CLI override the binaries; PODTAP_E2E_ARTIFACTS the
folder where failing cases leave the agent's log.
"""

import collections
import json
import math
import os
import random
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from nginx import NGINX, Nginx, nginx_conf  # noqa: E402
from query_util import bucket_bounds, latency_bucket, numbers, printed_ms  # noqa: E402

CLI = os.environ.get("PODTAP_CLI", os.path.join(harness.REPO, "build", "podtap"))
CURL = "/usr/bin/curl"
OPENSSL = "/usr/bin/openssl"
HTTP_PORT = 8080
RAW_PORT = 18091  # peer.py, for the long-lived connection
SLEEPY_PORT = 8081  # sleepy_http.py, the server of chosen latencies
SLEEPY = os.path.join(os.path.dirname(os.path.abspath(__file__)), "sleepy_http.py")
CLI_TIMEOUT = 30  # bound on one CLI run
TAP_SECONDS = 8  # how long the taps of case (b) stay attached
ARTIFACTS = (os.environ.get("PODTAP_E2E_ARTIFACTS")
             or tempfile.mkdtemp(prefix="ptE2e-query-artifacts-"))

NGINX_CONF = nginx_conf(r"""
    log_format podtap escape=json
        '{"host":"$http_host","status":"$status","method":"$request_method",'
        '"uri":"$uri","request_uri":"$request_uri","conn":"$connection"}';
    access_log %(dir)s/access.log podtap;
    default_type text/plain;
    keepalive_requests 100000;
    server {
        listen %(ip4)s:%(port)d;
        root %(dir)s/www;
        location /ok/ { return 200 "ok\n"; }
        location /fail/ { return 500 "fail\n"; }
    }
""")

def tearDownModule():
    try:
        os.rmdir(ARTIFACTS)
    except OSError:
        harness.log("artifacts kept in %s" % ARTIFACTS)


class QueryTest(harness.PodPairTest):
    ARTIFACTS = ARTIFACTS

    @classmethod
    def setUpClass(cls):
        missing = [t for t in (NGINX, CURL, OPENSSL, CLI) if not os.access(t, os.X_OK)]
        if missing:
            raise RuntimeError("missing %s (make deps; make build)" % ", ".join(missing))
        super().setUpClass()
        cls.nginx = Nginx(cls.topo.server_ns, NGINX_CONF,
                          {"ip4": cls.topo.SERVER_IP4, "port": HTTP_PORT}, {},
                          ports=(HTTP_PORT,), listeners=1)
        cls.addClassCleanup(cls.nginx.remove, ARTIFACTS)
        cls.nginx.start()
        cls.authority = "%s:%d" % (cls.topo.SERVER_IP4, HTTP_PORT)
        # A copy of the CLI that an unprivileged user may run, wherever the
        # build tree is.
        cls.cli_dir = tempfile.mkdtemp(prefix="ptE2e-query-cli-")
        cls.addClassCleanup(shutil.rmtree, cls.cli_dir, True)
        os.chmod(cls.cli_dir, 0o755)
        cls.cli = os.path.join(cls.cli_dir, "podtap")
        shutil.copy(CLI, cls.cli)
        os.chmod(cls.cli, 0o755)

    # ---- helpers -------------------------------------------------------------

    def podtap(self, *args, check=True, user=None, agent=None):
        """Runs the CLI against this test's agent; returns the CompletedProcess."""
        cmd = [self.cli, "--agent", agent or "unix://" + self.agent.query_socket] + list(args)
        if user is not None:
            cmd = [harness.SETPRIV, "--reuid", str(user), "--regid", str(user),
                   "--clear-groups", "--"] + cmd
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=CLI_TIMEOUT,
                           stdin=subprocess.DEVNULL)
        if check and p.returncode != 0:
            raise AssertionError("podtap %s failed (rc=%d)\nstdout: %s\nstderr: %s\n%s"
                                 % (" ".join(args), p.returncode, p.stdout, p.stderr,
                                    self.agent.log_tail()))
        return p

    def podtap_json(self, *args):
        return numbers(json.loads(self.podtap("-o", "json", *args).stdout))

    def curl(self, paths, authority=None):
        """One curl process in the client pod, one kept-alive connection,
        the paths in order; returns curl's own status codes."""
        args = [CURL, "-sS", "--max-time", "20", "-w", "%{http_code}\\n"]
        for p in paths:
            args += ["http://%s%s" % (authority or self.authority, p), "-o", "/dev/null"]
        cmd = harness._orphan_guard("KILL") + ["ip", "netns", "exec", self.topo.client_ns] + args
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=60,
                           stdin=subprocess.DEVNULL)
        if p.returncode != 0:
            raise RuntimeError("curl failed: %s %s" % (p.stdout, p.stderr))
        return p.stdout.split()

    def logged(self, since, count):
        """nginx's entries after `since`: exactly `count` of them."""
        return self.nginx.entries(since, count=count)

    def poll(self, what, fetch, done, timeout=15.0):
        """Calls fetch() until done(result); returns the last result."""
        deadline = time.monotonic() + timeout
        while True:
            got = fetch()
            if done(got):
                return got
            if time.monotonic() >= deadline:
                raise AssertionError("%s: not reached within %.0fs; last answer:\n%s\n%s"
                                     % (what, timeout, json.dumps(got, indent=1)[:4000],
                                        self.agent.log_tail()))
            time.sleep(0.25)

    @staticmethod
    def row(rows, pod, direction):
        got = [r for r in rows if r["resource"]["pod"] == pod and r["direction"] == direction]
        return got[0] if got else None

    # ---- the cases -------------------------------------------------------------

    def test_a_stat_top_edges_equal_the_traffic(self):
        self.start_agent()
        since = self.nginx.offset()
        paths = ["/ok/1", "/ok/2", "/fail/1", "/ok/3?q=secret", "/missing", "/ok/1",
                 "/fail/2", "/ok/2", "/ok/1", "/fail/1", "/missing", "/ok/3"]
        statuses = self.curl(paths)
        entries = self.logged(since, len(paths))
        if [e["status"] for e in entries] != statuses:
            raise RuntimeError("ground truth inconsistent: nginx %s, curl %s" % (entries, statuses))
        n = len(entries)
        ok = sum(1 for e in entries if int(e["status"]) < 500)
        api, web = self.S["pod"], self.C["pod"]

        # Per pod: the server's inbound view and the client's outbound one.
        def stat_pods():
            return self.podtap_json("stat", "-n", "shop").get("rows", [])

        def both_sides_complete(rows):
            a, w = self.row(rows, api, "INBOUND"), self.row(rows, web, "OUTBOUND")
            return a is not None and w is not None and a["requests"] >= n and \
                w["requests"] >= n
        rows = self.poll("stat of both pods", stat_pods, both_sides_complete)
        time.sleep(harness.PodPairTest.SETTLE)  # nothing counted twice, late
        rows = stat_pods()
        for pod, direction in ((api, "INBOUND"), (web, "OUTBOUND")):
            r = self.row(rows, pod, direction)
            self.assertEqual((r["requests"], r["successes"]), (n, ok), r)
            self.assertAlmostEqual(r["success_rate"], ok / n)
            self.assertAlmostEqual(r["rps"], n / 60.0)
            self.assertGreater(r["latency_p99_ms"], 0)
            self.assertGreaterEqual(r["latency_p99_ms"], r["latency_p50_ms"])
        self.assertIsNone(self.row(rows, api, "OUTBOUND"))
        self.assertIsNone(self.row(rows, web, "INBOUND"))

        # Per workload: deploy/api is the server pod's Deployment.
        rows = self.podtap_json("stat", "deploy/api", "-n", "shop")["rows"]
        self.assertEqual([(r["resource"]["workload_kind"], r["resource"]["workload"],
                           r["direction"], r["requests"], r["successes"]) for r in rows],
                         [("deployment", "api", "INBOUND", n, ok)])
        table = self.podtap("stat", "deploy/api", "-n", "shop").stdout
        harness.log("podtap stat deploy/api -n shop:\n" + table)
        lines = table.splitlines()
        self.assertEqual(lines[0].split()[:4], ["NAME", "DIRECTION", "REQUESTS", "SUCCESS"])
        self.assertEqual(lines[1].split()[:4], ["shop/deployment/api", "inbound", str(n),
                                                "%.2f%%" % (100.0 * ok / n)])

        # Top by path on the server pod: nginx's counts per path, no query string.
        top = self.podtap_json("top", "pod/" + api, "-n", "shop")["rows"]
        want = collections.Counter(e["uri"] for e in entries)
        self.assertEqual({r["key"]: r["requests"] for r in top}, dict(want))
        fails = collections.Counter(e["uri"] for e in entries if int(e["status"]) >= 500)
        self.assertEqual({r["key"]: r["failures"] for r in top if r["failures"]}, dict(fails))
        self.assertEqual([r["requests"] for r in top], sorted(want.values(), reverse=True))
        harness.log("podtap top:\n" + self.podtap("top", "-n", "shop").stdout)

        # Edges: web -> api once, although both of its ends were observed.
        edges = self.podtap_json("edges", "-n", "shop")["edges"]
        self.assertEqual([(e["source"]["pod"], e["destination"]["pod"], e["requests"],
                           e["successes"]) for e in edges], [(web, api, n, ok)])
        harness.log("podtap edges:\n" + self.podtap("edges", "-n", "shop").stdout)

        # A name that matches nothing is a clear error.
        p = self.podtap("stat", "deploy/nope", "-n", "shop", check=False)
        self.assertEqual(p.returncode, 1)
        self.assertIn("no pod on this node matches deployment nope, namespace shop", p.stderr)

    def start_tap(self, *args):
        """A tap in the background; returns (Popen, its stdout file) once
        it says it is attached."""
        out = tempfile.TemporaryFile(mode="w+")
        err = tempfile.TemporaryFile(mode="w+")
        self.addCleanup(out.close)
        self.addCleanup(err.close)
        cmd = harness._orphan_guard("TERM") + [
            self.cli, "--agent", "unix://" + self.agent.query_socket, "-o", "json", "tap"
        ] + list(args)
        p = subprocess.Popen(cmd, stdout=out, stderr=err, stdin=subprocess.DEVNULL, text=True)
        harness._live_procs[p.pid] = p
        self.addCleanup(harness._stop_pid, p)
        deadline = time.monotonic() + 10
        while True:
            err.seek(0)
            text = err.read()
            if "tap attached" in text:
                return p, out, err
            if p.poll() is not None or time.monotonic() > deadline:
                raise AssertionError("tap %s did not attach (rc=%s): %s"
                                     % (args, p.poll(), text))
            time.sleep(0.05)

    def finish_tap(self, tap):
        p, out, err = tap
        rc = p.wait(timeout=TAP_SECONDS + 10)
        harness._live_procs.pop(p.pid, None)
        out.seek(0)
        err.seek(0)
        self.assertEqual(rc, 0, err.read())
        return [numbers(json.loads(l)) for l in out.read().splitlines() if l.strip()]

    def test_b_tap_exact_in_order_and_filtered(self):
        self.start_agent()
        api, web = self.S["pod"], self.C["pod"]
        before = self.nginx.offset()
        self.curl(["/ok/before-1", "/fail/before-2"])  # before any tap: never shown
        self.logged(before, 2)
        duration = str(TAP_SECONDS)
        taps = {
            "server": self.start_tap("-n", "shop", "--pod", api, "--duration", duration),
            "server_5xx": self.start_tap("pod/" + api, "-n", "shop", "--status", "5xx",
                                         "--duration", duration),
            "client_ok_path": self.start_tap("deploy/web", "-n", "shop", "--path", "/ok/",
                                             "--direction", "outbound", "--duration", duration),
        }
        since = self.nginx.offset()
        paths = ["/ok/1", "/fail/2", "/ok/3?token=secret", "/missing", "/ok/5", "/fail/6"]
        self.curl(paths[:3])
        self.curl(paths[3:])  # a second connection
        entries = self.logged(since, len(paths))
        got = {name: self.finish_tap(t) for name, t in taps.items()}
        truth = [(e["method"], e["uri"], int(e["status"])) for e in entries]

        def view(events):
            return [(e["method"], e["path"], e["status"]) for e in events]
        self.assertEqual(view(got["server"]), truth)
        self.assertEqual(view(got["server_5xx"]), [t for t in truth if t[2] >= 500])
        self.assertEqual(view(got["client_ok_path"]),
                         [t for t in truth if t[1].startswith("/ok/")])
        for e in got["server"]:
            self.assertEqual((e["direction"], e["source"]["pod"], e["destination"]["pod"],
                              e["authority"], e["failure"]),
                             ("INBOUND", web, api, self.authority, e["status"] >= 500))
            self.assertNotIn("?", e["path"])
            self.assertGreaterEqual(e["latency_ms"], 0)
        for e in got["client_ok_path"]:
            self.assertEqual((e["direction"], e["source"]["pod"], e["destination"]["pod"]),
                             ("OUTBOUND", web, api))
        times = [int(e["unix_nanos"]) for e in got["server"]]
        self.assertEqual(times, sorted(times))
        self.assertLess(abs(times[0] / 1e9 - time.time()), 60)

        # The table form, as the README shows it.
        tap = self.start_tap_table(api)
        self.curl(["/ok/table", "/fail/table"])
        lines = tap.communicate(timeout=CLI_TIMEOUT)[0].splitlines()
        tap.stdout.close()
        tap.stderr.close()
        harness._live_procs.pop(tap.pid, None)
        harness.log("podtap tap:\n" + "\n".join(lines))
        self.assertEqual(len(lines), 2)
        self.assertIn("inbound shop/%s -> shop/%s GET %s/ok/table :status=200"
                      % (web, api, self.authority), lines[0])
        self.assertTrue(lines[1].endswith("FAILURE"), lines[1])

    def start_tap_table(self, pod):
        cmd = [self.cli, "--agent", "unix://" + self.agent.query_socket, "tap", "-n", "shop",
               "--pod", pod, "--count", "2", "--duration", str(TAP_SECONDS)]
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             stdin=subprocess.DEVNULL)
        harness._live_procs[p.pid] = p
        self.addCleanup(harness._stop_pid, p)
        line = p.stderr.readline()  # blocks until attached (or the CLI fails)
        self.assertIn("tap attached", line)
        return p

    def test_c_tap_past_the_cap_is_refused(self):
        self.start_agent(extra_args=["--query-max-taps", "1"])
        first = self.start_tap("-n", "shop", "--duration", "4")
        p = self.podtap("tap", "-n", "shop", "--duration", "2", check=False)
        self.assertEqual(p.returncode, 1)
        self.assertIn("too many taps: 1 already running on this agent (its limit, "
                      "--query-max-taps, is 1)", p.stderr)
        self.finish_tap(first)
        # The slot is free again once the first tap ended.
        self.finish_tap(self.start_tap("-n", "shop", "--duration", "1"))
        # The agent notices a client gone within its 200 ms wait for records.
        self.poll("podtap_tap_streams back to 0",
                  lambda: self.agent.scrape().sum("podtap_tap_streams"), lambda n: n == 0,
                  timeout=5)

    def test_d_conns_show_a_long_lived_connection_with_its_bytes(self):
        self.start_agent(diag_interval=1)
        server = harness.start_server(self.topo.server_ns, self.topo.SERVER_IP4, RAW_PORT)
        self.addCleanup(server.stop)
        hold = harness.start_hold(self.topo.client_ns, self.topo.SERVER_IP4, RAW_PORT,
                                  [(3000, 70000)])
        self.addCleanup(hold.stop)
        rec = hold.wait_event("exchanged", timeout=20)[0]
        written, read, port = rec["written"], rec["read"], rec["local_port"]
        self.assertEqual((written, read), (harness.HEADER_LEN + 3000, 70000))
        # Harness self-check: the kernel agrees (its bytes_acked counts our SYN).
        k = rec["kernel"]
        self.assertEqual((k["bytes_acked"], k["bytes_received"]), (written + 1, read), k)
        api, web = self.S["pod"], self.C["pod"]

        def ours(conns):
            return [c for c in conns
                    if c["remote"]["address"].endswith(":%d" % RAW_PORT) or
                    c["local"]["address"].endswith(":%d" % RAW_PORT)]

        def fetch():
            return ours(self.podtap_json("conns", "-n", "shop").get("conns", []))

        def exact(conns):
            return sorted((c["direction"], c["local"]["pod"], c["remote"]["pod"],
                           c["read_bytes"], c["write_bytes"]) for c in conns) == \
                [("INBOUND", api, web, written, read), ("OUTBOUND", web, api, read, written)]
        conns = self.poll("conns of the held connection", fetch, exact)
        for c in conns:
            self.assertEqual(c["protocol"], "opaque")  # peer.py's binary protocol
            self.assertGreater(c["age_seconds"], 0)
        out = [c for c in conns if c["direction"] == "OUTBOUND"][0]
        self.assertEqual(out["local"]["address"], "%s:%d" % (self.topo.CLIENT_IP4, port))
        self.assertEqual(out["remote"]["address"], "%s:%d" % (self.topo.SERVER_IP4, RAW_PORT))
        table = self.podtap("conns", "--pod", web, "-n", "shop").stdout
        harness.log("podtap conns:\n" + table)
        self.assertIn("68.4KiB", table.splitlines()[1])
        # Gone from the list once closed.
        hold.signal(signal.SIGUSR1)
        self.assertEqual(hold.wait(20), 0)
        self.poll("conns after the close", fetch, lambda c: c == [])

    def test_e_non_root_callers_are_refused(self):
        self.start_agent()
        sock = self.agent.query_socket
        self.assertEqual(os.stat(sock).st_mode & 0o777, 0o600)
        self.assertEqual(os.stat(os.path.dirname(sock)).st_mode & 0o777, 0o700)
        # The directory the agent created is closed; the one it found open stays so (a
        # --query-socket in /tmp or /run must not close those to the node).
        self.assertEqual(os.stat(os.path.dirname(os.path.dirname(sock))).st_mode & 0o777, 0o755)
        # As installed: the socket's modes keep others out.
        p = self.podtap("stat", check=False, user=65534)
        self.assertEqual(p.returncode, 1)
        self.assertIn("permission denied opening the agent's socket %s: only root may query "
                      "podtap" % sock, p.stderr)
        # With the modes opened up, the agent's own check still refuses.
        opened = []
        path = sock
        while path not in ("/", ""):
            opened.append((path, os.stat(path).st_mode & 0o7777))
            path = os.path.dirname(path)
        self.addCleanup(lambda: [os.chmod(p, m) for p, m in opened])
        for p, m in opened:
            os.chmod(p, m | 0o005 | (0o002 if p == sock else 0))
        p = self.podtap("stat", check=False, user=65534)
        self.assertEqual(p.returncode, 1, p.stdout)
        self.assertIn("the agent refused this call: the podtap query socket answers root only; "
                      "this caller is uid 65534", p.stderr)
        self.podtap("stat")  # root still may

    def test_g_tcp_needs_tls_and_a_token(self):
        # Without TLS and a token the agent refuses to start, before it attaches.
        p = subprocess.run([harness.AGENT, "--query-listen", "127.0.0.1:1"],
                           capture_output=True, text=True, timeout=CLI_TIMEOUT)
        self.assertEqual(p.returncode, 1)
        self.assertIn("--query-listen 127.0.0.1:1 serves the query service over TCP, which needs "
                      "TLS and a bearer token", p.stdout + p.stderr)
        d = tempfile.mkdtemp(prefix="ptE2e-query-tls-")
        self.addCleanup(shutil.rmtree, d, True)
        cert, key, token = (os.path.join(d, n) for n in ("cert.pem", "key.pem", "token"))
        harness.sh([OPENSSL, "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1",
                    "-subj", "/CN=podtap-agent", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", key, "-out", cert])
        with open(token, "w") as f:
            f.write(secrets.token_hex(16) + "\n")
        wrong = os.path.join(d, "wrong")
        with open(wrong, "w") as f:
            f.write("not-the-token\n")
        port = harness.free_port()
        self.start_agent(extra_args=["--query-listen", "127.0.0.1:%d" % port,
                                     "--query-tls-cert", cert, "--query-tls-key", key,
                                     "--query-token-file", token])
        addr = "127.0.0.1:%d" % port
        since = self.nginx.offset()
        self.curl(["/ok/tls-1", "/fail/tls-2", "/ok/tls-3"])
        self.logged(since, 3)

        def stat():
            p = self.podtap("--ca", cert, "--token-file", token, "-o", "json", "stat",
                            "pod/" + self.S["pod"], "-n", "shop", agent=addr)
            return numbers(json.loads(p.stdout))["rows"]
        rows = self.poll("stat over TCP", stat,
                         lambda rows: rows and rows[0]["requests"] == 3)
        self.assertEqual([(r["direction"], r["requests"], r["successes"]) for r in rows],
                         [("INBOUND", 3, 2)])
        p = self.podtap("--ca", cert, "--token-file", wrong, "stat", agent=addr, check=False)
        self.assertEqual(p.returncode, 1)
        self.assertIn("the agent refused this call: wrong bearer token", p.stderr)
        p = self.podtap("stat", agent=addr, check=False)
        self.assertEqual(p.returncode, 1)
        self.assertIn("is a TCP address: the agent serves it with TLS and a bearer token, so "
                      "pass --ca", p.stderr)

    def test_h_percentiles_lie_in_the_bucket_of_their_rank(self):
        self.start_agent()
        server = harness.PeerProcess(self.topo.server_ns, [self.topo.SERVER_IP4, SLEEPY_PORT],
                                     "sleepy_http", script=SLEEPY)
        self.addCleanup(server.stop)
        server.wait_event("listening", 10)
        # Each sleep 0.2 ms past the start of a bucket 4 to 34 ms wide: a
        # loaded machine oversleeps by a few ms at most, the syscalls add less.
        def sleep_us(ms):
            return (bucket_bounds(latency_bucket(ms * 1_000_000))[0] + 200_000) // 1000
        plan = {"/sleep/%d" % sleep_us(150): 10, "/sleep/%d" % sleep_us(300): 9,
                "/sleep/%d" % sleep_us(1200): 1}
        paths = [p for p, n in plan.items() for _ in range(n)]
        random.Random(5).shuffle(paths)
        n = len(paths)
        sleepy = "%s:%d" % (self.topo.SERVER_IP4, SLEEPY_PORT)
        self.assertEqual(self.curl(paths, authority=sleepy), ["200"] * n)
        served = server.wait_event("served", 10, count=n)
        # The agent's latency of a request is the server's plus the syscalls'
        # share (never less); half a millisecond short of the bucket's end
        # leaves room for that, else this run cannot say which bucket is right.
        margin_ns = 500_000
        for r in served:
            if r["ns"] + margin_ns >= bucket_bounds(latency_bucket(r["ns"]))[1]:
                raise RuntimeError("ground truth ambiguous: %s took %d ns, within %d ns of its "
                                   "bucket's end" % (r["path"], r["ns"], margin_ns))

        def rank_bucket(durations, q):
            ordered = sorted(durations)
            return bucket_bounds(latency_bucket(ordered[math.ceil(q * len(ordered) - 1e-9) - 1]))

        def assert_in(what, ms, bounds):
            lo, hi = bounds
            self.assertTrue(lo / 1e6 <= ms < hi / 1e6, "%s %.6f ms is not in the bucket "
                            "[%.6f, %.6f) ms" % (what, ms, lo / 1e6, hi / 1e6))

        durations = [r["ns"] for r in served]
        api, web = self.S["pod"], self.C["pod"]

        def stat():
            return self.podtap_json("stat", "pod/" + api, "-n", "shop",
                                    "--direction", "inbound").get("rows", [])
        rows = self.poll("stat of the sleepy requests", stat,
                         lambda rows: rows and rows[0]["requests"] >= n)
        self.assertEqual(rows[0]["requests"], n)
        # The histogram holds every request in the bucket of its latency.
        hist = rows[0]["latency"]
        self.assertEqual(dict(zip(hist["bucket"], map(int, hist["count"]))),
                         dict(collections.Counter(latency_bucket(d) for d in durations)))
        for q, field in ((0.5, "latency_p50_ms"), (0.95, "latency_p95_ms"),
                         (0.99, "latency_p99_ms")):
            assert_in("stat json %s" % field, rows[0][field], rank_bucket(durations, q))
        table = self.podtap("stat", "pod/" + api, "-n", "shop", "--direction", "inbound").stdout
        harness.log("podtap stat of the sleepy requests:\n" + table)
        header, line = table.splitlines()[0].split(), table.splitlines()[1].split()
        for q, col in ((0.5, "P50"), (0.95, "P95"), (0.99, "P99")):
            assert_in("stat table " + col, printed_ms(line[header.index(col)]),
                      rank_bucket(durations, q))

        # Top: each path's percentiles from its own requests.
        table = self.podtap("top", "pod/" + api, "-n", "shop", "--direction", "inbound").stdout
        harness.log("podtap top of the sleepy requests:\n" + table)
        lines = [l.split() for l in table.splitlines()]
        self.assertEqual(sorted(l[2] for l in lines[1:]), sorted(plan))
        for l in lines[1:]:
            mine = [r["ns"] for r in served if r["path"] == l[2]]
            self.assertEqual(int(l[3]), len(mine))
            assert_in("top %s P50" % l[2], printed_ms(l[6]), rank_bucket(mine, 0.5))
            assert_in("top %s P99" % l[2], printed_ms(l[7]), rank_bucket(mine, 0.99))

        # Edges: web -> api as the client measured it, a little more than the server.
        table = self.podtap("edges", "pod/" + api, "-n", "shop").stdout
        harness.log("podtap edges of the sleepy requests:\n" + table)
        header, line = table.splitlines()[0].split(), table.splitlines()[1].split()
        self.assertEqual(line[:3], ["shop/" + web, "shop/" + api, str(n)])
        for q, col in ((0.5, "P50"), (0.99, "P99")):
            assert_in("edges " + col, printed_ms(line[header.index(col)]),
                      rank_bucket(durations, q))

    def test_f_unreachable_agent_is_a_clear_error(self):
        missing = os.path.join(tempfile.gettempdir(), "ptE2e-no-agent-%d.sock" % os.getpid())
        p = subprocess.run([self.cli, "--agent", "unix://" + missing, "stat"],
                           capture_output=True, text=True, timeout=CLI_TIMEOUT)
        self.assertEqual(p.returncode, 1)
        self.assertIn("cannot reach the agent: no socket at %s" % missing, p.stderr)


if __name__ == "__main__":
    unittest.main()
