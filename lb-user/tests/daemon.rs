//! The daemon in a namespaced lab with real TCP traffic: restart survival, adoption, reload,
//! status figures, detach. Needs root.
mod common;

use std::time::{Duration, Instant};

use common::dr::{Dr, NEEDS, VIP};
use xtask::lab::{require::Need, streams::State};

fn xdp_progs_on_eth0(dr: &Dr) -> usize {
    let out =
        dr.d.lab
            .run_ok(&dr.d.director, &["ip", "-d", "link", "show", "eth0"])
            .unwrap();
    out.matches("prog/xdp").count()
}

fn vs<'a>(status: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    status["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .unwrap()
}

#[test]
fn kill9_keeps_forwarding_and_restart_adopts_pinned_state() {
    xtask::require!(NEEDS);
    let mut dr = Dr::new("d-kill9", 2);
    dr.write_config(&dr.config_text(&[(1, 1), (2, 1)], ""));
    dr.start_daemon();
    let spread = dr.curl(40);
    assert_eq!(spread.get("FAIL"), None, "{spread:?}");
    assert!(
        spread.contains_key("rs1") && spread.contains_key("rs2"),
        "{spread:?}"
    );
    let streams = dr.start_streams(20, 8.0);
    std::thread::sleep(Duration::from_secs(1));
    let before = dr.status_json();
    let conns_before = vs(&before, "vs80")["traffic"]["conns"].as_u64().unwrap();
    assert!(conns_before >= 40);

    dr.kill9_daemon();
    // No daemon: the pinned program and maps keep forwarding.
    let spread = dr.curl(30);
    assert_eq!(
        spread.get("FAIL"),
        None,
        "forwarding stopped with the daemon: {spread:?}"
    );
    // ... and doctor says so: forwarding with frozen health is not a state to leave unnoticed.
    let config = dr.config.display().to_string();
    let doctor = dr.xlb(&["doctor", "--config", &config]);
    let said = String::from_utf8_lossy(&doctor.stdout);
    assert!(
        said.contains("attached to eth0 but no daemon answers"),
        "{said}"
    );
    assert!(
        !doctor.status.success(),
        "an error finding fails doctor: {said}"
    );

    dr.start_daemon();
    assert_eq!(
        xdp_progs_on_eth0(&dr),
        1,
        "exactly one XDP program on eth0 after the restart"
    );
    let after = dr.status_json();
    assert_eq!(after["interfaces"][0]["how"], "adopted", "{after}");
    let conns_after = vs(&after, "vs80")["traffic"]["conns"].as_u64().unwrap();
    assert!(
        conns_after >= conns_before + 30,
        "counters continue: {conns_before} -> {conns_after}"
    );
    let spread = dr.curl(30);
    assert_eq!(spread.get("FAIL"), None, "{spread:?}");

    let results = dr.stream_results(&streams, Duration::from_secs(20));
    assert_eq!(results.len(), 20);
    for s in &results.0 {
        assert_eq!(
            s.state,
            State::Ok,
            "a stream broke across kill -9 and restart: {results:?}"
        );
        assert!(s.server.starts_with("rs"), "{results:?}");
        assert!(s.max_gap_ms < 2000, "stalled {s:?}: {results:?}");
    }
}

/// The mode `ip -d link` shows for eth0 on the director: "native", "generic" or "none".
fn kernel_xdp_mode(dr: &Dr) -> &'static str {
    let out =
        dr.d.lab
            .run_ok(&dr.d.director, &["ip", "link", "show", "eth0"])
            .unwrap();
    if out.contains(" xdpgeneric ") {
        "generic"
    } else if out.contains(" xdp ") {
        "native"
    } else {
        "none"
    }
}

