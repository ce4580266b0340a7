//! `xlb bgp-config`: the BIRD 2 configuration that announces this director's `announce = "bgp"`
//! VIPs to the router(s), and with `--router` the router side (eBGP to every director, one kernel
//! route with one next hop per director).
//!
//! The announcement follows the VIP's presence on `lo` (the daemon adds it while the service can
//! be served here): `protocol direct` on `lo` imports only the VIPs, the BGP export filter lets
//! only them out. Timers: hold 3 s / keepalive 1 s, BFD 100 ms x 3, `error wait time 1,5` (a
//! recovered director is back within seconds, not minutes).
use std::{
    collections::BTreeSet,
    net::{IpAddr, Ipv4Addr, UdpSocket},
    path::PathBuf,
    process::ExitCode,
};

use anyhow::bail;

use crate::config::{self, Announce};

/// BGP daemons `bgp-config` can write for (FRR and GoBGP equivalents are in the README).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BgpDaemon {
    /// BIRD 2.
    Bird,
}

/// Arguments of `xlb bgp-config`.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// BGP daemon to write the configuration for.
    #[arg(long, value_enum, default_value = "bird")]
    pub daemon: BgpDaemon,
    /// xlb configuration: its `announce = "bgp"` virtual servers are the VIPs announced.
    #[arg(short, long, default_value = super::DEFAULT_CONFIG)]
    pub config: PathBuf,
    /// Router (BGP neighbour) address; repeat for several routers or for both families (an
    /// IPv4 neighbour carries the IPv4 VIPs, an IPv6 neighbour the IPv6 ones).
    #[arg(long = "router-ip", value_name = "IP", required = true, num_args = 1..)]
    pub router_ips: Vec<IpAddr>,
    /// AS number of the router(s).
    #[arg(long, value_name = "N", default_value_t = 65000)]
    pub router_as: u32,
    /// AS number of this director (and of every director, as the router side expects).
    #[arg(long, value_name = "N", default_value_t = 65001)]
    pub local_as: u32,
    /// BIRD router id of this director. Default: the IPv4 address this host uses to reach the
    /// first IPv4 router (a VIP on `lo` must not become the router id of every director).
    #[arg(long, value_name = "IPV4")]
    pub router_id: Option<Ipv4Addr>,
    /// BFD on the sessions (100 ms x 3: a dead director is withdrawn in ~0.3 s instead of the
    /// 3 s hold time). Default on.
    #[arg(long, overrides_with = "no_bfd")]
    pub bfd: bool,
    /// No BFD: a hung director or a lost link is noticed after the hold time (3 s).
    #[arg(long, overrides_with = "bfd")]
    pub no_bfd: bool,
    /// Also print the router side (after a `# ---8<--- router` line): eBGP to each `--director`,
    /// ECMP kernel routes.
    #[arg(long)]
    pub router: bool,
    /// Director addresses the router peers with (with `--router`); repeat, both families.
    #[arg(long = "director", value_name = "IP", num_args = 1..)]
    pub directors: Vec<IpAddr>,
}

/// Marker line between the director and the router parts of the output.
pub const ROUTER_MARKER: &str = "# ---8<--- router";

/// What the generated configuration is made of (pure input of [`bird_director`]/[`bird_router`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BirdParams {
    pub vips: BTreeSet<IpAddr>,
    pub router_ips: Vec<IpAddr>,
    pub router_as: u32,
    pub local_as: u32,
    pub router_id: Option<Ipv4Addr>,
    pub bfd: bool,
}

/// Hold time (s), keepalive (s), BFD interval (ms) and multiplier.
pub const HOLD_TIME: u32 = 3;
pub const KEEPALIVE_TIME: u32 = 1;
pub const BFD_INTERVAL_MS: u32 = 100;
pub const BFD_MULTIPLIER: u32 = 3;

