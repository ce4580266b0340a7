//! IPVS persistence and connection reuse with the real daemon, from the field report's own
//! keepalived.conf (`tests/data/keepalived/field_report.conf`) through `xlb import-keepalived`:
//! the wrr + `persistence_timeout` VIP keeps one client on one real server whatever its source
//! port, the mh VIP spreads, and a client that reuses its ports has every connection counted.
//! Needs root (a namespaced lab, XDP).
mod common;

use std::{collections::BTreeSet, os::unix::fs::PermissionsExt as _, time::Duration};

use common::dr::{wait_until, Dr, NEEDS, VIP};

/// The field report's second VIP, here the mh one.
const VIP2: &str = "198.18.0.101";

/// The field report's keepalived.conf in lab addresses: VIPs .212/.213 -> [`VIP`]/[`VIP2`], real
/// servers .220/.221 -> rs1/rs2, the MISC_CHECK script in `dir`. The second virtual server is
/// made `mh` without persistence (the field report balances both with wrr + persistence), to
/// show the contrast on the same real servers.
fn field_report_conf(dir: &std::path::Path) -> String {
    let original = std::fs::read_to_string("tests/data/keepalived/field_report.conf").unwrap();
    let script = dir.join("check_iis.sh");
    let lab = original
        .replace("192.168.2.212", VIP)
        .replace("192.168.2.213", VIP2)
        .replace("192.168.2.220", "198.18.0.11")
        .replace("192.168.2.221", "198.18.0.12")
        .replace("/etc/keepalived/check_iis.sh", script.to_str().unwrap());
    let second = format!("virtual_server {VIP2} 80 {{");
    let (head, tail) = lab.split_once(&second).expect("two virtual servers");
    let tail = tail.replacen(
        "lb_algo wrr\n    lb_kind DR\n    persistence_timeout 50\n",
        "lb_algo mh\n    lb_kind DR\n",
        1,
    );
    assert!(
        tail.contains("lb_algo mh"),
        "second virtual server rewritten"
    );
    format!("{head}{second}{tail}")
}

/// The field report's MISC_CHECK, as its notes describe it: the real server's page by host
/// name, exit 0 when it answers.
fn write_check_script(dir: &std::path::Path) {
    let path = dir.join("check_iis.sh");
    std::fs::write(
        &path,
        "#!/bin/sh\ncurl -sf -m 2 -H 'Host: www.example.com' \"http://$1/\" | grep -q '^rs'\n",
    )
    .unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// The imported TOML with this lab's daemon settings (control socket, native XDP, fast sweep).
fn lab_config(imported: &str, dr: &Dr) -> String {
    let mut cfg: toml::Table = toml::from_str(imported).unwrap();
    let global = cfg["global"].as_table_mut().unwrap();
    global.insert("control_socket".into(), dr.socket.clone().into());
    global.insert("xdp_mode".into(), "native".into());
    global.insert("sweep_interval".into(), 0.5.into());
    global.insert("conn_table_size".into(), 65_536.into());
    toml::to_string(&cfg).unwrap()
}

/// A Python client making `n` HTTP/1.0 requests to [`VIP`], each a new connection from one of
/// `ports` local ports in turn (40000..); prints `STATUS PORT` per request.
fn reusing_client(n: usize, ports: usize) -> String {
    format!(
        r#"
import socket, time
for i in range({n}):
    port = 40000 + i % {ports}
    for attempt in range(200):
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("198.18.0.10", port))
            s.settimeout(5)
            s.connect(("{VIP}", 80))
            break
        except OSError:
            s.close()
            time.sleep(0.01)
    s.sendall(b"GET / HTTP/1.0\r\nHost: www.example.com\r\n\r\n")
    reply = b""
    while True:
        chunk = s.recv(4096)
        if not chunk:
            break
        reply += chunk
    s.close()
    print(reply.split(b" ")[1].decode() if reply else "000", port, flush=True)
"#
    )
}

fn service<'a>(status: &'a serde_json::Value, vip: &str) -> &'a serde_json::Value {
    status["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["addr"]["vip"] == vip)
        .unwrap_or_else(|| panic!("no service on {vip}: {status}"))
}

fn conns(status: &serde_json::Value, vip: &str) -> u64 {
    service(status, vip)["traffic"]["conns"].as_u64().unwrap()
}

