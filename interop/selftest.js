#!/usr/bin/env node
// Self-test of the interop scripts: ref-daemon.js (socket.io-client 4.8.4)
// against ref-server.js (socket.io 4.8.4), exercising the VOLT contract and
// the admin API. Run with `node interop/selftest.js` (after `npm ci` in
// interop/). Exits non-zero on any failure; every wait is bounded, and a
// watchdog kills everything if the whole run takes too long.
'use strict';

const assert = require('assert/strict');
const path = require('path');
const { spawn } = require('child_process');

const HERE = __dirname;
const WAIT_MS = 5000; // default bound for any single wait
const WATCHDOG_MS = 120000; // bound for the whole run

// Short heartbeat so the stopPings test runs fast: the client gives up
// pingInterval + pingTimeout = 1300 ms after the last ping; the generous
// pingTimeout keeps a loaded machine from timing out a healthy client.
const PING_INTERVAL = 300;
const PING_TIMEOUT = 1000;
const MAX_PAYLOAD = 500000;

// ---------------------------------------------------------------------------
// Child processes speaking JSON lines

const children = new Set();

class LineProcess {
  constructor(name, args) {
    this.name = name;
    this.child = spawn(process.execPath, args, { cwd: HERE, stdio: ['pipe', 'pipe', 'pipe'] });
    children.add(this.child);
    this.queue = []; // stdout lines not yet consumed by a wait
    this.waiters = new Set();
    this.stderr = '';
    this.exited = new Promise((resolve) => {
      this.child.on('exit', (code, signal) => {
        children.delete(this.child);
        resolve({ code, signal });
        this.notify();
      });
    });
    this.exitInfo = null;
    this.exited.then((info) => { this.exitInfo = info; });
    this.child.stderr.on('data', (d) => { this.stderr += d; });
    this.child.stdin.on('error', () => {}); // the child may be gone already
    let buffered = '';
    this.child.stdout.on('data', (data) => {
      buffered += data;
      let nl;
      while ((nl = buffered.indexOf('\n')) >= 0) {
        const line = buffered.slice(0, nl);
        buffered = buffered.slice(nl + 1);
        this.queue.push(line);
        if (process.env.SELFTEST_VERBOSE) process.stderr.write(`  [${this.name}] ${line}\n`);
      }
      this.notify();
    });
  }

  notify() {
    for (const w of [...this.waiters]) w();
  }

  // Waits for, consumes and returns the first unconsumed stdout line that
  // `pred` accepts (`parse` turns a raw line into the value `pred` sees).
  nextLine(pred, what, { timeoutMs = WAIT_MS, parse = (l) => l } = {}) {
    return new Promise((resolve, reject) => {
      let waiter = null;
      const timer = setTimeout(() => {
        this.waiters.delete(waiter);
        reject(new Error(`${this.name}: timed out after ${timeoutMs} ms waiting for ${what}; ` +
          `unconsumed lines: ${JSON.stringify(this.queue)}; stderr: ${this.stderr.trim()}`));
      }, timeoutMs);
      waiter = () => {
        for (let i = 0; i < this.queue.length; i++) {
          const value = parse(this.queue[i]);
          if (pred(value)) {
            this.queue.splice(i, 1);
            clearTimeout(timer);
            this.waiters.delete(waiter);
            resolve(value);
            return;
          }
        }
        if (this.exitInfo) {
          clearTimeout(timer);
          this.waiters.delete(waiter);
          reject(new Error(`${this.name} exited (${JSON.stringify(this.exitInfo)}) while waiting for ${what}; stderr: ${this.stderr.trim()}`));
        }
      };
      this.waiters.add(waiter);
      waiter();
    });
  }

  send(obj) {
    this.child.stdin.write(`${JSON.stringify(obj)}\n`);
  }

  // Closes stdin (both scripts exit on that) and waits for the exit.
  async close(timeoutMs = WAIT_MS) {
    this.child.stdin.end();
    return withTimeout(this.exited, timeoutMs, `${this.name} to exit after stdin closed`);
  }
}

function withTimeout(promise, ms, what) {
  let timer;
  return Promise.race([
    promise,
    new Promise((_, reject) => { timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms); }),
  ]).finally(() => clearTimeout(timer));
}

