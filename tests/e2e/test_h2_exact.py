#!/usr/bin/python3
"""Real-kernel end-to-end tests of podtap's HTTP/2 and gRPC metrics: real
clients in the client pod talk prior-knowledge h2c to real servers in the
server pod, and podtap's request_total / response_total / response_latency_ms
/ route_* series must equal, exactly and on both sides (inbound on the server
pod, outbound on the client pod), what the servers say happened.

  (a) h2load, 4 connections with 8 streams in flight each, to nginx
      (`listen ... http2`, no TLS: h2c with prior knowledge);
  (b) curl --http2-prior-knowledge (one URL per connection: Debian's curl
      7.88.1 cannot reuse an h2c connection, curl issue #10634) and nghttp,
      several URLs multiplexed on one connection;
  (c) gRPC (Debian's python3-grpcio, the C core: grpc_peer.py), unary calls
      answered OK or with a chosen status (trailers-only), server-streaming
      calls ending OK or with a status after their messages;
  (d) curl and nghttp over IPv6;
  (e) promtool on a scrape holding the HTTP/2 and gRPC series;
  (f) many frames in one syscall (h2_burst.py: the preface, SETTINGS and
      12 requests' HEADERS in one send), exact on every build: on the
      compat build (kernels without bpf_loop) the kernel's frame walk goes
      on in tail calls, 4 steps each;
  (g) more frames in one syscall than the compat build's walk can follow
      (70 requests' HEADERS in one send, 142 steps): exact where the kernel
      has bpf_loop; on the compat build the walk of those directions is
      lost past its last step, counted (h2_walk_lost), and only the
      requests walked before it are counted, the same on both sides.

Ground truth. nginx logs one JSON line per request it answered (Host as the
HTTP/2 module derives it from :authority, $status, the request line with its
protocol, the connection serial); the clients' own reports (curl's -w,
h2load's summary) must agree with it before podtap is compared with it: when
they disagree the harness is wrong, not the agent, and the case errors out.
For gRPC, the server records every call it handled (the :authority the C core
received, the status its handler ended with) and the client every call it
made (the status it received); both must agree with the plan.

Each test starts a fresh agent, takes a baseline scrape once it is ready and
compares deltas. nginx runs once for the class, in the foreground as a child
of this process (its own config, files and logs in a temporary folder), and
is stopped by PID; the gRPC server runs per case and is stopped by PID.

Run as root: tests/e2e/run.sh test_h2_exact (all cases) or
tests/e2e/run.sh test_h2_exact.H2ExactTest.test_c_grpc_exact.
PODTAP_AGENT overrides the agent binary; PODTAP_E2E_ARTIFACTS the folder where
failing cases leave the agent's log, its last scrape and nginx's logs.
"""

import collections
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from nginx import NGINX, Nginx, nginx_conf  # noqa: E402
from harness import Expect  # noqa: E402

CURL = "/usr/bin/curl"
H2LOAD = "/usr/bin/h2load"
NGHTTP = "/usr/bin/nghttp"
GRPC_PEER = os.path.join(harness.HERE, "grpc_peer.py")
H2_BURST = os.path.join(harness.HERE, "h2_burst.py")
TOOLS = {NGINX: "nginx", CURL: "curl", H2LOAD: "nghttp2-client", NGHTTP: "nghttp2-client"}

H2_PORT = 8082     # nginx, h2c with prior knowledge
GRPC_PORT = 50061  # grpc_peer.py server
SETTLE = 2.0  # seconds the values must stay equal once reached
TIMEOUT = 15.0  # seconds for the agent's numbers to reach the ground truth
CLIENT_TIMEOUT = 60  # bound on any one client command
ARTIFACTS = (os.environ.get("PODTAP_E2E_ARTIFACTS")
             or tempfile.mkdtemp(prefix="ptE2e-h2-artifacts-"))

# Every kind podtap_parse_errors_total{protocol="http2"} has (README); clean
# HTTP/2 from nginx, curl, h2load and gRPC must cause none.
H2_ERRORS = ("bad_preface", "frame_too_large", "hpack_failed", "lost_sync", "protocol")
# And HTTP/2 must never be taken for HTTP/1.x (not_http left out: any
# non-HTTP connection on the machine moves it).
H1_ERRORS = ("malformed", "headers_too_large", "bad_length", "lost_sync",
             "too_many_pipelined", "response_without_request")

