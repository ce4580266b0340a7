//! The daemon's answers to queries: status, connections, the traffic sample behind rates. Each
//! reads the kernel maps and hands what it read to [`crate::report`]; none changes anything
//! (the sweep that expires entries runs on the daemon's tick).
use std::{os::fd::AsRawFd as _, sync::Arc, time::Instant};

use std::path::{Path, PathBuf};

use tracing::{info, warn};

use super::{attach::Attached, Daemon};
use crate::{
    control::{Request, Response},
    dataplane::{
        batch,
        sweep::{self, SweepResult},
    },
    report::{self, ConnFilter, ConnListing, StatusInputs, TrafficSample},
    status::{render, render_timeouts, ConnEntry, StatusReport, View},
    vrrp::Vrrp,
};

/// Which dump a signal asks for.
#[derive(Clone, Copy, Debug)]
pub enum Dump {
    /// SIGUSR1: the table, timeouts and operator overrides.
    Data,
    /// SIGUSR2: counters and rates.
    Stats,
}

/// Writes `text` to `path` with mode 0600 (it names the real servers and the traffic), through a
/// temporary file renamed into place, so a reader never sees half a dump.
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(text.as_bytes())?;
    std::fs::rename(&tmp, path)
}

impl Daemon {
    /// Reads the traffic counters of everything written (read-only).
    pub(super) fn traffic_sample(&self) -> TrafficSample {
        let maps = self.writer.maps();
        let mut sample = TrafficSample {
            at: Instant::now(),
            services: Default::default(),
            reals: Default::default(),
        };
        for s in self.writer.slots().values() {
            if let Ok(t) = maps.service_traffic(s.id) {
                sample.services.insert(s.id, t);
            }
            for slot in s.reals.values() {
                if let Ok(t) = maps.real_traffic(*slot) {
                    sample.reals.insert(*slot, t);
                }
            }
        }
        sample
    }

    pub(super) fn status_report(
        &self,
        census: &SweepResult,
        traffic: &TrafficSample,
    ) -> StatusReport {
        use aya::maps::IterableMap as _;
        let maps = self.writer.maps();
        let conn_table_size = maps.conn_table.map().info().map(|i| i.max_entries());
        let mut r = report::status(&StatusInputs {
            cfg: &self.cfg,
            config_file: self.config_path.display().to_string(),
            controller: &self.controller,
            master_vips: &self.seen.master_vips,
            slots: &self.writer.slots(),
            census,
            traffic,
            rates: &self.rates,
            interfaces: self.attached.iter().map(Attached::status).collect(),
            vrrp: self.vrrp.as_ref().map(vrrp_status).unwrap_or_default(),
            counters: maps.global_counters().unwrap_or_default(),
            conn_table_size: conn_table_size.unwrap_or(0),
            check_stats: &self.checker.check_stats(),
            config_load: self.config_load.clone(),
            sweep_duration_secs: self.sweep_duration.as_secs_f64(),
            recent_transitions: crate::status::RecentTransitions::merge([
                self.checker.recent_transitions(),
                self.vrrp
                    .as_ref()
                    .map(|v| v.recent_transitions())
                    .unwrap_or_default(),
            ]),
            maglev_capacity: self.writer.maglev_capacity(),
        });
        r.sync = crate::sync::task::report(&self.sync);
        r.health_views = Some(self.agreement.status(
            &self.cfg,
            &self.checker.snapshot(),
            self.cfg.sync.as_ref().map(|s| s.director_id),
            Instant::now(),
        ));
        r
    }

    /// `xlb status`: a fresh read-only census of the table (the counts are exact as of now).
    fn status(&self) -> StatusReport {
        let census = match sweep::census(self.writer.maps(), &self.timeouts) {
            Ok(c) => c,
            Err(e) => {
                warn!("reading the connection table: {e}");
                self.sweep.clone()
            }
        };
        let report = self.status_report(&census, &self.traffic_sample());
        self.snapshots.send_replace(Arc::new(report.clone()));
        report
    }

