"""The one small harness of podtap's real-kernel end-to-end tests: two pods as
network namespaces joined by a veth pair, the traffic peers (peer.py) run inside
them, the agent started and stopped by PID, and a strict parser of the
Prometheus text format so expectations can be compared exactly.

Stdlib only, for Debian's /usr/bin/python3. Everything created here is named
with NS_PREFIX and the owning test process' PID, and removed at exit even when
a test fails; namespaces left by a crashed earlier run are removed at start.
"""

import atexit
import json
import math
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import urllib.error
import urllib.request
from dataclasses import dataclass, field

PY = "/usr/bin/python3"
HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
PEER = os.path.join(HERE, "peer.py")
AGENT = os.environ.get("PODTAP_AGENT", os.path.join(REPO, "build", "podtap-agent"))
PROMTOOL = "/usr/bin/promtool"
SETPRIV = "/usr/bin/setpriv"
NS_PREFIX = "ptE2e"
HEADER_LEN = 12  # peer.py's header, counted as payload by the kernel and by us

# Linkerd's latency/duration bucket bounds, milliseconds (METRICS.md).
LINKERD_BUCKETS = [1, 10, 50, 100, 200, 300, 400, 500, 1000, 5000, 10000, math.inf]

# How much slower than this machine the tests run: a QEMU guest without KVM
# (tests/kernel_matrix) sets PODTAP_E2E_SLOWDOWN=20; every bound scales with it.
SLOWDOWN = float(os.environ.get("PODTAP_E2E_SLOWDOWN", "1"))


def scaled(seconds):
    """A bound on a wait, in seconds, for the machine the tests run on."""
    return seconds * SLOWDOWN


# Bounds on every wait in this file, seconds.
CMD_TIMEOUT = scaled(30)
READY_TIMEOUT = scaled(60)
STOP_TIMEOUT = scaled(10)
SCRAPE_TIMEOUT = scaled(5)


def log(msg):
    sys.stderr.write("[e2e] %s\n" % msg)
    sys.stderr.flush()


def _orphan_guard(sig):
    """Prefix giving a child a parent-death signal (setpriv execs, so the PID
    stays the one we started): if the test process is killed outright, the
    kernel still stops the agent and the peers."""
    return [SETPRIV, "--pdeathsig", sig, "--"] if os.access(SETPRIV, os.X_OK) else []


def sh(args, timeout=CMD_TIMEOUT, check=True):
    """Runs a command (a list), returns its CompletedProcess; raises with the
    command's output when check is set and it fails."""
    p = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
    if check and p.returncode != 0:
        raise RuntimeError("command failed (rc=%d): %s\nstdout: %s\nstderr: %s"
                           % (p.returncode, " ".join(args), p.stdout, p.stderr))
    return p


# --------------------------------------------------------------------------
# Emergency cleanup: whatever this process started or created is listed here
# and undone at exit, on SIGTERM/SIGINT too (turned into KeyboardInterrupt so
# finally blocks and atexit run).

_live_procs = {}  # pid -> Popen
_live_netns = set()
_cleanup_lock = threading.Lock()


