//! The connection-table sweep: IPVS's ActiveConn / InActConn per real server, right after
//! connections close, and expiry of idle entries with IPVS's timeouts.
use std::{collections::HashMap, os::fd::AsRawFd as _, time::Duration};

use lb_common::{conn_state, FlowEntry, FlowKey};

use super::{batch, maps::KernelMaps};

/// Idle timeouts per state (IPVS defaults: established 900 s, FIN 120 s, SYN_RECV 60 s,
/// CLOSE 10 s, UDP 300 s).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    pub established: Duration,
    pub syn_recv: Duration,
    pub fin_wait: Duration,
    pub close: Duration,
    pub udp: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            established: Duration::from_secs(900),
            syn_recv: Duration::from_secs(60),
            fin_wait: Duration::from_secs(120),
            close: Duration::from_secs(10),
            udp: Duration::from_secs(300),
        }
    }
}

impl Timeouts {
    pub fn for_state(&self, state: u8) -> Duration {
        match state {
            conn_state::ESTABLISHED => self.established,
            conn_state::SYN_RECV => self.syn_recv,
            conn_state::FIN_WAIT => self.fin_wait,
            conn_state::UDP => self.udp,
            _ => self.close,
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ConnCounts {
    pub active: u64,
    pub inactive: u64,
}

#[derive(Debug, Default, Clone)]
pub struct SweepResult {
    /// Per real-server slot.
    pub per_real: HashMap<u32, ConnCounts>,
    pub entries: u64,
    pub expired: u64,
}

/// CLOCK_MONOTONIC_COARSE in ns: the clock of `bpf_ktime_get_coarse_ns`, which stamps table
/// entries.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid pointer to a timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Seconds left before an entry expires (for `xlb conns`).
pub fn expires_in(entry: &FlowEntry, timeouts: &Timeouts, now_ns: u64) -> Duration {
    let idle = Duration::from_nanos(now_ns.saturating_sub(entry.last_seen_ns));
    timeouts.for_state(entry.state).saturating_sub(idle)
}

/// A state name as `ipvsadm -lnc` prints it.
pub fn state_name(state: u8) -> &'static str {
    match state {
        conn_state::SYN_RECV => "SYN_RECV",
        conn_state::ESTABLISHED => "ESTABLISHED",
        conn_state::FIN_WAIT => "FIN_WAIT",
        conn_state::CLOSE => "CLOSE",
        conn_state::UDP => "UDP",
        _ => "NONE",
    }
}

pub fn sweep(maps: &mut KernelMaps, timeouts: &Timeouts) -> std::io::Result<SweepResult> {
    let now = monotonic_ns();
    let fd = maps.conn_table_fd().as_raw_fd();
    // The fd stays valid: `maps` owns the map for the whole function.
    let mut result = SweepResult::default();
    let mut expired: Vec<FlowKey> = Vec::new();
    result.entries = batch::for_each::<FlowKey, FlowEntry>(fd, 8192, |k, v| {
        if Duration::from_nanos(now.saturating_sub(v.last_seen_ns)) > timeouts.for_state(v.state) {
            expired.push(*k);
            return;
        }
        let c = result.per_real.entry(v.real_id).or_default();
        if v.state == conn_state::ESTABLISHED {
            c.active += 1;
        } else {
            c.inactive += 1;
        }
    })?;
    let table = &mut maps.conn_table;
    result.expired = batch::delete(fd, &expired, |k| table.remove(k).is_ok());
    result.entries -= result.expired.min(result.entries);
    Ok(result)
}
