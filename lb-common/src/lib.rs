//! Map keys and values shared by the XDP program (`lb-ebpf`) and the daemon (`lb-user`).
//!
//! Every type here is `#[repr(C)]`, has no implicit padding (explicit `_pad` fields instead, so the
//! kernel never hashes uninitialised bytes) and is `Copy`. Addresses are stored as four
//! network-byte-order words; an IPv4 address uses word 0 and leaves the rest zero.
#![no_std]

pub mod bench;
pub mod conn;
pub mod hash;

/// Kernel map names, shared so the loader and the program cannot disagree.
pub mod map_names {
    pub const SERVICES: &str = "SERVICES";
    pub const VIPS: &str = "VIPS";
    pub const REALS: &str = "REALS";
    pub const MAGLEV_RINGS: &str = "MAGLEV_RINGS";
    pub const CONN_TABLE: &str = "CONN_TABLE";
    /// The set-associative IPv4 table (`conn::ConnSet`).
    pub const CONN_SETS: &str = "CONN_SETS";
    pub const GLOBAL_STATS: &str = "GLOBAL_STATS";
    pub const SERVICE_STATS: &str = "SERVICE_STATS";
    pub const REAL_STATS: &str = "REAL_STATS";
    pub const RR_STATE: &str = "RR_STATE";
    pub const FLOOD_STATE: &str = "FLOOD_STATE";
    pub const LB_CONFIG: &str = "LB_CONFIG";
    pub const TX_PORTS: &str = "TX_PORTS";
    pub const IFACE_MACS: &str = "IFACE_MACS";
    pub const SERVICE_STATE: &str = "SERVICE_STATE";
    pub const VIP_FILTER: &str = "VIP_FILTER";
    pub const PERSISTENCE: &str = "PERSISTENCE";
    pub const PERSIST_TEMPLATES: &str = "PERSIST_TEMPLATES";
    pub const TUNNELS: &str = "TUNNELS";
    pub const TUNNEL_PROGS: &str = "TUNNEL_PROGS";
    pub const DECAP_DIRECTORS: &str = "DECAP_DIRECTORS";
    pub const DECAP_VIPS: &str = "DECAP_VIPS";
    pub const DECAP_CONFIG: &str = "DECAP_CONFIG";
    pub const DECAP_STATS: &str = "DECAP_STATS";
    pub const SYNC_CONFIG: &str = "SYNC_CONFIG";
    pub const SYNC_EVENTS: &str = "SYNC_EVENTS";
}

/// Service slots (ids index per-service counters and round-robin state).
pub const MAX_SERVICES: u32 = 4096;
/// Real-server slots. A real server belongs to one service; the same address in two services
/// uses two slots, so counters stay per service as `ipvsadm` shows them.
pub const MAX_REALS: u32 = 65_536;
/// Egress interfaces reachable by `XDP_REDIRECT` (devmap size).
pub const MAX_TX_PORTS: u32 = 64;
/// Slots of `IFACE_MACS`: an interface's entry sits at `ifindex % MAX_IFACE_SLOTS`.
pub const MAX_IFACE_SLOTS: u32 = 4096;
/// Default connection-table size (the `conn_table_size` config value).
pub const DEFAULT_CONN_TABLE_SIZE: u32 = 1_048_576;
/// Default size of the persistence-template table (the `persist_table_size` config value): one
/// entry per (client network, persistent service), far fewer than connections.
pub const DEFAULT_PERSIST_TABLE_SIZE: u32 = 262_144;
/// "No real server" marker in rings and in `Service::sorry_real`.
pub const NO_REAL: u32 = u32::MAX;

pub const AF_INET: u8 = 4;
pub const AF_INET6: u8 = 6;
pub const PROTO_TCP: u8 = 6;
pub const PROTO_UDP: u8 = 17;

/// Key of the `SERVICES` hash map: (VIP, port, protocol). Port 0 = every port of the VIP.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct ServiceKey {
    pub addr: [u32; 4],
    /// Network byte order.
    pub port: u16,
    pub proto: u8,
    pub family: u8,
}

