#!/usr/bin/python3
"""Real-kernel end-to-end tests of pod attribution from a real container
runtime: the test starts its own containerd (config, root, state and socket in
a temporary folder, a CNI bridge of its own), imports a tiny image built from
busybox-static, and creates real pod sandboxes and containers through the CRI
API with Debian's python3-grpcio and podtap's own proto/cri.proto. The agent
gets nothing but --cri-socket; busybox httpd in one pod and busybox wget in the
other must show up under the right pods, inbound and outbound, exactly.

Ground truth: the bytes busybox wget sends are recorded once by a listener on
the bridge, and the bytes httpd answers with are read once by a raw client from
the host, both before any baseline scrape; every request after that is the
same. The cases share one containerd and its pods and run in name order:
test_a needs the runtime not started yet (it starts it under a running agent).

Run as root: tests/e2e/run.sh test_cri_pods.CriPodsTest, or /usr/bin/python3
tests/e2e/test_cri_pods.py.
"""

import atexit
import hashlib
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import Expect  # noqa: E402

CONTAINERD = "/usr/bin/containerd"
CTR = "/usr/bin/ctr"
BUSYBOX = "/bin/busybox"
PROTO = os.path.join(harness.REPO, "proto", "cri.proto")
IMAGE = "podtap.local/busybox:e2e"
BRIDGE = "pte2e%d" % (os.getpid() % 100000)
CNI_NET = "podtap-e2e-%d" % os.getpid()
SUBNET, GATEWAY = "10.231.88.0/24", "10.231.88.1"
# One-digit last octets only: a wget request's Host header then has the same
# length for every pod and for the gateway.
RANGE = ("10.231.88.2", "10.231.88.9")
HTTP_PORT = 8080
FILES = {"small": 1000, "large": 150000}
SETTLE = 2.5
TIMEOUT = 15.0
ATTRIBUTION_DEADLINE = 2.0  # the issue: a pod that starts is attributed within 2 s
# kubelet gives every pod a cgroup "pod<uid>" holding its containers'; the
# host-network pod gets one the same way, under a parent of this test's own.
CGROUP_PARENT = "/podtap-e2e-%d" % os.getpid()


def build_image_tar(path):
    """A docker-archive with one layer: /bin/busybox and its applet links."""
    applets = subprocess.run([BUSYBOX, "--list"], capture_output=True, text=True,
                             check=True).stdout.split()
    layer = io.BytesIO()
    with tarfile.open(fileobj=layer, mode="w") as t:
        for d in ("bin", "tmp", "www", "etc"):
            info = tarfile.TarInfo(d)
            info.type, info.mode = tarfile.DIRTYPE, 0o1777 if d == "tmp" else 0o755
            t.addfile(info)
        t.add(BUSYBOX, "bin/busybox")
        for a in applets:
            if a == "busybox":
                continue
            info = tarfile.TarInfo("bin/" + a)
            info.type, info.linkname = tarfile.SYMTYPE, "busybox"
            t.addfile(info)
        for name, size in FILES.items():
            data = bytes((i * 7 + 3) % 251 for i in range(size))
            info = tarfile.TarInfo("www/" + name)
            info.size, info.mode, info.mtime = size, 0o644, 1700000000
            t.addfile(info, io.BytesIO(data))
    write_docker_archive(path, IMAGE, layer.getvalue(), ["/bin/sleep", "2147483647"])


def write_docker_archive(path, tag, layer_bytes, cmd):
    """An image of one layer (a tar) as a docker-archive that `ctr images
    import` takes."""
    diff_id = "sha256:" + hashlib.sha256(layer_bytes).hexdigest()
    config = json.dumps({
        "architecture": "amd64", "os": "linux",
        "config": {"Env": ["PATH=/bin"], "Cmd": cmd},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
    }).encode()
    config_name = hashlib.sha256(config).hexdigest() + ".json"
    manifest = json.dumps([{"Config": config_name, "RepoTags": [tag],
                            "Layers": ["layer/layer.tar"]}]).encode()
    with tarfile.open(path, "w") as t:
        for name, data in ((config_name, config), ("layer/layer.tar", layer_bytes),
                           ("manifest.json", manifest)):
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644
            t.addfile(info, io.BytesIO(data))


