// End-to-end scenarios: headless Chromium opens the viewer page served by a running portcast
// daemon and checks the live stream. run.sh sets up the network and the daemon, then runs this
// file (inside the client namespace in netns mode). Configuration comes from the environment.
'use strict';
const fs = require('fs');
const path = require('path');
const { spawn, spawnSync } = require('child_process');
const readline = require('readline');
const { chromium } = require('playwright-core');

const env = process.env;
const MODE = env.PORTCAST_E2E_MODE || 'loopback';
const PAGE = env.PORTCAST_E2E_URL; // e.g. http://198.18.1.1:10110/
const PUBLIC_IP = env.PORTCAST_E2E_PUBLIC_IP;
const UDP_MIN = Number(env.PORTCAST_E2E_UDP_MIN);
const UDP_MAX = Number(env.PORTCAST_E2E_UDP_MAX);
const DAEMON_LOG = env.PORTCAST_E2E_DAEMON_LOG;
const WIDTH = Number(env.PORTCAST_E2E_WIDTH || 1280);
const HEIGHT = Number(env.PORTCAST_E2E_HEIGHT || 720);
const OUT = env.PORTCAST_E2E_OUT || path.join(__dirname, 'out');
const CHROMIUM = env.PORTCAST_E2E_CHROMIUM || '/usr/bin/chromium';
const TOTAL_BUDGET_MS = Number(env.PORTCAST_E2E_BUDGET_MS || 180000);
const INGEST_SOCKET = env.PORTCAST_E2E_INGEST_SOCKET || ''; // the daemon's ingest socket (scenario i)
const NAT_NS = env.PORTCAST_E2E_NAT_NS || ''; // netns mode: the NAT box's namespace (scenario p caps its link)
// Scenario q's measured window (default 10 s; 60 gives the per-minute freeze figure of issue #15)
// and its loss toward the viewer (default 0.05; 0 measures the link's freezes without loss, and
// then fails q's checks that something was lost and resent).
const LOSS_WINDOW_S = Number(env.PORTCAST_E2E_LOSS_WINDOW_S || 10);
const LOSS = env.PORTCAST_E2E_LOSS || '0.05';

for (const [name, value] of Object.entries({ PAGE, PUBLIC_IP, UDP_MIN, UDP_MAX, DAEMON_LOG })) {
  if (value === undefined || value === '' || Number.isNaN(value)) {
    console.error(`e2e.js: missing setting ${name} (run it through run.sh)`);
    process.exit(2);
  }
}

const pageHost = new URL(PAGE).hostname;
const CHROMIUM_ARGS = [
  '--headless=new', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
  '--autoplay-policy=no-user-gesture-required',
  // Nothing but the page's own host may be resolved or reached.
  `--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE ${pageHost}`,
];
// Loopback is never the default route, so Chromium only gathers a 127.0.0.1 candidate with both
// flags AND camera/microphone permission granted to the page (measured: without the permission
// it gathers nothing in a loopback-only namespace). run.sh keeps loopback mode inside a private
// network namespace holding only `lo`, so no other interface can be gathered.
const CONTEXT_OPTIONS = { viewport: { width: 1280, height: 900 } };
if (MODE === 'loopback') {
  CHROMIUM_ARGS.push('--allow-loopback-in-peer-connection',
    '--disable-features=WebRtcHideLocalIpsWithMdns');
  CONTEXT_OPTIONS.permissions = ['camera', 'microphone'];
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const median = (xs) => { const s = [...xs].sort((a, b) => a - b); const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2; };
// p-th percentile (0-100), nearest rank, as the page computes it.
const pct = (xs, p) => { if (!xs.length) return null; const s = [...xs].sort((a, b) => a - b);
  return s[Math.max(0, Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1))]; };
const rid = (tag) => `e2e-${tag}-${Math.random().toString(16).slice(2, 10)}`;
const pageUrl = (query) => `${PAGE}${PAGE.endsWith('/') ? '' : '/'}?${new URLSearchParams(query)}`;

class Failure extends Error {}
function check(cond, what) { if (!cond) throw new Failure(what); }

let browser;
const pageErrors = new Map(); // page -> [messages]
const openPages = new Set();

async function openPage(query) {
  const ctx = await browser.newContext(CONTEXT_OPTIONS);
  const page = await ctx.newPage();
  const errors = [];
  pageErrors.set(page, errors);
  page.on('pageerror', (e) => errors.push(`pageerror: ${e.message}`));
  page.on('console', (m) => { if (m.type() === 'error') errors.push(`console: ${m.text()}`); });
  openPages.add(page);
  page.on('close', () => { openPages.delete(page); ctx.close().catch(() => {}); });
  await page.goto(pageUrl(query), { timeout: 10000 });
  return page;
}

const stats = (page) => page.evaluate(() => window.portcastStats);

async function waitFrames(page, n, timeout) {
  try {
    await page.waitForFunction((k) => window.portcastStats && window.portcastStats.frames_decoded > k,
      n, { timeout, polling: 200 });
  } catch (e) {
    const s = await stats(page).catch(() => null);
    const err = await page.evaluate(() => window.portcastError).catch(() => null);
    throw new Failure(`framesDecoded did not pass ${n} within ${timeout} ms; stats=${JSON.stringify(s)}`
      + ` error=${JSON.stringify(err)} pageErrors=${JSON.stringify(pageErrors.get(page))}`);
  }
  return stats(page);
}

// Chromium's inbound video figures of each page over the next `ms`: fps, kbit/s, `d(key)` for
// any other counter's growth, `secs` measured, and `last`, the closing snapshot.
async function inboundOver(pages, ms) {
  const snap = () => Promise.all(pages.map((p) =>
    p.evaluate(() => JSON.parse(JSON.stringify(window.portcastVideoInbound)))));
  const before = await snap();
  await sleep(ms);
  const after = await snap();
  return after.map((last, i) => {
    const d = (k) => (last[k] || 0) - (before[i][k] || 0);
    const secs = (last.timestamp - before[i].timestamp) / 1000;
    return { d, secs, last, fps: d('framesDecoded') / secs, kbits: (d('bytesReceived') * 8) / secs / 1000 };
  });
}

async function firstFrameMs(page, timeout) {
  await page.waitForFunction(() => window.portcastTimings.firstFrame !== null, null,
    { timeout, polling: 20 });
  return page.evaluate(() => window.portcastTimings.firstFrame - window.portcastTimings.connectClicked);
}

// Mean luma and variance of the current picture, and how much it changes over `gapMs`.
function measurePicture(page, gapMs) {
  return page.evaluate(async (gap) => {
    const v = document.getElementById('video');
    const w = 320, h = 180;
    const c = Object.assign(document.createElement('canvas'), { width: w, height: h });
    const g = c.getContext('2d', { willReadFrequently: true });
    const grab = () => {
      g.drawImage(v, 0, 0, w, h);
      const d = g.getImageData(0, 0, w, h).data;
      const y = new Float32Array(w * h);
      for (let i = 0; i < y.length; i++) y[i] = 0.299 * d[4 * i] + 0.587 * d[4 * i + 1] + 0.114 * d[4 * i + 2];
      return y;
    };
    const a = grab();
    await new Promise((r) => setTimeout(r, gap));
    const b = grab();
    let sum = 0, sq = 0, changed = 0;
    for (let i = 0; i < a.length; i++) { sum += a[i]; sq += a[i] * a[i]; if (Math.abs(a[i] - b[i]) > 24) changed++; }
    const mean = sum / a.length;
    return { mean, variance: sq / a.length - mean * mean, changedPct: (100 * changed) / a.length,
             videoWidth: v.videoWidth, videoHeight: v.videoHeight };
  }, gapMs);
}

function readLog() { try { return fs.readFileSync(DAEMON_LOG, 'utf8'); } catch (_) { return ''; } }

async function waitLog(needle, timeoutMs) {
  const t0 = Date.now();
  while (Date.now() - t0 < timeoutMs) {
    const line = readLog().split('\n').find((l) => l.includes(needle));
    if (line) return { line: line.trim(), ms: Date.now() - t0 };
    await sleep(100);
  }
  return null;
}

function candidateOk(addr) {
  if (!addr) return false;
  const i = addr.lastIndexOf(':');
  const port = Number(addr.slice(i + 1));
  return addr.slice(0, i) === PUBLIC_IP && port >= UDP_MIN && port <= UDP_MAX;
}

// Renderer processes a scenario started (tests/e2e/talker.py); killed on every way out.
const children = new Set();
process.on('exit', () => { for (const c of children) { try { c.kill('SIGKILL'); } catch (_) { /* gone */ } } });

