//! VRRP interop in namespaced labs: xlb's engine (run inside a lab netns on its own thread and
//! tokio runtime) against real keepalived 2.2 on the peer, v2 and v3, multicast and unicast;
//! malformed adverts crafted from a third host; an IPv6 xlb+xlb pair.
//!
//! Needs root and `keepalived` on PATH. Every scenario builds its own lab; the scenarios of the
//! interop matrix run in parallel threads (they mostly wait on VRRP timers).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::mpsc as std_mpsc;
use std::thread;
use std::time::{Duration, Instant};

use xlb::vrrp::packet::{auth_field, checksum, Advert, IPPROTO_VRRP};
use xlb::vrrp::{InstanceStatus, Vrrp, VrrpRole};
use xtask::lab::{in_named_netns, require::Need, Host, Lab, PortOpts};

const VIP4: &str = "198.18.0.101";
const VIP6: &str = "2001:db8::101";
const PASS: &str = "labpass1";

/// One side's VRRP settings.
#[derive(Clone, Debug)]
struct Side {
    state: &'static str,
    priority: u8,
    version: u8,
    vip: &'static str,
    prefix: u8,
    /// `(unicast_src_ip, unicast_peer)`.
    unicast: Option<(&'static str, &'static str)>,
}

fn xlb_toml(s: &Side) -> String {
    let mut t = format!(
        "[global]\ninterfaces = [\"eth0\"]\n\n[[vrrp_instance]]\nname = \"VI_1\"\n\
         state = \"{}\"\ninterface = \"eth0\"\nvirtual_router_id = 51\npriority = {}\n\
         advert_int = 1.0\nversion = {}\nvirtual_ipaddress = [\"{}/{}\"]\n\
         garp_master_delay = 1.0\ngarp_master_repeat = 2\n",
        s.state, s.priority, s.version, s.vip, s.prefix
    );
    if s.version == 2 {
        t += &format!("authentication = {{ auth_type = \"PASS\", auth_pass = \"{PASS}\" }}\n");
    }
    if let Some((src, peer)) = s.unicast {
        t += &format!("unicast_src_ip = \"{src}\"\nunicast_peer = [\"{peer}\"]\n");
    }
    t
}

fn keepalived_conf(s: &Side) -> String {
    let mut t = format!(
        "global_defs {{\n  router_id lab\n  vrrp_garp_master_delay 1\n  vrrp_garp_master_repeat 2\n}}\n\
         vrrp_instance VI_1 {{\n  state {}\n  interface eth0\n  virtual_router_id 51\n  priority {}\n\
         advert_int 1\n  version {}\n  virtual_ipaddress {{\n    {}/{} dev eth0\n  }}\n",
        s.state, s.priority, s.version, s.vip, s.prefix
    );
    if s.version == 2 {
        t += &format!("  authentication {{\n    auth_type PASS\n    auth_pass {PASS}\n  }}\n");
    }
    if let Some((src, peer)) = s.unicast {
        t += &format!("  unicast_src_ip {src}\n  unicast_peer {{\n    {peer}\n  }}\n");
    }
    t + "}\n"
}

enum Ctl {
    Status(std_mpsc::Sender<Vec<InstanceStatus>>),
    Health(BTreeMap<String, bool>),
    /// `Vrrp::reload` with this TOML; replies with the result.
    Reload(String, std_mpsc::Sender<Result<(), String>>),
    /// Graceful: priority 0, VIPs removed.
    Shutdown,
    /// Like a crash: the runtime is dropped, nothing is sent or cleaned up.
    Crash,
}

