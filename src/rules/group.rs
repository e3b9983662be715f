//! Rule groups and their evaluation: recording rules write their results back to storage;
//! alerting rules run Prometheus's state machine (inactive → pending → firing → resolved,
//! `for`, `keep_firing_for`), write `ALERTS` / `ALERTS_FOR_STATE`, restore `for` state after
//! a restart, and hand alerts that need sending to the sink.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use serde::Serialize;

use super::template::{self, QueryFn, TemplateData};
use crate::model::histogram::FloatHistogram;
use crate::model::{stale_nan, Labels, MatchOp, Matcher, METRIC_NAME};
use crate::storage::{Appendable, Querier};

/// One sample of a rule's result: labels, float value, and the histogram when it is a
/// native histogram sample (the float is then 0).
pub type RuleSample = (Labels, f64, Option<Arc<FloatHistogram>>);

/// Instant-query evaluation, as rules need it.
pub trait RuleEngine: Send + Sync {
    /// Evaluates `expr` at `t_ms`: a vector (a scalar becomes one sample without labels).
    fn query(&self, expr: &str, t_ms: i64) -> Result<Vec<RuleSample>, String>;
}

/// Where alerts that need sending go (the notifier, or a log until it exists).
pub trait AlertSink: Send + Sync {
    /// Alerts of one rule (`expr` is its expression) that are due to be sent.
    fn send(&self, expr: &str, alerts: &[Alert]);
}

/// An alert's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertState {
    /// Resolved (kept a while so the resolution is sent).
    Inactive,
    /// Active, waiting out `for`.
    Pending,
    /// Firing.
    Firing,
}

impl AlertState {
    /// The `alertstate` label value.
    pub fn as_str(&self) -> &'static str {
        match self {
            AlertState::Inactive => "inactive",
            AlertState::Pending => "pending",
            AlertState::Firing => "firing",
        }
    }
}

/// One alert of an alerting rule.
#[derive(Clone, Debug, PartialEq)]
pub struct Alert {
    /// Identifying labels (series labels without `__name__`, rule labels, `alertname`).
    pub labels: Labels,
    /// Expanded annotations.
    pub annotations: BTreeMap<String, String>,
    /// State.
    pub state: AlertState,
    /// When it became active (ms).
    pub active_at: i64,
    /// When it started firing (ms), 0 if never.
    pub fired_at: i64,
    /// When it was resolved (ms), 0 if not.
    pub resolved_at: i64,
    /// When it was last sent (ms).
    pub last_sent_at: i64,
    /// Until when the last send is valid (ms).
    pub valid_until: i64,
    /// Since when it is kept firing after its condition cleared (ms), 0 if not.
    pub keep_firing_since: i64,
    /// The expression's value.
    pub value: f64,
}

/// How a rule's last evaluation went.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RuleHealth {
    /// `ok`, `err` or `unknown`.
    pub health: &'static str,
    /// The last error.
    pub last_error: String,
    /// When it last ran (ms).
    pub last_eval_ms: i64,
    /// How long it took (s).
    pub eval_seconds: f64,
}

/// A rule and its state.
pub enum RuleKind {
    /// Writes `record`.
    Recording,
    /// Raises alerts.
    Alerting(AlertingState),
}

/// The state of an alerting rule.
#[derive(Default)]
pub struct AlertingState {
    /// Active (and recently resolved) alerts by label hash.
    pub active: HashMap<u64, Alert>,
    /// `for` state was restored (or needs none); `ALERTS` is written from then on.
    pub restored: bool,
    /// `ALERTS_FOR_STATE` found at restore, by alert label hash: (last sample time, active
    /// since), both ms. Alerts that only reappear in the first evaluations after a start
    /// (their target not yet scraped again) are restored from here too.
    to_restore: HashMap<u64, (i64, i64)>,
    /// Until when `to_restore` is consulted (ms).
    restore_until: i64,
}

