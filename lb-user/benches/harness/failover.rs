//! Failover timings with the real daemon in a namespaced lab.
//!
//! Measured: time for a dead real server to leave the rotation (its host stops answering: link
//! down), from the moment it dies to the moment `xlb status` shows it not forwarding, then checked
//! on the data path (new connections all reach the other server). VRRP failover is not measured
//! by the harness yet (see bench/README.md).
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use serde_json::{json, Value};
use xtask::cmd::{curl_spread, dr_lab, DEMO_VIP};

use super::{
    control::stats_ms,
    timing::{median, min},
    Progress,
};

pub const CHECK_INTERVAL_S: f64 = 1.0;
pub const CHECK_TIMEOUT_S: f64 = 1.0;

fn real_forwarding(status: &Value, addr_prefix: &str) -> Option<bool> {
    fn walk(v: &Value, p: &str, out: &mut Option<bool>) {
        match v {
            Value::Object(m) => {
                if let (Some(Value::String(a)), Some(Value::Bool(f))) =
                    (m.get("addr"), m.get("forwarding"))
                {
                    if a.starts_with(p) {
                        let up = *f && m.get("health").and_then(|h| h.as_str()) == Some("up");
                        *out = Some(out.unwrap_or(true) && up);
                    }
                }
                m.values().for_each(|x| walk(x, p, out));
            }
            Value::Array(a) => a.iter().for_each(|x| walk(x, p, out)),
            _ => {}
        }
    }
    let mut out = None;
    walk(status, addr_prefix, &mut out);
    out
}

pub fn run(runs: usize, progress: &Progress) -> Result<Value> {
    let mut d = dr_lab("benchfo", 2)?;
    let xlb = env!("CARGO_BIN_EXE_xlb");
    let sock = format!("/run/xlb/{}.sock", d.lab.id());
    let config = d.lab.dir().join("xlb.toml");
    let mut t = format!(
        "[global]\ninterfaces = [\"eth0\"]\nxdp_mode = \"native\"\nconn_table_size = 65536\n\
         control_socket = \"{sock}\"\nsweep_interval = 0.5\n\n\
         [[virtual_server]]\nname = \"web\"\nvip = \"{DEMO_VIP}\"\nport = 80\nannounce = \"always\"\n\
         [virtual_server.check]\ntype = \"tcp\"\ninterval = {CHECK_INTERVAL_S}\ntimeout = {CHECK_TIMEOUT_S}\n\
         retry = 0\nfall = 1\nrise = 1\n"
    );
    for i in 1..=2 {
        t += &format!(
            "[[virtual_server.real_server]]\naddress = \"198.18.0.{}\"\nweight = 1\n",
            10 + i
        );
    }
    std::fs::write(&config, t)?;
    let cfg = config.display().to_string();
    let director = d.director.clone();
    let daemon = d.lab.spawn(&director, &[xlb, "run", "--config", &cfg])?;
    let status = |lab: &xtask::lab::Lab| -> Result<Value> {
        let o = lab.run(&director, &[xlb, "status", "--socket", &sock, "--json"])?;
        if !o.status.success() {
            bail!("xlb status: {}", String::from_utf8_lossy(&o.stderr));
        }
        Ok(serde_json::from_slice(&o.stdout)?)
    };
    let wait = |lab: &xtask::lab::Lab, want: bool, limit: Duration| -> Result<Duration> {
        let t0 = Instant::now();
        loop {
            if let Ok(s) = status(lab) {
                if real_forwarding(&s, "198.18.0.11:") == Some(want) {
                    return Ok(t0.elapsed());
                }
            }
            if t0.elapsed() > limit {
                bail!("rs1 forwarding={want} not reached within {limit:?}");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    };
    if let Err(e) = wait(&d.lab, true, Duration::from_secs(20)) {
        bail!("{e:#}\ndaemon log:\n{}", d.lab.log(&daemon));
    }
    let rs1 = d.real_servers[0].clone();
    let client = d.client.clone();
    let mut out_s = Vec::new();
    let mut back_s = Vec::new();
    let mut leaked = 0usize;
    for _ in 0..runs {
        // Let the check phase drift between runs.
        std::thread::sleep(Duration::from_millis(337));
        d.lab.run_ok(&rs1, &["ip", "link", "set", "eth0", "down"])?;
        let dt = wait(&d.lab, false, Duration::from_secs(15)).context("dead real server")?;
        out_s.push(dt.as_secs_f64());
        let spread = curl_spread(&d.lab, &client, &format!("http://{DEMO_VIP}/"), 6)?;
        leaked += spread
            .iter()
            .filter(|(k, _)| k.as_str() != "rs2")
            .map(|(_, v)| v)
            .sum::<usize>();
        d.lab.run_ok(&rs1, &["ip", "link", "set", "eth0", "up"])?;
        let up = wait(&d.lab, true, Duration::from_secs(15)).context("real server back")?;
        back_s.push(up.as_secs_f64());
        progress.inc("failover");
    }
    d.lab.kill(&daemon)?;
    let ms = |v: &[f64]| v.iter().map(|s| s * 1e3).collect::<Vec<_>>();
    Ok(json!({
        "dead_real_out_of_rotation": stats_ms(&ms(&out_s)),
        "real_back_in_rotation": stats_ms(&ms(&back_s)),
        "check": {"type": "tcp", "interval_s": CHECK_INTERVAL_S, "timeout_s": CHECK_TIMEOUT_S, "retry": 0, "fall": 1, "rise": 1},
        "expected_bound_ms": (CHECK_INTERVAL_S + CHECK_TIMEOUT_S) * 1e3,
        "requests_to_dead_server_after_removal": leaked,
        "median_ms": median(&ms(&out_s)),
        "min_ms": min(&ms(&out_s)),
        "vrrp": "not measured by the harness yet: VRRP landed in the daemon while the harness was written; lb-user/tests/vrrp.rs times xlb/keepalived failover",
    }))
}
