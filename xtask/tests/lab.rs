//! Lab library tests. They need root (network namespaces, bridges, XDP).
use std::{process::Command, time::Duration};

use xtask::lab::{netns_with_prefix, require::Need, Lab, PortOpts};

fn root_links() -> String {
    let out = Command::new("ip")
        .args(["-o", "link", "show"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn netns_list() -> String {
    let out = Command::new("ip").args(["netns", "list"]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn assert_gone(id: &str) {
    assert!(
        netns_with_prefix(id).is_empty(),
        "netns of {id} left: {:?}",
        netns_with_prefix(id)
    );
    assert!(
        !netns_list().contains(id),
        "`ip netns list` still shows {id}"
    );
    assert!(
        !root_links().contains(id),
        "a link named after {id} is in the root netns"
    );
    assert!(
        !std::path::Path::new(xtask::lab::RUN_DIR).join(id).exists(),
        "run dir of {id} left"
    );
}

#[test]
fn two_hosts_ping_v4_and_v6_and_vanish_on_drop() {
    xtask::require!([Need::Lab, Need::Binary("ping")]);
    let mut lab = Lab::new("ping").unwrap();
    let id = lab.id().to_string();
    let lan = lab.segment("lan").unwrap();
    let a = lab.host("a").unwrap();
    let b = lab.host("b").unwrap();
    lab.attach(
        &a,
        &lan,
        PortOpts {
            addrs: &["198.18.1.1/24", "2001:db8:1::1/64"],
            ..Default::default()
        },
    )
    .unwrap();
    let port = lab
        .attach(
            &b,
            &lan,
            PortOpts {
                addrs: &["198.18.1.2/24", "2001:db8:1::2/64"],
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(port.ifname, "eth0");
    assert!(port.peer.len() <= 15);
    lab.run_ok(&a, &["ping", "-c1", "-W2", "198.18.1.2"])
        .unwrap();
    lab.run_ok(&b, &["ping", "-c1", "-W2", "2001:db8:1::1"])
        .unwrap();

    // Nothing of the lab in the root netns; the namespaces are listed while it lives.
    assert!(!root_links().contains(&id));
    let names = netns_with_prefix(&id);
    assert_eq!(names.len(), 3, "{names:?}"); // a, b, switch

    // Helpers.
    let mac = lab.mac(&b, "eth0").unwrap();
    assert_ne!(mac, [0; 6]);
    assert!(lab.ifindex(&b, "eth0").unwrap() > 1);
    lab.sysctl(&b, "net.ipv4.conf.all.arp_ignore", "1").unwrap();
    let v = lab
        .run_ok(&b, &["cat", "/proc/sys/net/ipv4/conf/all/arp_ignore"])
        .unwrap();
    assert_eq!(v.trim(), "1");
    assert!(
        lab.add_addr(&b, "lo", "10.0.0.1/32").is_err(),
        "non-lab address accepted"
    );

    // A spawned server is reachable, and the commands see the host's bpffs at /sys/fs/bpf.
    lab.add_addr(&b, "lo", "198.18.1.100/32").unwrap();
    lab.spawn(
        &b,
        &[
            "python3",
            "-m",
            "http.server",
            "8080",
            "--bind",
            "198.18.1.2",
        ],
    )
    .unwrap();
    lab.wait_tcp(&a, "198.18.1.2:8080", Duration::from_secs(10))
        .unwrap();
    let mounts = lab.run_ok(&b, &["cat", "/proc/self/mounts"]).unwrap();
    assert!(
        mounts.lines().any(|l| l.contains(" /sys/fs/bpf bpf ")),
        "{mounts}"
    );
    assert!(b.bpffs().unwrap().exists());

    drop(lab);
    assert_gone(&id);
}

#[test]
fn panic_midway_leaves_nothing() {
    xtask::require!([Need::Lab]);
    let id = std::sync::Mutex::new(String::new());
    let r = std::panic::catch_unwind(|| {
        let mut lab = Lab::new("panic").unwrap();
        *id.lock().unwrap() = lab.id().to_string();
        let lan = lab.segment("lan").unwrap();
        let h = lab.host("h").unwrap();
        lab.attach(
            &h,
            &lan,
            PortOpts {
                addrs: &["198.18.2.1/24"],
                ..Default::default()
            },
        )
        .unwrap();
        lab.spawn(&h, &["sleep", "600"]).unwrap();
        assert!(!netns_with_prefix(lab.id()).is_empty());
        panic!("on purpose");
    });
    assert!(r.is_err());
    let id = id.into_inner().unwrap();
    assert!(id.starts_with("xlb-panic-"));
    assert_gone(&id);
}

#[test]
fn xdp_peer_pass_attaches_native_xdp() {
    xtask::require!([Need::Lab, Need::Bpf]);
    let mut lab = Lab::new("xdp").unwrap();
    let id = lab.id().to_string();
    let lan = lab.segment("lan").unwrap();
    let d = lab.host("director").unwrap();
    let c = lab.host("client").unwrap();
    let port = lab
        .attach(
            &d,
            &lan,
            PortOpts {
                addrs: &["198.18.3.2/24"],
                xdp_peer_pass: true,
                tx_checksum_off: true,
                ..Default::default()
            },
        )
        .unwrap();
    lab.attach(
        &c,
        &lan,
        PortOpts {
            addrs: &["198.18.3.10/24"],
            ..Default::default()
        },
    )
    .unwrap();
    let sw = lab.switch().clone();
    let show = lab
        .run_ok(&sw, &["ip", "-d", "link", "show", "dev", &port.peer])
        .unwrap();
    assert!(
        show.contains("xdpdrv") || show.contains("prog/xdp"),
        "{show}"
    );
    // The client's port has no program.
    let other = lab.run_ok(&sw, &["ip", "-d", "link", "show"]).unwrap();
    assert_eq!(other.matches("prog/xdp").count(), 1, "{other}");
    // tx checksumming is off inside the director.
    let k = lab.run_ok(&d, &["ethtool", "-k", "eth0"]).unwrap();
    assert!(k.contains("tx-checksumming: off"), "{k}");
    // Traffic still flows through the peer with the XDP_PASS program.
    lab.run_ok(&c, &["ping", "-c1", "-W2", "198.18.3.2"])
        .unwrap();
    drop(lab);
    assert_gone(&id);
}

#[test]
fn in_netns_sees_the_hosts_interfaces() {
    xtask::require!([Need::Lab]);
    let mut lab = Lab::new("inns").unwrap();
    let lan = lab.segment("lan").unwrap();
    let lan2 = lab.segment("lan2").unwrap();
    let h = lab.host("h").unwrap();
    lab.attach(
        &h,
        &lan,
        PortOpts {
            ifname: "up0",
            addrs: &["198.18.4.1/24"],
            ..Default::default()
        },
    )
    .unwrap();
    lab.attach(
        &h,
        &lan2,
        PortOpts {
            ifname: "down0",
            addrs: &["198.18.5.1/24"],
            ..Default::default()
        },
    )
    .unwrap();
    let (a, b) = lab
        .in_netns(&h, || (xtask_ifindex("up0"), xtask_ifindex("down0")))
        .unwrap();
    assert_eq!(a, lab.ifindex(&h, "up0").unwrap());
    assert_eq!(b, lab.ifindex(&h, "down0").unwrap());
    // The calling thread is not moved: no up0 here.
    assert_eq!(xtask_ifindex("up0"), 0);
}

fn xtask_ifindex(name: &str) -> u32 {
    let c = std::ffi::CString::new(name).unwrap();
    unsafe { libc::if_nametoindex(c.as_ptr()) }
}

/// Run by `forgotten_labs_are_cleaned_at_exit` in a child process.
#[test]
#[ignore = "helper: run by forgotten_labs_are_cleaned_at_exit"]
fn forgotten_lab_child() {
    xtask::require!([Need::Lab]);
    if std::env::var_os("XLB_LAB_CHILD").is_none() {
        return;
    }
    let mut lab = Lab::new("forgot").unwrap();
    let lan = lab.segment("lan").unwrap();
    let h = lab.host("h").unwrap();
    lab.attach(&h, &lan, PortOpts::default()).unwrap();
    lab.spawn(&h, &["sleep", "600"]).unwrap();
    println!("LAB_ID={}", lab.id());
    std::mem::forget(lab); // no Drop: the atexit hook must clean up
}

#[test]
fn forgotten_labs_are_cleaned_at_exit() {
    xtask::require!([Need::Lab]);
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "forgotten_lab_child",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("XLB_LAB_CHILD", "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let id = stdout
        .lines()
        .find_map(|l| l.split("LAB_ID=").nth(1))
        .unwrap_or_else(|| panic!("no LAB_ID in {stdout}"));
    assert_gone(id);
}

/// Frames a native XDP program on `director:eth0` bounces with `XDP_TX` that reach the client.
fn frames_bounced_to_client(peer_pass: bool) -> u64 {
    use xtask::lab::xdp;
    let mut lab = Lab::new("xdptx").unwrap();
    let lan = lab.segment("lan").unwrap();
    let d = lab.host("director").unwrap();
    let c = lab.host("client").unwrap();
    // The director must send nothing of its own (no IPv6 router solicitations, MLD): only
    // bounced frames may reach the client.
    for k in ["all", "default"] {
        lab.sysctl(&d, &format!("net.ipv6.conf.{k}.disable_ipv6"), "1")
            .unwrap();
    }
    let opts = PortOpts {
        addrs: &["198.18.6.2/24"],
        xdp_peer_pass: peer_pass,
        ..Default::default()
    };
    lab.attach(&d, &lan, opts).unwrap();
    lab.attach(
        &c,
        &lan,
        PortOpts {
            addrs: &["198.18.6.10/24"],
            ..Default::default()
        },
    )
    .unwrap();
    let prog = xdp::load_xdp_action(xdp::XDP_TX).unwrap();
    let idx = lab.ifindex(&d, "eth0").unwrap();
    let _link = lab
        .in_netns(&d, || {
            xdp::attach_xdp_link(&prog, idx, xdp::XDP_FLAGS_DRV_MODE)
        })
        .unwrap()
        .unwrap();
    let rx = |lab: &Lab| -> u64 {
        let s = lab
            .run_ok(&c, &["cat", "/sys/class/net/eth0/statistics/rx_packets"])
            .unwrap();
        s.trim().parse().unwrap()
    };
    let before = rx(&lab);
    // The client's ARP requests for .2 hit the director's XDP_TX (the ping itself fails).
    let _ = lab
        .run(&c, &["ping", "-c3", "-i0.3", "-W1", "198.18.6.2"])
        .unwrap();
    rx(&lab) - before
}

#[test]
fn xdp_tx_on_veth_needs_the_peer_pass_program() {
    xtask::require!([Need::Lab, Need::Bpf]);
    let with = frames_bounced_to_client(true);
    let without = frames_bounced_to_client(false);
    assert!(
        with >= 1,
        "XDP_TX frames did not come back through the peer with XDP_PASS"
    );
    assert_eq!(
        without, 0,
        "XDP_TX frames came back without a program on the peer"
    );
}
