//! The configuration schema: what `xlb.toml` may contain.
//!
//! Names follow keepalived.conf(5) where a keepalived keyword exists; the doc comment of each field
//! names it. Values whose *meaning* is checked after parsing (addresses, ports, weights, names
//! referenced from other sections) are wrapped in [`Spanned`] so that errors point at them; read
//! them with `.get_ref()` / `.as_ref()`. `Spanned` compares by value only.
//!
//! Why one file of this size: it is the reference of the file format, one struct per section and
//! every key with its keepalived keyword, default and range; split, it would be read in pieces.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use serde_spanned::Spanned;

use super::types::{Granularity, IpPrefix, MacAddr};

/// A value without a source position (defaults, values built in code).
pub fn unspanned<T>(value: T) -> Spanned<T> {
    Spanned::new(0..0, value)
}

/// The whole configuration file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `[global]`: daemon-wide settings (keepalived `global_defs` plus the XDP specifics).
    pub global: Global,
    /// `[timeouts]`: idle timeouts of tracked flows (`ipvsadm --set`).
    #[serde(default)]
    pub timeouts: Timeouts,
    /// `[[virtual_server]]`: the balanced services (keepalived `virtual_server`).
    #[serde(
        default,
        rename = "virtual_server",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub virtual_servers: Vec<VirtualServer>,
    /// `[[vrrp_instance]]`: VRRP instances (keepalived `vrrp_instance`).
    #[serde(
        default,
        rename = "vrrp_instance",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub vrrp_instances: Vec<VrrpInstance>,
    /// `[[vrrp_sync_group]]`: instances that change state together (keepalived `vrrp_sync_group`).
    #[serde(
        default,
        rename = "vrrp_sync_group",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub vrrp_sync_groups: Vec<VrrpSyncGroup>,
    /// `[[vrrp_script]]`: programs whose result moves tracking instances' priority or puts them
    /// in FAULT (keepalived `vrrp_script`).
    #[serde(default, rename = "vrrp_script", skip_serializing_if = "Vec::is_empty")]
    pub vrrp_scripts: Vec<VrrpScript>,
    /// `[[vrrp_track_process]]`: processes counted in /proc (keepalived `vrrp_track_process`).
    #[serde(
        default,
        rename = "vrrp_track_process",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub vrrp_track_processes: Vec<VrrpTrackProcess>,
    /// `[[vrrp_track_file]]`: files holding an integer (keepalived `track_file`).
    #[serde(
        default,
        rename = "vrrp_track_file",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub vrrp_track_files: Vec<VrrpTrackFile>,
    /// `[sync]`: connection sync and health agreement between directors (keepalived
    /// `lvs_sync_daemon`). Absent: off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync: Option<Sync>,
}

/// How the XDP program is attached.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum XdpMode {
    /// Driver mode (fast); fails if the driver has no XDP support.
    Native,
    /// Generic (skb) mode: works everywhere, slower.
    Generic,
    /// Native if the driver supports it, else generic.
    #[default]
    Auto,
}

impl XdpMode {
    /// The spelling of the config file.
    pub fn name(self) -> &'static str {
        match self {
            XdpMode::Native => "native",
            XdpMode::Generic => "generic",
            XdpMode::Auto => "auto",
        }
    }
}

/// How the daemon writes its log (`global.log_format`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// Native journald records under systemd (`JOURNAL_STREAM`), plain text lines elsewhere.
    #[default]
    Text,
    /// One JSON object a line on stderr (for log shippers), also under systemd.
    Json,
}

impl LogFormat {
    /// The default is left out when a configuration is written (`xlb import-keepalived`).
    pub fn is_default(&self) -> bool {
        *self == LogFormat::default()
    }
}

