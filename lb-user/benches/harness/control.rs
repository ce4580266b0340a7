//! Control-plane timings: Maglev builds, a reload of many services through the map writer, the
//! ActiveConn sweep, connection-table memory.
use std::{
    net::IpAddr,
    path::Path,
    time::{Duration, Instant},
};

use anyhow::{anyhow, Result};
use serde_json::{json, Value};
use xlb::{
    config,
    controller::{Controller, Observed},
    dataplane::{
        desired::DesiredState,
        maglev::{self, Backend},
        sweep::{self, Timeouts},
        writer::MapWriter,
    },
    net::Interface,
    overlay::Overlay,
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

/// CPU time of the calling thread: what a build costs even when the shared machine's other
/// work preempts it (wall time then also counts the time the thread waited).
fn thread_cpu() -> Duration {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the timespec it is given.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) };
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

/// CPU time of the whole process (every thread, user and system): the work of a reload,
/// however the shared machine's other load stretched its wall time.
fn process_cpu() -> Duration {
    // SAFETY: an all-zero rusage is a valid value for getrusage to overwrite.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage writes the rusage it is given.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(u.ru_utime) + tv(u.ru_stime)
}

/// One (reals, table size) case: wall and thread-CPU times of each run, in ms.
pub struct MaglevCase {
    pub reals: u32,
    pub size: u32,
    pub wall: Vec<f64>,
    pub cpu: Vec<f64>,
}

/// Maglev builds: (reals, table size) -> run times in ms.
pub fn maglev_builds(
    reals: &[u32],
    sizes: &[u32],
    runs: usize,
    progress: &Progress,
) -> Vec<MaglevCase> {
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
            let (mut wall, mut cpu) = (Vec::new(), Vec::new());
            for _ in 0..runs {
                let (t, c) = (Instant::now(), thread_cpu());
                let table = maglev::build(&backends, size);
                cpu.push(ms(thread_cpu() - c));
                wall.push(ms(t.elapsed()));
                assert_eq!(table.len(), size as usize);
            }
            progress.inc(&format!("maglev {n}x{size}"));
            out.push(MaglevCase {
                reals: n,
                size,
                wall,
                cpu,
            });
        }
    }
    out
}

/// The configuration file of the reload bench: `services` Maglev services of `reals` real
/// servers each (MACs given, as neighbour resolution is not what is measured), no checks, no
/// VRRP; the first real server of every service has weight `weight_of_first`, so two values
/// give two files where every service differs.
fn reload_config(services: u32, reals: u32, table_size: u32, weight_of_first: u32) -> String {
    let mut out = String::with_capacity(services as usize * (120 + reals as usize * 110));
    out.push_str("[global]\nrouter_id = \"xlb-bench\"\ninterfaces = [\"eth0\"]\n");
    for s in 0..services {
        let vip = IpAddr::from([198, 18, 100 + (s >> 8) as u8, s as u8]);
        out.push_str(&format!(
            "\n[[virtual_server]]\nname = \"svc{s}\"\nvip = \"{vip}\"\nport = 80\n\
             protocol = \"tcp\"\nscheduler = \"maglev\"\nmaglev_table_size = {table_size}\n\
             announce = \"always\"\n"
        ));
        for r in 0..reals {
            let k = s * reals + r;
            let addr = IpAddr::from([198, 19, (k >> 8) as u8, k as u8]);
            let weight = if r == 0 { weight_of_first } else { 1 };
            out.push_str(&format!(
                "  [[virtual_server.real_server]]\n  address = \"{addr}\"\n  weight = {weight}\n  \
                 mac = \"02:00:00:01:{:02x}:{:02x}\"\n",
                k >> 8,
                k & 0xff
            ));
        }
    }
    out
}

/// Time of one reload along the daemon's path, by step.
#[derive(Default)]
pub struct ReloadSteps {
    /// Read the file, parse, validate (`config::load_checked`).
    pub load: Vec<f64>,
    /// The desired state (`Controller::plan_tables`).
    pub plan: Vec<f64>,
    /// The map writer: ring builds, map and ring writes (`MapWriter::apply`).
    pub apply: Vec<f64>,
    pub total: Vec<f64>,
    /// CPU time of the whole reload, every thread.
    pub cpu: Vec<f64>,
}

impl ReloadSteps {
    fn json(&self) -> Value {
        // The total at the top (median_ms, min_ms, runs_ms), then each step.
        let mut v = stats_ms(&self.total);
        v["load_parse_validate"] = stats_ms(&self.load);
        v["plan_desired_state"] = stats_ms(&self.plan);
        v["apply_map_writer"] = stats_ms(&self.apply);
        v["process_cpu"] = stats_ms(&self.cpu);
        v
    }
}

/// What the daemon has between reloads: its controller and the interfaces it observed.
struct Daemonish {
    controller: Controller,
    interfaces: Vec<Interface>,
}

impl Daemonish {
    fn new() -> Daemonish {
        Daemonish {
            controller: Controller::default(),
            interfaces: vec![Interface {
                name: "eth0".into(),
                index: 1,
                mac: [0x02, 0, 0, 0, 0, 2],
                addrs: vec![(IpAddr::from([198, 18, 0, 2]), 15)],
            }],
        }
    }