/// A loaded rule with its evaluation state.
pub struct Rule {
    /// The definition.
    pub def: super::file::Rule,
    /// Labels from the rule and its group.
    pub labels: BTreeMap<String, String>,
    /// Kind and alert state.
    pub kind: RuleKind,
    /// Last evaluation.
    pub health: RuleHealth,
    /// Series written by the last evaluation (to mark vanished ones stale).
    prev_series: HashSet<Labels>,
}

impl Rule {
    /// A rule from its definition, with the group's labels added (the rule's win).
    pub fn new(def: super::file::Rule, group_labels: &BTreeMap<String, String>) -> Rule {
        let mut labels = group_labels.clone();
        labels.extend(def.labels.clone());
        let kind = if def.alert.is_empty() {
            RuleKind::Recording
        } else {
            RuleKind::Alerting(AlertingState::default())
        };
        Rule {
            def,
            labels,
            kind,
            health: RuleHealth {
                health: "unknown",
                ..Default::default()
            },
            prev_series: HashSet::new(),
        }
    }

    /// Whether two rules have the same definition (a reload keeps such rules' state).
    pub fn same_as(&self, other: &Rule) -> bool {
        self.def == other.def && self.labels == other.labels
    }

    /// Alerts of an alerting rule (none for recording rules).
    pub fn alerts(&self) -> Vec<Alert> {
        match &self.kind {
            RuleKind::Alerting(a) => {
                let mut v: Vec<Alert> = a
                    .active
                    .values()
                    .filter(|a| a.state != AlertState::Inactive)
                    .cloned()
                    .collect();
                v.sort_by(|a, b| a.labels.cmp(&b.labels));
                v
            }
            RuleKind::Recording => Vec::new(),
        }
    }
}

/// What evaluation needs from the outside.
#[derive(Clone)]
pub struct EvalContext {
    /// PromQL.
    pub engine: Arc<dyn RuleEngine>,
    /// Where results go.
    pub storage: Arc<dyn Appendable>,
    /// Where `ALERTS_FOR_STATE` is read back from at restore.
    pub querier: Arc<dyn Querier>,
    /// Where alerts go.
    pub sink: Arc<dyn AlertSink>,
    /// `$externalLabels`.
    pub external_labels: BTreeMap<String, String>,
    /// `$externalURL`.
    pub external_url: String,
    /// Resend firing alerts this often (Prometheus: 1m).
    pub resend_delay_ms: i64,
    /// Restore `for` state only from `ALERTS_FOR_STATE` this recent (Prometheus: 1h).
    pub outage_tolerance_ms: i64,
    /// Minimum time left pending after a restore (Prometheus: 10m).
    pub for_grace_period_ms: i64,
}

/// Resolved alerts stay this long so their resolution is (re)sent.
const RESOLVED_RETENTION_MS: i64 = 15 * 60 * 1000;

/// A rule group with its rules' state.
pub struct Group {
    /// Group name.
    pub name: String,
    /// File it came from.
    pub file: String,
    /// Evaluation interval (ms).
    pub interval_ms: i64,
    /// Query offset (ms).
    pub query_offset_ms: i64,
    /// Limit on series/alerts per rule (0 = none).
    pub limit: usize,
    /// The rules, in order.
    pub rules: Vec<Rule>,
    /// When the group last ran (ms), and how long it took (s).
    pub last_eval_ms: i64,
    /// Duration of the last evaluation (s).
    pub last_duration_s: f64,
    /// Evaluations whose start came later than one interval after the previous one.
    pub missed_iterations: u64,
    /// Rule evaluations that failed, total.
    pub failures: u64,
    /// Rule evaluations, total.
    pub evaluations: u64,
}

fn alert_key(l: &Labels) -> u64 {
    l.stable_hash()
}

impl Group {
    /// A group from its definition; `default_interval_ms` applies when it sets none.
    pub fn new(def: &super::file::RuleGroup, file: &str, default_interval_ms: i64) -> Group {
        Group {
            name: def.name.clone(),
            file: file.to_string(),
            interval_ms: def
                .interval
                .map(|d| d.as_millis())
                .filter(|ms| *ms > 0)
                .unwrap_or(default_interval_ms),
            query_offset_ms: def.query_offset.map(|d| d.as_millis()).unwrap_or(0),
            limit: def.limit,
            rules: def
                .rules
                .iter()
                .map(|r| Rule::new(r.clone(), &def.labels))
                .collect(),
            last_eval_ms: 0,
            last_duration_s: 0.0,
            missed_iterations: 0,
            failures: 0,
            evaluations: 0,
        }
    }