/// `[global]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Global {
    /// Name of this director in logs and notifications (keepalived `router_id`). Default: the host
    /// name, resolved at run time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub router_id: Option<String>,
    /// Interfaces the XDP program is attached to (at least one): where VIP traffic arrives.
    pub interfaces: Spanned<Vec<Spanned<String>>>,
    /// `native`, `generic` or `auto` (default).
    #[serde(default)]
    pub xdp_mode: XdpMode,
    /// Capacity of the connection table (LRU, all CPUs): 1024..=67108864, default 1048576.
    /// Unlike IPVS's `IP_VS_TAB_BITS` this is a limit, not a bucket count (~128 bytes a flow).
    #[serde(default = "default_conn_table_size")]
    pub conn_table_size: Spanned<u32>,
    /// Capacity of the persistence-template table (LRU, one entry per client network and
    /// persistent service): 1024..=67108864, default 262144 (~100 bytes an entry).
    #[serde(
        default = "default_persistence_table_size",
        skip_serializing_if = "is_default_persistence_table_size"
    )]
    pub persistence_table_size: Spanned<u32>,
    /// New flows per second per CPU above which new flows are no longer inserted in the connection
    /// table (flood guard, as Katran); they are still balanced statelessly. 0 = off. Default 125000.
    #[serde(default = "default_flood_threshold")]
    pub flood_threshold: u32,
    /// Total Maglev ring slots across services in the kernel map; 0 (default) = sized automatically
    /// from the services. When set, it must hold every maglev service's `maglev_table_size`
    /// (leave room for services added by a reload).
    #[serde(default = "zero_u32")]
    pub maglev_capacity: Spanned<u32>,
    /// Unix socket of the control protocol used by the `xlb` CLI. Absolute path.
    #[serde(default = "default_control_socket")]
    pub control_socket: Spanned<PathBuf>,
    /// bpffs directory where maps and links are pinned (they survive a daemon restart). Absolute.
    #[serde(default = "default_bpffs_dir")]
    pub bpffs_dir: Spanned<PathBuf>,
    /// Directory of the daemon's own state (the operator's run-time changes made with
    /// `xlb real ...` / `xlb ipvsadm -e`, kept across restarts). Absolute, default `/var/lib/xlb`.
    #[serde(default = "default_state_dir")]
    pub state_dir: Spanned<PathBuf>,
    /// Address of the Prometheus `/metrics` endpoint, e.g. `"127.0.0.1:9108"`. Absent = off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics_listen: Option<SocketAddr>,
    /// Seconds between sweeps of the connection table: ActiveConn/InActConn are recounted and idle
    /// flows expired. 0.1..=60, default 2.0.
    #[serde(default = "default_sweep_interval")]
    pub sweep_interval: Spanned<f64>,
    /// Seconds the ring in force before a real-server change is still consulted for mid-stream
    /// flows without an entry (flows another director opened under it). 1..=86400, default 120.
    /// With `[sync]` such flows have entries everywhere; without, this bounds how long after a
    /// change a director change keeps them.
    #[serde(
        default = "default_previous_ring_hold",
        skip_serializing_if = "is_default_previous_ring_hold"
    )]
    pub previous_ring_hold: Spanned<f64>,
    /// `text` (default: journald-native under systemd, plain lines on a terminal) or `json`.
    /// Read at start; a reload does not change it.
    #[serde(default, skip_serializing_if = "LogFormat::is_default")]
    pub log_format: LogFormat,
}

fn zero_u32() -> Spanned<u32> {
    unspanned(0)
}
fn zero_f64() -> Spanned<f64> {
    unspanned(0.0)
}
fn empty_vec<T>() -> Spanned<Vec<T>> {
    unspanned(Vec::new())
}
fn default_conn_table_size() -> Spanned<u32> {
    unspanned(lb_common::DEFAULT_CONN_TABLE_SIZE)
}
fn default_persistence_table_size() -> Spanned<u32> {
    unspanned(lb_common::DEFAULT_PERSIST_TABLE_SIZE)
}
fn is_default_persistence_table_size(v: &Spanned<u32>) -> bool {
    *v.get_ref() == lb_common::DEFAULT_PERSIST_TABLE_SIZE
}
fn default_flood_threshold() -> u32 {
    125_000
}
fn default_control_socket() -> Spanned<PathBuf> {
    unspanned(PathBuf::from("/run/xlb/xlb.sock"))
}
fn default_state_dir() -> Spanned<PathBuf> {
    unspanned(PathBuf::from("/var/lib/xlb"))
}
fn default_bpffs_dir() -> Spanned<PathBuf> {
    unspanned(PathBuf::from("/sys/fs/bpf/xlb"))
}
fn default_sweep_interval() -> Spanned<f64> {
    unspanned(2.0)
}
fn default_previous_ring_hold() -> Spanned<f64> {
    unspanned(120.0)
}
fn is_default_previous_ring_hold(v: &Spanned<f64>) -> bool {
    *v.get_ref() == 120.0
}

/// `[timeouts]`: idle timeouts in seconds (IPVS defaults; `ipvsadm --set tcp tcpfin udp`).
/// Each is 1..=2592000 (30 days).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Timeouts {
    /// Established TCP flow (IPVS `ESTABLISHED`), default 900.
    #[serde(default = "d900")]
    pub tcp: Spanned<u32>,
    /// TCP flow after the client's FIN (IPVS `FIN_WAIT`), default 120.
    #[serde(default = "d120")]
    pub tcp_fin: Spanned<u32>,
    /// TCP flow that has seen only a SYN (IPVS `SYN_RECV`), default 60.
    #[serde(default = "d60")]
    pub syn_recv: Spanned<u32>,
    /// TCP flow after a RST (IPVS `CLOSE`), default 10.
    #[serde(default = "d10")]
    pub close: Spanned<u32>,
    /// UDP flow, default 300.
    #[serde(default = "d300")]
    pub udp: Spanned<u32>,
}

fn d900() -> Spanned<u32> {
    unspanned(900)
}
fn d120() -> Spanned<u32> {
    unspanned(120)
}
fn d60() -> Spanned<u32> {
    unspanned(60)
}
fn d10() -> Spanned<u32> {
    unspanned(10)
}
fn d300() -> Spanned<u32> {
    unspanned(300)
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            tcp: d900(),
            tcp_fin: d120(),
            syn_recv: d60(),
            close: d10(),
            udp: d300(),
        }
    }
}

/// Transport protocol of a virtual server (keepalived `protocol`).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// TCP (default).
    #[default]
    #[serde(alias = "TCP")]
    Tcp,
    /// UDP.
    #[serde(alias = "UDP")]
    Udp,
}

impl std::fmt::Display for Protocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        })
    }
}