# gRPC status codes used by case (c).
GRPC_OK, GRPC_INVALID_ARGUMENT, GRPC_NOT_FOUND, GRPC_UNAVAILABLE = 0, 3, 5, 14
UNARY = "/podtap.e2e.Echo/Unary"
STREAM = "/podtap.e2e.Echo/ServerStream"


def tearDownModule():
    try:
        os.rmdir(ARTIFACTS)
    except OSError:
        harness.log("artifacts kept in %s" % ARTIFACTS)


def classification(status):
    return "failure" if int(status) >= 500 else "success"


# --------------------------------------------------------------------------
# nginx in the server pod, h2c only.

NGINX_CONF = nginx_conf(r"""
    log_format podtap escape=json
        '{"host":"$http_host","status":"$status","method":"$request_method",'
        '"request":"$request","protocol":"$server_protocol","http2":"$http2",'
        '"conn":"$connection","conn_requests":"$connection_requests",'
        '"remote":"$remote_addr","bytes_sent":"$bytes_sent"}';
    access_log %(dir)s/access.log podtap;
    types { text/plain txt; application/octet-stream bin; }
    default_type application/octet-stream;
    sendfile off;
    keepalive_requests 100000;
    keepalive_timeout 60s;

    server {
        listen %(ip4)s:%(port)d http2;
        listen [%(ip6)s]:%(port)d http2;
        root %(dir)s/www;
        location = /status/200 { return 200 "status 200\n"; }
        location = /status/204 { return 204; }
        location = /status/404 { return 404; }
        location = /status/500 { return 500 "status 500\n"; }
        location = /status/503 { return 503 "status 503\n"; }
        location = /n { return 204; }
    }
""")

# name -> size in bytes: a tiny file, one in a single DATA frame, and bodies
# of many DATA frames (nginx's http2_chunk_size is 8 KB).
FILES = {"tiny.txt": 3, "k3.bin": 3 * 1024, "k10.bin": 10 * 1024, "k100.bin": 100 * 1024,
         "k300.bin": 300 * 1024}


# --------------------------------------------------------------------------
# grpc_peer.py in a namespace: harness.PeerProcess' reader, another program.


class GrpcPeer(harness.PeerProcess):
    def __init__(self, ns, args, name):  # pylint: disable=super-init-not-called (it starts peer.py)
        self.name = name
        self.ns = ns
        self.records = []
        self._cond = threading.Condition()
        self._stderr = tempfile.TemporaryFile(mode="w+")
        self._stderr_text = None
        self.cmd = (harness._orphan_guard("KILL") + ["ip", "netns", "exec", ns, harness.PY,
                                                     GRPC_PEER] + [str(a) for a in args])
        # No proxy, whatever the environment says (the peer also disables it).
        env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
        self.popen = subprocess.Popen(self.cmd, stdout=subprocess.PIPE, stderr=self._stderr,
                                      stdin=subprocess.DEVNULL, text=True, env=env)
        harness._live_procs[self.popen.pid] = self.popen
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()


# --------------------------------------------------------------------------
# The tests.


