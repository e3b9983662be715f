//! Arithmetic on float histograms as Prometheus's `FloatHistogram` does it (`Add`, `Sub`,
//! `Mul`, `Div`): schemas reduced to the coarser one, zero buckets widened to the wider
//! threshold, custom bucket bounds intersected, counter-reset hints reconciled.
//!
//! Pure functions on [`FloatHistogram`]; PromQL decides what to do with the notes they return
//! (Prometheus's annotations). Kahan compensation of bucket sums is not kept: the sums are
//! plain float additions (the cases where Prometheus's compensation changes a result beyond
//! its tests' 1e-6 tolerance need sums of values twenty orders of magnitude apart).

use std::collections::BTreeMap;

use super::histogram::{CounterResetHint, FloatHistogram, CUSTOM_BUCKETS_SCHEMA};

/// Why two histograms cannot be combined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HistogramOpError {
    /// One has exponential buckets, the other custom ones (Prometheus's
    /// `ErrHistogramsIncompatibleSchema`).
    #[error("cannot apply this operation on histograms with a mix of exponential and custom bucket schemas")]
    IncompatibleSchema,
}

/// What an addition or subtraction had to reconcile (Prometheus turns these into annotations).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OpNotes {
    /// One operand said "reset", the other "not reset"; the result's hint is unknown.
    pub counter_reset_collision: bool,
    /// Custom bucket bounds differed and were intersected.
    pub custom_bounds_reconciled: bool,
}

impl OpNotes {
    /// Both sets of notes.
    pub fn or(self, o: OpNotes) -> OpNotes {
        OpNotes {
            counter_reset_collision: self.counter_reset_collision || o.counter_reset_collision,
            custom_bounds_reconciled: self.custom_bounds_reconciled || o.custom_bounds_reconciled,
        }
    }
}

impl FloatHistogram {
    /// Whether the buckets are custom (schema -53, NHCB).
    pub fn uses_custom_buckets(&self) -> bool {
        self.schema == CUSTOM_BUCKETS_SCHEMA
    }

    /// `self += o` (Prometheus's `Add`).
    pub fn try_add(&mut self, o: &FloatHistogram) -> Result<OpNotes, HistogramOpError> {
        self.add_or_sub(o, 1.0)
    }

    /// `self -= o` (Prometheus's `Sub`; the caller marks a PromQL result as a gauge).
    pub fn try_sub(&mut self, o: &FloatHistogram) -> Result<OpNotes, HistogramOpError> {
        self.add_or_sub(o, -1.0)
    }

    /// Every count and the sum multiplied by `f`; a negative factor makes a gauge
    /// (Prometheus's `Mul`).
    pub fn mul(&mut self, f: f64) {
        self.scale(f);
        if f < 0.0 {
            self.hint = CounterResetHint::Gauge;
        }
    }

    /// Every count and the sum divided by `f`; division by zero removes the buckets
    /// (Prometheus's `Div`).
    pub fn div(&mut self, f: f64) {
        self.zero_count /= f;
        self.count /= f;
        self.sum /= f;
        if f == 0.0 {
            self.positive.clear();
            self.negative.clear();
            return;
        }
        for v in self.positive.values_mut().chain(self.negative.values_mut()) {
            *v /= f;
        }
        if f < 0.0 {
            self.hint = CounterResetHint::Gauge;
        }
    }

    /// What every addition starts with: the bucket kinds must agree, the hints reconcile.
    fn begin_add(&mut self, o: &FloatHistogram) -> Result<OpNotes, HistogramOpError> {
        if self.uses_custom_buckets() != o.uses_custom_buckets() {
            return Err(HistogramOpError::IncompatibleSchema);
        }
        Ok(OpNotes {
            counter_reset_collision: self.adjust_counter_reset(o),
            custom_bounds_reconciled: false,
        })
    }

    fn add_or_sub(&mut self, o: &FloatHistogram, sign: f64) -> Result<OpNotes, HistogramOpError> {
        let mut notes = self.begin_add(o)?;
        if !self.uses_custom_buckets() {
            let other_zero = self.reconcile_zero_buckets(o);
            self.zero_count += sign * other_zero;
        }
        self.count += sign * o.count;
        self.sum += sign * o.sum;
        if self.uses_custom_buckets() {
            if self.custom_values == o.custom_values {
                merge(&mut self.positive, &o.positive, sign, |_| false);
            } else {
                notes.custom_bounds_reconciled = true;
                let bounds = intersect_bounds(&self.custom_values, &o.custom_values);
                let mut target = BTreeMap::new();
                map_custom(
                    &mut target,
                    &self.positive,
                    &self.custom_values,
                    &bounds,
                    1.0,
                );
                map_custom(&mut target, &o.positive, &o.custom_values, &bounds, sign);
                target.retain(|_, v| *v != 0.0);
                self.positive = target;
                self.custom_values = bounds;
            }
            return Ok(notes);
        }
        let reduced;
        let other = if o.schema < self.schema {
            self.reduce_resolution(o.schema);
            o
        } else if o.schema > self.schema {
            let mut r = o.clone();
            r.reduce_resolution(self.schema);
            reduced = r;
            &reduced
        } else {
            o
        };
        // Buckets of the other operand that lie wholly inside the (widened) zero bucket were
        // counted in its zero count already.
        let (schema, threshold) = (self.schema, self.zero_threshold);
        let inside = |i: i32| bound(schema, i) <= threshold;
        merge(&mut self.positive, &other.positive, sign, inside);
        merge(&mut self.negative, &other.negative, sign, inside);
        Ok(notes)
    }