// Runs a viewer program to its end (killed after killMs): its exit code (null if it could not
// start, with spawnError set), whole stdout, the last stderr lines, and its last stdout line as
// JSON (`report`, {} if none parses).
async function runViewer(cmd, args, killMs) {
  const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  children.add(child);
  let stdout = '', stderr = '', spawnError = null;
  child.stdout.on('data', (d) => { stdout += d; });
  child.stderr.on('data', (d) => { stderr += d; });
  child.on('error', (e) => { spawnError = e; });
  const killer = setTimeout(() => child.kill('SIGKILL'), killMs);
  const code = await new Promise((resolve) => child.on('close', resolve));
  clearTimeout(killer);
  children.delete(child);
  let report = {};
  try { report = JSON.parse(stdout.trim().split('\n').pop()); } catch (e) { /* stays {} */ }
  return { code, stdout: stdout.trim(), lastErr: stderr.trim().split('\n').slice(-3), spawnError, report };
}

// Starts talker.py on the daemon's ingest socket. lines.next(re, ms) waits for a stdout line
// matching `re` (lines already read count); send(cmd) writes a command; stop() ends it.
function startTalker(avatar, extra = []) {
  return startLines('talker.py', 'python3',
    [path.join(__dirname, 'talker.py'), INGEST_SOCKET, '--avatar', avatar, ...extra]);
}

// Starts `cmd args` (called `label` in failures): lines.next(re, ms) waits for a stdout line
// matching `re`; send(cmd) writes a line to its stdin; stop() sends "quit" and ends it.
function startLines(label, cmd, args) {
  const child = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'] });
  children.add(child);
  const seen = [], stderr = [], waiters = [];
  let exited = null;
  const wake = () => { for (const w of waiters.splice(0)) w(); };
  readline.createInterface({ input: child.stdout }).on('line', (l) => { seen.push(l); wake(); });
  readline.createInterface({ input: child.stderr }).on('line', (l) => { stderr.push(l); wake(); });
  child.on('error', (e) => { exited = `spawn failed: ${e.message}`; wake(); });
  child.on('exit', (code, sig) => { exited = `exited (${sig || code})`; children.delete(child); wake(); });
  child.stdin.on('error', () => {}); // EPIPE when it is gone: reported by next()
  let from = 0;
  return {
    stderr,
    async next(re, timeoutMs) {
      const until = Date.now() + timeoutMs;
      for (;;) {
        for (; from < seen.length; from++) {
          const m = re.exec(seen[from]);
          if (m) { from++; return m; }
        }
        if (exited) throw new Failure(`${label} ${exited} before printing ${re}; stderr: ${stderr.join(' | ')}`);
        const left = until - Date.now();
        if (left <= 0) throw new Failure(`${label} printed no ${re} within ${timeoutMs} ms;`
          + ` stdout: ${seen.join(' | ')}; stderr: ${stderr.join(' | ')}`);
        await new Promise((r) => { waiters.push(r); setTimeout(r, Math.min(left, 200)); });
      }
    },
    send(cmd) { if (!exited) child.stdin.write(`${cmd}\n`); },
    async stop() {
      if (!exited) { try { child.stdin.end('quit\n'); } catch (_) { /* gone */ } }
      const t0 = Date.now();
      while (!exited && Date.now() - t0 < 3000) await sleep(50);
      if (!exited) { child.kill('SIGKILL'); while (!exited && Date.now() - t0 < 5000) await sleep(50); }
      children.delete(child);
      return exited;
    },
  };
}

function noPageErrors(page) {
  const errs = (pageErrors.get(page) || []).filter((e) => !/favicon/.test(e));
  check(errs.length === 0, `page reported errors: ${errs.join(' | ')}`);
}

