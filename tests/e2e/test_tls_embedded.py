#!/usr/bin/python3
"""Real-kernel end-to-end tests of TLS plaintext from programs that carry
OpenSSL inside their executable, not in a shared libssl:

- podtap-tls-static-client (built by CMake from tests/e2e/tls_static_client.cc,
  Debian's libssl.a and libcrypto.a linked in; SSL_read/SSL_write only in
  its .symtab; the socket BIO) does HTTP/1.1 keep-alive requests with a status
  mix to nginx over TLS: request_total / response_total by status, exact, on
  both sides under tls="true", against the client's own record and nginx's
  access log;
- Node.js (/usr/bin/node: OpenSSL in the executable, exported in its dynamic
  symbol table, driven through memory BIOs) as an https server and client
  (HTTP/1.1 keep-alive) and as an http2.createSecureServer and its client.

The agent probes a file once it finds a process mapping it (a scan every
second): each case first waits until the agent has attached to the program's
file (a process holding it mapped), then runs the measured exchanges, so that
every SSL call of theirs is seen.

Run as root: tests/e2e/run.sh test_tls_embedded. PODTAP_AGENT overrides the
agent binary; the static client is taken from the same build folder
(PODTAP_TLS_STATIC_CLIENT overrides it).
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
import test_http_exact as hx  # noqa: E402  (nginx's TLS server and the HTTP expectations)
from harness import Expect  # noqa: E402
from nginx import NGINX, Nginx  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
NODE = "/usr/bin/node"
NODE_PEER = os.path.join(HERE, "node_tls_peer.js")
AGENT = os.environ.get("PODTAP_AGENT") or os.path.join(HERE, "../../build/podtap-agent")
STATIC_CLIENT = (os.environ.get("PODTAP_TLS_STATIC_CLIENT")
                 or os.path.join(os.path.dirname(os.path.abspath(AGENT)),
                                 "podtap-tls-static-client"))
TOOLS = {NGINX: "nginx", hx.OPENSSL: "openssl", NODE: "nodejs"}

NODE_HTTPS_PORT = 9443
NODE_H2_PORT = 9444
NODE_NOTE_PORT = 9445
ATTACH_TIMEOUT = harness.scaled(20)
ARTIFACTS = (os.environ.get("PODTAP_E2E_ARTIFACTS")
             or tempfile.mkdtemp(prefix="ptE2e-tls-embedded-artifacts-"))

# Keep-alive request paths: every status class nginx and the Node server give.
PATHS = ["/tiny.txt", "/status/404", "/k10.bin", "/status/500", "/status/204", "/status/201",
         "/k300.bin", "/status/503", "/status/200"]
NODE_PATHS = ["/a", "/status/404", "/status/500", "/status/201", "/status/204", "/b",
              "/status/503", "/status/200"]


def tearDownModule():
    hx.tearDownModule()
    try:
        os.rmdir(ARTIFACTS)
    except OSError:
        harness.log("artifacts kept in %s" % ARTIFACTS)


class TlsEmbeddedTest(harness.PodPairTest):
    ARTIFACTS = ARTIFACTS
    TIMEOUT = hx.TIMEOUT
    SETTLE = hx.SETTLE

    # The HTTP/1 expectations and the client runner of test_http_exact.
    http_expects = hx.HttpExactTest.http_expects
    clean_expects = hx.HttpExactTest.clean_expects
    tcp_open_expects = hx.HttpExactTest.tcp_open_expects
    client_cmd = hx.HttpExactTest.client_cmd

    @classmethod
    def setUpClass(cls):
        harness.require_tools(TOOLS)
        if not os.access(STATIC_CLIENT, os.X_OK):
            raise RuntimeError("missing %s: build it (cmake --build build)" % STATIC_CLIENT)
        super().setUpClass()
        cls.nginx = Nginx(cls.topo.server_ns, hx.NGINX_CONF,
                          {"ip4": cls.topo.SERVER_IP4, "ip6": cls.topo.SERVER_IP6,
                           "port": hx.HTTP_PORT, "tls_port": hx.TLS_PORT},
                          hx.FILES, ports=(hx.HTTP_PORT, hx.TLS_PORT), listeners=3,
                          prepare=hx.prepare_nginx)
        cls.addClassCleanup(cls.nginx.remove, ARTIFACTS)
        cls.nginx.start()

    # ---- helpers -----------------------------------------------------------

    def start_agent(self):
        # No full scan of /proc within a case: the programs each case starts are found by the
        # kernel's exec events alone (the agent runs in the host's pid namespace here).
        return harness.start_test_agent(
            self, os.path.join(ARTIFACTS, self.id().rsplit(".", 1)[-1]),
            [self.client_pod, self.server_pod], extra_args=["--tls-rescan-interval", "3600"])

    def spawn(self, ns, args, stdin=subprocess.DEVNULL):
        """A long-running program (in namespace `ns`, or the host's when None),
        stopped by PID at the end of the case; its output goes to a file."""
        out = tempfile.TemporaryFile(mode="w+")
        self.addCleanup(out.close)
        cmd = harness._orphan_guard("TERM") + (["ip", "netns", "exec", ns] if ns else []) + args
        p = subprocess.Popen(cmd, stdin=stdin, stdout=out, stderr=subprocess.STDOUT)
        harness._live_procs[p.pid] = p
        self.addCleanup(harness._stop_pid, p)
        p.out = out
        return p

    def wait_output(self, p, needle, what):
        deadline = time.monotonic() + ATTACH_TIMEOUT
        while True:
            p.out.seek(0)
            text = p.out.read()
            if needle in text:
                return
            if p.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("%s did not print %r: %s" % (what, needle, text[-2000:]))
            time.sleep(0.05)

    def wait_attached(self, path, times=1):
        """Waits for the agent's log lines saying it attached the TLS probes
        to `path` (reached through some /proc/PID/root) `times` times."""
        deadline = time.monotonic() + ATTACH_TIMEOUT
        while len(self.attach_lines(path)) < times:
            if time.monotonic() > deadline:
                self.fail("the agent did not attach to %s:\n%s" % (path, self.agent.log_tail()))
            time.sleep(0.1)
        self.assertIn("TLS libraries: new programs from the kernel's exec events",
                      self.agent.log_text())
        ex = self.agent.scrape()
        self.assertEqual(ex.sum("podtap_tls_libraries", {"state": "failed"}), 0,
                         self.agent.log_tail())
        # The files read without OpenSSL (libc, nginx's own executable, ...) are reported.
        self.assertGreater(ex.sum("podtap_tls_libraries", {"state": "without_openssl"}), 0)

    def attach_lines(self, path):
        return [l for l in self.agent.log_text().splitlines()
                if "TLS plaintext probes attached to" in l and l.rstrip().endswith("root" + path)]

    def tls_only_expects(self, conns):
        """conns connections on each side, every one tls="true"."""
        return (self.tcp_open_expects(conns, tls="true")
                + [Expect("tcp_open_total", dict(self.side(d), tls="false"), 0)
                   for d in ("inbound", "outbound")])

    # ---- the cases -----------------------------------------------------------

    def test_a_static_openssl_client_exact(self):
        # OpenSSL linked into the client's executable: found in its .symtab,
        # probed, its plaintext counted exactly as a shared libssl's.
        static = os.path.realpath(STATIC_CLIENT)
        self.start_agent()
        holder = self.spawn(None, [static, "--hold"], stdin=subprocess.PIPE)
        self.wait_attached(static)
        self.static_exchange(static)
        holder.stdin.close()

    def static_exchange(self, static):
        """Two keep-alive connections of `static` to nginx over TLS, exact."""
        since = self.nginx.offset()
        record = []
        for authority, paths in (("api.shop", PATHS), ("static.shop", PATHS[::-1])):
            p = self.client_cmd([static, self.topo.SERVER_IP4, str(hx.TLS_PORT), authority]
                                + paths)
            record += p.stdout.split("\n")[:-1]
        entries = self.nginx.entries(since, len(record), port=hx.TLS_PORT)
        # Ground truth: the client's own record and nginx's log agree.
        self.assertEqual(["GET %s" % e["status"] for e in entries], record)
        self.assertEqual(len({e["conn"] for e in entries}), 2)
        self.assertEqual(self.nginx.accepted(since, entries), 2)
        self.wait_equal(self.http_expects(entries, tls="true") + self.tls_only_expects(2)
                        + [Expect("podtap_events_lost_total", {"reason": "tls_unmapped"}, 0)]
                        + self.clean_expects())

    def node_exchange(self, proto, port, authority, client=None, paths=NODE_PATHS, note_port=None):
        """A Node.js server in the server pod (`proto`: https or h2) and a
        Node.js client in the client pod (`client`, by default `proto`)
        requesting `paths` over keep-alive connections. Returns the server's
        records ({host, status, method, conn} per answered request) once they
        equal the client's own."""
        workdir = tempfile.mkdtemp(prefix="ptE2e-node-tls-")
        self.addCleanup(lambda: subprocess.run(["rm", "-rf", workdir], check=False))
        log = os.path.join(workdir, "server.log")
        server = self.spawn(self.topo.server_ns,
                            [NODE, NODE_PEER, "server", proto, self.topo.SERVER_IP4, str(port),
                             os.path.join(self.nginx.dir, "cert.pem"),
                             os.path.join(self.nginx.dir, "key.pem"), log]
                            + ([str(note_port)] if note_port else []))
        self.wait_output(server, "listening", "the Node.js %s server" % proto)
        self.wait_attached(os.path.realpath(NODE))
        if client == "curl":
            # curl (the shared libssl), one connection: h2 through ALPN.
            args = [hx.CURL, "-sS", "--max-time", "20", "-k", "--http2"]
            for path in paths:
                args += ["-w", "GET %{http_code}\\n", "-o", "/dev/null",
                         "https://%s:%d%s" % (authority, port, path)]
            p = self.client_cmd(args)
        else:
            p = self.client_cmd([NODE, NODE_PEER, "client", client or proto, authority,
                                 str(port)] + paths)
        record = p.stdout.split("\n")[:-1]
        deadline = time.monotonic() + hx.TIMEOUT
        while True:
            with open(log) as f:
                entries = [json.loads(l) for l in f.read().split("\n")[:-1]]
            if len(entries) >= len(record) or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        # Ground truth: the client's record and the server's agree.
        self.assertEqual(sorted("GET %s" % e["status"] for e in entries), sorted(record))
        self.assertEqual(len(record), len(paths))
        # The server and the client share one file: attached once.
        self.assertEqual(len(self.attach_lines(os.path.realpath(NODE))), 1)
        return entries

    def test_b_node_https_exact(self):
        # Node.js as an https server and client, HTTP/1.1 keep-alive. Its
        # SSL objects use memory BIOs: the socket is learned from each one's
        # handshake flight.
        self.start_agent()
        entries = self.node_exchange("https", NODE_HTTPS_PORT, self.topo.SERVER_IP4)
        self.wait_equal(self.http_expects(entries, tls="true") + self.tls_only_expects(1)
                        + [Expect("podtap_events_lost_total", {"reason": "tls_unmapped"}, 0)]
                        + self.clean_expects())

    def test_c_node_h2_exact(self):
        # http2.createSecureServer and http2.connect: HTTP/2 over TLS (ALPN h2).
        self.start_agent()
        entries = self.node_exchange("h2", NODE_H2_PORT, self.topo.SERVER_IP4)
        self.wait_equal(self.http_expects(entries, tls="true") + self.tls_only_expects(1)
                        + [Expect("podtap_events_lost_total", {"reason": "tls_unmapped"}, 0)]
                        + self.clean_expects())

    def test_d_node_https_parallel_exact(self):
        # Four connections whose handshakes and keep-alive requests interleave
        # on Node's one thread: each SSL object tied to its own socket.
        self.start_agent()
        paths = NODE_PATHS + NODE_PATHS[::-1]
        entries = self.node_exchange("https", NODE_HTTPS_PORT, self.topo.SERVER_IP4,
                                     client="https-parallel", paths=paths)
        self.assertEqual(len({e["conn"] for e in entries}), 4)
        self.wait_equal(self.http_expects(entries, tls="true") + self.tls_only_expects(4)
                        + [Expect("podtap_events_lost_total", {"reason": "tls_unmapped"}, 0)]
                        + self.clean_expects())

    def test_e_node_callback_writes_elsewhere_exact(self):
        # The server's 'secureConnection' handler writes to another socket
        # (a plain TCP connection of the server pod to itself); OpenSSL's
        # handshake callback runs it inside the SSL_read that also returns
        # the first request. That write is not the SSL object's: its
        # requests stay on their connection, none on the other one (the
        # server pod's outbound side).
        self.start_agent()
        entries = self.node_exchange("https", NODE_HTTPS_PORT, self.topo.SERVER_IP4,
                                     note_port=NODE_NOTE_PORT)
        inbound = self.side("inbound")
        self.wait_equal(self.http_expects(entries, tls="true")
                        + [Expect("tcp_open_total", dict(self.side("outbound"), tls="true"), 1),
                           Expect("tcp_open_total", dict(inbound, tls="true"), 1),
                           Expect("tcp_open_total", dict(inbound, tls="false"), 1),
                           Expect("tcp_open_total", self.labels("server", direction="outbound"),
                                  1),
                           Expect("podtap_events_lost_total", {"reason": "tls_unmapped"}, 0)]
                        + self.clean_expects())

    def test_f_curl_h2_to_node_exact(self):
        # HTTP/2 over TLS from a shared libssl (curl, ALPN h2) to Node's
        # http2 server: both kinds of file probed, exact on both sides.
        self.start_agent()
        entries = self.node_exchange("h2", NODE_H2_PORT, self.topo.SERVER_IP4, client="curl")
        self.assertEqual(len({e["conn"] for e in entries}), 1)
        self.wait_equal(self.http_expects(entries, tls="true") + self.tls_only_expects(1)
                        + [Expect("podtap_events_lost_total", {"reason": "tls_unmapped"}, 0)]
                        + self.clean_expects())

    def test_g_node_connection_older_than_the_agent_not_guessed(self):
        # A Node keep-alive connection whose handshake happened before the
        # agent started: its SSL objects were never tied to the socket. The
        # requests made on it afterwards are not counted (no request, on
        # either side), their plaintext is counted as not attributable
        # (tls_unmapped: at least the server's SSL_read and SSL_write and the
        # client's SSL_write and SSL_read per request); the next send on the
        # socket, an application data record, does not pass for a handshake
        # flight.
        workdir = tempfile.mkdtemp(prefix="ptE2e-node-tls-")
        self.addCleanup(lambda: subprocess.run(["rm", "-rf", workdir], check=False))
        log = os.path.join(workdir, "server.log")
        server = self.spawn(self.topo.server_ns,
                            [NODE, NODE_PEER, "server", "https", self.topo.SERVER_IP4,
                             str(NODE_HTTPS_PORT), os.path.join(self.nginx.dir, "cert.pem"),
                             os.path.join(self.nginx.dir, "key.pem"), log])
        self.wait_output(server, "listening", "the Node.js https server")
        client = self.spawn(self.topo.client_ns,
                            [NODE, NODE_PEER, "client", "https-pause", self.topo.SERVER_IP4,
                             str(NODE_HTTPS_PORT)] + NODE_PATHS, stdin=subprocess.PIPE)
        self.wait_output(client, "paused", "the Node.js client")
        self.start_agent()
        self.wait_attached(os.path.realpath(NODE))
        client.stdin.write(b"go\n")
        client.stdin.close()
        self.assertEqual(client.wait(timeout=hx.CLIENT_TIMEOUT), 0)
        client.out.seek(0)
        record = [l for l in client.out.read().split("\n") if l.startswith("GET ")]
        self.assertEqual(len(record), len(NODE_PATHS))
        after = len(NODE_PATHS) - len(NODE_PATHS) // 2
        deadline = time.monotonic() + hx.TIMEOUT
        while True:
            unmapped = (self.agent.scrape().sum("podtap_events_lost_total",
                                                {"reason": "tls_unmapped"})
                        - self.baseline.sum("podtap_events_lost_total",
                                            {"reason": "tls_unmapped"}))
            if unmapped >= 4 * after or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        harness.log("case g: %d plaintext calls not attributable for %d requests"
                    % (unmapped, after))
        self.assertGreaterEqual(unmapped, 4 * after)
        self.wait_equal([Expect("request_total", self.side(d), 0)
                         for d in ("inbound", "outbound")]
                        + [Expect("response_total", self.side(d), 0)
                           for d in ("inbound", "outbound")])

    def test_h_static_binary_replaced(self):
        # A program's file replaced by a new one at the same path (a new
        # inode, as a package upgrade or a new image layer does): the new
        # file is probed too, and its requests count exactly.
        workdir = tempfile.mkdtemp(prefix="ptE2e-tls-static-")
        self.addCleanup(lambda: subprocess.run(["rm", "-rf", workdir], check=False))
        path = os.path.join(workdir, "client")
        shutil.copy(STATIC_CLIENT, path)
        self.start_agent()
        old = self.spawn(None, [path, "--hold"], stdin=subprocess.PIPE)
        self.wait_attached(path)
        old.stdin.close()
        self.assertEqual(old.wait(timeout=10), 0)
        shutil.copy(STATIC_CLIENT, path + ".new")
        os.rename(path + ".new", path)
        new = self.spawn(None, [path, "--hold"], stdin=subprocess.PIPE)
        self.wait_attached(path, times=2)
        self.static_exchange(path)
        new.stdin.close()