// ---------------------------------------------------------------------------
// The server under test and its admin API

async function startServer(extraArgs = []) {
  const server = new LineProcess('ref-server', [path.join(HERE, 'ref-server.js'), '--port', '0', ...extraArgs]);
  const first = await server.nextLine(() => true, 'the listening line');
  const m = /^listening (http:\/\/127\.0\.0\.1:\d+)$/.exec(first);
  assert.ok(m, `unexpected first line: ${first}`);
  server.url = m[1];
  return server;
}

let server;

async function api(method, urlPath, body, headers = {}) {
  const init = { method, headers: { ...headers }, signal: AbortSignal.timeout(WAIT_MS * 3) };
  if (body !== undefined) {
    init.body = typeof body === 'string' ? body : JSON.stringify(body);
    init.headers['Content-Type'] = 'application/json';
  }
  const res = await fetch(server.url + urlPath, init);
  const text = await res.text();
  let json;
  try {
    json = JSON.parse(text);
  } catch {
    throw new Error(`${method} ${urlPath}: response is not JSON (${res.status}): ${text}`);
  }
  return { status: res.status, body: json };
}

async function apiOk(method, urlPath, body) {
  const r = await api(method, urlPath, body);
  assert.ok(r.status >= 200 && r.status < 300, `${method} ${urlPath} -> ${r.status} ${JSON.stringify(r.body)}`);
  return r.body;
}

