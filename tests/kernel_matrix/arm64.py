"""The arm64 part of the kernel matrix: podtap's BPF objects built for arm64
on this x86_64 host and verified, loaded and attached by Debian's own arm64
kernels under QEMU (qemu-system-aarch64, TCG).

What it takes, all from Debian's arm64 archive through apt options of its
own (a lists folder in the cache, APT::Architecture=arm64; the host's apt
and dpkg state stay as they are), cached under PODTAP_KERNEL_CACHE:
- each series' newest generic kernel package (the Image boots as it is);
- the kernel's BTF, cut out of the Image (the .BTF section is carried
  whole; its header gives its length), for the arm64 vmlinux.h;
- a sysroot of the arm64 -dev packages libbpf needs, to link
  bpf_verify.c statically for aarch64 with clang and lld.

The objects come from the project's own CMake rules, configured with
PODTAP_BPF_ARCH=arm64 and that BTF (a build folder of their own, only the
bpf_skeletons target), so the arm64 objects are the ones a native arm64
build makes. The guest's initramfs holds the verifier as /init and nothing
else: no agent or smoke suite runs on arm64 (the agent's userspace is not
cross-built here), only the kernel's verdict on every program.
Stdlib only, for Debian's /usr/bin/python3.
"""

import os
import re
import shutil
import struct
import subprocess

import kernels

QEMU = "/usr/bin/qemu-system-aarch64"
CLANG = "/usr/bin/clang"
VERIFY_SRC = os.path.join(kernels.HERE, "bpf_verify.c")
SUITE = "bookworm-arm64"
kernels.OTHER_SUITES[SUITE] = [
    "deb [arch=arm64] http://deb.debian.org/debian bookworm main",
    "deb [arch=arm64] http://deb.debian.org/debian bookworm-updates main",
    "deb [arch=arm64] http://deb.debian.org/debian-security bookworm-security main",
]
ARCH_OPTIONS = ["-o", "APT::Architecture=arm64", "-o", "APT::Architectures::=arm64",
                "-o", "Dir::State::status=/dev/null"]
# Series -> package name pattern (the generic 4K-page kernels).
SERIES = {
    "6.1": r"^linux-image-6\.1\.0-(\d+)-arm64$",
    "6.12": r"^linux-image-6\.12\.(\d+)\+(?:deb12|bpo)-arm64$",
}
# What libbpf and the verifier link against; the headers come with them.
SYSROOT_PACKAGES = ["libbpf-dev", "libelf-dev", "zlib1g-dev", "libzstd-dev", "libc6-dev",
                    "libgcc-12-dev", "linux-libc-dev"]
# Attempts that fail on a series by design: the agent tries the next build.
EXPECTED_FAILURES = {
    "6.1": {"payload btf_cast": "bpf_rdonly_cast is not in 6.1's BTF (6.2+): the agent "
                                "picks probe_read, as on x86_64"},
}
BTF_MAGIC = b"\x9f\xeb\x01\x00"  # magic 0xeb9f, version 1, flags 0


def apt(args, cwd=None):
    opts = kernels.apt_options(SUITE) + ARCH_OPTIONS
    return kernels.run(args[:1] + opts + args[1:], cwd=cwd, text=True)


def download(packages, dest):
    """Unpacks the arm64 packages into dest."""
    tmp = dest + ".debs"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    try:
        apt(["apt-get", "download", "-q"] + packages, cwd=tmp)
        for deb in sorted(os.listdir(tmp)):
            kernels.run(["dpkg-deb", "-x", os.path.join(tmp, deb), dest])
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def extract_btf(image, out):
    """Writes the raw BTF an arm64 Image carries: the first BTF header whose
    type section starts at 0 and whose strings follow the types, past a
    megabyte of types (the kernel's own, not a stray match)."""
    with open(image, "rb") as f:
        data = f.read()
    at = data.find(BTF_MAGIC)
    while at >= 0:
        hdr_len, type_off, type_len, str_off, str_len = struct.unpack_from("<5I", data, at + 4)
        if hdr_len == 24 and type_off == 0 and str_off == type_len and type_len > 1 << 20:
            with open(out, "wb") as f:
                f.write(data[at:at + hdr_len + str_off + str_len])
            return
        at = data.find(BTF_MAGIC, at + 1)
    raise RuntimeError("%s: no BTF found in the image" % image)


