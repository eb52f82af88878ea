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
        # Missing peers are an error, not a skip: `make deps` installs them.
        missing = [t for t in TOOLS if not os.access(t, os.X_OK)]
        if missing:
            raise RuntimeError("missing %s: install the Debian packages %s (make deps)"
                               % (", ".join(missing), ", ".join(TOOLS[t] for t in missing)))
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
        return harness.start_test_agent(
            self, os.path.join(ARTIFACTS, self.id().rsplit(".", 1)[-1]),
            [self.client_pod, self.server_pod])

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

    def wait_attached(self, path):
        """Waits for the agent's log line saying it attached the TLS probes
        to `path` (reached through some /proc/PID/root)."""
        deadline = time.monotonic() + ATTACH_TIMEOUT
        suffix = "root" + path
        while not any(l.rstrip().endswith(suffix) and "TLS plaintext probes attached to" in l
                      for l in self.agent.log_text().splitlines()):
            if time.monotonic() > deadline:
                self.fail("the agent did not attach to %s:\n%s" % (path, self.agent.log_tail()))
            time.sleep(0.1)
        self.assertEqual(self.agent.scrape().sum("podtap_tls_libraries", {"state": "failed"}), 0,
                         self.agent.log_tail())

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
        since = self.nginx.offset()
        record = []
        for authority, paths in (("api.shop", PATHS), ("static.shop", PATHS[::-1])):
            p = self.client_cmd([static, self.topo.SERVER_IP4, str(hx.TLS_PORT), authority]
                                + paths)
            record += p.stdout.split("\n")[:-1]
        holder.stdin.close()
        entries = self.nginx.entries(since, len(record), port=hx.TLS_PORT)
        # Ground truth: the client's own record and nginx's log agree.
        self.assertEqual(["GET %s" % e["status"] for e in entries], record)
        self.assertEqual(len({e["conn"] for e in entries}), 2)
        self.assertEqual(self.nginx.accepted(since, entries), 2)
        self.wait_equal(self.http_expects(entries, tls="true") + self.tls_only_expects(2)
                        + [Expect("podtap_events_lost_total", {"reason": "tls_unmapped"}, 0)]
                        + self.clean_expects())
