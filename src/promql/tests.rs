use super::*;
use crate::storage::{Appendable, Head, HeadOptions};

type Fixture<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a [(i64, f64)]);

fn engine(series: &[Fixture<'_>]) -> Engine {
    let head = Head::new(HeadOptions::default());
    let mut a = head.appender();
    for (name, labels, points) in series {
        let mut pairs: Vec<(&str, &str)> = labels.to_vec();
        pairs.push(("__name__", name));
        let l = Labels::from_pairs(pairs);
        for (t, v) in *points {
            a.append(&l, *t, *v).unwrap();
        }
    }
    a.commit().unwrap();
    Engine::new(std::sync::Arc::new(head), EngineOptions::default())
}

#[test]
fn rate_extrapolates_like_prometheus() {
    // 0, 10, 20, ... every 15 s: rate over 1 m is 10/15 per second.
    let pts: Vec<(i64, f64)> = (0..=20).map(|i| (i * 15_000, i as f64 * 10.0)).collect();
    let e = engine(&[("c_total", &[("job", "a")], &pts)]);
    let r = e.instant("rate(c_total[1m])", 300_000).unwrap();
    let Value::Vector(v) = r.value else { panic!() };
    assert_eq!(v.len(), 1);
    assert!((v[0].f - 10.0 / 15.0).abs() < 1e-9, "{}", v[0].f);
    assert_eq!(v[0].metric.get("__name__"), None);
    assert_eq!(v[0].metric.get("job"), Some("a"));
}

#[test]
fn syntax_errors_are_parse_errors() {
    let e = engine(&[]);
    assert!(matches!(e.instant("sum(", 0), Err(PromqlError::Parse(_))));
}
