#!/usr/bin/python3
"""Real-kernel end-to-end tests of the agent's lifecycle signals.

SIGTERM in the middle of HTTP traffic between two pods: the agent exits with
code 0 within 2 s, and none of the programs it had attached is left in the
kernel (the program ids it held, looked up with bpftool, are gone, and no BPF
link refers to them).

SIGHUP re-reads --config: requests after a reload carry the new routes'
rt_route, the counts taken under the old routes stay as they were, and a
broken file keeps the old routes and counts
podtap_config_reloads_total{result="error"}.

Traffic is curl in the client pod against nginx in the server pod; nginx
answers every path with 200 and logs nothing (its requests are counted by
curl's own -w). Run as root, holding the shared e2e lock:
flock /tmp/podtap-e2e.lock tests/e2e/run.sh test_lifecycle
"""

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import Expect  # noqa: E402
from nginx import NGINX, Nginx, nginx_conf  # noqa: E402

CURL = "/usr/bin/curl"
BPFTOOL = "/usr/sbin/bpftool"
HTTP_PORT = 8080
EXIT_LIMIT = 2.0  # seconds from SIGTERM to the agent's exit
ARTIFACTS = (os.environ.get("PODTAP_E2E_ARTIFACTS")
             or tempfile.mkdtemp(prefix="ptE2e-lifecycle-artifacts-"))

NGINX_CONF = nginx_conf(r"""
    access_log off;
    keepalive_requests 100000;
    server {
        listen %(ip4)s:%(port)d;
        location / { return 200 "ok\n"; }
    }
""")


def routes(name):
    return {"routes": [{"name": name, "method": "GET", "path_regex": "/items/[0-9]+"}]}


def tearDownModule():
    try:
        os.rmdir(ARTIFACTS)
    except OSError:
        harness.log("artifacts kept in %s" % ARTIFACTS)


