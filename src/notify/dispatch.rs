//! Alertmanager's dispatch logic, without I/O: alerts are routed into aggregation groups
//! (per route and `group_by` labels), groups are flushed after `group_wait`, then every
//! `group_interval`, and a flush notifies only when the firing set changed, something was
//! resolved (for receivers that want it) or `repeat_interval` passed — Alertmanager's dedup
//! stage. Inhibition mutes targets of firing sources. Time is passed in, so tests drive it.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::config::InhibitRule;
use super::route::{group_labels, Route};
use crate::model::Labels;

/// An alert as the notifier holds it (times in ms).
#[derive(Clone, Debug, PartialEq)]
pub struct Alert {
    /// Identifying labels.
    pub labels: Labels,
    /// Annotations.
    pub annotations: BTreeMap<String, String>,
    /// When it started.
    pub starts_at: i64,
    /// When it ends (resolved at, or the end of its validity while firing).
    pub ends_at: i64,
    /// Link back to the source.
    pub generator_url: String,
}

impl Alert {
    /// Alertmanager's fingerprint (a hash of the labels).
    pub fn fingerprint(&self) -> u64 {
        self.labels.stable_hash()
    }

    /// Resolved as of `now`.
    pub fn resolved(&self, now: i64) -> bool {
        self.ends_at != 0 && self.ends_at <= now
    }
}

/// A notification to deliver: one group's alerts for one integration of a receiver.
#[derive(Clone, Debug, PartialEq)]
pub struct Notification {
    /// Receiver name.
    pub receiver: String,
    /// Which of the receiver's integrations (its index in the receiver's list).
    pub integration: usize,
    /// What the notification log records for this group and integration once delivered.
    pub log_entry: LogEntry,
    /// Alertmanager's group key: route path and group labels.
    pub group_key: String,
    /// The group's labels.
    pub group_labels: BTreeMap<String, String>,
    /// Firing alerts, then resolved ones, each sorted by labels.
    pub alerts: Vec<Alert>,
    /// `firing` if any alert fires, else `resolved`.
    pub status: &'static str,
}

/// What was last sent for a group (the notification log's entry).
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LogEntry {
    /// Fingerprints of the firing alerts sent.
    pub firing: BTreeSet<u64>,
    /// Fingerprints of the resolved alerts sent.
    pub resolved: BTreeSet<u64>,
    /// When (ms).
    pub at: i64,
}

struct Group {
    receiver: String,
    mute_time_intervals: Vec<String>,
    active_time_intervals: Vec<String>,
    labels: BTreeMap<String, String>,
    alerts: BTreeSet<u64>,
    next_flush: i64,
    group_interval: i64,
    repeat_interval: i64,
    flushed_once: bool,
    /// Deliveries of the last flush not yet finished; the group is not flushed meanwhile.
    in_flight: usize,
    /// One of them failed: resolved alerts stay for the next flush to send again.
    failed: bool,
    /// Resolved alerts the last flush sent, which leave the group once all deliveries land.
    pending_resolved: BTreeSet<u64>,
}

/// How long a notification log entry is kept (Alertmanager's `--data.retention`, 120h).
const LOG_RETENTION_MS: i64 = 120 * 3600 * 1000;

/// The notification log's key for one group and one integration of its receiver; each
/// integration is deduplicated (and retried) on its own, as in Alertmanager.
fn log_key(group_key: &str, integration: usize) -> String {
    format!("{group_key}/{integration}")
}

/// The dispatcher's state.
#[derive(Default)]
pub struct Dispatcher {
    alerts: HashMap<u64, Alert>,
    groups: BTreeMap<String, Group>,
    /// Last notification per group key, Alertmanager's notification log.
    pub log: HashMap<String, LogEntry>,
}

fn group_key(route: &Route, labels: &BTreeMap<String, String>) -> String {
    let inner: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
    format!("{}:{{{}}}", route.key, inner.join(","))
}

fn matches_all(ms: &[crate::model::Matcher], l: &Labels) -> bool {
    ms.iter().all(|m| m.matches(l.get(&m.name).unwrap_or("")))
}

/// Whether `target` is muted at `now` by an inhibition rule whose source matches one of
/// `alerts` that is firing (and not `target` itself), with the `equal` labels equal.
pub fn inhibited<'a>(
    rules: &[InhibitRule],
    alerts: impl Iterator<Item = &'a Alert> + Clone,
    target: &Alert,
    now: i64,
) -> bool {
    rules.iter().any(|r| {
        matches_all(&r.target, &target.labels)
            && alerts.clone().any(|s| {
                !s.resolved(now)
                    && s.fingerprint() != target.fingerprint()
                    && matches_all(&r.source, &s.labels)
                    && r.equal.iter().all(|l| {
                        s.labels.get(l).unwrap_or("") == target.labels.get(l).unwrap_or("")
                    })
            })
    })
}