def compile_proto(out_dir):
    """proto/cri.proto -> cri_pb2 / cri_pb2_grpc, imported from out_dir."""
    harness.sh([harness.PY, "-m", "grpc_tools.protoc", "-I", os.path.dirname(PROTO),
                "--python_out", out_dir, "--grpc_python_out", out_dir, PROTO])
    sys.path.insert(0, out_dir)
    import cri_pb2  # noqa: E402
    import cri_pb2_grpc  # noqa: E402
    return cri_pb2, cri_pb2_grpc


class Containerd:
    """containerd with its own config, root, state, socket and CNI network,
    started and stopped by PID."""

    def __init__(self, workdir, image_tar):
        self.dir = workdir
        self.sock = os.path.join(workdir, "containerd.sock")
        self.image_tar = image_tar
        self.popen = None
        self.cni_dir = os.path.join(workdir, "cni")
        os.makedirs(self.cni_dir, exist_ok=True)
        with open(os.path.join(self.cni_dir, "10-podtap-e2e.conflist"), "w") as f:
            json.dump({"cniVersion": "1.0.0", "name": CNI_NET, "plugins": [{
                "type": "bridge", "bridge": BRIDGE, "isGateway": True, "ipMasq": False,
                "ipam": {"type": "host-local", "ranges": [[{
                    "subnet": SUBNET, "rangeStart": RANGE[0], "rangeEnd": RANGE[1],
                    "gateway": GATEWAY}]]}}]}, f)
        self.config = os.path.join(workdir, "config.toml")
        with open(self.config, "w") as f:
            f.write("""version = 2
root = "{d}/root"
state = "{d}/state"
[grpc]
  address = "{sock}"
[ttrpc]
  address = "{sock}.ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  path = "{d}/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{image}"
  restrict_oom_score_adj = true
  disable_apparmor = true
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{cni}"
""".format(d=workdir, sock=self.sock, image=IMAGE, cni=self.cni_dir))

    def start(self):
        self.log_path = os.path.join(self.dir, "containerd.log")
        self._log = open(self.log_path, "a")
        self.popen = subprocess.Popen(harness._orphan_guard("TERM") + [
            CONTAINERD, "--config", self.config, "--log-level", "info"],
            stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        harness._live_procs[self.popen.pid] = self.popen
        deadline = time.monotonic() + 30
        while not os.path.exists(self.sock):
            if self.popen.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("containerd did not start; log %s" % self.log_path)
            time.sleep(0.1)
        harness.sh([CTR, "--address", self.sock, "-n", "k8s.io", "images", "import",
                    self.image_tar], timeout=60)
        harness.log("containerd pid %d on %s" % (self.popen.pid, self.sock))

    def stop(self):
        if self.popen is not None:
            harness._stop_pid(self.popen, signal.SIGTERM, 15)
            self._log.close()
            self.popen = None


class CriClient:
    """Pods and containers through the CRI API, removed again by cleanup()."""

    def __init__(self, pb, pb_grpc, sock):
        import grpc
        self.pb = pb
        self.channel = grpc.insecure_channel("unix://" + sock)
        self.rt = pb_grpc.RuntimeServiceStub(self.channel)
        self.sandboxes = []

    def run_pod(self, ns, name, uid, labels, command, host_network=False):
        """A ready sandbox with one running container; returns (sandbox id,
        container id, pod IP)."""
        pb = self.pb
        linux = None
        if host_network:
            linux = pb.LinuxPodSandboxConfig(
                cgroup_parent="%s/pod%s" % (CGROUP_PARENT, uid),
                security_context=pb.LinuxSandboxSecurityContext(
                    namespace_options=pb.NamespaceOption(network=pb.NODE)))
        config = pb.PodSandboxConfig(
            metadata=pb.PodSandboxMetadata(name=name, uid=uid, namespace=ns, attempt=0),
            # Host-network pods share the host's UTS namespace: no hostname.
            hostname="" if host_network else name[:63], labels=labels, linux=linux,
            annotations={"podtap.e2e/owner-pid": str(os.getpid())})
        sid = self.rt.RunPodSandbox(pb.RunPodSandboxRequest(config=config),
                                    timeout=60).pod_sandbox_id
        self.sandboxes.append(sid)
        cid = self.rt.CreateContainer(pb.CreateContainerRequest(
            pod_sandbox_id=sid, sandbox_config=config,
            config=pb.ContainerConfig(metadata=pb.ContainerMetadata(name="main"),
                                      image=pb.ImageSpec(image=IMAGE), command=command)),
            timeout=60).container_id
        self.rt.StartContainer(pb.StartContainerRequest(container_id=cid), timeout=60)
        status = self.rt.PodSandboxStatus(pb.PodSandboxStatusRequest(pod_sandbox_id=sid),
                                          timeout=10).status
        return sid, cid, status.network.ip

    def wait_reconnected(self, timeout=10):
        """After the runtime restarted: the channel's old connection is dead,
        and the first call on it can fail with UNAVAILABLE (broken pipe)
        before gRPC reconnects. Version is idempotent: call it until it
        answers, so that no non-idempotent call (ExecSync) is the one lost."""
        import grpc
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.rt.Version(self.pb.VersionRequest(), timeout=2)
                return
            except grpc.RpcError as e:
                if time.monotonic() > deadline:
                    raise RuntimeError("CRI client did not reconnect: %s" % e) from e
                time.sleep(0.2)

    def exec(self, cid, cmd, timeout=30):
        r = self.rt.ExecSync(self.pb.ExecSyncRequest(container_id=cid, cmd=cmd, timeout=timeout),
                             timeout=timeout + 5)
        if r.exit_code != 0:
            raise RuntimeError("exec %s: exit %d, stderr %r" % (cmd, r.exit_code, r.stderr))
        return r.stdout

    def remove_pod(self, sid):
        pb = self.pb
        self.rt.StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=sid), timeout=60)
        self.rt.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=sid), timeout=60)
        self.sandboxes.remove(sid)

    def cleanup(self):
        for sid in list(self.sandboxes):
            try:
                self.remove_pod(sid)
            except Exception as e:  # noqa: BLE001 - best effort, logged
                harness.log("removing sandbox %s: %s" % (sid, e))
        self.channel.close()


