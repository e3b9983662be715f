//! Template functions that Prometheus's rule templates and Alertmanager's notification
//! templates both take from Go's `strings` and `regexp` packages, so `rules` and `notify`
//! register one implementation. Owns only these functions; each module keeps its own data
//! (`$labels`, `.Alerts`, ...) and its module-specific functions.

use std::sync::Arc;

use gotmpl::{Template, Value};

/// Argument `i` as text (empty when absent), as Go's templates print it.
pub fn arg_str(args: &[Value], i: usize) -> String {
    match args.get(i) {
        Some(Value::String(x)) => x.to_string(),
        Some(v) => v.to_string(),
        None => String::new(),
    }
}

fn s(v: impl Into<String>) -> Value {
    Value::String(Arc::from(v.into().as_str()))
}

fn regex(pattern: &str) -> Result<regex::Regex, gotmpl::TemplateError> {
    regex::Regex::new(pattern).map_err(|e| gotmpl::TemplateError::Exec(e.to_string()))
}

/// Go's `strings.Title`: upper-cases the first letter of each word (a word starts after an
/// ASCII character that is not a letter, digit or `_`, or after non-ASCII white space).
pub fn go_title(x: &str) -> String {
    let sep = |c: char| {
        if c.is_ascii() {
            !(c.is_ascii_alphanumeric() || c == '_')
        } else {
            c.is_whitespace()
        }
    };
    let mut out = String::with_capacity(x.len());
    let mut prev = ' ';
    for c in x.chars() {
        if sep(prev) {
            out.extend(c.to_uppercase());
        } else {
            out.push(c);
        }
        prev = c;
    }
    out
}

/// Adds `toUpper`, `toLower`, `title`, `match` and `reReplaceAll`, which Prometheus and
/// Alertmanager define alike.
pub fn string_funcs(t: Template) -> Template {
    t.funcs(string_func_map())
}

/// The functions of [`string_funcs`] as a map, for templates of either kind (text or
/// HTML-escaping).
pub fn string_func_map() -> gotmpl::FuncMap {
    let mut m = gotmpl::FuncMap::new();
    let mut add = |name: &str, f: gotmpl::ValueFunc| {
        m.insert(name.to_string(), f);
    };
    add(
        "toUpper",
        std::sync::Arc::new(|a| Ok(s(arg_str(a, 0).to_uppercase()))),
    );
    add(
        "toLower",
        std::sync::Arc::new(|a| Ok(s(arg_str(a, 0).to_lowercase()))),
    );
    add(
        "title",
        std::sync::Arc::new(|a| Ok(s(go_title(&arg_str(a, 0))))),
    );
    add(
        "match",
        std::sync::Arc::new(|a| Ok(Value::Bool(regex(&arg_str(a, 0))?.is_match(&arg_str(a, 1))))),
    );
    add(
        "reReplaceAll",
        std::sync::Arc::new(|a| {
            let re = regex(&arg_str(a, 0))?;
            Ok(s(re
                .replace_all(&arg_str(a, 2), arg_str(a, 1).as_str())
                .into_owned()))
        }),
    );
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn title_splits_words_as_go_does() {
        assert_eq!(go_title("disk full on web-1"), "Disk Full On Web-1");
        // `_` joins a word in Go's isSeparator; non-ASCII letters are not separators.
        assert_eq!(go_title("high_cpu äpfel"), "High_cpu Äpfel");
    }
}
