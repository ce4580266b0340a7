//! VRRP tracking against real keepalived 2.2.7, in namespaced labs: both directors run the same
//! keepalived.conf (state and priority aside) with a `vrrp_script` and `track_script`; xlb runs
//! what `xlb import-keepalived` makes of it (its VRRP engine on a thread inside its lab host).
//!
//! - keepalived MASTER tracks a process (a `sleep` through its pid file, `pgrep -F`): the
//!   process dies, keepalived's priority drops below xlb's, xlb takes the VIP (a client's ARP
//!   entry for the VIP moves to xlb's MAC); the process is back, keepalived takes it back.
//! - xlb MASTER tracks a script (a flag file); it fails, keepalived takes over; it recovers,
//!   xlb takes back. xlb's generic `notify` program records keepalived's argument order. Then
//!   xlb's `track_file` reads 254 (times weight -1: FAULT), keepalived takes over; 0, back.
//! - xlb alone: `virtual_ipaddress_excluded` held but not advertised, gratuitous ARP bursts,
//!   refresh and spacing seen by tcpdump on a client.
//!
//! Needs root, `keepalived` and `tcpdump` on PATH.

use std::path::{Path, PathBuf};
use std::sync::mpsc as std_mpsc;
use std::thread;
use std::time::{Duration, Instant};

use xlb::import::keepalived::{self, Options};
use xlb::vrrp::track::Status;
use xlb::vrrp::{InstanceStatus, Vrrp, VrrpRole};
use xtask::lab::{in_named_netns, require::Need, Host, Lab, PortOpts};

const VIP: &str = "198.18.0.101";

/// One director's keepalived.conf: the template both sides share.
/// `extra`: more lines of the vrrp_instance block.
fn keepalived_conf(router: &str, state: &str, priority: u8, script: &str, extra: &str) -> String {
    format!(
        "global_defs {{\n  router_id {router}\n  script_user root\n  vrrp_garp_master_delay 1\n  \
         vrrp_garp_master_repeat 2\n}}\n\
         vrrp_script chk_service {{\n  script \"{script}\"\n  interval 1\n  timeout 2\n  \
         weight -60\n  rise 2\n  fall 2\n}}\n\
         vrrp_instance VI_1 {{\n  state {state}\n  interface eth0\n  virtual_router_id 61\n  \
         priority {priority}\n  advert_int 1\n  authentication {{\n    auth_type PASS\n    \
         auth_pass labpass1\n  }}\n  virtual_ipaddress {{\n    {VIP}/24 dev eth0\n  }}\n  \
         track_script {{\n    chk_service\n  }}\n{extra}}}\n"
    )
}

enum Ctl {
    Status(std_mpsc::Sender<(Vec<InstanceStatus>, xlb::vrrp::track::TrackStates)>),
    Shutdown,
}

