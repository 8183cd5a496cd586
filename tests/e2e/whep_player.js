// A WHEP viewer built from an existing npm WHEP client, not from portcast's own page: headless
// Chromium (Debian's, driven by playwright-core) loads a page from a tiny static server on
// 127.0.0.1:<ephemeral port>, whose script imports the client as shipped in node_modules and
// plays the daemon's WHEP endpoint into a <video>. The page's origin differs from the
// daemon's, so every non-simple request (POST application/sdp, PATCH, DELETE) is preflighted:
// the run also proves the endpoint's CORS answers.
//
//     node tests/e2e/whep_player.js http://127.0.0.1:19400/whep/test-pattern [--frames 60] [--timeout 20]
//          [--client whip-whep|eyevinn] [--token T]
//
// whip-whep (medooze, by a WHEP draft author) is the default: its whep.js is an ES module
// loaded verbatim; it trickles candidates with PATCH (405 tolerated) and its stop() closes the
// pc BEFORE sending DELETE (so the daemon has usually ended the session already, as peer_closed,
// and answers that DELETE 200 "already ended"; `deleted` says the library sent it). eyevinn is
// @eyevinn/webrtc-player's WHEP adapter (non-trickle): its dist is CommonJS, so the page runs it
// through a few-line require() shim giving it the real `events` and stubs for its ad/WHPP
// dependencies, which its WHEP path never touches.
// stdout: one JSON line; stderr: progress. Exit 0 when >= N frames were decoded and the client
// sent DELETE, 1 otherwise, 2 when Chromium, playwright-core or the client module is missing.
// Token: --token T is sent as `Authorization: Bearer T` (the daemon wants ?session=ID in the URL,
// the id T was minted for). The WHEP host must be reachable as is (run this inside the
// namespace that reaches the daemon, e.g. the one the daemon runs in); for a
// loopback daemon Chromium needs the loopback flags and camera/mic permission, as in e2e.js.
'use strict';
const fs = require('fs');
const http = require('http');
const path = require('path');

const CHROMIUM = process.env.PORTCAST_E2E_CHROMIUM || '/usr/bin/chromium';
const usage = 'usage: whep_player.js WHEP_URL [--frames N] [--timeout S] [--client whip-whep|eyevinn] [--token T]';
const opts = { frames: 60, timeout: 20, client: 'whip-whep', token: '' };
let endpoint = null;
for (let i = 2; i < process.argv.length; i++) {
  const a = process.argv[i], m = /^--(frames|timeout|client|token)$/.exec(a);
  if (m && i + 1 < process.argv.length) opts[m[1]] = process.argv[++i];
  else if (!a.startsWith('--') && !endpoint) endpoint = a;
  else { console.error(usage); process.exit(2); }
}
opts.frames = Number(opts.frames); opts.timeout = Number(opts.timeout);
if (!endpoint || !/^https?:/.test(endpoint) || !(opts.frames >= 0) || !(opts.timeout > 0)) { console.error(usage); process.exit(2); }

const t0 = Date.now();
const log = (msg) => console.error(`[whep_player ${((Date.now() - t0) / 1000).toFixed(1)}s] ${msg}`);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const nm = (...p) => path.join(__dirname, 'node_modules', ...p);

// The npm `events` package eyevinn depends on (not Node's built-in), nested or hoisted.
function eventsJs() {
  try { return require.resolve('events/events.js', { paths: [nm('@eyevinn', 'webrtc-player')] }); } catch (_) { return nm('events', 'events.js'); }
}
// Each client: its npm name, and the files the page may load (URL path -> file).
const CLIENTS = {
  'whip-whep': { pkg: 'whip-whep', files: { '/lib/whep.js': nm('whip-whep', 'whep.js') } },
  eyevinn: { pkg: '@eyevinn/webrtc-player', files: {
    '/lib/webrtc-player.js': nm('@eyevinn', 'webrtc-player', 'dist', 'main.js'), '/lib/events.js': eventsJs() } },
};
const client = CLIENTS[opts.client];
if (!client) { console.error(usage); process.exit(2); }

