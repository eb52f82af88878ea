// The rendered DaemonSet runs with least privilege (no privileged container,
// explicit capabilities over drop ALL, read-only root filesystem and mounts)
// and passes the agent flags the agent accepts (podtap-agent --check-config).
'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { repo, render, only, runAgent } = require('./lib.cjs');

const objects = render();
const ds = only(objects, 'DaemonSet');
const pod = ds.spec.template.spec;
const containers = [...(pod.initContainers || []), ...pod.containers];
const [agent] = pod.containers;

test('one container, the agent', () => {
  assert.deepEqual(containers.map((c) => c.name), ['agent']);
});

test('no privileged container; host PID only for the TLS probes, no host IPC', () => {
  for (const c of containers) assert.equal(c.securityContext.privileged, false, c.name);
  // The TLS plaintext probes find libssl through every process' /proc.
  assert.equal(pod.hostPID, !agent.args.includes('--no-tls-probes'));
  assert.notEqual(pod.hostIPC, true);
});

test('capabilities are listed explicitly over drop ALL', () => {
  const caps = agent.securityContext.capabilities;
  assert.deepEqual(caps.drop, ['ALL']);
  assert.deepEqual([...caps.add].sort(), ['BPF', 'PERFMON', 'SYS_ADMIN', 'SYS_PTRACE']);
  // Kubernetes refuses allowPrivilegeEscalation=false next to SYS_ADMIN
  // (checked only when it is spelled CAP_SYS_ADMIN, which is no reason to
  // rely on the spelling).
  assert.notEqual(agent.securityContext.allowPrivilegeEscalation, false);
});

test('read-only root filesystem, and every mount read-only but the query socket', () => {
  assert.equal(agent.securityContext.readOnlyRootFilesystem, true);
  // The one writable mount: an in-memory emptyDir for the query service's socket.
  const writable = agent.volumeMounts.filter((m) => m.readOnly !== true);
  assert.deepEqual(writable.map((m) => m.mountPath), ['/run/podtap']);
  const socketVolume = pod.volumes.find((v) => v.name === writable[0].name);
  assert.deepEqual(socketVolume.emptyDir, { medium: 'Memory', sizeLimit: '1Mi' });
  const hostPaths = pod.volumes.filter((v) => v.hostPath).map((v) => v.name);
  const mounted = new Set(agent.volumeMounts.map((m) => m.name));
  for (const name of hostPaths) assert.ok(mounted.has(name), `hostPath volume ${name} is mounted`);
  // Only the host paths the agent reads (host processes it sees through hostPID).
  assert.deepEqual(pod.volumes.filter((v) => v.hostPath).map((v) => v.hostPath.path).sort(), [
    '/run/containerd/containerd.sock', '/run/netns', '/sys/fs/bpf', '/sys/fs/cgroup',
    '/sys/kernel/btf', '/sys/kernel/tracing',
  ]);
  // Namespaces of pods started after the agent must appear inside it.
  const netns = agent.volumeMounts.find((m) => m.mountPath === '/var/run/netns');
  assert.equal(netns.mountPropagation, 'HostToContainer');
});

test('seccomp RuntimeDefault, root uid (the agent checks it), host network', () => {
  assert.equal(pod.securityContext.seccompProfile.type, 'RuntimeDefault');
  assert.equal(agent.securityContext.runAsUser, 0);
  assert.equal(pod.hostNetwork, true);
  assert.equal(pod.dnsPolicy, 'ClusterFirstWithHostNet');
});

test('on every node, critical, with requests and limits', () => {
  assert.deepEqual(pod.tolerations, [{ operator: 'Exists' }]);
  assert.equal(pod.priorityClassName, 'system-node-critical');
  const { requests, limits } = agent.resources;
  for (const r of ['cpu', 'memory']) {
    assert.ok(requests[r] && limits[r], `${r} request and limit`);
  }
  assert.equal(requests.memory, limits.memory, 'memory request = limit: never overcommitted');
  assert.deepEqual(ds.spec.updateStrategy, { type: 'RollingUpdate', rollingUpdate: { maxUnavailable: 1, maxSurge: 0 } });
});