/// How a new flow picks its real server (keepalived `lb_algo`; the keepalived/ipvsadm short names
/// are accepted as aliases). Connection-counting schedulers (lc, wlc, ...) are not offered: each
/// director must pick the same server for a flow by itself.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scheduler {
    /// Maglev consistent hashing (`mh`), default: minimal disruption when servers come and go.
    #[default]
    #[serde(alias = "mh")]
    Maglev,
    /// Hash of the source address (`sh`).
    #[serde(alias = "sh")]
    SourceHash,
    /// Round robin (`rr`), ignores weights except 0.
    #[serde(alias = "rr")]
    RoundRobin,
    /// Weighted round robin (`wrr`).
    #[serde(alias = "wrr")]
    WeightedRoundRobin,
}

/// How a virtual server's VIP is claimed on the network.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Announce {
    /// Active only while the `vrrp_instance` listing the VIP in `virtual_ipaddress` is MASTER.
    Vrrp,
    /// Every director is active; the VIP is put on `lo` while the service is healthy (at quorum)
    /// so a BGP daemon exporting `lo` routes announces it (ECMP across directors).
    Bgp,
    /// Always active (a standalone director, or the VIP is routed here by other means).
    Always,
}

/// How packets reach a real server (keepalived `lb_kind`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Forward {
    /// Direct routing (`lb_kind DR`): only the MACs change; the real server shares a link with
    /// the director.
    #[default]
    Dr,
    /// Tunnel (`lb_kind TUN`): the packet is encapsulated (see `tunnel`) to a real server that
    /// may sit behind routers; it decapsulates and answers the client itself.
    Tunnel,
}

/// The encapsulation of `forward = "tunnel"` (keepalived 2.x `tun_type`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TunnelType {
    /// IP in IP (IPv4 outer: protocol 4, or 41 for an IPv6 inner packet; ip6ip6 for IPv6 real
    /// servers), default: the kernel's `tunl0`/`ip6tnl0` receive it.
    #[default]
    Ipip,
    /// GUE over UDP to `gue_port`, the inner IP packet right after the UDP header (Katran's GUE;
    /// Linux: `ip fou add port 6080 gue`); the UDP source port follows the flow so the real
    /// server's RSS spreads flows over its CPUs.
    Gue,
}

impl Forward {
    pub fn is_dr(&self) -> bool {
        *self == Forward::Dr
    }
}

impl TunnelType {
    pub fn is_ipip(&self) -> bool {
        *self == TunnelType::Ipip
    }
}

