// Page weight and time to interactive of a UI page, in Chromium with a cold cache:
// node tests/page_weight.mjs <name> <url> <ready-selector> [admin-password]
// With a password, logs in first (the appliance); prints "name bytes_on_wire requests ms".
import { chromium } from 'playwright-core';

const [name, url, ready, password] = process.argv.slice(2);
const browser = await chromium.launch({ executablePath: process.env.CHROMIUM || '/usr/bin/chromium', args: ['--no-sandbox'] });
const runs = [];
for (let i = 0; i < 5; i++) {
  const ctx = await browser.newContext();
  const page = await ctx.newPage();
  if (password) {
    await page.goto(url);
    await page.fill('#password', password);
    await Promise.all([page.waitForURL((u) => !u.toString().includes('-/login')), page.click('button[type=submit]')]);
    await ctx.clearCookies({ name: 'nothing' });
  }
  // A fresh page in the same (logged-in) context with the HTTP cache disabled: cold load.
  const cold = await ctx.newPage();
  const cdp = await ctx.newCDPSession(cold);
  await cdp.send('Network.enable');
  await cdp.send('Network.setCacheDisabled', { cacheDisabled: true });
  let bytes = 0;
  let requests = 0;
  cdp.on('Network.loadingFinished', (e) => { bytes += e.encodedDataLength; requests++; });
  const t0 = Date.now();
  await cold.goto(url);
  await cold.waitForSelector(ready);
  const ms = Date.now() - t0;
  await cold.waitForLoadState('networkidle');
  runs.push({ bytes, requests, ms });
  await ctx.close();
}
await browser.close();
runs.sort((a, b) => a.ms - b.ms);
const mid = runs[Math.floor(runs.length / 2)];
console.log(`${name} ${mid.bytes} ${mid.requests} ${mid.ms}`);
