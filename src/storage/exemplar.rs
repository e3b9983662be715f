//! Exemplars: a bounded in-memory ring of the newest exemplars scraped with their series, as
//! Prometheus's circular exemplar storage keeps them (same duplicate and out-of-order rules,
//! same answer order), for `/api/v1/query_exemplars`.
//!
//! It owns only the ring; series samples, the WAL and blocks are not touched. Exemplars are
//! not persisted: a restart starts with none (Prometheus logs them in its WAL; see the README).

use std::collections::{BTreeMap, HashMap, VecDeque};

use parking_lot::Mutex;

use crate::model::{Labels, Matcher};

/// OpenMetrics' limit on an exemplar's label names and values together, in characters.
pub const MAX_LABEL_SET_CHARS: usize = 128;

/// Prometheus's default `storage.exemplars.max_exemplars` when exemplar storage is on.
pub const DEFAULT_CAPACITY: usize = 100_000;

/// One exemplar: its own labels (e.g. `trace_id`), value and time.
#[derive(Clone, Debug, PartialEq)]
pub struct Exemplar {
    /// Exemplar labels, sorted.
    pub labels: Labels,
    /// Its value.
    pub value: f64,
    /// Its time (the scrape's when the exposition gives none), in ms.
    pub t_ms: i64,
    /// Whether the exposition gave the time: an untimed exemplar a target repeats every
    /// scrape is the same exemplar, whatever scrape time it was given.
    pub has_ts: bool,
}

impl Exemplar {
    /// Prometheus's `Exemplar.Equals`: same labels and value, and the same time where either
    /// carries its own.
    pub fn same_as(&self, other: &Exemplar) -> bool {
        self.labels == other.labels
            && self.value.to_bits() == other.value.to_bits()
            && (!(self.has_ts || other.has_ts) || self.t_ms == other.t_ms)
    }
}

/// The exemplars of one series in a time range, oldest first.
#[derive(Clone, Debug, PartialEq)]
pub struct ExemplarSeries {
    /// The series' labels.
    pub series: Labels,
    /// Its exemplars.
    pub exemplars: Vec<Exemplar>,
}

/// Why an exemplar was not kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ExemplarRefused {
    /// The same exemplar as the series' newest (a target repeating it every scrape): a no-op.
    #[error("duplicate exemplar")]
    Duplicate,
    /// Not newer than the series' newest exemplar.
    #[error("out of order exemplar")]
    OutOfOrder,
    /// Labels longer than OpenMetrics allows.
    #[error("exemplar label set is longer than 128 characters")]
    LabelsTooLong,
}

#[derive(Default)]
struct Inner {
    ring: VecDeque<(Labels, Exemplar)>,
    /// Per series with exemplars in the ring: how many, and the newest.
    newest: HashMap<Labels, (usize, Exemplar)>,
}

/// The ring. Cheap to share behind an `Arc`.
pub struct ExemplarStore {
    capacity: usize,
    inner: Mutex<Inner>,
}

impl Default for ExemplarStore {
    fn default() -> Self {
        ExemplarStore::new(DEFAULT_CAPACITY)
    }
}

impl ExemplarStore {
    /// A ring of at most `capacity` exemplars (0 keeps none).
    pub fn new(capacity: usize) -> Self {
        ExemplarStore {
            capacity,
            inner: Mutex::new(Inner::default()),
        }
    }

    /// Keeps `e` for `series`, dropping the oldest exemplar when full.
    pub fn add(&self, series: &Labels, e: Exemplar) -> Result<(), ExemplarRefused> {
        let chars: usize = e
            .labels
            .iter()
            .map(|l| l.name.chars().count() + l.value.chars().count())
            .sum();
        if chars > MAX_LABEL_SET_CHARS {
            return Err(ExemplarRefused::LabelsTooLong);
        }
        if self.capacity == 0 {
            return Ok(());
        }
        let mut g = self.inner.lock();
        if let Some((_, last)) = g.newest.get(series) {
            if last.same_as(&e) {
                return Err(ExemplarRefused::Duplicate);
            }
            if e.t_ms <= last.t_ms {
                return Err(ExemplarRefused::OutOfOrder);
            }
        }
        let entry = g.newest.entry(series.clone()).or_insert((0, e.clone()));
        entry.0 += 1;
        entry.1 = e.clone();
        g.ring.push_back((series.clone(), e));
        while g.ring.len() > self.capacity {
            let Some((old, _)) = g.ring.pop_front() else {
                break;
            };
            if let Some(n) = g.newest.get_mut(&old) {
                n.0 -= 1;
                if n.0 == 0 {
                    g.newest.remove(&old);
                }
            }
        }
        Ok(())
    }

