//! The `cargo xtask` commands. Each runs [`setup::ensure`] first.
use std::{
    fs,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _, Result};

use crate::{
    lab::{
        self,
        dr::{self, DrLab},
    },
    setup,
    util::{cargo, run_inherit, target_dir, workspace_root},
};

/// `cargo xtask build [--release]`: `cargo build -p lb-user`.
pub fn build(release: bool) -> Result<()> {
    setup::ensure_for(setup::Need::Build, true)?;
    let mut c = cargo();
    c.args(["build", "-p", "lb-user"])
        .current_dir(workspace_root());
    if release {
        c.arg("--release");
    }
    run_inherit(&mut c)
}

/// `cargo xtask test [--resilience] [-- ARGS]`.
///
/// Without `--resilience`: `cargo test --workspace --exclude lb-ebpf --no-fail-fast [-- ARGS]`
/// (ARGS go to the test binaries: a name filter, `--nocapture`, ...). With `--resilience`: only
/// `cargo test -p lb-user --test resilience -- --include-ignored --test-threads=1 [ARGS]` (the
/// heavier `#[ignore]`d variants included). Both with `XLB_TEST_FULL=1`: a root-only test whose
/// prerequisites are missing fails instead of skipping (see [`lab::require`]).
///
/// Either way the resilience scenarios write their figures to `$XLB_RESILIENCE_REPORT`, printed
/// afterwards as a table (scenario | figure | goal | result), also when a test failed.
pub fn test(resilience: bool, extra: &[String]) -> Result<()> {
    setup::ensure(true)?;
    let root = workspace_root();
    let report = target_dir().join("resilience-report.tsv");
    let _ = fs::remove_file(&report);
    let mut c = cargo();
    // A full run: a test missing a prerequisite fails instead of skipping (lab::require).
    c.current_dir(&root)
        .env("XLB_RESILIENCE_REPORT", &report)
        .env("XLB_TEST_FULL", "1");
    if resilience {
        c.args([
            "test",
            "-p",
            "lb-user",
            "--test",
            "resilience",
            "--",
            "--include-ignored",
            "--test-threads=1",
        ])
        .args(extra);
    } else {
        // lb-ebpf only builds for the BPF target (lb-user's build.rs builds it).
        c.args([
            "test",
            "--workspace",
            "--exclude",
            "lb-ebpf",
            "--no-fail-fast",
        ]);
        if !extra.is_empty() {
            c.arg("--").args(extra);
        }
    }
    let result = run_inherit(&mut c).context("tests failed");
    if let Ok(rows) = fs::read_to_string(&report) {
        print!("{}", resilience_table(&rows));
    }
    result
}

/// Renders the tab-separated rows `scenario, figure, goal, result, ok|FAIL` as an aligned table.
pub fn resilience_table(rows: &str) -> String {
    let header = ["scenario", "figure", "goal", "result", ""];
    let rows: Vec<Vec<&str>> = rows
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.split('\t').collect())
        .collect();
    let mut width = header.map(str::len);
    for r in &rows {
        for (w, cell) in width.iter_mut().zip(r) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: &[&str]| {
        let mut s = String::new();
        for (i, w) in width.iter().enumerate() {
            let cell = cells.get(i).copied().unwrap_or("");
            s += &format!("| {cell:<w$} ");
        }
        s + "|\n"
    };
    let mut out = format!("\nresilience: {} figures\n", rows.len());
    out += &line(&header);
    let rule: Vec<String> = width.iter().map(|w| "-".repeat(*w)).collect();
    out += &line(&rule.iter().map(String::as_str).collect::<Vec<_>>());
    for r in &rows {
        out += &line(r);
    }
    out
}

/// `cargo xtask bench [--quick] [--pktgen IFACE]`.
///
/// Without `--pktgen`: runs the `xlb` bench target of lb-user (`cargo bench -p lb-user --bench
/// xlb`), which writes `bench/results/<name>.{json,md}` and its plots (`XLB_BENCH_QUICK=1` with
/// `--quick`: tiny counts, results named `quick`). With `--pktgen IFACE`: drives the kernel's
/// packet generator on IFACE instead (see [`pktgen`]).
pub fn bench(quick: bool, pktgen_iface: Option<&str>) -> Result<()> {
    if let Some(iface) = pktgen_iface {
        return pktgen(iface, quick);
    }
    setup::ensure(true)?;
    let root = workspace_root();
    let mut c = cargo();
    c.args(["bench", "-p", "lb-user", "--bench", "xlb"])
        .current_dir(&root);
    if quick {
        c.env("XLB_BENCH_QUICK", "1");
    }
    run_inherit(&mut c)
}

