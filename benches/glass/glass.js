// Glass-to-glass bench driver: headless Chromium opens portcast's viewer page, served by the
// server under test, and measures what its viewer sees. benches/glass/run.sh runs it inside
// the client namespace of the NAT topology, once per server; `portcast-bench glass` runs that.
//
// Per server, one JSON object on stdout's last line:
//   glass        capture -> display per displayed frame over GLASS_SECONDS (the page's own
//                window.portcastGlass: the test pattern's capture-clock band read back in
//                requestVideoFrameCallback, same machine clock), p50/p95/p99/max in ms;
//   split        the same frames cut at Chromium's receiveTime and presentationTime;
//   inbound      Chromium's getStats over the same window (inbound-rtp video, deltas):
//                jitter buffer, assembly, decode and processing delay per frame, fps, kbit/s,
//                losses, freezes and their seconds, NACKs, PLIs, FIRs, keyframes decoded;
//   daemon       (when GLASS_METRICS is set) portcast's own encode and frame-to-packet means
//                over the same window, from its /metrics histograms, and its keyframe requests
//                and bandwidth probes in the window;
//   first_frame  GLASS_PAGES fresh pages: each step from the Connect to the first frame shown.
'use strict';
const path = require('path');

const env = process.env;
const NODE_MODULES = env.GLASS_NODE_MODULES || path.join(__dirname, '../../tests/e2e/node_modules');
const { chromium } = require(path.join(NODE_MODULES, 'playwright-core'));

const NAME = env.GLASS_NAME || 'server';
const PAGE = env.GLASS_PAGE; // e.g. http://198.18.1.1:10110/
const SECONDS = Number(env.GLASS_SECONDS || 30);
const PAGES = Number(env.GLASS_PAGES || 10);
const METRICS = env.GLASS_METRICS || ''; // portcast's /metrics URL, or empty
const CHROMIUM = env.GLASS_CHROMIUM || '/usr/bin/chromium';
// The window starts once the page decoded more than WARMUP_FRAMES frames, WARMUP_SECS later
// (a capped link: 0 frames and 5 s, however few frames came by then).
const WARMUP_FRAMES = Number(env.GLASS_WARMUP_FRAMES || 30);
const WARMUP_SECS = Number(env.GLASS_WARMUP_SECS || 0);
// A capped link lifted at the window's start (portcast-lift): the command that lifts it, and the
// encoder bitrate (sum of portcast_source_bitrate_bps) that counts as back on top.
const LIFT_CMD = env.GLASS_LIFT_CMD || '';
const TOP_BPS = Number(env.GLASS_TOP_BPS || 2500000);
// portcast-shared-capped: an escort page watches the same avatar on the full link, then the
// measured page's link alone is capped by GLASS_CAP_PORT_CMD, its `{port}` replaced by the
// measured page's UDP port; the result adds the escort's figures over the same window and how
// long after the cap the measured page was moved off the top rendition.
const CAP_PORT_CMD = env.GLASS_CAP_PORT_CMD || '';
if (!PAGE || !(SECONDS > 0) || !(PAGES >= 0)) {
  console.error('glass.js: set GLASS_PAGE, GLASS_SECONDS > 0 and GLASS_PAGES >= 0 (run it through run.sh)');
  process.exit(2);
}

const ARGS = [
  '--headless=new', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
  '--autoplay-policy=no-user-gesture-required',
  `--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE ${new URL(PAGE).hostname}`,
];
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
// p-th percentile (0-100), nearest rank, as the page computes it.
const pct = (xs, p) => { if (!xs.length) return null; const s = [...xs].sort((a, b) => a - b);
  return s[Math.max(0, Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1))]; };
const round = (x, d = 1) => (x === null || !Number.isFinite(x) ? null : Number(x.toFixed(d)));
const url = (query) => `${PAGE}${PAGE.endsWith('/') ? '' : '/'}?${new URLSearchParams(query)}`;
const rid = (tag) => `glass-${tag}-${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`;

let browser;

async function open(query) {
  const ctx = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await ctx.newPage();
  page.on('close', () => ctx.close().catch(() => {}));
  await page.goto(url(query), { timeout: 10000 });
  return page;
}

// Sum and count of every series of histogram `name` in a Prometheus text page (sum: also a gauge's
// or a counter's total over its series).
function histogram(text, name) {
  let sum = 0, count = 0;
  for (const line of text.split('\n')) {
    const m = line.match(/^(\S+?)(?:\{[^}]*\})?\s+(\S+)$/);
    if (!m) continue;
    if (m[1] === `${name}_sum` || m[1] === name) sum += Number(m[2]);
    else if (m[1] === `${name}_count`) count += Number(m[2]);
  }
  return { sum, count };
}

