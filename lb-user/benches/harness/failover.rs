//! Failover timings with the real daemon in a namespaced lab.
//!
//! Measured: time for a dead real server to leave the rotation (its host stops answering: link
//! down), from the moment it dies to the moment `xlb status` shows it not forwarding, then checked
//! on the data path (new connections all reach the other server); and VRRP failover: the MASTER
//! director dies (daemon SIGKILLed and its link cut) and the clock runs until the VIP answers
//! through the BACKUP — HTTP through an xlb backup, ICMP echo through a keepalived backup (the
//! kernel here has no IPVS, so a keepalived director can only answer for the VIP itself).
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _, Result};
use serde_json::{json, Value};
use xtask::lab::dr::{build as dr_lab, curl_spread, VIP as DEMO_VIP};

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
    // A standalone director holds the VIP (announce = "always").
    d.lab
        .add_addr(&d.director, "eth0", &format!("{DEMO_VIP}/32"))?;
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
    }))
}

/// The VRRP peer of the xlb MASTER.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Peer {
    Xlb,
    Keepalived,
}

pub const ADVERT_INT_S: f64 = 1.0;
pub const BACKUP_PRIORITY: u32 = 100;

/// 3 x advert_int + skew (v2: (256 - priority) / 256 s) + 0.5 s.
pub fn vrrp_bound_s() -> f64 {
    3.0 * ADVERT_INT_S + (256.0 - BACKUP_PRIORITY as f64) / 256.0 + 0.5
}

fn xlb_config(sock: &str, state: &str, prio: u32) -> String {
    let mut t = format!(
        "[global]\ninterfaces = [\"eth0\"]\nxdp_mode = \"native\"\nconn_table_size = 65536\n\
         control_socket = \"{sock}\"\nsweep_interval = 0.5\n\n\
         [[vrrp_instance]]\nname = \"VI_1\"\nstate = \"{state}\"\ninterface = \"eth0\"\nvirtual_router_id = 51\n\
         priority = {prio}\nadvert_int = {ADVERT_INT_S}\nauthentication = {{ auth_type = \"PASS\", auth_pass = \"labpass1\" }}\n\
         virtual_ipaddress = [\"{DEMO_VIP}/24\"]\n\n\
         [[virtual_server]]\nname = \"web\"\nvip = \"{DEMO_VIP}\"\nport = 80\n"
    );
    for i in 1..=2 {
        t += &format!(
            "[[virtual_server.real_server]]\naddress = \"198.18.0.{}\"\n",
            10 + i
        );
    }
    t
}

const KEEPALIVED_BACKUP: &str = "global_defs {\n  router_id lab-backup\n}\n\
vrrp_instance VI_1 {\n  state BACKUP\n  interface eth0\n  virtual_router_id 51\n  priority 100\n  advert_int 1\n\
  authentication {\n    auth_type PASS\n    auth_pass labpass1\n  }\n  virtual_ipaddress {\n    198.18.0.100/24\n  }\n}\n";

