//! Day-2 operations through the daemon in a namespaced lab: a real server drained at run time
//! (`xlb real drain`, `xlb ipvsadm -e ... -w 0`) keeps its established flows and gets no new
//! ones; the change is shown, survives a reload and a restart, and is cleared with one command;
//! unknown services and real servers are refused; counters are zeroed with `-Z`. Needs root.
mod common;

use std::time::Duration;

use common::dr::{Dr, NEEDS, VIP};
use xtask::lab::streams::State;

fn real<'a>(status: &'a serde_json::Value, service: &str, addr: &str) -> &'a serde_json::Value {
    let s = status["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == service)
        .unwrap();
    s["reals"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["addr"] == addr)
        .unwrap()
}

/// `xlb real ACTION ARGS... --socket S` (the socket option belongs to the action).
fn real_cmd(dr: &Dr, args: &[&str]) -> std::process::Output {
    let mut argv = vec!["real"];
    argv.extend_from_slice(args);
    argv.extend_from_slice(&["--socket", dr.socket.as_str()]);
    dr.xlb(&argv)
}

fn ok(out: &std::process::Output) -> String {
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn drain_keeps_flows_survives_reload_and_restart_and_clears() {
    xtask::require!(NEEDS);
    let mut dr = Dr::new("o-drain", 2);
    let state_dir = dr.d.lab.dir().join("state");
    let extra = format!("state_dir = \"{}\"", state_dir.display());
    let text = dr.config_text(&[(1, 1), (2, 1)], &extra);
    dr.write_config(&text);
    dr.start_daemon();
    let streams = dr.start_streams(20, 8.0);
    std::thread::sleep(Duration::from_secs(1));

    // ipvsadm's spelling drains rs1 on the stream service; xlb's drains it on vs80.
    let rs1 = "198.18.0.11:80";
    ok(&dr.ctl(
        "ipvsadm",
        &[
            "-e",
            "-t",
            &format!("{VIP}:9000"),
            "-r",
            "198.18.0.11",
            "-w",
            "0",
        ],
    ));
    let said = ok(&real_cmd(&dr, &["drain", "vs80", "198.18.0.11"]));
    assert!(said.contains("drained by operator"), "{said}");
    let st = dr.status_json();
    let r = real(&st, "vs80", rs1);
    assert_eq!(r["effective_weight"], 0, "{r}");
    assert_eq!(r["health"], "drained by operator", "{r}");
    let text_status = ok(&dr.ctl("status", &[]));
    assert!(
        text_status.contains("(drained by operator)"),
        "{text_status}"
    );
    let spread = dr.curl(30);
    assert_eq!(
        spread.get("rs2"),
        Some(&30),
        "new flows avoid the drained server: {spread:?}"
    );

    // A reload and a restart keep the override.
    ok(&dr.ctl("reload", &[]));
    dr.kill9_daemon();
    dr.start_daemon();
    let st = dr.status_json();
    assert_eq!(
        real(&st, "vs80", rs1)["effective_weight"],
        0,
        "after restart: {st}"
    );
    let listed = ok(&real_cmd(&dr, &["list"]));
    assert!(
        listed.contains("vs80") && listed.contains("vs9000"),
        "{listed}"
    );

    // Established flows to the drained server were never broken.
    let results = dr.stream_results(&streams, Duration::from_secs(20));
    assert_eq!(results.count(State::Ok), 20, "{results:?}");
    assert!(
        results.on("rs1") > 0,
        "some streams were on rs1: {results:?}"
    );

    // Mistakes are refused and change nothing.
    let bad = real_cmd(&dr, &["drain", "vs80", "198.18.0.99"]);
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(err.contains("has no real server 198.18.0.99"), "{err}");
    let bad = dr.ctl(
        "ipvsadm",
        &[
            "-e",
            "-t",
            "198.18.0.200:80",
            "-r",
            "198.18.0.11",
            "-w",
            "1",
        ],
    );
    assert!(!bad.status.success());
    let bad = dr.ctl("ipvsadm", &["-A", "-t", "198.18.0.200:80"]);
    assert!(String::from_utf8_lossy(&bad.stderr).contains("configuration file"));

    // A weight, then clear: both real servers take new flows again.
    ok(&real_cmd(&dr, &["weight", "vs80", rs1, "3"]));
    assert_eq!(real(&dr.status_json(), "vs80", rs1)["effective_weight"], 3);
    let said = ok(&real_cmd(&dr, &["clear"]));
    assert!(said.contains("2 operator override(s) cleared"), "{said}");
    assert_eq!(
        ok(&real_cmd(&dr, &["list"])).trim(),
        "no operator overrides"
    );
    let spread = dr.curl(40);
    assert!(
        spread.contains_key("rs1") && spread.contains_key("rs2"),
        "{spread:?}"
    );

    // -Z zeroes the counters; --timeout and -t filter answer like ipvsadm.
    ok(&dr.ctl("ipvsadm", &["-Z"]));
    let st = dr.status_json();
    assert_eq!(real(&st, "vs80", rs1)["traffic"]["conns"], 0, "{st}");
    let t = ok(&dr.ctl("list", &["-ln", "--timeout"]));
    assert!(t.contains("Timeout (tcp tcpfin udp): 900 5 300"), "{t}");
    // A valid file that cannot be fully applied (an interface that does not exist) is reported
    // as partly applied (exit 1), not as rejected; the rest of it is in force.
    let partial = text.replace(
        "interfaces = [\"eth0\"]",
        "interfaces = [\"eth0\", \"xlbnone0\"]",
    );
    assert_ne!(partial, text);
    dr.write_config(&partial);
    let out = dr.ctl("reload", &[]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("xlbnone0") && err.contains("partly applied"),
        "{err}"
    );
    assert_eq!(dr.curl(10).get("FAIL"), None, "eth0 still forwards");
    dr.write_config(&text);
    ok(&dr.ctl("reload", &[]));

    // keepalived's SIGUSR1 / SIGUSR2: dumps beside the control socket, the daemon keeps running.
    let daemon = dr.daemon.as_ref().unwrap();
    dr.d.lab.signal(daemon, libc::SIGUSR1).unwrap();
    dr.d.lab.signal(daemon, libc::SIGUSR2).unwrap();
    let dir = std::path::Path::new(&dr.socket)
        .parent()
        .unwrap()
        .to_path_buf();
    common::dr::wait_until("dumps written", Duration::from_secs(5), || {
        dir.join("xlb.data").exists() && dir.join("xlb.stats").exists()
    });
    let data = std::fs::read_to_string(dir.join("xlb.data")).unwrap();
    assert!(data.contains(&format!("TCP  {VIP}:80 mh")), "{data}");
    let stats = std::fs::read_to_string(dir.join("xlb.stats")).unwrap();
    assert!(stats.contains("counter action_tx"), "{stats}");
    assert!(
        dr.d.lab.exited(daemon).unwrap().is_none(),
        "SIGUSR1/2 must not end the daemon"
    );
    let one = ok(&dr.ctl("ipvsadm", &["-ln", "-t", &format!("{VIP}:80")]));
    assert!(
        one.contains(&format!("TCP  {VIP}:80 mh")) && !one.contains(":9000"),
        "{one}"
    );
}