/// `[[virtual_server]]` (keepalived `virtual_server IP PORT { lb_kind DR|TUN ... }`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VirtualServer {
    /// Unique name, used by `track_service` and the CLI. Default: `"vip:port/proto"`, e.g.
    /// `"192.168.2.212:80/tcp"` (IPv6: `"[2001:db8::1]:80/tcp"`); see [`VirtualServer::service_name`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<Spanned<String>>,
    /// The virtual IP, IPv4 or IPv6.
    pub vip: Spanned<IpAddr>,
    /// The port; 0 = every port of the VIP for this protocol (keepalived `virtual_server IP 0`,
    /// ipvsadm persistent port 0). A port-0 service may coexist with specific ports of the same
    /// VIP and protocol: the specific port wins.
    pub port: Spanned<u16>,
    /// `tcp` (default) or `udp` (keepalived `protocol`).
    #[serde(default)]
    pub protocol: Protocol,
    /// `maglev` (default, alias `mh`), `source_hash` (`sh`), `round_robin` (`rr`),
    /// `weighted_round_robin` (`wrr`) (keepalived `lb_algo`).
    #[serde(default)]
    pub scheduler: Scheduler,
    /// Maglev lookup table size (IPVS `mh` uses 251..=131071): a prime in 251..=16777259, default
    /// 65537. Keep it > 100 x the number of real servers for shares within 1%.
    #[serde(default = "default_maglev_table_size")]
    pub maglev_table_size: Spanned<u32>,
    /// Seconds a client stays on the same real server after its last connection (keepalived
    /// `persistence_timeout`; note keepalived's bare keyword means 360). > 0 makes the service
    /// persistent as IPVS does, whatever the scheduler: the client's first connection is
    /// scheduled and remembered in a template (client, service) -> real server; its later
    /// connections (any source port) go where the template says while it is fresh. 0 (default)
    /// = per-connection balancing. Max 2592000.
    #[serde(default = "zero_u32")]
    pub persistence_timeout: Spanned<u32>,
    /// Which clients share a template (keepalived `persistence_granularity`, `ipvsadm -M`): a
    /// prefix length (`24`: a /24 of clients sticks to one real server; `64` for IPv6) or, for
    /// an IPv4 VIP, a netmask (`"255.255.255.0"`). Default: the whole client address. Needs
    /// `persistence_timeout` > 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub persistence_granularity: Option<Spanned<Granularity>>,
    /// Server used when no real server is alive (keepalived `sorry_server`); same family as `vip`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sorry_server: Option<Spanned<IpAddr>>,
    /// MAC of the sorry server; default: resolved from the neighbour table.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sorry_server_mac: Option<Spanned<MacAddr>>,
    /// Minimum sum of the weights of alive real servers for the service to be up (keepalived
    /// `quorum`, default 1). Below it: sorry server if any, and `track_service` reacts.
    #[serde(default = "default_quorum")]
    pub quorum: u32,
    /// Up again only at `quorum + hysteresis`, down at `quorum - hysteresis` (keepalived
    /// `hysteresis`, default 0). Must not exceed `quorum`.
    #[serde(default = "zero_u32")]
    pub hysteresis: Spanned<u32>,
    /// Default check interval in seconds of this service's real servers (keepalived `delay_loop`),
    /// 0.01..=3600, default 6.0.
    #[serde(default = "default_delay_loop")]
    pub delay_loop: Spanned<f64>,
    /// Real servers start down until their first successful check (keepalived `alpha`).
    #[serde(default)]
    pub alpha: bool,
    /// A failed real server gets weight 0 (quiescent: existing flows stay, no new ones) instead of
    /// being removed (keepalived `inhibit_on_failure`).
    #[serde(default)]
    pub inhibit_on_failure: bool,
    /// A real server whose checks fail on this director first becomes *suspect*: new flows
    /// avoid it (weight 0), the established flows this director forwards to it are kept. It is
    /// *failed* (flows re-dispatched to the others, as without this setting) once the failure is
    /// confirmed: by a peer director that sees it down too (its health view arrives through
    /// `[sync]`), or after `confirm_delay` unless every peer with a fresh view sees it up (then
    /// it stays suspect as long as they do). So one director's local problem (a firewall, a
    /// broken path) never resets healthy flows; the cost: the flows of a real server that really
    /// died stay blackholed for `confirm_delay` unless a peer confirms sooner. Default false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub confirm_failure: bool,
    /// Seconds of local failure after which a suspect real server is failed when no peer
    /// confirms nor sees it up, 0..=3600; default: `fall` x `interval` of the real server's
    /// check (as long again as it took to see the failure). Needs `confirm_failure`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confirm_delay: Option<Spanned<f64>>,
    /// `vrrp`, `bgp` or `always`. Default: `vrrp` when a `vrrp_instance` lists the VIP in its
    /// `virtual_ipaddress`, else `always`; see [`Config::announce_of`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub announce: Option<Spanned<Announce>>,
    /// `dr` (default) or `tunnel` (keepalived `lb_kind DR|TUN`): the forwarding method of the
    /// real servers that do not set their own.
    #[serde(default, skip_serializing_if = "Forward::is_dr")]
    pub forward: Forward,
    /// `ipip` (default) or `gue` (keepalived `tun_type`): the encapsulation of tunnelled real
    /// servers that do not set their own.
    #[serde(default, skip_serializing_if = "TunnelType::is_ipip")]
    pub tunnel: TunnelType,
    /// UDP destination port of GUE packets (keepalived `tun_port`), 1..=65535, default 6080
    /// (Katran's).
    #[serde(
        default = "default_gue_port",
        skip_serializing_if = "is_default_gue_port"
    )]
    pub gue_port: Spanned<u16>,
    /// Largest IP packet (outer header included) the path to the tunnelled real servers
    /// carries, 576..=65535 (IPv6 real servers: at least 1280). Default: the MTU of the route to
    /// each real server, else of its egress interface. Client packets that would exceed it once
    /// encapsulated are answered with ICMP "fragmentation needed" / "packet too big".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tunnel_mtu: Option<Spanned<u32>>,
    /// `[virtual_server.check]`: the default health check of every real server that has none of
    /// its own. Absent: real servers without a check are always considered up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check: Option<Check>,
    /// `[[virtual_server.real_server]]` (keepalived `real_server`).
    #[serde(default, rename = "real_server", skip_serializing_if = "Vec::is_empty")]
    pub real_servers: Vec<RealServer>,
}

fn is_default_gue_port(p: &Spanned<u16>) -> bool {
    *p.get_ref() == lb_common::DEFAULT_GUE_PORT
}
fn default_gue_port() -> Spanned<u16> {
    unspanned(lb_common::DEFAULT_GUE_PORT)
}
fn default_maglev_table_size() -> Spanned<u32> {
    unspanned(65_537)
}
fn default_quorum() -> u32 {
    1
}
fn default_delay_loop() -> Spanned<f64> {
    unspanned(6.0)
}

/// `[[virtual_server.real_server]]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RealServer {
    /// Address of the real server, same family as the VIP. It must have the VIP on a loopback
    /// alias with `arp_ignore=1`/`arp_announce=2` (direct routing).
    pub address: Spanned<IpAddr>,
    /// Port. Direct routing cannot change ports (the server answers the client itself), so it must
    /// equal the virtual server's port; with a port-0 virtual server it only sets the port probed
    /// by checks. Default: the virtual server's port; see [`RealServer::effective_port`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<Spanned<u16>>,
    /// 0..=65535, default 1 (keepalived `weight`); 0 = quiescent.
    #[serde(default = "default_weight")]
    pub weight: Spanned<u32>,
    /// MAC address to send to; default: resolved at run time from the neighbour table.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mac: Option<Spanned<MacAddr>>,
    /// Egress interface, one of `global.interfaces`; default: the interface the VIP traffic
    /// arrives on (tunnelled: the interface of the route to the server).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<Spanned<String>>,
    /// `dr` or `tunnel`: this server's forwarding method; default: the virtual server's
    /// `forward`. A tunnelled server's `mac`, if given, is the next hop's (the router's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forward: Option<Forward>,
    /// `ipip` or `gue`: this server's encapsulation; default: the virtual server's `tunnel`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tunnel: Option<TunnelType>,
    /// Program and arguments run when the server comes up (keepalived `notify_up`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify_up: Option<Spanned<Vec<String>>>,
    /// Program and arguments run when the server goes down (keepalived `notify_down`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify_down: Option<Spanned<Vec<String>>>,
    /// `[virtual_server.real_server.check]`: this server's check; replaces the virtual server's
    /// `check` as a whole (no field-by-field merge). `type = "none"` disables the default check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check: Option<Check>,
}

