//! Control-plane timings: Maglev builds, a reload of many services through the map writer, the
//! ActiveConn sweep, connection-table memory.
use std::{
    net::IpAddr,
    time::{Duration, Instant},
};

use anyhow::Result;
use serde_json::{json, Value};
use xlb::dataplane::{
    desired::{DesiredReal, DesiredService, DesiredState, Protocol, Scheduler, ServiceAddr},
    maglev::{self, Backend},
    sweep::{self, Timeouts},
};

use super::{
    dp::{Dp, LoadSpec},
    sys,
    timing::{median, min},
    Progress,
};

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

pub fn stats_ms(v: &[f64]) -> Value {
    json!({"median_ms": median(v), "min_ms": min(v), "runs_ms": v})
}

/// Maglev builds: (reals, table size) -> run times in ms.
pub fn maglev_builds(
    reals: &[u32],
    sizes: &[u32],
    runs: usize,
    progress: &Progress,
) -> Vec<(u32, u32, Vec<f64>)> {
    let mut out = Vec::new();
    for &size in sizes {
        for &n in reals {
            let backends: Vec<Backend> = (0..n)
                .map(|i| {
                    let mut identity = vec![198, 19, (i >> 8) as u8, i as u8];
                    identity.extend_from_slice(&80u16.to_be_bytes());
                    Backend {
                        identity,
                        weight: 1,
                        slot: i,
                    }
                })
                .collect();
            let mut v = Vec::new();
            for _ in 0..runs {
                let t = Instant::now();
                let table = maglev::build(&backends, size);
                v.push(ms(t.elapsed()));
                assert_eq!(table.len(), size as usize);
            }
            progress.inc(&format!("maglev {n}x{size}"));
            out.push((n, size, v));
        }
    }
    out
}

fn reload_state(services: u32, reals: u32, table_size: u32, weight_of_first: u32) -> DesiredState {
    let services = (0..services)
        .map(|s| {
            let vip = IpAddr::from([198, 18, 100 + (s >> 8) as u8, s as u8]);
            let reals = (0..reals)
                .map(|r| {
                    let k = s * reals + r;
                    DesiredReal {
                        addr: IpAddr::from([198, 19, (k >> 8) as u8, k as u8]),
                        port: 80,
                        weight: if r == 0 { weight_of_first } else { 1 },
                        alive: true,
                        mac: [0x02, 0, 0, 1, (k >> 8) as u8, k as u8],
                        src_mac: [0x02, 0, 0, 0, 0, 2],
                        ifindex: 1,
                        tx_port: 0,
                        tunnel: None,
                    }
                })
                .collect();
            DesiredService {
                addr: ServiceAddr {
                    vip,
                    port: 80,
                    protocol: Protocol::Tcp,
                },
                active: true,
                scheduler: Scheduler::Maglev,
                hash_client_only: false,
                persistence: None,
                table_size,
                reals,
                sorry: None,
            }
        })
        .collect();
    DesiredState {
        services,
        flood_threshold: 0,
        tx_ports: Default::default(),
        interface_macs: Default::default(),
    }
}

pub struct Reload {
    pub services: u32,
    pub reals: u32,
    pub table_size: u32,
    /// First apply into empty maps.
    pub initial: Vec<f64>,
    /// The same state again (nothing to write).
    pub unchanged: Vec<f64>,
    /// One real server's weight changed in every service (every ring rebuilt and written).
    pub all_changed: Vec<f64>,
    /// The same on one CPU, in the same runs (what building the rings in parallel gains).
    pub all_changed_one_cpu: Vec<f64>,
    /// CPUs of `all_changed`.
    pub cpus: usize,
}

impl Reload {
    pub fn json(&self) -> Value {
        json!({
            "services": self.services, "reals_per_service": self.reals, "table_size": self.table_size,
            "initial_apply": stats_ms(&self.initial),
            "reload_unchanged": stats_ms(&self.unchanged),
            "reload_every_service_changed": stats_ms(&self.all_changed),
            "reload_every_service_changed_one_cpu": stats_ms(&self.all_changed_one_cpu),
            "cpus": self.cpus,
        })
    }
}

/// `runs` loads of a fresh object each: initial apply, an unchanged reload, a reload changing
/// every service (two alternating weights, so each is a real change) on one CPU, and one on
/// every CPU. Runs on every CPU except for the one-CPU reload (pinned to `one_cpu`).
pub fn reload(
    services: u32,
    reals: u32,
    table_size: u32,
    runs: usize,
    one_cpu: usize,
    progress: &Progress,
) -> Result<Reload> {
    let ncpus = aya::util::nr_cpus().map_err(|(m, e)| anyhow::anyhow!("{m}: {e}"))?;
    let all_cpus: Vec<usize> = (0..ncpus).collect();
    let a = reload_state(services, reals, table_size, 1);
    let b = reload_state(services, reals, table_size, 2);
    let mut out = Reload {
        services,
        reals,
        table_size,
        initial: Vec::new(),
        unchanged: Vec::new(),
        all_changed: Vec::new(),
        all_changed_one_cpu: Vec::new(),
        cpus: ncpus,
    };
    // Room for every ring plus the previous ring each service keeps after a change.
    let maglev_capacity = 2 * services * table_size + table_size;
    let mut dp = Dp::load(&LoadSpec {
        conn_table_size: 1024,
        maglev_capacity,
        conn_table_pin: None,
        lines: 1,
    })?;
    for run in 0..runs {
        if run > 0 {
            // Back to empty maps for the next initial apply.
            let empty = DesiredState::default();
            dp.writer.apply(&empty, Instant::now())?;
            dp.writer
                .expire_previous_rings(Instant::now() + Duration::from_secs(3600))?;
        }
        let t = Instant::now();
        dp.writer.apply(&a, Instant::now())?;
        out.initial.push(ms(t.elapsed()));
        let t = Instant::now();
        dp.writer.apply(&a, Instant::now())?;
        out.unchanged.push(ms(t.elapsed()));
        // Previous rings of the last change expire first, so the ring map never fills.
        dp.writer
            .expire_previous_rings(Instant::now() + Duration::from_secs(3600))?;
        sys::pin_to_cpu(one_cpu)?;
        let t = Instant::now();
        let applied = dp.writer.apply(&b, Instant::now());
        out.all_changed_one_cpu.push(ms(t.elapsed()));
        sys::pin_to_cpus(&all_cpus)?;
        applied?;
        dp.writer
            .expire_previous_rings(Instant::now() + Duration::from_secs(3600))?;
        let t = Instant::now();
        dp.writer.apply(&a, Instant::now())?;
        out.all_changed.push(ms(t.elapsed()));
        progress.inc("reload");
    }
    Ok(out)
}

/// The ActiveConn sweep over the table as it is; `runs` runs or until `budget` is spent.
pub fn sweep_runs(
    dp: &mut Dp,
    runs: usize,
    budget: Duration,
    progress: &Progress,
) -> Result<(u64, Vec<f64>)> {
    let timeouts = Timeouts::default();
    let mut v = Vec::new();
    let mut entries = 0;
    let t0 = Instant::now();
    for _ in 0..runs {
        let t = Instant::now();
        let r = sweep::sweep(dp.writer.maps_mut(), &timeouts)?;
        v.push(ms(t.elapsed()));
        entries = r.entries;
        progress.inc("sweep");
        if t0.elapsed() > budget {
            break;
        }
    }
    Ok((entries, v))
}