    /// Prometheus's `adjustCounterReset`: returns whether "reset" met "not reset".
    fn adjust_counter_reset(&mut self, o: &FloatHistogram) -> bool {
        use CounterResetHint::*;
        match (self.hint, o.hint) {
            (a, b) if a == b => false,
            (Gauge, _) => false,
            (_, Gauge) => {
                self.hint = Gauge;
                false
            }
            (Unknown, _) => false,
            (_, Unknown) => {
                self.hint = Unknown;
                false
            }
            _ => {
                self.hint = Unknown;
                true
            }
        }
    }

    /// Widens the narrower zero bucket to the other's threshold (further if the new threshold
    /// falls inside a populated bucket), as Prometheus's `reconcileZeroBuckets`; returns the
    /// other histogram's zero count at the common threshold.
    fn reconcile_zero_buckets(&mut self, o: &FloatHistogram) -> f64 {
        let mut other_zero = o.zero_count;
        let mut other_threshold = o.zero_threshold;
        // Each round raises one threshold to at least the other; they meet within a few.
        for _ in 0..64 {
            if other_threshold == self.zero_threshold {
                break;
            }
            if self.zero_threshold > other_threshold {
                (other_zero, other_threshold) =
                    o.zero_count_for_larger_threshold(self.zero_threshold);
            }
            if other_threshold > self.zero_threshold {
                let (z, t) = self.zero_count_for_larger_threshold(other_threshold);
                self.zero_count = z;
                self.zero_threshold = t;
                self.trim_buckets_in_zero_bucket();
            }
        }
        other_zero
    }

    /// The zero count if the zero bucket reached `larger`, and the threshold it ends at.
    fn zero_count_for_larger_threshold(&self, larger: f64) -> (f64, f64) {
        let (z, t, _) = self.zero_count_for_larger_threshold_kahan(larger, None);
        (z, t)
    }

    /// As [`Self::zero_count_for_larger_threshold`], summed with Kahan compensation (the
    /// compensation histogram `c`'s buckets merged too); also returns the compensation.
    fn zero_count_for_larger_threshold_kahan(
        &self,
        mut larger: f64,
        c: Option<&FloatHistogram>,
    ) -> (f64, f64, f64) {
        let c_zero0 = c.map(|c| c.zero_count).unwrap_or(0.0);
        if larger <= self.zero_threshold {
            return (self.zero_count, self.zero_threshold.max(larger), c_zero0);
        }
        let comp = |side: bool, i: i32| -> f64 {
            c.and_then(|c| {
                if side {
                    c.positive.get(&i)
                } else {
                    c.negative.get(&i)
                }
            })
            .copied()
            .unwrap_or(0.0)
        };
        'outer: loop {
            let (mut zero, mut cz) = (self.zero_count, c_zero0);
            for (&i, &n) in &self.positive {
                let (lower, upper) = (self.lower_bound(i), self.upper_bound(i));
                if lower >= larger {
                    break;
                }
                (zero, cz) = kahan_inc(n, zero, cz);
                if c.is_some() {
                    (zero, cz) = kahan_inc(comp(true, i), zero, cz);
                }
                if upper > larger {
                    if n != 0.0 {
                        larger = upper;
                    }
                    break;
                }
            }
            for (&i, &n) in &self.negative {
                // Negative bucket i covers [-upper(i), -lower(i)).
                let (lower, upper) = (-self.upper_bound(i), -self.lower_bound(i));
                if upper <= -larger {
                    break;
                }
                (zero, cz) = kahan_inc(n, zero, cz);
                if c.is_some() {
                    (zero, cz) = kahan_inc(comp(false, i), zero, cz);
                }
                if lower < -larger {
                    if n != 0.0 {
                        larger = -lower;
                        continue 'outer;
                    }
                    break;
                }
            }
            return (zero, larger, cz);
        }
    }

    /// Drops buckets now inside the zero bucket.
    fn trim_buckets_in_zero_bucket(&mut self) {
        let t = self.zero_threshold;
        let inside: Vec<i32> = self
            .positive
            .keys()
            .copied()
            .take_while(|&i| self.lower_bound(i) < t)
            .collect();
        for i in inside {
            self.positive.remove(&i);
        }
        let inside: Vec<i32> = self
            .negative
            .keys()
            .copied()
            .take_while(|&i| -self.lower_bound(i) > -t)
            .collect();
        for i in inside {
            self.negative.remove(&i);
        }
    }

    fn upper_bound(&self, i: i32) -> f64 {
        bound(self.schema, i)
    }

    fn lower_bound(&self, i: i32) -> f64 {
        bound(self.schema, i - 1)
    }
}

