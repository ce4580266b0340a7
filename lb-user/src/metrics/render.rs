//! A status snapshot (+ the process's own stats) as a Prometheus scrape.
//!
//! A fresh registry per scrape, filled from the snapshot: every value comes from a typed field
//! of [`StatusReport`], so a new metric cannot silently report another one's value.
use prometheus_client::{
    metrics::{counter::Counter, family::Family, gauge::Gauge},
    registry::Registry,
};

use super::families::{self, *};
use super::process::ProcessStats;
use crate::status::{RealStatus, ServiceStatus, StatusReport, VrrpStatus};

/// Exposition format of a scrape.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Prometheus text 0.0.4 (what `promtool check metrics` and older scrapers read).
    Text,
    /// OpenMetrics 1.0 (what Prometheus asks for first).
    OpenMetrics,
}

impl Format {
    /// From the scraper's `Accept` header.
    pub fn negotiate(accept: Option<&str>) -> Format {
        match accept {
            Some(a) if a.contains("application/openmetrics-text") => Format::OpenMetrics,
            _ => Format::Text,
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::Text => prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }
}

/// The scrape body.
pub fn render(report: &StatusReport, process: &ProcessStats, format: Format) -> String {
    let mut reg = Registry::default();
    families::register_build_info(&mut reg, &report.version);
    let fam = Families::default();
    fam.register(&mut reg);
    let single = Singles::default();
    single.register(&mut reg);
    fill_globals(&single, report, process);
    fill_xdp(&fam, &mut reg, report);
    for s in &report.services {
        fill_service(&fam, s);
    }
    for v in &report.vrrp {
        fill_vrrp(&fam, v);
    }
    if let Some(sync) = &report.sync {
        super::sync::fill(&mut reg, sync);
    }
    let mut out = String::new();
    let res = match format {
        Format::Text => prometheus_client::encoding::prometheus_text::encode(&mut out, &reg),
        Format::OpenMetrics => prometheus_client::encoding::text::encode(&mut out, &reg),
    };
    if res.is_err() {
        // Only a fmt::Write to a String: cannot fail.
        out.clear();
    }
    out
}

fn fill_globals(s: &Singles, r: &StatusReport, p: &ProcessStats) {
    s.conn_table_entries.set(r.conn_table_entries as i64);
    s.persistence_templates.set(r.persistence_templates as i64);
    let peers = r.health_views.as_ref().map_or(0, |v| v.peers.len());
    s.health_peer_views.set(peers as i64);
    s.conn_table_size.set(i64::from(r.conn_table_size));
    s.sweep_duration.set(r.sweep_duration_secs);
    s.config_reload_successful
        .set(i64::from(r.config_load.successful));
    s.config_reload_timestamp.set(r.config_load.at_unix);
    s.process_start_time.set(p.start_time_seconds);
    s.process_cpu_seconds.inc_by(p.cpu_seconds);
    s.process_resident_memory
        .set(p.resident_memory_bytes as i64);
    s.process_virtual_memory.set(p.virtual_memory_bytes as i64);
    s.process_open_fds.set(p.open_fds as i64);
    s.process_max_fds.set(p.max_fds as i64);
}

fn fill_xdp(f: &Families, reg: &mut Registry, r: &StatusReport) {
    let value = |key: &str| r.counters.get(key).copied().unwrap_or(0);
    for (key, action) in XDP_ACTIONS {
        f.xdp_actions
            .get_or_create(&ActionLabels {
                action: action.to_string(),
            })
            .inc_by(value(key));
    }
    for e in XDP_EVENTS {
        let c = Counter::<u64>::default();
        c.inc_by(value(e.key));
        reg.register(e.name, e.help, c);
    }
    // Counters a newer data plane has and this table does not name yet: exported under their
    // own key rather than dropped (a unit test keeps the table complete).
    let known =
        |k: &str| XDP_ACTIONS.iter().any(|(a, _)| *a == k) || XDP_EVENTS.iter().any(|e| e.key == k);
    let mut unknown = r.counters.iter().filter(|(k, _)| !known(k)).peekable();
    if unknown.peek().is_some() {
        reg.register(
            "xlb_xdp_other_events",
            "XDP counters this version of the exporter has no name for",
            f.xdp_other_events.clone(),
        );
    }
    for (k, v) in unknown {
        f.xdp_other_events
            .get_or_create(&EventLabels { event: k.clone() })
            .inc_by(*v);
    }
    for i in &r.interfaces {
        one_hot(&f.interface_xdp_mode, XDP_MODES, &i.mode, |mode| {
            InterfaceLabels {
                interface: i.name.clone(),
                mode: mode.to_string(),
            }
        });
    }
}

/// One series per value of `all`: 1 for `current`, 0 for the others, every scrape (a state
/// change does not start a new series, and `== 1` selects the current one).
fn one_hot<S>(family: &Family<S, Gauge>, all: &[&str], current: &str, labels: impl Fn(&str) -> S)
where
    S: Clone + std::hash::Hash + Eq,
{
    for value in all {
        family
            .get_or_create(&labels(value))
            .set(i64::from(*value == current));
    }
}

fn service_labels(s: &ServiceStatus) -> ServiceLabels {
    ServiceLabels {
        service: s.name.clone(),
        vip: s.addr.vip.to_string(),
        port: s.addr.port.to_string(),
        protocol: s.addr.protocol.ipvsadm_name().to_lowercase(),
    }
}

fn fill_service(f: &Families, s: &ServiceStatus) {
    let l = service_labels(s);
    f.service_connections
        .get_or_create(&l)
        .inc_by(s.traffic.conns);
    f.service_packets
        .get_or_create(&l)
        .inc_by(s.traffic.packets);
    f.service_bytes.get_or_create(&l).inc_by(s.traffic.bytes);
    f.service_active.get_or_create(&l).set(i64::from(s.active));
    f.service_quorum_up
        .get_or_create(&l)
        .set(i64::from(s.quorum_up));
    for r in &s.reals {
        fill_real(f, &l, r);
    }
}

fn fill_real(f: &Families, s: &ServiceLabels, r: &RealStatus) {
    let l = RealLabels {
        service: s.service.clone(),
        vip: s.vip.clone(),
        port: s.port.clone(),
        protocol: s.protocol.clone(),
        real: r.addr.to_string(),
    };
    f.real_connections.get_or_create(&l).inc_by(r.traffic.conns);
    f.real_packets.get_or_create(&l).inc_by(r.traffic.packets);
    f.real_bytes.get_or_create(&l).inc_by(r.traffic.bytes);
    f.real_active_connections
        .get_or_create(&l)
        .set(r.active_conns as i64);
    f.real_inactive_connections
        .get_or_create(&l)
        .set(r.inactive_conns as i64);
    f.real_synced_active_connections
        .get_or_create(&l)
        .set(r.synced_active_conns as i64);
    f.real_synced_inactive_connections
        .get_or_create(&l)
        .set(r.synced_inactive_conns as i64);
    f.real_weight
        .get_or_create(&l)
        .set(i64::from(r.effective_weight));
    f.real_up.get_or_create(&l).set(i64::from(r.forwarding));
    let method = RealForwardLabels {
        service: l.service.clone(),
        vip: l.vip.clone(),
        port: l.port.clone(),
        protocol: l.protocol.clone(),
        real: l.real.clone(),
        method: r.forward.clone(),
    };
    f.real_forward.get_or_create(&method).set(1);
    fill_check(f, &s.service, &l.real, &r.check);
}

/// Health-check results (every class, 0 included) and durations of one real server.
fn fill_check(f: &Families, service: &str, real: &str, stats: &crate::status::CheckStats) {
    for class in crate::health::RESULT_CLASSES {
        let labels = CheckResultLabels {
            service: service.to_string(),
            real: real.to_string(),
            result: class.to_string(),
        };
        let n = stats.results.get(*class).copied().unwrap_or(0);
        f.check_results.get_or_create(&labels).inc_by(n);
    }
    let check = CheckLabels {
        service: service.to_string(),
        real: real.to_string(),
    };
    f.check_last_duration
        .get_or_create(&check)
        .set(stats.last_duration_secs);
    f.check_seconds
        .get_or_create(&check)
        .inc_by(stats.duration_sum_secs);
}

fn fill_vrrp(f: &Families, v: &VrrpStatus) {
    let l = InstanceLabels {
        vrrp_instance: v.name.clone(),
    };
    one_hot(&f.vrrp_state, VRRP_STATES, &v.state, |state| {
        InstanceStateLabels {
            vrrp_instance: v.name.clone(),
            state: state.to_string(),
        }
    });
    f.vrrp_priority.get_or_create(&l).set(i64::from(v.priority));
    f.vrrp_effective_priority
        .get_or_create(&l)
        .set(i64::from(v.effective_priority));
    f.vrrp_adverts_received
        .get_or_create(&l)
        .inc_by(v.adverts_rx);
    f.vrrp_adverts_sent.get_or_create(&l).inc_by(v.adverts_tx);
    f.vrrp_transitions.get_or_create(&l).inc_by(v.transitions);
    for reason in crate::vrrp::packet::RxError::ALL {
        let key = reason.as_str();
        f.vrrp_bad_adverts
            .get_or_create(&BadAdvertLabels {
                vrrp_instance: v.name.clone(),
                reason: key.to_string(),
            })
            .inc_by(v.bad_adverts.get(key).copied().unwrap_or(0));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::VrrpStatus;

    fn sample() -> StatusReport {
        let mut r = crate::status::tests::sample();
        r.counters = lb_common::stat::NAMES
            .iter()
            .enumerate()
            .map(|(i, n)| (n.to_string(), i as u64 + 1))
            .collect();
        r.vrrp.push(VrrpStatus {
            name: "VI_1".into(),
            state: "BACKUP".into(),
            vrid: 51,
            interface: "eth0".into(),
            priority: 100,
            effective_priority: 100,
            last_master: None,
            adverts_rx: 7,
            adverts_tx: 0,
            bad_adverts: [("auth".to_string(), 3)].into(),
            transitions: 2,
            last_bad_advert: None,
            tracked: vec![],
        });
        r
    }

    #[test]
    fn every_xdp_counter_has_a_name() {
        for n in lb_common::stat::NAMES {
            let named =
                XDP_ACTIONS.iter().any(|(k, _)| *k == n) || XDP_EVENTS.iter().any(|e| e.key == n);
            assert!(
                named,
                "lb_common counter {n} has no metric name in metrics/families.rs"
            );
        }
    }

    #[test]
    fn text_exposition_is_typed_and_complete() {
        let text = render(&sample(), &ProcessStats::default(), Format::Text);
        for line in [
            "# TYPE xlb_xdp_actions_total counter",
            "xlb_xdp_actions_total{action=\"pass\"} 1",
            "xlb_xdp_actions_total{action=\"redirect\"} 4",
            "xlb_conn_table_hits_total 8",
            "xlb_xdp_no_real_server_drops_total 7",
            "xlb_vrrp_state{vrrp_instance=\"VI_1\",state=\"BACKUP\"} 1",
            "xlb_vrrp_state{vrrp_instance=\"VI_1\",state=\"MASTER\"} 0",
            "xlb_vrrp_state{vrrp_instance=\"VI_1\",state=\"FAULT\"} 0",
            "xlb_vrrp_bad_adverts_total{vrrp_instance=\"VI_1\",reason=\"auth\"} 3",
            "xlb_vrrp_bad_adverts_total{vrrp_instance=\"VI_1\",reason=\"ttl\"} 0",
            "xlb_vrrp_transitions_total{vrrp_instance=\"VI_1\"} 2",
            "xlb_real_active_connections{service=\"web\",vip=\"192.168.2.212\",port=\"80\",protocol=\"tcp\",real=\"192.168.2.220:80\"} 2",
            "xlb_real_up{service=\"web\",vip=\"192.168.2.212\",port=\"80\",protocol=\"tcp\",real=\"192.168.2.221:80\"} 0",
            "xlb_service_connections_total{service=\"web\",vip=\"192.168.2.212\",port=\"80\",protocol=\"tcp\"} 3",
            "xlb_health_check_results_total{service=\"web\",real=\"192.168.2.221:80\",result=\"refused\"} 0",
            "xlb_config_last_reload_successful 0",
            "# TYPE process_open_fds gauge",
        ] {
            assert!(text.contains(line), "missing {line:?} in\n{text}");
        }
        assert!(
            text.contains("xlb_build_info{version=\"0.1.0\"} 1"),
            "{text}"
        );
        assert!(
            !text.contains("xlb_xdp_other_events"),
            "every counter is named:\n{text}"
        );
    }

    #[test]
    fn openmetrics_on_request() {
        assert_eq!(
            Format::negotiate(Some(
                "application/openmetrics-text;version=1.0.0,text/plain;q=0.5"
            )),
            Format::OpenMetrics
        );
        assert_eq!(Format::negotiate(Some("*/*")), Format::Text);
        let om = render(&sample(), &ProcessStats::default(), Format::OpenMetrics);
        assert!(om.contains("# TYPE xlb_xdp_actions counter"), "{om}");
        assert!(om.ends_with("# EOF\n"), "{om}");
    }

    #[test]
    fn unknown_counters_keep_their_value() {
        let mut r = sample();
        r.counters.insert("new_thing".into(), 42);
        let text = render(&r, &ProcessStats::default(), Format::Text);
        assert!(
            text.contains("xlb_xdp_other_events_total{event=\"new_thing\"} 42"),
            "{text}"
        );
    }
}
