#!/usr/bin/python3
"""The DaemonSet's pod on a real container runtime and kernel: the agent runs
in a container that the test's own containerd creates through CRI the way
kubelet would from deploy/daemonset (rendered with `kubectl kustomize`): its
command, arguments and environment, its host mounts with their read-only and
propagation settings, its ConfigMap, and its security context (capabilities
over drop ALL, not privileged, uid 0, read-only root filesystem, seccomp
RuntimeDefault, host network, kubelet's masked and read-only paths).

Everything else is test_cri_pods.CriPodsTest: the same containerd, pods and
exact ground truth, so the traffic cases run unchanged against the agent in
its pod; the agent's own pod is one more pod the runtime lists. Two cases
cannot: the runtime absent or restarted under a running agent, since here the
runtime runs the agent. test_f adds what only the pod can show: the kernel
sees exactly the DaemonSet's capabilities and seccomp on the agent process;
live byte counters, read over sock_diag after entering a pod's network
namespace (SYS_ADMIN, under seccomp), count a connection before it closes;
and the TLS probes find a libssl that only a root process with every
capability maps, through its /proc (hostPID, SYS_PTRACE).

The image holds the agent binary and the shared libraries it loads, from
this machine's Debian 12 packages: the ones the Dockerfile's runtime stage
installs (no container engine here builds the Dockerfile itself). The agent
listens on a free loopback port instead of the DaemonSet's :4191, and the
CRI socket mounted is the test's containerd's.

Run as root: tests/e2e/run.sh test_deploy_pod.DeployPodTest.
"""

import io
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import tarfile
import time
import unittest

import yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
import test_cri_pods  # noqa: E402
from harness import Expect  # noqa: E402

AGENT_IMAGE = "podtap.local/podtap:e2e"
CLI = os.environ.get("PODTAP_CLI", os.path.join(harness.REPO, "build", "podtap"))
DEPLOY_DIR = os.path.join(harness.REPO, "deploy", "daemonset")
# Bit numbers in /proc/PID/status CapEff (linux/capability.h).
CAP_BITS = {"SYS_PTRACE": 19, "SYS_ADMIN": 21, "PERFMON": 38, "BPF": 39}
# What kubelet passes for a container with the default procMount.
KUBELET_MASKED_PATHS = [
    "/proc/asound", "/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
    "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi", "/sys/firmware",
    "/sys/devices/virtual/powercap"]
KUBELET_READONLY_PATHS = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]


def render():
    """The DaemonSet and the ConfigMaps (by name) of deploy/daemonset."""
    text = harness.sh(["kubectl", "kustomize", DEPLOY_DIR]).stdout
    objects = list(yaml.safe_load_all(text))
    [ds] = [o for o in objects if o["kind"] == "DaemonSet"]
    configmaps = {o["metadata"]["name"]: o for o in objects if o["kind"] == "ConfigMap"}
    return ds, configmaps


def build_agent_image_tar(path, command):
    """A docker-archive of the agent at `command` and every shared library
    ldd says it loads, each at the path the loader looks for it."""
    ldd = harness.sh(["ldd", harness.AGENT]).stdout
    libraries = re.findall(r"(/\S+) \(0x[0-9a-f]+\)", ldd)
    if not libraries:
        raise RuntimeError("ldd found no libraries in %s:\n%s" % (harness.AGENT, ldd))
    layer = io.BytesIO()
    with tarfile.open(fileobj=layer, mode="w") as t:
        dirs = set()
        for target in libraries + [command]:
            parts = target.strip("/").split("/")[:-1]
            for i in range(1, len(parts) + 1):
                d = "/".join(parts[:i])
                if d not in dirs:
                    dirs.add(d)
                    info = tarfile.TarInfo(d)
                    info.type, info.mode = tarfile.DIRTYPE, 0o755
                    t.addfile(info)
        for lib in libraries:
            t.add(os.path.realpath(lib), arcname=lib.lstrip("/"))
        t.add(harness.AGENT, arcname=command.lstrip("/"))
    test_cri_pods.write_docker_archive(path, AGENT_IMAGE, layer.getvalue(), [command])


