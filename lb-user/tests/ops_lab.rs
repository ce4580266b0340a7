//! `xlb realserver` and `xlb doctor` in namespaced labs (root needed): the real binary runs
//! inside the lab hosts.
use std::process::Output;

use serde_json::Value;
use xtask::lab::{require::Need, Lab, PortOpts};

const XLB: &str = env!("CARGO_BIN_EXE_xlb");

const SYSCTLS: [&str; 5] = [
    "net/ipv4/conf/all/arp_ignore",
    "net/ipv4/conf/lo/arp_ignore",
    "net/ipv4/conf/all/arp_announce",
    "net/ipv4/conf/lo/arp_announce",
    "net/ipv6/conf/lo/disable_ipv6",
];

fn snapshot(lab: &Lab, h: &xtask::lab::Host) -> String {
    let mut s = lab
        .run_ok(h, &["ip", "-o", "addr", "show", "dev", "lo"])
        .unwrap();
    for k in SYSCTLS {
        s += &format!(
            "{k}={}",
            lab.run_ok(h, &["cat", &format!("/proc/sys/{k}")]).unwrap()
        );
    }
    s
}

fn xlb(lab: &Lab, h: &xtask::lab::Host, args: &[&str]) -> Output {
    let mut argv = vec![XLB];
    argv.extend_from_slice(args);
    lab.run(h, &argv).unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn realserver_up_down_restores_prior_state() {
    xtask::require!([Need::Lab]);
    let mut lab = Lab::new("rsupdown").unwrap();
    let lan = lab.segment("lan").unwrap();
    let rs = lab.host("rs").unwrap();
    lab.attach(
        &rs,
        &lan,
        PortOpts {
            addrs: &["198.18.0.20/24"],
            ..Default::default()
        },
    )
    .unwrap();
    // A prior state that is not the kernel default: down must restore it, not zeros.
    lab.sysctl(&rs, "net.ipv4.conf.all.arp_announce", "1")
        .unwrap();
    lab.add_addr(&rs, "lo", "198.18.2.214/32").unwrap();
    let before = snapshot(&lab, &rs);
    let state = lab.dir().join("realserver.json");
    let st = state.to_str().unwrap();
    let vips = ["--vip", "198.18.2.212", "198.18.2.214", "2001:db8:2::212"];

    let o = xlb(&lab, &rs, &[&["realserver", "status"][..], &vips].concat());
    assert_eq!(o.status.code(), Some(1), "not ready yet: {}", text(&o));

    let o = xlb(
        &lab,
        &rs,
        &[&["realserver", "up", "--state-file", st][..], &vips].concat(),
    );
    assert!(o.status.success(), "{}", text(&o));
    let out = text(&o);
    assert!(out.contains("added 198.18.2.212/32 on lo"), "{out}");
    assert!(
        out.contains("added 2001:db8:2::212/128 nodad on lo"),
        "{out}"
    );
    assert!(!out.contains("added 198.18.2.214"), "already there: {out}");
    assert!(
        out.contains("net.ipv4.conf.all.arp_announce 1 -> 2"),
        "{out}"
    );

    let o = xlb(&lab, &rs, &[&["realserver", "status"][..], &vips].concat());
    assert!(o.status.success(), "{}", text(&o));
    let lo = lab
        .run_ok(&rs, &["ip", "-o", "addr", "show", "dev", "lo"])
        .unwrap();
    assert!(
        lo.contains("198.18.2.212/32") && lo.contains("2001:db8:2::212/128"),
        "{lo}"
    );

    // Idempotent.
    let o = xlb(
        &lab,
        &rs,
        &[&["realserver", "up", "--state-file", st][..], &vips].concat(),
    );
    assert!(text(&o).contains("already up"), "{}", text(&o));

    let o = xlb(&lab, &rs, &["realserver", "down", "--state-file", st]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(!state.exists());
    assert_eq!(
        snapshot(&lab, &rs),
        before,
        "down must restore the prior state exactly"
    );
}

fn doctor_json(lab: &Lab, h: &xtask::lab::Host, args: &[&str]) -> (i32, Value) {
    let o = xlb(lab, h, &[&["doctor", "--json"][..], args].concat());
    let v: Value = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("doctor --json: {e}: {}", text(&o)));
    (o.status.code().unwrap(), v)
}

fn finding<'a>(v: &'a Value, severity: &str, check: &str, needle: &str) -> Option<&'a Value> {
    v["findings"].as_array().unwrap().iter().find(|f| {
        f["severity"] == severity
            && f["check"] == check
            && f["detail"].as_str().unwrap().contains(needle)
    })
}

const CONFIG: &str = r#"
[global]
interfaces = ["eth0"]
conn_table_size = 65536

[[virtual_server]]
vip = "198.18.2.212"
port = 80
  [[virtual_server.real_server]]
  address = "198.18.0.20"

[[vrrp_instance]]
name = "VI_1"
state = "MASTER"
interface = "eth0"
virtual_router_id = 51
virtual_ipaddress = ["198.18.2.212/32"]
"#;

