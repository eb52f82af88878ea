#!/usr/bin/python3
"""The kernel matrix (`make kernel-matrix`): the smoke suite
(tests/e2e/test_kernel_smoke.py) on this machine's kernel, then in a QEMU
guest (TCG, no network device) of each Debian kernel kernels.py prepares,
each bounded by a timeout; one summary table per run, printed and written to
build/kernel-matrix.md, the logs beside it in build/kernel-matrix/<kernel>/
(console, suite log, result JSON, and the agent logs and last scrapes of
failing cases). Then the arm64 part (arm64.py): the BPF objects built for
arm64 and verified, loaded and attached by Debian's arm64 kernels in
aarch64 guests, one row each. Exits 1 when any kernel failed.

Each guest shares the host's root read-only (init.sh puts a tmpfs overlay
over it) and a per-run temporary folder read-write: run.py writes the
guest's start command there, the guest leaves its result JSON and logs.
Root; stdlib only, for Debian's /usr/bin/python3.

    run.py [--kernels 6.12,6.1] [--arm64-kernels 6.1,6.12] [--guest-timeout S]
           [--agent-args "6.1=--capture-payload false"]
"""

import argparse
import atexit
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import arm64
import kernels

REPO = os.path.dirname(os.path.dirname(kernels.HERE))
SMOKE = os.path.join(REPO, "tests", "e2e", "test_kernel_smoke.py")
GUEST = os.path.join(kernels.HERE, "guest.sh")
QEMU = "/usr/bin/qemu-system-x86_64"
SLOWDOWN = 20  # PODTAP_E2E_SLOWDOWN in a guest: TCG runs 12-20x slower

# Cases that fail on a kernel series today, by series, with why: the agent's
# open faults on that kernel (issue #16, docs/kernel-matrix.md). They still
# run and are reported; the matrix fails when any other case fails, and
# says so when a listed case passes (then it comes off this list). None
# today: 5.10's HTTP/2 and gRPC cases came off when the compat build's frame
# walk went on in tail calls (docs/kernel-matrix.md, "Runs").
KNOWN_FAILURES = {}


def log(msg):
    sys.stderr.write("[kernel-matrix] %s\n" % msg)
    sys.stderr.flush()


def run_bounded(cmd, timeout, stdout, env=None):
    """Runs cmd to its end or until `timeout`, then SIGKILLs it by PID.
    Returns (exit code or None when it timed out, seconds)."""
    t0 = time.monotonic()
    p = subprocess.Popen(cmd, stdout=stdout, stderr=subprocess.STDOUT,
                         stdin=subprocess.DEVNULL, env=env)
    try:
        rc = p.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.kill(p.pid, signal.SIGKILL)
        p.wait()
        rc = None
    except BaseException:
        os.kill(p.pid, signal.SIGKILL)
        p.wait()
        raise
    return rc, time.monotonic() - t0


