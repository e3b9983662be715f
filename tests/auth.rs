//! Login end to end: the UI and every mutating endpoint need the admin; a wrong password is
//! refused and throttled; read tokens read and do nothing else; a generated password is
//! printed once and only its hash is kept; everything works under a sub-path.

mod common;

use common::*;

const QUIET: &str = "collectors:\n  containers: {enabled: false}\n  postgres: {enabled: false}\n  redis: {enabled: false}\n";

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case(name).then_some(v.trim())
    })
}

fn basic(user: &str, password: &str) -> String {
    use base64::Engine as _;
    format!(
        "Authorization: Basic {}\r\n",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

/// The status `request_with` gets.
fn status(addr: &str, method: &str, path: &str, extra: &str, body: &str) -> u16 {
    request_with(addr, method, path, extra, body).unwrap().0
}

fn login(addr: &str, prefix: &str, password: &str) -> (u16, String, String) {
    let form = format!("username=admin&password={password}");
    request_with(addr, "POST", &format!("{prefix}/-/login"), "", &form).unwrap()
}

#[test]
fn the_ui_and_mutations_need_the_admin() {
    let dir = tempfile::tempdir().unwrap();
    let (_app, addr) = appliance_with_config(dir.path(), QUIET);

    // The UI sends a browser without a session to the login page.
    let (code, head, _) = request_with(&addr, "GET", "/", "", "").unwrap();
    assert_eq!(code, 303, "{head}");
    assert_eq!(header(&head, "location"), Some("/-/login"));
    let (code, _, body) = request_with(&addr, "GET", "/-/login", "", "").unwrap();
    assert_eq!(code, 200);
    assert!(body.contains("type=\"password\""), "{body}");

    // A wrong password gets no cookie, and the UI stays locked.
    // (Back to the login page by redirect, which then says why: the page loads cleanly.)
    let (code, head, _) = login(&addr, "", "wrong");
    assert_eq!(code, 303, "{head}");
    assert_eq!(header(&head, "location"), Some("/-/login?failed=1"));
    assert!(header(&head, "set-cookie").is_none(), "{head}");
    let (_, _, body) = request_with(&addr, "GET", "/-/login?failed=1", "", "").unwrap();
    assert!(body.contains("Wrong user or password"), "{body}");
    let (code, _, _) = request_with(&addr, "GET", "/", "", "").unwrap();
    assert_eq!(code, 303, "still locked");

    // The right one gets a session cookie a script cannot read or another site send.
    let (code, head, _) = login(&addr, "", ADMIN_PASSWORD);
    assert_eq!(code, 303, "{head}");
    let cookie = header(&head, "set-cookie")
        .expect("a session cookie")
        .to_string();
    for attr in [
        "appliance_session=",
        "HttpOnly",
        "SameSite=Strict",
        "Path=/",
    ] {
        assert!(cookie.contains(attr), "{cookie}");
    }
    assert!(!cookie.contains("Secure"), "plain HTTP: {cookie}");
    let session = cookie.split(';').next().unwrap().to_string();
    let with_session = format!("Cookie: {session}\r\n");
    let (code, _, body) = request_with(&addr, "GET", "/", &with_session, "").unwrap();
    assert_eq!(code, 200);
    assert!(body.contains("<base href=\"/\">"), "{body}");

    // Prometheus's shared links open the same query in Explore.
    let (code, head, _) = request_with(
        &addr,
        "GET",
        "/graph?g0.expr=rate(up%5B5m%5D)&g0.range_input=1h&g0.tab=0",
        &with_session,
        "",
    )
    .unwrap();
    assert_eq!(code, 303);
    assert_eq!(
        header(&head, "location"),
        Some("./#/explore?expr=rate%28up%5B5m%5D%29&range=1h&tab=graph")
    );

    // Mutations: refused without credentials (with a basic-auth challenge for tools), with
    // a wrong password, and accepted from the session or basic auth.
    let silence = r#"{"matchers":[{"name":"alertname","value":"X","isRegex":false}],"startsAt":"2020-01-01T00:00:00Z","endsAt":"2099-01-01T00:00:00Z","createdBy":"t","comment":"c"}"#;
    let json = "Content-Type: application/json\r\n";
    let (code, head, _) = request_with(&addr, "POST", "/api/v2/silences", json, silence).unwrap();
    assert_eq!(code, 401);
    assert_eq!(
        header(&head, "www-authenticate"),
        Some("Basic realm=\"appliance\"")
    );
    assert_eq!(status(&addr, "POST", "/-/reload", "", ""), 401);
    assert_eq!(
        status(
            &addr,
            "POST",
            "/api/v1/admin/tsdb/snapshot",
            &basic("admin", "nope"),
            ""
        ),
        401
    );
    let (code, _, body) = request_with(
        &addr,
        "POST",
        "/api/v2/silences",
        &format!("{with_session}{json}"),
        silence,
    )
    .unwrap();
    assert_eq!(code, 200, "{body}");
    assert_eq!(
        status(
            &addr,
            "POST",
            "/-/reload",
            &basic("admin", ADMIN_PASSWORD),
            ""
        ),
        200
    );

    // amtool without credentials is refused; with `--http.config.file` (basic auth) it works.
    if std::path::Path::new("/usr/bin/amtool").exists() {
        let amtool = |extra: &[&str]| {
            std::process::Command::new("/usr/bin/amtool")
                .arg(format!("--alertmanager.url=http://{addr}"))
                .args(extra)
                .args([
                    "silence",
                    "add",
                    "alertname=ViaAmtool",
                    "--comment=c",
                    "--duration=1h",
                ])
                .output()
                .unwrap()
        };
        let out = amtool(&[]);
        assert!(!out.status.success(), "amtool without a login must fail");
        let http = dir.path().join("amtool-http.yml");
        std::fs::write(
            &http,
            format!("basic_auth:\n  username: admin\n  password: {ADMIN_PASSWORD}\n"),
        )
        .unwrap();
        let out = amtool(&[&format!("--http.config.file={}", http.display())]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    } else {
        available(false, "amtool (prometheus-alertmanager)");
    }

    // Reads stay open by default, as Prometheus's API is; read-only POSTs too.
    assert_eq!(status(&addr, "GET", "/api/v1/query?query=up", "", ""), 200);
    assert_eq!(status(&addr, "POST", "/api/v1/query", "", "query=up"), 200);
    assert_eq!(status(&addr, "GET", "/api/v2/silences", "", ""), 200);

    // Logging out ends the session.
    assert_eq!(status(&addr, "POST", "/-/logout", &with_session, ""), 303);
    assert_eq!(status(&addr, "GET", "/", &with_session, ""), 303);

    // Guessing is throttled per address: after five failures even the right password waits.
    for _ in 0..5 {
        login(&addr, "", "guess");
    }
    let (code, head, _) = login(&addr, "", ADMIN_PASSWORD);
    assert_eq!(code, 303, "{head}");
    assert_eq!(header(&head, "location"), Some("/-/login?throttled=1"));
    assert!(header(&head, "set-cookie").is_none());
    // Credentials verified before the guessing keep working (the admin's tools are not
    // locked out by a guesser behind the same proxy); new guesses are refused unchecked.
    assert_eq!(
        status(
            &addr,
            "POST",
            "/-/reload",
            &basic("admin", ADMIN_PASSWORD),
            ""
        ),
        200
    );
    assert_eq!(
        status(&addr, "POST", "/-/reload", &basic("admin", "guess-7"), ""),
        429
    );
    // The password itself never reaches the log.
    let log = std::fs::read_to_string(dir.path().join("appliance.log")).unwrap();
    assert!(
        !log.contains(ADMIN_PASSWORD) && !log.contains("guess"),
        "{log}"
    );
    assert!(log.contains("login failed"), "{log}");
}

#[test]
fn read_tokens_read_and_nothing_more() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = format!(
        "{QUIET}web:\n  auth:\n    protect_reads: true\n    read_tokens: [grafana-read-token]\n"
    );
    let (_app, addr) = appliance_with_config(dir.path(), &cfg);
    let bearer = "Authorization: Bearer grafana-read-token\r\n";
    assert_eq!(status(&addr, "GET", "/api/v1/query?query=up", "", ""), 401);
    let (code, _, body) = request_with(&addr, "GET", "/api/v1/query?query=up", bearer, "").unwrap();
    assert_eq!(code, 200, "{body}");
    assert_eq!(
        status(
            &addr,
            "POST",
            "/api/v1/query_range",
            bearer,
            "query=up&start=1&end=2&step=1"
        ),
        200
    );
    assert_eq!(
        status(
            &addr,
            "GET",
            "/api/v1/query?query=up",
            &basic("admin", ADMIN_PASSWORD),
            ""
        ),
        200
    );
    for (method, path) in [("POST", "/-/reload"), ("POST", "/api/v2/silences")] {
        assert_eq!(
            status(&addr, method, path, bearer, "{}"),
            401,
            "{method} {path}"
        );
    }
    assert_eq!(
        status(&addr, "GET", "/", bearer, ""),
        303,
        "a read token does not open the UI"
    );
    // The token is a secret: the config API hides it.
    let (_, _, body) = request_with(&addr, "GET", "/api/v1/status/config", bearer, "").unwrap();
    assert!(!body.contains("grafana-read-token"), "{body}");
    // Health stays open for load balancers, Grafana's `/api/health` too.
    assert_eq!(status(&addr, "GET", "/-/healthy", "", ""), 200);
    let (code, _, body) = request_with(&addr, "GET", "/api/health", "", "").unwrap();
    assert_eq!(code, 200);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["database"], "ok", "{v}");
}

#[test]
fn without_a_password_one_is_generated_printed_once_and_only_its_hash_kept() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("appliance.yml");
    std::fs::write(&cfg, QUIET).unwrap();
    let start = |log: &str| {
        let addr = format!("127.0.0.1:{}", free_port());
        let p = Proc(
            std::process::Command::new(env!("CARGO_BIN_EXE_appliance"))
                .env_remove("APPLIANCE_ADMIN_PASSWORD")
                .args(["run", "--listen", &addr, "--config"])
                .arg(&cfg)
                .arg("--data-dir")
                .arg(dir.path().join("data"))
                .stdout(std::process::Stdio::null())
                .stderr(std::fs::File::create(dir.path().join(log)).unwrap())
                .spawn()
                .unwrap(),
        );
        wait_ready(&addr);
        (p, addr)
    };
    let (app, addr) = start("first.log");
    let first = std::fs::read_to_string(dir.path().join("first.log")).unwrap();
    let password = first
        .lines()
        .find_map(|l| l.split_once("Generated the admin password (user \"admin\"): "))
        .map(|(_, p)| p.trim().to_string())
        .unwrap_or_else(|| panic!("no generated password printed: {first}"));
    assert!(password.len() >= 16);
    let stored = std::fs::read_to_string(dir.path().join("data/admin_password.argon2")).unwrap();
    assert!(stored.starts_with("$argon2"), "{stored}");
    assert!(!stored.contains(&password));
    let (code, _, _) = login(&addr, "", &password);
    assert_eq!(code, 303);
    drop(app);

    let (_app, addr) = start("second.log");
    let second = std::fs::read_to_string(dir.path().join("second.log")).unwrap();
    assert!(!second.contains(&password), "printed only once: {second}");
    assert_eq!(
        status(&addr, "POST", "/-/reload", &basic("admin", &password), ""),
        200,
        "the stored hash still admits the password"
    );
}

