// Web console load benchmark: for each of YH_RUNS cold loads (a fresh browser
// profile each time) it measures
//   - the bytes of script (and of everything) the first load of the VM list
//     transferred, compressed as sent (from the network responses), and
//   - the time from navigation to the VM list being usable: its first row
//     rendered and its link clickable,
// then prints every run and the medians.
//
// Environment:
//   YH_URL                          e.g. http://127.0.0.1:7123
//   YH_USER + YH_PASSWORD           log in with a password (also YH_ADMIN_USER/YH_ADMIN_PASSWORD), or
//   YH_TOKEN                        an API key (yh_…)
//   YH_RUNS (default 5), YH_CHROMIUM (default /usr/bin/chromium)
//   YH_BENCH_JSON (optional)        write the results as JSON to this file
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const URL_ = (process.env.YH_URL || '').replace(/\/$/, '');
const USER = process.env.YH_USER || process.env.YH_ADMIN_USER;
const PASSWORD = process.env.YH_PASSWORD || process.env.YH_ADMIN_PASSWORD;
const TOKEN = process.env.YH_TOKEN;
const RUNS = Number(process.env.YH_RUNS || 5);
const CHROMIUM = process.env.YH_CHROMIUM || '/usr/bin/chromium';
if (!URL_ || !((USER && PASSWORD) || TOKEN)) {
  console.error('bench: set YH_URL and YH_USER + YH_PASSWORD (or YH_TOKEN)');
  process.exit(2);
}
const login = TOKEN ? { token: TOKEN } : { username: USER, password: PASSWORD };

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};
const kib = (n) => `${(n / 1024).toFixed(1)} KiB`;

async function run(i) {
  const dir = mkdtempSync(join(tmpdir(), 'yh-bench-chromium-'));
  const ctx = await chromium.launchPersistentContext(dir, {
    executablePath: CHROMIUM,
    headless: true,
    viewport: { width: 1280, height: 800 },
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  try {
    const page = ctx.pages()[0] ?? (await ctx.newPage());
    // Log in through the API (the cookie lands in this profile), not timed.
    const setup = await ctx.newPage();
    await setup.goto(URL_ + '/console/assets/favicon.svg');
    const status = await setup.evaluate(async (body) => {
      const r = await fetch('/v1/sessions', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) });
      return r.status;
    }, login);
    if (status !== 201) throw new Error(`logging in answered HTTP ${status}`);
    await setup.close();

    // Transferred bytes, as sent on the wire (encoded), of every response.
    const cdp = await ctx.newCDPSession(page);
    await cdp.send('Network.enable');
    const types = new Map();
    const bytes = new Map();
    cdp.on('Network.responseReceived', (e) => types.set(e.requestId, { type: e.type, url: e.response.url }));
    cdp.on('Network.loadingFinished', (e) => bytes.set(e.requestId, e.encodedDataLength));

    const t0 = Date.now();
    await page.goto(URL_ + '/console/vms', { waitUntil: 'commit' });
    const link = page.locator('[data-testid=vm-list] tbody tr[data-testid=row] a').first();
    await link.waitFor({ state: 'visible', timeout: 60000 });
    // Usable: the row's link takes a click (trial: checks it is actionable, clicks nothing).
    await link.click({ trial: true, timeout: 10000 });
    const ms = Date.now() - t0;
    const total = await page.locator('[data-testid=count]').innerText();
    await page.waitForLoadState('networkidle').catch(() => {});

    let script = 0;
    let all = 0;
    const files = [];
    for (const [id, n] of bytes) {
      const t = types.get(id);
      if (!t) continue;
      all += n;
      if (t.type === 'Script') {
        script += n;
        files.push(`${t.url.split('/').pop()} ${n} B`);
      }
    }
    console.log(`run ${i + 1}: VM list usable in ${ms} ms (${total} VMs); script ${kib(script)} [${files.join(', ')}], all ${kib(all)}`);
    return { ms, script, all, vms: total };
  } finally {
    await ctx.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

const results = [];
for (let i = 0; i < RUNS; i++) results.push(await run(i));
const out = {
  runs: results,
  median_ms: median(results.map((r) => r.ms)),
  median_script_bytes: median(results.map((r) => r.script)),
  median_all_bytes: median(results.map((r) => r.all)),
};
console.log(`median over ${RUNS} runs: VM list usable in ${out.median_ms} ms; first-load script ${kib(out.median_script_bytes)} compressed (all ${kib(out.median_all_bytes)})`);
console.log(`aims: script < 300 KiB: ${out.median_script_bytes < 300 * 1024 ? 'met' : 'MISSED'}; usable < 1 s: ${out.median_ms < 1000 ? 'met' : 'MISSED'}`);
if (process.env.YH_BENCH_JSON) writeFileSync(process.env.YH_BENCH_JSON, JSON.stringify(out, null, 2));
