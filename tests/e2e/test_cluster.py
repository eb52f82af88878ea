#!/usr/bin/python3
"""Real-kernel end-to-end tests of podtap asking several agents at once.

Two agents run on this kernel at the same time, each given one pod as "its
node's" (a pods file with the client pod for one, the server pod for the
other), each serving its query service over TCP with TLS (one certificate
naming podtap-agent, as a DaemonSet's agents would share) and a bearer token;
`podtap --agent A --agent B` asks both and merges. sleepy_http.py in the
server pod answers the client pod's requests after delays the test chooses
and measures, so the ground truth is exact: the request count and every
request's latency bucket.

- test_a: each agent attributes only its own pod (both see every socket of
  the kernel); the merged stat, top and edges hold exactly the rows the two
  agents give one by one, with the sleepy server's counts; the merged
  percentiles lie in the bucket of the request of their rank; the answer says
  both agents answered.
- test_b: one agent frozen (SIGSTOP) mid-query costs the --timeout and no
  more, is named in the answer, and the other's rows are exact; an agent gone
  (stopped) is named at once; no agent answering is an error naming both.
- test_c: `tap` follows both agents at once: exactly the requests, each as
  the client's node saw it go out and as the server's saw it come in.
- test_d: `--kube` finds the agents through the Kubernetes API (the replay
  server of tests/e2e/kube_replay.py listing podtap's DaemonSet pods on
  node-a, node-b and a Pending one on node-c, and pods that are not
  podtap's): both running agents answer and are named by node, the Pending
  one is named with why, and `--node node-b` asks node-b's agent only.
- test_f: podtap-relay in front of both agents, finding them through the
  replay API: its merged stat is the sum of the agents' exact answers, p99
  from the merged buckets in the bucket of the request of its rank, top and
  edges what merging the agents directly gives, the Pending agent named,
  `--node` one node only; `kubectl-podtap` reaches the relay through a
  stand-in kubectl port-forward and stops it by PID, and says what a
  forbidden kubectl said.
- test_g: through the relay, an agent frozen costs the caller's --timeout
  and is named, the rest exact; an agent gone is named; none answering is an
  error naming both.
- test_h: tap through the relay is the union of both agents' requests; a
  pod's tap stays attached only on its node; --max-rps holds over both
  agents together; a caller killed mid-tap leaves no tap open on an agent.
- test_e: `conns` across both nodes: a long-lived connection of peer.py is
  listed from both ends, each by its node's agent, with exactly its bytes;
  `--limit` cuts the merged list and says how many more match.

Run as root: tests/e2e/run.sh test_cluster. PODTAP_AGENT and PODTAP_CLI
override the binaries.
"""

import collections
import json
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
import kube_replay  # noqa: E402
from query_util import bucket_bounds, latency_bucket, numbers, printed_ms  # noqa: E402

CLI = os.environ.get("PODTAP_CLI", os.path.join(harness.REPO, "build", "podtap"))
RELAY = os.environ.get("PODTAP_RELAY", os.path.join(harness.REPO, "build", "podtap-relay"))
# The CLI under the name kubectl runs it by (a symlink the build makes).
PLUGIN = os.path.join(os.path.dirname(CLI), "kubectl-podtap")
CURL = "/usr/bin/curl"
OPENSSL = "/usr/bin/openssl"
CLI_TIMEOUT = 30  # bound on one CLI run
SLEEPY = os.path.join(os.path.dirname(os.path.abspath(__file__)), "sleepy_http.py")
SLEEPY_PORT = 8081
RAW_PORT = 18091  # peer.py, for the long-lived connection

ARTIFACTS = (os.environ.get("PODTAP_E2E_ARTIFACTS")
             or tempfile.mkdtemp(prefix="ptE2e-cluster-artifacts-"))


def tearDownModule():
    try:
        os.rmdir(ARTIFACTS)
    except OSError:
        harness.log("artifacts kept in %s" % ARTIFACTS)


def run_cli(cmd, args, check, timeout):
    """The CLI `cmd` with `args` (and --timeout when given), bounded by
    CLI_TIMEOUT; raises on a non-zero exit when `check`."""
    if timeout is not None:
        cmd = cmd + ["--timeout", str(timeout)]
    p = subprocess.run(cmd + list(args), capture_output=True, text=True,
                       timeout=CLI_TIMEOUT, stdin=subprocess.DEVNULL)
    if check and p.returncode != 0:
        raise AssertionError("podtap %s failed (rc=%d)\nstdout: %s\nstderr: %s"
                             % (" ".join(cmd + list(args)), p.returncode, p.stdout, p.stderr))
    return p