/// Service flag: this director forwards the service now (VRRP MASTER, BGP-announced or standalone).
pub const SVC_F_ACTIVE: u32 = 1;
/// Service flag: hash on the client address only (`source_hash`, or `persistence_timeout` > 0).
pub const SVC_F_HASH_SRC_ONLY: u32 = 1 << 1;
/// Service flag: fragments of this service may be forwarded (only safe with client-address hashing,
/// because non-first fragments carry no ports).
pub const SVC_F_FORWARD_FRAGMENTS: u32 = 1 << 2;
/// Service flag: persistent (IPVS `persistence_timeout`): on a connection-table miss the client's
/// template in `PERSIST_TEMPLATES` decides before the scheduler; `PERSISTENCE[id]` holds the
/// timeout and the client mask.
pub const SVC_F_PERSISTENT: u32 = 1 << 3;

pub const SCHED_MAGLEV: u32 = 0;
pub const SCHED_ROUND_ROBIN: u32 = 1;

/// Value of the `SERVICES` map. Replaced as a whole by one map update, so the program sees either
/// the old ring or the new one, never a half-written service.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Service {
    /// Index into per-service counters and round-robin state (< MAX_SERVICES).
    pub id: u32,
    pub flags: u32,
    pub sched: u32,
    /// First slot of this service's ring in `MAGLEV_RINGS`.
    pub ring_offset: u32,
    /// Ring length: the Maglev table size, or the round-robin sequence length; 0 = no real server.
    pub ring_size: u32,
    /// Real-server slot of the sorry server, or `NO_REAL`.
    pub sorry_real: u32,
    /// The ring in force before the last change of the real-server set (0 size = none). A TCP
    /// packet that is not a SYN and has no table entry consults it first, so an established flow
    /// that another director had been serving keeps its real server across a simultaneous
    /// real-server change and director change (ECMP re-hash).
    pub prev_ring_offset: u32,
    pub prev_ring_size: u32,
}

/// Value of the `SERVICE_STATE` array, indexed by service id: what the connection table's hit
/// path needs of a service without looking it up by (VIP, port, protocol). `generation` is bumped
/// whenever the id is removed or given to another service, so table entries made for an earlier
/// holder of the id never match (they are dispatched afresh).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct ServiceState {
    pub generation: u32,
    /// The service's `flags` (`SVC_F_ACTIVE`: forward now); 0 while the id is free.
    pub flags: u32,
}

/// Value of the `PERSISTENCE` array, indexed by service id: what a persistent service's
/// templates need. A separate array (not fields of `Service`) so that the pinned `SERVICES` map
/// keeps its layout; it is read only for services with `SVC_F_PERSISTENT`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Persistence {
    /// Client-address mask (`persistence_granularity`), address words as in `FlowKey` (IPv4 in
    /// word 0): clients equal under the mask share a template.
    pub mask: [u32; 4],
    /// `persistence_timeout` in seconds: a template unused for longer is gone.
    pub timeout_secs: u32,
    pub _pad: u32,
}

/// Key of `PERSIST_TEMPLATES`: (masked client address, service id) — IPVS's persistence
/// template (client, VIP, port 0 or the port, protocol), by service id.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct PersistKey {
    /// The client address under the service's mask.
    pub client: [u32; 4],
    pub service_id: u32,
    pub family: u8,
    pub _pad: [u8; 3],
}

/// Value of `PERSIST_TEMPLATES`: the real server a client (network) sticks to.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct PersistEntry {
    pub real_id: u32,
    /// `RealServer::generation` of `real_id` when the template was made: a removed (or reused)
    /// slot never matches, so the client is scheduled afresh.
    pub real_gen: u32,
    /// `ServiceState::generation` of the service id when the template was made.
    pub service_gen: u32,
    pub _pad: u32,
    /// CLOCK_MONOTONIC_COARSE of the last connection the template made or controlled (set by the
    /// program on each new connection, by the daemon's sweep while connections of the client
    /// live): the template expires `timeout_secs` after it.
    pub last_used_ns: u64,
}

/// Words (u64) of the `VIP_FILTER` bitmap: 65,536 bits, bit `hash::vip_filter_bit(addr)` set
/// for every VIP. A destination whose bit is clear is not a VIP (no table or service lookup).
pub const VIP_FILTER_WORDS: u32 = 1024;

/// Key of the `VIPS` map: an address that is the VIP of at least one service.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct VipKey {
    pub addr: [u32; 4],
    pub family: u8,
    pub _pad: [u8; 3],
}

