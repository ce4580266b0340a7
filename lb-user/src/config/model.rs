//! The configuration as the daemon uses it: plain values with every context-dependent default
//! resolved (a real server's port, its check, a check's interval and retries, a service's name
//! and how its VIP is announced), built once from the validated [`schema`](super::schema) by
//! [`Config::from_schema`]. Source positions stay in the schema: nothing here needs them.
use std::{
    net::{IpAddr, SocketAddr},
    path::PathBuf,
};

use super::schema;
pub use super::schema::{
    Announce, AuthType, CheckType, Forward, HttpMethod, LogFormat, ParamMatch, Protocol, Scheduler,
    SyncProtocol, TunnelType, VrrpState, XdpMode,
};
pub use super::types::{IpPrefix, MacAddr};

/// The whole configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    pub global: Global,
    pub timeouts: Timeouts,
    pub virtual_servers: Vec<VirtualServer>,
    pub vrrp_instances: Vec<VrrpInstance>,
    pub vrrp_sync_groups: Vec<VrrpSyncGroup>,
    pub vrrp_scripts: Vec<VrrpScript>,
    pub vrrp_track_processes: Vec<VrrpTrackProcess>,
    pub vrrp_track_files: Vec<VrrpTrackFile>,
    /// `[sync]`; `None` = no connection sync.
    pub sync: Option<SyncSettings>,
}

/// Where sync messages go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SyncPeers {
    Unicast(Vec<IpAddr>),
    Group(IpAddr),
}

/// `[sync]` with its defaults resolved; see [`schema::Sync`].
#[derive(Clone, Debug, PartialEq)]
pub struct SyncSettings {
    pub director_id: u32,
    pub protocol: SyncProtocol,
    pub key_file: Option<PathBuf>,
    pub peers: SyncPeers,
    pub port: u16,
    pub interface: Option<String>,
    pub sync_id: u8,
    pub max_messages_per_second: u32,
    pub max_message_bytes: u32,
    /// Seconds.
    pub max_age: f64,
    /// Seconds.
    pub refresh_interval: f64,
}

/// xlb's sync port (IPVS's is 8848, `crate::sync::ipvs::PORT`).
pub const XLB_SYNC_PORT: u16 = 8849;

impl SyncSettings {
    fn from_schema(s: &schema::Sync) -> SyncSettings {
        let protocol = *s.protocol.get_ref();
        let default_port = match protocol {
            SyncProtocol::Xlb => XLB_SYNC_PORT,
            SyncProtocol::Ipvs => crate::sync::ipvs::PORT,
        };
        SyncSettings {
            director_id: *s.director_id.get_ref(),
            protocol,
            key_file: s.key_file.as_ref().map(|k| k.get_ref().clone()),
            peers: match &s.group {
                Some(g) => SyncPeers::Group(*g.get_ref()),
                None => {
                    SyncPeers::Unicast(s.peers.get_ref().iter().map(|p| *p.get_ref()).collect())
                }
            },
            port: s.port.as_ref().map_or(default_port, |p| *p.get_ref()),
            interface: s.interface.as_ref().map(|i| i.get_ref().clone()),
            sync_id: s.sync_id,
            max_messages_per_second: *s.max_messages_per_second.get_ref(),
            max_message_bytes: *s.max_message_bytes.get_ref(),
            max_age: *s.max_age.get_ref(),
            refresh_interval: *s.refresh_interval.get_ref(),
        }
    }
}

/// `[global]`; see [`schema::Global`] for each key's meaning.
#[derive(Clone, Debug, PartialEq)]
pub struct Global {
    pub router_id: Option<String>,
    pub interfaces: Vec<String>,
    pub xdp_mode: XdpMode,
    pub conn_table_size: u32,
    pub persistence_table_size: u32,
    pub flood_threshold: u32,
    /// 0 = sized from the services.
    pub maglev_capacity: u32,
    pub control_socket: PathBuf,
    pub bpffs_dir: PathBuf,
    pub state_dir: PathBuf,
    pub metrics_listen: Option<SocketAddr>,
    /// Seconds.
    pub sweep_interval: f64,
    /// Seconds.
    pub previous_ring_hold: f64,
    pub log_format: LogFormat,
}

