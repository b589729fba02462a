import { chromium } from 'playwright-core';
import { mkdtempSync } from 'node:fs';
const url = process.env.YH_URL;
const ctx = await chromium.launchPersistentContext(mkdtempSync('/tmp/yh-chrome-'), { executablePath: '/usr/bin/chromium', headless: true, viewport: { width: 1280, height: 800 }, args: ['--headless','--no-sandbox','--disable-gpu'] });
const page = ctx.pages()[0];
page.on('pageerror', (e) => console.log('PAGEERROR:', page.url(), e.message));
page.on('console', (m) => { if (m.type() === 'error' && !m.text().includes('401')) console.log('console:', m.text()); });
await page.goto(url + '/console/');
await page.getByTestId('login-username').fill(process.env.U);
await page.getByTestId('login-password').fill(process.env.P);
await page.getByTestId('login-submit').click();
await page.getByTestId('page-overview').waitFor();
const routes = ['/', '/events', '/alarms', '/vms', '/images', '/placement-groups', '/volumes', '/snapshots', '/snapshot-policies', '/buckets', '/vpcs', '/subnets', '/security-groups', '/nics', '/elastic-ips', '/nat-gateways', '/vips', '/route-tables', '/load-balancers', '/api-keys', '/s3-keys', '/admin/hosts', '/admin/projects', '/admin/users', '/admin/flavors', '/admin/external-networks', '/admin/storage'];
for (const r of routes) {
  await page.goto(url + '/console' + r);
  await page.waitForTimeout(1200);
  const errs = await page.locator('[role=alert]').allInnerTexts();
  let detail = '';
  const first = page.locator('table tr[data-testid=row] a').first();
  if (await first.count()) {
    await first.click();
    await page.waitForTimeout(1200);
    const derrs = await page.locator('[role=alert]').allInnerTexts();
    detail = ` -> ${page.url().replace(url, '')} ${derrs.length ? 'ERRORS: ' + derrs.join(' | ') : 'ok'}`;
    if (process.env.SHOT) await page.screenshot({ path: `/tmp/fe-shots/r${r.replace(/\//g, '_')}-detail.png`, fullPage: true });
  }
  console.log(r, errs.length ? 'ERRORS: ' + errs.join(' | ') : 'ok', detail);
}
await ctx.close();
