#!/usr/bin/python3
"""Real-kernel end-to-end tests of podtap's HTTP/1.x metrics: real clients
(curl, ab, wrk) in the client pod talk to a real nginx in the server pod, and
podtap's request_total / response_total / response_latency_ms / route_* series
must equal, exactly and on both sides (inbound on the server pod, outbound on
the client pod), what nginx's own access log says happened. TLS (nginx and
openssl s_server) and a binary protocol (peer.py) must not be parsed as HTTP.
Under a CPU budget it cannot keep (--max-cpu, case o) the agent sheds HTTP
capture: its TCP numbers stay exact against nginx's log ($request_length,
$bytes_sent), and every request it counted is either answered or counted
unanswered, never a failure.

Ground truth. nginx logs one JSON line per request it answered ($http_host as
sent, $status, the original request line, its connection serial). A case
reads the lines it added once there are as many as the client made (or, for
wrk, once nginx holds none of its connections any more and the log stopped
growing), and checks them against the clients' own view (curl's -w per
transfer, ab's and wrk's reports) before comparing podtap with them: when
those disagree the harness is wrong, not the agent, and the case errors out.

Each test starts a fresh agent, takes a baseline scrape once it is ready and
compares deltas. nginx runs once for the class, in the foreground as a child
of this process (its own config, files and logs in a temporary folder), and
is stopped by PID.

Run as root: tests/e2e/run.sh test_http_exact (all cases) or
tests/e2e/run.sh test_http_exact.HttpExactTest.test_c_ab_keepalive_exact.
PODTAP_AGENT overrides the agent binary; PODTAP_E2E_ARTIFACTS the folder where
failing cases leave the agent's log, its last scrape and nginx's logs.
"""

import collections
import email.utils
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from nginx import NGINX, Nginx, nginx_conf  # noqa: E402
from harness import HEADER_LEN, Expect  # noqa: E402

CURL = "/usr/bin/curl"
AB = "/usr/bin/ab"
WRK = "/usr/bin/wrk"
OPENSSL = "/usr/bin/openssl"
GNUTLS_CLI = "/usr/bin/gnutls-cli"
TOOLS = {NGINX: "nginx", CURL: "curl", AB: "apache2-utils", WRK: "wrk", OPENSSL: "openssl",
         GNUTLS_CLI: "gnutls-bin"}

HTTP_PORT = 8080
TLS_PORT = 8443
RAW_PORT = 18090  # peer.py's binary protocol (case h)
GATED_HTTP = os.path.join(os.path.dirname(os.path.abspath(__file__)), "gated_http.py")
SHED_AFTER = 2000  # requests case o makes once HTTP capture is off on its connection
SETTLE = 2.0  # seconds the values must stay equal once reached
TIMEOUT = 15.0  # seconds for the agent's numbers to reach the ground truth
CLIENT_TIMEOUT = 60  # bound on any one client command
ARTIFACTS = (os.environ.get("PODTAP_E2E_ARTIFACTS")
             or tempfile.mkdtemp(prefix="ptE2e-http-artifacts-"))

# The file answered 304 to a conditional GET: its mtime is fixed, and
# If-Modified-Since carries exactly that time (nginx's `if_modified_since
# exact`, the default). Every other file is newer, so it answers 200.
COND_MTIME = 1700000000
COND_DATE = email.utils.formatdate(COND_MTIME, usegmt=True)

# Route definitions for case (f) and (i); full match on the path without query.
ROUTES = {"routes": [{"name": "status", "method": "GET", "path_regex": "/status/[0-9]+"}]}

# podtap_parse_errors_total{protocol="http1"} kinds that clean HTTP/1.1 from
# nginx, curl, ab and wrk must never cause (not_http is left out: any
# non-HTTP connection on the machine, also outside these pods, moves it).
CLEAN_HTTP_ERRORS = ("malformed", "headers_too_large", "bad_length", "lost_sync",
                     "too_many_pipelined", "response_without_request")


def tearDownModule():
    try:
        os.rmdir(ARTIFACTS)
    except OSError:
        harness.log("artifacts kept in %s" % ARTIFACTS)


def classification(status):
    return "failure" if int(status) >= 500 else "success"


# --------------------------------------------------------------------------
# nginx in the server pod.

NGINX_CONF = nginx_conf(r"""
    log_format podtap escape=json
        '{"host":"$http_host","status":"$status","method":"$request_method",'
        '"request":"$request","request_uri":"$request_uri","conn":"$connection",'
        '"conn_requests":"$connection_requests","scheme":"$scheme",'
        '"server_port":"$server_port","remote":"$remote_addr",'
        '"request_length":"$request_length","bytes_sent":"$bytes_sent"}';
    access_log %(dir)s/access.log podtap;
    types { text/plain txt; application/octet-stream bin; }
    default_type application/octet-stream;
    sendfile off;
    keepalive_requests 100000;
    keepalive_timeout 60s;
    client_max_body_size 1m;
    client_body_buffer_size 1m;

    server {
        listen %(ip4)s:%(port)d;
        listen [%(ip6)s]:%(port)d;
        include %(dir)s/locations.conf;
    }
    server {
        listen %(ip4)s:%(tls_port)d ssl;
        ssl_certificate %(dir)s/cert.pem;
        ssl_certificate_key %(dir)s/key.pem;
        include %(dir)s/locations.conf;
    }
""")

# - `return CODE "text"` keeps the connection alive for every code (a bare
#   `return 500;` goes through nginx's error pages, which close it); 404 is
#   nginx's own error page, which keeps it alive.
# - POST /upload: the mirror module reads the whole request body first (and
#   answers `Expect: 100-continue` with a 100), then the static module refuses
#   POST on a file (405), which error_page turns into a 201 from a named
#   location (which keeps the method, so the log says POST).
# - /sf/: the same files sent with sendfile(2), as most nginx configurations
#   (Debian's own included) do: the body never passes through a read/write.
NGINX_LOCATIONS = r"""
root %(dir)s/www;
location = /status/200 { return 200 "status 200\n"; }
location = /status/201 { return 201 "status 201\n"; }
location = /status/204 { return 204; }
location = /status/404 { return 404; }
location = /status/500 { return 500 "status 500\n"; }
location = /status/503 { return 503 "status 503\n"; }
location = /upload { mirror /mirror-sink; error_page 405 =201 @created; }
location = /mirror-sink { internal; return 204; }
location @created { return 201 "created\n"; }
location /sf/ { alias %(dir)s/www/; sendfile on; }
"""