/// Where the kernel's packet generator is driven from.
pub const PKTGEN_DIR: &str = "/proc/net/pktgen";

/// The `/proc/net/pktgen` commands of one run: 64-byte UDP frames from IFACE towards the
/// benchmark VIP (198.18.0.100:80) with source ports spread over 1024..65535, so a director
/// sees many flows. `dst_mac` is the director's MAC.
pub fn pktgen_script(iface: &str, dst_mac: &str, count: u64) -> Vec<(String, String)> {
    let dev = format!("{PKTGEN_DIR}/{iface}");
    let thread = format!("{PKTGEN_DIR}/kpktgend_0");
    let mut v = vec![
        (thread.clone(), "rem_device_all".to_string()),
        (thread, format!("add_device {iface}")),
    ];
    for cmd in [
        format!("count {count}"),
        "clone_skb 1000".into(),
        "pkt_size 60".into(),
        "burst 32".into(),
        "delay 0".into(),
        format!("dst_mac {dst_mac}"),
        "dst 198.18.0.100".into(),
        "src_min 198.19.0.1".into(),
        "src_max 198.19.0.254".into(),
        "udp_dst_min 80".into(),
        "udp_dst_max 80".into(),
        "udp_src_min 1024".into(),
        "udp_src_max 65535".into(),
        "flag UDPSRC_RND".into(),
    ] {
        v.push((dev.clone(), cmd));
    }
    v.push((format!("{PKTGEN_DIR}/pgctrl"), "start".into()));
    v
}

/// `cargo xtask bench --pktgen IFACE`: the kernel packet generator on a real NIC (procedure in
/// bench/README.md). Needs the `pktgen` module; where it does not exist (this VM's kernel), says
/// so and skips. XLB_PKTGEN_DST_MAC: the director's MAC (default broadcast), XLB_PKTGEN_COUNT.
pub fn pktgen(iface: &str, quick: bool) -> Result<()> {
    if !Path::new(PKTGEN_DIR).exists() {
        let _ = std::process::Command::new("modprobe")
            .arg("pktgen")
            .status();
    }
    if !Path::new(PKTGEN_DIR).exists() {
        println!(
            "bench --pktgen: {PKTGEN_DIR} does not exist and `modprobe pktgen` did not create it: \
             this kernel has no pktgen module (CONFIG_NET_PKTGEN). Skipped; see bench/README.md \
             for the procedure on real hardware."
        );
        return Ok(());
    }
    let dst_mac =
        std::env::var("XLB_PKTGEN_DST_MAC").unwrap_or_else(|_| "ff:ff:ff:ff:ff:ff".into());
    let count: u64 = std::env::var("XLB_PKTGEN_COUNT")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if quick { 100_000 } else { 10_000_000 });
    let tx_before = fs::read_to_string(format!("/sys/class/net/{iface}/statistics/tx_packets"))
        .with_context(|| format!("no interface {iface}"))?;
    let t = Instant::now();
    for (file, cmd) in pktgen_script(iface, &dst_mac, count) {
        // Writing `start` to pgctrl blocks until the run ends.
        fs::write(&file, format!("{cmd}\n")).with_context(|| format!("echo {cmd} > {file}"))?;
    }
    let secs = t.elapsed().as_secs_f64();
    let result = fs::read_to_string(format!("{PKTGEN_DIR}/{iface}")).unwrap_or_default();
    let tx_after = fs::read_to_string(format!("/sys/class/net/{iface}/statistics/tx_packets"))?;
    let sent = tx_after.trim().parse::<u64>()? - tx_before.trim().parse::<u64>()?;
    println!(
        "bench --pktgen {iface}: {sent} frames in {secs:.2} s = {:.3} Mpps sent",
        sent as f64 / secs / 1e6
    );
    if let Some(line) = result.lines().find(|l| l.contains("pps")) {
        println!("pktgen: {}", line.trim());
    }
    println!("Read the director's delivered rate on the receiving side (see bench/README.md).");
    Ok(())
}