fn default_weight() -> Spanned<u32> {
    unspanned(1)
}

/// Kind of health check (keepalived `TCP_CHECK`, `HTTP_GET`, `SSL_GET`, `MISC_CHECK`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckType {
    /// TCP connect (`TCP_CHECK`).
    Tcp,
    /// HTTP request (`HTTP_GET`).
    Http,
    /// HTTP over TLS (`SSL_GET`).
    Https,
    /// External program (`MISC_CHECK`): exit 0 = up, 1 = down; with `dynamic`, 2..=255 = up with
    /// weight `code - 2`.
    Script,
    /// No check: the server is always up.
    None,
}

/// HTTP method of an `http`/`https` check.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum HttpMethod {
    /// GET (default).
    #[default]
    Get,
    /// HEAD: no body, so neither `body_regex` nor `digest`.
    Head,
}

/// A health check (`[virtual_server.check]` or `[virtual_server.real_server.check]`).
/// Fields of another check type are errors.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Check {
    /// `tcp`, `http`, `https`, `script` or `none`.
    #[serde(rename = "type")]
    pub kind: Spanned<CheckType>,
    /// Seconds between checks, 0.01..=3600. Default: the virtual server's `delay_loop`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<Spanned<f64>>,
    /// Seconds before a probe fails (keepalived `connect_timeout`, accepted as an alias;
    /// `misc_timeout` for scripts), 0.01..=3600, default 5.0.
    #[serde(default = "default_check_timeout", alias = "connect_timeout")]
    pub timeout: Spanned<f64>,
    /// Consecutive successes before a down server is up (>= 1, default 1).
    #[serde(default = "default_one")]
    pub rise: Spanned<u32>,
    /// Consecutive failures before an up server is down (>= 1, default 1).
    #[serde(default = "default_one")]
    pub fall: Spanned<u32>,
    /// Extra attempts before a probe counts as failed (keepalived `retry`); default 1, script 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<u32>,
    /// Seconds between those attempts (keepalived `delay_before_retry`), 0..=3600; default 1.0,
    /// http/https 3.0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay_before_retry: Option<Spanned<f64>>,
    /// Address probed instead of the real server's (keepalived `connect_ip`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connect_ip: Option<Spanned<IpAddr>>,
    /// Port probed instead of the real server's (keepalived `connect_port`); required when neither
    /// the real server nor the virtual server has a port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connect_port: Option<Spanned<u16>>,
    /// http/https: `GET` (default) or `HEAD`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<Spanned<HttpMethod>>,
    /// http/https: request path, starting with `/` (keepalived `url { path }`), default `/`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<Spanned<String>>,
    /// http/https: Host header and TLS SNI (keepalived `virtualhost`, `enable_sni`). Needed when
    /// the servers route by host name (IIS, name-based virtual hosts). Default: the probed address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<Spanned<String>>,
    /// http/https: accepted status codes (keepalived `status_code`), each 100..=599, default [200].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_codes: Option<Spanned<Vec<u16>>>,
    /// http/https: the body must match this regular expression (Rust `regex` syntax; keepalived
    /// `regex`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_regex: Option<Spanned<String>>,
    /// http/https: MD5 of the body, 32 hex digits (keepalived `digest`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<Spanned<String>>,
    /// https: verify the server's certificate (default false, as keepalived).
    #[serde(default)]
    pub tls_verify: bool,
    /// https: CA bundle for `tls_verify`; default: the system roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<Spanned<PathBuf>>,
    /// script: program and arguments (keepalived `misc_path`, which is one quoted string;
    /// here each argument is its own element). Required for `script`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Spanned<Vec<String>>>,
    /// script: run `command[0]` through `/bin/sh -c` (pipes, redirections), default false.
    #[serde(default)]
    pub shell: bool,
    /// script: exit codes 2..=255 set the weight to `code - 2` (keepalived `misc_dynamic`).
    #[serde(default)]
    pub dynamic: bool,
    /// script: user to run as (keepalived `user`); default: the daemon's user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<Spanned<String>>,
}

fn default_check_timeout() -> Spanned<f64> {
    unspanned(5.0)
}
fn default_one() -> Spanned<u32> {
    unspanned(1)
}

/// Initial (and, with preemption, preferred) VRRP state (keepalived `state`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum VrrpState {
    /// Starts as master.
    #[serde(alias = "master")]
    Master,
    /// Starts as backup.
    #[serde(alias = "backup")]
    Backup,
}

/// VRRPv2 authentication type; only simple password is supported (keepalived `auth_type PASS`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum AuthType {
    /// Clear-text password (RFC 2338 type 1).
    #[serde(rename = "PASS", alias = "pass")]
    Pass,
}

/// `authentication = { auth_type = "PASS", auth_pass = "secret" }` (VRRPv2 only).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Authentication {
    /// `PASS`.
    pub auth_type: AuthType,
    /// 1..=8 characters (keepalived silently truncates longer ones; here it is an error so that
    /// both sides provably agree).
    pub auth_pass: Spanned<String>,
}