    /// Takes over the state of rules that are unchanged in `old` (a reload).
    pub fn adopt_state(&mut self, old: &mut Group) {
        let mut olds: Vec<Option<Rule>> = std::mem::take(&mut old.rules)
            .into_iter()
            .map(Some)
            .collect();
        for r in &mut self.rules {
            if let Some(slot) = olds
                .iter_mut()
                .find(|o| o.as_ref().is_some_and(|o| o.same_as(r)))
            {
                if let Some(o) = slot.take() {
                    *r = o;
                }
            }
        }
        self.last_eval_ms = old.last_eval_ms;
        self.last_duration_s = old.last_duration_s;
    }

    /// Evaluates every rule at `ts` (ms), in order; later rules see earlier rules' output.
    /// Returns the rule errors (also kept in each rule's health).
    pub fn eval(&mut self, ts: i64, ctx: &EvalContext) -> Vec<String> {
        let started = std::time::Instant::now();
        let mut errors = Vec::new();
        let at = ts - self.query_offset_ms;
        let limit = self.limit;
        for rule in &mut self.rules {
            let t0 = std::time::Instant::now();
            self.evaluations += 1;
            let result = match &mut rule.kind {
                RuleKind::Recording => eval_recording(&rule.def, &rule.labels, at, limit, ctx),
                RuleKind::Alerting(state) => {
                    eval_alerting(&rule.def, &rule.labels, state, ts, at, limit, ctx)
                }
            };
            rule.health.last_eval_ms = ts;
            rule.health.eval_seconds = t0.elapsed().as_secs_f64();
            let series = match result {
                Ok(s) => {
                    rule.health.health = "ok";
                    rule.health.last_error.clear();
                    s
                }
                Err(e) => {
                    rule.health.health = "err";
                    rule.health.last_error = e.clone();
                    self.failures += 1;
                    errors.push(format!("rule {:?}: {e}", rule.def.name()));
                    Vec::new()
                }
            };
            let mut app = ctx.storage.appender();
            let mut now_series = HashSet::with_capacity(series.len());
            for (l, v, h) in &series {
                let r = match h {
                    Some(h) => app.append_histogram(l, at, h.clone()),
                    None => app.append(l, at, *v),
                };
                if let Err(e) = r {
                    crate::failure!(warn, "rules", "store", rule = rule.def.name(), error = %e, "rule result not stored");
                }
                now_series.insert(l.clone());
            }
            for gone in rule.prev_series.difference(&now_series) {
                let _ = app.append(gone, at, stale_nan());
            }
            if let Err(e) = app.commit() {
                crate::failure!(warn, "rules", "store", rule = rule.def.name(), error = %e, "rule results not stored");
            }
            rule.prev_series = now_series;
            if let RuleKind::Alerting(state) = &mut rule.kind {
                send_alerts(&rule.def.expr, state, ts, self.interval_ms, ctx);
            }
        }
        if self.last_eval_ms != 0 && ts - self.last_eval_ms > self.interval_ms {
            self.missed_iterations +=
                ((ts - self.last_eval_ms) / self.interval_ms - 1).max(0) as u64;
        }
        self.last_eval_ms = ts;
        self.last_duration_s = started.elapsed().as_secs_f64();
        errors
    }

