//! Observability as an SRE meets it: the metric names and types (`promtool check metrics`), the
//! shipped alert rules (`promtool check rules`) and dashboard (every query names a metric xlb
//! exports), and, in a lab with the real daemon under traffic (root): a live scrape through
//! promtool, the status page in headless Chromium showing a stopped real server as down, and the
//! log records on journald's native protocol with their priorities and fields.
mod common;

use std::{
    collections::BTreeSet,
    io::Write as _,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Duration,
};

use common::dr::{wait_until, Dr, NEEDS, VIP};
use xlb::metrics::{process, render, Format};
use xtask::lab::require::Need;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn promtool() -> Option<PathBuf> {
    ["/usr/local/bin/promtool", "/usr/bin/promtool"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

/// A snapshot with one of everything, so that every family has series.
fn full_snapshot() -> xlb::status::StatusReport {
    let counters: serde_json::Map<String, serde_json::Value> = lb_common::stat::NAMES
        .iter()
        .map(|n| (n.to_string(), 1.into()))
        .collect();
    let real = |addr: &str, up: bool| {
        serde_json::json!({
            "addr": addr, "weight": 1, "effective_weight": 1, "forwarding": up,
            "health": if up { "up" } else { "down: refused" },
            "active_conns": 3, "inactive_conns": 1,
            "traffic": {"conns": 5, "packets": 50, "bytes": 500},
            "rates": {"cps": 1.0, "pps": 10.0, "bps": 100.0},
            "check": {"results": {"ok": 10, "refused": 2}, "last_duration_secs": 0.01,
                      "duration_sum_secs": 0.2}
        })
    };
    let v = serde_json::json!({
        "version": "0.1.0", "config_file": "/etc/xlb/xlb.toml",
        "conn_table_size": 65536, "conn_table_entries": 10, "maglev_capacity": 1048576,
        "interfaces": [{"name": "eth0", "ifindex": 2, "mode": "native", "how": "attached"}],
        "services": [{
            "name": "web", "addr": {"vip": "198.18.0.100", "port": 80, "protocol": "tcp"},
            "scheduler": "mh", "persistence_timeout": 0, "active": true, "role": "always",
            "quorum_up": true, "sorry_server": null,
            "traffic": {"conns": 10, "packets": 100, "bytes": 1000},
            "rates": {"cps": 2.0, "pps": 20.0, "bps": 200.0},
            "reals": [real("198.18.0.11:80", true), real("198.18.0.12:80", false)]
        }],
        "vrrp": [{
            "name": "VI_1", "state": "MASTER", "vrid": 51, "interface": "eth0", "priority": 150,
            "effective_priority": 150, "last_master": null, "adverts_rx": 0, "adverts_tx": 37,
            "bad_adverts": {"auth": 3}, "transitions": 2, "last_bad_advert": null
        }],
        "counters": counters,
        "config_load": {"successful": true, "at_unix": 1764590000.0},
        "sweep_duration_secs": 0.002,
        "recent_transitions": [],
        "sync": {
            "director_id": 1, "messages_sent": 40, "records_sent": 400, "messages_received": 38,
            "records_received": 380, "dropped": {"bad_mac": 2}, "unnamed": {"unknown_real": 1},
            "events_stale": 0, "rate_limited": 0, "synced_written": 300, "own_kept": 3,
            "peers": [2, 3], "socket_open": true
        }
    });
    serde_json::from_value(v).expect("a StatusReport")
}

/// Names of the samples in a text exposition.
fn sample_names(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(str::to_string)
        .collect()
}

/// Metric names a PromQL expression refers to (ours: `xlb_*`, `process_*`).
fn metric_names(expr: &str) -> Vec<String> {
    let re = regex::Regex::new(r"\b((?:xlb|process)_[a-z0-9_]+)\b").unwrap();
    re.captures_iter(expr).map(|c| c[1].to_string()).collect()
}

fn promtool_check_metrics(text: &str) -> (bool, String) {
    let mut child = Command::new(promtool().expect("promtool"))
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let msg = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), msg)
}

#[test]
fn rendered_metrics_pass_promtool() {
    xtask::require!([Need::Binary("promtool")]);
    let text = render(&full_snapshot(), &process::read(), Format::Text);
    let (ok, msg) = promtool_check_metrics(&text);
    assert!(ok, "promtool check metrics: {msg}\n{text}");
}

