//! `appliance`: Prometheus, Alertmanager and the common exporters in one process.
//!
//! The library holds every module; `main.rs` is only the command line. Module layout and the
//! direction of dependencies follow `DESIGN.md`: model <- collect, storage <- scrape <- http,
//! with `app` the only place that wires them together.

#![warn(missing_docs)]

pub mod app;
pub mod collect;
pub mod config;
pub mod doctor;
pub mod grafana;
pub mod http;
pub mod model;
pub mod notify;
pub mod promql;
pub mod remote;
pub mod rules;
pub mod scrape;
pub mod storage;
#[doc(hidden)]
pub mod testsupport;
