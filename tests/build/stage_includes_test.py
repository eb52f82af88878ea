#!/usr/bin/env python3
"""Tests cmake/check_stage_includes.py, the build's check that each stage of agent/ includes only
the stages it may use, on small trees of its own."""
import pathlib
import subprocess
import sys
import tempfile
import unittest

CHECK = pathlib.Path(__file__).resolve().parents[2] / "cmake" / "check_stage_includes.py"


class StageIncludesTest(unittest.TestCase):
    def check(self, files, stage, may_use):
        with tempfile.TemporaryDirectory() as d:
            root = pathlib.Path(d)
            for name, text in files.items():
                (root / name).parent.mkdir(parents=True, exist_ok=True)
                (root / name).write_text(text)
            stamp = root / "out" / "stage.ok"
            r = subprocess.run([sys.executable, str(CHECK), "--root", str(root), "--stage", stage,
                                "--may-use", ";".join(may_use), "--stamp", str(stamp)],
                               capture_output=True, text=True, check=False)
            return r.returncode, r.stderr, stamp.exists()

    def test_allowed_includes_pass_and_stamp(self):
        rc, err, stamped = self.check(
            {"agent/conn/a.cc": '#include "agent/conn/a.h"\n#include "agent/kernel/k.h"\n'
                                '#include <vector>\n#include "query.grpc.pb.h"\n'},
            "agent/conn", ["agent/kernel"])
        self.assertEqual((rc, err), (0, ""))
        self.assertTrue(stamped)

    def test_include_of_a_later_stage_fails_with_file_and_line(self):
        rc, err, stamped = self.check(
            {"agent/conn/a.h": '#pragma once\n\n#include "agent/query/window.h"\n'},
            "agent/conn", ["agent/kernel"])
        self.assertEqual(rc, 1)
        self.assertIn("agent/conn/a.h:3: error: agent/conn may not include agent/query/window.h",
                      err)
        self.assertFalse(stamped)

    def test_kernel_abi_and_skeletons_only_in_the_kernel_stage(self):
        files = {"agent/conn/a.cc": '#include "bpf/podtap.h"\n#include "tcp.skel.h"\n'}
        rc, err, _ = self.check(files, "agent/conn", ["agent/kernel"])
        self.assertEqual(rc, 1)
        self.assertIn("bpf/podtap.h belongs to agent/kernel", err)
        self.assertIn("tcp.skel.h belongs to agent/kernel", err)
        files = {"agent/kernel/a.cc": '#include "bpf/podtap.h"\n#include "tcp.skel.h"\n'}
        self.assertEqual(self.check(files, "agent/kernel", [])[0], 0)

    def test_top_level_stage_is_its_own_folder_only(self):
        # agent/ itself: a header of agent/ is its own, one of agent/query/ needs query in use.
        files = {"agent/main.cc": '#include "agent/agent.h"\n#include "agent/query/tap.h"\n'}
        self.assertEqual(self.check(files, "agent", ["agent/query"])[0], 0)
        self.assertEqual(self.check(files, "agent", [])[0], 1)


if __name__ == "__main__":
    unittest.main()
