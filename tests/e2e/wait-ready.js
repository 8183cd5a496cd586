// Waits until the daemon reports ready (GET /readyz -> 200: every socket bound, every source
// running), serves the viewer page (GET / -> 200) and upgrades /ws/{id} to a WebSocket (101).
// Usage: node wait-ready.js http://HOST:PORT/ TIMEOUT_MS
'use strict';
const http = require('http');
const crypto = require('crypto');

const base = new URL(process.argv[2]);
const deadline = Date.now() + Number(process.argv[3] || 15000);

function ready() {
  return new Promise((resolve) => {
    const req = http.get(new URL('/readyz', base), { timeout: 2000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d) => { body += d; });
      res.on('end', () => resolve(res.statusCode === 200 ? 'ok'
        : `GET /readyz -> HTTP ${res.statusCode}: ${body.trim()}`));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', (e) => resolve(`GET /readyz -> ${e.code || e.message}`));
  });
}

function get() {
  return new Promise((resolve) => {
    const req = http.get(base, { timeout: 2000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d) => { body += d; });
      res.on('end', () => resolve(res.statusCode === 200 && body.includes('RTCPeerConnection')
        ? 'ok' : `GET / -> HTTP ${res.statusCode}, ${body.length} bytes`));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', (e) => resolve(`GET / -> ${e.code || e.message}`));
  });
}

function upgrade() {
  return new Promise((resolve) => {
    const req = http.request(new URL('/ws/e2e-ready-probe', base), {
      timeout: 2000,
      headers: {
        Connection: 'Upgrade', Upgrade: 'websocket', 'Sec-WebSocket-Version': '13',
        'Sec-WebSocket-Key': crypto.randomBytes(16).toString('base64'),
      },
    });
    req.on('upgrade', (res, socket) => {
      // A masked, empty close frame: leave politely instead of resetting the connection.
      socket.end(Buffer.from([0x88, 0x80, 0, 0, 0, 0]));
      setTimeout(() => socket.destroy(), 200);
      resolve('ok');
    });
    req.on('response', (res) => { res.resume(); resolve(`GET /ws/ -> HTTP ${res.statusCode}, no upgrade`); });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', (e) => resolve(`GET /ws/ -> ${e.code || e.message}`));
    req.end();
  });
}

(async () => {
  let last = '';
  while (Date.now() < deadline) {
    last = await ready();
    if (last === 'ok') last = await get();
    if (last === 'ok') last = await upgrade();
    if (last === 'ok') { console.log(`daemon ready at ${base.href}`); return; }
    await new Promise((r) => setTimeout(r, 250));
  }
  console.log(`daemon not ready at ${base.href}: ${last}`);
  process.exit(1);
})();