#[test]
fn xdp_mode_change_reattaches_on_restart_and_reload_and_status_shows_the_kernels_mode() {
    xtask::require!(NEEDS);
    let mut dr = Dr::new("d-xdpmode", 2);
    let native = dr.config_text(&[(1, 1), (2, 1)], "");
    let generic = native.replace("xdp_mode = \"native\"", "xdp_mode = \"generic\"");
    assert_ne!(native, generic);
    dr.write_config(&native);
    dr.start_daemon();
    assert_eq!(kernel_xdp_mode(&dr), "native");
    assert_eq!(dr.status_json()["interfaces"][0]["mode"], "native");

    // A restart (kill -9: the pinned native link stays) with the mode changed in the file.
    dr.kill9_daemon();
    dr.write_config(&generic);
    dr.start_daemon();
    assert_eq!(kernel_xdp_mode(&dr), "generic", "{}", dr.daemon_log());
    assert_eq!(xdp_progs_on_eth0(&dr), 1, "one program on eth0");
    let status = dr.status_json();
    assert_eq!(status["interfaces"][0]["mode"], "generic", "{status}");
    assert!(
        dr.daemon_log().contains("xdp_mode changed"),
        "{}",
        dr.daemon_log()
    );
    let spread = dr.curl(20);
    assert_eq!(
        spread.get("FAIL"),
        None,
        "forwarding in generic mode: {spread:?}"
    );

    // A reload back to native.
    dr.write_config(&native);
    let out = dr.ctl("reload", &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(kernel_xdp_mode(&dr), "native");
    assert_eq!(dr.status_json()["interfaces"][0]["mode"], "native");
    let spread = dr.curl(20);
    assert_eq!(
        spread.get("FAIL"),
        None,
        "forwarding in native mode: {spread:?}"
    );
}

/// Pins a fresh per-CPU array of `max_entries` u64 counters at `path` (as an older xlb with
/// fewer counters left it), by the raw bpf(2) calls: aya has no public way to create a map
/// outside an object.
fn pin_percpu_counters(path: &std::path::Path, max_entries: u32) {
    const BPF_MAP_CREATE: libc::c_long = 0;
    const BPF_OBJ_PIN: libc::c_long = 6;
    const BPF_MAP_TYPE_PERCPU_ARRAY: u32 = 6;
    let mut create = [0u32; 32];
    create[..4].copy_from_slice(&[BPF_MAP_TYPE_PERCPU_ARRAY, 4, 8, max_entries]);
    // SAFETY: bpf(2) with a zeroed attribute buffer whose first fields are the map's shape.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_MAP_CREATE,
            create.as_ptr(),
            std::mem::size_of_val(&create),
        )
    };
    assert!(
        fd >= 0,
        "BPF_MAP_CREATE: {}",
        std::io::Error::last_os_error()
    );
    let cpath = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    let mut pin = [0u64; 8];
    pin[0] = cpath.as_ptr() as u64;
    pin[1] = fd as u64;
    // SAFETY: bpf(2) with a pathname pointer that outlives the call and the map's fd.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_OBJ_PIN,
            pin.as_ptr(),
            std::mem::size_of_val(&pin),
        )
    };
    assert_eq!(
        r,
        0,
        "BPF_OBJ_PIN {}: {}",
        path.display(),
        std::io::Error::last_os_error()
    );
    // SAFETY: our own fd; the pin keeps the map.
    unsafe { libc::close(fd as i32) };
}

#[test]
fn an_upgrade_replaces_a_pinned_map_of_another_layout_and_keeps_forwarding() {
    xtask::require!(NEEDS);
    let mut dr = Dr::new("d-upgrade", 2);
    dr.write_config(&dr.config_text(&[(1, 1), (2, 1)], ""));
    dr.start_daemon();
    dr.kill9_daemon();
    // What an older xlb with 21 global counters would have left pinned.
    let stats =
        dr.d.director
            .bpffs()
            .unwrap()
            .join("xlb")
            .join(lb_common::map_names::GLOBAL_STATS);
    std::fs::remove_file(&stats).unwrap();
    pin_percpu_counters(&stats, 21);
    dr.start_daemon();
    let log = dr.daemon_log();
    assert!(
        log.contains("has another layout") && log.contains("GLOBAL_STATS"),
        "{log}"
    );
    assert_eq!(dr.curl(20).get("FAIL"), None);
    let status = dr.status_json();
    let counters = status["counters"].as_object().unwrap();
    assert_eq!(counters.len(), lb_common::stat::COUNT as usize, "{status}");
    assert!(
        status["counters"]["action_tx"].as_u64().unwrap() >= 20,
        "{status}"
    );
}

