//! Prometheus metrics and the live status page, served on `global.metrics_listen`.
//!
//! ```text
//! daemon ──watch<Arc<StatusReport>>──▶ server.rs ──GET /metrics──▶ render.rs (families.rs,
//!                                         │                         process.rs)
//!                                         ├──GET /status.json──▶ the snapshot as JSON
//!                                         └──GET /──▶ page.html (fetches /status.json each second)
//! ```
//! - [`families`]: every family with its type and label set (prometheus-client registration).
//! - [`render`]: a snapshot as Prometheus text 0.0.4 or OpenMetrics (by `Accept`).
//! - [`process`]: `process_*` from `/proc/self`.
//! - [`sync`]: `xlb_sync_*`, only where `[sync]` is configured.
//! - [`server`]: the HTTP side (hyper), answering from the latest snapshot only.
pub mod families;
pub mod process;
pub mod render;
pub mod server;
pub mod sync;

pub use render::{render, Format};
pub use server::serve;
