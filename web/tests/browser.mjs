// Browser acceptance run, driven by tests/ui.rs: Debian's Chromium through playwright-core.
// Usage: node tests/browser.mjs <base-url ending in /> <admin password> <screenshot dir>
// Prints one JSON line of findings on success; exits non-zero with the reason otherwise.
import { chromium } from 'playwright-core';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';

const [base, password, shots] = process.argv.slice(2);
if (!base || !password || !shots) {
  console.error('usage: node tests/browser.mjs <base-url/> <password> <screenshot-dir>');
  process.exit(2);
}
mkdirSync(shots, { recursive: true });
const report = { pages: {}, dashboards: {}, consoleErrors: [] };
const fail = (msg) => { throw new Error(msg); };
let phase = 'start';


// NaN for half of every 10 minutes in one series, a steady line in the other.
const GAPPY = 'label_replace(vector(2), "s", "steady", "", "") or label_replace(vector((time() % 600 > bool 300) / (time() % 600 > bool 300)), "s", "gappy", "", "")';

// Per legend entry of the chart in `scope`: how many canvas columns hold a pixel of its
// colour, and the longest run of columns without one between its first and last.
async function inkPerSeries(scope) {
  return scope.$eval('.chart', (chart) => {
    const c = chart.querySelector('canvas');
    const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
    const rgb = (s) => s.match(/\d+/g).slice(0, 3).map(Number);
    const out = {};
    for (const tr of chart.querySelectorAll('.u-legend .u-series')) {
      const m = tr.querySelector('.u-marker');
      const label = tr.querySelector('.u-label');
      if (!m || !label || !label.textContent) continue;
      const want = rgb(getComputedStyle(m).borderColor);
      const cols = [];
      for (let x = 0; x < c.width; x++) {
        let hit = false;
        for (let y = 0; y < c.height && !hit; y++) {
          const i = (y * c.width + x) * 4;
          hit = d[i + 3] > 200 && Math.abs(d[i] - want[0]) < 40 && Math.abs(d[i + 1] - want[1]) < 40 && Math.abs(d[i + 2] - want[2]) < 40;
        }
        cols.push(hit);
      }
      const first = cols.indexOf(true);
      const last = cols.lastIndexOf(true);
      let gap = 0;
      let run = 0;
      for (let x = Math.max(first, 0); x <= last; x++) {
        run = cols[x] ? 0 : run + 1;
        gap = Math.max(gap, run);
      }
      out[label.textContent] = { inked: cols.filter(Boolean).length, gap, width: c.width };
    }
    return out;
  });
}