#[test]
fn everything_works_under_a_sub_path() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let cfg = dir.path().join("appliance.yml");
    std::fs::write(
        &cfg,
        format!("{QUIET}web:\n  external_url: https://monitor.example/appliance/\n"),
    )
    .unwrap();
    let _app = appliance(dir.path(), Some(&cfg), &addr);
    wait_for(30, "ready under the prefix", || {
        get(&addr, "/appliance/-/ready").filter(|(c, _)| *c == 200)
    });
    let (code, head, _) = request_with(&addr, "GET", "/", "", "").unwrap();
    assert_eq!(code, 303);
    assert_eq!(header(&head, "location"), Some("/appliance/"));
    let (code, head, _) = request_with(&addr, "GET", "/appliance/", "", "").unwrap();
    assert_eq!(code, 303);
    assert_eq!(header(&head, "location"), Some("/appliance/-/login"));
    let (code, head, _) = login(&addr, "/appliance", ADMIN_PASSWORD);
    assert_eq!(code, 303);
    let cookie = header(&head, "set-cookie").unwrap().to_string();
    assert!(
        cookie.contains("Path=/appliance") && cookie.contains("; Secure"),
        "{cookie}"
    );
    let session = format!("Cookie: {}\r\n", cookie.split(';').next().unwrap());
    let (code, _, body) = request_with(&addr, "GET", "/appliance/", &session, "").unwrap();
    assert_eq!(code, 200);
    assert!(body.contains("<base href=\"/appliance/\">"), "{body}");
    let v = get_json(&addr, "/appliance/api/v1/query?query=1%2B1");
    assert_eq!(v["data"]["result"][1], "2", "{v}");
    assert_eq!(
        status(&addr, "GET", "/api/v1/query?query=1", "", ""),
        404,
        "nothing outside the prefix but the redirect"
    );
}
