#!/usr/bin/python3
"""`make demo`: the newcomer's first minute with podtap, on one machine.

Makes two pods (network namespaces joined by a veth pair, as the end-to-end
tests do), runs a real nginx in the `api` pod and real load from the `web`
pod (wrk, and curl with some failing requests), starts podtap-agent with the
two pods in a pods file, and shows what `podtap tap`, `podtap stat`,
`podtap top` and `podtap edges` say. Two more agents play two nodes, each
given one of the pods and serving its query listener (TLS and a token, as
the DaemonSet does): `podtap stat` of one node next to the merged answer of
both (`--agent` twice), and next to the cluster-wide one of a podtap-relay
in front of them (`--relay`, what `kubectl podtap` reaches through kubectl
port-forward). Then it stops everything it started, by PID, removes the
namespaces and exits. Root; about 25 seconds.

PODTAP_AGENT, PODTAP_CLI and PODTAP_RELAY name the binaries (default:
build/).
"""

import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from nginx import Nginx, nginx_conf  # noqa: E402

CLI = os.environ.get("PODTAP_CLI", os.path.join(harness.REPO, "build", "podtap"))
RELAY = os.environ.get("PODTAP_RELAY", os.path.join(os.path.dirname(CLI), "podtap-relay"))
OPENSSL = "/usr/bin/openssl"
WRK = "/usr/bin/wrk"
CURL = "/usr/bin/curl"
PORT = 8080

NGINX_CONF = nginx_conf(r"""
    access_log off;
    default_type application/json;
    server {
        listen %(ip4)s:%(port)d;
        location /api/items { return 200 '{"items":[1,2,3]}\n'; }
        location /api/orders { return 200 '{"orders":[]}\n'; }
        location /api/pay { return 503 '{"error":"payment backend down"}\n'; }
    }
""")


def say(text):
    print(text, flush=True)


