//! node_exporter's `timex` (the kernel clock's discipline, from `adjtimex(2)`) and `selinux`
//! collectors.

use super::{NodeCollector, Out};

impl NodeCollector {
    /// node_exporter's `timex`: `adjtimex(2)` in read-only mode (`modes = 0`).
    #[cfg(target_os = "linux")]
    pub(super) fn timex(&self, out: &mut Out) -> Result<(), String> {
        // SAFETY: a zeroed `timex` is a valid argument; with `modes` 0 the call only reads
        // the kernel's clock state into it, and the struct outlives the call.
        let (state, tx) = unsafe {
            let mut tx: libc::timex = std::mem::zeroed();
            let state = libc::adjtimex(&mut tx);
            (state, tx)
        };
        if state < 0 {
            return Err(format!("adjtimex: {}", std::io::Error::last_os_error()));
        }
        const TIME_ERROR: i32 = 5;
        const STA_NANO: i32 = 0x2000;
        const PPM16FRAC: f64 = 1_000_000.0 * 65_536.0;
        let divisor = if tx.status & STA_NANO != 0 { 1e9 } else { 1e6 };
        let rows: [(&str, &str, &str, f64); 17] = [
            (
                "sync_status",
                "Is clock synchronized to a reliable server (1 = yes, 0 = no).",
                "gauge",
                if state == TIME_ERROR { 0.0 } else { 1.0 },
            ),
            (
                "offset_seconds",
                "Time offset in between local system and reference clock.",
                "gauge",
                tx.offset as f64 / divisor,
            ),
            (
                "frequency_adjustment_ratio",
                "Local clock frequency adjustment.",
                "gauge",
                1.0 + tx.freq as f64 / PPM16FRAC,
            ),
            (
                "maxerror_seconds",
                "Maximum error in seconds.",
                "gauge",
                tx.maxerror as f64 / 1e6,
            ),
            (
                "estimated_error_seconds",
                "Estimated error in seconds.",
                "gauge",
                tx.esterror as f64 / 1e6,
            ),
            (
                "status",
                "Value of the status array bits.",
                "gauge",
                f64::from(tx.status),
            ),
            (
                "loop_time_constant",
                "Phase-locked loop time constant.",
                "gauge",
                tx.constant as f64,
            ),
            (
                "tick_seconds",
                "Seconds between clock ticks.",
                "gauge",
                tx.tick as f64 / 1e6,
            ),
            (
                "pps_frequency_hertz",
                "Pulse per second frequency.",
                "gauge",
                tx.ppsfreq as f64 / PPM16FRAC,
            ),
            (
                "pps_jitter_seconds",
                "Pulse per second jitter.",
                "gauge",
                tx.jitter as f64 / divisor,
            ),
            (
                "pps_shift_seconds",
                "Pulse per second interval duration.",
                "gauge",
                f64::from(tx.shift),
            ),
            (
                "pps_stability_hertz",
                "Pulse per second stability, average of recent frequency changes.",
                "gauge",
                tx.stabil as f64 / PPM16FRAC,
            ),
            (
                "pps_jitter_total",
                "Pulse per second count of jitter limit exceeded events.",
                "counter",
                tx.jitcnt as f64,
            ),
            (
                "pps_calibration_total",
                "Pulse per second count of calibration intervals.",
                "counter",
                tx.calcnt as f64,
            ),
            (
                "pps_error_total",
                "Pulse per second count of calibration errors.",
                "counter",
                tx.errcnt as f64,
            ),
            (
                "pps_stability_exceeded_total",
                "Pulse per second count of stability limit exceeded events.",
                "counter",
                tx.stbcnt as f64,
            ),
            (
                "tai_offset_seconds",
                "International Atomic Time (TAI) offset.",
                "gauge",
                f64::from(tx.tai),
            ),
        ];
        for (name, help, kind, v) in rows {
            out.add(&format!("node_timex_{name}"), help, kind, &[], v);
        }
        Ok(())
    }

    #[cfg(not(target_os = "linux"))]
    pub(super) fn timex(&self, _out: &mut Out) -> Result<(), String> {
        Err("adjtimex is Linux only".into())
    }

    /// node_exporter's `selinux`: enabled when selinuxfs is mounted; then the configured mode
    /// (`/etc/selinux/config`) and the current one (`<selinuxfs>/enforce`), 1 enforcing, 0
    /// permissive, -1 disabled.
    pub(super) fn selinux(&self, out: &mut Out) -> Result<(), String> {
        let mounts = Self::read(&self.proc("self/mounts")).unwrap_or_default();
        let fs = mounts.lines().find_map(|l| {
            let mut f = l.split_whitespace();
            let (_, at, kind) = (f.next()?, f.next()?, f.next()?);
            (kind == "selinuxfs").then(|| at.to_string())
        });
        out.add(
            "node_selinux_enabled",
            "SELinux is enabled, 1 is true, 0 is false",
            "gauge",
            &[],
            if fs.is_some() { 1.0 } else { 0.0 },
        );
        let Some(fs) = fs else { return Ok(()) };
        let config = std::fs::read_to_string(
            std::path::Path::new(&self.roots.rootfs).join("etc/selinux/config"),
        )
        .unwrap_or_default();
        let mode = config
            .lines()
            .find_map(|l| l.trim().strip_prefix("SELINUX="))
            .map(|m| match m.trim() {
                "enforcing" => 1.0,
                "permissive" => 0.0,
                _ => -1.0,
            })
            .unwrap_or(-1.0);
        out.add(
            "node_selinux_config_mode",
            "Configured SELinux enforcement mode",
            "gauge",
            &[],
            mode,
        );
        let current = std::fs::read_to_string(std::path::Path::new(&fs).join("enforce"))
            .ok()
            .and_then(|s| s.trim().parse::<f64>().ok())
            .unwrap_or(-1.0);
        out.add(
            "node_selinux_current_mode",
            "Current SELinux enforcement mode",
            "gauge",
            &[],
            current,
        );
        Ok(())
    }
}