def read_result(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def run_host(agent, agent_args, timeout, logdir):
    """The smoke suite on this machine's kernel."""
    result_path = os.path.join(logdir, "result.json")
    env = dict(os.environ, PODTAP_AGENT=agent, PODTAP_MATRIX_RESULT=result_path,
               PODTAP_AGENT_ARGS=agent_args,
               PODTAP_E2E_ARTIFACTS=os.path.join(logdir, "artifacts"))
    with open(os.path.join(logdir, "suite.log"), "w") as out:
        rc, wall = run_bounded([sys.executable, "-B", SMOKE], timeout, out, env)
    return rc, wall, read_result(result_path)


def guest_visible(path):
    """`path` (the agent binary, or the tests folder) where a guest sees it:
    the guest has the host's root but a /tmp and /run of its own, so what
    lies there (a checkout CI made under /tmp, say) is copied into the kernel
    cache for the run (removed at exit)."""
    real = os.path.realpath(path)
    if not real.startswith(("/tmp/", "/run/", "/var/run/")):
        return real
    folder = os.path.join(kernels.CACHE, "run-%d" % os.getpid())
    os.makedirs(folder, exist_ok=True)
    atexit.register(shutil.rmtree, folder, True)
    copy = os.path.join(folder, os.path.basename(real))
    if os.path.isdir(real):
        shutil.copytree(real, copy, ignore=shutil.ignore_patterns("__pycache__"))
    else:
        shutil.copy2(real, copy)
    log("%s is not visible in a guest (its /tmp and /run are its own): using a copy, %s"
        % (path, copy))
    return copy


def run_guest(kernel, agent, guest_script, agent_args, timeout, logdir):
    """The smoke suite in a QEMU guest of `kernel`; the guest's logs are
    copied to logdir."""
    share = tempfile.mkdtemp(prefix="podtap-kmatrix-")
    try:
        env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
               "HOME": "/root", "PODTAP_AGENT": agent, "PODTAP_E2E_SLOWDOWN": str(SLOWDOWN),
               "PODTAP_AGENT_ARGS": agent_args,
               "PODTAP_MATRIX_RESULT": "/run/podtap-matrix/result.json",
               "PODTAP_E2E_ARTIFACTS": "/run/podtap-matrix/artifacts"}
        with open(os.path.join(share, "start"), "w") as f:
            f.write("".join("export %s=%s\n" % (k, shlex.quote(v)) for k, v in env.items()))
            f.write("exec /bin/bash %s %s\n" % (shlex.quote(guest_script),
                                                 shlex.quote(kernel.modules)))
        cmd = [QEMU, "-machine", "q35,accel=tcg", "-cpu", "max", "-m", "2G", "-smp", "2",
               "-nographic", "-no-reboot", "-nic", "none",
               "-kernel", kernel.vmlinux, "-initrd", kernel.initramfs,
               "-append", "console=ttyS0 panic=-1 loglevel=4",
               "-fsdev", "local,id=hostroot,path=/,security_model=none,readonly=on,"
                         "multidevs=remap",
               "-device", "virtio-9p-pci,fsdev=hostroot,mount_tag=hostroot",
               "-fsdev", "local,id=results,path=%s,security_model=none" % share,
               "-device", "virtio-9p-pci,fsdev=results,mount_tag=results"]
        with open(os.path.join(logdir, "console.log"), "w") as out:
            rc, wall = run_bounded(cmd, timeout, out)
        for name in ("suite.log", "result.json"):
            if os.path.exists(os.path.join(share, name)):
                shutil.copy(os.path.join(share, name), os.path.join(logdir, name))
        if os.path.isdir(os.path.join(share, "artifacts")):  # a failing case's agent logs
            shutil.copytree(os.path.join(share, "artifacts"), os.path.join(logdir, "artifacts"))
        return rc, wall, read_result(os.path.join(share, "result.json"))
    finally:
        shutil.rmtree(share, ignore_errors=True)


def variant(result):
    """podtap_build_info's labels but the version, as the agent reports them."""
    info = result.get("build_info") if result else None
    if not isinstance(info, dict):
        return "unknown"
    return ",".join("%s=%s" % kv for kv in sorted(info.items()) if kv[0] != "version") or "-"


def features(result):
    feats = result.get("kernel_features") if result else None
    if not isinstance(feats, list):
        return "unknown"
    return ", ".join("%s=%s" % (f["feature"], f["state"]) for f in feats if f["value"])


def row(name, where, rc, wall, result, series):
    starts = (result or {}).get("agent_starts", [])
    startup = " / ".join("-" if s["seconds"] is None else "%.1f" % s["seconds"] for s in starts)
    known = KNOWN_FAILURES.get(series, {})
    failed = {k for k, v in (result or {}).get("cases", {}).items() if v not in ("pass", "skip")}
    ok = bool(result) and rc is not None and failed <= set(known)
    verdict = "PASS" if ok and rc == 0 and not failed else "FAIL"
    if ok and failed:
        verdict = "PASS but known failures (%d)" % len(failed)
    mended = sorted(set(known) - failed) if result else []
    if result:
        cases = "%d / %d" % (result["passed"], result["failed"])
        if result["skipped"]:
            cases += " (%d skipped)" % result["skipped"]
        if rc is None:
            cases += " (timed out)"
    else:
        cases = "no result (%s)" % ("timed out" if rc is None else "exit %s" % rc)
    return {"kernel": name, "where": where, "variant": variant(result),
            "startup": startup or "-", "cases": cases, "wall": "%.0f" % wall,
            "verdict": verdict, "result": result, "known": known, "mended": mended}


