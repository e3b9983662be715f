//! The `appliance` command line: `run`, `check config|rules`, `test rules`, `tsdb`,
//! `grafana provision`, `version`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

#[derive(Parser)]
#[command(
    name = "appliance",
    version,
    about = "Prometheus, Alertmanager and the common exporters in one binary"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the appliance.
    Run {
        /// Config file (default: ./appliance.yml, then /etc/appliance/appliance.yml, then the
        /// embedded default).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Data directory (default: storage.path of the config, ./data).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Listen address, `:8080` or `host:port` (default: web.listen_address, :8080).
        #[arg(long)]
        listen: Option<String>,
        /// The URL users reach the appliance at, e.g. behind a proxy at a sub-path
        /// (Prometheus's flag; default: web.external_url).
        #[arg(long = "web.external-url")]
        external_url: Option<String>,
        /// The path prefix routes answer under (Prometheus's flag; default: web.route_prefix,
        /// else the external URL's path).
        #[arg(long = "web.route-prefix")]
        route_prefix: Option<String>,
        /// Log level: error, warn, info, debug, trace.
        #[arg(long, default_value = "info")]
        log_level: String,
        /// Log format.
        #[arg(long, value_enum, default_value = "text")]
        log_format: LogFormat,
    },
    /// Check files without running anything.
    Check {
        #[command(subcommand)]
        what: CheckCmd,
    },
    /// Run rule unit tests.
    Test {
        #[command(subcommand)]
        what: TestCmd,
    },
    /// Store maintenance.
    Tsdb {
        #[command(subcommand)]
        what: TsdbCmd,
    },
    /// Check a running appliance as the plan's checklist does: ready, storage, every target
    /// and collector up, rules evaluating, receivers delivering, remote write caught up,
    /// Grafana synced. One line per item; exit 0 only when none fails.
    Doctor {
        /// The appliance's URL (default: from the config's listen address and route prefix).
        #[arg(long)]
        url: Option<String>,
        /// Config file (default as for `run`), for the default URL.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Also send a test notification to every receiver (needs the admin password).
        #[arg(long)]
        send_test: bool,
        /// A file holding the admin password (default: APPLIANCE_ADMIN_PASSWORD).
        #[arg(long)]
        password_file: Option<PathBuf>,
    },
    /// Hand the dashboards and datasources to Grafana.
    Grafana {
        #[command(subcommand)]
        what: GrafanaCmd,
    },
    /// Print the version.
    Version,
}

#[derive(Subcommand)]
enum GrafanaCmd {
    /// Write Grafana's file provisioning (datasources, dashboard provider, dashboards) into a
    /// directory, for Grafana's `provisioning/` folder.
    Provision {
        /// The directory to write (`datasources/`, `dashboards/` below it).
        #[arg(long)]
        dir: PathBuf,
        /// Config file (default as for `run`): external URL, read token, dashboards_dir.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Point the Prometheus datasource at a real Prometheus (fed by remote write)
        /// instead of the appliance.
        #[arg(long)]
        prometheus_url: Option<String>,
        /// The appliance's URL as Grafana reaches it (default: web.external_url, else
        /// http://<hostname>:<port>).
        #[arg(long)]
        appliance_url: Option<String>,
        /// The dashboards folder's path as Grafana sees it, e.g. inside its container
        /// (default: its absolute path here).
        #[arg(long)]
        dashboards_path: Option<String>,
    },
}

