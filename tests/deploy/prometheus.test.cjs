// The Prometheus side of deploy/daemonset: the PrometheusRule's rules pass
// `promtool check rules` and their unit test (rules_test.yaml: exact values
// of every recording rule, and when each alert fires); the plain scrape job
// passes `promtool check config`, and in a real Prometheus it keeps podtap's
// own namespace/pod labels; every dashboard query parses in that Prometheus
// (a parse error is a 400 from /api/v1/query).
'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');
const { spawn, spawnSync } = require('node:child_process');
const fs = require('node:fs');
const http = require('node:http');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');
const YAML = require('yaml');
const { deployDir, render, only } = require('./lib.cjs');

const objects = render();
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'podtap-prometheus-'));
test.after(() => fs.rmSync(tmp, { recursive: true, force: true }));

function promtool(args) {
  const r = spawnSync('promtool', args, { encoding: 'utf8', cwd: tmp, timeout: 120000 });
  if (r.error) throw r.error;
  return r;
}

const ruleSpec = only(objects, 'PrometheusRule').spec;
fs.writeFileSync(path.join(tmp, 'rules.yaml'), YAML.stringify(ruleSpec));

test('promtool check rules accepts every rule', () => {
  const count = ruleSpec.groups.reduce((n, g) => n + g.rules.length, 0);
  const r = promtool(['check', 'rules', 'rules.yaml']);
  assert.equal(r.status, 0, r.stdout + r.stderr);
  assert.match(r.stdout, new RegExp(`SUCCESS: ${count} rules found`));
});

test('recording rules and alerts give the exact values of rules_test.yaml', () => {
  fs.copyFileSync(path.join(__dirname, 'rules_test.yaml'), path.join(tmp, 'rules_test.yaml'));
  const r = promtool(['test', 'rules', 'rules_test.yaml']);
  assert.equal(r.status, 0, r.stdout + r.stderr);
  assert.match(r.stdout, /SUCCESS/);
});

// The plain scrape job with its Kubernetes discovery replaced by one static
// target carrying the __meta_kubernetes_* labels discovery would give an
// agent pod (Debian's Prometheus is built without Kubernetes discovery).
function scrapeJobWithStaticTarget(target, scrapeInterval) {
  const file = path.join(deployDir, 'prometheus-scrape-config.yaml');
  const [job] = YAML.parse(fs.readFileSync(file, 'utf8')).scrape_configs;
  assert.deepEqual(job.kubernetes_sd_configs, [{ role: 'pod', namespaces: { names: ['podtap'] } }]);
  delete job.kubernetes_sd_configs;
  job.static_configs = [{
    targets: [target],
    labels: {
      __meta_kubernetes_namespace: 'podtap',
      __meta_kubernetes_pod_name: 'podtap-x7k2p',
      __meta_kubernetes_pod_node_name: 'node-1',
      __meta_kubernetes_pod_label_app_kubernetes_io_name: 'podtap',
      __meta_kubernetes_pod_container_port_name: 'metrics',
    },
  }];
  if (scrapeInterval) job.scrape_interval = scrapeInterval;
  return job;
}

test('the plain scrape config is valid', () => {
  const job = scrapeJobWithStaticTarget('127.0.0.1:4191');
  assert.equal(job.job_name, 'podtap', 'the alerts select job="podtap"');
  fs.writeFileSync(path.join(tmp, 'scrape.yml'), YAML.stringify({ scrape_configs: [job] }));
  const r = promtool(['check', 'config', 'scrape.yml']);
  assert.equal(r.status, 0, r.stdout + r.stderr);
});

// Every PromQL expression of the dashboard, with its variables given values;
// label_values(SELECTOR, LABEL) queries contribute their selector.
function dashboardQueries() {
  const dash = JSON.parse(only(objects, 'ConfigMap', 'podtap-grafana-dashboard').data['podtap-dashboard.json']);
  const exprs = [];
  const walk = (panels) => {
    for (const p of panels) {
      for (const t of p.targets || []) exprs.push(t.expr);
      walk(p.panels || []);
    }
  };
  walk(dash.panels);
  for (const v of dash.templating.list.filter((v) => v.type === 'query')) {
    const m = /^label_values\((.*), *(\w+)\)$/.exec(v.query.query);
    assert.ok(m, `variable ${v.name}: ${v.query.query}`);
    exprs.push(m[1]);
  }
  const variables = new Set(dash.templating.list.map((v) => v.name));
  return exprs.map((e) =>
    e.replace(/\$(\w+)/g, (all, name) => {
      assert.ok(variables.has(name), `${e} uses undefined variable $${name}`);
      return '.*';
    }));
}

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

