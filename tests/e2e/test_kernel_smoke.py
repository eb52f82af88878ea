#!/usr/bin/python3
"""The kernel matrix' smoke suite (tests/kernel_matrix): one agent for the
whole suite and one small exact case per kind of traffic, so it can run in a
QEMU guest of another kernel (12-20x slower CPU, ~25x slower process start)
as well as on this machine's kernel.

  (a) TCP: peer.py connections with known bytes, transport series exact
  (b) HTTP/1.1: curl against nginx, responses per status equal nginx's log
  (c) HTTP/2: h2load against nginx h2c, requests per status equal the log
  (d) gRPC: grpc_peer.py unary calls, grpc_status_code exact
  (e) TLS through OpenSSL: curl against nginx over TLS, tls="true" counts exact
  (f) restart: a held connection survives SIGKILL and a restart of the
      agent, and tcp_open_connections is right at once

Each case compares deltas against a scrape taken when it starts; the cases
run one after the other and every connection a case opens is closed before
it ends, so the shared agent's numbers belong to one case at a time.

Run as root: /usr/bin/python3 -B tests/e2e/test_kernel_smoke.py. Environment:
  PODTAP_AGENT             the agent binary
  PODTAP_E2E_SLOWDOWN      factor on every bound on a wait (a guest: 20)
  PODTAP_AGENT_ARGS        extra agent flags (harness.py adds them to every
                           agent); with `--capture-payload false` the HTTP
                           cases are skipped (the agent then only sees TCP)
  PODTAP_MATRIX_RESULT     where to write the JSON result: per case
                           pass/fail/error/skip, each agent start's time to
                           /readyz 200, podtap_build_info's labels, the
                           podtap_kernel_feature samples ("unknown" when the
                           agent has none) and the programs it attached
"""

import collections
import json
import os
import platform
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import HEADER_LEN, Expect, scaled  # noqa: E402
from nginx import Nginx, nginx_conf  # noqa: E402

CURL = "/usr/bin/curl"
H2LOAD = "/usr/bin/h2load"
OPENSSL = "/usr/bin/openssl"
GRPC_PEER = os.path.join(harness.HERE, "grpc_peer.py")
TCP_PORT = 18095
HTTP_PORT = 8080
H2_PORT = 8082
TLS_PORT = 8443
GRPC_PORT = 50062
# For the agent's numbers to reach the ground truth. They lag its ring
# buffer polling, not process starts, so a guest needs less than the full
# slowdown; a failing case in a guest costs this much.
TIMEOUT = max(15.0, scaled(6))
SETTLE = 2.0  # seconds the values must stay equal once reached
CLIENT_TIMEOUT = scaled(60)
READY_TIMEOUT = scaled(180)  # the agent verifies its programs before /readyz says 200
HOLD_TIMEOUT = READY_TIMEOUT + 2 * CLIENT_TIMEOUT  # peer.py's --io-timeout around a restart
AGENT_ARGS = shlex.split(os.environ.get("PODTAP_AGENT_ARGS", ""))
PAYLOAD = not re.search(r"--capture-payload[ =](false|0|off)\b", " ".join(AGENT_ARGS))
ARTIFACTS = (os.environ.get("PODTAP_E2E_ARTIFACTS")
             or tempfile.mkdtemp(prefix="ptE2e-smoke-artifacts-"))

NGINX_CONF = nginx_conf(r"""
    log_format podtap escape=json
        '{"host":"$http_host","status":"$status","protocol":"$server_protocol",'
        '"scheme":"$scheme","conn":"$connection","server_port":"$server_port"}';
    access_log %(dir)s/access.log podtap;
    default_type text/plain;
    keepalive_timeout 60s;
    server {
        listen %(ip4)s:%(http)d;
        listen %(ip4)s:%(h2)d http2;
        listen %(ip4)s:%(tls)d ssl;
        ssl_certificate %(dir)s/cert.pem;
        ssl_certificate_key %(dir)s/key.pem;
        root %(dir)s/www;
        location = /status/200 { return 200 "status 200\n"; }
        location = /status/404 { return 404; }
        location = /status/503 { return 503 "status 503\n"; }
    }
""")
FILES = {"k10.bin": 10 * 1024}


