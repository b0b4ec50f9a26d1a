// A Node test (node --test, no npm packages) that runs volt-mock-server,
// reads its banner, drives the admin API and stops it. The binary is found
// through VOLT_MOCK_SERVER_BIN, else on PATH.
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { once } from 'node:events';
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';

const ADMIN_TOKEN = 'ci-admin-token';
let server;
let base;

// Resolves with the URL in the first stdout line, `listening http://HOST:PORT`.
function readBanner(child, timeoutMs = 10000) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('no banner in time')), timeoutMs);
    child.once('exit', (code) => reject(new Error(`exited early with ${code}`)));
    createInterface({ input: child.stdout }).once('line', (line) => {
      clearTimeout(timer);
      if (!line.startsWith('listening ')) reject(new Error(`unexpected first line ${line}`));
      else resolve(line.slice('listening '.length));
    });
  });
}

before(async () => {
  server = spawn(process.env.VOLT_MOCK_SERVER_BIN || 'volt-mock-server', ['--listen', '127.0.0.1:0'], {
    env: { ...process.env, VOLT_MOCK_CLUSTER: 'node-cluster:node-password', VOLT_MOCK_ADMIN_TOKEN: ADMIN_TOKEN, RUST_LOG: 'warn' },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  base = await readBanner(server);
});

after(async () => {
  const exited = once(server, 'exit');
  server.kill('SIGTERM'); // a clean stop: exit code 0
  const [code] = await exited;
  assert.equal(code, 0);
});

async function admin(method, path, body, token = ADMIN_TOKEN) {
  const headers = { 'content-type': 'application/json' };
  if (token) headers.authorization = `Bearer ${token}`;
  const res = await fetch(base + path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : null };
}

test('the admin API needs the token', async () => {
  assert.equal((await admin('GET', '/admin/daemons', undefined, null)).status, 401);
});

test('no daemon is connected at first', async () => {
  assert.deepEqual(await admin('GET', '/admin/daemons'), { status: 200, body: [] });
  const r = await admin('POST', '/admin/daemons/node-cluster/commands', { command: 'ls', payload: {}, timeoutMs: 100 });
  assert.equal(r.status, 404);
});

test('a scenario is set up through the admin API', async () => {
  assert.equal((await admin('POST', '/admin/clusters', { teamClusterId: 'another', daemonPassword: 'pw' })).status, 201);
  assert.equal((await admin('PUT', '/admin/responders/status', { ok: true, data: { up: true } })).status, 200);
  const faults = await admin('PUT', '/admin/faults', { refuseConnections: 2 });
  assert.equal(faults.status, 200);
  assert.equal(faults.body.refuseConnections, 2);
  assert.equal((await admin('PUT', '/admin/faults', { noSuchFault: true })).status, 400);
});