    fn conns(&self, filter: ConnFilter) -> (Vec<ConnEntry>, u64) {
        let slots = self.writer.slots();
        let now = sweep::monotonic_ns();
        let mut listing = ConnListing::new(&self.cfg, &slots, &self.timeouts, filter, now);
        let read = sweep::for_each_flow(self.writer.maps(), |k, v| listing.visit(k, v));
        if let Err(e) = read {
            warn!("reading the connection table: {e}");
        }
        let maps = self.writer.maps();
        let fd = maps.persist_templates_fd().as_raw_fd();
        let read =
            batch::for_each::<lb_common::PersistKey, lb_common::PersistEntry>(fd, 8192, |k, v| {
                if let Some(p) = maps.persistence_of(k.service_id) {
                    listing.visit_template(k, v, p);
                }
            });
        if let Err(e) = read {
            warn!("reading the persistence templates: {e}");
        }
        (listing.entries, listing.total)
    }

    /// keepalived's SIGUSR1/SIGUSR2 answer: the state (or the statistics) written to
    /// `xlb.data` (`xlb.stats`) beside the control socket, readable by root only.
    pub(super) fn dump(&self, what: Dump) {
        let report = self.status();
        let (name, text) = match what {
            Dump::Data => {
                let mut text = render(&report, View::Connections);
                text += &render_timeouts(&report);
                for e in self.overlay.list(&self.cfg) {
                    text += &format!("override {} {} {}\n", e.service, e.real, e.what);
                }
                ("xlb.data", text)
            }
            Dump::Stats => {
                let mut text = render(&report, View::Stats { exact: true });
                text += &render(&report, View::Rate);
                for (name, value) in &report.counters {
                    text += &format!("counter {name} {value}\n");
                }
                ("xlb.stats", text)
            }
        };
        let dir = self
            .cfg
            .global
            .control_socket
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("/run/xlb"));
        let path = dir.join(name);
        match write_private(&path, &text) {
            Ok(()) => info!(file = %path.display(), "state written (SIGUSR)"),
            Err(e) => warn!(file = %path.display(), "cannot write the dump: {e}"),
        }
    }

    /// Answers one control request; `None` for a stop request (answered by the caller).
    pub(super) async fn answer(&mut self, req: Request) -> Option<Response> {
        Some(match req {
            Request::Status => Response::Status(Box::new(self.status())),
            Request::Conns {
                service,
                real,
                client,
                limit,
            } => {
                let filter = ConnFilter {
                    service,
                    real,
                    client,
                    limit,
                };
                let (entries, total) = self.conns(filter);
                Response::Conns { entries, total }
            }
            Request::Reload => match self.reload().await {
                Ok(summary) => Response::Reloaded { summary },
                Err(e) => Response::ReloadFailed {
                    partial: e.is_partial(),
                    errors: e.lines(),
                },
            },
            Request::Real {
                service,
                protocol,
                real,
                set,
            } => self.set_override(&service, protocol, &real, set).await,
            Request::Overrides => Response::Overrides {
                entries: self.overlay.list(&self.cfg),
            },
            Request::ClearOverrides => self.clear_overrides().await,
            Request::Zero { service, protocol } => self.zero(service.as_deref(), protocol),
            Request::Stop { .. } => return None,
        })
    }
}

fn vrrp_status(v: &Vrrp) -> Vec<crate::status::VrrpStatus> {
    v.status()
        .into_iter()
        .map(|i| crate::status::VrrpStatus {
            name: i.name,
            state: i.role.to_string(),
            vrid: i.vrid,
            interface: i.interface,
            priority: i.priority,
            effective_priority: i.effective_priority,
            last_master: i.last_master,
            adverts_rx: i.adverts_rx,
            adverts_tx: i.adverts_tx,
            bad_adverts: i.bad_adverts,
            transitions: i.transitions,
            last_bad_advert: i.last_bad_advert,
            tracked: i.tracked,
        })
        .collect()
}