def prepare_nginx(params):
    harness.sh([OPENSSL, "req", "-x509", "-newkey", "ec", "-pkeyopt",
                "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2", "-subj", "/CN=api.shop",
                "-keyout", os.path.join(params["dir"], "key.pem"),
                "-out", os.path.join(params["dir"], "cert.pem")], timeout=CLIENT_TIMEOUT)


def classification(status):
    return "failure" if int(status) >= 500 else "success"


class KernelSmokeTest(harness.PodPairTest):
    ARTIFACTS = ARTIFACTS
    TIMEOUT = TIMEOUT
    SETTLE = SETTLE
    agent_starts = []  # {"agent", "seconds"} per start, in order
    agent_facts = {}  # what the first scrape and the kernel say about the agent
    agent_error = None  # the agent's last log lines when it did not become ready

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.nginx = Nginx(cls.topo.server_ns, NGINX_CONF,
                          {"ip4": cls.topo.SERVER_IP4, "http": HTTP_PORT, "h2": H2_PORT,
                           "tls": TLS_PORT},
                          FILES, ports=(HTTP_PORT, H2_PORT, TLS_PORT), listeners=3,
                          prepare=prepare_nginx, prefix="ptE2e-nginx-smoke-")
        cls.addClassCleanup(cls.nginx.remove, ARTIFACTS)
        cls.nginx.start()
        # The held connection of case (f) waits out an agent restart: the
        # server's I/O timeout must outlast it, and its life the suite's.
        cls.server = harness.PeerProcess(cls.topo.server_ns,
                                         ["server", "--addr", cls.topo.SERVER_IP4, "--port",
                                          TCP_PORT, "--io-timeout", HOLD_TIMEOUT,
                                          "--max-seconds", scaled(600)],
                                         "server %s:%d" % (cls.topo.SERVER_IP4, TCP_PORT))
        cls.addClassCleanup(cls.server.stop)
        cls.server.wait_event("listening", timeout=CLIENT_TIMEOUT)
        cls.agent = cls.start_timed_agent("first")
        ex = cls.agent.scrape()
        build = ex.select("podtap_build_info")
        cls.agent_facts.update(
            build_info=build[0].labels if build else "unknown",
            kernel_features=[{"feature": s.labels.get("feature", ""),
                              "state": s.labels.get("state", ""), "value": s.value}
                             for s in ex.select("podtap_kernel_feature")] or "unknown",
            programs=dict(collections.Counter(p["prog"]
                                              for p in cls.agent.attached_programs())))

    @classmethod
    def start_timed_agent(cls, name):
        """An agent for the class, stopped by PID at its end; records its
        time from process start to /readyz 200."""
        workdir = os.path.join(ARTIFACTS, name)
        os.makedirs(workdir, exist_ok=True)
        agent = harness.Agent(workdir, [cls.client_pod, cls.server_pod])
        cls.addClassCleanup(agent.stop)
        t0 = time.monotonic()
        agent.start()
        try:
            agent.wait_ready(timeout=READY_TIMEOUT)
        except harness.AgentError:
            cls.agent_starts.append({"agent": name, "seconds": None})
            cls.agent_error = agent.log_tail(8)
            raise
        seconds = time.monotonic() - t0
        cls.agent_starts.append({"agent": name, "seconds": round(seconds, 2)})
        harness.log("agent %s ready after %.2f s" % (name, seconds))
        return agent

    def setUp(self):
        self.baseline = self.agent.scrape()

    def require_payload(self):
        """Skips the HTTP cases when the flags turned capture off; fails them
        at once when the agent says no socket-data build loaded on this
        kernel (no HTTP series can ever appear, so waiting for them would
        only burn the guest's time)."""
        if not PAYLOAD:
            self.skipTest("the agent runs with --capture-payload false")
        info = self.agent_facts.get("build_info")
        if isinstance(info, dict) and info.get("payload_probes") == "off":
            self.fail('HTTP metrics off on this kernel: podtap_build_info{payload_probes="off"} '
                      "(no build of the socket data programs loaded; see the agent log)")

    # ---- clients and ground truth ---------------------------------------------

    def client_cmd(self, args):
        cmd = (harness._orphan_guard("KILL") + ["ip", "netns", "exec", self.topo.client_ns]
               + args)
        env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=CLIENT_TIMEOUT,
                           stdin=subprocess.DEVNULL, env=env)
        if p.returncode != 0:
            raise RuntimeError("client command failed (rc=%d): %s\nstdout: %s\nstderr: %s"
                               % (p.returncode, " ".join(args), p.stdout[-2000:],
                                  p.stderr[-2000:]))
        return p

    def curl(self, urls, *options):
        """One curl process, all `urls` on one connection; curl's own
        [(status, new connections)] per transfer."""
        p = self.client_cmd([CURL, "-sS", "--noproxy", "*", "--max-time", str(CLIENT_TIMEOUT)]
                            + list(options)
                            + [a for u in urls for a in (u, "-o", "/dev/null",
                                                         "-w", "%{http_code} %{num_connects}\\n")])
        out = [tuple(int(x) for x in l.split()) for l in p.stdout.splitlines() if l.strip()]
        if len(out) != len(urls):
            raise RuntimeError("curl: %d transfers for %d URLs:\n%s" % (len(out), len(urls),
                                                                         p.stdout))
        return out

    def entries(self, since, count, port):
        """nginx's log entries of this case, once nginx holds none of its
        connections on `port` any more."""
        got = self.nginx.entries(since, count, port=port, timeout=CLIENT_TIMEOUT)
        deadline = time.monotonic() + CLIENT_TIMEOUT
        while self.nginx.connections(port) and time.monotonic() < deadline:
            time.sleep(0.1)
        return got

    def http_expects(self, answers, conns, tls="false"):
        """Exact request/response counts per authority and status on both
        sides from the ground truth `answers` [(authority, status, grpc
        status or None)], and the connections they came on."""
        def cls(status, grpc):
            if grpc is not None:
                return "failure" if grpc != 0 else "success"
            return classification(status)

        out = []
        for d in ("inbound", "outbound"):
            base = dict(self.side(d), tls=tls)
            for auth, k in collections.Counter(a for a, _, _ in answers).items():
                out.append(Expect("request_total", dict(base, authority=auth), k))
            for (auth, status, grpc), k in collections.Counter(answers).items():
                lbl = dict(base, authority=auth, status_code=status,
                           classification=cls(status, grpc))
                if grpc is not None:
                    lbl["grpc_status_code"] = str(grpc)
                out.append(Expect("response_total", lbl, k))
            out += [Expect("request_total", self.side(d), len(answers)),
                    Expect("response_total", self.side(d), len(answers)),
                    Expect("tcp_open_total", base, conns),
                    Expect("tcp_close_total", base, conns),
                    Expect("tcp_open_connections", self.side(d), 0, absolute=True)]
        return out + [Expect("podtap_events_lost_total", {}, 0)]

    # ---- the cases ---------------------------------------------------------------

    def test_a_tcp_exact(self):
        plan = [(0, 0, "normal"), (1000, 2500, "normal"), (70000, 30000, "normal")]
        before = len(self.server.events("conn"))
        conns = harness.run_client(self.topo.client_ns, self.topo.SERVER_IP4, TCP_PORT, plan,
                                   seed=11, timeout=CLIENT_TIMEOUT)
        served = self.server.wait_event("conn", timeout=CLIENT_TIMEOUT,
                                        count=before + len(plan))[before:]
        for (send, recv, _), c in zip(plan, conns):
            self.assertEqual((c["written"], c["read"]), (HEADER_LEN + send, recv),
                             "the client's own counts (harness)")
        self.assertEqual(sorted((s["read"], s["written"]) for s in served),
                         sorted((HEADER_LEN + s, r) for s, r, _ in plan),
                         "the server's own counts (harness)")
        written = sum(HEADER_LEN + s for s, _, _ in plan)
        read = sum(r for _, r, _ in plan)
        out = self.labels("client", direction="outbound", peer="dst")
        inb = self.labels("server", direction="inbound", peer="src")
        ex = []
        for lbl, w, r in ((out, written, read), (inb, read, written)):
            ex += [Expect("tcp_open_total", lbl, len(plan)),
                   Expect("tcp_close_total", dict(lbl, classification="success"), len(plan)),
                   Expect("tcp_write_bytes_total", lbl, w),
                   Expect("tcp_read_bytes_total", lbl, r),
                   Expect("tcp_open_connections", lbl, 0, absolute=True)]
        self.wait_equal(ex + [Expect("podtap_events_lost_total", {}, 0)])

    def test_b_http1_nginx(self):
        self.require_payload()
        since = self.nginx.offset()
        url = "http://%s:%d" % (self.topo.SERVER_IP4, HTTP_PORT)
        paths = ["/status/200", "/status/404", "/k10.bin", "/status/503", "/status/200"]
        transfers = self.curl([url + p for p in paths])
        entries = self.entries(since, len(paths), HTTP_PORT)
        self.assertEqual(sorted(e["status"] for e in entries),
                         sorted(str(s) for s, _ in transfers), "nginx's log against curl's")
        self.assertEqual(sum(n for _, n in transfers), 1, "curl: one connection")
        self.wait_equal(self.http_expects([(e["host"], e["status"], None) for e in entries], 1))

    def test_c_http2_h2load(self):
        self.require_payload()
        since = self.nginx.offset()
        url = "http://%s:%d" % (self.topo.SERVER_IP4, H2_PORT)
        n = 12
        p = self.client_cmd([H2LOAD, "-n", str(n), "-c", "1", "-m", "2",
                             "-T", str(int(CLIENT_TIMEOUT)), "-N", str(int(CLIENT_TIMEOUT)),
                             url + "/status/200", url + "/status/404", url + "/k10.bin"])
        self.assertIn("Application protocol: h2c", p.stdout)
        # h2load counts 4xx answers as failed requests: only errors and timeouts matter.
        self.assertRegex(p.stdout, r"requests: %d total, %d started, %d done, \d+ succeeded, "
                         r"\d+ failed, 0 errored, 0 timeout" % (n, n, n))
        entries = self.entries(since, n, H2_PORT)
        self.assertEqual({e["protocol"] for e in entries}, {"HTTP/2.0"})
        self.assertEqual(len({e["conn"] for e in entries}), 1)
        self.wait_equal(self.http_expects([(e["host"], e["status"], None) for e in entries], 1))

    def test_d_grpc(self):
        self.require_payload()
        server = harness.PeerProcess(self.topo.server_ns,
                                     ["server", "--addr", self.topo.SERVER_IP4, "--port",
                                      GRPC_PORT, "--max-seconds", int(CLIENT_TIMEOUT * 3)],
                                     "grpc server", script=GRPC_PEER)
        self.addCleanup(server.stop)
        server.wait_event("listening", timeout=CLIENT_TIMEOUT)
        method = "/podtap.e2e.Echo/Unary"
        plan = ([[method, "code=0;size=100"]] * 3 + [[method, "code=14;size=10"]] * 2
                + [[method, "code=0;size=20000"]])
        fd, path = tempfile.mkstemp(prefix="ptE2e-grpc-plan-", suffix=".json")
        with os.fdopen(fd, "w") as f:
            json.dump(plan, f)
        self.addCleanup(os.unlink, path)
        target = "%s:%d" % (self.topo.SERVER_IP4, GRPC_PORT)
        client = harness.PeerProcess(self.topo.client_ns,
                                     ["client", "--target", target, "--plan", path,
                                      "--timeout", int(CLIENT_TIMEOUT)],
                                     "grpc client", script=GRPC_PEER)
        self.assertEqual(client.wait(CLIENT_TIMEOUT), 0, client.stderr())
        codes = sorted(c["code"] for c in client.events("call"))
        self.assertEqual(codes, [0, 0, 0, 0, 14, 14], "the client's own statuses (harness)")
        handled = server.wait_event("call", timeout=CLIENT_TIMEOUT, count=len(plan))
        self.assertEqual(sorted(c["code"] for c in handled), codes)
        self.wait_equal(self.http_expects([(target, "200", c) for c in codes], 1))

    def test_e_tls_openssl(self):
        self.require_payload()
        since = self.nginx.offset()
        url = "https://%s:%d" % (self.topo.SERVER_IP4, TLS_PORT)
        paths = ["/status/200", "/k10.bin", "/status/503", "/status/404"]
        transfers = self.curl([url + p for p in paths], "-k")
        entries = self.entries(since, len(paths), TLS_PORT)
        self.assertEqual({e["scheme"] for e in entries}, {"https"})
        self.assertEqual(sorted(e["status"] for e in entries),
                         sorted(str(s) for s, _ in transfers), "nginx's log against curl's")
        self.wait_equal(self.http_expects([(e["host"], e["status"], None) for e in entries], 1,
                                          tls="true"))

    def test_f_restart_adoption(self):
        hold = harness.PeerProcess(self.topo.client_ns,
                                   ["hold", "--addr", self.topo.SERVER_IP4, "--port", TCP_PORT,
                                    "--rounds", "4000:6000", "--seed", 21,
                                    "--io-timeout", HOLD_TIMEOUT, "--max-seconds", HOLD_TIMEOUT],
                                   "hold -> %s:%d" % (self.topo.SERVER_IP4, TCP_PORT))
        self.addCleanup(hold.stop)
        ev = hold.wait_event("exchanged", timeout=CLIENT_TIMEOUT)[0]
        self.assertEqual((ev["written"], ev["read"]), (HEADER_LEN + 4000, 6000))
        out = self.labels("client", direction="outbound", peer="dst")
        inb = self.labels("server", direction="inbound", peer="src")
        self.wait_equal([Expect("tcp_open_connections", lbl, 1, absolute=True)
                         for lbl in (out, inb)])
        agent = self.agent
        harness._stop_pid(agent.popen, signal.SIGKILL)
        agent.exit_code = agent.popen.returncode
        type(self).agent = self.agent = self.start_timed_agent("second")
        self.baseline = self.agent.scrape()
        self.wait_equal([Expect("tcp_open_connections", lbl, 1, absolute=True)
                         for lbl in (out, inb)]
                        + [Expect("podtap_connections_adopted_total", {}, 2, absolute=True)])
        self.assertIsNone(hold.popen.poll(), "the held connection must still be open")
        hold.signal(signal.SIGUSR1)  # close after the last round
        self.assertEqual(hold.wait(timeout=CLIENT_TIMEOUT), 0, "hold peer: %s" % hold.records)
        self.wait_equal([Expect("tcp_open_connections", lbl, 0, absolute=True)
                         for lbl in (out, inb)]
                        + [Expect("tcp_close_total", dict(lbl, classification="success"), 1)
                           for lbl in (out, inb)])


