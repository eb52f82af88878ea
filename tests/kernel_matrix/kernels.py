"""Debian's own kernels for the kernel matrix, ready to boot under QEMU: the
newest package of each series (bookworm's 6.1 and 6.12 from the archive apt
is configured with, bullseye's 5.10 through apt options of its own), its
ELF vmlinux (taken out of the bzImage, so the guest boots through the PVH
entry without decompressing), its modules with a modules.dep, and an
initramfs holding busybox, init.sh and the modules init.sh needs to mount
the host's root over virtio-9p.

Everything lives in a cache folder outside the repository (PODTAP_KERNEL_CACHE,
default /var/cache/podtap-kernels/<version>/), reused when present; nothing
goes to the host's /boot. Stdlib only, for Debian's /usr/bin/python3.

    /usr/bin/python3 tests/kernel_matrix/kernels.py     prepares every series
"""

import lzma
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass

HERE = os.path.dirname(os.path.abspath(__file__))
CACHE = os.environ.get("PODTAP_KERNEL_CACHE", "/var/cache/podtap-kernels")
BUSYBOX = "/bin/busybox"  # busybox-static
INIT = os.path.join(HERE, "init.sh")

# Series -> (Debian suite, apt-cache search, package name pattern); the
# capture group orders the candidates. The generic kernels, not -cloud (no
# 9p) or -rt. Suite None: the machine's own apt configuration (bookworm).
SERIES = {
    "5.10": ("bullseye", r"^linux-image-5\.10\.0-", r"^linux-image-5\.10\.0-(\d+)-amd64$"),
    "6.1": (None, r"^linux-image-6\.1\.0-", r"^linux-image-6\.1\.0-(\d+)-amd64$"),
    "6.12": (None, r"^linux-image-6\.12\.",
             r"^linux-image-6\.12\.(\d+)\+(?:deb12|bpo)-amd64$"),
}
# Suites the machine's apt is not configured with: apt runs with sources and
# package lists of their own in the cache folder, and the host's apt state
# stays as it is. The archive keyring holds their keys.
OTHER_SUITES = {
    "bullseye": ["deb http://deb.debian.org/debian bullseye main",
                 "deb http://deb.debian.org/debian-security bullseye-security main"],
}
LISTS_MAX_AGE = 24 * 3600  # seconds before their lists are updated again
# What init.sh loads before it mounts the host's root (modprobe adds what
# they depend on; some are built in, depending on the kernel).
INITRAMFS_MODULES = ["virtio_pci", "9pnet_virtio", "9p", "overlay"]


@dataclass
class Kernel:
    series: str
    package: str
    version: str  # uname -r
    dir: str
    vmlinux: str
    initramfs: str

    @property
    def modules(self):
        return os.path.join(self.dir, "root", "lib", "modules", self.version)


def log(msg):
    sys.stderr.write("[kernels] %s\n" % msg)
    sys.stderr.flush()


def run(args, **kwargs):
    return subprocess.run(args, check=True, capture_output=True, timeout=600, **kwargs)


def apt_options(suite):
    """apt's options for `suite`: none for the machine's own configuration;
    otherwise sources and lists in CACHE/apt-<suite>, updated when missing
    or a day old."""
    if suite is None:
        return []
    base = os.path.join(CACHE, "apt-" + suite)
    lists = os.path.join(base, "lists")
    opts = ["-o", "Dir::Etc::SourceList=" + os.path.join(base, "sources.list"),
            "-o", "Dir::Etc::SourceParts=" + os.path.join(base, "sources.list.d"),
            "-o", "Dir::State::Lists=" + lists,
            "-o", "Dir::Cache=" + os.path.join(base, "cache")]
    got = [os.path.join(lists, f) for f in os.listdir(lists)] if os.path.isdir(lists) else []
    got = [f for f in got if "_Packages" in f]
    if not got or time.time() - min(os.path.getmtime(f) for f in got) > LISTS_MAX_AGE:
        for d in ("sources.list.d", "lists/partial", "cache/archives/partial"):
            os.makedirs(os.path.join(base, d), exist_ok=True)
        with open(os.path.join(base, "sources.list"), "w") as f:
            f.write("".join(l + "\n" for l in OTHER_SUITES[suite]))
        log("apt-get update for %s (lists in %s)" % (suite, lists))
        run(["apt-get", "update", "-q"] + opts)
    return opts


def newest_package(series):
    """The newest package of a series apt can download, by its ABI or
    upstream patch number."""
    suite, search, pattern = SERIES[series]
    out = run(["apt-cache"] + apt_options(suite) + ["search", "--names-only", search],
              text=True).stdout
    names = [l.split(" - ", 1)[0] for l in out.splitlines()]
    found = [(int(re.match(pattern, n).group(1)), n) for n in names if re.match(pattern, n)]
    if not found:
        raise RuntimeError("apt knows no package matching %s (apt-get update?)" % pattern)
    return max(found)[1]


