//! The routed topology of tunnel mode (LVS-TUN): the real servers sit in other subnets than the
//! director, behind a router, so frames cannot reach them by MAC rewriting alone.
//!
//! ```text
//!  client 198.18.4.10 ── front ── router ── dir ── director 198.18.1.2 (xlb, VIP routed here)
//!                                   │ └──── net2 ── rs1 198.18.2.11
//!                                   └────── net3 ── rs2 198.18.3.12
//! ```
//! The router forwards, holds a static route for the VIP to the director and is every host's
//! default gateway: a real server's replies go router -> client without crossing the director.
use std::time::Duration;

use anyhow::{Context as _, Result};

use super::{
    dr::{port, start_http_server},
    Host, Lab, PortOpts,
};

/// The VIP (routed to the director by the router).
pub const VIP: &str = "198.18.0.100";
pub const CLIENT: &str = "198.18.4.10";
pub const DIRECTOR: &str = "198.18.1.2";
/// The router's address on the director's subnet (the director's next hop to the reals).
pub const ROUTER_DIR: &str = "198.18.1.1";

/// The address of real server `i` (from 1): 198.18.(1 + i).(10 + i).
pub fn real_v4(i: usize) -> String {
    routed_real_v4(FIRST_REAL_SUBNET, i)
}

/// The third octet of the first real server's subnet in this lab (198.18.2.0/24).
pub const FIRST_REAL_SUBNET: u8 = 2;

/// The address of routed real server `i` (from 1) when the first one's subnet is
/// 198.18.`first`.0/24: 198.18.(first - 1 + i).(10 + i).
pub fn routed_real_v4(first: u8, i: usize) -> String {
    format!("198.18.{}.{}", first as usize - 1 + i, 10 + i)
}

pub struct TunLab {
    pub lab: Lab,
    pub client: Host,
    pub router: Host,
    pub director: Host,
    /// `rs1` (198.18.2.11), `rs2` (198.18.3.12): the VIP on `lo` with ARP silenced is left to
    /// `xlb realserver up --tunnel`, which the tests run.
    pub real_servers: Vec<Host>,
}

pub fn default_via(lab: &Lab, h: &Host, gw: &str) -> Result<()> {
    lab.run_ok(h, &["ip", "route", "add", "default", "via", gw])?;
    Ok(())
}

/// Real servers `rs1..rsN` behind `router`, each in its own subnet (`net2`, `net3`, ...: real
/// server `i` at [`real_v4`]`(i)`/24 on the router's `eth(1 + i)`, whose address `.1` is the real
/// server's default route), each with an HTTP server on port 80 answering its own name; returns
/// once they listen. The VIP on `lo` is left to `xlb realserver up --tunnel`. Also used by the
/// tunnel-mode variant of the VRRP-pair lab (its router is on the directors' segment).
/// Forwarding on `router` is the caller's.
pub fn routed_real_servers(lab: &mut Lab, router: &Host, n: usize) -> Result<Vec<Host>> {
    routed_real_servers_in(lab, router, FIRST_REAL_SUBNET, n)
}

/// [`routed_real_servers`] from subnet 198.18.`first`.0/24 on (segment `net<k>` and router port
/// `eth<k>` for subnet k; real server `i` at [`routed_real_v4`]`(first, i)`), for labs whose low
/// subnets are taken (the scale-out lab).
pub fn routed_real_servers_in(
    lab: &mut Lab,
    router: &Host,
    first: u8,
    n: usize,
) -> Result<Vec<Host>> {
    let mut real_servers = Vec::new();
    for i in 1..=n {
        let subnet = first as usize - 1 + i;
        let seg = lab.segment(&format!("net{subnet}"))?;
        let ifname = format!("eth{subnet}");
        let gw = format!("198.18.{subnet}.1");
        lab.attach(
            router,
            &seg,
            PortOpts {
                ifname: &ifname,
                ..port(&[format!("{gw}/24").as_str()])
            },
        )?;
        let rs = lab.host(&format!("rs{i}"))?;
        let addr = format!("{}/24", routed_real_v4(first, i));
        lab.attach(&rs, &seg, port(&[addr.as_str()]))?;
        default_via(lab, &rs, &gw)?;
        start_http_server(lab, &rs)?;
        real_servers.push(rs);
    }
    for (i, rs) in real_servers.iter().enumerate() {
        lab.wait_tcp(
            rs,
            &format!("{}:80", routed_real_v4(first, i + 1)),
            Duration::from_secs(10),
        )?;
    }
    Ok(real_servers)
}