    /// One reload as `daemon::reload` does it: load the file, plan, apply.
    fn reload(
        &mut self,
        path: &Path,
        writer: &mut MapWriter,
        steps: &mut ReloadSteps,
    ) -> Result<()> {
        let (t0, cpu0) = (Instant::now(), process_cpu());
        let (cfg, _warnings) = config::load_checked(path).map_err(|e| anyhow!("{e}"))?;
        let t1 = Instant::now();
        let (neighbours, routes, health, master_vips) = Default::default();
        let overlay = Overlay::default();
        let seen = Observed {
            interfaces: &self.interfaces,
            neighbours: &neighbours,
            routes: &routes,
            health: &health,
            master_vips: &master_vips,
            overlay: &overlay,
        };
        let plan = self.controller.plan_tables(&cfg, &seen);
        let t2 = Instant::now();
        writer.apply(self.controller.desired(), Instant::now())?;
        for (addr, served) in &plan.ring_served {
            writer.set_ring_served(addr, *served);
        }
        let t3 = Instant::now();
        steps.load.push(ms(t1 - t0));
        steps.plan.push(ms(t2 - t1));
        steps.apply.push(ms(t3 - t2));
        steps.total.push(ms(t3 - t0));
        steps.cpu.push(ms(process_cpu() - cpu0));
        Ok(())
    }
}

pub struct Reload {
    pub services: u32,
    pub reals: u32,
    pub table_size: u32,
    /// First reload into empty maps (as at start).
    pub initial: ReloadSteps,
    /// The same file again (nothing to write).
    pub unchanged: ReloadSteps,
    /// One real server's weight changed in every service (every ring rebuilt and written).
    pub all_changed: ReloadSteps,
    /// The same on one CPU, in the same runs (what building the rings in parallel gains).
    pub all_changed_one_cpu: ReloadSteps,
    /// CPUs of `all_changed`.
    pub cpus: usize,
}

impl Reload {
    pub fn json(&self) -> Value {
        json!({
            "services": self.services, "reals_per_service": self.reals, "table_size": self.table_size,
            "path": "config::load_checked + Controller::plan_tables + MapWriter::apply (the daemon's reload)",
            "initial_apply": self.initial.json(),
            "reload_unchanged": self.unchanged.json(),
            "reload_every_service_changed": self.all_changed.json(),
            "reload_every_service_changed_one_cpu": self.all_changed_one_cpu.json(),
            "cpus": self.cpus,
        })
    }
}

/// `runs` runs on a fresh set of maps each (emptied between runs): the initial reload, an
/// unchanged reload, a reload changing every service (two files with alternating weights, so
/// each is a real change) pinned to `one_cpu`, and one on every CPU. Every reload goes the
/// daemon's way: read and validate the file, plan the desired state, apply it.
pub fn reload(
    services: u32,
    reals: u32,
    table_size: u32,
    runs: usize,
    one_cpu: usize,
    progress: &Progress,
) -> Result<Reload> {
    let ncpus = aya::util::nr_cpus().map_err(|(m, e)| anyhow!("{m}: {e}"))?;
    let all_cpus: Vec<usize> = (0..ncpus).collect();
    let dir = std::env::temp_dir().join(format!("xlb-bench-reload-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let (a, b) = (dir.join("a.toml"), dir.join("b.toml"));
    std::fs::write(&a, reload_config(services, reals, table_size, 1))?;
    std::fs::write(&b, reload_config(services, reals, table_size, 2))?;
    let result = reload_runs(
        &a,
        &b,
        (services, reals, table_size),
        runs,
        (one_cpu, &all_cpus),
        progress,
    );
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn reload_runs(
    a: &Path,
    b: &Path,
    (services, reals, table_size): (u32, u32, u32),
    runs: usize,
    (one_cpu, all_cpus): (usize, &[usize]),
    progress: &Progress,
) -> Result<Reload> {
    let mut out = Reload {
        services,
        reals,
        table_size,
        initial: Default::default(),
        unchanged: Default::default(),
        all_changed: Default::default(),
        all_changed_one_cpu: Default::default(),
        cpus: all_cpus.len(),
    };
    // Room for every ring plus the previous ring each service keeps after a change.
    let maglev_capacity = 2 * services * table_size + table_size;
    let mut dp = Dp::load(&LoadSpec {
        conn_table_size: 1024,
        maglev_capacity,
        conn_table_pin: None,
        lines: 1,
    })?;
    let hour = Duration::from_secs(3600);
    for run in 0..runs {
        if run > 0 {
            // Back to empty maps for the next initial reload.
            dp.writer.apply(&DesiredState::default(), Instant::now())?;
            dp.writer.expire_previous_rings(Instant::now() + hour)?;
        }
        let mut daemon = Daemonish::new();
        daemon.reload(a, &mut dp.writer, &mut out.initial)?;
        daemon.reload(a, &mut dp.writer, &mut out.unchanged)?;
        // Previous rings of the last change expire first, so the ring map never fills.
        dp.writer.expire_previous_rings(Instant::now() + hour)?;
        sys::pin_to_cpu(one_cpu)?;
        let one = daemon.reload(b, &mut dp.writer, &mut out.all_changed_one_cpu);
        sys::pin_to_cpus(all_cpus)?;
        one?;
        dp.writer.expire_previous_rings(Instant::now() + hour)?;
        daemon.reload(a, &mut dp.writer, &mut out.all_changed)?;
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
