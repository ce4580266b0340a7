//! Writes `<name>.json`, `<name>.md` and the plots `<name>-table-size.png`, `<name>-mpps.png`.
use std::fmt::Write as _;

use anyhow::{Context as _, Result};
use plotters::prelude::*;
use serde_json::{json, Value};

use super::Config;

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or(f64::NAN)
}

/// One target row: (target, limit, measured, met).
pub fn targets(r: &Value) -> Vec<(String, String, String, Option<bool>)> {
    let mut t = Vec::new();
    let curve = r["testrun"]["curve"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    // The 1M point, else the largest measured.
    let at = curve
        .iter()
        .find(|c| c["flows"] == json!(1_048_576))
        .or(curve.last())
        .cloned()
        .unwrap_or(Value::Null);
    let flows = at["flows"].clone();
    let base = |name: &str| {
        r["testrun"]["base"]
            .as_array()
            .and_then(|a| a.iter().find(|c| c["name"] == json!(name)).cloned())
            .unwrap_or(Value::Null)
    };
    let mut ratio_row = |what: String, limit: f64, v: f64| {
        t.push((
            what,
            format!("<= {limit}x"),
            format!("{v:.2}x"),
            Some(v <= limit),
        ));
    };
    if !r["sync_cost"].is_null() {
        ratio_row(
            "new flow (SYN) with connection sync on / off".into(),
            super::sync::TARGET_RATIO,
            f(&r["sync_cost"]["on_over_off"]["median"]),
        );
    }
    let hot = f(&base("xlb established IPv4")["ratio_to_floor"]["median"]);
    ratio_row(
        "established, one hot flow / MAC-swap floor".into(),
        2.7,
        hot,
    );
    let spread = run_ratio(&at["established"], &at["floor_random_line"]);
    ratio_row(
        format!("established spread over {flows} flows / one-random-line floor"),
        1.5,
        spread,
    );
    if let (Some(a), Some(b)) = (curve.first(), curve.last()) {
        let ns = |c: &Value, k: &str| f(&c[k]["ns_per_packet"]["median"]);
        let g = (ns(b, "established") / ns(a, "established"))
            / (ns(b, "floor_random_line") / ns(a, "floor_random_line"));
        ratio_row(
            format!(
                "established cost growth {} -> {} flows / the one-line floor's growth",
                a["flows"], b["flows"]
            ),
            1.3,
            g,
        );
    }
    let syn = run_ratio(&at["new_flow"], &at["floor_random_line_new_rounds"]);
    ratio_row(
        format!("SYN into a full table of {flows} / one-random-line floor"),
        2.5,
        syn,
    );
    let other = f(&base("xlb not a service (PASS) IPv4")["ratio_to_floor"]["median"]);
    ratio_row("not a VIP / MAC-swap floor".into(), 2.0, other);
    let live = f(&r["live"]["ratio_to_floor"]["median"]);
    t.push((
        "live-frames Mpps / MAC-swap floor".into(),
        ">= 0.7x".into(),
        format!("{live:.2}x"),
        Some(live >= 0.7),
    ));
    if let Some(m) = r["control"]["maglev"].as_array().and_then(|a| {
        a.iter()
            .find(|m| m["reals"] == json!(10) && m["table_size"] == json!(65_537))
    }) {
        let ms = f(&m["build"]["median_ms"]);
        t.push((
            "Maglev build, 10 reals, 65,537 slots".into(),
            "<= 0.5 ms".into(),
            format!("{ms:.2} ms"),
            Some(ms <= 0.5),
        ));
    }
    let rl = &r["control"]["reload"];
    let init = f(&rl["initial_apply"]["median_ms"]);
    let chg = f(&rl["reload_every_service_changed"]["median_ms"]);
    t.push((
        format!(
            "reload {} services x {} reals, every service changed (initial apply)",
            rl["services"], rl["reals_per_service"]
        ),
        "<= 300 ms".into(),
        format!("{chg:.1} ms ({init:.1} ms)"),
        Some(chg <= 300.0),
    ));
    let sw = &r["control"]["sweep"];
    let sweep_ms = f(&sw["sweep"]["median_ms"]);
    t.push((
        format!("sweep of {} entries", sw["conn_table_size"]),
        "<= 1 s".into(),
        format!("{sweep_ms:.0} ms"),
        Some(sweep_ms <= 1000.0),
    ));
    let fo = &r["failover"];
    for (key, what) in [
        ("vrrp_xlb_xlb", "xlb + xlb"),
        ("vrrp_xlb_keepalived", "xlb + keepalived"),
    ] {
        let v = &fo[key];
        if v.get("median_ms").is_some() {
            t.push((
                format!("VRRP failover, {what} (MASTER killed -> VIP answers through the BACKUP)"),
                format!(
                    "<= 3 x advert_int + skew + 0.5 s = {:.0} ms",
                    f(&v["bound_ms"])
                ),
                format!(
                    "{:.0} ms median, {:.0} ms min",
                    f(&v["median_ms"]),
                    f(&v["min_ms"])
                ),
                Some(f(&v["median_ms"]) <= f(&v["bound_ms"])),
            ));
        } else {
            t.push((
                format!("VRRP failover, {what}"),
                "<= 3 x advert_int + skew + 0.5 s".into(),
                format!("{v}"),
                None,
            ));
        }
    }
    if fo.get("median_ms").is_some() {
        t.push((
            "dead real server out of rotation (tcp check, interval 1 s, timeout 1 s)".into(),
            format!("<= interval + timeout = {} ms", fo["expected_bound_ms"]),
            format!(
                "{:.0} ms median, {:.0} ms min",
                f(&fo["median_ms"]),
                f(&fo["min_ms"])
            ),
            Some(
                f(&fo["dead_real_out_of_rotation"]["runs_ms"]
                    .as_array()
                    .map(|a| a.iter().map(f).fold(0.0, f64::max))
                    .map(Value::from)
                    .unwrap_or(Value::Null))
                    <= f(&fo["expected_bound_ms"]) + 250.0
                    && fo["requests_to_dead_server_after_removal"] == 0,
            ),
        ));
    }
    t
}

/// Median over rounds of `a`'s ns / `b`'s ns in the same round (both measured in one interleaved
/// set of rounds).
fn run_ratio(a: &Value, b: &Value) -> f64 {
    let runs = |v: &Value| -> Vec<f64> {
        v["ns_per_packet"]["runs"]
            .as_array()
            .map(|r| r.iter().map(f).collect())
            .unwrap_or_default()
    };
    let r: Vec<f64> = runs(a).iter().zip(runs(b)).map(|(x, y)| x / y).collect();
    super::timing::median(&r)
}

/// Median over rounds of `a`'s ns - `b`'s ns in the same round.
fn run_diff(a: &Value, b: &Value) -> f64 {
    let runs = |v: &Value| -> Vec<f64> {
        v["ns_per_packet"]["runs"]
            .as_array()
            .map(|r| r.iter().map(f).collect())
            .unwrap_or_default()
    };
    let d: Vec<f64> = runs(a).iter().zip(runs(b)).map(|(x, y)| x - y).collect();
    super::timing::median(&d)
}

/// The base case named `name`.
fn base_case<'a>(r: &'a Value, name: &str) -> Option<&'a Value> {
    r["testrun"]["base"]
        .as_array()?
        .iter()
        .find(|c| c["name"] == name)
}

