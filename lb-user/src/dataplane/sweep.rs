//! The connection-table sweep: IPVS's ActiveConn / InActConn per real server, right after
//! connections close, and expiry of idle entries with IPVS's timeouts. The IPv4 sets are read
//! through their mapping (no syscall per entry), the LRU overflow with batch lookups.
use std::{collections::HashMap, os::fd::AsRawFd as _, time::Duration};

use lb_common::{conn_state, FlowEntry, FlowKey};

use lb_common::conn::WAYS;

use super::{
    batch,
    conn_sets::{self, WayIndex},
    maps::KernelMaps,
};

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

/// Live entries per real-server slot, indexed by slot (a way's slot is 16 bits).
struct PerReal(Vec<ConnCounts>);

impl PerReal {
    fn new() -> Self {
        Self(vec![ConnCounts::default(); 1 << 16])
    }

    fn add(&mut self, real_id: u32, state: u8, extra: &mut HashMap<u32, ConnCounts>) {
        let c = match self.0.get_mut(real_id as usize) {
            Some(c) => c,
            None => extra.entry(real_id).or_default(),
        };
        if state == conn_state::ESTABLISHED {
            c.active += 1;
        } else {
            c.inactive += 1;
        }
    }

    fn into_map(self, mut extra: HashMap<u32, ConnCounts>) -> HashMap<u32, ConnCounts> {
        for (id, c) in self.0.into_iter().enumerate() {
            if c != ConnCounts::default() {
                extra.insert(id as u32, c);
            }
        }
        extra
    }
}

/// What a scan found to remove: LRU keys, and ways with the stamp-and-check word seen.
#[derive(Default)]
struct Expired {
    keys: Vec<FlowKey>,
    ways: Vec<(WayIndex, u32)>,
}

/// Counts the live entries per real server without changing the table (what a status query
/// reads); entries past their timeout are not counted. Returns those (and torn ways) too.
fn count(maps: &KernelMaps, timeouts: &Timeouts) -> std::io::Result<(SweepResult, Expired)> {
    let now = monotonic_ns();
    let mut result = SweepResult::default();
    let mut expired = Expired::default();
    let mut per_real = PerReal::new();
    let mut extra = HashMap::new();
    let sets = &maps.conn_sets;
    let mut live = 0u64;
    for set in 0..sets.sets() {
        for way in 0..WAYS as u32 {
            let at = WayIndex { set, way };
            let w = sets.read(at);
            if w.is_free() {
                continue;
            }
            if !w.is_consistent() {
                // Torn by two writers at once: no flow's; free it.
                expired.ways.push((at, w.stamp_check));
                continue;
            }
            let e = conn_sets::way_entry(&w, 0, now);
            if is_expired(&e, timeouts, now) {
                expired.ways.push((at, w.stamp_check));
                continue;
            }
            live += 1;
            per_real.add(e.real_id, e.state, &mut extra);
        }
    }
    let fd = maps.conn_table_fd().as_raw_fd();
    let seen = batch::for_each::<FlowKey, FlowEntry>(fd, 8192, |k, v| {
        if is_expired(v, timeouts, now) {
            expired.keys.push(*k);
            return;
        }
        per_real.add(v.real_id, v.state, &mut extra);
    })?;
    result.per_real = per_real.into_map(extra);
    result.entries = live + seen - (expired.keys.len() as u64).min(seen);
    Ok((result, expired))
}

/// A read-only census: ActiveConn / InActConn as of now, nothing expired.
pub fn census(maps: &KernelMaps, timeouts: &Timeouts) -> std::io::Result<SweepResult> {
    count(maps, timeouts).map(|(result, _)| result)
}

/// The periodic sweep: the census, and the removal of the entries past their timeout. A way is
/// freed only if the program did not refresh or rewrite it since it was read.
pub fn sweep(maps: &mut KernelMaps, timeouts: &Timeouts) -> std::io::Result<SweepResult> {
    let (mut result, expired) = count(maps, timeouts)?;
    let freed = expired
        .ways
        .iter()
        .filter(|(at, seen)| maps.conn_sets.free_if_unchanged(*at, *seen))
        .count() as u64;
    let fd = maps.conn_table_fd().as_raw_fd();
    // The fd stays valid: `maps` owns the map for the whole function.
    let table = &mut maps.conn_table;
    result.expired = freed + batch::delete(fd, &expired.keys, |k| table.remove(k).is_ok());
    Ok(result)
}

/// Visits every entry of the table (the ways as LRU entries, then the LRU) without changing it:
/// `xlb conns`. A way's service is its real server's slot's (read from REALS once per slot).
pub fn for_each_flow(
    maps: &KernelMaps,
    mut f: impl FnMut(&FlowKey, &FlowEntry),
) -> std::io::Result<u64> {
    let now = monotonic_ns();
    let mut service_of: HashMap<u32, u32> = HashMap::new();
    let mut seen = 0u64;
    maps.conn_sets.for_each(|_, w| {
        let real_id = lb_common::conn::meta_real(w.meta);
        let service_id = *service_of.entry(real_id).or_insert_with(|| {
            maps.reals
                .get(&real_id, 0)
                .map_or(u32::MAX, |r| r.service_id)
        });
        seen += 1;
        f(
            &conn_sets::way_key(w),
            &conn_sets::way_entry(w, service_id, now),
        );
    });
    let fd = maps.conn_table_fd().as_raw_fd();
    Ok(seen + batch::for_each::<FlowKey, FlowEntry>(fd, 8192, f)?)
}
