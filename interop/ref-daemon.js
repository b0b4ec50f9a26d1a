#!/usr/bin/env node
// Reference VOLT daemon on the real socket.io-client 4.8.4 (see
// /work/shared/volt-protocol.md), driven over stdin/stdout JSON lines so a
// Rust test can use it against the project's mock server.
//
//   node ref-daemon.js --url http://127.0.0.1:PORT --cluster ID --password PW
//        [--installed-version V] [--namespace /daemon]
//
// stdout: one JSON event per line (see README.md); stdin: one JSON op per
// line. The process exits on {"op":"exit"} and when stdin closes.
'use strict';

const crypto = require('crypto');
const readline = require('readline');
const { io } = require('socket.io-client');

const CLIENT_NAME = 'ref-daemon/0.1.0';

function usage(message) {
  process.stderr.write(`ref-daemon: ${message}\n`);
  process.exit(2);
}

function parseArgs(argv) {
  const opts = { url: null, cluster: null, password: null, installedVersion: null, namespace: '/daemon' };
  for (let i = 0; i < argv.length; i += 2) {
    const value = argv[i + 1];
    if (value === undefined) usage(`${argv[i]} needs a value`);
    switch (argv[i]) {
      case '--url': opts.url = value; break;
      case '--cluster': opts.cluster = value; break;
      case '--password': opts.password = value; break;
      case '--installed-version': opts.installedVersion = value; break;
      case '--namespace': opts.namespace = value; break;
      default: usage(`unknown argument ${argv[i]}`);
    }
  }
  if (!opts.url || opts.cluster === null || opts.password === null) usage('--url, --cluster and --password are required');
  return opts;
}

const opts = parseArgs(process.argv.slice(2));

// stdout to a pipe is synchronous on Linux, so a line written before
// process.exit() is never lost.
function emitLine(obj) {
  process.stdout.write(`${JSON.stringify(obj)}\n`);
}

const socket = io(opts.url.replace(/\/+$/, '') + opts.namespace, {
  transports: ['websocket'],
  auth: {
    teamClusterId: opts.cluster,
    daemonPassword: opts.password,
    installedVersion: opts.installedVersion,
    client: CLIENT_NAME,
  },
  reconnection: false,
});

// requestId -> {id, timer} for commands sent from stdin
const inFlight = new Map();

function failInFlight(code, message) {
  for (const [requestId, entry] of inFlight) {
    clearTimeout(entry.timer);
    emitLine({ event: 'reply', id: entry.id, requestId, error: { code, message } });
  }
  inFlight.clear();
}

socket.on('connect', () => emitLine({ event: 'connected', sid: socket.id }));
socket.on('connect_error', (err) => emitLine({ event: 'connect_error', message: err.message, data: err.data }));
socket.on('disconnect', (reason) => {
  // As the contract asks of a daemon: whatever is in flight fails at once.
  failInFlight('SOCKET_NOT_READY', `connection lost (${reason})`);
  emitLine({ event: 'disconnected', reason });
});
socket.on('message', (message) => emitLine({ event: 'message', message }));
socket.on('command-response', (response) => {
  const entry = response && typeof response.requestId === 'string' ? inFlight.get(response.requestId) : undefined;
  if (!entry) {
    emitLine({ event: 'unmatched-response', response });
    return;
  }
  inFlight.delete(response.requestId);
  clearTimeout(entry.timer);
  emitLine({ event: 'reply', id: entry.id, requestId: response.requestId, response });
});
socket.on('reverse-command', (envelope) => {
  handleReverseCommand(envelope).catch((err) => emitLine({ event: 'error', message: `reverse-command failed: ${err.stack}` }));
});

// ---------------------------------------------------------------------------
// Reverse-command handlers (contract §5). A handler returns
// {status?, headers?, data? | body? | stream?} or throws; `stream` is an
// array of Buffers plus an optional `streamError` raised after them.

function bytes(count, start = 0) {
  const buf = Buffer.alloc(count);
  for (let i = 0; i < count; i++) buf[i] = (start + i) % 256;
  return buf;
}

function sizeArg(payload, name, dflt) {
  const v = payload && payload[name];
  return Number.isSafeInteger(v) && v >= 0 ? v : dflt;
}

// Chunks continue one byte counter: 00 01 02 | 03 04 05 | …
function chunkList(count, size) {
  const chunks = [];
  for (let i = 0; i < count; i++) chunks.push(bytes(size, i * size));
  return chunks;
}

const handlers = {
  echo: (payload) => (payload === undefined ? {} : { data: payload }),
  blob: (payload) => ({ body: bytes(sizeArg(payload, 'size', 16)) }),
  chunks: (payload) => ({ stream: chunkList(sizeArg(payload, 'count', 3), sizeArg(payload, 'size', 3)) }),
  'fail-stream': (payload) => ({
    stream: chunkList(2, sizeArg(payload, 'size', 3)),
    streamError: { code: 'HANDLER_ERROR', message: 'read error after 2 chunks' },
  }),
  headers: (payload) => ({ status: 201, headers: { 'x-test': '1' }, data: payload === undefined ? { created: true } : payload }),
  boom: () => {
    throw new Error('boom: handler failed');
  },
  // Answers after payload.ms milliseconds, for server-side timeout tests.
  sleep: async (payload) => {
    await new Promise((resolve) => setTimeout(resolve, sizeArg(payload, 'ms', 1000)));
    return payload === undefined ? {} : { data: payload };
  },
};