/// Upper bound of exponential bucket `i` at `schema`.
fn bound(schema: i32, i: i32) -> f64 {
    FloatHistogram {
        schema,
        ..FloatHistogram::default()
    }
    .exponential_bound(i)
}

/// Adds `sign * b` into `a` bucket by bucket, skipping the leading buckets of `b` for which
/// `skip` holds (those inside the zero bucket).
fn merge(
    a: &mut BTreeMap<i32, f64>,
    b: &BTreeMap<i32, f64>,
    sign: f64,
    skip: impl Fn(i32) -> bool,
) {
    for (i, v) in past_leading(b, skip) {
        *a.entry(i).or_insert(0.0) += sign * v;
    }
}

/// `b`'s buckets from the first for which `skip` does not hold.
fn past_leading<'a>(
    b: &'a BTreeMap<i32, f64>,
    skip: impl Fn(i32) -> bool + 'a,
) -> impl Iterator<Item = (i32, f64)> + 'a {
    b.iter()
        .map(|(i, v)| (*i, *v))
        .skip_while(move |(i, _)| skip(*i))
}

/// Bounds present in both lists.
fn intersect_bounds(a: &[f64], b: &[f64]) -> Vec<f64> {
    let (mut i, mut j, mut out) = (0, 0, Vec::new());
    while i < a.len() && j < b.len() {
        if a[i] == b[j] {
            out.push(a[i]);
            i += 1;
            j += 1;
        } else if a[i] < b[j] {
            i += 1;
        } else {
            j += 1;
        }
    }
    out
}

/// Adds custom buckets laid out on `bounds` into `target` laid out on `common` (each source
/// bucket goes to the first common bound at or above its own upper bound).
fn map_custom(
    target: &mut BTreeMap<i32, f64>,
    src: &BTreeMap<i32, f64>,
    bounds: &[f64],
    common: &[f64],
    sign: f64,
) {
    for (&i, &v) in src {
        let idx = match usize::try_from(i).ok().and_then(|i| bounds.get(i)) {
            Some(upper) => common.partition_point(|b| b < upper),
            None => common.len(),
        };
        *target.entry(idx as i32).or_insert(0.0) += sign * v;
    }
}

impl FloatHistogram {
    /// Prometheus's `DetectReset`: whether `self` follows a counter reset after `prev`. The
    /// hint decides when it says reset or not; otherwise a smaller count, a change of bucket
    /// kind, a finer schema, a narrower zero bucket (or one ending inside a populated bucket
    /// of `prev`), or any bucket holding less than before (at `self`'s schema; custom buckets
    /// compared at the bounds both have) is a reset.
    pub fn detect_reset(&self, prev: &FloatHistogram) -> bool {
        match self.hint {
            CounterResetHint::Reset => return true,
            CounterResetHint::NotReset => return false,
            _ => {}
        }
        if self.count < prev.count {
            return true;
        }
        if self.uses_custom_buckets() {
            if !prev.uses_custom_buckets() {
                return true;
            }
            if self.custom_values != prev.custom_values {
                return custom_bucket_fell(self, prev);
            }
            return fell(&self.positive, &prev.positive, |_| false);
        }
        if self.schema > prev.schema || self.zero_threshold < prev.zero_threshold {
            return true;
        }
        let (prev_zero, threshold) = prev.zero_count_for_larger_threshold(self.zero_threshold);
        if threshold != self.zero_threshold || self.zero_count < prev_zero {
            return true;
        }
        let mut p = prev.clone();
        p.reduce_resolution(self.schema);
        let (schema, t) = (self.schema, self.zero_threshold);
        let inside = |i: i32| bound(schema, i) <= t;
        fell(&self.positive, &p.positive, inside) || fell(&self.negative, &p.negative, inside)
    }
}

impl FloatHistogram {
    /// Go's `FloatHistogram.String()`: count, sum and every populated bucket with its bounds,
    /// as `count_values` labels a histogram sample.
    pub fn go_string(&self) -> String {
        use super::gofmt::go_g;
        let mut out = format!(
            "{{count:{}, sum:{}",
            go_g(self.count, None),
            go_g(self.sum, None)
        );
        for (rule, lo, hi, c) in self.api_buckets() {
            let open = if rule == 1 || rule == 3 { '[' } else { '(' };
            let close = if rule == 0 || rule == 3 { ']' } else { ')' };
            out.push_str(&format!(
                ", {open}{},{}{close}:{}",
                go_g(lo, None),
                go_g(hi, None),
                go_g(c, None)
            ));
        }
        out.push('}');
        out
    }
}

