#!/usr/bin/env node
// Reference VOLT server on the real socket.io 4.8.4 server (see
// /work/shared/volt-protocol.md). It serves the `/daemon` namespace over
// WebSocket only and, on the same HTTP port, the admin API of the project's
// Rust mock server, so the Rust interoperability tests can drive either
// server with one code path. See README.md in this folder for the API.
//
//   node ref-server.js [--port 0 | --listen 127.0.0.1:0] --cluster ID:PASSWORD [--cluster …]
//        [--enrollment-token T …] [--rotate-password NEW]
//        [--ping-interval-ms N] [--ping-timeout-ms N] [--max-payload BYTES]
//        [--admin-token T] [--max-connections-per-ip N] [--record-frames]
//        [--ignore-stdin]
//
// The flags are those of `volt-mock-server` (plus --port and --ignore-stdin),
// so either binary can be started with the same command line; `--flag=value`
// works too. Frames are always recorded (--record-frames is accepted as a
// no-op). TLS is not supported.
//
// The first (and only) line on stdout is `listening http://HOST:PORT`.
// The process exits on SIGTERM, SIGINT, and when stdin closes (unless
// --ignore-stdin), so a test runner that dies never leaks it.
'use strict';

const http = require('http');
const path = require('path');
const crypto = require('crypto');
const { Server } = require('socket.io');

// `ws` comes with engine.io; resolve it through engine.io (not through our
// own node_modules root) so we get the very copy engine.io uses, whatever
// npm's hoisting did.
const engineIoPath = require.resolve('engine.io', { paths: [path.dirname(require.resolve('socket.io'))] });
const WsServer = require(require.resolve('ws', { paths: [path.dirname(engineIoPath)] })).WebSocketServer;

// ---------------------------------------------------------------------------
// Command line

function usage(message) {
  process.stderr.write(`ref-server: ${message}\n`);
  process.exit(2);
}

const USAGE = `usage: node ref-server.js [--port 0 | --listen 127.0.0.1:0] [--cluster ID:PASSWORD]...
       [--enrollment-token TOKEN]... [--rotate-password NEW]
       [--ping-interval-ms N] [--ping-timeout-ms N] [--max-payload BYTES]
       [--admin-token T] [--max-connections-per-ip N] [--record-frames] [--ignore-stdin]`;

function parseArgs(argv) {
  const opts = {
    host: '127.0.0.1',
    port: 0,
    clusters: new Map(),
    enrollmentTokens: [],
    rotateTo: null,
    pingInterval: 25000,
    pingTimeout: 20000,
    maxPayload: 1000000,
    adminToken: null,
    maxConnectionsPerIp: 4096,
    ignoreStdin: false,
  };
  const intArg = (name, value) => {
    const n = Number(value);
    if (!Number.isSafeInteger(n) || n < 0) usage(`${name} needs a non-negative integer, got ${value}`);
    return n;
  };
  for (let i = 0; i < argv.length; i++) {
    const eq = argv[i].startsWith('--') ? argv[i].indexOf('=') : -1;
    const arg = eq > 0 ? argv[i].slice(0, eq) : argv[i];
    if (arg === '--help' || arg === '-h') {
      process.stdout.write(`${USAGE}\n`);
      process.exit(0);
    }
    if (arg === '--ignore-stdin') {
      opts.ignoreStdin = true;
      continue;
    }
    if (arg === '--record-frames') continue; // always on here
    const value = eq > 0 ? argv[i].slice(eq + 1) : argv[++i];
    if (value === undefined) usage(`${arg} needs a value`);
    switch (arg) {
      case '--port': opts.port = intArg(arg, value); break;
      case '--listen': {
        const m = /^(.*):(\d+)$/.exec(value);
        if (!m) usage(`--listen wants ADDR:PORT, got ${value}`);
        opts.host = m[1].replace(/^\[(.*)\]$/, '$1');
        opts.port = intArg(arg, m[2]);
        break;
      }
      case '--admin-token': opts.adminToken = value; break;
      case '--max-connections-per-ip': opts.maxConnectionsPerIp = intArg(arg, value); break;
      case '--cluster': {
        const colon = value.indexOf(':');
        if (colon <= 0) usage(`--cluster wants ID:PASSWORD, got ${value}`);
        opts.clusters.set(value.slice(0, colon), value.slice(colon + 1));
        break;
      }
      case '--enrollment-token': opts.enrollmentTokens.push(value); break;
      case '--rotate-password': opts.rotateTo = value; break;
      case '--ping-interval-ms': opts.pingInterval = intArg(arg, value); break;
      case '--ping-timeout-ms': opts.pingTimeout = intArg(arg, value); break;
      case '--max-payload': opts.maxPayload = intArg(arg, value); break;
      default: usage(`unknown argument ${arg}\n\n${USAGE}`);
    }
  }
  if (opts.pingInterval === 0) usage('--ping-interval-ms must be positive');
  return opts;
}