// podtap's exposition as the agent writes it: a pod's series, a host
// process' series (empty namespace and pod), and a self metric.
const EXPOSITION = [
  '# TYPE tcp_open_total counter',
  'tcp_open_total{direction="inbound",namespace="shop",pod="api-1",deployment="api",peer="src",tls="false"} 3',
  'tcp_open_total{direction="inbound",namespace="",pod="",host_process="true",peer="src",tls="false"} 5',
  '# TYPE podtap_connections_tracked gauge',
  'podtap_connections_tracked 7',
  '',
].join('\n');

// A real Prometheus on loopback scraping EXPOSITION, served on loopback by
// this test, with the plain scrape job; stopped by PID when the tests end.
async function startPrometheus(t) {
  const exposition = http.createServer((req, res) => {
    res.writeHead(200, { 'Content-Type': 'text/plain; version=0.0.4' });
    res.end(EXPOSITION);
  });
  await new Promise((resolve) => exposition.listen(0, '127.0.0.1', resolve));
  t.after(() => new Promise((resolve) => exposition.close(resolve)));
  const job = scrapeJobWithStaticTarget(`127.0.0.1:${exposition.address().port}`, '1s');
  job.scrape_timeout = '1s';
  fs.writeFileSync(path.join(tmp, 'prometheus.yml'), YAML.stringify({ scrape_configs: [job] }));
  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  const logPath = path.join(tmp, 'prometheus.log');
  const log = fs.openSync(logPath, 'w');
  const server = spawn('prometheus', [
    `--config.file=${path.join(tmp, 'prometheus.yml')}`,
    `--storage.tsdb.path=${path.join(tmp, 'data')}`,
    `--web.listen-address=127.0.0.1:${port}`,
  ], { stdio: ['ignore', log, log] });
  const exited = new Promise((resolve) => server.on('exit', resolve));
  t.after(async () => {
    process.kill(server.pid, 'SIGTERM');
    const timeout = setTimeout(() => process.kill(server.pid, 'SIGKILL'), 10000);
    await exited;
    clearTimeout(timeout);
  });
  const query = async (q) => {
    const res = await fetch(`${base}/api/v1/query`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ query: q }),
    });
    return { status: res.status, body: await res.json() };
  };
  // Ready, and the exposition scraped at least once (bounded: 20 s).
  for (let i = 0; i < 100; i++) {
    try {
      const r = await query('podtap_connections_tracked');
      if (r.status === 200 && r.body.data.result.length > 0) return query;
    } catch {
      // Not listening yet.
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  assert.fail(`Prometheus did not scrape the exposition: ${fs.readFileSync(logPath, 'utf8')}`);
}

test('a real Prometheus', async (t) => {
  const query = await startPrometheus(t);

  await t.test('keeps podtap\'s namespace and pod labels, and gives self metrics the agent\'s', async () => {
    const r = await query('{job="podtap", __name__=~"tcp_open_total|podtap_connections_tracked"}');
    const got = r.body.data.result.map((s) => {
      const { instance, ...labels } = s.metric;
      assert.match(instance, /^127\.0\.0\.1:\d+$/);
      return [labels, s.value[1]];
    });
    got.sort((a, b) => a[1].localeCompare(b[1]));
    assert.deepEqual(got, [
      [{ __name__: 'tcp_open_total', job: 'podtap', node: 'node-1', direction: 'inbound', namespace: 'shop',
        pod: 'api-1', deployment: 'api', peer: 'src', tls: 'false' }, '3'],
      // Empty namespace and pod stay empty (absent): host traffic is not the agent pod's.
      [{ __name__: 'tcp_open_total', job: 'podtap', node: 'node-1', direction: 'inbound', host_process: 'true',
        peer: 'src', tls: 'false' }, '5'],
      [{ __name__: 'podtap_connections_tracked', job: 'podtap', node: 'node-1', namespace: 'podtap',
        pod: 'podtap-x7k2p' }, '7'],
    ]);
  });

  await t.test('parses every dashboard query', async () => {
    const queries = dashboardQueries();
    assert.ok(queries.length >= 15, `${queries.length} queries`);
    // A query that does not parse is refused, so the 200s below mean parsed.
    const bad = await query('sum(rate(response_total{direction="inbound"}[30s]) by (deployment)');
    assert.equal(bad.status, 400);
    assert.equal(bad.body.errorType, 'bad_data');
    for (const q of queries) {
      const r = await query(q);
      assert.equal(r.status, 200, `${q}: ${JSON.stringify(r.body)}`);
      assert.equal(r.body.status, 'success', q);
    }
  });
});
