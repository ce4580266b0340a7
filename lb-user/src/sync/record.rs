//! What directors tell each other: the records of a sync message, independent of the wire
//! format (xlb's own, [`super::codec`], or IPVS's, [`super::ipvs`]).
//!
//! Real servers and services are named by address, port and protocol, never by slot or id:
//! slots are allocated per director and differ between peers.
use std::net::IpAddr;

use lb_common::{conn_state, PROTO_TCP, PROTO_UDP};

/// A flow as the client sends it (the connection table's key, by address).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Flow {
    pub proto: u8,
    pub client: IpAddr,
    pub client_port: u16,
    pub vip: IpAddr,
    pub vip_port: u16,
}

impl Flow {
    /// Both addresses of one family and a protocol xlb forwards.
    pub fn is_well_formed(&self) -> bool {
        self.client.is_ipv4() == self.vip.is_ipv4() && is_forwarded_proto(self.proto)
    }
}

/// TCP or UDP: the protocols a service can have.
pub fn is_forwarded_proto(proto: u8) -> bool {
    proto == PROTO_TCP || proto == PROTO_UDP
}

/// One of `lb_common::conn_state` (SYN_RECV .. UDP).
pub fn is_conn_state(state: u8) -> bool {
    (conn_state::SYN_RECV..=conn_state::UDP).contains(&state)
}

/// A connection a director created (or refreshes): enough for a peer to forward the flow's next
/// packet to the same real server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnRecord {
    pub flow: Flow,
    /// The service's port (0 = a port-0 service, which matches every port of the VIP).
    pub service_port: u16,
    pub real: IpAddr,
    pub real_port: u16,
    /// One of `lb_common::conn_state`.
    pub state: u8,
    /// Idle time left before the entry expires on its origin, in milliseconds.
    pub remaining_ms: u32,
    /// The director that dispatched the flow (`sync.director_id`), kept when a peer relays it.
    pub origin: u32,
}

/// A flow changed state on its director (ESTABLISHED, FIN or RST seen), so that every director
/// counts it alike.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StateChange {
    pub flow: Flow,
    pub state: u8,
    pub remaining_ms: u32,
}

/// A director's health view of one real server.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum HealthState {
    /// Passing its checks.
    Up,
    /// Failing, not yet `fall` times in a row: still up for the director.
    Failing,
    /// Failed `fall` times in a row (or never passed `rise` times yet).
    Down,
}

impl HealthState {
    pub fn as_str(self) -> &'static str {
        match self {
            HealthState::Up => "up",
            HealthState::Failing => "failing",
            HealthState::Down => "down",
        }
    }

    pub(crate) fn to_wire(self) -> u8 {
        match self {
            HealthState::Up => 1,
            HealthState::Failing => 2,
            HealthState::Down => 3,
        }
    }

    pub(crate) fn from_wire(b: u8) -> Option<Self> {
        match b {
            1 => Some(HealthState::Up),
            2 => Some(HealthState::Failing),
            3 => Some(HealthState::Down),
            _ => None,
        }
    }
}

/// One line of a director's health view: how it sees one real server of one service.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HealthRecord {
    pub proto: u8,
    pub vip: IpAddr,
    pub service_port: u16,
    pub real: IpAddr,
    pub real_port: u16,
    pub state: HealthState,
    /// Consecutive failed checks (0 when up).
    pub failures: u8,
}

/// One record of a sync message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Record {
    Conn(ConnRecord),
    State(StateChange),
    /// The flow's entry expired (or was removed) on its director.
    Expiry(Flow),
    Health(HealthRecord),
}