const opts = parseArgs(process.argv.slice(2));

// ---------------------------------------------------------------------------
// State (all of it in memory, for the lifetime of the process)

const state = {
  clusters: opts.clusters, // teamClusterId -> current daemon password
  enrollment: { tokens: [...opts.enrollmentTokens], rotateTo: opts.rotateTo, failStatus: null, requests: [] },
  faults: noFaults(),
  responders: new Map(), // command -> {ok, data?, error?} | {noReply:true}, optional delayMs
  frames: [], // {dir, type, data, conn, teamClusterId}
  conns: new Map(), // conn number -> {ws, cluster, framesIn}, open WebSockets
  connections: [], // Engine.IO connection history, see GET /admin/connections
  stats: { connectionsTotal: 0, framesIn: 0, framesOut: 0, protocolErrors: 0, commands: 0 },
  daemons: new Map(), // namespace socket id -> daemon record (connected ones only)
  received: new Map(), // teamClusterId -> {messages: [], commands: []}
  pending: new Map(), // reverse-command requestId -> pending entry
  frozen: new Set(), // Engine.IO sockets frozen by the stopPings fault
};

// The fault set; `PUT /admin/faults` replaces it whole, as in the mock server.
function noFaults() {
  return { refuseConnections: 0, rejectRegistration: null, stopPings: false, dropAfterFrames: null, dropOnCommand: null };
}

function receivedFor(clusterId) {
  let r = state.received.get(clusterId);
  if (!r) {
    r = { messages: [], commands: [] };
    state.received.set(clusterId, r);
  }
  return r;
}

function log(message) {
  if (process.env.REF_SERVER_DEBUG) process.stderr.write(`ref-server: ${message}\n`);
}

function protocolError(message) {
  state.stats.protocolErrors += 1;
  log(`protocol error: ${message}`);
}

// ---------------------------------------------------------------------------
// Raw frame capture.
//
// We hook the `ws` WebSocket itself, inside WebSocketServer#handleUpgrade,
// before engine.io sees it: that is the only place early enough to see the
// Engine.IO open packet (engine.io sends it from its Socket constructor, before
// any 'connection' event), and it gives the exact text/bytes of every frame.
// (engine.io can also send frames pre-encoded through ws' private
// `_sender.sendFrame`, but only for socket.io broadcasts, which this server
// never uses: it always emits on one socket.)

let connCounter = 0;
const kConn = Symbol('refServerConn');

function recordFrame(dir, data, isBinary, c) {
  const entry = { dir, type: isBinary ? 'binary' : 'text', data: null, conn: c.conn, teamClusterId: c.cluster };
  if (isBinary) {
    let buf;
    if (Buffer.isBuffer(data)) buf = data;
    else if (Array.isArray(data)) buf = Buffer.concat(data);
    else if (data instanceof ArrayBuffer) buf = Buffer.from(data);
    else buf = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
    entry.data = buf.toString('base64');
  } else {
    entry.data = data.toString();
  }
  state.frames.push(entry);
  if (dir === 'in') state.stats.framesIn += 1;
  else state.stats.framesOut += 1;
}

function instrument(ws) {
  // `cluster` is set once the connection registers (so, as in the mock
  // server, the registration frames themselves carry null).
  const c = { conn: ++connCounter, ws, cluster: null, framesIn: 0 };
  ws[kConn] = c;
  state.conns.set(c.conn, c);
  state.stats.connectionsTotal += 1;
  ws.once('close', () => state.conns.delete(c.conn));
  // Incoming messages go through here before engine.io's listener sees them,
  // so an incoming frame is logged before any frame sent because of it, and
  // the dropAfterFrames fault can cut the connection before the Nth frame is
  // processed.
  const emit = ws.emit;
  ws.emit = function (event, ...args) {
    if (event === 'message') {
      recordFrame('in', args[0], args[1], c);
      c.framesIn += 1;
      const limit = state.faults.dropAfterFrames;
      if (limit !== null && c.framesIn >= limit) {
        log(`connection ${c.conn}: dropAfterFrames fault`);
        ws.terminate();
        return false;
      }
    }
    return emit.call(this, event, ...args);
  };
  const send = ws.send;
  ws.send = function (data, options, cb) {
    recordFrame('out', data, typeof data !== 'string', c);
    return send.call(this, data, options, cb);
  };
}

class RecordingWsServer extends WsServer {
  handleUpgrade(req, socket, head, cb) {
    super.handleUpgrade(req, socket, head, (ws, request) => {
      instrument(ws);
      cb(ws, request);
    });
  }
}

// ---------------------------------------------------------------------------
// The socket.io server

const httpServer = http.createServer((req, res) => {
  handleHttp(req, res).catch((err) => {
    log(`admin error: ${err.stack}`);
    if (!res.headersSent) sendJson(res, 500, { message: String(err && err.message) });
  });
});