def extract_vmlinux(bzimage, out):
    """Writes the ELF kernel the bzImage carries: the setup header gives the
    compressed payload's offset and length (Documentation/arch/x86/boot.rst);
    the payload ends with its decompressed size (4 bytes), left out here."""
    with open(bzimage, "rb") as f:
        data = f.read()
    if data[0x202:0x206] != b"HdrS":
        raise RuntimeError("%s: not a bzImage" % bzimage)
    setup_sects = data[0x1F1] or 4
    offset, length = struct.unpack_from("<II", data, 0x248)
    start = (setup_sects + 1) * 512 + offset
    payload = data[start:start + length]
    if payload.startswith(b"\xfd7zXZ\x00"):
        elf = lzma.LZMADecompressor(format=lzma.FORMAT_XZ).decompress(payload)
    elif payload.startswith(b"\x28\xb5\x2f\xfd"):
        elf = run(["zstd", "-dcq"], input=payload[:-4]).stdout
    else:
        raise RuntimeError("%s: payload compression %s not handled"
                           % (bzimage, payload[:6].hex()))
    if not elf.startswith(b"\x7fELF"):
        raise RuntimeError("%s: the payload is not an ELF file" % bzimage)
    with open(out, "wb") as f:
        f.write(elf)


def _decompress_module(path):
    with open(path, "rb") as f:
        data = f.read()
    if path.endswith(".xz"):
        return lzma.decompress(data)
    if path.endswith(".zst"):
        return run(["zstd", "-dcq"], input=data).stdout
    return data


def _cpio_newc(entries):
    """An uncompressed newc cpio archive of entries (name, mode, data, rdev)
    in order; directories before what they hold."""
    out = bytearray()
    for ino, (name, mode, data, rdev) in enumerate(entries + [("TRAILER!!!", 0, b"", (0, 0))],
                                                   1):
        raw = name.encode() + b"\0"
        fields = [ino, mode, 0, 0, 1, 0, len(data), 0, 0, rdev[0], rdev[1], len(raw), 0]
        out += b"070701" + b"".join(b"%08X" % v for v in fields) + raw
        out += b"\0" * (-len(out) % 4) + data
        out += b"\0" * (-len(out) % 4)
    return bytes(out)


def build_initramfs(version, root, out):
    """busybox, init.sh as /init, /dev/console, and the modules of
    INITRAMFS_MODULES in load order as /modules/NN-name.ko."""
    paths = []
    for module in INITRAMFS_MODULES:  # one each: modprobe takes the rest as parameters
        p = run(["modprobe", "-d", root, "-S", version, "--show-depends", module], text=True)
        for line in p.stdout.splitlines():
            parts = line.split()
            if parts and parts[0] == "insmod" and parts[1] not in paths:
                paths.append(parts[1])
    entries = [("bin", 0o40755, b"", (0, 0)), ("dev", 0o40755, b"", (0, 0)),
               ("dev/console", 0o20600, b"", (5, 1)), ("modules", 0o40755, b"", (0, 0)),
               ("proc", 0o40755, b"", (0, 0)), ("sys", 0o40755, b"", (0, 0))]
    with open(BUSYBOX, "rb") as f:
        entries.append(("bin/busybox", 0o100755, f.read(), (0, 0)))
    with open(INIT, "rb") as f:
        entries.append(("init", 0o100755, f.read(), (0, 0)))
    for i, path in enumerate(paths):
        name = re.sub(r"\.ko(\.xz|\.zst)?$", "", os.path.basename(path))
        entries.append(("modules/%02d-%s.ko" % (i, name), 0o100644, _decompress_module(path),
                        (0, 0)))
    with open(out, "wb") as f:
        f.write(_cpio_newc(entries))
    return [os.path.basename(p) for p in paths]


def prepare(series):
    """The newest kernel of `series`, downloaded and unpacked once."""
    package = newest_package(series)
    version = package[len("linux-image-"):]
    kdir = os.path.join(CACHE, version)
    k = Kernel(series, package, version, kdir, os.path.join(kdir, "vmlinux"),
               os.path.join(kdir, "initramfs.cpio"))
    if os.path.exists(os.path.join(kdir, "ready")):
        # init.sh may have changed since: the initramfs is cheap to rebuild.
        build_initramfs(version, os.path.join(kdir, "root"), k.initramfs)
        return k
    log("preparing %s in %s" % (package, kdir))
    shutil.rmtree(kdir, ignore_errors=True)
    os.makedirs(kdir)
    with tempfile.TemporaryDirectory(dir=kdir) as tmp:
        run(["apt-get"] + apt_options(SERIES[series][0]) + ["download", "-q", package],
            cwd=tmp)
        (deb,) = [f for f in os.listdir(tmp) if f.endswith(".deb")]
        run(["dpkg-deb", "-x", os.path.join(tmp, deb), os.path.join(kdir, "root")])
    extract_vmlinux(os.path.join(kdir, "root", "boot", "vmlinuz-" + version), k.vmlinux)
    # The package's postinst would run depmod; it never runs here.
    run(["depmod", "-b", os.path.join(kdir, "root"), version])
    mods = build_initramfs(version, os.path.join(kdir, "root"), k.initramfs)
    log("%s: vmlinux %d MB, initramfs modules %s"
        % (version, os.path.getsize(k.vmlinux) >> 20, " ".join(mods)))
    open(os.path.join(kdir, "ready"), "w").close()
    return k


if __name__ == "__main__":
    for s in SERIES:
        k = prepare(s)
        print("%s %s %s %s" % (s, k.version, k.vmlinux, k.initramfs))