def make_query_secret(directory, items, mode):
    """Secret podtap-query's files as kubelet projects them, made as
    docs/deploy.md says: a self-signed certificate naming podtap-agent, its
    key, a random token. Returns {item: path}."""
    os.makedirs(directory, exist_ok=True)
    paths = {i: os.path.join(directory, i) for i in items}
    if set(items) != {"tls.crt", "tls.key", "token"}:
        raise AssertionError("secret items %s: expected tls.crt, tls.key, token" % items)
    harness.sh(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1", "-subj", "/CN=podtap-agent",
                "-addext", "subjectAltName=DNS:podtap-agent", "-keyout", paths["tls.key"],
                "-out", paths["tls.crt"]])
    with open(paths["token"], "w") as f:
        f.write(secrets.token_hex(32) + "\n")
    for path in paths.values():
        os.chmod(path, mode)
    return paths


class _ContainerProcess:
    """What harness.Agent needs of a Popen: poll() is None while the agent's
    process (host PID) lives."""

    def __init__(self, pid):
        self.pid = pid
        self.returncode = None

    def poll(self):
        if self.returncode is None and not os.path.exists("/proc/%d" % self.pid):
            self.returncode = "(exited; see the container log)"
        return self.returncode


class PodAgent(harness.Agent):
    """The agent in a pod made from the rendered DaemonSet, through CRI;
    stopped with StopContainer (SIGTERM, as kubelet does) and removed."""

    def __init__(self, workdir, cri, ds, configmaps, cri_socket):
        self.workdir = workdir
        self.cri = cri
        self.port = harness.free_port()
        self.log_path = os.path.join(workdir, "agent.log")
        self.popen = None
        self.exit_code = None
        self.sid = self.cid = None
        self.pod = {"name": "podtap-x7k2p", "uid": "uid-podtap-%d" % self.port}
        pb = cri.pb
        spec = ds["spec"]["template"]["spec"]
        [c] = spec["containers"]
        self.container = c
        self.query_port = harness.free_port()
        self.args = [("--listen=127.0.0.1:%d" % self.port) if a.startswith("--listen=")
                     else ("--query-listen=127.0.0.1:%d" % self.query_port)
                     if a.startswith("--query-listen=") else a
                     for a in c["args"]]
        volumes = {v["name"]: v for v in spec["volumes"]}
        propagation = {None: pb.PROPAGATION_PRIVATE, "None": pb.PROPAGATION_PRIVATE,
                       "HostToContainer": pb.PROPAGATION_HOST_TO_CONTAINER}
        mounts = []
        for m in c["volumeMounts"]:
            v = volumes[m["name"]]
            if "hostPath" in v:
                host = v["hostPath"]["path"]
                kind = v["hostPath"].get("type")
                if kind == "Socket":
                    host = cri_socket  # this test's containerd
                elif kind == "DirectoryOrCreate":
                    os.makedirs(host, exist_ok=True)  # as kubelet does
            elif "configMap" in v:
                data = configmaps[v["configMap"]["name"]]["data"]
                host = os.path.join(workdir, "configmap-" + m["name"])
                os.makedirs(host, exist_ok=True)
                for name, text in data.items():
                    with open(os.path.join(host, name), "w") as f:
                        f.write(text)
            elif "emptyDir" in v:
                # kubelet makes an empty directory per pod (tmpfs for Memory).
                host = os.path.join(workdir, "emptydir-" + m["name"])
                os.makedirs(host, exist_ok=True)
            elif "secret" in v:
                # The Secret the operator creates (docs/deploy.md, step 4):
                # a certificate naming podtap-agent, its key, a token.
                host = os.path.join(workdir, "secret-" + m["name"])
                self.secret = make_query_secret(host, [i["path"] for i in v["secret"]["items"]],
                                                v["secret"]["defaultMode"])
            else:
                raise AssertionError("volume %s: not hostPath, configMap, emptyDir or secret"
                                     % m["name"])
            mounts.append(pb.Mount(container_path=m["mountPath"], host_path=host,
                                   readonly=m.get("readOnly", False),
                                   propagation=propagation[m.get("mountPropagation")]))
        envs = []
        for e in c.get("env", []):
            field = e.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath")
            if field != "spec.nodeName":
                raise AssertionError("env %s: only spec.nodeName is known here" % e["name"])
            envs.append(pb.KeyValue(key=e["name"], value=socket.gethostname()))
        sc = c["securityContext"]
        seccomp = spec["securityContext"]["seccompProfile"]["type"]
        if seccomp != "RuntimeDefault":
            raise AssertionError("seccomp %s: only RuntimeDefault is known here" % seccomp)
        namespaces = pb.NamespaceOption(
            network=pb.NODE if spec.get("hostNetwork") else pb.POD,
            pid=pb.NODE if spec.get("hostPID") else pb.CONTAINER, ipc=pb.POD)
        self.sandbox_config = pb.PodSandboxConfig(
            metadata=pb.PodSandboxMetadata(name=self.pod["name"], uid=self.pod["uid"],
                                           namespace="podtap", attempt=0),
            log_directory=workdir, labels=ds["spec"]["template"]["metadata"]["labels"],
            linux=pb.LinuxPodSandboxConfig(
                cgroup_parent="%s/pod%s" % (test_cri_pods.CGROUP_PARENT, self.pod["uid"]),
                security_context=pb.LinuxSandboxSecurityContext(namespace_options=namespaces)),
            annotations={"podtap.e2e/owner-pid": str(os.getpid())})
        self.container_config = pb.ContainerConfig(
            metadata=pb.ContainerMetadata(name=c["name"]), image=pb.ImageSpec(image=AGENT_IMAGE),
            command=c["command"], args=self.args, envs=envs, mounts=mounts,
            log_path="agent.log",
            linux=pb.LinuxContainerConfig(security_context=pb.LinuxContainerSecurityContext(
                capabilities=pb.Capability(add_capabilities=sc["capabilities"]["add"],
                                           drop_capabilities=sc["capabilities"]["drop"]),
                privileged=sc.get("privileged", False), namespace_options=namespaces,
                run_as_user=pb.Int64Value(value=sc["runAsUser"]),
                readonly_rootfs=sc.get("readOnlyRootFilesystem", False),
                no_new_privs=sc.get("allowPrivilegeEscalation") is False,
                masked_paths=KUBELET_MASKED_PATHS, readonly_paths=KUBELET_READONLY_PATHS,
                seccomp=pb.SecurityProfile(profile_type=pb.SecurityProfile.RuntimeDefault))))

    def start(self):
        pb, rt = self.cri.pb, self.cri.rt
        harness.log("starting agent pod: %s %s" % (self.container["command"], " ".join(self.args)))
        self.sid = rt.RunPodSandbox(pb.RunPodSandboxRequest(config=self.sandbox_config),
                                    timeout=60).pod_sandbox_id
        self.cri.sandboxes.append(self.sid)
        self.pod["sid"] = self.sid
        self.cid = rt.CreateContainer(pb.CreateContainerRequest(
            pod_sandbox_id=self.sid, config=self.container_config,
            sandbox_config=self.sandbox_config), timeout=60).container_id
        rt.StartContainer(pb.StartContainerRequest(container_id=self.cid), timeout=60)
        self.popen = _ContainerProcess(self._find_pid())
        harness.log("agent pod %s, container %s, pid %d"
                    % (self.sid[:12], self.cid[:12], self.popen.pid))
        return self

    def _find_pid(self, timeout=10):
        """The agent's host PID: the process with this agent's --listen."""
        needle = ("--listen=127.0.0.1:%d" % self.port).encode()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for p in os.listdir("/proc"):
                if not p.isdigit():
                    continue
                try:
                    with open("/proc/%s/cmdline" % p, "rb") as f:
                        if needle in f.read().split(b"\0"):
                            return int(p)
                except OSError:
                    continue
            time.sleep(0.1)
        raise harness.AgentError("agent process not found\n%s" % self.log_tail())

    def status(self):
        """/proc/PID/status of the agent as a dict."""
        with open("/proc/%d/status" % self.popen.pid) as f:
            return dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)

    def stop(self):
        if self.cid is None or self.exit_code is not None:
            return self.exit_code
        pb = self.cri.pb
        t0 = time.monotonic()
        self.cri.rt.StopContainer(pb.StopContainerRequest(
            container_id=self.cid, timeout=int(harness.STOP_TIMEOUT)),
            timeout=harness.STOP_TIMEOUT + 10)
        self.stop_seconds = time.monotonic() - t0
        # The log says whether SIGTERM ended it cleanly.
        self.exit_code = 0 if "kernel programs detached" in self.log_text() else 1
        self.cri.remove_pod(self.sid)
        return self.exit_code


