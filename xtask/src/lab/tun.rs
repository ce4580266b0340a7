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

use anyhow::Result;

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

/// The address of real server `i` (1 or 2): 198.18.(1 + i).(10 + i).
pub fn real_v4(i: usize) -> String {
    format!("198.18.{}.{}", 1 + i, 10 + i)
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

fn default_via(lab: &Lab, h: &Host, gw: &str) -> Result<()> {
    lab.run_ok(h, &["ip", "route", "add", "default", "via", gw])?;
    Ok(())
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
    let mut real_servers = Vec::new();
    for i in 1..=2 {
        let seg = lab.segment(&format!("net{}", 1 + i))?;
        let ifname = format!("eth{}", 1 + i);
        let gw = format!("198.18.{}.1", 1 + i);
        lab.attach(
            &router,
            &seg,
            PortOpts {
                ifname: &ifname,
                ..port(&[format!("{gw}/24").as_str()])
            },
        )?;
        let rs = lab.host(&format!("rs{i}"))?;
        lab.attach(&rs, &seg, port(&[format!("{}/24", real_v4(i)).as_str()]))?;
        default_via(&lab, &rs, &gw)?;
        start_http_server(&mut lab, &rs)?;
        real_servers.push(rs);
    }
    lab.sysctl(&router, "net.ipv4.ip_forward", "1")?;
    lab.run_ok(
        &router,
        &["ip", "route", "add", &format!("{VIP}/32"), "via", DIRECTOR],
    )?;
    default_via(&lab, &client, "198.18.4.1")?;
    default_via(&lab, &director, ROUTER_DIR)?;
    for (i, rs) in real_servers.iter().enumerate() {
        lab.wait_tcp(
            rs,
            &format!("{}:80", real_v4(i + 1)),
            Duration::from_secs(10),
        )?;
    }
    Ok(TunLab {
        lab,
        client,
        router,
        director,
        real_servers,
    })
}