test('probes on /healthz and /readyz; NODE_NAME from the downward API', () => {
  assert.deepEqual([agent.livenessProbe.httpGet.path, agent.livenessProbe.httpGet.port], ['/healthz', 'metrics']);
  assert.deepEqual([agent.readinessProbe.httpGet.path, agent.readinessProbe.httpGet.port], ['/readyz', 'metrics']);
  const env = agent.env.find((e) => e.name === 'NODE_NAME');
  assert.deepEqual(env.valueFrom, { fieldRef: { fieldPath: 'spec.nodeName' } });
  // In-cluster auto-detection chooses the Kubernetes source; flags would pin it.
  for (const a of agent.args) assert.doesNotMatch(a, /^--(kubernetes|kubeconfig|node-name)\b/);
});

test('the query listener: port query (4192), TLS and token from Secret podtap-query, read-only', () => {
  assert.ok(agent.ports.some((p) => p.name === 'query' && p.containerPort === 4192 && p.protocol === 'TCP'));
  const flags = Object.fromEntries(agent.args.filter((a) => a.startsWith('--query-')).map((a) => a.split('=')));
  assert.deepEqual(flags, {
    '--query-listen': '0.0.0.0:4192',
    '--query-tls-cert': '/etc/podtap-query/tls.crt',
    '--query-tls-key': '/etc/podtap-query/tls.key',
    '--query-token-file': '/etc/podtap-query/token',
  });
  const mount = agent.volumeMounts.find((m) => m.name === 'query-tls');
  assert.deepEqual([mount.mountPath, mount.readOnly], ['/etc/podtap-query', true]);
  const volume = pod.volumes.find((v) => v.name === 'query-tls');
  // Referenced, never rendered: the operator creates it (docs/deploy.md).
  assert.equal(volume.secret.secretName, 'podtap-query');
  assert.equal(volume.secret.defaultMode, 0o400);
  assert.deepEqual(volume.secret.items.map((i) => i.key), ['tls.crt', 'tls.key', 'token']);
  assert.equal(objects.filter((o) => o.kind === 'Secret').length, 0);
});

test('the image runs the binary the Dockerfile installs', () => {
  const dockerfile = fs.readFileSync(path.join(repo, 'Dockerfile'), 'utf8');
  assert.deepEqual(agent.command, ['/usr/local/bin/podtap-agent']);
  assert.match(dockerfile, /COPY --from=build \/src\/build\/podtap-agent \/usr\/local\/bin\/podtap-agent/);
});

test('the agent accepts the DaemonSet\'s flags and config (podtap-agent --check-config)', (t) => {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'podtap-ds-'));
  fs.chmodSync(tmp, 0o755);
  t.after(() => fs.rmSync(tmp, { recursive: true, force: true }));
  // The ConfigMap's file, at a local path instead of its mount path.
  const mount = agent.volumeMounts.find((m) => m.name === 'config');
  const volume = pod.volumes.find((v) => v.name === 'config');
  const configMap = only(objects, 'ConfigMap', volume.configMap.name);
  const args = agent.args.map((a) => {
    const m = /^--config=(.*)$/.exec(a);
    if (!m) return a;
    assert.equal(path.dirname(m[1]), mount.mountPath);
    const local = path.join(tmp, path.basename(m[1]));
    fs.writeFileSync(local, configMap.data[path.basename(m[1])], { mode: 0o644 });
    return `--config=${local}`;
  });
  assert.ok(args.some((a) => a.startsWith('--config=' + tmp)), 'the DaemonSet passes --config');
  // The Secret's files (the flags name them; --check-config reads none), at
  // local paths too.
  const secretMount = agent.volumeMounts.find((m) => m.name === 'query-tls');
  const withSecret = args.map((a) => {
    const m = /^(--query-[a-z-]+)=(.*)$/.exec(a);
    if (!m || !m[2].startsWith(secretMount.mountPath + '/')) return a;
    const local = path.join(tmp, path.basename(m[2]));
    fs.writeFileSync(local, 'placeholder\n', { mode: 0o644 });
    return `${m[1]}=${local}`;
  });
  assert.equal(withSecret.filter((a) => a.startsWith(`--query-`) && a.includes(tmp)).length, 3);

  const r = runAgent(['--check-config', ...withSecret]);
  assert.equal(r.stdout, 'config ok\n', r.stderr);
  assert.equal(r.status, 0);
  // And the same check refuses a flag the agent does not have.
  const bad = runAgent(['--check-config', ...withSecret, '--kubernetes-typo=on']);
  assert.equal(bad.status, 1);
});
