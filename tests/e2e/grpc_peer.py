#!/usr/bin/python3
"""A real gRPC server and client (Debian's python3-grpcio, the C core's
HTTP/2 over prior-knowledge h2c) for podtap's HTTP/2 end-to-end tests
(test_h2_exact.py). No .proto: the methods are registered with a generic
handler and carry raw bytes, so nothing is compiled at test time.

Each request says what its answer must be, so the outcome of every call is
known in advance and both peers can report it:

    request bytes = b"code=<grpc status>;size=<bytes per message>;count=<messages>;pad=..."

  /podtap.e2e.Echo/Unary         code 0: one message of `size` bytes;
                                 otherwise the call ends with that status
                                 and no message (a trailers-only response)
  /podtap.e2e.Echo/ServerStream  `count` messages of `size` bytes, then the
                                 status `code` (trailers after DATA)

Both print one JSON object per line on stdout:

  server: {"event": "listening", "port": P}, then per call, as its handler
          ends, {"event": "call", "method", "code", "messages", "authority"};
          SIGTERM stops it (grace 2 s) and it prints {"event": "stopped"}.
  client: per call {"event": "call", "method", "code", "messages", "bytes"},
          then {"event": "done", "target"}; it closes its channel (one
          connection) before it exits. --parallel N keeps up to N calls in
          flight on that connection; --authority sets grpc.default_authority.

Stdlib and grpc only; for Debian's /usr/bin/python3.
"""

import argparse
import json
import signal
import sys
import threading

import grpc

SERVICE = "podtap.e2e.Echo"
UNARY = "/%s/Unary" % SERVICE
STREAM = "/%s/ServerStream" % SERVICE
# Plain TCP, never a proxy, whatever the environment holds; no retries.
CHANNEL_OPTIONS = [("grpc.enable_http_proxy", 0), ("grpc.enable_retries", 0),
                   ("grpc.max_receive_message_length", 8 << 20),
                   ("grpc.max_send_message_length", 8 << 20)]

_out_lock = threading.Lock()


def emit(**rec):
    with _out_lock:
        sys.stdout.write(json.dumps(rec) + "\n")
        sys.stdout.flush()


def parse_request(data):
    fields = dict(kv.split("=", 1) for kv in data.decode("ascii").split(";") if "=" in kv)
    return int(fields.get("code", 0)), int(fields.get("size", 0)), int(fields.get("count", 1))


def status_code(code):
    for c in grpc.StatusCode:
        if c.value[0] == code:
            return c
    raise ValueError("unknown grpc status %d" % code)


def body(size, i=0):
    return bytes((i + j) & 0xFF for j in range(size)) if size < 4096 else \
        (bytes(range(256)) * (size // 256 + 1))[:size]


def authority(context):
    """The :authority the C core received (grpcio has no public accessor:
    the call details of the request event hold it as `host`)."""
    try:
        host = context._rpc_event.call_details.host
    except AttributeError:
        return None
    return host.decode("ascii") if isinstance(host, bytes) else host


def serve(args):
    def unary(request, context):
        code, size, _ = parse_request(request)
        emit(event="call", method=UNARY, code=code, messages=0 if code else 1,
             authority=authority(context))
        if code:
            context.abort(status_code(code), "podtap e2e: status %d as asked" % code)
        return body(size)

    def server_stream(request, context):
        code, size, count = parse_request(request)
        for i in range(count):
            yield body(size, i)
        emit(event="call", method=STREAM, code=code, messages=count,
             authority=authority(context))
        if code:
            context.abort(status_code(code), "podtap e2e: status %d after %d messages"
                          % (code, count))

    handler = grpc.method_handlers_generic_handler(SERVICE, {
        "Unary": grpc.unary_unary_rpc_method_handler(unary),
        "ServerStream": grpc.unary_stream_rpc_method_handler(server_stream),
    })
    from concurrent import futures
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4), handlers=[handler],
                         options=CHANNEL_OPTIONS)
    host = "[%s]" % args.addr if ":" in args.addr else args.addr
    port = server.add_insecure_port("%s:%d" % (host, args.port))
    if port != args.port:
        sys.stderr.write("could not bind %s:%d\n" % (host, args.port))
        return 1
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    server.start()
    emit(event="listening", port=port)
    # Bounded: a server nobody stops ends by itself.
    stop.wait(args.max_seconds)
    server.stop(grace=2).wait(5)
    emit(event="stopped")
    return 0


def client(args):
    with open(args.plan) as f:
        plan = json.load(f)  # [[method, request text], ...]
    options = list(CHANNEL_OPTIONS)
    if args.authority:
        options.append(("grpc.default_authority", args.authority))
    channel = grpc.insecure_channel(args.target, options=options)
    try:
        grpc.channel_ready_future(channel).result(timeout=args.timeout)
        unary = channel.unary_unary(UNARY)
        stream = channel.unary_stream(STREAM)

        def call(method, text):
            req = text.encode("ascii")
            got = []
            code = 0
            try:
                if method == UNARY:
                    got.append(unary(req, timeout=args.timeout))
                elif method == STREAM:
                    for msg in stream(req, timeout=args.timeout):
                        got.append(msg)
                else:
                    raise ValueError("unknown method %r" % method)
            except grpc.RpcError as e:
                code = e.code().value[0]
            emit(event="call", method=method, code=code, messages=len(got),
                 bytes=sum(len(m) for m in got))

        if args.parallel <= 1:
            for method, text in plan:
                call(method, text)
        else:
            # Up to `parallel` calls in flight at once, on the channel's one connection.
            from concurrent import futures
            with futures.ThreadPoolExecutor(max_workers=args.parallel) as pool:
                for f in [pool.submit(call, m, t) for m, t in plan]:
                    f.result()
    finally:
        channel.close()
    emit(event="done", target=args.target)
    return 0


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="mode", required=True)
    s = sub.add_parser("server")
    s.add_argument("--addr", required=True)
    s.add_argument("--port", type=int, required=True)
    s.add_argument("--max-seconds", type=float, default=300)
    c = sub.add_parser("client")
    c.add_argument("--target", required=True)
    c.add_argument("--plan", required=True)
    c.add_argument("--timeout", type=float, default=20)
    c.add_argument("--parallel", type=int, default=1)
    c.add_argument("--authority", default=None)
    args = ap.parse_args()
    return serve(args) if args.mode == "server" else client(args)


if __name__ == "__main__":
    sys.exit(main())