async function handleReverseCommand(envelope) {
  if (!envelope || typeof envelope !== 'object' || typeof envelope.requestId !== 'string' || typeof envelope.command !== 'string') {
    // Contract §6: a malformed reverse-command gets no reply.
    emitLine({ event: 'protocol-error', message: 'malformed reverse-command', received: envelope });
    return;
  }
  const { requestId, command, payload } = envelope;
  const base = (status, headers) => ({ requestId, command, status, headers });
  let reply;
  let result = null;
  const handler = Object.prototype.hasOwnProperty.call(handlers, command) ? handlers[command] : null;
  if (!handler) {
    reply = { ...base(404, {}), error: { code: 'UNKNOWN_COMMAND', message: `no handler for command ${command}` } };
  } else {
    try {
      result = await handler(payload);
      reply = base(result.status === undefined ? 200 : result.status, result.headers === undefined ? {} : result.headers);
      if (result.data !== undefined) reply.data = result.data;
      // A Buffer inside the object makes socket.io emit a BINARY_EVENT (45…)
      // with the bytes as a binary attachment frame.
      if (result.body !== undefined) reply.body = result.body;
      if (result.stream !== undefined) reply.stream = true;
    } catch (err) {
      result = null;
      reply = { ...base(500, {}), error: { code: 'HANDLER_ERROR', message: err.message } };
    }
  }
  socket.emit('reverse-response', reply);
  if (result && result.stream !== undefined) {
    result.stream.forEach((chunk, seq) => socket.emit('reverse-stream', { requestId, seq, chunk }));
    const end = { requestId, chunks: result.stream.length };
    if (result.streamError) end.error = result.streamError;
    socket.emit('reverse-stream-end', end);
  }
  emitLine({ event: 'reverse-command', requestId, command, payload, status: reply.status });
}

// ---------------------------------------------------------------------------
// stdin ops

function notReady(op) {
  return { code: 'SOCKET_NOT_READY', message: `not connected; ${op} not sent` };
}

const ops = {
  command(op) {
    if (typeof op.command !== 'string') throw new Error('command op needs a string "command"');
    // Checked here because socket.io-client would otherwise buffer the emit
    // and send it after a later connect: the contract wants at-most-once.
    if (!socket.connected) {
      emitLine({ event: 'reply', id: op.id, error: notReady('command') });
      return;
    }
    const requestId = crypto.randomUUID();
    const envelope = { requestId, command: op.command };
    if ('payload' in op) envelope.payload = op.payload;
    const timeoutMs = Number.isFinite(op.timeoutMs) ? op.timeoutMs : 10000;
    const timer = setTimeout(() => {
      inFlight.delete(requestId);
      emitLine({ event: 'reply', id: op.id, requestId, error: { code: 'COMMAND_TIMEOUT', message: `no command-response within ${timeoutMs} ms` } });
    }, timeoutMs);
    inFlight.set(requestId, { id: op.id, timer });
    socket.emit('command', envelope);
  },
  message(op) {
    if (!socket.connected) {
      emitLine({ event: 'error', id: op.id, ...notReady('message') });
      return;
    }
    socket.emit('message', op.message);
    if (op.id !== undefined) emitLine({ event: 'sent', id: op.id });
  },
  disconnect() {
    socket.disconnect();
  },
  // Reconnects by hand (reconnection is off), optionally with a new password.
  connect(op) {
    if (typeof op.password === 'string') socket.auth.daemonPassword = op.password;
    socket.connect();
  },
  exit() {
    shutdown();
  },
};

let shuttingDown = false;
function shutdown() {
  if (shuttingDown) return;
  shuttingDown = true;
  if (socket.connected) socket.disconnect(); // `41/daemon,` then a close frame
  setImmediate(() => process.exit(0));
}

const rl = readline.createInterface({ input: process.stdin, crlfDelay: Infinity });
rl.on('line', (line) => {
  if (line.trim() === '') return;
  let op;
  try {
    op = JSON.parse(line);
  } catch (err) {
    emitLine({ event: 'error', message: `bad stdin line: ${err.message}` });
    return;
  }
  const fn = op && typeof op.op === 'string' && Object.prototype.hasOwnProperty.call(ops, op.op) ? ops[op.op] : null;
  if (!fn) {
    emitLine({ event: 'error', id: op && op.id, message: `unknown op ${JSON.stringify(op && op.op)}` });
    return;
  }
  try {
    fn(op);
  } catch (err) {
    emitLine({ event: 'error', id: op.id, message: err.message });
  }
});
rl.on('close', shutdown);
process.stdout.on('error', shutdown);
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);