// Polls `fn` until it returns a truthy value (condition-based, never a blind sleep).
async function eventually(fn, what, timeoutMs = WAIT_MS) {
  const deadline = Date.now() + timeoutMs;
  let last;
  for (;;) {
    last = await fn();
    if (last) return last;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

// ---------------------------------------------------------------------------
// Daemons

let daemonCount = 0;

function startDaemon(cluster, password, extraArgs = []) {
  const d = new LineProcess(`daemon-${++daemonCount}`, [
    path.join(HERE, 'ref-daemon.js'), '--url', server.url, '--cluster', cluster, '--password', password, ...extraArgs,
  ]);
  d.event = (name, pred = () => true, timeoutMs) => d.nextLine(
    (e) => e && e.event === name && pred(e), `event ${name}`, { timeoutMs, parse: safeJson });
  return d;
}

function safeJson(line) {
  try {
    return JSON.parse(line);
  } catch {
    return null;
  }
}

async function connectedDaemon(cluster, password, extraArgs) {
  const d = startDaemon(cluster, password, extraArgs);
  d.sid = (await d.event('connected')).sid;
  return d;
}

let nextId = 1;
async function daemonCommand(d, command, payload, extra = {}) {
  const id = nextId++;
  const op = { op: 'command', id, command, ...extra };
  if (payload !== undefined) op.payload = payload;
  d.send(op);
  return d.event('reply', (e) => e.id === id, (extra.timeoutMs || 0) + WAIT_MS);
}

function reverse(cluster, command, payload, extra = {}) {
  const body = { command, ...extra };
  if (payload !== undefined) body.payload = payload;
  return api('POST', `/admin/daemons/${cluster}/commands`, body);
}

const frames = () => apiOk('GET', '/admin/frames');
const textFrames = async (dir) => (await frames()).filter((f) => f.dir === dir && f.type === 'text').map((f) => f.data);
const bytes = (n, start = 0) => Buffer.from(Array.from({ length: n }, (_, i) => (start + i) % 256));

// ---------------------------------------------------------------------------
// Tests (run in order; later ones rely on the server state earlier ones made)

const tests = [];
const test = (name, fn) => tests.push({ name, fn });
let main; // the long-lived daemon of cluster c-main

test('registration rejected: wrong password', async () => {
  const d = startDaemon('c-main', 'wrong');
  const e = await d.event('connect_error');
  assert.equal(e.message, 'invalid credentials');
  assert.deepEqual(e.data, { code: 'INVALID_CREDENTIALS' });
  assert.ok((await textFrames('out')).includes('44/daemon,{"message":"invalid credentials","data":{"code":"INVALID_CREDENTIALS"}}'));
  await d.close();
});

test('registration rejected: unknown cluster', async () => {
  const d = startDaemon('c-nope', 'pw');
  assert.deepEqual((await d.event('connect_error')).data, { code: 'INVALID_CREDENTIALS' });
  await d.close();
});

test('registration rejected: rejectRegistration fault, with and without data', async () => {
  await apiOk('PUT', '/admin/faults', { rejectRegistration: { code: 'MAINTENANCE', message: 'down for maintenance' } });
  let d = startDaemon('c-main', 'pw-main');
  let e = await d.event('connect_error');
  assert.equal(e.message, 'down for maintenance');
  assert.deepEqual(e.data, { code: 'MAINTENANCE' });
  await d.close();

  await apiOk('PUT', '/admin/faults', { rejectRegistration: { message: 'nope', noData: true } });
  d = startDaemon('c-main', 'pw-main');
  e = await d.event('connect_error');
  assert.equal(e.message, 'nope');
  assert.equal(e.data, undefined);
  assert.ok((await textFrames('out')).includes('44/daemon,{"message":"nope"}'));
  await d.close();
  await apiOk('DELETE', '/admin/faults');
});

test('registration accepted: daemon listed, 0/40 frames on the wire', async () => {
  main = await connectedDaemon('c-main', 'pw-main', ['--installed-version', '1.4.2']);
  const daemons = await apiOk('GET', '/admin/daemons');
  const me = daemons.find((x) => x.sid === main.sid);
  assert.ok(me, `daemon ${main.sid} not in ${JSON.stringify(daemons)}`);
  assert.equal(me.teamClusterId, 'c-main');
  assert.equal(me.installedVersion, '1.4.2');
  assert.equal(me.client, 'ref-daemon/0.1.0');
  assert.equal(me.heartbeats, 0);
  assert.equal(me.lastHeartbeat, null);
  assert.equal(typeof me.connectedAt, 'number');

  const out = await textFrames('out');
  const open = out.map((t) => (t.startsWith('0{') ? JSON.parse(t.slice(1)) : null)).filter(Boolean).pop();
  assert.deepEqual({ ...open, sid: 'x' }, { sid: 'x', upgrades: [], pingInterval: PING_INTERVAL, pingTimeout: PING_TIMEOUT, maxPayload: MAX_PAYLOAD });
  assert.ok(out.includes(`40/daemon,{"sid":"${main.sid}"}`));
  // As in the mock server, frames carry the cluster only once registered.
  const all = await frames();
  const reg = all.filter((f) => f.data.startsWith('40/daemon,') && f.conn === all[all.length - 1].conn);
  assert.deepEqual(reg.map((f) => [f.dir, f.teamClusterId]), [['in', null], ['out', null]]);
  assert.ok((await textFrames('in')).includes(
    '40/daemon,{"teamClusterId":"c-main","daemonPassword":"pw-main","installedVersion":"1.4.2","client":"ref-daemon/0.1.0"}'));
});

test('command: echo with and without payload', async () => {
  const payload = { a: 1, b: [1, 2, { c: null }] };
  let r = await daemonCommand(main, 'echo', payload);
  assert.deepEqual(r.response, { requestId: r.requestId, ok: true, data: payload });
  r = await daemonCommand(main, 'echo');
  assert.deepEqual(r.response, { requestId: r.requestId, ok: true });
  const inText = await textFrames('in');
  assert.ok(inText.includes(`42/daemon,["command",{"requestId":"${r.requestId}","command":"echo"}]`));
  assert.ok((await textFrames('out')).includes(`42/daemon,["command-response",{"requestId":"${r.requestId}","ok":true}]`));
});

test('command: unknown command rejected', async () => {
  const r = await daemonCommand(main, 'no-such-command', {});
  assert.deepEqual(r.response, {
    requestId: r.requestId, ok: false, error: { code: 'UNKNOWN_COMMAND', message: 'unknown command no-such-command' },
  });
});

test('command: responders (error, noReply, delay) and restoring the default', async () => {
  await apiOk('PUT', '/admin/responders/get-volume', { ok: false, error: { code: 'NOT_FOUND', message: 'no such volume' } });
  let r = await daemonCommand(main, 'get-volume', { id: 1 });
  assert.deepEqual(r.response.error, { code: 'NOT_FOUND', message: 'no such volume' });

  await apiOk('PUT', '/admin/responders/silent', { noReply: true });
  r = await daemonCommand(main, 'silent', undefined, { timeoutMs: 300 });
  assert.equal(r.error.code, 'COMMAND_TIMEOUT');

  await apiOk('PUT', '/admin/responders/slow', { ok: true, data: { late: true }, delayMs: 100 });
  r = await daemonCommand(main, 'slow');
  assert.deepEqual(r.response.data, { late: true });

  await apiOk('DELETE', '/admin/responders/get-volume');
  r = await daemonCommand(main, 'get-volume', { id: 1 });
  assert.equal(r.response.error.code, 'UNKNOWN_COMMAND');
  assert.equal((await api('PUT', '/admin/responders/x', { what: 1 })).status, 400);
});

test('command: heartbeat counted; command log in order', async () => {
  const r = await daemonCommand(main, 'runtime.heartbeat', { load: 0.5 });
  assert.equal(r.response.ok, true);
  const me = (await apiOk('GET', '/admin/daemons')).find((x) => x.sid === main.sid);
  assert.equal(me.heartbeats, 1);
  assert.deepEqual(me.lastHeartbeat, { load: 0.5 });
  assert.equal(typeof me.lastHeartbeatAt, 'number');
  const log = await apiOk('GET', '/admin/daemons/c-main/commands');
  assert.deepEqual(log[log.length - 1], { requestId: r.requestId, command: 'runtime.heartbeat', payload: { load: 0.5 } });
  assert.deepEqual(log.map((c) => c.command), ['echo', 'echo', 'no-such-command', 'get-volume', 'silent', 'slow', 'get-volume', 'runtime.heartbeat']);
});

test('reverse: echo', async () => {
  const r = await reverse('c-main', 'echo', { x: [1, 'two'] });
  assert.equal(r.status, 200);
  assert.equal(r.body.status, 200);
  assert.deepEqual(r.body.headers, {});
  assert.deepEqual(r.body.data, { x: [1, 'two'] });
  const line = await main.event('reverse-command', (e) => e.command === 'echo');
  assert.equal(line.requestId, r.body.requestId);
  // The reverse-command envelope has no payload key when none was given.
  const r2 = await reverse('c-main', 'echo');
  assert.ok(!('data' in r2.body));
  assert.ok((await textFrames('out')).includes(`42/daemon,["reverse-command",{"requestId":"${r2.body.requestId}","command":"echo"}]`));
});

test('reverse: blob arrives as a real binary attachment', async () => {
  const r = await reverse('c-main', 'blob', { size: 10 });
  assert.equal(r.status, 200);
  assert.equal(r.body.bodyWasBuffer, true);
  assert.equal(r.body.bodyBase64, bytes(10).toString('base64'));
  const all = await frames();
  const i = all.findIndex((f) => f.dir === 'in' && f.data.startsWith('451-/daemon,["reverse-response"') && f.data.includes(r.body.requestId));
  assert.ok(i >= 0, 'no 451- reverse-response frame');
  assert.deepEqual(all[i + 1], { dir: 'in', type: 'binary', data: bytes(10).toString('base64'), conn: all[i].conn, teamClusterId: 'c-main' });
});

test('reverse: chunks stream', async () => {
  const r = await reverse('c-main', 'chunks', { count: 4, size: 3 });
  assert.equal(r.status, 200);
  assert.equal(r.body.stream, true);
  assert.equal(r.body.chunks, 4);
  assert.deepEqual(r.body.chunkTypes, ['Buffer', 'Buffer', 'Buffer', 'Buffer']);
  assert.deepEqual(r.body.seqs, [0, 1, 2, 3]);
  assert.equal(r.body.streamBase64, bytes(12).toString('base64'));
  assert.equal(r.body.error, undefined);
});

test('reverse: fail-stream ends with an error after 2 chunks', async () => {
  const r = await reverse('c-main', 'fail-stream');
  assert.equal(r.body.chunks, 2);
  assert.deepEqual(r.body.chunkTypes, ['Buffer', 'Buffer']);
  assert.deepEqual(r.body.error, { code: 'HANDLER_ERROR', message: 'read error after 2 chunks' });
});

test('reverse: headers, unknown (404), boom (500)', async () => {
  let r = await reverse('c-main', 'headers', { h: 1 });
  assert.equal(r.body.status, 201);
  assert.deepEqual(r.body.headers, { 'x-test': '1' });
  assert.deepEqual(r.body.data, { h: 1 });
  r = await reverse('c-main', 'list-volumes');
  assert.equal(r.body.status, 404);
  assert.deepEqual(r.body.error, { code: 'UNKNOWN_COMMAND', message: 'no handler for command list-volumes' });
  r = await reverse('c-main', 'boom');
  assert.equal(r.body.status, 500);
  assert.equal(r.body.error.code, 'HANDLER_ERROR');
});

test('reverse: not connected (404) and timeout (504)', async () => {
  assert.equal((await reverse('c-nope', 'echo')).status, 404);
  const r = await reverse('c-main', 'sleep', { ms: 1000 }, { timeoutMs: 200 });
  assert.equal(r.status, 504);
  assert.equal(typeof r.body.message, 'string');
});

test('messages both ways', async () => {
  const toDaemon = { type: 'session-input', sessionId: 's1', chunkBase64: 'aGk=', extraField: 42 };
  const r = await api('POST', '/admin/daemons/c-main/messages', toDaemon);
  assert.equal(r.status, 202);
  assert.deepEqual((await main.event('message')).message, toDaemon);

  const fromDaemon = { type: 'tunnel-state', tunnelId: 't1', state: 'open' };
  main.send({ op: 'message', id: 'm1', message: fromDaemon });
  await main.event('sent', (e) => e.id === 'm1');
  const got = await eventually(async () => {
    const list = await apiOk('GET', '/admin/daemons/c-main/messages');
    return list.length > 0 && list;
  }, 'the daemon message on the server');
  assert.deepEqual(got, [fromDaemon]);
  assert.equal((await api('POST', '/admin/daemons/c-nope/messages', toDaemon)).status, 404);
});

test('raw frame to the daemon; stats', async () => {
  const r = await api('POST', '/admin/daemons/c-main/raw', { text: '42/daemon,["message",{"type":"raw-test","n":1}]' });
  assert.equal(r.status, 202);
  assert.deepEqual((await main.event('message')).message, { type: 'raw-test', n: 1 });
  assert.equal((await api('POST', '/admin/daemons/c-main/raw', { text: 'x', binaryBase64: 'AA==' })).status, 400);
  const stats = await apiOk('GET', '/admin/stats');
  assert.equal(stats.connections, 1);
  assert.ok(stats.connectionsTotal >= 5 && stats.framesIn > 0 && stats.framesOut > 0, JSON.stringify(stats));
  assert.equal(stats.commands, 8);
  assert.equal(stats.protocolErrors, 0);
});

test('admin API errors: bad JSON 400, unknown path 404, wrong method 405', async () => {
  let r = await api('POST', '/admin/daemons/c-main/commands', '{not json');
  assert.equal(r.status, 400);
  assert.equal(typeof r.body.message, 'string');
  r = await api('GET', '/admin/nothing-here');
  assert.equal(r.status, 404);
  assert.equal(typeof r.body.message, 'string');
  r = await api('DELETE', '/admin/daemons');
  assert.equal(r.status, 405);
});

test('kick: only 41/daemon, is sent; the daemon sees io server disconnect', async () => {
  await apiOk('DELETE', '/admin/frames');
  await apiOk('POST', '/admin/daemons/c-main/kick');
  assert.equal((await main.event('disconnected')).reason, 'io server disconnect');
  // socket.io-client then closes the WebSocket itself: the server sees the
  // Engine.IO connection end with `transport close`, not a server close.
  const conns = await eventually(async () => {
    const list = await apiOk('GET', '/admin/connections');
    return list.every((c) => c.closedAt !== null) && list;
  }, 'the kicked connection to close');
  assert.equal(conns[conns.length - 1].closeReason, 'transport close');
  const out = (await frames()).filter((f) => f.dir === 'out' && f.data !== '2');
  assert.deepEqual(out.map((f) => f.data), ['41/daemon,']);
  assert.deepEqual(await apiOk('GET', '/admin/daemons'), []);
  assert.equal((await api('POST', '/admin/daemons/c-main/kick')).status, 404);
  // Disconnected: commands fail at once; the connect op registers anew.
  assert.equal((await daemonCommand(main, 'echo')).error.code, 'SOCKET_NOT_READY');
  main.send({ op: 'connect' });
  await main.event('connected');
  await main.close();
});

test('drop: TCP destroyed without any frame; the daemon sees transport close', async () => {
  const d = await connectedDaemon('c-main', 'pw-main');
  await apiOk('DELETE', '/admin/frames');
  await apiOk('POST', '/admin/daemons/c-main/drop');
  assert.equal((await d.event('disconnected')).reason, 'transport close');
  const out = (await frames()).filter((f) => f.dir === 'out' && f.data !== '2');
  assert.deepEqual(out, []);
  await d.close();
});

test('daemon disconnect op: 41/daemon, from the client', async () => {
  const d = await connectedDaemon('c-main', 'pw-main');
  await apiOk('DELETE', '/admin/frames');
  d.send({ op: 'disconnect' });
  assert.equal((await d.event('disconnected')).reason, 'io client disconnect');
  await eventually(async () => (await textFrames('in')).includes('41/daemon,'), '41/daemon, from the daemon');
  await d.close();
});

test('stopPings: the daemon detects ping timeout; commands go unanswered; thaw', async () => {
  const d = await connectedDaemon('c-main', 'pw-main');
  await apiOk('PUT', '/admin/faults', { stopPings: true });
  const t0 = Date.now();
  const reply = daemonCommand(d, 'echo', { frozen: true }, { timeoutMs: 5000 });
  assert.equal((await d.event('disconnected')).reason, 'ping timeout');
  assert.ok(Date.now() - t0 <= (PING_INTERVAL + PING_TIMEOUT) * 3, 'ping timeout took too long');
  // The server never read the command: it fails with the connection.
  assert.equal((await reply).error.code, 'SOCKET_NOT_READY');
  const cmds = await apiOk('GET', '/admin/daemons/c-main/commands');
  assert.ok(!cmds.some((c) => c.payload && c.payload.frozen), 'the frozen server processed a command');

  // While frozen, a new connection gets its open packet and nothing else.
  const late = startDaemon('c-main', 'pw-main');
  assert.equal((await late.event('disconnected')).reason, 'ping timeout');
  assert.equal(late.queue.filter((l) => l.includes('"connected"')).length, 0);
  await late.close();

  await apiOk('DELETE', '/admin/faults');
  // Thawed: the server reads the close frames the clients left and closes.
  await eventually(async () => (await apiOk('GET', '/admin/connections')).every((c) => c.closedAt !== null),
    'the frozen connections to close after the thaw');
  const again = await connectedDaemon('c-main', 'pw-main');
  const r = await daemonCommand(again, 'echo', { ok: 1 });
  assert.deepEqual(r.response.data, { ok: 1 });
  await again.close();
  await d.close();
});

test('faults: PUT replaces the whole set; unknown fields rejected', async () => {
  await apiOk('PUT', '/admin/faults', { dropOnCommand: 'x', refuseConnections: 2 });
  let f = await apiOk('PUT', '/admin/faults', { rejectRegistration: { code: 'C' } });
  assert.deepEqual(f, {
    refuseConnections: 0, rejectRegistration: { code: 'C', message: null }, stopPings: false, dropAfterFrames: null, dropOnCommand: null,
  });
  assert.equal((await api('PUT', '/admin/faults', { stopPing: true })).status, 400);
  assert.equal((await api('PUT', '/admin/faults', { stopPings: 'yes' })).status, 400);
  f = await apiOk('DELETE', '/admin/faults');
  assert.equal(f.rejectRegistration, null);
});

test('fault refuseConnections: the next upgrade gets a 503', async () => {
  await apiOk('PUT', '/admin/faults', { refuseConnections: 1 });
  const d = startDaemon('c-main', 'pw-main');
  assert.equal((await d.event('connect_error')).message, 'websocket error');
  await d.close();
  assert.equal((await apiOk('GET', '/admin/faults')).refuseConnections, 0);
  const ok = await connectedDaemon('c-main', 'pw-main');
  await ok.close();
  await apiOk('DELETE', '/admin/faults');
});

test('fault dropAfterFrames: the Nth frame is recorded, not processed', async () => {
  await apiOk('PUT', '/admin/faults', { dropAfterFrames: 1 });
  await apiOk('DELETE', '/admin/frames');
  const d = startDaemon('c-main', 'pw-main');
  assert.equal((await d.event('disconnected')).reason, 'transport close');
  assert.equal(d.queue.filter((l) => l.includes('"connected"')).length, 0);
  const f = await frames();
  assert.ok(f.some((x) => x.dir === 'in' && x.data.startsWith('40/daemon,')), 'the 40 was not recorded');
  assert.ok(!f.some((x) => x.dir === 'out' && x.data.startsWith('40/daemon,')), 'the 40 was processed');
  await d.close();
  await apiOk('DELETE', '/admin/faults');
});

test('fault dropOnCommand: the connection is cut, no reply', async () => {
  await apiOk('PUT', '/admin/faults', { dropOnCommand: 'crash-me' });
  const d = await connectedDaemon('c-main', 'pw-main');
  const reply = daemonCommand(d, 'crash-me', { n: 1 });
  assert.equal((await d.event('disconnected')).reason, 'transport close');
  assert.equal((await reply).error.code, 'SOCKET_NOT_READY');
  const log = await apiOk('GET', '/admin/daemons/c-main/commands');
  assert.equal(log[log.length - 1].command, 'crash-me');
  await d.close();
  await apiOk('DELETE', '/admin/faults');
});

test('enrollment: CLI token with --rotate-password', async () => {
  const bad = await api('POST', '/api/team-clusters/c-enroll/healthcheck',
    { teamClusterId: 'c-enroll', enrollmentToken: 'wrong', installedVersion: null, daemonPassword: 'pw-0' },
    { Authorization: 'Bearer wrong' });
  assert.equal(bad.status, 401);
  assert.equal(typeof bad.body.message, 'string');

  const body = { teamClusterId: 'c-enroll', enrollmentToken: 'cli-token', installedVersion: '1.4.2', daemonPassword: 'pw-0' };
  const ok = await api('POST', '/api/team-clusters/c-enroll/healthcheck', body,
    { Authorization: 'Bearer cli-token', Accept: 'application/json' });
  assert.equal(ok.status, 200);
  assert.equal(ok.body.daemonPassword, 'pw-cli-rotated');
  // One-time token.
  const again = await api('POST', '/api/team-clusters/c-enroll/healthcheck', body, { Authorization: 'Bearer cli-token' });
  assert.equal(again.status, 401);

  const rejected = startDaemon('c-enroll', 'pw-0');
  assert.deepEqual((await rejected.event('connect_error')).data, { code: 'INVALID_CREDENTIALS' });
  await rejected.close();
  const d = await connectedDaemon('c-enroll', 'pw-cli-rotated');
  await d.close();

  const seen = (await apiOk('GET', '/admin/enrollment')).requests.find((q) => q.authorization === 'Bearer cli-token');
  assert.deepEqual(seen.body, body);
  assert.equal(seen.contentType, 'application/json');
});

test('enrollment: PUT /admin/enrollment tokens, rotation, failStatus', async () => {
  await apiOk('PUT', '/admin/enrollment', { tokens: ['tok-1'], rotateTo: null, failStatus: null });
  const body = { teamClusterId: 'c-enroll-2', enrollmentToken: 'tok-1', installedVersion: null, daemonPassword: 'pw-own' };
  // Without rotation, the response has no daemonPassword and the password sent stays valid.
  let r = await api('POST', '/api/team-clusters/c-enroll-2/healthcheck', body, { Authorization: 'Bearer tok-1' });
  assert.equal(r.status, 200);
  assert.equal(r.body.daemonPassword, undefined);
  (await connectedDaemon('c-enroll-2', 'pw-own')).send({ op: 'exit' });

  await apiOk('PUT', '/admin/enrollment', { tokens: ['tok-2'], rotateTo: 'pw-rotated' });
  r = await api('POST', '/api/team-clusters/c-enroll-2/healthcheck', { ...body, enrollmentToken: 'tok-2' }, { Authorization: 'Bearer tok-2' });
  assert.equal(r.body.daemonPassword, 'pw-rotated');
  const d = await connectedDaemon('c-enroll-2', 'pw-rotated');
  await d.close();

  await apiOk('PUT', '/admin/enrollment', { tokens: ['tok-3'], failStatus: 503 });
  r = await api('POST', '/api/team-clusters/c-enroll-2/healthcheck', { ...body, enrollmentToken: 'tok-3' }, { Authorization: 'Bearer tok-3' });
  assert.equal(r.status, 503);
  assert.equal(typeof r.body.message, 'string');
  await apiOk('PUT', '/admin/enrollment', { failStatus: null });
});

test('POST /admin/clusters adds a cluster', async () => {
  await apiOk('POST', '/admin/clusters', { teamClusterId: 'c-new', daemonPassword: 'pw-new' });
  const d = await connectedDaemon('c-new', 'pw-new');
  assert.ok((await textFrames('in')).some((t) => t.startsWith('40/daemon,{"teamClusterId":"c-new"')));
  d.send({ op: 'exit' });
  await withTimeout(d.exited, WAIT_MS, 'the daemon to exit on the exit op');
});

test('a second server: --listen, --admin-token; exits cleanly on SIGTERM', async () => {
  const other = await startServer(['--cluster', 'a:b', '--listen=127.0.0.1:0', '--admin-token', 'adm', '--record-frames']);
  const get = (headers) => fetch(`${other.url}/admin/daemons`, { headers, signal: AbortSignal.timeout(WAIT_MS) });
  let res = await get({});
  assert.equal(res.status, 401);
  assert.equal(typeof (await res.json()).message, 'string');
  res = await get({ Authorization: 'Bearer adm' });
  assert.equal(res.status, 200);
  assert.deepEqual(await res.json(), []);
  other.child.kill('SIGTERM');
  const { code } = await withTimeout(other.exited, WAIT_MS, 'the server to exit on SIGTERM');
  assert.equal(code, 0);
});

// ---------------------------------------------------------------------------

async function main_() {
  const watchdog = setTimeout(() => {
    process.stderr.write(`selftest: watchdog fired after ${WATCHDOG_MS} ms\n`);
    for (const c of children) c.kill('SIGKILL');
    process.exit(1);
  }, WATCHDOG_MS);

  server = await startServer([
    '--cluster', 'c-main:pw-main',
    '--enrollment-token', 'cli-token', '--rotate-password', 'pw-cli-rotated',
    '--ping-interval-ms', String(PING_INTERVAL), '--ping-timeout-ms', String(PING_TIMEOUT),
    '--max-payload', String(MAX_PAYLOAD),
  ]);

  let passed = 0;
  let failed = 0;
  for (const t of tests) {
    try {
      await withTimeout(t.fn(), WAIT_MS * 4, `test "${t.name}"`);
      passed++;
      console.log(`ok - ${t.name}`);
    } catch (err) {
      failed++;
      console.log(`not ok - ${t.name}\n  ${String(err.stack || err).replace(/\n/g, '\n  ')}`);
    }
  }

  // The server exits when its stdin closes.
  try {
    const { code } = await server.close();
    assert.equal(code, 0);
    passed++;
    console.log('ok - the server exits cleanly when stdin closes');
  } catch (err) {
    failed++;
    console.log(`not ok - the server exits cleanly when stdin closes\n  ${err.message}`);
  }

  for (const c of children) c.kill('SIGKILL');
  clearTimeout(watchdog);
  console.log(`${passed} passed, ${failed} failed`);
  process.exitCode = failed === 0 ? 0 : 1;
}

main_().catch((err) => {
  console.error(err);
  for (const c of children) c.kill('SIGKILL');
  process.exit(1);
});