const result = { client: opts.client, frames_decoded: 0, codec: null, width: null, height: null,
  audio_packets: 0, location: null, deleted: false, error: null };
let printed = false;
function finish(code) { if (!printed) { printed = true; process.stdout.write(`${JSON.stringify(result)}\n`); } process.exit(code); }

let chromium;
try { ({ chromium } = require('playwright-core')); } catch (e) {
  result.error = 'playwright-core missing: npm ci in tests/e2e'; log(result.error); finish(2);
}
try {
  result.client = `${client.pkg}@${JSON.parse(fs.readFileSync(nm(client.pkg, 'package.json'), 'utf8')).version}`;
  for (const f of Object.values(client.files)) fs.accessSync(f);
} catch (e) { result.error = `${client.pkg} missing: npm ci in tests/e2e (${e.message})`; log(result.error); finish(2); }
if (!fs.existsSync(CHROMIUM)) { result.error = `no Chromium at ${CHROMIUM}: apt-get install chromium`; log(result.error); finish(2); }

// The page. Both variants set window.whepStop (the library's own teardown, which should DELETE
// the session) and window.whepError. The client adds recvonly transceivers only in eyevinn's
// case; whip-whep leaves the pc to the caller, as its README's viewer does.
const PAGES = {
  'whip-whep': `const { WHEPClient } = await import('/lib/whep.js');
    const pc = new RTCPeerConnection();
    pc.addTransceiver('video', { direction: 'recvonly' });
    pc.addTransceiver('audio', { direction: 'recvonly' });
    pc.ontrack = (e) => attach(e.track);
    const whep = new WHEPClient();
    whep.view(pc, WHEP, TOKEN || undefined).catch((e) => { window.whepError = 'view: ' + e; });
    window.whepStop = () => whep.stop();`,
  eyevinn: `const mods = { '@eyevinn/csai-manager': {}, '@eyevinn/whpp-client': {} };
    async function load(url) { // CommonJS in a browser: the dist is parcel's CJS output
      const module = { exports: {} };
      new Function('module', 'exports', 'require', await (await fetch(url)).text())(module, module.exports, (n) => mods[n]);
      return module.exports;
    }
    mods.events = await load('/lib/events.js');
    const { WebRTCPlayer } = await load('/lib/webrtc-player.js');
    // iceServers: [] -- its default is Google's STUN server, which must not be contacted.
    const player = new WebRTCPlayer({ video, type: 'whep', iceServers: [], debug: true });
    for (const ev of ['initial-connection-failed', 'connect-error', 'peer-connection-failed'])
      player.on(ev, () => { window.whepError = window.whepError || 'player event ' + ev; });
    // Its adapter sends authKey as the whole Authorization value, hence the 'Bearer ' here.
    player.load(new URL(WHEP), TOKEN ? 'Bearer ' + TOKEN : undefined);
    window.whepStop = () => player.unload();`,
};
const html = `<!doctype html><meta charset="utf-8"><title>whep_player</title>
<video id="v" autoplay muted playsinline width="640" height="360"></video>
<script type="module">
  const params = new URLSearchParams(location.search), WHEP = params.get('whep'), TOKEN = params.get('token');
  const video = document.getElementById('v');
  window.whepError = null;
  function attach(track) { // a stream even if the answer has no a=msid
    if (!video.srcObject) video.srcObject = new MediaStream();
    video.srcObject.addTrack(track);
  }
  try {
${PAGES[opts.client]}
  } catch (e) { window.whepError = 'page: ' + e; }
</script>`;

// Static server for the page and the library files, nothing else.
const server = http.createServer((req, res) => {
  const p = new URL(req.url, 'http://x').pathname;
  if (p === '/') { res.writeHead(200, { 'Content-Type': 'text/html' }); return res.end(html); }
  if (p === '/favicon.ico') { res.writeHead(204); return res.end(); }
  const file = client.files[p];
  if (!file) { res.writeHead(404); return res.end(); }
  res.writeHead(200, { 'Content-Type': 'text/javascript' }); // module scripts need a JS type
  fs.createReadStream(file).pipe(res);
});