/// Tunnel mode's cost in the same rounds: each tunnelled case against the DR case of its family
/// and against the two floors (MAC swap, and adjust_head + MAC swap: the least an encapsulating
/// forwarder does, wrapper's head restore included).
fn tunnel_cost(r: &Value, s: &mut String) {
    let floor = base_case(r, "floor: MAC-swap XDP_TX (wrapped)");
    let encap_floor = base_case(r, "floor: adjust_head -20 + MAC-swap XDP_TX (wrapped)");
    let (Some(floor), Some(encap_floor)) = (floor, encap_floor) else {
        return;
    };
    let _ = writeln!(
        s,
        "\n### Tunnel mode: encapsulation cost (same rounds; per-round differences, median)\n\n\
         | case | median ns | DR case ns | + ns over DR | + ns over the MAC-swap floor | + ns over the adjust_head floor |\n\
         |---|---|---|---|---|---|"
    );
    for (case, dr) in [
        (
            "xlb established IPv4, tunnelled (IPIP)",
            "xlb established IPv4",
        ),
        (
            "xlb established IPv4, tunnelled (GUE)",
            "xlb established IPv4",
        ),
        (
            "xlb established IPv6, tunnelled (ip6ip6)",
            "xlb established IPv6",
        ),
    ] {
        let (Some(c), Some(d)) = (base_case(r, case), base_case(r, dr)) else {
            continue;
        };
        let _ = writeln!(
            s,
            "| {case} | {:.0} | {:.0} | {:+.0} | {:+.0} | {:+.0} |",
            f(&c["ns_per_packet"]["median"]),
            f(&d["ns_per_packet"]["median"]),
            run_diff(c, d),
            run_diff(c, floor),
            run_diff(c, encap_floor),
        );
    }
}

