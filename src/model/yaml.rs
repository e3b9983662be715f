//! Messages from the YAML parser (serde-saphyr), made one line long with the line number
//! taken out, for errors that name file, line and key themselves. Shared by every module that
//! reads YAML (config, rule files, notification configs, test files).

/// The line number in a serde-saphyr error message.
pub fn error_line(msg: &str) -> Option<usize> {
    // serde-saphyr reports "line N column M"; take the first such number.
    let re = regex::Regex::new(r"line (\d+)").ok()?;
    re.captures(msg)?.get(1)?.as_str().parse().ok()
}

/// The message of a serde-saphyr error without its source snippet.
pub fn first_line(msg: &str) -> String {
    // serde-saphyr appends a source snippet after the first line; the caller prints the
    // file and line itself, so keep the message and drop the snippet.
    let first = msg
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or(msg);
    first.trim_start_matches("error: ").to_string()
}