/// Kahan-Neumaier summation step (Prometheus's `kahansum.Inc`): `sum + inc` and the
/// updated compensation.
pub fn kahan_inc(inc: f64, sum: f64, c: f64) -> (f64, f64) {
    let t = sum + inc;
    let c = if t.is_infinite() {
        0.0
    } else if sum.abs() >= inc.abs() {
        c + ((sum - t) + inc)
    } else {
        c + ((inc - t) + sum)
    };
    (t, c)
}

impl FloatHistogram {
    /// A compensation histogram for Kahan sums into `self`: same layout, all zero.
    fn compensation(&self) -> FloatHistogram {
        FloatHistogram {
            schema: self.schema,
            zero_threshold: self.zero_threshold,
            custom_values: self.custom_values.clone(),
            hint: self.hint,
            ..FloatHistogram::default()
        }
    }

    /// Whether any count, the sum or a bucket is infinite (Prometheus's `HasOverflow`).
    pub fn has_overflow(&self) -> bool {
        self.zero_count.is_infinite()
            || self.count.is_infinite()
            || self.sum.is_infinite()
            || self
                .positive
                .values()
                .chain(self.negative.values())
                .any(|v| v.is_infinite())
            || self.custom_values.iter().any(|v| v.is_infinite())
    }

    /// `self += o` with Kahan compensation kept in `c` (Prometheus's `KahanAdd`).
    fn kahan_add(
        &mut self,
        o: &FloatHistogram,
        c: &mut FloatHistogram,
    ) -> Result<OpNotes, HistogramOpError> {
        let mut notes = self.begin_add(o)?;
        if !self.uses_custom_buckets() {
            let (oz, ocz) = self.reconcile_zero_buckets_kahan(o, c);
            (self.zero_count, c.zero_count) = kahan_inc(oz, self.zero_count, c.zero_count);
            (self.zero_count, c.zero_count) = kahan_inc(ocz, self.zero_count, c.zero_count);
        }
        (self.count, c.count) = kahan_inc(o.count, self.count, c.count);
        (self.sum, c.sum) = kahan_inc(o.sum, self.sum, c.sum);
        if self.uses_custom_buckets() {
            if self.custom_values == o.custom_values {
                kahan_merge(
                    &mut self.positive,
                    &mut c.positive,
                    &o.positive,
                    None,
                    |_| false,
                );
            } else {
                notes.custom_bounds_reconciled = true;
                let bounds = intersect_bounds(&self.custom_values, &o.custom_values);
                let (mut t, mut tc) = (BTreeMap::new(), BTreeMap::new());
                let target =
                    |i: i32, own: &[f64]| match usize::try_from(i).ok().and_then(|i| own.get(i)) {
                        Some(upper) => bounds.partition_point(|b| b < upper) as i32,
                        None => bounds.len() as i32,
                    };
                for (&i, &v) in &self.positive {
                    let k = target(i, &self.custom_values);
                    let (a, b) = (t.entry(k).or_insert(0.0), tc.entry(k).or_insert(0.0));
                    (*a, *b) = kahan_inc(v, *a, *b);
                    (*a, *b) = kahan_inc(c.positive.get(&i).copied().unwrap_or(0.0), *a, *b);
                }
                for (&i, &v) in &o.positive {
                    let k = target(i, &o.custom_values);
                    let (a, b) = (t.entry(k).or_insert(0.0), tc.entry(k).or_insert(0.0));
                    (*a, *b) = kahan_inc(v, *a, *b);
                }
                let keep: Vec<i32> = t
                    .iter()
                    .filter(|(k, v)| **v != 0.0 || tc.get(k).copied().unwrap_or(0.0) != 0.0)
                    .map(|(k, _)| *k)
                    .collect();
                t.retain(|k, _| keep.contains(k));
                tc.retain(|k, _| keep.contains(k));
                self.positive = t;
                c.positive = tc;
                self.custom_values = bounds.clone();
                c.custom_values = bounds;
            }
            return Ok(notes);
        }
        let mut reduced_other = None;
        if o.schema < self.schema {
            kahan_reduce(&mut self.positive, &mut c.positive, self.schema, o.schema);
            kahan_reduce(&mut self.negative, &mut c.negative, self.schema, o.schema);
            self.schema = o.schema;
        } else if o.schema > self.schema {
            let (mut p, mut pc) = (o.positive.clone(), BTreeMap::new());
            let (mut n, mut nc) = (o.negative.clone(), BTreeMap::new());
            kahan_reduce(&mut p, &mut pc, o.schema, self.schema);
            kahan_reduce(&mut n, &mut nc, o.schema, self.schema);
            reduced_other = Some((p, pc, n, nc));
        }
        let (schema, threshold) = (self.schema, self.zero_threshold);
        let inside = |i: i32| bound(schema, i) <= threshold;
        match &reduced_other {
            Some((p, pc, n, nc)) => {
                kahan_merge(&mut self.positive, &mut c.positive, p, Some(pc), inside);
                kahan_merge(&mut self.negative, &mut c.negative, n, Some(nc), inside);
            }
            None => {
                kahan_merge(
                    &mut self.positive,
                    &mut c.positive,
                    &o.positive,
                    None,
                    inside,
                );
                kahan_merge(
                    &mut self.negative,
                    &mut c.negative,
                    &o.negative,
                    None,
                    inside,
                );
            }
        }
        c.schema = self.schema;
        c.zero_threshold = self.zero_threshold;
        Ok(notes)
    }