/// The VIPs of the `announce = "bgp"` virtual servers, deduplicated.
pub fn bgp_vips(cfg: &config::Config) -> BTreeSet<IpAddr> {
    cfg.virtual_servers
        .iter()
        .filter(|vs| vs.announce == Announce::Bgp)
        .map(|vs| vs.vip)
        .collect()
}

fn prefix(ip: &IpAddr) -> String {
    match ip {
        IpAddr::V4(a) => format!("{a}/32"),
        IpAddr::V6(a) => format!("{a}/128"),
    }
}

/// `filter NAME { if net ~ [ VIPs ] then accept; reject; }` per family with VIPs; a family
/// without VIPs gets a filter that rejects everything.
fn vip_filters(vips: &BTreeSet<IpAddr>) -> String {
    let mut t = String::new();
    for (name, v6) in [("xlb_vips4", false), ("xlb_vips6", true)] {
        let set: Vec<String> = vips
            .iter()
            .filter(|ip| ip.is_ipv6() == v6)
            .map(prefix)
            .collect();
        t += &format!("filter {name} {{\n");
        if set.is_empty() {
            t += "  reject;\n";
        } else {
            t += &format!(
                "  if net ~ [ {} ] then accept;\n  reject;\n",
                set.join(", ")
            );
        }
        t += "}\n";
    }
    t
}

fn family(ip: &IpAddr) -> (&'static str, &'static str) {
    if ip.is_ipv6() {
        ("ipv6", "xlb_vips6")
    } else {
        ("ipv4", "xlb_vips4")
    }
}

fn bfd_protocol() -> String {
    format!(
        "protocol bfd xlb_bfd {{\n  interface \"*\" {{\n    min rx interval {BFD_INTERVAL_MS} ms;\n    \
         min tx interval {BFD_INTERVAL_MS} ms;\n    multiplier {BFD_MULTIPLIER};\n  }};\n}}\n"
    )
}

fn session_timers(bfd: bool) -> String {
    format!(
        "  hold time {HOLD_TIME};\n  keepalive time {KEEPALIVE_TIME};\n  connect retry time 1;\n  \
         error wait time 1,5;\n  bfd {};\n",
        if bfd { "on" } else { "off" }
    )
}

/// The director's BIRD 2 configuration.
pub fn bird_director(p: &BirdParams) -> String {
    let mut t = String::from(
        "# BIRD 2 on an xlb director (generated by `xlb bgp-config`).\n\
         # xlb puts each announce = \"bgp\" VIP on lo while the service can be served here\n\
         # (XDP attached, service at quorum) and removes it otherwise; this exports exactly those\n\
         # VIPs, so the router's ECMP set follows the director's health.\n",
    );
    if let Some(id) = p.router_id {
        t += &format!("router id {id};\n");
    }
    t += "\nprotocol device {\n  scan time 10;\n}\n\n";
    t += &vip_filters(&p.vips);
    t += "\n# Only the VIPs of lo enter BIRD (not 127.0.0.1/8, ::1).\n\
          protocol direct xlb_lo {\n  interface \"lo\";\n  ipv4 { import filter xlb_vips4; };\n  \
          ipv6 { import filter xlb_vips6; };\n}\n";
    if p.bfd {
        t += "\n";
        t += &bfd_protocol();
    }
    for (i, r) in p.router_ips.iter().enumerate() {
        let (fam, filter) = family(r);
        t += &format!(
            "\nprotocol bgp xlb_router{} {{\n  description \"router {r}\";\n  local as {};\n  \
             neighbor {r} as {};\n{}  {fam} {{\n    import none;\n    export filter {filter};\n  }};\n}}\n",
            i + 1,
            p.local_as,
            p.router_as,
            session_timers(p.bfd),
        );
    }
    t
}