    /// Restores `for` state of alerting rules from `ALERTS_FOR_STATE` after a restart, as
    /// Prometheus does; call after the first evaluation. Alerts that become active again in
    /// the next few evaluations (the first scrape after a start may come after the first
    /// evaluation) are restored when they appear.
    pub fn restore_for_state(&mut self, ts: i64, ctx: &EvalContext) {
        let maxt = ts - self.query_offset_ms;
        let mint = maxt - ctx.outage_tolerance_ms;
        let window = (3 * self.interval_ms).max(120_000);
        for rule in &mut self.rules {
            let for_ms = rule.def.for_.map(|d| d.as_millis()).unwrap_or(0);
            let RuleKind::Alerting(state) = &mut rule.kind else {
                continue;
            };
            if state.restored {
                continue;
            }
            state.restored = true;
            if for_ms <= 0 || for_ms < ctx.for_grace_period_ms {
                // Short `for`: waiting it out again is no worse than a grace period.
                continue;
            }
            let matchers: Vec<Matcher> = [
                (METRIC_NAME, "ALERTS_FOR_STATE"),
                ("alertname", rule.def.alert.as_str()),
            ]
            .into_iter()
            .filter_map(|(n, v)| Matcher::new(MatchOp::Equal, n, v).ok())
            .collect();
            for series in ctx.querier.select(&matchers, mint, maxt) {
                let Some((t, v)) = series
                    .samples
                    .iter()
                    .rev()
                    .find(|(_, v)| !crate::model::is_stale_nan(*v))
                    .copied()
                else {
                    continue;
                };
                let mut b = series.labels.builder();
                b.del(METRIC_NAME);
                state
                    .to_restore
                    .insert(alert_key(&b.labels()), (t / 1000 * 1000, (v as i64) * 1000));
            }
            state.restore_until = ts + window;
            let keys: Vec<u64> = state.active.keys().copied().collect();
            for k in keys {
                restore_one(state, k, ts, for_ms, ctx.for_grace_period_ms);
            }
        }
    }

    /// Marks every alerting rule as restored (evaluation from a clean slate, as in tests).
    pub fn mark_restored(&mut self) {
        for r in &mut self.rules {
            if let RuleKind::Alerting(s) = &mut r.kind {
                s.restored = true;
            }
        }
    }
}

/// Prometheus's restore rule for one alert: time spent down does not count towards `for`,
/// time spent pending before does; at least the grace period is left.
fn restore_one(state: &mut AlertingState, key: u64, ts: i64, for_ms: i64, grace_ms: i64) {
    let Some((down_at, mut restored)) = state.to_restore.remove(&key) else {
        return;
    };
    let Some(a) = state.active.get_mut(&key) else {
        return;
    };
    let remaining = for_ms - (down_at - restored);
    if remaining <= 0 {
        // It was firing; the next evaluation sets that again if still true.
    } else if remaining < grace_ms {
        restored = ts - for_ms + grace_ms;
    } else {
        restored += ts - down_at;
    }
    a.active_at = restored;
    tracing::info!(alert = %a.labels, active_at = restored, "restored the pending time of an alert");
}

fn eval_recording(
    def: &super::file::Rule,
    labels: &BTreeMap<String, String>,
    at: i64,
    limit: usize,
    ctx: &EvalContext,
) -> Result<Vec<RuleSample>, String> {
    let res = ctx.engine.query(&def.expr, at)?;
    let mut out = Vec::with_capacity(res.len());
    let mut seen = HashSet::with_capacity(res.len());
    for (l, v, h) in res {
        let mut b = l.builder();
        b.set(METRIC_NAME.into(), def.record.clone());
        for (k, val) in labels {
            if val.is_empty() {
                b.del(k);
            } else {
                b.set(k.clone(), val.clone());
            }
        }
        let l = b.labels();
        if !seen.insert(l.clone()) {
            return Err(
                "vector contains metrics with the same labelset after applying rule labels".into(),
            );
        }
        out.push((l, v, h));
    }
    if limit > 0 && out.len() > limit {
        return Err(format!(
            "exceeded limit of {limit} with {} series",
            out.len()
        ));
    }
    Ok(out)
}

fn labels_map(l: &Labels) -> BTreeMap<String, String> {
    l.iter()
        .map(|x| (x.name.to_string(), x.value.to_string()))
        .collect()
}

