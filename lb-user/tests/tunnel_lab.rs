//! Tunnel mode end to end (root, namespaced lab, xtask's routed topology [`xtask::lab::tun`]):
//! client -> router -> director (xlb) -> router -> two real servers in two other subnets, IPIP
//! and GUE, real HTTP through the VIP. This kernel kind has no ipip/fou modules, so the real
//! servers decapsulate with xlb's own XDP program (`xlb realserver up --tunnel`), not tunl0/FOU.
use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use xtask::lab::{
    dr::curl_spread,
    require::Need,
    tun::{self, TunLab, VIP},
    Proc,
};

const XLB: &str = env!("CARGO_BIN_EXE_xlb");
const NEEDS: &[Need] = &[
    Need::Lab,
    Need::Bpf,
    Need::Binary("ethtool"),
    Need::Binary("python3"),
    Need::Binary("curl"),
];

struct Running {
    t: TunLab,
    socket: String,
    config: String,
    daemon: Option<Proc>,
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(p) = self.daemon.take() {
            let _ = self.t.lab.kill(&p);
        }
        // The real servers' decap links are pinned in each host's private bpffs, removed with
        // the lab.
    }
}

fn out_text(o: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The lab with the daemon forwarding VIP:80 over both real servers with `tunnel`, and each
/// real server prepared with `xlb realserver up --tunnel`.
fn start(tag: &str, tunnel: &str) -> Running {
    start_with(tag, tunnel, &[])
}

/// [`start`] with more arguments to each real server's `xlb realserver up`.
fn start_with(tag: &str, tunnel: &str, rs_args: &[&str]) -> Running {
    let t = tun::build(tag).expect("lab");
    for rs in &t.real_servers {
        // xlb's program even on a kernel with ipip/fou (`auto` would take the kernel's tunnels
        // there): these tests read its status and counters.
        let mut args = vec!["--decap", "xlb"];
        args.extend_from_slice(rs_args);
        tun::realserver_up_with(&t.lab, rs, XLB, tunnel, &[tun::DIRECTOR], &args).unwrap();
    }
    let socket = format!("/run/xlb/{}.sock", t.lab.id());
    let config = t.lab.dir().join("xlb.toml");
    let mut text = format!(
        "[global]\ninterfaces = [\"eth0\"]\nxdp_mode = \"native\"\nconn_table_size = 65536\n\
         control_socket = \"{socket}\"\nsweep_interval = 0.5\n\n\
         [[virtual_server]]\nname = \"web\"\nvip = \"{VIP}\"\nport = 80\nannounce = \"always\"\n\
         forward = \"tunnel\"\ntunnel = \"{tunnel}\"\n\
         [virtual_server.check]\ntype = \"tcp\"\ninterval = 0.5\ntimeout = 0.5\n"
    );
    // The upload test's sink port: a second service over the same real servers.
    text += &format!(
        "[[virtual_server.real_server]]\naddress = \"{}\"\n[[virtual_server.real_server]]\naddress = \"{}\"\n\n\
         [[virtual_server]]\nname = \"sink\"\nvip = \"{VIP}\"\nport = 9000\nannounce = \"always\"\n\
         forward = \"tunnel\"\ntunnel = \"{tunnel}\"\n",
        tun::real_v4(1),
        tun::real_v4(2)
    );
    for i in 1..=2 {
        text += &format!(
            "[[virtual_server.real_server]]\naddress = \"{}\"\n",
            tun::real_v4(i)
        );
    }
    std::fs::write(&config, text).unwrap();
    run_until_both_reals_forward(t, socket, config.display().to_string())
}

/// Starts the daemon on the lab's director; returns once both real servers are alive in the
/// kernel (their checks went through the route).
fn run_until_both_reals_forward(t: TunLab, socket: String, config: String) -> Running {
    let mut r = Running {
        t,
        socket,
        config: config.clone(),
        daemon: None,
    };
    let p =
        r.t.lab
            .spawn(&r.t.director, &[XLB, "run", "--config", &config])
            .unwrap();
    r.daemon = Some(p);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let st = r.status();
        let alive = st["services"][0]["reals"]
            .as_array()
            .map(|v| v.iter().filter(|x| x["forwarding"] == true).count())
            .unwrap_or(0);
        if alive == 2 {
            return r;
        }
        assert!(
            Instant::now() < deadline,
            "real servers not up: {st}\n{}",
            r.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

impl Running {
    /// `n` new connections from the client to `url`: none fails, and both real servers answer.
    fn assert_both_reals_answer(&self, url: &str, n: usize) {
        let spread: BTreeMap<String, usize> =
            curl_spread(&self.t.lab, &self.t.client, url, n).unwrap();
        assert_eq!(spread.get("FAIL"), None, "{spread:?}\n{}", self.log());
        assert!(
            spread.get("rs1").copied().unwrap_or(0) > 0
                && spread.get("rs2").copied().unwrap_or(0) > 0,
            "both real servers answer: {spread:?}"
        );
    }

    fn log(&self) -> String {
        self.daemon
            .as_ref()
            .map(|p| self.t.lab.log(p))
            .unwrap_or_default()
    }

    fn status(&self) -> serde_json::Value {
        let o = self
            .t
            .lab
            .run(
                &self.t.director,
                &[XLB, "status", "--socket", &self.socket, "--json"],
            )
            .unwrap();
        serde_json::from_slice(&o.stdout).unwrap_or(serde_json::Value::Null)
    }

    fn counter(&self, name: &str) -> u64 {
        self.status()["counters"][name].as_u64().unwrap_or(0)
    }

    fn link_packets(&self, host: &xtask::lab::Host, field: &str) -> u64 {
        let s = self
            .t
            .lab
            .run_ok(
                host,
                &["cat", &format!("/sys/class/net/eth0/statistics/{field}")],
            )
            .unwrap();
        s.trim().parse().unwrap()
    }
}

fn http_through_the_vip(tunnel: &str) {
    let r = start(&format!("tun{tunnel}"), tunnel);
    let client_tx0 = r.link_packets(&r.t.client, "tx_packets");
    let client_rx0 = r.link_packets(&r.t.client, "rx_packets");
    let director_rx0 = r.link_packets(&r.t.director, "rx_packets");
    r.assert_both_reals_answer(&format!("http://{VIP}/"), 40);
    assert!(r.counter("tunnelled") > 0);
    // Replies go router -> client: the director received no more frames than the client sent
    // (+ a few for ARP and health checks), while the client received the answers.
    let client_tx = r.link_packets(&r.t.client, "tx_packets") - client_tx0;
    let client_rx = r.link_packets(&r.t.client, "rx_packets") - client_rx0;
    let director_rx = r.link_packets(&r.t.director, "rx_packets") - director_rx0;
    assert!(client_rx >= 40, "client received {client_rx}");
    // Health-check replies (every 0.5 s per real) also arrive at the director.
    assert!(
        director_rx <= client_tx + 200,
        "director received {director_rx} frames, client sent {client_tx}: replies crossed the director?"
    );
    // ipvsadm's Forward column, and doctor's route / MTU check of each tunnelled real.
    let o =
        r.t.lab
            .run(&r.t.director, &[XLB, "status", "--socket", &r.socket])
            .unwrap();
    let text = out_text(&o);
    assert_eq!(text.matches(" Tunnel ").count(), 4, "{text}");
    let o =
        r.t.lab
            .run(&r.t.director, &[XLB, "doctor", "--config", &r.config])
            .unwrap();
    let text = out_text(&o);
    for i in 1..=2 {
        let want = format!(
            "{} ({tunnel}): eth0 via {}",
            tun::real_v4(i),
            tun::ROUTER_DIR
        );
        assert!(text.contains(&want), "doctor: want {want:?} in\n{text}");
    }
    assert!(text.contains("tunnel MTU"), "{text}");
    // The real server side: status sees the decapsulation at work; down removes it.
    let rs = r.t.real_servers[0].clone();
    let state = r.t.lab.dir().join("rs1.json");
    let state = state.to_str().unwrap();
    let o =
        r.t.lab
            .run(
                &rs,
                &[
                    XLB,
                    "realserver",
                    "status",
                    "--vip",
                    VIP,
                    "--state-file",
                    state,
                    "--json",
                ],
            )
            .unwrap();
    let st: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(st["tunnel"]["attached"], true, "{st}");
    assert!(
        st["tunnel"]["counters"]["decapsulated"]
            .as_u64()
            .unwrap_or(0)
            > 0,
        "{st}"
    );
    assert_eq!(st["ready"], true, "{st}");
    let o =
        r.t.lab
            .run(
                &rs,
                &[
                    XLB,
                    "realserver",
                    "down",
                    "--vip",
                    VIP,
                    "--state-file",
                    state,
                ],
            )
            .unwrap();
    assert!(o.status.success(), "{}", out_text(&o));
    let link =
        r.t.lab
            .run_ok(&rs, &["ip", "-d", "link", "show", "eth0"])
            .unwrap();
    assert!(!link.contains("xlb_decap"), "detached: {link}");
    let lo =
        r.t.lab
            .run_ok(&rs, &["ip", "addr", "show", "dev", "lo"])
            .unwrap();
    assert!(!lo.contains(VIP), "VIP removed: {lo}");
}

#[test]
fn http_over_ipip_both_reals_answer_replies_bypass_the_director() {
    xtask::require!(NEEDS);
    http_through_the_vip("ipip");
}

#[test]
fn http_over_gue_both_reals_answer_replies_bypass_the_director() {
    xtask::require!(NEEDS);
    http_through_the_vip("gue");
}

#[test]
fn large_upload_through_a_1500_byte_path_works_by_path_mtu_discovery() {
    xtask::require!(NEEDS);
    // Without advmss on the real servers (it would keep the segments small enough from the
    // start, and nothing would test path MTU discovery).
    let mut r = start_with("tunpmtu", "gue", &["--advmss", "off"]);
    // A sink on both real servers: reads until EOF, answers the byte count.
    let sink = r#"
import socket
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 9000))
s.listen(8)
while True:
    c, _ = s.accept()
    n = 0
    while True:
        b = c.recv(65536)
        if not b:
            break
        n += len(b)
    c.sendall(str(n).encode())
    c.close()
"#;
    for (i, rs) in r.t.real_servers.clone().iter().enumerate() {
        r.t.lab.spawn(rs, &["python3", "-c", sink]).unwrap();
        r.t.lab
            .wait_tcp(
                rs,
                &format!("{}:9000", tun::real_v4(i + 1)),
                Duration::from_secs(10),
            )
            .unwrap();
    }
    let client = r#"
import socket
s = socket.create_connection(("198.18.0.100", 9000), timeout=20)
s.sendall(b"x" * 2000000)
s.shutdown(socket.SHUT_WR)
print(s.recv(100).decode())
"#;
    let out = r.t.lab.run_ok(&r.t.client, &["python3", "-c", client]);
    let out = out.unwrap_or_else(|e| panic!("upload failed: {e}"));
    assert_eq!(out.trim(), "2000000", "every byte arrived");
    // The first full-size segments did not fit once encapsulated: the director answered them.
    assert!(r.counter("too_big_answered") > 0, "{}", r.status());
}

/// A keepalived `lb_kind TUN` configuration, imported with `xlb import-keepalived`, runs the
/// tunnel lab end to end (only the control socket is changed, so parallel labs do not collide).
#[test]
fn keepalived_lb_kind_tun_config_imports_and_runs() {
    xtask::require!(NEEDS);
    let t = tun::build("tunka").expect("lab");
    let dir = t.lab.dir().to_path_buf();
    let conf = dir.join("keepalived.conf");
    std::fs::write(
        &conf,
        format!(
            "virtual_server {VIP} 80 {{\n    delay_loop 1\n    lb_algo mh\n    lb_kind TUN\n    \
             tun_type gue\n    tun_port 6080\n    real_server {} 80 {{\n        TCP_CHECK {{\n            \
             connect_timeout 1\n        }}\n    }}\n    real_server {} 80 {{\n        TCP_CHECK {{\n            \
             connect_timeout 1\n        }}\n    }}\n}}\n",
            tun::real_v4(1),
            tun::real_v4(2)
        ),
    )
    .unwrap();
    let toml_path = dir.join("imported.toml");
    let o = std::process::Command::new(XLB)
        .args(["import-keepalived", conf.to_str().unwrap(), "-o"])
        .arg(&toml_path)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", out_text(&o));
    let socket = format!("/run/xlb/{}.sock", t.lab.id());
    let text = std::fs::read_to_string(&toml_path).unwrap();
    assert!(
        text.contains("forward = \"tunnel\"") && text.contains("tunnel = \"gue\""),
        "{text}"
    );
    let text = text.replace(
        "control_socket = \"/run/xlb/xlb.sock\"",
        &format!("control_socket = \"{socket}\""),
    );
    // keepalived has no interface setting: the import writes eth0, which is this lab's too.
    std::fs::write(&toml_path, text).unwrap();
    for rs in &t.real_servers {
        tun::realserver_up(&t.lab, rs, XLB, "gue", &[tun::DIRECTOR]).unwrap();
    }
    let r = run_until_both_reals_forward(t, socket, toml_path.display().to_string());
    r.assert_both_reals_answer(&format!("http://{VIP}/"), 20);
}

/// The real servers decapsulate with the TC fallback (`--attach tc`, xlb_decap_tc on TC
/// ingress) instead of XDP: HTTP through the VIP reaches both, and status shows the hook.
#[test]
fn http_over_gue_with_tc_decapsulation() {
    xtask::require!(NEEDS);
    let r = start_with("tuntc", "gue", &["--attach", "tc"]);
    r.assert_both_reals_answer(&format!("http://{VIP}/"), 20);
    for (i, rs) in r.t.real_servers.iter().enumerate() {
        let state = r.t.lab.dir().join(format!("rs{}.json", i + 1));
        let args = [
            XLB,
            "realserver",
            "status",
            "--vip",
            VIP,
            "--state-file",
            state.to_str().unwrap(),
            "--json",
        ];
        let o = r.t.lab.run(rs, &args).unwrap();
        let st: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(st["tunnel"]["hook"], "tc", "{st}");
        assert_eq!(st["tunnel"]["attached"], true, "{st}");
        let n = st["tunnel"]["counters"]["decapsulated"].as_u64();
        assert!(n.unwrap_or(0) > 0, "{st}");
        let link =
            r.t.lab
                .run_ok(rs, &["ip", "-d", "link", "show", "eth0"])
                .unwrap();
        assert!(!link.contains("xdp"), "no XDP program on eth0: {link}");
    }
}

/// advmss (`xlb realserver up` default `--advmss auto`): the real servers' SYN-ACKs from the VIP
/// advertise 1500 - 28 (GUE) - 40 = 1432, seen on the wire at the client; their other traffic
/// keeps its MSS (only replies from the VIP take the advmss table); `down` removes it all.
#[test]
fn syn_ack_advertises_an_mss_that_fits_the_tunnel() {
    xtask::require!(NEEDS, [Need::Binary("tcpdump")]);
    let r = start("tunmss", "gue");
    let capture = format!(
        "timeout 20 tcpdump -l -n -v -c 1 -i eth0 'src host {VIP} and tcp[13] & 0x12 = 0x12' \
         > {dir}/synack.txt 2>&1 & sleep 1; curl -s -o /dev/null --max-time 5 http://{VIP}/; wait",
        dir = r.t.lab.dir().display()
    );
    r.t.lab
        .run_ok(&r.t.client, &["sh", "-c", &capture])
        .unwrap();
    let seen = std::fs::read_to_string(r.t.lab.dir().join("synack.txt")).unwrap();
    assert!(seen.contains("mss 1432"), "SYN-ACK's MSS: {seen}");
    let rs = &r.t.real_servers[0];
    let from_vip =
        r.t.lab
            .run_ok(rs, &["ip", "route", "get", tun::CLIENT, "from", VIP])
            .unwrap();
    assert!(from_vip.contains("advmss 1432"), "{from_vip}");
    let other =
        r.t.lab
            .run_ok(rs, &["ip", "route", "get", tun::CLIENT])
            .unwrap();
    assert!(
        !other.contains("advmss"),
        "other traffic unchanged: {other}"
    );
}

/// IPv6 end to end in tunnel mode (before this, ip6ip6 and GUE over IPv6 ran in packet tests
/// only): a VIP6 tunnelled to IPv6 real servers in other subnets, `xlb_decap` on them, both
/// answer, and their SYN-ACKs advertise what fits: 1500 - outer header - 60 (IPv6 + TCP).
fn http_over_ipv6(tunnel: &str, mss: u32) {
    let t = tun::build(&format!("tun6{tunnel}")).expect("lab");
    tun::add_ipv6(&t).unwrap();
    for rs in &t.real_servers {
        let state = t.lab.dir().join(format!("{}.json", rs.name()));
        let argv = [
            XLB,
            "realserver",
            "up",
            "--vip",
            tun::VIP6,
            "--tunnel",
            tunnel,
            "--director",
            tun::DIRECTOR6,
            "--interface",
            "eth0",
            "--decap",
            "xlb",
            "--state-file",
            state.to_str().unwrap(),
        ];
        let o = t.lab.run(rs, &argv).unwrap();
        assert!(o.status.success(), "{}", out_text(&o));
    }
    let socket = format!("/run/xlb/{}.sock", t.lab.id());
    let config = t.lab.dir().join("xlb.toml");
    let mut text = format!(
        "[global]\ninterfaces = [\"eth0\"]\nxdp_mode = \"native\"\nconn_table_size = 65536\n\
         control_socket = \"{socket}\"\n\n\
         [[virtual_server]]\nname = \"web6\"\nvip = \"{vip}\"\nport = 80\nannounce = \"always\"\n\
         forward = \"tunnel\"\ntunnel = \"{tunnel}\"\n\
         [virtual_server.check]\ntype = \"tcp\"\ninterval = 0.5\ntimeout = 0.5\n",
        vip = tun::VIP6
    );
    for i in 1..=2 {
        text += &format!(
            "[[virtual_server.real_server]]\naddress = \"{}\"\n",
            tun::real_v6(i)
        );
    }
    std::fs::write(&config, text).unwrap();
    let r = run_until_both_reals_forward(t, socket, config.display().to_string());
    let url = format!("http://[{}]/", tun::VIP6);
    r.assert_both_reals_answer(&url, 30);
    assert!(r.counter("tunnelled") >= 30, "{}", r.counter("tunnelled"));
    // A SYN-ACK from the VIP (IPv6 header 40 bytes, no extension headers: TCP flags at 53).
    let capture = format!(
        "timeout 20 tcpdump -l -n -v -c 1 -i eth0 'src host {vip} and ip6[53] & 0x12 = 0x12' \
         > {dir}/synack.txt 2>&1 & sleep 1; curl -s -o /dev/null --max-time 5 {url}; wait",
        vip = tun::VIP6,
        dir = r.t.lab.dir().display()
    );
    r.t.lab
        .run_ok(&r.t.client, &["sh", "-c", &capture])
        .unwrap();
    let seen = std::fs::read_to_string(r.t.lab.dir().join("synack.txt")).unwrap();
    assert!(
        seen.contains(&format!("mss {mss}")),
        "SYN-ACK's MSS: {seen}"
    );
}

#[test]
fn http_over_ip6ip6_to_ipv6_real_servers_with_their_mss() {
    xtask::require!(NEEDS, [Need::Binary("tcpdump")]);
    http_over_ipv6("ipip", 1500 - 40 - 60);
}

#[test]
fn http_over_gue_over_ipv6_with_its_mss() {
    xtask::require!(NEEDS, [Need::Binary("tcpdump")]);
    http_over_ipv6("gue", 1500 - 48 - 60);
}

/// Everything `xlb realserver up --tunnel` may change on a real server, as text: links (with
/// XDP), addresses, policy rules, every routing table, the sysctls, the pins (TC links).
fn real_server_state(r: &Running, rs: &xtask::lab::Host) -> String {
    let mut out = String::new();
    for argv in [
        &["ip", "-d", "link", "show"][..],
        &["ip", "addr", "show"],
        &["ip", "rule", "show"],
        &["ip", "-6", "rule", "show"],
        &["ip", "route", "show", "table", "all"],
        &["ip", "-6", "route", "show", "table", "all"],
        &["sh", "-c", "ls -R /sys/fs/bpf/ 2>&1"],
    ] {
        out += &format!(
            "$ {}\n{}",
            argv.join(" "),
            r.t.lab.run_ok(rs, argv).unwrap()
        );
    }
    let conf = "net.ipv4.conf";
    for key in ["arp_ignore", "arp_announce", "rp_filter"] {
        for dev in ["all", "lo", "eth0"] {
            let k = format!("{conf}.{dev}.{key}");
            out += &r.t.lab.run_ok(rs, &["sysctl", &k]).unwrap();
        }
    }
    out +=
        &r.t.lab
            .run_ok(rs, &["sysctl", "net.ipv6.conf.lo.disable_ipv6"])
            .unwrap();
    out
}

/// `xlb realserver VERB --vip VIP --state-file ... EXTRA` on the lab's first real server (its
/// state file as `start` wrote it).
fn first_real_server_cli(r: &Running, verb: &str, extra: &[&str]) -> std::process::Output {
    let rs = &r.t.real_servers[0];
    let state = r.t.lab.dir().join(format!("{}.json", rs.name()));
    let mut argv = vec![XLB, "realserver", verb, "--vip", VIP, "--state-file"];
    argv.push(state.to_str().unwrap());
    argv.extend_from_slice(extra);
    r.t.lab.run(rs, &argv).unwrap()
}

/// `down` restores exactly what was there before `up`, with either hook: the real server's
/// links, addresses, rules, routes, sysctls and pins, byte-compared; `status` after `down`
/// says not ready.
#[test]
fn realserver_down_restores_exactly_the_prior_state() {
    xtask::require!(NEEDS);
    let r = start("tundown", "ipip");
    let rs = r.t.real_servers[0].clone();
    let rs_cmd = |verb: &str, extra: &[&str]| first_real_server_cli(&r, verb, extra);
    let o = rs_cmd("down", &[]);
    assert!(o.status.success(), "{}", out_text(&o));
    let before = real_server_state(&r, &rs);
    for hook in ["xdp", "tc"] {
        let o = rs_cmd(
            "up",
            &[
                "--tunnel",
                "gue",
                "--director",
                tun::DIRECTOR,
                "--interface",
                "eth0",
                "--attach",
                hook,
            ],
        );
        assert!(o.status.success(), "{}", out_text(&o));
        let during = real_server_state(&r, &rs);
        assert_ne!(during, before, "{hook}: up changed something");
        let o = rs_cmd("status", &[]);
        assert!(
            o.status.success(),
            "{hook}: ready after up: {}",
            out_text(&o)
        );
        let o = rs_cmd("down", &[]);
        assert!(o.status.success(), "{}", out_text(&o));
        let after = real_server_state(&r, &rs);
        assert_eq!(
            after, before,
            "{hook}: down restored the state byte for byte"
        );
        let o = rs_cmd("status", &[]);
        assert!(
            !o.status.success(),
            "{hook}: not ready after down: {}",
            out_text(&o)
        );
    }
}

/// `up` says who decapsulates and why. This kernel has no ipip/fou modules: `auto` falls back
/// to xlb's program naming what is missing (module, then the kernel's refusal of the ipip link
/// over rtnetlink), and `--decap kernel` fails clearly, leaving no tunnel link behind. On a
/// kernel with the modules the same test checks that the kernel's link is made instead.
#[test]
fn realserver_says_which_decapsulation_it_chose_and_why() {
    xtask::require!(NEEDS);
    let r = start("tunwho", "ipip");
    let rs = r.t.real_servers[0].clone();
    let run = |verb: &str, extra: &[&str]| first_real_server_cli(&r, verb, extra);
    let tunnel = [
        "--tunnel",
        "ipip",
        "--director",
        tun::DIRECTOR,
        "--interface",
        "eth0",
    ];
    assert!(run("down", &[]).status.success());
    let kernel_has_ipip = std::path::Path::new("/sys/module/ipip").exists();
    let o = run("up", &tunnel);
    let text = out_text(&o);
    assert!(o.status.success(), "{text}");
    if kernel_has_ipip {
        assert!(
            text.contains("decapsulation: the kernel's tunnels"),
            "{text}"
        );
        assert!(text.contains("created xlbt0"), "{text}");
    } else {
        assert!(
            text.contains("decapsulation: xlb's program (auto: "),
            "{text}"
        );
        assert!(text.contains("/sys/module/ipip absent"), "{text}");
        assert!(
            text.contains("rtnetlink refused the ipip link xlbt0"),
            "the kernel was asked anyway: {text}"
        );
    }
    assert!(run("down", &[]).status.success());
    if !kernel_has_ipip {
        let mut args = tunnel.to_vec();
        args.extend(["--decap", "kernel"]);
        let o = run("up", &args);
        let text = out_text(&o);
        assert!(!o.status.success(), "{text}");
        assert!(text.contains("--decap kernel: "), "{text}");
        let links = r.t.lab.run_ok(&rs, &["ip", "link", "show"]).unwrap();
        assert!(!links.contains("xlbt"), "{links}");
        assert!(run("down", &[]).status.success());
    }
}
