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
out.push(`Medians of ${rounds} round(s); ratio = ours / Node socket.io-client 4.8.4 (and ours / raw TCP ping-pong for latency).`);
out.push('');
out.push('| workload | metric | ours (volt-daemon-client) | Node socket.io-client | ours / Node | raw TCP ping-pong | ours / TCP |');
out.push('| --- | --- | ---: | ---: | ---: | ---: | ---: |');
for (const w of workloads) {
  const hasTcp = rows.some((r) => r.workload === w && r.impl === 'tcp');
  const shown = w.startsWith('rss') ? metrics.filter((m) => m[1] === 'peak_rss_kib' || m[1] === 'throughput') : metrics;
  for (const [label, key, digits, scale] of shown) {
    const a = get(w, 'ours', key) * scale;
    const b = get(w, 'node', key) * scale;
    const t = hasTcp && !key.startsWith('server') ? get(w, 'tcp', key) * scale : NaN;
    out.push(`| ${w} | ${label} | ${fmt(a, digits)} | ${fmt(b, digits)} | ${ratio(a, b)} | ${fmt(t, digits)} | ${Number.isFinite(t) ? ratio(a, t) : '—'} |`);
  }
}
process.stdout.write(out.join('\n') + '\n');
