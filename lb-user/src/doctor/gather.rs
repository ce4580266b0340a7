//! The thin, impure layer of `xlb doctor`: reads the host into [`Facts`].
use std::fs;
use std::net::IpAddr;
use std::path::Path;
use std::process::Command;

use super::{Facts, FirewallFacts, IfaceFacts, PinFacts, RealServerFacts, VrrpFacts};
use crate::config::Config;
use crate::net::BlockingNet;

/// What to look at.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// The configuration file (`None`: director checks that need it are skipped).
    pub config: Option<std::path::PathBuf>,
    /// Real-server VIPs (`--realserver --vip ...`).
    pub realserver_vips: Option<Vec<IpAddr>>,
}

/// Asks the running daemon (if any) for its VRRP instances twice, 3 advert intervals apart.
fn observe_vrrp(cfg: &Config, vrrp: &mut [VrrpFacts]) {
    use crate::control::{request, Request, Response};
    let socket = &cfg.global.control_socket;
    let sample = || match request(socket, &Request::Status, std::time::Duration::from_secs(5)) {
        Ok(Response::Status(r)) => Some(r.vrrp),
        _ => None,
    };
    let Some(before) = sample() else { return };
    let window = vrrp.iter().map(|v| v.advert_int_ms).max().unwrap_or(1000) as f64 * 3.0 / 1000.0;
    std::thread::sleep(std::time::Duration::from_secs_f64(window.clamp(0.1, 15.0)));
    let Some(after) = sample() else { return };
    for v in vrrp.iter_mut() {
        let (Some(b), Some(a)) = (
            before.iter().find(|i| i.name == v.name),
            after.iter().find(|i| i.name == v.name),
        ) else {
            continue;
        };
        v.observed = Some(super::VrrpObserved {
            state_before: b.state.clone(),
            state_after: a.state.clone(),
            adverts_rx_before: b.adverts_rx,
            adverts_rx_after: a.adverts_rx,
            last_master: a.last_master,
            bad_adverts_before: b.bad_adverts.clone(),
            bad_adverts_after: a.bad_adverts.clone(),
            last_bad_advert: a
                .last_bad_advert
                .as_ref()
                .map(|x| (x.from, x.reason.clone())),
        });
    }
}

/// Gathers every fact.
pub fn gather(opts: &Options) -> Facts {
    let mut facts = Facts::default();
    let mut cfg: Option<Config> = None;
    if let Some(path) = &opts.config {
        facts.config_file = Some(path.display().to_string());
        match crate::config::load(path) {
            Ok(c) => cfg = Some(c),
            Err(errs) => facts.config_errors = errs.iter().map(|e| e.to_string()).collect(),
        }
    }
    facts.host_interfaces = host_interfaces();
    facts.kernel = Some(super::kernel::probe());
    let mut sysctl_ifaces: Vec<String> = vec!["all".into(), "lo".into()];
    sysctl_ifaces.extend(facts.host_interfaces.iter().cloned());
    if let Some(c) = &cfg {
        facts.xdp_mode = Some(c.global.xdp_mode);
        let net = BlockingNet::connect().ok();
        for i in &c.global.interfaces {
            facts.interfaces.push(interface(net.as_ref(), i));
        }
        for v in &c.vrrp_instances {
            facts.vrrp.push(VrrpFacts {
                name: v.name.clone(),
                interface: v.interface.clone(),
                vrid: v.virtual_router_id,
                advert_int_ms: (v.advert_int * 1000.0).round() as u64,
                observed: None,
                v6: v
                    .virtual_ipaddress
                    .first()
                    .is_some_and(|p| p.addr.is_ipv6()),
                unicast_src_ip: v.unicast_src_ip,
                unicast_peer: v.unicast_peer.clone(),
            });
        }
        facts.conn_table_size = Some(c.global.conn_table_size);
        facts.real_servers = c.virtual_servers.iter().map(|v| v.real_servers.len()).sum();
        facts.pins = Some(pins(c));
        facts.vip_holders = super::vip::holders(c);
        facts.local_addresses = local_addresses();
        if let Some(n) = &net {
            facts.tunnels = tunnels(n, c, &facts.interfaces);
        }
        if !facts.vrrp.is_empty() {
            facts.firewall = firewall();
            observe_vrrp(c, &mut facts.vrrp);
        }
    }
    for i in &sysctl_ifaces {
        for name in ["arp_ignore", "arp_announce", "rp_filter"] {
            let key = format!("net.ipv4.conf.{i}.{name}");
            if let Some(v) = crate::realserver::read_sysctl(&key) {
                facts.sysctls.insert(key, v);
            }
        }
    }
    if let Some(vips) = &opts.realserver_vips {
        let present = crate::realserver::Loopback::open()
            .and_then(|lo| lo.addresses())
            .unwrap_or_default();
        facts.realserver = Some(RealServerFacts {
            vips: vips
                .iter()
                .map(|v| (*v, present.iter().any(|(a, _)| a == v)))
                .collect(),
        });
    }
    facts.mem_available = mem_available();
    facts.nofile = nofile();
    facts.sysctl_files = sysctl_files(Path::new("/"));
    facts
}

