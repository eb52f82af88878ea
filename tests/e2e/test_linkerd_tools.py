#!/usr/bin/python3
"""The selectors Linkerd's own tools run, unchanged, against a real Prometheus
scraping a real podtap agent (issue #21), with exact answers:

- the Grafana dashboards' "TCP CONNECTION FAILURES" panels select
  tcp_close_total{errno!=""}: every errno is exact against connections whose
  ending the test controls (a reset sent by the client, a reset sent by the
  server, a refused connect, a connect timeout), and clean closes carry errno="";
- `linkerd viz stat svc/NAME` reads the Service's TCP columns with
    sum(tcp_open_connections{authority=~"^NAME.NS.svc.DOMAIN.*",
        direction="outbound",peer="dst"}) by (dst_namespace, dst_service)
  and the same selector on tcp_read_bytes_total / tcp_write_bytes_total.

Three pods (network namespaces, linked by veth pairs): a client, a server
behind the Service address 10.96.7.10:80, and a backend the server calls
directly at its pod address (a headless Service: an EndpointSlice address of
a known Service). There is no kube-proxy: an nft DNAT rule in the client's
namespace sends 10.96.7.10:80 to the server pod's 8080, as kube-proxy's
would, so the client socket's destination, as the kernel sees it, is the
ClusterIP. The Services and EndpointSlices come from kube_replay.ReplayApi in
the real API's shapes; the pods file gives the agent the pods' socket keys.

The backend namespace drops (nft) every packet to port 9002: the server's
connects there time out after one SYN retry (tcp_syn_retries=1 in the server
namespace, about 3 s). Nothing listens on the backend's 9001: refused.

The scrape job is podtap's, with the metric relabelling of the shipped
kustomize component deploy/daemonset/linkerd-job (read from it here): the
traffic series are under job="linkerd-proxy", as the dashboards select them,
while `up` and podtap_* stay under job="podtap".

Network: loopback (agent, API, Prometheus) and the test's namespaces only.
Every process is started and stopped by PID. Runtime about 40 s.

Run as root: tests/e2e/run.sh test_linkerd_tools.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import unittest

import yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import kube_replay  # noqa: E402
from test_prometheus import PROMETHEUS, Prometheus  # noqa: E402

LINKERD_JOB_COMPONENT = os.path.join(harness.REPO, "deploy", "daemonset", "linkerd-job",
                                     "kustomization.yaml")
TOKEN = "podtap-e2e-token-linkerd-21"
NODE = "node-e2e"
DOMAIN = "cluster.e2e"  # --cluster-domain: not the default, so the flag is what names it
JOB = "linkerd-proxy"
CLIENT_IP, SERVER_IP = "10.232.1.1", "10.232.1.2"
SERVER_UP_IP, BACKEND_IP = "10.232.2.1", "10.232.2.2"
CLUSTER_IP, SVC_PORT, SERVER_PORT = "10.96.7.10", 80, 8080
DATA_PORT, CLOSED_PORT, DARK_PORT = 9000, 9001, 9002

# A connection of the wire protocol below: a 9-byte header (mode, request
# length, response length), the request, the response.
HEADER = 9
# Client -> Service plans: (mode, request bytes, response bytes).
#   n: the server answers and closes (FIN); h: held open until the test says;
#   c: the client resets once it has the answer; s: the server resets after answering.
CLEAN = [("n", 1000, 20000), ("n", 3000, 500), ("n", 10, 70000)]
HELD = [("h", 4000, 9000), ("h", 120, 33000)]
CLIENT_RESETS = [("c", 2000, 1000), ("c", 500, 4000)]
SERVER_RESETS = [("s", 700, 2500), ("s", 64, 8000), ("s", 9000, 100)]
# Server -> backend: clean exchanges, then refused and timed-out connects.
BACKEND = [("n", 1500, 6000), ("n", 50, 123456)]
REFUSED, TIMEOUTS = 3, 2

SERVER = r'''
import socket, struct, sys, threading
def recv_exact(c, n):
    got = 0
    while got < n:
        b = c.recv(min(65536, n - got))
        if not b:
            return False
        got += len(b)
    return True
def serve(c):
    try:
        hdr = b""
        while len(hdr) < 9:
            b = c.recv(9 - len(hdr))
            if not b:
                return
            hdr += b
        mode, req, resp = struct.unpack("!cII", hdr)
        if not recv_exact(c, req):
            return
        c.sendall(b"r" * resp)
        if mode == b"s":  # reset: close with SO_LINGER 0
            c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        elif mode in (b"h", b"c"):  # until the client closes (FIN) or resets
            try:
                while c.recv(65536):
                    pass
            except ConnectionResetError:
                pass
    finally:
        c.close()
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2])))
s.listen(64)
print("ready", flush=True)
while True:
    c, _ = s.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
'''

# Runs a plan against addr:port, one connection at a time; held connections
# stay open until a line arrives on stdin. Prints one JSON line per phase.
CLIENT = r'''
import errno, json, socket, struct, sys
addr, port, plan = sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3])
held, out = [], []
for mode, req, resp in plan:
    c = socket.socket()
    c.settimeout(30)
    rec = {"mode": mode}
    try:
        c.connect((addr, port))
    except ConnectionRefusedError:
        rec["outcome"] = "refused"
        out.append(rec)
        c.close()
        continue
    except OSError as e:
        rec["outcome"] = "timeout" if e.errno == errno.ETIMEDOUT else "error: %s" % e
        out.append(rec)
        c.close()
        continue
    c.sendall(struct.pack("!cII", mode.encode(), req, resp) + b"q" * req)
    got = 0
    while got < resp:
        b = c.recv(65536)
        if not b:
            break
        got += len(b)
    rec["read"] = got
    if mode == "h":
        held.append(c)
        rec["outcome"] = "held"
        out.append(rec)
        continue
    if mode == "c":
        c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        rec["outcome"] = "reset_sent"
    else:
        try:
            rec["outcome"] = "eof" if c.recv(1) == b"" else "data"
        except ConnectionResetError:
            rec["outcome"] = "reset_received"
    c.close()
    out.append(rec)
print(json.dumps(out), flush=True)
if held:
    sys.stdin.readline()
    for c in held:
        c.close()
    print(json.dumps({"closed": len(held)}), flush=True)
'''


def api_objects():
    """The Services and EndpointSlices as the API serves them."""
    server_svc = {
        "metadata": {"name": "server", "namespace": "shop", "uid": "e2e-uid-svc-server"},
        "spec": {"type": "ClusterIP", "clusterIP": CLUSTER_IP, "clusterIPs": [CLUSTER_IP],
                 "ipFamilies": ["IPv4"], "ipFamilyPolicy": "SingleStack",
                 "ports": [{"name": "http", "port": SVC_PORT, "protocol": "TCP",
                            "targetPort": SERVER_PORT}],
                 "selector": {"app": "server"}}}
    server_slice = {
        "metadata": {"name": "server-k2x9d", "namespace": "shop",
                     "labels": {"kubernetes.io/service-name": "server",
                                "endpointslice.kubernetes.io/managed-by":
                                    "endpointslice-controller.k8s.io"}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": [SERVER_IP], "conditions": {"ready": True},
                       "nodeName": NODE,
                       "targetRef": {"kind": "Pod", "namespace": "shop",
                                     "name": "server-6b8f7c9d4-h2kq7", "uid": "e2e-uid-server"}}],
        "ports": [{"name": "http", "port": SERVER_PORT, "protocol": "TCP"}]}
    ports = [("data", DATA_PORT), ("closed", CLOSED_PORT), ("dark", DARK_PORT)]
    backend_svc = {  # headless: clients dial the pod addresses
        "metadata": {"name": "backend", "namespace": "shop", "uid": "e2e-uid-svc-backend"},
        "spec": {"type": "ClusterIP", "clusterIP": "None", "clusterIPs": ["None"],
                 "ports": [{"name": n, "port": p, "protocol": "TCP", "targetPort": p}
                           for n, p in ports],
                 "selector": {"app": "backend"}}}
    backend_slice = {
        "metadata": {"name": "backend-7fj2m", "namespace": "shop",
                     "labels": {"kubernetes.io/service-name": "backend",
                                "service.kubernetes.io/headless": "",
                                "endpointslice.kubernetes.io/managed-by":
                                    "endpointslice-controller.k8s.io"}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": [BACKEND_IP], "conditions": {"ready": True},
                       "nodeName": NODE,
                       "targetRef": {"kind": "Pod", "namespace": "shop",
                                     "name": "backend-5d9c8b7f6-p4m2z",
                                     "uid": "e2e-uid-backend"}}],
        "ports": [{"name": n, "port": p, "protocol": "TCP"} for n, p in ports]}
    return [("services", server_svc), ("endpointslices", server_slice),
            ("services", backend_svc), ("endpointslices", backend_slice)]


def linkerd_job_relabel():
    """The component's PodMonitor metricRelabelings as Prometheus'
    metric_relabel_configs (the operator renames the keys alike)."""
    with open(LINKERD_JOB_COMPONENT) as f:
        component = yaml.safe_load(f)
    (patch,) = component["patches"]
    (op,) = yaml.safe_load(patch["patch"])
    names = {"sourceLabels": "source_labels", "targetLabel": "target_label"}
    return [{names.get(k, k): v for k, v in rule.items()} for rule in op["value"]]


def wire_bytes(plan):
    """(written, read) by the dialing side over a plan's connections."""
    return (sum(HEADER + req for _, req, _ in plan), sum(resp for _, _, resp in plan))