#[derive(Subcommand)]
enum TsdbCmd {
    /// Import samples from a file into the store (run it while the appliance is stopped).
    Import {
        #[command(subcommand)]
        format: ImportFormat,
    },
    /// Print the store's cardinality: series, label pairs, the biggest metrics and labels.
    Analyze {
        /// Data directory (default ./data).
        #[arg(long, default_value = "data")]
        data_dir: PathBuf,
        /// Entries per list.
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
}

#[derive(Subcommand)]
enum ImportFormat {
    /// OpenMetrics text with a timestamp on every sample (as `promtool tsdb create-blocks-from openmetrics` takes).
    Openmetrics {
        /// The file.
        file: PathBuf,
        /// Data directory (default ./data).
        #[arg(long, default_value = "data")]
        data_dir: PathBuf,
    },
}

#[derive(Subcommand)]
enum CheckCmd {
    /// Check a config file; exits non-zero and names the line on error.
    Config {
        /// The file.
        file: PathBuf,
    },
    /// Check rule files, as `promtool check rules` (exit 1 if invalid, 3 on lint with --lint-fatal).
    Rules {
        /// The files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Exit 3 when lint problems (duplicate rules) are found.
        #[arg(long)]
        lint_fatal: bool,
        /// Skip unknown keys instead of refusing them.
        #[arg(long)]
        ignore_unknown_fields: bool,
        /// Name validation: utf8 (Prometheus 3's default) or legacy.
        #[arg(long, default_value = "utf8")]
        name_validation: String,
    },
}

#[derive(Subcommand)]
enum TestCmd {
    /// Run rule unit-test files, as `promtool test rules`.
    Rules {
        /// The test files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Only test groups whose name matches (repeatable; unanchored regex).
        #[arg(long)]
        run: Vec<String>,
        /// Skip unknown keys in rule files.
        #[arg(long)]
        ignore_unknown_fields: bool,
        /// Also write a JUnit XML report to this file.
        #[arg(long)]
        junit: Option<PathBuf>,
    },
}

fn init_logs(level: &str, format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_new(level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colours only on a terminal: a log file or journald gets plain text.
    let b = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => b.init(),
        LogFormat::Json => b.json().init(),
    }
}

/// The async runtime a command runs on; None (after saying why) when it cannot start.
fn runtime(b: tokio::runtime::Builder) -> Option<tokio::runtime::Runtime> {
    let mut b = b;
    match b.enable_all().build() {
        Ok(rt) => Some(rt),
        Err(e) => {
            eprintln!("error: starting runtime: {e}");
            None
        }
    }
}

/// glibc's malloc gives each thread its own arena (up to 8 per core) and, after a large block
/// is freed, raises its mmap threshold to that size, so the next scrape body or sample batch of
/// the same size comes from an arena and is kept there. Under a steady load of large scrapes
/// that is resident memory climbing in steps to the peak of every arena (issue 19). Two arenas
/// and a fixed threshold give large buffers back to the system when they are freed.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn tune_malloc() {
    // SAFETY: mallopt only sets allocator parameters; it is called first thing in main, before
    // any other thread exists, and its return value (0 on a refused setting) needs no action.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
        libc::mallopt(libc::M_MMAP_THRESHOLD, 256 * 1024);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn tune_malloc() {}

fn main() -> ExitCode {
    tune_malloc();
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Tsdb {
            what:
                TsdbCmd::Import {
                    format: ImportFormat::Openmetrics { file, data_dir },
                },
        } => {
            init_logs("info", LogFormat::Text);
            match appliance::app::import_openmetrics(
                &file,
                &data_dir,
                &appliance::config::Config::default(),
            ) {
                Ok(n) => {
                    println!("imported {n} samples into {}", data_dir.display());
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Cmd::Tsdb {
            what: TsdbCmd::Analyze { data_dir, limit },
        } => match appliance::app::analyze(&data_dir, limit, &appliance::config::Config::default())
        {
            Ok(report) => {
                print!("{report}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::FAILURE
            }
        },
        Cmd::Grafana {
            what:
                GrafanaCmd::Provision {
                    dir,
                    config,
                    prometheus_url,
                    appliance_url,
                    dashboards_path,
                },
        } => {
            let opts = appliance::app::ProvisionOptions {
                dir,
                config,
                prometheus_url,
                appliance_url,
                dashboards_path,
            };
            match appliance::app::grafana_provision(&opts) {
                Ok(files) => {
                    for f in &files {
                        println!("wrote {}", f.display());
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Cmd::Doctor {
            url,
            config,
            send_test,
            password_file,
        } => {
            let password = match password_file {
                Some(f) => match std::fs::read_to_string(&f) {
                    Ok(p) => Some(p.trim().to_string()),
                    Err(e) => {
                        eprintln!("error: --password-file {}: {e}", f.display());
                        return ExitCode::from(2);
                    }
                },
                None => std::env::var("APPLIANCE_ADMIN_PASSWORD")
                    .ok()
                    .filter(|p| !p.is_empty()),
            };
            let url = match url {
                Some(u) => u,
                None => match appliance::app::local_url(config.as_deref()) {
                    Ok(u) => u,
                    Err(e) => {
                        eprintln!("error: {e:#}");
                        return ExitCode::from(2);
                    }
                },
            };
            let opts = appliance::doctor::Options {
                url,
                password,
                send_test,
            };
            let Some(rt) = runtime(tokio::runtime::Builder::new_current_thread()) else {
                return ExitCode::FAILURE;
            };
            match rt.block_on(appliance::doctor::run(&opts)) {
                Ok(checks) => {
                    let failed = checks
                        .iter()
                        .filter(|c| c.outcome == appliance::doctor::Outcome::Fail)
                        .count();
                    for c in &checks {
                        println!("{c}");
                    }
                    println!("{} checks, {failed} failed", checks.len());
                    if failed == 0 {
                        ExitCode::SUCCESS
                    } else {
                        ExitCode::FAILURE
                    }
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::from(2)
                }
            }
        }
        Cmd::Version => {
            println!("appliance {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Cmd::Check {
            what:
                CheckCmd::Rules {
                    files,
                    lint_fatal,
                    ignore_unknown_fields,
                    name_validation,
                },
        } => {
            use appliance::rules::file::{NameValidation, ParseOptions};
            let names = match name_validation.as_str() {
                "legacy" => NameValidation::Legacy,
                "utf8" | "utf-8" => NameValidation::Utf8,
                other => {
                    eprintln!("error: --name-validation must be utf8 or legacy, not {other:?}");
                    return ExitCode::from(2);
                }
            };
            let opts = ParseOptions {
                ignore_unknown_fields,
                names,
            };
            ExitCode::from(appliance::app::check_rules(&files, opts, lint_fatal) as u8)
        }
        Cmd::Test {
            what:
                TestCmd::Rules {
                    files,
                    run,
                    ignore_unknown_fields,
                    junit,
                },
        } => {
            let opts = appliance::rules::unittest::TestOptions {
                run,
                ignore_unknown_fields,
                junit,
            };
            if appliance::app::test_rules(&files, &opts) {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Cmd::Check {
            what: CheckCmd::Config { file },
        } => match appliance::config::Source::File(file.clone()).load() {
            Ok(cfg) => {
                // Without a notify section, the environment's receivers are part of the config.
                if cfg.notify.0.is_null() && cfg.alerting.alertmanagers.is_empty() {
                    if let Err(e) = appliance::notify::config::from_env(|k| std::env::var(k).ok()) {
                        eprintln!("FAILED: notifications from the environment: {}", e.0);
                        return ExitCode::FAILURE;
                    }
                }
                let source = appliance::config::Source::File(file.clone());
                let Some(patterns) = &cfg.rule_files else {
                    println!(
                        "SUCCESS: {} is valid ({} scrape configs, the {} embedded default rule files)",
                        file.display(),
                        cfg.scrape_configs.len(),
                        appliance::config::DEFAULT_RULES.len()
                    );
                    return ExitCode::SUCCESS;
                };
                let rule_files =
                    appliance::rules::manager::resolve_files(patterns, &source.base_dir());
                let mut bad = false;
                for f in &rule_files {
                    if let Err(e) = appliance::rules::file::load(f, Default::default()) {
                        eprintln!("FAILED: {e}");
                        bad = true;
                    }
                }
                if bad {
                    return ExitCode::FAILURE;
                }
                println!(
                    "SUCCESS: {} is valid ({} scrape configs, {} rule files)",
                    file.display(),
                    cfg.scrape_configs.len(),
                    rule_files.len()
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("FAILED: {e}");
                ExitCode::FAILURE
            }
        },
        Cmd::Run {
            config,
            data_dir,
            listen,
            external_url,
            route_prefix,
            log_level,
            log_format,
        } => {
            init_logs(&log_level, log_format);
            let flags = vec![
                (
                    "config".to_string(),
                    config
                        .as_ref()
                        .map(|p| p.display().to_string())
                        .unwrap_or_default(),
                ),
                (
                    "data-dir".to_string(),
                    data_dir
                        .as_ref()
                        .map(|p| p.display().to_string())
                        .unwrap_or_default(),
                ),
                ("listen".to_string(), listen.clone().unwrap_or_default()),
                (
                    "web.external-url".to_string(),
                    external_url.clone().unwrap_or_default(),
                ),
                (
                    "web.route-prefix".to_string(),
                    route_prefix.clone().unwrap_or_default(),
                ),
                ("log-level".to_string(), log_level.clone()),
                (
                    "log-format".to_string(),
                    match log_format {
                        LogFormat::Text => "text".into(),
                        LogFormat::Json => "json".into(),
                    },
                ),
            ];
            let opts = appliance::app::RunOptions {
                config,
                data_dir,
                listen,
                external_url,
                route_prefix,
                flags,
            };
            let Some(rt) = runtime(tokio::runtime::Builder::new_multi_thread()) else {
                return ExitCode::FAILURE;
            };
            match rt.block_on(appliance::app::run(opts)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!(error = %format!("{e:#}"), "appliance stopped");
                    eprintln!("error: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}