    /// [`Self::reconcile_zero_buckets`] carrying the compensation histogram along.
    fn reconcile_zero_buckets_kahan(
        &mut self,
        o: &FloatHistogram,
        c: &mut FloatHistogram,
    ) -> (f64, f64) {
        let (mut other_zero, mut other_c) = (o.zero_count, 0.0);
        let mut other_threshold = o.zero_threshold;
        for _ in 0..64 {
            if other_threshold == self.zero_threshold {
                break;
            }
            if self.zero_threshold > other_threshold {
                (other_zero, other_threshold, other_c) =
                    o.zero_count_for_larger_threshold_kahan(self.zero_threshold, None);
            }
            if other_threshold > self.zero_threshold {
                let (z, t, cz) =
                    self.zero_count_for_larger_threshold_kahan(other_threshold, Some(c));
                self.zero_count = z;
                self.zero_threshold = t;
                c.zero_count = cz;
                c.zero_threshold = t;
                self.trim_buckets_in_zero_bucket();
                let keep_p: Vec<i32> = c
                    .positive
                    .keys()
                    .copied()
                    .filter(|i| self.lower_bound(*i) >= t)
                    .collect();
                let keep_n: Vec<i32> = c
                    .negative
                    .keys()
                    .copied()
                    .filter(|i| self.lower_bound(*i) >= t)
                    .collect();
                c.positive.retain(|i, _| keep_p.contains(i));
                c.negative.retain(|i, _| keep_n.contains(i));
            }
        }
        (other_zero, other_c)
    }
}

/// Adds `b` (and its compensation `bc`) into `a` with compensation `ac`, skipping the
/// leading buckets of `b` for which `skip` holds.
fn kahan_merge(
    a: &mut BTreeMap<i32, f64>,
    ac: &mut BTreeMap<i32, f64>,
    b: &BTreeMap<i32, f64>,
    bc: Option<&BTreeMap<i32, f64>>,
    skip: impl Fn(i32) -> bool,
) {
    for (i, v) in past_leading(b, skip) {
        let (x, y) = (a.entry(i).or_insert(0.0), ac.entry(i).or_insert(0.0));
        (*x, *y) = kahan_inc(v, *x, *y);
        if let Some(bc) = bc {
            (*x, *y) = kahan_inc(bc.get(&i).copied().unwrap_or(0.0), *x, *y);
        }
    }
}

/// Merges buckets down to `target` schema with Kahan sums (Prometheus's
/// `kahanReduceResolution`).
fn kahan_reduce(b: &mut BTreeMap<i32, f64>, bc: &mut BTreeMap<i32, f64>, schema: i32, target: i32) {
    if target >= schema {
        return;
    }
    let delta = (i64::from(schema) - i64::from(target)).min(31) as u32;
    let (mut nb, mut nc) = (BTreeMap::new(), BTreeMap::new());
    for (&i, &v) in b.iter() {
        let k = ((i - 1) >> delta) + 1;
        let (x, y) = (nb.entry(k).or_insert(0.0), nc.entry(k).or_insert(0.0));
        (*x, *y) = kahan_inc(v, *x, *y);
        (*x, *y) = kahan_inc(bc.get(&i).copied().unwrap_or(0.0), *x, *y);
    }
    *b = nb;
    *bc = nc;
}

/// A running sum or mean of native histograms with Prometheus's numerics: Kahan-compensated
/// additions, and for the mean a switch to an incremental mean once the sum would overflow
/// (as `sum`/`avg` and `sum_over_time`/`avg_over_time` do).
#[derive(Clone, Debug)]
pub struct HistogramAccumulator {
    n: f64,
    sum: FloatHistogram,
    c: Option<FloatHistogram>,
    mean: Option<FloatHistogram>,
    /// What the additions reconciled.
    pub notes: OpNotes,
}

impl HistogramAccumulator {
    /// Starts with one histogram.
    pub fn new(first: &FloatHistogram) -> Self {
        HistogramAccumulator {
            n: 1.0,
            sum: first.clone(),
            c: None,
            mean: None,
            notes: OpNotes::default(),
        }
    }