/// VRRP failover `runs` times: xlb MASTER (priority 150) and `peer` BACKUP (priority 100).
pub fn vrrp(runs: usize, peer: Peer, progress: &Progress) -> Result<Value> {
    let mut d = dr_lab(
        if peer == Peer::Xlb {
            "benchvx"
        } else {
            "benchvk"
        },
        2,
    )?;
    let xlb = env!("CARGO_BIN_EXE_xlb");
    let dir1 = d.director.clone();
    let dir2 = d.lab.host("dir2")?;
    let lan = d.lan.clone();
    d.lab.attach(
        &dir2,
        &lan,
        xtask::lab::PortOpts {
            addrs: &["198.18.0.3/24"],
            xdp_peer_pass: true,
            tx_checksum_off: true,
            ..Default::default()
        },
    )?;
    let dir = d.lab.dir().to_path_buf();
    let sock1 = format!("/run/xlb/{}-1.sock", d.lab.id());
    let cfg1 = dir.join("xlb1.toml");
    std::fs::write(&cfg1, xlb_config(&sock1, "MASTER", 150))?;
    let cfg1 = cfg1.display().to_string();
    match peer {
        Peer::Xlb => {
            let sock2 = format!("/run/xlb/{}-2.sock", d.lab.id());
            let cfg2 = dir.join("xlb2.toml");
            std::fs::write(&cfg2, xlb_config(&sock2, "BACKUP", BACKUP_PRIORITY))?;
            d.lab.spawn(
                &dir2,
                &[xlb, "run", "--config", &cfg2.display().to_string()],
            )?;
        }
        Peer::Keepalived => {
            let conf = dir.join("keepalived.conf");
            std::fs::write(&conf, KEEPALIVED_BACKUP)?;
            let (pid, vpid) = (dir.join("ka.pid"), dir.join("ka-vrrp.pid"));
            d.lab.spawn(
                &dir2,
                &[
                    "keepalived",
                    "-n",
                    "-l",
                    "-D",
                    "-G",
                    "-P",
                    "-f",
                    &conf.display().to_string(),
                    "-p",
                    &pid.display().to_string(),
                    "-r",
                    &vpid.display().to_string(),
                ],
            )?;
        }
    }
    let has_vip = |lab: &xtask::lab::Lab, h: &xtask::lab::Host| {
        lab.run_ok(h, &["ip", "-4", "addr", "show", "dev", "eth0"])
            .is_ok_and(|s| s.contains(&format!("{DEMO_VIP}/24")))
    };
    let client = d.client.clone();
    let answers = |lab: &xtask::lab::Lab| match peer {
        Peer::Xlb => lab
            .run(
                &client,
                &[
                    "curl",
                    "-sf",
                    "-m",
                    "0.3",
                    "-o",
                    "/dev/null",
                    &format!("http://{DEMO_VIP}/"),
                ],
            )
            .is_ok_and(|o| o.status.success()),
        Peer::Keepalived => lab
            .run(&client, &["ping", "-c", "1", "-W", "0.3", DEMO_VIP])
            .is_ok_and(|o| o.status.success()),
    };
    let wait = |what: &str, limit: Duration, f: &dyn Fn() -> bool| -> Result<Duration> {
        let t0 = Instant::now();
        while !f() {
            if t0.elapsed() > limit {
                bail!("{what} not reached within {limit:?}");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(t0.elapsed())
    };
    let mut times = Vec::new();
    for _ in 0..runs {
        let master = d.lab.spawn(&dir1, &[xlb, "run", "--config", &cfg1])?;
        wait(
            "xlb MASTER holds the VIP alone",
            Duration::from_secs(20),
            &|| has_vip(&d.lab, &dir1) && !has_vip(&d.lab, &dir2),
        )?;
        std::thread::sleep(Duration::from_millis(1500));
        // The master dies: daemon SIGKILLed, link cut (no priority-0 resignation).
        d.lab.signal(&master, libc::SIGKILL)?;
        d.lab
            .run_ok(&dir1, &["ip", "link", "set", "eth0", "down"])?;
        // The client forgets the dead master's MAC only through the backup's gratuitous ARP.
        let dt = wait(
            "VIP answering through the backup",
            Duration::from_secs(15),
            &|| answers(&d.lab),
        )
        .context("VRRP failover")?;
        times.push(dt.as_secs_f64() * 1e3);
        d.lab.run_ok(&dir1, &["ip", "link", "set", "eth0", "up"])?;
        progress.inc("failover");
    }
    Ok(json!({
        "peer": if peer == Peer::Xlb { "xlb" } else { "keepalived" },
        "answer": if peer == Peer::Xlb { "HTTP through the backup's xlb" } else { "ICMP echo from the keepalived backup (no IPVS here)" },
        "advert_int_s": ADVERT_INT_S,
        "backup_priority": BACKUP_PRIORITY,
        "bound_ms": vrrp_bound_s() * 1e3,
        "failover": stats_ms(&times),
        "median_ms": median(&times),
        "min_ms": min(&times),
    }))
}
