//! The benchmark harness behind `cargo xtask bench [--quick]` (the `xlb` bench target) and the
//! `bench_smoke` test. See bench/README.md for the method and the targets.
#![allow(dead_code)]

pub mod control;
pub mod dp;
pub mod failover;
pub mod live;
pub mod report;
pub mod sync;
pub mod sys;
pub mod timing;

use std::{
    path::PathBuf,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{json, Value};

use dp::{
    tcp4, tcp6, v6_fresh_src, Dp, GlobalLru, LoadSpec, OTHER4, OTHER6, PORT, SLOT_DROP,
    SLOT_FLOOR_ENCAP, SLOT_FLOOR_LINE, SLOT_FLOOR_LRU, SLOT_FLOOR_SET, SLOT_MACSWAP, SLOT_PASS,
    SLOT_XLB, SPACE_FRESH, SPACE_PREFILL, VIP4, VIP6, VIP_IP6IP6, VIP_IPIP4, VIP_TUN4,
};
use timing::{Case, Expect, Fresh, FreshAlloc, Prog};

pub struct Progress(ProgressBar);

impl Progress {
    pub fn new(visible: bool) -> Progress {
        let pb = if visible {
            ProgressBar::new(0)
        } else {
            ProgressBar::hidden()
        };
        pb.set_style(
            ProgressStyle::with_template("{elapsed_precise} [{bar:40}] {pos}/{len} {msg}")
                .expect("template")
                .progress_chars("=> "),
        );
        Progress(pb)
    }
    pub fn add(&self, n: u64) {
        self.0.inc_length(n);
    }
    pub fn inc(&self, msg: &str) {
        self.0.set_message(msg.to_string());
        self.0.inc(1);
    }
    pub fn note(&self, msg: &str) {
        self.0.println(msg);
    }
    pub fn finish(&self) {
        self.0.finish_and_clear();
    }
}

pub struct Config {
    pub quick: bool,
    pub name: String,
    pub out_dir: PathBuf,
    pub progress: bool,
}

/// Sizes of everything, full or quick.
pub struct Plan {
    pub rounds: usize,
    pub reps: u32,
    /// Table of the base cases: large enough that a round of fresh SYNs (deleted after each run)
    /// never evicts the two established flows.
    pub table_size: u32,
    pub sizes: Vec<u64>,
    pub lru_table: u32,
    pub live_rounds: usize,
    pub live_frames: u32,
    pub live_batch: u32,
    pub maglev_reals: Vec<u32>,
    pub maglev_sizes: Vec<u32>,
    pub maglev_runs: usize,
    pub reload: (u32, u32, u32),
    pub reload_runs: usize,
    pub sweep_runs: usize,
    pub failover_runs: usize,
}

impl Plan {
    pub fn new(quick: bool) -> Plan {
        if quick {
            Plan {
                rounds: 3,
                reps: 2_000,
                table_size: 65_536,
                sizes: vec![1_024, 16_384],
                lru_table: 16_384,
                live_rounds: 2,
                live_frames: 100_000,
                live_batch: 64,
                maglev_reals: vec![10, 100, 1_000],
                maglev_sizes: vec![65_537],
                maglev_runs: 2,
                reload: (20, 10, 65_537),
                reload_runs: 2,
                sweep_runs: 2,
                failover_runs: 0,
            }
        } else {
            Plan {
                rounds: 10,
                reps: 1_000_000,
                table_size: 16_777_216,
                sizes: vec![1_024, 65_536, 1_048_576, 4_194_304, 16_777_216],
                lru_table: 1_048_576,
                live_rounds: 10,
                live_frames: 1_000_000,
                live_batch: 64,
                maglev_reals: vec![10, 100, 1_000],
                maglev_sizes: vec![65_537, 655_373],
                maglev_runs: 10,
                reload: (1_000, 10, 65_537),
                reload_runs: 10,
                sweep_runs: 10,
                failover_runs: 10,
            }
        }
    }
}

fn cmd_out(argv: &[&str]) -> String {
    std::process::Command::new(argv[0])
        .args(&argv[1..])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

pub fn machine() -> Value {
    let lscpu = cmd_out(&["lscpu"]);
    let field = |k: &str| {
        lscpu
            .lines()
            .find_map(|l| l.strip_prefix(k).map(|v| v.trim().to_string()))
            .unwrap_or_default()
    };
    json!({
        "cpu_model": field("Model name:"),
        "cpus": field("CPU(s):"),
        "threads_per_core": field("Thread(s) per core:"),
        "hypervisor": field("Hypervisor vendor:"),
        "kernel": cmd_out(&["uname", "-r"]),
        "date": cmd_out(&["date", "-u", "+%Y-%m-%dT%H:%M:%SZ"]),
        "memory": cmd_out(&["sh", "-c", "grep MemTotal /proc/meminfo | tr -s ' '"]),
    })
}

/// Verifier figures of every program of the object (instructions processed = the STATS line's
/// "processed N insns", from bpf_prog_info.verified_insns; JITed bytes).
fn verifier(dp: &Dp) -> Result<Value> {
    let mut m = serde_json::Map::new();
    for name in dp::PROGRAMS {
        let p: &aya::programs::Xdp = dp.ebpf.program(name).context(name)?.try_into()?;
        let info = p.info()?;
        m.insert(
            name.into(),
            json!({
                "insns_processed": info.verified_instruction_count(),
                "jited_bytes": info.size_jitted(),
                "xlated_bytes": info.size_translated(),
            }),
        );
    }
    Ok(Value::Object(m))
}

/// Maglev builds (one thread, pinned like every other figure) and the reload through the map
/// writer, which builds changed rings on every core as the daemon does (so it runs unpinned).
fn control_plane(plan: &Plan, cpu: usize, ncpus: usize, progress: &Progress) -> Result<Value> {
    let mag = control::maglev_builds(
        &plan.maglev_reals,
        &plan.maglev_sizes,
        plan.maglev_runs,
        progress,
    );
    let mut out = json!({
        "maglev": mag.iter().map(|c| json!({
            "reals": c.reals, "table_size": c.size,
            "build": control::stats_ms(&c.wall), "build_thread_cpu": control::stats_ms(&c.cpu),
        })).collect::<Vec<_>>(),
    });
    let (svcs, reals, tsize) = plan.reload;
    sys::pin_to_cpus(&(0..ncpus).collect::<Vec<_>>())?;
    let reload = control::reload(svcs, reals, tsize, plan.reload_runs, cpu, progress);
    sys::pin_to_cpu(cpu)?;
    out["reload"] = reload?.json();
    Ok(out)
}

/// The whole benchmark; writes `<out_dir>/<name>.{json,md}` and the plots, returns the JSON.
pub fn run(cfg: &Config) -> Result<Value> {
    let mut plan = Plan::new(cfg.quick);
    // Focused runs (e.g. XLB_BENCH_ONLY=tunnel) may ask for more test_run rounds/repetitions.
    let env_num = |k: &str| std::env::var(k).ok().and_then(|v| v.parse::<u64>().ok());
    if let Some(n) = env_num("XLB_BENCH_ROUNDS") {
        plan.rounds = n as usize;
    }
    if let Some(n) = env_num("XLB_BENCH_REPS") {
        plan.reps = n as u32;
    }
    let progress = Progress::new(cfg.progress);
    let started = Instant::now();
    let ncpus = aya::util::nr_cpus().map_err(|(m, e)| anyhow::anyhow!("{m}: {e}"))?;
    let cpu = ncpus - 1;
    sys::pin_to_cpu(cpu)?;
    let r = plan.rounds as u64;
    progress.add(r * 12 + plan.sizes.len() as u64 * r * 8 + 2 * r * 2);
    progress.add(plan.live_rounds as u64 * 2);
    progress.add(r * 4); // sync on/off
    progress.add(
        (plan.maglev_reals.len() * plan.maglev_sizes.len()
            + plan.reload_runs
            + plan.sweep_runs
            + 3 * plan.failover_runs) as u64,
    );

    let mut out = json!({
        "name": cfg.name,
        "mode": if cfg.quick { "quick" } else { "full" },
        "machine": machine(),
        "plan": {
            "rounds": plan.rounds, "repetitions": plan.reps, "conn_table_size": plan.table_size,
            "sizes": plan.sizes, "test_cpu": cpu,
        },
    });

    if std::env::var("XLB_BENCH_ONLY").is_ok_and(|v| v == "live") {
        let live = live::run(
            plan.live_rounds,
            plan.live_frames,
            plan.live_batch,
            cpu,
            &progress,
        )?;
        progress.finish();
        println!("{}", live.json());
        return Ok(out);
    }

    if std::env::var("XLB_BENCH_ONLY").is_ok_and(|v| v == "control") {
        let control = control_plane(&plan, cpu, ncpus, &progress)?;
        progress.finish();
        println!("{control}");
        return Ok(out);
    }

    if std::env::var("XLB_BENCH_ONLY").is_ok_and(|v| v == "failover") {
        println!("{}", failover::run(2, &progress)?);
        println!("{}", failover::vrrp(2, failover::Peer::Xlb, &progress)?);
        println!(
            "{}",
            failover::vrrp(2, failover::Peer::Keepalived, &progress)?
        );
        return Ok(out);
    }

    // ---- 1. ns/packet through BPF_PROG_TEST_RUN ----
    progress.note(&format!(
        "loading xlb with a {}-entry connection table",
        plan.table_size
    ));
    let t = Instant::now();
    let mut dp = Dp::load(&LoadSpec {
        conn_table_size: plan.table_size,
        maglev_capacity: dp::BENCH_RING_CAPACITY,
        conn_table_pin: None,
        lines: 1,
    })?;
    let load_ms = t.elapsed().as_secs_f64() * 1e3;
    out["verifier"] = verifier(&dp)?;
    out["verifier"]["load_ms_with_table"] = json!(load_ms);
    dp.apply_test_state()?;
    let mut fresh = FreshAlloc::default();

    let ack4 = tcp4([198, 18, 200, 1], 40_000, VIP4, PORT, false);
    let ack6 = tcp6(
        [
            0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0x0e, 0, 0, 0, 0, 0, 0, 0, 1,
        ],
        40_000,
        VIP6,
        PORT,
        false,
    );
    // Tunnel mode: an established flow to a GUE, an IPIP and an ip6ip6 service.
    let gue4 = tcp4([198, 18, 200, 1], 40_000, VIP_TUN4, PORT, false);
    let ipip4 = tcp4([198, 18, 200, 1], 40_000, VIP_IPIP4, PORT, false);
    let ip6ip6 = tcp6(
        [
            0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0x0e, 0, 0, 0, 0, 0, 0, 0, 1,
        ],
        40_000,
        VIP_IP6IP6,
        PORT,
        false,
    );
    let syn4 = tcp4([198, SPACE_FRESH, 0, 0], 0, VIP4, PORT, true);
    let syn6 = tcp6(v6_fresh_src(), 0, VIP6, PORT, true);
    let other4 = tcp4([198, 18, 200, 1], 40_000, OTHER4, PORT, false);
    let other6 = tcp6(
        [
            0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0x0e, 0, 0, 0, 0, 0, 0, 0, 1,
        ],
        40_000,
        OTHER6,
        PORT,
        false,
    );
    // Establish the two fixed flows (the first run inserts, later runs hit).
    {
        let fd = dp.prog_fd(dp::wrapper(SLOT_XLB))?;
        for f in [&ack4, &ack6, &gue4, &ipip4, &ip6ip6] {
            dp.set_cfg(f, lb_common::bench::mode::FIXED, 1)?;
            sys::test_run(fd, f, 1)?;
        }
    }
    let base_cases = vec![
        Case::new(
            "floor: MAC-swap XDP_TX (wrapped)",
            Prog::Wrapped(SLOT_MACSWAP),
            ack4.clone(),
            Expect::Action(3),
        ),
        Case::new(
            "floor: XDP_DROP (wrapped)",
            Prog::Wrapped(SLOT_DROP),
            ack4.clone(),
            Expect::Action(1),
        ),
        Case::new(
            "floor: adjust_head -20 + MAC-swap XDP_TX (wrapped)",
            Prog::Wrapped(SLOT_FLOOR_ENCAP),
            ack4.clone(),
            Expect::Action(3),
        ),
        Case::new(
            "wrapper only (XDP_PASS)",
            Prog::Wrapped(SLOT_PASS),
            ack4.clone(),
            Expect::Action(2),
        ),
        Case::new(
            "bare MAC-swap XDP_TX",
            Prog::Bare("xlb_macswap"),
            ack4.clone(),
            Expect::Action(3),
        ),
        Case::new(
            "bare XDP_DROP",
            Prog::Bare("xlb_drop"),
            ack4.clone(),
            Expect::Action(1),
        ),
        Case::new(
            "xlb established IPv4",
            Prog::Wrapped(SLOT_XLB),
            ack4.clone(),
            Expect::Hit,
        ),
        Case::new(
            "xlb established IPv6",
            Prog::Wrapped(SLOT_XLB),
            ack6.clone(),
            Expect::Hit,
        ),
        Case::new(
            "xlb established IPv4, tunnelled (GUE)",
            Prog::Wrapped(SLOT_XLB),
            gue4,
            Expect::Tunnelled,
        ),
        Case::new(
            "xlb established IPv4, tunnelled (IPIP)",
            Prog::Wrapped(SLOT_XLB),
            ipip4,
            Expect::Tunnelled,
        ),
        Case::new(
            "xlb established IPv6, tunnelled (ip6ip6)",
            Prog::Wrapped(SLOT_XLB),
            ip6ip6,
            Expect::Tunnelled,
        ),
        Case::new(
            "xlb new flow (SYN) IPv4",
            Prog::Wrapped(SLOT_XLB),
            syn4.clone(),
            Expect::Miss,
        )
        .fresh(Fresh::V4, true),
        Case::new(
            "xlb new flow (SYN) IPv6",
            Prog::Wrapped(SLOT_XLB),
            syn6.clone(),
            Expect::Miss,
        )
        .fresh(Fresh::V6, true),
        Case::new(
            "xlb not a service (PASS) IPv4",
            Prog::Wrapped(SLOT_XLB),
            other4,
            Expect::NotService,
        ),
        Case::new(
            "xlb not a service (PASS) IPv6",
            Prog::Wrapped(SLOT_XLB),
            other6,
            Expect::NotService,
        ),
    ];
    progress.note("test_run: floors and xlb paths");
    let base = timing::rounds(
        &mut dp,
        &base_cases,
        0,
        plan.rounds,
        plan.reps,
        1,
        &mut fresh,
        &progress,
    )?;
    if std::env::var("XLB_BENCH_ONLY").is_ok_and(|v| v == "tunnel") {
        // The encapsulation cost alone (bench/README.md, tunnel mode), nothing written.
        progress.finish();
        let r = json!({"testrun": {"base": base.iter().map(|s| s.json()).collect::<Vec<_>>()}});
        println!("{}", report::test_run_tables(&r));
        return Ok(out);
    }

    progress.note("test_run: SYN path with connection sync off and on");
    let sync_cost = sync::syn_cost(
        &mut dp,
        &base_cases[0],
        &syn4,
        plan.rounds,
        plan.reps,
        &mut fresh,
        &progress,
    )?;
    if std::env::var("XLB_BENCH_ONLY").is_ok_and(|v| v == "sync") {
        progress.finish();
        println!("{sync_cost:#}");
        return Ok(out);
    }
    out["sync_cost"] = sync_cost;
    drop(dp);

    // Table-size curve: at every N a table of capacity N (conn_table_size = N), prefilled with N
    // established flows, and the two floors over the same N spread flows.
    let mut curve = Vec::new();
    let mut sweep_json = Value::Null;
    let mut memlock_big = None;
    let stride = 2_654_435_761u32; // odd: visits every flow of a power-of-two N
    for &n in &plan.sizes {
        let (point, sweep) = curve_point(&plan, n, stride, &base_cases[0], &syn4, &progress)?;
        if let Some(v) = sweep {
            sweep_json = v;
            memlock_big = point["memlock"].as_u64();
        }
        curve.push(point);
    }

    // Per-CPU vs global LRU on the insert path.
    let mut lru = serde_json::Map::new();
    let mut memlock_small = None;
    for variant in ["per_cpu_lru", "global_lru"] {
        progress.note(&format!("insert path, {variant}"));
        let global = if variant == "global_lru" {
            Some(GlobalLru::create(plan.lru_table)?)
        } else {
            None
        };
        let mut dp = Dp::load(&LoadSpec {
            conn_table_size: plan.lru_table,
            maglev_capacity: dp::BENCH_RING_CAPACITY,
            conn_table_pin: global.as_ref().map(|g| g.path.as_path()),
            lines: 1,
        })?;
        drop(global);
        if variant == "per_cpu_lru" {
            memlock_small = sys::fdinfo_field(dp.table_fd(), "memlock");
        }
        dp.apply_test_state()?;
        let mut fresh = FreshAlloc::default();
        let floor = base_cases[0].clone();
        let syn = Case::new(
            &format!("new flow, {variant}, 1 CPU"),
            Prog::Wrapped(SLOT_XLB),
            syn4.clone(),
            Expect::Miss,
        )
        .fresh(Fresh::V4, false);
        let one = timing::rounds(
            &mut dp,
            &[floor, syn.clone()],
            0,
            plan.rounds,
            plan.reps,
            1,
            &mut fresh,
            &progress,
        )?;
        let cpus: Vec<usize> = (0..ncpus).collect();
        let mut syn_all = syn;
        syn_all.name = format!("new flow, {variant}, {ncpus} CPUs at once");
        let all = timing::concurrent_fresh(
            &mut dp,
            &syn_all,
            &cpus,
            plan.rounds,
            plan.reps,
            &mut fresh,
            &progress,
        )?;
        lru.insert(variant.into(), json!({"floor": one[0].json(), "one_cpu": one[1].json(), "all_cpus": all.json(), "table_size": plan.lru_table}));
        sys::pin_to_cpu(cpu)?;
    }

    out["testrun"] = json!({
        "base": base.iter().map(|s| s.json()).collect::<Vec<_>>(),
        "curve": curve,
        "lru": lru,
    });

    // ---- 2. live frames ----
    progress.note("live frames through a veth pair");
    let live = live::run(
        plan.live_rounds,
        plan.live_frames,
        plan.live_batch,
        cpu,
        &progress,
    )?;
    out["live"] = live.json();

    // ---- 3. control plane ----
    progress.note("control plane");
    out["control"] = control_plane(&plan, cpu, ncpus, &progress)?;
    out["control"]["sweep"] = sweep_json;
    out["control"]["conn_table_memory"] = json!({
        "small": {"entries": plan.lru_table, "memlock_bytes": memlock_small},
        "large": {"entries": plan.sizes.last(), "memlock_bytes": memlock_big},
    });

    // ---- 4. failover ----
    out["failover"] = if plan.failover_runs > 0 {
        progress.note("failover: dead real server out of rotation (daemon in a lab)");
        let mut fo = failover::run(plan.failover_runs, &progress)
            .unwrap_or_else(|e| json!({"error": format!("{e:#}")}));
        progress.note("failover: VRRP, xlb MASTER killed, xlb / keepalived BACKUP takes over");
        for (key, peer) in [
            ("vrrp_xlb_xlb", failover::Peer::Xlb),
            ("vrrp_xlb_keepalived", failover::Peer::Keepalived),
        ] {
            fo[key] = failover::vrrp(plan.failover_runs, peer, &progress)
                .unwrap_or_else(|e| json!({"error": format!("{e:#}")}));
        }
        fo
    } else {
        json!({"skipped": "not run in --quick mode"})
    };
    out["elapsed_s"] = json!(started.elapsed().as_secs_f64());
    progress.finish();

    report::write(cfg, &out)?;
    Ok(out)
}

/// One point of the table-size curve: xlb loaded with a table of capacity `n`, prefilled with `n`
/// established flows; the MAC-swap floor, the LRU-lookup floor and the one-random-line floor
/// (both over the same `n` spread flows), xlb's established lookups over them, then SYNs. The
/// last point also times the sweep over its full table.
fn curve_point(
    plan: &Plan,
    n: u64,
    stride: u32,
    floor: &Case,
    syn4: &[u8],
    progress: &Progress,
) -> Result<(Value, Option<Value>)> {
    progress.note(&format!(
        "loading xlb with a table of capacity {n}, prefilling it"
    ));
    let mut dp = Dp::load(&LoadSpec {
        conn_table_size: n as u32,
        maglev_capacity: dp::BENCH_RING_CAPACITY,
        conn_table_pin: None,
        lines: n as u32,
    })?;
    dp.apply_test_state()?;
    dp.learn_entry()?;
    let t = Instant::now();
    let in_lru = dp.prefill(1, n)?; // flow 0 was inserted by learn_entry
    let prefill_s = t.elapsed().as_secs_f64();
    let set_overflow = dp.fill_sets(n)?;
    let memlock = sys::fdinfo_field(dp.table_fd(), "memlock");
    let mut fresh = FreshAlloc::default();
    let prefilled = tcp4([198, SPACE_PREFILL, 0, 0], 0, VIP4, PORT, false);
    // Floors and the prototype all end in a MAC-swap XDP_TX over the same spread flows.
    let spread_floor = |label: String, slot| {
        Case::new(
            &label,
            Prog::Wrapped(slot),
            prefilled.clone(),
            Expect::Action(3),
        )
        .spread(n)
    };
    let lru = spread_floor(
        format!("floor: one LRU-hash lookup over {n} flows + MAC-swap"),
        SLOT_FLOOR_LRU,
    );
    let line = spread_floor(
        format!("floor: one random 64-byte line of {n} + MAC-swap"),
        SLOT_FLOOR_LINE,
    );
    let set = spread_floor(
        format!("prototype: 4-way set-associative lookup over {n} flows in {n} sets + MAC-swap"),
        SLOT_FLOOR_SET,
    );
    let hit = Case::new(
        &format!("xlb established, lookups over {n} flows"),
        Prog::Wrapped(SLOT_XLB),
        prefilled,
        Expect::Hit,
    )
    .spread(n);
    let aux0 = dp.aux_total()?;
    let hits = timing::rounds(
        &mut dp,
        &[floor.clone(), lru, line.clone(), hit, set],
        0,
        plan.rounds,
        plan.reps,
        stride,
        &mut fresh,
        progress,
    )?;
    let aux_after = dp.aux_total()?;
    let sweep = if n == *plan.sizes.last().unwrap_or(&0) {
        progress.note(&format!("sweep over the {n}-flow table"));
        let (entries, v) =
            control::sweep_runs(&mut dp, plan.sweep_runs, Duration::from_secs(150), progress)?;
        Some(json!({"entries": entries, "conn_table_size": n, "sweep": control::stats_ms(&v)}))
    } else {
        None
    };
    let syn = Case::new(
        &format!("xlb new flow (SYN) into a full table of {n} flows"),
        Prog::Wrapped(SLOT_XLB),
        syn4.to_vec(),
        Expect::Miss,
    )
    .fresh(Fresh::V4, true);
    let news = timing::rounds(
        &mut dp,
        &[floor.clone(), line, syn],
        0,
        plan.rounds,
        plan.reps,
        stride,
        &mut fresh,
        progress,
    )?;
    let point = json!({
        "flows": n,
        "table_capacity": n,
        "prefill_s": prefill_s,
        "memlock": memlock,
        "floor_hit_rounds": hits[0].json(),
        "floor_lru_lookup": hits[1].json(),
        "floor_random_line": hits[2].json(),
        "established": hits[3].json(),
        "floor_new_rounds": news[0].json(),
        "floor_random_line_new_rounds": news[1].json(),
        "new_flow": news[2].json(),
        "hit_fraction": hits[3].hit_fraction(),
        "set_assoc_prototype": hits[4].json(),
        "set_assoc_overflow_at_prefill": set_overflow,
        "conn_table_flows_in_lru_at_prefill": in_lru,
        "set_assoc_lookups_not_found": aux_after - aux0,
    });
    Ok((point, sweep))
}
