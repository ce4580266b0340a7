//! The connection-table sweep: IPVS's ActiveConn / InActConn per real server, right after
//! connections close, and expiry of idle entries with IPVS's timeouts. The IPv4 sets are read
//! through their mapping (no syscall per entry), the LRU overflow with batch lookups. Then the
//! persistence templates: a template stays in use while connections of its client live (IPVS
//! keeps a template while it controls connections), and goes `persistence_timeout` after that.
use std::{
    collections::{HashMap, HashSet},
    os::fd::AsRawFd as _,
    time::Duration,
};

use lb_common::conn::WAYS;
use lb_common::{conn_state, FlowEntry, FlowKey, PersistEntry, PersistKey, Persistence};

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

/// ActiveConn / InActConn of a real server: every live entry, own and synced (as an IPVS
/// backup counts the connections its sync daemon received), and of those the synced ones.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ConnCounts {
    pub active: u64,
    pub inactive: u64,
    pub synced_active: u64,
    pub synced_inactive: u64,
}

/// At most this many expired own flows are reported per sweep for the peers (connection sync):
/// bounded memory; flows beyond it expire on the peers by their own clock.
pub const EXPIRED_OWN_REPORTED: usize = 16_384;

#[derive(Debug, Default, Clone)]
pub struct SweepResult {
    /// Per real-server slot.
    pub per_real: HashMap<u32, ConnCounts>,
    pub entries: u64,
    pub expired: u64,
    /// Persistence templates in force.
    pub templates: u64,
    pub templates_expired: u64,
    /// Own flows this sweep removed (at most `EXPIRED_OWN_REPORTED`): the expiry records of
    /// connection sync. Empty for a census.
    pub expired_own: Vec<FlowKey>,
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

/// The template key a connection of a persistent service belongs to.
pub fn template_key(k: &FlowKey, service_id: u32, p: &Persistence) -> PersistKey {
    let mut client = k.src;
    for (w, m) in client.iter_mut().zip(p.mask) {
        *w &= m;
    }
    PersistKey {
        client,
        service_id,
        family: k.family,
        _pad: [0; 3],
    }
}

/// Is the template past its service's `persistence_timeout` (gone for the program too)?
pub fn template_expired(t: &PersistEntry, p: &Persistence, now_ns: u64) -> bool {
    Duration::from_nanos(now_ns.saturating_sub(t.last_used_ns))
        > Duration::from_secs(p.timeout_secs as u64)
}

/// Seconds left before a template expires (for `xlb conns`).
pub fn template_expires_in(t: &PersistEntry, p: &Persistence, now_ns: u64) -> Duration {
    let idle = Duration::from_nanos(now_ns.saturating_sub(t.last_used_ns));
    Duration::from_secs(p.timeout_secs as u64).saturating_sub(idle)
}

/// Live entries per real-server slot, indexed by slot (a way's slot is 16 bits).
struct PerReal(Vec<ConnCounts>);

impl PerReal {
    fn new() -> Self {
        Self(vec![ConnCounts::default(); 1 << 16])
    }

