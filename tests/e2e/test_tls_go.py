#!/usr/bin/python3
"""Real-kernel end-to-end tests of TLS plaintext from Go's crypto/tls: a
net/http TLS server and client (tests/e2e/go_tls_peer.go), built by the test
with Debian's golang-go (Go 1.19, GOPATH mode, offline), over HTTP/1.1
keep-alive and over HTTP/2 (ALPN h2), with a status mix: request_total /
response_total by status, exact, on both sides under tls="true", against the
server's own record and the client's. And gRPC-Go over TLS
(tests/e2e/go_grpc_peer.go, from golang-google-grpc-dev): unary health
Checks, OK and NOT_FOUND, and reflection streams, grpc_status_code exact on
both sides. A tls.Conn over anything but a *net.TCPConn is not attributed:
its plaintext is counted as tls_unmapped.

The agent finds the Go program through the processes that map it, attaches
uprobes at the entry of crypto/tls.(*Conn).Write and at the entry and every
RET of Read once per file, and reads each call's socket from the tls.Conn.
Each case waits until the agent has attached to the program (a process
holding it mapped), then runs the measured exchanges. The server and the
client run the same file: it is attached once. A file replaced at its path
(a new build) is attached anew, and the old one's probes detached once no
process maps it.

Run as root: tests/e2e/run.sh test_tls_go. PODTAP_AGENT overrides the agent
binary.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import test_http_exact as hx  # noqa: E402  (the HTTP expectations and the client runner)
import test_tls_embedded as te  # noqa: E402  (spawning peers, TLS-only expectations)
from harness import Expect  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
GO = "/usr/bin/go"
PEER_SOURCE = os.path.join(HERE, "go_tls_peer.go")
GRPC_SOURCE = os.path.join(HERE, "go_grpc_peer.go")
TOOLS = {GO: "golang-go", hx.OPENSSL: "openssl"}

PORT = 9543
GRPC_PORT = 9545
ARTIFACTS = (os.environ.get("PODTAP_E2E_ARTIFACTS")
             or tempfile.mkdtemp(prefix="ptE2e-tls-go-artifacts-"))

# Keep-alive request paths: a status mix, twice over.
PATHS = ["/a", "/status/404", "/status/500", "/status/201", "/status/204", "/b",
         "/status/503", "/status/200", "/c", "/status/404"]


def build_go(workdir, name, source, flags=()):
    """Builds `source` into workdir/name with Debian's Go, offline: GOPATH mode over Debian's
    packaged Go libraries, a build cache of its own. Returns the binary's path."""
    env = dict(os.environ, GO111MODULE="off", GOPATH="/usr/share/gocode", GOFLAGS="",
               GOPROXY="off", GOCACHE=os.path.join(workdir, "cache"), HOME=workdir)
    out = os.path.join(workdir, name)
    p = subprocess.run([GO, "build"] + list(flags) + ["-o", out, source], env=env,
                       capture_output=True, text=True, timeout=300)
    if p.returncode != 0:
        raise RuntimeError("go build failed: %s" % p.stderr)
    return out


def make_cert(workdir):
    """A self-signed certificate and its key in `workdir`: (cert path, key path)."""
    cert, key = os.path.join(workdir, "cert.pem"), os.path.join(workdir, "key.pem")
    harness.sh([hx.OPENSSL, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                "-subj", "/CN=podtap-test", "-keyout", key, "-out", cert])
    return cert, key


def tearDownModule():
    te.tearDownModule()
    try:
        os.rmdir(ARTIFACTS)
    except OSError:
        harness.log("artifacts kept in %s" % ARTIFACTS)