/// Builds the lab `tag` (see the module doc); each real server runs an HTTP server on port 80
/// answering its own name.
pub fn build(tag: &str) -> Result<TunLab> {
    let mut lab = Lab::new(tag)?;
    let front = lab.segment("front")?;
    let dir = lab.segment("dir")?;
    let client = lab.host("client")?;
    let router = lab.host("router")?;
    let director = lab.host("director")?;
    lab.attach(&client, &front, port(&["198.18.4.10/24"]))?;
    lab.attach(&router, &front, port(&["198.18.4.1/24"]))?;
    lab.attach(
        &router,
        &dir,
        PortOpts {
            ifname: "eth1",
            ..port(&["198.18.1.1/24"])
        },
    )?;
    lab.attach(
        &director,
        &dir,
        PortOpts {
            xdp_peer_pass: true,
            ..port(&["198.18.1.2/24"])
        },
    )?;
    let real_servers = routed_real_servers(&mut lab, &router, 2)?;
    lab.sysctl(&router, "net.ipv4.ip_forward", "1")?;
    lab.run_ok(
        &router,
        &["ip", "route", "add", &format!("{VIP}/32"), "via", DIRECTOR],
    )?;
    default_via(&lab, &client, "198.18.4.1")?;
    default_via(&lab, &director, ROUTER_DIR)?;
    Ok(TunLab {
        lab,
        client,
        router,
        director,
        real_servers,
    })
}

/// The IPv6 VIP of [`add_ipv6`] (routed to the director's IPv6 address by the router).
pub const VIP6: &str = "2001:db8::100";
pub const DIRECTOR6: &str = "2001:db8:1::2";
/// The router's IPv6 address on the director's subnet.
pub const ROUTER_DIR6: &str = "2001:db8:1::1";

/// Real server `i`'s IPv6 address (from 1): 2001:db8:(1 + i)::(10 + i), beside [`real_v4`].
pub fn real_v6(i: usize) -> String {
    format!(
        "2001:db8:{}::{}",
        FIRST_REAL_SUBNET as usize - 1 + i,
        10 + i
    )
}

/// Makes a [`build`] lab dual-stack: 2001:db8:4::/64 (front), 2001:db8:1::/64 (director),
/// 2001:db8:2::/64 and 2001:db8:3::/64 (real servers), the router forwarding IPv6, [`VIP6`]
/// routed to the director, every host's IPv6 default route via the router.
pub fn add_ipv6(t: &TunLab) -> Result<()> {
    let lab = &t.lab;
    for (host, ifname, cidr) in [
        (&t.client, "eth0", "2001:db8:4::10/64"),
        (&t.router, "eth0", "2001:db8:4::1/64"),
        (&t.router, "eth1", "2001:db8:1::1/64"),
        (&t.director, "eth0", "2001:db8:1::2/64"),
    ] {
        lab.add_addr(host, ifname, cidr)?;
    }
    let default6 = |h: &Host, gw: &str| -> Result<()> {
        lab.run_ok(h, &["ip", "-6", "route", "add", "default", "via", gw])?;
        Ok(())
    };
    for (i, rs) in t.real_servers.iter().enumerate() {
        let subnet = FIRST_REAL_SUBNET as usize + i;
        let gw = format!("2001:db8:{subnet}::1");
        lab.add_addr(&t.router, &format!("eth{subnet}"), &format!("{gw}/64"))?;
        lab.add_addr(rs, "eth0", &format!("{}/64", real_v6(i + 1)))?;
        default6(rs, &gw)?;
    }
    lab.sysctl(&t.router, "net.ipv6.conf.all.forwarding", "1")?;
    lab.run_ok(
        &t.router,
        &[
            "ip",
            "-6",
            "route",
            "add",
            &format!("{VIP6}/128"),
            "via",
            DIRECTOR6,
        ],
    )?;
    default6(&t.client, "2001:db8:4::1")?;
    default6(&t.director, ROUTER_DIR6)?;
    Ok(())
}

/// Prepares `rs` for tunnel mode with `xlb realserver up --vip VIP --tunnel KIND` (binary
/// `xlb`), decapsulating only packets from `directors` on `eth0`; the prior state is kept in
/// the lab directory (removed with the lab, like the pinned decap link in the host's bpffs).
pub fn realserver_up(
    lab: &Lab,
    rs: &Host,
    xlb: &str,
    tunnel: &str,
    directors: &[&str],
) -> Result<()> {
    realserver_up_with(lab, rs, xlb, tunnel, directors, &[])
}

/// [`realserver_up`] with more arguments (`--decap`, `--attach`, `--advmss` ...).
pub fn realserver_up_with(
    lab: &Lab,
    rs: &Host,
    xlb: &str,
    tunnel: &str,
    directors: &[&str],
    extra: &[&str],
) -> Result<()> {
    let state = lab.dir().join(format!("{}.json", rs.name()));
    let state = state.to_str().context("non-UTF-8 path")?;
    let mut argv = vec![xlb, "realserver", "up", "--vip", VIP, "--tunnel", tunnel];
    for d in directors {
        argv.extend(["--director", d]);
    }
    argv.extend(["--interface", "eth0", "--state-file", state]);
    argv.extend_from_slice(extra);
    let o = lab.run(rs, &argv)?;
    anyhow::ensure!(
        o.status.success(),
        "realserver up on {}: {}{}",
        rs.name(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    Ok(())
}