/// The ns/packet table of the base cases and the tunnel-mode cost table.
pub fn test_run_tables(r: &Value) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "\n## ns/packet through BPF_PROG_TEST_RUN\n\n| case | median ns | min ns | ratio to floor (median) | path check |\n|---|---|---|---|---|");
    let row = |s: &mut String, c: &Value| {
        let _ = writeln!(
            s,
            "| {} | {:.0} | {:.0} | {:.2} | {} |",
            c["name"].as_str().unwrap_or(""),
            f(&c["ns_per_packet"]["median"]),
            f(&c["ns_per_packet"]["min"]),
            f(&c["ratio_to_floor"]["median"]),
            if c["path_ok"] == json!(true) {
                format!("ok {}", c["path_counters"])
            } else {
                format!("**FAILED** {}", c["path_errors"])
            }
        );
    };
    for c in r["testrun"]["base"].as_array().into_iter().flatten() {
        row(&mut s, c);
    }
    tunnel_cost(r, &mut s);
    s
}

pub fn markdown(r: &Value) -> String {
    let mut s = String::new();
    let m = &r["machine"];
    let _ = writeln!(
        s,
        "# xlb benchmark `{}` ({})\n",
        r["name"].as_str().unwrap_or(""),
        r["mode"].as_str().unwrap_or("")
    );
    let _ = writeln!(
        s,
        "{} ({} CPUs, hypervisor {}), kernel {}, {}. Figures: median and min over {} rounds of {} repetitions; ratios are per round against the MAC-swap floor run in the same round, through the same wrapper.\n",
        m["cpu_model"].as_str().unwrap_or("?"),
        m["cpus"].as_str().unwrap_or("?"),
        m["hypervisor"].as_str().unwrap_or("none"),
        m["kernel"].as_str().unwrap_or("?"),
        m["date"].as_str().unwrap_or("?"),
        r["plan"]["rounds"],
        r["plan"]["repetitions"],
    );
    let _ = writeln!(
        s,
        "## Targets\n\n| target | limit | measured | met |\n|---|---|---|---|"
    );
    for (name, lim, meas, met) in targets(r) {
        let met = match met {
            Some(true) => "yes",
            Some(false) => "**no**",
            None => "-",
        };
        let _ = writeln!(s, "| {name} | {lim} | {meas} | {met} |");
    }
    s += &test_run_tables(r);
    let _ = writeln!(s, "\n### Cost against table size (table capacity = flows)\n\n| flows = capacity | MAC-swap floor ns | LRU-lookup floor ns | random-line floor ns | 4-way set prototype ns (flows not in their set) | established ns | / line floor | SYN ns | / line floor | hit fraction | prefill s |\n|---|---|---|---|---|---|---|---|---|---|---|");
    for c in r["testrun"]["curve"].as_array().into_iter().flatten() {
        let ns = |k: &str| f(&c[k]["ns_per_packet"]["median"]);
        let _ = writeln!(
            s,
            "| {} | {:.0} | {:.0} | {:.0} | {:.0} ({}) | {:.0} | {:.2} | {:.0} | {:.2} | {:.4} | {:.1} |",
            c["flows"],
            ns("floor_hit_rounds"),
            ns("floor_lru_lookup"),
            ns("floor_random_line"),
            ns("set_assoc_prototype"),
            c["set_assoc_overflow_at_prefill"],
            ns("established"),
            run_ratio(&c["established"], &c["floor_random_line"]),
            ns("new_flow"),
            run_ratio(&c["new_flow"], &c["floor_random_line_new_rounds"]),
            f(&c["hit_fraction"]),
            f(&c["prefill_s"]),
        );
    }
    let _ = writeln!(
        s,
        "\n![ns/packet against table size]({}-table-size.png)\n",
        r["name"].as_str().unwrap_or("")
    );
    let _ = writeln!(s, "### Insert path: per-CPU LRU (BPF_F_NO_COMMON_LRU) vs global LRU\n\n| variant | floor median ns | new flow, 1 CPU: median / min ns | new flow, all CPUs at once: median / min ns | path |\n|---|---|---|---|---|");
    for (k, v) in r["testrun"]["lru"].as_object().into_iter().flatten() {
        let _ = writeln!(
            s,
            "| {k} ({} entries) | {:.0} | {:.0} / {:.0} | {:.0} / {:.0} | {} |",
            v["table_size"],
            f(&v["floor"]["ns_per_packet"]["median"]),
            f(&v["one_cpu"]["ns_per_packet"]["median"]),
            f(&v["one_cpu"]["ns_per_packet"]["min"]),
            f(&v["all_cpus"]["ns_per_packet"]["median"]),
            f(&v["all_cpus"]["ns_per_packet"]["min"]),
            if v["one_cpu"]["path_ok"] == json!(true) && v["all_cpus"]["path_ok"] == json!(true) {
                "ok"
            } else {
                "**FAILED**"
            },
        );
    }
    let l = &r["live"];
    let _ = writeln!(
        s,
        "\n## Live frames through a veth pair ({} frames a run, batch {})\n\n| program on the director | median Mpps | min Mpps | delivered (min fraction) |\n|---|---|---|---|\n| MAC-swap floor | {:.3} | {:.3} | {:.4} |\n| xlb, established flow | {:.3} | {:.3} | {:.4} |\n\nRatio xlb / floor: median {:.2}, min {:.2}. xlb path: conn_hit {}, conn_miss {}, action_tx {}.\n\n![Mpps against the floor]({}-mpps.png)\n",
        l["frames_per_run"], l["batch"],
        f(&l["floor_macswap"]["mpps"]["median"]), f(&l["floor_macswap"]["mpps"]["min"]), f(&l["floor_macswap"]["delivered_fraction"]["min"]),
        f(&l["xlb_established"]["mpps"]["median"]), f(&l["xlb_established"]["mpps"]["min"]), f(&l["xlb_established"]["delivered_fraction"]["min"]),
        f(&l["ratio_to_floor"]["median"]), f(&l["ratio_to_floor"]["min"]),
        l["xlb_conn_hit"], l["xlb_conn_miss"], l["xlb_action_tx"],
        r["name"].as_str().unwrap_or(""),
    );
    let _ = writeln!(
        s,
        "## Control plane\n\n| operation | median ms | min ms | runs |\n|---|---|---|---|"
    );
    for m in r["control"]["maglev"].as_array().into_iter().flatten() {
        let _ = writeln!(
            s,
            "| Maglev build, {} reals, {} slots (thread CPU time: {:.2} median, {:.2} min) | {:.2} | {:.2} | {} |",
            m["reals"],
            m["table_size"],
            f(&m["build_thread_cpu"]["median_ms"]),
            f(&m["build_thread_cpu"]["min_ms"]),
            f(&m["build"]["median_ms"]),
            f(&m["build"]["min_ms"]),
            m["build"]["runs_ms"].as_array().map_or(0, |a| a.len())
        );
    }
    let rl = &r["control"]["reload"];
    for (k, label) in [
        ("initial_apply", "initial apply"),
        ("reload_unchanged", "reload, nothing changed"),
        (
            "reload_every_service_changed",
            "reload, every service changed (rings built on every CPU)",
        ),
        (
            "reload_every_service_changed_one_cpu",
            "reload, every service changed, pinned to one CPU",
        ),
    ] {
        let _ = writeln!(
            s,
            "| {} services x {} reals ({} slots): {label} | {:.1} | {:.1} | {} |",
            rl["services"],
            rl["reals_per_service"],
            rl["table_size"],
            f(&rl[k]["median_ms"]),
            f(&rl[k]["min_ms"]),
            rl[k]["runs_ms"].as_array().map_or(0, |a| a.len())
        );
    }
    // The steps of the every-CPU reload (the daemon's path: file, plan, map writer).
    let all = &rl["reload_every_service_changed"];
    for (k, label) in [
        ("load_parse_validate", "read, parse, validate the file"),
        ("plan_desired_state", "plan the desired state"),
        (
            "apply_map_writer",
            "map writer: ring builds, map and ring writes",
        ),
        ("process_cpu", "CPU time of the whole reload, every thread"),
    ] {
        let _ = writeln!(
            s,
            "| of which: {label} | {:.1} | {:.1} | {} |",
            f(&all[k]["median_ms"]),
            f(&all[k]["min_ms"]),
            all[k]["runs_ms"].as_array().map_or(0, |a| a.len())
        );
    }
    let sw = &r["control"]["sweep"];
    let _ = writeln!(
        s,
        "| ActiveConn sweep over {} entries | {:.0} | {:.0} | {} |",
        sw["entries"],
        f(&sw["sweep"]["median_ms"]),
        f(&sw["sweep"]["min_ms"]),
        sw["sweep"]["runs_ms"].as_array().map_or(0, |a| a.len())
    );
    let mem = &r["control"]["conn_table_memory"];
    let _ = writeln!(
        s,
        "\nConnection-table memory (fdinfo memlock): {} entries: {} bytes; {} entries: {} bytes.\n",
        mem["small"]["entries"],
        mem["small"]["memlock_bytes"],
        mem["large"]["entries"],
        mem["large"]["memlock_bytes"]
    );
    let _ = writeln!(
        s,
        "## Verifier\n\n| program | instructions processed | JITed bytes |\n|---|---|---|"
    );
    for (k, v) in r["verifier"].as_object().into_iter().flatten() {
        if v.is_object() {
            let _ = writeln!(
                s,
                "| {k} | {} | {} |",
                v["insns_processed"], v["jited_bytes"]
            );
        }
    }
    let fo = &r["failover"];
    let _ = writeln!(
        s,
        "\n## Failover\n\n```json\n{}\n```\n",
        serde_json::to_string_pretty(fo).unwrap_or_default()
    );
    let _ = writeln!(s, "Total time: {:.0} s.", f(&r["elapsed_s"]));
    s
}