/// The router's BIRD 2 configuration: eBGP to each director, only the VIPs accepted, one kernel
/// route per VIP with one next hop per director (`merge paths`).
pub fn bird_router(p: &BirdParams, directors: &[IpAddr]) -> String {
    let mut t = String::from(
        "# BIRD 2 on the router in front of the xlb directors (generated by `xlb bgp-config \
         --router`).\n# Also set: sysctl net.ipv4.fib_multipath_hash_policy=1 and \
         net.ipv6.fib_multipath_hash_policy=1\n# (hash on L4 ports, so flows of one client spread \
         over the directors), and ip forwarding.\n\nprotocol device {\n  scan time 10;\n}\n\n",
    );
    t += &vip_filters(&p.vips);
    t += "\n# One route per VIP with every director as a next hop (ECMP, up to 16).\n";
    for fam in ["ipv4", "ipv6"] {
        t += &format!(
            "protocol kernel xlb_kernel_{fam} {{\n  {fam} {{\n    import none;\n    export all;\n  }};\n  \
             merge paths on limit 16;\n}}\n"
        );
    }
    if p.bfd {
        t += "\n";
        t += &bfd_protocol();
    }
    t += &format!(
        "\ntemplate bgp xlb_director {{\n  local as {};\n{}}}\n",
        p.router_as,
        session_timers(p.bfd)
    );
    for (i, d) in directors.iter().enumerate() {
        let (fam, filter) = family(d);
        t += &format!(
            "\nprotocol bgp xlb_director{} from xlb_director {{\n  description \"xlb director {d}\";\n  \
             neighbor {d} as {};\n  {fam} {{\n    import filter {filter};\n    export none;\n  }};\n}}\n",
            i + 1,
            p.local_as,
        );
    }
    t
}

/// The local IPv4 address used to reach `ip` (a connected UDP socket sends nothing).
fn source_address(ip: IpAddr) -> Option<Ipv4Addr> {
    let s = UdpSocket::bind("0.0.0.0:0").ok()?;
    s.connect((ip, 179)).ok()?;
    match s.local_addr().ok()?.ip() {
        IpAddr::V4(a) if !a.is_unspecified() => Some(a),
        _ => None,
    }
}

pub fn run(args: &Args) -> anyhow::Result<ExitCode> {
    let BgpDaemon::Bird = args.daemon;
    let cfg = match config::load(&args.config) {
        Ok(cfg) => cfg,
        Err(errors) => {
            for e in errors.iter() {
                eprintln!("{e}");
            }
            return Ok(ExitCode::from(2));
        }
    };
    let vips = bgp_vips(&cfg);
    if vips.is_empty() {
        bail!(
            "{}: no virtual_server has announce = \"bgp\": nothing to announce",
            args.config.display()
        );
    }
    for fam_v6 in [false, true] {
        let has_vip = vips.iter().any(|v| v.is_ipv6() == fam_v6);
        let has_router = args.router_ips.iter().any(|r| r.is_ipv6() == fam_v6);
        if has_vip && !has_router {
            eprintln!(
                "warning: IPv{} VIPs but no IPv{} --router-ip: they are not announced",
                if fam_v6 { 6 } else { 4 },
                if fam_v6 { 6 } else { 4 }
            );
        }
    }
    let router_id = args.router_id.or_else(|| {
        args.router_ips
            .iter()
            .find(|r| r.is_ipv4())
            .and_then(|r| source_address(*r))
    });
    let params = BirdParams {
        vips,
        router_ips: args.router_ips.clone(),
        router_as: args.router_as,
        local_as: args.local_as,
        router_id,
        bfd: !args.no_bfd,
    };
    let mut out = bird_director(&params);
    if args.router {
        if args.directors.is_empty() {
            bail!("--router needs the directors' addresses (--director IP ...)");
        }
        out += &format!("\n{ROUTER_MARKER}\n");
        out += &bird_router(&params, &args.directors);
    }
    super::stdout::emit(&out)?;
    Ok(ExitCode::SUCCESS)
}

