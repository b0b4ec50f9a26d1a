#!/usr/bin/env node
// Records the frame transcripts of the frame-level interoperability check:
// ref-daemon.js (socket.io-client 4.8.4) against ref-server.js (socket.io
// 4.8.4) through fixed flows, each on a fresh connection. For every flow it
// writes transcripts/<flow>.json:
//
//   {flow, description, recordedWith, settings, registration, steps, frames}
//
// - settings: the server settings and credentials the flow ran with;
// - steps: what the flow does, each with the outcome seen (`expect`), so the
//   Rust test (interop/tests/frames.rs) runs the very same flow with our
//   client and/or our mock server and checks the outcomes too;
// - frames: every WebSocket frame of the flow's connection (GET
//   /admin/frames), in wire order, as {dir: "in" (daemon -> server) | "out",
//   type: "text" | "binary", data}, pings/pongs left out, masked (see
//   maskFrames: sids, uuids and the client name are replaced by placeholders
//   numbered by first appearance).
//
// Run it after changing a flow or the pinned packages:
//   cd interop && npm ci && node record-transcripts.js [flow ...]
// then review `git diff interop/transcripts` and commit. Every wait is bounded
// and a watchdog kills everything if the run takes too long.
'use strict';

const assert = require('assert/strict');
const fs = require('fs');
const path = require('path');
const { spawn } = require('child_process');

const HERE = __dirname;
const OUT_DIR = path.join(HERE, 'transcripts');
const WAIT_MS = 5000;
const WATCHDOG_MS = 120000;

// Long ping interval: no ping/pong during a flow (they are filtered anyway).
// A small maxPayload so our client cuts streams into chunks of that size,
// exactly like the `chunks` flow's size, and the transcripts stay small.
const SETTINGS = {
  cluster: 'c-main',
  password: 'pw-main',
  installedVersion: '1.4.2',
  pingIntervalMs: 25000,
  pingTimeoutMs: 20000,
  maxPayload: 512,
};

const FLOWS = [
  {
    flow: 'registration',
    description: 'open packet, registration accepted, daemon disconnect (41 from the client)',
    steps: [{ op: 'disconnect' }],
  },
  {
    flow: 'registration-rejected',
    description: 'a wrong password: 40 answered by 44 with data.code INVALID_CREDENTIALS',
    password: 'wrong-password',
    registration: 'rejected',
    steps: [],
  },
  {
    flow: 'command-echo-payload',
    description: 'daemon command with a payload (escapes, unicode, numbers), answered ok with data',
    steps: [
      { op: 'command', command: 'echo', payload: { a: 1, b: [1, 2, { c: null }], s: 'é "q" \\ \n \u0001 \u2028 ☃', f: 0.25, neg: -3, t: true, e: {}, l: [] } },
      { op: 'disconnect' },
    ],
  },
  {
    flow: 'command-echo-no-payload',
    description: 'daemon command without payload (no payload key), answered ok without data',
    steps: [{ op: 'command', command: 'echo' }, { op: 'disconnect' }],
  },
  {
    flow: 'command-rejected',
    description: 'daemon command answered ok:false with an error code and message',
    steps: [
      { op: 'responder', command: 'get-volume', responder: { ok: false, error: { code: 'NOT_FOUND', message: 'no such volume' } } },
      { op: 'command', command: 'get-volume', payload: { volume: 'v1' } },
      { op: 'disconnect' },
    ],
  },
  {
    flow: 'reverse-data',
    description: 'reverse commands answered with JSON data, with status and headers, and with nothing',
    steps: [
      { op: 'reverse', command: 'echo', payload: { dir: '/var/log', n: [1, 'two', null] } },
      { op: 'reverse', command: 'headers', payload: { x: 1 } },
      { op: 'reverse', command: 'echo' },
      { op: 'disconnect' },
    ],
  },
  {
    flow: 'reverse-body',
    description: 'a reverse command answered with a body: 451- with a placeholder, then one binary frame',
    steps: [{ op: 'reverse', command: 'blob', payload: { size: 16 } }, { op: 'disconnect' }],
  },
  {
    flow: 'reverse-stream',
    description: 'a reverse command answered with a stream of 3 chunks of maxPayload bytes, then the end',
    steps: [{ op: 'reverse', command: 'chunks', payload: { count: 3, size: SETTINGS.maxPayload } }, { op: 'disconnect' }],
  },
  {
    flow: 'reverse-404',
    description: 'a reverse command with no handler: 404 UNKNOWN_COMMAND',
    steps: [{ op: 'reverse', command: 'no-such-handler', payload: { a: 1 } }, { op: 'disconnect' }],
  },
  {
    flow: 'messages',
    description: 'messages both ways, known types with extra fields and unknown types',
    steps: [
      { op: 'server-message', message: { type: 'session-input', sessionId: 's1', chunkBase64: 'aGk=', extraField: 42 } },
      { op: 'server-message', message: { type: 'brand-new-type', x: [1, { y: 'z' }] } },
      { op: 'daemon-message', message: { type: 'tunnel-state', tunnelId: 't1', state: 'open' } },
      { op: 'daemon-message', message: { type: 'session-data', sessionId: 's1', chunkBase64: 'aGk=' } },
      { op: 'daemon-message', message: { type: 'future-daemon-type', y: { z: 1 } } },
      { op: 'disconnect' },
    ],
  },
  {
    flow: 'kick',
    description: 'the server kicks the daemon: 41/daemon, and nothing from the client after it',
    steps: [{ op: 'kick' }],
  },
];

