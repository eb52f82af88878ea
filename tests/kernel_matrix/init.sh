#!/bin/busybox sh
# PID 1 of a kernel-matrix guest's initramfs (kernels.py builds it): loads the
# 9p and overlay modules, mounts the host's root (virtio-9p, read-only) under
# a tmpfs overlay so the guest can write while the host stays untouched, the
# per-run results share at /run/podtap-matrix, and the kernel's own
# filesystems; then switch_root runs /run/podtap-matrix/start (written by
# run.py). Any failure powers the guest off, and run.py reports it.
/bin/busybox --install -s /bin
export PATH=/bin

fail() {
  echo "podtap-init: FAILED: $*"
  poweroff -f
}

mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
for m in /modules/*.ko; do
  insmod "$m" || fail "insmod $m"
done
mkdir -p /lower /rw /newroot
# cache=loose: the host's files do not change during a run, and a guest
# process start reads many of them.
mount -t 9p -o trans=virtio,version=9p2000.L,ro,cache=loose,msize=262144 hostroot /lower \
  || fail "mount the host's root over 9p"
mount -t tmpfs -o mode=0755 rw /rw && mkdir /rw/upper /rw/work || fail "tmpfs"
mount -t overlay -o lowerdir=/lower,upperdir=/rw/upper,workdir=/rw/work overlay /newroot \
  || fail "overlay"
# The host's /run and /tmp show through the lower layer: the guest gets its own.
mount -t tmpfs -o mode=0755 run /newroot/run || fail "tmpfs /run"
mount -t tmpfs -o mode=1777 tmp /newroot/tmp || fail "tmpfs /tmp"
mkdir -p /newroot/run/podtap-matrix
mount -t 9p -o trans=virtio,version=9p2000.L,cache=none,msize=262144 results \
  /newroot/run/podtap-matrix || fail "mount the results share"
for fs in proc sys dev; do
  mount --move /$fs /newroot/$fs || fail "move /$fs"
done
exec switch_root /newroot /bin/sh /run/podtap-matrix/start