/// VIP flag: TCP fragments go to `frag_tcp_port`'s service (a client-address-hashed one).
pub const VIP_F_FRAG_TCP: u32 = 1;
/// VIP flag: UDP fragments go to `frag_udp_port`'s service (a client-address-hashed one).
pub const VIP_F_FRAG_UDP: u32 = 1 << 1;

/// Value of the `VIPS` map. IP fragments after the first carry no ports, so they can only be
/// forwarded consistently by a service that hashes on the client address; other fragments to a
/// VIP are dropped and counted (never sent to a real server that would see half a datagram).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct VipInfo {
    pub flags: u32,
    /// Network byte order; the service port (0 = port-0 service) used for TCP fragments.
    pub frag_tcp_port: u16,
    /// Network byte order; the service port used for UDP fragments.
    pub frag_udp_port: u16,
}

/// Real-server flag: it may receive packets (alive per health checks and present in the config).
/// A real server with weight 0 stays alive (quiescent): it keeps its flows but is not in the ring.
pub const REAL_F_ALIVE: u32 = 1;

/// Real-server flag: the slot is allocated (set while the real server is configured, alive or not).
pub const REAL_F_IN_USE: u32 = 1 << 1;

/// Value of the `REALS` array, indexed by real-server slot.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct RealServer {
    /// The real server's address (for adoption after a restart and for display).
    pub addr: [u32; 4],
    /// Destination MAC: the real server's.
    pub mac: [u8; 6],
    /// Source MAC: the egress interface's.
    pub src_mac: [u8; 6],
    /// Egress interface index.
    pub ifindex: u32,
    /// Key in `TX_PORTS` (devmap) used when `ifindex` is not the receiving interface.
    pub tx_port: u32,
    /// Bumped whenever the slot is removed or reused; a table entry with another generation is
    /// dispatched afresh.
    pub generation: u32,
    pub flags: u32,
    /// The service this slot belongs to.
    pub service_id: u32,
    /// Network byte order.
    pub port: u16,
    pub family: u8,
    pub _pad: u8,
}

/// Value of the `IFACE_MACS` array: the MAC of an interface the program is attached to, at slot
/// `ifindex % MAX_IFACE_SLOTS`. A frame received on `ifindex` whose destination MAC is another
/// unicast address is not for this director (a switch flooding unknown unicast): it is passed
/// untouched. An interface without an entry (slot empty or holding another ifindex) is not
/// checked. `ifindex` 0 = empty slot.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct IfaceMac {
    pub ifindex: u32,
    pub mac: [u8; 6],
    pub _pad: [u8; 2],
}

/// Key of the connection table: the flow as the client sends it.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct FlowKey {
    pub src: [u32; 4],
    pub dst: [u32; 4],
    /// Network byte order.
    pub sport: u16,
    /// Network byte order.
    pub dport: u16,
    pub proto: u8,
    pub family: u8,
    pub _pad: [u8; 2],
}

/// Connection states, following the client's TCP flags as IPVS does in DR mode (the director
/// sees only client -> server packets).
pub mod conn_state {
    pub const SYN_RECV: u8 = 1;
    pub const ESTABLISHED: u8 = 2;
    pub const FIN_WAIT: u8 = 3;
    pub const CLOSE: u8 = 4;
    pub const UDP: u8 = 5;
}

/// TCP flag bits as in the TCP header's flag byte.
pub mod tcp_flags {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const ACK: u8 = 0x10;
}

/// Value of the connection table.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct FlowEntry {
    pub real_id: u32,
    pub real_gen: u32,
    pub service_id: u32,
    /// `ServiceState::generation` of `service_id` when the entry was made.
    pub service_gen: u32,
    /// One of `conn_state`.
    pub state: u8,
    /// Union of the TCP flags seen from the client.
    pub flags_seen: u8,
    /// `FLOW_F_*` bits (0 in entries this director dispatched itself).
    pub sync_flags: u8,
    pub _pad: u8,
    /// For a synced entry, the `sync.director_id` of the director that dispatched the flow.
    pub origin: u32,
    /// `bpf_ktime_get_coarse_ns()` (CLOCK_MONOTONIC_COARSE, one-tick resolution) of the last
    /// packet: the precise clock costs ~30 ns a packet on a KVM guest, the coarse one a load.
    pub last_seen_ns: u64,
}

/// `FlowEntry::sync_flags`: the entry was learnt from a peer director by connection sync (not
/// dispatched here). The program forwards it like any entry; the daemon shows and counts it apart.
pub const FLOW_F_SYNCED: u8 = 1;