/// xlb's VRRP engine running in a lab host, on its own thread and current-thread runtime.
struct Engine {
    ctl: tokio::sync::mpsc::UnboundedSender<Ctl>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Engine {
    fn start(netns: &str, toml: &str) -> Engine {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
        let cfg = xlb::config::parse(toml, "test.toml").expect("valid config");
        let (ctl, mut rx) = tokio::sync::mpsc::unbounded_channel::<Ctl>();
        let (ready_tx, ready_rx) = std_mpsc::channel();
        let netns = netns.to_string();
        let thread = thread::spawn(move || {
            in_named_netns(&netns, move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async move {
                    let (ev_tx, mut ev_rx) = tokio::sync::mpsc::unbounded_channel();
                    let v = Vrrp::start(&cfg, ev_tx, false).await;
                    let mut v = match v {
                        Ok(v) => {
                            ready_tx.send(Ok(())).unwrap();
                            v
                        }
                        Err(e) => {
                            ready_tx.send(Err(format!("{e:#}"))).unwrap();
                            return;
                        }
                    };
                    tokio::spawn(async move { while ev_rx.recv().await.is_some() {} });
                    while let Some(c) = rx.recv().await {
                        match c {
                            Ctl::Status(tx) => {
                                let _ = tx.send(v.status());
                            }
                            Ctl::Health(h) => v.set_service_health(&h),
                            Ctl::Reload(toml, tx) => {
                                let cfg = xlb::config::parse(&toml, "test.toml").unwrap();
                                let r = v.reload(&cfg).await.map_err(|e| format!("{e:#}"));
                                let _ = tx.send(r);
                            }
                            Ctl::Shutdown => {
                                v.shutdown().await;
                                return;
                            }
                            Ctl::Crash => {
                                // No Drop-time resignation either: leak the engine handle.
                                std::mem::forget(v);
                                return;
                            }
                        }
                    }
                });
            })
            .unwrap();
        });
        ready_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("engine start")
            .expect("engine start");
        Engine {
            ctl,
            thread: Some(thread),
        }
    }

    fn status(&self) -> InstanceStatus {
        let (tx, rx) = std_mpsc::channel();
        self.ctl.send(Ctl::Status(tx)).unwrap();
        rx.recv_timeout(Duration::from_secs(5)).unwrap().remove(0)
    }

    fn all(&self) -> Vec<InstanceStatus> {
        let (tx, rx) = std_mpsc::channel();
        self.ctl.send(Ctl::Status(tx)).unwrap();
        rx.recv_timeout(Duration::from_secs(5)).unwrap()
    }

    fn reload(&self, toml: &str) {
        let (tx, rx) = std_mpsc::channel();
        self.ctl.send(Ctl::Reload(toml.to_string(), tx)).unwrap();
        rx.recv_timeout(Duration::from_secs(10)).unwrap().unwrap();
    }

    fn role(&self) -> VrrpRole {
        self.status().role
    }

    fn stop(mut self, how: Ctl) {
        let _ = self.ctl.send(how);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        if let Some(t) = self.thread.take() {
            let _ = self.ctl.send(Ctl::Crash);
            let _ = t.join();
        }
    }
}

fn has_vip(lab: &Lab, h: &Host, vip: &str) -> bool {
    let out = lab
        .run(h, &["ip", "-o", "addr", "show", "dev", "eth0"])
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .any(|w| w.split('/').next() == Some(vip))
}

/// Polls `f` every 20 ms; the time it took to become true, or `None` after `timeout`.
fn wait_for(timeout: Duration, mut f: impl FnMut() -> bool) -> Option<Duration> {
    let t0 = Instant::now();
    while t0.elapsed() < timeout {
        if f() {
            return Some(t0.elapsed());
        }
        thread::sleep(Duration::from_millis(20));
    }
    None
}

/// Checks for `dur` that exactly `owner` (of `a`, `b`) holds the VIP.
fn assert_only_owner(lab: &Lab, owner: &Host, other: &Host, vip: &str, dur: Duration, what: &str) {
    let t0 = Instant::now();
    while t0.elapsed() < dur {
        assert!(
            has_vip(lab, owner, vip),
            "{what}: {} lost {vip}",
            owner.name()
        );
        assert!(
            !has_vip(lab, other, vip),
            "{what}: {} also holds {vip}",
            other.name()
        );
        thread::sleep(Duration::from_millis(100));
    }
}

/// Master_Down_Interval of a priority-100 backup, advert 1 s (v2 and v3 alike at 1 s).
const MDI_100: Duration = Duration::from_nanos(3_609_375_000);

