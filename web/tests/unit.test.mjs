// Unit tests of the UI's pure logic (node --test), run by tests/ui.rs.
import test from 'node:test';
import assert from 'node:assert/strict';
import { interpolate, builtins, tableRows, toggleChoice, emptyQueries } from '../src/pages/dashboards.js';
import { readFileSync } from 'node:fs';
import { errorPosition, completionContext, quantileQueries } from '../src/pages/explore.js';
import { parseMatchers } from '../src/pages/silences.js';
import { format, parseDuration, promDuration, thresholdColor, parseTime } from '../src/units.js';
import { legendName, align, tickLabels, legendValue, hasHistograms, histogramText } from '../src/chart.js';

test('variables interpolate as Grafana does for Prometheus', () => {
  const vars = {
    one: { value: 'web-1.prod', regex: false },
    multi: { value: ['a.b', 'c'], regex: true },
    single: { value: ['x.y'], regex: true },
    all: { value: '.*', raw: true },
    __rate_interval: '1m',
  };
  assert.equal(interpolate('up{i="$one"}', vars), 'up{i="web-1.prod"}');
  assert.equal(interpolate('up{i=~"$multi"}', vars), 'up{i=~"(a\\\\.b|c)"}');
  assert.equal(interpolate('up{i=~"${single}"}', vars), 'up{i=~"x\\\\.y"}');
  assert.equal(interpolate('up{i=~"[[all]]"}', vars), 'up{i=~".*"}');
  assert.equal(interpolate('rate(x[$__rate_interval])', vars), 'rate(x[1m])');
  assert.equal(interpolate('${multi:csv} $unknown', vars), 'a.b,c $unknown');
});

test('built-in interval variables follow the range', () => {
  const b = builtins(0, 6 * 3600, 1000);
  assert.equal(b.__range, '21600s');
  assert.equal(b.__interval, '22s');
  assert.equal(b.__rate_interval, '1m');
  assert.equal(builtins(0, 86400 * 7, 500).__rate_interval, `${Math.ceil(86400 * 7 / 500) + 15}s`.replace(/^(\d+)s$/, (m, n) => promDuration(Number(n))));
});

test('table format merges queries on labels and organizes columns', () => {
  const res = [
    { t: { refId: 'A' }, b: { data: { resultType: 'vector', result: [{ metric: { name: 't1' }, value: [10, '5'] }, { metric: { name: 't2' }, value: [10, '1'] }] } } },
    { t: { refId: 'B' }, b: { data: { resultType: 'vector', result: [{ metric: { name: 't1' }, value: [10, '2'] }] } } },
  ];
  const { columns, rows } = tableRows(res, [{ id: 'merge' }, { id: 'organize', options: { excludeByName: { Time: true }, renameByName: { 'Value #A': 'ok', 'Value #B': 'failed' } } }]);
  assert.deepEqual(columns.map((c) => c.title), ['name', 'ok', 'failed']);
  assert.deepEqual(rows.map((r) => [r.name, r['Value #A'], r['Value #B']]), [['t1', 5, 2], ['t2', 1, undefined]]);
});

test('error positions', () => {
  assert.equal(errorPosition('sum(rate(up[5m])', 'unclosed left parenthesis'), 3);
  assert.equal(errorPosition('up{a="b"', 'unexpected end of input inside braces'), 2);
  assert.equal(errorPosition('foo(up)', "unknown function with name 'foo'"), 0);
  assert.equal(errorPosition('up)', 'unexpected right parenthesis'), 2);
  assert.equal(errorPosition('up{a="b}', 'unterminated quoted string "'), 5);
  assert.equal(errorPosition('foo bar', 'invalid parameter "query": 1:5: parse error: unexpected "bar"'), 4);
  assert.equal(errorPosition('up\n + on(a) x\n ) 3', '3:2: parse error: unexpected right parenthesis'), 15);
});

test('completion context', () => {
  assert.deepEqual(completionContext('rate(node_cp', 12), { kind: 'metric', word: 'node_cp' });
  assert.deepEqual(completionContext('up{jo', 5), { kind: 'label', metric: 'up', word: 'jo' });
  assert.deepEqual(completionContext('up{job="no', 10), { kind: 'value', label: 'job', metric: 'up', word: 'no' });
  assert.equal(completionContext('sum by (ins', 11).kind, 'label');
});

test('silence matchers', () => {
  assert.deepEqual(parseMatchers('alertname="A", sev=~"crit.*", x!="y"'), [
    { name: 'alertname', value: 'A', isRegex: false, isEqual: true },
    { name: 'sev', value: 'crit.*', isRegex: true, isEqual: true },
    { name: 'x', value: 'y', isRegex: false, isEqual: false },
  ]);
  assert.throws(() => parseMatchers('alertname=A'), /bad matcher at character 1/);
  assert.throws(() => parseMatchers(''), /at least one matcher/);
});

test('units', () => {
  assert.equal(format(0.953, 'percentunit'), '95.3%');
  assert.equal(format(1536, 'bytes'), '1.5 KiB');
  assert.equal(format(0.25, 's'), '250 ms');
  assert.equal(format(90, 's'), '1.5 min');
  assert.equal(format(12.5, 'reqps'), '12.5 req/s');
  assert.equal(format(2500, 'ops'), '2.5 K ops/s');
  assert.equal(format(null, 'short'), '–');
  assert.equal(format(NaN, 's'), 'NaN');
  assert.equal(parseDuration('1h30m'), 5400);
  assert.equal(parseDuration('nope'), null);
  assert.equal(promDuration(120), '2m');
  assert.equal(parseTime('now-1h', 10000), 6400);
  const th = { steps: [{ color: 'green', value: null }, { color: 'red', value: 80 }] };
  assert.equal(thresholdColor(50, th), thresholdColor(0, th));
  assert.notEqual(thresholdColor(90, th), thresholdColor(50, th));
});