    fn add(&mut self, real_id: u32, state: u8, synced: bool, extra: &mut HashMap<u32, ConnCounts>) {
        let c = match self.0.get_mut(real_id as usize) {
            Some(c) => c,
            None => extra.entry(real_id).or_default(),
        };
        match (state == conn_state::ESTABLISHED, synced) {
            (true, false) => c.active += 1,
            (false, false) => c.inactive += 1,
            (true, true) => {
                c.active += 1;
                c.synced_active += 1;
            }
            (false, true) => {
                c.inactive += 1;
                c.synced_inactive += 1;
            }
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

/// What a scan found to remove: LRU keys (and which are own flows), and ways with the
/// stamp-and-check word seen and their flow (`None`: torn).
#[derive(Default)]
struct Expired {
    keys: Vec<FlowKey>,
    own_keys: Vec<FlowKey>,
    ways: Vec<(WayIndex, u32, Option<FlowKey>)>,
}

/// What a pass over the connection table found: the result, what to remove, and the templates
/// that live connections keep in use.
struct ConnPass {
    result: SweepResult,
    expired: Expired,
    controlled: HashSet<PersistKey>,
    /// Live ways idle for `conn::LONG_IDLE_UNITS` or more, as read: moved to the LRU.
    long_idle: Vec<(WayIndex, lb_common::conn::ConnWay)>,
}

/// The service of a way: its real server's slot's (a slot belongs to one service), read from
/// REALS once per slot.
fn way_service(maps: &KernelMaps, cache: &mut HashMap<u32, u32>, real_id: u32) -> u32 {
    *cache.entry(real_id).or_insert_with(|| {
        maps.reals
            .get(&real_id, 0)
            .map_or(u32::MAX, |r| r.service_id)
    })
}

/// Counts the live entries per real server without changing the table (what a status query
/// reads); entries past their timeout are not counted. Returns those (and torn ways) too.
fn count(maps: &KernelMaps, timeouts: &Timeouts, now: u64) -> std::io::Result<ConnPass> {
    let mut pass = ConnPass {
        result: SweepResult::default(),
        expired: Expired::default(),
        controlled: HashSet::new(),
        long_idle: Vec::new(),
    };
    let mut per_real = PerReal::new();
    let mut extra = HashMap::new();
    let mut services = HashMap::new();
    let persistent = maps.has_persistence();
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
                pass.expired.ways.push((at, w.stamp_check, None));
                continue;
            }
            let e = conn_sets::way_entry(&w, 0, now);
            if is_expired(&e, timeouts, now) {
                let key = conn_sets::way_key(&w);
                pass.expired.ways.push((at, w.stamp_check, Some(key)));
                continue;
            }
            if conn_sets::is_long_idle(&w, now) {
                pass.long_idle.push((at, w));
            }
            live += 1;
            // The set table holds own flows only (synced entries are written to the LRU).
            per_real.add(e.real_id, e.state, false, &mut extra);
            if persistent {
                let service_id = way_service(maps, &mut services, e.real_id);
                if let Some(p) = maps.persistence_of(service_id) {
                    let key = conn_sets::way_key(&w);
                    pass.controlled.insert(template_key(&key, service_id, p));
                }
            }
        }
    }
    let fd = maps.conn_table_fd().as_raw_fd();
    let seen = batch::for_each::<FlowKey, FlowEntry>(fd, 8192, |k, v| {
        let synced = v.sync_flags & lb_common::FLOW_F_SYNCED != 0;
        if is_expired(v, timeouts, now) {
            pass.expired.keys.push(*k);
            if !synced && pass.expired.own_keys.len() < EXPIRED_OWN_REPORTED {
                pass.expired.own_keys.push(*k);
            }
            return;
        }
        if let Some(p) = maps.persistence_of(v.service_id) {
            pass.controlled.insert(template_key(k, v.service_id, p));
        }
        per_real.add(v.real_id, v.state, synced, &mut extra);
    })?;
    pass.result.per_real = per_real.into_map(extra);
    pass.result.entries = live + seen - (pass.expired.keys.len() as u64).min(seen);
    Ok(pass)
}

/// What a pass over the templates found.
#[derive(Default)]
struct TemplatePass {
    live: u64,
    /// Past their timeout, of a service no longer persistent, or of an earlier holder of the id.
    expired: Vec<PersistKey>,
    /// In use by live connections and idle for over a second: written back with `now`, so the
    /// program keeps honouring them (the sweep must run more often than `persistence_timeout`).
    refresh: Vec<(PersistKey, PersistEntry)>,
}

fn count_templates(
    maps: &KernelMaps,
    controlled: &HashSet<PersistKey>,
    now: u64,
) -> std::io::Result<TemplatePass> {
    let fd = maps.persist_templates_fd().as_raw_fd();
    let mut pass = TemplatePass::default();
    let mut generations: HashMap<u32, Option<u32>> = HashMap::new();
    batch::for_each::<PersistKey, PersistEntry>(fd, 8192, |k, v| {
        let generation = *generations
            .entry(k.service_id)
            .or_insert_with(|| maps.services.state(k.service_id).ok().map(|s| s.generation));
        let Some(p) = maps.persistence_of(k.service_id) else {
            pass.expired.push(*k);
            return;
        };
        if generation != Some(v.service_gen) {
            pass.expired.push(*k);
        } else if controlled.contains(k) {
            pass.live += 1;
            if now.saturating_sub(v.last_used_ns) > 1_000_000_000 {
                pass.refresh.push((
                    *k,
                    PersistEntry {
                        last_used_ns: now,
                        ..*v
                    },
                ));
            }
        } else if template_expired(v, p, now) {
            pass.expired.push(*k);
        } else {
            pass.live += 1;
        }
    })?;
    Ok(pass)
}

/// A read-only census: ActiveConn / InActConn and templates as of now, nothing expired.
/// A read-only census: ActiveConn / InActConn as of now, nothing expired.
pub fn census(maps: &KernelMaps, timeouts: &Timeouts) -> std::io::Result<SweepResult> {
    let now = monotonic_ns();
    let pass = count(maps, timeouts, now)?;
    let mut result = pass.result;
    result.templates = count_templates(maps, &pass.controlled, now)?.live;
    Ok(result)
}

/// The periodic sweep: the census, the removal of the entries past their timeout (a way is
/// freed only if the program did not refresh or rewrite it since it was read), and the
/// templates' upkeep (kept in use while their connections live, removed once expired).
pub fn sweep(maps: &mut KernelMaps, timeouts: &Timeouts) -> std::io::Result<SweepResult> {
    let now = monotonic_ns();
    let ConnPass {
        mut result,
        expired,
        controlled,
        long_idle,
    } = count(maps, timeouts, now)?;
    move_to_lru(maps, &long_idle, now);
    let mut freed = 0u64;
    for (at, seen, key) in &expired.ways {
        if !maps.conn_sets.free_if_unchanged(*at, *seen) {
            continue;
        }
        freed += 1;
        if let Some(k) = key.filter(|_| result.expired_own.len() < EXPIRED_OWN_REPORTED) {
            result.expired_own.push(k);
        }
    }
    let fd = maps.conn_table_fd().as_raw_fd();
    // The fd stays valid: `maps` owns the map for the whole function.
    let table = &mut maps.conn_table;
    result.expired = freed + batch::delete(fd, &expired.keys, |k| table.remove(k).is_ok());
    let room = EXPIRED_OWN_REPORTED.saturating_sub(result.expired_own.len());
    result
        .expired_own
        .extend(expired.own_keys.into_iter().take(room));
    let templates = count_templates(maps, &controlled, now)?;
    result.templates = templates.live;
    let fd = maps.persist_templates_fd().as_raw_fd();
    if !templates.refresh.is_empty() {
        let (keys, values): (Vec<_>, Vec<_>) = templates.refresh.into_iter().unzip();
        batch::update(fd, &keys, &values)?;
    }
    let map = &mut maps.persist_templates;
    result.templates_expired = batch::delete(fd, &templates.expired, |k| map.remove(k).is_ok());
    Ok(result)
}

/// Moves ways idle for `conn::LONG_IDLE_UNITS` (4.9 h) to the LRU, whose entries keep the time
/// in ns: a way tells ages apart only up to 2^15 stamp units (9.7 h), while `[timeouts]` go up to
/// 30 days ([`move_way_to_lru`]). A way whose generations no longer match its slot's is freed.
/// Returns how many moved.
fn move_to_lru(
    maps: &mut KernelMaps,
    ways: &[(WayIndex, lb_common::conn::ConnWay)],
    now: u64,
) -> u64 {
    let mut moved = 0;
    for (at, w) in ways {
        let Some(entry) = way_as_lru_entry(maps, w, now) else {
            // Stale (its real server or service went away): its next packet is dispatched
            // afresh anyway; freed before its low generation bits could match a reused slot.
            maps.conn_sets.free_if_unchanged(*at, w.stamp_check);
            continue;
        };
        if move_way_to_lru(maps, *at, w, entry) {
            moved += 1;
        }
    }
    moved
}

/// Moves the way at `at`, read as `w`, to the LRU as `entry`: the LRU entry is written first
/// (only if the flow has none), then the way is freed if the program did not touch it meanwhile;
/// if it did, the flow is live in its set again and the copy is removed. At every moment the
/// program finds the flow's real server, in the way or in the LRU. True if it moved.
pub(crate) fn move_way_to_lru(
    maps: &mut KernelMaps,
    at: WayIndex,
    w: &lb_common::conn::ConnWay,
    entry: FlowEntry,
) -> bool {
    const BPF_NOEXIST: u64 = 1;
    let key = conn_sets::way_key(w);
    if maps.conn_table.insert(key, entry, BPF_NOEXIST).is_err() {
        return false;
    }
    if maps.conn_sets.free_if_unchanged(at, w.stamp_check) {
        return true;
    }
    let _ = maps.conn_table.remove(&key);
    false
}

/// A way as an LRU entry with the full generations of its real server and service (a way keeps
/// their low bits), if they still match.
pub(crate) fn way_as_lru_entry(
    maps: &KernelMaps,
    w: &lb_common::conn::ConnWay,
    now: u64,
) -> Option<FlowEntry> {
    use lb_common::conn;
    let real_id = conn::meta_real(w.meta);
    let real = maps.reals.get(&real_id, 0).ok()?;
    let svc = maps.services.state(real.service_id).ok()?;
    if !conn::meta_real_gen_is(w.meta, real.generation)
        || !conn::meta_svc_gen_is(w.meta, svc.generation)
    {
        return None;
    }
    Some(FlowEntry {
        real_gen: real.generation,
        service_gen: svc.generation,
        ..conn_sets::way_entry(w, real.service_id, now)
    })
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
        let service_id = way_service(maps, &mut service_of, real_id);
        seen += 1;
        f(
            &conn_sets::way_key(w),
            &conn_sets::way_entry(w, service_id, now),
        );
    });
    let fd = maps.conn_table_fd().as_raw_fd();
    Ok(seen + batch::for_each::<FlowKey, FlowEntry>(fd, 8192, f)?)
}