struct Pair {
    lab: Lab,
    a: Host,
    b: Host,
}

fn pair(tag: &str, v6: bool) -> Pair {
    let mut lab = Lab::new(tag).unwrap();
    let seg = lab.segment("lan").unwrap();
    let a = lab.host("a").unwrap();
    let b = lab.host("b").unwrap();
    let (aa, ba): (&[&str], &[&str]) = if v6 {
        (
            &["198.18.0.1/24", "2001:db8::1/64"],
            &["198.18.0.2/24", "2001:db8::2/64"],
        )
    } else {
        (&["198.18.0.1/24"], &["198.18.0.2/24"])
    };
    lab.attach(
        &a,
        &seg,
        PortOpts {
            addrs: aa,
            ..Default::default()
        },
    )
    .unwrap();
    lab.attach(
        &b,
        &seg,
        PortOpts {
            addrs: ba,
            ..Default::default()
        },
    )
    .unwrap();
    Pair { lab, a, b }
}

fn spawn_keepalived(lab: &mut Lab, h: &Host, side: &Side, n: u32) -> xtask::lab::Proc {
    let dir = lab.dir().join(format!("ka-{}-{n}", h.name()));
    std::fs::create_dir_all(&dir).unwrap();
    let conf = dir.join("keepalived.conf");
    std::fs::write(&conf, keepalived_conf(side)).unwrap();
    let s = |p: &str| dir.join(p).to_string_lossy().into_owned();
    let argv = [
        "keepalived".to_string(),
        "-n".into(),
        "-l".into(),
        "-D".into(),
        "-G".into(),
        "-P".into(),
        "-f".into(),
        s("keepalived.conf"),
        "-p".into(),
        s("keepalived.pid"),
        "-r".into(),
        s("vrrp.pid"),
    ];
    let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
    lab.spawn(h, &argv).unwrap()
}

/// Figures of one interop run, printed at the end.
#[derive(Debug, Default)]
struct Figures {
    name: String,
    failover: Duration,
    preempt: Duration,
    handover: Duration,
}

/// xlb MASTER (150) + keepalived BACKUP (100): steady state, crash failover, preemption back,
/// clean handover on shutdown.
fn xlb_master(version: u8, unicast: bool) -> Figures {
    let name = format!(
        "xlb-master v{version} {}",
        if unicast { "unicast" } else { "multicast" }
    );
    let Pair { mut lab, a, b } = pair(&format!("xm{version}{}", unicast as u8), false);
    let x = Side {
        state: "MASTER",
        priority: 150,
        version,
        vip: VIP4,
        prefix: 24,
        unicast: unicast.then_some(("198.18.0.1", "198.18.0.2")),
    };
    let k = Side {
        state: "BACKUP",
        priority: 100,
        unicast: unicast.then_some(("198.18.0.2", "198.18.0.1")),
        ..x.clone()
    };
    let ka = spawn_keepalived(&mut lab, &b, &k, 0);
    let ka_start = Instant::now();
    let eng = Engine::start(a.netns(), &xlb_toml(&x));
    wait_for(Duration::from_secs(4), || has_vip(&lab, &a, VIP4))
        .unwrap_or_else(|| panic!("{name}: xlb never became master\n{}", lab.log(&ka)));
    // Past keepalived's own Master_Down_Interval: it must have accepted our adverts.
    let settle = (MDI_100 + Duration::from_secs(1)).saturating_sub(ka_start.elapsed());
    assert_only_owner(
        &lab,
        &a,
        &b,
        VIP4,
        settle.max(Duration::from_secs(1)),
        &name,
    );
    assert!(
        !lab.log(&ka).contains("Entering MASTER"),
        "{name}: keepalived became master\n{}",
        lab.log(&ka)
    );
    let st = eng.status();
    assert_eq!(st.role, VrrpRole::Master, "{name}");
    assert!(st.adverts_tx >= 2, "{name}: {st:?}");
    assert!(st.bad_adverts.is_empty(), "{name}: {st:?}");

    // Crash: keepalived takes over within Master_Down_Interval + 1 s.
    eng.stop(Ctl::Crash);
    let failover = wait_for(MDI_100 + Duration::from_secs(2), || has_vip(&lab, &b, VIP4))
        .unwrap_or_else(|| panic!("{name}: keepalived did not take over\n{}", lab.log(&ka)));
    assert!(
        failover <= MDI_100 + Duration::from_secs(1),
        "{name}: failover {failover:?}"
    );

    // The higher-priority xlb returns (its stale VIP is removed at start) and preempts.
    let t0 = Instant::now();
    let eng = Engine::start(a.netns(), &xlb_toml(&x));
    wait_for(Duration::from_secs(5), || {
        has_vip(&lab, &a, VIP4) && !has_vip(&lab, &b, VIP4)
    })
    .unwrap_or_else(|| panic!("{name}: no preemption back\n{}", lab.log(&ka)));
    let preempt = t0.elapsed();
    assert_only_owner(&lab, &a, &b, VIP4, Duration::from_millis(1500), &name);
    assert_eq!(eng.role(), VrrpRole::Master);

    // Clean stop: priority 0, keepalived takes over in < 1 s.
    let t0 = Instant::now();
    eng.stop(Ctl::Shutdown);
    assert!(!has_vip(&lab, &a, VIP4), "{name}: VIP left after shutdown");
    wait_for(Duration::from_secs(3), || has_vip(&lab, &b, VIP4))
        .unwrap_or_else(|| panic!("{name}: no handover\n{}", lab.log(&ka)));
    let handover = t0.elapsed();
    assert!(
        handover < Duration::from_secs(1),
        "{name}: handover {handover:?}"
    );
    drop(ka);
    Figures {
        name,
        failover,
        preempt,
        handover,
    }
}

