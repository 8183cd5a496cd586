// A Firefox viewer of a portcast avatar: Debian's stock firefox-esr, headless, driven over
// WebDriver BiDi by puppeteer-core, opens the daemon's viewer page (autoconnect) and prints one
// JSON line: the codec Firefox decoded, frames decoded, picture size, the page's error, the
// video codecs Firefox offered and the one the daemon answered.
//
//     node tests/e2e/firefox_viewer.js http://127.0.0.1:9000/ --frames 60 --timeout 20
//
// Options: --session ID, --frames N (60), --timeout S (20: for everything up to the verdict),
// --query 'k=v&...' (extra page parameters, e.g. h264=0). Progress goes to stderr
// (PORTCAST_FF_DUMPIO=1 adds Firefox's own output). Exit: 0 when >= N frames were decoded,
// 1 when fewer or the page showed an error, 2 when Firefox or a module is missing or Firefox
// did not start. It ends by itself within --timeout + 10 s, and on SIGINT/SIGTERM, leaving no
// Firefox process and no profile behind (a SIGKILL leaves only the $TMPDIR/portcast-firefox-*
// folder: Firefox dies with it). Runs as root, and inside `ip netns exec`.
//
// Debian's Firefox has no OpenH264 plugin and cannot fetch one: its offer then carries VP8, VP9
// and AV1 but no H.264 (even though RTCRtpReceiver.getCapabilities('video') lists H.264).
'use strict';
const fs = require('fs');
const os = require('os');
const path = require('path');

const FIREFOX = process.env.PORTCAST_FF_BIN || '/usr/bin/firefox-esr';
const SETPRIV = '/usr/bin/setpriv';

const usage = 'usage: firefox_viewer.js PAGE_URL [--session ID] [--frames N] [--timeout S] [--query k=v&...]';
const opts = { session: `ff-${Math.random().toString(16).slice(2, 10)}`, frames: 60, timeout: 20, query: '' };
let pageArg = null;
for (let i = 2; i < process.argv.length; i++) {
  const a = process.argv[i], m = /^--(session|frames|timeout|query)$/.exec(a);
  if (m && i + 1 < process.argv.length) opts[m[1]] = process.argv[++i];
  else if (!a.startsWith('--') && !pageArg) pageArg = a;
  else { console.error(usage); process.exit(2); }
}
opts.frames = Number(opts.frames);
opts.timeout = Number(opts.timeout);
if (!pageArg || !(opts.frames >= 0) || !(opts.timeout > 0)) { console.error(usage); process.exit(2); }

const t0 = Date.now();
const deadline = t0 + opts.timeout * 1000;
const log = (msg) => console.error(`[firefox_viewer ${((Date.now() - t0) / 1000).toFixed(1)}s] ${msg}`);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

const result = { browser: null, codec: null, frames_decoded: 0, width: null, height: null, error: null,
  offer_codecs: [], answer_codec: null };
let printed = false;
let interrupted = null; // the signal that stopped the run
function finish(code) { // the one JSON line, once
  if (interrupted) result.error = { code: 'interrupted', message: interrupted + (result.error ? ` (after ${result.error.code})` : '') };
  if (!printed) { printed = true; process.stdout.write(`${JSON.stringify(result)}\n`); }
  return code;
}

let puppeteer;
try { puppeteer = require('puppeteer-core'); } catch (e) {
  log(`puppeteer-core is missing: run \`npm ci\` in ${__dirname} (${e.message.split('\n')[0]})`);
  result.error = { code: 'driver_missing', message: 'puppeteer-core missing: npm ci in tests/e2e' };
  process.exit(finish(2));
}
if (!fs.existsSync(FIREFOX)) {
  log(`no Firefox at ${FIREFOX}: apt-get install firefox-esr (or set PORTCAST_FF_BIN)`);
  result.error = { code: 'browser_missing', message: `${FIREFOX} missing: apt-get install firefox-esr` };
  process.exit(finish(2));
}