/// Splits `xlb bgp-config --router` output into (director, router) parts.
pub fn split_router(out: &str) -> Option<(&str, &str)> {
    let (d, r) = out.split_once(ROUTER_MARKER)?;
    Some((d, r.strip_prefix('\n').unwrap_or(r)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(bfd: bool) -> BirdParams {
        BirdParams {
            vips: ["198.18.0.100", "198.18.0.101", "2001:db8::100"]
                .iter()
                .map(|s| s.parse().unwrap())
                .collect(),
            router_ips: vec![
                "198.18.1.1".parse().unwrap(),
                "2001:db8:1::1".parse().unwrap(),
            ],
            router_as: 65000,
            local_as: 65001,
            router_id: Some("198.18.1.2".parse().unwrap()),
            bfd,
        }
    }

    #[test]
    fn director_exports_exactly_the_vips_with_timers_and_bfd() {
        let t = bird_director(&params(true));
        assert!(t.contains("router id 198.18.1.2;"));
        assert!(t.contains("if net ~ [ 198.18.0.100/32, 198.18.0.101/32 ] then accept;"));
        assert!(t.contains("if net ~ [ 2001:db8::100/128 ] then accept;"));
        assert_eq!(t.matches("/32").count(), 2, "{t}");
        assert_eq!(t.matches("/128").count(), 1, "{t}");
        assert!(t.contains("interface \"lo\";"));
        assert!(t.contains("protocol direct xlb_lo"));
        assert!(t.contains("neighbor 198.18.1.1 as 65000;"));
        assert!(t.contains("neighbor 2001:db8:1::1 as 65000;"));
        assert_eq!(t.matches("local as 65001;").count(), 2);
        assert_eq!(t.matches("hold time 3;").count(), 2);
        assert_eq!(t.matches("keepalive time 1;").count(), 2);
        assert_eq!(t.matches("error wait time 1,5;").count(), 2);
        assert_eq!(t.matches("bfd on;").count(), 2);
        assert!(t.contains("protocol bfd"));
        assert!(t.contains("min rx interval 100 ms;"));
        assert!(t.contains("min tx interval 100 ms;"));
        assert!(t.contains("multiplier 3;"));
        // v4 session exports the v4 VIPs, v6 session the v6 ones; nothing imported.
        assert!(t.contains("ipv4 {\n    import none;\n    export filter xlb_vips4;"));
        assert!(t.contains("ipv6 {\n    import none;\n    export filter xlb_vips6;"));
    }

    #[test]
    fn no_bfd_and_single_family() {
        let mut p = params(false);
        p.vips = ["198.18.0.100".parse().unwrap()].into();
        p.router_ips.truncate(1);
        let t = bird_director(&p);
        assert!(!t.contains("protocol bfd"));
        assert!(t.contains("bfd off;"));
        assert!(!t.contains("/128"));
        assert!(t.contains("filter xlb_vips6 {\n  reject;\n}"));
    }

    #[test]
    fn router_side_merges_paths_and_peers_with_every_director() {
        let dirs: Vec<IpAddr> = ["198.18.1.2", "198.18.1.3", "2001:db8:1::2"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        let t = bird_router(&params(true), &dirs);
        assert_eq!(t.matches("merge paths on limit 16;").count(), 2);
        assert!(t.contains("export all;"));
        assert!(t.contains("fib_multipath_hash_policy=1"));
        for d in &dirs {
            assert!(t.contains(&format!("neighbor {d} as 65001;")), "{t}");
        }
        assert!(t.contains("local as 65000;"));
        assert!(t.contains("import filter xlb_vips4;"));
        assert!(t.contains("import filter xlb_vips6;"));
        assert!(t.contains("bfd on;"));
    }

    #[test]
    fn split() {
        let out = format!("a\n{ROUTER_MARKER}\nb\n");
        assert_eq!(split_router(&out), Some(("a\n", "b\n")));
    }
}
