"""What the query tests share: reading `podtap -o json` and the CLI's
printed latencies, and the agent's latency buckets computed directly."""

import re

# 64-bit integers are strings in protobuf's JSON mapping.
UINT64_FIELDS = {"requests", "successes", "failures", "read_bytes", "write_bytes", "bytes",
                 "tcp_open_connections", "total", "dropped", "unix_nanos", "skipped_before"}


def numbers(value):
    """JSON from `podtap -o json` with its 64-bit integer strings as ints."""
    if isinstance(value, dict):
        return {k: int(v) if k in UINT64_FIELDS else numbers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [numbers(v) for v in value]
    return value


def latency_bucket(ns):
    """The agent's fine latency bucket of `ns` (proto/query.proto, LatencyHistogram)."""
    ns = min(ns, (1 << 50) - 1)
    if ns < 64:
        return ns
    k = ns.bit_length() - 1
    return (k - 4) * 32 + (ns >> (k - 5)) - 32


def bucket_bounds(i):
    """[lower, upper) of fine bucket `i`, in ns."""
    if i < 64:
        return i, i + 1
    width = 1 << (i // 32 - 1)
    lower = (32 + i % 32) * width
    return lower, lower + width


def printed_ms(text):
    """A latency as the CLI prints it ("812us", "70.3ms", "1.20s") in ms."""
    m = re.fullmatch(r"([0-9.]+)(us|ms|s)", text)
    if not m:
        raise AssertionError("not a printed latency: %r" % text)
    return float(m.group(1)) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[m.group(2)]
