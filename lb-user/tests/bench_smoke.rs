//! `cargo xtask bench --quick` in-process: every section runs with tiny counts, every path check
//! passes and the result files are written.
#[path = "../benches/harness/mod.rs"]
mod harness;

#[test]
fn quick_bench_runs_and_paths_check() {
    xtask::require!(xtask::lab::dr::NEEDS);
    let dir = std::env::temp_dir().join(format!("xlb-bench-smoke-{}", std::process::id()));
    let cfg = harness::Config {
        quick: true,
        name: "smoke".into(),
        out_dir: dir.clone(),
        progress: false,
    };
    let t = std::time::Instant::now();
    let r = harness::run(&cfg).expect("quick bench");
    for c in r["testrun"]["base"].as_array().unwrap() {
        assert_eq!(c["path_ok"], true, "{c}");
    }
    for c in r["testrun"]["curve"].as_array().unwrap() {
        for k in [
            "established",
            "new_flow",
            "floor_lru_lookup",
            "floor_random_line",
            "set_assoc_prototype",
        ] {
            assert_eq!(c[k]["path_ok"], true, "{k}: {c}");
        }
        // The XDP prototype finds what the harness put in the sets.
        if c["set_assoc_overflow_at_prefill"] == 0 {
            assert_eq!(c["set_assoc_lookups_not_found"], 0, "{c}");
        }
    }
    for v in r["testrun"]["lru"].as_object().unwrap().values() {
        assert_eq!(v["one_cpu"]["path_ok"], true, "{v}");
        assert_eq!(v["all_cpus"]["path_ok"], true, "{v}");
    }
    assert!(
        r["live"]["xlb_established"]["mpps"]["median"]
            .as_f64()
            .unwrap()
            > 0.0
    );
    assert!(r["verifier"]["xlb"]["jited_bytes"].as_u64().unwrap() > 0);
    for ext in ["json", "md"] {
        assert!(dir.join(format!("smoke.{ext}")).exists());
    }
    assert!(dir.join("smoke-table-size.png").exists());
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        t.elapsed().as_secs() < 60,
        "quick bench took {:?}",
        t.elapsed()
    );
}