class H2ExactTest(harness.PodPairTest):
    ARTIFACTS = ARTIFACTS
    TIMEOUT = TIMEOUT
    SETTLE = SETTLE

    @classmethod
    def setUpClass(cls):
        harness.require_tools(TOOLS)
        p = subprocess.run([harness.PY, "-c", "import grpc"], capture_output=True, text=True)
        if p.returncode != 0:
            raise RuntimeError("python3-grpcio is missing (make deps): %s" % p.stderr)
        super().setUpClass()
        cls.nginx = Nginx(cls.topo.server_ns, NGINX_CONF,
                          {"ip4": cls.topo.SERVER_IP4, "ip6": cls.topo.SERVER_IP6,
                           "port": H2_PORT},
                          FILES, ports=(H2_PORT,), listeners=2, prefix="ptE2e-nginx-h2-")
        cls.nginx_dir = cls.nginx.dir
        cls.addClassCleanup(cls.nginx.remove, ARTIFACTS, "nginx-h2-")
        cls.nginx.start()
        harness.log("namespaces %s (client pod %s), %s (server pod %s, nginx in %s); "
                    "artifacts in %s" % (cls.topo.client_ns, cls.client_pod.name,
                                         cls.topo.server_ns, cls.server_pod.name,
                                         cls.nginx_dir, ARTIFACTS))

    def h2_entries(self, since, count):
        """nginx's access log entries of `count` requests, once nginx holds no
        connection any more (every client here closes when done), all served
        over h2c."""
        got = self.nginx.entries(since, count)
        deadline = time.monotonic() + 10
        while self.nginx.connections() and time.monotonic() < deadline:
            time.sleep(0.1)
        bad = [e for e in got if e["protocol"] != "HTTP/2.0" or e["http2"] != "h2c"]
        if bad:
            raise RuntimeError("requests nginx did not serve over h2c:\n%s"
                               % "\n".join(json.dumps(e) for e in bad))
        return got

    # ---- agent -------------------------------------------------------------

    def start_agent(self, **kwargs):
        return harness.start_test_agent(
            self, os.path.join(ARTIFACTS, self.id().rsplit(".", 1)[-1]),
            [self.client_pod, self.server_pod], **kwargs)
    def client_cmd(self, args, timeout=CLIENT_TIMEOUT, check=True):
        """Runs a client program in the client pod; subprocess.run stops it by
        PID if it outlives `timeout`."""
        cmd = harness._orphan_guard("KILL") + ["ip", "netns", "exec", self.topo.client_ns] + args
        env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                           stdin=subprocess.DEVNULL, env=env)
        if check and p.returncode != 0:
            raise RuntimeError("client command failed (rc=%d): %s\nstdout: %s\nstderr: %s"
                               % (p.returncode, " ".join(args), p.stdout[-2000:],
                                  p.stderr[-2000:]))
        return p

    def curl(self, url, *options):
        """One curl process, one URL, h2c with prior knowledge, a connection
        of its own. Returns curl's own (method, status, new connections).

        One URL per process: Debian 12's curl 7.88.1 cannot reuse an h2c
        prior-knowledge connection (its second transfer fails with "(16)
        Error in the HTTP2 framing layer" before sending anything; curl
        issue #10634, fixed in 7.89.0), with or without --parallel. nghttp
        carries several requests on one connection instead (self.nghttp)."""
        args = [CURL, "-sS", "--max-time", "20", "-g", "--noproxy", "*",
                "--http2-prior-knowledge",
                "-w", "%{method} %{http_code} %{num_connects} %{http_version}\\n"]
        args += list(options) + [url, "-o", "/dev/null"]
        p = self.client_cmd(args)
        out = [tuple(l.split()) for l in p.stdout.splitlines() if l.strip()]
        if len(out) != 1 or out[0][3] != "2":
            raise RuntimeError("curl: not one HTTP/2 transfer:\n%s\n%s" % (p.stdout, p.stderr))
        m, c, k, _ = out[0]
        return (m, c, int(k))

    def curls(self, urls, *options):
        return [self.curl(u, *options) for u in urls]

    def nghttp(self, urls, *options):
        """One nghttp process: all `urls` as concurrent streams on one h2c
        connection (prior knowledge for http:// URLs). nghttp asks for a
        URL only once, so the URLs must differ. Returns its own [(method,
        status, connections)] from its statistics (-s), one connection."""
        if len(set(urls)) != len(urls):
            raise ValueError("nghttp requests a URL only once: %s" % urls)
        p = self.client_cmd([NGHTTP, "-n", "-s", "-t", "20"] + list(options) + list(urls))
        rows = re.findall(r"^\s*\d+\s+\+\S+\s+\+\S+\s+\S+\s+(\d{3})\s+\S+\s+(\S+)\s*$",
                          p.stdout, re.M)
        if len(rows) != len(urls):
            raise RuntimeError("nghttp: %d answers for %d URLs:\n%s\n%s"
                               % (len(rows), len(urls), p.stdout, p.stderr))
        method = "HEAD" if any(o in ("-m", "--method") for o in options) else "GET"
        return [(method, code, 1 if i == 0 else 0) for i, (code, _) in enumerate(rows)]

    def url(self, path, ip6=False):
        host = "[%s]" % self.topo.SERVER_IP6 if ip6 else self.topo.SERVER_IP4
        return "http://%s:%d%s" % (host, H2_PORT, path)

    def check_against_curl(self, since, entries, transfers):
        """Harness self-check: nginx's log and curl's own view agree on the
        requests (method, status; as multisets, --parallel finishes them in
        any order) and on the connections opened."""
        got = collections.Counter((e["method"], e["status"]) for e in entries)
        want = collections.Counter((m, c) for m, c, _ in transfers)
        connects = sum(n for _, _, n in transfers)
        conns = len({e["conn"] for e in entries})
        accepted = self.nginx.accepted(since, entries)
        if got != want or not connects == conns == accepted:
            raise RuntimeError("ground truth inconsistent (not an agent problem): nginx %s "
                               "on %d connections (%d accepted), curl %s on %d"
                               % (dict(got), conns, accepted, dict(want), connects))
        return conns

    # ---- expectations ----------------------------------------------------------

    def http_expects(self, answers, directions=("inbound", "outbound")):
        """request_total, response_total, response_latency_ms_count and
        route_* per authority / status (/ grpc status) from the ground truth
        `answers` [(authority, status, grpc status or None)], exact, on each
        side; and totals over all authorities, so a stray series shows up."""
        def cls(status, grpc):
            if grpc is not None:
                return "failure" if grpc != 0 else "success"
            return classification(status)

        by_auth = collections.Counter(a for a, _, _ in answers)
        by_resp = collections.Counter(answers)
        by_status = collections.Counter((a, s) for a, s, _ in answers)
        n = len(answers)
        failures = sum(1 for _, s, g in answers if cls(s, g) == "failure")
        grpc_n = sum(1 for _, _, g in answers if g is not None)
        out = []
        for d in directions:
            base = self.side(d)
            for auth, k in sorted(by_auth.items()):
                out.append(Expect("request_total", dict(base, authority=auth, tls="false"), k))
                out.append(Expect("route_request_total",
                                  dict(base, dst=auth, rt_route="[DEFAULT]"), k))
            for (auth, status, grpc), k in sorted(by_resp.items(), key=str):
                lbl = dict(base, authority=auth, tls="false", status_code=status,
                           classification=cls(status, grpc))
                if grpc is not None:
                    lbl["grpc_status_code"] = str(grpc)
                out.append(Expect("response_total", lbl, k))
            for (auth, status), k in sorted(by_status.items()):
                out.append(Expect("response_latency_ms_count",
                                  dict(base, authority=auth, tls="false", status_code=status), k))
            out += [Expect("request_total", base, n),
                    Expect("response_total", base, n),
                    Expect("response_total", dict(base, classification="failure"), failures),
                    Expect("response_total", dict(base, grpc_status_code=""), n - grpc_n),
                    Expect("response_latency_ms_count", base, n),
                    Expect("route_request_total", base, n),
                    Expect("route_response_total", base, n),
                    Expect("route_response_latency_ms_count", base, n)]
        # Nothing the other way round.
        out += [Expect("request_total", self.labels("client", direction="inbound"), 0),
                Expect("request_total", self.labels("server", direction="outbound"), 0)]
        return out

    def nginx_answers(self, entries):
        return [(e["host"], e["status"], None) for e in entries]

    def clean_expects(self):
        return ([Expect("podtap_parse_errors_total", {"protocol": "http2", "error": e}, 0)
                 for e in H2_ERRORS]
                + [Expect("podtap_parse_errors_total", {"protocol": "http1", "error": e}, 0)
                   for e in H1_ERRORS]
                + [Expect("podtap_connections_given_up_total", {"protocol": "http2"}, 0),
                   Expect("podtap_events_lost_total", {}, 0)])

    def tcp_expects(self, conns):
        out = []
        for d in ("inbound", "outbound"):
            out += [Expect("tcp_open_total", dict(self.side(d), tls="false"), conns),
                    Expect("tcp_close_total", dict(self.side(d), tls="false"), conns),
                    Expect("tcp_open_connections", dict(self.side(d), tls="false"), 0,
                           absolute=True)]
        return out

    # ---- (a) h2load --------------------------------------------------------------

    def test_a_h2load_multiplexed_exact(self):
        self.start_agent()
        since = self.nginx.offset()
        paths = ["/tiny.txt", "/k300.bin", "/status/404", "/k10.bin", "/status/503",
                 "/k3.bin", "/k100.bin", "/status/200"]
        n, c, m = 400, 4, 8
        p = self.client_cmd([H2LOAD, "-n", str(n), "-c", str(c), "-m", str(m),
                             "-T", "20", "-N", "20"] + [self.url(x) for x in paths])
        req = re.search(r"^requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, "
                        r"(\d+) failed, (\d+) errored, (\d+) timeout", p.stdout, re.M)
        codes = re.search(r"^status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx",
                          p.stdout, re.M)
        self.assertTrue(req and codes, "h2load output:\n%s" % p.stdout)
        total, started, done, _, _, errored, timeouts = map(int, req.groups())
        self.assertEqual((total, started, done, errored, timeouts), (n, n, n, 0, 0),
                         "h2load output:\n%s" % p.stdout)
        self.assertIn("Application protocol: h2c", p.stdout)
        entries = self.h2_entries(since, n)
        conns = len({e["conn"] for e in entries})
        self.assertEqual(conns, c, "h2load -c %d: connections in nginx's log" % c)
        self.assertEqual(self.nginx.accepted(since, entries), c)
        classes = collections.Counter(e["status"][0] + "xx" for e in entries)
        self.assertEqual([classes["2xx"], classes["3xx"], classes["4xx"], classes["5xx"]],
                         [int(x) for x in codes.groups()],
                         "nginx's log against h2load's status codes")
        statuses = collections.Counter(e["status"] for e in entries)
        self.assertEqual(set(statuses), {"200", "404", "503"}, statuses)
        self.assertGreater(max(int(e["conn_requests"]) for e in entries), 1)
        harness.log("case a: h2load made %d requests on %d connections: %s, hosts %s"
                    % (n, conns, dict(statuses), set(e["host"] for e in entries)))
        self.wait_equal(self.http_expects(self.nginx_answers(entries)) + self.tcp_expects(conns)
                        + self.clean_expects())

    # ---- (b) curl, one connection --------------------------------------------------

    def test_b_curl_and_nghttp_exact(self):
        self.start_agent()
        since = self.nginx.offset()
        u = self.url
        # curl: a connection per request (see self.curl), several sizes and
        # statuses, another authority, HEAD.
        transfers = self.curls([u(p) for p in ("/tiny.txt", "/status/404", "/k10.bin",
                                               "/status/503", "/k300.bin", "/status/204")])
        transfers += self.curls([u(p) for p in ("/k100.bin", "/status/500")],
                                "-H", "Host: api.shop:8082")
        transfers.append(self.curl(u("/k300.bin"), "-I"))
        # nghttp: several requests on one connection, all in flight at once
        # (with its default PRIORITY frames on idle anchor streams).
        mix = ["/tiny.txt", "/status/200", "/status/404", "/k10.bin", "/status/500",
               "/status/503", "/status/204", "/k300.bin", "/nope.txt", "/k3.bin",
               "/k300.bin?2", "/tiny.txt?q=1", "/status/500?2", "/k100.bin", "/status/204?2"]
        transfers += self.nghttp([u(p) for p in mix])
        transfers += self.nghttp([u(p) for p in ("/k300.bin", "/status/503", "/tiny.txt")],
                                 "-H", ":authority: api.shop:8082")
        entries = self.h2_entries(since, len(transfers))
        conns = self.check_against_curl(since, entries, transfers)
        statuses = collections.Counter(e["status"] for e in entries)
        for s in ("200", "204", "404", "500", "503"):
            self.assertGreater(statuses[s], 0, "ground truth lacks status %s: %s" % (s, statuses))
        hosts = {e["host"] for e in entries}
        self.assertEqual(hosts, {"%s:%d" % (self.topo.SERVER_IP4, H2_PORT), "api.shop:8082"})
        harness.log("case b: %d requests on %d connections, %s"
                    % (len(entries), conns, dict(statuses)))
        self.wait_equal(self.http_expects(self.nginx_answers(entries)) + self.tcp_expects(conns)
                        + self.clean_expects())

    # ---- (c) gRPC --------------------------------------------------------------------

    def grpc_server(self, addr):
        server = GrpcPeer(self.topo.server_ns, ["server", "--addr", addr, "--port", GRPC_PORT,
                                                "--max-seconds", 120],
                          "grpc server %s:%d" % (addr, GRPC_PORT))
        self.addCleanup(server.stop)
        server.wait_event("listening", timeout=20)
        return server

    def grpc_client(self, target, plan, parallel=1, extra=()):
        fd, path = tempfile.mkstemp(prefix="ptE2e-grpc-plan-", suffix=".json")
        with os.fdopen(fd, "w") as f:
            json.dump(plan, f)
        self.addCleanup(os.unlink, path)
        client = GrpcPeer(self.topo.client_ns, ["client", "--target", target, "--plan", path,
                                                "--parallel", parallel] + list(extra),
                          "grpc client -> %s" % target)
        try:
            rc = client.wait(CLIENT_TIMEOUT)
        finally:
            client.stop()
        calls = client.events("call")
        if rc != 0 or len(calls) != len(plan) or not client.events("done"):
            raise RuntimeError("grpc client failed (rc=%s, %d/%d calls):\n%s\nstderr:\n%s"
                               % (rc, len(calls), len(plan),
                                  "\n".join(json.dumps(c) for c in client.records),
                                  client.stderr()))
        return calls

    @staticmethod
    def grpc_plan(seed):
        """[(method, request text, expected status)]: unary calls OK with
        small and large answers and large requests, unary calls failing
        (trailers-only answers), server streams ending OK or failing after
        their messages or before any."""
        plan = []
        for size in (0, 10, 300, 5000, 20000, 100000):
            plan += [(UNARY, "code=0;size=%d" % size, GRPC_OK)] * 3
        plan += [(UNARY, "code=0;size=64;pad=%s" % ("x" * 30000), GRPC_OK)] * 2
        plan += [(UNARY, "code=14;size=10", GRPC_UNAVAILABLE)] * 7
        plan += [(UNARY, "code=5;size=10", GRPC_NOT_FOUND)] * 5
        plan += [(UNARY, "code=3;size=0;pad=%s" % ("y" * 9000), GRPC_INVALID_ARGUMENT)] * 2
        plan += [(STREAM, "code=0;size=1000;count=5", GRPC_OK)] * 3
        plan += [(STREAM, "code=0;size=40000;count=3", GRPC_OK)] * 1
        plan += [(STREAM, "code=14;size=200;count=4", GRPC_UNAVAILABLE)] * 2
        plan += [(STREAM, "code=5;size=0;count=0", GRPC_NOT_FOUND)] * 1
        random.Random(seed).shuffle(plan)
        return plan

    def check_grpc_truth(self, plan, calls, handled):
        """Harness self-check: the client got, and the server handled, exactly
        the statuses the plan asked for."""
        want = collections.Counter((m, code) for m, _, code in plan)
        got = collections.Counter((c["method"], c["code"]) for c in calls)
        srv = collections.Counter((c["method"], c["code"]) for c in handled)
        if not want == got == srv:
            raise RuntimeError("ground truth inconsistent (not an agent problem): plan %s, "
                               "client %s, server %s" % (dict(want), dict(got), dict(srv)))
        auths = {c["authority"] for c in handled}
        if len(auths) != 1:
            raise RuntimeError("server saw authorities %s" % auths)
        return auths.pop()

    def run_grpc(self, server, target, plan, parallel=1, extra=()):
        """Runs a plan in one client (one channel: one connection); returns
        [(authority, "200", grpc status)] per call from the server's records,
        checked against the client's."""
        before = len(server.events("call"))
        calls = self.grpc_client(target, [[m, t] for m, t, _ in plan], parallel, extra)
        handled = server.wait_event("call", timeout=20, count=before + len(plan))[before:]
        time.sleep(0.3)
        self.assertEqual(len(server.events("call")), before + len(plan))
        authority = self.check_grpc_truth(plan, calls, handled)
        return authority, [(authority, "200", c["code"]) for c in handled]

    def test_c_grpc_exact(self):
        self.start_agent()
        server = self.grpc_server(self.topo.SERVER_IP4)
        target = "%s:%d" % (self.topo.SERVER_IP4, GRPC_PORT)
        plan = self.grpc_plan(seed=4)
        auth1, answers = self.run_grpc(server, target, plan)
        # gRPC sends the target as :authority.
        self.assertEqual(auth1, target)
        # The same mix with 8 calls in flight on one connection, and an
        # authority of the client's choosing (grpc.default_authority).
        auth2, more = self.run_grpc(server, target, self.grpc_plan(seed=5), parallel=8,
                                    extra=["--authority", "api.shop:50061"])
        self.assertEqual(auth2, "api.shop:50061")
        answers += more
        codes = collections.Counter(g for _, _, g in answers)
        harness.log("case c: %d gRPC calls on 2 connections, grpc-status %s"
                    % (len(answers), dict(codes)))
        self.wait_equal(self.http_expects(answers) + self.tcp_expects(2) + self.clean_expects())

    # ---- (d) IPv6 ----------------------------------------------------------------------

    def test_d_ipv6_curl_exact(self):
        self.start_agent()
        since = self.nginx.offset()
        mix = ["/tiny.txt", "/status/500", "/k300.bin", "/status/404", "/status/204",
               "/k10.bin", "/status/503", "/status/200", "/k100.bin", "/k300.bin?2"]
        transfers = self.curls([self.url(p, ip6=True) for p in mix[:4]])
        transfers += self.curls([self.url(p, ip6=True) for p in ("/tiny.txt", "/status/503")],
                                "-H", "Host: api.shop:8082")
        transfers += self.nghttp([self.url(p, ip6=True) for p in mix])
        entries = self.h2_entries(since, len(transfers))
        conns = self.check_against_curl(since, entries, transfers)
        self.assertEqual(conns, 7)
        self.assertEqual({e["remote"] for e in entries}, {self.topo.CLIENT_IP6})
        self.assertEqual({e["host"] for e in entries},
                         {"[%s]:%d" % (self.topo.SERVER_IP6, H2_PORT), "api.shop:8082"})
        self.wait_equal(self.http_expects(self.nginx_answers(entries)) + self.tcp_expects(conns)
                        + self.clean_expects())

    # ---- (f), (g) many frames in one syscall -------------------------------------------

    def burst(self, paths, authority=None):
        """One h2_burst.py connection: every request of `paths` in one send."""
        authority = authority or "%s:%d" % (self.topo.SERVER_IP4, H2_PORT)
        p = self.client_cmd([harness.PY, H2_BURST, self.topo.SERVER_IP4, str(H2_PORT),
                             authority] + list(paths))
        out = json.loads(p.stdout)
        self.assertEqual(out["requests"], len(paths))

    def test_f_many_frames_in_one_syscall_exact(self):
        self.start_agent()
        since = self.nginx.offset()
        mix = ["/status/200", "/status/404", "/tiny.txt", "/status/500", "/status/204",
               "/status/503"] * 2
        for _ in range(3):
            self.burst(mix)
        entries = self.h2_entries(since, 3 * len(mix))
        self.assertEqual(len({e["conn"] for e in entries}), 3)
        self.wait_equal(self.http_expects(self.nginx_answers(entries)) + self.tcp_expects(3)
                        + self.clean_expects())

    def test_g_frames_past_the_walk(self):
        agent = self.start_agent()
        (info,) = agent.scrape().select("podtap_build_info")
        since = self.nginx.offset()
        # Tiny header blocks, so that every build's record holds them all
        # (4 KiB): the walk's steps run out first. A step is a frame header
        # or a frame's payload: 2 for the preface and SETTINGS, 2 a request.
        self.burst(["/n"] * 70, authority="a")
        entries = self.h2_entries(since, 70)
        if info.labels.get("payload_probes") != "compat":
            self.wait_equal(self.http_expects(self.nginx_answers(entries)) + self.tcp_expects(1)
                            + self.clean_expects())
            return
        # The compat walk follows 128 or 132 steps (32 or 33 tail calls by
        # kernel version): the first 63 or 65 requests on each side.
        lost = {"reason": "h2_walk_lost"}
        counted = None
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            ex = agent.scrape()
            counted = [ex.sum("request_total", self.side(d)) -
                       self.baseline.sum("request_total", self.side(d))
                       for d in ("inbound", "outbound")]
            if counted[0] in (63, 65) and counted == counted[::-1]:
                break
            time.sleep(0.2)
        self.assertIn(counted[0], (63, 65), "requests counted (inbound, outbound): %s" % counted)
        self.assertEqual(counted[0], counted[1])
        self.assertGreaterEqual(ex.sum("podtap_events_lost_total", lost)
                                - self.baseline.sum("podtap_events_lost_total", lost), 2,
                                "the client's send and the server's read were each lost")
        self.wait_equal(self.tcp_expects(1))

    def test_h_bytes_the_probes_do_not_see(self):
        # Five bytes of the second request's frame header go through splice(2), which the
        # probes do not hook: the client's next send starts inside a frame. The kernel sees
        # by the socket's sequence number that its bytes do not follow the last walked ones,
        # stops walking the client's sends and counts it, instead of reading a frame header
        # in the middle of a frame. nginx reads every byte with hooked syscalls: its side is
        # exact. The client's side counts the one request it walked, and gives up on the
        # connection at the gap, counted (lost_sync).
        self.start_agent()
        since = self.nginx.offset()
        paths = ["/status/200", "/status/404", "/tiny.txt"]
        p = self.client_cmd([harness.PY, H2_BURST, "--splice", "5", self.topo.SERVER_IP4,
                             str(H2_PORT), "%s:%d" % (self.topo.SERVER_IP4, H2_PORT)] + paths)
        self.assertEqual(json.loads(p.stdout)["requests"], len(paths))
        entries = self.h2_entries(since, len(paths))
        outbound = self.side("outbound")
        self.wait_equal(self.http_expects(self.nginx_answers(entries), directions=("inbound",))
                        + self.tcp_expects(1)
                        + [Expect("podtap_events_lost_total", {"reason": "h2_walk_out_of_order"},
                                  1),
                           Expect("podtap_events_lost_total", {"reason": "h2_walk_lost"}, 0),
                           Expect("request_total", outbound, 1),
                           Expect("response_total", outbound, 0),
                           Expect("podtap_parse_errors_total",
                                  {"protocol": "http2", "error": "lost_sync"}, 1),
                           Expect("podtap_connections_given_up_total", {"protocol": "http2"}, 1)])

    # ---- (e) exposition ------------------------------------------------------------------

    def test_e_exposition_valid(self):
        agent = self.start_agent()
        since = self.nginx.offset()
        transfers = self.curls([self.url(p) for p in ("/status/200", "/status/503", "/k10.bin",
                                                      "/status/404")])
        entries = self.h2_entries(since, len(transfers))
        self.check_against_curl(since, entries, transfers)
        server = self.grpc_server(self.topo.SERVER_IP6)
        target = "[%s]:%d" % (self.topo.SERVER_IP6, GRPC_PORT)
        plan = [(UNARY, "code=0;size=10", GRPC_OK), (UNARY, "code=14;size=1", GRPC_UNAVAILABLE),
                (STREAM, "code=5;size=10;count=2", GRPC_NOT_FOUND),
                (UNARY, "code=0;size=100", GRPC_OK)]
        auth, answers = self.run_grpc(server, target, plan)
        self.assertEqual(auth, target)
        # Exactness is cases (a) to (d); here the scrape only has to hold the
        # series, so promtool checks them even when counts are off.
        deadline = time.monotonic() + TIMEOUT
        while True:
            status, _, text = agent.get("/metrics")
            self.assertEqual(status, 200)
            ex = harness.parse_exposition(text)
            have = [bool(ex.select("response_total", dict(self.side(d), authority=a)))
                    for d in ("inbound", "outbound") for a in (target, entries[0]["host"])]
            if all(have) or time.monotonic() > deadline:
                break
            time.sleep(0.25)
        ok, report = harness.promtool_check(text)
        harness.log(report)
        self.assertTrue(ok, "promtool found errors in the exposition:\n%s" % report)
        self.assertTrue(all(have), "response_total lacks the HTTP/2 or gRPC series "
                        "(inbound/outbound x gRPC/nginx: %s)" % have)
        ex = harness.parse_exposition(text)  # strict: raises on any defect
        want_types = {"request_total": "counter", "response_total": "counter",
                      "response_latency_ms": "histogram", "route_request_total": "counter",
                      "route_response_total": "counter",
                      "route_response_latency_ms": "histogram",
                      "podtap_parse_errors_total": "counter",
                      "podtap_connections_given_up_total": "counter"}
        got_types = {n: ex.families[n].type if n in ex.families else None for n in want_types}
        self.assertEqual(got_types, want_types)
        linkerd = {tuple(float(b) for b in harness.LINKERD_BUCKETS)}
        for fam in ("response_latency_ms", "route_response_latency_ms"):
            self.assertEqual(harness.histogram_bounds(ex, fam), linkerd, fam)
        # The families hold both kinds of series: gRPC's with grpc_status_code,
        # plain HTTP/2's without; HTTP/2's self metrics are served (parse
        # errors only with the kinds the README lists, when any happened).
        for d in ("inbound", "outbound"):
            grpc = ex.select("response_total", dict(self.side(d), authority=target))
            plain = ex.select("response_total", dict(self.side(d), authority=entries[0]["host"]))
            self.assertEqual({s.labels.get("grpc_status_code") for s in grpc}, {"0", "5", "14"})
            self.assertTrue(plain and all("grpc_status_code" not in s.labels for s in plain))
        self.assertLessEqual({s.labels["error"] for s in ex.select("podtap_parse_errors_total",
                                                                    {"protocol": "http2"})},
                             set(H2_ERRORS))
        self.assertEqual(len(ex.select("podtap_connections_given_up_total",
                                       {"protocol": "http2"})), 1)
        rc = agent.stop()
        self.assertEqual(rc, 0, "agent exit code after SIGTERM (%.1fs)\n%s"
                         % (agent.stop_seconds, agent.log_tail()))


if __name__ == "__main__":
    unittest.main(verbosity=2)