const io = new Server(httpServer, {
  transports: ['websocket'],
  pingInterval: opts.pingInterval,
  pingTimeout: opts.pingTimeout,
  maxHttpBufferSize: opts.maxPayload,
  serveClient: false,
  wsEngine: RecordingWsServer,
});

// Engine.IO level: connection history and the stopPings freeze.
io.engine.on('connection', (engineSocket) => {
  const ws = engineSocket.transport.socket;
  const entry = {
    conn: ws[kConn].conn,
    engineSid: engineSocket.id,
    openedAt: Date.now(),
    closedAt: null,
    closeReason: null,
  };
  state.connections.push(entry);
  engineSocket.on('close', (reason) => {
    entry.closedAt = Date.now();
    entry.closeReason = reason;
    state.frozen.delete(engineSocket);
    // `parse error`: an undecodable Engine.IO packet; `transport error`: e.g.
    // a ping sent by the client ("invalid heartbeat direction") or a frame
    // over maxPayload.
    if (reason === 'parse error' || reason === 'transport error') protocolError(`connection ${entry.conn}: ${reason}`);
  });
  // A connection opened while the server is "frozen" freezes right after its
  // open packet (which engine.io has already written by now).
  if (state.faults.stopPings) freeze(engineSocket);
});

// "Freezing" an Engine.IO connection makes the server look hung to the client:
// - the ping timers are cleared, so no more `2` goes out (and the server does
//   not time the client out either);
// - the TCP socket stops being read, so nothing the client sends (commands,
//   its `40`, its close frame) is processed and nothing is answered.
// The client then sees no ping for pingInterval + pingTimeout and gives up
// with `ping timeout`. Thawing resumes reading and restarts the ping loop;
// by then the client has usually closed, and the server now reads that close.
function freeze(engineSocket) {
  if (state.frozen.has(engineSocket) || engineSocket.readyState !== 'open') return;
  clearTimeout(engineSocket.pingIntervalTimer);
  clearTimeout(engineSocket.pingTimeoutTimer);
  engineSocket.pingTimeoutTimer = null;
  rawSocketOf(engineSocket).pause();
  state.frozen.add(engineSocket);
  log(`froze ${engineSocket.id}`);
}

function thaw(engineSocket) {
  state.frozen.delete(engineSocket);
  if (engineSocket.readyState !== 'open') return;
  rawSocketOf(engineSocket).resume();
  engineSocket.schedulePing();
  log(`thawed ${engineSocket.id}`);
}

function rawSocketOf(engineSocket) {
  return engineSocket.transport.socket._socket; // ws WebSocket -> net.Socket
}

function setStopPings(on) {
  state.faults.stopPings = on;
  if (on) {
    for (const engineSocket of Object.values(io.engine.clients)) freeze(engineSocket);
  } else {
    for (const engineSocket of [...state.frozen]) thaw(engineSocket);
  }
}

// The refuseConnections fault answers the next N WebSocket upgrades on the
// socket.io path with a 503, before engine.io sees them. engine.io put its own
// 'upgrade' listener on the HTTP server; we put ours in front of it.
const engineUpgradeListeners = httpServer.listeners('upgrade');
httpServer.removeAllListeners('upgrade');
httpServer.on('upgrade', (req, socket, head) => {
  if (state.faults.refuseConnections > 0 && req.url.startsWith('/socket.io/')) {
    state.faults.refuseConnections -= 1;
    const body = JSON.stringify({ code: 503, message: 'connection refused (refuseConnections fault)' });
    socket.end('HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n' +
      `Content-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`);
    return;
  }
  for (const listener of engineUpgradeListeners) listener.call(httpServer, req, socket, head);
});

// --max-connections-per-ip: counted over all TCP connections (admin HTTP
// included), refused by closing the socket at once, as the mock server does.
const perIp = new Map();
httpServer.on('connection', (socket) => {
  const ip = socket.remoteAddress;
  const count = perIp.get(ip) || 0;
  if (count >= opts.maxConnectionsPerIp) {
    log(`refusing ${ip}: connection cap per IP reached`);
    socket.destroy();
    return;
  }
  perIp.set(ip, count + 1);
  socket.once('close', () => {
    const left = perIp.get(ip) - 1;
    if (left > 0) perIp.set(ip, left);
    else perIp.delete(ip);
  });
});

const nsp = io.of('/daemon');

// Registration: the CONNECT packet's payload is `socket.handshake.auth`.
// Rejecting with an Error makes socket.io answer
// `44/daemon,{"message":err.message,"data":err.data}` (`data` left out when
// undefined).
nsp.use((socket, next) => next(checkRegistration(socket.handshake.auth)));

function registrationError(message, code) {
  const err = new Error(message);
  if (code !== undefined) err.data = { code };
  return err;
}