// One series' NaN points are gaps in that series only: the other is drawn end to end.
function checkGaps(where, ink) {
  const steady = Object.entries(ink).find(([k]) => k.includes('steady'));
  const gappy = Object.entries(ink).find(([k]) => k.includes('gappy'));
  if (!steady || !gappy) fail(`${where}: legend lacks the two series: ${JSON.stringify(ink)}`);
  const [s, g] = [steady[1], gappy[1]];
  if (s.inked < s.width * 0.5) fail(`${where}: the finite series is not drawn: ${JSON.stringify(ink)}`);
  if (g.inked < g.width * 0.15) fail(`${where}: the series with NaN is not drawn where finite: ${JSON.stringify(ink)}`);
  if (g.gap < g.width * 0.05) fail(`${where}: the NaN points are not a gap: ${JSON.stringify(ink)}`);
  if (s.gap > 3) fail(`${where}: the finite series has a gap: ${JSON.stringify(ink)}`);
  return { steady: s, gappy: g };
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'],
});
try {
  const ctx = await browser.newContext({ viewport: { width: 1400, height: 1000 } });
  const page = await ctx.newPage();
  page.setDefaultTimeout(30000);
  phase = 'login';
  page.on('console', (m) => { if (m.type() === 'error') report.consoleErrors.push(`${phase}: ${m.text()}`); });
  page.on('pageerror', (e) => report.consoleErrors.push(`${phase}: ${e.message}`));

  // Locked: the UI sends us to the login page; a wrong password keeps it locked.
  await page.goto(base);
  if (!page.url().includes('-/login')) fail(`expected the login page, got ${page.url()}`);
  await page.fill('#password', 'not-the-password');
  await page.click('button[type=submit]');
  await page.waitForSelector('.error');
  if (!(await page.textContent('.error')).includes('Wrong user or password')) fail('no message for a wrong password');
  await page.goto(base);
  if (!page.url().includes('-/login')) fail('a wrong password opened the UI');
  await page.screenshot({ path: join(shots, 'login.png') });

  await page.fill('#password', password);
  const t0 = Date.now();
  await Promise.all([page.waitForURL((u) => !u.toString().includes('-/login')), page.click('button[type=submit]')]);
  phase = 'overview';
  // Interactive: the Overview's figures are on screen (data fetched and rendered).
  await page.waitForSelector('.stat-value');
  report.overviewInteractiveMs = Date.now() - t0;
  const nav = await page.evaluate(() => {
    const n = performance.getEntriesByType('navigation')[0];
    return { domContentLoaded: n.domContentLoadedEventEnd, load: n.loadEventEnd };
  });
  report.overviewNavigation = nav;
  report.overviewFailingReceivers = await page.$$eval('#failing-receivers tbody tr', (rs) => rs.length);
  // The headline cards sit in one row, each as tall and as wide as the others.
  const cards = await page.$$eval('main .stats:first-of-type .stat', (cs) => cs.map((c) => c.getBoundingClientRect()).map((r) => [r.top, r.height, r.width]));
  if (new Set(cards.map((c) => c.join())).size !== 1) fail(`Overview cards out of line: ${JSON.stringify(cards)}`);
  await page.screenshot({ path: join(shots, 'overview.png'), fullPage: true });

  for (const id of ['explore', 'dashboards', 'alerts', 'silences', 'notifications', 'targets', 'status']) {
    phase = id;
    await page.goto(`${base}#/${id}`);
    await page.waitForSelector('main h2');
    await page.waitForFunction(() => !document.querySelector('main').textContent.includes('Loading…'));
    const errors = await page.$$eval('main .error', (es) => es.map((e) => e.textContent));
    if (errors.length) fail(`${id}: ${errors.join('; ')}`);
    report.pages[id] = await page.$eval('main h2', (e) => e.textContent);
    await page.screenshot({ path: join(shots, `${id}.png`), fullPage: true });
  }

  // Explore: completion, the error position, then a query that draws a chart.
  phase = 'explore';
  await page.goto(`${base}#/explore`);
  await page.click('textarea');
  await page.keyboard.type('node_loa');
  await page.waitForSelector('.completions li');
  const completions = await page.$$eval('.completions li span', (es) => es.map((e) => e.textContent));
  if (!completions.includes('node_load1')) fail(`no completion node_load1 in ${completions}`);
  // Accepting a completion puts it into the editor.
  await page.keyboard.press('Tab');
  const accepted = await page.$eval('textarea', (t) => t.value);
  if (!/^node_load/.test(accepted)) fail(`completion not accepted: ${accepted}`);
  // The server answers the bad query with 400, which Chromium logs; that one is expected.
  phase = 'explore-bad-query';
  await page.fill('textarea', 'sum(rate(up[5m])');
  await page.click('button.primary');
  await page.waitForSelector('.caret');
  report.errorCaret = await page.$eval('.caret', (e) => e.textContent);
  // A syntax error the parser only calls "invalid" still gets its position from the server.
  await page.fill('textarea', 'up{job="a"} bogus');
  await page.click('button.primary');
  await page.waitForFunction(() => (document.querySelector('.caret') || {}).textContent?.includes('character 13'));
  report.consoleErrors = report.consoleErrors.filter((m) => !m.startsWith('explore-bad-query: Failed to load resource: the server responded with a status of 400'));
  phase = 'explore';
  // Typing a name that other metrics contain and pressing Enter runs exactly that query.
  await page.fill('textarea', '');
  await page.keyboard.type('up');
  // Usually `pg_up`, `redis_up`, ... are offered by now; Enter must run `up` either way.
  await page.waitForSelector('.completions li', { timeout: 3000 }).catch(() => {});
  await page.keyboard.press('Enter');
  await page.waitForSelector('.chart canvas');
  const ran = await page.$eval('textarea', (t) => t.value);
  if (ran !== 'up') fail(`Enter changed the query to ${ran}`);
  const drawn = await page.$eval('.chart', (e) => Number(e.dataset.series));
  if (!(drawn > 0)) fail('Explore drew no series');
  // The chart's canvas has coloured pixels beyond its background.
  const inked = await page.$eval('.chart canvas', (c) => {
    const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
    let n = 0;
    for (let i = 0; i < d.length; i += 4) if (d[i + 3] > 0) n++;
    return n;
  });
  if (inked < 100) fail(`the chart canvas is blank (${inked} pixels)`);
  report.exploreSeries = drawn;
  if (!page.url().includes('expr=up')) fail(`the query is not in the URL: ${page.url()}`);
  const link0 = page.url();
  // A NaN in one series leaves a gap in that series; the chart still draws (issue 18).
  await page.goto(`${base}#/explore?expr=${encodeURIComponent(GAPPY)}`);
  await page.waitForFunction(() => document.querySelector('.chart')?.dataset.series === '2');
  report.exploreNaN = checkGaps('Explore', await inkPerSeries(page));
  await page.screenshot({ path: join(shots, 'explore-nan.png'), fullPage: true });
  await page.goto(link0);
  await page.waitForSelector('.chart canvas');
  await page.click('text=Table');
  await page.waitForSelector('table.result');
  await page.screenshot({ path: join(shots, 'explore-query.png'), fullPage: true });
  // The shared link opens the same view, also for someone who has to log in first.
  const link = page.url();
  await page.goto('about:blank');
  await page.goto(link);
  await page.waitForSelector('table.result');
  const other = await browser.newContext();
  const fresh = await other.newPage();
  await fresh.goto(link);
  if (!fresh.url().includes('-/login')) fail('a shared link opened without a login');
  await fresh.fill('#password', password);
  await Promise.all([fresh.waitForURL((u) => !u.toString().includes('-/login')), fresh.click('button[type=submit]')]);
  await fresh.waitForSelector('table.result');
  if (!fresh.url().includes('expr=up')) fail(`after login the shared view is lost: ${fresh.url()}`);
  await other.close();

  // Dashboards: each renders, with data and no panel in error.
  phase = 'dashboards';
  await page.goto(`${base}#/dashboards`);
  await page.waitForSelector('.dash-list a');
  const dashes = await page.$$eval('.dash-list a', (as) => as.map((a) => [a.textContent, a.getAttribute('href')]));
  for (const [title, href] of dashes) {
    phase = `dashboard ${title}`;
    await page.goto(`${base}${href}`);
    await page.waitForSelector('.panel');
    await page.waitForFunction(() => [...document.querySelectorAll('.panel-body')].every((b) => !b.textContent.includes('Loading…')), null, { timeout: 30000 });
    const r = await page.$$eval('.panel', (ps) => ps.map((p) => ({
      title: p.dataset.title,
      error: p.querySelector('.panel-error') ? p.querySelector('.panel-error').textContent : null,
      noData: !!p.querySelector('.no-data'),
      // A merged table with a hole means its queries' label sets did not line up.
      emptyCells: [...p.querySelectorAll('.table-wrap td')].filter((td) => ['', '–'].includes(td.textContent.trim())).length,
      // The chart and its legend end inside the panel (a long legend scrolls, it is not cut).
      clipped: [...p.querySelectorAll('.chart canvas, .chart .u-legend')].some((e) => e.getBoundingClientRect().bottom > p.getBoundingClientRect().bottom + 1),
    })));
    const clipped = r.filter((x) => x.clipped).map((x) => x.title);
    if (clipped.length) fail(`${title}: charts run past their panels: ${clipped.join(', ')}`);
    const bad = r.filter((x) => x.error);
    if (bad.length) fail(`${title}: panels in error: ${bad.map((x) => `${x.title}: ${x.error}`).join('; ')}`);
    const withData = r.filter((x) => !x.noData).length;
    if (withData === 0) fail(`${title}: no panel has data`);
    report.dashboards[title] = {
      panels: r.length, withData, noData: r.filter((x) => x.noData).map((x) => x.title),
      tablesWithHoles: r.filter((x) => x.emptyCells > 0).map((x) => x.title),
    };
    await page.screenshot({ path: join(shots, `dashboard-${href.split('/').pop()}.png`), fullPage: true });
    const nan = await page.$('.panel[data-title="NaN half the time"]');
    if (nan) report.dashboardNaN = checkGaps(`${title}: NaN panel`, await inkPerSeries(nan));
  }

  // A multi-value variable survives the URL: pick two values, reload, both are still chosen.
  phase = 'dashboard variables';
  if (dashes.some(([t]) => t === 'My service')) {
  await page.goto(`${base}#/dashboards/my-service`);
  // A dropdown with a checkbox per value (not a native list box).
  const picker = 'button[aria-label="variable status"]';
  await page.waitForSelector(picker);
  await page.click(picker);
  await page.click('.pick-list input[value="200"]');
  await page.click('.pick-list input[value="500"]');
  await page.waitForFunction(() => location.hash.includes('var-status=200') && location.hash.includes('var-status=500'));
  await page.screenshot({ path: join(shots, 'dashboard-variable-picker.png') });
  await page.reload();
  await page.waitForSelector(picker);
  const chosen = await page.textContent(picker);
  if (!chosen.includes('200 + 500')) fail(`multi-value variable after reload: ${chosen}`);
  await page.click(picker);
  const ticked = await page.$$eval('.pick-list input:checked', (is) => is.map((i) => i.value));
  if (ticked.join() !== '200,500') fail(`ticked after reload: ${ticked}`);
  // A panel without data says which query found nothing and opens it in Explore.
  await page.goto(`${base}#/dashboards/my-service`);
  const link = '.panel[data-title="Nothing here"] .no-data-query a';
  await page.waitForSelector(link);
  await page.click(link);
  await page.waitForSelector('textarea');
  await page.waitForFunction(() => document.querySelector('textarea').value.includes('nothing_total'));
  report.noDataExplore = await page.$eval('textarea', (t) => t.value);
  // Grafana's link form opens the same dashboard, variables and range kept.
  await page.goto(`${base}d/my-service/my-service?orgId=1&var-status=500&from=now-3h&to=now`);
  await page.waitForSelector(picker);
  if (!page.url().includes('#/dashboards/my-service')) fail(`/d/<uid> went to ${page.url()}`);
  if (!(await page.textContent(picker)).includes('500')) fail('/d/<uid> lost var-status');
  if (!page.url().includes('range=3h')) fail(`/d/<uid> lost the range: ${page.url()}`);
  report.grafanaLink = true;
  report.multiValueUrl = true;
  }

  // Alerts: silence the firing alert in one click.
  phase = 'alerts';
  await page.goto(`${base}#/alerts`);
  await page.waitForSelector('tr.alert-row button.silence', { timeout: 30000 });
  await page.click('tr.alert-row button.silence');
  await page.waitForSelector('.ok');
  report.silenceMessage = await page.$eval('.ok', (e) => e.textContent);
  // The silenced alert is marked as such (the notifier's copy carries the external labels).
  await page.waitForSelector('tr.alert-row .badge-silenced', { timeout: 30000 });
  report.silencedMarker = true;
  await page.screenshot({ path: join(shots, 'alerts-silenced.png'), fullPage: true });
  // The Status page shows the appliance's own build and runtime, nothing of Go's.
  phase = 'status';
  await page.goto(`${base}#/status`);
  await page.waitForSelector('table.kv');
  const statusText = await page.textContent('main');
  for (const bad of ['GOMEMLIMIT', 'goVersion', 'GOGC', 'goroutine']) if (statusText.includes(bad)) fail(`the Status page shows ${bad}`);
  for (const good of ['rustVersion', 'revision', 'residentMemoryBytes', 'dataDir', 'uptimeSeconds']) if (!statusText.includes(good)) fail(`the Status page lacks ${good}`);
  if (statusText.includes('unknown')) fail('the Status page shows "unknown" build facts');

  // Silences: create one from the form, then expire it.
  phase = 'silences';
  await page.goto(`${base}#/silences`);
  await page.fill('input[name=matchers]', 'alertname="FromTheForm", severity=~"warn.*"');
  await page.fill('input[name=duration]', '1h');
  await page.click('.silence-form button[type=submit]');
  await page.waitForSelector('.ok');
  await page.waitForSelector('text=alertname="FromTheForm"');
  const row = page.locator('tr', { hasText: 'FromTheForm' });
  await row.locator('button', { hasText: 'Expire' }).click();
  await page.waitForFunction(() => [...document.querySelectorAll('tr')].some((t) => t.textContent.includes('FromTheForm') && t.textContent.includes('expired')));
  await page.screenshot({ path: join(shots, 'silences.png'), fullPage: true });

  if (report.consoleErrors.length) fail(`console errors: ${report.consoleErrors.join(' | ')}`);

  // Logging out locks the UI again.
  phase = 'logout';
  await page.goto(base);
  await Promise.all([page.waitForURL((u) => u.toString().includes('-/login')), page.click('nav .logout button')]);
  await page.goto(base);
  if (!page.url().includes('-/login')) fail('the UI is open after logging out');
  console.log(JSON.stringify(report));
} catch (e) {
  console.error(`browser test failed (${phase}): ${e.message}`);
  console.error(JSON.stringify(report));
  process.exitCode = 1;
} finally {
  await browser.close();
}