    /// Exemplars in `[mint, maxt]` of series matching any of `sets`, by series labels.
    pub fn select(&self, sets: &[Vec<Matcher>], mint: i64, maxt: i64) -> Vec<ExemplarSeries> {
        let g = self.inner.lock();
        let mut out: BTreeMap<&Labels, Vec<Exemplar>> = BTreeMap::new();
        let mut matched: HashMap<&Labels, bool> = HashMap::new();
        for (series, e) in &g.ring {
            if e.t_ms < mint || e.t_ms > maxt {
                continue;
            }
            let ok = *matched.entry(series).or_insert_with(|| {
                sets.iter().any(|ms| {
                    ms.iter()
                        .all(|m| m.matches(series.get(&m.name).unwrap_or("")))
                })
            });
            if ok {
                out.entry(series).or_default().push(e.clone());
            }
        }
        out.into_iter()
            .map(|(s, exemplars)| ExemplarSeries {
                series: s.clone(),
                exemplars,
            })
            .collect()
    }

    /// Exemplars held.
    pub fn len(&self) -> usize {
        self.inner.lock().ring.len()
    }

    /// Whether none are held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::MatchOp;

    fn ex(trace: &str, v: f64, t: i64) -> Exemplar {
        Exemplar {
            labels: Labels::from_pairs([("trace_id", trace)]),
            value: v,
            t_ms: t,
            has_ts: true,
        }
    }

    fn series(name: &str) -> Labels {
        Labels::from_pairs([("__name__", name), ("job", "a")])
    }

    fn by_name(n: &str) -> Vec<Vec<Matcher>> {
        vec![vec![Matcher::new(MatchOp::Equal, "__name__", n).unwrap()]]
    }

    #[test]
    fn keeps_the_newest_drops_repeats_and_answers_by_series() {
        let s = ExemplarStore::new(3);
        let (a, b) = (series("a_bucket"), series("b_total"));
        assert_eq!(s.add(&a, ex("1", 0.5, 1000)), Ok(()));
        // A target repeats its exemplar every scrape: kept once.
        assert_eq!(
            s.add(&a, ex("1", 0.5, 1000)),
            Err(ExemplarRefused::Duplicate)
        );
        assert_eq!(
            s.add(&a, ex("0", 0.1, 900)),
            Err(ExemplarRefused::OutOfOrder)
        );
        assert_eq!(s.add(&b, ex("2", 1.0, 1500)), Ok(()));
        assert_eq!(s.add(&a, ex("3", 0.7, 2000)), Ok(()));
        let all = s.select(&[vec![]], 0, 10_000);
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].series, a);
        assert_eq!(
            all[0].exemplars,
            vec![ex("1", 0.5, 1000), ex("3", 0.7, 2000)]
        );
        assert_eq!(
            s.select(&by_name("b_total"), 0, 10_000)[0].exemplars,
            vec![ex("2", 1.0, 1500)]
        );
        assert_eq!(
            s.select(&by_name("a_bucket"), 1500, 10_000)[0]
                .exemplars
                .len(),
            1
        );
        assert!(s.select(&by_name("a_bucket"), 3000, 10_000).is_empty());
        // Full: the oldest goes, and with it b's only one.
        assert_eq!(s.add(&a, ex("4", 0.9, 3000)), Ok(()));
        assert_eq!(s.add(&a, ex("5", 0.9, 4000)), Ok(()));
        assert_eq!(s.len(), 3);
        assert!(s.select(&by_name("b_total"), 0, 10_000).is_empty());
    }

    #[test]
    fn an_untimed_exemplar_repeated_by_every_scrape_is_kept_once() {
        let s = ExemplarStore::default();
        let a = series("a_bucket");
        let at = |t: i64, v: f64| Exemplar {
            t_ms: t,
            has_ts: false,
            ..ex("1", v, t)
        };
        assert_eq!(s.add(&a, at(1000, 0.5)), Ok(()));
        assert_eq!(s.add(&a, at(2000, 0.5)), Err(ExemplarRefused::Duplicate));
        assert_eq!(s.add(&a, at(3000, 0.6)), Ok(()));
        assert_eq!(s.len(), 2);
    }

    #[test]
    fn labels_over_128_characters_are_refused() {
        let s = ExemplarStore::default();
        let long = "x".repeat(121);
        let e = Exemplar {
            labels: Labels::from_pairs([("trace_id", long.as_str())]),
            value: 1.0,
            t_ms: 1,
            has_ts: true,
        };
        assert_eq!(s.add(&series("a"), e), Err(ExemplarRefused::LabelsTooLong));
    }
}
