"""A stand-in for the Kubernetes API server, because no API server can run on
the test machines: an HTTPS server (a CA and certificate the test makes with
openssl, a bearer token it checks) with the list and watch endpoints podtap
uses, serving objects in the real API's JSON shapes (PodList with
metadata.resourceVersion, watch events {"type":"ADDED","object":{...}} one per
line, BOOKMARK events, ERROR events carrying a Status 410 "Expired").

The test drives it: put()/delete() objects (each bumps the resourceVersion and
is streamed to open watches), bookmark(), compact() (older resourceVersions
answer 410 Gone, as an HTTP status or an ERROR event in the stream),
break_watches() (streams end in the middle of an event line, connection
reset), stop() and start() (the server goes away and comes back on the same
port), `delay` (seconds every request waits before it is answered: a slow API
server). Every request is recorded for the test to check what the client asked.

Stdlib only, for Debian's /usr/bin/python3; openssl from PATH.
"""

import copy
import http.server
import json
import os
import re
import socket
import ssl
import struct
import subprocess
import sys
import threading
import time
import urllib.parse

# path -> (resource, list kind, apiVersion, object kind)
RESOURCES = {
    "/api/v1/pods": ("pods", "PodList", "v1", "Pod"),
    "/apis/apps/v1/replicasets": ("replicasets", "ReplicaSetList", "apps/v1", "ReplicaSet"),
    "/api/v1/services": ("services", "ServiceList", "v1", "Service"),
    "/apis/discovery.k8s.io/v1/endpointslices":
        ("endpointslices", "EndpointSliceList", "discovery.k8s.io/v1", "EndpointSlice"),
}
KIND_OF = {r: (kind, api) for r, _, api, kind in RESOURCES.values()}
MAX_WATCH_SECONDS = 600  # bound on one stream, whatever timeoutSeconds asks


def status(code, reason, message):
    """A metav1.Status object, as the API server sends for failures."""
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": reason, "code": code}


def make_pki(workdir):
    """A CA and a server certificate for 127.0.0.1 signed by it (openssl CLI).
    Returns (ca.crt, server.crt, server.key) paths."""
    def run(*args):
        subprocess.run(["openssl"] + list(args), check=True, capture_output=True, timeout=30)
    ca_key, ca_crt = os.path.join(workdir, "ca.key"), os.path.join(workdir, "ca.crt")
    key, csr, crt = (os.path.join(workdir, n) for n in ("server.key", "server.csr", "server.crt"))
    ext = os.path.join(workdir, "server.ext")
    with open(ext, "w") as f:
        f.write("subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")
    run("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", ca_key, "-out", ca_crt, "-days", "2", "-subj", "/CN=podtap-e2e-ca")
    run("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", key, "-out", csr, "-subj", "/CN=kube-apiserver")
    run("x509", "-req", "-in", csr, "-CA", ca_crt, "-CAkey", ca_key, "-CAcreateserial",
        "-out", crt, "-days", "2", "-extfile", ext)
    return ca_crt, crt, key