def record_request(bind_ip, port, ready):
    """Accepts one connection, returns the request bytes up to the blank line
    and answers an empty 200."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as srv:
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        srv.bind((bind_ip, port))
        srv.listen(1)
        srv.settimeout(30)
        ready.set()
        conn, _ = srv.accept()
        with conn:
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(4096)
                if not chunk:
                    break
                data += chunk
            conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            return data


def fetch_raw(ip, port, request):
    """Sends request bytes, returns every byte of the answer up to EOF."""
    with socket.create_connection((ip, port), timeout=10) as c:
        c.sendall(request)
        out = b""
        while True:
            chunk = c.recv(65536)
            if not chunk:
                return out
            out += chunk


class CriPodsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if os.geteuid() != 0:
            raise unittest.SkipTest("needs root (containerd, eBPF)")
        for tool in (CONTAINERD, CTR, BUSYBOX, "/usr/lib/cni/bridge", "/usr/sbin/runc"):
            if not os.path.exists(tool):
                raise unittest.SkipTest("%s missing (make deps installs it)" % tool)
        cls.had_run_containerd = os.path.exists("/run/containerd")
        cls.had_var_lib_cni = os.path.exists("/var/lib/cni")
        cls.had_k8s_cgroup = os.path.exists("/sys/fs/cgroup/unified/k8s.io")
        cls.dir = tempfile.mkdtemp(prefix="ptE2e-cri-")
        cls.cleaned = False
        cls.addClassCleanup(cls._cleanup_class)
        # Also when the run is interrupted (class cleanups do not run then);
        # before harness' own exit hook, which stops containerd.
        atexit.register(cls._cleanup_class)
        cls.pb, cls.pb_grpc = compile_proto(os.path.join(cls.dir))
        cls.image_tar = os.path.join(cls.dir, "busybox.tar")
        build_image_tar(cls.image_tar)
        cls.containerd = Containerd(os.path.join(cls.dir, "containerd"), cls.image_tar)
        cls.cri = None
        cls.pods = {}  # role -> dict(name, sid, cid, ip, labels)

    @classmethod
    def _cleanup_class(cls):
        if cls.cleaned:
            return
        cls.cleaned = True
        if cls.cri is not None:
            cls.cri.cleanup()
        cls.containerd.stop()
        harness.sh(["ip", "link", "del", BRIDGE], check=False)
        # containerd and the CNI plugins write a few default paths whatever
        # the config says; remove what this run created.
        shutil.rmtree(os.path.join("/var/lib/cni/networks", CNI_NET), ignore_errors=True)
        if not cls.had_var_lib_cni:
            shutil.rmtree("/var/lib/cni", ignore_errors=True)
        if not cls.had_run_containerd:
            shutil.rmtree("/run/containerd", ignore_errors=True)
        # runc leaves the parents of the containers' cgroups in every
        # hierarchy; empty cgroups go with rmdir, children first.
        parents = [CGROUP_PARENT] + ([] if cls.had_k8s_cgroup else ["/k8s.io"])
        for hierarchy in os.listdir("/sys/fs/cgroup"):
            for parent in parents:
                top = "/sys/fs/cgroup/%s%s" % (hierarchy, parent)
                for d, _, _ in sorted(os.walk(top), key=lambda w: -len(w[0])):
                    try:
                        os.rmdir(d)
                    except OSError as e:
                        harness.log("cgroup %s left: %s" % (d, e))
        shutil.rmtree(cls.dir, ignore_errors=True)

    # ---- the runtime and the pods ------------------------------------------

    @classmethod
    def ensure_runtime(cls):
        """containerd running, the client and server pods up, ground truth
        of one wget measured (once per class)."""
        if cls.containerd.popen is None:
            cls.containerd.start()
        if cls.cri is None:
            cls.cri = CriClient(cls.pb, cls.pb_grpc, cls.containerd.sock)
        if not cls.pods:
            cls.pods["server"] = cls.start_server_pod("api-5f7c9d8b6-abcde", "uid-api-1")
            cls.pods["client"] = cls.start_pod(
                "web-7d4b9c6f5-x2k9p", "uid-web-1",
                {"app": "web", "pod-template-hash": "7d4b9c6f5"}, ["/bin/sleep", "2147483647"])
            cls.measure_ground_truth()

    @classmethod
    def start_pod(cls, name, uid, labels, command, host_network=False):
        sid, cid, ip = cls.cri.run_pod("shop", name, uid, labels, command, host_network)
        harness.log("pod shop/%s: sandbox %s, IP %s" % (name, sid[:12], ip))
        return {"name": name, "sid": sid, "cid": cid, "ip": ip, "labels": labels,
                "started": time.monotonic()}

    @classmethod
    def start_server_pod(cls, name, uid, wait_listening=True):
        pod = cls.start_pod(name, uid, {"app": "api", "pod-template-hash": "5f7c9d8b6"},
                            ["/bin/httpd", "-f", "-p", str(HTTP_PORT), "-h", "/www"])
        if wait_listening:
            cls.wait_listening(pod)
        return pod

    @staticmethod
    def wait_listening(pod, port=HTTP_PORT):
        """Until httpd accepts (one connection from the host)."""
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection((pod["ip"], port), timeout=1).close()
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    @classmethod
    def measure_ground_truth(cls):
        """Per file: (bytes wget sends, bytes httpd answers). Measured with no
        agent running."""
        cls.truth = {}
        cls.truth_requests = {}  # name -> the request bytes wget sends the server pod
        for name in FILES:
            ready = threading.Event()
            result = {}
            t = threading.Thread(target=lambda: result.update(
                req=record_request(GATEWAY, HTTP_PORT, ready)))
            t.start()
            ready.wait(10)
            cls.wget(GATEWAY, name)
            t.join(30)
            request = result["req"]
            to_server = request.replace(("%s:%d" % (GATEWAY, HTTP_PORT)).encode(),
                                        ("%s:%d" % (cls.pods["server"]["ip"], HTTP_PORT)).encode())
            assert len(to_server) == len(request), "host header length differs"
            answer = fetch_raw(cls.pods["server"]["ip"], HTTP_PORT, to_server)
            assert answer.startswith(b"HTTP/1.") and b" 200 " in answer.split(b"\r\n")[0], answer
            assert answer.endswith(bytes((i * 7 + 3) % 251 for i in range(FILES[name]))[-64:])
            cls.truth[name] = (len(request), len(answer))
            cls.truth_requests[name] = to_server
            harness.log("ground truth of one wget of /%s: request %d bytes, answer %d bytes"
                        % (name, len(request), len(answer)))

    @classmethod
    def wget(cls, ip, name, port=HTTP_PORT):
        # No -T: busybox-static 1.35 wget crashes with it; ExecSync has a timeout.
        cls.cri.exec(cls.pods["client"]["cid"],
                     ["/bin/wget", "-q", "-O", "/dev/null",
                      "http://%s:%d/%s" % (ip, port, name)])

    # ---- the agent -----------------------------------------------------------

    def start_agent(self, wait_ready=True):
        # The runtime is the only pod source: no pods file.
        workdir = os.path.join(self.dir, "agent-" + self.id().rsplit(".", 1)[-1])
        return harness.start_test_agent(self, workdir, [], wait_ready=wait_ready,
                                        pods_source=["--cri-socket", self.containerd.sock])

    def wait_attributed(self, pods):
        """Until the agent has picked up every pod, each within
        ATTRIBUTION_DEADLINE of its start; returns the slowest latency."""
        worst = 0.0
        for pod in pods:
            needle = "CRI: pod shop/%s " % pod["name"]
            while needle not in self.agent.log_text():
                self.assertLess(time.monotonic() - pod["started"], ATTRIBUTION_DEADLINE,
                                "pod %s not picked up in time\n%s"
                                % (pod["name"], self.agent.log_tail()))
                time.sleep(0.05)
            worst = max(worst, time.monotonic() - pod["started"])
        harness.log("pods picked up at most %.2fs after they started" % worst)
        return worst

    def identity(self, pod):
        h = pod["labels"]["pod-template-hash"]
        rs = pod["name"].rsplit("-", 1)[0]
        return {"namespace": "shop", "pod": pod["name"], "pod_template_hash": h,
                "replicaset": rs, "deployment": rs[: -len(h) - 1]}

    def traffic_expects(self, client, server, gets, probes=0):
        """Exact transport and request counts for `gets` (file names fetched
        once each) from the client pod to the server pod, after `probes`
        empty connections from the host to the server pod."""
        sent = sum(self.truth[g][0] for g in gets)
        answered = sum(self.truth[g][1] for g in gets)
        n = len(gets)
        out = dict(self.identity(client), direction="outbound")
        inb = dict(self.identity(server), direction="inbound")
        ex = []
        for lbl, written, read, conns in ((out, sent, answered, n),
                                          (inb, answered, sent, n + probes)):
            ex += [Expect("tcp_open_total", lbl, conns),
                   Expect("tcp_close_total", dict(lbl, classification="success"), conns),
                   Expect("tcp_write_bytes_total", lbl, written),
                   Expect("tcp_read_bytes_total", lbl, read),
                   Expect("tcp_open_connections", lbl, 0, absolute=True),
                   Expect("request_total", lbl, n),
                   Expect("response_total", dict(lbl, status_code="200"), n)]
        # Outbound series name the server pod as the destination.
        ex.append(Expect("tcp_open_total", dict(out, dst_namespace="shop", dst_pod=server["name"],
                                                dst_deployment="api"), n))
        ex += [Expect("tcp_open_total", dict(self.identity(client), direction="inbound"), 0),
               Expect("tcp_open_total", dict(self.identity(server), direction="outbound"), 0)]
        return ex

    def wait_equal(self, expects, baseline=None):
        return harness.wait_for_expectations(
            self.agent, expects, baseline if baseline is not None else self.baseline,
            timeout=TIMEOUT, settle=SETTLE,
            context=tuple(p["name"] for p in self.pods.values()))

    def run_gets(self, gets, server=None, port=HTTP_PORT):
        ip = (server or self.pods["server"])["ip"]
        for g in gets:
            self.wget(ip, g, port)

    # ---- the cases -------------------------------------------------------------

    def test_a_runtime_absent_at_start(self):
        """The agent starts before the runtime's socket exists: not ready,
        metadata errors counted; once containerd and the pods are up,
        attribution appears without a restart."""
        if self.containerd.popen is not None:
            self.skipTest("containerd already running (this case must run first)")
        agent = self.start_agent(wait_ready=False)
        deadline = time.monotonic() + harness.READY_TIMEOUT
        while True:
            status, _, body = agent.get("/readyz")
            if status == 503 and "CRI" in body:
                break
            self.assertLess(time.monotonic(), deadline, "readyz %s %r" % (status, body))
            time.sleep(0.2)
        harness.log("readyz while the runtime is absent: %s %s" % (status, body.strip()))
        time.sleep(1.5)
        errors = agent.scrape().sum("podtap_metadata_errors_total")
        self.assertGreaterEqual(errors, 1)
        self.ensure_runtime()
        agent.wait_ready()
        self.wait_attributed(self.pods.values())
        self.baseline = agent.scrape()
        gets = ["small", "large", "small"]
        self.run_gets(gets)
        self.wait_equal(self.traffic_expects(self.pods["client"], self.pods["server"], gets))

    def test_b_traffic_exact(self):
        self.ensure_runtime()
        self.start_agent()
        gets = ["small"] * 3 + ["large"] * 2
        self.run_gets(gets)
        self.wait_equal(self.traffic_expects(self.pods["client"], self.pods["server"], gets)
                        + [Expect("podtap_metadata_pods", {}, len(self.pods), absolute=True)])

    def test_c_pod_replaced(self):
        """The server pod is deleted and another one started while the agent
        runs: the new pod's traffic is attributed to it within the deadline,
        and nothing more to the old one."""
        self.ensure_runtime()
        self.start_agent()
        old = self.pods["server"]
        self.cri.remove_pod(old["sid"])
        new = self.start_server_pod("api-5f7c9d8b6-fghij", "uid-api-2", wait_listening=False)
        self.pods["server"] = new
        # The new sandbox may get the old one's network namespace inode (the
        # kernel reuses them at once): until the agent's next poll, traffic in
        # it still counts for the old pod. Traffic starts once it is picked up.
        self.wait_attributed([new])
        self.wait_listening(new)
        gets = ["large", "small"]
        self.run_gets(gets, new)
        ex = self.traffic_expects(self.pods["client"], new, gets, probes=1)
        ex += [Expect("tcp_open_total", dict(self.identity(old), direction="inbound"), 0),
               Expect("tcp_open_total", dict(self.identity(self.pods["client"]),
                                             direction="outbound", dst_pod=old["name"]), 0)]
        self.wait_equal(ex)


    def test_d_host_network_pod(self):
        """A pod in the host's network namespace is told apart from host
        processes by its containers' cgroup: its httpd, listening on the
        bridge address in the host namespace, counts inbound for it."""
        self.ensure_runtime()
        self.start_agent()
        port = harness.free_port()
        node = self.start_pod("node-agent-x7k2p", "uid-node-agent-1",
                              {"app": "node-agent", "controller-revision-hash": "6d5f",
                               "pod-template-generation": "1"},
                              ["/bin/httpd", "-f", "-p", "%s:%d" % (GATEWAY, port), "-h", "/www"],
                              host_network=True)
        self.pods["hostnet"] = node
        self.wait_attributed([node])
        # Traffic from the host to it (the readiness probe) counts inbound for
        # it as well; only traffic from the client pod is measured below.
        self.wait_listening(dict(node, ip=GATEWAY), port)
        gets = ["small", "large"]
        self.run_gets(gets, dict(node, ip=GATEWAY), port)
        # The Host header names this port instead of HTTP_PORT.
        extra = len(str(port)) - len(str(HTTP_PORT))
        sent = sum(self.truth[g][0] + extra for g in gets)
        answered = sum(self.truth[g][1] for g in gets)
        inb = {"namespace": "shop", "pod": node["name"], "daemonset": "node-agent",
               "direction": "inbound"}
        out = dict(self.identity(self.pods["client"]), direction="outbound")
        n = len(gets)
        ex = [Expect("tcp_open_total", inb, n + 1),
              Expect("tcp_close_total", dict(inb, classification="success"), n + 1),
              Expect("tcp_read_bytes_total", inb, sent),
              Expect("tcp_write_bytes_total", inb, answered),
              Expect("request_total", inb, n),
              Expect("tcp_open_total", out, n),
              Expect("tcp_write_bytes_total", out, sent),
              Expect("tcp_read_bytes_total", out, answered),
              Expect("request_total", out, n),
              Expect("tcp_open_total", dict(inb, direction="outbound"), 0)]
        self.wait_equal(ex)

    def test_e_runtime_restart(self):
        """containerd goes away while the agent runs: the pods keep running,
        their traffic keeps its labels (the last good list), errors are
        counted; containerd comes back and the agent reconnects by itself."""
        self.ensure_runtime()
        self.start_agent()
        server = self.pods["server"]
        request = self.truth_requests["small"]
        self.containerd.stop()
        deadline = time.monotonic() + 5
        while self.agent.scrape().sum("podtap_metadata_errors_total") < 1:
            self.assertLess(time.monotonic(), deadline, "no metadata error counted")
            time.sleep(0.2)
        # No ExecSync without the runtime: the host talks to the server pod.
        n = 3
        for _ in range(n):
            answer = fetch_raw(server["ip"], HTTP_PORT, request)
            self.assertEqual(len(answer), self.truth["small"][1])
        inb = dict(self.identity(server), direction="inbound")
        self.wait_equal([Expect("tcp_open_total", inb, n),
                         Expect("tcp_read_bytes_total", inb, n * len(request)),
                         Expect("tcp_write_bytes_total", inb, n * self.truth["small"][1]),
                         Expect("request_total", inb, n),
                         Expect("podtap_metadata_pods", {}, len(self.pods), absolute=True)])
        baseline = self.agent.scrape()
        self.containerd.start()
        deadline = time.monotonic() + ATTRIBUTION_DEADLINE + 1
        while self.agent.log_text().count("CRI: the container runtime at") < 2:
            self.assertLess(time.monotonic(), deadline, "agent did not reconnect\n"
                            + self.agent.log_tail())
            time.sleep(0.1)
        self.cri.wait_reconnected()
        gets = ["large"]
        self.run_gets(gets)
        self.wait_equal(self.traffic_expects(self.pods["client"], server, gets), baseline)


if __name__ == "__main__":
    unittest.main(verbosity=2)
