#!/usr/bin/env node
// A real HTTP proxy for the Rust proxy tests: the npm package `proxy`
// (pinned in package.json), which tunnels CONNECT and checks basic
// credentials through its `authenticate` hook.
//
//   node proxy-server.mjs [--port N] [--auth USER:PASSWORD]
//
// Listens on 127.0.0.1 (port 0: an ephemeral one). The first line on stdout
// is `listening PORT`; then one line per request the proxy sees:
// `CONNECT host:port allowed` or `CONNECT host:port denied` (a 407).
// Exits on SIGTERM, SIGINT, and when stdin closes, so a test process that
// dies never leaks it. Never prints the credentials.
import http from 'node:http';
import { createProxy } from 'proxy';

const args = process.argv.slice(2);
const flag = (name) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
};
const port = Number(flag('--port') ?? 0);
const auth = flag('--auth');
const expected = auth === undefined ? undefined : 'Basic ' + Buffer.from(auth).toString('base64');

const server = createProxy(http.createServer());
server.authenticate = (req) => {
  const ok = expected === undefined || req.headers['proxy-authorization'] === expected;
  console.log(`${req.method} ${req.url} ${ok ? 'allowed' : 'denied'}`);
  return ok;
};
server.on('error', (e) => {
  console.error(`proxy-server: ${e.message}`);
  process.exit(1);
});
server.listen(port, '127.0.0.1', () => {
  console.log(`listening ${server.address().port}`);
});

const stop = () => process.exit(0);
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
process.stdin.on('end', stop);
process.stdin.on('error', stop);
process.stdin.resume();