#[test]
fn alert_rules_pass_promtool_and_name_exported_metrics() {
    let rules = repo().join("configs/prometheus/xlb-rules.yml");
    let text = std::fs::read_to_string(&rules).unwrap();
    let exported = sample_names(&render(&full_snapshot(), &process::read(), Format::Text));
    let exprs: Vec<&str> = text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("expr:"))
        .collect();
    assert!(exprs.len() >= 9, "rules: {exprs:?}");
    for expr in exprs {
        for name in metric_names(expr) {
            assert!(
                exported.contains(&name),
                "rule `{expr}` names {name}, not exported"
            );
        }
    }
    for alert in [
        "XlbRealServerDown",
        "XlbServiceQuorumLost",
        "XlbNoVrrpMaster",
        "XlbTwoVrrpMasters",
        "XlbConnTableNearlyFull",
        "XlbNoRealServerDrops",
        "XlbFloodGuardEngaged",
        "XlbScrapeDown",
        "XlbConfigReloadFailed",
        "XlbSyncSocketDown",
        "XlbSyncMessagesRejected",
    ] {
        assert!(text.contains(&format!("alert: {alert}")), "{alert} missing");
    }
    xtask::require!([Need::Binary("promtool")]);
    let promtool = promtool().expect("promtool");
    let out = Command::new(promtool)
        .args(["check", "rules"])
        .arg(&rules)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn dashboard_queries_name_exported_metrics() {
    let path = repo().join("configs/grafana/xlb.json");
    let dash: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).expect("valid JSON");
    let exported = sample_names(&render(&full_snapshot(), &process::read(), Format::Text));
    let mut queries = 0;
    for panel in dash["panels"].as_array().unwrap() {
        for t in panel["targets"].as_array().into_iter().flatten() {
            let expr = t["expr"].as_str().unwrap();
            let names = metric_names(expr);
            assert!(!names.is_empty(), "query names no xlb metric: {expr}");
            for name in names {
                assert!(
                    exported.contains(&name),
                    "panel {:?}: {name} is not exported",
                    panel["title"]
                );
            }
            queries += 1;
        }
    }
    assert!(queries >= 15, "{queries} queries");
}

// ---------------------------------------------------------------------------------------------
// The lab

const CHROMIUM_FLAGS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
];
const METRICS: &str = "127.0.0.1:9108";

/// journald's native protocol: `KEY=value\n` fields, or `KEY\n<u64 LE length><bytes>\n`.
fn parse_journal_datagram(d: &[u8]) -> std::collections::BTreeMap<String, String> {
    let mut fields = std::collections::BTreeMap::new();
    let mut i = 0;
    while i < d.len() {
        let Some(nl) = d[i..].iter().position(|b| *b == b'\n') else {
            break;
        };
        let line = &d[i..i + nl];
        if let Some(eq) = line.iter().position(|b| *b == b'=') {
            let k = String::from_utf8_lossy(&line[..eq]).into_owned();
            fields.insert(k, String::from_utf8_lossy(&line[eq + 1..]).into_owned());
            i += nl + 1;
        } else {
            let k = String::from_utf8_lossy(line).into_owned();
            let start = i + nl + 1;
            let Some(len) = d.get(start..start + 8) else {
                break;
            };
            let len = u64::from_le_bytes(len.try_into().unwrap()) as usize;
            let v = d.get(start + 8..start + 8 + len).unwrap_or_default();
            fields.insert(k, String::from_utf8_lossy(v).into_owned());
            i = start + 8 + len + 1;
        }
    }
    fields
}

/// Chromium in the director's namespace: the page's DOM after its first refreshes.
fn dump_dom(dr: &Dr, profile: &Path) -> String {
    let mut argv: Vec<String> = vec!["chromium".into()];
    argv.extend(CHROMIUM_FLAGS.iter().map(|s| s.to_string()));
    argv.push(format!("--user-data-dir={}", profile.display()));
    argv.push("--virtual-time-budget=3000".into());
    argv.push("--dump-dom".into());
    argv.push(format!("http://{METRICS}/"));
    let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
    let argv = [&["timeout", "60"][..], &argv].concat();
    String::from_utf8_lossy(&dr.d.lab.run(&dr.d.director, &argv).unwrap().stdout).into_owned()
}