function checkRegistration(auth) {
  const fault = state.faults.rejectRegistration;
  if (fault) {
    // As in the mock server, `data` is left out when the fault has no code
    // (`noData: true` is accepted too, and wins over a code).
    const err = new Error(typeof fault.message === 'string' ? fault.message : 'registration rejected');
    if (typeof fault.code === 'string' && !fault.noData) err.data = { code: fault.code };
    return err;
  }
  // Shape problems are reported with their own code so that a client sending
  // a malformed registration is told exactly what is wrong.
  if (!auth || typeof auth !== 'object') return registrationError('invalid registration: no auth object', 'INVALID_REGISTRATION');
  for (const field of ['teamClusterId', 'daemonPassword', 'client']) {
    if (typeof auth[field] !== 'string') {
      return registrationError(`invalid registration: ${field} must be a string`, 'INVALID_REGISTRATION');
    }
  }
  if (!(typeof auth.installedVersion === 'string' || auth.installedVersion == null)) {
    return registrationError('invalid registration: installedVersion must be a string or null', 'INVALID_REGISTRATION');
  }
  if (state.clusters.get(auth.teamClusterId) !== auth.daemonPassword) {
    return registrationError('invalid credentials', 'INVALID_CREDENTIALS');
  }
  return undefined;
}

nsp.on('connection', (socket) => {
  const auth = socket.handshake.auth;
  const record = {
    teamClusterId: auth.teamClusterId,
    sid: socket.id,
    installedVersion: auth.installedVersion === undefined ? null : auth.installedVersion,
    client: auth.client,
    connectedAt: Date.now(),
    heartbeats: 0,
    lastHeartbeat: null,
    lastHeartbeatAt: null,
    socket,
    conn: socket.conn.transport.socket[kConn], // our per-WebSocket record
  };
  state.daemons.set(socket.id, record);
  record.conn.cluster = record.teamClusterId;
  log(`daemon ${record.teamClusterId} connected as ${socket.id}`);

  socket.on('command', (envelope) => onDaemonCommand(record, envelope));
  socket.on('message', (message) => {
    if (!isObject(message) || typeof message.type !== 'string') {
      protocolError(`message without a string type: ${JSON.stringify(message)}`);
      return;
    }
    receivedFor(record.teamClusterId).messages.push(message);
  });
  socket.on('reverse-response', (response) => onReverseResponse(record, response));
  socket.on('reverse-stream', (chunk) => onReverseStream(record, chunk));
  socket.on('reverse-stream-end', (end) => onReverseStreamEnd(record, end));
  socket.onAny((event) => {
    if (!DAEMON_EVENTS.has(event)) protocolError(`unexpected event ${JSON.stringify(event)} from a daemon`);
  });
  socket.on('disconnect', (reason) => {
    log(`daemon ${record.teamClusterId} (${socket.id}) disconnected: ${reason}`);
    state.daemons.delete(socket.id);
    record.conn.cluster = null;
    for (const [requestId, p] of state.pending) {
      if (p.record === record) finishPending(requestId, 502, { message: `daemon disconnected (${reason})` });
    }
  });
});

// ---------------------------------------------------------------------------
// Daemon -> server commands

function builtinResponse(command, envelope) {
  if (command === 'runtime.heartbeat') return { ok: true };
  if (command === 'echo') return envelope.payload === undefined ? { ok: true } : { ok: true, data: envelope.payload };
  return { ok: false, error: { code: 'UNKNOWN_COMMAND', message: `unknown command ${command}` } };
}

const DAEMON_EVENTS = new Set(['command', 'message', 'reverse-response', 'reverse-stream', 'reverse-stream-end']);

function onDaemonCommand(record, envelope) {
  if (!isObject(envelope) || typeof envelope.requestId !== 'string' || typeof envelope.command !== 'string') {
    protocolError(`malformed command envelope: ${JSON.stringify(envelope)}`);
    return;
  }
  state.stats.commands += 1;
  receivedFor(record.teamClusterId).commands.push(envelope);
  const { requestId, command } = envelope;
  if (command === 'runtime.heartbeat') {
    record.heartbeats += 1;
    record.lastHeartbeat = envelope.payload === undefined ? null : envelope.payload;
    record.lastHeartbeatAt = Date.now();
  }
  if (state.faults.dropOnCommand === command) {
    log(`dropOnCommand fault: cutting ${record.teamClusterId} on ${command}`);
    record.conn.ws.terminate();
    return;
  }
  const spec = state.responders.get(command) || builtinResponse(command, envelope);
  if (spec.noReply) return;
  // Key order as a real VOLT server writes it: requestId, ok, data | error.
  const reply = { requestId, ok: spec.ok };
  if (spec.ok) {
    if (spec.data !== undefined) reply.data = spec.data;
  } else {
    reply.error = spec.error;
  }
  const emit = () => record.socket.emit('command-response', reply);
  if (spec.delayMs > 0) setTimeout(emit, spec.delayMs);
  else emit();
}

// ---------------------------------------------------------------------------
// Server -> daemon reverse commands

function newestDaemon(clusterId) {
  let newest = null;
  for (const record of state.daemons.values()) {
    if (record.teamClusterId === clusterId && (!newest || record.connectedAt >= newest.connectedAt)) newest = record;
  }
  return newest;
}

