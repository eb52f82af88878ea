// podtap-relay's manifests: least privilege for the relay (list the agents'
// pods in podtap, nothing else; unprivileged pod, loopback only) and for its
// users (port-forward in its own namespace), and flags the relay accepts.
'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { render, only, relayDir } = require('./lib.cjs');

const agents = render();
const relay = render(relayDir);
const deployment = only(relay, 'Deployment', 'podtap-relay');
const pod = deployment.spec.template.spec;
const [container] = pod.containers;

function grants(role) {
  return role.rules.flatMap((r) => r.apiGroups.flatMap((g) => r.resources.flatMap((res) =>
    r.verbs.map((v) => `${g}/${res}:${v}${r.resourceNames ? `[${r.resourceNames.join(',')}]` : ''}`)))).sort();
}

test('the relay may list pods in namespace podtap, and nothing else', () => {
  const role = only(agents, 'Role', 'podtap-relay');
  assert.equal(role.metadata.namespace, 'podtap');
  assert.deepEqual(grants(role), ['/pods:list']);
  const binding = only(agents, 'RoleBinding', 'podtap-relay');
  assert.equal(binding.metadata.namespace, 'podtap');
  assert.deepEqual(binding.roleRef, { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: 'podtap-relay' });
  assert.deepEqual(binding.subjects, [{ kind: 'ServiceAccount', name: 'podtap-relay', namespace: 'podtap-relay' }]);
  assert.equal(pod.serviceAccountName, 'podtap-relay');
  // No cluster-wide grant anywhere for the relay.
  for (const o of [...agents, ...relay]) {
    if (o.kind === 'ClusterRoleBinding') {
      assert.ok(o.subjects.every((s) => s.name !== 'podtap-relay'), o.metadata.name);
    }
  }
});

test('its users may port-forward to the relay\'s namespace only', () => {
  const role = only(relay, 'Role', 'podtap-relay-user');
  assert.equal(role.metadata.namespace, 'podtap-relay');
  assert.deepEqual(grants(role), [
    '/pods/portforward:create', '/pods:get', '/pods:list', 'apps/deployments:get[podtap-relay]',
  ]);
  // Nothing else runs there: the forward can reach no other pod.
  assert.deepEqual(relay.filter((o) => ['Deployment', 'DaemonSet', 'StatefulSet', 'Pod', 'Job'].includes(o.kind))
    .map((o) => o.metadata.name), ['podtap-relay']);
});

test('unprivileged pod under the restricted standard, loopback only, no Service', () => {
  assert.equal(only(relay, 'Namespace').metadata.labels['pod-security.kubernetes.io/enforce'], 'restricted');
  assert.equal(pod.securityContext.runAsNonRoot, true);
  assert.equal(pod.securityContext.seccompProfile.type, 'RuntimeDefault');
  assert.notEqual(pod.hostNetwork, true);
  assert.notEqual(pod.hostPID, true);
  const sc = container.securityContext;
  assert.equal(sc.allowPrivilegeEscalation, false);
  assert.equal(sc.readOnlyRootFilesystem, true);
  assert.deepEqual(sc.capabilities, { drop: ['ALL'] });
  assert.equal(container.ports, undefined);
  assert.ok(container.args.includes('--listen=127.0.0.1:4193'));
  assert.equal(relay.filter((o) => o.kind === 'Service').length, 0);
  const { requests, limits } = container.resources;
  for (const r of ['cpu', 'memory']) assert.ok(requests[r] && limits[r], r);
});

test('the agents\' CA and token from Secret podtap-relay-agents, without their key', () => {
  const volume = pod.volumes.find((v) => v.secret);
  assert.equal(volume.secret.secretName, 'podtap-relay-agents');
  assert.deepEqual(volume.secret.items.map((i) => i.key), ['ca.crt', 'token']);
  const mount = container.volumeMounts.find((m) => m.name === volume.name);
  assert.equal(mount.readOnly, true);
  assert.ok(container.args.includes(`--ca=${mount.mountPath}/ca.crt`));
  assert.ok(container.args.includes(`--token-file=${mount.mountPath}/token`));
  // The same name the agents' certificate has, and their namespace.
  assert.ok(container.args.includes('--tls-server-name=podtap-agent'));
  assert.ok(container.args.includes('--podtap-namespace=podtap'));
  assert.equal(only(agents, 'DaemonSet').spec.template.metadata.labels['app.kubernetes.io/name'], 'podtap');
});

test('podtap-relay accepts the Deployment\'s flags (podtap-relay --check-config)', (t) => {
  const bin = process.env.PODTAP_RELAY;
  if (!bin) throw new Error('PODTAP_RELAY must name the podtap-relay binary (ctest sets it)');
  // The Secret's files at local paths: a certificate (any will do for the
  // check) and a token.
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'podtap-relay-'));
  t.after(() => fs.rmSync(tmp, { recursive: true, force: true }));
  const mount = container.volumeMounts.find((m) => m.name === 'agents-credentials');
  fs.writeFileSync(path.join(tmp, 'ca.crt'), '-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n');
  fs.writeFileSync(path.join(tmp, 'token'), 'a-token\n');
  const args = container.args.map((a) => a.replace(`=${mount.mountPath}/`, `=${tmp}/`));
  assert.equal(args.filter((a) => a.includes(tmp)).length, 2);
  const r = spawnSync(bin, ['--check-config', ...args], { encoding: 'utf8' });
  assert.equal(r.stdout, 'config ok\n', r.stderr);
  assert.equal(r.status, 0);
  const bad = spawnSync(bin, ['--check-config', ...args, '--relay-typo=1'], { encoding: 'utf8' });
  assert.notEqual(bad.status, 0);
  // And it refuses to listen beyond loopback.
  const wide = args.map((a) => (a.startsWith('--listen=') ? '--listen=0.0.0.0:4193' : a));
  const open = spawnSync(bin, ['--check-config', ...wide], { encoding: 'utf8' });
  assert.equal(open.status, 1);
  assert.match(open.stderr, /loopback address only/);
});