/// keepalived MASTER (150) + xlb BACKUP (100): steady state, SIGKILL failover, preemption back,
/// SIGTERM (priority 0) handover to xlb.
fn keepalived_master(version: u8, unicast: bool) -> Figures {
    let name = format!(
        "keepalived-master v{version} {}",
        if unicast { "unicast" } else { "multicast" }
    );
    let Pair { mut lab, a, b } = pair(&format!("km{version}{}", unicast as u8), false);
    let x = Side {
        state: "BACKUP",
        priority: 100,
        version,
        vip: VIP4,
        prefix: 24,
        unicast: unicast.then_some(("198.18.0.1", "198.18.0.2")),
    };
    let k = Side {
        state: "MASTER",
        priority: 150,
        unicast: unicast.then_some(("198.18.0.2", "198.18.0.1")),
        ..x.clone()
    };
    let eng = Engine::start(a.netns(), &xlb_toml(&x));
    let ka = spawn_keepalived(&mut lab, &b, &k, 0);
    wait_for(Duration::from_secs(6), || has_vip(&lab, &b, VIP4))
        .unwrap_or_else(|| panic!("{name}: keepalived never became master\n{}", lab.log(&ka)));
    assert_only_owner(&lab, &b, &a, VIP4, Duration::from_secs(2), &name);
    let st = eng.status();
    assert_eq!(st.role, VrrpRole::Backup, "{name}");
    assert!(st.adverts_rx >= 1, "{name}: {st:?}");
    assert_eq!(st.last_master, Some("198.18.0.2".parse().unwrap()));
    assert!(st.bad_adverts.is_empty(), "{name}: {st:?}");

    lab.kill(&ka).unwrap();
    let failover = wait_for(MDI_100 + Duration::from_secs(2), || has_vip(&lab, &a, VIP4))
        .unwrap_or_else(|| panic!("{name}: xlb did not take over"));
    assert!(
        failover <= MDI_100 + Duration::from_secs(1),
        "{name}: failover {failover:?}"
    );
    assert_eq!(eng.role(), VrrpRole::Master);

    // keepalived (higher priority) returns and preempts; xlb releases the VIP.
    let t0 = Instant::now();
    let ka = spawn_keepalived(&mut lab, &b, &k, 1);
    wait_for(Duration::from_secs(8), || {
        has_vip(&lab, &b, VIP4) && !has_vip(&lab, &a, VIP4)
    })
    .unwrap_or_else(|| panic!("{name}: no preemption back\n{}", lab.log(&ka)));
    let preempt = t0.elapsed();
    assert_only_owner(&lab, &b, &a, VIP4, Duration::from_millis(1500), &name);
    assert_eq!(eng.role(), VrrpRole::Backup);

    // SIGTERM: keepalived resigns with priority 0; xlb takes over after Skew (< 1 s).
    let t0 = Instant::now();
    lab.signal(&ka, libc::SIGTERM).unwrap();
    wait_for(Duration::from_secs(3), || has_vip(&lab, &a, VIP4))
        .unwrap_or_else(|| panic!("{name}: no handover on SIGTERM\n{}", lab.log(&ka)));
    let handover = t0.elapsed();
    assert!(
        handover < Duration::from_secs(1),
        "{name}: handover {handover:?}"
    );
    eng.stop(Ctl::Shutdown);
    Figures {
        name,
        failover,
        preempt,
        handover,
    }
}

