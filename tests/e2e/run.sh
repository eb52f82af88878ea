#!/bin/bash
# Entry point of podtap's real-kernel end-to-end tests (called by the Makefile):
# checks for root, then runs the unittest suite with Debian's Python and exits
# with its status. The agent mounts tracefs/bpffs itself; nothing is mounted here.
#
#   tests/e2e/run.sh                       all suites
#   tests/e2e/run.sh test_http_exact       one suite (module; any tests/e2e/test_*.py)
#   tests/e2e/run.sh test_e_long_lived     one TCP case (or a full unittest name)
#   PODTAP_AGENT=/path/to/podtap-agent     another agent binary
#   PODTAP_AGENT_ARGS="--payload-probes probe_read"   flags added to every agent
set -u
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
if [ "$(id -u)" -ne 0 ]; then
  echo "tests/e2e: must run as root (network namespaces, veth pairs, eBPF); try: sudo $0" >&2
  exit 1
fi
if [ ! -x /usr/bin/python3 ]; then
  echo "tests/e2e: /usr/bin/python3 (Debian's python3) is required" >&2
  exit 1
fi
tests=()
for t in "$@"; do
  if [ -f "$here/$t.py" ]; then
    tests+=("$t")  # a suite (module)
    continue
  fi
  case "$t" in
    *.*) tests+=("$t") ;;
    *) tests+=("test_tcp_exact.TcpExactTest.$t") ;;
  esac
done
[ ${#tests[@]} -eq 0 ] && tests=(test_tcp_exact test_http_exact)
cd "$here"
exec /usr/bin/python3 -B -m unittest -v "${tests[@]}"
