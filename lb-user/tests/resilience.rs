//! The resilience suite: nothing lost under reload, restart, failover, floods and hostile input.
//! Lab scenarios run real TCP traffic through the real daemon; packet fuzzing runs the real XDP
//! object through BPF_PROG_TEST_RUN. Every scenario records its figures (see `report`);
//! `cargo xtask test --resilience` runs the heavier `#[ignore]`d variants too and prints the table.
//! Needs root.
mod common;
#[path = "../fuzz/common/bodies.rs"]
mod bodies;
#[path = "resilience/frames.rs"]
mod frames;
#[path = "resilience/mutate.rs"]
mod mutate;
#[path = "resilience/report.rs"]
mod report;

use std::{
    path::{Path, PathBuf},
    sync::Mutex,
    time::Instant,
};

use common::Harness;

/// Scenarios run one at a time: their figures (rates, stalls) must not depend on each other.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

fn seed() -> u64 {
    std::env::var("XLB_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_0f_f00d)
}

// ---------------------------------------------------------------------------------------------
// 5. Packet fuzzing through BPF_PROG_TEST_RUN.

fn frame_fuzz(n: u64, scenario: &str) {
    let _g = serial();
    let mut h = Harness::new(4096);
    h.apply(&frames::desired());
    let seed = seed();
    let o = frames::run(&h, seed, n);
    let counters = h.counters();
    let bad_counters = frames::check_counters(&counters, &o);
    report::info(scenario, "frames run (seed)", format!("{} ({seed:#x})", o.frames));
    report::info(
        scenario,
        "mutated / pass / drop / tx",
        format!(
            "{} / {} / {} / {}",
            o.mutated,
            o.by_action[common::XDP_PASS as usize],
            o.by_action[common::XDP_DROP as usize],
            o.by_action[common::XDP_TX as usize]
        ),
    );
    report::info(
        scenario,
        "frames/s (test_run, checks included)",
        format!("{:.0} ({:.1} s)", o.frames as f64 / o.secs, o.secs),
    );
    let ok1 = report::eq(scenario, "verdict/output violations", 0, o.violations.len() as u64);
    let ok2 = report::eq(scenario, "counter identity violations", 0, bad_counters.len() as u64);
    assert!(
        ok1 && ok2,
        "violations:\n{}\ncounters:\n{}",
        o.violations.join("\n"),
        bad_counters.join("\n")
    );
}

/// 1M frames take about 5 s here (test_run ~200k frames/s): the whole million runs in CI.
#[test]
fn packet_fuzz_1m() {
    frame_fuzz(1_000_000, "5 packet fuzz (1M)");
}

#[test]
#[ignore = "heavier variant: cargo xtask test --resilience"]
fn packet_fuzz_5m() {
    frame_fuzz(5_000_000, "5 packet fuzz (5M)");
}

// ---------------------------------------------------------------------------------------------
// 6. The cargo-fuzz targets' bodies (lb-user/fuzz) on mutated seeds, on stable.

fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every regular file in `dirs` whose name ends with one of `exts`.
fn seeds(dirs: &[PathBuf], exts: &[&str]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for d in dirs {
        let Ok(rd) = std::fs::read_dir(d) else {
            continue;
        };
        let mut paths: Vec<PathBuf> = rd.filter_map(|e| Some(e.ok()?.path())).collect();
        paths.sort();
        for p in paths {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            if p.is_file() && exts.iter().any(|e| name.ends_with(e)) {
                out.push(std::fs::read(&p).unwrap());
            }
        }
    }
    assert!(!out.is_empty(), "no seeds in {dirs:?}");
    out
}

fn config_seeds() -> Vec<Vec<u8>> {
    let m = manifest_dir();
    seeds(
        &[
            m.join("../configs"),
            m.join("tests/data/config/bad"),
            m.join("tests/data/keepalived"),
        ],
        &[".toml"],
    )
}

fn keepalived_seeds() -> Vec<Vec<u8>> {
    let m = manifest_dir().join("tests/data/keepalived");
    seeds(&[m.clone(), m.join("conf.d")], &[".conf"])
}

/// Runs `body` over the seeds and `n` mutants; a panic fails the test with the input saved.
fn fuzz_body(scenario: &str, name: &str, body: fn(&[u8]), seeds: &[Vec<u8>], n: u64) {
    let mut rng = common::Rng(seed() ^ 0xb0d1e5);
    let started = Instant::now();
    let mut inputs = seeds.to_vec();
    inputs.extend((0..n).map(|_| mutate::mutant(&mut rng, seeds)));
    let mut panics = Vec::new();
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    for input in &inputs {
        if std::panic::catch_unwind(|| body(input)).is_err() && panics.len() < 5 {
            panics.push(input.clone());
        }
    }
    std::panic::set_hook(hook);
    report::info(
        scenario,
        &format!("{name}: inputs (seeds + mutants)"),
        format!("{} + {n} in {:.1} s", seeds.len(), started.elapsed().as_secs_f64()),
    );
    let ok = report::eq(scenario, &format!("{name}: panics"), 0, panics.len() as u64);
    if !ok {
        let dir = std::env::temp_dir().join("xlb-fuzz-crashes");
        std::fs::create_dir_all(&dir).unwrap();
        for (i, p) in panics.iter().enumerate() {
            let f = dir.join(format!("{name}-{i}"));
            std::fs::write(&f, p).unwrap();
            // Re-run with the hook in place to show the message.
            let _ = std::panic::catch_unwind(|| body(p));
            eprintln!("crash input saved: {}", f.display());
        }
        panic!("{name}: {} input(s) panicked, saved in {}", panics.len(), dir.display());
    }
}

fn fuzz_bodies(n_config: u64, n_keepalived: u64, scenario: &str) {
    let _g = serial();
    fuzz_body(scenario, "config", bodies::config, &config_seeds(), n_config);
    fuzz_body(
        scenario,
        "keepalived",
        bodies::keepalived,
        &keepalived_seeds(),
        n_keepalived,
    );
}

#[test]
fn fuzz_targets_on_mutated_seeds() {
    fuzz_bodies(20_000, 5_000, "6 fuzz targets (stable)");
}

#[test]
#[ignore = "heavier variant: cargo xtask test --resilience"]
fn fuzz_targets_on_mutated_seeds_long() {
    fuzz_bodies(200_000, 50_000, "6 fuzz targets (stable, long)");
}

// ---------------------------------------------------------------------------------------------
// 7. Config fuzzing against the binary: `xlb check-config` exits 0 or 2, never panics.

fn check_config_mutants(n: u64, scenario: &str) {
    let _g = serial();
    let m = manifest_dir();
    let seeds = seeds(&[m.join("../configs")], &[".toml"]);
    let dir = tempdir("check-config");
    let mut rng = common::Rng(seed() ^ 0xc0ff1c);
    let (mut ok, mut rejected, mut other) = (0u64, 0u64, Vec::new());
    let started = Instant::now();
    for i in 0..n {
        let text = mutate::mutant(&mut rng, &seeds);
        let f = dir.join(format!("m{i}.toml"));
        std::fs::write(&f, &text).unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_xlb"))
            .args(["check-config"])
            .arg(&f)
            .output()
            .unwrap();
        match out.status.code() {
            Some(0) => ok += 1,
            Some(2) => rejected += 1,
            code => {
                if other.len() < 5 {
                    other.push(format!(
                        "{}: exit {code:?}\n{}",
                        f.display(),
                        String::from_utf8_lossy(&out.stderr)
                    ));
                }
                continue;
            }
        }
        let _ = std::fs::remove_file(&f);
    }
    report::info(
        scenario,
        "mutants checked: valid / rejected",
        format!(
            "{n}: {ok} / {rejected} in {:.1} s",
            started.elapsed().as_secs_f64()
        ),
    );
    let good = report::eq(scenario, "exit codes other than 0/2 (panics)", 0, other.len() as u64);
    assert!(good, "{}", other.join("\n"));
    let _ = std::fs::remove_dir_all(&dir);
}

/// A fresh scratch directory under the target's tmp dir.
fn tempdir(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "resilience-{name}-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn check_config_never_crashes_on_mutants() {
    check_config_mutants(1_000, "7 check-config mutants");
}

#[test]
#[ignore = "heavier variant: cargo xtask test --resilience"]
fn check_config_never_crashes_on_mutants_long() {
    check_config_mutants(10_000, "7 check-config mutants (long)");
}
