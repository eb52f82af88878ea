#!/usr/bin/python3
"""Real-kernel end-to-end test of an agent killed and restarted in the middle
of traffic: the connections already open when the new agent starts are found
through the kernel's socket diagnostics in each pod's network namespace, so
tcp_open_connections is right again at once, and every byte they carry after
the restart, their closes, and new connections are counted exactly.

Ground truth: peer.py's long-lived `hold` clients (each round's bytes are
known, and the kernel's own counters are checked against them) and `normal`
clients for the connections made after the restart.

Run as root: tests/e2e/run.sh test_restart. PODTAP_AGENT overrides the agent
binary; PODTAP_E2E_ARTIFACTS the folder where a failing case leaves the
agents' logs and last scrapes.
"""

import os
import signal
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import HEADER_LEN, Expect  # noqa: E402

SERVER_PORT = 18085
HOLDS = 3
# Round 1 before the kill, round 2 after the restart, then the close.
ROUNDS = [(120000, 50000), (30000, 70000)]
ARTIFACTS = (os.environ.get("PODTAP_E2E_ARTIFACTS")
             or tempfile.mkdtemp(prefix="ptE2e-restart-artifacts-"))


class RestartTest(harness.PodPairTest):
    ARTIFACTS = ARTIFACTS

    def start_named_agent(self, name, **kwargs):
        return harness.start_test_agent(
            self, os.path.join(ARTIFACTS, name), [self.client_pod, self.server_pod], **kwargs)

    def sides(self):
        return (self.labels("client", direction="outbound", peer="dst"),
                self.labels("server", direction="inbound", peer="src"))

    def test_sigkill_then_restart_adopts_open_connections(self):
        first = self.start_named_agent("first")
        server = harness.start_server(self.topo.server_ns, self.topo.SERVER_IP4, SERVER_PORT)
        self.addCleanup(server.stop)
        holds = []
        for i in range(HOLDS):
            h = harness.start_hold(self.topo.client_ns, self.topo.SERVER_IP4, SERVER_PORT,
                                   ROUNDS, seed=900 + i)
            self.addCleanup(h.stop)
            holds.append(h)
        for h in holds:
            ev = h.wait_event("exchanged", timeout=30, count=1)[0]
            self.assertEqual((ev["written"], ev["read"]),
                             (HEADER_LEN + ROUNDS[0][0], ROUNDS[0][1]), "hold peer's counts")
        out, inb = self.sides()
        self.wait_equal([Expect("tcp_open_connections", lbl, HOLDS, absolute=True)
                         for lbl in (out, inb)])

        # SIGKILL: no chance to clean up; the kernel detaches its programs
        # when its file descriptors close.
        harness._stop_pid(first.popen, signal.SIGKILL)
        first.exit_code = first.popen.returncode
        self.assertEqual(first.exit_code, -signal.SIGKILL)

        self.start_named_agent("second")
        fresh = [Expect("podtap_connections_adopted_total", {}, 2 * HOLDS, absolute=True),
                 Expect("podtap_connections_untracked_total", {}, 0, absolute=True)]
        for lbl in (out, inb):
            fresh += [Expect("tcp_open_connections", lbl, HOLDS, absolute=True),
                      Expect("tcp_open_total", lbl, HOLDS, absolute=True)]
        self.wait_equal(fresh)

        # Round 2 and the close, after the restart: counted exactly.
        for h in holds:
            self.assertIsNone(h.popen.poll(), "the connection must still be open")
            h.signal(signal.SIGUSR1)
        for h in holds:
            ev = h.wait_event("exchanged", timeout=30, count=2)[1]
            self.assertEqual((ev["written"], ev["read"]),
                             (2 * HEADER_LEN + ROUNDS[0][0] + ROUNDS[1][0],
                              ROUNDS[0][1] + ROUNDS[1][1]))
            h.signal(signal.SIGUSR1)  # close after the last round
        for h in holds:
            self.assertEqual(h.wait(timeout=30), 0, "hold peer: %s" % h.records)
            self.assertEqual(harness.kernel_mismatches(h.events("conn")[0], "client"), [])
        # And connections opened after the restart.
        plan = [(4000 + 17 * i, 9000 + 31 * i, "normal") for i in range(5)]
        run = harness.ClientRun(self.topo.client_ns, self.topo.SERVER_IP4, SERVER_PORT, plan,
                                seed=950)
        conns = run.finish()
        self.assertEqual(len(conns), len(plan))
        new_written = sum(HEADER_LEN + s for s, _, _ in plan)
        new_read = sum(r for _, r, _ in plan)
        after_w = HOLDS * (HEADER_LEN + ROUNDS[1][0])
        after_r = HOLDS * ROUNDS[1][1]
        ex = []
        for lbl, written, read in ((out, after_w + new_written, after_r + new_read),
                                   (inb, after_r + new_read, after_w + new_written)):
            ex += [Expect("tcp_open_total", lbl, HOLDS + len(plan), absolute=True),
                   Expect("tcp_close_total", dict(lbl, classification="success"),
                          HOLDS + len(plan), absolute=True),
                   Expect("tcp_open_connections", lbl, 0, absolute=True),
                   Expect("tcp_write_bytes_total", lbl, written, absolute=True),
                   Expect("tcp_read_bytes_total", lbl, read, absolute=True),
                   # The adopted connections' age is unknown: only the new ones.
                   Expect("tcp_connection_duration_ms_count",
                          dict(lbl, classification="success"), len(plan), absolute=True)]
        ex += [Expect("podtap_events_lost_total", {}, 0, absolute=True)]
        self.wait_equal(ex)


def tearDownModule():
    if os.path.isdir(ARTIFACTS) and not os.listdir(ARTIFACTS):
        os.rmdir(ARTIFACTS)
    else:
        harness.log("artifacts kept in %s" % ARTIFACTS)


if __name__ == "__main__":
    unittest.main(verbosity=2)