def main():
    if os.geteuid() != 0:
        sys.exit("make demo: must run as root (network namespaces, eBPF)")
    for tool in (harness.AGENT, CLI, RELAY, WRK, CURL, OPENSSL):
        if not os.access(tool, os.X_OK):
            sys.exit("make demo: %s is missing (make deps; make build)" % tool)
    harness.cleanup_stale_namespaces()
    topo = harness.Topology().create()
    client, server = harness.make_pods(topo)
    workdir = tempfile.mkdtemp(prefix="podtap-demo-")
    nginx = Nginx(topo.server_ns, NGINX_CONF, {"ip4": topo.SERVER_IP4, "port": PORT}, {},
                  ports=(PORT,), listeners=1, prefix="podtap-demo-nginx-")
    agent = harness.Agent(workdir, [client, server], log_level="info", diag_interval=1)
    # As if on two nodes: each knows one pod (all three see every socket),
    # and serves its query listener with one certificate and token, as the
    # DaemonSet's agents share Secret podtap-query.
    cert, key, token = (os.path.join(workdir, n) for n in ("tls.crt", "tls.key", "token"))
    harness.sh([OPENSSL, "req", "-x509", "-newkey", "ec", "-pkeyopt",
                "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1", "-subj", "/CN=podtap-agent",
                "-addext", "subjectAltName=DNS:podtap-agent", "-keyout", key, "-out", cert])
    with open(token, "w") as f:
        f.write(os.urandom(16).hex() + "\n")
    nodes, listens = [], []
    for name, pod in (("node-a", client), ("node-b", server)):
        os.makedirs(os.path.join(workdir, name))
        listens.append("127.0.0.1:%d" % harness.free_port())
        nodes.append(harness.Agent(os.path.join(workdir, name), [pod], log_level="info",
                                   diag_interval=1, extra_args=[
                                       "--query-listen", listens[-1], "--query-tls-cert", cert,
                                       "--query-tls-key", key, "--query-token-file", token]))
    relay_addr = "127.0.0.1:%d" % harness.free_port()
    relay = None
    try:
        nginx.start()
        for a in [agent] + nodes:
            a.start()
        for a in [agent] + nodes:
            a.wait_ready()
        podtap = [CLI, "--agent", "unix://" + agent.query_socket]
        base = "http://%s:%d" % (topo.SERVER_IP4, PORT)
        say("podtap demo: pod shop/%s (deployment web) sends requests to nginx in pod "
            "shop/%s (deployment api);\npodtap-agent watches both from the kernel (its "
            "query socket: %s).\n" % (client.name, server.name, agent.query_socket))

        say("$ podtap tap -n shop deploy/api --count 8")
        tap = subprocess.Popen(harness._orphan_guard("TERM") + podtap + [
            "tap", "-n", "shop", "deploy/api", "--count", "8", "--duration", "20"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        harness._live_procs[tap.pid] = tap
        tap.stderr.readline()  # "tap attached"
        urls = []
        for i in range(40):
            urls += [base + ("/api/pay?card=hidden" if i % 4 == 3 else "/api/orders?page=%d" % i),
                     "-o", "/dev/null"]
        in_client = harness._orphan_guard("KILL") + ["ip", "netns", "exec", topo.client_ns]
        curl = subprocess.Popen(in_client + [CURL, "-sS", "--max-time", "20"] + urls,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        harness._live_procs[curl.pid] = curl
        wrk = subprocess.run(in_client + [WRK, "-t1", "-c4", "-d4s", base + "/api/items"],
                             capture_output=True, text=True, timeout=30)
        harness._stop_pid(curl, timeout=20)
        out, _ = tap.communicate(timeout=30)
        harness._live_procs.pop(tap.pid, None)
        say(out)
        requests = [l for l in wrk.stdout.splitlines() if "requests in" in l]
        say("(meanwhile wrk: %s; curl: 40 requests, every 4th one failing)\n"
            % (requests[0].strip() if requests else "no report"))
        time.sleep(1.5)  # live byte counters are read every second here
        for args in (["stat", "deploy", "-n", "shop"], ["stat", "pod", "-n", "shop"],
                     ["top", "-n", "shop", "--limit", "5"], ["edges", "-n", "shop"]):
            say("$ podtap " + " ".join(args))
            p = subprocess.run(podtap + args, capture_output=True, text=True, timeout=30)
            say(p.stdout + p.stderr)
        say("Two nodes: an agent that knows only pod web (node-a) and one that knows only "
            "pod api (node-b);\npodtap-relay in front of both, as kubectl podtap reaches it.\n")
        with open(os.path.join(workdir, "relay.log"), "w") as log:
            relay = subprocess.Popen(
                harness._orphan_guard("TERM") + [
                    RELAY, "--listen", relay_addr, "--ca", cert, "--token-file", token,
                    "--agent", listens[0], "--agent", listens[1]],
                stdout=subprocess.DEVNULL, stderr=log, stdin=subprocess.DEVNULL)
        harness._live_procs[relay.pid] = relay
        deadline = time.monotonic() + 10
        while True:
            with open(os.path.join(workdir, "relay.log")) as f:
                text = f.read()
            if "serving on" in text:
                break
            if relay.poll() is not None or time.monotonic() > deadline:
                sys.exit("make demo: podtap-relay did not start: " + text)
            time.sleep(0.05)
        node_b = "unix://" + nodes[1].query_socket
        creds = ["--ca", cert, "--token-file", token, "--tls-server-name", "podtap-agent"]
        for shown, cmd in (("--agent <node-b>", ["--agent", node_b]),
                           ("--agent <node-a> --agent <node-b>",
                            creds + ["--agent", listens[0], "--agent", listens[1]]),
                           ("--relay <podtap-relay>", ["--relay", relay_addr])):
            say("$ podtap %s stat deploy -n shop" % shown)
            p = subprocess.run([CLI] + cmd + ["stat", "deploy", "-n", "shop"],
                               capture_output=True, text=True, timeout=30)
            say(p.stdout + p.stderr)
        say("Try it yourself: make run, then in another shell: sudo build/podtap stat")
    finally:
        if relay is not None:
            harness._stop_pid(relay)
            harness._live_procs.pop(relay.pid, None)
        for a in [agent] + nodes:
            a.stop()
        nginx.remove(workdir)
        shutil.rmtree(workdir, ignore_errors=True)
        topo.destroy()


if __name__ == "__main__":
    main()