#[test]
fn interop_with_keepalived() {
    xtask::require!([Need::Lab, Need::Binary("keepalived")]);
    let runs: Vec<thread::JoinHandle<Figures>> = [2u8, 3]
        .into_iter()
        .flat_map(|v| [(v, false), (v, true)])
        .flat_map(|(v, u)| {
            [
                thread::spawn(move || xlb_master(v, u)),
                thread::spawn(move || keepalived_master(v, u)),
            ]
        })
        .collect();
    let mut failed = Vec::new();
    for r in runs {
        match r.join() {
            Ok(f) => eprintln!(
                "{:<38} failover {:>5} ms  preempt back {:>5} ms  handover {:>4} ms",
                f.name,
                f.failover.as_millis(),
                f.preempt.as_millis(),
                f.handover.as_millis()
            ),
            Err(p) => failed.push(
                p.downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default(),
            ),
        }
    }
    assert!(
        failed.is_empty(),
        "failed scenarios:\n{}",
        failed.join("\n")
    );
}

/// Sends raw IPv4 datagrams (header included) from inside the current netns.
fn send_raw_v4(src: [u8; 4], dst: [u8; 4], ttl: u8, payload: &[u8]) {
    let mut pkt = vec![0x45, 0, 0, 0, 0, 0, 0x40, 0, ttl, IPPROTO_VRRP, 0, 0];
    pkt.extend_from_slice(&src);
    pkt.extend_from_slice(&dst);
    let len = (pkt.len() + payload.len()) as u16;
    pkt[2..4].copy_from_slice(&len.to_be_bytes());
    let c = checksum(&pkt, None, 0);
    pkt[10..12].copy_from_slice(&c.to_be_bytes());
    pkt.extend_from_slice(payload);
    let s = socket2::Socket::new(
        socket2::Domain::IPV4,
        socket2::Type::RAW,
        Some(socket2::Protocol::from(libc::IPPROTO_RAW)),
    )
    .unwrap();
    s.set_header_included_v4(true).unwrap();
    s.set_multicast_if_v4(&std::net::Ipv4Addr::from(src))
        .unwrap();
    s.bind_device(Some(b"eth0")).unwrap();
    let to: std::net::SocketAddr = (std::net::Ipv4Addr::from(dst), 0).into();
    s.send_to(&pkt, &to.into()).unwrap();
}