/// `SyncConfig::flags`: the program reports new flows and FIN/RST state changes to the daemon
/// through `SYNC_EVENTS` (connection sync is configured).
pub const SYNC_F_ENABLED: u32 = 1;

/// Single-entry `SYNC_CONFIG` array, written by the daemon (apart from `LB_CONFIG`, so that an
/// older pinned `LB_CONFIG` keeps its layout).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct SyncConfig {
    pub flags: u32,
    pub _pad: u32,
}

/// `SyncEvent::kind` values.
pub mod sync_event {
    /// A flow was dispatched and inserted into the table.
    pub const NEW: u8 = 1;
    /// A flow's state changed to FIN_WAIT or CLOSE (FIN or RST from the client).
    pub const STATE: u8 = 2;
}

/// A record of the `SYNC_EVENTS` ring buffer: what the daemon needs to tell its peers about a
/// flow. Slots, not addresses: the daemon maps `real_id` to the real server it allocated there
/// (and drops the event if `real_gen` says the slot was reused meanwhile).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct SyncEvent {
    pub flow: FlowKey,
    pub real_id: u32,
    pub real_gen: u32,
    pub service_id: u32,
    /// One of `sync_event`.
    pub kind: u8,
    /// The entry's `conn_state` after the event.
    pub state: u8,
    pub _pad: [u8; 2],
}

/// Per-CPU packet/byte/new-connection counters of a service or a real server.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct TrafficStats {
    pub packets: u64,
    pub bytes: u64,
    pub conns: u64,
}

/// Per-CPU flood-guard window (CLOCK_MONOTONIC_COARSE).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct FloodState {
    pub window_start_ns: u64,
    pub new_flows: u64,
}

/// Single-entry `LB_CONFIG` array.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct LbConfig {
    /// New flows per second per CPU above which new flows are forwarded but not inserted into the
    /// connection table; 0 = no limit.
    pub flood_threshold: u64,
}

/// Indices of the per-CPU `GLOBAL_STATS` array. The four `ACTION_*` counters add up to the packets
/// the program saw; the others count reasons.
pub mod stat {
    pub const ACTION_PASS: u32 = 0;
    pub const ACTION_DROP: u32 = 1;
    pub const ACTION_TX: u32 = 2;
    pub const ACTION_REDIRECT: u32 = 3;
    /// Not for a service (passed to the kernel).
    pub const NOT_SERVICE: u32 = 4;
    /// Headers truncated or inconsistent.
    pub const MALFORMED: u32 = 5;
    /// Service with no real server and no sorry server (dropped).
    pub const NO_REAL: u32 = 6;
    pub const CONN_HIT: u32 = 7;
    pub const CONN_MISS: u32 = 8;
    /// ICMP/ICMPv6 errors forwarded to the real server of the flow they are about.
    pub const ICMP_FORWARDED: u32 = 9;
    /// IP fragments for a service that cannot be forwarded consistently (dropped).
    pub const FRAGMENT_DROPPED: u32 = 10;
    /// IP fragments forwarded by client-address hashing.
    pub const FRAGMENT_FORWARDED: u32 = 11;
    /// New flows forwarded but not inserted because of the flood guard.
    pub const FLOOD_NOT_INSERTED: u32 = 12;
    /// Table entries whose real server was removed or failed, dispatched afresh.
    pub const REDISPATCHED: u32 = 13;
    /// Packets sent to a sorry server.
    pub const SORRY: u32 = 14;
    /// Service known but not active on this director (VRRP BACKUP): passed.
    pub const INACTIVE: u32 = 15;
    /// Connection-table insert failures.
    pub const INSERT_FAILED: u32 = 16;
    /// New non-SYN TCP flows that found their real server in the previous ring.
    pub const PREV_RING_HIT: u32 = 17;
    /// Redirect to a devmap port that failed (dropped by the kernel as XDP_ABORTED-like).
    pub const REDIRECT_FAILED: u32 = 18;
    /// Unicast frames for another MAC than the receiving interface's (passed untouched).
    pub const NOT_OUR_MAC: u32 = 19;
    /// Broadcast and multicast frames (passed untouched: ARP, VRRP, neighbour discovery).
    pub const GROUP_MAC: u32 = 20;
    /// New connections of a persistent service sent where the client's template says.
    pub const PERSIST_HIT: u32 = 21;
    /// New connections of a persistent service scheduled afresh (no valid template), a template
    /// written for them.
    pub const PERSIST_MISS: u32 = 22;
    /// SYNs that hit a closing entry (FIN_WAIT/CLOSE): a new connection on a reused client port
    /// (IPVS conn_reuse_mode=1), scheduled afresh. Counted where a SYN looks at the table
    /// (round-robin services); a Maglev SYN is dispatched without a lookup.
    pub const CONN_REUSED: u32 = 23;
    /// Packets encapsulated to a tunnelled real server (IPIP, ip6ip6 or GUE).
    pub const TUNNELLED: u32 = 24;
    /// Frames too big for the tunnel's MTU once encapsulated, with DF (IPv4) or IPv6: answered
    /// with ICMP "fragmentation needed" / "packet too big".
    pub const TOO_BIG_ANSWERED: u32 = 25;
    /// Frames too big for the tunnel's MTU once encapsulated that may not be answered (IPv4
    /// without DF: fragmenting in XDP is not worth it): dropped.
    pub const TOO_BIG_DROPPED: u32 = 26;
    /// New IPv4 flows whose set had no way they may take (all protected): stored in the LRU.
    pub const SET_FULL: u32 = 27;
    /// Sync events lost because the daemon did not drain `SYNC_EVENTS` fast enough.
    pub const SYNC_RING_FULL: u32 = 28;
    pub const COUNT: u32 = 29;