fn screenshot(dr: &Dr, profile: &Path, out: &Path) {
    let mut argv: Vec<String> = vec!["timeout".into(), "60".into(), "chromium".into()];
    argv.extend(CHROMIUM_FLAGS.iter().map(|s| s.to_string()));
    argv.push(format!("--user-data-dir={}", profile.display()));
    // Ten refreshes in the browser's virtual time. They run within about one real second, so
    // they see one or two daemon snapshots: the sparklines in the screenshot are nearly flat.
    argv.push("--virtual-time-budget=10000".into());
    argv.push("--window-size=1400,820".into());
    argv.push(format!("--screenshot={}", out.display()));
    argv.push(format!("http://{METRICS}/"));
    let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
    let o = dr.d.lab.run(&dr.d.director, &argv).unwrap();
    assert!(
        out.exists(),
        "no screenshot: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// The status page shows each director's health view side by side: headless Chromium against
/// the daemon's own HTTP endpoint (`metrics::serve` on loopback, no lab needed) serving a
/// snapshot in which two peers sent views.
#[test]
fn status_page_shows_the_directors_health_views() {
    use std::{collections::BTreeMap, sync::Arc};
    use xlb::health::views::{HealthViews, PeerView, RealViews};
    xtask::require!([Need::Binary("chromium")]);
    let peer = |state: &str, failures| PeerView {
        state: state.into(),
        failures,
        age_ms: 400,
    };
    let mut snapshot = full_snapshot();
    snapshot.health_views = Some(HealthViews {
        director_id: Some(1),
        peers: vec![2, 3],
        reals: vec![
            RealViews {
                service: "web".into(),
                real: "198.18.0.11:80".parse().unwrap(),
                local: "down".into(),
                verdict: "suspect".into(),
                detail: "suspect: no new flows until a peer confirms".into(),
                peers: BTreeMap::from([("2".into(), peer("up", 0)), ("3".into(), peer("down", 3))]),
            },
            RealViews {
                service: "web".into(),
                real: "198.18.0.12:80".parse().unwrap(),
                local: "up".into(),
                verdict: "healthy".into(),
                detail: "healthy".into(),
                peers: BTreeMap::from([("2".into(), peer("up", 0))]),
            },
        ],
    });
    // A free loopback port (the endpoint binds its own listener).
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (_keep, snapshots) = tokio::sync::watch::channel(Arc::new(snapshot));
    runtime.spawn(xlb::metrics::serve(addr, snapshots));
    wait_until("the endpoint listens", Duration::from_secs(5), || {
        std::net::TcpStream::connect(addr).is_ok()
    });
    let profile = std::env::temp_dir().join(format!("xlb-obs-views-{}", std::process::id()));
    let mut chromium = Command::new("timeout");
    chromium.args(["60", "chromium"]).args(CHROMIUM_FLAGS);
    chromium.arg(format!("--user-data-dir={}", profile.display()));
    chromium.args([
        "--virtual-time-budget=3000",
        "--dump-dom",
        &format!("http://{addr}/"),
    ]);
    let out = chromium.output().unwrap();
    let _ = std::fs::remove_dir_all(&profile);
    let dom = String::from_utf8_lossy(&out.stdout);
    // The section shows, with a column per director.
    assert!(dom.contains("<section id=\"health-views\">"), "{dom}");
    for th in ["<th>dir 1 (here)</th>", "<th>dir 2</th>", "<th>dir 3</th>"] {
        assert!(dom.contains(th), "{th}: {dom}");
    }
    // Each director's view in its own cell; a peer that sent none for a real shows "-".
    let row = |real: &str| {
        let start = dom.find(&format!("data-view=\"web {real}\"")).expect(real);
        &dom[start..start + dom[start..].find("</tr>").unwrap()]
    };
    let suspect = row("198.18.0.11:80");
    assert!(suspect.contains("data-verdict=\"suspect\""), "{suspect}");
    assert!(suspect.contains("data-peer=\"2\">up</td>"), "{suspect}");
    assert!(suspect.contains("data-peer=\"3\">down</td>"), "{suspect}");
    assert!(
        suspect.contains("title=\"received 0.4 s ago, 3 failures\""),
        "{suspect}"
    );
    let healthy = row("198.18.0.12:80");
    assert!(healthy.contains("data-peer=\"3\">-</td>"), "{healthy}");
}

fn http(dr: &Dr, args: &[&str]) -> String {
    let mut argv = vec!["curl", "-sS", "-m", "5"];
    argv.extend_from_slice(args);
    dr.d.lab.run_ok(&dr.d.director, &argv).unwrap()
}

/// Starts `xlb run` with journald's native socket replaced by `sock` (a private mount namespace
/// puts it at /run/systemd/journal/socket) and JOURNAL_STREAM naming its stderr, as systemd would.
fn start_daemon_under_journal(dr: &mut Dr, sock: &Path) {
    let script = format!(
        "set -e; mount -t tmpfs tmpfs /run/systemd; mkdir /run/systemd/journal; \
         touch /run/systemd/journal/socket; mount --bind {sock} /run/systemd/journal/socket; \
         export JOURNAL_STREAM=$(stat -L -c %d:%i /proc/self/fd/2); \
         exec {xlb} run --config {cfg}",
        sock = sock.display(),
        xlb = dr.xlb,
        cfg = dr.config.display()
    );
    let d = dr.d.director.clone();
    let p =
        dr.d.lab
            .spawn(
                &d,
                &[
                    "unshare",
                    "--mount",
                    "--propagation",
                    "private",
                    "sh",
                    "-c",
                    &script,
                ],
            )
            .unwrap();
    dr.daemon = Some(p);
    wait_until("the daemon answers", Duration::from_secs(20), || {
        dr.ctl("status", &[]).status.success()
    });
}

fn lab_config(dr: &Dr) -> String {
    let check = "[virtual_server.check]\ntype = \"tcp\"\ninterval = 0.5\ntimeout = 0.5\nfall = 1\nrise = 2\n";
    let cfg = dr.config_text(
        &[(1, 1), (2, 1)],
        &format!("metrics_listen = \"{METRICS}\""),
    );
    // The check on vs80 only (the first service).
    cfg.replacen(
        "announce = \"always\"\n",
        &format!("announce = \"always\"\n{check}"),
        1,
    )
}

#[test]
fn live_director_metrics_page_and_journal() {
    xtask::require!(NEEDS, [Need::Binary("chromium"), Need::Binary("promtool")]);
    let mut dr = Dr::new("obs", 2);
    dr.write_config(&lab_config(&dr));
    let sock = dr.d.lab.dir().join("journal.sock");
    let journal = std::os::unix::net::UnixDatagram::bind(&sock).unwrap();
    start_daemon_under_journal(&mut dr, &sock);
    // Traffic: streams (ActiveConn) and a bounded loop of short requests (CPS).
    let streams = dr.start_streams(10, 25.0);
    let client = dr.d.client.clone();
    let loop_ =
        format!("for i in $(seq 300); do curl -s -m 1 http://{VIP}/ >/dev/null; sleep 0.05; done");
    dr.d.lab.spawn(&client, &["sh", "-c", &loop_]).unwrap();
    wait_until(
        "both real servers carry flows",
        Duration::from_secs(10),
        || {
            let st = dr.status_json();
            st["services"][0]["reals"]
                .as_array()
                .unwrap()
                .iter()
                .all(|r| r["traffic"]["conns"].as_u64() > Some(0))
        },
    );
    std::thread::sleep(Duration::from_secs(2)); // a snapshot with traffic in it

    // A live scrape passes promtool; OpenMetrics on request; HEAD and /-/healthy answered.
    let scrape = http(&dr, &[&format!("http://{METRICS}/metrics")]);
    let (ok, msg) = promtool_check_metrics(&scrape);
    assert!(ok, "promtool check metrics on a live scrape: {msg}");
    assert!(
        scrape.contains("xlb_xdp_actions_total{action=\"tx\"}"),
        "{scrape}"
    );
    let om = http(
        &dr,
        &[
            "-H",
            "Accept: application/openmetrics-text; version=1.0.0",
            &format!("http://{METRICS}/metrics"),
        ],
    );
    assert!(om.ends_with("# EOF\n"), "{om}");
    let head = http(&dr, &["-I", &format!("http://{METRICS}/metrics")]);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert_eq!(http(&dr, &[&format!("http://{METRICS}/-/healthy")]), "OK\n");
    let json: serde_json::Value =
        serde_json::from_str(&http(&dr, &[&format!("http://{METRICS}/status.json")])).unwrap();
    assert_eq!(
        json["services"][0]["name"],
        dr.status_json()["services"][0]["name"]
    );

    // The page shows both real servers up, then rs2 down once it stops answering.
    let profile = dr.d.lab.dir().join("chromium");
    let dom = dump_dom(&dr, &profile);
    assert!(
        dom.contains("data-real=\"vs80 198.18.0.12:80\" data-state=\"up\""),
        "{dom}"
    );
    let rs2 = dr.d.real_servers[1].clone();
    dr.d.lab
        .run_ok(&rs2, &["nft", "add table inet xlbobs; add chain inet xlbobs input { type filter hook input priority 0; }; add rule inet xlbobs input tcp dport 80 reject with tcp reset"])
        .unwrap();
    let mut dom = String::new();
    let took = wait_until("the page shows rs2 down", Duration::from_secs(40), || {
        dom = dump_dom(&dr, &profile);
        dom.contains("data-real=\"vs80 198.18.0.12:80\" data-state=\"down\"")
    });
    println!(
        "status page showed the stopped real server down {:.1} s after it stopped (check \
         0.5 s + timeout 0.5 s, snapshot 1 s, page refresh 1 s, a browser start per try)",
        took.as_secs_f64()
    );
    assert!(dom.contains("down: refused"), "{dom}");
    let shot = dr.d.lab.dir().join("status-page.png");
    screenshot(&dr, &profile, &shot);
    if std::env::var_os("XLB_SAVE_SCREENSHOT").is_some() {
        std::fs::copy(&shot, repo().join("docs/status-page.png")).unwrap();
    }
    let scrape = http(&dr, &[&format!("http://{METRICS}/metrics")]);
    assert!(scrape.contains("xlb_real_up{service=\"vs80\",vip=\"198.18.0.100\",port=\"80\",protocol=\"tcp\",real=\"198.18.0.12:80\"} 0"), "{scrape}");
    let _ = dr.stream_results(&streams, Duration::from_secs(40));
    check_journal(&journal, &dr);
}

/// The daemon's records on journald's native protocol: priorities, fields, one line per
/// transition, keepalived's phrases; nothing on stderr (no duplicate, no own timestamp).
fn check_journal(journal: &std::os::unix::net::UnixDatagram, dr: &Dr) {
    journal.set_nonblocking(true).unwrap();
    let mut records = Vec::new();
    let mut buf = vec![0u8; 65536];
    while let Ok(n) = journal.recv(&mut buf) {
        if n > 0 {
            records.push(parse_journal_datagram(&buf[..n]));
        }
    }
    let msg = |r: &std::collections::BTreeMap<String, String>| {
        r.get("MESSAGE").cloned().unwrap_or_default()
    };
    let all: Vec<String> = records
        .iter()
        .map(|r| {
            format!(
                "{} {}",
                r.get("PRIORITY").map(String::as_str).unwrap_or("?"),
                msg(r)
            )
        })
        .collect();
    let running = records
        .iter()
        .find(|r| msg(r).contains("xlb is running"))
        .unwrap_or_else(|| panic!("{all:#?}"));
    assert_eq!(running.get("PRIORITY").map(String::as_str), Some("6"));
    assert_eq!(
        running.get("SYSLOG_IDENTIFIER").map(String::as_str),
        Some("xlb")
    );
    let down: Vec<_> = records
        .iter()
        .filter(|r| {
            msg(r).contains("Removing service [198.18.0.12]:tcp:80 from VS [198.18.0.100]:tcp:80")
        })
        .collect();
    assert_eq!(down.len(), 1, "one line per transition: {all:#?}");
    let d = down[0];
    assert_eq!(d.get("PRIORITY").map(String::as_str), Some("4"), "{d:?}");
    assert!(
        msg(d).contains("TCP connection to [198.18.0.12]:tcp:80 failed (refused)"),
        "{d:?}"
    );
    assert_eq!(d.get("SERVICE").map(String::as_str), Some("vs80"), "{d:?}");
    assert_eq!(
        d.get("REAL").map(String::as_str),
        Some("198.18.0.12:80"),
        "{d:?}"
    );
    assert_eq!(
        d.get("REASON").map(String::as_str),
        Some("refused"),
        "{d:?}"
    );
    let stderr = dr.daemon_log();
    assert!(
        !stderr.contains("Removing service"),
        "logged twice (journal and stderr): {stderr}"
    );
}

fn vrrp_config(socket: &str, state: &str, priority: u8, pass: &str, extra: &str) -> String {
    format!(
        "[global]\ninterfaces = [\"eth0\"]\nxdp_mode = \"native\"\nconn_table_size = 65536\n\
         control_socket = \"{socket}\"\n{extra}\n\n\
         [[vrrp_instance]]\nname = \"VI_1\"\nstate = \"{state}\"\ninterface = \"eth0\"\n\
         virtual_router_id = 51\npriority = {priority}\nadvert_int = 1.0\n\
         authentication = {{ auth_type = \"PASS\", auth_pass = \"{pass}\" }}\n\
         virtual_ipaddress = [\"{VIP}/24\"]\n\n\
         [[virtual_server]]\nname = \"vs80\"\nvip = \"{VIP}\"\nport = 80\n\
         [[virtual_server.real_server]]\naddress = \"198.18.0.11\"\n"
    )
}

fn has_vip(dr: &Dr, h: &xtask::lab::Host) -> bool {
    dr.d.lab
        .run_ok(h, &["ip", "-4", "addr", "show", "dev", "eth0"])
        .unwrap()
        .contains(&format!("{VIP}/24"))
}

/// The issue's split brain: the peer's auth_pass differs, so each director drops the other's
/// adverts and both become MASTER. The drop is a WARN line naming the sender (rate-limited),
/// counted by reason in the metrics (every reason from 0), and `xlb doctor` fails naming it.
#[test]
fn password_mismatch_is_warned_counted_and_fails_doctor() {
    xtask::require!(NEEDS);
    let mut dr = Dr::without_vip("obs-auth", 1);
    let dir2 = dr.d.lab.host("dir2").unwrap();
    let lan = dr.d.lan.clone();
    let opts = xtask::lab::PortOpts {
        addrs: &["198.18.0.3/24"],
        xdp_peer_pass: true,
        tx_checksum_off: true,
        ..Default::default()
    };
    dr.d.lab.attach(&dir2, &lan, opts).unwrap();
    let dir = dr.d.lab.dir().to_path_buf();
    let id = dr.d.lab.id().to_string();
    let (s1, s2) = (
        format!("/run/xlb/{id}-1.sock"),
        format!("/run/xlb/{id}-2.sock"),
    );
    let (c1, c2) = (dir.join("xlb1.toml"), dir.join("xlb2.toml"));
    let metrics = format!("metrics_listen = \"{METRICS}\"");
    std::fs::write(&c1, vrrp_config(&s1, "MASTER", 150, "labpass1", &metrics)).unwrap();
    std::fs::write(&c2, vrrp_config(&s2, "BACKUP", 100, "otherpw", "")).unwrap();
    let d1 = dr.d.director.clone();
    let mut procs = Vec::new();
    for (host, cfg, sock) in [(&d1, &c1, &s1), (&dir2, &c2, &s2)] {
        let cfg = cfg.display().to_string();
        procs.push(
            dr.d.lab
                .spawn(host, &[&dr.xlb, "run", "--config", &cfg])
                .unwrap(),
        );
        wait_until("the daemon answers", Duration::from_secs(20), || {
            let argv = [dr.xlb.as_str(), "status", "--socket", sock];
            dr.d.lab.run(host, &argv).unwrap().status.success()
        });
    }
    wait_until(
        "both directors MASTER (split brain)",
        Duration::from_secs(15),
        || has_vip(&dr, &d1) && has_vip(&dr, &dir2),
    );

    let cfg1 = c1.display().to_string();
    let out =
        dr.d.lab
            .run(&d1, &[&dr.xlb, "doctor", "--config", &cfg1, "--json"])
            .unwrap();
    assert!(
        !out.status.success(),
        "doctor must fail on a split brain by password"
    );
    let all: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let list = all
        .as_array()
        .cloned()
        .or_else(|| all["findings"].as_array().cloned())
        .unwrap();
    let bad = list
        .iter()
        .find(|f| f["check"] == "vrrp-bad-adverts")
        .unwrap_or_else(|| panic!("{all:#}"));
    assert_eq!(bad["severity"], "error", "{bad}");
    let detail = bad["detail"].as_str().unwrap();
    assert!(
        detail.contains("auth x") && detail.contains("198.18.0.3"),
        "{detail}"
    );

    let scrape = http(&dr, &[&format!("http://{METRICS}/metrics")]);
    let value = |series: &str| -> Option<u64> {
        scrape
            .lines()
            .find_map(|l| l.strip_prefix(series))
            .and_then(|v| v.trim().parse().ok())
    };
    let auth = value("xlb_vrrp_bad_adverts_total{vrrp_instance=\"VI_1\",reason=\"auth\"}");
    assert!(auth.is_some_and(|n| n >= 3), "{scrape}");
    assert_eq!(
        value("xlb_vrrp_bad_adverts_total{vrrp_instance=\"VI_1\",reason=\"ttl\"}"),
        Some(0)
    );
    assert_eq!(
        value("xlb_vrrp_state{vrrp_instance=\"VI_1\",state=\"MASTER\"}"),
        Some(1)
    );
    assert_eq!(
        value("xlb_vrrp_state{vrrp_instance=\"VI_1\",state=\"BACKUP\"}"),
        Some(0)
    );

    // The log names the sender and the cause, once per 30 s however many adverts arrive.
    let log = dr.d.lab.log(&procs[0]);
    let warned: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("bad VRRP advert from 198.18.0.3 dropped: authentication mismatch"))
        .collect();
    assert!(!warned.is_empty(), "{log}");
    assert!(
        warned[0].contains("WARN") && warned[0].contains("split brain"),
        "{log}"
    );
    assert!(
        (warned.len() as u64) < auth.unwrap_or(0),
        "not rate-limited: {} lines for {auth:?} adverts\n{log}",
        warned.len()
    );
    assert!(log.contains("(VI_1) Entering MASTER STATE"), "{log}");
}

/// `[sync]` naming an interface that is not there (yet): the daemon starts and forwards
/// anyway, `xlb status` says why sync has no socket, the task opens it once the interface
/// appears; a reload to an absent interface says so in its answer, and is retried the same way.
#[test]
fn sync_socket_that_cannot_open_is_reported_and_retried() {
    xtask::require!(NEEDS);
    let mut dr = Dr::new("synsk", 1);
    let key = dr.d.lab.dir().join("sync.key");
    std::fs::write(&key, "observability sync key, 16+ bytes\n").unwrap();
    let base = dr.config_text(&[(1, 1)], "");
    let config = |iface: &str| {
        base.clone()
            + &format!(
                "\n[sync]\ndirector_id = 1\nkey_file = \"{}\"\npeers = [\"198.18.0.3\"]\n\
                 interface = \"{iface}\"\n",
                key.display()
            )
    };
    let socket_state = |dr: &Dr| {
        let st = dr.status_json();
        let sync = &st["sync"];
        (
            sync["socket_open"].as_bool(),
            sync["socket_error"].as_str().map(str::to_string),
        )
    };
    let add_link = |dr: &Dr, name: &str| {
        let peer = format!("{name}p");
        let argv = [
            "ip", "link", "add", name, "type", "veth", "peer", "name", &peer,
        ];
        dr.d.lab.run_ok(&dr.d.director, &argv).unwrap();
    };

    // Start with the interface missing.
    dr.write_config(&config("xlbsync0"));
    dr.start_daemon();
    let (open, error) = socket_state(&dr);
    assert_eq!(open, Some(false), "{error:?}");
    assert!(
        error.as_deref().unwrap_or("").contains("No such device"),
        "{error:?}"
    );
    let text = String::from_utf8_lossy(&dr.ctl("status", &[]).stdout).into_owned();
    assert!(
        text.contains("Sync director 1: socket NOT open (sync socket on port"),
        "{text}"
    );
    assert_eq!(
        dr.curl(6).get("FAIL"),
        None,
        "forwarding without a sync socket"
    );
    add_link(&dr, "xlbsync0");
    wait_until("the task opens the socket", Duration::from_secs(12), || {
        socket_state(&dr) == (Some(true), None)
    });

    // A reload to another absent interface: the answer names the error; retried likewise.
    dr.write_config(&config("xlbsync1"));
    let out = dr.ctl("reload", &[]);
    let answer = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "{answer}");
    assert!(
        answer.contains("sync socket on port") && answer.contains("No such device"),
        "{answer}"
    );
    wait_until(
        "status shows the socket closed",
        Duration::from_secs(5),
        || socket_state(&dr).0 == Some(false),
    );
    add_link(&dr, "xlbsync1");
    wait_until(
        "the task opens the new socket",
        Duration::from_secs(12),
        || socket_state(&dr) == (Some(true), None),
    );
    assert!(
        dr.daemon_log().contains("connection sync socket open"),
        "{}",
        dr.daemon_log()
    );
    assert_eq!(dr.curl(6).get("FAIL"), None, "forwarding after the reload");
}