class Kernel:
    def __init__(self, series):
        out = apt(["apt-cache", "search", "--names-only", "^linux-image-%s" % re.escape(series)])
        names = [l.split(" - ", 1)[0] for l in out.stdout.splitlines()]
        found = [(int(re.match(SERIES[series], n).group(1)), n) for n in names
                 if re.match(SERIES[series], n)]
        if not found:
            raise RuntimeError("apt knows no arm64 package matching %s" % SERIES[series])
        self.series = series
        self.package = max(found)[1]
        self.version = self.package[len("linux-image-"):]
        self.dir = os.path.join(kernels.CACHE, self.version)
        self.image = os.path.join(self.dir, "root", "boot", "vmlinuz-" + self.version)
        self.btf = os.path.join(self.dir, "vmlinux.btf")

    def prepare(self):
        if os.path.exists(os.path.join(self.dir, "ready")):
            return self
        kernels.log("preparing %s in %s" % (self.package, self.dir))
        shutil.rmtree(self.dir, ignore_errors=True)
        download([self.package], os.path.join(self.dir, "root"))
        extract_btf(self.image, self.btf)
        open(os.path.join(self.dir, "ready"), "w").close()
        return self


def sysroot():
    """The arm64 -dev packages unpacked once (refreshed with the lists)."""
    root = os.path.join(kernels.CACHE, "arm64-sysroot")
    if not os.path.exists(os.path.join(root, "ready")):
        kernels.log("unpacking the arm64 sysroot into %s" % root)
        shutil.rmtree(root, ignore_errors=True)
        download(SYSROOT_PACKAGES, root)
        open(os.path.join(root, "ready"), "w").close()
    return root


def build(repo, build_dir, btf, log_path):
    """The arm64 BPF objects and skeletons (CMake, PODTAP_BPF_ARCH=arm64),
    the verifier linked against them, and the initramfs holding it; returns
    the initramfs path."""
    with open(log_path, "w") as out:
        for cmd in (["cmake", "-S", repo, "-B", build_dir, "-DCMAKE_BUILD_TYPE=RelWithDebInfo",
                     "-DPODTAP_BPF_ARCH=arm64", "-DPODTAP_VMLINUX_BTF=" + btf],
                    ["cmake", "--build", build_dir, "--target", "bpf_skeletons"]):
            subprocess.run(cmd, check=True, stdout=out, stderr=subprocess.STDOUT, timeout=600)
        root = sysroot()
        verify = os.path.join(build_dir, "bpf-verify")
        subprocess.run([CLANG, "--target=aarch64-linux-gnu", "--sysroot=" + root,
                        "-fuse-ld=lld", "-static", "-O2", "-Wall", "-Werror",
                        "-I", os.path.join(build_dir, "bpf"), VERIFY_SRC,
                        "-L", os.path.join(root, "usr", "lib", "aarch64-linux-gnu"),
                        "-lbpf", "-lelf", "-lz", "-lzstd", "-o", verify],
                       check=True, stdout=out, stderr=subprocess.STDOUT, timeout=600)
    with open(verify, "rb") as f:
        init = f.read()
    initramfs = os.path.join(build_dir, "initramfs.cpio")
    with open(initramfs, "wb") as f:
        f.write(kernels._cpio_newc([("dev", 0o40755, b"", (0, 0)),
                                    ("dev/console", 0o20600, b"", (5, 1)),
                                    ("proc", 0o40755, b"", (0, 0)),
                                    ("sys", 0o40755, b"", (0, 0)),
                                    ("init", 0o100755, init, (0, 0))]))
    return initramfs


def parse(console):
    """The verifier's lines: ({attempt: "ok" or the error}, the auto pick,
    whether it finished)."""
    attempts, pick, done = {}, None, False
    for line in console.splitlines():
        m = re.match(r"bpf-verify: (.+?): (ok|FAILED \((.*)\))\s*$", line)
        if m:
            attempts[m.group(1)] = "ok" if m.group(2) == "ok" else m.group(3)
        elif line.startswith("bpf-verify: auto picks "):
            pick = line.split()[-1]
        elif line.strip() == "bpf-verify: done":
            done = True
    return attempts, pick, done


def qemu_command(kernel, initramfs):
    return [QEMU, "-machine", "virt", "-cpu", "max", "-smp", "2", "-m", "1G", "-nographic",
            "-no-reboot", "-nic", "none", "-kernel", kernel.image, "-initrd", initramfs,
            "-append", "console=ttyAMA0 panic=-1 loglevel=4"]