#[test]
fn malformed_adverts_are_counted_and_ignored() {
    xtask::require!([Need::Lab]);
    let mut lab = Lab::new("vrrpbad").unwrap();
    let seg = lab.segment("lan").unwrap();
    let a = lab.host("a").unwrap();
    let evil = lab.host("evil").unwrap();
    lab.attach(
        &a,
        &seg,
        PortOpts {
            addrs: &["198.18.0.1/24"],
            ..Default::default()
        },
    )
    .unwrap();
    lab.attach(
        &evil,
        &seg,
        PortOpts {
            addrs: &["198.18.0.9/24"],
            ..Default::default()
        },
    )
    .unwrap();
    let side = Side {
        state: "MASTER",
        priority: 150,
        version: 2,
        vip: VIP4,
        prefix: 24,
        unicast: None,
    };
    let eng = Engine::start(a.netns(), &xlb_toml(&side));
    wait_for(Duration::from_secs(4), || eng.role() == VrrpRole::Master).expect("master");

    let src = [198, 18, 0, 9];
    let mc = [224, 0, 0, 18];
    let mcip: IpAddr = "224.0.0.18".parse().unwrap();
    let srcip: IpAddr = "198.18.0.9".parse().unwrap();
    // A winning advert (priority 254, right auth and interval) unless it is malformed.
    let good = Advert {
        version: 2,
        vrid: 51,
        priority: 254,
        interval_cs: 100,
        auth: Some(auth_field(PASS)),
        addrs: vec![VIP4.parse().unwrap()],
    };
    let enc = |a: &Advert| a.encode(srcip, mcip);
    let mut bad_checksum = enc(&good);
    bad_checksum[6] ^= 0xff;
    let mut bad_version = enc(&good);
    bad_version[0] = 0x41;
    let bad_auth = enc(&Advert {
        auth: Some(auth_field("wrong")),
        ..good.clone()
    });
    let no_auth = enc(&Advert {
        auth: None,
        ..good.clone()
    });
    let other_vrid = enc(&Advert {
        vrid: 52,
        ..good.clone()
    });
    let bad_interval = enc(&Advert {
        interval_cs: 200,
        ..good.clone()
    });
    let v3 = enc(&Advert {
        version: 3,
        auth: None,
        ..good.clone()
    });
    let good_bytes = enc(&good);
    let cases: Vec<(&str, u8, Vec<u8>)> = vec![
        ("ttl", 64, good_bytes.clone()),
        ("checksum", 255, bad_checksum),
        ("version", 255, bad_version),
        ("auth", 255, bad_auth),
        ("auth", 255, no_auth),
        ("vrid", 255, other_vrid),
        ("too_short", 255, good_bytes[..6].to_vec()),
        ("interval", 255, bad_interval),
        // A v3 advert reaching a v2 instance: wrong version for it.
        ("version", 255, v3),
    ];
    lab.in_netns(&evil, || {
        for (_, ttl, bytes) in &cases {
            for _ in 0..3 {
                send_raw_v4(src, mc, *ttl, bytes);
            }
        }
    })
    .unwrap();
    // Give the engine time to (not) react: a valid 254 advert would demote it at once.
    thread::sleep(Duration::from_millis(500));
    let st = eng.status();
    assert_eq!(st.role, VrrpRole::Master, "{st:?}");
    assert_eq!(st.adverts_rx, 0, "{st:?}");
    assert_eq!(st.became_master, 1, "{st:?}");
    for (key, _, _) in &cases {
        assert!(
            st.bad_adverts.get(*key).copied().unwrap_or(0) >= 3,
            "{key} not counted: {:?}",
            st.bad_adverts
        );
    }
    // The last one dropped is kept with its sender (status, doctor).
    let last = st
        .last_bad_advert
        .clone()
        .expect("the last bad advert is kept");
    assert_eq!(
        (last.from, last.reason.as_str()),
        (srcip, "version"),
        "{st:?}"
    );
    assert!(has_vip(&lab, &a, VIP4));

    // Control: the same advert well-formed does demote it (the bad ones did reach it).
    lab.in_netns(&evil, || send_raw_v4(src, mc, 255, &good_bytes))
        .unwrap();
    wait_for(Duration::from_secs(1), || eng.role() == VrrpRole::Backup)
        .expect("a valid higher-priority advert demotes the master");
    let st = eng.status();
    assert_eq!(st.last_master, Some(srcip));
    assert!(!has_vip(&lab, &a, VIP4));
    eng.stop(Ctl::Shutdown);
}