#[allow(clippy::too_many_arguments)]
fn eval_alerting(
    def: &super::file::Rule,
    labels: &BTreeMap<String, String>,
    state: &mut AlertingState,
    ts: i64,
    at: i64,
    limit: usize,
    ctx: &EvalContext,
) -> Result<Vec<RuleSample>, String> {
    let res = ctx.engine.query(&def.expr, at)?;
    let engine = ctx.engine.clone();
    let query: QueryFn = Arc::new(move |q: &str| {
        engine
            .query(q, at)
            .map(|v| v.into_iter().map(|(l, f, _)| (labels_map(&l), f)).collect())
    });
    let mut fresh: HashMap<u64, Alert> = HashMap::with_capacity(res.len());
    for (l, v, _) in res {
        let data = TemplateData {
            labels: labels_map(&l),
            external_labels: ctx.external_labels.clone(),
            external_url: ctx.external_url.clone(),
            value: v,
        };
        let expand = |text: &str| match template::expand(
            &def.alert,
            text,
            &data,
            Some(query.clone()),
            ts,
        ) {
            Ok(s) => s,
            Err(e) => {
                crate::failure!(warn, "rules", "template", alert = def.alert, error = %e, "expanding an alert template failed");
                format!("<error expanding template: {e}>")
            }
        };
        let mut b = l.builder();
        b.del(METRIC_NAME);
        for (k, val) in labels {
            let x = expand(val);
            if x.is_empty() {
                b.del(k);
            } else {
                b.set(k.clone(), x);
            }
        }
        b.set("alertname".into(), def.alert.clone());
        let annotations: BTreeMap<String, String> = def
            .annotations
            .iter()
            .map(|(k, t)| (k.clone(), expand(t)))
            .collect();
        let lbs = b.labels();
        let h = alert_key(&lbs);
        if fresh.contains_key(&h) {
            return Err(
                "vector contains metrics with the same labelset after applying alert labels".into(),
            );
        }
        fresh.insert(
            h,
            Alert {
                labels: lbs,
                annotations,
                state: AlertState::Pending,
                active_at: ts,
                fired_at: 0,
                resolved_at: 0,
                last_sent_at: 0,
                valid_until: 0,
                keep_firing_since: 0,
                value: v,
            },
        );
    }
    let result_fps: HashSet<u64> = fresh.keys().copied().collect();
    for (h, a) in fresh {
        match state.active.get_mut(&h) {
            Some(old) if old.state != AlertState::Inactive => {
                old.value = a.value;
                old.annotations = a.annotations;
            }
            _ => {
                state.active.insert(h, a);
                if ts <= state.restore_until {
                    let for_ms = def.for_.map(|d| d.as_millis()).unwrap_or(0);
                    restore_one(state, h, ts, for_ms, ctx.for_grace_period_ms);
                }
            }
        }
    }
    if ts > state.restore_until && !state.to_restore.is_empty() {
        state.to_restore.clear();
    }
    let for_ms = def.for_.map(|d| d.as_millis()).unwrap_or(0);
    let keep_ms = def.keep_firing_for.map(|d| d.as_millis()).unwrap_or(0);
    let mut out = Vec::new();
    let mut active_pending = 0usize;
    let mut doomed = Vec::new();
    for (h, a) in state.active.iter_mut() {
        if !result_fps.contains(h) {
            let mut keep_firing = false;
            if a.state == AlertState::Firing && keep_ms > 0 {
                if a.keep_firing_since == 0 {
                    a.keep_firing_since = ts;
                }
                if ts - a.keep_firing_since < keep_ms {
                    keep_firing = true;
                }
            }
            if a.state == AlertState::Pending
                || (a.resolved_at != 0 && ts - a.resolved_at > RESOLVED_RETENTION_MS)
            {
                doomed.push(*h);
            }
            if a.state != AlertState::Inactive && !keep_firing {
                a.state = AlertState::Inactive;
                a.resolved_at = ts;
            }
            if !keep_firing {
                continue;
            }
        } else {
            a.keep_firing_since = 0;
        }
        active_pending += 1;
        if a.state == AlertState::Pending && ts - a.active_at >= for_ms {
            a.state = AlertState::Firing;
            a.fired_at = ts;
        }
        if state.restored {
            let mut b = a.labels.builder();
            b.set(METRIC_NAME.into(), "ALERTS".into());
            b.set("alertstate".into(), a.state.as_str().into());
            out.push((b.labels(), 1.0, None));
            let mut b = a.labels.builder();
            b.set(METRIC_NAME.into(), "ALERTS_FOR_STATE".into());
            out.push((b.labels(), (a.active_at / 1000) as f64, None));
        }
    }
    for h in doomed {
        state.active.remove(&h);
    }
    if limit > 0 && active_pending > limit {
        state.active.clear();
        return Err(format!(
            "exceeded limit of {limit} with {active_pending} alerts"
        ));
    }
    Ok(out)
}

