// podtap-agent --check-config: checks flags, the listen address and the
// --config file without root and without touching the kernel (runAgent drops
// to nobody when the test runs as root).
'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { runAgent } = require('./lib.cjs');

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'podtap-check-config-'));
fs.chmodSync(tmp, 0o755);
test.after(() => fs.rmSync(tmp, { recursive: true, force: true }));

function configFile(name, text) {
  const p = path.join(tmp, name);
  fs.writeFileSync(p, text, { mode: 0o644 });
  return p;
}

function assertOk(args) {
  const r = runAgent(['--check-config', ...args]);
  assert.equal(r.stdout, 'config ok\n', `stderr: ${r.stderr}`);
  assert.equal(r.status, 0);
}

function assertRejected(args, message) {
  const r = runAgent(['--check-config', ...args]);
  assert.equal(r.status, 1, `stdout: ${r.stdout} stderr: ${r.stderr}`);
  assert.equal(r.stdout.includes('config ok'), false);
  assert.match(r.stderr, message);
}

test('defaults are accepted', () => assertOk([]));

test('every kind of flag is accepted', () => {
  const routes = configFile(
    'routes.json',
    '{"routes":[{"name":"get-item","method":"GET","path_regex":"/items/[0-9]+"}]}',
  );
  assertOk([
    '--listen=127.0.0.1:4191', '--cri-socket=/run/containerd/containerd.sock', `--config=${routes}`,
    '--pod-label-allowlist=app,version', '--diag-interval=10', '--probe-mode=tracepoint',
    '--ringbuf-size=8388608', '--max-connections=1000', '--capture-payload=false',
    '--payload-prefix=512', '--log-level=warn', '--max-series-per-family=500',
    '--series-retention=90s', '--statsd-host=127.0.0.1', '--statsd-interval=1s',
  ]);
});

test('a config file whose route does not compile is rejected', () => {
  const bad = configFile('bad-regex.json', '{"routes":[{"name":"x","path_regex":"/items/[0-9"}]}');
  assertRejected([`--config=${bad}`], /config .*bad-regex\.json: routes\[0\] \(x\): bad path_regex/);
});

test('a config file that is not JSON is rejected', () => {
  const bad = configFile('not-json.json', 'routes: []');
  assertRejected([`--config=${bad}`], /config .*not-json\.json: config is not a JSON object/);
});

test('a missing config file is rejected', () => {
  assertRejected([`--config=${path.join(tmp, 'absent.json')}`], /--config: File does not exist/);
});

test('a listen address that cannot be served is rejected', () => {
  assertRejected(['--listen=localhost:4191'], /cannot listen on localhost:4191: "localhost" is not an IP address/);
  assertRejected(['--listen=:99999'], /cannot listen on :99999: port must be a number/);
});

test('bad flag values and combinations are rejected with status 1', () => {
  assertRejected(['--probe-mode=kprobe'], /--probe-mode: kprobe not in \{auto,tp_btf,tracepoint\}/);
  assertRejected(['--ringbuf-size=5000'], /must be a power of two/);
  assertRejected(['--cri-socket=/x.sock', '--pods-file=/p.json'], /--pods-file excludes --cri-socket/);
  assertRejected(['--no-such-flag'], /The following argument was not expected: --no-such-flag/);
});

test('without --check-config the same unprivileged run refuses to start', () => {
  // So a passing --check-config run above never reached the root check.
  const r = runAgent(['--listen=127.0.0.1:0']);
  assert.equal(r.status, 1);
  assert.match(r.stderr, /must run as root/);
});