def _stop_pid(popen, sig=signal.SIGTERM, timeout=STOP_TIMEOUT):
    """Stops one process we started, by its PID. Returns its exit code."""
    if popen.poll() is None:
        try:
            os.kill(popen.pid, sig)
        except ProcessLookupError:
            pass
        try:
            popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            log("pid %d did not exit %.0fs after signal %d: SIGKILL" % (popen.pid, timeout, sig))
            try:
                os.kill(popen.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            popen.wait(timeout=timeout)
    _live_procs.pop(popen.pid, None)
    return popen.returncode


def _delete_netns(name):
    # Stop the peers we started that still live in it, then the namespace.
    pids = sh(["ip", "netns", "pids", name], check=False).stdout.split()
    for pid in pids:
        p = _live_procs.get(int(pid))
        if p is not None:
            _stop_pid(p, timeout=3)
    sh(["ip", "netns", "del", name], check=False)
    _live_netns.discard(name)


def cleanup_all():
    with _cleanup_lock:
        for p in list(_live_procs.values()):
            _stop_pid(p, timeout=3)
        for name in list(_live_netns):
            _delete_netns(name)


def _on_signal(signum, _frame):
    raise KeyboardInterrupt("signal %d" % signum)


atexit.register(cleanup_all)
if threading.current_thread() is threading.main_thread():
    signal.signal(signal.SIGTERM, _on_signal)


def _pid_alive_python(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return b"python" in f.read()
    except OSError:
        return False


def require_tools(tools):
    """Raises unless every program of `tools` ({path: Debian package}) is there:
    `make deps` installs them, so a missing peer is an error, not a skip."""
    missing = [t for t in tools if not os.access(t, os.X_OK)]
    if missing:
        raise RuntimeError("missing %s: install the Debian packages %s (make deps)"
                           % (", ".join(missing), ", ".join(tools[t] for t in missing)))


def cleanup_stale_namespaces():
    """Removes ptE2e<pid>* namespaces whose owning test process is gone (a
    crashed earlier run). Processes still inside them are stopped by PID, and
    only when they are this suite's own peers."""
    out = sh(["ip", "netns", "list"], check=False).stdout
    for line in out.splitlines():
        name = line.split()[0] if line.split() else ""
        m = re.match(r"^%s(\d+)[a-z]$" % NS_PREFIX, name)
        if not m:
            continue
        owner = int(m.group(1))
        if owner == os.getpid() or _pid_alive_python(owner):
            continue
        for pid in sh(["ip", "netns", "pids", name], check=False).stdout.split():
            try:
                with open("/proc/%s/cmdline" % pid, "rb") as f:
                    cmd = f.read()
            except OSError:
                continue
            if any(arg.endswith(b"peer.py") for arg in cmd.split(b"\0")):
                log("stale peer pid %s in %s: SIGKILL" % (pid, name))
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except ProcessLookupError:
                    pass
        log("removing stale namespace %s" % name)
        sh(["ip", "netns", "del", name], check=False)


# --------------------------------------------------------------------------
# Topology: two namespaces, one veth pair, IPv4 /24 and IPv6 ULA /64.


class Topology:
    """Namespace `client` and `server`, a veth pair between them, lo up."""

    CLIENT_IP4, SERVER_IP4, PREFIX4 = "10.231.7.1", "10.231.7.2", 24
    CLIENT_IP6, SERVER_IP6, PREFIX6 = "fd7e:3e2e:2e07::1", "fd7e:3e2e:2e07::2", 64

    def __init__(self):
        self.client_ns = "%s%dc" % (NS_PREFIX, os.getpid())
        self.server_ns = "%s%ds" % (NS_PREFIX, os.getpid())

    def create(self):
        for ns in (self.client_ns, self.server_ns):
            sh(["ip", "netns", "add", ns])
            _live_netns.add(ns)
            sh(["ip", "-n", ns, "link", "set", "lo", "up"])
        # Both ends are created directly inside their namespaces, so the
        # interface names never meet the root namespace's.
        sh(["ip", "-n", self.client_ns, "link", "add", "pt0", "type", "veth",
            "peer", "name", "pt1", "netns", self.server_ns])
        for ns, dev, ip4, ip6 in ((self.client_ns, "pt0", self.CLIENT_IP4, self.CLIENT_IP6),
                                  (self.server_ns, "pt1", self.SERVER_IP4, self.SERVER_IP6)):
            sh(["ip", "-n", ns, "addr", "add", "%s/%d" % (ip4, self.PREFIX4), "dev", dev])
            sh(["ip", "-n", ns, "-6", "addr", "add", "%s/%d" % (ip6, self.PREFIX6),
                "dev", dev, "nodad"])
            sh(["ip", "-n", ns, "link", "set", dev, "up"])
        self._wait_link_up()
        return self

    def _wait_link_up(self, timeout=10):
        deadline = time.monotonic() + scaled(timeout)
        while time.monotonic() < deadline:
            a = sh(["ip", "-n", self.client_ns, "-o", "link", "show", "pt0"]).stdout
            b = sh(["ip", "-n", self.server_ns, "-o", "link", "show", "pt1"]).stdout
            if "LOWER_UP" in a and "LOWER_UP" in b:
                return
            time.sleep(0.05)
        raise RuntimeError("veth pair did not come up within %.0fs" % scaled(timeout))

    def netns_path(self, ns):
        return "/var/run/netns/%s" % ns

    def destroy(self):
        for ns in (self.client_ns, self.server_ns):
            if ns in _live_netns:
                _delete_netns(ns)


# --------------------------------------------------------------------------
# Pods and the pods file.


@dataclass
class Pod:
    namespace: str
    name: str
    uid: str
    labels: dict
    owner_kind: str
    owner_name: str
    ips: list
    netns: str

    def to_json(self):
        return {"namespace": self.namespace, "name": self.name, "uid": self.uid,
                "labels": self.labels,
                "owner": {"kind": self.owner_kind, "name": self.owner_name},
                "ips": self.ips, "netns": self.netns}

    def identity(self):
        """The pod identity labels every transport series of this pod carries."""
        h = self.labels["pod-template-hash"]
        assert self.owner_kind == "ReplicaSet" and self.owner_name.endswith("-" + h)
        return {"namespace": self.namespace, "pod": self.name, "pod_template_hash": h,
                "replicaset": self.owner_name,
                "deployment": self.owner_name[: -len(h) - 1]}


def make_pods(topo):
    """A client pod of Deployment `web` and a server pod of Deployment `api`."""
    client = Pod("shop", "web-7d4b9c6f5-x2k9p", "e2e-uid-web",
                 {"app": "web", "pod-template-hash": "7d4b9c6f5"},
                 "ReplicaSet", "web-7d4b9c6f5",
                 [topo.CLIENT_IP4, topo.CLIENT_IP6], topo.netns_path(topo.client_ns))
    server = Pod("shop", "api-5f7c9d8b6-abcde", "e2e-uid-api",
                 {"app": "api", "pod-template-hash": "5f7c9d8b6"},
                 "ReplicaSet", "api-5f7c9d8b6",
                 [topo.SERVER_IP4, topo.SERVER_IP6], topo.netns_path(topo.server_ns))
    return client, server


def write_pods_file(path, pods):
    with open(path, "w") as f:
        json.dump({"pods": [p.to_json() for p in pods]}, f, indent=2)


# --------------------------------------------------------------------------
# Peers (peer.py inside a namespace).


class PeerProcess:
    """A peer.py process (or another `script` printing JSON lines, such as
    grpc_peer.py) in a namespace; its JSON stdout lines are collected by a
    reader thread."""

    def __init__(self, ns, args, name, script=PEER):
        self.name = name
        self.ns = ns
        self.records = []
        self._cond = threading.Condition()
        self._stderr = tempfile.TemporaryFile(mode="w+")
        self._stderr_text = None
        cmd = (_orphan_guard("KILL") + ["ip", "netns", "exec", ns, PY, script]
               + [str(a) for a in args])
        self.cmd = cmd
        self.popen = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self._stderr,
                                      stdin=subprocess.DEVNULL, text=True)
        _live_procs[self.popen.pid] = self.popen
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        for line in self.popen.stdout:
            line = line.strip()
            if not line:
                continue
            try:
                rec = json.loads(line)
            except ValueError:
                rec = {"event": "garbage", "line": line}
            with self._cond:
                self.records.append(rec)
                self._cond.notify_all()

    def wait_event(self, event, timeout, count=1):
        """Waits for `count` records with this event; returns them."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                got = [r for r in self.records if r.get("event") == event]
                if len(got) >= count:
                    return got
                left = deadline - time.monotonic()
                if left <= 0 or (self.popen.poll() is not None and not self._reader.is_alive()):
                    raise AssertionError("%s: no %d x %r within %.0fs; exit=%s\nrecords: %s\n"
                                         "stderr:\n%s" % (self.name, count, event, timeout,
                                                          self.popen.poll(), self.records,
                                                          self.stderr()))
                self._cond.wait(min(left, 0.2))

    def events(self, event):
        with self._cond:
            return [r for r in self.records if r.get("event") == event]

    def signal(self, sig):
        if self.popen.poll() is None:
            os.kill(self.popen.pid, sig)

    def wait(self, timeout):
        try:
            self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            _stop_pid(self.popen, signal.SIGKILL, timeout=3)
            raise AssertionError("%s did not finish within %.0fs" % (self.name, timeout))
        _live_procs.pop(self.popen.pid, None)
        self._finish()
        return self.popen.returncode

    def stop(self, timeout=STOP_TIMEOUT):
        rc = _stop_pid(self.popen, signal.SIGTERM, timeout)
        self._finish()
        return rc

    def _finish(self):
        self._reader.join(timeout=5)
        if not self._reader.is_alive() and not self.popen.stdout.closed:
            self.popen.stdout.close()
        if self._stderr_text is None:
            self._stderr.seek(0)
            self._stderr_text = self._stderr.read()
            self._stderr.close()

    def stderr(self):
        if self._stderr_text is not None:
            return self._stderr_text
        self._stderr.seek(0)
        return self._stderr.read()


def start_server(ns, addr, port, seed=1):
    p = PeerProcess(ns, ["server", "--addr", addr, "--port", port, "--seed", seed],
                    "server %s:%s" % (addr, port))
    p.wait_event("listening", timeout=scaled(15))
    return p


class ClientRun:
    """A client plan [(send_len, recv_len, behaviour)] running in its own
    peer.py process; several can run at the same time."""

    def __init__(self, ns, addr, port, plan, seed=1):
        self.addr, self.port, self.plan = addr, port, [tuple(e) for e in plan]
        fd, self.plan_path = tempfile.mkstemp(prefix="ptE2e-plan-", suffix=".json")
        with os.fdopen(fd, "w") as f:
            json.dump([list(e) for e in plan], f)
        self.proc = PeerProcess(ns, ["client", "--addr", addr, "--port", port, "--plan",
                                     self.plan_path, "--seed", seed],
                                "client -> %s:%s" % (addr, port))

    def finish(self, timeout=180):
        """Waits for the plan to complete; returns the per-connection records
        in plan order."""
        try:
            rc = self.proc.wait(timeout)
        finally:
            os.unlink(self.plan_path)
        conns = self.proc.events("conn")
        if rc != 0 or len(conns) != len(self.plan):
            raise AssertionError("client run failed (rc=%s, %d/%d records):\n%s\nstderr:\n%s"
                                 % (rc, len(conns), len(self.plan),
                                    "\n".join(json.dumps(c) for c in self.proc.records),
                                    self.proc.stderr()))
        return conns


def run_client(ns, addr, port, plan, seed=1, timeout=180):
    """Runs one plan to completion; returns its per-connection records."""
    return ClientRun(ns, addr, port, plan, seed).finish(timeout)


def start_hold(ns, addr, port, rounds, seed=1):
    """A long-lived connection: rounds [(send_len, recv_len)], each followed
    by an `exchanged` record and a hold until SIGUSR1."""
    spec = ",".join("%d:%d" % r for r in rounds)
    return PeerProcess(ns, ["hold", "--addr", addr, "--port", port, "--rounds", spec,
                            "--seed", seed], "hold -> %s:%s" % (addr, port))


# --------------------------------------------------------------------------
# Ground truth checks against the kernel's own counters (TCP_INFO). These
# check the harness, not the agent: if they fail, the test's expectations
# would be wrong, so the test errors out instead of blaming the agent.
#
# Measured on this kernel: bytes_acked counts the SYN only for the side that
# sent it first (the active opener; a passive opener's SYN-ACK is not counted),
# and the FIN once the peer acknowledged it; bytes_received never counts the
# peer's SYN, but counts the peer's FIN.


def kernel_mismatches(rec, role):
    """Returns a list of strings describing where the kernel's view of one
    connection differs from the peer's own count (empty when consistent)."""
    k = rec.get("kernel")
    if not k or "error" in k:
        return ["no tcp_info: %r" % k]
    if role == "client":  # active opener; snapshot after the peer's FIN/RST
        fin_in = 1 if rec["outcome"] == "eof" else 0
        fin_out = 1 if rec.get("behaviour") == "hold" else 0
        want = {"bytes_acked": rec["written"] + 1 + fin_out,
                "bytes_received": rec["read"] + fin_in}
    else:  # passive opener; snapshot after all its data was acked, before close
        want = {"bytes_acked": rec["written"], "bytes_received": rec["read"]}
    return ["%s: kernel %d, expected %d (app written %d, read %d)"
            % (key, k[key], v, rec["written"], rec["read"])
            for key, v in want.items() if k[key] != v]


def ss_established(ns, port):
    """`ss -tin` in a namespace: bytes_acked / bytes_received of the
    established TCP sockets with `port` as local or remote port."""
    out = sh(["ip", "netns", "exec", ns, "ss", "-tinH", "state", "established"]).stdout
    result = []
    lines = out.splitlines()
    for i, line in enumerate(lines):
        if line[:1].isspace() or not line.strip():
            continue
        addrs = line.split()[-2:]
        if not any(a.rsplit(":", 1)[-1] == str(port) for a in addrs):
            continue
        info = lines[i + 1] if i + 1 < len(lines) and lines[i + 1][:1].isspace() else ""
        counters = {}
        for key in ("bytes_acked", "bytes_received"):
            m = re.search(r"\b%s:(\d+)" % key, info)
            counters[key] = int(m.group(1)) if m else 0  # ss omits zero counters
        result.append({"local": addrs[0], "remote": addrs[1], **counters})
    return result


# --------------------------------------------------------------------------
# Which kernel programs an agent attached, seen from outside it: the BPF link
# and program file descriptors it holds (/proc/PID/fdinfo).

# enum bpf_prog_type values (uapi/linux/bpf.h) for the hooks podtap may use.
BPF_PROG_TYPES = {2: "kprobe", 5: "tracepoint", 17: "raw_tracepoint", 26: "tracing"}


def _fdinfo(pid):
    """{fd: (link target, {key: value})} of a process' BPF fds."""
    out = {}
    fd_dir = "/proc/%d/fd" % pid
    for fd in os.listdir(fd_dir):
        try:
            target = os.readlink(os.path.join(fd_dir, fd))
            if not target.startswith("anon_inode:bpf"):
                continue
            with open("/proc/%d/fdinfo/%s" % (pid, fd)) as f:
                info = dict(line.split(":", 1) for line in f.read().splitlines() if ":" in line)
        except OSError:
            continue
        out[fd] = (target, {k.strip(): v.strip() for k, v in info.items()})
    return out


def attached_programs(pid):
    """The programs a process attached through BPF links it holds:
    [{"link": link type, "prog": program type, "prog_id": ..., "tp": ...}].
    tp_btf shows as a raw_tracepoint link to a `tracing` program, the plain
    tracepoint as a perf link to a `tracepoint` program."""
    fds = _fdinfo(pid)
    prog_types = {}
    for target, info in fds.values():
        if target == "anon_inode:bpf-prog" and "prog_id" in info:
            t = int(info.get("prog_type", -1))
            prog_types[info["prog_id"]] = BPF_PROG_TYPES.get(t, "type %d" % t)
    found = []
    for target, info in fds.values():
        if target == "anon_inode:bpf_link":
            found.append({"link": info.get("link_type"), "prog_id": info.get("prog_id"),
                          "prog": prog_types.get(info.get("prog_id"), "unknown"),
                          "tp": info.get("tp_name")})
    return found


# --------------------------------------------------------------------------
# The agent.


def free_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def has_failed(test):
    """Whether a unittest.TestCase has failed so far, for cleanups that keep
    artifacts of failures. From the result's lists: on Python 3.11
    `_outcome.success` reads True inside cleanups, since each cleanup runs as
    a test part of its own."""
    outcome = getattr(test, "_outcome", None)
    if outcome is None:
        return False
    result = outcome.result
    bad = list(getattr(result, "failures", [])) + list(getattr(result, "errors", []))
    return not outcome.success or any(t is test for t, _ in bad)


def start_test_agent(test, workdir, pods, wait_ready=True, **kwargs):
    """A fresh agent for one unittest case: started in `workdir`, stopped by
    PID in a cleanup that keeps its log and last scrape only when the case
    failed. Sets test.agent and, once ready, test.baseline (a scrape)."""
    os.makedirs(workdir, exist_ok=True)
    agent = Agent(workdir, pods, **kwargs)
    test.addCleanup(_stop_test_agent, test, agent)
    agent.start()
    test.agent = agent
    if wait_ready:
        agent.wait_ready()
        test.baseline = agent.scrape()
    return agent


def _stop_test_agent(test, agent):
    rc = agent.stop()
    if rc != 0:
        log("WARNING: agent exited with %s after SIGTERM (%s)" % (rc, agent.log_path))
    if has_failed(test):
        log("%s failed; agent log: %s, its last scrape: %s\n%s"
            % (test.id(), agent.log_path, os.path.join(agent.workdir, "last-scrape.prom"),
               agent.log_tail(60)))
    elif rc == 0:
        shutil.rmtree(agent.workdir, ignore_errors=True)


class AgentError(AssertionError):
    pass


# Scrapes go straight to the agent on loopback, whatever *_proxy variables the
# environment holds.
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class Agent:
    """podtap-agent started with a pods file, stopped by PID with SIGTERM."""

    def __init__(self, workdir, pods, diag_interval=None, probe_mode=None,
                 log_level="debug", extra_args=(), pods_source=None, cgroup_procs=None):
        """`pods` go to a pods file, unless `pods_source` gives the flags of
        another source (e.g. ["--cri-socket", PATH]). `cgroup_procs`: the
        cgroup.procs file of a cgroup the agent starts in."""
        self.workdir = workdir
        self.cgroup_procs = cgroup_procs
        self.port = free_port()
        self.log_path = os.path.join(workdir, "agent.log")
        if pods_source is None:
            self.pods_file = os.path.join(workdir, "pods.json")
            write_pods_file(self.pods_file, pods)
            pods_source = ["--pods-file", self.pods_file]
        self.args = [AGENT, "--listen", "127.0.0.1:%d" % self.port, "--log-level", log_level]
        # Each test agent serves its own query socket, never the node's default
        # (in a short folder of its own: a socket path has at most 107 bytes).
        self.query_dir = tempfile.mkdtemp(prefix="ptE2e-q-")
        os.chmod(self.query_dir, 0o755)  # an open directory the agent must leave open
        self.query_socket = os.path.join(self.query_dir, "q", "podtap.sock")
        self.args += ["--query-socket", self.query_socket]
        self.args += pods_source
        if diag_interval is not None:
            self.args += ["--diag-interval", str(diag_interval)]
        if probe_mode is not None:
            self.args += ["--probe-mode", probe_mode]
        self.args += list(extra_args)
        # Every suite again with other agent flags, e.g. another build of
        # the kernel programs: PODTAP_AGENT_ARGS="--payload-probes compat".
        self.args += shlex.split(os.environ.get("PODTAP_AGENT_ARGS", ""))
        self.popen = None
        self.exit_code = None

    @property
    def base(self):
        return "http://127.0.0.1:%d" % self.port

    def start(self):
        if not os.access(AGENT, os.X_OK):
            raise AgentError("agent binary %s is missing or not executable "
                             "(set PODTAP_AGENT or build it first)" % AGENT)
        self._log = open(self.log_path, "w")
        log("starting agent: %s" % " ".join(self.args))
        procs = self.cgroup_procs

        def enter_cgroup():  # in the child, before exec: "0" moves the writer itself
            with open(procs, "w") as f:
                f.write("0")

        self.popen = subprocess.Popen(_orphan_guard("TERM") + self.args, stdout=self._log,
                                      stderr=subprocess.STDOUT,
                                      stdin=subprocess.DEVNULL, cwd=self.workdir,
                                      preexec_fn=enter_cgroup if procs else None)
        _live_procs[self.popen.pid] = self.popen
        return self

    def attached_programs(self):
        return attached_programs(self.popen.pid)

    def get(self, path, timeout=SCRAPE_TIMEOUT):
        """(status, headers, body) of GET path; status 0 when unreachable."""
        try:
            with _NO_PROXY.open(self.base + path, timeout=timeout) as r:
                return r.status, dict(r.headers), r.read().decode("utf-8")
        except urllib.error.HTTPError as e:
            return e.code, dict(e.headers or {}), e.read().decode("utf-8", "replace")
        except (urllib.error.URLError, OSError):
            return 0, {}, ""

    def wait_ready(self, timeout=READY_TIMEOUT):
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            if self.popen.poll() is not None:
                raise AgentError("agent exited with %s before it was ready\n%s"
                                 % (self.popen.returncode, self.log_tail()))
            status, _, body = self.get("/readyz", timeout=2)
            last = (status, body.strip()[:200])
            if status == 200:
                return
            time.sleep(0.2)
        raise AgentError("agent not ready within %ds (last /readyz: %r)\n%s"
                         % (timeout, last, self.log_tail()))

    def scrape_text(self):
        if self.popen.poll() is not None:
            raise AgentError("agent exited with %s\n%s" % (self.popen.returncode, self.log_tail()))
        status, headers, body = self.get("/metrics")
        if status != 200:
            raise AgentError("GET /metrics: status %s\n%s" % (status, body[:500]))
        with open(os.path.join(self.workdir, "last-scrape.prom"), "w") as f:
            f.write(body)
        return body

    def scrape(self):
        return parse_exposition(self.scrape_text())

    def stop(self):
        """SIGTERM by PID; returns the exit code (SIGKILL after STOP_TIMEOUT)."""
        if self.popen is None:
            shutil.rmtree(self.query_dir, ignore_errors=True)
            return None
        if self.exit_code is None:
            t0 = time.monotonic()
            self.exit_code = _stop_pid(self.popen, signal.SIGTERM, STOP_TIMEOUT)
            self.stop_seconds = time.monotonic() - t0
            self._log.close()
            shutil.rmtree(self.query_dir, ignore_errors=True)
        return self.exit_code

    def log_text(self):
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def log_tail(self, lines=40):
        """The last lines of the agent's log, without libbpf's debug chatter
        (CO-RE relocations), which is still in the file."""
        text = self.log_text().splitlines()
        kept = [l for l in text if "[debug] libbpf" not in l]
        return ("---- agent log %s: last %d of %d lines (libbpf debug lines left out) ----\n"
                "%s\n---- end of agent log ----" % (self.log_path, min(lines, len(kept)),
                                                    len(text), "\n".join(kept[-lines:])))


# --------------------------------------------------------------------------
# Prometheus text format 0.0.4: a strict parser of our own.


class ExpositionError(ValueError):
    pass


@dataclass
class Sample:
    name: str
    labels: dict
    value: float
    line: int


@dataclass
class Family:
    name: str
    type: str = "untyped"
    help: str = None
    samples: list = field(default_factory=list)


_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
_LABEL = r"[a-zA-Z_][a-zA-Z0-9_]*"
_VALUE_RE = re.compile(r"^[+-]?(?:Inf|NaN|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)$")
_TYPES = {"counter", "gauge", "histogram", "summary", "untyped"}
_SUFFIXES = {"histogram": ("_bucket", "_sum", "_count"), "summary": ("_sum", "_count")}


def parse_value(text):
    if not _VALUE_RE.match(text):
        raise ValueError("not a float: %r" % text)
    return float(text)


def _unescape(text, allowed, where):
    out = []
    i = 0
    while i < len(text):
        c = text[i]
        if c == "\\":
            if i + 1 >= len(text) or text[i + 1] not in allowed:
                raise ExpositionError("%s: invalid escape in %r" % (where, text))
            out.append("\n" if text[i + 1] == "n" else text[i + 1])
            i += 2
        else:
            out.append(c)
            i += 1
    return "".join(out)


def _parse_labels(s, pos, where):
    """Parses `{a="x",b="y"}` starting at s[pos] == '{'; returns (labels, end)."""
    labels = {}
    pos += 1
    while True:
        while pos < len(s) and s[pos] in " \t":
            pos += 1
        if pos < len(s) and s[pos] == "}":
            return labels, pos + 1
        m = re.compile(_LABEL).match(s, pos)
        if not m:
            raise ExpositionError("%s: bad label name at column %d" % (where, pos + 1))
        lname = m.group(0)
        pos = m.end()
        while pos < len(s) and s[pos] in " \t":
            pos += 1
        if s[pos:pos + 2] != '="':
            raise ExpositionError("%s: expected =\" after label %s" % (where, lname))
        pos += 2
        start = pos
        while pos < len(s) and s[pos] != '"':
            pos += 2 if s[pos] == "\\" else 1
        if pos >= len(s):
            raise ExpositionError("%s: unterminated value of label %s" % (where, lname))
        if lname in labels:
            raise ExpositionError("%s: duplicate label %s" % (where, lname))
        labels[lname] = _unescape(s[start:pos], '\\"n', where)
        pos += 1
        while pos < len(s) and s[pos] in " \t":
            pos += 1
        if pos < len(s) and s[pos] == ",":
            pos += 1
        elif pos < len(s) and s[pos] == "}":
            return labels, pos + 1
        else:
            raise ExpositionError("%s: expected , or } after label %s" % (where, lname))


class Exposition:
    """A parsed scrape: families by name, all samples, and sums over series."""

    def __init__(self, text):
        self.text = text
        self.families = {}
        self.samples = []

    def family_of(self, sample_name):
        fam = self.families.get(sample_name)
        if fam is not None and fam.type not in ("histogram", "summary"):
            return sample_name
        for suffix in ("_bucket", "_sum", "_count"):
            base = sample_name[: -len(suffix)]
            if sample_name.endswith(suffix) and base in self.families and \
                    suffix in _SUFFIXES.get(self.families[base].type, ()):
                return base
        return sample_name

    def select(self, name, match=None):
        """Samples of `name` whose labels include `match` (a label missing
        from a series matches the empty string, as in PromQL)."""
        match = match or {}
        return [s for s in self.samples if s.name == name and
                all(s.labels.get(k, "") == v for k, v in match.items())]

    def sum(self, name, match=None):
        return sum(s.value for s in self.select(name, match))

    def lines_with(self, needles):
        return [l for l in self.text.splitlines()
                if not l.startswith("#") and any(n in l for n in needles)]


def parse_exposition(text):
    """Parses Prometheus text format 0.0.4, strictly: raises ExpositionError
    on anything the Go parser would reject, and also on duplicate series,
    interleaved families, and inconsistent histograms."""
    ex = Exposition(text)
    seen_series = set()
    finished = set()  # families whose block of lines has ended
    current = None
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    elif text:
        raise ExpositionError("exposition does not end with a newline")
    for no, line in enumerate(lines, 1):
        where = "line %d" % no
        if line.strip() == "":
            continue
        if line.startswith("#"):
            parts = line.split(None, 3)
            if len(parts) >= 3 and parts[1] in ("HELP", "TYPE"):
                name = parts[2]
                if not re.fullmatch(_NAME, name):
                    raise ExpositionError("%s: bad metric name %r" % (where, name))
                fam = ex.families.get(name)
                if fam is None:
                    if name in finished:
                        raise ExpositionError("%s: family %s appears twice" % (where, name))
                    fam = ex.families[name] = Family(name)
                elif fam.samples or current != name:
                    raise ExpositionError("%s: %s after samples of %s or not adjacent"
                                          % (where, parts[1], name))
                if current is not None and current != name:
                    finished.add(current)
                current = name
                rest = parts[3] if len(parts) > 3 else ""
                if parts[1] == "HELP":
                    if fam.help is not None:
                        raise ExpositionError("%s: second HELP for %s" % (where, name))
                    fam.help = _unescape(rest, "\\n", where)
                else:
                    if fam.type != "untyped" or rest.strip() not in _TYPES:
                        raise ExpositionError("%s: bad or second TYPE %r for %s"
                                              % (where, rest, name))
                    fam.type = rest.strip()
            continue
        m = re.compile(_NAME).match(line)
        if not m:
            raise ExpositionError("%s: bad metric name: %r" % (where, line))
        name = m.group(0)
        pos = m.end()
        labels = {}
        if pos < len(line) and line[pos] == "{":
            labels, pos = _parse_labels(line, pos, where)
        rest = line[pos:].split()
        if len(rest) not in (1, 2) or not line[pos:pos + 1] in (" ", "\t"):
            raise ExpositionError("%s: expected value [timestamp]: %r" % (where, line))
        try:
            value = parse_value(rest[0])
            if len(rest) == 2:
                int(rest[1])
        except ValueError as e:
            raise ExpositionError("%s: %s" % (where, e))
        fam_name = ex.family_of(name)
        fam = ex.families.get(fam_name)
        if fam is None:
            if fam_name in finished:
                raise ExpositionError("%s: samples of %s are not contiguous" % (where, fam_name))
            fam = ex.families[fam_name] = Family(fam_name)
        elif current != fam_name:
            raise ExpositionError("%s: samples of %s are not contiguous" % (where, fam_name))
        if current is not None and current != fam_name:
            finished.add(current)
        current = fam_name
        key = (name, tuple(sorted(labels.items())))
        if key in seen_series:
            raise ExpositionError("%s: duplicate series %s%s" % (where, name, labels))
        seen_series.add(key)
        if fam.type == "counter" and not value >= 0:
            raise ExpositionError("%s: counter %s has value %r" % (where, name, value))
        s = Sample(name, labels, value, no)
        fam.samples.append(s)
        ex.samples.append(s)
    for fam in ex.families.values():
        if fam.type == "histogram":
            _check_histogram(fam)
    return ex


def _check_histogram(fam):
    groups = {}
    for s in fam.samples:
        rest = tuple(sorted((k, v) for k, v in s.labels.items() if k != "le"))
        g = groups.setdefault(rest, {"buckets": [], "sum": None, "count": None})
        if s.name == fam.name + "_bucket":
            if "le" not in s.labels:
                raise ExpositionError("line %d: bucket without le" % s.line)
            g["buckets"].append((parse_value(s.labels["le"]), s.value, s.line))
        elif s.name == fam.name + "_sum":
            g["sum"] = s.value
        elif s.name == fam.name + "_count":
            g["count"] = s.value
        else:
            raise ExpositionError("line %d: %s inside histogram %s" % (s.line, s.name, fam.name))
    for rest, g in groups.items():
        what = "histogram %s%s" % (fam.name, dict(rest))
        b = g["buckets"]
        if not b or b[-1][0] != math.inf:
            raise ExpositionError("%s: no +Inf bucket (or not last)" % what)
        if [x[0] for x in b] != sorted(x[0] for x in b) or len({x[0] for x in b}) != len(b):
            raise ExpositionError("%s: bucket bounds not strictly ascending" % what)
        if any(b[i][1] > b[i + 1][1] for i in range(len(b) - 1)):
            raise ExpositionError("%s: bucket counts not cumulative: %s"
                                  % (what, [x[1] for x in b]))
        if g["count"] is None or g["sum"] is None:
            raise ExpositionError("%s: missing _count or _sum" % what)
        if g["count"] != b[-1][1]:
            raise ExpositionError("%s: _count %r != +Inf bucket %r" % (what, g["count"], b[-1][1]))


def histogram_bounds(ex, family):
    """The distinct bucket-bound lists used by a histogram family's series."""
    bounds = {}
    for s in ex.select(family + "_bucket"):
        rest = tuple(sorted((k, v) for k, v in s.labels.items() if k != "le"))
        bounds.setdefault(rest, []).append(parse_value(s.labels["le"]))
    return {tuple(v) for v in bounds.values()}


# --------------------------------------------------------------------------
# promtool


def promtool_check(text):
    """Runs `promtool check metrics` on an exposition. Returns (ok, report).
    promtool 2.42 prints `error while linting: <parse error>` and exits 1 when
    the exposition does not parse; it exits 3 and prints one `<metric> <hint>`
    line per lint problem (e.g. "metric names should not contain abbreviated
    units" for Linkerd's `_ms` names) when it parses but lints; 0 when clean.
    Lint hints are fine; a parse error or any other exit is not."""
    p = subprocess.run([PROMTOOL, "check", "metrics"], input=text, capture_output=True,
                       text=True, timeout=CMD_TIMEOUT)
    out = (p.stdout + p.stderr).strip()
    lines = [l for l in out.splitlines() if l.strip()]
    parse_errors = [l for l in lines if l.startswith("error") or "parsing error" in l]
    ok = (p.returncode == 0 or (p.returncode == 3 and not parse_errors))
    report = "promtool exit %d\n%s" % (p.returncode, out)
    return ok, report


# --------------------------------------------------------------------------
# Expectations: exact values, retried until equal or a deadline.


@dataclass
class Expect:
    name: str
    labels: dict
    value: float
    absolute: bool = False  # gauges: compare the value itself, not the delta

    def describe(self):
        return "%s{%s}" % (self.name, ",".join('%s="%s"' % kv for kv in self.labels.items()))


def evaluate(expects, ex, baseline):
    rows = []
    for e in expects:
        now = ex.sum(e.name, e.labels)
        got = now if e.absolute or baseline is None else now - baseline.sum(e.name, e.labels)
        rows.append((e, got))
    return rows


def format_rows(rows, short=None):
    """A table of expected vs scraped; `short` maps long label values to
    short names for readability."""
    def shorten(text):
        for k, v in (short or {}).items():
            text = text.replace(k, v)
        return text
    width = max([len(shorten(e.describe())) for e, _ in rows] + [10])
    out = ["%-*s %14s %14s" % (width, "series (sum over all other labels)", "expected",
                               "scraped")]
    for e, got in rows:
        mark = "" if got == e.value else "   <-- MISMATCH (%+g)" % (got - e.value)
        out.append("%-*s %14s %14s%s" % (width, shorten(e.describe()), _num(e.value),
                                        _num(got), mark))
    return "\n".join(out)


def _num(v):
    return str(int(v)) if float(v).is_integer() else repr(v)


def wait_for_expectations(agent, expects, baseline, timeout=15.0, settle=2.0, short=None,
                          context=()):
    """Polls the agent's /metrics until every expectation holds exactly, then
    waits `settle` seconds and checks once more (late double counting).
    Raises AssertionError with a diff, the pods' raw series and the agent's
    log tail otherwise. Returns the last scrape."""
    deadline = time.monotonic() + timeout
    rows = None
    ex = None
    while True:
        ex = agent.scrape()
        rows = evaluate(expects, ex, baseline)
        if all(got == e.value for e, got in rows):
            break
        if time.monotonic() >= deadline:
            raise AssertionError(_failure_report(
                "values not equal after %.0fs" % timeout, rows, ex, agent, short, context))
        time.sleep(0.25)
    if settle:
        time.sleep(settle)
        ex = agent.scrape()
        rows = evaluate(expects, ex, baseline)
        if not all(got == e.value for e, got in rows):
            raise AssertionError(_failure_report(
                "values were equal, then changed within %.1fs" % settle, rows, ex, agent,
                short, context))
    return ex


def _failure_report(what, rows, ex, agent, short, context):
    lost = ex.sum("podtap_events_lost_total")
    legend = ("scraped = change since the baseline scrape taken when the agent became "
              "ready (gauges: the value itself)")
    if short:
        legend += "; shortened: " + ", ".join(
            "%s for %s" % (v or "(nothing)", k.strip(",")) for k, v in short.items())
    parts = ["%s\n%s\n%s" % (what, legend, format_rows(rows, short)),
             "podtap_events_lost_total (all series) = %s" % _num(lost)]
    needles = list(context)
    if needles:
        raw = [l for l in ex.lines_with(needles) if "_bucket{" not in l]
        parts.append("raw series of the test pods, without _bucket lines (%d lines):\n%s"
                     % (len(raw), "\n".join(raw)))
    parts.append(agent.log_tail())
    return "\n\n".join(parts)


# --------------------------------------------------------------------------
# The two-pod test case the suites share.


class PodPairTest(unittest.TestCase):
    """A client pod and a server pod (Topology, make_pods) for the class, a
    fresh agent per test, and exact expectations. Subclasses set ARTIFACTS
    (where failing cases keep the agent's log and last scrape), and may set
    TIMEOUT and SETTLE."""

    ARTIFACTS = None
    TIMEOUT = 15.0  # seconds for the agent's numbers to reach the ground truth
    SETTLE = 2.0  # seconds the values must stay equal once reached

    @classmethod
    def setUpClass(cls):
        if os.geteuid() != 0:
            raise unittest.SkipTest("needs root (network namespaces, eBPF)")
        cleanup_stale_namespaces()
        cls.topo = Topology()
        cls.addClassCleanup(cls.topo.destroy)
        cls.topo.create()
        cls.client_pod, cls.server_pod = make_pods(cls.topo)
        cls.C = cls.client_pod.identity()
        cls.S = cls.server_pod.identity()
        log("namespaces %s (client pod %s), %s (server pod %s); artifacts in %s"
            % (cls.topo.client_ns, cls.client_pod.name, cls.topo.server_ns,
               cls.server_pod.name, cls.ARTIFACTS))

    def start_agent(self, **kwargs):
        return start_test_agent(self, os.path.join(self.ARTIFACTS, self.id().rsplit(".", 1)[-1]),
                                [self.client_pod, self.server_pod], **kwargs)

    def labels(self, pod, **extra):
        base = dict(self.C if pod == "client" else self.S)
        base.update(extra)
        return base

    def side(self, direction):
        """Labels of the pod that measures `direction`: inbound on the server
        pod; outbound on the client pod, whose remote is the server pod."""
        if direction == "inbound":
            return self.labels("server", direction="inbound")
        return self.labels("client", direction="outbound", dst_pod=self.S["pod"])

    def wait_equal(self, expects, timeout=None, settle=None):
        return wait_for_expectations(
            self.agent, expects, self.baseline,
            timeout=self.TIMEOUT if timeout is None else timeout,
            settle=self.SETTLE if settle is None else settle,
            short={'namespace="shop",': "", self.C["pod"]: "web", self.S["pod"]: "api",
                   ',pod_template_hash="%s",replicaset="%s",deployment="web"'
                   % (self.C["pod_template_hash"], self.C["replicaset"]): "",
                   ',pod_template_hash="%s",replicaset="%s",deployment="api"'
                   % (self.S["pod_template_hash"], self.S["replicaset"]): ""},
            context=(self.C["pod"], self.S["pod"]))
