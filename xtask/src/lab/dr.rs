//! The direct-routing topology of the demo, the benchmarks and the integration tests: one
//! segment `lan` with a client, a director and real servers `rs1..rsN`.
use std::{collections::BTreeMap, fs, path::Path, time::Duration};

use anyhow::{Context as _, Result};

use super::{require::Need, Host, Lab, PortOpts, Segment};

/// The VIP every real server holds on `lo` (IPv4).
pub const VIP: &str = "198.18.0.100";
/// The VIP every real server holds on `lo` (IPv6).
pub const VIP6: &str = "2001:db8::100";

/// What a test needs to build this topology and run the daemon in it (see
/// [`crate::require!`]): the lab, XDP, and the tools [`build`] and [`curl_spread`] use.
pub const NEEDS: &[Need] = &[
    Need::Lab,
    Need::Bpf,
    Need::Binary("ethtool"),
    Need::Binary("python3"),
    Need::Binary("curl"),
];

/// The topology, see [`build`].
pub struct DrLab {
    pub lab: Lab,
    /// The bridge every host is on.
    pub lan: Segment,
    pub client: Host,
    pub director: Host,
    /// `rs1`, `rs2`, ...
    pub real_servers: Vec<Host>,
}

/// The IPv4 address of real server `i` (from 1): 198.18.0.(10 + i).
pub fn real_v4(i: usize) -> String {
    format!("198.18.0.{}", 10 + i)
}

/// The IPv6 address of real server `i` (from 1): 2001:db8::(10 + i).
pub fn real_v6(i: usize) -> String {
    format!("2001:db8::{}", 10 + i)
}

/// Builds the lab `tag` on segment `lan`:
/// - `client` 198.18.0.10/24, 2001:db8::10/64,
/// - `director` 198.18.0.2/24, 2001:db8::2/64 on `eth0` (XDP_PASS on its bridge-side peer, so a
///   native XDP program on `eth0` can `XDP_TX`),
/// - `reals` real servers `rs1..rsN` at [`real_v4`]/24 and [`real_v6`]/64, each with [`VIP`]/32
///   and [`VIP6`]/128 on `lo`, `arp_ignore=1`/`arp_announce=2`, and an HTTP server on port 80
///   answering its own name.
///
/// All ports have TX checksum offload off. The director does not hold the VIP: a standalone
/// director adds it to `eth0`, a VRRP pair leaves it to VRRP.
pub fn build(tag: &str, reals: usize) -> Result<DrLab> {
    let mut lab = Lab::new(tag)?;
    let lan = lab.segment("lan")?;
    let client = lab.host("client")?;
    let director = lab.host("director")?;
    lab.attach(&client, &lan, port(&["198.18.0.10/24", "2001:db8::10/64"]))?;
    lab.attach(
        &director,
        &lan,
        PortOpts {
            xdp_peer_pass: true,
            ..port(&["198.18.0.2/24", "2001:db8::2/64"])
        },
    )?;
    let mut real_servers = Vec::new();
    for i in 1..=reals {
        let rs = lab.host(&format!("rs{i}"))?;
        let (v4, v6) = (format!("{}/24", real_v4(i)), format!("{}/64", real_v6(i)));
        lab.attach(&rs, &lan, port(&[v4.as_str(), v6.as_str()]))?;
        real_server_sysctls_and_vips(&lab, &rs)?;
        start_http_server(&mut lab, &rs)?;
        real_servers.push(rs);
    }
    for (i, rs) in real_servers.iter().enumerate() {
        let addr = format!("{}:80", real_v4(i + 1));
        lab.wait_tcp(rs, &addr, Duration::from_secs(10))?;
    }
    Ok(DrLab {
        lab,
        lan,
        client,
        director,
        real_servers,
    })
}

/// A port with TX checksum offload off (TCP through a native-XDP director).
pub(super) fn port<'a>(addrs: &'a [&'a str]) -> PortOpts<'a> {
    PortOpts {
        addrs,
        tx_checksum_off: true,
        ..Default::default()
    }
}

/// A DR real server: the VIPs on `lo`, and no ARP answers for them (`arp_ignore=1`,
/// `arp_announce=2` on `all` and `lo`).
fn real_server_sysctls_and_vips(lab: &Lab, rs: &Host) -> Result<()> {
    for k in ["all", "lo"] {
        lab.sysctl(rs, &format!("net.ipv4.conf.{k}.arp_ignore"), "1")?;
        lab.sysctl(rs, &format!("net.ipv4.conf.{k}.arp_announce"), "2")?;
    }
    lab.add_addr(rs, "lo", &format!("{VIP}/32"))?;
    lab.add_addr(rs, "lo", &format!("{VIP6}/128"))
}

/// `python3 -m http.server 80` on `rs`, serving one page: the host's name.
pub(super) fn start_http_server(lab: &mut Lab, rs: &Host) -> Result<()> {
    let python = if Path::new("/usr/bin/python3").exists() {
        "/usr/bin/python3"
    } else {
        "python3"
    };
    let www = lab.dir().join("www").join(rs.name());
    fs::create_dir_all(&www)?;
    fs::write(www.join("index.html"), format!("{}\n", rs.name()))?;
    let www = www.to_str().context("non-UTF-8 path")?.to_string();
    let argv = [
        python,
        "-m",
        "http.server",
        "80",
        "--bind",
        "::",
        "--directory",
        &www,
    ];
    lab.spawn(rs, &argv)?;
    Ok(())
}

/// Fetches `url` from `host` `n` times with curl (a new connection each time) and counts the
/// bodies' first lines; failures count under `"FAIL"`.
pub fn curl_spread(lab: &Lab, host: &Host, url: &str, n: usize) -> Result<BTreeMap<String, usize>> {
    let script = format!(
        "for i in $(seq {n}); do curl -sf -m 2 -H 'Connection: close' '{url}' || echo FAIL; done"
    );
    let out = lab.run_ok(host, &["sh", "-c", &script])?;
    let mut spread = BTreeMap::new();
    for line in out.lines().filter(|l| !l.trim().is_empty()) {
        *spread.entry(line.trim().to_string()).or_insert(0) += 1;
    }
    Ok(spread)
}