#[test]
fn field_report_persistence_and_connection_reuse() {
    xtask::require!(NEEDS);
    let mut dr = Dr::without_vip("p-field", 2);
    for rs in dr.d.real_servers.clone() {
        dr.d.lab.add_addr(&rs, "lo", &format!("{VIP2}/32")).unwrap();
    }
    let dir = dr.d.lab.dir().to_path_buf();
    write_check_script(&dir);
    let conf = dir.join("keepalived.conf");
    std::fs::write(&conf, field_report_conf(&dir)).unwrap();
    let imported = dir.join("imported.toml");
    let out = std::process::Command::new(&dr.xlb)
        .arg("import-keepalived")
        .arg(&conf)
        .arg("-o")
        .arg(&imported)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let imported = std::fs::read_to_string(&imported).unwrap();
    assert!(imported.contains("scheduler = \"weighted_round_robin\"\nmaglev_table_size = 65537\npersistence_timeout = 50\n"), "{imported}");
    dr.write_config(&lab_config(&imported, &dr));
    dr.start_daemon();
    // VRRP MASTER (the only speaker) holds both VIPs; the MISC_CHECKs bring the servers up.
    wait_until("both VIPs answering", Duration::from_secs(30), || {
        [VIP, VIP2].iter().all(|vip| {
            let spread =
                xtask::lab::dr::curl_spread(&dr.d.lab, &dr.d.client, &format!("http://{vip}/"), 4)
                    .unwrap();
            !spread.contains_key("FAIL")
        })
    });
    let status = dr.status_json();
    assert_eq!(service(&status, VIP)["scheduler"], "wrr", "{status}");
    assert_eq!(service(&status, VIP)["persistence_timeout"], 50);
    assert_eq!(service(&status, VIP2)["scheduler"], "mh");

    // wrr + persistence: one client, many source ports, one real server.
    let spread =
        xtask::lab::dr::curl_spread(&dr.d.lab, &dr.d.client, &format!("http://{VIP}/"), 30)
            .unwrap();
    assert_eq!(
        spread.len(),
        1,
        "persistent wrr keeps the client on one real: {spread:?}"
    );
    assert!(!spread.contains_key("FAIL"), "{spread:?}");
    let sticky = spread.keys().next().unwrap().clone();
    // mh without persistence: the client's connections spread over both.
    let spread =
        xtask::lab::dr::curl_spread(&dr.d.lab, &dr.d.client, &format!("http://{VIP2}/"), 40)
            .unwrap();
    assert!(
        spread.contains_key("rs1") && spread.contains_key("rs2") && !spread.contains_key("FAIL"),
        "mh spreads: {spread:?}"
    );
    // The template, as ipvsadm -lnc shows it, and its count in status.
    let listing = dr.ctl("conns", &["--client", "198.18.0.10"]);
    let listing = String::from_utf8_lossy(&listing.stdout).to_string();
    let template = listing
        .lines()
        .find(|l| l.contains(" NONE ") && l.contains("198.18.0.10:0"))
        .unwrap_or_else(|| panic!("no template line:\n{listing}"));
    assert!(template.contains(&format!("{VIP}:80")), "{template}");
    assert!(dr.status_json()["persistence_templates"].as_u64().unwrap() >= 1);

    // Connection reuse: 600 connections from 10 client ports, each port reused ~60 times while
    // the director still holds its FIN_WAIT entry (tcp_fin 120 s): every one is counted, all on
    // the sticky real server. The client reads until the server closes (HTTP/1.0), so its side
    // never lingers in TIME_WAIT and the port can be bound again at once.
    let before = dr.status_json();
    let n = 600;
    let out =
        dr.d.lab
            .run_ok(&dr.d.client, &["python3", "-c", &reusing_client(n, 10)])
            .unwrap();
    let (ok, ports): (usize, BTreeSet<u16>) = {
        let mut ok = 0;
        let mut ports = BTreeSet::new();
        for l in out.lines() {
            let (code, port) = l.split_once(' ').unwrap();
            ok += usize::from(code == "200");
            ports.insert(port.parse().unwrap());
        }
        (ok, ports)
    };
    assert_eq!(ok, n, "every request answered:\n{out}");
    assert_eq!(ports.len(), 10, "ports reused: {ports:?}");
    std::thread::sleep(Duration::from_millis(700));
    let after = dr.status_json();
    let counted = conns(&after, VIP) - conns(&before, VIP);
    assert_eq!(
        counted, n as u64,
        "every connection on a reused port counted (conn_reused {} -> {})",
        before["counters"]["conn_reused"], after["counters"]["conn_reused"]
    );
    assert!(after["counters"]["conn_reused"].as_u64().unwrap() >= (n - ports.len()) as u64 / 2);
    let spread =
        xtask::lab::dr::curl_spread(&dr.d.lab, &dr.d.client, &format!("http://{VIP}/"), 5).unwrap();
    assert_eq!(
        spread.keys().collect::<Vec<_>>(),
        [&sticky],
        "still sticky after reuse"
    );

    // The issue's own measurement, with ab: 3,000 connections from a client whose 50 ports are
    // each reused ~60 times (the server closes first, so the client's ports are free at once)
    // through the mh VIP. Every connection is counted in Conns, as IPVS counts them.
    dr.d.lab
        .sysctl(&dr.d.client, "net.ipv4.ip_local_port_range", "40000 40049")
        .unwrap();
    let before = conns(&dr.status_json(), VIP2);
    let n = 3000;
    let out =
        dr.d.lab
            .run_ok(
                &dr.d.client,
                &[
                    "ab",
                    "-q",
                    "-n",
                    &n.to_string(),
                    "-c",
                    "20",
                    &format!("http://{VIP2}/"),
                ],
            )
            .unwrap();
    assert!(
        out.contains(&format!("Complete requests:      {n}")),
        "{out}"
    );
    assert!(out.contains("Failed requests:        0"), "{out}");
    std::thread::sleep(Duration::from_millis(700));
    let counted = conns(&dr.status_json(), VIP2) - before;
    // None lost (before connection reuse: 10 of 600 counted). A few count twice: measured 3,011
    // for 3,000 once; the cause is not pinned down yet (a retransmitted SYN on a reused port
    // whose flow went to the LRU overflow, which has no retransmission check, is the suspect).
    assert!(
        (n as u64..=n as u64 + n as u64 / 100).contains(&counted),
        "ab's {n} connections on reused ports, counted {counted}:\n{out}"
    );
}