/// `[[vrrp_instance]]` (keepalived `vrrp_instance`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VrrpInstance {
    /// Unique name (keepalived `vrrp_instance NAME`).
    pub name: Spanned<String>,
    /// `MASTER` or `BACKUP`.
    pub state: Spanned<VrrpState>,
    /// Interface VRRP adverts are sent and received on (need not be an XDP interface).
    pub interface: Spanned<String>,
    /// 1..=255, unique per interface; same on every director of the pair.
    pub virtual_router_id: Spanned<u8>,
    /// 1..=255, default 100; 255 = address owner. Higher wins.
    #[serde(default = "default_priority")]
    pub priority: Spanned<u8>,
    /// Seconds between adverts: v2 whole seconds 1..=255, v3 0.01..=40.95 (centiseconds).
    /// Default 1.0.
    #[serde(default = "default_advert_int")]
    pub advert_int: Spanned<f64>,
    /// VRRP version, 2 (default) or 3; IPv6 VIPs require 3.
    #[serde(default = "default_version")]
    pub version: Spanned<u8>,
    /// VRRPv2 simple password (keepalived `authentication { auth_type PASS  auth_pass ... }`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authentication: Option<Spanned<Authentication>>,
    /// `"addr[/prefix]"` (default /32, /128) added on `interface` while MASTER (keepalived
    /// `virtual_ipaddress`). All of one family.
    #[serde(default = "empty_vec")]
    pub virtual_ipaddress: Spanned<Vec<Spanned<IpPrefix>>>,
    /// Source address of unicast adverts (keepalived `unicast_src_ip`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unicast_src_ip: Option<Spanned<IpAddr>>,
    /// Send adverts by unicast to these peers instead of multicast (keepalived `unicast_peer`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unicast_peer: Vec<Spanned<IpAddr>>,
    /// Do not take over from a lower-priority master (keepalived `nopreempt`); only with
    /// `state = "BACKUP"`.
    #[serde(default = "default_false")]
    pub nopreempt: Spanned<bool>,
    /// Seconds to wait before preempting a lower-priority master, 0..=1000 (keepalived
    /// `preempt_delay`), default 0.
    #[serde(default = "zero_f64")]
    pub preempt_delay: Spanned<f64>,
    /// Seconds after becoming master before the second burst of gratuitous ARPs/NAs, 0..=1000
    /// (keepalived `garp_master_delay`), default 5.0.
    #[serde(default = "default_garp_delay")]
    pub garp_master_delay: Spanned<f64>,
    /// Gratuitous ARPs/NAs per burst (keepalived `garp_master_repeat`), default 5.
    #[serde(default = "default_garp_repeat")]
    pub garp_master_repeat: u32,
    /// Interfaces whose link loss puts the instance in FAULT (keepalived `track_interface`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub track_interface: Vec<Spanned<String>>,
    /// Names of virtual servers; one below its quorum puts the instance in FAULT, or lowers its
    /// priority by `track_service_weight` when that is set.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub track_service: Vec<Spanned<String>>,
    /// Priority change (-254..=254, usually negative) applied while a tracked service is below
    /// quorum, instead of FAULT (keepalived `track_script ... weight`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub track_service_weight: Option<Spanned<i32>>,
    /// Program and arguments run on becoming MASTER (keepalived `notify_master`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify_master: Option<Spanned<Vec<String>>>,
    /// Program and arguments run on becoming BACKUP (keepalived `notify_backup`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify_backup: Option<Spanned<Vec<String>>>,
    /// Program and arguments run on entering FAULT (keepalived `notify_fault`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify_fault: Option<Spanned<Vec<String>>>,
    /// Program and arguments run when the instance stops (keepalived `notify_stop`), with
    /// `INSTANCE name STOP priority` appended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify_stop: Option<Spanned<Vec<String>>>,
    /// Program and arguments run on every change (keepalived `notify`) with keepalived's
    /// arguments appended: `INSTANCE name MASTER|BACKUP|FAULT|STOP priority`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify: Option<Spanned<Vec<String>>>,
    /// `"addr[/prefix]"` added and removed with the role like `virtual_ipaddress` but not listed
    /// in adverts (keepalived `virtual_ipaddress_excluded`); may mix families.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub virtual_ipaddress_excluded: Vec<Spanned<IpPrefix>>,
    /// Seconds between repeated bursts of gratuitous ARPs/NAs while MASTER, 1..=86400
    /// (keepalived `garp_master_refresh`); absent: no refresh.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub garp_master_refresh: Option<Spanned<f64>>,
    /// Gratuitous ARPs/NAs per refresh burst (keepalived `garp_master_refresh_repeat`),
    /// default 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub garp_master_refresh_repeat: Option<Spanned<u32>>,
    /// Seconds between the gratuitous ARPs/NAs of one burst, 0..=1 (keepalived `garp_interval`
    /// / `vrrp_garp_interval`), default 0 (back to back).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub garp_interval: Option<Spanned<f64>>,
    /// `[{ name = "chk", weight = -20 }]`: `[[vrrp_script]]`s tracked (keepalived
    /// `track_script`); `weight`/`reverse` override the script's.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub track_script: Vec<TrackRef>,
    /// `[[vrrp_track_process]]`es tracked (keepalived `track_process`), same form.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub track_process: Vec<TrackRef>,
    /// `[[vrrp_track_file]]`s tracked (keepalived `track_file`), same form.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub track_file: Vec<TrackRef>,
}