impl Dispatcher {
    /// Takes in (or updates) an alert and puts it into its groups at `now`.
    pub fn insert(&mut self, route: &Route, mut alert: Alert, now: i64) {
        let fp = alert.fingerprint();
        if let Some(old) = self.alerts.get(&fp) {
            // A re-sent alert that is still the same occurrence keeps its start.
            if !old.resolved(now) && old.starts_at < alert.starts_at {
                alert.starts_at = old.starts_at;
            }
        }
        for r in route.matching(&alert.labels) {
            let labels = group_labels(r, &alert.labels);
            let key = group_key(r, &labels);
            let g = self.groups.entry(key).or_insert_with(|| Group {
                receiver: r.receiver.clone(),
                mute_time_intervals: r.mute_time_intervals.clone(),
                active_time_intervals: r.active_time_intervals.clone(),
                labels,
                alerts: BTreeSet::new(),
                next_flush: now + r.group_wait.as_millis(),
                group_interval: r.group_interval.as_millis(),
                repeat_interval: r.repeat_interval.as_millis(),
                flushed_once: false,
                in_flight: 0,
                failed: false,
                pending_resolved: BTreeSet::new(),
            });
            g.alerts.insert(fp);
        }
        self.alerts.insert(fp, alert);
    }

    /// Whether a firing alert is muted by an inhibition rule at `now`.
    pub fn inhibited(&self, rules: &[InhibitRule], target: &Alert, now: i64) -> bool {
        inhibited(rules, self.alerts.values(), target, now)
    }

    /// When the next group is due (ms), if any. A group whose deliveries are still under way
    /// waits for them ([`Dispatcher::delivered`]).
    pub fn next_due(&self) -> Option<i64> {
        self.groups
            .values()
            .filter(|g| g.in_flight == 0)
            .map(|g| g.next_flush)
            .min()
    }

    /// Flushes every group due at `now`; returns the notifications to send, one per
    /// integration that needs one. `integrations` gives, per receiver, each integration's
    /// `send_resolved`; `muted` filters alerts (silences, inhibition) before a notification is
    /// built; `in_interval` says whether a named time interval contains `now` (routes' mute and
    /// active time intervals).
    ///
    /// Nothing is logged as sent here: the caller reports each delivery's outcome with
    /// [`Dispatcher::delivered`], and only a delivered notification enters the log. A failed
    /// one is therefore sent again at the group's next flush, as in Alertmanager.
    pub fn flush(
        &mut self,
        now: i64,
        integrations: &dyn Fn(&str) -> Vec<bool>,
        muted: &dyn Fn(&Alert) -> bool,
        in_interval: &dyn Fn(&str) -> bool,
    ) -> Vec<Notification> {
        let mut out = Vec::new();
        let mut done = Vec::new();
        for (key, g) in self.groups.iter_mut() {
            if g.next_flush > now || g.in_flight > 0 {
                continue;
            }
            g.next_flush = now + g.group_interval;
            g.flushed_once = true;
            // Outside the route's active times, or inside a mute time, nothing is sent and
            // nothing is logged: the group tries again at its next interval.
            let muted_now = g.mute_time_intervals.iter().any(|n| in_interval(n))
                || (!g.active_time_intervals.is_empty()
                    && !g.active_time_intervals.iter().any(|n| in_interval(n)));
            if muted_now {
                continue;
            }
            let mut firing = Vec::new();
            let mut resolved = Vec::new();
            for fp in &g.alerts {
                let Some(a) = self.alerts.get(fp) else {
                    continue;
                };
                if a.resolved(now) {
                    resolved.push(a.clone());
                } else if !muted(a) {
                    firing.push(a.clone());
                }
            }
            firing.sort_by(|a, b| a.labels.cmp(&b.labels));
            resolved.sort_by(|a, b| a.labels.cmp(&b.labels));
            let firing_fps: BTreeSet<u64> = firing.iter().map(Alert::fingerprint).collect();
            let resolved_fps: BTreeSet<u64> = resolved.iter().map(Alert::fingerprint).collect();
            let mut sent = 0;
            for (i, wants_resolved) in integrations(&g.receiver).into_iter().enumerate() {
                let lk = log_key(key, i);
                let last = self.log.get(&lk).cloned().unwrap_or_default();
                // Alertmanager's dedup: notify on a new firing alert, on a newly resolved one
                // (if wanted), when everything resolved after a firing notification, or on
                // repeat.
                let new_firing = !firing_fps.is_subset(&last.firing);
                let newly_resolved = wants_resolved
                    && !resolved_fps.is_empty()
                    && resolved_fps.iter().any(|f| last.firing.contains(f));
                let all_resolved_now = firing_fps.is_empty() && !last.firing.is_empty();
                let repeat = !firing_fps.is_empty() && now >= last.at + g.repeat_interval;
                if all_resolved_now && !wants_resolved {
                    // Nothing is sent, but the log forgets the firing set, so a new
                    // occurrence is announced again.
                    self.log.insert(
                        lk,
                        LogEntry {
                            at: now,
                            ..Default::default()
                        },
                    );
                    continue;
                }
                let notify =
                    new_firing || newly_resolved || (all_resolved_now && wants_resolved) || repeat;
                if !notify {
                    continue;
                }
                let mut alerts = firing.clone();
                let status = if alerts.is_empty() {
                    "resolved"
                } else {
                    "firing"
                };
                if wants_resolved {
                    alerts.extend(resolved.iter().cloned());
                }
                if alerts.is_empty() {
                    continue;
                }
                sent += 1;
                out.push(Notification {
                    receiver: g.receiver.clone(),
                    integration: i,
                    log_entry: LogEntry {
                        firing: firing_fps.clone(),
                        resolved: resolved_fps.clone(),
                        at: now,
                    },
                    group_key: key.clone(),
                    group_labels: g.labels.clone(),
                    alerts,
                    status,
                });
            }
            if sent == 0 {
                // Resolved alerts leave the group once a flush has dealt with them.
                g.alerts.retain(|fp| !resolved_fps.contains(fp));
                done.push(key.clone());
            } else {
                g.in_flight = sent;
                g.failed = false;
                g.pending_resolved = resolved_fps;
            }
        }
        for k in done {
            self.settle(&k);
        }
        self.forget_orphans();
        self.log.retain(|_, e| e.at + LOG_RETENTION_MS > now);
        out
    }