// The daemon's figures, or null when /metrics does not answer within 5 s: on a capped link
// that the daemon floods (portcast-capped-off) the scrape waits behind the media and may
// never arrive, which is the point of that server, not a failed measurement.
async function metrics() {
  if (!METRICS) return null;
  let text;
  try {
    const res = await fetch(METRICS, { signal: AbortSignal.timeout(5000) });
    text = await res.text();
  } catch (e) {
    console.error(`glass.js: ${NAME}: /metrics: ${e.message}`);
    return null;
  }
  return { encode: histogram(text, 'portcast_encode_seconds'),
    f2p: histogram(text, 'portcast_frame_to_packet_seconds'),
    // What the encoders aim at now (the estimate's cap, or the configured bitrate).
    bitrate_bps: histogram(text, 'portcast_source_bitrate_bps').sum,
    // Counters, for what happened in the window (keyframes asked and sent, probes of the link).
    keyframe_requests: histogram(text, 'portcast_keyframe_requests_total').sum,
    probes: histogram(text, 'portcast_bandwidth_probes_total').sum };
}
const meanMs = (a, b, key) => (b[key].count > a[key].count
  ? round(((b[key].sum - a[key].sum) / (b[key].count - a[key].count)) * 1000, 2) : null);

const inboundOf = (page) => page.evaluate(() => JSON.parse(JSON.stringify(window.portcastVideoInbound || {})));

async function glass() {
  let escort = null, escort0 = null, shared = null;
  if (CAP_PORT_CMD) {
    escort = await open({ session: rid('e'), autoconnect: '1' });
    await escort.waitForFunction((n) => window.portcastStats && window.portcastStats.frames_decoded > n,
      WARMUP_FRAMES, { timeout: 30000, polling: 200 });
  }
  const page = await open({ session: rid('g'), autoconnect: '1' });
  if (CAP_PORT_CMD) {
    await page.waitForFunction(() => window.portcastStats && window.portcastStats.frames_decoded > 0,
      null, { timeout: 30000, polling: 100 });
    const local = await page.evaluate(() => window.portcastStats.local_candidate);
    const port = Number(String(local).split(':').pop());
    if (!(port > 0)) throw new Error(`${NAME}: the measured page's candidate has no port: ${local}`);
    const r = require('child_process').spawnSync('sh', ['-c', CAP_PORT_CMD.replaceAll('{port}', String(port))]);
    if (r.status !== 0) throw new Error(`${NAME}: capping port ${port} failed: ${r.stderr}`);
    const t0 = Date.now();
    shared = { seconds_to_lower: null, rendition: null };
    await page.waitForFunction(() => window.portcastStats && window.portcastStats.rendition !== 'top',
      null, { timeout: 15000, polling: 50 }).then(() => {
      shared.seconds_to_lower = round((Date.now() - t0) / 1000, 1);
    }).catch(() => {});
  }
  try {
    await page.waitForFunction((n) => window.portcastStats && window.portcastStats.frames_decoded > n,
      WARMUP_FRAMES, { timeout: 30000, polling: 200 });
  } catch (e) {
    const what = `${NAME}: no video within 30 s: ${JSON.stringify(await page.evaluate(() =>
      ({ stats: window.portcastStats, error: window.portcastError }))) }`;
    // GLASS_MAY_STALL=1 (portcast-capped-off): measure the window anyway; zeros are the result.
    if (env.GLASS_MAY_STALL !== '1') throw new Error(what);
    console.error(`glass.js: ${what}; measuring anyway`);
  }
  const mark = () => page.evaluate(() => {
    const g = window.portcastGlass;
    return { presented: g.presented, measured: g.measured, unreadable: g.unreadable, n: g.all.length,
      nSplit: g.split.length,
      inbound: JSON.parse(JSON.stringify(window.portcastVideoInbound || {})) };
  });
  await sleep(WARMUP_SECS * 1000);
  const m0 = await metrics();
  const a = await mark();
  if (escort) escort0 = await inboundOf(escort);
  let lift = null;
  if (LIFT_CMD) {
    const t0 = Date.now();
    const r = require('child_process').spawnSync('sh', ['-c', LIFT_CMD]);
    if (r.status !== 0) throw new Error(`${NAME}: ${LIFT_CMD} failed: ${r.stderr}`);
    // The instant, to line up with the daemon's log (its cap moves are debug lines).
    console.error(`${NAME}: link lifted at ${new Date(t0).toISOString()}`);
    lift = { seconds_to_top: null, top_bps: TOP_BPS };
    while (Date.now() - t0 < SECONDS * 1000) {
      if (((await metrics()) || {}).bitrate_bps >= TOP_BPS) {
        lift.seconds_to_top = round((Date.now() - t0) / 1000, 1);
        break;
      }
      await sleep(250);
    }
    await sleep(Math.max(0, SECONDS * 1000 - (Date.now() - t0)));
  } else {
    await sleep(SECONDS * 1000);
  }
  const b = await mark();
  const m1 = await metrics();
  const all = await page.evaluate(([from, to]) => window.portcastGlass.all.slice(from, to), [a.n, b.n]);
  const split = await page.evaluate(([from, to]) => window.portcastGlass.split.slice(from, to),
    [a.nSplit, b.nSplit]);
  const part = (i) => { const xs = split.map((x) => x[i]);
    return { p50: pct(xs, 50), p95: pct(xs, 95), p99: pct(xs, 99) }; };
  const s = await page.evaluate(() => window.portcastStats);
  if (escort) {
    const e1 = await inboundOf(escort);
    const de = (k) => (e1[k] || 0) - (escort0[k] || 0);
    const es = (e1.timestamp - escort0.timestamp) / 1000;
    shared.rendition = s && s.rendition;
    shared.escort = { rendition: await escort.evaluate(() => window.portcastStats.rendition),
      width: e1.frameWidth, height: e1.frameHeight, fps: round(de('framesDecoded') / es, 1),
      kbit_s: round((de('bytesReceived') * 8) / es / 1000, 0), freezes: de('freezeCount') };
    await escort.close();
  }
  await page.close();
  const d = (k) => (b.inbound[k] || 0) - (a.inbound[k] || 0);
  const per = (k, n) => (d(n) > 0 ? round((d(k) / d(n)) * 1000, 2) : null);
  const secs = (b.inbound.timestamp - a.inbound.timestamp) / 1000;
  return {
    // GLASS_SERIES=1: every frame's capture -> display in display order (where the spikes are).
    ...(env.GLASS_SERIES === '1' ? { series: all.map((x) => round(x, 0)) } : {}),
    ...(lift ? { lift } : {}),
    ...(shared ? { shared } : {}),
    glass: { presented: b.presented - a.presented, measured: b.measured - a.measured,
      unreadable: b.unreadable - a.unreadable, p50: pct(all, 50), p95: pct(all, 95), p99: pct(all, 99),
      max: pct(all, 100), mean: round(all.reduce((x, y) => x + y, 0) / Math.max(1, all.length), 1) },
    // The same frames cut at Chromium's own timestamps (requestVideoFrameCallback metadata).
    split: { frames: split.length, capture_to_received: part(0), received_to_compositor: part(1),
      compositor_to_display: part(2) },
    inbound: {
      width: b.inbound.frameWidth, height: b.inbound.frameHeight, seconds: round(secs, 1),
      fps: round(d('framesDecoded') / secs, 1), kbit_s: round((d('bytesReceived') * 8) / secs / 1000, 0),
      jitter_buffer_ms: per('jitterBufferDelay', 'jitterBufferEmittedCount'),
      jitter_buffer_target_ms: per('jitterBufferTargetDelay', 'jitterBufferEmittedCount'),
      assembly_ms: per('totalAssemblyTime', 'framesAssembledFromMultiplePackets'),
      decode_ms: per('totalDecodeTime', 'framesDecoded'),
      processing_ms: per('totalProcessingDelay', 'framesDecoded'),
      frames_decoded: d('framesDecoded'), frames_dropped: d('framesDropped'), packets_lost: d('packetsLost'),
      freezes: d('freezeCount'), freeze_s: round(d('totalFreezesDuration'), 2), rtt_ms: s && s.rtt_ms,
      // What the viewer asked for and got: loss recovery and keyframes (a freeze's usual story).
      nacks: d('nackCount'), plis: d('pliCount'), firs: d('firCount'), keyframes_decoded: d('keyFramesDecoded'),
    },
    daemon: m0 && m1 ? { encode_ms: meanMs(m0, m1, 'encode'), frame_to_packet_ms: meanMs(m0, m1, 'f2p'),
      encoder_kbit_s_end: round(m1.bitrate_bps / 1000, 0),
      keyframe_requests: m1.keyframe_requests - m0.keyframe_requests, probes: m1.probes - m0.probes } : null,
  };
}