// ---------------------------------------------------------------------------
// Masking (interop/src/transcript.rs does exactly the same)

const UUID_RE = /[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}/g;

function maskFrames(frames) {
  const sids = new Map();
  const uuids = new Map();
  const out = [];
  for (const f of frames) {
    if (f.type === 'text' && (f.data === '2' || f.data === '3')) continue; // ping / pong
    let data = f.data;
    if (f.type === 'text') {
      data = data.replace(/"sid":"([^"]*)"/g, (_, sid) => {
        if (!sids.has(sid)) sids.set(sid, `<sid-${sids.size + 1}>`);
        return `"sid":"${sids.get(sid)}"`;
      });
      data = data.replace(/"client":"[^"]*"/g, '"client":"<client>"');
      data = data.replace(UUID_RE, (u) => {
        const key = u.toLowerCase();
        if (!uuids.has(key)) uuids.set(key, `<uuid-${uuids.size + 1}>`);
        return uuids.get(key);
      });
    }
    out.push({ dir: f.dir, type: f.type, data });
  }
  return out;
}

// ---------------------------------------------------------------------------
// Child processes speaking lines

const children = new Set();

class LineProcess {
  constructor(name, args) {
    this.name = name;
    this.child = spawn(process.execPath, args, { cwd: HERE, stdio: ['pipe', 'pipe', 'pipe'] });
    children.add(this.child);
    this.lines = [];
    this.cursor = 0;
    this.waiters = new Set();
    this.stderr = '';
    this.child.on('exit', () => {
      children.delete(this.child);
      this.notify();
    });
    this.child.stderr.on('data', (d) => { this.stderr += d; });
    this.child.stdin.on('error', () => {});
    let buffered = '';
    this.child.stdout.on('data', (data) => {
      buffered += data;
      let nl;
      while ((nl = buffered.indexOf('\n')) >= 0) {
        this.lines.push(buffered.slice(0, nl));
        buffered = buffered.slice(nl + 1);
      }
      this.notify();
    });
  }

  notify() {
    for (const w of [...this.waiters]) w();
  }

  send(obj) {
    this.child.stdin.write(`${JSON.stringify(obj)}\n`);
  }

  // The next line past the cursor that `match` accepts (parsed as JSON when
  // `json`), moving the cursor past it.
  expect(match, what, json = true, ms = WAIT_MS) {
    return new Promise((resolve, reject) => {
      const check = () => {
        for (let i = this.cursor; i < this.lines.length; i++) {
          const v = json ? JSON.parse(this.lines[i]) : this.lines[i];
          if (match(v)) {
            this.cursor = i + 1;
            done();
            resolve(v);
            return;
          }
        }
        if (this.child.exitCode !== null || this.child.signalCode !== null) {
          done();
          reject(new Error(`${this.name} exited while waiting for ${what}; stderr:\n${this.stderr}`));
        }
      };
      const timer = setTimeout(() => {
        done();
        reject(new Error(`${this.name}: no ${what} within ${ms} ms; lines:\n${this.lines.join('\n')}\nstderr:\n${this.stderr}`));
      }, ms);
      const done = () => {
        clearTimeout(timer);
        this.waiters.delete(check);
      };
      this.waiters.add(check);
      check();
    });
  }