class LinkerdToolsTest(unittest.TestCase):
    def setUp(self):
        if os.geteuid() != 0:
            raise unittest.SkipTest("needs root (network namespaces, eBPF)")
        for tool in (PROMETHEUS, "/usr/sbin/nft"):
            if not os.access(tool, os.X_OK):
                raise RuntimeError("missing %s: install its Debian package (make deps)" % tool)
        harness.cleanup_stale_namespaces()
        self.workdir = tempfile.mkdtemp(prefix="ptE2e-linkerd-")
        self.passed = False
        self.addCleanup(self._keep_or_remove_workdir)
        pid = os.getpid()
        self.ns = {role: "%s%d%s" % (harness.NS_PREFIX, pid, letter)
                   for role, letter in (("client", "k"), ("server", "v"), ("backend", "b"))}
        self._topology()
        pods = [self._pod("client", "client-7c5d9f8b4-x7k2p", "7c5d9f8b4", [CLIENT_IP]),
                self._pod("server", "server-6b8f7c9d4-h2kq7", "6b8f7c9d4",
                          [SERVER_IP, SERVER_UP_IP]),
                self._pod("backend", "backend-5d9c8b7f6-p4m2z", "5d9c8b7f6", [BACKEND_IP])]
        self.api = kube_replay.ReplayApi(self.workdir, TOKEN, harness.free_port())
        for resource, obj in api_objects():
            self.api.put(resource, obj)
        self.api.start()
        self.addCleanup(self.api.stop)
        kubeconfig = self.api.write_kubeconfig(os.path.join(self.workdir, "kubeconfig"))
        self.agent = harness.Agent(self.workdir, pods, diag_interval=1, log_level="info",
                                   extra_args=["--kubeconfig", kubeconfig, "--node-name", NODE,
                                               "--cluster-domain", DOMAIN])
        self.addCleanup(self._stop_agent)
        self.agent.start()
        self.agent.wait_ready()
        self.servers = [self._server("server", SERVER_IP, SERVER_PORT),
                        self._server("backend", BACKEND_IP, DATA_PORT)]
        self.prom = Prometheus(self.workdir, "127.0.0.1:%d" % self.agent.port,
                               metric_relabel=linkerd_job_relabel())
        self.addCleanup(self.prom.stop)
        self.prom.start()
        self.prom.wait_value('up{job="podtap"}', 1.0)
        self.prom.wait_value('sum(podtap_metadata_objects{job="podtap",source="kubernetes",'
                             'resource=~"services|endpointslices"})', 4.0)

    # ---- fixture ----------------------------------------------------------------

    def _topology(self):
        for ns in self.ns.values():
            harness.sh(["ip", "netns", "add", ns])
            harness._live_netns.add(ns)
            self.addCleanup(harness._delete_netns, ns)
            harness.sh(["ip", "-n", ns, "link", "set", "lo", "up"])
        c, s, b = self.ns["client"], self.ns["server"], self.ns["backend"]
        for (ns_a, dev_a, ip_a), (ns_b, dev_b, ip_b) in (
                ((c, "lk0", CLIENT_IP), (s, "lk1", SERVER_IP)),
                ((s, "lk2", SERVER_UP_IP), (b, "lk3", BACKEND_IP))):
            harness.sh(["ip", "-n", ns_a, "link", "add", dev_a, "type", "veth",
                        "peer", "name", dev_b, "netns", ns_b])
            for ns, dev, ip in ((ns_a, dev_a, ip_a), (ns_b, dev_b, ip_b)):
                harness.sh(["ip", "-n", ns, "addr", "add", ip + "/24", "dev", dev])
                harness.sh(["ip", "-n", ns, "link", "set", dev, "up"])
        # The Service address is routed towards the server pod; kube-proxy's
        # part, the DNAT to the endpoint, is an nft rule in the client pod.
        harness.sh(["ip", "-n", c, "route", "add", "default", "via", SERVER_IP])
        self._nft(c, "table ip kubeproxy { chain out { type nat hook output priority -100; "
                     "ip daddr %s tcp dport %d dnat to %s:%d\n}\n}\n"
                  % (CLUSTER_IP, SVC_PORT, SERVER_IP, SERVER_PORT))
        self._nft(b, "table ip dark { chain in { type filter hook input priority 0; "
                     "tcp dport %d drop\n}\n}\n" % DARK_PORT)
        harness.sh(["ip", "netns", "exec", s, "sysctl", "-qw", "net.ipv4.tcp_syn_retries=1"])
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            links = (harness.sh(["ip", "-n", ns, "-o", "link", "show", dev]).stdout
                     for ns, dev in ((c, "lk0"), (s, "lk1"), (s, "lk2"), (b, "lk3")))
            if all("LOWER_UP" in x for x in links):
                return
            time.sleep(0.05)
        raise RuntimeError("veth pairs did not come up within 10s")

    @staticmethod
    def _nft(ns, ruleset):
        p = subprocess.run(["ip", "netns", "exec", ns, "nft", "-f", "-"], input=ruleset,
                           capture_output=True, text=True, timeout=harness.CMD_TIMEOUT)
        if p.returncode != 0:
            raise RuntimeError("nft in %s failed: %s\n%s" % (ns, p.stderr, ruleset))

    def _pod(self, role, name, pod_hash, ips):
        return harness.Pod("shop", name, "e2e-uid-" + role,
                           {"app": role, "pod-template-hash": pod_hash},
                           "ReplicaSet", "%s-%s" % (role, pod_hash), ips,
                           "/var/run/netns/%s" % self.ns[role])

    def _server(self, role, addr, port):
        p = subprocess.Popen(harness._orphan_guard("KILL")
                             + ["ip", "netns", "exec", self.ns[role], harness.PY, "-c", SERVER,
                                addr, str(port)],
                             stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
        harness._live_procs[p.pid] = p
        self.addCleanup(self._stop_server, p)
        self.assertEqual(p.stdout.readline().strip(), "ready")
        return p

    @staticmethod
    def _stop_server(p):
        harness._stop_pid(p)
        p.stdout.close()

    def _stop_agent(self):
        rc = self.agent.stop()
        if rc != 0:
            harness.log("agent exited with %s\n%s" % (rc, self.agent.log_tail()))

    def _keep_or_remove_workdir(self):
        if self.passed:
            shutil.rmtree(self.workdir, ignore_errors=True)
        else:
            harness.log("artifacts (agent, API and prometheus logs) kept in %s" % self.workdir)

    def run_client(self, role, addr, port, plan):
        """Runs a plan from pod `role` to completion; returns its records."""
        p = harness.sh(["ip", "netns", "exec", self.ns[role], harness.PY, "-c", CLIENT, addr,
                        str(port), json.dumps(plan)], timeout=120)
        return json.loads(p.stdout.splitlines()[0])

    # ---- PromQL ------------------------------------------------------------------

    def vector(self, expr):
        """An instant query's result as {tuple of (label, value) sorted: value}."""
        result = self.prom.api("/api/v1/query", query=expr)["result"]
        return {tuple(sorted(r["metric"].items())): float(r["value"][1]) for r in result}

    def wait_vector(self, expr, want, timeout=20):
        deadline = time.monotonic() + timeout
        got = None
        while time.monotonic() < deadline:
            got = self.vector(expr)
            if got == want:
                return
            time.sleep(0.25)
        raise AssertionError("%s:\n got  %r\n want %r\n%s\n%s"
                             % (expr, got, want, self.where_it_went_wrong(),
                                self.agent.log_tail(20)))

    def where_it_went_wrong(self):
        """The agent's own failed closes and its self metrics of loss, and the age of
        Prometheus's last scrape: whether a wrong vector was the agent's count or a scrape."""
        try:
            # Failures with an errno, and any without one (a connect failure whose errno the
            # kernel no longer held would show as errno="").
            own = "\n".join(l for l in self.agent.scrape().lines_with(
                ['classification="failure"', "podtap_events_"])
                if l.startswith(("tcp_close_total{", "podtap_events_")))
        except Exception as e:  # noqa: BLE001 (a diagnostic: the assertion above is the point)
            own = "cannot scrape the agent: %s" % e
        try:
            age = self.vector("time() - timestamp(up)")
        except Exception as e:  # noqa: BLE001
            age = "cannot query: %s" % e
        return ("---- the agent's own scrape now ----\n%s\n"
                "---- seconds since Prometheus's last scrape: %r" % (own, age))

    @staticmethod
    def key(**labels):
        return tuple(sorted(labels.items()))

    # ---- the test ------------------------------------------------------------------

    def test_dashboards_and_viz_stat_selectors(self):
        errno_by = ('sum(tcp_close_total{job="%s",namespace="shop",errno!=""}) '
                    'by (deployment, direction, errno)' % JOB)

        def failures(resets, refused=0, timeouts=0):
            want = {}
            if resets:
                want[self.key(deployment="client", direction="outbound",
                              errno="ECONNRESET")] = float(resets)
                want[self.key(deployment="server", direction="inbound",
                              errno="ECONNRESET")] = float(resets)
            if refused:
                want[self.key(deployment="server", direction="outbound",
                              errno="ECONNREFUSED")] = float(refused)
            if timeouts:
                want[self.key(deployment="server", direction="outbound",
                              errno="ETIMEDOUT")] = float(timeouts)
            return want

        # Clean connections and held ones: no failure anywhere, errno="" only.
        recs = self.run_client("client", CLUSTER_IP, SVC_PORT, CLEAN)
        self.assertEqual([r["outcome"] for r in recs], ["eof"] * len(CLEAN), recs)
        holder = subprocess.Popen(
            harness._orphan_guard("KILL")
            + ["ip", "netns", "exec", self.ns["client"], harness.PY, "-c", CLIENT, CLUSTER_IP,
               str(SVC_PORT), json.dumps(HELD)],
            stdout=subprocess.PIPE, stdin=subprocess.PIPE, text=True)
        harness._live_procs[holder.pid] = holder
        self.addCleanup(harness._stop_pid, holder)
        recs = json.loads(holder.stdout.readline())
        self.assertEqual([(r["outcome"], r["read"]) for r in recs],
                         [("held", resp) for _, _, resp in HELD], recs)
        self.wait_vector('sum(tcp_close_total{job="%s",namespace="shop",errno=""}) '
                         'by (deployment, direction, classification)' % JOB,
                         {self.key(deployment="client", direction="outbound",
                                   classification="success"): float(len(CLEAN)),
                          self.key(deployment="server", direction="inbound",
                                   classification="success"): float(len(CLEAN))})
        self.assertEqual(self.vector(errno_by), {})

        # A reset sent by the client, then one sent by the server: each side's
        # close carries ECONNRESET (the receiver's socket error, or the reset
        # the sender's abort put on the wire).
        recs = self.run_client("client", CLUSTER_IP, SVC_PORT, CLIENT_RESETS)
        self.assertEqual([r["outcome"] for r in recs], ["reset_sent"] * len(CLIENT_RESETS))
        self.wait_vector(errno_by, failures(len(CLIENT_RESETS)))
        recs = self.run_client("client", CLUSTER_IP, SVC_PORT, SERVER_RESETS)
        self.assertEqual([r["outcome"] for r in recs],
                         ["reset_received"] * len(SERVER_RESETS), recs)
        resets = len(CLIENT_RESETS) + len(SERVER_RESETS)
        self.wait_vector(errno_by, failures(resets))

        # The server calls the backend: clean exchanges, refused connects,
        # connects that time out in the backend namespace's drop rule.
        recs = self.run_client("server", BACKEND_IP, DATA_PORT, BACKEND)
        self.assertEqual([r["outcome"] for r in recs], ["eof"] * len(BACKEND), recs)
        recs = self.run_client("server", BACKEND_IP, CLOSED_PORT, [("n", 1, 1)] * REFUSED)
        self.assertEqual([r["outcome"] for r in recs], ["refused"] * REFUSED, recs)
        recs = self.run_client("server", BACKEND_IP, DARK_PORT, [("n", 1, 1)] * TIMEOUTS)
        self.assertEqual([r["outcome"] for r in recs], ["timeout"] * TIMEOUTS, recs)
        self.wait_vector(errno_by, failures(resets, REFUSED, TIMEOUTS))
        # The dashboards' panel, as they write it, for the server's inbound side.
        self.wait_vector('sum(tcp_close_total{job="%s",deployment="server",direction="inbound",'
                         'errno!=""}) by (errno)' % JOB,
                         {self.key(errno="ECONNRESET"): float(resets)})
        # tcp_connection_duration_ms carries errno too; a failed connect has no duration.
        self.wait_vector('sum(tcp_connection_duration_ms_count{job="%s",errno!=""}) by (errno)'
                         % JOB, {self.key(errno="ECONNRESET"): 2.0 * resets,
                                 self.key(errno="ECONNREFUSED"): 0.0,
                                 self.key(errno="ETIMEDOUT"): 0.0})

        # linkerd viz stat svc/server and svc/backend, TCP columns, while the
        # held connections are open.
        def viz(family, svc):
            return ('sum(%s{job="%s",authority=~"^%s.shop.svc.%s.*",direction="outbound",'
                    'peer="dst"}) by (dst_namespace, dst_service)' % (family, JOB, svc, DOMAIN))

        to_server = CLEAN + HELD + CLIENT_RESETS + SERVER_RESETS
        written, read = wire_bytes(to_server)
        svc = self.key(dst_namespace="shop", dst_service="server")
        self.wait_vector(viz("tcp_open_connections", "server"), {svc: float(len(HELD))})
        self.wait_vector(viz("tcp_write_bytes_total", "server"), {svc: float(written)})
        self.wait_vector(viz("tcp_read_bytes_total", "server"), {svc: float(read)})
        backend = self.key(dst_namespace="shop", dst_service="backend")
        written, read = wire_bytes(BACKEND)
        self.wait_vector(viz("tcp_open_connections", "backend"), {backend: 0.0})
        self.wait_vector(viz("tcp_write_bytes_total", "backend"), {backend: float(written)})
        self.wait_vector(viz("tcp_read_bytes_total", "backend"), {backend: float(read)})
        # The label values themselves: the Service's port, whatever the socket
        # dialed. The refused and timed-out connects opened nothing (their
        # series hold their closes).
        self.wait_vector('sum(tcp_open_total{job="%s",direction="outbound",authority!=""}) '
                         'by (authority)' % JOB,
                         {self.key(authority="server.shop.svc.%s:%d" % (DOMAIN, SVC_PORT)):
                          float(len(to_server)),
                          self.key(authority="backend.shop.svc.%s:%d" % (DOMAIN, DATA_PORT)):
                          float(len(BACKEND)),
                          self.key(authority="backend.shop.svc.%s:%d" % (DOMAIN, CLOSED_PORT)):
                          0.0,
                          self.key(authority="backend.shop.svc.%s:%d" % (DOMAIN, DARK_PORT)):
                          0.0})
        # Inbound series never carry a TCP authority, and no traffic series
        # stayed under podtap's own job name.
        self.assertEqual(self.vector('count(tcp_open_total{direction="inbound",authority!=""})'),
                         {})
        self.assertEqual(self.vector('count({job="podtap",__name__=~"tcp_.*|.*_tcp_errors_total|'
                                     'response_.*|request_total|route_.*"})'), {})

        holder.stdin.write("close\n")
        holder.stdin.flush()
        self.assertEqual(json.loads(holder.stdout.readline()), {"closed": len(HELD)})
        self.assertEqual(holder.wait(timeout=10), 0)
        harness._live_procs.pop(holder.pid, None)
        holder.stdin.close()
        holder.stdout.close()
        self.wait_vector(viz("tcp_open_connections", "server"), {svc: 0.0})
        self.wait_vector('sum(tcp_close_total{job="%s",namespace="shop",errno=""})' % JOB,
                         {(): 2.0 * (len(CLEAN) + len(HELD) + len(BACKEND))})
        self.assertEqual(self.vector(errno_by), failures(resets, REFUSED, TIMEOUTS))
        self.passed = True


if __name__ == "__main__":
    unittest.main(verbosity=2)