#[test]
fn doctor_finds_injected_faults() {
    xtask::require!([Need::Lab, Need::Binary("nft"), Need::Binary("iptables")]);
    let mut lab = Lab::new("doctor").unwrap();
    let lan = lab.segment("lan").unwrap();
    let dir = lab.host("dir").unwrap();
    let rs = lab.host("rs").unwrap();
    lab.attach(
        &dir,
        &lan,
        PortOpts {
            addrs: &["198.18.0.1/24"],
            ..Default::default()
        },
    )
    .unwrap();
    lab.attach(
        &rs,
        &lan,
        PortOpts {
            addrs: &["198.18.0.20/24"],
            ..Default::default()
        },
    )
    .unwrap();
    let cfg = lab.dir().join("xlb.toml");
    std::fs::write(&cfg, CONFIG).unwrap();
    let cfg = cfg.to_str().unwrap();
    lab.sysctl(&dir, "net.ipv4.conf.all.arp_ignore", "1")
        .unwrap();
    lab.sysctl(&dir, "net.ipv4.conf.all.arp_announce", "2")
        .unwrap();

    // Clean director: exit 0; the live gathering sees veth with native XDP.
    let (code, v) = doctor_json(&lab, &dir, &["--config", cfg]);
    assert_eq!(code, 0, "{v:#}");
    assert!(
        finding(
            &v,
            "ok",
            "xdp-driver",
            "eth0: driver veth supports native XDP"
        )
        .is_some(),
        "{v:#}"
    );
    assert!(
        finding(&v, "ok", "vrrp-firewall", "224.0.0.18").is_some(),
        "{v:#}"
    );
    // No daemon in the lab: reported, but only as a warning.
    assert!(
        finding(&v, "warn", "pins", "does not exist").is_some(),
        "{v:#}"
    );

    // nftables dropping the VRRP multicast range.
    for cmd in [
        "add table inet fw",
        "add chain inet fw input { type filter hook input priority 0; policy accept; }",
        "add rule inet fw input ip daddr 224.0.0.0/8 drop",
    ] {
        let mut argv = vec!["nft"];
        argv.extend(cmd.split(' '));
        lab.run_ok(&dir, &argv).unwrap();
    }
    let (code, v) = doctor_json(&lab, &dir, &["--config", cfg]);
    assert_eq!(code, 1, "{v:#}");
    let f = finding(&v, "error", "vrrp-firewall", "split brain").expect("nft drop found");
    assert!(
        f["detail"].as_str().unwrap().contains("inet fw input"),
        "{f:#}"
    );
    lab.run_ok(&dir, &["nft", "delete", "table", "inet", "fw"])
        .unwrap();

    // iptables: default-drop INPUT without an accept for VRRP.
    lab.run_ok(
        &dir,
        &[
            "iptables", "-A", "INPUT", "-p", "tcp", "--dport", "80", "-j", "ACCEPT",
        ],
    )
    .unwrap();
    lab.run_ok(&dir, &["iptables", "-P", "INPUT", "DROP"])
        .unwrap();
    let (code, v) = doctor_json(&lab, &dir, &["--config", cfg]);
    assert_eq!(code, 1, "{v:#}");
    assert!(
        finding(&v, "error", "vrrp-firewall", "policy drop").is_some(),
        "{v:#}"
    );
    lab.run_ok(
        &dir,
        &["iptables", "-I", "INPUT", "-p", "vrrp", "-j", "ACCEPT"],
    )
    .unwrap();
    let (code, v) = doctor_json(&lab, &dir, &["--config", cfg]);
    assert_eq!(code, 0, "VRRP accepted again: {v:#}");

    // Real server: nothing prepared -> VIP missing and ARP sysctls wrong.
    let rsargs = ["--realserver", "--vip", "198.18.2.212"];
    let (code, v) = doctor_json(&lab, &rs, &rsargs);
    assert_eq!(code, 1);
    assert!(
        finding(&v, "error", "realserver-vip", "198.18.2.212 is not on lo").is_some(),
        "{v:#}"
    );
    assert!(
        finding(&v, "error", "realserver-arp", "arp_ignore = 0").is_some(),
        "{v:#}"
    );
    // Prepared -> clean.
    let state = lab.dir().join("rs.json");
    let o = xlb(
        &lab,
        &rs,
        &[
            "realserver",
            "up",
            "--vip",
            "198.18.2.212",
            "--state-file",
            state.to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    let (code, v) = doctor_json(&lab, &rs, &rsargs);
    assert_eq!(code, 0, "{v:#}");
    // arp_ignore back to 0 on all and lo.
    lab.sysctl(&rs, "net.ipv4.conf.all.arp_ignore", "0")
        .unwrap();
    lab.sysctl(&rs, "net.ipv4.conf.lo.arp_ignore", "0").unwrap();
    let (code, v) = doctor_json(&lab, &rs, &rsargs);
    assert_eq!(code, 1);
    assert!(
        finding(&v, "error", "realserver-arp", "all.arp_ignore = 0").is_some(),
        "{v:#}"
    );
    assert!(
        finding(&v, "error", "arp-sysctls", "real server eth0").is_some(),
        "{v:#}"
    );
    lab.sysctl(&rs, "net.ipv4.conf.all.arp_ignore", "1")
        .unwrap();
    lab.sysctl(&rs, "net.ipv4.conf.lo.arp_ignore", "1").unwrap();
    // VIP gone from lo.
    lab.run_ok(&rs, &["ip", "addr", "del", "198.18.2.212/32", "dev", "lo"])
        .unwrap();
    let (code, v) = doctor_json(&lab, &rs, &rsargs);
    assert_eq!(code, 1);
    assert!(
        finding(&v, "error", "realserver-vip", "not on lo").is_some(),
        "{v:#}"
    );
    assert!(
        finding(&v, "ok", "realserver-arp", "all.arp_ignore = 1").is_some(),
        "{v:#}"
    );
}