  kill() {
    this.child.kill('SIGKILL');
  }
}

// ---------------------------------------------------------------------------
// Admin API

async function admin(base, method, p, body) {
  const res = await fetch(base + p, {
    method,
    headers: body === undefined ? {} : { 'Content-Type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
    signal: AbortSignal.timeout(15000),
  });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : null };
}

async function waitFor(what, probe, ms = WAIT_MS) {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await probe();
    if (v !== undefined && v !== null && v !== false) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

// The outcomes the Rust test compares: a command reply without its requestId;
// a reverse-command result without requestId and the ref-server extras.
function commandOutcome(response) {
  const { requestId, ...rest } = response;
  return rest;
}

function reverseOutcome(result) {
  const { requestId, bodyWasBuffer, body, chunkTypes, seqs, ...rest } = result;
  return rest;
}

// ---------------------------------------------------------------------------
// One flow

async function runFlow(base, def) {
  const s = SETTINGS;
  assert.equal((await admin(base, 'DELETE', '/admin/frames')).status, 200);
  const daemon = new LineProcess(`ref-daemon(${def.flow})`, [
    'ref-daemon.js', '--url', base, '--cluster', s.cluster,
    '--password', def.password || s.password, '--installed-version', s.installedVersion,
  ]);
  const steps = [];
  let nextId = 1;
  try {
    if (def.registration === 'rejected') {
      const e = await daemon.expect((v) => v.event === 'connect_error', 'connect_error');
      assert.deepEqual(e.data, { code: 'INVALID_CREDENTIALS' });
    } else {
      await daemon.expect((v) => v.event === 'connected', 'connected');
    }
    for (const step of def.steps) {
      const recorded = { ...step };
      switch (step.op) {
        case 'responder':
          assert.equal((await admin(base, 'PUT', `/admin/responders/${step.command}`, step.responder)).status, 200);
          break;
        case 'command': {
          const id = nextId++;
          const op = { op: 'command', id, command: step.command };
          if ('payload' in step) op.payload = step.payload;
          daemon.send(op);
          const reply = await daemon.expect((v) => v.event === 'reply' && v.id === id, `reply ${id}`);
          assert.ok(reply.response, `command ${step.command} failed: ${JSON.stringify(reply)}`);
          recorded.expect = commandOutcome(reply.response);
          break;
        }
        case 'reverse': {
          const body = { command: step.command };
          if ('payload' in step) body.payload = step.payload;
          const r = await admin(base, 'POST', `/admin/daemons/${s.cluster}/commands`, body);
          assert.equal(r.status, 200, JSON.stringify(r.body));
          if ('bodyWasBuffer' in r.body) assert.equal(r.body.bodyWasBuffer, true);
          if (r.body.chunkTypes) assert.ok(r.body.chunkTypes.every((t) => t === 'Buffer'));
          recorded.expect = reverseOutcome(r.body);
          await daemon.expect((v) => v.event === 'reverse-command' && v.requestId === r.body.requestId, 'reverse-command');
          break;
        }
        case 'server-message': {
          const r = await admin(base, 'POST', `/admin/daemons/${s.cluster}/messages`, step.message);
          assert.equal(r.status, 202);
          await daemon.expect((v) => v.event === 'message' && JSON.stringify(v.message) === JSON.stringify(step.message), 'the message');
          break;
        }
        case 'daemon-message': {
          const before = (await admin(base, 'GET', `/admin/daemons/${s.cluster}/messages`)).body.length;
          daemon.send({ op: 'message', message: step.message });
          const got = await waitFor('the server to receive the message', async () => {
            const list = (await admin(base, 'GET', `/admin/daemons/${s.cluster}/messages`)).body;
            return list.length > before ? list : null;
          });
          assert.deepEqual(got[got.length - 1], step.message);
          break;
        }
        case 'kick': {
          assert.equal((await admin(base, 'POST', `/admin/daemons/${s.cluster}/kick`, {})).status, 200);
          const d = await daemon.expect((v) => v.event === 'disconnected', 'disconnected');
          assert.equal(d.reason, 'io server disconnect');
          recorded.expect = { reason: d.reason };
          break;
        }
        case 'disconnect': {
          daemon.send({ op: 'disconnect' });
          const d = await daemon.expect((v) => v.event === 'disconnected', 'disconnected');
          recorded.expect = { reason: d.reason };
          break;
        }
        default:
          throw new Error(`unknown step ${step.op}`);
      }
      steps.push(recorded);
    }
    await waitFor('every connection to close', async () => (await admin(base, 'GET', '/admin/stats')).body.connections === 0);
    const frames = (await admin(base, 'GET', '/admin/frames')).body;
    const conns = new Set(frames.map((f) => f.conn));
    assert.equal(conns.size, 1, `flow ${def.flow} used ${conns.size} connections`);
    return {
      flow: def.flow,
      description: def.description,
      recordedWith: recordedWith(),
      settings: { ...s, password: def.password || s.password },
      registration: def.registration || 'accepted',
      steps,
      frames: maskFrames(frames),
    };
  } finally {
    daemon.send({ op: 'exit' });
    daemon.child.stdin.end();
    await new Promise((resolve) => {
      if (daemon.child.exitCode !== null || daemon.child.signalCode !== null) return resolve();
      const t = setTimeout(() => { daemon.kill(); resolve(); }, 2000);
      daemon.child.on('exit', () => { clearTimeout(t); resolve(); });
    });
  }
}

// The versions actually installed (from npm's own record of node_modules).
function recordedWith() {
  const lock = JSON.parse(fs.readFileSync(path.join(HERE, 'node_modules', '.package-lock.json'), 'utf8'));
  const v = (name) => (lock.packages[`node_modules/${name}`] || {}).version;
  return { node: process.version, 'socket.io': v('socket.io'), 'socket.io-client': v('socket.io-client'), 'engine.io': v('engine.io'), 'engine.io-client': v('engine.io-client'), ws: v('ws') };
}

async function main() {
  const only = process.argv.slice(2);
  for (const name of only) {
    if (!FLOWS.some((f) => f.flow === name)) throw new Error(`unknown flow ${name}`);
  }
  const s = SETTINGS;
  const server = new LineProcess('ref-server', [
    'ref-server.js', '--listen', '127.0.0.1:0', '--cluster', `${s.cluster}:${s.password}`,
    '--ping-interval-ms', String(s.pingIntervalMs), '--ping-timeout-ms', String(s.pingTimeoutMs),
    '--max-payload', String(s.maxPayload),
  ]);
  try {
    const line = await server.expect((l) => l.startsWith('listening '), 'listening line', false);
    const base = line.slice('listening '.length);
    fs.mkdirSync(OUT_DIR, { recursive: true });
    for (const def of FLOWS) {
      if (only.length && !only.includes(def.flow)) continue;
      const t = await runFlow(base, def);
      const file = path.join(OUT_DIR, `${def.flow}.json`);
      fs.writeFileSync(file, `${JSON.stringify(t, null, 2)}\n`);
      process.stdout.write(`recorded ${path.relative(process.cwd(), file)} (${t.frames.length} frames)\n`);
    }
  } finally {
    server.child.stdin.end();
    server.kill();
  }
}

const watchdog = setTimeout(() => {
  process.stderr.write(`record-transcripts: watchdog after ${WATCHDOG_MS} ms\n`);
  for (const c of children) c.kill('SIGKILL');
  process.exit(1);
}, WATCHDOG_MS);
watchdog.unref();

main().then(
  () => process.exit(0),
  (err) => {
    process.stderr.write(`record-transcripts: ${err.stack}\n`);
    for (const c of children) c.kill('SIGKILL');
    process.exit(1);
  },
);