/// One tracked object of an instance: `{ name = "chk_nginx", weight = -20, reverse = false }`
/// (keepalived `track_script { chk_nginx weight -20 }`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrackRef {
    /// The `name` of the tracked `[[vrrp_script]]` / `[[vrrp_track_process]]` /
    /// `[[vrrp_track_file]]`.
    pub name: Spanned<String>,
    /// Overrides the tracked object's `weight` (-253..=253; files -254..=254).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<Spanned<i32>>,
    /// Overrides the tracked object's `weight_reverse`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reverse: Option<bool>,
}

/// `[[vrrp_script]]` (keepalived `vrrp_script NAME { ... }`): run every `interval`; after `rise`
/// successes in a row it is up, after `fall` failures down (exit 0 = success; anything else,
/// a signal or the timeout = failure). Weight 0: a tracking instance is in FAULT while it is
/// down. Weight > 0: added to the priority while up; < 0: added while down (`weight_reverse`:
/// the sign is inverted). An instance of priority 255 keeps 255.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VrrpScript {
    /// Unique name (keepalived `vrrp_script NAME`).
    pub name: Spanned<String>,
    /// Program and arguments, run without a shell (keepalived `script`); use
    /// `["/bin/sh", "-c", "..."]` for shell syntax. Killed with its children at the timeout.
    pub script: Spanned<Vec<String>>,
    /// Seconds between runs, 1..=86400 (keepalived `interval`), default 1.
    #[serde(default = "default_script_interval")]
    pub interval: Spanned<f64>,
    /// Seconds a run may take, 1..=86400 (keepalived `timeout`); default: `interval`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Spanned<f64>>,
    /// -253..=253 (keepalived `weight`), default 0 (FAULT while down).
    #[serde(default = "zero_i32")]
    pub weight: Spanned<i32>,
    /// keepalived `weight N reverse`: success lowers (positive weight) / failure raises
    /// (negative weight) the priority; with weight 0, FAULT while the script *succeeds*.
    #[serde(default, skip_serializing_if = "is_false")]
    pub weight_reverse: bool,
    /// Successes in a row to be up (keepalived `rise`), default 1.
    #[serde(default = "default_one")]
    pub rise: Spanned<u32>,
    /// Failures in a row to be down (keepalived `fall`), default 1.
    #[serde(default = "default_one")]
    pub fall: Spanned<u32>,
    /// Run as this user and its primary group (keepalived `user`); default: xlb's own user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<Spanned<String>>,
    /// Down until the first success (keepalived `init_fail`); default: up-or-down from the
    /// first result.
    #[serde(default, skip_serializing_if = "is_false")]
    pub init_fail: bool,
}

/// How a `[[vrrp_track_process]]` compares `args` with a process's arguments (keepalived
/// `param_match`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ParamMatch {
    /// The arguments are exactly `args`.
    #[default]
    Exact,
    /// The arguments start with `args`.
    Partial,
    /// The arguments start with `args`, the last one possibly cut short.
    Initial,
}

/// `[[vrrp_track_process]]` (keepalived `vrrp_track_process NAME { ... }`): up while the number
/// of matching processes is within `quorum..=quorum_max`. /proc is scanned every second.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VrrpTrackProcess {
    /// Unique name.
    pub name: Spanned<String>,
    /// The process name (as in /proc/PID/comm, at most 15 bytes) or, with `full_command` or
    /// `args`, the program as in argv[0] (keepalived `process`).
    pub process: Spanned<String>,
    /// Its arguments (keepalived `process PATH ARGS...`); implies `full_command`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args: Option<Vec<String>>,
    /// How `args` are compared (keepalived `param_match`), default `exact`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub param_match: Option<ParamMatch>,
    /// Match argv[0] instead of the process name (keepalived `full_command`).
    #[serde(default, skip_serializing_if = "is_false")]
    pub full_command: bool,
    /// Fewest processes for the quorum, 0..=65535 (keepalived `quorum`), default 1.
    #[serde(default = "default_one")]
    pub quorum: Spanned<u32>,
    /// Most processes for the quorum (keepalived `quorum_max`), default unbounded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quorum_max: Option<Spanned<u32>>,
    /// Seconds the quorum must stay lost before it counts, 0..=3600 (keepalived
    /// `terminate_delay`; `delay` sets both), default 0.
    #[serde(default = "zero_f64")]
    pub terminate_delay: Spanned<f64>,
    /// Seconds the quorum must stay gained before it counts, 0..=3600 (keepalived
    /// `fork_delay`), default 0.
    #[serde(default = "zero_f64")]
    pub fork_delay: Spanned<f64>,
    /// -254..=254 (keepalived `weight`), default 0 (FAULT without quorum); as `[[vrrp_script]]`.
    #[serde(default = "zero_i32")]
    pub weight: Spanned<i32>,
    /// keepalived `weight N reverse`.
    #[serde(default, skip_serializing_if = "is_false")]
    pub weight_reverse: bool,
}

