//! Notifications, Alertmanager-compatible: the routing tree (this step), and — as the
//! notifications issue proceeds — grouping, inhibition, silences, the notification log and
//! the receivers. It takes alerts through the rules module's sink and never touches storage,
//! scraping or PromQL.

pub mod api;
pub mod config;
pub mod dispatch;
pub mod external;
pub mod notifier;
pub mod receivers;
pub mod route;
pub mod silence;
pub mod template;
pub mod timeinterval;