const url = new URL(pageArg);
url.searchParams.set('session', opts.session);
url.searchParams.set('autoconnect', '1');
for (const [k, v] of new URLSearchParams(opts.query)) url.searchParams.set(k, v);
const host = url.hostname.replace(/^\[|\]$/g, '');
const loopback = /^(127\.|localhost$|::1$)/.test(host);

// Profile and HOME both in one fresh folder, removed at exit: Firefox writes caches and
// font config under HOME, and as root HOME may be unwritable or shared with other runs.
const root = fs.mkdtempSync(path.join(os.tmpdir(), 'portcast-firefox-'));
const profile = path.join(root, 'profile'), home = path.join(root, 'home');
for (const d of [profile, home]) fs.mkdirSync(d);

const PREFS = {
  // The page autoconnects with no user gesture: let it play (muted video and Web Audio).
  'media.autoplay.default': 0, 'media.autoplay.blocking_policy': 0,
  // Host candidates as addresses, not mDNS names, so the stats show them.
  'media.peerconnection.ice.obfuscate_host_addresses': false,
  // A page with no camera/microphone permission gets candidates on the default route's
  // interface only, and never loopback ones: in a loopback-only namespace (no default route)
  // Firefox then gathers nothing and fails ICE at once. For a loopback page both are allowed,
  // as e2e.js grants Chromium the permission (measured: either pref alone gathers nothing).
  ...(loopback ? { 'media.peerconnection.ice.loopback': true,
    'permissions.default.camera': 1, 'permissions.default.microphone': 1 } : {}),
  // No phone-home (puppeteer's own defaults cover updates, search, shield, extensions).
  'network.connectivity-service.enabled': false, 'network.captive-portal-service.enabled': false,
  'app.update.enabled': false, 'app.update.auto': false, 'app.shield.optoutstudies.enabled': false,
  'datareporting.healthreport.uploadEnabled': false, 'datareporting.policy.dataSubmissionEnabled': false,
  'toolkit.telemetry.enabled': false, 'toolkit.telemetry.unified': false, 'toolkit.telemetry.server': '',
  'browser.safebrowsing.malware.enabled': false, 'browser.safebrowsing.phishing.enabled': false,
  'browser.safebrowsing.downloads.enabled': false, 'browser.safebrowsing.downloads.remote.enabled': false,
  'browser.safebrowsing.provider.mozilla.updateURL': '', 'extensions.systemAddon.update.enabled': false,
  'browser.newtabpage.activity-stream.feeds.topsites': false, 'browser.topsites.contile.enabled': false,
  'browser.newtabpage.activity-stream.feeds.section.topstories': false,
  'network.dns.disablePrefetch': true, 'network.prefetch-next': false,
  // Belt and braces: any HTTP(S) request for another host goes to a dead proxy on loopback
  // (port 9) instead of the network, with no direct retry for Firefox's own requests (which
  // otherwise look up the name in DNS: seen for puppeteer's dummy.test). Loopback hosts are
  // never proxied; the page's host is exempted. WebRTC's UDP does not use the proxy.
  'network.proxy.failover_direct': false, 'network.proxy.allow_bypass': false,
  'network.dns.localDomains': 'dummy.test', 'network.proxy.type': 1,
  'network.proxy.http': '127.0.0.1', 'network.proxy.http_port': 9,
  'network.proxy.ssl': '127.0.0.1', 'network.proxy.ssl_port': 9,
  'network.proxy.no_proxies_on': host,
};

// Firefox is started through `setpriv --pdeathsig KILL`, so it dies with this process even
// when this process is SIGKILLed (its content processes follow their parent).
const ffArgs = ['--headless', '--no-remote', '--profile', profile, '--remote-debugging-port=0', 'about:blank'];
const exe = fs.existsSync(SETPRIV) ? SETPRIV : FIREFOX;
const args = exe === SETPRIV ? ['--pdeathsig', 'KILL', FIREFOX, ...ffArgs] : ffArgs;