fn host_interfaces() -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir("/proc/sys/net/ipv4/conf")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n != "all" && n != "default" && n != "lo")
        .collect();
    v.sort();
    v
}

// --- ethtool ioctls -----------------------------------------------------------------------

const SIOCETHTOOL: libc::c_ulong = 0x8946;
const ETHTOOL_GDRVINFO: u32 = 0x3;
const ETHTOOL_GFLAGS: u32 = 0x25;
const ETH_FLAG_LRO: u32 = 1 << 15;

#[repr(C)]
struct DrvInfo {
    cmd: u32,
    driver: [u8; 32],
    version: [u8; 32],
    fw_version: [u8; 32],
    bus_info: [u8; 32],
    erom_version: [u8; 32],
    reserved2: [u8; 12],
    n_priv_flags: u32,
    n_stats: u32,
    testinfo_len: u32,
    eedump_len: u32,
    regdump_len: u32,
}

#[repr(C)]
struct EthValue {
    cmd: u32,
    data: u32,
}

#[repr(C)]
struct IfReq {
    name: [u8; libc::IFNAMSIZ],
    data: *mut libc::c_void,
    _pad: [u8; 16],
}

fn ethtool(ifname: &str, data: *mut libc::c_void) -> bool {
    if ifname.len() >= libc::IFNAMSIZ {
        return false;
    }
    let mut req = IfReq {
        name: [0; libc::IFNAMSIZ],
        data,
        _pad: [0; 16],
    };
    req.name[..ifname.len()].copy_from_slice(ifname.as_bytes());
    // SAFETY: plain socket + ioctl with a properly sized, initialised ifreq whose data pointer
    // refers to a live, correctly laid out ethtool struct.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return false;
        }
        let r = libc::ioctl(fd, SIOCETHTOOL as _, &mut req as *mut IfReq);
        libc::close(fd);
        r == 0
    }
}

/// The kernel driver of `ifname` (`ethtool -i`), or the `/sys` driver link.
pub fn driver(ifname: &str) -> Option<String> {
    // SAFETY: all-zero is a valid DrvInfo.
    let mut d: DrvInfo = unsafe { std::mem::zeroed() };
    d.cmd = ETHTOOL_GDRVINFO;
    if ethtool(ifname, &mut d as *mut DrvInfo as *mut libc::c_void) {
        let end = d.driver.iter().position(|b| *b == 0).unwrap_or(32);
        let s = String::from_utf8_lossy(&d.driver[..end]).into_owned();
        if !s.is_empty() {
            return Some(s);
        }
    }
    fs::read_link(format!("/sys/class/net/{ifname}/device/driver"))
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
}

/// Whether LRO is on (`ethtool -k`).
pub fn lro(ifname: &str) -> Option<bool> {
    let mut v = EthValue {
        cmd: ETHTOOL_GFLAGS,
        data: 0,
    };
    ethtool(ifname, &mut v as *mut EthValue as *mut libc::c_void)
        .then_some(v.data & ETH_FLAG_LRO != 0)
}

/// Facts of one interface (`net`: `None` when netlink could not be opened).
pub fn interface(net: Option<&BlockingNet>, name: &str) -> IfaceFacts {
    let link = net.and_then(|n| n.link(name).ok().flatten());
    let exists = link.is_some();
    IfaceFacts {
        name: name.into(),
        exists,
        driver: exists.then(|| driver(name)).flatten(),
        mtu: link.map(|l| l.mtu),
        lro: exists.then(|| lro(name)).flatten(),
    }
}

// --- the rest -----------------------------------------------------------------------------

fn stdout_of(prog: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(prog).args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

fn firewall() -> FirewallFacts {
    FirewallFacts {
        nft_json: stdout_of("nft", &["-j", "list", "ruleset"]),
        iptables_save: stdout_of("iptables-save", &[]),
        ip6tables_save: stdout_of("ip6tables-save", &[]),
    }
}

fn mem_available() -> Option<u64> {
    let m = fs::read_to_string("/proc/meminfo").ok()?;
    let line = m.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

fn nofile() -> Option<u64> {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into `r`.
    (unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) } == 0).then_some(r.rlim_cur)
}