// Wraps RTCPeerConnection so the test can read getStats() whatever the library hides.
const INIT = () => {
  const Orig = window.RTCPeerConnection; window.__pcs = [];
  window.RTCPeerConnection = class extends Orig { constructor(...a) { super(...a); window.__pcs.push(this); } };
};
// The last pc's inbound video/audio stats, read in the page.
const STATS = async () => {
  const pc = window.__pcs[window.__pcs.length - 1];
  const out = { frames: 0, codec: null, width: null, height: null, audio: 0, state: pc ? pc.connectionState : 'no pc', error: window.whepError };
  if (!pc || pc.connectionState === 'closed') return out;
  const codecs = {}, inb = {};
  (await pc.getStats()).forEach((s) => { if (s.type === 'codec') codecs[s.id] = s.mimeType; if (s.type === 'inbound-rtp') inb[s.kind] = s; });
  const v = inb.video, el = document.getElementById('v');
  if (v) Object.assign(out, { frames: v.framesDecoded || 0, codec: codecs[v.codecId] || null,
    width: el.videoWidth || v.frameWidth || null, height: el.videoHeight || v.frameHeight || null });
  if (inb.audio) out.audio = inb.audio.packetsReceived || 0;
  return out;
};

const whepHost = new URL(endpoint).hostname.replace(/^\[|\]$/g, '');
const loopback = /^(127\.|localhost$|::1$)/.test(whepHost);
const ARGS = ['--headless=new', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
  '--autoplay-policy=no-user-gesture-required',
  `--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE ${whepHost}, EXCLUDE 127.0.0.1`]; // resolve nothing else
// e2e.js measured: a loopback candidate is gathered only with both flags AND camera/mic permission.
if (loopback) ARGS.push('--allow-loopback-in-peer-connection', '--disable-features=WebRtcHideLocalIpsWithMdns');

let browser = null, closing = null;
async function cleanup() { // idempotent; browser.close() kills Chromium (playwright also does at exit)
  if (!closing) closing = (async () => {
    if (browser) await Promise.race([browser.close().catch(() => {}), sleep(3000)]);
    server.close(); server.closeAllConnections();
  })();
  return closing;
}
let page = null, stopped = false; // an interrupted run still lets the library DELETE, briefly
const stopLib = () => page.evaluate(() => Promise.resolve(window.whepStop && window.whepStop()).then(() => null, (e) => String(e)));
const bail = async (why) => { // signal, watchdog or bug: out within 2 s, whatever hangs
  if (!closing) { result.error = result.error || why; log(why); } // else a verdict is on its way
  setTimeout(() => finish(1), 2000);
  if (!closing && page && !stopped) { stopped = true; await Promise.race([stopLib().catch(() => {}), sleep(1000)]); }
  await cleanup(); finish(1);
};
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => bail(`interrupted (${sig})`));
// Worst normal run: timeout + 3 s stop + 1 s DELETE wait + 3 s close; the watchdog ends it all by timeout + 9.5 s.
setTimeout(() => bail('watchdog: run exceeded --timeout + 7.5 s'), opts.timeout * 1000 + 7500).unref();

