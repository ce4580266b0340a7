//! The netlink module against a real kernel, in a namespaced lab (root needed): link lookup and
//! state, idempotent address add/delete, `nodad`, primary address choice, the neighbour probe.
use std::net::IpAddr;
use std::time::{Duration, Instant};

use xlb::net::{BlockingNet, Dad, Net, NetError};
use xtask::lab::{in_named_netns, require::Need, Host, Lab, PortOpts};

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn addr_lines(lab: &Lab, h: &Host) -> String {
    lab.run_ok(h, &["ip", "-o", "addr", "show", "dev", "eth0"])
        .unwrap()
}

fn mac_of(lab: &Lab, h: &Host) -> [u8; 6] {
    let out = lab
        .run_ok(h, &["ip", "-br", "link", "show", "dev", "eth0"])
        .unwrap();
    let field = out.split_whitespace().nth(2).expect("a MAC column");
    let mut mac = [0u8; 6];
    for (m, part) in mac.iter_mut().zip(field.split(':')) {
        *m = u8::from_str_radix(part, 16).unwrap();
    }
    mac
}

/// Two hosts on one segment.
fn two_hosts() -> (Lab, Host, Host) {
    let mut lab = Lab::new("netlink").unwrap();
    let lan = lab.segment("lan").unwrap();
    let h = lab.host("h").unwrap();
    let peer = lab.host("peer").unwrap();
    for (host, addrs) in [
        (&h, ["198.18.0.2/24", "2001:db8::2/64"]),
        (&peer, ["198.18.0.3/24", "2001:db8::3/64"]),
    ] {
        let opts = PortOpts {
            addrs: &addrs,
            ..Default::default()
        };
        lab.attach(host, &lan, opts).unwrap();
    }
    (lab, h, peer)
}

#[test]
fn addresses_are_added_and_removed_idempotently() {
    xtask::require!([Need::Lab]);
    let (lab, h, _peer) = two_hosts();
    // The socket stays bound to the lab namespace after the thread that opened it ends.
    let net = in_named_netns(h.netns(), BlockingNet::connect)
        .unwrap()
        .unwrap();
    assert_eq!(net.link("nosuch0").unwrap(), None);
    assert_eq!(net.link("name-over-ifnamsiz").unwrap(), None, "not ERANGE");
    assert!(matches!(
        net.interface("nosuch0"),
        Err(NetError::NoInterface(n)) if n == "nosuch0"
    ));
    let eth = net.interface("eth0").unwrap();
    assert_eq!(eth.mac, mac_of(&lab, &h));
    assert!(eth.addrs.contains(&(ip("198.18.0.2"), 24)), "{eth:?}");
    assert!(eth.on_link(ip("198.18.0.3")) && !eth.on_link(ip("198.18.1.3")));
    assert!(net.link("eth0").unwrap().unwrap().up);

    for vip in [ip("198.18.0.101"), ip("2001:db8::101")] {
        net.add_host_address(eth.index, vip).unwrap();
        net.add_host_address(eth.index, vip)
            .expect("adding twice is fine");
        let len = if vip.is_ipv4() { 32 } else { 128 };
        assert!(net.addresses(eth.index).unwrap().contains(&(vip, len)));
    }
    let lines = addr_lines(&lab, &h);
    let v6 = lines
        .lines()
        .find(|l| l.contains("2001:db8::101/128"))
        .expect("the IPv6 VIP");
    assert!(v6.contains("nodad"), "a VIP skips DAD: {v6}");
    assert_eq!(
        lines.matches("198.18.0.101/32").count(),
        1,
        "added once: {lines}"
    );

    for vip in [ip("198.18.0.101"), ip("2001:db8::101")] {
        net.del_address(eth.index, vip).unwrap();
        net.del_address(eth.index, vip)
            .expect("removing an absent address is fine");
        assert!(!net
            .addresses(eth.index)
            .unwrap()
            .iter()
            .any(|(a, _)| *a == vip));
    }

    lab.run_ok(&h, &["ip", "link", "set", "eth0", "down"])
        .unwrap();
    assert!(!net.link("eth0").unwrap().unwrap().up, "down is seen");
}

#[test]
fn primary_address_and_neighbour_probe() {
    xtask::require!([Need::Lab]);
    let (lab, h, peer) = two_hosts();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let net = in_named_netns(h.netns(), || {
        let _in_rt = rt.enter();
        Net::connect()
    })
    .unwrap()
    .unwrap();
    let peer_mac = mac_of(&lab, &peer);
    rt.block_on(async {
        let eth = net.interface("eth0").await.unwrap();
        net.add_address(eth.index, "198.18.0.101/24".parse().unwrap(), Dad::Skip)
            .await
            .unwrap();
        // The VIP is left out however the kernel orders the addresses.
        let src = net
            .primary_address(eth.index, false, &[ip("198.18.0.101")])
            .await
            .unwrap();
        assert_eq!(src, ip("198.18.0.2"));
        let ll = net.primary_address(eth.index, true, &[]).await.unwrap();
        assert!(
            matches!(ll, IpAddr::V6(a) if a.segments()[0] == 0xfe80),
            "{ll}"
        );

        for target in [ip("198.18.0.3"), ip("2001:db8::3")] {
            in_named_netns(h.netns(), || xlb::net::probe_neighbour(target)).unwrap();
            let t0 = Instant::now();
            loop {
                let n = net.neighbours().await.unwrap();
                if let Some(&(index, mac)) = n.get(&target) {
                    assert_eq!((index, mac), (eth.index, peer_mac), "{target}");
                    break;
                }
                assert!(
                    t0.elapsed() < Duration::from_secs(5),
                    "{target} not resolved: {n:?}"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    });
}