// ---------------------------------------------------------------------------------------------
const scenarios = [
  ['a. one tab streams the test pattern through the public address', async () => {
    const id = rid('a');
    const page = await openPage({ session: id });
    await page.click('#connect');
    const s = await waitFrames(page, 60, 30000);
    const t = await page.evaluate(() => window.portcastTimings);
    const pic = await measurePicture(page, 700);
    fs.mkdirSync(OUT, { recursive: true });
    await page.screenshot({ path: path.join(OUT, 'viewer.png') });
    const last = await stats(page);
    const sdp = await page.evaluate(() => window.portcastSdp);
    const sound = await page.evaluate(() => ({ muted: document.getElementById('video').muted,
      button: document.getElementById('sound').textContent }));
    const PLAYOUT = 'http://www.webrtc.org/experiments/rtp-hdrext/playout-delay';
    const playoutOffered = sdp.offer.includes(PLAYOUT);
    const playoutAnswered = sdp.answer.includes(PLAYOUT);
    console.log(`    state=${s.connection_state}/${s.ice_state} local=${s.local_candidate} remote=${s.remote_candidate}`);
    console.log(`    playout-delay offered=${playoutOffered} answered=${playoutAnswered}`
      + ` jitter buffer per frame=${last.jitter_buffer_ms} ms`);
    console.log(`    codec=${last.codec} ${last.codec_fmtp} ${last.width}x${last.height} fps=${last.fps}`
      + ` decoded=${last.frames_decoded} dropped=${last.frames_dropped} lost=${last.packets_lost}`
      + ` jitter=${last.jitter}s bitrate=${last.bitrate_kbps}kbit/s rtt=${last.rtt_ms}ms`);
    console.log(`    picture: mean luma=${pic.mean.toFixed(1)} variance=${pic.variance.toFixed(0)}`
      + ` changed over 700 ms=${pic.changedPct.toFixed(2)}% of pixels`);
    console.log(`    connect click -> first frame: ${(t.firstFrame - t.connectClicked).toFixed(0)} ms`);
    console.log(`    sound after the Connect click: muted=${sound.muted}, button "${sound.button}"`);
    console.log(`    screenshot: ${path.join(OUT, 'viewer.png')}`);
    check(s.connection_state === 'connected', `connection state ${s.connection_state}`);
    check(candidateOk(s.remote_candidate),
      `remote candidate ${s.remote_candidate} is not ${PUBLIC_IP}:${UDP_MIN}..${UDP_MAX}`);
    check(/h264/i.test(last.codec || ''), `codec ${last.codec}`);
    check(last.width === WIDTH && last.height === HEIGHT, `resolution ${last.width}x${last.height}, want ${WIDTH}x${HEIGHT}`);
    check(pic.mean > 20, `picture is black (mean luma ${pic.mean.toFixed(1)})`);
    check(pic.variance > 200, `picture is flat (luma variance ${pic.variance.toFixed(0)})`);
    check(pic.changedPct > 0, 'picture did not change over 700 ms (frozen)');
    check(t.firstFrame !== null, 'no first-frame timing');
    check(playoutOffered, 'Chromium no longer offers the playout-delay extension');
    check(playoutAnswered, 'the answer does not carry the playout-delay extension Chromium offered');
    check(!sound.muted && sound.button === 'Mute', `a Connect click left the sound off (muted=${sound.muted},`
      + ` button "${sound.button}")`);
    noPageErrors(page);
    await page.close();
  }],

  ['b. connect-to-first-frame, 5 fresh pages', async () => {
    // Printed for the record (`portcast-bench glass` owns the figure, over 10 pages).
    const times = [], fromOpen = [];
    for (let i = 0; i < 5; i++) {
      const page = await openPage({ session: rid(`b${i}`) });
      await page.click('#connect');
      let ms;
      try { ms = await firstFrameMs(page, 15000); } catch (e) {
        throw new Failure(`run ${i + 1}: no first frame within 15 s; stats=${JSON.stringify(await stats(page))}`);
      }
      const t = await page.evaluate(() => window.portcastTimings);
      times.push(ms);
      fromOpen.push(t.firstFrame - t.wsOpened);
      console.log(`    run ${i + 1}: ${ms.toFixed(0)} ms after the click; WebSocket open -> answer`
        + ` ${(t.answerReceived - t.wsOpened).toFixed(0)} ms -> connected ${(t.connected - t.wsOpened).toFixed(0)} ms`
        + ` -> first frame ${(t.firstFrame - t.wsOpened).toFixed(0)} ms`);
      check(t.wsOpened !== null && t.wsOpened <= t.firstFrame, `run ${i + 1}: timings out of order ${JSON.stringify(t)}`);
      await page.close();
    }
    console.log(`    median: ${median(times).toFixed(0)} ms after the click,`
      + ` ${median(fromOpen).toFixed(0)} ms after the WebSocket opened`);
  }],

  ['c. four tabs at once, different sessions', async () => {
    const pages = await Promise.all([1, 2, 3, 4].map((i) => openPage({ session: rid(`c${i}`), autoconnect: '1' })));
    const results = await Promise.all(pages.map((p) => waitFrames(p, 30, 30000)));
    results.forEach((s, i) => console.log(`    tab ${i + 1}: decoded=${s.frames_decoded} fps=${s.fps}`
      + ` ${s.width}x${s.height} remote=${s.remote_candidate} local=${s.local_candidate}`));
    const remotes = new Set(results.map((s) => s.remote_candidate));
    console.log(`    server addresses used: ${[...remotes].join(', ')}`);
    await Promise.all(pages.map((p) => p.close()));
  }],

  ['d. closing a tab ends its session within 10 s', async () => {
    const id = rid('d');
    const page = await openPage({ session: id, autoconnect: '1' });
    await waitFrames(page, 0, 20000);
    const started = await waitLog(`session ${id} started`, 5000);
    check(started, `daemon log has no "session ${id} started"`);
    console.log(`    ${started.line}`);
    await page.close();
    const ended = await waitLog(`session ${id} ended`, 10000);
    check(ended, `daemon log has no "session ${id} ended" 10 s after the tab closed`);
    console.log(`    after ${ended.ms} ms: ${ended.line}`);
  }],

  ['e. an offer without H.264 gets VP8 beside an H.264 viewer; one with neither gets a clear error', async () => {
    // Chromium with H.264 stripped from its offer stands in for Firefox without OpenH264
    // (scenario m runs Firefox itself). Its VP8 encoder runs only while it watches.
    const encoding = async () => {
      const res = await fetch(new URL('/metrics', PAGE), { signal: AbortSignal.timeout(5000) });
      const text = await res.text();
      const value = (codec) => {
        const m = text.match(new RegExp(`portcast_source_encoding\\{avatar="test-pattern",codec="${codec}"\\} (\\d+)`));
        return m ? Number(m[1]) : null;
      };
      // Datagrams that left inside UDP GSO messages, over every socket.
      const segmented = [...text.matchAll(/^portcast_udp_segmented_datagrams_out_total\{[^}]*\} (\d+)/gm)]
        .reduce((sum, m) => sum + Number(m[1]), 0);
      return { H264: value('H264'), VP8: value('VP8'), segmented };
    };
    const h264 = await openPage({ session: rid('e'), autoconnect: '1' });
    const vp8 = await openPage({ session: rid('e'), autoconnect: '1', h264: '0' });
    const [sh, sv] = [await waitFrames(h264, 30, 20000), await waitFrames(vp8, 30, 20000)];
    const both = await encoding();
    const answer = await vp8.evaluate(() => window.portcastSdp.answer);
    console.log(`    H.264 viewer: codec=${sh.codec} decoded=${sh.frames_decoded};`
      + ` VP8 viewer: codec=${sv.codec} ${sv.width}x${sv.height} decoded=${sv.frames_decoded}`);
    console.log(`    /metrics with both: source_encoding ${JSON.stringify(both)}`);
    check(/h264/i.test(sh.codec || ''), `first viewer's codec ${sh.codec}, want H.264`);
    check(/vp8/i.test(sv.codec || ''), `H.264-less viewer's codec ${sv.codec}, want VP8`);
    check(!/H264\//.test(answer), 'the answer to an offer without H.264 names H.264');
    check(sv.width === WIDTH && sv.height === HEIGHT, `VP8 resolution ${sv.width}x${sv.height}`);
    check(both.H264 === 1 && both.VP8 === 1, `both encoders should run: ${JSON.stringify(both)}`);
    // Both pictures reached Chromium through GSO runs (one message per viewer's picture),
    // unless the daemon said at start that this kernel has no UDP_SEGMENT.
    const gsoOff = readLog().includes('UDP GSO off');
    check(gsoOff || both.segmented > 0, `no datagram left in a GSO message: ${JSON.stringify(both)}`);
    noPageErrors(vp8);
    await vp8.close();
    let after = await encoding();
    for (const until = Date.now() + 10000; after.VP8 !== 0 && Date.now() < until;) {
      await new Promise((r) => setTimeout(r, 200));
      after = await encoding();
    }
    const still = await stats(h264);
    console.log(`    after the VP8 viewer left: source_encoding ${JSON.stringify(after)};`
      + ` H.264 viewer decoded=${still.frames_decoded}`);
    check(after.VP8 === 0 && after.H264 === 1, `the VP8 encoder should stop, H.264 go on: ${JSON.stringify(after)}`);
    await h264.close();

    const page = await openPage({ session: rid('e'), autoconnect: '1', h264: '0', vp8: '0' });
    try {
      await page.waitForFunction(() => window.portcastError !== null, null, { timeout: 10000, polling: 50 });
    } catch (e) {
      throw new Failure(`no error shown; received=${JSON.stringify(await page.evaluate(() => window.portcastReceived))}`);
    }
    const err = await page.evaluate(() => window.portcastError);
    const received = await page.evaluate(() => window.portcastReceived);
    const box = page.locator('#error');
    const visible = await box.isVisible();
    const text = (await box.innerText()).replace(/\s+/g, ' ');
    console.log(`    neither codec: error=${JSON.stringify(err)}`);
    console.log(`    shown (${visible ? 'visible' : 'hidden'}): "${text}"; messages received: ${received.join(',')}`);
    await page.screenshot({ path: path.join(OUT, 'error.png') });
    check(err.code === 'no_h264', `error code ${err.code}, want no_h264`);
    check(visible && text.length > 0, 'error not visible on the page');
    check(!received.includes('webrtc_answer'), 'the daemon sent an answer anyway');
    await page.close();
    // The daemon is still serving afterwards.
    const res = await fetch(PAGE, { signal: AbortSignal.timeout(5000) });
    check(res.status === 200, `GET / after the error: HTTP ${res.status}`);
  }],

  ['f. the Disconnect button ends the session', async () => {
    const id = rid('f');
    const page = await openPage({ session: id, autoconnect: '1' });
    await waitFrames(page, 0, 20000);
    check(await waitLog(`session ${id} started`, 5000), `daemon log has no "session ${id} started"`);
    await page.click('#disconnect');
    const ended = await waitLog(`session ${id} ended`, 10000);
    check(ended, `daemon log has no "session ${id} ended" 10 s after Disconnect`);
    const status = await page.locator('#status').innerText();
    console.log(`    page says "${status}"; after ${ended.ms} ms: ${ended.line}`);
    check(status === 'disconnected', `status line "${status}"`);
    noPageErrors(page);
    await page.close();
  }],

  ['g. glass-to-glass is measured on the page for every displayed frame', async () => {
    // Browser and daemon share this machine's clock (namespaces do not change it), so the
    // capture clock the test pattern carries, read back at display, gives the latency.
    // The figures are printed for the record; the bench owns latency goals.
    const page = await openPage({ session: rid('g'), autoconnect: '1' });
    await waitFrames(page, 30, 30000);
    await page.waitForTimeout(Number(env.PORTCAST_E2E_GLASS_MS || 8000));
    const g = await page.evaluate(() => {
      const x = window.portcastGlass;
      const p = window.portcastPercentile;
      return { presented: x.presented, measured: x.measured, n: x.all.length,
        unreadable: x.unreadable, outOfRange: x.outOfRange.slice(0, 10),
        p50: p(x.all, 50), p95: p(x.all, 95), p99: p(x.all, 99), max: p(x.all, 100) };
    });
    const last = await stats(page);
    console.log(`    unreadable ${g.unreadable}, out of range (first 10) ${JSON.stringify(g.outOfRange)}`);
    console.log(`    ${g.measured} of ${g.presented} presented frames measured;`
      + ` capture -> display p50 ${g.p50} ms, p95 ${g.p95} ms, p99 ${g.p99} ms, max ${g.max} ms`
      + ` (jitter buffer per frame ${last.jitter_buffer_ms} ms, ${last.width}x${last.height} ${last.fps} fps)`);
    check(g.presented >= 100, `only ${g.presented} frames presented`);
    check(g.measured >= 0.9 * g.presented, `capture clock read on ${g.measured} of ${g.presented} frames`);
    check(g.p50 !== null && g.p50 >= 0 && g.p50 < 1000,
      `capture -> display p50 ${g.p50} ms is not a plausible latency on one machine`);
    noPageErrors(page);
    await page.close();
  }],

  ['h. audio plays in step with the picture', async () => {
    // The test pattern flashes a patch of its picture and beeps for the same 100 ms once a
    // second; the page times each flash as shown and each beep as played (window.portcastAv,
    // see the viewer page) and pairs them: offset = beep - flash, positive = sound late.
    // ITU-R BT.1359 puts the detectability threshold at 45 ms sound early .. 125 ms late.
    // PORTCAST_E2E_AV_MS sets how long it measures (default 30000, as issue 13 asks); PORTCAST_E2E_AV_DEBUG=1
    // prints Chromium's raw audio jitter-buffer figures once a second while it does.
    const AV_MS = Number(env.PORTCAST_E2E_AV_MS || 30000);
    const EARLY = -45, LATE = 125;
    const page = await openPage({ session: rid('h'), autoconnect: '1' });
    await waitFrames(page, 30, 30000);
    const soundState = () => page.evaluate(() => ({ muted: document.getElementById('video').muted,
      button: document.getElementById('sound').textContent,
      buttonShown: !document.getElementById('sound').hidden }));
    // An autoconnect has no user gesture: the page stays muted and offers Unmute; a click on
    // it (trusted, through the input pipeline) turns the sound on, as a person would.
    const before = await soundState();
    check(before.muted && before.buttonShown && before.button === 'Unmute',
      `autoconnect: want a muted element and an Unmute button, got ${JSON.stringify(before)}`);
    await page.click('#sound');
    await page.waitForFunction(() => document.getElementById('sound').textContent === 'Mute', null,
      { timeout: 5000, polling: 50 }).catch(() => {});
    const after = await soundState();
    check(!after.muted && after.button === 'Mute', `the Unmute click left the sound off: ${JSON.stringify(after)}`);

    // What the answer did with the offer's audio m-line.
    const sdp = await page.evaluate(() => window.portcastSdp);
    const sections = sdp.answer.split(/\r?\n(?=m=)/).slice(1).map((text) => {
      const m = /^m=(\w+) (\d+)/.exec(text);
      const msid = /^a=msid:(\S+)/m.exec(text);
      const dir = /^a=(sendonly|recvonly|sendrecv|inactive)\s*$/m.exec(text);
      return { kind: m[1], port: Number(m[2]), stream: msid ? msid[1] : null, dir: dir ? dir[1] : null,
        opus: /^a=rtpmap:\d+ opus\/48000\/2/im.test(text) };
    });
    const audioM = sections.find((x) => x.kind === 'audio');
    const videoM = sections.find((x) => x.kind === 'video');
    console.log(`    answer: audio ${JSON.stringify(audioM)}, video stream ${videoM && videoM.stream}`);

    // Measure from now on, after the start-up.
    const t0 = await page.evaluate(() => ({ n: window.portcastAv.offsets.length,
      flashes: window.portcastAv.flashes, beeps: window.portcastAv.beeps,
      unpairedFlashes: window.portcastAv.unpairedFlashes, unpairedBeeps: window.portcastAv.unpairedBeeps,
      skipped: window.portcastAv.flashesAfterSkip }));
    const playout = [];
    const until = Date.now() + AV_MS;
    while (Date.now() < until) {
      await page.waitForTimeout(Math.min(1000, Math.max(0, until - Date.now())));
      const x = await page.evaluate(() => window.portcastStats);
      if (x && x.playout_audio_minus_video_ms != null) playout.push(x.playout_audio_minus_video_ms);
      if (env.PORTCAST_E2E_AV_DEBUG) { // one line a second of the raw audio figures
        const r = await page.evaluate(() => ({ a: window.portcastAudioInbound, o: window.portcastAv.recent.slice(-1) }));
        const a = r.a || {};
        const per = (k) => (a.jitterBufferEmittedCount ? ((a[k] / a.jitterBufferEmittedCount) * 1000).toFixed(1) : null);
        console.log(`      t=${((AV_MS - (until - Date.now())) / 1000).toFixed(0)}s last offset ${r.o} pkts ${a.packetsReceived}`
          + ` jitter ${a.jitter} jb ${per('jitterBufferDelay')} target ${per('jitterBufferTargetDelay')}`
          + ` min ${per('jitterBufferMinimumDelay')} concealed ${a.concealedSamples} events ${a.concealmentEvents}`
          + ` +decel ${a.insertedSamplesForDeceleration} -accel ${a.removedSamplesForAcceleration}`
          + ` discarded ${a.packetsDiscarded} playout a-v ${x && x.playout_audio_minus_video_ms}`);
      }
    }
    const av = await page.evaluate(() => window.portcastAv);
    const last = await stats(page);
    const offsets = av.offsets.slice(t0.n);
    const flashes = av.flashes - t0.flashes, beeps = av.beeps - t0.beeps;
    const within = offsets.filter((o) => o >= EARLY && o <= LATE).length;
    const p50 = pct(offsets, 50);
    console.log(`    over ${AV_MS} ms: flashes ${flashes} (after a skipped frame ${av.flashesAfterSkip - t0.skipped}),`
      + ` beeps ${beeps}, pairs ${offsets.length}; unpaired flashes ${av.unpairedFlashes - t0.unpairedFlashes},`
      + ` beeps ${av.unpairedBeeps - t0.unpairedBeeps}`);
    console.log(`    A/V offset (beep - flash, + = sound late): p50 ${p50} ms, p95 ${pct(offsets, 95)} ms,`
      + ` min ${pct(offsets, 0)} ms, max ${pct(offsets, 100)} ms; within ${EARLY}..+${LATE} ms: ${within} of ${offsets.length}`);
    console.log(`    offsets: ${JSON.stringify(offsets)}`);
    console.log(`    Web Audio: ${av.method} at ${av.sampleRate} Hz, base latency ${av.baseLatencyMs} ms,`
      + ` output latency ${av.outputLatencyMs} ms; loudest ${av.peakDb} dBFS (the beep peaks at -12)`);
    console.log(`    audio: ${last.audio_codec} packets received ${last.audio_packets_received}, lost ${last.audio_packets_lost},`
      + ` jitter ${last.audio_jitter} s, jitter buffer ${last.audio_jitter_buffer_ms} ms`
      + ` (target ${last.audio_jitter_buffer_target_ms} ms), concealed ratio ${last.audio_concealed_ratio},`
      + ` playout delay ${last.audio_playout_delay_ms} ms; video jitter buffer ${last.jitter_buffer_ms} ms`);
    console.log(`    Chromium estimatedPlayoutTimestamp audio - video (+ = sound early): p50 ${pct(playout, 50)} ms,`
      + ` min ${pct(playout, 0)} ms, max ${pct(playout, 100)} ms (${playout.length} samples);`
      + ` page's client_stats av_offset_ms ${last.av_offset_ms}`);
    check(audioM && audioM.port !== 0, `the answer refused the audio m-line: ${JSON.stringify(audioM)}`);
    check(audioM.opus && audioM.dir === 'sendonly', `answer audio not sendonly Opus: ${JSON.stringify(audioM)}`);
    check(videoM && audioM.stream && audioM.stream === videoM.stream,
      `audio msid stream ${audioM.stream} is not the video's ${videoM && videoM.stream}`);
    check(last.audio_packets_received > 0, `no audio packets received: ${JSON.stringify(last)}`);
    const want = Math.floor((8 * AV_MS) / 12000);
    check(offsets.length >= want, `only ${offsets.length} flash/beep pairs in ${AV_MS} ms (want >= ${want});`
      + ` flashes ${flashes}, beeps ${beeps}`);
    // Every pair inside the window; one rare outlier in ten may be allowed if the median holds.
    check(within === offsets.length || (within >= 0.9 * offsets.length && p50 >= EARLY && p50 <= LATE),
      `A/V offsets outside ${EARLY}..+${LATE} ms: ${offsets.length - within} of ${offsets.length} (p50 ${p50} ms)`);
    noPageErrors(page);
    await page.close();
  }],

  ['i. a flush (barge-in) silences the avatar at once', async () => {
    // A renderer (talker.py) on the daemon's ingest socket speaks a 5 s tone in one go, then,
    // 1.5 s into it, sends FLUSH. The page logs when its audio tap goes from sound to silence
    // (window.portcastLevels: every sample below -40 dBFS for >= 50 ms, timed at the first
    // silent sample; see watchAudio in the viewer page). The instant measured is the
    // AudioContext's output time of that first silent sample (getOutputTimestamp maps its
    // context time to performance time), on the wall clock as performance.timeOrigin + that;
    // talker.py stamps the flush with time.time() right after the FLUSH bytes were written.
    // Both are this machine's clock (namespaces do not change it). Without FLUSH the tone
    // would sound 3.5 s more; the check bound is 250 ms, the issue's goal 60 ms.
    const BOUND_MS = 250, GOAL_MS = 60, SPEAK_MS = 1500, STAY_SILENT_MS = 1500;
    check(INGEST_SOCKET, 'no ingest socket (PORTCAST_E2E_INGEST_SOCKET; run through run.sh)');
    const talker = startTalker('talker');
    try {
      await talker.next(/^ready$/, 15000);
      const page = await openPage({ session: rid('i'), avatar: 'talker', autoconnect: '1' });
      await waitFrames(page, 30, 30000);
      // As in scenario h: an autoconnect stays muted; a trusted click on Unmute turns sound on.
      await page.click('#sound');
      await page.waitForFunction(() => document.getElementById('sound').textContent === 'Mute', null,
        { timeout: 5000, polling: 50 }).catch(() => {});
      const sound = await page.evaluate(() => ({ muted: document.getElementById('video').muted,
        button: document.getElementById('sound').textContent }));
      check(!sound.muted && sound.button === 'Mute', `the Unmute click left the sound off: ${JSON.stringify(sound)}`);
      const answer = await page.evaluate(() => window.portcastSdp.answer);
      check(/^m=audio [1-9]/m.test(answer), 'the answer refused the audio m-line (talker set its audio format first)');

      // Speak, and wait until the page hears it.
      const spoke = Date.now();
      talker.send('speak');
      await talker.next(/^spoke /, 5000);
      try {
        await page.waitForFunction(() => window.portcastLevels.loud === true, null, { timeout: 5000, polling: 20 });
      } catch (e) {
        throw new Failure(`the tone was not heard within 5 s of "speak": levels=`
          + `${JSON.stringify(await page.evaluate(() => window.portcastLevels))} stats=${JSON.stringify(await stats(page))}`);
      }
      const heardMs = Date.now() - spoke;
      await sleep(Math.max(SPEAK_MS - (Date.now() - spoke), 500));

      // The state just before the flush: the tone must be sounding now.
      const before = await page.evaluate(() => ({ seq: window.portcastLevels.seq, loud: window.portcastLevels.loud,
        levelDb: window.portcastAv.levelDb, stats: window.portcastStats, inbound: window.portcastAudioInbound }));
      talker.send('flush');
      const flushWall = Number((await talker.next(/^flushed ([\d.]+)$/, 5000))[1]);
      check(before.loud === true && before.levelDb !== null && before.levelDb > -40,
        `the tone was not sounding right before the flush (loud=${before.loud}, level ${before.levelDb} dBFS)`);

      // The first silence after the flush. 4.5 s: without FLUSH it would come at the tone's end.
      let silence = null;
      try {
        const h = await page.waitForFunction((seq) => window.portcastSilence(seq), before.seq,
          { timeout: 4500, polling: 20 });
        silence = await h.jsonValue();
      } catch (_) { /* reported below */ }
      await sleep(STAY_SILENT_MS); // and it stays silent
      const after = await page.evaluate((seq) => ({
        log: window.portcastLevels.log.filter((e) => e.n > seq), loud: window.portcastLevels.loud,
        envelope: window.portcastLevels.envelope,
        outputLatencyMs: window.portcastAv.outputLatencyMs, baseLatencyMs: window.portcastAv.baseLatencyMs,
        peakDb: window.portcastAv.peakDb, stats: window.portcastStats, inbound: window.portcastAudioInbound,
        // How far performance.timeOrigin + now() sits from Date.now() (the system clock).
        clockSkewMs: Date.now() - (performance.timeOrigin + performance.now()),
      }), before.seq);
      const st = after.stats || {};
      const a0 = before.inbound || {}, a1 = after.inbound || {};
      // The jitter buffer over the second before the flush (client_stats' figure is since the start).
      const emitted = (a1.jitterBufferEmittedCount || 0) - (a0.jitterBufferEmittedCount || 0);
      const recentJb = emitted > 0 ? (((a1.jitterBufferDelay - a0.jitterBufferDelay) / emitted) * 1000).toFixed(1) : null;
      const lastPacket = typeof a1.lastPacketReceivedTimestamp === 'number'
        ? (a1.lastPacketReceivedTimestamp - flushWall).toFixed(1) : null;
      const gap = silence ? silence.wall - flushWall : null;
      console.log(`    tone reached the page's audio tap ${heardMs} ms after "speak"; level before the flush ${before.levelDb} dBFS`
        + ` (loudest ${after.peakDb}; the tone peaks at -12)`);
      console.log(`    flush wall time ${flushWall.toFixed(1)} ms (talker.py, time.time() after FLUSH was written)`);
      console.log(`    silence wall time ${silence ? silence.wall.toFixed(1) : 'none'} ms (page: output time of the`
        + ` first sample of >= 50 ms below -40 dBFS)`);
      console.log(`    gap flush -> silence: ${gap === null ? 'no silence within 4.5 s' : `${gap.toFixed(1)} ms`};`
        + ` goal ${GOAL_MS} ms ${gap !== null && gap <= GOAL_MS ? 'met' : 'NOT met'}, check bound ${BOUND_MS} ms`);
      console.log(`    to explain it: audio jitter buffer ${st.audio_jitter_buffer_ms} ms mean since the start,`
        + ` ${recentJb} ms over the ~1 s before the flush (target ${st.audio_jitter_buffer_target_ms} ms);`
        + ` AudioContext output latency ${after.outputLatencyMs} ms, base latency ${after.baseLatencyMs} ms;`
        + ` element playout delay ${st.audio_playout_delay_ms} ms; last audio packet arrived`
        + ` ${lastPacket === null ? '?' : lastPacket} ms after the flush; page clock - system clock ${(-after.clockSkewMs).toFixed(1)} ms`);
      console.log(`    audio packets received ${st.audio_packets_received}, lost ${st.audio_packets_lost};`
        + ` level changes after the flush:`
        + ` ${JSON.stringify(after.log.map((e) => [e.kind, Number((e.wall - flushWall).toFixed(1))]))}`);
      // The level per 10 ms around the flush (ms after it: peak dBFS), up to the silence.
      const tailEnd = (silence ? silence.wall : flushWall + 500) + 30; // at most ~45 blocks
      const tail = after.envelope.filter(([w]) => w >= Math.max(flushWall - 60, tailEnd - 450) && w <= tailEnd);
      // Where the sound falls 3 dB below the tone's level, and from there to the silence: how
      // long it took to die away. When no packet follows the last one played, Chromium's
      // concealment (NetEq expand) goes on extrapolating the tone and fades it out; that tail
      // is part of this fall (the envelope cannot tell concealment from the real tone).
      const drop = after.envelope.find(([w, db]) => w >= flushWall
        && (db === null || db < before.levelDb - 3));
      const dropMs = drop ? drop[0] - flushWall : null;
      console.log(`    level per 10 ms around the flush (ms after it: peak dBFS): ${tail.map(([w, db]) =>
        `${(w - flushWall).toFixed(0)}:${db === null ? '-inf' : db.toFixed(0)}`).join(' ')}`);
      console.log(`    within 3 dB of the tone's level until ${dropMs === null ? '?' : dropMs.toFixed(1)} ms after the flush,`
        + ` then ${silence && dropMs !== null ? (silence.wall - drop[0]).toFixed(1) : '?'} ms fading to silence;`
        + ` concealed ratio ${before.stats && before.stats.audio_concealed_ratio} before, ${st.audio_concealed_ratio} after`);
      check(silence !== null, `no silence within 4.5 s of the flush: the tone kept sounding`);
      const unseen = after.log.filter((e) => e.kind === 'unseen' && e.n <= silence.n);
      check(unseen.length === 0, 'the page missed samples between the flush and the silence (a stalled poll)');
      check(gap <= BOUND_MS, `silence came ${gap.toFixed(1)} ms after the flush (bound ${BOUND_MS} ms;`
        + ` within 3 dB of the tone's level for ${dropMs === null ? '?' : dropMs.toFixed(0)} ms of it)`);
      const relapse = after.log.find((e) => e.n > silence.n && e.kind !== 'silence');
      check(!relapse, `sound again ${relapse && (relapse.wall - flushWall).toFixed(1)} ms after the flush`
        + ` (${relapse && relapse.kind}): the old utterance went on`);
      noPageErrors(page);
      await page.close();
    } finally {
      const how = await talker.stop();
      if (how !== 'exited (0)') console.log(`    talker.py ${how}; stderr: ${talker.stderr.join(' | ')}`);
    }
  }],

  ['j. aiortc, as a second viewer beside Chromium, hears and sees the avatar', async () => {
    // aiortc 1.16 from the venv `portcast-bench compare-aiortc` installs (scripts/test.sh runs
    // that stage first). It offers video and audio, decodes both for 5 s and checks that the
    // answer took its audio and that it decoded video, 48 kHz audio and a beep.
    const py = env.PORTCAST_E2E_AIORTC_PYTHON
      || path.join(__dirname, '..', '..', 'target', 'aiortc-venv', 'bin', 'python');
    check(fs.existsSync(py), `no aiortc at ${py}: run \`portcast-bench --smoke compare-aiortc\``
      + ' once (scripts/test.sh does) or set PORTCAST_E2E_AIORTC_PYTHON');
    const page = await openPage({ session: rid('j'), autoconnect: '1' });
    await waitFrames(page, 10, 20000);
    const ws = PAGE.replace(/^http/, 'ws').replace(/\/$/, '');
    // Loopback mode shares this machine's interfaces: keep aiortc's ICE on 127.0.0.1.
    const args = [path.join(__dirname, 'aiortc_viewer.py'), ws, '--seconds', '5', '--check',
      '--session', rid('j-aiortc'), ...(MODE === 'loopback' ? ['--loopback-only'] : [])];
    const { code, stdout, lastErr } = await runViewer(py, args, 40000);
    console.log(`    aiortc: ${stdout}`);
    if (lastErr[0]) console.log(`    aiortc stderr: ${lastErr.join(' | ')}`);
    const chromium = await stats(page);
    console.log(`    Chromium beside it: decoded=${chromium.frames_decoded} audio packets=${chromium.audio_packets_received}`);
    check(code === 0, `the aiortc viewer failed (exit ${code}): ${lastErr[lastErr.length - 1]}`);
    check(chromium.audio_packets_received > 0, 'the Chromium viewer stopped hearing the avatar');
    noPageErrors(page);
    await page.close();
  }],

  ['k. an offer without playout-delay gets none in its answer, and streams', async () => {
    // The page stops the extension with setHeaderExtensionsToNegotiate (?playout=0).
    const PLAYOUT = 'http://www.webrtc.org/experiments/rtp-hdrext/playout-delay';
    const page = await openPage({ session: rid('k'), autoconnect: '1', playout: '0' });
    const s = await waitFrames(page, 10, 20000);
    const sdp = await page.evaluate(() => window.portcastSdp);
    console.log(`    playout-delay offered=${sdp.offer.includes(PLAYOUT)} answered=${sdp.answer.includes(PLAYOUT)};`
      + ` decoded=${s.frames_decoded} jitter buffer per frame=${s.jitter_buffer_ms} ms`);
    check(!sdp.offer.includes(PLAYOUT), 'Chromium still offered playout-delay after it was stopped');
    check(!sdp.answer.includes(PLAYOUT), 'the answer carries playout-delay the offer did not have');
    noPageErrors(page);
    await page.close();
  }],

  ['l. GStreamer webrtcbin decodes the avatar', async () => {
    // Debian's GStreamer 1.22 through Debian's python3 and python3-gi (scripts/test.sh installs
    // them; PATH's python3 may be one without `gi`). gst_viewer.py offers recvonly H.264, decodes
    // for 3 s after the first frame and prints one JSON line; it exits 2 naming the apt package
    // when a module or element is missing, and 1 when fewer than 60 frames were decoded.
    const py = env.PORTCAST_E2E_GST_PYTHON || '/usr/bin/python3';
    const ws = PAGE.replace(/^http/, 'ws').replace(/\/$/, '');
    // --audio: webrtcbin's max-bundle offer has the Opus m-line at port 0 with a=bundle-only.
    const args = [path.join(__dirname, 'gst_viewer.py'), ws, '--seconds', '3', '--timeout', '10',
      '--check', '--audio', '--session', rid('l'), ...(MODE === 'loopback' ? ['--loopback-only'] : [])];
    // --timeout 10 plus at most 5 s of teardown (its own watchdog), then this.
    const { code, stdout, lastErr, spawnError, report } = await runViewer(py, args, 16000);
    check(!spawnError, `cannot run ${py} (${spawnError && spawnError.message}): apt-get install`
      + ' python3-gi gir1.2-gst-plugins-bad-1.0 gir1.2-soup-3.0 gstreamer1.0-plugins-bad'
      + ' gstreamer1.0-nice, or set PORTCAST_E2E_GST_PYTHON');
    console.log(`    gst: ${stdout}`);
    if (lastErr[0]) console.log(`    gst stderr: ${lastErr.join(' | ')}`);
    check(code === 0, `the GStreamer viewer failed (exit ${code}): ${lastErr[lastErr.length - 1]}`);
    check(report.audio_buffers > 0, `webrtcbin decoded no audio (its bundle-only m-line): ${stdout}`);
  }],

  ['m. Firefox ESR without OpenH264 decodes VP8', async () => {
    // Debian's firefox-esr (scripts/test.sh installs it) has no OpenH264 plugin and cannot fetch
    // one: its offer has VP8, VP9 and AV1 and no H.264, so the daemon answers VP8 from the
    // avatar's VP8 encoder. firefox_viewer.js drives it over WebDriver BiDi (puppeteer-core),
    // prints one JSON line, exits 1 below 60 frames and 2 when Firefox cannot run.
    const args = [path.join(__dirname, 'firefox_viewer.js'), PAGE, '--frames', '60', '--timeout', '25',
      '--session', rid('m')];
    // --timeout 25 plus its own teardown (it ends within --timeout + 10 s), then this.
    const { code, stdout, lastErr, spawnError, report } = await runViewer(process.execPath, args, 37000);
    check(!spawnError, `cannot run firefox_viewer.js: ${spawnError && spawnError.message}`);
    console.log(`    firefox: ${stdout}`);
    if (code !== 0) console.log(`    firefox stderr: ${lastErr.join(' | ')}`);
    check(code === 0, `the Firefox viewer failed (exit ${code}): ${lastErr[lastErr.length - 1]}`);
    check(report.codec === 'video/VP8', `Firefox decoded ${report.codec}, want video/VP8`);
    check(!(report.offer_codecs || []).some((c) => /h264/i.test(c)),
      `Firefox offered H.264 (${report.offer_codecs}): it has OpenH264 here, so VP8 is not what this proves`);
    check(report.width === WIDTH && report.height === HEIGHT, `Firefox picture ${report.width}x${report.height}`);
  }],

  ['n. standard WHEP players from npm (whip-whep, @eyevinn/webrtc-player) play and DELETE', async () => {
    // whep_player.js loads each client as shipped in node_modules into a page of its own origin
    // (so every POST/DELETE/PATCH is CORS-preflighted), plays /whep/test-pattern, stops the
    // client (which sends DELETE) and prints one JSON line; exit 0 needs >= 60 frames and the DELETE.
    for (const client of ['whip-whep', 'eyevinn']) {
      const args = [path.join(__dirname, 'whep_player.js'), new URL('/whep/test-pattern', PAGE).href,
        '--frames', '60', '--timeout', '20', '--client', client];
      const { code, stdout, lastErr, report } = await runViewer(process.execPath, args, 32000);
      console.log(`    ${client}: ${stdout}`);
      check(code === 0, `the ${client} WHEP player failed (exit ${code}): ${lastErr.join(' | ')}`);
      check(/h264/i.test(report.codec || ''), `${client} decoded ${report.codec}`);
      check(report.deleted === true, `${client} sent no DELETE`);
      check(/^\/whep\/sessions\//.test(report.location || ''), `${client} Location ${report.location}`);
    }
    // Every WHEP session is gone (DELETE, or the players' own DTLS close before it).
    const metrics = await (await fetch(new URL('/metrics', PAGE), { signal: AbortSignal.timeout(5000) })).text();
    const live = Number((metrics.match(/^portcast_whep_sessions (\d+)/m) || [])[1]);
    check(live === 0, `portcast_whep_sessions ${live} after both players stopped`);
  }],

  ['o. with UDP blocked, Chromium plays over ICE-TCP through the signaling port; with UDP open it picks UDP', async () => {
    // Only in netns mode: the client namespace's own firewall drops its UDP (loopback mode
    // shares one namespace with the daemon). The NAT box forwards TCP 10110 only, the port the
    // answer's passive TCP candidate names (run.sh starts the daemon with --ice-tcp-public-port 10110).
    if (MODE !== 'netns') { console.log('    skipped: needs the client namespace (netns mode)'); return; }
    const udpOpen = await openPage({ session: rid('o'), autoconnect: '1' });
    const open = await waitFrames(udpOpen, 30, 20000);
    const tcpLine = (await udpOpen.evaluate(() => window.portcastSdp.answer)).split('\r\n')
      .find((l) => / tcp /i.test(l) && /a=candidate/.test(l));
    console.log(`    UDP open: ${open.candidate_protocol} ${open.remote_candidate}; answer's TCP candidate: ${tcpLine}`);
    check(open.candidate_protocol === 'udp', `with UDP open the pair is ${open.candidate_protocol}`);
    check(tcpLine && / tcptype passive/.test(tcpLine) && tcpLine.includes(`${PUBLIC_IP} 10110 typ host`),
      `the answer has no passive TCP candidate at ${PUBLIC_IP}:10110: ${tcpLine}`);
    await udpOpen.close();
    const block = spawnSync('iptables', ['-w', '-A', 'OUTPUT', '-p', 'udp', '-j', 'DROP']);
    check(block.status === 0, `iptables (client namespace) failed: ${block.stderr}`);
    try {
      const page = await openPage({ session: rid('o'), autoconnect: '1' });
      const t0 = Date.now();
      const s = await waitFrames(page, 60, 25000);
      const g = await page.evaluate(() => window.portcastTimings);
      console.log(`    UDP blocked: ${s.candidate_protocol} ${s.local_candidate} -> ${s.remote_candidate},`
        + ` ${s.frames_decoded} frames, ${s.width}x${s.height}, first frame ${(g.firstFrame - g.connectClicked).toFixed(0)} ms`
        + ` after connect (${Date.now() - t0} ms to 60 frames)`);
      check(s.candidate_protocol === 'tcp', `with UDP blocked the pair is ${s.candidate_protocol}`);
      check(s.remote_candidate === `${PUBLIC_IP}:10110`, `remote candidate ${s.remote_candidate}`);
      noPageErrors(page);
      await page.close();
    } finally {
      spawnSync('iptables', ['-w', '-D', 'OUTPUT', '-p', 'udp', '-j', 'DROP']);
    }
  }],

  ['p. on a 600 kbit/s link the lone viewer\'s estimate caps a 1500 kbit/s encoder and the picture keeps moving', async () => {
    // Only in netns mode: the NAT box's link toward the client drains at 600 kbit/s (tc tbf,
    // a 100 ms queue) from before the page opens. The renderer (talker.py --busy) has the
    // daemon encode 640x360 with a noisy corner at 1500 kbit/s: uncapped, 2.5x what the link
    // carries (measured with --bandwidth-estimation off in the glass bench: nothing decodes).
    if (MODE !== 'netns') { console.log('    skipped: needs the NAT box namespace (netns mode)'); return; }
    check(NAT_NS && INGEST_SOCKET, 'no PORTCAST_E2E_NAT_NS or ingest socket (run it through run.sh)');
    const talker = startTalker('busy', ['--busy', '--bitrate-kbps', '1500']);
    const tc = (...args) => spawnSync('ip', ['netns', 'exec', NAT_NS, 'tc', 'qdisc', ...args, 'dev', 'vp', 'root',
      ...(args[0] === 'add' ? ['tbf', 'rate', '600kbit', 'burst', '16kb', 'latency', '100ms'] : [])]);
    try {
      await talker.next(/^ready$/, 15000);
      const added = tc('add');
      check(added.status === 0, `tc qdisc add (NAT box) failed: ${added.stderr}`);
      const logFrom = readLog().length;
      const page = await openPage({ session: rid('p'), avatar: 'busy', autoconnect: '1' });
      await waitFrames(page, 0, 20000);
      await sleep(5000); // the estimate settles
      const [{ d, secs, last, fps, kbits }] = await inboundOver([page], 10000);
      const caps = [...readLog().slice(logFrom).matchAll(/avatar busy H264: encoder cap (\d+) kbit\/s/g)]
        .map((m) => Number(m[1]));
      console.log(`    5-15 s after the first frame: ${fps.toFixed(1)} fps, ${kbits.toFixed(0)} kbit/s,`
        + ` ${d('freezeCount')} freezes, ${d('packetsLost')} lost, ${d('nackCount')} NACKs;`
        + ` ${last.frameWidth}x${last.frameHeight}; encoder caps (kbit/s): ${caps.join(' ')}`);
      check(caps.length > 0 && Math.min(...caps) < 600, `the encoder was never capped under the link: ${caps}`);
      check(fps >= 20, `${fps.toFixed(1)} fps on the capped link`);
      // Freezes: 0 in most runs here, 2 in two (a probe overshot the link); with estimation off
      // the page decodes ~7 frames in all and fails on fps, so the bound leaves room.
      check(d('freezeCount') <= 5, `${d('freezeCount')} freezes in ${secs.toFixed(0)} s`);
      noPageErrors(page);
      await page.close();
    } finally {
      tc('del');
      await talker.stop();
    }
  }],

  ['q. with 5 % loss toward the viewer and a 40 ms round trip, NACK and retransmission keep the picture moving', async () => {
    // Only in netns mode. In the NAT box, delay_forwarder.py takes the media ports over from the
    // DNAT rule (a nat PREROUTING ACCEPT ahead of it, for new flows only): 20 ms each way, and
    // 5 % of the datagrams toward the client dropped at random (this kernel has no netem).
    // Busy 640x360 at 1500 kbit/s from talker.py, so every picture spans several packets.
    if (MODE !== 'netns') { console.log('    skipped: needs the NAT box namespace (netns mode)'); return; }
    check(NAT_NS && INGEST_SOCKET, 'no PORTCAST_E2E_NAT_NS or ingest socket (run it through run.sh)');
    const talker = startTalker('lossy', ['--busy', '--bitrate-kbps', '1500']);
    const fwd = startLines('delay_forwarder.py', 'ip', ['netns', 'exec', NAT_NS, 'python3',
      path.join(__dirname, 'delay_forwarder.py'), '--listen-ip', PUBLIC_IP, '--ports', `${UDP_MIN}-${UDP_MAX}`,
      '--target-ip', '198.18.2.2', '--delay-ms', '20', '--loss', LOSS, '--seconds', String(LOSS_WINDOW_S + 80)]);
    const rule = ['PREROUTING', '-d', PUBLIC_IP, '-p', 'udp', '--dport', `${UDP_MIN}:${UDP_MAX}`, '-j', 'ACCEPT'];
    const ipt = (...op) => spawnSync('ip', ['netns', 'exec', NAT_NS, 'iptables', '-w', '-t', 'nat', ...op, ...rule]);
    let added = false;
    try {
      await Promise.all([talker.next(/^ready$/, 15000), fwd.next(/^ready$/, 10000)]);
      const r = ipt('-I');
      check(r.status === 0, `iptables -t nat (NAT box) failed: ${r.stderr}`);
      added = true;
      const page = await openPage({ session: rid('q'), avatar: 'lossy', autoconnect: '1' });
      await waitFrames(page, 0, 20000);
      await sleep(3000);
      const [{ d, secs, fps }] = await inboundOver([page], LOSS_WINDOW_S * 1000);
      const s = await stats(page);
      const lostPct = (100 * d('packetsLost')) / Math.max(1, d('packetsReceived') + d('packetsLost'));
      console.log(`    3-${3 + LOSS_WINDOW_S} s after the first frame: ${fps.toFixed(1)} fps, ${d('freezeCount')} freezes, RTT ${s.rtt_ms} ms,`
        + ` ${d('packetsLost')} (${lostPct.toFixed(1)} %) of media packets lost (RTX resends them on its own SSRC), ${d('nackCount')} NACKs,`
        + ` ${d('retransmittedPacketsReceived')} retransmissions received, ${d('pliCount')} PLIs`);
      check(s.rtt_ms >= 30, `RTT ${s.rtt_ms} ms: is the forwarder in the path?`);
      check(d('nackCount') > 0, 'the viewer sent no NACK: was anything lost?');
      check(d('retransmittedPacketsReceived') > 0, 'nothing was retransmitted');
      // Issue 15's figure. 26.5 fps when the one-slice encoder skipped pictures to hold its
      // bitrate (stop 37; it no longer skips); 30.0 in every window since.
      check(fps >= 28, `${fps.toFixed(1)} fps with 5 % loss`);
      // Each NACKed packet is resent three times (vendor/str0m/PORTCAST.md): Chromium asks again
      // for a packet whose resend was lost only after 100 ms, a freeze. One copy per loss
      // measured ~0.9 retransmissions received per packet lost (probe padding included), two
      // 2.0, three 2.9-3.0 (60 s windows).
      const lost = d('packetsLost');
      check(d('retransmittedPacketsReceived') >= 2 * lost,
        `${d('retransmittedPacketsReceived')} retransmissions for ${lost} packets lost: each should come three times`);
      // Measured with three copies: 0-2 freezes a minute, mostly 0 (two copies 0-4, one copy
      // 8-11); without retransmission every loss (~8 a second) would wait for a keyframe: PLIs
      // and a freeze each. The bound leaves room for this link's own variation.
      check(d('pliCount') <= 2, `${d('pliCount')} PLIs: lost packets were not recovered`);
      check(d('freezeCount') <= Math.ceil((3 * LOSS_WINDOW_S) / 10), `${d('freezeCount')} freezes in ${secs.toFixed(0)} s`);
      noPageErrors(page);
      await page.close();
    } finally {
      if (added) ipt('-D');
      const ended = await fwd.stop();
      const done = await fwd.next(/^done .*/, 1000).catch(() => null);
      console.log(`    forwarder ${ended}: ${done ? done[0] : 'said nothing at its end'}`);
      await talker.stop();
    }
  }],

  ['r. two viewers of one avatar, one on a 600 kbit/s link: it moves to a lower rendition, the other keeps the full picture', async () => {
    // Only in netns mode. Both pages watch one busy 640x360 avatar at 1500 kbit/s; then the NAT
    // box's link toward the first page's UDP port alone drains at 600 kbit/s (tc htb class,
    // 100 ms byte queue). With two viewers the avatar's own encoder keeps its bitrate (the thin
    // link never lowers the other viewer's picture) and the thin page is moved, at a keyframe,
    // to a lower rendition of the ladder (the daemon's default: 360p at 600k, 180p at 150k; at
    // 640x360 the 360p rung is the source's size at 600 kbit/s, which this link cannot carry).
    if (MODE !== 'netns') { console.log('    skipped: needs the NAT box namespace (netns mode)'); return; }
    check(NAT_NS && INGEST_SOCKET, 'no PORTCAST_E2E_NAT_NS or ingest socket (run it through run.sh)');
    const talker = startTalker('pair', ['--busy', '--bitrate-kbps', '1500']);
    const tc = (...args) => spawnSync('ip', ['netns', 'exec', NAT_NS, 'tc', ...args]);
    try {
      await talker.next(/^ready$/, 15000);
      const thin = await openPage({ session: rid('r-thin'), avatar: 'pair', autoconnect: '1' });
      const wide = await openPage({ session: rid('r-wide'), avatar: 'pair', autoconnect: '1' });
      const [st] = await Promise.all([waitFrames(thin, 0, 20000), waitFrames(wide, 0, 20000)]);
      const port = Number(String(st.local_candidate).split(':').pop());
      check(port > 0, `the thin page's local candidate has no port: ${st.local_candidate}`);
      for (const args of [
        ['qdisc', 'add', 'dev', 'vp', 'root', 'handle', '1:', 'htb', 'default', '10'],
        ['class', 'add', 'dev', 'vp', 'parent', '1:', 'classid', '1:10', 'htb', 'rate', '1gbit'],
        ['class', 'add', 'dev', 'vp', 'parent', '1:', 'classid', '1:20', 'htb', 'rate', '600kbit', 'ceil', '600kbit'],
        ['qdisc', 'add', 'dev', 'vp', 'parent', '1:20', 'handle', '20:', 'bfifo', 'limit', '7500'],
        ['filter', 'add', 'dev', 'vp', 'parent', '1:', 'protocol', 'ip', 'u32',
          'match', 'ip', 'dport', String(port), '0xffff', 'flowid', '1:20'],
      ]) {
        const r = tc(...args);
        check(r.status === 0, `tc ${args.join(' ')} (NAT box) failed: ${r.stderr}`);
      }
      const logFrom = readLog().length;
      const capped = Date.now();
      // The page shows the rendition the server says it sends (a `rendition` message).
      await thin.waitForFunction(() => window.portcastStats && window.portcastStats.rendition !== 'top',
        null, { timeout: 15000, polling: 200 }).catch(() => {});
      const thinIs = await thin.evaluate(() => window.portcastStats.rendition);
      const switchedAfter = (Date.now() - capped) / 1000;
      check(thinIs !== 'top', `the thin page is still on the avatar's own picture 15 s after its link thinned`);
      await sleep(2000);
      // The thin page's rendition and picture height through the window, every 500 ms: the ladder
      // may try the next rendition up after a probe and come back within a few seconds (a CI run
      // caught the thin page on such a try of 360p, its estimate read 1015 kbit/s on this
      // 600 kbit/s link, at the window's end), so the window is judged by where the page spent
      // it, not by its last moment.
      const seen = [];
      let sampling = true;
      const sampler = (async () => {
        while (sampling) {
          // null while the page has no stats (it resets them when its connection drops).
          const now = await thin.evaluate(() => window.portcastStats
            && { rendition: window.portcastStats.rendition, height: window.portcastStats.height });
          if (now) seen.push(now);
          await sleep(500);
        }
      })();
      const [t, w] = (await inboundOver([thin, wide], 10000)).map((v) => ({
        fps: v.fps, kbits: v.kbits, freezes: v.d('freezeCount'), lost: v.d('packetsLost'),
        size: `${v.last.frameWidth}x${v.last.frameHeight}`, height: v.last.frameHeight }));
      sampling = false;
      await sampler;
      const lower = seen.filter((x) => x.height !== null && x.height < 360).length;
      const onTop = seen.filter((x) => x.rendition === 'top').length;
      const thinNow = await thin.evaluate(() => window.portcastStats.rendition);
      const wideIs = await wide.evaluate(() => window.portcastStats.rendition);
      const caps = [...readLog().slice(logFrom).matchAll(/avatar pair H264: encoder cap (\d+) kbit\/s/g)];
      console.log(`    thin (port ${port} capped): on ${thinIs} ${switchedAfter.toFixed(1)} s after the cap, then`
        + ` ${thinNow} ${t.size}: ${t.fps.toFixed(1)} fps, ${t.kbits.toFixed(0)} kbit/s, ${t.freezes} freezes,`
        + ` ${t.lost} lost; wide (${wideIs} ${w.size}): ${w.fps.toFixed(1)} fps, ${w.kbits.toFixed(0)} kbit/s,`
        + ` ${w.freezes} freezes, ${w.lost} lost; encoder caps while both watched: ${caps.length};`
        + ` thin below 360 lines in ${lower} of ${seen.length} samples (${seen.map((x) => x.height).join(' ')}), on top in ${onTop}`);
      check(onTop === 0 && thinNow !== 'top', `the thin page went back to the avatar's own picture: ${onTop} samples, now ${thinNow}`);
      // A third: the page's stats trail a switch by up to a second, the ladder may hold 360p
      // (600 kbit/s, this link's whole rate) for several seconds while the estimate hovers at the
      // link's rate (measured: 6.4 s once, 40 % of the window below 360 lines) and may try it
      // again later; a page that never settles below 360 lines fails.
      check(seen.length >= 10 && lower >= seen.length / 3,
        `the thin page decoded a lower rendition in only ${lower} of ${seen.length} samples (now ${t.size})`);
      check(t.fps >= 20, `the thin page decoded ${t.fps.toFixed(1)} fps of ${thinNow}`);
      check(caps.length === 0, `the shared encoder was capped while two watched: ${caps.map((m) => m[0])}`);
      check(wideIs === 'top' && w.height === 360, `the wide page left the full picture: ${wideIs} ${w.size}`);
      check(w.kbits >= 1000, `the wide page got ${w.kbits.toFixed(0)} kbit/s of a 1500 kbit/s encoder`);
      check(w.fps >= 25, `the wide page decoded ${w.fps.toFixed(1)} fps`);
      check(w.freezes <= 1, `the wide page froze ${w.freezes} times`);
      noPageErrors(wide);
      noPageErrors(thin);
      await Promise.all([thin.close(), wide.close()]);
    } finally {
      tc('qdisc', 'del', 'dev', 'vp', 'root');
      await talker.stop();
    }
  }],
];

let interrupted = false;
for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, () => {
    interrupted = true;
    console.log(`interrupted (${sig})`);
    setTimeout(() => process.exit(130), 3000).unref();
    (browser ? browser.close() : Promise.resolve()).catch(() => {}).finally(() => process.exit(130));
  });
}