    /// Adds a histogram to the sum.
    pub fn add(&mut self, h: &FloatHistogram) -> Result<(), HistogramOpError> {
        self.n += 1.0;
        let c = self.c.get_or_insert_with(|| self.sum.compensation());
        let notes = self.sum.kahan_add(h, c)?;
        self.notes = self.notes.or(notes);
        Ok(())
    }

    /// Adds a histogram to the mean: summed while the sum stays finite, then incrementally.
    pub fn add_to_mean(&mut self, h: &FloatHistogram) -> Result<(), HistogramOpError> {
        self.n += 1.0;
        let n = self.n;
        if self.mean.is_none() {
            let mut v = self.sum.clone();
            let mut c = self.c.clone().unwrap_or_else(|| v.compensation());
            let notes = v.kahan_add(h, &mut c)?;
            self.notes = self.notes.or(notes);
            if !v.has_overflow() {
                self.sum = v;
                self.c = Some(c);
                return Ok(());
            }
            let mut mean = self.sum.clone();
            mean.div(n - 1.0);
            if let Some(c) = self.c.as_mut() {
                c.div(n - 1.0);
            }
            self.mean = Some(mean);
        }
        let q = (n - 1.0) / n;
        let mean = self.mean.get_or_insert_with(FloatHistogram::default);
        let c = self.c.get_or_insert_with(|| mean.compensation());
        c.mul(q);
        mean.mul(q);
        let mut to_add = h.clone();
        to_add.div(n);
        let notes = mean.kahan_add(&to_add, c)?;
        self.notes = self.notes.or(notes);
        Ok(())
    }

    /// The sum, compensation applied.
    pub fn sum(self) -> FloatHistogram {
        let mut s = self.sum;
        if let Some(c) = self.c {
            let _ = s.try_add(&c);
        }
        s.compact();
        s
    }

    /// The mean, compensation applied.
    pub fn mean(self) -> FloatHistogram {
        let n = self.n;
        let mut out = match self.mean {
            Some(mut m) => {
                if let Some(c) = &self.c {
                    let _ = m.try_add(c);
                }
                m
            }
            None => {
                let mut s = self.sum;
                s.div(n);
                if let Some(mut c) = self.c {
                    c.div(n);
                    let _ = s.try_add(&c);
                }
                s
            }
        };
        out.compact();
        out
    }
}

/// Whether any populated bucket of `prev` (outside the zero bucket) holds more than `cur`'s.
fn fell(cur: &BTreeMap<i32, f64>, prev: &BTreeMap<i32, f64>, skip: impl Fn(i32) -> bool) -> bool {
    prev.iter()
        .any(|(i, c)| *c != 0.0 && !skip(*i) && *c > cur.get(i).copied().unwrap_or(0.0))
}

/// Custom buckets with different bounds: at each bound both have, the counts gathered since
/// the previous common bound must not fall (Prometheus's
/// `detectResetWithMismatchedCustomBounds`).
fn custom_bucket_fell(cur: &FloatHistogram, prev: &FloatHistogram) -> bool {
    let upper = |h: &FloatHistogram, i: i32| {
        usize::try_from(i)
            .ok()
            .and_then(|i| h.custom_values.get(i))
            .copied()
            .unwrap_or(f64::INFINITY)
    };
    let mut common = intersect_bounds(&cur.custom_values, &prev.custom_values);
    common.push(f64::INFINITY);
    let mut lower = f64::NEG_INFINITY;
    for b in common {
        let since = |h: &FloatHistogram| -> f64 {
            h.positive
                .iter()
                .filter(|(i, _)| {
                    let u = upper(h, **i);
                    u > lower && u <= b
                })
                .map(|(_, c)| *c)
                .sum()
        };
        if since(cur) < since(prev) {
            return true;
        }
        lower = b;
    }
    false
}

/// One bucket for trimming: its bounds and count.
struct Span {
    lower: f64,
    upper: f64,
    count: f64,
}