(async () => {
  const deadline = t0 + opts.timeout * 1000;
  await new Promise((r, j) => server.listen(0, '127.0.0.1', r).on('error', j));
  const pageUrl = `http://127.0.0.1:${server.address().port}/?${new URLSearchParams({ whep: endpoint, token: opts.token })}`;
  try {
    browser = await chromium.launch({ executablePath: CHROMIUM, args: ARGS, timeout: 15000,
      handleSIGINT: false, handleSIGTERM: false, handleSIGHUP: false }); // ours close it, then print
  } catch (e) { result.error = `Chromium did not start: ${e.message.split('\n')[0]}`; log(result.error); await cleanup(); finish(2); }
  log(`Chromium ${browser.version()}, ${result.client}, page ${pageUrl}`);
  const ctx = await browser.newContext(loopback ? { permissions: ['camera', 'microphone'] } : {});
  page = await ctx.newPage();
  await page.addInitScript(INIT);
  // What the library sends and gets (Playwright shows no CORS preflights; a failed preflight
  // shows as requestfailed plus a console error naming the missing header).
  page.on('console', (m) => { if (m.type() === 'error' || /WebRTC-player|CORS/.test(m.text())) log(`console.${m.type()}: ${m.text().slice(0, 300)}`); });
  let pageErr = null; // logged; named in the error only when too few frames came
  page.on('pageerror', (e) => { pageErr = e.message; log(`pageerror: ${e.message}`); });
  page.on('requestfailed', async (r) => { // ERR_ABORTED after a response is only an unread body
    if (!(await r.response().catch(() => null))) log(`request FAILED: ${r.method()} ${r.url()}: ${r.failure() && r.failure().errorText}`);
  });
  page.on('request', (r) => {
    if (r.method() === 'GET') return;
    const h = r.headers(), keep = ['content-type', 'accept', 'authorization', 'if-match'].filter((k) => h[k]);
    log(`-> ${r.method()} ${r.url()} ${keep.map((k) => `${k}: ${h[k]}`).join('; ')}`);
    if (r.method() === 'PATCH') log(`   PATCH body: ${JSON.stringify((r.postData() || '').slice(0, 400))}`);
    if (r.method() === 'DELETE') result.deleted = true;
  });
  page.on('response', async (r) => {
    const m = r.request().method();
    if (m === 'GET') return;
    const h = await r.allHeaders().catch(() => r.headers());
    log(`<- ${m} ${r.status()} location=${h.location} etag=${h.etag} content-type=${h['content-type']} acao=${h['access-control-allow-origin']} expose=${h['access-control-expose-headers']}`);
    if (m === 'POST' && r.url() === new URL(endpoint).href && h.location) result.location = h.location;
    if (m === 'POST' && r.status() >= 400) log(`   body: ${(await r.text().catch(() => '')).slice(0, 300)}`);
  });
  await page.goto(pageUrl, { timeout: Math.max(1000, deadline - Date.now()) });

  let s = null, last = 0;
  while (Date.now() < deadline) { // until N frames, a page error, or --timeout
    s = await page.evaluate(STATS);
    Object.assign(result, { frames_decoded: s.frames, codec: s.codec, width: s.width, height: s.height, audio_packets: s.audio });
    if (Date.now() - last > 1000) { last = Date.now(); log(`pc ${s.state}: ${s.frames} frames ${s.codec || ''} ${s.width}x${s.height}, ${s.audio} audio packets`); }
    if (s.frames >= opts.frames || s.error) break;
    await sleep(200);
  }
  if (s && s.error) result.error = s.error;
  else if (result.frames_decoded < opts.frames) result.error = `${result.frames_decoded} frames decoded in ${opts.timeout} s (pc ${s && s.state}), want ${opts.frames}${pageErr ? `; page error: ${pageErr}` : ''}`;
  // The library's own stop: whip-whep closes the pc and DELETEs; eyevinn DELETEs, then closes.
  log('stopping through the library');
  stopped = true;
  const stopErr = await Promise.race([stopLib(), sleep(3000).then(() => 'whepStop did not return within 3 s')]).catch((e) => e.message);
  for (let i = 0; i < 10 && !result.deleted; i++) await sleep(100); // a DELETE sent late still counts
  if (stopErr) log(`stop: ${stopErr}`);
  if (!result.deleted && !result.error) result.error = `the library sent no DELETE${stopErr ? ` (${stopErr})` : ''}`;
  await cleanup();
  log(`verdict: ${result.frames_decoded >= opts.frames && result.deleted ? 'PASS' : 'FAIL'}`);
  finish(result.frames_decoded >= opts.frames && result.deleted ? 0 : 1);
})().catch((e) => bail(`unexpected: ${e.stack || e}`));
