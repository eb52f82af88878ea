"""nginx as a real server in a test pod, for the HTTP and HTTP/2 suites: its
own config, files and logs in a temporary folder, run in the foreground as
our child and stopped by PID, and its JSON access log as ground truth."""

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time

import harness

NGINX = "/usr/sbin/nginx"


def nginx_conf(http):
    """A whole nginx.conf for Nginx (a %-format string): nginx in the
    foreground as our child with one worker, its pid, error log and temporary
    files in the work folder, and `http` as the directives of its http block."""
    return ("daemon off;\n"
            "master_process on;\n"
            "worker_processes 1;\n"
            "pid %(dir)s/nginx.pid;\n"
            "error_log %(dir)s/error.log notice;\n"
            "events { worker_connections 512; }\n"
            "http {\n"
            "    client_body_temp_path %(dir)s/tmp/body;\n"
            "    proxy_temp_path %(dir)s/tmp/proxy;\n"
            "    fastcgi_temp_path %(dir)s/tmp/fastcgi;\n"
            "    uwsgi_temp_path %(dir)s/tmp/uwsgi;\n"
            "    scgi_temp_path %(dir)s/tmp/scgi;\n"
            + http + "}\n")


class Nginx:
    """nginx in namespace `ns`. `conf` is the whole nginx.conf as a %-format
    string, formatted with `params` plus "dir" (the work folder); `files` maps names under
    www/ to sizes (3 bytes or fewer: "ok\\n" cut to size; more: random bytes);
    `ports` are the TCP ports it listens on and `listeners` how many listening
    sockets it has when up; `prepare(params)`, when given, writes what else
    the config refers to."""

    def __init__(self, ns, conf, params, files, ports, listeners, prepare=None,
                 prefix="ptE2e-nginx-"):
        self.ns = ns
        self.dir = tempfile.mkdtemp(prefix=prefix)
        self.conf = conf
        self.params = dict(params, dir=self.dir)
        self.files = files
        self.ports = tuple(ports)
        self.listeners = listeners
        self.prepare = prepare
        self.access_log = os.path.join(self.dir, "access.log")
        self.error_log = os.path.join(self.dir, "error.log")
        self.popen = None

    def _write_files(self):
        www = os.path.join(self.dir, "www")
        for d in (www, os.path.join(self.dir, "tmp")):
            os.makedirs(d)
        for d in (self.dir, www, os.path.join(self.dir, "tmp")):
            os.chmod(d, 0o755)  # workers run as nobody, whatever the umask
        with open("/dev/urandom", "rb") as rnd:
            for name, size in self.files.items():
                path = os.path.join(www, name)
                with open(path, "wb") as f:
                    f.write(b"ok\n"[:size] if size <= 3 else rnd.read(size))
                os.chmod(path, 0o644)
        with open(os.path.join(self.dir, "nginx.conf"), "w") as f:
            f.write(self.conf % self.params)
        if self.prepare is not None:
            self.prepare(self.params)

    def start(self):
        self._write_files()
        self._stderr = open(os.path.join(self.dir, "stderr.log"), "w")
        cmd = (harness._orphan_guard("TERM")
               + ["ip", "netns", "exec", self.ns, NGINX, "-p", self.dir + "/",
                  "-e", self.error_log, "-c", os.path.join(self.dir, "nginx.conf")])
        harness.log("starting nginx: %s" % " ".join(cmd))
        # setpriv and `ip netns exec` both exec: the PID is nginx's master.
        self.popen = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=self._stderr,
                                      stderr=subprocess.STDOUT)
        harness._live_procs[self.popen.pid] = self.popen
        deadline = time.monotonic() + harness.scaled(15)
        while time.monotonic() < deadline:
            if self.popen.poll() is not None:
                raise RuntimeError("nginx exited with %s\n%s" % (self.popen.returncode,
                                                                 self.logs_tail()))
            if len(self.listening()) == self.listeners:
                return self
            time.sleep(0.05)
        raise RuntimeError("nginx not listening within %.0fs: %s\n%s"
                           % (harness.scaled(15), self.listening(), self.logs_tail()))

    def listening_all(self):
        """Every listening TCP address in the namespace."""
        out = harness.sh(["ip", "netns", "exec", self.ns, "ss", "-Hltn"]).stdout
        return [l.split()[3] for l in out.splitlines() if l.strip()]

    def listening(self):
        return [a for a in self.listening_all()
                if a.rsplit(":", 1)[-1] in {str(p) for p in self.ports}]

    def connections(self, port=None):
        """nginx's sockets with `port` (default: the first of `ports`) as local
        port, in any state but LISTEN."""
        out = harness.sh(["ip", "netns", "exec", self.ns, "ss", "-Htan",
                          "sport = :%d" % (port or self.ports[0])]).stdout
        return [l for l in out.splitlines() if l.strip() and not l.startswith("LISTEN")]

    def stop(self):
        if self.popen is not None:
            # SIGTERM: fast shutdown; the master stops its workers and waits for them.
            rc = harness._stop_pid(self.popen, signal.SIGTERM)
            self._stderr.close()
            self.popen = None
            return rc
        return None

    def remove(self, artifacts, name_prefix="nginx-"):
        """Stops nginx and removes its folder, keeping its logs in `artifacts`
        when something there says a test failed."""
        rc = self.stop()
        if rc not in (0, None):
            harness.log("WARNING: nginx exited with %s after SIGTERM" % rc)
        if os.path.isdir(artifacts) and os.listdir(artifacts):
            for name in ("access.log", "error.log", "stderr.log", "nginx.conf"):
                src = os.path.join(self.dir, name)
                if os.path.exists(src):
                    shutil.copy(src, os.path.join(artifacts, name_prefix + name))
        shutil.rmtree(self.dir, ignore_errors=True)

    def offset(self):
        try:
            return os.path.getsize(self.access_log)
        except OSError:
            return 0

    def entries(self, since, count=None, port=None, timeout=20):
        """The access log entries after byte offset `since`, once the log
        stopped growing for 0.5 s and either there are `count` of them or,
        when count is None, nginx holds no connection on `port`."""
        deadline = time.monotonic() + timeout
        last = None
        stable_since = time.monotonic()
        while True:
            got = self._read(since)
            now = time.monotonic()
            if last is None or len(got) != len(last):
                last, stable_since = got, now
            if count is not None:
                done = len(got) >= count and now - stable_since >= 0.5
            else:
                done = not self.connections(port) and now - stable_since >= 0.5
            if done:
                break
            if now >= deadline:
                raise RuntimeError("nginx access log: %d entries after %ds (expected %s; "
                                   "open connections: %s)\n%s"
                                   % (len(got), timeout, count, self.connections(port),
                                      self.logs_tail()))
            time.sleep(0.1)
        if count is not None and len(got) != count:
            raise RuntimeError("nginx logged %d requests, the clients made %d:\n%s"
                               % (len(got), count, "\n".join(json.dumps(e) for e in got)))
        return got

    def _read(self, since, until=None):
        with open(self.access_log, "rb") as f:
            f.seek(since)
            data = f.read() if until is None else f.read(until - since)
        return [json.loads(l) for l in data.split(b"\n")[:-1]]  # complete lines only

    def accepted(self, since, entries):
        """Connections nginx accepted after the last entry before `since`, up
        to the last of `entries`: its connection serial ($connection) counts
        every accepted connection, also those that never carried a request."""
        before = [int(e["conn"]) for e in self._read(0, since)]
        return max(int(e["conn"]) for e in entries) - max(before, default=0)

    def logs_tail(self, lines=20):
        out = []
        for path in (self.error_log, os.path.join(self.dir, "stderr.log")):
            try:
                with open(path, errors="replace") as f:
                    text = f.read().splitlines()
            except OSError:
                continue
            out.append("---- %s (last %d lines) ----\n%s"
                       % (path, lines, "\n".join(text[-lines:])))
        return "\n".join(out)