function daemonsOf(clusterId) {
  return [...state.daemons.values()].filter((r) => r.teamClusterId === clusterId);
}

// Resolves to [httpStatus, jsonBody].
function sendReverseCommand(record, command, payload, timeoutMs) {
  return new Promise((resolve) => {
    const requestId = crypto.randomUUID();
    const envelope = { requestId, command };
    if (payload !== undefined) envelope.payload = payload;
    const timer = setTimeout(
      () => finishPending(requestId, 504, { message: `no reverse-response for ${command} within ${timeoutMs} ms` }),
      timeoutMs,
    );
    state.pending.set(requestId, { record, resolve, timer, response: null, chunks: [], end: null });
    record.socket.emit('reverse-command', envelope);
  });
}

function finishPending(requestId, status, body) {
  const p = state.pending.get(requestId);
  if (!p) return;
  state.pending.delete(requestId);
  clearTimeout(p.timer);
  p.resolve([status, body]);
}

function pendingFor(record, requestId) {
  const p = typeof requestId === 'string' ? state.pending.get(requestId) : undefined;
  return p && p.record === record ? p : undefined;
}

function onReverseResponse(record, response) {
  const p = pendingFor(record, response && response.requestId);
  if (!p) return protocolError(`stray reverse-response: ${JSON.stringify(response)}`);
  if (p.response) return protocolError(`second reverse-response for ${response.requestId}`);
  p.response = response;
  maybeFinishReverse(response.requestId, p);
}

function onReverseStream(record, chunk) {
  const p = pendingFor(record, chunk && chunk.requestId);
  if (!p || p.end) return protocolError('stray reverse-stream chunk');
  p.chunks.push(chunk);
}

function onReverseStreamEnd(record, end) {
  const p = pendingFor(record, end && end.requestId);
  if (!p || p.end) return protocolError(`stray reverse-stream-end: ${JSON.stringify(end)}`);
  p.end = end;
  maybeFinishReverse(end.requestId, p);
}

function typeName(value) {
  if (Buffer.isBuffer(value)) return 'Buffer';
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'array';
  return typeof value;
}

function maybeFinishReverse(requestId, p) {
  const r = p.response;
  if (!r) return; // a stream end that overtook its response: wait for it
  const streaming = r.stream === true;
  if (streaming && !p.end) return;
  const out = { requestId: r.requestId, command: r.command, status: r.status, headers: r.headers };
  if ('data' in r) out.data = r.data;
  if ('body' in r) {
    out.bodyWasBuffer = Buffer.isBuffer(r.body);
    if (out.bodyWasBuffer) out.bodyBase64 = r.body.toString('base64');
    else out.body = r.body; // whatever arrived instead of an attachment
  }
  if (streaming) {
    out.stream = true;
    out.streamBase64 = Buffer.concat(p.chunks.map((c) => c.chunk).filter(Buffer.isBuffer)).toString('base64');
    out.chunks = p.end.chunks;
    out.chunkTypes = p.chunks.map((c) => typeName(c.chunk));
    out.seqs = p.chunks.map((c) => c.seq);
  }
  const error = r.error !== undefined ? r.error : p.end ? p.end.error : undefined;
  if (error !== undefined) out.error = error;
  finishPending(requestId, 200, out);
}

// ---------------------------------------------------------------------------
// Admin HTTP API

function sendJson(res, status, body) {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text) });
  res.end(text);
}

class HttpError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

const MAX_ADMIN_BODY = 64 * 1024 * 1024;

function readBody(req) {
  return new Promise((resolve, reject) => {
    const parts = [];
    let size = 0;
    req.on('data', (chunk) => {
      size += chunk.length;
      if (size > MAX_ADMIN_BODY) {
        reject(new HttpError(413, 'request body too large'));
        req.destroy();
        return;
      }
      parts.push(chunk);
    });
    req.on('end', () => resolve(Buffer.concat(parts).toString('utf8')));
    req.on('error', reject);
  });
}

// The parsed JSON body, or undefined for an empty body. Bad JSON is a 400.
async function jsonBody(req) {
  const text = await readBody(req);
  if (text.trim() === '') return undefined;
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new HttpError(400, `invalid JSON body: ${err.message}`);
  }
}

async function objectBody(req) {
  const body = await jsonBody(req);
  if (!isObject(body)) throw new HttpError(400, 'the body must be a JSON object');
  return body;
}

