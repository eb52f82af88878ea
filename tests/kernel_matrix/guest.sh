#!/bin/bash
# PID 1 of a kernel-matrix guest once init.sh switched to the host's root (its
# tmpfs overlay): mounts what the agent and the tests need, makes the guest
# kernel's own modules reachable, runs the smoke suite with the environment
# run.py wrote to /run/podtap-matrix/start, and powers the guest off. Output
# goes to /run/podtap-matrix/suite.log, the suite's exit code to suite.rc.
#
#   guest.sh MODULES_DIR    the kernel's /lib/modules/<version> on the host
set -u
out=/run/podtap-matrix
exec >"$out/suite.log" 2>&1
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
version="$(uname -r)"
echo "kernel-matrix guest: $version"
mount -t tracefs tracefs /sys/kernel/tracing
mount -t bpf bpf /sys/fs/bpf
mount -t cgroup2 cgroup2 /sys/fs/cgroup
mkdir -p /dev/shm /dev/pts /lib/modules
mount -t tmpfs -o mode=1777 shm /dev/shm
mount -t devpts devpts /dev/pts
ln -sfn "$1" "/lib/modules/$version"
modprobe veth || echo "kernel-matrix guest: modprobe veth failed"
ip link set lo up
/usr/bin/python3 -B "$here/../e2e/test_kernel_smoke.py"
echo $? >"$out/suite.rc"
sync
exec /bin/busybox poweroff -f