class ReplayApi:
    def __init__(self, workdir, token, port):
        self.workdir = workdir
        self.token = token
        self.port = port
        self.ca, self.cert, self.key = make_pki(workdir)
        self.cond = threading.Condition()
        self.rv = 100
        self.objects = {r: {} for r in KIND_OF}      # resource -> key -> object
        self.log = []                                # (rv, resource, type, object)
        self.compacted_rv = 0                        # watches from below this get 410
        self.gone_as_event = True                    # 410 as an ERROR event, else HTTP 410
        self.bookmarks = 0                           # bumped by bookmark()
        self.breaks = 0                              # bumped by break_watches()
        self.requests = []                           # (resource, "list"|"watch", query, auth ok)
        self.server = None
        self.thread = None
        self.conns = set()
        self.stopping = False
        self.delay = 0.0                             # seconds before answering a request

    # ---- configuration the agent reads ---------------------------------------

    def write_kubeconfig(self, path):
        """A kubeconfig naming this server, its CA (a path relative to the
        kubeconfig's folder) and the bearer token."""
        ca_rel = os.path.relpath(self.ca, os.path.dirname(path))
        with open(path, "w") as f:
            f.write("apiVersion: v1\nkind: Config\ncurrent-context: replay\n"
                    "clusters:\n- name: replay\n  cluster:\n"
                    "    server: https://127.0.0.1:%d\n    certificate-authority: %s\n"
                    "contexts:\n- name: replay\n  context:\n    cluster: replay\n"
                    "    user: podtap\n    namespace: default\n"
                    "users:\n- name: podtap\n  user:\n    token: %s\n"
                    % (self.port, ca_rel, self.token))
        return path

    # ---- the API's state ---------------------------------------------------------

    def put(self, resource, obj):
        """Adds or replaces an object (ADDED or MODIFIED); returns its resourceVersion."""
        with self.cond:
            self.rv += 1
            obj = copy.deepcopy(obj)
            kind, api = KIND_OF[resource]
            obj.setdefault("kind", kind)
            obj.setdefault("apiVersion", api)
            obj["metadata"]["resourceVersion"] = str(self.rv)
            key = "%s/%s" % (obj["metadata"].get("namespace", ""), obj["metadata"]["name"])
            event = "MODIFIED" if key in self.objects[resource] else "ADDED"
            self.objects[resource][key] = obj
            self.log.append((self.rv, resource, event, obj))
            self.cond.notify_all()
            return self.rv

    def delete(self, resource, namespace, name):
        with self.cond:
            obj = self.objects[resource].pop("%s/%s" % (namespace, name))
            self.rv += 1
            obj = copy.deepcopy(obj)
            obj["metadata"]["resourceVersion"] = str(self.rv)
            self.log.append((self.rv, resource, "DELETED", obj))
            self.cond.notify_all()

    def bookmark(self):
        """Every open watch that asked for bookmarks gets one at the current
        resourceVersion. Returns that resourceVersion."""
        with self.cond:
            self.rv += 1  # a bookmark moves past every event sent so far
            self.bookmarks += 1
            self.cond.notify_all()
            return self.rv

    def compact(self, as_event=True):
        """Forgets history: a watch from an older resourceVersion answers 410
        Gone (an ERROR event in a 200 stream, or an HTTP 410)."""
        with self.cond:
            self.rv += 1  # every resourceVersion a client holds is now too old
            self.compacted_rv = self.rv
            self.gone_as_event = as_event
            self.log = []
            self.cond.notify_all()

    def break_watches(self):
        """Open watch streams send half an event line, then reset."""
        with self.cond:
            self.breaks += 1
            self.cond.notify_all()

    def watches(self, resource):
        with self.cond:
            return [q for r, verb, q, _ in self.requests if r == resource and verb == "watch"]

    def lists(self, resource):
        with self.cond:
            return [q for r, verb, q, _ in self.requests if r == resource and verb == "list"]

    def unauthorized(self):
        with self.cond:
            return sum(1 for *_, ok in self.requests if not ok)

    # ---- serving -------------------------------------------------------------------

    def start(self):
        api = self

        class Handler(_Handler):
            replay = api

        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(self.cert, self.key)
        server = _Server(("127.0.0.1", self.port), Handler, bind_and_activate=False)
        server.allow_reuse_address = True
        server.daemon_threads = True
        server.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.server_bind()
        server.server_activate()
        server.socket = ctx.wrap_socket(server.socket, server_side=True,
                                        do_handshake_on_connect=False)
        with self.cond:
            self.stopping = False
        self.server = server
        self.thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1},
                                       daemon=True)
        self.thread.start()
        return self

    def stop(self):
        """The server goes away: no more connections, open streams reset."""
        if self.server is None:
            return
        with self.cond:
            self.stopping = True
            self.cond.notify_all()
        self.server.shutdown()
        self.server.server_close()
        with self.cond:
            conns = list(self.conns)
        for c in conns:
            _reset(c)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with self.cond:
                if not self.conns:
                    break
            time.sleep(0.05)
        self.thread.join(timeout=10)
        self.server = None


class _Server(http.server.ThreadingHTTPServer):
    def handle_error(self, request, client_address):
        # Connections the test resets on purpose end in OSErrors; anything
        # else is printed as usual.
        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)