fn font() -> bool {
    plotters::style::register_font("sans-serif", FontStyle::Normal, dejavu::sans::regular()).is_ok()
}

pub fn plot_curve(r: &Value, path: &std::path::Path) -> Result<()> {
    let curve = r["testrun"]["curve"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let pts = |k: &str| -> Vec<(f64, f64)> {
        curve
            .iter()
            .map(|c| (f(&c["flows"]).log2(), f(&c[k]["ns_per_packet"]["median"])))
            .collect()
    };
    let hit = pts("established");
    let new = pts("new_flow");
    let floor = pts("floor_hit_rounds");
    let lru = pts("floor_lru_lookup");
    let line = pts("floor_random_line");
    let ymax = hit
        .iter()
        .chain(&new)
        .chain(&lru)
        .map(|p| p.1)
        .fold(10.0, f64::max)
        * 1.15;
    let (x0, x1) = (
        hit.first().map_or(0.0, |p| p.0).floor() - 1.0,
        hit.last().map_or(1.0, |p| p.0).ceil() + 1.0,
    );
    let root = BitMapBackend::new(path, (900, 560)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "xlb ns/packet vs connection-table size (test_run, median)",
            ("sans-serif", 22),
        )
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(60)
        .build_cartesian_2d(x0..x1, 0.0..ymax)?;
    chart
        .configure_mesh()
        .x_desc("flows in the table = table capacity (log2)")
        .y_desc("ns per packet")
        .x_labels((x1 - x0) as usize + 1)
        .x_label_formatter(&|x| format!("2^{x:.0}"))
        .draw()?;
    for (data, color, label) in [
        (hit, BLUE, "established (lookups over all flows)"),
        (new, RED, "new flow (SYN, inserted)"),
        (floor, BLACK, "MAC-swap floor"),
        (lru, MAGENTA, "floor: one kernel LRU-hash lookup"),
        (line, GREEN, "floor: one random 64-byte line"),
    ] {
        chart
            .draw_series(LineSeries::new(data.clone(), color.stroke_width(2)))?
            .label(label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
        chart.draw_series(data.iter().map(|p| Circle::new(*p, 4, color.filled())))?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}

pub fn plot_mpps(r: &Value, path: &std::path::Path) -> Result<()> {
    let runs = |k: &str| -> Vec<f64> {
        r["live"][k]["mpps"]["runs"]
            .as_array()
            .map(|a| a.iter().map(f).collect())
            .unwrap_or_default()
    };
    let floor = runs("floor_macswap");
    let xlb = runs("xlb_established");
    let ymax = floor.iter().chain(&xlb).copied().fold(0.1, f64::max) * 1.2;
    let n = floor.len().max(1) as f64;
    let root = BitMapBackend::new(path, (900, 560)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "live frames through veth: Mpps per round",
            ("sans-serif", 22),
        )
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(60)
        .build_cartesian_2d(0.5..n + 0.5, 0.0..ymax)?;
    chart
        .configure_mesh()
        .x_desc("round")
        .y_desc("Mpps delivered")
        .draw()?;
    for (data, color, label) in [
        (floor, BLACK, "MAC-swap floor"),
        (xlb, BLUE, "xlb (established flow)"),
    ] {
        let pts: Vec<(f64, f64)> = data
            .iter()
            .enumerate()
            .map(|(i, v)| (i as f64 + 1.0, *v))
            .collect();
        chart
            .draw_series(LineSeries::new(pts.clone(), color.stroke_width(2)))?
            .label(label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
        chart.draw_series(pts.iter().map(|p| Circle::new(*p, 4, color.filled())))?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}

pub fn write(cfg: &Config, r: &Value) -> Result<()> {
    std::fs::create_dir_all(&cfg.out_dir)
        .with_context(|| format!("creating {}", cfg.out_dir.display()))?;
    let base = cfg.out_dir.join(&cfg.name);
    std::fs::write(
        base.with_extension("json"),
        serde_json::to_string_pretty(r)?,
    )?;
    std::fs::write(base.with_extension("md"), markdown(r))?;
    if font() {
        plot_curve(r, &cfg.out_dir.join(format!("{}-table-size.png", cfg.name)))?;
        plot_mpps(r, &cfg.out_dir.join(format!("{}-mpps.png", cfg.name)))?;
    }
    Ok(())
}
