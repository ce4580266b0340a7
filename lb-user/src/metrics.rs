//! Prometheus metrics (text exposition format 0.0.4), rendered from the same report as
//! `xlb status`. The format is a few lines of text, so it is written here rather than through a
//! metrics registry crate; the HTTP side is the minimum a scraper needs (GET /metrics).
use std::{fmt::Write as _, net::SocketAddr, sync::Arc, time::Duration};

use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::TcpListener,
    sync::watch,
};
use tracing::{info, warn};

use crate::status::StatusReport;

fn esc(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

struct Family<'a> {
    out: &'a mut String,
}

impl Family<'_> {
    fn head(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }
    fn line(&mut self, name: &str, labels: &[(&str, String)], value: f64) {
        let l: Vec<String> = labels
            .iter()
            .map(|(k, v)| format!("{k}=\"{}\"", esc(v)))
            .collect();
        let _ = writeln!(self.out, "{name}{{{}}} {value}", l.join(","));
    }
}

pub fn render(report: &StatusReport) -> String {
    let mut out = String::new();
    let mut f = Family { out: &mut out };
    f.head(
        "xlb_conn_table_entries",
        "gauge",
        "Flows in the connection table.",
    );
    f.line(
        "xlb_conn_table_entries",
        &[],
        report.conn_table_entries as f64,
    );
    f.head(
        "xlb_conn_table_size",
        "gauge",
        "Capacity of the connection table (conn_table_size).",
    );
    f.line("xlb_conn_table_size", &[], report.conn_table_size as f64);
    f.head(
        "xlb_packets_total",
        "counter",
        "XDP program counters by reason and action.",
    );
    for (name, v) in &report.counters {
        f.line("xlb_packets_total", &[("counter", name.clone())], *v as f64);
    }
    let svc_labels = |s: &crate::status::ServiceStatus| {
        vec![
            ("service", s.name.clone()),
            ("vip", s.addr.vip.to_string()),
            ("port", s.addr.port.to_string()),
            ("protocol", s.addr.protocol.ipvsadm_name().to_lowercase()),
        ]
    };
    for (metric, kind, help) in [
        (
            "xlb_service_connections_total",
            "counter",
            "New connections to a virtual server.",
        ),
        (
            "xlb_service_packets_total",
            "counter",
            "Packets forwarded for a virtual server.",
        ),
        (
            "xlb_service_bytes_total",
            "counter",
            "Bytes forwarded for a virtual server.",
        ),
        (
            "xlb_service_active",
            "gauge",
            "1 when this director forwards the virtual server now.",
        ),
        (
            "xlb_service_quorum_up",
            "gauge",
            "1 when the virtual server is at quorum.",
        ),
    ] {
        f.head(metric, kind, help);
        for s in &report.services {
            let v = match metric {
                "xlb_service_connections_total" => s.traffic.conns as f64,
                "xlb_service_packets_total" => s.traffic.packets as f64,
                "xlb_service_bytes_total" => s.traffic.bytes as f64,
                "xlb_service_active" => s.active as u8 as f64,
                _ => s.quorum_up as u8 as f64,
            };
            f.line(metric, &svc_labels(s), v);
        }
    }
    for (metric, kind, help) in [
        (
            "xlb_real_connections_total",
            "counter",
            "New connections sent to a real server.",
        ),
        (
            "xlb_real_packets_total",
            "counter",
            "Packets sent to a real server.",
        ),
        (
            "xlb_real_bytes_total",
            "counter",
            "Bytes sent to a real server.",
        ),
        (
            "xlb_real_active_connections",
            "gauge",
            "ActiveConn: established flows (as ipvsadm).",
        ),
        (
            "xlb_real_inactive_connections",
            "gauge",
            "InActConn: flows in other states (as ipvsadm).",
        ),
        (
            "xlb_real_weight",
            "gauge",
            "Weight in force (0 = quiescent).",
        ),
        (
            "xlb_real_up",
            "gauge",
            "1 when the real server receives traffic (health up, MAC known).",
        ),
    ] {
        f.head(metric, kind, help);
        for s in &report.services {
            for r in &s.reals {
                let mut labels = svc_labels(s);
                labels.push(("real", r.addr.to_string()));
                let v = match metric {
                    "xlb_real_connections_total" => r.traffic.conns as f64,
                    "xlb_real_packets_total" => r.traffic.packets as f64,
                    "xlb_real_bytes_total" => r.traffic.bytes as f64,
                    "xlb_real_active_connections" => r.active_conns as f64,
                    "xlb_real_inactive_connections" => r.inactive_conns as f64,
                    "xlb_real_weight" => r.effective_weight as f64,
                    _ => r.forwarding as u8 as f64,
                };
                f.line(metric, &labels, v);
            }
        }
    }
    f.head(
        "xlb_vrrp_master",
        "gauge",
        "1 when the VRRP instance is MASTER here.",
    );
    for v in &report.vrrp {
        f.line(
            "xlb_vrrp_master",
            &[("instance", v.name.clone()), ("state", v.state.clone())],
            (v.state == "MASTER") as u8 as f64,
        );
    }
    f.head(
        "xlb_vrrp_bad_adverts_total",
        "counter",
        "VRRP advertisements dropped, by reason.",
    );
    for v in &report.vrrp {
        for (reason, n) in &v.bad_adverts {
            f.line(
                "xlb_vrrp_bad_adverts_total",
                &[("instance", v.name.clone()), ("reason", reason.clone())],
                *n as f64,
            );
        }
    }
    out
}

/// Serves GET /metrics on `addr` from the daemon's latest status snapshot: a scrape never waits
/// behind the daemon's task (a slow reload, a long `xlb conns`).
pub async fn serve(addr: SocketAddr, snapshots: watch::Receiver<Arc<StatusReport>>) {
    let listener = match TcpListener::bind(addr).await {
        Ok(l) => l,
        Err(e) => {
            warn!(%addr, "metrics endpoint not started: {e}");
            return;
        }
    };
    info!(%addr, "metrics on http://{addr}/metrics");
    loop {
        let Ok((mut stream, _)) = listener.accept().await else {
            continue;
        };
        let snapshots = snapshots.clone();
        tokio::spawn(async move {
            let mut buf = [0u8; 2048];
            let n = match tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf)).await
            {
                Ok(Ok(n)) => n,
                _ => return,
            };
            let req = String::from_utf8_lossy(&buf[..n]);
            let (status, body) = if req.starts_with("GET /metrics") {
                let report = snapshots.borrow().clone();
                ("200 OK", render(&report))
            } else {
                ("404 Not Found", "try /metrics\n".to_string())
            };
            let head = format!(
                "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(head.as_bytes()).await;
            let _ = stream.write_all(body.as_bytes()).await;
        });
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn renders_prometheus_text() {
        let report = crate::status::tests::sample();
        let text = super::render(&report);
        assert!(text.contains("# TYPE xlb_real_active_connections gauge"));
        assert!(text.contains(
            "xlb_real_active_connections{service=\"web\",vip=\"192.168.2.212\",port=\"80\",protocol=\"tcp\",real=\"192.168.2.220:80\"} 2"
        ));
        assert!(text.contains("xlb_real_up{service=\"web\",vip=\"192.168.2.212\",port=\"80\",protocol=\"tcp\",real=\"192.168.2.221:80\"} 0"));
        assert!(text.contains("xlb_service_connections_total{service=\"web\",vip=\"192.168.2.212\",port=\"80\",protocol=\"tcp\"} 3"));
    }
}
