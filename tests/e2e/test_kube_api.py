#!/usr/bin/python3
"""Real-kernel end-to-end tests of the Kubernetes API metadata source.

No Kubernetes API server can run on the test machines, so the API is
kube_replay.ReplayApi: HTTPS with a CA made by openssl, a bearer token it
checks, list and watch responses in the real API's JSON shapes. The agent
reaches it through --kubeconfig only. The two pods are network namespaces
(harness.Topology); the pods file gives the agent nothing but their socket
keys, names, uids and IPs: owners, pod-template-hash, Services and the
ReplicaSet's Deployment come from the API alone.

- test_a: owner labels (Deployment through its ReplicaSet object, StatefulSet)
  and outbound dst_* labels to a pod IP and to a Service ClusterIP, exactly.
- test_b: a bookmark, a watch broken mid-event (resumed from the bookmark's
  resourceVersion, no re-list), a 410 Gone ERROR event (re-list), the server
  going away (labels keep resolving from the cache) and coming back with an
  HTTP 410 (re-list, new Services picked up), without restarting the agent.
- test_c: the agent started with the API absent gets the labels once it
  appears.
- test_d: no container runtime answers and there is no pods file: the pods
  are found from their processes' kubelet-style cgroups (/proc fallback) and
  named by the API by uid.
- test_e: a runtime socket that accepts and never answers (every CRI call
  waits out its deadline) and an API that answers everything late, while
  connections run at a steady pace through ring buffers of a few pages: the
  agent's event thread never waits on them (no record lost) and every count is
  exact.

Run as root: tests/e2e/run.sh test_kube_api.KubeApiTest, or /usr/bin/python3
tests/e2e/test_kube_api.py.
"""

import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import kube_replay  # noqa: E402
from harness import HEADER_LEN, Expect  # noqa: E402

PORT = 18080
TOKEN = "podtap-e2e-token-5b1f0c"
NODE = "node-e2e"
WEB = "web-7d4b9c6f5-x2k9p"
WEB_UID, DB_UID = "7f3c1a52-9b1e-4c1d-8e2a-5a0b6c7d8e01", "7f3c1a52-9b1e-4c1d-8e2a-5a0b6c7d8e02"
CGROUP_ROOT = "/sys/fs/cgroup/unified"
CGROUP_PARENT = "/podtap-e2e-kube-%d" % os.getpid()
# Addresses on the server pod's interface that the API calls Service
# ClusterIPs (no kube-proxy here: the server answers on them directly, and
# the client's socket has them as its remote address, as it would under
# kube-proxy's DNAT).
SVC_DB, SVC_EXTRA = "10.231.7.100", "10.231.7.101"
TIMEOUT = 30.0
SETTLE = 2.0
ARTIFACTS = os.environ.get("PODTAP_E2E_ARTIFACTS") or tempfile.mkdtemp(prefix="ptE2e-artifacts-")

# Labels the series must carry: from the API, never from the pods file.
WEB_LABELS = {"namespace": "shop", "pod": WEB, "pod_template_hash": "7d4b9c6f5",
              "replicaset": "web-7d4b9c6f5", "deployment": "storefront"}
DB_LABELS = {"namespace": "shop", "pod": "db-0", "statefulset": "db"}
DST_DB_POD = {"dst_namespace": "shop", "dst_pod": "db-0", "dst_statefulset": "db",
              "dst_service": "db"}


def dst_service(name):
    return {"dst_namespace": "shop", "dst_service": name}


def tearDownModule():
    try:
        os.rmdir(ARTIFACTS)
    except OSError:
        harness.log("artifacts kept in %s" % ARTIFACTS)