async function firstFrames() {
  const runs = [];
  for (let i = 0; i < PAGES; i++) {
    const page = await open({ session: rid(`f${i}`), autoconnect: '1' });
    try {
      await page.waitForFunction(() => window.portcastTimings.firstFrame !== null, null,
        { timeout: 15000, polling: 10 });
    } catch (e) {
      throw new Error(`${NAME}: page ${i + 1} showed no frame within 15 s`);
    }
    const t = await page.evaluate(() => window.portcastTimings);
    await page.close();
    const step = (a, b) => (t[a] === null || t[b] === null ? null : round(t[b] - t[a], 1));
    runs.push({ click_to_ws_open: step('connectClicked', 'wsOpened'),
      ws_open_to_offer_sent: step('wsOpened', 'offerSent'), offer_to_answer: step('offerSent', 'answerReceived'),
      answer_to_connected: step('answerReceived', 'connected'),
      connected_to_first_frame: step('connected', 'firstFrame'),
      ws_open_to_first_frame: step('wsOpened', 'firstFrame') });
    await sleep(300); // the server ends the session before the next page opens
  }
  const p50 = {};
  for (const k of Object.keys(runs[0] || {})) p50[k] = pct(runs.map((r) => r[k]).filter((x) => x !== null), 50);
  return { pages: runs.length, p50, runs };
}

(async () => {
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ARGS, timeout: 30000 });
  let result;
  try {
    result = { name: NAME, chromium: browser.version(), ...(await glass()),
      first_frame: PAGES > 0 ? await firstFrames() : null };
  } finally {
    await browser.close().catch(() => {});
  }
  console.log(JSON.stringify(result));
})().catch((e) => {
  console.error(`glass.js: ${e.message}`);
  process.exit(1);
});