test('legend formats and alignment', () => {
  assert.equal(legendName({ __name__: 'up', job: 'a' }, '{{job}} up'), 'a up');
  assert.equal(legendName({ __name__: 'up', job: 'a' }, ''), 'up{job="a"}');
  const [xs, ys] = align([{ values: [[10, '1'], [30, '3']] }], 10, 30, 10);
  assert.deepEqual(xs, [10, 20, 30]);
  assert.deepEqual(ys, [[1, null, 3]]);
});

test('date units take milliseconds, as Grafana\'s do', () => {
  const now = Date.now();
  assert.equal(format(now - 3 * 86400 * 1000, 'dateTimeFromNow'), '3 day ago');
  assert.equal(format(Date.UTC(2026, 0, 2), 'dateTimeAsIso'), '2026-01-02T00:00:00.000Z');
});

test('axis ticks never repeat a label', () => {
  const ticks = [0, 0.0005, 0.001, 0.0015, 0.002];
  assert.equal(new Set(tickLabels(ticks, 'short')).size, ticks.length);
  const mib = [1.75, 1.76, 1.77, 1.78].map((v) => v * 1024 * 1024);
  const labels = tickLabels(mib, 'Bps');
  assert.equal(new Set(labels).size, mib.length, labels.join());
  assert.equal(labels[2], '1.77 MiB/s');
});

test('a legend row shows its calcs, or the last value, without a cursor', () => {
  assert.equal(legendValue([1, 3, NaN, null], undefined, 'short'), '3');
  assert.equal(legendValue([1, 3, null], ['mean', 'max'], 'short'), 'Mean 2  Max 3');
  assert.equal(legendValue([null], undefined, 'short'), '–');
});

test('the firing alerts table puts name, severity, job and instance first', () => {
  const dash = JSON.parse(readFileSync(new URL('../../dashboards/service-health.json', import.meta.url)));
  const panel = dash.panels.find((p) => p.title === 'Firing alerts');
  const res = [{ t: { refId: 'A' }, b: { data: { resultType: 'vector', result: [
    { metric: { __name__: 'ALERTS', address: 'a:1', alertname: 'TargetDown', alertstate: 'firing', id: 'x'.repeat(64), instance: 'a:1', job: 'api', severity: 'critical' }, value: [1, '1'] },
  ] } } }];
  const { columns } = tableRows(res, panel.transformations);
  assert.deepEqual(columns.slice(0, 4).map((c) => c.key), ['alertname', 'severity', 'job', 'instance']);
  assert.ok(!columns.some((c) => c.key === 'alertstate'));
});

test('a multi-value choice behaves as Grafana\'s picker', () => {
  const opts = ['200', '500'];
  assert.deepEqual(toggleChoice(['$__all'], '200', opts, true), ['200']);
  assert.deepEqual(toggleChoice(['200'], '500', opts, true), ['200', '500']);
  assert.deepEqual(toggleChoice(['200'], '200', opts, true), ['$__all']);
  assert.deepEqual(toggleChoice(['200'], '200', opts, false), ['200']);
  assert.deepEqual(toggleChoice(['200', '500'], '$__all', opts, true), ['$__all']);
});

test('a panel without data names the queries that returned nothing', () => {
  const res = [
    { t: { refId: 'A' }, expr: 'up{job="x"}', b: { data: { resultType: 'matrix', result: [] } } },
    { t: { refId: 'B' }, expr: 'up', b: { data: { resultType: 'matrix', result: [{ metric: {}, values: [] }] } } },
  ];
  assert.deepEqual(emptyQueries(res), [{ refId: 'A', expr: 'up{job="x"}', histograms: false }]);
});

test('native histograms: detected, printed bucket by bucket, never read as a value', () => {
  const h = { count: '3', sum: '4.5', buckets: [[0, '0.5', '1', '1'], [3, '-0.001', '0.001', '2']] };
  const vec = { resultType: 'vector', result: [{ metric: { __name__: 'h' }, histogram: [10, h] }] };
  assert.equal(hasHistograms(vec), true);
  assert.equal(hasHistograms({ resultType: 'vector', result: [{ metric: {}, value: [1, '2'] }] }), false);
  assert.equal(histogramText(h), 'count 3, sum 4.5\n(0.5,1]: 1\n[-0.001,0.001]: 2');
  // A dashboard table or panel over a histogram result neither throws nor invents a value.
  const res = [{ t: { refId: 'A' }, b: { data: vec }, expr: 'h' }];
  assert.deepEqual(tableRows(res, []).rows, []);
  assert.deepEqual(emptyQueries(res), [{ refId: 'A', expr: 'h', histograms: true }]);
  assert.deepEqual(quantileQueries('rate(h[5m])').map((q) => q.query),
    ['histogram_quantile(0.5, rate(h[5m]))', 'histogram_quantile(0.9, rate(h[5m]))', 'histogram_quantile(0.99, rate(h[5m]))']);
});