def api_objects(topo):
    """The cluster as the API describes it (objects as kubectl get -o json
    shows them, trimmed of what podtap never reads only where noted)."""
    web = {
        "metadata": {
            "name": WEB, "namespace": "shop", "uid": WEB_UID,
            "labels": {"app": "web", "pod-template-hash": "7d4b9c6f5"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                                 "name": "web-7d4b9c6f5", "uid": "e2e-uid-rs",
                                 "controller": True, "blockOwnerDeletion": True}]},
        "spec": {"nodeName": NODE, "containers": [{"name": "web", "image": "web:1"}]},
        "status": {"phase": "Running", "podIP": topo.CLIENT_IP4,
                   "podIPs": [{"ip": topo.CLIENT_IP4}, {"ip": topo.CLIENT_IP6}]},
    }
    db = {
        "metadata": {
            "name": "db-0", "namespace": "shop", "uid": DB_UID,
            "labels": {"app": "db", "controller-revision-hash": "db-6c9f8d7b4",
                       "statefulset.kubernetes.io/pod-name": "db-0"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "db",
                                 "uid": "e2e-uid-sts", "controller": True,
                                 "blockOwnerDeletion": True}]},
        "spec": {"nodeName": NODE, "containers": [{"name": "db", "image": "db:1"}]},
        "status": {"phase": "Running", "podIP": topo.SERVER_IP4,
                   "podIPs": [{"ip": topo.SERVER_IP4}, {"ip": topo.SERVER_IP6}]},
    }
    elsewhere = {  # another node's pod: known by IP only
        "metadata": {"name": "cache-59d8f7b4c-q7w2x", "namespace": "shop", "uid": "e2e-uid-c",
                     "labels": {"pod-template-hash": "59d8f7b4c"},
                     "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                                          "name": "cache-59d8f7b4c", "uid": "e2e-uid-rs2",
                                          "controller": True}]},
        "spec": {"nodeName": "node-other"},
        "status": {"phase": "Running", "podIP": "10.244.9.9", "podIPs": [{"ip": "10.244.9.9"}]},
    }
    # The Deployment's name is not the ReplicaSet's name minus its hash: only
    # the ReplicaSet object's ownerReferences can say it.
    rs = {"metadata": {"name": "web-7d4b9c6f5", "namespace": "shop", "uid": "e2e-uid-rs",
                       "labels": {"app": "web", "pod-template-hash": "7d4b9c6f5"},
                       "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment",
                                            "name": "storefront", "uid": "e2e-uid-dep",
                                            "controller": True, "blockOwnerDeletion": True}]},
          "spec": {"replicas": 1}, "status": {"replicas": 1}}
    slice_ = {"metadata": {"name": "db-x7k2p", "namespace": "shop",
                           "labels": {"kubernetes.io/service-name": "db",
                                      "endpointslice.kubernetes.io/managed-by":
                                          "endpointslice-controller.k8s.io"}},
              "addressType": "IPv4",
              "endpoints": [{"addresses": [topo.SERVER_IP4], "conditions": {"ready": True},
                             "nodeName": NODE,
                             "targetRef": {"kind": "Pod", "namespace": "shop", "name": "db-0",
                                           "uid": DB_UID}}],
              "ports": [{"name": "db", "port": PORT, "protocol": "TCP"}]}
    return [("pods", web), ("pods", db), ("pods", elsewhere), ("replicasets", rs),
            ("services", service("db", SVC_DB)), ("endpointslices", slice_)]


def service(name, cluster_ip):
    return {"metadata": {"name": name, "namespace": "shop", "uid": "e2e-uid-svc-" + name},
            "spec": {"type": "ClusterIP", "clusterIP": cluster_ip, "clusterIPs": [cluster_ip],
                     "ipFamilies": ["IPv4"], "ports": [{"port": PORT, "protocol": "TCP"}],
                     "selector": {"app": "db"}}}