def run_arm64(series_list, build_dir, timeout, logroot):
    """The arm64 rows: the objects built for arm64 once, then each kernel's
    verdict on them in an aarch64 guest."""
    ks = [arm64.Kernel(s).prepare() for s in series_list]
    os.makedirs(logroot, exist_ok=True)
    build_log = os.path.join(logroot, "arm64-build.log")
    log("arm64: building the BPF objects for arm64 and the verifier (log %s)" % build_log)
    rows = []
    try:
        # One vmlinux.h for the architecture, from its oldest kernel, as the
        # x86_64 objects have one from the build machine's kernel.
        initramfs = arm64.build(REPO, build_dir, ks[0].btf, build_log)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as e:
        log("arm64: build failed: %s" % e)
        return [arm64_row(k, None, 0, None, "build failed (%s)" % build_log) for k in ks]
    for k in ks:
        logdir = os.path.join(logroot, k.version)
        os.makedirs(logdir)
        log("guest %s: verifying the arm64 objects under qemu-system-aarch64 (bound %.0f s)"
            % (k.version, timeout))
        console = os.path.join(logdir, "console.log")
        with open(console, "w") as out:
            rc, wall = run_bounded(arm64.qemu_command(k, initramfs), timeout, out)
        with open(console, errors="replace") as f:
            rows.append(arm64_row(k, rc, wall, arm64.parse(f.read()), None))
        log("guest %s: %s in %.0f s" % (k.version, rows[-1]["verdict"], wall))
    return rows


def arm64_row(kernel, rc, wall, parsed, error):
    attempts, pick, done = parsed or ({}, None, False)
    expected = arm64.EXPECTED_FAILURES.get(kernel.series, {})
    failed = {a for a, v in attempts.items() if v != "ok"}
    ok = done and attempts and failed <= set(expected) and pick not in (None, "none")
    details = ["- %s (arm64, BPF objects verified, loaded and attached; no agent): %s"
               % (kernel.version, error or ", ".join(
                   "%s %s" % (a, "ok" if v == "ok" else "failed: " + v
                              + ("; expected: " + expected[a] if a in expected else ""))
                   for a, v in attempts.items()) or "no verifier output (console.log)")]
    return {"kernel": kernel.version, "where": "QEMU guest, aarch64",
            "variant": "auto picks %s" % (pick or "-"), "startup": "-",
            "cases": "%d / %d" % (len(attempts) - len(failed), len(failed)) if attempts
            else "no result (%s)" % (error or ("timed out" if rc is None else "exit %s" % rc)),
            "wall": "%.0f" % wall, "verdict": "PASS" if ok else "FAIL", "result": None,
            "known": {}, "mended": [], "details": details}


