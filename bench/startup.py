#!/usr/bin/python3
"""Startup: seconds from starting the agent to its first /readyz 200, for each
build of the socket data programs (docs/design.md, "One source, three builds")
and, as the baseline measured in the same run, with payload capture off
(the lifecycle program alone). Rounds are interleaved, so a load that comes
and goes touches every mode alike; the median of each is reported, with its
ratio to the baseline.

  /usr/bin/python3 bench/startup.py [--rounds 5]

Root only (it loads eBPF programs); the agent listens on 127.0.0.1 and is
stopped by its PID. PODTAP_AGENT overrides the agent binary (default
build/podtap-agent). Exits 1 when an agent does not become ready within
--timeout seconds.
"""

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "e2e"))
import harness  # noqa: E402

MODES = [
    ("tcp only (baseline)", ["--capture-payload", "false"]),
    ("auto", []),
    ("btf_cast", ["--payload-probes", "btf_cast"]),
    ("probe_read", ["--payload-probes", "probe_read"]),
    ("compat", ["--payload-probes", "compat"]),
]


def time_to_ready(workdir, args, timeout):
    agent = harness.Agent(workdir, [], log_level="info", extra_args=args)
    started = time.monotonic()
    agent.start()
    try:
        agent.wait_ready(timeout=timeout)
        return time.monotonic() - started, agent.log_text()
    finally:
        agent.stop()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--timeout", type=float, default=120)
    opts = ap.parse_args()
    workdir = tempfile.mkdtemp(prefix="ptStartup-")
    seconds = {name: [] for name, _ in MODES}
    variant = {}
    for r in range(opts.rounds):
        for name, args in MODES:
            s, log = time_to_ready(workdir, args, opts.timeout)
            seconds[name].append(s)
            for line in log.splitlines():
                if "attached socket data probes" in line:
                    variant[name] = line.split("attached socket data probes, ")[1].split(" build")[0]
            print("round %d %-20s %.2f s" % (r + 1, name, s), flush=True)
    base = statistics.median(seconds[MODES[0][0]])
    print("\n| mode | build | median s to /readyz 200 | ratio to tcp only |")
    print("|---|---|---|---|")
    for name, _ in MODES:
        m = statistics.median(seconds[name])
        print("| %s | %s | %.2f | %.2f |" % (name, variant.get(name, "off"), m, m / base))
    shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