function isObject(v) {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

function publicDaemon(r) {
  return {
    teamClusterId: r.teamClusterId,
    sid: r.sid,
    installedVersion: r.installedVersion,
    client: r.client,
    connectedAt: r.connectedAt,
    heartbeats: r.heartbeats,
    lastHeartbeat: r.lastHeartbeat,
    lastHeartbeatAt: r.lastHeartbeatAt,
  };
}

function rejectUnknownKeys(obj, allowed, what) {
  for (const key of Object.keys(obj)) {
    if (!allowed.includes(key)) throw new HttpError(400, `unknown ${what} field ${JSON.stringify(key)}`);
  }
}

const isCount = (v) => Number.isSafeInteger(v) && v >= 0;

// Same rules as the mock server's Responder::from_json.
function validateResponder(spec) {
  if (!isObject(spec)) throw new HttpError(400, 'a responder must be a JSON object');
  rejectUnknownKeys(spec, ['ok', 'data', 'error', 'noReply', 'delayMs'], 'responder');
  const delayMs = spec.delayMs == null ? undefined : spec.delayMs;
  if (delayMs !== undefined && !isCount(delayMs)) throw new HttpError(400, 'delayMs must be a non-negative integer');
  if (spec.noReply !== undefined && typeof spec.noReply !== 'boolean') throw new HttpError(400, 'noReply must be a boolean');
  if (spec.noReply === true) return { noReply: true };
  if (spec.ok === true) {
    const out = { ok: true, delayMs };
    if ('data' in spec) out.data = spec.data;
    return out;
  }
  if (spec.ok === false) {
    const e = spec.error;
    if (!isObject(e)) throw new HttpError(400, 'ok:false needs an error object {code, message}');
    for (const k of ['code', 'message']) {
      if (e[k] !== undefined && typeof e[k] !== 'string') throw new HttpError(400, `bad error object: ${k} must be a string`);
    }
    return { ok: false, error: { code: e.code || '', message: e.message || '' }, delayMs };
  }
  throw new HttpError(400, 'a responder needs "ok": true|false or "noReply": true');
}

// PUT /admin/faults: the whole new fault set (absent fields take their
// defaults), with the mock server's field names and rules.
function validateFaults(body) {
  rejectUnknownKeys(body, ['refuseConnections', 'rejectRegistration', 'stopPings', 'dropAfterFrames', 'dropOnCommand'], 'faults');
  const f = noFaults();
  const bad = (m) => new HttpError(400, `bad faults: ${m}`);
  if (body.refuseConnections !== undefined) {
    if (!isCount(body.refuseConnections)) throw bad('refuseConnections must be a non-negative integer');
    f.refuseConnections = body.refuseConnections;
  }
  if (body.rejectRegistration != null) {
    const r = body.rejectRegistration;
    if (!isObject(r)) throw bad('rejectRegistration must be an object or null');
    rejectUnknownKeys(r, ['code', 'message', 'noData'], 'rejectRegistration');
    if (r.code != null && typeof r.code !== 'string') throw bad('rejectRegistration.code must be a string');
    if (r.message != null && typeof r.message !== 'string') throw bad('rejectRegistration.message must be a string');
    if (r.noData !== undefined && typeof r.noData !== 'boolean') throw bad('rejectRegistration.noData must be a boolean');
    f.rejectRegistration = { code: r.code == null ? null : r.code, message: r.message == null ? null : r.message };
    if (r.noData) f.rejectRegistration.noData = true;
  }
  if (body.stopPings !== undefined) {
    if (typeof body.stopPings !== 'boolean') throw bad('stopPings must be a boolean');
    f.stopPings = body.stopPings;
  }
  if (body.dropAfterFrames != null) {
    if (!isCount(body.dropAfterFrames)) throw bad('dropAfterFrames must be a non-negative integer or null');
    f.dropAfterFrames = body.dropAfterFrames;
  }
  if (body.dropOnCommand != null) {
    if (typeof body.dropOnCommand !== 'string') throw bad('dropOnCommand must be a string or null');
    f.dropOnCommand = body.dropOnCommand;
  }
  return f;
}

function setFaults(f) {
  const { stopPings, ...rest } = f;
  Object.assign(state.faults, rest);
  setStopPings(stopPings);
}

function rawFrame(body) {
  const hasText = 'text' in body;
  const hasBinary = 'binaryBase64' in body;
  if (hasText && !hasBinary && typeof body.text === 'string') return body.text;
  if (hasBinary && !hasText && typeof body.binaryBase64 === 'string') {
    if (!/^[A-Za-z0-9+/]*={0,2}$/.test(body.binaryBase64) || body.binaryBase64.length % 4 !== 0) {
      throw new HttpError(400, 'bad binaryBase64');
    }
    return Buffer.from(body.binaryBase64, 'base64');
  }
  throw new HttpError(400, 'give exactly one of "text" or "binaryBase64" (strings)');
}

// Routes: [method, regexp, handler(req, res, ...captures)]
const routes = [
  ['POST', /^\/api\/team-clusters\/([^/]+)\/healthcheck$/, enroll],

  ['GET', /^\/admin\/daemons$/, (req, res) => {
    const list = [...state.daemons.values()].sort((a, b) => a.connectedAt - b.connectedAt).map(publicDaemon);
    sendJson(res, 200, list);
  }],

  ['POST', /^\/admin\/daemons\/([^/]+)\/commands$/, async (req, res, id) => {
    const body = await objectBody(req);
    if (typeof body.command !== 'string') throw new HttpError(400, 'command must be a string');
    const timeoutMs = body.timeoutMs == null ? 10000 : body.timeoutMs;
    if (!(Number.isSafeInteger(timeoutMs) && timeoutMs > 0)) throw new HttpError(400, 'timeoutMs must be a positive integer');
    const record = newestDaemon(id);
    if (!record) throw new HttpError(404, `daemon ${id} is not connected`);
    const [status, result] = await sendReverseCommand(record, body.command, body.payload, timeoutMs);
    sendJson(res, status, result);
  }],
  ['GET', /^\/admin\/daemons\/([^/]+)\/commands$/, (req, res, id) => {
    sendJson(res, 200, receivedFor(id).commands);
  }],

  ['POST', /^\/admin\/daemons\/([^/]+)\/messages$/, async (req, res, id) => {
    const message = await jsonBody(req);
    if (message === undefined) throw new HttpError(400, 'the body must be the message');
    const record = newestDaemon(id);
    if (!record) throw new HttpError(404, `daemon ${id} is not connected`);
    record.socket.emit('message', message);
    sendJson(res, 202, {});
  }],
  ['GET', /^\/admin\/daemons\/([^/]+)\/messages$/, (req, res, id) => {
    sendJson(res, 200, receivedFor(id).messages);
  }],

  // Kick: socket.disconnect(false) writes `41/daemon,` and nothing else; the
  // Engine.IO connection stays open until the client closes it (which
  // socket.io-client does once its last namespace is gone).
  // (disconnect(true) would also close the WebSocket right away.)
  ['POST', /^\/admin\/daemons\/([^/]+)\/kick$/, (req, res, id) => {
    const records = daemonsOf(id);
    if (records.length === 0) throw new HttpError(404, `daemon ${id} is not connected`);
    for (const r of records) r.socket.disconnect(false);
    sendJson(res, 200, { kicked: records.length });
  }],
  // Drop: ws.terminate() destroys the TCP socket: no close frame, no `41`.
  ['POST', /^\/admin\/daemons\/([^/]+)\/drop$/, (req, res, id) => {
    const records = daemonsOf(id);
    if (records.length === 0) throw new HttpError(404, `daemon ${id} is not connected`);
    for (const r of records) r.socket.conn.transport.socket.terminate();
    sendJson(res, 200, { dropped: records.length });
  }],

  ['PUT', /^\/admin\/responders\/([^/]+)$/, async (req, res, command) => {
    state.responders.set(command, validateResponder(await jsonBody(req)));
    sendJson(res, 200, {});
  }],
  ['DELETE', /^\/admin\/responders\/([^/]+)$/, (req, res, command) => {
    state.responders.delete(command);
    sendJson(res, 200, {});
  }],

  // Sends one raw WebSocket frame to the newest connection of the cluster,
  // bypassing socket.io (for tests of how a daemon takes malformed input).
  ['POST', /^\/admin\/daemons\/([^/]+)\/raw$/, async (req, res, id) => {
    const frame = rawFrame(await objectBody(req));
    const record = newestDaemon(id);
    if (!record) throw new HttpError(404, `daemon ${id} is not connected`);
    record.conn.ws.send(frame);
    sendJson(res, 202, {});
  }],

  ['GET', /^\/admin\/faults$/, (req, res) => sendJson(res, 200, state.faults)],
  ['PUT', /^\/admin\/faults$/, async (req, res) => {
    setFaults(validateFaults(await objectBody(req)));
    sendJson(res, 200, state.faults);
  }],
  ['DELETE', /^\/admin\/faults$/, (req, res) => {
    setFaults(noFaults());
    sendJson(res, 200, state.faults);
  }],

  ['POST', /^\/admin\/clusters$/, async (req, res) => {
    const body = await objectBody(req);
    if (typeof body.teamClusterId !== 'string' || typeof body.daemonPassword !== 'string') {
      throw new HttpError(400, 'teamClusterId and daemonPassword must be strings');
    }
    state.clusters.set(body.teamClusterId, body.daemonPassword);
    sendJson(res, 201, { teamClusterId: body.teamClusterId });
  }],

  ['GET', /^\/admin\/enrollment$/, (req, res) => sendJson(res, 200, state.enrollment)],
  ['PUT', /^\/admin\/enrollment$/, async (req, res) => {
    const body = await objectBody(req);
    rejectUnknownKeys(body, ['tokens', 'rotateTo', 'failStatus'], 'enrollment');
    if ('tokens' in body) {
      if (!Array.isArray(body.tokens) || !body.tokens.every((t) => typeof t === 'string')) {
        throw new HttpError(400, 'tokens must be an array of strings');
      }
      state.enrollment.tokens = [...body.tokens];
    }
    if ('rotateTo' in body) {
      if (body.rotateTo !== null && typeof body.rotateTo !== 'string') throw new HttpError(400, 'rotateTo must be a string or null');
      state.enrollment.rotateTo = body.rotateTo;
    }
    if ('failStatus' in body) {
      if (body.failStatus !== null && !(Number.isInteger(body.failStatus) && body.failStatus >= 100 && body.failStatus <= 599)) {
        throw new HttpError(400, 'failStatus must be an HTTP status or null');
      }
      state.enrollment.failStatus = body.failStatus;
    }
    sendJson(res, 200, state.enrollment);
  }],

  ['GET', /^\/admin\/frames$/, (req, res) => sendJson(res, 200, state.frames)],
  ['DELETE', /^\/admin\/frames$/, (req, res) => {
    state.frames = [];
    sendJson(res, 200, {});
  }],
  ['GET', /^\/admin\/connections$/, (req, res) => sendJson(res, 200, state.connections)],
  ['GET', /^\/admin\/stats$/, (req, res) => sendJson(res, 200, { connections: state.conns.size, ...state.stats })],
];

// POST /api/team-clusters/<id>/healthcheck (contract §1).
async function enroll(req, res, id) {
  const auth = req.headers.authorization;
  const record = {
    teamClusterId: id,
    authorization: auth === undefined ? null : auth,
    contentType: req.headers['content-type'] === undefined ? null : req.headers['content-type'],
    accept: req.headers.accept === undefined ? null : req.headers.accept,
    body: null,
  };
  state.enrollment.requests.push(record);
  const text = await readBody(req);
  try {
    record.body = JSON.parse(text);
  } catch {
    record.body = text;
  }
  const e = state.enrollment;
  if (e.failStatus !== null) throw new HttpError(e.failStatus, 'enrollment failed (injected failure)');
  const match = /^Bearer (.+)$/.exec(auth || '');
  const tokenIndex = match ? e.tokens.indexOf(match[1]) : -1;
  if (tokenIndex < 0) throw new HttpError(401, 'invalid enrollment token');
  const body = record.body;
  if (!isObject(body)) throw new HttpError(400, 'the body must be a JSON object');
  if (body.teamClusterId !== id) throw new HttpError(400, 'teamClusterId does not match the URL');
  if (body.enrollmentToken !== match[1]) throw new HttpError(400, 'enrollmentToken does not match the bearer token');
  if (typeof body.daemonPassword !== 'string') throw new HttpError(400, 'daemonPassword must be a string');
  if (!(typeof body.installedVersion === 'string' || body.installedVersion === null)) {
    throw new HttpError(400, 'installedVersion must be a string or null');
  }
  e.tokens.splice(tokenIndex, 1); // one-time token
  const reply = { teamClusterId: id, enrolled: true };
  // The token is the credential: the cluster's password becomes the one the
  // daemon sent, or the rotated one when rotation is configured.
  if (e.rotateTo !== null) {
    state.clusters.set(id, e.rotateTo);
    reply.daemonPassword = e.rotateTo;
  } else {
    state.clusters.set(id, body.daemonPassword);
  }
  sendJson(res, 200, reply);
}

async function handleHttp(req, res) {
  const { pathname } = new URL(req.url, 'http://localhost');
  if (opts.adminToken !== null && (pathname === '/admin' || pathname.startsWith('/admin/'))
      && req.headers.authorization !== `Bearer ${opts.adminToken}`) {
    sendJson(res, 401, { message: 'the admin API needs Authorization: Bearer <admin token>' });
    return;
  }
  let pathMatched = false;
  for (const [method, re, handler] of routes) {
    const m = re.exec(pathname);
    if (!m) continue;
    pathMatched = true;
    if (method !== req.method) continue;
    try {
      await handler(req, res, ...m.slice(1).map(decodeURIComponent));
    } catch (err) {
      if (!(err instanceof HttpError)) throw err;
      sendJson(res, err.status, { message: err.message });
    }
    return;
  }
  if (pathMatched) sendJson(res, 405, { message: `${req.method} not allowed on ${pathname}` });
  else sendJson(res, 404, { message: `no route for ${req.method} ${pathname}` });
}

// ---------------------------------------------------------------------------
// Life cycle

let shuttingDown = false;
function shutdown() {
  if (shuttingDown) return;
  shuttingDown = true;
  // Close the connections and the listener, but never wait long for it.
  setTimeout(() => process.exit(0), 1000).unref();
  io.close(() => process.exit(0));
}

process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);
process.stdout.on('error', shutdown); // the reader of our stdout is gone
if (!opts.ignoreStdin) {
  process.stdin.on('end', shutdown);
  process.stdin.on('close', shutdown);
  process.stdin.on('error', shutdown);
  process.stdin.resume(); // we only read stdin to notice it closing
}

httpServer.listen(opts.port, opts.host, () => {
  const { address, port } = httpServer.address();
  const host = address.includes(':') ? `[${address}]` : address;
  process.stdout.write(`listening http://${host}:${port}\n`);
});
