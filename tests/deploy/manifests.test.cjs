// deploy/daemonset and deploy/relay render with `kubectl kustomize`, and every object they
// renders validates against its schema: Kubernetes' own (kubernetes-models)
// or prometheus-operator's (PodMonitor, PrometheusRule). A kind without a
// schema here fails.
'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');
const { render, only, relayDir } = require('./lib.cjs');

// apiVersion -> the package module holding its models.
function modelsModule(apiVersion) {
  if (apiVersion === 'monitoring.coreos.com/v1') {
    return '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1';
  }
  return `kubernetes-models/${apiVersion}`;
}

// Throws unless `object` validates against the schema of its kind.
function validate(object) {
  let models;
  try {
    models = require(modelsModule(object.apiVersion));
  } catch {
    throw new Error(`no schema for apiVersion ${object.apiVersion} (${object.kind})`);
  }
  const Model = models[object.kind];
  if (typeof Model !== 'function') throw new Error(`no schema for ${object.apiVersion} ${object.kind}`);
  new Model(object).validate();
}

const objects = render();
const relayObjects = render(relayDir);

test('renders exactly the expected objects', () => {
  const names = objects.map((o) => `${o.kind}/${o.metadata.name}`).sort();
  assert.deepEqual(
    names.map((n) => n.replace(/^ConfigMap\/podtap-config-[a-z0-9]+$/, 'ConfigMap/podtap-config-<hash>')),
    [
      'ClusterRole/podtap', 'ClusterRoleBinding/podtap', 'ConfigMap/podtap-config-<hash>',
      'ConfigMap/podtap-grafana-dashboard', 'DaemonSet/podtap', 'Namespace/podtap',
      'PodMonitor/podtap', 'PrometheusRule/podtap', 'Role/podtap-relay', 'RoleBinding/podtap-relay',
      'Service/podtap', 'ServiceAccount/podtap',
    ],
  );
  for (const o of objects) {
    if (o.kind === 'Namespace' || o.kind.startsWith('Cluster')) continue;
    assert.equal(o.metadata.namespace, 'podtap', `${o.kind}/${o.metadata.name}`);
  }
});

test('deploy/relay renders exactly the relay, its account and its users\' Role', () => {
  assert.deepEqual(relayObjects.map((o) => `${o.kind}/${o.metadata.name}`).sort(), [
    'Deployment/podtap-relay', 'Namespace/podtap-relay', 'Role/podtap-relay-user',
    'ServiceAccount/podtap-relay',
  ]);
  for (const o of relayObjects) {
    if (o.kind !== 'Namespace') assert.equal(o.metadata.namespace, 'podtap-relay', `${o.kind}/${o.metadata.name}`);
  }
});

for (const o of [...objects, ...relayObjects]) {
  test(`${o.kind}/${o.metadata.name} (${o.metadata.namespace || 'cluster'}) validates against its schema`, () => validate(o));
}

test('the validator rejects what it should (so the checks above mean something)', () => {
  const ds = structuredClone(only(objects, 'DaemonSet'));
  ds.spec.template.spec.containers[0].ports[0].containerPort = 'metrics';
  assert.throws(() => validate(ds), /containerPort must be integer/);
  const pm = structuredClone(only(objects, 'PodMonitor'));
  pm.spec.podMetricsEndpoints[0].honorLabels = 'true';
  assert.throws(() => validate(pm), /honorLabels must be boolean/);
  assert.throws(() => validate({ apiVersion: 'example.com/v1', kind: 'Widget', metadata: { name: 'w' } }),
    /no schema for apiVersion example.com\/v1/);
  assert.throws(() => validate({ apiVersion: 'v1', kind: 'Widget', metadata: { name: 'w' } }),
    /no schema for v1 Widget/);
});

test('the ClusterRole grants only what the agent uses: list and watch', () => {
  const role = only(objects, 'ClusterRole');
  const grants = role.rules.flatMap((r) =>
    r.apiGroups.flatMap((g) => r.resources.flatMap((res) => r.verbs.map((v) => `${g}/${res}:${v}`))));
  assert.deepEqual(grants.sort(), [
    '/pods:list', '/pods:watch', '/services:list', '/services:watch',
    'apps/replicasets:list', 'apps/replicasets:watch',
    'discovery.k8s.io/endpointslices:list', 'discovery.k8s.io/endpointslices:watch',
  ]);
  const binding = only(objects, 'ClusterRoleBinding');
  assert.deepEqual(binding.roleRef, { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: 'podtap' });
  assert.deepEqual(binding.subjects, [{ kind: 'ServiceAccount', name: 'podtap', namespace: 'podtap' }]);
  assert.equal(only(objects, 'DaemonSet').spec.template.spec.serviceAccountName, 'podtap');
});

test('Service and PodMonitor reach the agent and keep its namespace/pod labels', () => {
  const ds = only(objects, 'DaemonSet');
  const podLabels = ds.spec.template.metadata.labels;
  const svc = only(objects, 'Service');
  assert.equal(svc.spec.clusterIP, 'None');
  for (const [k, v] of Object.entries(svc.spec.selector)) assert.equal(podLabels[k], v);
  assert.deepEqual(svc.spec.ports.map((p) => [p.port, p.targetPort]), [[4191, 'metrics']]);
  const pm = only(objects, 'PodMonitor');
  for (const [k, v] of Object.entries(pm.spec.selector.matchLabels)) assert.equal(podLabels[k], v);
  assert.equal(podLabels[pm.spec.jobLabel], 'podtap', 'job="podtap", which the alerts use');
  const [endpoint] = pm.spec.podMetricsEndpoints;
  assert.equal(endpoint.honorLabels, true);
  assert.equal(endpoint.port, 'metrics');
  assert.ok(ds.spec.template.spec.containers[0].ports.some((p) => p.name === 'metrics' && p.containerPort === 4191));
});

test('the dashboard ConfigMap holds the dashboard, the config ConfigMap the agent config', () => {
  const dash = only(objects, 'ConfigMap', 'podtap-grafana-dashboard');
  assert.equal(dash.metadata.labels.grafana_dashboard, '1');
  assert.equal(JSON.parse(dash.data['podtap-dashboard.json']).uid, 'podtap-workloads');
  const config = objects.find((o) => o.kind === 'ConfigMap' && o.metadata.name.startsWith('podtap-config-'));
  const volume = only(objects, 'DaemonSet').spec.template.spec.volumes.find((v) => v.name === 'config');
  assert.equal(volume.configMap.name, config.metadata.name);
  assert.deepEqual(JSON.parse(config.data['config.json']), { routes: [] });
});
