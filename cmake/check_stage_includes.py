#!/usr/bin/env python3
"""Fails when a stage of the agent includes a header of a stage it may not use.

CMakeLists.txt runs it before each stage's library compiles (podtap_stage), with the stages the
library links: a source in agent/conn/ may include agent/conn/, agent/kernel/, ... headers, never
agent/query/ ones. The kernel ABI (bpf/, the generated skeletons) stays in agent/kernel/, the
generated CRI client in agent/metadata/.
"""
import argparse
import pathlib
import re
import sys

INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"')
# Generated or kernel headers a single stage owns: (pattern, the stage that may include them).
OWNED = [
    (re.compile(r"^bpf/"), "agent/kernel"),
    (re.compile(r"\.skel\.h$"), "agent/kernel"),
    (re.compile(r"^cri\.(grpc\.)?pb\.h$"), "agent/metadata"),
]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", required=True)
    ap.add_argument("--stage", required=True, help="the stage's folder, e.g. agent/conn")
    ap.add_argument("--may-use", default="", help="';'-separated folders of the stages it uses")
    ap.add_argument("--stamp", required=True)
    args = ap.parse_args()
    root = pathlib.Path(args.root)
    allowed = {args.stage} | {d for d in args.may_use.split(";") if d}
    errors = []
    for path in sorted((root / args.stage).glob("*")):
        if path.suffix not in (".h", ".cc"):
            continue
        for lineno, line in enumerate(path.read_text().splitlines(), 1):
            m = INCLUDE.match(line)
            if not m:
                continue
            header = m.group(1)
            where = f"{path.relative_to(root)}:{lineno}"
            owner = next((o for pat, o in OWNED if pat.search(header)), None)
            if owner is not None:
                if owner != args.stage:
                    errors.append(f"{where}: error: {header} belongs to {owner}; "
                                  f"{args.stage} may not include it")
                continue
            if not (header.startswith("agent/") or header.startswith("exporter/")):
                continue
            folder = str(pathlib.PurePosixPath(header).parent)
            if folder not in allowed:
                errors.append(f"{where}: error: {args.stage} may not include {header} "
                              f"(it may use: {', '.join(sorted(allowed))})")
    for e in errors:
        print(e, file=sys.stderr)
    if errors:
        return 1
    stamp = pathlib.Path(args.stamp)
    stamp.parent.mkdir(parents=True, exist_ok=True)
    stamp.write_text("ok\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