def _reset(sock):
    """Closes a connection with a RST (SO_LINGER 0), as a crashed server would."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    replay = None  # set by ReplayApi.start

    def log_message(self, fmt, *args):
        pass

    def setup(self):
        super().setup()
        with self.replay.cond:
            self.replay.conns.add(self.connection)

    def finish(self):
        try:
            super().finish()
        except OSError:
            pass
        with self.replay.cond:
            self.replay.conns.discard(self.connection)

    def send_json(self, code, obj):
        body = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        api = self.replay
        url = urllib.parse.urlsplit(self.path)
        query = dict(urllib.parse.parse_qsl(url.query))
        entry = RESOURCES.get(url.path)
        # Pods of one namespace (podtap --kube lists its agents' so).
        namespaced = re.fullmatch(r"/api/v1/namespaces/([^/]+)/pods", url.path)
        if namespaced:
            entry = RESOURCES["/api/v1/pods"]
        auth_ok = self.headers.get("Authorization") == "Bearer " + api.token
        verb = "watch" if query.get("watch") in ("1", "true") else "list"
        with api.cond:
            api.requests.append((entry[0] if entry else url.path, verb, query, auth_ok))
        time.sleep(api.delay)
        if not auth_ok:
            self.send_json(401, status(401, "Unauthorized", "Unauthorized"))
            return
        if entry is None:
            self.send_json(404, status(404, "NotFound", "the server could not find the "
                                       "requested resource"))
            return
        if verb == "list":
            self.serve_list(entry, namespaced.group(1) if namespaced else None,
                            query.get("labelSelector", ""))
        else:
            self.serve_watch(entry, query)

    def serve_list(self, entry, namespace=None, selector=""):
        """The list; only `namespace`'s objects when given, and only those
        whose labels have every key=value of `selector`."""
        resource, list_kind, api_version, _ = entry
        api = self.replay
        wanted = [kv.split("=", 1) for kv in selector.split(",") if kv]
        with api.cond:
            items = [copy.deepcopy(o) for _, o in sorted(api.objects[resource].items())
                     if namespace in (None, o["metadata"].get("namespace"))
                     and all(o["metadata"].get("labels", {}).get(k) == v for k, v in wanted)]
            rv = api.rv
        for o in items:  # items of a list carry no kind/apiVersion
            o.pop("kind", None)
            o.pop("apiVersion", None)
        self.send_json(200, {"kind": list_kind, "apiVersion": api_version,
                             "metadata": {"resourceVersion": str(rv)}, "items": items})

    def chunk(self, data):
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def serve_watch(self, entry, query):
        resource, _, api_version, kind = entry
        api = self.replay
        since = int(query.get("resourceVersion") or 0)
        timeout = min(int(query.get("timeoutSeconds") or MAX_WATCH_SECONDS), MAX_WATCH_SECONDS)
        bookmarks_wanted = query.get("allowWatchBookmarks") == "true"
        with api.cond:
            expired = since < api.compacted_rv
            as_event = api.gone_as_event
            gone_message = "too old resource version: %d (%d)" % (since, api.compacted_rv)
        if expired and not as_event:
            self.send_json(410, status(410, "Expired", gone_message))
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        if expired:
            self.chunk(json.dumps({"type": "ERROR",
                                   "object": status(410, "Expired", gone_message)}).encode()
                       + b"\n")
            self.chunk(b"")
            return
        deadline = time.monotonic() + timeout
        sent_rv = since
        with api.cond:
            seen_bookmarks, seen_breaks = api.bookmarks, api.breaks
        while True:
            with api.cond:
                while True:
                    pending = [e for e in api.log if e[0] > sent_rv and e[1] == resource]
                    if (pending or api.bookmarks != seen_bookmarks or api.breaks != seen_breaks
                            or api.stopping or time.monotonic() >= deadline):
                        break
                    api.cond.wait(timeout=max(0.0, min(1.0, deadline - time.monotonic())))
                bookmark = api.bookmarks != seen_bookmarks
                broken = api.breaks != seen_breaks
                seen_bookmarks, seen_breaks = api.bookmarks, api.breaks
                stopping = api.stopping
                current_rv = api.rv
            try:
                if stopping:
                    _reset(self.connection)
                    return
                for rv, _, event, obj in pending:
                    self.chunk(json.dumps({"type": event, "object": obj}).encode() + b"\n")
                    sent_rv = rv
                if bookmark and bookmarks_wanted:
                    self.chunk(json.dumps({"type": "BOOKMARK", "object": {
                        "kind": kind, "apiVersion": api_version,
                        "metadata": {"resourceVersion": str(current_rv)}}}).encode() + b"\n")
                    sent_rv = max(sent_rv, current_rv)
                if broken:
                    self.chunk(b'{"type":"ADDED","object":{"metadata":{"name":"cut-he')
                    _reset(self.connection)
                    self.close_connection = True
                    return
                if time.monotonic() >= deadline:
                    self.chunk(b"")  # the end of a chunked body: a clean end
                    return
            except OSError:
                self.close_connection = True
                return