    /// Names for status and metrics, in index order.
    pub const NAMES: [&str; COUNT as usize] = [
        "action_pass",
        "action_drop",
        "action_tx",
        "action_redirect",
        "not_service",
        "malformed",
        "no_real_server",
        "conn_hit",
        "conn_miss",
        "icmp_forwarded",
        "fragment_dropped",
        "fragment_forwarded",
        "flood_not_inserted",
        "redispatched",
        "sorry_server",
        "inactive_service",
        "insert_failed",
        "prev_ring_hit",
        "redirect_failed",
        "not_our_mac",
        "group_mac",
        "persist_hit",
        "persist_miss",
        "conn_reused",
        "tunnelled",
        "too_big_answered",
        "too_big_dropped",
        "set_full",
        "sync_ring_full",
    ];
}

// ---- Tunnel mode (LVS-TUN): encapsulation to real servers in other subnets ----

/// `RealTunnel::kind`: direct routing (no encapsulation; the slot's default).
pub const TUNNEL_NONE: u8 = 0;
/// `RealTunnel::kind`: IP in IP (protocol 4 for an IPv4 inner packet, 41 for IPv6; ip6ip6 over
/// an IPv6 outer header).
pub const TUNNEL_IPIP: u8 = 1;
/// `RealTunnel::kind`: GUE variant 1 (RFC draft "direct IP encapsulation", as Katran): UDP to
/// `port`, the inner IP header right after the UDP header; the UDP source port comes from the
/// flow hash so the real server's RSS spreads flows.
pub const TUNNEL_GUE: u8 = 2;
/// `TUNNEL_PROGS` slot of the program answering oversize frames with ICMP "too big" (tail-called
/// by the main program: its own stack frame).
pub const TUNNEL_PROG_TOO_BIG: u32 = 0;
/// Name of that program in the object.
pub const TOO_BIG_PROGRAM: &str = "xlb_too_big";
/// GUE's usual UDP port (Katran's `GUE_DPORT`).
pub const DEFAULT_GUE_PORT: u16 = 6080;

/// Value of the `TUNNELS` array, indexed by real-server slot (next to `REALS`): how packets to
/// the slot's real server are encapsulated. `kind == TUNNEL_NONE` = direct routing. The outer
/// destination is `RealServer::addr`, the outer family `RealServer::family`; the Ethernet
/// addresses in `RealServer` are then those of the next hop (the router) on the egress side.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct RealTunnel {
    /// Outer source: the director's address on the egress side (same family as the real).
    pub src: [u32; 4],
    /// Largest IP packet (outer header included) the egress path carries; longer encapsulated
    /// packets are answered with ICMP "too big" (or dropped without DF).
    pub mtu: u16,
    /// GUE destination port, network byte order.
    pub port: u16,
    pub kind: u8,
    pub _pad: [u8; 3],
}