class DeployPodTest(test_cri_pods.CriPodsTest):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.ds, cls.configmaps = render()
        cls.agent_image_tar = os.path.join(cls.dir, "podtap.tar")
        build_agent_image_tar(cls.agent_image_tar, cls.ds["spec"]["template"]["spec"]
                              ["containers"][0]["command"][0])
        # The DaemonSet mounts the host's tracefs and bpffs, which a node's
        # systemd mounts at boot; a fresh test machine may not have them.
        for path, fstype in (("/sys/kernel/tracing", "tracefs"), ("/sys/fs/bpf", "bpf")):
            if harness.sh(["findmnt", "-t", fstype, path], check=False).returncode != 0:
                harness.sh(["mount", "-t", fstype, fstype, path])
        # HostToContainer propagation of /run/netns needs the mount holding it
        # to be shared, as on a node (systemd makes / shared). A test
        # machine's / may be private: do what `ip netns add` does, bind
        # /run/netns onto itself as a shared mount, and like it leave that.
        os.makedirs("/run/netns", exist_ok=True)
        propagation = harness.sh(["findmnt", "-n", "-o", "PROPAGATION", "--target",
                                  "/run/netns"]).stdout
        if "shared" not in propagation and "slave" not in propagation:
            if harness.sh(["mountpoint", "-q", "/run/netns"], check=False).returncode != 0:
                harness.sh(["mount", "--bind", "/run/netns", "/run/netns"])
            harness.sh(["mount", "--make-shared", "/run/netns"])

    @classmethod
    def ensure_runtime(cls):
        started = cls.containerd.popen is None
        super().ensure_runtime()
        if started:
            harness.sh([test_cri_pods.CTR, "--address", cls.containerd.sock, "-n", "k8s.io",
                        "images", "import", cls.agent_image_tar], timeout=60)

    def start_agent(self, wait_ready=True):
        workdir = os.path.join(self.dir, "agent-" + self.id().rsplit(".", 1)[-1])
        os.makedirs(workdir, exist_ok=True)
        agent = PodAgent(workdir, self.cri, self.ds, self.configmaps, self.containerd.sock)
        self.addCleanup(self._stop_pod_agent, agent)
        agent.start()
        # The runtime lists the agent's own pod like any other.
        self.pods["agent"] = agent.pod
        self.agent = agent
        if wait_ready:
            agent.wait_ready()
            self.baseline = agent.scrape()
        return agent

    def _stop_pod_agent(self, agent):
        if agent.cid is None:
            return  # the container was never created: the case's error says why
        rc = agent.stop()
        self.pods.pop("agent", None)
        if rc != 0 or harness.has_failed(self):
            harness.log("%s: agent stopped %s; its log: %s\n%s"
                        % (self.id(), "cleanly" if rc == 0 else "WITHOUT detaching",
                           agent.log_path, agent.log_tail(60)))
        self.assertEqual(rc, 0, "the agent did not detach its programs on SIGTERM")

    def test_a_runtime_absent_at_start(self):
        self.skipTest("the runtime runs the agent here (test_cri_pods covers this case)")

    def test_e_runtime_restart(self):
        self.skipTest("the runtime runs the agent here (test_cri_pods covers this case)")

    def test_f_pod_security_and_live_counters(self):
        """The agent process holds exactly the DaemonSet's capabilities under
        seccomp with a read-only root; it reads a pod's live byte counters
        from inside that pod's network namespace, and attaches the TLS probes
        to the libssl a host process maps."""
        self.ensure_runtime()
        agent = self.start_agent()
        st = agent.status()
        want = 0
        for cap in agent.container["securityContext"]["capabilities"]["add"]:
            want |= 1 << CAP_BITS[cap]
        self.assertEqual(int(st["CapEff"], 16), want, st["CapEff"])
        self.assertEqual(int(st["CapBnd"], 16), want, st["CapBnd"])
        self.assertEqual(st["Seccomp"], "2", "seccomp filter mode")
        self.assertEqual(st["Uid"].split()[0], "0")
        with open("/proc/%d/mountinfo" % agent.popen.pid) as f:
            root = [line.split() for line in f if line.split()[4] == "/"]
        self.assertTrue(root and "ro" in root[-1][5].split(","), root)
        # A connection from the host to the server pod that stays open: its
        # bytes can only come from sock_diag in the server's namespace.
        server = self.pods["server"]
        partial = b"GET /small HTTP/1.1\r\nHost: api\r\nX-Pad: " + b"p" * 777
        inb = dict(self.identity(server), direction="inbound")
        with socket.create_connection((server["ip"], test_cri_pods.HTTP_PORT), timeout=10) as c:
            c.sendall(partial)
            self.wait_equal([Expect("tcp_read_bytes_total", inb, len(partial)),
                             Expect("tcp_open_connections", inb, 1, absolute=True)])
        # A root process with every capability maps its own copy of libssl
        # (a file no other process maps): only ptrace read access lets the
        # agent read its /proc/PID/maps and reach the file.
        [system_libssl] = re.findall(r"(/\S+/libssl\.so\.\d+) \(0x", harness.sh(
            ["ldd", "/usr/bin/openssl"]).stdout)
        copy = os.path.join(agent.workdir, "libssl-copy", os.path.basename(system_libssl))
        os.makedirs(os.path.dirname(copy), exist_ok=True)
        shutil.copy(system_libssl, copy)
        holder = subprocess.Popen(harness._orphan_guard("TERM") + [
            harness.PY, "-c", "import ctypes, sys, time; ctypes.CDLL(sys.argv[1]); "
            "print('mapped', flush=True); time.sleep(60)", copy],
            stdout=subprocess.PIPE, text=True)
        harness._live_procs[holder.pid] = holder
        self.addCleanup(harness._stop_pid, holder)
        self.assertEqual(holder.stdout.readline().strip(), "mapped")
        needle = "TLS plaintext probes attached to /proc/%d/root%s" % (holder.pid, copy)
        deadline = time.monotonic() + 5
        while needle not in agent.log_text():
            self.assertLess(time.monotonic(), deadline, "no %r\n%s" % (needle, agent.log_tail()))
            time.sleep(0.1)
        ex = agent.scrape()
        self.assertEqual(ex.sum("podtap_tls_libraries", {"state": "failed"}), 0, agent.log_tail())
        # The query listener (port query) answers with the Secret's
        # certificate and token, as podtap-relay asks it, and refuses without.
        secret = agent.secret
        base = [CLI, "--agent", "127.0.0.1:%d" % agent.query_port, "--ca", secret["tls.crt"],
                "--tls-server-name", "podtap-agent", "--timeout", "5"]
        ok = harness.sh(base + ["--token-file", secret["token"], "conns"], check=False)
        self.assertEqual(ok.returncode, 0, ok.stderr)
        wrong = os.path.join(agent.workdir, "wrong-token")
        with open(wrong, "w") as f:
            f.write("not-the-token\n")
        bad = harness.sh(base + ["--token-file", wrong, "conns"], check=False)
        self.assertEqual(bad.returncode, 1)
        self.assertIn("the agent refused this call", bad.stderr)


if __name__ == "__main__":
    unittest.main(verbosity=2)
