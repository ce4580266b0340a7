//! `cargo xtask bench [--quick]`: the xlb benchmarks (see bench/README.md).
//! Environment: XLB_BENCH_QUICK=1 (tiny counts), XLB_BENCH_NAME (result file name),
//! XLB_BENCH_ONLY=live|failover|control|sync|tunnel (one section on stdout, no result files),
//! XLB_BENCH_ROUNDS / XLB_BENCH_REPS (test_run rounds / repetitions instead of the plan's),
//! XLB_BENCH_OUT (directory, default bench/results).
mod harness;

fn main() -> anyhow::Result<()> {
    // `cargo bench` passes --bench; nothing else is taken.
    let quick = std::env::var("XLB_BENCH_QUICK").is_ok_and(|v| v == "1");
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let out_dir = std::env::var_os("XLB_BENCH_OUT")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| root.join("bench/results"));
    let name = std::env::var("XLB_BENCH_NAME").unwrap_or_else(|_| {
        if quick {
            "quick".into()
        } else {
            "latest".into()
        }
    });
    let cfg = harness::Config {
        quick,
        name: name.clone(),
        out_dir: out_dir.clone(),
        progress: true,
    };
    let r = harness::run(&cfg)?;
    println!("{}", harness::report::markdown(&r));
    println!(
        "bench: wrote {}/{name}.json, {name}.md and the plots",
        out_dir.display()
    );
    Ok(())
}