class TlsGoTest(harness.PodPairTest):
    ARTIFACTS = ARTIFACTS
    TIMEOUT = hx.TIMEOUT
    SETTLE = hx.SETTLE

    http_expects = hx.HttpExactTest.http_expects
    clean_expects = hx.HttpExactTest.clean_expects
    tcp_open_expects = hx.HttpExactTest.tcp_open_expects
    client_cmd = hx.HttpExactTest.client_cmd
    spawn = te.TlsEmbeddedTest.spawn
    wait_output = te.TlsEmbeddedTest.wait_output
    tls_only_expects = te.TlsEmbeddedTest.tls_only_expects

    @classmethod
    def setUpClass(cls):
        harness.require_tools(TOOLS)
        cls.dir = tempfile.mkdtemp(prefix="ptE2e-go-tls-")
        cls.addClassCleanup(lambda: subprocess.run(["rm", "-rf", cls.dir], check=False))
        cls.peer = build_go(cls.dir, "peer", PEER_SOURCE)
        cls.stripped = build_go(cls.dir, "peer-stripped", PEER_SOURCE, ["-ldflags=-s -w"])
        cls.grpc = build_go(cls.dir, "grpc-peer", GRPC_SOURCE)
        cls.cert, cls.key = make_cert(cls.dir)
        super().setUpClass()

    # ---- helpers -----------------------------------------------------------

    def attach_lines(self, path):
        return [l for l in self.agent.log_text().splitlines()
                if "Go TLS probes attached to " in l and ("root%s (" % path) in l]

    def wait_attached(self, path):
        """Waits for the agent's log line saying it attached the Go TLS
        probes to `path` (reached through some /proc/PID/root)."""
        deadline = time.monotonic() + te.ATTACH_TIMEOUT
        while not self.attach_lines(path):
            if time.monotonic() > deadline:
                self.fail("the agent did not attach to %s:\n%s" % (path, self.agent.log_tail()))
            time.sleep(0.1)
        # The control thread logs the attach, then posts the counts to the event thread,
        # which applies them between batches: the gauge can lag the line by a poll.
        while True:
            ex = self.agent.scrape()
            if ex.sum("podtap_tls_libraries", {"state": "go"}) >= 1:
                break
            if time.monotonic() > deadline:
                self.fail("podtap_tls_libraries{state=\"go\"} still 0 after the attach line")
            time.sleep(0.1)
        self.assertEqual(ex.sum("podtap_tls_libraries", {"state": "failed"}), 0,
                         self.agent.log_tail())

    def start_server(self, binary, proto):
        log = os.path.join(tempfile.mkdtemp(prefix="log-", dir=self.dir), "server.log")
        server = self.spawn(self.topo.server_ns,
                            [binary, "server", proto, "%s:%d" % (self.topo.SERVER_IP4, PORT),
                             self.cert, self.key, log])
        self.wait_output(server, "listening", "the Go %s server" % proto)
        return server, log

    def exchange(self, binary, proto, log, paths=PATHS):
        """The Go client (`binary`) in the client pod requests `paths` over one
        connection; returns the server's records once they equal the
        client's own."""
        p = self.client_cmd([binary, "client", proto, "%s:%d" % (self.topo.SERVER_IP4, PORT)]
                            + paths)
        record = p.stdout.split("\n")[:-1]
        self.assertEqual(len(record), len(paths), p.stdout)
        deadline = time.monotonic() + hx.TIMEOUT
        while True:
            with open(log) as f:
                entries = [json.loads(l) for l in f.read().split("\n")[:-1]]
            if len(entries) >= len(record) or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        # Ground truth: the client's record and the server's agree, on one connection.
        self.assertEqual(sorted("GET %s" % e["status"] for e in entries), sorted(record))
        self.assertEqual(len({e["conn"] for e in entries}), 1)
        return entries

    def expect_exact(self, entries, binary):
        self.wait_equal(self.http_expects(entries, tls="true") + self.tls_only_expects(1)
                        + [Expect("podtap_events_lost_total", {"reason": "tls_unmapped"}, 0),
                           Expect("podtap_events_lost_total", {"reason": "syscall_map_full"}, 0),
                           Expect("podtap_tls_libraries", {"state": "go"}, 1, absolute=True),
                           Expect("podtap_tls_libraries", {"state": "go_not_covered"}, 0,
                                  absolute=True)]
                        + self.clean_expects())
        # The server and the client map one file: attached once.
        self.assertEqual(len(self.attach_lines(binary)), 1)

    def run_case(self, binary, proto):
        self.start_agent()
        _, log = self.start_server(binary, proto)
        self.wait_attached(binary)
        self.expect_exact(self.exchange(binary, proto, log), binary)

    # ---- the cases -----------------------------------------------------------

    def test_a_http1_keepalive_exact(self):
        # net/http over TLS, HTTP/1.1 only (no h2 in ALPN), one keep-alive connection.
        self.run_case(self.peer, "h1")

    def test_b_http2_exact(self):
        # net/http's HTTP/2 over TLS (ALPN h2) on both sides.
        self.run_case(self.peer, "h2")

    def test_c_stripped_exact(self):
        # -ldflags=-s -w: no .symtab; the functions from .gopclntab, the
        # *net.TCPConn type hash from the Go version.
        self.run_case(self.stripped, "h1")

    def test_d_server_older_than_the_agent_exact(self):
        # The server process started before the agent; its connection after:
        # the file is attached when the agent finds the running process, and
        # every call reads its socket from the tls.Conn.
        _, log = self.start_server(self.peer, "h2")
        self.start_agent()
        self.wait_attached(self.peer)
        self.expect_exact(self.exchange(self.peer, "h2", log), self.peer)

    def test_g_binary_replaced_exact(self):
        # The program's file replaced at its path while the agent runs, as a rollout's new
        # image does: another build (the stripped one, so its functions' offsets differ) in a
        # new file renamed over the old. The agent attaches to the new file when a process maps
        # it, and detaches the old one once no process maps it (found by the full scan, every
        # --tls-rescan-interval): both exchanges exact, one file probed at the end.
        self.start_agent(extra_args=["--tls-rescan-interval", "1"])
        path = os.path.join(tempfile.mkdtemp(prefix="app-", dir=self.dir), "peer")
        shutil.copy(self.peer, path)
        server, log = self.start_server(path, "h1")
        self.wait_attached(path)
        first = self.exchange(path, "h1", log)
        self.wait_equal(self.http_expects(first, tls="true") + self.tls_only_expects(1))
        harness._stop_pid(server)
        shutil.copy(self.stripped, path + ".new")
        os.rename(path + ".new", path)
        # The old file: no process maps it any more, its probes go.
        deadline = time.monotonic() + hx.TIMEOUT
        while not [l for l in self.agent.log_text().splitlines()
                   if "Go probes detached from " in l and ("root%s:" % path) in l]:
            if time.monotonic() > deadline:
                self.fail("the old file's probes were not detached:\n%s" % self.agent.log_tail())
            time.sleep(0.1)
        server, log = self.start_server(path, "h1")
        while len(self.attach_lines(path)) < 2:
            if time.monotonic() > deadline:
                self.fail("the new file was not attached:\n%s" % self.agent.log_tail())
            time.sleep(0.1)
        second = self.exchange(path, "h1", log)
        self.wait_equal(self.http_expects(first + second, tls="true") + self.tls_only_expects(2)
                        + [Expect("podtap_events_lost_total", {"reason": "tls_unmapped"}, 0),
                           Expect("podtap_tls_libraries", {"state": "go"}, 1, absolute=True),
                           Expect("podtap_tls_libraries", {"state": "failed"}, 0,
                                  absolute=True)]
                        + self.clean_expects())
        self.assertEqual(len(self.attach_lines(path)), 2)

    def test_f_conn_not_tcp_not_guessed(self):
        # A client whose tls.Conn runs over a wrapper of the *net.TCPConn
        # (any net.Conn but a *net.TCPConn): its socket is not read through
        # it, so its requests are not counted, and its plaintext calls are
        # counted as not attributable (a Write and a Read at least per
        # request). The server, a plain tls.Conn, counts exactly.
        self.start_agent()
        _, log = self.start_server(self.peer, "h1")
        self.wait_attached(self.peer)
        entries = self.exchange(self.peer, "h1-wrapped", log)
        base = self.baseline.sum("podtap_events_lost_total", {"reason": "tls_unmapped"})
        deadline = time.monotonic() + hx.TIMEOUT
        while True:
            unmapped = (self.agent.scrape().sum("podtap_events_lost_total",
                                                {"reason": "tls_unmapped"}) - base)
            if unmapped >= 2 * len(PATHS) or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        harness.log("case f: %d plaintext calls not attributable for %d requests"
                    % (unmapped, len(PATHS)))
        self.assertGreaterEqual(unmapped, 2 * len(PATHS))
        self.wait_equal(self.http_expects(entries, directions=("inbound",), tls="true")
                        + self.tls_only_expects(1)
                        + [Expect("request_total", self.side("outbound"), 0),
                           Expect("response_total", self.side("outbound"), 0)]
                        + self.clean_expects())

    def test_e_grpc_exact(self):
        # gRPC-Go over TLS (ALPN h2) on one connection: grpc.health.v1.Health/
        # Check (unary), OK for a SERVING service and NOT_FOUND for an unknown
        # one, and server reflection streams (bidirectional, OK).
        self.start_agent()
        log = os.path.join(tempfile.mkdtemp(prefix="log-", dir=self.dir), "server.log")
        server = self.spawn(self.topo.server_ns,
                            [self.grpc, "server", "%s:%d" % (self.topo.SERVER_IP4, GRPC_PORT),
                             self.cert, self.key, log])
        self.wait_output(server, "listening", "the gRPC-Go server")
        self.wait_attached(self.grpc)
        services = ["podtap.up", "podtap.nope", "-reflect", "podtap.up", "podtap.up",
                    "-reflect", "podtap.nope", "podtap.up"]
        p = self.client_cmd([self.grpc, "client", "%s:%d" % (self.topo.SERVER_IP4, GRPC_PORT)]
                            + services)
        record = [int(l.split()[1]) for l in p.stdout.split("\n")[:-1]]
        deadline = time.monotonic() + hx.TIMEOUT
        while True:
            with open(log) as f:
                codes = [json.loads(l)["code"] for l in f.read().split("\n")[:-1]]
            if len(codes) >= len(record) or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        # Ground truth: the client's record and the server's agree.
        self.assertEqual(record, [0, 5, 0, 0, 0, 0, 5, 0])
        self.assertEqual(codes, record)
        expects = []
        for d in ("inbound", "outbound"):
            base = dict(self.side(d), tls="true")
            expects += [Expect("request_total", base, len(record)),
                        Expect("response_total", base, len(record)),
                        Expect("response_total", dict(base, status_code="200"), len(record))]
            for code in (0, 5):
                expects.append(Expect("response_total", dict(base, grpc_status_code=str(code)),
                                      record.count(code)))
        self.wait_equal(expects + self.tls_only_expects(1)
                        + [Expect("request_total", self.labels("client", direction="inbound"), 0),
                           Expect("request_total", self.labels("server", direction="outbound"),
                                  0),
                           Expect("podtap_events_lost_total", {"reason": "tls_unmapped"}, 0)])