// Whether a process group has a member that is not a zombie. Firefox's helper processes
// (RDD, Utility) are reparented to PID 1 when Firefox dies, and their zombies may linger
// there: kill(-pgid, 0) would still succeed for them.
function groupAlive(pgid) {
  for (const pid of fs.readdirSync('/proc').filter((d) => /^\d+$/.test(d))) {
    let f;
    try { f = fs.readFileSync(`/proc/${pid}/stat`, 'utf8'); } catch (_) { continue; }
    const [state, , pgrp] = f.slice(f.lastIndexOf(')') + 2).split(' ');
    if (Number(pgrp) === pgid && state !== 'Z') return true;
  }
  return false;
}

let browser = null, ffPid = null, cleaning = null;
async function cleanup() { // idempotent: close Firefox, kill what is left, remove the folder
  if (cleaning) return cleaning;
  cleaning = (async () => {
    if (browser) await Promise.race([browser.close().catch(() => {}), sleep(3000)]); // may hang
    if (ffPid) { // puppeteer starts it detached: its own process group
      try { process.kill(-ffPid, 'SIGKILL'); } catch (_) { /* already gone */ }
      for (let i = 0; i < 40; i++) { // until the group is empty, at most 2 s
        if (!groupAlive(ffPid)) break;
        await sleep(50);
      }
    }
    fs.rmSync(root, { recursive: true, force: true });
  })();
  return cleaning;
}
// The last resort: whatever hangs, Firefox's group is killed and the folder removed.
process.on('exit', () => {
  if (ffPid) { try { process.kill(-ffPid, 'SIGKILL'); } catch (_) { /* gone */ } }
  try { fs.rmSync(root, { recursive: true, force: true }); } catch (_) { /* best effort */ }
});
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.on(sig, () => {
    log(`${sig}: closing Firefox`);
    interrupted = sig;
    setTimeout(() => process.exit(finish(130)), 4000).unref();
    cleanup().finally(() => process.exit(finish(130)));
  });
}
// Past --timeout + 8 s nothing is awaited any more.
setTimeout(() => {
  log('watchdog: giving up');
  result.error = result.error || { code: 'driver_timeout', message: 'the driver itself hung' };
  process.exit(finish(1));
}, opts.timeout * 1000 + 8000).unref();

// The lines of an SDP's m=video section.
const videoSection = (sdp) => ((sdp || '').split(/\r?\n(?=m=)/).find((m) => m.startsWith('m=video')) || '')
  .split(/\r?\n/).filter(Boolean);