#[test]
fn reload_keeps_streams_and_new_flows_use_the_new_table() {
    xtask::require!(NEEDS);
    let mut dr = Dr::new("d-reload", 3);
    dr.write_config(&dr.config_text(&[(1, 1), (2, 1)], ""));
    dr.start_daemon();
    let streams = dr.start_streams(20, 6.0);
    std::thread::sleep(Duration::from_secs(1));
    // A broken file is rejected and the running configuration stays.
    dr.write_config("[global]\ninterfaces = [\"eth0\"]\nbogus = 1\n");
    let out = dr.ctl("reload", &[]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(":3:1:"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(dr.curl(10).get("FAIL"), None);
    // Weight change and an added real server.
    dr.write_config(&dr.config_text(&[(1, 1), (2, 3), (3, 1)], ""));
    let out = dr.ctl("reload", &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let spread = dr.curl(100);
    assert_eq!(spread.get("FAIL"), None, "{spread:?}");
    let n = |s: &str| spread.get(s).copied().unwrap_or(0);
    assert!(
        n("rs3") > 0,
        "the added real server gets new flows: {spread:?}"
    );
    assert!(n("rs2") > n("rs1"), "weight 3 beats weight 1: {spread:?}");
    let results = dr.stream_results(&streams, Duration::from_secs(20));
    assert_eq!(results.len(), 20);
    for s in &results.0 {
        assert_eq!(s.state, State::Ok, "{results:?}");
        assert!(
            s.server == "rs1" || s.server == "rs2",
            "streams opened before the reload stay: {results:?}"
        );
    }
    // Warnings do not stop a reload; the daemon logs them with their position.
    let mut warned = dr.config_text(&[(1, 1), (2, 3), (3, 1)], "");
    warned += "\n[[virtual_server]]\nname = \"empty\"\nvip = \"198.18.0.100\"\nport = 8080\nannounce = \"always\"\n";
    dr.write_config(&warned);
    let out = dr.ctl("reload", &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let log = dr.daemon_log();
    assert!(
        log.contains("warning: virtual server `empty` has no real servers"),
        "{log}"
    );
}

#[test]
fn status_counts_match_real_traffic_and_drain_to_zero() {
    xtask::require!(NEEDS);
    let mut dr = Dr::new("d-status", 2);
    dr.write_config(&dr.config_text(&[(1, 1), (2, 1)], "metrics_listen = \"127.0.0.1:9108\""));
    dr.start_daemon();
    let spread = dr.curl(30);
    assert_eq!(spread.get("FAIL"), None);
    let st = dr.status_json();
    let s = vs(&st, "vs80");
    assert_eq!(s["traffic"]["conns"], 30);
    for r in s["reals"].as_array().unwrap() {
        let name = if r["addr"] == "198.18.0.11:80" {
            "rs1"
        } else {
            "rs2"
        };
        let served = spread.get(name).copied().unwrap_or(0) as u64;
        assert_eq!(r["traffic"]["conns"].as_u64().unwrap(), served, "{r}");
        // Every connection was closed by the client: FIN seen, none established.
        assert_eq!(r["active_conns"], 0, "{r}");
        assert_eq!(r["inactive_conns"].as_u64().unwrap(), served, "{r}");
    }
    let text = String::from_utf8(dr.ctl("status", &[]).stdout).unwrap();
    assert!(text.contains(&format!("TCP  {VIP}:80 mh")), "{text}");
    assert!(
        text.contains("  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn"),
        "{text}"
    );
    let rs1 = spread.get("rs1").copied().unwrap_or(0);
    assert!(
        text.contains(&format!(
            "  -> 198.18.0.11:80               Route   1      0          {rs1:<10}"
        )),
        "{text}"
    );
    // /metrics answers from a snapshot published each second: wait for one taken after the requests.
    let want = format!(
        "xlb_real_inactive_connections{{service=\"vs80\",vip=\"{VIP}\",port=\"80\",protocol=\"tcp\",real=\"198.18.0.11:80\"}} {rs1}"
    );
    let scrape = || {
        dr.d.lab
            .run_ok(
                &dr.d.director,
                &["curl", "-sf", "http://127.0.0.1:9108/metrics"],
            )
            .unwrap()
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut metrics = scrape();
    while !metrics.contains(&want) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
        metrics = scrape();
    }
    assert!(metrics.contains(&want), "{metrics}");
    assert!(
        metrics.contains("xlb_service_connections_total{service=\"vs80\""),
        "{metrics}"
    );
    assert!(metrics.contains("xlb_conn_table_size 65536"), "{metrics}");
    let stats = String::from_utf8(dr.ctl("status", &["--stats"]).stdout).unwrap();
    assert!(
        stats.contains("Conns   InPkts  OutPkts  InBytes OutBytes"),
        "{stats}"
    );
    // FIN_WAIT expires after tcp_fin = 5 s: back to 0/0 (the LVS operator's stuck-ActiveConn complaint).
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let st = dr.status_json();
        let total: u64 = vs(&st, "vs80")["reals"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["active_conns"].as_u64().unwrap() + r["inactive_conns"].as_u64().unwrap())
            .sum();
        if total == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "connections did not drain: {st}");
        std::thread::sleep(Duration::from_millis(500));
    }
    let conns = String::from_utf8(dr.ctl("conns", &[]).stdout).unwrap();
    assert!(conns.contains("(0 shown of 0)"), "{conns}");
}

#[test]
fn replies_do_not_cross_the_director_and_stop_detach_cleans_up() {
    xtask::require!(NEEDS, [Need::Binary("tcpdump")]);
    let mut dr = Dr::new("d-dr", 2);
    dr.write_config(&dr.config_text(&[(1, 1), (2, 1)], ""));
    dr.start_daemon();
    // Capture, on the director, every frame sent from the VIP (the real servers' replies).
    let dump =
        dr.d.lab
            .spawn(
                &dr.d.director.clone(),
                &[
                    "timeout", "6", "tcpdump", "-p", "-n", "-i", "eth0", "ip", "and", "src",
                    "host", VIP,
                ],
            )
            .unwrap();
    std::thread::sleep(Duration::from_secs(1));
    let spread = dr.curl(30);
    assert_eq!(spread.get("FAIL"), None, "{spread:?}");
    assert!(spread.len() == 2, "both real servers answer: {spread:?}");
    while dr.d.lab.exited(&dump).unwrap().is_none() {
        std::thread::sleep(Duration::from_millis(200));
    }
    let log = dr.d.lab.log(&dump);
    assert!(
        log.contains("0 packets captured"),
        "replies crossed the director: {log}"
    );

    let out = dr.ctl("stop", &["--detach"]);
    assert!(out.status.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    while xdp_progs_on_eth0(&dr) != 0 {
        assert!(
            Instant::now() < deadline,
            "still attached after stop --detach"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let pins =
        dr.d.lab
            .run_ok(&dr.d.director, &["ls", "/sys/fs/bpf"])
            .unwrap();
    assert!(!pins.contains("xlb"), "pins left: {pins}");
}

#[test]
fn run_fails_clearly_on_a_missing_interface_and_leaves_nothing_pinned() {
    xtask::require!(NEEDS);
    let dr = Dr::new("d-noif", 1);
    let cfg = dr
        .config_text(&[(1, 1)], "")
        .replace("interfaces = [\"eth0\"]", "interfaces = [\"nosuch0\"]");
    dr.write_config(&cfg);
    let config = dr.config.display().to_string();
    let out = dr.xlb(&["run", "--config", &config]);
    assert_eq!(out.status.code(), Some(1));
    let log =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    assert!(log.contains("nosuch0"), "{log}");
    let pins =
        dr.d.lab
            .run_ok(&dr.d.director, &["ls", "/sys/fs/bpf"])
            .unwrap();
    assert!(!pins.contains("xlb"), "pins left behind: {pins}");
}

#[test]
fn ipv6_service_end_to_end() {
    xtask::require!(NEEDS);
    let mut dr = Dr::new("d-v6", 2);
    dr.d.lab
        .run_ok(
            &dr.d.director,
            &[
                "ip",
                "-6",
                "addr",
                "add",
                "2001:db8::100/128",
                "dev",
                "eth0",
                "nodad",
            ],
        )
        .unwrap();
    let cfg = format!(
        "[global]\ninterfaces = [\"eth0\"]\nxdp_mode = \"native\"\nconn_table_size = 4096\ncontrol_socket = \"{}\"\n\n\
         [[virtual_server]]\nname = \"v6\"\nvip = \"2001:db8::100\"\nport = 80\nannounce = \"always\"\n\
         [[virtual_server.real_server]]\naddress = \"2001:db8::11\"\n[[virtual_server.real_server]]\naddress = \"2001:db8::12\"\n",
        dr.socket
    );
    dr.write_config(&cfg);
    dr.start_daemon();
    let spread =
        xtask::lab::dr::curl_spread(&dr.d.lab, &dr.d.client, "http://[2001:db8::100]/", 40)
            .unwrap();
    assert_eq!(spread.get("FAIL"), None, "{spread:?}\n{}", dr.daemon_log());
    assert!(
        spread.contains_key("rs1") && spread.contains_key("rs2"),
        "{spread:?}"
    );
    let st = dr.status_json();
    assert_eq!(vs(&st, "v6")["traffic"]["conns"], 40);
}