impl FloatHistogram {
    /// Prometheus's `TrimBuckets`, the experimental `</` (`upper`: keep observations below
    /// `rhs`) and `>/` (keep those above): buckets beyond the trim point go, the bucket holding
    /// it keeps its interpolated share, and when anything was cut the count and sum are
    /// re-estimated from bucket midpoints.
    pub fn trim_buckets(&mut self, rhs: f64, upper: bool) {
        let custom = self.uses_custom_buckets();
        let (mut count, mut sum, mut trimmed) = (0.0, 0.0, false);
        let (mut has_pos, mut has_neg) = (false, false);
        for positive in [true, false] {
            let indices: Vec<i32> = if positive {
                self.positive.keys().copied().collect()
            } else {
                self.negative.keys().copied().collect()
            };
            for i in indices {
                let b = self.trim_span(i, positive);
                if b.count == 0.0 {
                    continue;
                }
                if positive {
                    has_pos = true;
                } else {
                    has_neg = true;
                }
                let whole = if upper {
                    b.upper <= rhs
                } else {
                    b.lower >= rhs
                };
                let partial = if upper { b.lower < rhs } else { b.upper > rhs };
                let keep = if whole {
                    sum += midpoint(b.lower, b.upper, positive, custom) * b.count;
                    b.count
                } else if partial {
                    let (keep, mid) = bucket_trim(&b, rhs, upper, positive, custom);
                    sum += mid * keep;
                    keep
                } else {
                    0.0
                };
                count += keep;
                if keep != b.count {
                    trimmed = true;
                    let side = if positive {
                        &mut self.positive
                    } else {
                        &mut self.negative
                    };
                    side.insert(i, keep);
                }
            }
        }
        if self.zero_count > 0.0 {
            let (keep, mid) = self.zero_trim(rhs, has_neg, has_pos, upper);
            if keep != self.zero_count {
                self.zero_count = keep;
                trimmed = true;
            }
            sum += mid * keep;
            count += keep;
        }
        if trimmed {
            self.count = count;
            self.sum = sum;
            self.compact();
        }
    }

    /// Bounds and count of bucket `i` (custom buckets: the first starts at -Inf, the last
    /// ends at +Inf).
    fn trim_span(&self, i: i32, positive: bool) -> Span {
        if self.uses_custom_buckets() {
            let at = |k: i32| {
                usize::try_from(k)
                    .ok()
                    .and_then(|k| self.custom_values.get(k))
            };
            return Span {
                lower: at(i - 1).copied().unwrap_or(f64::NEG_INFINITY),
                upper: at(i).copied().unwrap_or(f64::INFINITY),
                count: self.positive.get(&i).copied().unwrap_or(0.0),
            };
        }
        if positive {
            Span {
                lower: self.lower_bound(i),
                upper: self.upper_bound(i),
                count: self.positive.get(&i).copied().unwrap_or(0.0),
            }
        } else {
            Span {
                lower: -self.upper_bound(i),
                upper: -self.lower_bound(i),
                count: self.negative.get(&i).copied().unwrap_or(0.0),
            }
        }
    }

    /// Prometheus's `computeZeroBucketTrim`: the zero bucket's kept count and midpoint.
    fn zero_trim(&self, rhs: f64, has_neg: bool, has_pos: bool, upper: bool) -> (f64, f64) {
        let (mut lo, mut hi) = (-self.zero_threshold, self.zero_threshold);
        if has_neg && !has_pos {
            hi = 0.0;
        }
        if has_pos && !has_neg {
            lo = 0.0;
        }
        let c = self.zero_count;
        if upper {
            if rhs <= lo {
                return (0.0, 0.0);
            }
            if rhs >= hi {
                return (c, (lo + hi) / 2.0);
            }
            (c * (rhs - lo) / (hi - lo), (lo + rhs) / 2.0)
        } else {
            if rhs <= lo {
                return (c, (lo + hi) / 2.0);
            }
            if rhs >= hi {
                return (0.0, 0.0);
            }
            (c * (hi - rhs) / (hi - lo), (rhs + hi) / 2.0)
        }
    }
}

/// Prometheus's `computeMidpoint`: where a surviving interval's observations are assumed to
/// sit (arithmetic mean for linear buckets, geometric for exponential ones).
fn midpoint(lo: f64, hi: f64, positive: bool, linear: bool) -> f64 {
    if lo.is_infinite() {
        if hi.is_infinite() {
            return 0.0;
        }
        return if hi > 0.0 { hi / 2.0 } else { hi };
    }
    if hi.is_infinite() {
        return lo;
    }
    if linear {
        return (lo + hi) / 2.0;
    }
    let geo = (lo * hi).abs().sqrt();
    if positive {
        geo
    } else {
        -geo
    }
}

/// Prometheus's `computeBucketTrim`: the kept count and midpoint of the bucket holding the
/// trim point.
fn bucket_trim(b: &Span, rhs: f64, upper: bool, positive: bool, linear: bool) -> (f64, f64) {
    if b.lower == f64::NEG_INFINITY || b.upper == f64::INFINITY {
        return infinite_bucket_trim(b, rhs, upper);
    }
    let under = if rhs <= b.lower {
        0.0
    } else if rhs >= b.upper {
        b.count
    } else {
        b.count * fraction_below(b, rhs, linear)
    };
    if upper {
        (under, midpoint(b.lower, rhs, positive, linear))
    } else {
        (b.count - under, midpoint(rhs, b.upper, positive, linear))
    }
}