class ClusterTest(harness.PodPairTest):
    ARTIFACTS = ARTIFACTS

    @classmethod
    def setUpClass(cls):
        missing = [t for t in (CURL, OPENSSL, CLI, RELAY, PLUGIN) if not os.access(t, os.X_OK)]
        if missing:
            raise RuntimeError("missing %s (make deps; make build)" % ", ".join(missing))
        super().setUpClass()
        cls.tls = tempfile.mkdtemp(prefix="ptE2e-cluster-tls-")
        cls.addClassCleanup(shutil.rmtree, cls.tls, True)
        cls.cert, cls.key, cls.token = (os.path.join(cls.tls, n)
                                        for n in ("cert.pem", "key.pem", "token"))
        harness.sh([OPENSSL, "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1",
                    "-subj", "/CN=podtap-agent", "-addext", "subjectAltName=DNS:podtap-agent",
                    "-keyout", cls.key, "-out", cls.cert])
        with open(cls.token, "w") as f:
            f.write(secrets.token_hex(16) + "\n")
        cls.sleepy = "%s:%d" % (cls.topo.SERVER_IP4, SLEEPY_PORT)

    def start_node_agent(self, name, pod):
        """An agent for "node" `name` knowing only `pod`; returns (agent, addr)."""
        port = harness.free_port()
        agent = harness.start_test_agent(
            self, os.path.join(self.ARTIFACTS, self.id().rsplit(".", 1)[-1], name), [pod],
            diag_interval=1, extra_args=["--query-listen", "127.0.0.1:%d" % port, "--query-tls-cert", self.cert,
                        "--query-tls-key", self.key, "--query-token-file", self.token])
        return agent, "127.0.0.1:%d" % port

    def setUp(self):
        # The agents' folders go in the case's own, removed after them when
        # they leave nothing (a failed case keeps its agents' logs).
        case = os.path.join(self.ARTIFACTS, self.id().rsplit(".", 1)[-1])
        os.makedirs(case, exist_ok=True)
        self.addCleanup(lambda: os.listdir(case) or os.rmdir(case))
        self.node_a, self.addr_a = self.start_node_agent("node-a", self.client_pod)
        self.node_b, self.addr_b = self.start_node_agent("node-b", self.server_pod)
        self.server = harness.PeerProcess(self.topo.server_ns,
                                          [self.topo.SERVER_IP4, SLEEPY_PORT], "sleepy_http",
                                          script=SLEEPY)
        self.addCleanup(self.server.stop)
        self.server.wait_event("listening", 10)

    def podtap(self, agents, *args, check=True, timeout=None):
        """The CLI with TLS to the agents, --agent for each of `agents`."""
        cmd = [CLI, "--ca", self.cert, "--token-file", self.token, "--tls-server-name",
               "podtap-agent"]
        for a in agents:
            cmd += ["--agent", a]
        return run_cli(cmd, args, check, timeout)

    def start_relay(self, *args, timeout=10):
        """podtap-relay with the agents' CA and token, `args` saying where the
        agents are; returns its address once it serves."""
        port = harness.free_port()
        logdir = tempfile.mkdtemp(prefix="ptE2e-cluster-relay-")
        self.addCleanup(shutil.rmtree, logdir, True)
        log_path = os.path.join(logdir, "relay.log")
        with open(log_path, "w") as log:
            relay = subprocess.Popen(
                harness._orphan_guard("TERM")
                + [RELAY, "--listen", "127.0.0.1:%d" % port, "--ca", self.cert, "--token-file",
                   self.token, "--timeout", str(timeout)] + list(args),
                stdout=subprocess.DEVNULL, stderr=log, stdin=subprocess.DEVNULL)
        harness._live_procs[relay.pid] = relay

        def stop():
            rc = harness._stop_pid(relay)
            harness._live_procs.pop(relay.pid, None)
            with open(log_path) as f:
                text = f.read()
            if harness.has_failed(self):
                harness.log("podtap-relay's log:\n" + text)
            self.assertEqual(rc, 0, text)
            self.assertIn("podtap-relay: signal 15, stopping", text)
        self.addCleanup(stop)
        deadline = time.monotonic() + 10
        while True:
            with open(log_path) as f:
                text = f.read()
            if "podtap-relay: serving on 127.0.0.1:%d" % port in text:
                return "127.0.0.1:%d" % port
            if relay.poll() is not None or time.monotonic() > deadline:
                raise AssertionError("podtap-relay did not start: " + text)
            time.sleep(0.05)

    def via_relay(self, relay, *args, check=True, timeout=None, cli=CLI):
        """The CLI asking podtap-relay at `relay`."""
        cmd = [cli, "--relay", relay]
        return run_cli(cmd, args, check, timeout)

    def relay_json(self, relay, *args, **kwargs):
        return numbers(json.loads(self.via_relay(relay, "-o", "json", *args, **kwargs).stdout))

    def json(self, agents, *args, **kwargs):
        return numbers(json.loads(self.podtap(agents, "-o", "json", *args, **kwargs).stdout))

    def requests(self, exact_buckets=True):
        """Requests from the client pod to the sleepy server with chosen
        latencies (as test_query's case h); returns the server's records.
        `exact_buckets`: each latency must be clear of its bucket's end, so
        the bucket the agent puts it in is known."""
        def sleep_us(ms):
            return (bucket_bounds(latency_bucket(ms * 1_000_000))[0] + 200_000) // 1000
        plan = {"/sleep/%d" % sleep_us(150): 6, "/sleep/%d" % sleep_us(300): 3,
                "/sleep/%d" % sleep_us(1200): 1}
        paths = [p for p, n in plan.items() for _ in range(n)]
        random.Random(9).shuffle(paths)
        # A case may make requests more than once: these are the ones after.
        already = len([r for r in self.server.records if r.get("event") == "served"])
        args = [CURL, "-sS", "--max-time", "20", "-w", "%{http_code}\\n"]
        for p in paths:
            args += ["http://%s%s" % (self.sleepy, p), "-o", "/dev/null"]
        out = subprocess.run(harness._orphan_guard("KILL")
                             + ["ip", "netns", "exec", self.topo.client_ns] + args,
                             capture_output=True, text=True, timeout=60,
                             stdin=subprocess.DEVNULL)
        if out.stdout.split() != ["200"] * len(paths):
            raise RuntimeError("curl failed: %s %s" % (out.stdout, out.stderr))
        served = self.server.wait_event("served", 10, count=already + len(paths))[already:]
        for r in served if exact_buckets else ():
            if r["ns"] + 500_000 >= bucket_bounds(latency_bucket(r["ns"]))[1]:
                raise RuntimeError("ground truth ambiguous: %s took %d ns, near its bucket's "
                                   "end" % (r["path"], r["ns"]))
        return served

    def wait_rows(self, agents, n):
        """Stat -n shop of `agents` once every row has its n requests."""
        deadline = time.monotonic() + 15
        while True:
            got = self.json(agents, "stat", "-n", "shop")
            rows = got.get("rows", [])
            if rows and all(r["requests"] >= n for r in rows):
                return got
            if time.monotonic() > deadline:
                raise AssertionError("stat of %s never reached %d requests: %s"
                                     % (agents, n, json.dumps(got)[:3000]))
            time.sleep(0.25)

    def row_key(self, row):
        r = row["resource"]
        return (r["pod"], row["direction"])

    # ---- the cases -------------------------------------------------------------

    def test_a_merged_answers_equal_the_agents_answers(self):
        served = self.requests()
        n = len(served)
        api, web = self.S["pod"], self.C["pod"]
        a = self.wait_rows([self.addr_a], n)
        b = self.wait_rows([self.addr_b], n)
        time.sleep(harness.PodPairTest.SETTLE)
        a = self.json([self.addr_a], "stat", "-n", "shop")
        b = self.json([self.addr_b], "stat", "-n", "shop")
        # Each agent sees every socket of the kernel but names only its pod.
        self.assertEqual([(self.row_key(r), r["requests"]) for r in a["rows"]],
                         [((web, "OUTBOUND"), n)])
        self.assertEqual([(self.row_key(r), r["requests"]) for r in b["rows"]],
                         [((api, "INBOUND"), n)])
        both = [self.addr_a, self.addr_b]
        m = self.json(both, "stat", "-n", "shop")
        self.assertEqual(m["coverage"]["asked"], 2)
        self.assertEqual(m["coverage"]["answered"], both)
        self.assertEqual(m["coverage"].get("unanswered", []), [])
        fields = ("requests", "successes", "read_bytes", "write_bytes", "latency")
        want = {self.row_key(r): {f: r[f] for f in fields} for r in a["rows"] + b["rows"]}
        self.assertEqual({self.row_key(r): {f: r[f] for f in fields} for r in m["rows"]}, want)
        # Percentiles of the merged buckets: the server's side is the sleepy
        # server's own measurement, bucket for bucket.
        inbound = [r for r in m["rows"] if self.row_key(r) == (api, "INBOUND")][0]
        durations = sorted(r["ns"] for r in served)
        self.assertEqual(dict(zip(inbound["latency"]["bucket"],
                                  map(int, inbound["latency"]["count"]))),
                         dict(collections.Counter(latency_bucket(d) for d in durations)))
        p99 = bucket_bounds(latency_bucket(durations[-1]))  # rank ceil(0.99 * 10) = 10
        self.assertTrue(p99[0] / 1e6 <= inbound["latency_p99_ms"] < p99[1] / 1e6)
        p = self.podtap(both, "stat", "-n", "shop")
        harness.log("podtap --agent A --agent B stat -n shop:\n" + p.stdout + p.stderr)
        self.assertEqual(p.stderr, "podtap: answers from 2 of 2 agents\n")
        lines = [l.split() for l in p.stdout.splitlines()]
        row = [l for l in lines if l[0] == "shop/" + api][0]
        self.assertTrue(p99[0] / 1e6 <= printed_ms(row[lines[0].index("P99")]) < p99[1] / 1e6)

        # Top: the union of the two agents' paths, each with its count.
        top = self.json(both, "top", "-n", "shop")["rows"]
        per_path = collections.Counter(r["path"] for r in served)
        self.assertEqual(sorted((r["direction"], r["key"], r["requests"]) for r in top),
                         sorted([("INBOUND", k, v) for k, v in per_path.items()]
                                + [("OUTBOUND", k, v) for k, v in per_path.items()]))

    def frozen_then_gone(self, ask, ask_json, how):
        """An agent frozen mid-query costs the caller's --timeout and no
        more, is named, and the other's rows are exact; an agent gone is
        named at once; none answering is an error naming both. `ask` and
        `ask_json` run the CLI (`how` says which way, for the log)."""
        served = self.requests()
        n = len(served)
        api = self.S["pod"]
        self.wait_rows([self.addr_a], n)
        self.wait_rows([self.addr_b], n)
        os.kill(self.node_a.popen.pid, signal.SIGSTOP)
        try:
            start = time.monotonic()
            p = ask("stat", "-n", "shop", timeout=2)
            took = time.monotonic() - start
            m = ask_json("stat", "-n", "shop", timeout=2)
        finally:
            os.kill(self.node_a.popen.pid, signal.SIGCONT)
        harness.log("%s with node-a frozen (%.1fs):\n%s%s" % (how, took, p.stdout, p.stderr))
        self.assertLess(took, 2 + 1.5)
        self.assertIn("podtap: answers from 1 of 2 agents; NO ANSWER from %s: cannot reach the "
                      "agent at %s: Deadline Exceeded" % (self.addr_a, self.addr_a), p.stderr)
        self.assertEqual(m["coverage"]["answered"], [self.addr_b])
        self.assertEqual([u["agent"] for u in m["coverage"]["unanswered"]], [self.addr_a])
        self.assertEqual([(self.row_key(r), r["requests"]) for r in m["rows"]],
                         [((api, "INBOUND"), n)])

        # Gone: its port refuses at once.
        self.node_a.stop()
        start = time.monotonic()
        m = ask_json("stat", "-n", "shop", timeout=5)
        self.assertLess(time.monotonic() - start, 5)
        self.assertEqual([u["agent"] for u in m["coverage"]["unanswered"]], [self.addr_a])
        self.assertEqual([(self.row_key(r), r["requests"]) for r in m["rows"]],
                         [((api, "INBOUND"), n)])
        self.node_b.stop()
        p = ask("stat", check=False, timeout=2)
        self.assertEqual(p.returncode, 1)
        self.assertIn("podtap: none of the 2 agents answered:\n  %s: cannot reach the agent at %s"
                      % (self.addr_a, self.addr_a), p.stderr)
        self.assertIn("\n  %s: cannot reach the agent at %s" % (self.addr_b, self.addr_b),
                      p.stderr)

    def test_b_an_agent_frozen_or_gone_is_named_and_the_rest_is_exact(self):
        both = [self.addr_a, self.addr_b]
        self.frozen_then_gone(lambda *a, **k: self.podtap(both, *a, **k),
                              lambda *a, **k: self.json(both, *a, **k), "the CLI")

    def test_c_tap_follows_every_agent(self):
        n = 10  # requests() makes ten
        cmd = [CLI, "--ca", self.cert, "--token-file", self.token, "--tls-server-name",
               "podtap-agent", "--agent", self.addr_a, "--agent", self.addr_b, "tap", "-n", "shop", "--count", str(2 * n),
               "--duration", "40"]
        tap = subprocess.Popen(harness._orphan_guard("TERM") + cmd, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
        harness._live_procs[tap.pid] = tap
        self.addCleanup(harness._stop_pid, tap)
        self.assertEqual(tap.stderr.readline(), "podtap: tap attached to 2 of 2 agents\n")
        served = self.requests(exact_buckets=False)
        self.assertEqual(len(served), n)
        out, err = tap.communicate(timeout=45)
        harness._live_procs.pop(tap.pid, None)
        harness.log("podtap --agent A --agent B tap -n shop:\n" + out + err)
        self.assertEqual(tap.returncode, 0, err)
        # node-a saw its pod's requests go out, node-b its pod's come in.
        got = collections.Counter((l.split()[1], l.split()[6].split("/", 1)[1])
                                  for l in out.splitlines())
        want = collections.Counter()
        for r in served:
            want[("outbound", r["path"][1:])] += 1
            want[("inbound", r["path"][1:])] += 1
        self.assertEqual(got, want)
        self.assertEqual(err, "")

    def kube_api(self):
        """The Kubernetes replay server listing podtap's DaemonSet pods: the
        two agents on node-a and node-b, a Pending one on node-c, and pods
        that are not podtap's; returns the path of a kubeconfig for it."""
        workdir = tempfile.mkdtemp(prefix="ptE2e-cluster-kube-")
        self.addCleanup(shutil.rmtree, workdir, True)
        api = kube_replay.ReplayApi(workdir, secrets.token_hex(16), harness.free_port())
        self.addCleanup(api.stop)
        api.start()
        kubeconfig = api.write_kubeconfig(os.path.join(workdir, "kubeconfig"))
        podtap_labels = {"app.kubernetes.io/name": "podtap"}
        pods = [("podtap", "podtap-a", "node-a", self.addr_a, "Running", podtap_labels),
                ("podtap", "podtap-b", "node-b", self.addr_b, "Running", podtap_labels),
                ("podtap", "podtap-c", "node-c", "", "Pending", podtap_labels),
                # Not podtap's agents: another label, another namespace.
                ("podtap", "helper", "node-a", "127.0.0.1:1", "Running", {"app": "helper"}),
                ("shop", "podtap-x", "node-a", "127.0.0.1:2", "Running", podtap_labels)]
        for ns, name, node, addr, phase, labels in pods:
            ip, _, port = addr.partition(":")
            api.put("pods", {
                "metadata": {"namespace": ns, "name": name, "uid": "uid-" + name,
                             "labels": labels},
                "spec": {"nodeName": node, "containers": [{"name": "agent", "ports": [
                    {"name": "metrics", "containerPort": 4191},
                    {"name": "query", "containerPort": int(port or 4192)}]}]},
                "status": {"phase": phase, "podIP": ip}})
        return kubeconfig

    def test_d_kube_finds_the_agents(self):
        kubeconfig = self.kube_api()
        served = self.requests()
        n = len(served)
        self.wait_rows([self.addr_a], n)
        self.wait_rows([self.addr_b], n)
        kube = ["--kube", "--kubeconfig", kubeconfig]
        name_a, name_b = "node-a (%s)" % self.addr_a, "node-b (%s)" % self.addr_b
        m = self.json([], *kube, "stat", "-n", "shop")
        self.assertEqual(m["coverage"], {
            "asked": 3, "answered": [name_a, name_b],
            "unanswered": [{"agent": "node-c", "error": "pod podtap/podtap-c is Pending"}]})
        self.assertEqual(sorted((self.row_key(r), r["requests"]) for r in m["rows"]),
                         [((self.S["pod"], "INBOUND"), n), ((self.C["pod"], "OUTBOUND"), n)])
        p = self.podtap([], *kube, "stat", "-n", "shop")
        harness.log("podtap --kube stat -n shop:\n" + p.stdout + p.stderr)
        self.assertEqual(p.stderr, "podtap: answers from 2 of 3 agents; NO ANSWER from node-c: "
                         "pod podtap/podtap-c is Pending\n")
        m = self.json([], *kube, "--node", "node-b", "stat", "-n", "shop")
        self.assertEqual(m["coverage"], {"asked": 1, "answered": [name_b], "unanswered": []})
        self.assertEqual([(self.row_key(r), r["requests"]) for r in m["rows"]],
                         [((self.S["pod"], "INBOUND"), n)])
        # The agents' one certificate names podtap-agent, not their addresses.
        p = subprocess.run([CLI, "--ca", self.cert, "--token-file", self.token] + kube
                           + ["--timeout", "3", "stat", "-n", "shop"], capture_output=True,
                           text=True, timeout=CLI_TIMEOUT, stdin=subprocess.DEVNULL)
        self.assertEqual(p.returncode, 1)
        self.assertIn("podtap: none of the 3 agents answered:\n  %s: cannot reach the agent at "
                      "%s" % (name_a, self.addr_a), p.stderr)
        p = self.podtap([], *kube, "--node", "node-z", "stat", check=False)
        self.assertEqual(p.returncode, 1)
        self.assertIn("podtap: --kube: no podtap agent on node node-z among the pods labelled "
                      "app.kubernetes.io/name=podtap in namespace podtap", p.stderr)

    def test_e_conns_across_nodes(self):
        server = harness.start_server(self.topo.server_ns, self.topo.SERVER_IP4, RAW_PORT)
        self.addCleanup(server.stop)
        hold = harness.start_hold(self.topo.client_ns, self.topo.SERVER_IP4, RAW_PORT,
                                  [(3000, 70000)])
        self.addCleanup(hold.stop)
        rec = hold.wait_event("exchanged", timeout=20)[0]
        written, read = rec["written"], rec["read"]
        self.assertEqual((written, read), (harness.HEADER_LEN + 3000, 70000))
        api, web = self.S["pod"], self.C["pod"]
        both = [self.addr_a, self.addr_b]
        want = [("INBOUND", api, written, read), ("OUTBOUND", web, read, written)]
        deadline = time.monotonic() + 15
        while True:
            m = self.json(both, "conns", "-n", "shop")
            got = sorted((c["direction"], c["local"]["pod"], c["read_bytes"], c["write_bytes"])
                         for c in m.get("conns", []))
            if got == want or time.monotonic() > deadline:
                break
            time.sleep(0.25)
        self.assertEqual(got, want, json.dumps(m)[:3000])
        self.assertEqual(m["total"], 2)
        self.assertEqual(m["coverage"]["answered"], both)
        ages = [c["age_seconds"] for c in m["conns"]]
        self.assertEqual(ages, sorted(ages, reverse=True))
        # Each end's remote is the other pod's address (neither agent knows it).
        for c in m["conns"]:
            self.assertEqual(c["remote"]["pod"], "")
            self.assertTrue(c["local"]["address"].endswith(":%d" % RAW_PORT) or
                            c["remote"]["address"].endswith(":%d" % RAW_PORT), c)
        p = self.podtap(both, "conns", "-n", "shop", "--limit", "1")
        harness.log("podtap --agent A --agent B conns -n shop --limit 1:\n" + p.stdout + p.stderr)
        self.assertEqual(len(p.stdout.splitlines()), 2)
        self.assertEqual(p.stderr, "podtap: 1 more connections match (raise --limit)\n"
                         "podtap: answers from 2 of 2 agents\n")
        hold.signal(signal.SIGUSR1)
        self.assertEqual(hold.wait(20), 0)

    def test_f_relay_answers_for_every_agent(self):
        """podtap-relay, finding the agents through the Kubernetes API, gives
        the sum of the agents' exact answers, the p99 of the merged buckets,
        and names the agent it could not ask; --node asks one node only;
        kubectl-podtap reaches it through (a stand-in for) kubectl
        port-forward and stops that child by its PID."""
        relay = self.start_relay("--kubeconfig", self.kube_api())
        served = self.requests()
        n = len(served)
        api, web = self.S["pod"], self.C["pod"]
        self.wait_rows([self.addr_a], n)
        self.wait_rows([self.addr_b], n)
        time.sleep(harness.PodPairTest.SETTLE)
        a = self.json([self.addr_a], "stat", "-n", "shop")
        b = self.json([self.addr_b], "stat", "-n", "shop")
        m = self.relay_json(relay, "stat", "-n", "shop")
        name_a, name_b = "node-a (%s)" % self.addr_a, "node-b (%s)" % self.addr_b
        self.assertEqual(m["coverage"], {
            "asked": 3, "answered": [name_a, name_b],
            "unanswered": [{"agent": "node-c", "error": "pod podtap/podtap-c is Pending"}]})
        fields = ("requests", "successes", "read_bytes", "write_bytes", "latency")
        want = {self.row_key(r): {f: r[f] for f in fields} for r in a["rows"] + b["rows"]}
        self.assertEqual({self.row_key(r): {f: r[f] for f in fields} for r in m["rows"]}, want)
        self.assertEqual(sorted((self.row_key(r), r["requests"]) for r in m["rows"]),
                         [((api, "INBOUND"), n), ((web, "OUTBOUND"), n)])
        inbound = [r for r in m["rows"] if self.row_key(r) == (api, "INBOUND")][0]
        durations = sorted(r["ns"] for r in served)
        self.assertEqual(dict(zip(inbound["latency"]["bucket"],
                                  map(int, inbound["latency"]["count"]))),
                         dict(collections.Counter(latency_bucket(d) for d in durations)))
        p99 = bucket_bounds(latency_bucket(durations[-1]))  # rank ceil(0.99 * 10) = 10
        self.assertTrue(p99[0] / 1e6 <= inbound["latency_p99_ms"] < p99[1] / 1e6)
        p = self.via_relay(relay, "stat", "-n", "shop")
        harness.log("podtap --relay R stat -n shop:\n" + p.stdout + p.stderr)
        self.assertEqual(p.stderr, "podtap: answers from 2 of 3 agents; NO ANSWER from node-c: "
                         "pod podtap/podtap-c is Pending\n")
        lines = [l.split() for l in p.stdout.splitlines()]
        row = [l for l in lines if l[0] == "shop/" + api][0]
        self.assertTrue(p99[0] / 1e6 <= printed_ms(row[lines[0].index("P99")]) < p99[1] / 1e6)
        # Top and edges: what the CLI merging the two agents itself says.
        both = [self.addr_a, self.addr_b]
        for cmd in (["top", "-n", "shop"], ["edges", "-n", "shop"]):
            direct = self.json(both, *cmd)
            relayed = self.relay_json(relay, *cmd)
            self.assertEqual(relayed["coverage"]["asked"], 3)
            for r in (direct, relayed):
                r.pop("coverage")
            self.assertEqual(relayed, direct, cmd)
        # One node's agent only.
        m = self.relay_json(relay, "--node", "node-b", "stat", "-n", "shop")
        self.assertEqual(m["coverage"], {"asked": 1, "answered": [name_b], "unanswered": []})
        self.assertEqual([(self.row_key(r), r["requests"]) for r in m["rows"]],
                         [((api, "INBOUND"), n)])
        # kubectl podtap: the port-forward child's line gives the port; the
        # child is stopped once the answer is in.
        fake = tempfile.mkdtemp(prefix="ptE2e-cluster-kubectl-")
        self.addCleanup(shutil.rmtree, fake, True)
        kubectl = os.path.join(fake, "kubectl")
        with open(kubectl, "w") as f:
            f.write("#!/bin/sh\necho $$ > %s/pid\necho \"$@\" > %s/args\n"
                    "echo 'Forwarding from 127.0.0.1:%s -> 4193'\n"
                    "echo 'Forwarding from [::1]:%s -> 4193'\nexec sleep 60\n"
                    % (fake, fake, relay.split(":")[1], relay.split(":")[1]))
        os.chmod(kubectl, 0o755)
        p = subprocess.run([PLUGIN, "--kubectl", kubectl, "--context", "prod", "stat", "-n",
                            "shop"], capture_output=True, text=True, timeout=CLI_TIMEOUT,
                           stdin=subprocess.DEVNULL)
        harness.log("kubectl podtap stat -n shop:\n" + p.stdout + p.stderr)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(p.stderr, "podtap: answers from 2 of 3 agents; NO ANSWER from node-c: "
                         "pod podtap/podtap-c is Pending\n")
        with open(os.path.join(fake, "args")) as f:
            self.assertEqual(f.read(), "--context prod port-forward -n podtap-relay "
                             "deploy/podtap-relay :4193\n")
        with open(os.path.join(fake, "pid")) as f:
            child = int(f.read())
        self.assertFalse(os.path.exists("/proc/%d" % child), "kubectl port-forward still runs")
        # kubectl refusing (RBAC) is said as kubectl said it.
        with open(kubectl, "w") as f:
            f.write("#!/bin/sh\necho 'Error from server (Forbidden): pods \"podtap-relay-x\" is "
                    "forbidden: User \"bob\" cannot create resource \"pods/portforward\"' >&2\n"
                    "exit 1\n")
        p = subprocess.run([PLUGIN, "--kubectl", kubectl, "stat"], capture_output=True,
                           text=True, timeout=CLI_TIMEOUT, stdin=subprocess.DEVNULL)
        self.assertEqual(p.returncode, 1)
        self.assertIn("podtap: cannot reach podtap-relay: `%s port-forward -n podtap-relay "
                      "deploy/podtap-relay :4193` exited: Error from server (Forbidden)" % kubectl,
                      p.stderr)

    def test_g_relay_an_agent_frozen_or_gone_is_named(self):
        """As case b, through podtap-relay: the relay never waits on one
        agent past the caller's --timeout."""
        relay = self.start_relay("--agent", self.addr_a, "--agent", self.addr_b)
        self.frozen_then_gone(lambda *a, **k: self.via_relay(relay, *a, **k),
                              lambda *a, **k: self.relay_json(relay, *a, **k), "the relay")

    def tap_via_relay(self, relay, *args):
        cmd = [CLI, "--relay", relay, "tap", "-n", "shop"] + list(args)
        tap = subprocess.Popen(harness._orphan_guard("TERM") + cmd, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
        harness._live_procs[tap.pid] = tap
        self.addCleanup(harness._stop_pid, tap)
        return tap

    def test_h_relay_tap_is_the_union_with_one_rate_limit(self):
        """Tap through the relay: exactly the requests as both nodes saw them;
        --max-rps holds for all agents together, not per agent."""
        relay = self.start_relay("--kubeconfig", self.kube_api())
        n = 10  # requests() makes ten
        tap = self.tap_via_relay(relay, "--count", str(2 * n), "--duration", "40")
        self.assertEqual(tap.stderr.readline(), "podtap: tap attached to 2 of 3 agents; NO ANSWER "
                         "from node-c: pod podtap/podtap-c is Pending\n")
        served = self.requests(exact_buckets=False)
        out, err = tap.communicate(timeout=45)
        harness._live_procs.pop(tap.pid, None)
        harness.log("podtap --relay R tap -n shop:\n" + out + err)
        self.assertEqual(tap.returncode, 0, err)
        got = collections.Counter((l.split()[1], l.split()[6].split("/", 1)[1])
                                  for l in out.splitlines())
        want = collections.Counter()
        for r in served:
            want[("outbound", r["path"][1:])] += 1
            want[("inbound", r["path"][1:])] += 1
        self.assertEqual(got, want)
        self.assertEqual(err, "")

        # A pod's tap stays on the node that runs it: node-a's agent has no
        # such pod and is left at once.
        tap = self.tap_via_relay(relay, "--pod", self.S["pod"], "--count", str(n),
                                 "--duration", "40")
        self.assertEqual(tap.stderr.readline(), "podtap: tap attached to 1 of 3 agents (1 have no "
                         "pod it selects); NO ANSWER from node-c: pod podtap/podtap-c is "
                         "Pending\n")
        served = self.requests(exact_buckets=False)
        out, err = tap.communicate(timeout=45)
        harness._live_procs.pop(tap.pid, None)
        self.assertEqual(tap.returncode, 0, err)
        self.assertEqual(collections.Counter((l.split()[1], l.split()[6].split("/", 1)[1])
                                             for l in out.splitlines()),
                         collections.Counter(("inbound", r["path"][1:]) for r in served))

        # 20 requests seen (10 by each agent) in about 3 s, at most 2 a second
        # over both: the token bucket passes 2 at once and 2 a second after.
        duration = 6
        tap = self.tap_via_relay(relay, "--max-rps", "2", "--duration", str(duration))
        self.assertIn("tap attached to 2 of 3 agents", tap.stderr.readline())
        start = time.monotonic()
        served = self.requests(exact_buckets=False)
        out, err = tap.communicate(timeout=duration + 10)
        took = time.monotonic() - start
        harness._live_procs.pop(tap.pid, None)
        harness.log("podtap --relay R tap -n shop --max-rps 2:\n" + out + err)
        self.assertEqual(tap.returncode, 0, err)
        lines = out.splitlines()
        self.assertGreaterEqual(len(lines), 2)
        self.assertLessEqual(len(lines), 2 + 2 * took)
        self.assertLess(len(lines), 2 * len(served))
        skipped = sum(int(l.rsplit("(skipped ", 1)[1].rstrip(")")) for l in lines
                      if "(skipped " in l)
        self.assertGreater(skipped, 0)
        self.assertLessEqual(len(lines) + skipped, 2 * len(served))

        # Taps the relay opened end on the agents when its caller's ends (the
        # --duration above), and when the caller is killed mid-tap.
        def wait_taps(n):
            deadline = time.monotonic() + 5
            while True:
                open_taps = [a.scrape().sum("podtap_tap_streams")
                             for a in (self.node_a, self.node_b)]
                if open_taps == [n, n]:
                    return
                self.assertLess(time.monotonic(), deadline,
                                "taps open on the agents: %s, not %d each" % (open_taps, n))
                time.sleep(0.1)
        wait_taps(0)
        tap = self.tap_via_relay(relay)
        self.assertIn("tap attached to 2 of 3 agents", tap.stderr.readline())
        wait_taps(1)
        harness._stop_pid(tap)
        harness._live_procs.pop(tap.pid, None)
        wait_taps(0)


if __name__ == "__main__":
    unittest.main()
