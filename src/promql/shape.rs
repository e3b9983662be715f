//! Bounds on a query's size and nesting, checked on the text before the parser sees it, and the
//! thread with a known stack that deep queries are parsed, evaluated and dropped on.
//!
//! The parser crate, the evaluator, `Drop`, `Clone` and the pretty-printer all recurse once per
//! level of the expression tree, so an unbounded query (2,000 chained `+`, `abs(` nested 5,000
//! deep) overflowed the stack and aborted the process. The text is measured first, linearly
//! and without recursion; a query over the limits is refused as a parse error (`bad_data`), as
//! Prometheus refuses what its parser cannot take. This module owns no parsing and no
//! evaluation; it only says whether and where they may run.

use super::PromqlError;

/// Longest query text accepted (bytes). Generous: a Grafana multi-value variable can expand
/// into a regex of thousands of alternatives, which is long but flat.
pub const MAX_QUERY_BYTES: usize = 1 << 20;

/// Deepest expression tree accepted, as estimated by [`nesting`]. Hand-written queries stay
/// under 30; generated ones with a few hundred `or` alternatives still fit.
pub const MAX_DEPTH: usize = 512;

/// Up to this depth a query runs on the caller's thread (any thread has room for it); deeper
/// ones move to a thread with [`STACK_BYTES`] of stack.
const INLINE_DEPTH: usize = 48;

/// Stack of the thread deep queries run on. Measured: an 8 MiB stack holds parse, evaluation,
/// pretty-printing and drop of a tree about 1,400 deep in an unoptimised build; this leaves a
/// wide margin over [`MAX_DEPTH`]. Only touched pages are committed.
const STACK_BYTES: usize = 64 << 20;