# name -> size in bytes; far larger than the agent's 256-byte capture prefix.
FILES = {"tiny.txt": 3, "k10.bin": 10 * 1024, "k300.bin": 300 * 1024, "cond.txt": 500,
         "upload": 2}


def prepare_nginx(params):
    """What NGINX_CONF refers to beyond the files: the locations, a file with
    a fixed modification time (for 304s) and a self-signed certificate."""
    www = os.path.join(params["dir"], "www")
    os.utime(os.path.join(www, "cond.txt"), (COND_MTIME, COND_MTIME))
    with open(os.path.join(params["dir"], "locations.conf"), "w") as f:
        f.write(NGINX_LOCATIONS % params)
    harness.sh([OPENSSL, "req", "-x509", "-newkey", "ec", "-pkeyopt",
                "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2",
                "-subj", "/CN=api.shop", "-keyout", os.path.join(params["dir"], "key.pem"),
                "-out", os.path.join(params["dir"], "cert.pem")])


# --------------------------------------------------------------------------
# The tests.


class HttpExactTest(harness.PodPairTest):
    ARTIFACTS = ARTIFACTS
    TIMEOUT = TIMEOUT
    SETTLE = SETTLE

    @classmethod
    def setUpClass(cls):
        # Missing peers are an error, not a skip: `make deps` installs them.
        harness.require_tools(TOOLS)
        super().setUpClass()
        cls.nginx = Nginx(cls.topo.server_ns, NGINX_CONF,
                          {"ip4": cls.topo.SERVER_IP4, "ip6": cls.topo.SERVER_IP6,
                           "port": HTTP_PORT, "tls_port": TLS_PORT},
                          FILES, ports=(HTTP_PORT, TLS_PORT), listeners=3,
                          prepare=prepare_nginx)
        cls.nginx_dir = cls.nginx.dir
        cls.addClassCleanup(cls.nginx.remove, ARTIFACTS)
        cls.nginx.start()
        harness.log("namespaces %s (client pod %s), %s (server pod %s, nginx in %s); "
                    "artifacts in %s" % (cls.topo.client_ns, cls.client_pod.name,
                                         cls.topo.server_ns, cls.server_pod.name,
                                         cls.nginx_dir, ARTIFACTS))

    # ---- agent -------------------------------------------------------------

    def start_agent(self, routes=None, **kwargs):
        workdir = os.path.join(ARTIFACTS, self.id().rsplit(".", 1)[-1])
        extra = list(kwargs.pop("extra_args", ()))
        if routes is not None:
            os.makedirs(workdir, exist_ok=True)
            path = os.path.join(workdir, "config.json")
            with open(path, "w") as f:
                json.dump(routes, f)
            extra += ["--config", path]
        return harness.start_test_agent(self, workdir, [self.client_pod, self.server_pod],
                                        extra_args=extra, **kwargs)
    def client_cmd(self, args, timeout=CLIENT_TIMEOUT, check=True):
        """Runs a client program in the client pod; subprocess.run stops it by
        PID if it outlives `timeout`."""
        cmd = harness._orphan_guard("KILL") + ["ip", "netns", "exec", self.topo.client_ns] + args
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                           stdin=subprocess.DEVNULL)
        if check and p.returncode != 0:
            raise RuntimeError("client command failed (rc=%d): %s\nstdout: %s\nstderr: %s"
                               % (p.returncode, " ".join(args), p.stdout[-2000:],
                                  p.stderr[-2000:]))
        return p

    def curl(self, urls, *options):
        """One curl process, all `urls` on one command line (curl reuses its
        connection between them). Returns [(method, status, new connections)]
        per transfer, from curl's own -w."""
        return self.curl_next([(urls, options)])

    def curl_next(self, segments):
        """One curl process running segments [(urls, options)] one after the
        other (`--next` between them: the options differ, the connection is
        reused). Returns curl's own [(method, status, new connections)]."""
        args = [CURL]
        for i, (urls, options) in enumerate(segments):
            if i:
                args.append("--next")
            args += ["-sS", "--max-time", "20", "-g", "-k",
                     "-w", "%{method} %{http_code} %{num_connects}\\n"] + list(options)
            for u in urls:
                args += [u, "-o", "/dev/null"]
        p = self.client_cmd(args)
        out = [tuple(l.split()) for l in p.stdout.splitlines() if l.strip()]
        n = sum(len(urls) for urls, _ in segments)
        if len(out) != n:
            raise RuntimeError("curl reported %d transfers for %d URLs:\n%s\n%s"
                               % (len(out), n, p.stdout, p.stderr))
        return [(m, c, int(k)) for m, c, k in out]

    def url(self, path, ip6=False, scheme="http", port=HTTP_PORT):
        host = "[%s]" % self.topo.SERVER_IP6 if ip6 else self.topo.SERVER_IP4
        return "%s://%s:%d%s" % (scheme, host, port, path)

    def check_against_curl(self, since, entries, transfers):
        """Harness self-check: nginx's log and curl's own view agree on the
        requests (method, status, in order) and on the connections opened."""
        got = [(e["request"].split(" ", 1)[0], e["status"]) for e in entries]
        want = [(m, c) for m, c, _ in transfers]
        connects = sum(n for _, _, n in transfers)
        conns = len({e["conn"] for e in entries})
        accepted = self.nginx.accepted(since, entries)
        if got != want or not connects == conns == accepted:
            raise RuntimeError("ground truth inconsistent (not an agent problem): nginx %s "
                               "on %d connections (%d accepted), curl %s on %d"
                               % (got, conns, accepted, want, connects))
        return conns

    # ---- expectations ----------------------------------------------------------

    def http_expects(self, entries, directions=("inbound", "outbound"), tls="false"):
        """request_total, response_total and response_latency_ms_count per
        authority / status from nginx's entries, exact, on each side; and the
        totals over all authorities, so a stray authority shows up too."""
        by_auth = collections.Counter(e["host"] for e in entries)
        by_status = collections.Counter((e["host"], e["status"]) for e in entries)
        n = len(entries)
        failures = sum(1 for e in entries if classification(e["status"]) == "failure")
        out = []
        for d in directions:
            base = self.side(d)
            for auth, k in sorted(by_auth.items()):
                out.append(Expect("request_total", dict(base, authority=auth, tls=tls), k))
                out.append(Expect("route_request_total", dict(base, dst=auth), k))
            for (auth, status), k in sorted(by_status.items()):
                out.append(Expect("response_total",
                                  dict(base, authority=auth, tls=tls, status_code=status,
                                       classification=classification(status)), k))
                out.append(Expect("response_latency_ms_count",
                                  dict(base, authority=auth, tls=tls, status_code=status), k))
            out += [Expect("request_total", base, n),
                    Expect("response_total", base, n),
                    Expect("response_total", dict(base, classification="failure"), failures),
                    Expect("response_latency_ms_count", base, n),
                    Expect("route_request_total", base, n),
                    Expect("route_response_total", base, n)]
        # Nothing the other way round.
        out += [Expect("request_total", self.labels("client", direction="inbound"), 0),
                Expect("request_total", self.labels("server", direction="outbound"), 0)]
        return out

    def clean_expects(self):
        return [Expect("podtap_parse_errors_total", {"protocol": "http1", "error": e}, 0)
                for e in CLEAN_HTTP_ERRORS]

    def tcp_open_expects(self, conns, tls="false"):
        return [Expect("tcp_open_total", dict(self.side(d), tls=tls), conns)
                for d in ("inbound", "outbound")]

    # ---- the cases ---------------------------------------------------------------

    def test_a_curl_keepalive_exact(self):
        self.start_agent()
        since = self.nginx.offset()
        u = self.url
        mix = ["/tiny.txt", "/status/200", "/status/404", "/k10.bin", "/status/500",
               "/status/503", "/status/204", "/k300.bin", "/status/201", "/nope.txt",
               "/k300.bin", "/tiny.txt", "/status/500", "/status/204", "/k10.bin",
               "/status/404", "/cond.txt", "/k300.bin", "/status/503", "/status/200",
               "/tiny.txt?q=1", "/k10.bin", "/status/204", "/status/500", "/k300.bin",
               "/status/200", "/status/404", "/tiny.txt", "/status/503", "/k10.bin"]
        transfers = self.curl([u(p) for p in mix])
        self.assertEqual(sum(n for _, _, n in transfers), 1,
                         "curl must use one connection for the whole mix: %s" % transfers)
        transfers += self.curl([u(p) for p in ("/k300.bin", "/status/503", "/tiny.txt",
                                               "/status/204", "/status/404", "/k10.bin")],
                               "-H", "Host: api.shop:8080")
        # 304: If-Modified-Since equal to cond.txt's mtime; the other files are newer.
        transfers += self.curl([u(p) for p in ("/cond.txt", "/tiny.txt", "/status/500",
                                               "/cond.txt", "/k300.bin")],
                               "-H", "Host: api.shop", "-H", "If-Modified-Since: " + COND_DATE)
        entries = self.nginx.entries(since, len(transfers))
        conns = self.check_against_curl(since, entries, transfers)
        statuses = collections.Counter(e["status"] for e in entries)
        for s in ("200", "201", "204", "304", "404", "500", "503"):
            self.assertGreater(statuses[s], 0, "ground truth lacks status %s: %s" % (s, statuses))
        self.assertEqual(len({e["host"] for e in entries}), 3)
        harness.log("case a: %d requests on %d connections, %s"
                    % (len(entries), conns, dict(statuses)))
        self.wait_equal(self.http_expects(entries) + self.tcp_open_expects(conns)
                        + self.clean_expects())

    def test_b_head_and_post_exact(self):
        self.start_agent()
        since = self.nginx.offset()
        u = self.url
        body = os.path.join(self.nginx_dir, "post-body.bin")
        with open(body, "wb") as f:
            f.write(os.urandom(200 * 1024))
        post = ["-X", "POST", "--data-binary", "@" + body,
                "-H", "Content-Type: application/octet-stream"]
        # One connection: HEADs (the responses carry Content-Length, 300 KB
        # for k300.bin, but no body), a 200 KB POST with `Expect: 100-continue`
        # (nginx answers 100, then 201), two without (curl 7.88 would only
        # add it above 1 MB; `Expect:` makes sure), then a GET and a HEAD.
        transfers = self.curl_next([
            ([u(p) for p in ("/k300.bin", "/tiny.txt", "/status/404", "/k10.bin",
                             "/status/503", "/k300.bin")], ["-I"]),
            ([u("/upload")], post + ["-H", "Expect: 100-continue"]),
            ([u("/upload"), u("/upload")], post + ["-H", "Expect:"]),
            ([u("/k10.bin")], []),
            ([u("/status/204")], ["-I"]),
        ])
        self.assertEqual(sum(n for _, _, n in transfers), 1,
                         "curl must use one connection: %s" % transfers)
        # And the same on a connection of its own each: a POST with
        # `Expect: 100-continue` first thing on it, a HEAD of the big file.
        transfers += self.curl([u("/upload")], *post, "-H", "Expect: 100-continue")
        transfers += self.curl([u("/k300.bin")], "-I")
        entries = self.nginx.entries(since, len(transfers))
        conns = self.check_against_curl(since, entries, transfers)
        methods = collections.Counter(e["method"] for e in entries)
        self.assertEqual(methods, {"HEAD": 8, "POST": 4, "GET": 1}, "nginx log: %s" % entries)
        self.assertTrue(all(int(e["request_length"]) > 200 * 1024
                            for e in entries if e["method"] == "POST"),
                        "nginx read every POST body: %s" % entries)
        self.wait_equal(self.http_expects(entries) + self.tcp_open_expects(conns)
                        + self.clean_expects())

    def test_c_ab_keepalive_exact(self):
        self.start_agent()
        since = self.nginx.offset()
        p = self.client_cmd([AB, "-n", "500", "-c", "4", "-k", "-s", "20", "-q",
                             self.url("/k10.bin")])
        complete = re.search(r"^Complete requests:\s+(\d+)", p.stdout, re.M)
        failed = re.search(r"^Failed requests:\s+(\d+)", p.stdout, re.M)
        keepalive = re.search(r"^Keep-Alive requests:\s+(\d+)", p.stdout, re.M)
        self.assertTrue(complete and failed and keepalive, "ab output:\n%s" % p.stdout)
        self.assertEqual((int(complete.group(1)), int(failed.group(1))), (500, 0),
                         "ab output:\n%s" % p.stdout)
        entries = self.nginx.entries(since, 500)
        conns = len({e["conn"] for e in entries})
        self.assertEqual(self.nginx.accepted(since, entries), conns)
        self.assertEqual(collections.Counter(e["status"] for e in entries), {"200": 500})
        harness.log("case c: ab made 500 requests on %d connections (%s keep-alive)"
                    % (conns, keepalive.group(1)))
        self.wait_equal(self.http_expects(entries) + self.tcp_open_expects(conns)
                        + self.clean_expects())

    def test_d_wrk_inbound_exact(self):
        agent = self.start_agent()
        (info,) = agent.scrape().select("podtap_build_info")
        if info.labels.get("payload_probes") != "compat":  # the bpf_loop builds have it
            self.assertEqual(info.labels.get("syscall_hook"), "sys_exit")
        self.wrk_exact()

    def test_p_wrk_exact_with_syscall_pairs(self):
        # The same exact counts when the syscalls are seen from an entry and an
        # exit program on each one's tracepoints, the hook of kernels where
        # tp_btf/sys_exit does not load (the compat build's only one).
        agent = self.start_agent(extra_args=["--syscall-hook", "pairs"])
        (info,) = agent.scrape().select("podtap_build_info")
        self.assertEqual(info.labels.get("syscall_hook"), "pairs")
        self.wrk_exact()

    def wrk_exact(self):
        since = self.nginx.offset()
        p = self.client_cmd([WRK, "-t1", "-c4", "-d2s", "--timeout", "5s",
                             self.url("/k10.bin")])
        m = re.search(r"^\s*(\d+) requests in", p.stdout, re.M)
        self.assertTrue(m, "wrk output:\n%s" % p.stdout)
        wrk_done = int(m.group(1))
        # wrk counts the responses it read; nginx answered those and the
        # requests still in flight when wrk stopped (at most one per connection).
        entries = self.nginx.entries(since)
        n = len(entries)
        conns = len({e["conn"] for e in entries})
        self.assertEqual(conns, 4, "wrk -c4 must use 4 connections")
        # Before its 4 connections wrk checks that the address accepts
        # connections (wrk.connect in wrk.resolve): one more connection,
        # opened and closed without a byte; nginx's serial counts it.
        accepted = self.nginx.accepted(since, entries)
        self.assertEqual(accepted, conns + 1, "connections nginx accepted during wrk's run")
        self.assertTrue(wrk_done <= n <= wrk_done + conns,
                        "wrk read %d responses, nginx logged %d" % (wrk_done, n))
        self.assertEqual({e["status"] for e in entries}, {"200"})
        harness.log("wrk read %d responses, nginx answered %d" % (wrk_done, n))
        # Inbound: exactly nginx's log.
        expects = self.http_expects(entries, directions=("inbound",))
        # Outbound (measured, and explained): wrk stops with at most one
        # request in flight per connection (0 to 4 of 4 seen on this machine).
        # nginx read and answered every request wrk wrote (all are in its
        # log), so outbound request_total equals inbound exactly. The answers to the
        # requests in flight reached wrk's socket buffers, but wrk exited
        # without reading them (its close sends a RST): on the client pod the
        # close cuts those responses off (classification failure, no status
        # code, still observed in the latency histogram), and exactly wrk's
        # own count of responses completed with 200.
        out = self.side("outbound")
        auth = "%s:%d" % (self.topo.SERVER_IP4, HTTP_PORT)
        expects += [
            Expect("request_total", dict(out, authority=auth, tls="false"), n),
            Expect("request_total", out, n),
            Expect("response_total", dict(out, authority=auth, tls="false", status_code="200",
                                          classification="success"), wrk_done),
            Expect("response_total", dict(out, authority=auth, tls="false", status_code="",
                                          classification="failure"), n - wrk_done),
            Expect("response_total", out, n),
            Expect("response_latency_ms_count", out, n),
            Expect("response_latency_ms_count", dict(out, status_code="200"), wrk_done),
            Expect("request_total", self.labels("client", direction="inbound"), 0),
        ]
        self.wait_equal(expects + self.tcp_open_expects(accepted) + self.clean_expects())

    def test_e_ipv6_curl_exact(self):
        self.start_agent()
        since = self.nginx.offset()
        mix = ["/tiny.txt", "/status/500", "/k300.bin", "/status/404", "/status/204",
               "/k10.bin", "/status/503", "/status/200", "/cond.txt", "/k300.bin"]
        transfers = self.curl([self.url(p, ip6=True) for p in mix])
        transfers += self.curl([self.url(p, ip6=True) for p in ("/tiny.txt", "/status/503")],
                               "-H", "Host: api.shop:8080")
        entries = self.nginx.entries(since, len(transfers))
        conns = self.check_against_curl(since, entries, transfers)
        self.assertEqual({e["remote"] for e in entries}, {self.topo.CLIENT_IP6})
        self.assertEqual({e["host"] for e in entries},
                         {"[%s]:%d" % (self.topo.SERVER_IP6, HTTP_PORT), "api.shop:8080"})
        self.wait_equal(self.http_expects(entries) + self.tcp_open_expects(conns)
                        + self.clean_expects())

    def test_j_sendfile_exact(self):
        # Beyond the required cases: nginx with `sendfile on` (its Debian
        # default) sends file bodies with sendfile(2); the headers still go
        # out with writev. Keep-alive across large bodies and error answers.
        self.start_agent()
        since = self.nginx.offset()
        mix = ["/sf/k300.bin", "/status/404", "/sf/k10.bin", "/sf/tiny.txt", "/status/503",
               "/sf/k300.bin", "/sf/nope.bin", "/sf/k10.bin", "/status/204", "/sf/k300.bin",
               "/status/200"]
        transfers = self.curl([self.url(p) for p in mix])
        transfers += self.curl([self.url(p) for p in ("/sf/k300.bin", "/sf/tiny.txt")], "-I")
        entries = self.nginx.entries(since, len(transfers))
        conns = self.check_against_curl(since, entries, transfers)
        self.wait_equal(self.http_expects(entries) + self.tcp_open_expects(conns)
                        + self.clean_expects())

    HALF_CLOSE_CLIENT = r"""
import socket, sys, time
host, port, paths = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
for path in paths:
    s = socket.create_connection((host, port), timeout=10)
    s.sendall(("GET %s HTTP/1.1\r\nHost: half.close\r\n\r\n" % path).encode())
    s.shutdown(socket.SHUT_WR)
    # The reply and the server's FIN arrive meanwhile: the socket reaches CLOSE
    # (FIN_WAIT2 -> TIME_WAIT) before this process reads the reply.
    time.sleep(0.3)
    data = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    s.close()
    print(data.split(b" ", 2)[1].decode())
"""

    def test_m_half_close_exact(self):
        # Beyond the required cases: a client that half-closes after its
        # request and reads the reply only after its socket closed. The
        # reads' records come after the close event; they are still parsed,
        # so the client's side counts its responses (not cut-off requests).
        self.start_agent()
        since = self.nginx.offset()
        paths = ["/status/200", "/status/404", "/status/503", "/status/200"]
        p = self.client_cmd(["/usr/bin/python3", "-c", self.HALF_CLOSE_CLIENT,
                             self.topo.SERVER_IP4, str(HTTP_PORT)] + paths)
        self.assertEqual(p.stdout.split(), [path.rsplit("/", 1)[1] for path in paths])
        entries = self.nginx.entries(since, len(paths))
        self.wait_equal(self.http_expects(entries) + self.tcp_open_expects(len(paths))
                        + self.clean_expects())

    PREFACE_BODY_CLIENT = r"""
import socket, sys, time
host, port = sys.argv[1], int(sys.argv[2])
# The HTTP/2 client preface, as the first bytes of a body sent in a write of
# its own: HTTP/1 all the same.
body = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"x" * 40
s = socket.create_connection((host, port), timeout=10)
f = s.makefile("rb")

def answer():
    status = f.readline().split(b" ", 2)[1].decode()
    length = 0
    while True:
        line = f.readline()
        if line in (b"\r\n", b""):
            break
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    f.read(length)
    return status

for i in range(3):
    s.sendall(b"POST /upload HTTP/1.1\r\nHost: preface.body\r\nContent-Length: %d\r\n\r\n"
              % len(body))
    time.sleep(0.05)
    s.sendall(body)
    print(answer())
    s.sendall(b"GET /status/404 HTTP/1.1\r\nHost: preface.body\r\n\r\n")
    print(answer())
s.close()
"""

    def test_n_preface_in_http1_body_exact(self):
        # Beyond the required cases: a request body that starts with the
        # HTTP/2 preface, in a write of its own, on a keep-alive HTTP/1
        # connection. The kernel takes the preface only as a connection's
        # first bytes, so both sides keep counting HTTP/1 exactly.
        self.start_agent()
        since = self.nginx.offset()
        p = self.client_cmd(["/usr/bin/python3", "-c", self.PREFACE_BODY_CLIENT,
                             self.topo.SERVER_IP4, str(HTTP_PORT)])
        self.assertEqual(p.stdout.split(), ["201", "404"] * 3)
        entries = self.nginx.entries(since, 6)
        self.wait_equal(self.http_expects(entries) + self.tcp_open_expects(1)
                        + self.clean_expects())

    def route_expects(self, entries):
        """route_* series from nginx's entries: the route each request
        matches, by its method and its path as sent without the query."""
        routes = [(r["name"], r["method"], re.compile(r["path_regex"])) for r in ROUTES["routes"]]

        def route_of(e):
            method, target = e["request"].split(" ")[:2]
            path = target.split("?", 1)[0]
            for name, m, rx in routes:
                if (not m or m == method) and rx.fullmatch(path):
                    return name
            return "[DEFAULT]"

        reqs = collections.Counter((e["host"], route_of(e)) for e in entries)
        resps = collections.Counter((e["host"], route_of(e), e["status"]) for e in entries)
        out = []
        for d in ("inbound", "outbound"):
            base = self.side(d)
            for (dst, route), k in sorted(reqs.items()):
                out.append(Expect("route_request_total", dict(base, dst=dst, rt_route=route), k))
            for (dst, route, status), k in sorted(resps.items()):
                lbl = dict(base, dst=dst, rt_route=route, status_code=status)
                out.append(Expect("route_response_total",
                                  dict(lbl, classification=classification(status)), k))
                out.append(Expect("route_response_latency_ms_count", lbl, k))
            for route in ("status", "[DEFAULT]"):
                k = sum(v for (_, r), v in reqs.items() if r == route)
                out.append(Expect("route_request_total", dict(base, rt_route=route), k))
                out.append(Expect("route_response_total", dict(base, rt_route=route), k))
        return out, reqs

    def test_f_routes_exact(self):
        self.start_agent(routes=ROUTES)
        since = self.nginx.offset()
        u = self.url
        transfers = self.curl([u(p) for p in (
            "/status/200", "/status/200?verbose=1", "/status/404", "/status/500",
            "/status/503", "/status/204", "/status/abc", "/status/200/more", "/status/",
            "/tiny.txt", "/k300.bin", "/status/201")])
        transfers += self.curl([u("/status/200"), u("/status/404")], "-I")  # HEAD: not GET
        transfers += self.curl([u("/status/201")], "-d", "x=1")  # POST: not GET
        transfers += self.curl([u(p) for p in ("/status/503", "/tiny.txt")],
                               "-H", "Host: api.shop:8080")
        entries = self.nginx.entries(since, len(transfers))
        conns = self.check_against_curl(since, entries, transfers)
        route_exp, reqs = self.route_expects(entries)
        harness.log("case f: routes %s" % dict(reqs))
        self.assertTrue(any(r == "status" for _, r in reqs) and
                        any(r == "[DEFAULT]" for _, r in reqs))
        self.wait_equal(route_exp + self.http_expects(entries) + self.tcp_open_expects(conns)
                        + self.clean_expects())

    def tls_expects(self, conns, directions=("inbound", "outbound")):
        """conns TLS connections between the pods: tls="true" on both sides,
        no plaintext series, and no HTTP request counted on `directions`
        (the sides whose TLS plaintext the agent cannot read)."""
        out = []
        for d in ("inbound", "outbound"):
            if d not in directions:
                out += [Expect("tcp_open_total", dict(self.side(d), tls="true"), conns),
                        Expect("tcp_open_total", dict(self.side(d), tls="false"), 0)]
                continue
            base = self.side(d)
            out += [Expect("tcp_open_total", dict(base, tls="true"), conns),
                    Expect("tcp_open_total", dict(base, tls="false"), 0),
                    Expect("tcp_close_total", dict(base, tls="true"), conns),
                    Expect("tcp_open_connections", dict(base, tls="true"), 0, absolute=True),
                    Expect("request_total", base, 0),
                    Expect("response_total", base, 0),
                    Expect("route_request_total", base, 0)]
        return out + self.clean_expects()

    def test_g_tls_handshake(self):
        # A TLS server that reads the record layer as it comes (5-byte record
        # header first): `openssl s_server -www` answers `GET /` inside TLS
        # and closes (HTTP/1.0); -naccept bounds it to the connections made.
        # Without the TLS probes: ciphertext is never parsed.
        self.start_agent(extra_args=["--no-tls-probes"])
        port = TLS_PORT + 1
        cmd = (harness._orphan_guard("TERM")
               + ["ip", "netns", "exec", self.topo.server_ns, OPENSSL, "s_server", "-quiet",
                  "-accept", "%s:%d" % (self.topo.SERVER_IP4, port),
                  "-cert", os.path.join(self.nginx_dir, "cert.pem"),
                  "-key", os.path.join(self.nginx_dir, "key.pem"), "-www", "-naccept", "3"])
        log = tempfile.TemporaryFile(mode="w+")
        self.addCleanup(log.close)
        server = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log,
                                  stderr=subprocess.STDOUT)
        harness._live_procs[server.pid] = server
        self.addCleanup(harness._stop_pid, server, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while not any(l.endswith(":%d" % port) for l in self.nginx.listening_all()):
            if server.poll() is not None or time.monotonic() > deadline:
                log.seek(0)
                raise RuntimeError("openssl s_server did not listen: %s" % log.read())
            time.sleep(0.05)
        url = self.url("/", scheme="https", port=port)
        transfers = self.curl([url, url])  # HTTP/1.0: one connection each
        transfers += self.curl([url], "--tlsv1.2", "--tls-max", "1.2")
        self.assertEqual(transfers, [("GET", "200", 1)] * 3, "curl via openssl s_server")
        self.assertEqual(server.wait(timeout=10), 0, "openssl s_server after 3 connections")
        self.wait_equal(self.tls_expects(len(transfers)))

    def test_g_tls_nginx(self):
        # The same through nginx, the most common TLS server: before its
        # handshake nginx peeks at the first byte of a connection
        # (recv(fd, buf, 1, MSG_PEEK)) to tell TLS from plain HTTP.
        self.start_agent(extra_args=["--no-tls-probes"])
        since = self.nginx.offset()
        tls_url = lambda p: self.url(p, scheme="https", port=TLS_PORT)  # noqa: E731
        transfers = self.curl([tls_url(p) for p in ("/tiny.txt", "/status/404", "/k300.bin",
                                                    "/status/500")])
        transfers += self.curl([tls_url("/k10.bin")], "--tlsv1.2", "--tls-max", "1.2")
        entries = self.nginx.entries(since, len(transfers), port=TLS_PORT)
        conns = self.check_against_curl(since, entries, transfers)
        self.assertEqual({e["scheme"] for e in entries}, {"https"})
        self.assertEqual(conns, 2)
        self.wait_equal(self.tls_expects(conns))

    def tls_libraries_attached(self):
        """The agent found and probed the libssl that nginx, curl and openssl
        share (one file: the pods share the host's filesystem)."""
        sample = self.agent.scrape().sum("podtap_tls_libraries", {"state": "attached"})
        self.assertGreaterEqual(sample, 1, "no libssl probed: %s" % sample)
        self.assertEqual(self.agent.scrape().sum("podtap_tls_libraries", {"state": "failed"}),
                         0)

    def test_k_tls_plaintext_exact(self):
        # With the TLS probes (the default), nginx's and curl's SSL_read and
        # SSL_write give the plaintext: the same exact counts as cleartext,
        # on both sides, under tls="true"; and openssl s_client too.
        self.start_agent()
        self.tls_libraries_attached()
        since = self.nginx.offset()
        tls_url = lambda p: self.url(p, scheme="https", port=TLS_PORT)  # noqa: E731
        transfers = self.curl([tls_url(p) for p in ("/tiny.txt", "/status/404", "/k300.bin",
                                                    "/status/500", "/k10.bin", "/status/204")])
        transfers += self.curl([tls_url(p) for p in ("/k10.bin", "/status/503")],
                               "--tlsv1.2", "--tls-max", "1.2", "-H", "Host: api.shop")
        for path in ("/tiny.txt", "/status/201"):
            req = "GET %s HTTP/1.1\r\nHost: api.shop\r\nConnection: close\r\n\r\n" % path
            p = subprocess.run(
                harness._orphan_guard("KILL") + ["ip", "netns", "exec", self.topo.client_ns,
                                                 OPENSSL, "s_client", "-quiet", "-connect",
                                                 "%s:%d" % (self.topo.SERVER_IP4, TLS_PORT)],
                input=req, capture_output=True, text=True, timeout=CLIENT_TIMEOUT)
            status = path.rsplit("/", 1)[-1] if path.startswith("/status/") else "200"
            self.assertIn("HTTP/1.1 %s" % status, p.stdout, "openssl s_client: %s" % p.stderr)
            transfers.append(("GET", status, 1))
        entries = self.nginx.entries(since, len(transfers), port=TLS_PORT)
        conns = self.check_against_curl(since, entries, transfers)
        self.assertEqual(conns, 4)
        self.wait_equal(self.http_expects(entries, tls="true")
                        + self.tcp_open_expects(conns, tls="true")
                        + [Expect("tcp_open_total", dict(self.side(d), tls="false"), 0)
                           for d in ("inbound", "outbound")]
                        + [Expect("podtap_events_lost_total", {"reason": "tls_unmapped"}, 0)]
                        + self.clean_expects())

    def test_l_tls_client_not_probed(self):
        # GnuTLS (gnutls-cli) is not OpenSSL: its plaintext is not seen, so
        # the client pod's outbound side counts its connection with
        # tls="true" and no request; nginx's inbound side still reads the
        # exchange through OpenSSL, exactly.
        self.start_agent()
        self.tls_libraries_attached()
        since = self.nginx.offset()
        for path in ("/tiny.txt", "/status/404", "/status/500"):
            req = "GET %s HTTP/1.1\r\nHost: api.shop\r\nConnection: close\r\n\r\n" % path
            p = subprocess.run(
                harness._orphan_guard("KILL") + ["ip", "netns", "exec", self.topo.client_ns,
                                                 GNUTLS_CLI, "--insecure", "--logfile",
                                                 "/dev/null", "-p", str(TLS_PORT),
                                                 self.topo.SERVER_IP4],
                input=req, capture_output=True, text=True, timeout=CLIENT_TIMEOUT)
            self.assertIn("HTTP/1.1 ", p.stdout, "gnutls-cli: %s" % p.stderr)
        entries = self.nginx.entries(since, 3, port=TLS_PORT)
        self.assertEqual([e["status"] for e in entries], ["200", "404", "500"])
        self.wait_equal(self.http_expects(entries, directions=("inbound",), tls="true")
                        + self.tls_expects(3, directions=("outbound",)))

    def test_h_not_http(self):
        self.start_agent()
        server = harness.start_server(self.topo.server_ns, self.topo.SERVER_IP4, RAW_PORT)
        self.addCleanup(server.stop)
        plan = [(20, 30, "normal"), (5, 7, "normal"), (100, 1, "normal")]
        run = harness.ClientRun(self.topo.client_ns, self.topo.SERVER_IP4, RAW_PORT, plan,
                                seed=808)
        try:
            conns = run.finish(timeout=60)
        finally:
            run.proc.stop()
        self.assertEqual([c["outcome"] for c in conns], ["eof"] * len(plan), conns)
        srv = server.wait_event("conn", timeout=30, count=len(plan))
        self.assertEqual(sorted((s["read"], s["written"]) for s in srv),
                         sorted((HEADER_LEN + a, b) for a, b, _ in plan))
        n = len(plan)
        expects = []
        for d, written, read in (("outbound", sum(HEADER_LEN + a for a, _, _ in plan),
                                  sum(b for _, b, _ in plan)),
                                 ("inbound", sum(b for _, b, _ in plan),
                                  sum(HEADER_LEN + a for a, _, _ in plan))):
            base = self.side(d)
            expects += [Expect("tcp_open_total", dict(base, tls="false"), n),
                        Expect("tcp_close_total", dict(base, classification="success"), n),
                        Expect("tcp_write_bytes_total", base, written),
                        Expect("tcp_read_bytes_total", base, read),
                        Expect("request_total", base, 0),
                        Expect("response_total", base, 0)]
        # Both sockets of each connection (the client's and the server's) are
        # given up on, each at its first bytes: two per connection.
        expects += [Expect("podtap_connections_given_up_total", {"protocol": "http1"}, 2 * n),
                    Expect("podtap_parse_errors_total", {"protocol": "http1",
                                                         "error": "not_http"}, 2 * n)]
        self.wait_equal(expects + self.clean_expects())

    def test_o_cpu_budget_sheds_http_tcp_exact(self):
        # A CPU budget far below what the agent uses even idle (0.001 cores): the guard decides
        # every two seconds and sheds the connections that sent most of the socket data since its
        # last look. One keep-alive connection runs requests back to back until HTTP capture is
        # off on both its sockets (shed, and neither side's request_total moves while requests
        # go on), then exactly SHED_AFTER requests more, which no side may count.
        self.start_agent(extra_args=["--max-cpu", "0.001"])
        since = self.nginx.offset()
        client = harness.PeerProcess(self.topo.client_ns,
                                     [self.topo.SERVER_IP4, HTTP_PORT, "/status/200", SHED_AFTER],
                                     "gated http", script=GATED_HTTP)
        self.addCleanup(client.stop)
        client.wait_event("running", timeout=30)
        delta = lambda scrape, name, labels: (scrape.sum(name, labels)
                                              - self.baseline.sum(name, labels))
        counted = lambda scrape: tuple(delta(scrape, "request_total", self.side(d))
                                       for d in ("inbound", "outbound"))
        deadline = time.monotonic() + 30
        last = None
        while True:
            scrape = self.agent.scrape()
            shed = delta(scrape, "podtap_http_shed_connections_total", {})
            if shed > 0 and last is not None and counted(scrape) == counted(last):
                break
            self.assertLess(time.monotonic(), deadline,
                            "HTTP capture not off on both sockets at --max-cpu 0.001 (%d shed)"
                            % shed)
            last = scrape
            time.sleep(0.5)
        client.signal(signal.SIGUSR1)
        done = client.wait_event("done", timeout=60)[0]
        self.assertEqual(client.wait(30), 0, client.stderr())
        n = done["before"] + done["after"]
        entries = self.nginx.entries(since, n)
        self.assertEqual({e["status"] for e in entries}, {"200"})
        self.assertEqual(len({e["conn"] for e in entries}), 1)
        self.assertEqual(self.nginx.accepted(since, entries), 1)
        # TCP stays exact: opens, closes and bytes against nginx's log.
        read = sum(int(e["request_length"]) for e in entries)
        written = sum(int(e["bytes_sent"]) for e in entries)
        expects = []
        for d, w, r in (("inbound", written, read), ("outbound", read, written)):
            base = self.side(d)
            expects += [Expect("tcp_open_total", dict(base, tls="false"), 1),
                        Expect("tcp_close_total", dict(base, classification="success"), 1),
                        Expect("tcp_write_bytes_total", base, w),
                        Expect("tcp_read_bytes_total", base, r)]
        ex = self.wait_equal(expects + self.clean_expects())
        # HTTP: the requests after the shed are counted on neither side, and each request
        # counted is either answered or unanswered (in flight at the shed), never a failure.
        requests = responses = 0
        for d in ("inbound", "outbound"):
            base = self.side(d)
            got = delta(ex, "request_total", base)
            answered = delta(ex, "response_total", base)
            self.assertLessEqual(answered, got, d)
            self.assertLessEqual(got, n - SHED_AFTER,
                                 "%s: requests after the shed must not be counted" % d)
            self.assertEqual(delta(ex, "response_total", dict(base, classification="failure")),
                             0, d)
            requests += got
            responses += answered
        self.assertEqual(requests - responses,
                         delta(ex, "podtap_http_requests_unanswered_total", {}),
                         "requests counted and not answered must be the unanswered ones")
        self.assertEqual(ex.sum("podtap_cpu_budget_cores", {}), 0.001)
        status, _, body = self.agent.get("/readyz")
        self.assertEqual(status, 200, body)
        self.assertIn("overload: HTTP capture shed on", body)
        harness.log("case o: %d requests on one connection, %d after the shed; %d shed; counted "
                    "%d requests, %d responses" % (n, SHED_AFTER, shed, requests, responses))

    def test_i_exposition_valid(self):
        agent = self.start_agent(routes=ROUTES)
        since = self.nginx.offset()
        transfers = self.curl([self.url(p) for p in ("/status/200", "/status/503", "/k10.bin",
                                                     "/status/404")])
        transfers += self.curl([self.url("/status/204", ip6=True)], "-H", "Host: api.shop")
        entries = self.nginx.entries(since, len(transfers))
        self.check_against_curl(since, entries, transfers)
        route_exp, _ = self.route_expects(entries)
        self.wait_equal(self.http_expects(entries) + route_exp)
        status, headers, text = agent.get("/metrics")
        self.assertEqual(status, 200)
        ok, report = harness.promtool_check(text)
        harness.log(report)
        self.assertTrue(ok, "promtool found errors in the exposition:\n%s" % report)
        ex = harness.parse_exposition(text)  # strict: raises on any defect
        want_types = {
            "request_total": "counter", "response_total": "counter",
            "response_latency_ms": "histogram", "route_request_total": "counter",
            "route_response_total": "counter", "route_response_latency_ms": "histogram",
            "tcp_open_total": "counter", "podtap_parse_errors_total": "counter",
            "podtap_connections_given_up_total": "counter",
            "podtap_payload_events_total": "counter", "podtap_events_lost_total": "counter",
        }
        got_types = {n: ex.families[n].type if n in ex.families else None for n in want_types}
        self.assertEqual(got_types, want_types)
        for fam in want_types:
            self.assertTrue(ex.families[fam].help, "%s has no HELP" % fam)
        linkerd = {tuple(float(b) for b in harness.LINKERD_BUCKETS)}
        for fam in ("response_latency_ms", "route_response_latency_ms"):
            self.assertEqual(harness.histogram_bounds(ex, fam), linkerd, fam)
        # The label names of the families, on the pods' series.
        for name, must in (("request_total", {"direction", "authority", "tls"}),
                           ("response_total", {"direction", "authority", "tls", "status_code",
                                               "classification"}),
                           ("route_request_total", {"direction", "dst", "rt_route"}),
                           ("route_response_total", {"direction", "dst", "rt_route",
                                                     "status_code", "classification"})):
            series = ex.select(name, {"pod": self.S["pod"]})
            self.assertTrue(series, name)
            for s in series:
                self.assertTrue(must <= set(s.labels), "%s: %s" % (name, s.labels))
        self.assertGreater(ex.sum("podtap_payload_events_total")
                           - self.baseline.sum("podtap_payload_events_total"), 0)
        self.assertEqual(ex.sum("podtap_events_lost_total"), 0)
        rc = agent.stop()
        self.assertEqual(rc, 0, "agent exit code after SIGTERM (%.1fs)\n%s"
                         % (agent.stop_seconds, agent.log_tail()))


if __name__ == "__main__":
    unittest.main(verbosity=2)