    /// Reports the outcome of delivering `n` (from [`Dispatcher::flush`]). A delivered
    /// notification enters the log; when the group's last delivery is back and all landed,
    /// the resolved alerts it carried leave the group. After a failure they stay, and the
    /// next flush (one `group_interval` later) sends again what the log does not hold.
    pub fn delivered(&mut self, n: &Notification, ok: bool) {
        if ok {
            self.log
                .insert(log_key(&n.group_key, n.integration), n.log_entry.clone());
        }
        let Some(g) = self.groups.get_mut(&n.group_key) else {
            return;
        };
        g.in_flight = g.in_flight.saturating_sub(1);
        g.failed |= !ok;
        if g.in_flight > 0 {
            return;
        }
        let pending = std::mem::take(&mut g.pending_resolved);
        if !g.failed {
            g.alerts.retain(|fp| !pending.contains(fp));
        }
        self.settle(&n.group_key);
        self.forget_orphans();
    }

    /// Drops the group `key` once it holds no alerts.
    fn settle(&mut self, key: &str) {
        if self.groups.get(key).is_some_and(|g| g.alerts.is_empty()) {
            self.groups.remove(key);
        }
    }

    /// Forgets alerts that no group holds any more.
    fn forget_orphans(&mut self) {
        let live: BTreeSet<u64> = self
            .groups
            .values()
            .flat_map(|g| g.alerts.iter().copied())
            .collect();
        self.alerts.retain(|fp, _| live.contains(fp));
    }