/// IPv6 VRRPv3, xlb + xlb, and xlb + keepalived.
#[test]
fn ipv6_v3_pairs() {
    xtask::require!([Need::Lab, Need::Binary("keepalived")]);
    let xx = thread::spawn(|| {
        let Pair { lab, a, b } = pair("v6xx", true);
        let hi = Side {
            state: "MASTER",
            priority: 150,
            version: 3,
            vip: VIP6,
            prefix: 64,
            unicast: None,
        };
        let lo = Side {
            state: "BACKUP",
            priority: 100,
            ..hi.clone()
        };
        let ea = Engine::start(a.netns(), &xlb_toml(&hi));
        let eb = Engine::start(b.netns(), &xlb_toml(&lo));
        wait_for(Duration::from_secs(4), || has_vip(&lab, &a, VIP6)).expect("v6 master");
        assert_only_owner(&lab, &a, &b, VIP6, Duration::from_secs(2), "ipv6 xlb+xlb");
        let sb = eb.status();
        assert_eq!(sb.role, VrrpRole::Backup);
        assert!(sb.adverts_rx >= 1, "{sb:?}");
        assert!(matches!(sb.last_master, Some(IpAddr::V6(a)) if a.segments()[0] == 0xfe80));
        assert!(sb.bad_adverts.is_empty(), "{sb:?}");
        let t0 = Instant::now();
        ea.stop(Ctl::Shutdown);
        wait_for(Duration::from_secs(3), || has_vip(&lab, &b, VIP6)).expect("v6 handover");
        let handover = t0.elapsed();
        assert!(handover < Duration::from_secs(1), "{handover:?}");
        assert_eq!(eb.role(), VrrpRole::Master);
        eb.stop(Ctl::Shutdown);
        handover
    });
    let xk = thread::spawn(|| {
        let Pair { mut lab, a, b } = pair("v6xk", true);
        let x = Side {
            state: "MASTER",
            priority: 150,
            version: 3,
            vip: VIP6,
            prefix: 64,
            unicast: None,
        };
        let k = Side {
            state: "BACKUP",
            priority: 100,
            ..x.clone()
        };
        let ka = spawn_keepalived(&mut lab, &b, &k, 0);
        let ea = Engine::start(a.netns(), &xlb_toml(&x));
        wait_for(Duration::from_secs(4), || has_vip(&lab, &a, VIP6)).expect("v6 master");
        assert_only_owner(
            &lab,
            &a,
            &b,
            VIP6,
            Duration::from_secs(2),
            "ipv6 xlb+keepalived",
        );
        ea.stop(Ctl::Crash);
        let failover = wait_for(MDI_100 + Duration::from_secs(2), || has_vip(&lab, &b, VIP6))
            .unwrap_or_else(|| panic!("keepalived v6 takeover\n{}", lab.log(&ka)));
        assert!(failover <= MDI_100 + Duration::from_secs(1), "{failover:?}");
        failover
    });
    let h = xx.join().unwrap();
    let f = xk.join().unwrap();
    eprintln!(
        "ipv6 xlb+xlb handover {} ms; xlb->keepalived failover {} ms",
        h.as_millis(),
        f.as_millis()
    );
}

