// The web console's browser test: Debian's Chromium, driven by playwright-core,
// against a running Yunhan (started by the caller). Prints each step; exits 0
// only when every step passed. Never sleeps blindly: every wait polls with a
// deadline and says what it waited for when it gives up.
//
// Environment:
//   YH_URL                          e.g. http://127.0.0.1:7123
//   YH_ADMIN_USER, YH_ADMIN_PASSWORD
//   YH_MEMBER_USER, YH_MEMBER_PASSWORD   a member of another project
//   YH_OTHER_VM_ID                  a VM of the admin's project the member must not see
//   YH_IMAGE, YH_FLAVOR             a bootable image and a flavor, by name
//   YH_MARKER                       text the guest prints on its serial console
//   YH_UPLOAD_FILE                  a small disk file to upload as an image
//   YH_ARTIFACTS                    where screenshots go
//   YH_CHROMIUM (optional)          the browser (default /usr/bin/chromium)
//   YH_BOOT_TIMEOUT (optional)      seconds for a VM to reach Running (default 240)
//   YH_LOGIN_LINK (optional)        a fresh one-time link (http://…/console/#login=CODE) to try
//   YH_S3 (optional)                1: the cloud has object storage; also drive a bucket's file browser
import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

// ------------------------------------------------------------------ setup
function need(name) {
  const v = process.env[name];
  if (!v) {
    console.error(`e2e: the environment variable ${name} is not set`);
    process.exit(2);
  }
  return v;
}
const URL_ = need('YH_URL').replace(/\/$/, '');
const ADMIN = need('YH_ADMIN_USER');
const ADMIN_PW = need('YH_ADMIN_PASSWORD');
const MEMBER = need('YH_MEMBER_USER');
const MEMBER_PW = need('YH_MEMBER_PASSWORD');
const OTHER_VM = need('YH_OTHER_VM_ID');
const IMAGE = need('YH_IMAGE');
const FLAVOR = need('YH_FLAVOR');
const MARKER = need('YH_MARKER');
const UPLOAD = need('YH_UPLOAD_FILE');
const ART = need('YH_ARTIFACTS');
const CHROMIUM = process.env.YH_CHROMIUM || '/usr/bin/chromium';
const BOOT_S = Number(process.env.YH_BOOT_TIMEOUT || 240);
mkdirSync(ART, { recursive: true });
statSync(UPLOAD); // fails loudly when missing

const tag = Date.now().toString(36).slice(-5);
const N = {
  vpc: `e2e-vpc-${tag}`,
  subnet: `e2e-sn-${tag}`,
  nic: `e2e-nic-${tag}`,
  rt: `e2e-rt-${tag}`,
  vm: `e2e-vm-${tag}`,
  vol: `e2e-vol-${tag}`,
  img: `e2e-img-${tag}`,
  csrfVpc: `e2e-csrf-${tag}`,
  bucket: `e2e-bucket-${tag}`,
};
const S3 = process.env.YH_S3 === '1';
const XSS = '<img src=x onerror=alert(1)>';

let page;
let context;
const alerts = [];
const pageErrors = [];
let stepNo = 0;
let failed = false;
const t0 = Date.now();

function log(s) {
  console.log(s);
}
async function step(name, f) {
  stepNo++;
  const start = Date.now();
  log(`▶ ${stepNo}. ${name}`);
  try {
    await f();
    log(`✓ ${stepNo}. ${name} (${((Date.now() - start) / 1000).toFixed(1)} s)`);
  } catch (e) {
    failed = true;
    log(`✗ ${stepNo}. ${name}: ${e && e.message ? e.message.split('\n')[0] : e}`);
    if (e && e.stack) console.error(e.stack.split('\n').slice(0, 6).join('\n'));
    try {
      const shot = join(ART, `failed-${String(stepNo).padStart(2, '0')}.png`);
      await page?.screenshot({ path: shot, fullPage: true });
      log(`  screenshot of the failure: ${shot}`);
      log(`  page: ${page?.url()}`);
      const errs = await page?.locator('[role=alert]').allInnerTexts().catch(() => []);
      if (errs?.length) log(`  errors shown: ${errs.join(' | ')}`);
    } catch {
      /* the page is gone */
    }
    throw new Error(`step ${stepNo} failed: ${name}`);
  }
}