fn send_alerts(
    expr: &str,
    state: &mut AlertingState,
    ts: i64,
    interval_ms: i64,
    ctx: &EvalContext,
) {
    let delta = ctx.resend_delay_ms.max(interval_ms);
    let mut due = Vec::new();
    for a in state.active.values_mut() {
        let needs = a.state != AlertState::Pending
            && (a.resolved_at > a.last_sent_at || a.last_sent_at + ctx.resend_delay_ms < ts);
        if needs {
            a.last_sent_at = ts;
            a.valid_until = ts + 4 * delta;
            due.push(a.clone());
        }
    }
    if !due.is_empty() {
        due.sort_by(|a, b| a.labels.cmp(&b.labels));
        ctx.sink.send(expr, &due);
    }
}

/// Logs alerts; the sink until the notifier exists.
pub struct LogSink;

impl AlertSink for LogSink {
    fn send(&self, _expr: &str, alerts: &[Alert]) {
        for a in alerts {
            let state = if a.state == AlertState::Inactive {
                "resolved"
            } else {
                "firing"
            };
            tracing::info!(alert = %a.labels, state, annotations = ?a.annotations, "alert");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::{Head, HeadOptions};
    use parking_lot::Mutex;

    struct Fake(Mutex<Vec<(Labels, f64)>>);
    impl RuleEngine for Fake {
        fn query(&self, _: &str, _: i64) -> Result<Vec<RuleSample>, String> {
            Ok(self
                .0
                .lock()
                .iter()
                .map(|(l, f)| (l.clone(), *f, None))
                .collect())
        }
    }
    #[derive(Default)]
    struct Sink(Mutex<Vec<(AlertState, i64)>>);
    impl AlertSink for Sink {
        fn send(&self, _: &str, alerts: &[Alert]) {
            for a in alerts {
                self.0.lock().push((a.state, a.last_sent_at));
            }
        }
    }

    const M: i64 = 60_000;

    fn setup(rule: &str) -> (Group, EvalContext, Arc<Fake>, Arc<Sink>, Head) {
        let text = format!("groups:\n  - name: g\n    rules:\n{rule}");
        let f = super::super::file::parse(&text, "t.yml", Default::default()).unwrap();
        let head = Head::new(HeadOptions::default());
        let fake = Arc::new(Fake(Mutex::new(Vec::new())));
        let sink = Arc::new(Sink::default());
        let ctx = EvalContext {
            engine: fake.clone(),
            storage: Arc::new(head.clone()),
            querier: Arc::new(head.clone()),
            sink: sink.clone(),
            external_labels: BTreeMap::new(),
            external_url: String::new(),
            resend_delay_ms: M,
            outage_tolerance_ms: 60 * M,
            for_grace_period_ms: 10 * M,
        };
        (Group::new(&f.groups[0], "t.yml", M), ctx, fake, sink, head)
    }

    fn down(fake: &Fake, is_down: bool) {
        *fake.0.lock() = if is_down {
            vec![(
                Labels::from_pairs([("__name__", "up"), ("job", "api")]),
                0.0,
            )]
        } else {
            Vec::new()
        };
    }

    fn alerts_series(head: &Head, t: i64) -> Vec<String> {
        use crate::storage::Querier;
        let m = [Matcher::new(MatchOp::Equal, METRIC_NAME, "ALERTS").unwrap()];
        head.select(&m, t, t)
            .into_iter()
            .filter(|s| {
                s.samples
                    .iter()
                    .any(|(_, v)| !crate::model::is_stale_nan(*v))
            })
            .map(|s| s.labels.get("alertstate").unwrap_or("").to_string())
            .collect()
    }

    #[test]
    fn pending_firing_resolved() {
        let (mut g, ctx, fake, sink, head) = setup(
            "      - alert: Down\n        expr: up == 0\n        for: 2m\n        labels: {severity: page}\n        annotations: {summary: '{{ $labels.job }} is down ({{ $value }})'}\n",
        );
        g.mark_restored();
        down(&fake, true);
        g.eval(0, &ctx);
        assert_eq!(g.rules[0].alerts()[0].state, AlertState::Pending);
        assert_eq!(alerts_series(&head, 0), vec!["pending"]);
        g.eval(M, &ctx);
        assert_eq!(g.rules[0].alerts()[0].state, AlertState::Pending);
        g.eval(2 * M, &ctx);
        let a = &g.rules[0].alerts()[0];
        assert_eq!(a.state, AlertState::Firing);
        assert_eq!(
            a.labels.to_string(),
            "{alertname=\"Down\", job=\"api\", severity=\"page\"}"
        );
        assert_eq!(a.annotations["summary"], "api is down (0)");
        assert_eq!(alerts_series(&head, 2 * M), vec!["firing"]);
        assert_eq!(sink.0.lock().clone(), vec![(AlertState::Firing, 2 * M)]);
        down(&fake, false);
        g.eval(3 * M, &ctx);
        assert!(g.rules[0].alerts().is_empty());
        assert!(
            alerts_series(&head, 3 * M).is_empty(),
            "stale once resolved"
        );
        assert_eq!(sink.0.lock().last(), Some(&(AlertState::Inactive, 3 * M)));
    }

    #[test]
    fn keep_firing_for_holds_the_alert() {
        let (mut g, ctx, fake, _, _) =
            setup("      - alert: Down\n        expr: up == 0\n        keep_firing_for: 2m\n");
        g.mark_restored();
        down(&fake, true);
        g.eval(0, &ctx);
        assert_eq!(g.rules[0].alerts()[0].state, AlertState::Firing);
        down(&fake, false);
        g.eval(M, &ctx);
        assert_eq!(g.rules[0].alerts()[0].state, AlertState::Firing);
        g.eval(3 * M, &ctx);
        assert!(g.rules[0].alerts().is_empty());
    }

    #[test]
    fn restart_keeps_the_pending_time() {
        let rule = "      - alert: Down\n        expr: up == 0\n        for: 20m\n";
        let (mut g, ctx, fake, _, head) = setup(rule);
        g.mark_restored();
        down(&fake, true);
        g.eval(0, &ctx);
        g.eval(M, &ctx);
        g.eval(2 * M, &ctx);
        // Down from 2m to 5m; a new group (a restarted appliance) on the same store.
        let (mut g2, mut ctx2, _, _, _) = setup(rule);
        ctx2.storage = Arc::new(head.clone());
        ctx2.querier = Arc::new(head.clone());
        ctx2.engine = fake.clone();
        g2.eval(5 * M, &ctx2);
        g2.restore_for_state(5 * M, &ctx2);
        // 2 minutes were spent pending before the outage; the outage does not count.
        assert_eq!(g2.rules[0].alerts()[0].active_at, 3 * M);
        g2.eval(22 * M, &ctx2);
        assert_eq!(g2.rules[0].alerts()[0].state, AlertState::Pending);
        g2.eval(23 * M, &ctx2);
        assert_eq!(g2.rules[0].alerts()[0].state, AlertState::Firing);
    }

    #[test]
    fn an_alert_that_reappears_just_after_a_restart_is_restored_too() {
        let rule = "      - alert: Down\n        expr: up == 0\n        for: 20m\n";
        let (mut g, ctx, fake, _, head) = setup(rule);
        g.mark_restored();
        down(&fake, true);
        g.eval(0, &ctx);
        g.eval(2 * M, &ctx);
        let (mut g2, mut ctx2, fake2, _, _) = setup(rule);
        ctx2.storage = Arc::new(head.clone());
        ctx2.querier = Arc::new(head.clone());
        // The first evaluation after the restart sees nothing (no scrape yet).
        g2.eval(5 * M, &ctx2);
        g2.restore_for_state(5 * M, &ctx2);
        assert!(g2.rules[0].alerts().is_empty());
        down(&fake2, true);
        g2.eval(6 * M, &ctx2);
        assert_eq!(g2.rules[0].alerts()[0].active_at, 4 * M);
        // Long after the restart, a new occurrence starts from scratch.
        down(&fake2, false);
        g2.eval(7 * M, &ctx2);
        down(&fake2, true);
        g2.eval(30 * M, &ctx2);
        assert_eq!(g2.rules[0].alerts()[0].active_at, 30 * M);
    }

    #[test]
    fn limit_and_query_offset() {
        let text = "groups:\n  - name: g\n    limit: 1\n    query_offset: 1m\n    rules:\n      - record: r\n        expr: up\n      - alert: A\n        expr: up == 0\n";
        let f = super::super::file::parse(text, "t.yml", Default::default()).unwrap();
        let (_, ctx, fake, _, head) = setup("      - record: unused\n        expr: up\n");
        let mut g = Group::new(&f.groups[0], "t.yml", M);
        g.mark_restored();
        down(&fake, true);
        assert!(g.eval(10 * M, &ctx).is_empty());
        use crate::storage::Querier;
        let m = [Matcher::new(MatchOp::Equal, METRIC_NAME, "r").unwrap()];
        // Written at the evaluation time minus the offset.
        assert_eq!(head.select(&m, 0, 20 * M)[0].samples[0].0, 9 * M);
        fake.0
            .lock()
            .push((Labels::from_pairs([("__name__", "up"), ("job", "b")]), 0.0));
        let errs = g.eval(11 * M, &ctx);
        assert_eq!(errs.len(), 2, "{errs:?}");
        assert!(
            errs[0].contains("exceeded limit of 1 with 2 series"),
            "{errs:?}"
        );
        assert!(
            errs[1].contains("exceeded limit of 1 with 2 alerts"),
            "{errs:?}"
        );
        assert_eq!(g.rules[0].health.health, "err");
        assert!(g.rules[1].alerts().is_empty());
    }

    #[test]
    fn reload_adopts_the_state_of_unchanged_rules() {
        let rule = "      - alert: Down\n        expr: up == 0\n        for: 20m\n";
        let (mut g, ctx, fake, _, _) = setup(rule);
        g.mark_restored();
        down(&fake, true);
        g.eval(0, &ctx);
        let (mut same, ..) = setup(rule);
        same.adopt_state(&mut g);
        same.eval(M, &ctx);
        assert_eq!(same.rules[0].alerts()[0].active_at, 0);
        let (mut changed, ..) = setup(&rule.replace("20m", "30m"));
        changed.adopt_state(&mut same);
        changed.mark_restored();
        changed.eval(2 * M, &ctx);
        assert_eq!(changed.rules[0].alerts()[0].active_at, 2 * M);
    }

    #[test]
    fn recording_rules_write_and_mark_vanished_series_stale() {
        let (mut g, ctx, fake, _, head) =
            setup("      - record: job:up:sum\n        expr: up\n        labels: {team: a}\n");
        down(&fake, true);
        g.eval(0, &ctx);
        use crate::storage::Querier;
        let m = [Matcher::new(MatchOp::Equal, METRIC_NAME, "job:up:sum").unwrap()];
        let s = head.select(&m, 0, 0);
        assert_eq!(
            s[0].labels.to_string(),
            "{__name__=\"job:up:sum\", job=\"api\", team=\"a\"}"
        );
        down(&fake, false);
        g.eval(M, &ctx);
        let s = head.select(&m, M, M);
        assert!(crate::model::is_stale_nan(s[0].samples[0].1));
    }
}