/// `cargo xtask lab clean`: see [`lab::clean_all`].
pub fn lab_clean() -> Result<()> {
    let cleaned = lab::clean_all()?;
    if cleaned.netns.is_empty() && cleaned.links.is_empty() {
        println!("lab clean: nothing to remove");
    }
    for n in &cleaned.netns {
        println!("lab clean: removed netns {n}");
    }
    for l in &cleaned.links {
        println!("lab clean: removed link {l}");
    }
    Ok(())
}

/// `cargo xtask demo`.
pub fn demo() -> Result<()> {
    setup::ensure_for(setup::Need::Demo, true)?;
    let root = workspace_root();
    // XLB_DEMO_CONFIG / XLB_DEMO_BIN override the config and the binary (to try the demo with
    // another config, or to test this command with a stand-in daemon).
    let config = std::env::var_os("XLB_DEMO_CONFIG")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("configs/demo.toml"));
    let xlb = std::env::var_os("XLB_DEMO_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| target_dir().join("debug/xlb"));
    println!("demo: cargo build -p lb-user");
    run_inherit(cargo().args(["build", "-p", "lb-user"]).current_dir(&root))?;
    if !config.exists() {
        bail!("demo: {} does not exist", config.display());
    }
    if !xlb.exists() {
        bail!("demo: {} was not built", xlb.display());
    }

    println!("demo: building the lab (client, director, rs1, rs2 on bridge `lan`)");
    let DrLab {
        mut lab,
        lan: _,
        client,
        director,
        real_servers,
    } = dr::build("demo", 2)?;
    // A standalone director (no VRRP in the demo) holds the VIP on its interface, as an operator
    // would configure it, so clients' ARP for the VIP is answered by the director.
    lab.add_addr(&director, "eth0", &format!("{}/32", dr::VIP))?;
    println!("demo: lab {} is up", lab.id());
    for (i, rs) in real_servers.iter().enumerate() {
        let ip = dr::real_v4(i + 1);
        let body = lab.run_ok(
            &client,
            &["curl", "-sf", "-m", "2", &format!("http://{ip}/")],
        )?;
        println!(
            "demo: client -> {} ({ip}) directly: {}",
            rs.name(),
            body.trim()
        );
        if body.trim() != rs.name() {
            bail!("{} answered {body:?}", rs.name());
        }
    }

    let xlb_s = xlb.to_str().context("non-UTF-8 path")?.to_string();
    let config_s = config.to_str().context("non-UTF-8 path")?.to_string();
    println!("demo: starting `xlb run --config {config_s}` in the director");
    let mut c = lab.command(&director, &[&xlb_s, "run", "--config", &config_s]);
    c.current_dir(&root);
    let daemon = lab.spawn_command(&director, c)?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(st) = lab.exited(&daemon)? {
            bail!(
                "xlb run exited ({st}) before answering status; its log:\n{}",
                lab.log(&daemon)
            );
        }
        if lab
            .run(&director, &[&xlb_s, "status", "--config", &config_s])?
            .status
            .success()
        {
            break;
        }
        if Instant::now() >= deadline {
            bail!(
                "`xlb status` did not answer within 30 s; daemon log:\n{}",
                lab.log(&daemon)
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }

    let n = 300;
    let url = format!("http://{}/", dr::VIP);
    println!("demo: client -> {url} x {n}");
    let spread = dr::curl_spread(&lab, &client, &url, n)?;
    let counts: Vec<String> = real_servers
        .iter()
        .map(|rs| {
            format!(
                "{}: {}",
                rs.name(),
                spread.get(rs.name()).copied().unwrap_or(0)
            )
        })
        .collect();
    println!("{}", counts.join(", "));
    let ok: usize = real_servers
        .iter()
        .filter_map(|rs| spread.get(rs.name()))
        .sum();
    let failed = n - ok.min(n);
    let status = lab.run(&director, &[&xlb_s, "status", "--config", &config_s])?;
    println!(
        "demo: xlb status:\n{}",
        String::from_utf8_lossy(&status.stdout)
    );
    if failed > 0 {
        bail!("{failed} of {n} requests failed or got an unexpected answer ({spread:?}); daemon log:\n{}", lab.log(&daemon));
    }
    if let Some(rs) = real_servers
        .iter()
        .find(|rs| !spread.contains_key(rs.name()))
    {
        bail!("{} got no requests", rs.name());
    }
    println!("demo: ok, cleaning up");
    Ok(())
}