class _Result(unittest.TextTestResult):
    """TextTestResult that also keeps the cases that passed, and rewrites
    the JSON result after each case (a run cut short still leaves one)."""

    cases = []

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.passed = []

    def addSuccess(self, test):
        super().addSuccess(test)
        self.passed.append(test)

    def stopTest(self, test):
        super().stopTest(test)
        if os.environ.get("PODTAP_MATRIX_RESULT"):
            write_result(os.environ["PODTAP_MATRIX_RESULT"], self, self.cases)


def write_result(path, result, cases):
    """The JSON result for tests/kernel_matrix/run.py. A case the class set-up
    kept from running (the agent did not start) is "not run"."""
    status = {t.id(): "not run" for t in cases}
    for kind, items in (("pass", [(t, "") for t in result.passed]), ("fail", result.failures),
                        ("error", result.errors), ("skip", result.skipped)):
        for t, _ in items:
            if t.id() in status:
                status[t.id()] = kind
    cases = {k.rsplit(".", 1)[-1]: v for k, v in status.items()}
    with open(path, "w") as f:
        json.dump({"kernel": platform.release(), "agent_args": AGENT_ARGS, "cases": cases,
                   "passed": sum(1 for v in cases.values() if v == "pass"),
                   "failed": sum(1 for v in cases.values() if v not in ("pass", "skip")),
                   "skipped": sum(1 for v in cases.values() if v == "skip"),
                   "agent_starts": KernelSmokeTest.agent_starts,
                   "agent_error": KernelSmokeTest.agent_error,
                   "build_info": KernelSmokeTest.agent_facts.get("build_info", "unknown"),
                   "kernel_features": KernelSmokeTest.agent_facts.get("kernel_features",
                                                                      "unknown"),
                   "programs": KernelSmokeTest.agent_facts.get("programs", {}),
                   "errors": [why[-3000:] for _, why in result.failures + result.errors]},
                  f, indent=2)


def main():
    suite = unittest.defaultTestLoader.loadTestsFromTestCase(KernelSmokeTest)
    cases = _Result.cases = list(suite)
    result = unittest.TextTestRunner(verbosity=2, resultclass=_Result).run(suite)
    if os.environ.get("PODTAP_MATRIX_RESULT"):
        write_result(os.environ["PODTAP_MATRIX_RESULT"], result, cases)
    if result.wasSuccessful():
        shutil.rmtree(ARTIFACTS, ignore_errors=True)
    else:
        harness.log("artifacts (agent logs and last scrapes) kept in %s" % ARTIFACTS)
    return 0 if result.wasSuccessful() else 1


if __name__ == "__main__":
    sys.exit(main())