/// An upper bound of the depth of the tree `q` parses into, or a parse error when `q` is over
/// [`MAX_QUERY_BYTES`] or [`MAX_DEPTH`].
///
/// Within one bracket level the tree is at most as deep as the number of operators in it (plus
/// one); a bracket adds its content's depth. Strings and comments are skipped; operators
/// inside `{…}` are matchers, not tree nodes.
pub fn nesting(q: &str) -> Result<usize, PromqlError> {
    if q.len() > MAX_QUERY_BYTES {
        return Err(PromqlError::Parse(format!(
            "parse error: query is {} bytes long, over the limit of {MAX_QUERY_BYTES}",
            q.len()
        )));
    }
    // Per open bracket: its kind, operators counted in it, deepest child so far.
    struct Level {
        close: u8,
        ops: usize,
        child: usize,
    }
    let mut levels = vec![Level {
        close: 0,
        ops: 0,
        child: 0,
    }];
    let too_deep = |d: usize| {
        PromqlError::Parse(format!(
            "parse error: expression nesting depth {d} exceeds the limit of {MAX_DEPTH}"
        ))
    };
    let fold = |levels: &mut Vec<Level>| {
        if levels.len() > 1 {
            if let Some(l) = levels.pop() {
                let d = l.ops + l.child + 1;
                if let Some(p) = levels.last_mut() {
                    p.child = p.child.max(d);
                }
            }
        }
    };
    let b = q.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        match c {
            b'"' | b'\'' | b'`' => {
                i += 1;
                while i < b.len() && b[i] != c {
                    i += if b[i] == b'\\' && c != b'`' { 2 } else { 1 };
                }
                i += 1;
                continue;
            }
            b'#' => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
                continue;
            }
            b'(' | b'[' | b'{' => {
                levels.push(Level {
                    close: match c {
                        b'(' => b')',
                        b'[' => b']',
                        _ => b'}',
                    },
                    ops: 0,
                    child: 0,
                });
                // The open brackets alone bound the depth from below.
                if levels.len() > MAX_DEPTH {
                    return Err(too_deep(levels.len()));
                }
            }
            b')' | b']' | b'}' => fold(&mut levels),
            b'+' | b'-' | b'*' | b'/' | b'%' | b'^' | b'<' | b'>' | b'=' | b'!' => {
                let in_braces = levels.last().is_some_and(|l| l.close == b'}');
                // Two-character operators count once.
                let two = i + 1 < b.len() && b[i + 1] == b'=' && c != b'+' && c != b'-';
                if !in_braces {
                    if let Some(l) = levels.last_mut() {
                        l.ops += 1;
                        if l.ops > MAX_DEPTH {
                            return Err(too_deep(l.ops));
                        }
                    }
                }
                i += if two { 2 } else { 1 };
                continue;
            }
            _ if c.is_ascii_alphabetic() || c == b'_' => {
                let start = i;
                while i < b.len()
                    && (b[i].is_ascii_alphanumeric() || matches!(b[i], b'_' | b':' | b'.'))
                {
                    i += 1;
                }
                let word = &q[start..i];
                let in_braces = levels.last().is_some_and(|l| l.close == b'}');
                if !in_braces
                    && ["and", "or", "unless", "atan2"]
                        .iter()
                        .any(|k| word.eq_ignore_ascii_case(k))
                {
                    if let Some(l) = levels.last_mut() {
                        l.ops += 1;
                        if l.ops > MAX_DEPTH {
                            return Err(too_deep(l.ops));
                        }
                    }
                }
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    while levels.len() > 1 {
        fold(&mut levels);
    }
    let depth = levels.first().map_or(1, |l| l.ops + l.child + 1);
    if depth > MAX_DEPTH {
        return Err(too_deep(depth));
    }
    Ok(depth)
}

/// Runs `f` where a tree `depth` deep fits: on this thread when shallow, else on a thread with
/// a known, large stack. A panic in `f` becomes an execution error instead of unwinding into
/// the caller.
pub fn on_query_stack<T: Send>(
    depth: usize,
    f: impl FnOnce() -> Result<T, PromqlError> + Send,
) -> Result<T, PromqlError> {
    if depth <= INLINE_DEPTH {
        return f();
    }
    std::thread::scope(|s| {
        let handle = std::thread::Builder::new()
            .name("promql-deep".into())
            .stack_size(STACK_BYTES)
            .spawn_scoped(s, f)
            .map_err(|e| PromqlError::Execution(format!("cannot start a query thread: {e}")))?;
        handle
            .join()
            .map_err(|_| PromqlError::Execution("query evaluation panicked".into()))?
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn estimates_bound_the_tree_depth() {
        assert_eq!(nesting("up").unwrap(), 1);
        assert_eq!(nesting("a + b + c").unwrap(), 3);
        // Matchers and strings are not operators.
        assert_eq!(nesting(r#"up{a="+-*/", b=~"x|y", c!="(("}"#).unwrap(), 2);
        assert!(nesting("sum(rate(x[5m])) by (job) / on(job) group_left count(y)").unwrap() < 10);
        assert_eq!(nesting("a or b OR c unless d").unwrap(), 4);
        // A comment's brackets are not brackets.
        assert_eq!(nesting("up # (((((\n").unwrap(), 1);
    }

    #[test]
    fn the_issue_13_probes_are_refused_without_recursion() {
        for q in [
            vec!["1"; 2000].join(" + "),
            format!("{}1{}", "abs(".repeat(5000), ")".repeat(5000)),
            format!("{}1{}", "(".repeat(35_000), ")".repeat(35_000)),
            // Unbalanced: the open brackets alone are too many.
            "(".repeat(100_000),
            format!("{}1", "-".repeat(10_000)),
        ] {
            let e = nesting(&q).unwrap_err();
            assert!(e.to_string().contains("exceeds the limit of 512"), "{e}");
        }
        let long = format!("up{{a=~\"{}\"}}", "x|".repeat(MAX_QUERY_BYTES));
        assert!(nesting(&long)
            .unwrap_err()
            .to_string()
            .contains("bytes long"));
    }

    #[test]
    fn the_deepest_accepted_query_runs_on_any_thread() {
        // Test threads have 2 MiB of stack; the limit's worst cases must still parse, run and
        // drop here, because the deep part moves to the query thread.
        for q in [
            vec!["1"; MAX_DEPTH].join("+"),
            format!(
                "{}1{}",
                "(".repeat(MAX_DEPTH - 1),
                ")".repeat(MAX_DEPTH - 1)
            ),
            format!(
                "{}up{}",
                "sum(".repeat(MAX_DEPTH - 1),
                ")".repeat(MAX_DEPTH - 1)
            ),
            format!("{}up{}", "-".repeat(MAX_DEPTH - 1), ""),
        ] {
            let d = nesting(&q).unwrap();
            assert!(d <= MAX_DEPTH, "{d}");
            let head = crate::storage::Head::new(crate::storage::HeadOptions::default());
            let e = super::super::Engine::new(
                std::sync::Arc::new(head),
                super::super::EngineOptions::default(),
            );
            e.range(&q, 0, 60_000, 15_000).unwrap();
            let expr = super::super::parse(&q).unwrap();
            drop(expr);
            let pretty = super::super::format_query(&q).unwrap();
            assert!(!pretty.is_empty());
        }
    }
}