/** Polls `f` until it returns a truthy value; fails with `what` after `ms`. */
async function until(what, f, ms = 30000, every = 250) {
  const end = Date.now() + ms;
  let last;
  for (;;) {
    try {
      const v = await f();
      if (v) return v;
    } catch (e) {
      last = e;
    }
    if (Date.now() > end) throw new Error(`timed out after ${ms / 1000} s waiting for ${what}${last ? ` (last error: ${last.message?.split('\n')[0]})` : ''}`);
    await new Promise((r) => setTimeout(r, every));
  }
}
const visible = (loc) => loc.isVisible().catch(() => false);
async function go(path) {
  await page.goto(URL_ + '/console' + path);
}
async function shot(name) {
  await page.screenshot({ path: join(ART, `${name}.png`), fullPage: true });
}
/** The API, as the page's session sees it (cookie auth). */
async function apiGet(path) {
  return page.evaluate(async (p) => {
    const r = await fetch(p, { headers: { Accept: 'application/json' } });
    return { status: r.status, body: await r.text() };
  }, path);
}
async function formError() {
  const e = page.getByTestId('form-error');
  return (await visible(e)) ? await e.innerText() : null;
}
/** Chooses `value` in a select once its options (loaded from the API) are there. */
async function choose(testid, value) {
  const sel = page.getByTestId(testid);
  await until(`the choice "${value}" in ${testid}`, async () => (await sel.locator('option').allInnerTexts()).includes(value), 20000);
  await sel.selectOption({ label: value });
}
async function submitForm(what) {
  await page.getByTestId('submit').click();
}
/** Waits for a list row of that name, optionally with a phase. */
async function row(listTestid, name, phase, ms = 30000) {
  const r = page.locator(`[data-testid="${listTestid}"] tr[data-name="${name}"]`);
  await until(`${name} in the list${phase ? ` as ${phase}` : ''}`, async () => {
    const err = await formError();
    if (err) throw new Error(`the form says: ${err}`);
    if (!(await visible(r))) return false;
    if (!phase) return true;
    const p = await r.getByTestId('phase').first().innerText();
    if (['Failed', 'Unschedulable'].includes(p) && p !== phase) throw new Error(`${name} is ${p}`);
    return p === phase;
  }, ms, 500);
  return r;
}
async function login(user, password) {
  await go('/');
  await page.getByTestId('login-form').waitFor({ timeout: 20000 });
  await page.getByTestId('login-username').fill(user);
  await page.getByTestId('login-password').fill(password);
  await page.getByTestId('login-submit').click();
  await until(`the overview after logging in as ${user}`, async () => {
    if (await visible(page.getByTestId('login-error'))) throw new Error('login refused: ' + (await page.getByTestId('login-error').innerText()));
    return visible(page.getByTestId('page-overview'));
  }, 20000);
}
async function createThroughForm(route, kind, fill) {
  await go(route);
  await page.getByTestId(`create-${kind}`).click();
  await page.getByTestId('create-dialog').waitFor();
  await fill();
  await submitForm();
  await until(`the create dialog of ${kind} to close`, async () => {
    const err = await formError();
    if (err) throw new Error(`the form says: ${err}`);
    return !(await visible(page.getByTestId('create-dialog')));
  }, 20000);
}

