#!/usr/bin/env node
// The volt-bench workload on Node socket.io-client 4.8.4 (pinned by
// package-lock.json), for benches/compare/run.sh:
//
//   node node-bench.js --url http://HOST:PORT --cluster ID --password PW
//        [--clients 4] [--in-flight 64] [--duration 10s] [--warmup 1s]
//        [--payload-bytes 64] [--server-pid PID] [--json]
//
// Each client (one socket, all on Node's one event loop) keeps --in-flight
// `echo` commands outstanding: a new one is emitted as each
// `command-response` arrives. Latency is per command, from emit to
// response; CPU is process.cpuUsage() over the measured window; RSS is the
// process's peak (resourceUsage().maxRSS). Prints the same JSON keys as
// `volt-bench --json`.
'use strict';

const crypto = require('crypto');
const fs = require('fs');
const { io } = require('socket.io-client');

function usage(message) {
  process.stderr.write(`node-bench: ${message}\n`);
  process.exit(2);
}

function seconds(v) {
  const m = /^([0-9.]+)(ms|s|m)?$/.exec(v);
  if (!m) usage(`bad duration ${v}`);
  const n = Number(m[1]);
  return m[2] === 'ms' ? n / 1000 : m[2] === 'm' ? n * 60 : n;
}

const opts = {
  url: null, cluster: null, password: null, clients: 4, inFlight: 64,
  duration: 10, warmup: 1, payloadBytes: 64, json: false, serverPid: null,
};
{
  const argv = process.argv.slice(2);
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i];
    if (flag === '--json') { opts.json = true; continue; }
    const value = argv[++i];
    if (value === undefined) usage(`${flag} needs a value`);
    switch (flag) {
      case '--url': opts.url = value; break;
      case '--cluster': opts.cluster = value; break;
      case '--password': opts.password = value; break;
      case '--clients': opts.clients = Number(value); break;
      case '--in-flight': opts.inFlight = Number(value); break;
      case '--duration': opts.duration = seconds(value); break;
      case '--warmup': opts.warmup = seconds(value); break;
      case '--payload-bytes': opts.payloadBytes = Number(value); break;
      case '--server-pid': opts.serverPid = Number(value); break;
      default: usage(`unknown argument ${flag}`);
    }
  }
  if (!opts.url || opts.cluster === null || opts.password === null) {
    usage('--url, --cluster and --password are required');
  }
}

const payload = { data: 'x'.repeat(opts.payloadBytes) };
let measuring = false;
let stopping = false;
let commands = 0;
let errors = 0;
let latencies = new Float64Array(1 << 20);
let nLat = 0;

function record(ns) {
  if (nLat === latencies.length) {
    const bigger = new Float64Array(latencies.length * 2);
    bigger.set(latencies);
    latencies = bigger;
  }
  latencies[nLat++] = ns;
}

function startClient() {
  return new Promise((resolve, reject) => {
    const socket = io(opts.url.replace(/\/+$/, '') + '/daemon', {
      transports: ['websocket'],
      auth: {
        teamClusterId: opts.cluster,
        daemonPassword: opts.password,
        installedVersion: null,
        client: 'node-bench/0.1.0',
      },
      reconnection: false,
      forceNew: true,
    });
    const pending = new Map();
    const send = () => {
      const requestId = crypto.randomUUID();
      pending.set(requestId, process.hrtime.bigint());
      socket.emit('command', { requestId, command: 'echo', payload });
    };
    socket.on('command-response', (r) => {
      const t0 = pending.get(r.requestId);
      if (t0 === undefined) return;
      pending.delete(r.requestId);
      if (!r.ok) errors++;
      else if (measuring) {
        record(Number(process.hrtime.bigint() - t0));
        commands++;
      }
      if (!stopping) send();
    });
    socket.once('connect', () => {
      for (let k = 0; k < opts.inFlight; k++) send();
      resolve({ socket, pending });
    });
    socket.once('connect_error', (e) => reject(e));
  });
}

// CPU seconds of another process (utime + stime, USER_HZ = 100).
function processCpuS(pid) {
  if (pid === null) return null;
  try {
    const text = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const rest = text.slice(text.lastIndexOf(')') + 2).split(' ');
    return (Number(rest[11]) + Number(rest[12])) / 100;
  } catch (e) {
    return null;
  }
}

function quantile(sorted, n, q) {
  if (n === 0) return NaN;
  return sorted[Math.min(n - 1, Math.ceil(q * n) - 1)];
}

async function main() {
  const clients = [];
  for (let i = 0; i < opts.clients; i++) clients.push(await startClient());
  await new Promise((r) => setTimeout(r, opts.warmup * 1000));
  const srv0 = processCpuS(opts.serverPid);
  const cpu0 = process.cpuUsage();
  const t0 = process.hrtime.bigint();
  measuring = true;
  await new Promise((r) => setTimeout(r, opts.duration * 1000));
  measuring = false;
  const elapsed = Number(process.hrtime.bigint() - t0) / 1e9;
  const cpu = process.cpuUsage(cpu0);
  const srv1 = processCpuS(opts.serverPid);
  const serverCpuS = srv0 === null || srv1 === null ? null : srv1 - srv0;
  stopping = true;
  const drainUntil = Date.now() + 2000;
  while (clients.some((c) => c.pending.size > 0) && Date.now() < drainUntil) {
    await new Promise((r) => setTimeout(r, 10));
  }
  for (const c of clients) c.socket.close();
  const sorted = latencies.subarray(0, nLat).sort();
  const us = (q) => quantile(sorted, nLat, q) / 1e3;
  let sum = 0;
  for (let i = 0; i < nLat; i++) sum += sorted[i];
  const cpuS = (cpu.user + cpu.system) / 1e6;
  const report = {
    client: 'socket.io-client/4.8.4',
    url: opts.url,
    clients: opts.clients,
    in_flight: opts.inFlight,
    payload_bytes: opts.payloadBytes,
    duration_s: opts.duration,
    commands,
    errors,
    elapsed_s: elapsed,
    throughput: commands / elapsed,
    p50_us: us(0.5),
    p90_us: us(0.9),
    p99_us: us(0.99),
    p999_us: us(0.999),
    max_us: nLat ? sorted[nLat - 1] / 1e3 : NaN,
    mean_us: nLat ? sum / nLat / 1e3 : NaN,
    client_cpu_s: cpuS,
    cpu_per_cmd_us: commands ? (cpuS * 1e6) / commands : NaN,
    server_cpu_s: serverCpuS,
    server_cpu_per_cmd_us: serverCpuS === null || !commands ? null : (serverCpuS * 1e6) / commands,
    peak_rss_kib: process.resourceUsage().maxRSS,
  };
  if (opts.json) {
    process.stdout.write(`${JSON.stringify(report)}\n`);
  } else {
    for (const [k, v] of Object.entries(report)) process.stdout.write(`${k.padEnd(16)} ${v}\n`);
  }
  process.exit(commands > 0 ? 0 : 1);
}

main().catch((e) => {
  process.stderr.write(`node-bench: ${e && e.message ? e.message : e}\n`);
  process.exit(1);
});