def table(rows):
    head = ["kernel", "where", "variant attached (podtap_build_info)",
            "agent start -> /readyz 200, s (first / after restart)",
            "cases passed / failed", "wall, s", "verdict"]
    keys = ["kernel", "where", "variant", "startup", "cases", "wall", "verdict"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(r[k] for k in keys) + " |" for r in rows]
    details = []
    for r in rows:
        if "details" in r:
            details += r["details"]
            continue
        res = r["result"] or {}
        details.append("- %s: kernel features: %s" % (r["kernel"], features(res)))
        if res.get("programs"):
            details.append("  - programs attached, by type (the agent's BPF links as the "
                           "kernel lists them): %s"
                           % ", ".join("%s %d" % kv for kv in sorted(res["programs"].items())))
        if res.get("agent_args"):
            details.append("  - agent flags: %s" % " ".join(res["agent_args"]))
        bad = sorted(k for k, v in res.get("cases", {}).items() if v not in ("pass", "skip"))
        if bad:
            details.append("  - not passed: %s" % ", ".join(
                "%s (%s%s)" % (k, res["cases"][k],
                               "; known: " + r["known"][k] if k in r["known"] else "")
                for k in bad))
        if r["mended"]:
            details.append("  - listed as known failures but passed (take them off "
                           "KNOWN_FAILURES in tests/kernel_matrix/run.py): %s"
                           % ", ".join(r["mended"]))
        if res.get("agent_error"):
            lines = [l for l in res["agent_error"].splitlines() if "[podtap]" in l]
            worst = ([l for l in lines if "[critical]" in l or "[error]" in l]
                     or [l for l in lines if "[warning]" in l] or lines or ["(no log)"])
            details.append("  - the agent did not become ready: %s" % worst[-1])
    return "\n".join(lines) + "\n\n" + "\n".join(details) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--agent", default=os.path.join(REPO, "build", "podtap-agent"))
    ap.add_argument("--kernels", default=",".join(kernels.SERIES),
                    help="Debian kernel series for guests (default: %(default)s)")
    ap.add_argument("--arm64-kernels", default=",".join(arm64.SERIES),
                    help="Debian arm64 kernel series whose verifier checks the arm64 objects "
                    "(default: %(default)s; empty: none)")
    ap.add_argument("--arm64-timeout", type=float, default=300)
    ap.add_argument("--no-host", action="store_true", help="skip this machine's kernel")
    ap.add_argument("--host-timeout", type=float, default=600)
    ap.add_argument("--guest-timeout", type=float, default=720)
    ap.add_argument("--agent-args", action="append", default=[],
                    help="SERIES=FLAGS: extra agent flags on one kernel series (host: 'host')")
    ap.add_argument("--out", default=os.path.join(REPO, "build", "kernel-matrix.md"))
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("kernel-matrix: must run as root (namespaces, eBPF, QEMU's 9p of /)")
    agent = os.path.abspath(args.agent)
    if not os.access(agent, os.X_OK):
        sys.exit("kernel-matrix: no agent at %s (make build)" % agent)
    extra = dict(a.split("=", 1) for a in args.agent_args)
    logroot = os.path.join(os.path.dirname(os.path.abspath(args.out)), "kernel-matrix")
    shutil.rmtree(logroot, ignore_errors=True)
    t0 = time.monotonic()
    rows = []
    if not args.no_host:
        logdir = os.path.join(logroot, "host")
        os.makedirs(logdir)
        log("host kernel %s: smoke suite (logs in %s)" % (os.uname().release, logdir))
        rc, wall, res = run_host(agent, extra.get("host", ""), args.host_timeout, logdir)
        rows.append(row(os.uname().release, "host", rc, wall, res, "host"))
        log("host: %s in %.0f s" % (rows[-1]["verdict"], wall))
    series_list = [s for s in args.kernels.split(",") if s]
    guest_agent = guest_visible(agent) if series_list else agent
    # guest.sh runs the smoke suite beside it, from the same tests folder.
    guest_script = (os.path.join(guest_visible(os.path.join(REPO, "tests")), "kernel_matrix",
                                 os.path.basename(GUEST)) if series_list else GUEST)
    for series in series_list:
        k = kernels.prepare(series)
        logdir = os.path.join(logroot, k.version)
        os.makedirs(logdir)
        log("guest %s: smoke suite under QEMU (logs in %s, bound %.0f s)"
            % (k.version, logdir, args.guest_timeout))
        rc, wall, res = run_guest(k, guest_agent, guest_script, extra.get(series, ""),
                                  args.guest_timeout, logdir)
        rows.append(row(k.version, "QEMU guest", rc, wall, res, series))
        log("guest %s: %s in %.0f s" % (k.version, rows[-1]["verdict"], wall))
    arm64_list = [s for s in args.arm64_kernels.split(",") if s]
    if arm64_list:
        rows += run_arm64(arm64_list,
                          os.path.join(os.path.dirname(os.path.abspath(args.out)), "bpf-arm64"),
                          args.arm64_timeout, logroot)
    text = table(rows)
    text += "\nWhole matrix: %.0f s wall.\n" % (time.monotonic() - t0)
    print(text)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        f.write(text)
    return 0 if all(r["verdict"].startswith("PASS") for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