// Its media codecs from the rtpmap lines ("VP8/90000"), in the m-line's order.
function videoCodecs(sdp) {
  const sec = videoSection(sdp);
  return (sec.length ? sec[0].split(' ').slice(3) : []).map((pt) => {
    const line = sec.find((l) => l.startsWith(`a=rtpmap:${pt} `));
    return line ? line.split(' ')[1] : null;
  }).filter((n) => n && !/^(rtx|red|ulpfec|flexfec)\//i.test(n));
}
const rtpmaps = (sdp) => videoSection(sdp).filter((l) => /^(m=video|a=rtpmap:)/.test(l)).join(' | ');

// Read in the page: its own figures, plus the peer connection's getStats() (hooked below).
async function readPage(page) {
  return page.evaluate(async () => {
    const out = { stats: window.portcastStats, error: window.portcastError, sdp: window.portcastSdp || null,
      offer: window.__driverOffer || null, received: window.portcastReceived, inbound: null };
    const pc = window.__driverPc;
    if (pc && pc.connectionState !== 'closed') {
      try {
        const report = await pc.getStats();
        report.forEach((s) => {
          if (s.type !== 'inbound-rtp' || s.kind !== 'video') return;
          const c = s.codecId ? report.get(s.codecId) : null;
          out.inbound = { codec: c ? c.mimeType : null, frames: s.framesDecoded || 0,
            width: s.frameWidth || null, height: s.frameHeight || null };
        });
      } catch (_) { /* closed meanwhile */ }
    }
    return out;
  });
}

async function main() {
  const left = () => deadline - Date.now();
  log(`starting ${FIREFOX} (profile ${profile})`);
  try {
    browser = await puppeteer.launch({
      browser: 'firefox', executablePath: exe, args, ignoreDefaultArgs: true, headless: true,
      extraPrefsFirefox: PREFS, timeout: Math.max(left(), 5000), protocolTimeout: opts.timeout * 1000,
      handleSIGINT: false, handleSIGTERM: false, handleSIGHUP: false, // ours close it
      dumpio: process.env.PORTCAST_FF_DUMPIO === '1',
      env: { ...process.env, HOME: home, XDG_CACHE_HOME: path.join(home, '.cache'), MOZ_HEADLESS: '1',
        // Otherwise remote settings ignore puppeteer's dummy server and call Mozilla's.
        MOZ_REMOTE_SETTINGS_DEVTOOLS: '1', MOZ_CRASHREPORTER_DISABLE: '1' },
    });
  } catch (e) {
    log(`Firefox did not start: ${e.message.split('\n')[0]} (apt-get install firefox-esr?)`);
    result.error = { code: 'browser_failed', message: e.message.split('\n')[0] };
    return 2;
  }
  ffPid = browser.process() ? browser.process().pid : null;
  result.browser = `Firefox ${(await browser.version()).replace(/^firefox\//i, '')}`;
  log(`${result.browser} up (pid ${ffPid}); opening ${url.href}`);

  const page = await browser.newPage();
  const pageErrors = [];
  page.on('pageerror', (e) => pageErrors.push(e.message));
  // Keep the page's peer connection and its offer: the page shows the offer only after an
  // answer, and a refused offer (error no_h264) is exactly when it matters.
  await page.evaluateOnNewDocument(() => {
    const P = window.RTCPeerConnection;
    if (!P) return;
    const sld = P.prototype.setLocalDescription;
    P.prototype.setLocalDescription = function (...a) {
      window.__driverPc = this;
      if (a[0] && a[0].type === 'offer') window.__driverOffer = a[0].sdp; // before any teardown
      return sld.apply(this, a).then((r) => {
        if (this.localDescription && this.localDescription.type === 'offer') window.__driverOffer = this.localDescription.sdp;
        return r;
      });
    };
  });
  await page.goto(url.href, { waitUntil: 'load', timeout: Math.max(left(), 1000) });

  // Polled until enough frames, an error or the deadline; `result` always holds the latest
  // figures, so that an interrupted run still reports them.
  let r = null, lastLog = 0;
  while (left() > 0 && !interrupted) {
    r = await readPage(page);
    const s = r.stats || {}, i = r.inbound || {};
    Object.assign(result, { codec: i.codec || s.codec || null, frames_decoded: i.frames || s.frames_decoded || 0,
      width: i.width || s.width || null, height: i.height || s.height || null, error: r.error,
      offer_codecs: videoCodecs(r.offer || (r.sdp && r.sdp.offer)),
      answer_codec: videoCodecs(r.sdp && r.sdp.answer)[0] || null });
    if (Date.now() - lastLog >= 1000) {
      lastLog = Date.now();
      log(`frames=${result.frames_decoded} state=${s.connection_state || '-'} signaling=${JSON.stringify(r.received)}`);
    }
    if (r.error || result.frames_decoded >= opts.frames) break;
    await sleep(200);
  }
  if (r) {
    log(`offer: ${rtpmaps(r.offer || (r.sdp && r.sdp.offer)) || 'none'}`);
    log(`answer: ${rtpmaps(r.sdp && r.sdp.answer) || 'none'}`);
  }
  if (pageErrors.length) log(`page errors: ${pageErrors.join(' | ')}`);
  if (result.error) log(`page error: ${JSON.stringify(result.error)}`);
  else if (result.frames_decoded < opts.frames && !interrupted) log(`only ${result.frames_decoded} of ${opts.frames} frames within ${opts.timeout} s`);
  return !result.error && result.frames_decoded >= opts.frames ? 0 : 1;
}

main().catch((e) => {
  if (interrupted) return 130; // the browser went away under it: not news
  log(`failed: ${e.stack}`);
  result.error = result.error || { code: 'driver_error', message: e.message.split('\n')[0] };
  return 1;
}).then(async (code) => {
  await cleanup();
  if (interrupted) code = 130;
  log(`done in ${((Date.now() - t0) / 1000).toFixed(1)} s, exit ${code}`);
  process.exit(finish(code));
});
