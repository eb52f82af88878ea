// Shared by the deploy tests: the repository's paths, the rendered
// kustomization, and running the agent binary.
'use strict';
const { execFileSync, spawnSync } = require('node:child_process');
const path = require('node:path');
const YAML = require('yaml');

const repo = path.resolve(__dirname, '..', '..');
const deployDir = path.join(repo, 'deploy', 'daemonset');
const relayDir = path.join(repo, 'deploy', 'relay');

// `kubectl kustomize deploy/daemonset` (or `dir`; client-side only), as
// parsed objects.
function render(dir = deployDir) {
  const text = execFileSync('kubectl', ['kustomize', dir], { encoding: 'utf8' });
  return YAML.parseAllDocuments(text).map((doc) => {
    if (doc.errors.length > 0) throw new Error(`rendered YAML: ${doc.errors[0].message}`);
    return doc.toJS();
  });
}

function only(objects, kind, name) {
  const found = objects.filter((o) => o.kind === kind && (name === undefined || o.metadata.name === name));
  if (found.length !== 1) throw new Error(`expected one ${kind} ${name || ''}, found ${found.length}`);
  return found[0];
}

function agentPath() {
  const p = process.env.PODTAP_AGENT;
  if (!p) throw new Error('PODTAP_AGENT must name the podtap-agent binary (ctest sets it)');
  return p;
}

// Runs podtap-agent with `args`. As root it drops to nobody first, so a run
// that passes proves the agent needed neither root nor the kernel.
function runAgent(args) {
  const asRoot = process.getuid() === 0;
  const cmd = asRoot ? 'setpriv' : agentPath();
  const argv = asRoot
    ? ['--reuid=65534', '--regid=65534', '--clear-groups', '--inh-caps=-all', agentPath(), ...args]
    : args;
  const r = spawnSync(cmd, argv, { encoding: 'utf8', timeout: 10000 });
  if (r.error) throw r.error;
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

module.exports = { repo, deployDir, relayDir, render, only, agentPath, runAgent };
