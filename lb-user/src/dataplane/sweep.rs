//! The connection-table sweep: IPVS's ActiveConn / InActConn per real server, right after
//! connections close, and expiry of idle entries with IPVS's timeouts.
use std::{collections::HashMap, os::fd::AsRawFd as _, time::Duration};

use lb_common::{conn_state, FlowEntry, FlowKey};

use super::{batch, maps::KernelMaps};

/// Idle timeouts per state, from `[timeouts]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    pub established: Duration,
    pub syn_recv: Duration,
    pub fin_wait: Duration,
    pub close: Duration,
    pub udp: Duration,
}

impl From<&crate::config::Timeouts> for Timeouts {
    fn from(t: &crate::config::Timeouts) -> Self {
        let secs = |v: u32| Duration::from_secs(v as u64);
        Self {
            established: secs(t.tcp),
            syn_recv: secs(t.syn_recv),
            fin_wait: secs(t.tcp_fin),
            close: secs(t.close),
            udp: secs(t.udp),
        }
    }
}

impl Default for Timeouts {
    /// The configuration's defaults (IPVS's).
    fn default() -> Self {
        Self::from(&crate::config::Timeouts::default())
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

/// Is the entry past its state's idle timeout (gone for every reader, even before a sweep
/// removes it)?
pub fn is_expired(entry: &FlowEntry, timeouts: &Timeouts, now_ns: u64) -> bool {
    Duration::from_nanos(now_ns.saturating_sub(entry.last_seen_ns))
        > timeouts.for_state(entry.state)
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

/// Counts the live entries per real server without changing the table (what a status query
/// reads); entries past their timeout are not counted. Returns the keys of those too.
fn count(maps: &KernelMaps, timeouts: &Timeouts) -> std::io::Result<(SweepResult, Vec<FlowKey>)> {
    let now = monotonic_ns();
    let fd = maps.conn_table_fd().as_raw_fd();
    let mut result = SweepResult::default();
    let mut expired: Vec<FlowKey> = Vec::new();
    let seen = batch::for_each::<FlowKey, FlowEntry>(fd, 8192, |k, v| {
        if is_expired(v, timeouts, now) {
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
    result.entries = seen - (expired.len() as u64).min(seen);
    Ok((result, expired))
}

/// A read-only census: ActiveConn / InActConn as of now, nothing expired.
pub fn census(maps: &KernelMaps, timeouts: &Timeouts) -> std::io::Result<SweepResult> {
    count(maps, timeouts).map(|(result, _)| result)
}

/// The periodic sweep: the census, and the removal of the entries past their timeout.
pub fn sweep(maps: &mut KernelMaps, timeouts: &Timeouts) -> std::io::Result<SweepResult> {
    let (mut result, expired) = count(maps, timeouts)?;
    let fd = maps.conn_table_fd().as_raw_fd();
    // The fd stays valid: `maps` owns the map for the whole function.
    let table = &mut maps.conn_table;
    result.expired = batch::delete(fd, &expired, |k| table.remove(k).is_ok());
    Ok(result)
}
