#!/usr/bin/python3
"""A real Prometheus server (Debian's /usr/bin/prometheus) scrapes a real
podtap agent while real HTTP traffic with a known failure ratio runs between
the harness' two pods, and the PromQL queries that dashboards and tools run
against Linkerd's metrics must return the right numbers:

  success rate  sum(rate(response_total{namespace="shop",deployment=~"api",
                classification!="failure",direction="inbound"}[30s]))
                / sum(rate(response_total{...,direction="inbound"}[30s])) * 100
  p99 latency   histogram_quantile(0.99, sum(rate(
                response_latency_ms_bucket{...,direction="inbound"}[30s])) by (le))

Prometheus 2.42 negotiates OpenMetrics and gzip by default, so its ingesting
the agent's scrapes is the OpenMetrics check; the text format of the same
agent, with the traffic in it, goes through promtool.

Why the success rate can be asserted exactly. The server pod answers every
4th request with a 500 (a counter in the server), the client sends requests
one at a time, so every complete group of 4 is 3 successes and 1 failure. A
warm-up group creates both response_total series before the query's window;
the window starts once Prometheus holds the warm-up's complete values and
ends after all traffic was scraped. Then, inside the window, both series are
sampled at the same timestamps (one target, one scrape), their increases are
3k and k, and rate()'s extrapolation, which scales each series' increase by a
factor that depends only on the sample timestamps and on first value /
increase (the same 3:1 for both), is the same for both series: the ratio is
exactly 75% up to floating-point rounding (asserted to 1e-9).

The p99: the server sleeps 120 ms before answering, so every latency falls in
Linkerd's (100, 200] bucket and histogram_quantile() interpolates within it.

Network: loopback (agent, Prometheus) and the harness' namespaces only. Every
process is started and stopped by PID. Runtime about 45 s.

Run as root: tests/e2e/run.sh test_prometheus.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.parse
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

PROMETHEUS = "/usr/bin/prometheus"
HTTP_PORT = 18090
DELAY_S = 0.12  # the server's think time: latencies land in (100, 200] ms
FAIL_EVERY = 4  # every 4th response is a 500
GROUPS = 25  # traffic: 25 groups of 4 requests after the warm-up group
WINDOW_S = 30
SELECTOR = 'namespace="shop",deployment=~"api",direction="inbound"'
SUCCESS_RATE = ('sum(rate(response_total{namespace="shop",deployment=~"api",'
                'classification!="failure",direction="inbound"}[30s])) / '
                'sum(rate(response_total{%s}[30s])) * 100' % SELECTOR)
P99 = ('histogram_quantile(0.99, sum(rate(response_latency_ms_bucket{%s}[30s])) by (le))'
       % SELECTOR)

SERVER = r'''
import http.server, sys, time
count = 0
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        global count
        count += 1
        time.sleep(%(delay)r)
        body = b"ok\n"
        self.send_response(500 if count %% %(every)d == 0 else 200)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)
        self.close_connection = True
    def log_message(self, *args):
        pass
s = http.server.HTTPServer((sys.argv[1], int(sys.argv[2])), H)
print("ready", flush=True)
s.serve_forever()
''' % {"delay": DELAY_S, "every": FAIL_EVERY}

CLIENT = r'''
import http.client, json, sys
statuses = []
for _ in range(int(sys.argv[3])):
    c = http.client.HTTPConnection(sys.argv[1], int(sys.argv[2]), timeout=10)
    c.request("GET", "/", headers={"Host": "api.shop.svc.cluster.local"})
    r = c.getresponse()
    r.read()
    statuses.append(r.status)
    c.close()
print(json.dumps(statuses))
'''

_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class Prometheus:
    """prometheus with its own config (one scrape job, podtap) and a temporary
    storage folder, listening on a free loopback port, stopped by PID."""

    def __init__(self, workdir, target, metric_relabel=None):
        """`metric_relabel`: the job's metric_relabel_configs (a list of
        dicts, written as JSON, which YAML reads)."""
        self.dir = workdir
        self.port = harness.free_port()
        self.config = os.path.join(workdir, "prometheus.yml")
        with open(self.config, "w") as f:
            f.write("global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
                    "  evaluation_interval: 1s\n"
                    "scrape_configs:\n  - job_name: podtap\n"
                    "    static_configs:\n      - targets: ['%s']\n" % target)
            if metric_relabel:
                f.write("    metric_relabel_configs: %s\n" % json.dumps(metric_relabel))
        self.log_path = os.path.join(workdir, "prometheus.log")
        self.popen = None

    def start(self):
        cmd = (harness._orphan_guard("TERM")
               + [PROMETHEUS, "--config.file=" + self.config,
                  "--storage.tsdb.path=" + os.path.join(self.dir, "data"),
                  "--web.listen-address=127.0.0.1:%d" % self.port])
        harness.log("starting prometheus: %s" % " ".join(cmd))
        self._log = open(self.log_path, "w")
        self.popen = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT,
                                      stdin=subprocess.DEVNULL, cwd=self.dir)
        harness._live_procs[self.popen.pid] = self.popen
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.popen.poll() is not None:
                raise RuntimeError("prometheus exited with %s\n%s"
                                   % (self.popen.returncode, self.log_tail()))
            try:
                with _NO_PROXY.open("http://127.0.0.1:%d/-/ready" % self.port, timeout=2) as r:
                    if r.status == 200:
                        return self
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError("prometheus not ready within 30s\n%s" % self.log_tail())

    def api(self, path, **params):
        url = "http://127.0.0.1:%d%s?%s" % (self.port, path, urllib.parse.urlencode(params))
        with _NO_PROXY.open(url, timeout=10) as r:
            doc = json.load(r)
        if doc.get("status") != "success":
            raise AssertionError("%s: %s" % (url, doc))
        return doc["data"]

    def query(self, expr, at=None):
        """The single value of an instant query; None when the result is empty."""
        params = {"query": expr}
        if at is not None:
            params["time"] = "%.3f" % at
        result = self.api("/api/v1/query", **params)["result"]
        if not result:
            return None
        if len(result) != 1:
            raise AssertionError("%s: %d series: %s" % (expr, len(result), result))
        return float(result[0]["value"][1])

    def wait_value(self, expr, want, timeout=20):
        deadline = time.monotonic() + timeout
        got = None
        while time.monotonic() < deadline:
            got = self.query(expr)
            if got == want:
                return
            time.sleep(0.25)
        raise AssertionError("%s: %r after %ds, want %r\n%s"
                             % (expr, got, timeout, want, self.log_tail()))

    def stop(self):
        if self.popen is None:
            return None
        rc = harness._stop_pid(self.popen)
        self._log.close()
        return rc

    def log_tail(self, lines=20):
        try:
            with open(self.log_path, errors="replace") as f:
                text = f.read().splitlines()
        except OSError:
            return ""
        return "---- prometheus log ----\n%s" % "\n".join(text[-lines:])


class PrometheusTest(unittest.TestCase):
    def setUp(self):
        if os.geteuid() != 0:
            raise unittest.SkipTest("needs root (network namespaces, eBPF)")
        if not os.access(PROMETHEUS, os.X_OK):
            raise RuntimeError("missing %s: install the Debian package prometheus (make deps)"
                               % PROMETHEUS)
        harness.cleanup_stale_namespaces()
        self.workdir = tempfile.mkdtemp(prefix="ptE2e-prometheus-")
        self.passed = False
        self.topo = harness.Topology()
        self.addCleanup(self.topo.destroy)
        self.topo.create()
        client, server = harness.make_pods(self.topo)
        self.agent = harness.Agent(self.workdir, [client, server], log_level="info")
        self.addCleanup(self._stop_agent)
        self.agent.start()
        self.agent.wait_ready()
        self.server = subprocess.Popen(
            harness._orphan_guard("KILL")
            + ["ip", "netns", "exec", self.topo.server_ns, harness.PY, "-c", SERVER,
               self.topo.SERVER_IP4, str(HTTP_PORT)],
            stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
        harness._live_procs[self.server.pid] = self.server
        self.addCleanup(self._stop_server)
        self.assertEqual(self.server.stdout.readline().strip(), "ready")
        self.prom = Prometheus(self.workdir, "127.0.0.1:%d" % self.agent.port)
        self.addCleanup(self.prom.stop)
        self.prom.start()
        self.prom.wait_value('up{job="podtap"}', 1.0)

    def _stop_agent(self):
        rc = self.agent.stop()
        if rc != 0:
            harness.log("agent exited with %s\n%s" % (rc, self.agent.log_tail()))
        if self.passed:
            shutil.rmtree(self.workdir, ignore_errors=True)
        else:
            harness.log("artifacts (agent and prometheus logs) kept in %s" % self.workdir)

    def _stop_server(self):
        harness._stop_pid(self.server)
        self.server.stdout.close()

    def requests(self, n):
        p = harness.sh(["ip", "netns", "exec", self.topo.client_ns, harness.PY, "-c", CLIENT,
                        self.topo.SERVER_IP4, str(HTTP_PORT), str(n)], timeout=120)
        return json.loads(p.stdout)

    def test_success_rate_and_p99(self):
        total = 'sum(response_total{%s})' % SELECTOR
        # Warm-up: one group creates both series (3 successes, 1 failure).
        self.assertEqual(self.requests(FAIL_EVERY), [200, 200, 200, 500])
        self.prom.wait_value(total, float(FAIL_EVERY))
        window_start = time.time()  # Prometheus holds the warm-up's full values
        time.sleep(2.5)  # at least two scrapes with them inside the window
        statuses = self.requests(GROUPS * FAIL_EVERY)
        self.assertEqual(statuses.count(500), GROUPS)
        at = window_start + WINDOW_S
        self.prom.wait_value(total, float((GROUPS + 1) * FAIL_EVERY))
        self.assertLess(time.time() + 1.5, at, "traffic took too long for the 30s window")
        time.sleep(at + 1.5 - time.time())  # the sample at `at` is in

        self.assertEqual(self.prom.query(total, at), float((GROUPS + 1) * FAIL_EVERY))
        rate = self.prom.query(SUCCESS_RATE, at)
        harness.log("success rate %r, p99 %r" % (rate, self.prom.query(P99, at)))
        self.assertAlmostEqual(rate, 100.0 * (FAIL_EVERY - 1) / FAIL_EVERY, delta=1e-9)
        p99 = self.prom.query(P99, at)
        self.assertGreater(p99, 100)
        self.assertLessEqual(p99, 200)

        # Prometheus scraped OpenMetrics: the unit only that format carries
        # is in its metadata, and the scrape is healthy.
        meta = self.prom.api("/api/v1/metadata", metric="tcp_read_bytes")
        self.assertEqual([m.get("unit") for m in meta.get("tcp_read_bytes", [])], ["bytes"], meta)
        targets = self.prom.api("/api/v1/targets")["activeTargets"]
        self.assertEqual([(t["health"], t["lastError"]) for t in targets], [("up", "")])

        # The text format with this traffic in it parses for promtool.
        ok, report = harness.promtool_check(self.agent.scrape_text())
        self.assertTrue(ok, report)
        self.passed = True


if __name__ == "__main__":
    unittest.main(verbosity=2)