/// `[[vrrp_track_file]]` (keepalived `track_file NAME { file PATH; weight W }`): the integer in
/// the file (C `strtol` base 0; missing or empty file = 0) times `weight` is added to the
/// priority; a product of -254 or less is FAULT. Weight 0: FAULT while the value is not 0
/// (`weight_reverse`: while it is 0). The file is read every second.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VrrpTrackFile {
    /// Unique name.
    pub name: Spanned<String>,
    /// The file (absolute path).
    pub file: Spanned<PathBuf>,
    /// -254..=254 (keepalived `weight`), default 1.
    #[serde(default = "default_file_weight")]
    pub weight: Spanned<i32>,
    /// keepalived `weight N reverse`: the product's sign is inverted.
    #[serde(default, skip_serializing_if = "is_false")]
    pub weight_reverse: bool,
}

fn default_script_interval() -> Spanned<f64> {
    unspanned(1.0)
}
fn zero_i32() -> Spanned<i32> {
    unspanned(0)
}
fn default_file_weight() -> Spanned<i32> {
    unspanned(1)
}
fn is_false(b: &bool) -> bool {
    !*b
}

fn default_priority() -> Spanned<u8> {
    unspanned(100)
}
fn default_advert_int() -> Spanned<f64> {
    unspanned(1.0)
}
fn default_version() -> Spanned<u8> {
    unspanned(2)
}
fn default_false() -> Spanned<bool> {
    unspanned(false)
}
fn default_garp_delay() -> Spanned<f64> {
    unspanned(5.0)
}
fn default_garp_repeat() -> u32 {
    5
}

/// `[[vrrp_sync_group]]` (keepalived `vrrp_sync_group NAME { group { ... } }`): when one member
/// changes state, all do.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VrrpSyncGroup {
    /// Unique name.
    pub name: Spanned<String>,
    /// Names of `vrrp_instance`s (each in at most one group), at least one.
    pub group: Spanned<Vec<Spanned<String>>>,
}

/// Wire protocol of `[sync]`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SyncProtocol {
    /// xlb's own: HMAC-SHA256 on every message, replay window, state changes, expiry and
    /// health views.
    #[default]
    Xlb,
    /// IPVS's sync protocol version 1 (an LVS director's `ipvsadm --start-daemon`): no
    /// authentication, connections only. For migrations, on a trusted segment.
    Ipvs,
}

/// `[sync]`: connection sync between directors. See xlb.toml(5) for the guarantees.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sync {
    /// This director's id, unique among the peers, 1..=4294967295 (`xlb conns` shows it as the
    /// origin of the flows it dispatched).
    pub director_id: Spanned<u32>,
    /// `xlb` (default) or `ipvs`.
    #[serde(default = "default_sync_protocol")]
    pub protocol: Spanned<SyncProtocol>,
    /// File holding the shared key (at least 16 bytes, trailing newline ignored). Required with
    /// `protocol = "xlb"`; not allowed with `ipvs` (which has no authentication). Absolute.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_file: Option<Spanned<PathBuf>>,
    /// Peer directors' addresses (unicast). Exactly one of `peers` and `group`.
    #[serde(default = "empty_vec", skip_serializing_if = "spanned_vec_is_empty")]
    pub peers: Spanned<Vec<Spanned<IpAddr>>>,
    /// Multicast group (IPVS: 224.0.0.81). Exactly one of `peers` and `group`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<Spanned<IpAddr>>,
    /// UDP port: default 8849 for `xlb`, 8848 (IPVS's) for `ipvs`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<Spanned<u16>>,
    /// Interface the sync traffic leaves and arrives on (keepalived `lvs_sync_daemon IFACE`).
    /// Required with `group`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<Spanned<String>>,
    /// IPVS sync id (0..=255, 0 = accept every id); `ipvs` only.
    #[serde(default, skip_serializing_if = "is_zero_u8")]
    pub sync_id: u8,
    /// Most datagrams sent per second (rate limit), 1..=1000000, default 10000.
    #[serde(default = "default_sync_rate")]
    pub max_messages_per_second: Spanned<u32>,
    /// Largest datagram in bytes, 200..=65000, default 1400 (under a 1500 MTU).
    #[serde(default = "default_sync_message_bytes")]
    pub max_message_bytes: Spanned<u32>,
    /// Seconds a message stays acceptable by its sender's clock (replay bound across restarts;
    /// the directors' clocks must agree within it), 1..=3600, default 30.
    #[serde(default = "default_sync_max_age")]
    pub max_age: Spanned<f64>,
    /// Seconds between full resends of this director's connections and health view, so that a
    /// restarted peer re-learns the table, 1..=3600, default 10.
    #[serde(default = "default_sync_refresh")]
    pub refresh_interval: Spanned<f64>,
}

fn spanned_vec_is_empty<T>(v: &Spanned<Vec<T>>) -> bool {
    v.get_ref().is_empty()
}
fn is_zero_u8(v: &u8) -> bool {
    *v == 0
}
fn default_sync_protocol() -> Spanned<SyncProtocol> {
    unspanned(SyncProtocol::Xlb)
}
fn default_sync_rate() -> Spanned<u32> {
    unspanned(10_000)
}
fn default_sync_message_bytes() -> Spanned<u32> {
    unspanned(1400)
}
fn default_sync_max_age() -> Spanned<f64> {
    unspanned(30.0)
}
fn default_sync_refresh() -> Spanned<f64> {
    unspanned(10.0)
}