/// `[timeouts]`, in seconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    pub tcp: u32,
    pub tcp_fin: u32,
    pub syn_recv: u32,
    pub close: u32,
    pub udp: u32,
}

impl Default for Timeouts {
    /// IPVS's defaults (the schema's).
    fn default() -> Self {
        Timeouts::from_schema(&schema::Timeouts::default())
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct VirtualServer {
    /// `name`, else `"vip:port/proto"`: what `track_service`, the CLI and logs call it.
    pub name: String,
    pub vip: IpAddr,
    pub port: u16,
    pub protocol: Protocol,
    pub scheduler: Scheduler,
    pub maglev_table_size: u32,
    pub persistence_timeout: u32,
    /// Leading bits of the client address that identify a persistent client (32 or 128 =
    /// the whole address).
    pub persistence_prefix_len: u8,
    pub sorry_server: Option<IpAddr>,
    pub sorry_server_mac: Option<MacAddr>,
    pub quorum: u32,
    pub hysteresis: u32,
    /// Seconds; the default check interval.
    pub delay_loop: f64,
    pub alpha: bool,
    pub inhibit_on_failure: bool,
    /// Keep established flows on a locally failed real server until the failure is confirmed
    /// (see [`crate::health::agreement`]).
    pub confirm_failure: bool,
    /// Seconds; `None` = `fall` x `interval` of each real server's check.
    pub confirm_delay: Option<f64>,
    /// How the VIP is claimed (`announce`, else `vrrp` when a VRRP instance lists the VIP, else
    /// `always`).
    pub announce: Announce,
    pub real_servers: Vec<RealServer>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct RealServer {
    pub address: IpAddr,
    /// Its own `port`, else the virtual server's.
    pub port: u16,
    pub weight: u32,
    pub mac: Option<MacAddr>,
    pub interface: Option<String>,
    pub notify_up: Option<Vec<String>>,
    pub notify_down: Option<Vec<String>>,
    /// Its own check, else the virtual server's; `None` when there is none or it is
    /// `type = "none"` (the server is then always up).
    pub check: Option<Check>,
    /// Tunnel mode (its own `forward`, else the virtual server's, is `tunnel`); `None` = direct
    /// routing.
    pub tunnel: Option<Tunnel>,
}

/// How a tunnelled real server is reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tunnel {
    /// Its own `tunnel`, else the virtual server's.
    pub kind: TunnelType,
    /// The virtual server's `gue_port`.
    pub gue_port: u16,
    /// The virtual server's `tunnel_mtu`; `None` = from the route or the egress link.
    pub mtu: Option<u16>,
}

impl RealServer {
    pub fn socket_addr(&self) -> SocketAddr {
        SocketAddr::new(self.address, self.port)
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Check {
    pub kind: CheckType,
    /// Seconds between checks: `interval`, else the virtual server's `delay_loop`.
    pub interval: f64,
    pub timeout: f64,
    pub rise: u32,
    pub fall: u32,
    /// `retry`, else 1 (0 for scripts).
    pub retry: u32,
    /// `delay_before_retry`, else 1 s (3 s for http/https).
    pub delay_before_retry: f64,
    /// The address and port probed (`connect_ip`/`connect_port`, else the real server's).
    pub target: SocketAddr,
    pub method: HttpMethod,
    pub path: Option<String>,
    pub host: Option<String>,
    pub status_codes: Option<Vec<u16>>,
    pub body_regex: Option<String>,
    pub digest: Option<String>,
    pub tls_verify: bool,
    pub ca_file: Option<PathBuf>,
    pub command: Option<Vec<String>>,
    pub shell: bool,
    pub dynamic: bool,
    pub user: Option<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Authentication {
    pub auth_type: AuthType,
    pub auth_pass: String,
}

#[derive(Clone, Debug, PartialEq)]
pub struct VrrpInstance {
    pub name: String,
    pub state: VrrpState,
    pub interface: String,
    pub virtual_router_id: u8,
    pub priority: u8,
    /// Seconds.
    pub advert_int: f64,
    pub version: u8,
    pub authentication: Option<Authentication>,
    pub virtual_ipaddress: Vec<IpPrefix>,
    pub unicast_src_ip: Option<IpAddr>,
    pub unicast_peer: Vec<IpAddr>,
    pub nopreempt: bool,
    /// Seconds.
    pub preempt_delay: f64,
    /// Seconds.
    pub garp_master_delay: f64,
    pub garp_master_repeat: u32,
    pub track_interface: Vec<String>,
    pub track_service: Vec<String>,
    pub track_service_weight: Option<i32>,
    pub notify_master: Option<Vec<String>>,
    pub notify_backup: Option<Vec<String>>,
    pub notify_fault: Option<Vec<String>>,
    pub notify_stop: Option<Vec<String>>,
    pub notify: Option<Vec<String>>,
    pub virtual_ipaddress_excluded: Vec<IpPrefix>,
    /// Seconds; `None`: no refresh.
    pub garp_master_refresh: Option<f64>,
    pub garp_master_refresh_repeat: u32,
    /// Seconds.
    pub garp_interval: f64,
    pub track_script: Vec<TrackRef>,
    pub track_process: Vec<TrackRef>,
    pub track_file: Vec<TrackRef>,
}

/// An instance's reference to a tracked object; see [`schema::TrackRef`].
#[derive(Clone, Debug, PartialEq)]
pub struct TrackRef {
    pub name: String,
    pub weight: Option<i32>,
    pub reverse: Option<bool>,
}

/// `[[vrrp_script]]`; see [`schema::VrrpScript`].
#[derive(Clone, Debug, PartialEq)]
pub struct VrrpScript {
    pub name: String,
    pub script: Vec<String>,
    /// Seconds.
    pub interval: f64,
    /// Seconds (the interval when not set).
    pub timeout: f64,
    pub weight: i32,
    pub weight_reverse: bool,
    pub rise: u32,
    pub fall: u32,
    pub user: Option<String>,
    pub init_fail: bool,
}

/// `[[vrrp_track_process]]`; see [`schema::VrrpTrackProcess`].
#[derive(Clone, Debug, PartialEq)]
pub struct VrrpTrackProcess {
    pub name: String,
    pub process: String,
    /// With `args` (or `full_command`) `process` is compared with argv[0].
    pub args: Option<Vec<String>>,
    /// `None`: the arguments are not compared (`args` given: `Exact`, as keepalived).
    pub param_match: Option<ParamMatch>,
    pub full_command: bool,
    pub quorum: u32,
    pub quorum_max: u32,
    /// Seconds.
    pub terminate_delay: f64,
    /// Seconds.
    pub fork_delay: f64,
    pub weight: i32,
    pub weight_reverse: bool,
}

/// `[[vrrp_track_file]]`; see [`schema::VrrpTrackFile`].
#[derive(Clone, Debug, PartialEq)]
pub struct VrrpTrackFile {
    pub name: String,
    pub file: PathBuf,
    pub weight: i32,
    pub weight_reverse: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub struct VrrpSyncGroup {
    pub name: String,
    pub group: Vec<String>,
}

impl Config {
    /// Resolves a validated schema into the runtime configuration.
    pub fn from_schema(s: &schema::Config) -> Config {
        Config {
            global: Global::from_schema(&s.global),
            timeouts: Timeouts::from_schema(&s.timeouts),
            virtual_servers: s
                .virtual_servers
                .iter()
                .map(|vs| VirtualServer::from_schema(vs, s))
                .collect(),
            vrrp_instances: s
                .vrrp_instances
                .iter()
                .map(VrrpInstance::from_schema)
                .collect(),
            vrrp_sync_groups: s
                .vrrp_sync_groups
                .iter()
                .map(|g| VrrpSyncGroup {
                    name: g.name.get_ref().clone(),
                    group: g
                        .group
                        .get_ref()
                        .iter()
                        .map(|n| n.get_ref().clone())
                        .collect(),
                })
                .collect(),
            vrrp_scripts: s.vrrp_scripts.iter().map(VrrpScript::from_schema).collect(),
            vrrp_track_processes: s
                .vrrp_track_processes
                .iter()
                .map(VrrpTrackProcess::from_schema)
                .collect(),
            vrrp_track_files: s
                .vrrp_track_files
                .iter()
                .map(|f| VrrpTrackFile {
                    name: f.name.get_ref().clone(),
                    file: f.file.get_ref().clone(),
                    weight: *f.weight.get_ref(),
                    weight_reverse: f.weight_reverse,
                })
                .collect(),
            sync: s.sync.as_ref().map(SyncSettings::from_schema),
        }
    }

    /// The virtual server named `name`.
    pub fn virtual_server(&self, name: &str) -> Option<&VirtualServer> {
        self.virtual_servers.iter().find(|v| v.name == name)
    }

    /// The VRRP instance whose `virtual_ipaddress` lists `vip`.
    pub fn vrrp_instance_for(&self, vip: IpAddr) -> Option<&VrrpInstance> {
        self.vrrp_instances
            .iter()
            .find(|i| i.virtual_ipaddress.iter().any(|p| p.addr == vip))
    }
}

impl Global {
    fn from_schema(g: &schema::Global) -> Global {
        Global {
            router_id: g.router_id.clone(),
            interfaces: g
                .interfaces
                .get_ref()
                .iter()
                .map(|i| i.get_ref().clone())
                .collect(),
            xdp_mode: g.xdp_mode,
            conn_table_size: *g.conn_table_size.get_ref(),
            persistence_table_size: *g.persistence_table_size.get_ref(),
            flood_threshold: g.flood_threshold,
            maglev_capacity: *g.maglev_capacity.get_ref(),
            control_socket: g.control_socket.get_ref().clone(),
            bpffs_dir: g.bpffs_dir.get_ref().clone(),
            state_dir: g.state_dir.get_ref().clone(),
            metrics_listen: g.metrics_listen,
            sweep_interval: *g.sweep_interval.get_ref(),
            previous_ring_hold: *g.previous_ring_hold.get_ref(),
            log_format: g.log_format,
        }
    }
}

impl Timeouts {
    fn from_schema(t: &schema::Timeouts) -> Timeouts {
        Timeouts {
            tcp: *t.tcp.get_ref(),
            tcp_fin: *t.tcp_fin.get_ref(),
            syn_recv: *t.syn_recv.get_ref(),
            close: *t.close.get_ref(),
            udp: *t.udp.get_ref(),
        }
    }
}

impl VirtualServer {
    fn from_schema(vs: &schema::VirtualServer, cfg: &schema::Config) -> VirtualServer {
        VirtualServer {
            name: vs.service_name(),
            vip: *vs.vip.get_ref(),
            port: *vs.port.get_ref(),
            protocol: vs.protocol,
            scheduler: vs.scheduler,
            maglev_table_size: *vs.maglev_table_size.get_ref(),
            persistence_timeout: *vs.persistence_timeout.get_ref(),
            persistence_prefix_len: vs
                .persistence_granularity
                .as_ref()
                .map_or(if vs.vip.get_ref().is_ipv4() { 32 } else { 128 }, |g| {
                    g.get_ref().prefix_len
                }),
            sorry_server: vs.sorry_server.as_ref().map(|s| *s.get_ref()),
            sorry_server_mac: vs.sorry_server_mac.as_ref().map(|m| *m.get_ref()),
            quorum: vs.quorum,
            hysteresis: *vs.hysteresis.get_ref(),
            delay_loop: *vs.delay_loop.get_ref(),
            alpha: vs.alpha,
            inhibit_on_failure: vs.inhibit_on_failure,
            confirm_failure: vs.confirm_failure,
            confirm_delay: vs.confirm_delay.as_ref().map(|d| *d.get_ref()),
            announce: cfg.announce_of(vs),
            real_servers: vs
                .real_servers
                .iter()
                .map(|rs| RealServer::from_schema(rs, vs))
                .collect(),
        }
    }
}

impl RealServer {
    fn from_schema(rs: &schema::RealServer, vs: &schema::VirtualServer) -> RealServer {
        let vec = |v: &Option<serde_spanned::Spanned<Vec<String>>>| {
            v.as_ref().map(|v| v.get_ref().clone())
        };
        RealServer {
            address: *rs.address.get_ref(),
            port: rs.effective_port(vs),
            weight: *rs.weight.get_ref(),
            mac: rs.mac.as_ref().map(|m| *m.get_ref()),
            interface: rs.interface.as_ref().map(|i| i.get_ref().clone()),
            notify_up: vec(&rs.notify_up),
            notify_down: vec(&rs.notify_down),
            check: vs.check_of(rs).map(|c| Check::from_schema(c, vs, rs)),
            tunnel: (rs.forward.unwrap_or(vs.forward) == Forward::Tunnel).then(|| Tunnel {
                kind: rs.tunnel.unwrap_or(vs.tunnel),
                gue_port: *vs.gue_port.get_ref(),
                // Validation keeps it within u16.
                mtu: vs.tunnel_mtu.as_ref().map(|m| *m.get_ref() as u16),
            }),
        }
    }
}

impl Check {
    fn from_schema(
        c: &schema::Check,
        vs: &schema::VirtualServer,
        rs: &schema::RealServer,
    ) -> Check {
        Check::resolve(c, c.effective_interval(vs), c.probe_addr(vs, rs))
    }

    /// A check of the file resolved with the interval and probed address of its context.
    pub fn resolve(c: &schema::Check, interval: f64, target: SocketAddr) -> Check {
        let s =
            |v: &Option<serde_spanned::Spanned<String>>| v.as_ref().map(|v| v.get_ref().clone());
        Check {
            kind: *c.kind.get_ref(),
            interval,
            timeout: *c.timeout.get_ref(),
            rise: *c.rise.get_ref(),
            fall: *c.fall.get_ref(),
            retry: c.effective_retry(),
            delay_before_retry: c.effective_delay_before_retry(),
            target,
            method: c.method.as_ref().map(|m| *m.get_ref()).unwrap_or_default(),
            path: s(&c.path),
            host: s(&c.host),
            status_codes: c.status_codes.as_ref().map(|v| v.get_ref().clone()),
            body_regex: s(&c.body_regex),
            digest: s(&c.digest),
            tls_verify: c.tls_verify,
            ca_file: c.ca_file.as_ref().map(|p| p.get_ref().clone()),
            command: c.command.as_ref().map(|v| v.get_ref().clone()),
            shell: c.shell,
            dynamic: c.dynamic,
            user: s(&c.user),
        }
    }
}

impl VrrpInstance {
    fn from_schema(v: &schema::VrrpInstance) -> VrrpInstance {
        let vec = |v: &Option<serde_spanned::Spanned<Vec<String>>>| {
            v.as_ref().map(|v| v.get_ref().clone())
        };
        VrrpInstance {
            name: v.name.get_ref().clone(),
            state: *v.state.get_ref(),
            interface: v.interface.get_ref().clone(),
            virtual_router_id: *v.virtual_router_id.get_ref(),
            priority: *v.priority.get_ref(),
            advert_int: *v.advert_int.get_ref(),
            version: *v.version.get_ref(),
            authentication: v.authentication.as_ref().map(|a| Authentication {
                auth_type: a.get_ref().auth_type,
                auth_pass: a.get_ref().auth_pass.get_ref().clone(),
            }),
            virtual_ipaddress: v
                .virtual_ipaddress
                .get_ref()
                .iter()
                .map(|p| *p.get_ref())
                .collect(),
            unicast_src_ip: v.unicast_src_ip.as_ref().map(|a| *a.get_ref()),
            unicast_peer: v.unicast_peer.iter().map(|a| *a.get_ref()).collect(),
            nopreempt: *v.nopreempt.get_ref(),
            preempt_delay: *v.preempt_delay.get_ref(),
            garp_master_delay: *v.garp_master_delay.get_ref(),
            garp_master_repeat: v.garp_master_repeat,
            track_interface: v
                .track_interface
                .iter()
                .map(|i| i.get_ref().clone())
                .collect(),
            track_service: v
                .track_service
                .iter()
                .map(|i| i.get_ref().clone())
                .collect(),
            track_service_weight: v.track_service_weight.as_ref().map(|w| *w.get_ref()),
            notify_master: vec(&v.notify_master),
            notify_backup: vec(&v.notify_backup),
            notify_fault: vec(&v.notify_fault),
            notify_stop: vec(&v.notify_stop),
            notify: vec(&v.notify),
            virtual_ipaddress_excluded: v
                .virtual_ipaddress_excluded
                .iter()
                .map(|p| *p.get_ref())
                .collect(),
            garp_master_refresh: v.garp_master_refresh.as_ref().map(|r| *r.get_ref()),
            garp_master_refresh_repeat: v
                .garp_master_refresh_repeat
                .as_ref()
                .map_or(1, |r| *r.get_ref()),
            garp_interval: v.garp_interval.as_ref().map_or(0.0, |r| *r.get_ref()),
            track_script: TrackRef::list(&v.track_script),
            track_process: TrackRef::list(&v.track_process),
            track_file: TrackRef::list(&v.track_file),
        }
    }
}

impl TrackRef {
    fn list(v: &[schema::TrackRef]) -> Vec<TrackRef> {
        v.iter()
            .map(|t| TrackRef {
                name: t.name.get_ref().clone(),
                weight: t.weight.as_ref().map(|w| *w.get_ref()),
                reverse: t.reverse,
            })
            .collect()
    }
}

impl VrrpScript {
    fn from_schema(s: &schema::VrrpScript) -> VrrpScript {
        let interval = *s.interval.get_ref();
        VrrpScript {
            name: s.name.get_ref().clone(),
            script: s.script.get_ref().clone(),
            interval,
            timeout: s.timeout.as_ref().map_or(interval, |t| *t.get_ref()),
            weight: *s.weight.get_ref(),
            weight_reverse: s.weight_reverse,
            rise: *s.rise.get_ref(),
            fall: *s.fall.get_ref(),
            user: s.user.as_ref().map(|u| u.get_ref().clone()),
            init_fail: s.init_fail,
        }
    }
}

impl VrrpTrackProcess {
    fn from_schema(p: &schema::VrrpTrackProcess) -> VrrpTrackProcess {
        VrrpTrackProcess {
            name: p.name.get_ref().clone(),
            process: p.process.get_ref().clone(),
            args: p.args.clone(),
            param_match: p.param_match.or(p.args.as_ref().map(|_| ParamMatch::Exact)),
            full_command: p.full_command || p.args.is_some() || p.param_match.is_some(),
            quorum: *p.quorum.get_ref(),
            quorum_max: p.quorum_max.as_ref().map_or(u32::MAX, |q| *q.get_ref()),
            terminate_delay: *p.terminate_delay.get_ref(),
            fork_delay: *p.fork_delay.get_ref(),
            weight: *p.weight.get_ref(),
            weight_reverse: p.weight_reverse,
        }
    }
}