// ------------------------------------------------------------------ the test
const userDataDir = mkdtempSync(join(tmpdir(), 'yh-e2e-chromium-'));
let other;
let vmId = '';
try {
  await step('the console answers with a strict Content-Security-Policy', async () => {
    for (const p of ['/console/', '/console/vms/x']) {
      const r = await fetch(URL_ + p);
      const csp = r.headers.get('content-security-policy');
      if (!csp) throw new Error(`${p} has no Content-Security-Policy header`);
      for (const want of ["default-src 'self'", "script-src 'self'", "object-src 'none'", "frame-ancestors 'none'"]) {
        if (!csp.includes(want)) throw new Error(`${p}: the policy lacks ${want}: ${csp}`);
      }
      if (/script-src[^;]*'unsafe-(inline|eval)'/.test(csp)) throw new Error(`${p}: scripts may run inline: ${csp}`);
      const html = await r.text();
      if (/<script(?![^>]*\bsrc=)[^>]*>/i.test(html)) throw new Error(`${p}: index.html has an inline script`);
      if (/\sstyle=|<style/i.test(html)) throw new Error(`${p}: index.html has inline styles`);
    }
    log(`  ${(await fetch(URL_ + '/console/')).headers.get('content-security-policy')}`);
  });

  context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: CHROMIUM,
    headless: true,
    viewport: { width: 1280, height: 800 },
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  page = context.pages()[0] ?? (await context.newPage());
  page.setDefaultTimeout(20000);
  page.on('dialog', async (d) => {
    alerts.push(`${d.type()}: ${d.message()}`);
    await d.dismiss().catch(() => {});
  });
  page.on('pageerror', (e) => pageErrors.push(e.message));
  const cspViolations = [];
  page.on('console', (m) => {
    if (/Content Security Policy/i.test(m.text())) cspViolations.push(m.text());
  });

  await step(`log in as ${ADMIN} through the form`, async () => {
    await login(ADMIN, ADMIN_PW);
    await page.getByTestId('nav-admin').waitFor();
    await until('the usage meters', () => visible(page.getByTestId('quota')), 15000);
    await shot('overview');
  });

  await step(`create VPC ${N.vpc} through the form`, async () => {
    await createThroughForm('/vpcs', 'vpcs', async () => {
      await page.getByTestId('field-name').fill(N.vpc);
      await page.getByTestId('field-cidr').fill('10.77.0.0/16');
    });
    await row('list-vpcs', N.vpc);
  });

  await step(`create subnet ${N.subnet} through the form`, async () => {
    await createThroughForm('/subnets', 'subnets', async () => {
      await page.getByTestId('field-name').fill(N.subnet);
      await choose('field-vpc', N.vpc);
      await page.getByTestId('field-cidr').fill('10.77.1.0/24');
    });
    await row('list-subnets', N.subnet);
    await go('/vpcs');
    await row('list-vpcs', N.vpc);
    await shot('networks');
  });

  await step(`add a route to route table ${N.rt} through its form, then remove it (confirming)`, async () => {
    await createThroughForm('/nics', 'network-interfaces', async () => {
      await page.getByTestId('field-name').fill(N.nic);
      await choose('field-subnet', N.subnet);
    });
    await row('list-network-interfaces', N.nic);
    await createThroughForm('/route-tables', 'route-tables', async () => {
      await page.getByTestId('field-name').fill(N.rt);
      await choose('field-vpc', N.vpc);
    });
    await (await row('list-route-tables', N.rt)).locator('a').first().click();
    await page.getByTestId('route-table-routes').waitFor();
    const rtId = new URL(page.url()).pathname.split('/').pop();
    // The API's own message for a bad destination, in the form.
    await page.getByTestId('route-add').click();
    await page.getByTestId('field-destination').fill('10.78.0.1/16');
    await page.getByTestId('field-target').selectOption('local');
    await submitForm();
    const err = await until('the API’s error in the route form', () => formError(), 15000);
    if (!/10\.78\.0\.1\/16/.test(err)) throw new Error(`unexpected error: ${err}`);
    log(`  refused: ${err}`);
    await page.getByTestId('field-destination').fill('10.78.0.0/16');
    await page.getByTestId('field-target').selectOption('nic');
    const nicSel = page.getByTestId('field-nic');
    const label = await until(`${N.nic} among the next hops`, async () => (await nicSel.locator('option').allInnerTexts()).find((t) => t.startsWith(N.nic + ' ')), 20000);
    await nicSel.selectOption({ label });
    await submitForm();
    const route = page.locator('[data-testid=route][data-destination="10.78.0.0/16"]');
    await until('the route in the table', async () => {
      const e = await formError();
      if (e) throw new Error(`the form says: ${e}`);
      return (await visible(route)) && (await route.innerText()).includes(N.nic);
    }, 20000);
    const stored = JSON.parse((await apiGet(`/v1/route-tables/${rtId}`)).body).spec.routes;
    if (stored?.length !== 1 || stored[0].target !== 'nic' || !stored[0].nic?.startsWith('nic-')) throw new Error(`stored routes: ${JSON.stringify(stored)}`);
    await shot('route-table');
    await route.getByTestId('route-remove').click();
    await page.getByTestId('confirm-ok').click();
    await until('the route to go', async () => !(await visible(route)) && visible(page.getByTestId('routes-empty')), 20000);
    const left = JSON.parse((await apiGet(`/v1/route-tables/${rtId}`)).body).spec.routes ?? [];
    if (left.length) throw new Error(`routes left: ${JSON.stringify(left)}`);
  });

  await step(`create VM ${N.vm} (${IMAGE}, ${FLAVOR}, in ${N.subnet}) through the wizard`, async () => {
    await go('/vms');
    await page.getByTestId('create-vm').click();
    await page.getByTestId('vm-create').waitFor();
    await page.getByTestId('field-name').fill(N.vm);
    await choose('field-image', IMAGE);
    await choose('field-flavor', FLAVOR);
    await choose('field-subnet', N.subnet);
    await page.getByTestId('submit').click();
    await until('the new VM’s page', async () => {
      const err = await formError();
      if (err) throw new Error(`the form says: ${err}`);
      return visible(page.getByTestId('vm-detail'));
    }, 30000);
    vmId = await page.getByTestId('vm-detail').getAttribute('data-id');
    log(`  ${N.vm} is ${vmId}`);
  });

  await step(`see ${N.vm} reach Running in the list`, async () => {
    await go('/vms');
    await row('vm-list', N.vm, 'Running', BOOT_S * 1000);
    await shot('vm-list');
  });

  await step(`see "${MARKER}" on its serial console`, async () => {
    await go(`/vms/${vmId}/console`);
    const term = page.getByTestId('terminal');
    await term.waitFor();
    let pressed = 0;
    const started = Date.now();
    await until(`"${MARKER}" in the terminal`, async () => {
      const text = await page.locator('[data-testid=terminal] .xterm-rows').innerText().catch(() => '');
      if (text.includes(MARKER)) return true;
      // No marker yet: ask the guest for a prompt now and then.
      if (Date.now() - started > 8000 * (pressed + 1)) {
        pressed++;
        await page.locator('[data-testid=terminal] .xterm').click().catch(() => {});
        await page.keyboard.press('Enter');
      }
      return false;
    }, 150000, 500);
    const state = await page.getByTestId('console-state').innerText();
    log(`  console ${state}${pressed ? `; pressed Enter ${pressed} times` : ''}`);
    // The terminal is styled although the policy forbids inline styles.
    const color = await page.locator('[data-testid=terminal] .xterm-rows').evaluate((e) => getComputedStyle(e).color);
    log(`  terminal text colour ${color}`);
    await shot('vm-detail-console');
  });

  await step('see the metrics chart draw points', async () => {
    await go(`/vms/${vmId}/metrics`);
    const n = await until('a metrics chart with points', async () => {
      const counts = await page.locator('[data-testid=metrics-chart]').evaluateAll((els) => els.map((e) => Number(e.getAttribute('data-points') || 0)));
      const drawn = await page.locator('[data-testid=metrics-chart] [data-testid=chart-line]').count();
      const total = counts.reduce((a, b) => a + b, 0);
      return total > 0 && drawn > 0 ? total : 0;
    }, 120000, 1000);
    log(`  ${n} points drawn`);
    await shot('vm-metrics');
  });

  await step(`create volume ${N.vol} and attach it to ${N.vm}`, async () => {
    await createThroughForm('/volumes', 'volumes', async () => {
      await page.getByTestId('field-name').fill(N.vol);
      await page.getByTestId('field-size_gib').fill('1');
    });
    const r = await row('list-volumes', N.vol, 'Available', 60000);
    await r.locator('a').first().click();
    await page.getByTestId('detail-volumes').waitFor();
    await page.getByTestId('action-attach').click();
    await choose('field-instance', N.vm);
    await page.getByTestId('submit').click();
    await until(`${N.vol} to be InUse`, async () => {
      const err = await formError();
      if (err) throw new Error(`the form says: ${err}`);
      return (await page.locator('[data-testid=detail-volumes] .page-head [data-testid=phase]').innerText()) === 'InUse';
    }, 90000, 500);
    await go('/volumes');
    await row('list-volumes', N.vol, 'InUse');
    await shot('volumes');
    await go(`/vms/${vmId}`);
    await until(`${N.vol} on the VM's page`, () => visible(page.locator(`[data-testid=vm-volume][data-name="${N.vol}"]`)), 20000);
  });

  await step('user-provided text is shown as text (XSS)', async () => {
    // A VM named like markup: the API refuses the name, and the page shows its message.
    await go('/vms/new');
    await page.getByTestId('field-name').fill(XSS);
    await choose('field-image', IMAGE);
    await choose('field-flavor', FLAVOR);
    await page.getByTestId('submit').click();
    const outcome = await until('the API’s answer to a VM named like markup', async () => {
      const err = await formError();
      if (err) return { err };
      if (await visible(page.getByTestId('vm-detail'))) return { created: await page.getByTestId('vm-detail').getAttribute('data-id') };
      return null;
    }, 20000);
    if (outcome.created) {
      const name = await page.getByTestId('detail-name').innerText();
      if (name !== XSS) throw new Error(`the VM's name shows as ${JSON.stringify(name)}`);
      log(`  the API took the name; the page shows it as text`);
    } else log(`  the API refused the name: ${outcome.err}`);
    // A label value may hold any text: set one on the VM and look at it.
    await go(`/vms/${vmId}`);
    await page.getByTestId('action-edit').click().catch(async () => {
      throw new Error('the VM page has no Edit action');
    });
    await page.getByTestId('field-labels').fill(`note=${XSS}`);
    await page.getByTestId('submit').click();
    await until('the label on the VM page', async () => {
      const err = await formError();
      if (err) throw new Error(`the form says: ${err}`);
      const t = await page.getByTestId('vm-labels').innerText().catch(() => '');
      return t.includes(`note=${XSS}`);
    }, 20000);
    await page.reload();
    await until('the label again after a reload', async () => (await page.getByTestId('vm-labels').innerText().catch(() => '')).includes(XSS), 20000);
    const imgs = await page.locator('img[src="x"]').count();
    if (imgs) throw new Error(`${imgs} <img src=x> element(s) made it into the page`);
    if (alerts.length) throw new Error(`a dialog fired: ${alerts.join('; ')}`);
    if (outcome.created) await apiDelete(`/v1/instances/${outcome.created}`);
  });

  await step(`stop ${N.vm} (confirming)`, async () => {
    await go(`/vms/${vmId}`);
    await page.getByTestId('action-stop').click();
    await page.getByTestId('confirm-dialog').waitFor();
    await page.getByTestId('confirm-ok').click();
    await until(`${N.vm} to be Stopped`, async () => (await page.locator('[data-testid=vm-detail] .page-head > [data-testid=phase]').innerText()) === 'Stopped', 120000, 500);
  });

  await step(`delete ${N.vm} (confirming)`, async () => {
    await page.getByTestId('action-delete').click();
    await page.getByTestId('confirm-dialog').waitFor();
    await page.getByTestId('confirm-ok').click();
    await until('the VM list', () => visible(page.getByTestId('vm-list')), 20000);
    await until(`${N.vm} to leave the list`, async () => !(await visible(page.locator(`[data-testid=vm-list] tr[data-name="${N.vm}"]`))), 120000, 500);
    const r = await apiGet(`/v1/instances/${vmId}`);
    if (r.status !== 404) throw new Error(`GET the deleted VM answers ${r.status}`);
  });

  await step(`upload ${UPLOAD} as image ${N.img} with progress`, async () => {
    await go('/images');
    await page.getByTestId('upload-image').click();
    await page.getByTestId('field-file').setInputFiles(UPLOAD);
    await page.getByTestId('field-name').fill(N.img);
    await page.getByTestId('submit').click();
    const seen = new Set();
    await until('the progress bar at 100 % and the image Active', async () => {
      const err = await formError();
      if (err) throw new Error(`the dialog says: ${err}`);
      const pct = await page.getByTestId('upload-percent').innerText().catch(() => null);
      if (pct) seen.add(pct);
      return visible(page.getByTestId('upload-done'));
    }, 180000, 100);
    const value = await page.getByTestId('upload-progress').getAttribute('value');
    if (value !== '100') throw new Error(`the progress bar stands at ${value}`);
    log(`  progress seen: ${[...seen].join(' ')}`);
    await page.getByTestId('upload-close').click();
    await row('list-images', N.img, 'Active');
    await shot('images');
  });

  if (S3) {
    await step(`create bucket ${N.bucket}; upload, list, download and delete a file in its browser`, async () => {
      await createThroughForm('/buckets', 'buckets', async () => {
        await page.getByTestId('field-name').fill(N.bucket);
      });
      await row('list-buckets', N.bucket, 'Active', 60000);
      const b = JSON.parse((await apiGet(`/v1/buckets/${N.bucket}`)).body);
      await go(`/buckets/${b.metadata.id}`);
      await page.getByTestId('browse-files').click();
      await page.getByTestId('bucket-browser').waitFor();
      const body = `hello from the browser ${tag}\n`;
      await page.getByTestId('object-upload').setInputFiles({ name: 'hello.txt', mimeType: 'text/plain', buffer: Buffer.from(body) });
      const obj = page.locator('[data-testid="object"][data-key="hello.txt"]');
      await until('hello.txt in the file browser', () => visible(obj), 30000);
      await shot('bucket-browser');
      const [download] = await Promise.all([page.waitForEvent('download'), obj.getByText('Download').click()]);
      const got = readFileSync(await download.path(), 'utf8');
      if (got !== body) throw new Error(`the download holds ${JSON.stringify(got)}, not what was uploaded`);
      await obj.getByText('Delete').click();
      await page.getByTestId('confirm-ok').click();
      await until('hello.txt to leave the file browser', async () => !(await visible(obj)), 30000);
    });
  }

  await step('a cross-site form POST is refused', async () => {
    // A page of another origin (another port) posts a form to the API: the
    // browser sends the session cookie only if the server lets it, and the
    // request carries no CSRF token.
    const body = `<!doctype html><form id=f method=POST action="${URL_}/v1/vpcs" enctype="text/plain">` +
      `<input name='{"metadata":{"name":"${N.csrfVpc}","x":"' value='"},"spec":{"cidr":"10.99.0.0/16"}}'></form>` +
      `<script>document.getElementById('f').submit()</script>`;
    const body2 = `<!doctype html><form id=f method=POST action="${URL_}/v1/vpcs" enctype="application/x-www-form-urlencoded">` +
      `<input name="metadata.name" value="${N.csrfVpc}"><input name="spec.cidr" value="10.98.0.0/16"></form>` +
      `<script>document.getElementById('f').submit()</script>`;
    other = createServer((req, res) => {
      res.writeHead(200, { 'Content-Type': 'text/html' });
      res.end(req.url === '/2' ? body2 : body);
    });
    await new Promise((r) => other.listen(0, '127.0.0.1', r));
    const origin = `http://127.0.0.1:${other.address().port}`;
    for (const p of ['/', '/2']) {
      const attacker = await context.newPage();
      const answer = attacker.waitForResponse((r) => r.url().startsWith(`${URL_}/v1/vpcs`), { timeout: 20000 });
      await attacker.goto(origin + p);
      const resp = await answer;
      log(`  form POST from ${origin}${p}: HTTP ${resp.status()}`);
      if (resp.status() < 400) throw new Error(`the API accepted a cross-site form POST (HTTP ${resp.status()})`);
      await attacker.close();
    }
    await go('/vpcs');
    const list = await apiGet('/v1/vpcs?limit=1000');
    if (list.body.includes(N.csrfVpc)) throw new Error(`VPC ${N.csrfVpc} was created by the cross-site form`);
  });

  await step('screenshots of the main pages (1280×800 and 400 px wide)', async () => {
    await go('/admin/hosts');
    await row('list-hosts', await page.locator('[data-testid=list-hosts] tr[data-name]').first().getAttribute('data-name'));
    await shot('admin-hosts');
    await go('/volumes');
    await page.getByTestId('list-volumes').waitFor();
    await page.setViewportSize({ width: 400, height: 800 });
    await go('/vms');
    await page.getByTestId('vm-list').waitFor();
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    if (overflow > 0) throw new Error(`the page is ${overflow} px wider than a 400 px screen`);
    await shot('narrow-vm-list');
    await page.getByTestId('nav-toggle').click();
    await until('the menu to open', () => page.getByTestId('nav-vms').isVisible(), 5000);
    await shot('narrow-menu');
    await page.setViewportSize({ width: 1280, height: 800 });
  });

  await step('log out', async () => {
    await go('/');
    await page.getByTestId('logout').click();
    await page.getByTestId('login-form').waitFor();
    const r = await apiGet('/v1/session');
    if (r.status !== 401) throw new Error(`after logging out, GET /v1/session answers ${r.status}`);
  });

  await step(`log in as the member ${MEMBER}: no admin pages, not the admin's VM`, async () => {
    await login(MEMBER, MEMBER_PW);
    if (await page.getByTestId('nav-admin').count()) throw new Error('the member sees the admin pages in the menu');
    await go('/vms');
    await until('the VM list', () => visible(page.getByTestId('vm-list')), 20000);
    await until('the list to load', async () => !(await visible(page.locator('[data-testid=page-instances] .spinner'))), 20000);
    if (await page.locator(`[data-testid=vm-list] tr[data-id="${OTHER_VM}"]`).count()) throw new Error(`the member's list shows ${OTHER_VM}`);
    await go(`/vms/${OTHER_VM}`);
    await until(`a not-found message at /console/vms/${OTHER_VM}`, () => visible(page.getByTestId('not-found')), 20000);
    log(`  ${(await page.getByTestId('not-found').innerText()).replace(/\s+/g, ' ')}`);
    const hosts = await apiGet('/v1/hosts');
    if (hosts.status !== 403) throw new Error(`fetch('/v1/hosts') from the member's page answers ${hosts.status}, not 403`);
    await go('/admin/hosts');
    await until('the admin page refused', () => visible(page.getByTestId('not-found')), 10000);
  });

  await step('an ended session sends the page to the login form, saying so', async () => {
    await go('/vms');
    await page.getByTestId('vm-list').waitFor();
    // End the session behind the page's back (as an expiry would).
    const status = await page.evaluate(async () => {
      const s = await (await fetch('/v1/session')).json();
      return (await fetch('/v1/session', { method: 'DELETE', headers: { 'X-CSRF-Token': s.csrf_token } })).status;
    });
    if (status !== 204) throw new Error(`DELETE /v1/session answered ${status}`);
    await until('the login form with a notice', () => visible(page.getByTestId('login-notice')), 20000);
    log(`  ${await page.getByTestId('login-notice').innerText()}`);
  });

  if (process.env.YH_LOGIN_LINK) {
    await step('a one-time login link logs in and leaves the address bar', async () => {
      await page.goto(process.env.YH_LOGIN_LINK);
      await until('the overview', () => visible(page.getByTestId('page-overview')), 20000);
      if (page.url().includes('login=')) throw new Error(`the code is still in the address: ${page.url()}`);
      await page.getByTestId('logout').click();
      await page.getByTestId('login-form').waitFor();
    });
  }

  await step('no page errors, no dialogs, no CSP violations', async () => {
    if (pageErrors.length) throw new Error(`uncaught errors in the page: ${pageErrors.join(' | ')}`);
    if (alerts.length) throw new Error(`dialogs fired: ${alerts.join(' | ')}`);
    if (cspViolations.length) throw new Error(`CSP violations: ${cspViolations.slice(0, 3).join(' | ')}`);
  });
} catch (e) {
  failed = true;
} finally {
  await context?.close().catch(() => {});
  other?.close();
  rmSync(userDataDir, { recursive: true, force: true });
}

async function apiDelete(path) {
  return page.evaluate(async (p) => {
    const s = await (await fetch('/v1/session')).json();
    return (await fetch(p, { method: 'DELETE', headers: { 'X-CSRF-Token': s.csrf_token } })).status;
  }, path);
}

const secs = ((Date.now() - t0) / 1000).toFixed(0);
if (failed) {
  log(`e2e: FAILED at step ${stepNo} after ${secs} s (screenshots in ${ART})`);
  log(`${stepNo - 1} passed, 1 failed`);
  process.exit(1);
}
log(`e2e: all ${stepNo} steps passed in ${secs} s (screenshots in ${ART})`);
log(`${stepNo} passed, 0 failed`);