(async () => {
  const hardStop = setTimeout(() => {
    console.error(`e2e.js: overall budget of ${TOTAL_BUDGET_MS} ms exceeded`);
    process.exit(3);
  }, TOTAL_BUDGET_MS);
  console.log(`mode: ${MODE}  page: ${PAGE}  public: ${PUBLIC_IP}:${UDP_MIN}-${UDP_MAX}  expect ${WIDTH}x${HEIGHT}`);
  browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS, timeout: 30000 });
  console.log(`browser: Chromium ${browser.version()}`);
  const only = env.PORTCAST_E2E_ONLY ? env.PORTCAST_E2E_ONLY.split(',') : null;
  let passed = 0, failed = 0;
  for (const [name, fn] of scenarios) {
    if (interrupted) break;
    if (only && !only.includes(name[0])) continue;
    console.log(`--- ${name}`);
    const t0 = Date.now();
    try {
      await fn();
      passed++;
      console.log(`PASS ${name} (${Date.now() - t0} ms)`);
    } catch (e) {
      if (interrupted) break;
      failed++;
      console.log(`FAIL ${name}: ${e instanceof Failure ? e.message : e.stack}`);
    }
    // A failed scenario must not leave sessions streaming into the next one.
    await Promise.all([...openPages].map((p) => p.close().catch(() => {})));
  }
  await browser.close().catch(() => {});
  clearTimeout(hardStop);
  console.log(`${passed} passed, ${failed} failed${interrupted ? ' (interrupted)' : ''}`);
  process.exit(interrupted ? 130 : failed ? 1 : 0);
})().catch(async (e) => {
  console.log(`FAIL setup: ${e.stack}`);
  if (browser) await browser.close().catch(() => {});
  console.log('0 passed, 1 failed');
  process.exit(1);
});
