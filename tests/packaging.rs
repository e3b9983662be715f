//! The .deb, installed as a user installs it: `dpkg -i` lays out the binary, config, unit,
//! rules and dashboards and creates the system user; the config checks; the unit verifies;
//! the binary runs as the unit runs it, ready with the packaged rules; an upgrade keeps the
//! data; `dpkg --purge` leaves nothing behind. The test command builds the package first
//! (`bash packaging/deb/build.sh`).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::*;

fn the_deb() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/debian");
    std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "deb"))
        .max_by_key(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// Purges the package when dropped, so a failed test leaves the machine as it found it.
struct Installed;

impl Drop for Installed {
    fn drop(&mut self) {
        let _ = Command::new("dpkg")
            .args(["--purge", "appliance"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

const LEFT_BEHIND: &[&str] = &[
    "/usr/bin/appliance",
    "/etc/appliance",
    "/etc/default/appliance",
    "/var/lib/appliance",
    "/usr/share/appliance",
    "/usr/share/doc/appliance",
    "/lib/systemd/system/appliance.service",
    "/etc/systemd/system/multi-user.target.wants/appliance.service",
];

#[test]
fn the_deb_installs_runs_upgrades_and_purges_cleanly() {
    let deb = the_deb();
    if !available(
        deb.is_some() && is_root(),
        "target/debian/appliance_*.deb (bash packaging/deb/build.sh) and root",
    ) {
        return;
    }
    let deb = deb.unwrap();
    // Lintian clean (its one override is explained in packaging/deb/lintian-overrides).
    if Path::new("/usr/bin/lintian").exists() {
        let out = run_ok(
            Command::new("lintian")
                .args(["--fail-on", "error,warning", "--tag-display-limit", "0"])
                .arg(&deb),
        );
        let said = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(
            !said
                .lines()
                .any(|l| l.starts_with("E:") || l.starts_with("W:")),
            "{said}"
        );
    }
    let _guard = Installed;
    run_ok(Command::new("dpkg").arg("-i").arg(&deb));

    // The layout.
    for p in [
        "/usr/bin/appliance",
        "/etc/appliance/appliance.yml",
        "/etc/default/appliance",
        "/usr/share/appliance/rules/services.yml",
        "/usr/share/appliance/dashboards/system-overview.json",
        "/lib/systemd/system/appliance.service",
        "/usr/share/man/man1/appliance.1.gz",
    ] {
        assert!(Path::new(p).exists(), "{p} missing after dpkg -i");
    }
    let conffiles = run_ok(Command::new("dpkg-query").args(["-W", "-f=${Conffiles}", "appliance"]));
    let conffiles = String::from_utf8_lossy(&conffiles.stdout).to_string();
    assert!(
        conffiles.contains("/etc/appliance/appliance.yml"),
        "{conffiles}"
    );
    assert!(conffiles.contains("/etc/default/appliance"), "{conffiles}");
    run_ok(Command::new("id").arg("appliance"));
    // The environment file holds secrets: root and the service only.
    let st = run_ok(Command::new("stat").args(["-c", "%a %U %G", "/etc/default/appliance"]));
    assert_eq!(
        String::from_utf8_lossy(&st.stdout).trim(),
        "640 root appliance"
    );
    // Stripped: no debug sections in the installed binary.
    let sections = run_ok(Command::new("readelf").args(["-S", "/usr/bin/appliance"]));
    assert!(!String::from_utf8_lossy(&sections.stdout).contains(".debug_line"));

    let out = run_ok(Command::new("/usr/bin/appliance").args([
        "check",
        "config",
        "/etc/appliance/appliance.yml",
    ]));
    assert!(String::from_utf8_lossy(&out.stdout).contains("SUCCESS"));
    if Path::new("/usr/bin/systemd-analyze").exists() {
        run_ok(
            Command::new("systemd-analyze")
                .args(["verify", "/lib/systemd/system/appliance.service"]),
        );
    }
    let unit = std::fs::read_to_string("/lib/systemd/system/appliance.service").unwrap();
    for line in [
        "User=appliance",
        "StateDirectory=appliance",
        "ProtectSystem=strict",
        "NoNewPrivileges=true",
        "CapabilityBoundingSet=\n",
        "ExecStartPre=/usr/bin/appliance check config /etc/appliance/appliance.yml",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "Restart=on-failure",
    ] {
        assert!(unit.contains(line), "unit lacks {line:?}");
    }

    // As the unit runs it: the service user, its state directory (systemd's StateDirectory=
    // makes it), the packaged config; a free port instead of :8080.
    run_ok(Command::new("install").args([
        "-d",
        "-o",
        "appliance",
        "-g",
        "appliance",
        "-m",
        "0750",
        "/var/lib/appliance",
    ]));
    let addr = format!("127.0.0.1:{}", free_port());
    let start = || {
        Proc(
            // setpriv execs the binary itself (runuser would fork and outlive a kill).
            Command::new("setpriv")
                .args(["--reuid=appliance", "--regid=appliance", "--init-groups"])
                .args(["/usr/bin/appliance", "run"])
                .args(["--config", "/etc/appliance/appliance.yml"])
                .args(["--data-dir", "/var/lib/appliance", "--listen", &addr])
                .current_dir("/var/lib/appliance")
                .env("APPLIANCE_ADMIN_PASSWORD", ADMIN_PASSWORD)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        )
    };
    let app = start();
    wait_ready(&addr);
    let rules = get_json(&addr, "/api/v1/rules");
    let groups = rules["data"]["groups"].as_array().unwrap();
    assert!(groups.len() >= 4, "{rules}");
    for g in groups {
        assert!(
            g["file"]
                .as_str()
                .unwrap()
                .starts_with("/usr/share/appliance/rules/"),
            "{g}"
        );
    }
    let alerts: usize = groups
        .iter()
        .map(|g| g["rules"].as_array().unwrap().len())
        .sum();
    assert!(alerts >= 25, "{alerts}");
    wait_for(20, "the node collector up", || {
        (query_value(&addr, "up{job=\"node\"}")? == 1.0).then_some(())
    });
    drop(app);
    assert!(Path::new("/var/lib/appliance/wal").exists());

    // An upgrade (the same package again) keeps the data and the user.
    run_ok(Command::new("dpkg").arg("-i").arg(&deb));
    assert!(
        Path::new("/var/lib/appliance/wal").exists(),
        "data lost on upgrade"
    );
    run_ok(Command::new("id").arg("appliance"));

    // Purge: nothing left, the user gone.
    let out = run_ok(Command::new("dpkg").args(["--purge", "appliance"]));
    let said = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!said.contains("crontab"), "{said}");
    for p in LEFT_BEHIND {
        assert!(!Path::new(p).exists(), "{p} left after purge");
    }
    let user = Command::new("id").arg("appliance").output().unwrap();
    assert!(
        !user.status.success(),
        "the appliance user left after purge"
    );
}
