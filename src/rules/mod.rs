//! Recording and alerting rules: rule files in Prometheus's format, Go-template expansion of
//! alert labels and annotations, the alert state machine, group evaluation, and `test rules`.
//!
//! Rules read through a narrow evaluation trait and write through the storage `Appendable`;
//! alerts leave through one `AlertSink`. This module never touches HTTP or scraping.

pub mod file;
pub mod group;
pub mod manager;
pub mod template;
pub mod unittest;