// ---- Tunnel mode, real-server side: the decapsulation program (`xlb_decap`) ----

/// Name of the real servers' decapsulation program in the object.
pub const DECAP_PROGRAM: &str = "xlb_decap";
/// The same decapsulation as a TC ingress classifier, for links where XDP cannot run.
pub const DECAP_TC_PROGRAM: &str = "xlb_decap_tc";
/// Entries of `DECAP_DIRECTORS` / `DECAP_VIPS`.
pub const MAX_DECAP_ADDRS: u32 = 256;

/// Key of `DECAP_DIRECTORS` (outer sources decapsulated) and `DECAP_VIPS` (inner destinations
/// delivered): one address.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct DecapKey {
    pub addr: [u32; 4],
    pub family: u8,
    pub _pad: [u8; 3],
}

/// Single-entry `DECAP_CONFIG` array.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct DecapConfig {
    /// GUE UDP port decapsulated, network byte order; 0 = IPIP only.
    pub gue_port: u16,
    pub _pad: [u8; 2],
}

/// Indices of the per-CPU `DECAP_STATS` array.
pub mod decap_stat {
    /// Outer header stripped: the inner packet went to the kernel.
    pub const DECAPSULATED: u32 = 0;
    /// Not a tunnel packet (passed untouched).
    pub const NOT_TUNNEL: u32 = 1;
    /// A tunnel packet from an address that is not a configured director, or to an inner
    /// destination that is not a configured VIP (passed untouched: the kernel drops it).
    pub const NOT_ALLOWED: u32 = 2;
    /// Truncated or inconsistent outer or inner headers (passed untouched).
    pub const MALFORMED: u32 = 3;
    pub const COUNT: u32 = 4;
    pub const NAMES: [&str; COUNT as usize] =
        ["decapsulated", "not_tunnel", "not_allowed", "malformed"];
}

#[cfg(feature = "user")]
mod pod {
    use super::*;
    // SAFETY: all of these are #[repr(C)], Copy, contain only integers and byte arrays, and have no
    // implicit padding, so every bit pattern is valid and no byte is uninitialised.
    unsafe impl aya::Pod for ServiceKey {}
    unsafe impl aya::Pod for Service {}
    unsafe impl aya::Pod for VipKey {}
    unsafe impl aya::Pod for VipInfo {}
    unsafe impl aya::Pod for RealServer {}
    unsafe impl aya::Pod for FlowKey {}
    unsafe impl aya::Pod for FlowEntry {}
    unsafe impl aya::Pod for TrafficStats {}
    unsafe impl aya::Pod for FloodState {}
    unsafe impl aya::Pod for LbConfig {}
    unsafe impl aya::Pod for IfaceMac {}
    unsafe impl aya::Pod for ServiceState {}
    unsafe impl aya::Pod for Persistence {}
    unsafe impl aya::Pod for PersistKey {}
    unsafe impl aya::Pod for PersistEntry {}
    unsafe impl aya::Pod for RealTunnel {}
    unsafe impl aya::Pod for DecapKey {}
    unsafe impl aya::Pod for DecapConfig {}
    unsafe impl aya::Pod for SyncConfig {}
    unsafe impl aya::Pod for SyncEvent {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::size_of;

    #[test]
    fn layouts_have_no_implicit_padding() {
        assert_eq!(size_of::<ServiceKey>(), 20);
        assert_eq!(size_of::<Service>(), 32);
        assert_eq!(size_of::<RealServer>(), 52);
        assert_eq!(size_of::<FlowKey>(), 40);
        assert_eq!(size_of::<VipKey>(), 20);
        assert_eq!(size_of::<VipInfo>(), 8);
        assert_eq!(size_of::<FlowEntry>(), 32);
        assert_eq!(size_of::<ServiceState>(), 8);
        assert_eq!(size_of::<TrafficStats>(), 24);
        assert_eq!(size_of::<IfaceMac>(), 12);
        assert_eq!(size_of::<Persistence>(), 24);
        assert_eq!(size_of::<PersistKey>(), 24);
        assert_eq!(size_of::<PersistEntry>(), 24);
        assert_eq!(size_of::<RealTunnel>(), 24);
        assert_eq!(size_of::<SyncConfig>(), 8);
        assert_eq!(size_of::<SyncEvent>(), 56);
        assert_eq!(stat::NAMES.len(), stat::COUNT as usize);
    }
}