/// Two instances in a sync group on each of two xlb directors; the first tracks a service.
/// The service going below quorum puts VI_1 in FAULT (notify_fault runs), VI_2 follows; the
/// peer takes both VIPs at once (priority 0). Health back: both preempt back together.
#[test]
fn track_service_fault_moves_the_sync_group() {
    xtask::require!([Need::Lab]);
    let Pair { lab, a, b } = pair("vrrpsync", false);
    // A tracked link of its own (no dummy module here): a veth pair inside `a`.
    for cmd in [
        &[
            "ip", "link", "add", "trk0", "type", "veth", "peer", "name", "trk1",
        ][..],
        &["ip", "link", "set", "trk1", "up"],
        &["ip", "link", "set", "trk0", "up"],
    ] {
        lab.run_ok(&a, cmd).unwrap();
    }
    let notify_log = lab.dir().join("notify.log");
    let cfg = |prio: u8, state: &str, notify: bool| {
        // Only `a` has trk0 (and the notify program).
        let notify = if notify {
            format!(
                "track_interface = [\"trk0\"]\n\
                 notify_fault = [\"sh\", \"-c\", \"echo \\\"$*\\\" >> {}\", \"notify\"]\n",
                notify_log.display()
            )
        } else {
            String::new()
        };
        format!(
            "[global]\ninterfaces = [\"eth0\"]\n\n\
             [[virtual_server]]\nvip = \"198.18.0.101\"\nport = 80\nname = \"web\"\n\
             [[virtual_server.real_server]]\naddress = \"198.18.0.11\"\n\n\
             [[vrrp_instance]]\nname = \"VI_1\"\nstate = \"{state}\"\ninterface = \"eth0\"\n\
             virtual_router_id = 51\npriority = {prio}\nvirtual_ipaddress = [\"198.18.0.101/24\"]\n\
             track_service = [\"web\"]\n{notify}\n\
             [[vrrp_instance]]\nname = \"VI_2\"\nstate = \"{state}\"\ninterface = \"eth0\"\n\
             virtual_router_id = 52\npriority = {prio}\nvirtual_ipaddress = [\"198.18.0.102/24\"]\n\n\
             [[vrrp_sync_group]]\nname = \"G\"\ngroup = [\"VI_1\", \"VI_2\"]\n"
        )
    };
    let cfg_a = cfg(150, "MASTER", true);
    let ea = Engine::start(a.netns(), &cfg_a);
    let eb = Engine::start(b.netns(), &cfg(100, "BACKUP", false));
    let both = |h: &Host| has_vip(&lab, h, "198.18.0.101") && has_vip(&lab, h, "198.18.0.102");
    let none = |h: &Host| !has_vip(&lab, h, "198.18.0.101") && !has_vip(&lab, h, "198.18.0.102");
    wait_for(Duration::from_secs(4), || both(&a) && none(&b)).expect("a master of both");

    let t0 = Instant::now();
    let _ = ea
        .ctl
        .send(Ctl::Health(BTreeMap::from([("web".to_string(), false)])));
    wait_for(Duration::from_secs(3), || both(&b) && none(&a)).expect("b takes both");
    let took = t0.elapsed();
    assert!(took < Duration::from_secs(1), "{took:?}");
    let roles = {
        let (tx, rx) = std_mpsc::channel();
        ea.ctl.send(Ctl::Status(tx)).unwrap();
        rx.recv().unwrap()
    };
    assert!(roles.iter().all(|s| s.role == VrrpRole::Fault), "{roles:?}");
    wait_for(Duration::from_secs(2), || {
        std::fs::read_to_string(&notify_log).is_ok_and(|s| s.contains("INSTANCE VI_1 FAULT 150"))
    })
    .expect("notify_fault ran with keepalived's arguments");

    let _ = ea
        .ctl
        .send(Ctl::Health(BTreeMap::from([("web".to_string(), true)])));
    if wait_for(Duration::from_secs(6), || both(&a) && none(&b)).is_none() {
        panic!(
            "a does not preempt both back:\n{:#?}\n{:#?}",
            ea.all(),
            eb.all()
        );
    }

    // Tracked interface down: FAULT (polled every 0.5 s), the peer takes both.
    let t0 = Instant::now();
    lab.run_ok(&a, &["ip", "link", "set", "trk0", "down"])
        .unwrap();
    wait_for(Duration::from_secs(3), || both(&b) && none(&a)).expect("b takes both");
    let took = t0.elapsed();
    assert!(took < Duration::from_millis(1500), "{took:?}");
    lab.run_ok(&a, &["ip", "link", "set", "trk0", "up"])
        .unwrap();
    wait_for(Duration::from_secs(6), || both(&a) && none(&b)).expect("a preempts both back");

    // Reload with the same configuration: nothing moves, counters kept.
    let before = ea.all();
    ea.reload(&cfg_a);
    thread::sleep(Duration::from_millis(300));
    let after = ea.all();
    assert!(both(&a) && none(&b));
    for (x, y) in before.iter().zip(&after) {
        assert_eq!(
            (x.role, x.became_master, x.since),
            (y.role, y.became_master, y.since)
        );
    }
    ea.stop(Ctl::Shutdown);
    eb.stop(Ctl::Shutdown);
}