/// The share of a bucket's width at or below `v` (on a log scale for exponential buckets).
fn fraction_below(b: &Span, v: f64, linear: bool) -> f64 {
    if linear {
        return (v - b.lower) / (b.upper - b.lower);
    }
    let (lo, hi, x) = (b.lower.abs().log2(), b.upper.abs().log2(), v.abs().log2());
    if v > 0.0 {
        (x - lo) / (hi - lo)
    } else {
        1.0 - (x - hi) / (lo - hi)
    }
}

/// Prometheus's `handleInfinityBuckets`.
fn infinite_bucket_trim(b: &Span, rhs: f64, upper: bool) -> (f64, f64) {
    let zero_if_inf = |x: f64| if x.is_infinite() { 0.0 } else { x };
    if b.lower == f64::NEG_INFINITY {
        if upper {
            if rhs >= b.upper {
                return (b.count, 0.0);
            }
            if rhs > 0.0 && b.upper > 0.0 && b.upper.is_finite() {
                return (b.count * rhs / b.upper, rhs / 2.0);
            }
            if b.upper <= 0.0 {
                return (b.count, rhs);
            }
            return (0.0, zero_if_inf(b.upper));
        }
        if rhs <= b.lower {
            return (b.count, 0.0);
        }
        if rhs >= 0.0 && b.upper > rhs && b.upper.is_finite() {
            return (b.count * (1.0 - rhs / b.upper), (rhs + b.upper) / 2.0);
        }
        return (0.0, zero_if_inf(b.upper));
    }
    if upper {
        return (0.0, zero_if_inf(b.lower));
    }
    if rhs >= b.lower {
        return (b.count, rhs);
    }
    (0.0, zero_if_inf(b.lower))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(text: &str) -> FloatHistogram {
        FloatHistogram::parse(text).expect("valid notation")
    }

    #[test]
    fn add_reduces_to_the_coarser_schema() {
        let mut a = h("{{schema:1 count:4 sum:10 buckets:[1 1 1 1]}}");
        let b = h("{{schema:0 count:2 sum:3 buckets:[1 1]}}");
        a.try_add(&b).expect("compatible");
        assert_eq!(a.schema, 0);
        assert_eq!(a.count, 6.0);
        let want = h("{{schema:0 count:6 sum:13 buckets:[2 3 1]}}");
        assert!(a.equals(&want, |x, y| x == y), "{a}");
    }

    #[test]
    fn zero_buckets_widen_to_the_larger_threshold() {
        let mut a = h("{{count:3 sum:3 z_bucket:1 z_bucket_w:0.001 buckets:[1 1]}}");
        let b = h("{{count:2 sum:2 z_bucket:1 z_bucket_w:1 buckets:[0 1]}}");
        a.try_add(&b).expect("compatible");
        assert_eq!(a.zero_threshold, 1.0);
        // a's bucket (0.5, 1] moved into the zero bucket.
        assert_eq!(a.zero_count, 3.0);
    }

    #[test]
    fn mixed_schemas_do_not_add() {
        let mut a = h("{{schema:-53 count:1 sum:1 custom_values:[1] buckets:[1]}}");
        let b = h("{{count:1 sum:1 buckets:[1]}}");
        assert_eq!(a.try_add(&b), Err(HistogramOpError::IncompatibleSchema));
    }

    #[test]
    fn custom_bounds_are_intersected() {
        let mut a = h("{{schema:-53 count:3 sum:3 custom_values:[1 2] buckets:[1 1 1]}}");
        let b = h("{{schema:-53 count:2 sum:2 custom_values:[2] buckets:[1 1]}}");
        let n = a.try_add(&b).expect("compatible");
        assert!(n.custom_bounds_reconciled);
        assert_eq!(a.custom_values, vec![2.0]);
        assert_eq!(a.positive.get(&0), Some(&3.0));
        assert_eq!(a.positive.get(&1), Some(&2.0));
    }

    #[test]
    fn division_by_zero_drops_buckets() {
        let mut a = h("{{count:2 sum:2 buckets:[1 1]}}");
        a.div(0.0);
        assert!(a.positive.is_empty());
        assert!(a.count.is_infinite());
    }

    #[test]
    fn trimming_keeps_one_side_and_reestimates_the_sum() {
        let mut a = h("{{schema:0 sum:123.75 count:34 z_bucket:1 z_bucket_w:0.001 buckets:[2 4 8 16] n_buckets:[1 2]}}");
        a.trim_buckets(0.0, false);
        let want = h("{{schema:0 sum:120.20840280171308 count:30.5 z_bucket:0.5 z_bucket_w:0.001 buckets:[2 4 8 16]}}");
        assert!(a.equals(&want, |x, y| (x - y).abs() < 1e-9), "{a}");
        let mut b = h("{{schema:0 sum:1 count:2 buckets:[1 1]}}");
        b.trim_buckets(f64::INFINITY, true);
        assert_eq!(b.count, 2.0, "nothing above +Inf");
    }
}
