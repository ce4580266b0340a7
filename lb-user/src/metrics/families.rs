//! Every metric family xlb exports, registered with its type, help and label set.
//!
//! Counter families are registered without `_total` (prometheus-client appends it).
use std::sync::atomic::AtomicU64;

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge, info::Info},
    registry::Registry,
};

/// A float gauge.
pub type FGauge = Gauge<f64, AtomicU64>;
/// A float counter (seconds).
pub type FCounter = Counter<f64, AtomicU64>;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BuildLabels {
    pub version: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ActionLabels {
    pub action: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EventLabels {
    pub event: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct InterfaceLabels {
    pub interface: String,
    pub mode: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ServiceLabels {
    pub service: String,
    pub vip: String,
    pub port: String,
    pub protocol: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RealLabels {
    pub service: String,
    pub vip: String,
    pub port: String,
    pub protocol: String,
    pub real: String,
}

/// A real server's labels plus its forwarding method (`dr`, `ipip`, `gue`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RealForwardLabels {
    pub service: String,
    pub vip: String,
    pub port: String,
    pub protocol: String,
    pub real: String,
    pub method: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CheckResultLabels {
    pub service: String,
    pub real: String,
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CheckLabels {
    pub service: String,
    pub real: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct InstanceLabels {
    /// Not `instance`: Prometheus sets that label to the scraped target.
    pub vrrp_instance: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct InstanceStateLabels {
    pub vrrp_instance: String,
    pub state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BadAdvertLabels {
    pub vrrp_instance: String,
    pub reason: String,
}

/// Families with labels, filled from a status snapshot.
#[derive(Default)]
pub struct Families {
    pub xdp_actions: Family<ActionLabels, Counter>,
    pub xdp_other_events: Family<EventLabels, Counter>,
    pub interface_xdp_mode: Family<InterfaceLabels, Gauge>,
    pub service_connections: Family<ServiceLabels, Counter>,
    pub service_packets: Family<ServiceLabels, Counter>,
    pub service_bytes: Family<ServiceLabels, Counter>,
    pub service_active: Family<ServiceLabels, Gauge>,
    pub service_quorum_up: Family<ServiceLabels, Gauge>,
    pub real_connections: Family<RealLabels, Counter>,
    pub real_packets: Family<RealLabels, Counter>,
    pub real_bytes: Family<RealLabels, Counter>,
    pub real_active_connections: Family<RealLabels, Gauge>,
    pub real_inactive_connections: Family<RealLabels, Gauge>,
    pub real_synced_active_connections: Family<RealLabels, Gauge>,
    pub real_synced_inactive_connections: Family<RealLabels, Gauge>,
    pub real_weight: Family<RealLabels, Gauge>,
    pub real_up: Family<RealLabels, Gauge>,
    pub real_forward: Family<RealForwardLabels, Gauge>,
    pub check_results: Family<CheckResultLabels, Counter>,
    pub check_last_duration: Family<CheckLabels, FGauge>,
    pub check_seconds: Family<CheckLabels, FCounter>,
    pub vrrp_state: Family<InstanceStateLabels, Gauge>,
    pub vrrp_priority: Family<InstanceLabels, Gauge>,
    pub vrrp_effective_priority: Family<InstanceLabels, Gauge>,
    pub vrrp_adverts_received: Family<InstanceLabels, Counter>,
    pub vrrp_adverts_sent: Family<InstanceLabels, Counter>,
    pub vrrp_bad_adverts: Family<BadAdvertLabels, Counter>,
    pub vrrp_transitions: Family<InstanceLabels, Counter>,
}

/// Families without labels (one series each).
#[derive(Default)]
pub struct Singles {
    pub conn_table_entries: Gauge,
    pub persistence_templates: Gauge,
    pub health_peer_views: Gauge,
    pub conn_table_size: Gauge,
    pub sweep_duration: FGauge,
    pub config_reload_successful: Gauge,
    pub config_reload_timestamp: FGauge,
    pub process_start_time: FGauge,
    pub process_cpu_seconds: FCounter,
    pub process_resident_memory: Gauge,
    pub process_virtual_memory: Gauge,
    pub process_open_fds: Gauge,
    pub process_max_fds: Gauge,
}

/// One XDP counter that is an event (not an action): its metric name and help.
pub struct EventCounter {
    /// Key in `StatusReport::counters` (lb_common::stat::NAMES).
    pub key: &'static str,
    /// Family name without `_total`.
    pub name: &'static str,
    pub help: &'static str,
}

/// XDP verdicts: a partition of the packets the program saw (`sum()` = all packets).
pub const XDP_ACTIONS: &[(&str, &str)] = &[
    ("action_pass", "pass"),
    ("action_drop", "drop"),
    ("action_tx", "tx"),
    ("action_redirect", "redirect"),
];

/// Every other XDP counter: events that overlap each other and the actions, so each has its
/// own name.
pub const XDP_EVENTS: &[EventCounter] = &[
    EventCounter { key: "not_service", name: "xlb_xdp_not_service_packets", help: "Packets not for an active service, passed to the kernel" },
    EventCounter { key: "malformed", name: "xlb_xdp_malformed_packets", help: "Packets with truncated or inconsistent headers (passed, never forwarded)" },
    EventCounter { key: "no_real_server", name: "xlb_xdp_no_real_server_drops", help: "Packets dropped because the service had no real server and no sorry server" },
    EventCounter { key: "conn_hit", name: "xlb_conn_table_hits", help: "Packets whose flow was found in the connection table" },
    EventCounter { key: "conn_miss", name: "xlb_conn_table_misses", help: "Packets whose flow was not in the connection table (dispatched by the ring)" },
    EventCounter { key: "icmp_forwarded", name: "xlb_xdp_icmp_errors_forwarded", help: "ICMP errors forwarded to the real server of the flow they are about" },
    EventCounter { key: "fragment_dropped", name: "xlb_xdp_fragments_dropped", help: "IP fragments to a service that cannot forward them consistently (dropped)" },
    EventCounter { key: "fragment_forwarded", name: "xlb_xdp_fragments_forwarded", help: "IP fragments forwarded by client-address hashing" },
    EventCounter { key: "flood_not_inserted", name: "xlb_flood_guard_not_inserted", help: "New flows forwarded but not inserted in the connection table (flood guard engaged)" },
    EventCounter { key: "redispatched", name: "xlb_flows_redispatched", help: "Table entries whose real server was removed or failed, dispatched afresh" },
    EventCounter { key: "sorry_server", name: "xlb_sorry_server_packets", help: "Packets sent to a sorry server" },
    EventCounter { key: "inactive_service", name: "xlb_xdp_inactive_service_packets", help: "Packets for a service not active on this director (e.g. VRRP BACKUP), passed" },
    EventCounter { key: "insert_failed", name: "xlb_conn_table_insert_failures", help: "Connection-table inserts that failed" },
    EventCounter { key: "prev_ring_hit", name: "xlb_prev_ring_hits", help: "Mid-stream TCP packets without an entry that found their real server in the previous ring" },
    EventCounter { key: "redirect_failed", name: "xlb_xdp_redirect_failures", help: "Redirects to another interface that failed (dropped)" },
    EventCounter { key: "not_our_mac", name: "xlb_xdp_other_mac_packets", help: "Unicast frames for another host's MAC (e.g. flooded by a switch), passed untouched" },
    EventCounter { key: "group_mac", name: "xlb_xdp_group_mac_packets", help: "Broadcast and multicast frames, passed untouched" },
    EventCounter { key: "persist_hit", name: "xlb_persistence_template_hits", help: "New connections of persistent services sent where the client's template says" },
    EventCounter { key: "persist_miss", name: "xlb_persistence_template_misses", help: "New connections of persistent services scheduled afresh (no valid template), a template written" },
    EventCounter { key: "conn_reused", name: "xlb_conn_reused", help: "SYNs on a closed connection's entry (client port reuse): counted as new connections and scheduled afresh" },
    EventCounter { key: "tunnelled", name: "xlb_xdp_tunnelled_packets", help: "Packets encapsulated (IPIP or GUE) to tunnelled real servers" },
    EventCounter { key: "too_big_answered", name: "xlb_xdp_too_big_answered", help: "Frames too big for the tunnel once encapsulated, answered with ICMP fragmentation needed / packet too big" },
    EventCounter { key: "too_big_dropped", name: "xlb_xdp_too_big_drops", help: "Frames too big for the tunnel once encapsulated that may be fragmented (IPv4 without DF): dropped" },
    EventCounter { key: "set_full", name: "xlb_conn_table_set_full", help: "New IPv4 flows whose set of the connection table was full of protected flows, stored in the LRU overflow" },
    EventCounter { key: "sync_ring_full", name: "xlb_sync_events_lost", help: "Connection-sync events lost because the daemon did not drain the ring buffer in time" },
];

/// VRRP roles, every one exported each scrape (one-hot).
pub const VRRP_STATES: &[&str] = &["INIT", "BACKUP", "MASTER", "FAULT"];

/// XDP attach modes, every one exported per interface (one-hot).
pub const XDP_MODES: &[&str] = &["native", "generic"];

impl Families {
    /// Registers every family (label sets filled later) with `reg`.
    pub fn register(&self, reg: &mut Registry) {
        macro_rules! r {
            ($name:literal, $help:literal, $f:ident) => {
                reg.register($name, $help, self.$f.clone())
            };
        }
        r!(
            "xlb_xdp_actions",
            "Packets by XDP verdict (a partition: sum() is every packet seen)",
            xdp_actions
        );
        r!(
            "xlb_interface_xdp_mode",
            "1 for the XDP mode attached on the interface (one series per mode)",
            interface_xdp_mode
        );
        r!(
            "xlb_service_connections",
            "New connections to a virtual server",
            service_connections
        );
        r!(
            "xlb_service_packets",
            "Packets forwarded for a virtual server",
            service_packets
        );
        r!(
            "xlb_service_bytes",
            "Bytes forwarded for a virtual server",
            service_bytes
        );
        r!(
            "xlb_service_active",
            "1 when this director forwards the virtual server now",
            service_active
        );
        r!(
            "xlb_service_quorum_up",
            "1 when the virtual server is at quorum",
            service_quorum_up
        );
        r!(
            "xlb_real_connections",
            "New connections sent to a real server",
            real_connections
        );
        r!(
            "xlb_real_packets",
            "Packets sent to a real server",
            real_packets
        );
        r!("xlb_real_bytes", "Bytes sent to a real server", real_bytes);
        r!(
            "xlb_real_active_connections",
            "ActiveConn: established flows (as ipvsadm)",
            real_active_connections
        );
        r!(
            "xlb_real_inactive_connections",
            "InActConn: flows in other states and UDP (as ipvsadm)",
            real_inactive_connections
        );
        r!(
            "xlb_real_synced_active_connections",
            "Of ActiveConn, entries learnt from peer directors (connection sync)",
            real_synced_active_connections
        );
        r!(
            "xlb_real_synced_inactive_connections",
            "Of InActConn, entries learnt from peer directors (connection sync)",
            real_synced_inactive_connections
        );
        r!(
            "xlb_real_weight",
            "Weight in force (0 = quiescent or inhibited)",
            real_weight
        );
        r!(
            "xlb_real_up",
            "1 when the real server receives traffic (health up, MAC known)",
            real_up
        );
        r!(
            "xlb_real_forward_info",
            "1, labelled with the real server's forwarding method (dr, ipip, gue)",
            real_forward
        );
        r!(
            "xlb_health_check_results",
            "Health-check results (after retries) by class",
            check_results
        );
        r!(
            "xlb_health_check_last_duration_seconds",
            "Time the last health-check result took, retries included",
            check_last_duration
        );
        r!(
            "xlb_health_check_seconds",
            "Time spent in health checks (divide by the results' rate for the mean)",
            check_seconds
        );
        r!(
            "xlb_vrrp_state",
            "1 for the VRRP instance's current state (one series per state)",
            vrrp_state
        );
        r!(
            "xlb_vrrp_priority",
            "Configured VRRP priority",
            vrrp_priority
        );
        r!(
            "xlb_vrrp_effective_priority",
            "Advertised VRRP priority (after track_service_weight)",
            vrrp_effective_priority
        );
        r!(
            "xlb_vrrp_adverts_received",
            "Valid VRRP advertisements received",
            vrrp_adverts_received
        );
        r!(
            "xlb_vrrp_adverts_sent",
            "VRRP advertisements sent",
            vrrp_adverts_sent
        );
        r!(
            "xlb_vrrp_bad_adverts",
            "VRRP advertisements dropped, by reason",
            vrrp_bad_adverts
        );
        r!(
            "xlb_vrrp_transitions",
            "VRRP state changes",
            vrrp_transitions
        );
    }
}

impl Singles {
    pub fn register(&self, reg: &mut Registry) {
        macro_rules! r {
            ($name:literal, $help:literal, $f:ident) => {
                reg.register($name, $help, self.$f.clone())
            };
        }
        r!(
            "xlb_conn_table_entries",
            "Flows in the connection table",
            conn_table_entries
        );
        r!(
            "xlb_persistence_templates",
            "Persistence templates in force (client network -> real server of persistent services)",
            persistence_templates
        );
        r!(
            "xlb_health_peer_views",
            "Peer directors whose health view was received in the last 3 s ([sync], confirm_failure)",
            health_peer_views
        );
        r!(
            "xlb_conn_table_size",
            "Capacity of the connection table (conn_table_size)",
            conn_table_size
        );
        r!(
            "xlb_sweep_duration_seconds",
            "Time the last connection-table sweep took",
            sweep_duration
        );
        r!(
            "xlb_config_last_reload_successful",
            "1 when the last configuration load or reload succeeded",
            config_reload_successful
        );
        r!(
            "xlb_config_last_reload_timestamp_seconds",
            "Time of the last configuration load or reload (Unix seconds)",
            config_reload_timestamp
        );
        r!(
            "process_start_time_seconds",
            "Start time of the process since the Unix epoch in seconds",
            process_start_time
        );
        r!(
            "process_cpu_seconds",
            "Total user and system CPU time spent in seconds",
            process_cpu_seconds
        );
        r!(
            "process_resident_memory_bytes",
            "Resident memory size in bytes",
            process_resident_memory
        );
        r!(
            "process_virtual_memory_bytes",
            "Virtual memory size in bytes",
            process_virtual_memory
        );
        r!(
            "process_open_fds",
            "Number of open file descriptors",
            process_open_fds
        );
        r!(
            "process_max_fds",
            "Maximum number of open file descriptors",
            process_max_fds
        );
    }
}

/// `xlb_build_info{version}`.
pub fn register_build_info(reg: &mut Registry, version: &str) {
    reg.register(
        "xlb_build",
        "xlb build (always 1)",
        Info::new(BuildLabels {
            version: version.to_string(),
        }),
    );
}
