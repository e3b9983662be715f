//! The container image: built from the release binary on `debian:bookworm-slim` (made
//! locally with `debootstrap --variant=minbase` + `docker import` when no registry is
//! reachable), run with the host's network and read-only host mounts, ready, non-root, and
//! reading the host: its boot time in `node_boot_time_seconds`.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};

use common::*;

const BASE: &str = "debian:bookworm-slim";
const IMAGE: &str = "appliance:test";

fn has_image(name: &str) -> bool {
    Command::new("docker")
        .args(["image", "inspect", name])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// `debian:bookworm-slim`, pulled if a registry answers, else made with debootstrap.
fn base_image() -> bool {
    if has_image(BASE) {
        return true;
    }
    let pulled = Command::new("docker")
        .args(["pull", BASE])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if pulled {
        return true;
    }
    if !Path::new("/usr/sbin/debootstrap").exists() {
        return false;
    }
    let root = tempfile::tempdir().unwrap();
    let rootfs = root.path().join("rootfs");
    // The machine's own Debian mirror (deb.debian.org unless apt says otherwise).
    let made = Command::new("debootstrap")
        .args(["--variant=minbase", "--include=ca-certificates", "bookworm"])
        .arg(&rootfs)
        .arg("http://deb.debian.org/debian")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !made {
        return false;
    }
    // Trimmed as the slim image is: no apt lists, docs or man pages.
    for d in [
        "var/lib/apt/lists",
        "usr/share/doc",
        "usr/share/man",
        "var/cache/apt",
    ] {
        let _ = std::fs::remove_dir_all(rootfs.join(d));
    }
    let mut tar = Command::new("tar")
        .args(["-C"])
        .arg(&rootfs)
        .args(["-c", "."])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let imported = Command::new("docker")
        .args(["import", "-", BASE])
        .stdin(tar.stdout.take().unwrap())
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    tar.wait().is_ok_and(|s| s.success()) && imported
}

/// Removes the container when dropped.
struct Container(String);

impl Drop for Container {
    fn drop(&mut self) {
        let _ = Command::new("docker")
            .args(["rm", "-f", &self.0])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

fn host_boot_time() -> f64 {
    std::fs::read_to_string("/proc/stat")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("btime "))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn the_image_runs_non_root_and_reads_the_host_through_its_mounts() {
    let binary = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/release/appliance");
    if !available(docker_engine(), "a Docker engine")
        || !available(
            binary.exists(),
            "target/release/appliance (the .deb build makes it)",
        )
        || !available(
            base_image(),
            "debian:bookworm-slim (a registry or debootstrap)",
        )
    {
        return;
    }
    run_ok(
        Command::new("bash")
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/container/build.sh"))
            .arg(IMAGE),
    );
    let name = format!("appliance-test-{}", std::process::id());
    let port = free_port();
    let _c = Container(name.clone());
    run_ok(
        Command::new("docker")
            .args(["run", "-d", "--name", &name, "--network", "host"])
            .args(["-v", "/proc:/host/proc:ro", "-v", "/sys:/host/sys:ro"])
            // rslave (as node_exporter documents) needs a shared /; this sandbox has none.
            .args(["-v", "/:/host/root:ro"])
            .args(["-e", &format!("APPLIANCE_PORT={port}")])
            .args(["-e", &format!("APPLIANCE_ADMIN_PASSWORD={ADMIN_PASSWORD}")])
            .arg(IMAGE)
            .args(["run", "--config", "/etc/appliance/appliance.yml"])
            .args(["--data-dir", "/var/lib/appliance"])
            .args(["--listen", &format!("127.0.0.1:{port}")]),
    );
    let addr = format!("127.0.0.1:{port}");
    wait_ready(&addr);
    let boot = wait_for(30, "node_boot_time_seconds from the container", || {
        query_value(&addr, "node_boot_time_seconds")
    });
    assert_eq!(
        boot,
        host_boot_time(),
        "the container reads the host's /proc"
    );
    // The host's root file system, through /host/root.
    wait_for(30, "the host's / in node_filesystem_size_bytes", || {
        query_value(&addr, "node_filesystem_size_bytes{mountpoint=\"/\"}")
    });
    // Not root inside.
    let user = run_ok(Command::new("docker").args(["exec", &name, "id", "-u"]));
    assert_eq!(String::from_utf8_lossy(&user.stdout).trim(), "10001");
    // The health check the image declares passes.
    let health = wait_for(60, "the image's HEALTHCHECK to pass", || {
        let out = Command::new("docker")
            .args(["inspect", "-f", "{{.State.Health.Status}}", &name])
            .output()
            .ok()?;
        let s = String::from_utf8_lossy(&out.stdout).trim().to_string();
        (s == "healthy").then_some(s)
    });
    assert_eq!(health, "healthy");
}