/// /etc/sysctl.conf and every `*.conf` of the sysctl.d directories under `root`.
pub fn sysctl_files(root: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let conf = root.join("etc/sysctl.conf");
    if let Ok(c) = fs::read_to_string(&conf) {
        out.push((conf.display().to_string(), c));
    }
    for d in [
        "etc/sysctl.d",
        "run/sysctl.d",
        "usr/local/lib/sysctl.d",
        "usr/lib/sysctl.d",
        "lib/sysctl.d",
    ] {
        let mut files: Vec<_> = fs::read_dir(root.join(d))
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "conf"))
            .collect();
        files.sort();
        for p in files {
            if let Ok(c) = fs::read_to_string(&p) {
                out.push((p.display().to_string(), c));
            }
        }
    }
    out
}

fn pins(c: &Config) -> PinFacts {
    use crate::dataplane::loader::{link_pin_path, PINNED_MAPS};
    let dir = &c.global.bpffs_dir;
    let mut p = PinFacts {
        dir: dir.display().to_string(),
        dir_exists: dir.is_dir(),
        services_in_config: c.virtual_servers.len(),
        ..Default::default()
    };
    if !p.dir_exists {
        return p;
    }
    p.maps_missing = PINNED_MAPS
        .iter()
        .filter(|m| !dir.join(m).exists())
        .map(|m| m.to_string())
        .collect();
    let (pinned, missing) = c
        .global
        .interfaces
        .iter()
        .cloned()
        .partition(|i| link_pin_path(dir, i).exists());
    p.links_pinned = pinned;
    p.links_missing = missing;
    p.daemon_answers = Some(daemon_answers(c));
    let services = dir.join(lb_common::map_names::SERVICES);
    if services.exists() {
        p.services_in_map = Some(count_services(&services));
    }
    p
}

fn daemon_answers(c: &Config) -> bool {
    use crate::control::{request, Request};
    let timeout = std::time::Duration::from_secs(3);
    request(&c.global.control_socket, &Request::Status, timeout).is_ok()
}

fn count_services(path: &Path) -> Result<usize, String> {
    use aya::maps::{HashMap, Map, MapData};
    use lb_common::{Service, ServiceKey};
    let data = MapData::from_pin(path).map_err(|e| e.to_string())?;
    let map: HashMap<MapData, ServiceKey, Service> =
        HashMap::try_from(Map::HashMap(data)).map_err(|e| e.to_string())?;
    Ok(map.keys().filter(Result::is_ok).count())
}

/// (interface, address) of every address on this host, from `ip -o addr show`.
fn local_addresses() -> Vec<(String, IpAddr)> {
    let Ok(out) = std::process::Command::new("ip")
        .args(["-o", "addr", "show"])
        .output()
    else {
        return Vec::new();
    };
    parse_ip_o_addr(&String::from_utf8_lossy(&out.stdout))
}

/// Parses `ip -o addr show` lines: `2: eth0    inet 198.18.0.2/24 brd ... scope global eth0`.
pub fn parse_ip_o_addr(text: &str) -> Vec<(String, IpAddr)> {
    text.lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            let iface = w.nth(1)?.split('@').next()?.to_string();
            let _family = w.next()?;
            let addr = w.next()?.split('/').next()?.parse().ok()?;
            Some((iface, addr))
        })
        .collect()
}

/// Route and MTU of every tunnelled real server (tunnel mode).
fn tunnels(
    net: &BlockingNet,
    c: &Config,
    xdp: &[super::IfaceFacts],
) -> Vec<super::tunnel::TunnelFacts> {
    let ingress_mtu = xdp.iter().filter_map(|i| i.mtu).max();
    let mut out = Vec::new();
    for vs in &c.virtual_servers {
        for rs in &vs.real_servers {
            let Some(t) = rs.tunnel else {
                continue;
            };
            let route = net.route_to(rs.address).ok().flatten();
            let iface = route.and_then(|r| crate::net::route::link_name(r.ifindex));
            let link_mtu = iface
                .as_deref()
                .and_then(|n| net.link(n).ok().flatten())
                .map(|l| l.mtu);
            let ip_hlen = if rs.address.is_ipv6() { 40 } else { 20 };
            let udp = if t.kind == crate::config::TunnelType::Gue {
                8
            } else {
                0
            };
            out.push(super::tunnel::TunnelFacts {
                service: vs.name.clone(),
                real: rs.address,
                kind: crate::tunnel::kind(t.kind).name().into(),
                overhead: ip_hlen + udp,
                via_xdp_interface: iface
                    .as_deref()
                    .is_some_and(|n| c.global.interfaces.iter().any(|i| i == n)),
                route: route.map(|r| {
                    (
                        iface.clone().unwrap_or(format!("#{}", r.ifindex)),
                        r.gateway,
                    )
                }),
                mtu: t
                    .mtu
                    .map(u32::from)
                    .or(route.and_then(|r| r.mtu))
                    .or(link_mtu),
                ingress_mtu,
            });
        }
    }
    out
}