/// xlb's VRRP engine (with its trackers) inside a lab host, on its own thread and runtime.
struct Engine {
    ctl: tokio::sync::mpsc::UnboundedSender<Ctl>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Engine {
    /// Imports `conf` as `xlb import-keepalived` does and runs the result.
    fn start_imported(netns: &str, conf_path: &Path) -> Engine {
        let opts = Options {
            config_id: "lab".into(),
            includes_within: None,
        };
        let imported = keepalived::import_file(conf_path, &opts).expect("import");
        let toml = imported.to_toml().expect("toml");
        let cfg = xlb::config::parse(&toml, "imported.toml")
            .unwrap_or_else(|e| panic!("the import does not validate: {e}\n{toml}"));
        assert_eq!(cfg.vrrp_scripts.len(), 1, "{toml}");
        assert_eq!(cfg.vrrp_instances[0].track_script.len(), 1, "{toml}");
        Engine::start(netns, cfg)
    }

    /// Runs xlb's own configuration.
    fn start_toml(netns: &str, toml: &str) -> Engine {
        let cfg = xlb::config::parse(toml, "test.toml").expect("valid config");
        Engine::start(netns, cfg)
    }

    fn start(netns: &str, cfg: xlb::config::Config) -> Engine {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
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
                    let v = match Vrrp::start(&cfg, ev_tx, false).await {
                        Ok(v) => {
                            ready_tx.send(Ok(())).unwrap();
                            v
                        }
                        Err(e) => {
                            ready_tx.send(Err(format!("{e:#}"))).unwrap();
                            return;
                        }
                    };
                    // The daemon's side: tables are "applied" at once.
                    tokio::spawn(async move {
                        while let Some(xlb::vrrp::VrrpEvent::RoleChanged { applied, .. }) =
                            ev_rx.recv().await
                        {
                            if let Some(a) = applied {
                                let _ = a.send(());
                            }
                        }
                    });
                    while let Some(c) = rx.recv().await {
                        match c {
                            Ctl::Status(tx) => {
                                let _ = tx.send((v.status(), v.track_states()));
                            }
                            Ctl::Shutdown => break,
                        }
                    }
                    v.shutdown().await;
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

    fn status(&self) -> (InstanceStatus, Status) {
        let (tx, rx) = std_mpsc::channel();
        self.ctl.send(Ctl::Status(tx)).unwrap();
        let (mut st, track) = rx.recv_timeout(Duration::from_secs(5)).unwrap();
        let script = track
            .scripts
            .get("chk_service")
            .copied()
            .unwrap_or(Status::Init);
        (st.remove(0), script)
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        let _ = self.ctl.send(Ctl::Shutdown);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn has_vip(lab: &Lab, h: &Host) -> bool {
    let out = lab
        .run(h, &["ip", "-o", "addr", "show", "dev", "eth0"])
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .any(|w| w.split('/').next() == Some(VIP))
}

/// Polls `f` every 50 ms; the time it took to become true, or `None` after `timeout`.
fn wait_for(timeout: Duration, mut f: impl FnMut() -> bool) -> Option<Duration> {
    let t0 = Instant::now();
    while t0.elapsed() < timeout {
        if f() {
            return Some(t0.elapsed());
        }
        thread::sleep(Duration::from_millis(50));
    }
    None
}

/// The MAC the client reaches the VIP at, after pinging it (the VIP answers).
fn vip_answered_by(lab: &Lab, client: &Host) -> Option<[u8; 6]> {
    let ping = lab
        .run(client, &["ping", "-c", "1", "-W", "1", VIP])
        .unwrap();
    if !ping.status.success() {
        return None;
    }
    let out = lab.run(client, &["ip", "neigh", "show", VIP]).unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut words = text.split_whitespace();
    words
        .find(|w| *w == "lladdr")
        .and(words.next())
        .and_then(xtask::lab::parse_mac)
}

/// Until `timeout`: the VIP is on `owner` only and a client's ping is answered from its MAC.
fn wait_owner(lab: &Lab, owner: &Host, other: &Host, client: &Host, timeout: Duration) -> bool {
    let mac = lab.mac(owner, "eth0").unwrap();
    wait_for(timeout, || {
        has_vip(lab, owner) && !has_vip(lab, other) && vip_answered_by(lab, client) == Some(mac)
    })
    .is_some()
}

struct Trio {
    lab: Lab,
    /// xlb.
    a: Host,
    /// keepalived.
    b: Host,
    client: Host,
}

fn trio(tag: &str) -> Trio {
    let mut lab = Lab::new(tag).unwrap();
    let seg = lab.segment("lan").unwrap();
    let a = lab.host("a").unwrap();
    let b = lab.host("b").unwrap();
    let client = lab.host("c").unwrap();
    for (h, addr) in [
        (&a, "198.18.0.1/24"),
        (&b, "198.18.0.2/24"),
        (&client, "198.18.0.3/24"),
    ] {
        lab.attach(
            h,
            &seg,
            PortOpts {
                addrs: &[addr],
                ..Default::default()
            },
        )
        .unwrap();
    }
    Trio { lab, a, b, client }
}

fn write_conf(lab: &Lab, name: &str, text: &str) -> PathBuf {
    let dir = lab.dir().join(name);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("keepalived.conf");
    std::fs::write(&path, text).unwrap();
    path
}

fn spawn_keepalived(lab: &mut Lab, h: &Host, conf: &Path) -> xtask::lab::Proc {
    let dir = conf.parent().unwrap();
    let s = |p: &str| dir.join(p).to_string_lossy().into_owned();
    let conf = conf.to_string_lossy().into_owned();
    let (pid, vrrp_pid) = (s("keepalived.pid"), s("vrrp.pid"));
    let argv = [
        "keepalived",
        "-n",
        "-l",
        "-D",
        "-G",
        "-P",
        "-f",
        &conf,
        "-p",
        &pid,
        "-r",
        &vrrp_pid,
    ];
    lab.spawn(h, &argv).unwrap()
}

/// Starts a `sleep` in `h` and writes its pid into `pidfile`.
fn start_tracked_process(lab: &mut Lab, h: &Host, pidfile: &Path) -> xtask::lab::Proc {
    let p = lab.spawn(h, &["sleep", "100000"]).unwrap();
    std::fs::write(pidfile, format!("{}\n", p.pid)).unwrap();
    p
}

#[test]
fn keepalived_master_loses_its_process_xlb_takes_over() {
    xtask::require!([Need::Lab, Need::Binary("keepalived"), Need::Binary("pgrep")]);
    let Trio {
        mut lab,
        a,
        b,
        client,
    } = trio("vtrk-proc");
    let pid_a = lab.dir().join("a-service.pid");
    let pid_b = lab.dir().join("b-service.pid");
    let _svc_a = start_tracked_process(&mut lab, &a, &pid_a);
    let svc_b = start_tracked_process(&mut lab, &b, &pid_b);
    let script = |p: &Path| format!("/usr/bin/pgrep -F {}", p.display());
    let conf_b = write_conf(
        &lab,
        "ka-b",
        &keepalived_conf("dir-b", "MASTER", 150, &script(&pid_b), ""),
    );
    let conf_a = write_conf(
        &lab,
        "xlb-a",
        &keepalived_conf("dir-a", "BACKUP", 120, &script(&pid_a), ""),
    );
    let ka = spawn_keepalived(&mut lab, &b, &conf_b);
    assert!(
        wait_owner(&lab, &b, &a, &client, Duration::from_secs(10)),
        "keepalived did not become MASTER\n{}",
        lab.log(&ka)
    );
    let eng = Engine::start_imported(a.netns(), &conf_a);
    assert!(
        wait_for(Duration::from_secs(10), || {
            let (st, script) = eng.status();
            st.role == VrrpRole::Backup && script == Status::Up && st.effective_priority == 120
        })
        .is_some(),
        "xlb: not BACKUP at 120 with its script up: {:?}",
        eng.status()
    );
    // Steady: keepalived (150) keeps the VIP.
    thread::sleep(Duration::from_secs(2));
    assert!(has_vip(&lab, &b) && !has_vip(&lab, &a));

    // keepalived's process dies: its script fails twice (fall 2), priority 150 - 60 = 90 < 120.
    let t0 = Instant::now();
    lab.kill(&svc_b).unwrap();
    assert!(
        wait_owner(&lab, &a, &b, &client, Duration::from_secs(20)),
        "xlb did not take over after keepalived's process died: {:?}\n{}",
        eng.status(),
        lab.log(&ka)
    );
    let takeover = t0.elapsed();
    let (st, _) = eng.status();
    assert_eq!(st.role, VrrpRole::Master);
    assert_eq!(st.effective_priority, 120, "xlb's own script is still up");
    assert!(
        lab.log(&ka)
            .contains("Changing effective priority from 150 to 90"),
        "{}",
        lab.log(&ka)
    );

    // The process is back: two successes (rise 2), 150 again, keepalived preempts.
    let t0 = Instant::now();
    let _svc_b = start_tracked_process(&mut lab, &b, &pid_b);
    assert!(
        wait_owner(&lab, &b, &a, &client, Duration::from_secs(20)),
        "keepalived did not take the VIP back: {:?}\n{}",
        eng.status(),
        lab.log(&ka)
    );
    let back = t0.elapsed();
    assert_eq!(eng.status().0.role, VrrpRole::Backup);
    eprintln!(
        "keepalived's process died -> xlb MASTER in {} ms; back -> keepalived MASTER in {} ms",
        takeover.as_millis(),
        back.as_millis()
    );
    drop(eng);
}

#[test]
fn xlb_master_script_fails_keepalived_takes_over_and_back() {
    xtask::require!([Need::Lab, Need::Binary("keepalived")]);
    let Trio {
        mut lab,
        a,
        b,
        client,
    } = trio("vtrk-script");
    let flag_a = lab.dir().join("a-healthy");
    let flag_b = lab.dir().join("b-healthy");
    std::fs::write(&flag_a, "").unwrap();
    std::fs::write(&flag_b, "").unwrap();
    let notified = lab.dir().join("a-notify.log");
    let maint = lab.dir().join("a-maintenance");
    let extra = format!(
        "  notify \"/bin/sh -c 'echo \\\"$*\\\" >> {}' notify\"\n",
        notified.display()
    ) + "  track_file {\n    maint\n  }\n";
    let script = |p: &Path| format!("/usr/bin/test -e {}", p.display());
    let conf_a = write_conf(
        &lab,
        "xlb-a",
        &(keepalived_conf("dir-a", "MASTER", 150, &script(&flag_a), &extra)
            + &format!(
                "track_file maint {{\n  file {}\n  weight -1\n}}\n",
                maint.display()
            )),
    );
    let conf_b = write_conf(
        &lab,
        "ka-b",
        &keepalived_conf("dir-b", "BACKUP", 120, &script(&flag_b), ""),
    );
    let eng = Engine::start_imported(a.netns(), &conf_a);
    assert!(
        wait_owner(&lab, &a, &b, &client, Duration::from_secs(10)),
        "xlb did not become MASTER: {:?}",
        eng.status()
    );
    let ka = spawn_keepalived(&mut lab, &b, &conf_b);
    thread::sleep(Duration::from_secs(4));
    assert!(
        has_vip(&lab, &a) && !has_vip(&lab, &b),
        "keepalived BACKUP (120) must leave the VIP to xlb (150)\n{}",
        lab.log(&ka)
    );
    assert!(
        lab.log(&ka).contains("Entering BACKUP STATE"),
        "{}",
        lab.log(&ka)
    );

    // xlb's script fails (fall 2): 150 - 60 = 90 advertised, keepalived (120) preempts.
    let t0 = Instant::now();
    std::fs::remove_file(&flag_a).unwrap();
    assert!(
        wait_owner(&lab, &b, &a, &client, Duration::from_secs(20)),
        "keepalived did not take over: {:?}\n{}",
        eng.status(),
        lab.log(&ka)
    );
    let takeover = t0.elapsed();
    let (st, script) = eng.status();
    assert_eq!(st.role, VrrpRole::Backup);
    assert_eq!(script, Status::Down);
    assert_eq!(st.effective_priority, 90);
    let shown: Vec<(&str, &str, &str)> = st
        .tracked
        .iter()
        .map(|t| (t.object.as_str(), t.state.as_str(), t.effect.as_str()))
        .collect();
    assert_eq!(
        shown,
        [
            ("vrrp_script chk_service", "down", "-60"),
            ("vrrp_track_file maint", "0", "0")
        ]
    );

    // Recovered (rise 2): 150, xlb preempts keepalived.
    let t0 = Instant::now();
    std::fs::write(&flag_a, "").unwrap();
    assert!(
        wait_owner(&lab, &a, &b, &client, Duration::from_secs(20)),
        "xlb did not take the VIP back: {:?}\n{}",
        eng.status(),
        lab.log(&ka)
    );
    let back = t0.elapsed();
    assert_eq!(eng.status().0.effective_priority, 150);
    // keepalived's notify argument order: INSTANCE name state priority (state MASTER starts
    // as BACKUP for one advert interval, as keepalived's does).
    let lines = wait_notify(&notified, 4);
    assert_eq!(
        lines,
        [
            "INSTANCE VI_1 BACKUP 150",
            "INSTANCE VI_1 MASTER 150",
            "INSTANCE VI_1 BACKUP 90",
            "INSTANCE VI_1 MASTER 150"
        ],
        "notify calls"
    );

    // The maintenance file: 254 x -1 = -254 is FAULT (keepalived's rule); 0 is back to normal.
    std::fs::write(&maint, "254\n").unwrap();
    assert!(
        wait_owner(&lab, &b, &a, &client, Duration::from_secs(15)),
        "keepalived did not take over from xlb in FAULT: {:?}",
        eng.status()
    );
    assert_eq!(eng.status().0.role, VrrpRole::Fault);
    std::fs::write(&maint, "0\n").unwrap();
    assert!(
        wait_owner(&lab, &a, &b, &client, Duration::from_secs(15)),
        "xlb did not take back after its FAULT cleared: {:?}",
        eng.status()
    );
    let lines = wait_notify(&notified, 7);
    assert_eq!(
        lines[4..],
        [
            "INSTANCE VI_1 FAULT 150",
            "INSTANCE VI_1 BACKUP 150",
            "INSTANCE VI_1 MASTER 150"
        ][..],
        "notify calls"
    );
    drop(eng);
    // Dropping the engine waits for the STOP notify program to finish.
    let lines = read_notify(&notified);
    assert_eq!(
        lines.last().map(String::as_str),
        Some("INSTANCE VI_1 STOP 150")
    );
    eprintln!(
        "xlb's script failed -> keepalived MASTER in {} ms; recovered -> xlb MASTER in {} ms",
        takeover.as_millis(),
        back.as_millis()
    );
}

fn read_notify(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(String::from)
        .collect()
}

/// The notify log's lines once it has `n` of them (notify programs run in the background).
fn wait_notify(path: &Path, n: usize) -> Vec<String> {
    wait_for(Duration::from_secs(5), || read_notify(path).len() >= n);
    read_notify(path)
}

/// xlb alone as MASTER with `virtual_ipaddress_excluded` and `garp_master_refresh`: the excluded
/// VIP is on the interface but not in the adverts; gratuitous ARPs come in bursts of
/// `garp_master_repeat`, then `garp_master_refresh_repeat` every `garp_master_refresh`, spaced by
/// `garp_interval`.
#[test]
fn excluded_vips_and_garp_refresh() {
    xtask::require!([Need::Lab, Need::Binary("tcpdump")]);
    let Trio {
        mut lab,
        a,
        b: _,
        client,
    } = trio("vtrk-garp");
    let toml = format!(
        "[global]\ninterfaces = [\"eth0\"]\n\n[[vrrp_instance]]\nname = \"VI_1\"\n\
         state = \"MASTER\"\ninterface = \"eth0\"\nvirtual_router_id = 62\npriority = 150\n\
         virtual_ipaddress = [\"{VIP}/24\"]\nvirtual_ipaddress_excluded = [\"198.18.0.102/24\"]\n\
         garp_master_delay = 0.0\ngarp_master_repeat = 2\ngarp_master_refresh = 1.0\n\
         garp_master_refresh_repeat = 1\ngarp_interval = 0.05\n"
    );
    let dump = lab
        .spawn(
            &client,
            &[
                "tcpdump",
                "-i",
                "eth0",
                "-n",
                "-l",
                "-v",
                "arp or ip proto 112",
            ],
        )
        .unwrap();
    thread::sleep(Duration::from_millis(1500));
    let eng = Engine::start_toml(a.netns(), &toml);
    assert!(
        wait_for(Duration::from_secs(10), || eng.status().0.role
            == VrrpRole::Master)
        .is_some(),
        "{:?}",
        eng.status()
    );
    let t0 = Instant::now();
    assert!(has_vip(&lab, &a), "the VIP");
    let out = lab
        .run(&a, &["ip", "-o", "addr", "show", "dev", "eth0"])
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("198.18.0.102/24"),
        "the excluded VIP is added with the role"
    );
    // About 3.5 s of MASTER: 2 + ~3 x 1 gratuitous ARPs per VIP.
    thread::sleep(Duration::from_millis(3500).saturating_sub(t0.elapsed()));
    drop(eng);
    thread::sleep(Duration::from_millis(300));
    lab.kill(&dump).unwrap();
    let log = lab.log(&dump);
    let garps = |vip: &str| {
        log.lines()
            .filter(|l| {
                l.contains(&format!("who-has {vip} ")) && l.contains(&format!("tell {vip},"))
            })
            .count()
    };
    // garp_interval 0.05: the packets of the first burst are spaced.
    let stamps: Vec<f64> = log
        .lines()
        .filter(|l| l.contains("ARP, ") && l.contains("who-has"))
        .take(4)
        .filter_map(|l| {
            let t = l.split_whitespace().next()?;
            let secs: Vec<f64> = t.split(':').filter_map(|x| x.parse().ok()).collect();
            (secs.len() == 3).then(|| secs[0] * 3600.0 + secs[1] * 60.0 + secs[2])
        })
        .collect();
    assert_eq!(stamps.len(), 4, "{log}");
    for w in stamps.windows(2) {
        assert!(
            w[1] - w[0] >= 0.04,
            "gratuitous ARPs {:.3} s apart\n{log}",
            w[1] - w[0]
        );
    }
    for vip in [VIP, "198.18.0.102"] {
        let n = garps(vip);
        assert!((4..=7).contains(&n), "{vip}: {n} gratuitous ARPs\n{log}");
    }
    let adverts: Vec<&str> = log.lines().filter(|l| l.contains("addrs")).collect();
    assert!(!adverts.is_empty(), "no advert seen\n{log}");
    for l in &adverts {
        assert!(
            l.contains(VIP) && !l.contains("198.18.0.102"),
            "advert lists: {l}"
        );
    }
    assert!(!has_vip(&lab, &a), "the VIP is removed on shutdown");
}