    /// Alerts held (for the API), sorted by labels.
    pub fn alerts(&self) -> Vec<Alert> {
        let mut v: Vec<Alert> = self.alerts.values().cloned().collect();
        v.sort_by(|a, b| a.labels.cmp(&b.labels));
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1000;

    impl Dispatcher {
        /// Flushes and reports every notification delivered.
        fn flush_delivered(
            &mut self,
            now: i64,
            integrations: &dyn Fn(&str) -> Vec<bool>,
            muted: &dyn Fn(&Alert) -> bool,
            in_interval: &dyn Fn(&str) -> bool,
        ) -> Vec<Notification> {
            let n = self.flush(now, integrations, muted, in_interval);
            for x in &n {
                self.delivered(x, true);
            }
            n
        }
    }

    fn never(_: &str) -> bool {
        false
    }

    fn route(yaml: &str) -> Route {
        Route::parse_root(&serde_saphyr::from_str(yaml).unwrap()).unwrap()
    }

    fn alert(pairs: &[(&str, &str)], start: i64, end: i64) -> Alert {
        Alert {
            labels: Labels::from_pairs(pairs.iter().copied()),
            annotations: BTreeMap::new(),
            starts_at: start,
            ends_at: end,
            generator_url: String::new(),
        }
    }

    fn names(n: &[Notification]) -> Vec<(String, &'static str, usize)> {
        n.iter()
            .map(|x| (x.receiver.clone(), x.status, x.alerts.len()))
            .collect()
    }

    #[test]
    fn group_wait_interval_repeat_and_resolve() {
        let r = route("receiver: team\ngroup_by: [alertname]\ngroup_wait: 30s\ngroup_interval: 5m\nrepeat_interval: 1h\n");
        let mut d = Dispatcher::default();
        let yes = |_: &str| vec![true];
        let no_mute = |_: &Alert| false;
        d.insert(
            &r,
            alert(&[("alertname", "Down"), ("instance", "a")], 0, 4 * 60 * S),
            0,
        );
        assert!(
            d.flush_delivered(29 * S, &yes, &no_mute, &never).is_empty(),
            "group_wait"
        );
        d.insert(
            &r,
            alert(
                &[("alertname", "Down"), ("instance", "b")],
                10 * S,
                4 * 60 * S,
            ),
            10 * S,
        );
        let n = d.flush_delivered(30 * S, &yes, &no_mute, &never);
        assert_eq!(names(&n), vec![("team".to_string(), "firing", 2)]);
        assert_eq!(n[0].group_labels["alertname"], "Down");
        // Same alerts again at the group interval: no change, no repeat yet.
        d.insert(
            &r,
            alert(&[("alertname", "Down"), ("instance", "a")], 0, 20 * 60 * S),
            60 * S,
        );
        d.insert(
            &r,
            alert(
                &[("alertname", "Down"), ("instance", "b")],
                10 * S,
                20 * 60 * S,
            ),
            60 * S,
        );
        assert!(d
            .flush_delivered(330 * S, &yes, &no_mute, &never)
            .is_empty());
        // b resolves: the next flush tells.
        d.insert(
            &r,
            alert(&[("alertname", "Down"), ("instance", "b")], 10 * S, 400 * S),
            400 * S,
        );
        let n = d.flush_delivered(630 * S, &yes, &no_mute, &never);
        assert_eq!(names(&n), vec![("team".to_string(), "firing", 2)]);
        assert!(n[0].alerts[1].resolved(630 * S));
        // a keeps firing: repeated after repeat_interval only.
        d.insert(
            &r,
            alert(&[("alertname", "Down"), ("instance", "a")], 0, 3 * 3600 * S),
            700 * S,
        );
        assert!(d
            .flush_delivered(930 * S, &yes, &no_mute, &never)
            .is_empty());
        let n = d.flush_delivered(630 * S + 3600 * S, &yes, &no_mute, &never);
        assert_eq!(names(&n), vec![("team".to_string(), "firing", 1)]);
    }

    #[test]
    fn resolution_without_send_resolved_is_silent_and_a_new_occurrence_is_announced() {
        let r = route("receiver: team\ngroup_wait: 0s\ngroup_interval: 1m\n");
        let mut d = Dispatcher::default();
        let no = |_: &str| vec![false];
        let no_mute = |_: &Alert| false;
        d.insert(&r, alert(&[("alertname", "X")], 0, 10 * S), 0);
        assert_eq!(d.flush_delivered(0, &no, &no_mute, &never).len(), 1);
        assert!(
            d.flush_delivered(60 * S, &no, &no_mute, &never).is_empty(),
            "resolved, not wanted"
        );
        d.insert(&r, alert(&[("alertname", "X")], 100 * S, 500 * S), 100 * S);
        assert_eq!(
            d.flush_delivered(100 * S, &no, &no_mute, &never).len(),
            1,
            "new occurrence"
        );
    }

    #[test]
    fn mute_and_active_time_intervals() {
        let r = route("receiver: team\ngroup_wait: 0s\ngroup_interval: 1m\nroutes:\n  - matchers: ['team=\"a\"']\n    mute_time_intervals: [night]\n  - matchers: ['team=\"b\"']\n    active_time_intervals: [day]\n");
        let mut d = Dispatcher::default();
        d.insert(&r, alert(&[("alertname", "X"), ("team", "a")], 0, 0), 0);
        d.insert(&r, alert(&[("alertname", "Y"), ("team", "b")], 0, 0), 0);
        let night = |n: &str| n == "night";
        let n = d.flush_delivered(0, &|_| vec![true], &|_| false, &night);
        assert!(n.is_empty(), "a muted at night; b only by day: {n:?}");
        let day = |n: &str| n == "day";
        assert_eq!(
            d.flush_delivered(60 * S, &|_| vec![true], &|_| false, &day)
                .len(),
            2
        );
    }

    #[test]
    fn continue_routes_and_inhibition() {
        let r = route("receiver: default\ngroup_wait: 0s\nroutes:\n  - matchers: ['severity=~\"warning|critical\"']\n    receiver: chat\n    continue: true\n  - matchers: ['severity=\"critical\"']\n    receiver: pager\n");
        let cfg = super::super::config::parse(
            "route: {receiver: d}\nreceivers: [{name: d}]\ninhibit_rules:\n  - source_matchers: ['severity=\"critical\"']\n    target_matchers: ['severity=\"warning\"']\n    equal: [instance]\n",
        )
        .unwrap();
        let mut d = Dispatcher::default();
        let crit = alert(
            &[
                ("alertname", "Down"),
                ("instance", "a"),
                ("severity", "critical"),
            ],
            0,
            0,
        );
        let warn_a = alert(
            &[
                ("alertname", "Slow"),
                ("instance", "a"),
                ("severity", "warning"),
            ],
            0,
            0,
        );
        let warn_b = alert(
            &[
                ("alertname", "Slow"),
                ("instance", "b"),
                ("severity", "warning"),
            ],
            0,
            0,
        );
        for a in [&crit, &warn_a, &warn_b] {
            d.insert(&r, a.clone(), 0);
        }
        assert!(d.inhibited(&cfg.inhibit_rules, &warn_a, 0));
        assert!(!d.inhibited(&cfg.inhibit_rules, &warn_b, 0));
        assert!(!d.inhibited(&cfg.inhibit_rules, &crit, 0));
        let rules = cfg.inhibit_rules.clone();
        let snapshot: Vec<Alert> = d.alerts();
        let muted = |a: &Alert| inhibited(&rules, snapshot.iter(), a, 0);
        let mut n = names(&d.flush_delivered(0, &|_| vec![true], &muted, &never));
        n.sort();
        assert_eq!(
            n,
            vec![
                ("chat".to_string(), "firing", 2),
                ("pager".to_string(), "firing", 1)
            ],
            "one group per route (no group_by), the inhibited warning left out"
        );
    }

    #[test]
    fn a_failed_delivery_is_not_logged_and_is_sent_again_at_the_next_interval() {
        let r = route("receiver: team\ngroup_wait: 0s\ngroup_interval: 1m\nrepeat_interval: 4h\n");
        let mut d = Dispatcher::default();
        let two = |_: &str| vec![true, true];
        let no_mute = |_: &Alert| false;
        d.insert(&r, alert(&[("alertname", "X")], 0, 0), 0);
        let n = d.flush(0, &two, &no_mute, &never);
        assert_eq!(n.len(), 2, "one per integration");
        assert_eq!(d.next_due(), None, "waits for its deliveries");
        d.delivered(&n[0], true);
        d.delivered(&n[1], false);
        assert_eq!(d.next_due(), Some(60 * S));
        // Only the integration that failed is sent again, on every interval until it lands.
        for t in [60 * S, 120 * S] {
            let again = d.flush(t, &two, &no_mute, &never);
            assert_eq!(again.len(), 1);
            assert_eq!(again[0].integration, 1);
            d.delivered(&again[0], false);
        }
        let again = d.flush(180 * S, &two, &no_mute, &never);
        d.delivered(&again[0], true);
        assert!(d.flush(240 * S, &two, &no_mute, &never).is_empty());
    }

    #[test]
    fn a_resolved_alert_whose_delivery_failed_stays_until_it_lands() {
        let r = route("receiver: team\ngroup_wait: 0s\ngroup_interval: 1m\n");
        let mut d = Dispatcher::default();
        let one = |_: &str| vec![true];
        let no_mute = |_: &Alert| false;
        d.insert(&r, alert(&[("alertname", "X")], 0, 0), 0);
        d.flush_delivered(0, &one, &no_mute, &never);
        d.insert(&r, alert(&[("alertname", "X")], 0, 30 * S), 30 * S);
        let n = d.flush(60 * S, &one, &no_mute, &never);
        assert_eq!(n[0].status, "resolved");
        d.delivered(&n[0], false);
        assert_eq!(d.alerts().len(), 1, "kept for the retry");
        let n = d.flush(120 * S, &one, &no_mute, &never);
        assert_eq!(n[0].status, "resolved");
        d.delivered(&n[0], true);
        assert!(d.alerts().is_empty());
        assert_eq!(d.next_due(), None);
    }
}