class LifecycleTest(harness.PodPairTest):
    ARTIFACTS = ARTIFACTS

    @classmethod
    def setUpClass(cls):
        missing = [t for t in (NGINX, CURL, BPFTOOL) if not os.access(t, os.X_OK)]
        if missing:
            raise RuntimeError("missing %s: install nginx, curl and bpftool (make deps)"
                               % ", ".join(missing))
        super().setUpClass()
        cls.nginx = Nginx(cls.topo.server_ns, NGINX_CONF,
                          {"ip4": cls.topo.SERVER_IP4, "port": HTTP_PORT}, {},
                          ports=(HTTP_PORT,), listeners=1, prefix="ptE2e-lifecycle-nginx-")
        cls.addClassCleanup(cls.nginx.remove, ARTIFACTS)
        cls.nginx.start()

    def start_config_agent(self, config):
        workdir = os.path.join(ARTIFACTS, self.id().rsplit(".", 1)[-1])
        os.makedirs(workdir, exist_ok=True)
        self.config_path = os.path.join(workdir, "config.json")
        self.write_config(config)
        return harness.start_test_agent(self, workdir, [self.client_pod, self.server_pod],
                                        extra_args=["--config", self.config_path])

    def write_config(self, config):
        # Written whole and renamed, so the agent never reads half a file.
        tmp = self.config_path + ".tmp"
        with open(tmp, "w") as f:
            f.write(config if isinstance(config, str) else json.dumps(config))
        os.rename(tmp, self.config_path)

    def curl_cmd(self, paths):
        args = []
        for p in paths:  # curl's -o applies to one URL
            args += ["-o", "/dev/null", "http://%s:%d%s" % (self.topo.SERVER_IP4, HTTP_PORT, p)]
        return (harness._orphan_guard("KILL")
                + ["ip", "netns", "exec", self.topo.client_ns, CURL, "-sS",
                   "-w", "%{http_code}\n"] + args)

    def get(self, paths):
        """GETs `paths` on one connection; every answer must be a 200."""
        p = subprocess.run(self.curl_cmd(paths), capture_output=True, text=True, timeout=60,
                           stdin=subprocess.DEVNULL)
        codes = p.stdout.split()
        if p.returncode != 0 or codes != ["200"] * len(paths):
            raise RuntimeError("curl failed (rc=%d, codes %s): %s"
                               % (p.returncode, codes, p.stderr[-500:]))

    def route_expects(self, counts):
        """Inbound route_request_total on the server pod, per rt_route."""
        dst = "%s:%d" % (self.topo.SERVER_IP4, HTTP_PORT)
        return [Expect("route_request_total",
                       self.labels("server", direction="inbound", dst=dst, rt_route=name), n)
                for name, n in counts.items()]

    @staticmethod
    def held_in_kernel(prog_ids):
        """([ids with a BPF link], [ids still loaded]) among `prog_ids`."""
        progs = json.loads(harness.sh([BPFTOOL, "-j", "prog", "show"]).stdout)
        links = json.loads(harness.sh([BPFTOOL, "-j", "link", "show"]).stdout)
        linked = sorted(str(l.get("prog_id")) for l in links if str(l.get("prog_id")) in prog_ids)
        left = sorted(str(p["id"]) for p in progs if str(p["id"]) in prog_ids)
        return linked, left

    def reload(self, result, count):
        self.agent.popen.send_signal(signal.SIGHUP)
        self.wait_equal([Expect("podtap_config_reloads_total", {"result": result}, count)])

    def test_a_sigterm_during_traffic_exits_fast_and_detaches(self):
        agent = self.start_agent()
        held = {p["prog_id"] for p in agent.attached_programs()}
        self.assertGreater(len(held), 1, "the agent attached no programs: %s"
                           % agent.attached_programs())
        # One keep-alive connection, requests back to back (curl's URL globbing).
        traffic = subprocess.Popen(self.curl_cmd(["/items/[1-20000]"]),
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                   stdin=subprocess.DEVNULL)
        harness._live_procs[traffic.pid] = traffic
        try:
            # Traffic flows and is being counted when the signal comes.
            deadline = time.monotonic() + 15
            while agent.scrape().sum("request_total", {"direction": "inbound"}) < 50:
                self.assertLess(time.monotonic(), deadline, "no HTTP traffic counted")
                time.sleep(0.1)
            self.assertIsNone(traffic.poll(), "the traffic ended before the signal")
            rc = agent.stop()
        finally:
            harness._stop_pid(traffic)
        log = agent.log_text()
        self.assertEqual(rc, 0, "exit code after SIGTERM\n%s" % agent.log_tail())
        self.assertLess(agent.stop_seconds, EXIT_LIMIT,
                        "SIGTERM to exit took %.2fs\n%s" % (agent.stop_seconds, agent.log_tail()))
        self.assertIn("kernel programs detached", log)
        # The kernel frees a program after an RCU grace period once its last
        # reference is gone: allow it a moment, boundedly.
        deadline = time.monotonic() + 3
        while True:
            linked, left = self.held_in_kernel(held)
            if (not linked and not left) or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        self.assertEqual(linked, [], "programs still attached after exit")
        self.assertEqual(left, [], "programs still loaded after exit")
        harness.log("SIGTERM during traffic: exit code 0 after %.3fs, %d programs detached"
                    % (agent.stop_seconds, len(held)))

    def test_b_sighup_reloads_routes_and_keeps_counts(self):
        self.start_config_agent(routes("items-v1"))
        self.get(["/items/1", "/items/2", "/items/3"])
        self.wait_equal(self.route_expects({"items-v1": 3}))

        self.write_config(routes("items-v2"))
        self.reload("ok", 1)
        self.get(["/items/4", "/items/5"])
        self.wait_equal(self.route_expects({"items-v1": 3, "items-v2": 2})
                        + [Expect("podtap_config_reloads_total", {"result": "error"}, 0)])

        # A broken file: the routes stay, the failure is counted and logged.
        self.write_config('{"routes": [{"name": "broken", "path_regex": ')
        self.reload("error", 1)
        self.get(["/items/6"])
        self.wait_equal(self.route_expects({"items-v1": 3, "items-v2": 3})
                        + [Expect("podtap_config_reloads_total", {"result": "ok"}, 1)])
        self.assertIn("keeping the previous routes", self.agent.log_text())
        self.assertEqual(self.agent.scrape().select("route_request_total",
                                                    {"rt_route": "broken"}), [])


if __name__ == "__main__":
    unittest.main()
