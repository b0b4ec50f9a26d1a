#!/usr/bin/env node
// Medians and ratios from run.sh's results.jsonl, as a Markdown table.
'use strict';
const fs = require('fs');

const rows = fs.readFileSync(process.argv[2], 'utf8').trim().split('\n').map((l) => JSON.parse(l));
const median = (xs) => {
  const s = xs.filter((x) => typeof x === 'number' && Number.isFinite(x)).sort((a, b) => a - b);
  if (!s.length) return NaN;
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};
const get = (w, impl, key) => median(rows.filter((r) => r.workload === w && r.impl === impl).map((r) => r[key]));
const fmt = (x, d = 1) => (Number.isFinite(x) ? x.toFixed(d) : '—');
const ratio = (a, b) => (Number.isFinite(a) && Number.isFinite(b) && b !== 0 ? `${(a / b).toFixed(2)}×` : '—');

const metrics = [
  ['throughput (commands/s)', 'throughput', 0, 1],
  ['p50 latency (µs)', 'p50_us', 1, 1],
  ['p99 latency (µs)', 'p99_us', 1, 1],
  ['client CPU per command (µs)', 'cpu_per_cmd_us', 2, 1],
  ['server CPU per command (µs)', 'server_cpu_per_cmd_us', 2, 1],
  ['peak RSS (MiB)', 'peak_rss_kib', 1, 1 / 1024],
];
const workloads = [...new Set(rows.map((r) => r.workload))];
const rounds = Math.max(...rows.map((r) => r.round));
const out = [];
out.push(`Medians of ${rounds} round(s); ratio = ours / Node socket.io-client 4.8.4, ours / rust_socketio 0.6 (sync ClientBuilder, websocket transport) (and ours / raw TCP ping-pong for latency).`);
out.push('');
out.push('| workload | metric | ours (volt-daemon-client) | Node socket.io-client | ours / Node | rust_socketio 0.6 | ours / rust_socketio | raw TCP ping-pong | ours / TCP |');
out.push('| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |');
for (const w of workloads) {
  const hasTcp = rows.some((r) => r.workload === w && r.impl === 'tcp');
  const only = (...keys) => metrics.filter((m) => keys.includes(m[1]));
  const shown = w.startsWith('rss') ? only('peak_rss_kib', 'throughput') : w.includes('interleaved') ? only('p50_us', 'p99_us') : metrics;
  for (const [label, key, digits, scale] of shown) {
    const a = get(w, 'ours', key) * scale;
    const b = get(w, 'node', key) * scale;
    const c = get(w, 'rust_socketio', key) * scale;
    const t = hasTcp && !key.startsWith('server') ? get(w, 'tcp', key) * scale : NaN;
    out.push(`| ${w} | ${label} | ${fmt(a, digits)} | ${fmt(b, digits)} | ${ratio(a, b)} | ${fmt(c, digits)} | ${ratio(a, c)} | ${fmt(t, digits)} | ${Number.isFinite(t) ? ratio(a, t) : '—'} |`);
  }
}
process.stdout.write(out.join('\n') + '\n');

// The same ratios round by round: each round's median against the peer's
// median in that round. This machine drifts between a fast and a slow
// state, so a ratio of overall medians can pair runs made in different
// states; the median of per-round ratios cannot.
const perRound = (w, key, peer) => {
  const ratios = [];
  for (let r = 1; r <= rounds; r++) {
    const at = (impl) => median(rows.filter((x) => x.workload === w && x.impl === impl && x.round === r).map((x) => x[key]));
    const a = at('ours');
    const b = at(peer);
    if (Number.isFinite(a) && Number.isFinite(b) && b !== 0) ratios.push(a / b);
  }
  return ratios;
};
const checks = [
  [(w) => w.startsWith('throughput '), 'throughput', 'node', 'throughput, ours / Node'],
  [(w) => w.startsWith('throughput '), 'cpu_per_cmd_us', 'node', 'client CPU per command, ours / Node'],
  [(w) => w.startsWith('throughput '), 'throughput', 'rust_socketio', 'throughput, ours / rust_socketio'],
  [(w) => w.startsWith('throughput '), 'cpu_per_cmd_us', 'rust_socketio', 'client CPU per command, ours / rust_socketio'],
  [(w) => w.startsWith('latency ') && !w.includes('interleaved'), 'p50_us', 'node', 'p50, ours / Node'],
  [(w) => w.startsWith('latency ') && !w.includes('interleaved'), 'p50_us', 'rust_socketio', 'p50, ours / rust_socketio'],
  [(w) => w.startsWith('latency '), 'p50_us', 'tcp', 'p50, ours / raw TCP'],
];
const byRound = ['', "Round by round (each round's median over its slices):", '', '| workload | ratio | per round | median |', '| --- | --- | --- | ---: |'];
for (const [matches, key, peer, label] of checks) {
  for (const w of workloads.filter(matches)) {
    const rs = perRound(w, key, peer);
    if (rs.length) byRound.push(`| ${w} | ${label} | ${rs.map((x) => x.toFixed(2)).join(', ')} | ${median(rs).toFixed(2)}× |`);
  }
}
process.stdout.write(byRound.join('\n') + '\n');

// STATS_AB: the cost of the client's counters, ours / ours-stats-off,
// from each round's pair (run back to back, in alternating order).
const statsCost = ['', 'The cost of `stats()`: ours / ours built with `--cfg volt_stats_off` (nothing counted), each round\'s pair run back to back:', '', '| workload | metric | per round | median | overall medians, with / without |', '| --- | --- | --- | ---: | ---: |'];
for (const w of workloads.filter((x) => rows.some((r) => r.workload === x && r.impl === 'ours-stats-off'))) {
  for (const [label, key] of [['throughput', 'throughput'], ['client CPU per command', 'cpu_per_cmd_us'], ['p50', 'p50_us']]) {
    const rs = perRound(w, key, 'ours-stats-off');
    const a = get(w, 'ours', key);
    const b = get(w, 'ours-stats-off', key);
    statsCost.push(`| ${w} | ${label} | ${rs.map((x) => x.toFixed(3)).join(', ')} | ${median(rs).toFixed(3)}× | ${fmt(a, 2)} / ${fmt(b, 2)} |`);
  }
}
if (statsCost.length > 5) process.stdout.write(statsCost.join('\n') + '\n');
process.stdout.write([
  '',
  'rust_socketio peer: its sync client runs a current-thread tokio runtime per socket underneath (its CPU counts as the client\'s);',
  'the window is kept full by emitting the next command from the `command-response` callback on the client\'s polling thread;',
  'commands are correlated by requestId as in the protocol (no acks). Interleaved rows have no peers.',
].join('\n') + '\n');