class KubeApiTest(harness.PodPairTest):
    ARTIFACTS = ARTIFACTS
    TIMEOUT = TIMEOUT
    SETTLE = SETTLE

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        topo = cls.topo
        # The pods file: socket keys and names only.
        cls.client_pod = harness.Pod("shop", WEB, WEB_UID, {}, "", "",
                                     [topo.CLIENT_IP4, topo.CLIENT_IP6],
                                     topo.netns_path(topo.client_ns))
        cls.server_pod = harness.Pod("shop", "db-0", DB_UID, {}, "", "",
                                     [topo.SERVER_IP4, topo.SERVER_IP6],
                                     topo.netns_path(topo.server_ns))
        for ip in (SVC_DB, SVC_EXTRA):
            harness.sh(["ip", "-n", topo.server_ns, "addr", "add", "%s/%d" % (ip, topo.PREFIX4),
                        "dev", "pt1"])

    def setUp(self):
        self.workdir = os.path.join(self.ARTIFACTS, self.id().rsplit(".", 1)[-1])
        os.makedirs(self.workdir, exist_ok=True)
        self.api = kube_replay.ReplayApi(self.workdir, TOKEN, harness.free_port())
        self.addCleanup(self.api.stop)
        for resource, obj in api_objects(self.topo):
            self.api.put(resource, obj)
        self.kubeconfig = self.api.write_kubeconfig(os.path.join(self.workdir, "kubeconfig"))
        self.server = harness.start_server(self.topo.server_ns, "::", PORT)
        self.addCleanup(self.server.stop)

    def start_kube_agent(self, extra_args=(), **kwargs):
        return self.start_agent(extra_args=["--kubeconfig", self.kubeconfig,
                                            "--node-name", NODE] + list(extra_args), **kwargs)

    def hanging_runtime(self):
        """A unix socket that accepts connections and never answers on them,
        as a wedged container runtime does; removed by a cleanup."""
        path = os.path.join(self.workdir, "wedged-runtime.sock")
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(path)
        listener.listen(16)
        listener.settimeout(0.1)
        accepted, done = [], threading.Event()

        def accept():
            while not done.is_set():
                try:
                    accepted.append(listener.accept()[0])
                except socket.timeout:
                    pass

        t = threading.Thread(target=accept, daemon=True)
        t.start()

        def stop():
            done.set()
            t.join(timeout=5)
            for c in accepted + [listener]:
                c.close()
            if os.path.exists(path):  # the agent's cleanup may have removed workdir
                os.unlink(path)

        self.addCleanup(stop)
        return path, accepted

    def pod_process(self, ns, uid):
        """A process in namespace `ns` and in the cgroup kubelet (cgroupfs
        driver) would give a container of pod `uid`."""
        pod = "%s/kubepods/besteffort/pod%s" % (CGROUP_PARENT, uid)
        leaf = "%s%s/%s" % (CGROUP_ROOT, pod, "e" * 64)
        os.makedirs(leaf)
        dirs = [leaf]
        while dirs[-1] != CGROUP_ROOT + CGROUP_PARENT:
            dirs.append(os.path.dirname(dirs[-1]))
        self.addCleanup(self.remove_cgroups, dirs)
        p = subprocess.Popen(harness._orphan_guard("KILL")
                             + ["ip", "netns", "exec", ns, "sleep", "300"],
                             stdin=subprocess.DEVNULL)
        harness._live_procs[p.pid] = p
        self.addCleanup(harness._stop_pid, p)
        with open(os.path.join(leaf, "cgroup.procs"), "w") as f:
            f.write(str(p.pid))

    @staticmethod
    def remove_cgroups(dirs):
        for d in dirs:  # leaf first
            try:
                os.rmdir(d)
            except OSError:
                pass  # a sibling pod's cgroup is still there

    # ---- helpers ---------------------------------------------------------------

    def traffic(self, addr, n, seed):
        """n connections to addr with known sizes; returns the expectations
        of the client's outbound and the server's inbound series, without the
        labels that name the pods (the caller adds them)."""
        plan = [(1000 + 37 * i, 500 + 11 * i, "normal") for i in range(n)]
        conns = harness.run_client(self.topo.client_ns, addr, PORT, plan, seed=seed)
        written = sum(HEADER_LEN + s for s, _, _ in plan)
        read = sum(r for _, r, _ in plan)
        got = [(c["outcome"], c["written"], c["read"]) for c in conns]
        want = [("eof", HEADER_LEN + s, r) for s, r, _ in plan]
        if got != want:
            raise RuntimeError("harness ground truth is inconsistent (not an agent problem): "
                               "%s, plan %s" % (got, want))
        return n, written, read

    @staticmethod
    def outbound(labels, *runs):
        """The client pod's outbound series with `labels`, counting `runs`."""
        n, written, read = (sum(r[i] for r in runs) for i in range(3))
        out = dict(labels, direction="outbound", peer="dst")
        return [Expect("tcp_open_total", out, n),
                Expect("tcp_close_total", dict(out, classification="success"), n),
                Expect("tcp_write_bytes_total", out, written),
                Expect("tcp_read_bytes_total", out, read)]

    @staticmethod
    def inbound(labels, *runs):
        """The server pod's inbound series with `labels`, counting `runs`."""
        n, written, read = (sum(r[i] for r in runs) for i in range(3))
        inb = dict(labels, direction="inbound", peer="src")
        return [Expect("tcp_open_total", inb, n),
                Expect("tcp_read_bytes_total", inb, written),
                Expect("tcp_write_bytes_total", inb, read)]

    def wait(self, expects):
        return harness.wait_for_expectations(self.agent, expects, self.baseline,
                                             timeout=TIMEOUT, settle=SETTLE,
                                             context=(WEB, "db-0"))

    def wait_until(self, what, predicate, timeout=TIMEOUT):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return
            time.sleep(0.2)
        _, _, ready = self.agent.get("/readyz")
        self.fail("not within %.0fs: %s\n/readyz: %s\n%s"
                  % (timeout, what, ready, self.agent.log_tail()))

    def metric(self, name, **labels):
        return self.agent.scrape().sum(name, labels)

    def wait_synced(self):
        self.wait_until("podtap_metadata_source_up{source=\"kubernetes\"} is 1",
                        lambda: self.metric("podtap_metadata_source_up", source="kubernetes") == 1)

    def wait_objects(self, resource, n):
        """Until the agent holds n objects of `resource`, then the agent's
        next metadata poll (once a second), which indexes them."""
        self.wait_until("%d %s held" % (n, resource), lambda: self.metric(
            "podtap_metadata_objects", source="kubernetes", resource=resource) == n)
        time.sleep(1.5)

    def outbound_label_sets(self, ex):
        """Every label set of the client pod's outbound tcp_open_total series
        that counted something since the baseline."""
        before = {tuple(sorted(s.labels.items())): s.value
                  for s in self.baseline.select("tcp_open_total", {"pod": WEB})}
        out = []
        for s in ex.select("tcp_open_total", {"pod": WEB, "direction": "outbound"}):
            key = tuple(sorted(s.labels.items()))
            if s.value > before.get(key, 0):
                out.append(dict(key))
        return sorted(out, key=lambda d: sorted(d.items()))

    # ---- the cases -----------------------------------------------------------------

    def test_a_owner_and_dst_labels(self):
        self.api.start()
        self.start_kube_agent()
        self.wait_synced()
        self.wait_objects("endpointslices", 1)
        ex = self.agent.scrape()
        for resource, n in (("pods", 3), ("replicasets", 1), ("services", 1),
                            ("endpointslices", 1)):
            self.assertEqual(ex.sum("podtap_metadata_objects",
                                    {"source": "kubernetes", "resource": resource}), n, resource)
        status, _, body = self.agent.get("/readyz")
        self.assertEqual(status, 200)
        self.assertRegex(body, r"kubernetes: pods: watching from resourceVersion \d+ "
                               r"\(3 objects\)")

        to_pod = self.traffic(self.topo.SERVER_IP4, 3, seed=11)
        to_svc = self.traffic(SVC_DB, 2, seed=12)
        ex = self.wait(self.outbound(dict(WEB_LABELS, **DST_DB_POD), to_pod)
                       + self.outbound(dict(WEB_LABELS, **dst_service("db"), dst_pod=""), to_svc)
                       + self.inbound(DB_LABELS, to_pod, to_svc))
        # Exactly these two label sets, nothing more or less on them. The
        # ClusterIP connection carries the Service's TCP authority (its port
        # is the Service's); the slice names its port "db" and the Service
        # leaves its one unnamed, so the pod address gives none.
        common = dict(WEB_LABELS, direction="outbound", peer="dst", tls="false")
        self.assertEqual(self.outbound_label_sets(ex),
                         sorted([dict(common, **DST_DB_POD),
                                 dict(common, **dst_service("db"),
                                      authority="db.shop.svc.cluster.local:%d" % PORT)],
                                key=lambda d: sorted(d.items())))
        # The client authenticated every request with the token, asked for
        # bookmarks, and listed each resource once.
        self.assertEqual(self.api.unauthorized(), 0)
        for resource in kube_replay.KIND_OF:
            self.assertEqual(len(self.api.lists(resource)), 1, resource)
            for q in self.api.watches(resource):
                self.assertEqual(q.get("allowWatchBookmarks"), "true")

    def test_b_breaks_gone_and_server_restart(self):
        self.api.start()
        self.start_kube_agent()
        self.wait_synced()
        api = self.api

        # A bookmark, then every watch breaks in the middle of an event line:
        # each resumes from the bookmark's resourceVersion, without a list.
        rv = api.bookmark()
        time.sleep(1.0)  # the bookmark reaches the agent
        api.break_watches()
        self.wait_until("every watch resumed at the bookmark's resourceVersion %d" % rv,
                        lambda: all(any(q.get("resourceVersion") == str(rv)
                                        for q in api.watches(r)) for r in kube_replay.KIND_OF))
        for resource in kube_replay.KIND_OF:
            self.assertEqual(len(api.lists(resource)), 1, resource)
        self.wait_until("watch restarts counted", lambda: self.metric(
            "podtap_metadata_watch_restarts_total", source="kubernetes", resource="pods") >= 1)
        self.assertGreaterEqual(self.metric("podtap_metadata_errors_total", source="kubernetes",
                                            reason="stream_broken"), 4)
        # What the resumed watch delivers is applied.
        api.put("services", service("extra", SVC_EXTRA))
        self.wait_objects("services", 2)
        t1 = self.traffic(SVC_EXTRA, 2, seed=21)
        self.wait(self.outbound(dict(WEB_LABELS, **dst_service("extra")), t1)
                  + self.inbound(DB_LABELS, t1))

        # History compacted, watches broken: the resumed watch gets an ERROR
        # event with a 410 Status, and the agent lists again.
        api.compact(as_event=True)
        api.break_watches()
        self.wait_until("a re-list of every resource after the 410 ERROR event",
                        lambda: all(len(api.lists(r)) == 2 for r in kube_replay.KIND_OF))
        self.wait_until("relists counted", lambda: self.metric(
            "podtap_metadata_relists_total", source="kubernetes", resource="services") == 1)
        self.wait_synced()
        self.assertGreaterEqual(self.metric("podtap_metadata_errors_total", source="kubernetes",
                                            reason="gone"), 4)

        # The server goes away: the agent keeps counting with the labels it has.
        api.stop()
        self.wait_until("source down", lambda: self.metric(
            "podtap_metadata_source_up", source="kubernetes") == 0)
        t2 = self.traffic(self.topo.SERVER_IP4, 2, seed=22)
        self.wait(self.outbound(dict(WEB_LABELS, **DST_DB_POD), t2)
                  + self.inbound(DB_LABELS, t1, t2))
        self.assertGreater(self.metric("podtap_metadata_errors_total", source="kubernetes",
                                       reason="connect"), 0)

        # While it is away the cluster changes and history is compacted; it
        # comes back answering the old resourceVersion with HTTP 410.
        api.delete("services", "shop", "extra")
        api.put("services", service("extra-v2", SVC_EXTRA))
        api.compact(as_event=False)
        api.start()
        self.wait_until("a third list of services after the HTTP 410",
                        lambda: len(api.lists("services")) == 3)
        self.wait_synced()
        self.wait_objects("services", 2)
        t3 = self.traffic(SVC_EXTRA, 3, seed=23)
        self.wait(self.outbound(dict(WEB_LABELS, **dst_service("extra-v2")), t3)
                  + self.outbound(dict(WEB_LABELS, **dst_service("extra")), t1)
                  + self.outbound(dict(WEB_LABELS, **DST_DB_POD), t2)
                  + self.inbound(DB_LABELS, t1, t2, t3))
        self.assertEqual(api.unauthorized(), 0)

    def test_c_api_absent_at_start(self):
        self.start_kube_agent()  # ready: counting does not wait for the API
        status, _, body = self.agent.get("/readyz")
        self.assertEqual(status, 200)
        self.wait_until("connect errors counted", lambda: self.metric(
            "podtap_metadata_errors_total", source="kubernetes", reason="connect") > 0)
        self.assertEqual(self.metric("podtap_metadata_source_up", source="kubernetes"), 0)
        _, _, body = self.agent.get("/readyz")
        self.assertIn("pods: connect: list: Couldn't connect to server", body)

        # Labels from the pods file only: no owner, no Service.
        plain_web = {"namespace": "shop", "pod": WEB, "deployment": "", "replicaset": ""}
        plain_db = {"namespace": "shop", "pod": "db-0", "statefulset": ""}
        plain_dst = {"dst_namespace": "shop", "dst_pod": "db-0", "dst_statefulset": "",
                     "dst_service": ""}
        t1 = self.traffic(self.topo.SERVER_IP4, 2, seed=31)
        self.wait(self.outbound(dict(plain_web, **plain_dst), t1) + self.inbound(plain_db, t1))

        self.api.start()
        self.wait_synced()
        self.wait_objects("pods", 3)
        t2 = self.traffic(self.topo.SERVER_IP4, 3, seed=32)
        self.wait(self.outbound(dict(WEB_LABELS, **DST_DB_POD), t2)
                  + self.inbound(DB_LABELS, t2)
                  + self.outbound(dict(plain_web, **plain_dst), t1)
                  + self.inbound(plain_db, t1))


    def test_d_proc_fallback_without_runtime(self):
        self.api.start()
        self.pod_process(self.topo.client_ns, WEB_UID)
        self.pod_process(self.topo.server_ns, DB_UID)
        self.start_kube_agent(pods_source=["--cri-socket",
                                           os.path.join(self.workdir, "no-runtime.sock")])
        self.wait_synced()
        self.wait_objects("pods", 3)
        _, _, body = self.agent.get("/readyz")
        self.assertIn("local pods from processes' cgroups under /proc", body)
        self.assertGreater(self.metric("podtap_metadata_errors_total", source="cri",
                                       reason="read"), 0)
        self.assertEqual(self.metric("podtap_metadata_pods"), 3)  # 2 found by uid, 1 remote
        to_pod = self.traffic(self.topo.SERVER_IP4, 3, seed=41)
        to_svc = self.traffic(SVC_DB, 2, seed=42)
        self.wait(self.outbound(dict(WEB_LABELS, **DST_DB_POD), to_pod)
                  + self.outbound(dict(WEB_LABELS, **dst_service("db"), dst_pod=""), to_svc)
                  + self.inbound(DB_LABELS, to_pod, to_svc))

    def test_e_hanging_runtime_and_slow_api(self):
        self.api.delay = 0.8
        self.api.start()
        self.pod_process(self.topo.client_ns, WEB_UID)
        self.pod_process(self.topo.server_ns, DB_UID)
        sock, accepted = self.hanging_runtime()
        # Four pages each: a second of this traffic does not fit, so an event
        # thread that waited on a source would lose records.
        self.start_kube_agent(pods_source=["--cri-socket", sock],
                              extra_args=["--ringbuf-size", "16384",
                                          "--payload-ringbuf-size", "16384"])
        self.wait_synced()
        self.wait_objects("pods", 3)
        self.assertGreater(len(accepted), 0, "the agent never connected to the runtime socket")
        self.assertGreater(self.metric("podtap_metadata_errors_total", source="cri",
                                       reason="read"), 0)
        # ~5 s of connections, so that several CRI calls wait out their
        # deadline and several slow API answers arrive meanwhile.
        runs, started = [], time.monotonic()
        seed = 50
        while time.monotonic() - started < 5 and seed < 90:
            runs.append(self.traffic(self.topo.SERVER_IP4, 20, seed=seed))
            seed += 1
        self.wait(self.outbound(dict(WEB_LABELS, **DST_DB_POD), *runs)
                  + self.inbound(DB_LABELS, *runs))
        # TCP totals are exact even past a full ring (closes rebuild lost
        # opens); that the rings were drained all along shows here.
        ex = self.agent.scrape()
        lost = {r: ex.sum("podtap_events_lost_total", {"reason": r})
                - self.baseline.sum("podtap_events_lost_total", {"reason": r})
                for r in ("ringbuf_full", "payload_ringbuf_full", "close_map_full")}
        self.assertEqual(lost, dict.fromkeys(lost, 0),
                         "records lost while the sources were slow (%d runs)" % len(runs))


if __name__ == "__main__":
    unittest.main(verbosity=2)
