//! The sync IO shell: one tokio task owns the UDP socket and the ring buffer. It turns this
//! director's ring-buffer events (and, every `refresh_interval`, its whole own table) into
//! records for the peers, rate-limited, and hands the peers' verified records to the daemon,
//! whose map writer carries them out (`SyncLink::apply`: inserts, state changes, expiry).
//! Nothing here writes a map. The socket and the wire formats are in `super::wire`; this file
//! stays over 600 lines because the task's loop and the daemon's end of it (`SyncLink`, start,
//! reload) share their channel types.
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::os::fd::AsRawFd as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use aya::maps::{MapData, RingBuf};
use lb_common::{sync_event, FlowEntry, FlowKey, SyncEvent, FLOW_F_SYNCED};
use tokio::io::unix::AsyncFd;
use tokio::net::UdpSocket;
use tokio::sync::{mpsc, watch};
use tracing::{info, warn};

use crate::config::model::{SyncProtocol, SyncSettings};
use crate::dataplane::conn_sets::{way_entry, way_key, ConnSets};
use crate::dataplane::sweep::{monotonic_ns, Timeouts};
use crate::dataplane::writer::{MapWriter, SyncedInsert};

use super::names::{flow_of, SlotIndex};
pub use super::stats::SyncStats;
use super::stats::SOCKET_RETRY_SECS;
use super::wire::{new_wire, socket, Wire};
use super::{apply, HealthRecord, Record, StateChange, SyncKey};

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("sync key file {path}: {source}")]
    KeyFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("sync key file {path}: {reason}")]
    Key { path: PathBuf, reason: String },
    #[error("sync socket on port {port}: {source}")]
    Socket { port: u16, source: std::io::Error },
    #[error("sync ring buffer: {0}")]
    Ring(std::io::Error),
}

/// Records of one accepted message.
pub struct PeerBatch {
    pub records: Vec<Record>,
    /// The sending director (xlb's wire; IPVS's does not say).
    pub sender: Option<u32>,
}

/// The daemon's end of the sync task.
pub struct SyncLink {
    pub from_peers: mpsc::Receiver<PeerBatch>,
    names: watch::Sender<Arc<SlotIndex>>,
    /// This director's health view, sent on change and every `views::VIEW_INTERVAL`.
    health_view: watch::Sender<Vec<HealthRecord>>,
    pub stats: watch::Receiver<SyncStats>,
    timeouts: Timeouts,
    task: tokio::task::JoinHandle<()>,
    /// Totals of what `apply` wrote (the daemon's task only: a Cell suffices).
    applied: std::cell::Cell<Applied>,
    /// This director's expired own flows, for the peers (from the sweep).
    expired: mpsc::Sender<Vec<FlowKey>>,
    expiries_dropped: std::cell::Cell<u64>,
    /// `xlb reload`: the new settings with their key, or `None` (sync switched off).
    settings: watch::Sender<Option<Arc<Settings>>>,
}

/// Settings the task runs with: `[sync]` and the key read from its file.
pub struct Settings {
    pub sync: SyncSettings,
    pub key: Option<SyncKey>,
    /// The socket `xlb reload` opened for a new address, interface or peers (so the reload can
    /// say when it fails), for the task to take.
    opened: std::sync::Mutex<Option<Opened>>,
}

/// An open sync socket and where it sends.
type Opened = (UdpSocket, Vec<SocketAddr>);

/// Do `a` and `b` use the same socket (port, interface, peers)?
fn same_endpoint(a: &SyncSettings, b: &SyncSettings) -> bool {
    a.port == b.port && a.interface == b.interface && a.peers == b.peers
}

impl Settings {
    /// Reads the key file (`xlb` protocol): the reload fails here, before the task sees it.
    pub fn load(sync: &SyncSettings) -> Result<Self, SyncError> {
        let key = match sync.protocol {
            SyncProtocol::Xlb => Some(read_key(&sync.key_file.clone().unwrap_or_default())?),
            SyncProtocol::Ipvs => None,
        };
        Ok(Settings {
            sync: sync.clone(),
            key,
            opened: std::sync::Mutex::new(None),
        })
    }
}

/// Totals of what the writer did with peers' records.
#[derive(Clone, Copy, Debug, Default)]
struct Applied {
    insert: SyncedInsert,
    states: usize,
    own_states: usize,
    removed: usize,
}

impl Drop for SyncLink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Reads the shared key (a trailing newline is not part of it).
pub fn read_key(path: &Path) -> Result<SyncKey, SyncError> {
    let mut bytes = std::fs::read(path).map_err(|source| SyncError::KeyFile {
        path: path.into(),
        source,
    })?;
    while bytes.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
        bytes.pop();
    }
    SyncKey::new(bytes).map_err(|e| SyncError::Key {
        path: path.into(),
        reason: e.to_string(),
    })
}

/// Everything the task needs besides its channels.
struct Shell {
    settings: SyncSettings,
    wire: Wire,
    /// `None` while sync is switched off by a reload (the ring is still drained), or while
    /// its socket does not open (`socket_error`).
    sock: Option<UdpSocket>,
    /// `[sync]` is on (a reload may switch it off).
    enabled: bool,
    /// Why the socket did not open; tried again every `SOCKET_RETRY_SECS`.
    socket_error: Option<String>,
    /// Seconds since the last try.
    socket_wait: u32,
    dests: Vec<SocketAddr>,
    /// This director's connection table, opened read-only from its pin (the full resend).
    table: Option<aya::maps::HashMap<MapData, FlowKey, FlowEntry>>,
    /// Its set table (own IPv4 flows), read-only.
    sets: Option<ConnSets>,
    names: watch::Receiver<Arc<SlotIndex>>,
    health_view: watch::Receiver<Vec<HealthRecord>>,
    timeouts: Timeouts,
    pending: VecDeque<Record>,
    /// How many records at the front of `pending` are counted in `rate_limited` already.
    waiting: usize,
    stats: SyncStats,
    /// Datagrams still allowed this second.
    tokens: u32,
}

/// Starts the sync task. `ring` is the program's `SYNC_EVENTS`; `table_pin` the pinned
/// connection table (`None`: no full resends, e.g. unpinned test maps).
pub fn start(
    settings: &SyncSettings,
    ring: RingBuf<MapData>,
    table_pin: Option<&Path>,
    timeouts: Timeouts,
) -> Result<SyncLink, SyncError> {
    let loaded = Settings::load(settings)?;
    let wire = new_wire(&loaded);
    // A socket that does not open (its interface not up yet, say) leaves forwarding and the
    // rest of the daemon running: the task tries again and `xlb status` says why.
    let (sock, dests, socket_error) = match socket(settings) {
        Ok((sock, dests)) => (Some(sock), dests, None),
        Err(e) => {
            warn!("connection sync: {e}; trying again every {SOCKET_RETRY_SECS} s");
            (None, Vec::new(), Some(e.to_string()))
        }
    };
    // SAFETY: the ring buffer owns its map fd for as long as it lives, and AsyncFd owns it.
    let ring = unsafe { AsyncFd::register(ring) }
        .map_err(|e| SyncError::Ring(std::io::Error::other(e.to_string())))?;
    let table = table_pin.and_then(|p| {
        let data = MapData::from_pin(p).ok()?;
        aya::maps::HashMap::try_from(aya::maps::Map::LruHashMap(data)).ok()
    });
    // The own IPv4 flows live in the set table, pinned beside the LRU: mapped to be read.
    let sets = table_pin
        .and_then(Path::parent)
        .and_then(|dir| MapData::from_pin(dir.join(lb_common::map_names::CONN_SETS)).ok())
        .and_then(|data| ConnSets::new(data).ok());
    let (names_tx, names_rx) = watch::channel(Arc::new(SlotIndex::default()));
    let (health_tx, health_rx) = watch::channel(Vec::new());
    let stats = SyncStats {
        director_id: settings.director_id,
        socket_open: sock.is_some(),
        socket_error: socket_error.clone(),
        ..SyncStats::default()
    };
    let (stats_tx, stats_rx) = watch::channel(stats.clone());
    let (peers_tx, peers_rx) = mpsc::channel(1024);
    let (expired_tx, expired_rx) = mpsc::channel(16);
    let (settings_tx, settings_rx) = watch::channel(Some(Arc::new(loaded)));
    let shell = Shell {
        settings: settings.clone(),
        wire,
        sock,
        enabled: true,
        socket_error,
        socket_wait: 0,
        dests,
        table,
        sets,
        names: names_rx,
        health_view: health_rx,
        timeouts,
        pending: VecDeque::new(),
        waiting: 0,
        stats,
        tokens: settings.max_messages_per_second,
    };
    info!(
        port = settings.port,
        director_id = settings.director_id,
        "connection sync started"
    );
    let channels = Channels {
        peers: peers_tx,
        stats: stats_tx,
        expired: expired_rx,
        settings: settings_rx,
    };
    let task = tokio::spawn(shell.run(ring, channels));
    Ok(SyncLink {
        from_peers: peers_rx,
        names: names_tx,
        health_view: health_tx,
        stats: stats_rx,
        timeouts,
        task,
        applied: std::cell::Cell::new(Applied::default()),
        expired: expired_tx,
        expiries_dropped: std::cell::Cell::new(0),
        settings: settings_tx,
    })
}

/// The task's channels to and from the daemon.
struct Channels {
    peers: mpsc::Sender<PeerBatch>,
    stats: watch::Sender<SyncStats>,
    expired: mpsc::Receiver<Vec<FlowKey>>,
    settings: watch::Receiver<Option<Arc<Settings>>>,
}

/// The next datagram, or never while sync is switched off.
async fn recv(sock: Option<&UdpSocket>, buf: &mut [u8]) -> std::io::Result<usize> {
    match sock {
        Some(s) => s.recv_from(buf).await.map(|(n, _)| n),
        None => std::future::pending().await,
    }
}

fn refresh_timer(s: &SyncSettings) -> tokio::time::Interval {
    tokio::time::interval(Duration::from_secs_f64(s.refresh_interval.max(0.01)))
}

impl Shell {
    async fn run(mut self, mut ring: AsyncFd<RingBuf<MapData>>, mut ch: Channels) {
        let mut buf = vec![0u8; 65_536];
        let mut flush = tokio::time::interval(Duration::from_millis(10));
        let mut second = tokio::time::interval(Duration::from_secs(1));
        let mut refresh = refresh_timer(&self.settings);
        let mut view_tick = tokio::time::interval(crate::health::views::VIEW_INTERVAL);
        loop {
            tokio::select! {
                r = ring.readable_mut() => match r {
                    Ok(mut guard) => {
                        self.drain_ring(guard.get_inner_mut());
                        guard.clear_ready();
                    }
                    Err(e) => { warn!("sync ring buffer: {e}"); return; }
                },
                r = recv(self.sock.as_ref(), &mut buf) => {
                    if let Ok(n) = r {
                        if let Some(batch) = self.wire.decode(&buf[..n]) {
                            self.stats.messages_received += 1;
                            self.stats.records_received += batch.records.len() as u64;
                            if ch.peers.send(batch).await.is_err() {
                                return;
                            }
                        }
                    }
                }
                Some(flows) = ch.expired.recv() => self.queue_expired(&flows),
                r = ch.settings.changed() => {
                    if r.is_err() { return; }
                    let next = ch.settings.borrow_and_update().clone();
                    self.reconfigure(next.as_deref());
                    refresh = refresh_timer(&self.settings);
                }
                _ = flush.tick() => self.send_pending().await,
                _ = second.tick() => {
                    self.tokens = self.settings.max_messages_per_second;
                    self.retry_socket();
                    self.stats.socket_open = self.sock.is_some();
                    self.stats.socket_error = self.socket_error.clone();
                    self.stats.dropped = self.wire.dropped().0.iter().map(|(k, v)| (k.to_string(), *v)).collect();
                    self.stats.peers = self.wire.peers();
                    ch.stats.send_replace(self.stats.clone());
                }
                _ = refresh.tick() => self.queue_own_table(),
                Ok(()) = self.health_view.changed() => self.queue_health_view(),
                _ = view_tick.tick() => self.queue_health_view(),
            }
        }
    }

    /// This director's health view, ahead of the connections waiting (small, and peers
    /// confirm failures with it); an older view still waiting is replaced, not sent too.
    fn queue_health_view(&mut self) {
        let view = self.health_view.borrow_and_update().clone();
        if self.sock.is_none() || matches!(self.wire, Wire::Ipvs { .. }) {
            // Sync is off, or IPVS's protocol, which has no health record.
            return;
        }
        let is_health = |r: &Record| matches!(r, Record::Health(_));
        let stale_counted = self
            .pending
            .iter()
            .take(self.waiting)
            .filter(|r| is_health(r))
            .count();
        self.waiting -= stale_counted;
        self.pending.retain(|r| !is_health(r));
        // After the records already counted as waiting, so each is still counted once.
        for r in view.into_iter().rev() {
            self.pending.insert(self.waiting, Record::Health(r));
        }
    }

    /// A reload's settings. The key and limits change in place (sequence numbers and replay
    /// windows go on: peers accept the next message); the socket is opened again when its
    /// address, interface or peers changed; another protocol or director id starts a new wire.
    fn reconfigure(&mut self, next: Option<&Settings>) {
        let Some(next) = next else {
            if self.sock.take().is_some() || self.enabled {
                info!("connection sync switched off");
            }
            self.enabled = false;
            self.socket_error = None;
            self.pending.clear();
            self.waiting = 0;
            return;
        };
        let (old, new) = (&self.settings, &next.sync);
        let same_wire = old.protocol == new.protocol && old.director_id == new.director_id;
        match (&mut self.wire, &next.key) {
            (Wire::Xlb { out, inb }, Some(key)) if same_wire => {
                out.set_key(key.clone(), new.max_message_bytes as usize);
                inb.set_key(key.clone(), (new.max_age * 1000.0) as u64);
            }
            (
                Wire::Ipvs {
                    sync_id, max_bytes, ..
                },
                None,
            ) if same_wire => {
                *sync_id = new.sync_id;
                *max_bytes = new.max_message_bytes as usize;
            }
            _ => self.wire = new_wire(next),
        }
        let same_socket = same_endpoint(old, new) && self.sock.is_some();
        self.settings = new.clone();
        self.enabled = true;
        self.tokens = self.tokens.min(new.max_messages_per_second);
        if !same_socket {
            self.sock = None;
            // The reload opened it already, unless it failed there (then it said why).
            let opened = next.opened.lock().ok().and_then(|mut o| o.take());
            self.socket_opened(opened.map_or_else(|| socket(new), Ok));
        }
        info!(
            port = new.port,
            director_id = new.director_id,
            "connection sync reconfigured"
        );
    }

    /// Takes an open socket, or records why it did not open.
    fn socket_opened(&mut self, opened: Result<Opened, SyncError>) {
        self.socket_wait = 0;
        match opened {
            Ok((sock, dests)) => {
                if self.socket_error.take().is_some() {
                    info!(port = self.settings.port, "connection sync socket open");
                }
                self.sock = Some(sock);
                self.dests = dests;
            }
            Err(e) => {
                let e = e.to_string();
                if self.socket_error.as_ref() != Some(&e) {
                    warn!("connection sync: {e}; trying again every {SOCKET_RETRY_SECS} s");
                }
                self.socket_error = Some(e);
            }
        }
    }

    /// Every second: `[sync]` is on but its socket did not open; tried again every
    /// `SOCKET_RETRY_SECS`.
    fn retry_socket(&mut self) {
        if !self.enabled || self.sock.is_some() {
            return;
        }
        self.socket_wait += 1;
        if self.socket_wait >= SOCKET_RETRY_SECS {
            let opened = socket(&self.settings);
            self.socket_opened(opened);
        }
    }

    /// Expiry records of this director's own flows (the sweep removed them). IPVS's wire has
    /// no such record (its peers expire connections by their own clock).
    fn queue_expired(&mut self, flows: &[FlowKey]) {
        if self.sock.is_none() || matches!(self.wire, Wire::Ipvs { .. }) {
            return;
        }
        let before = self.pending.len();
        self.pending
            .extend(flows.iter().filter_map(flow_of).map(Record::Expiry));
        self.stats.expiries_queued += (self.pending.len() - before) as u64;
    }

    fn drain_ring(&mut self, ring: &mut RingBuf<MapData>) {
        let names = self.names.borrow().clone();
        let on = self.sock.is_some();
        while let Some(item) = ring.next() {
            if !on || item.len() < std::mem::size_of::<SyncEvent>() {
                continue;
            }
            // SAFETY: SyncEvent is plain data and the item holds at least its size.
            let ev = unsafe { std::ptr::read_unaligned(item.as_ptr() as *const SyncEvent) };
            match names.event_record(&ev, &self.timeouts, self.settings.director_id) {
                Some(r) => self.pending.push_back(self.event_to_record(ev.kind, r)),
                None => self.stats.events_stale += 1,
            }
        }
    }

    /// An ESTABLISHED/FIN/RST is a state-change record on xlb's wire; IPVS's has only connection
    /// records (the state travels in them).
    fn event_to_record(&self, kind: u8, r: super::ConnRecord) -> Record {
        match (&self.wire, kind) {
            (Wire::Xlb { .. }, sync_event::STATE) => Record::State(StateChange {
                flow: r.flow,
                state: r.state,
                remaining_ms: r.remaining_ms,
            }),
            _ => Record::Conn(r),
        }
    }

    /// Every live entry, with its remaining idle time (a restarted peer re-learns them).
    fn queue_own_table(&mut self) {
        let Some(table) = &self.table else { return };
        if self.sock.is_none() {
            return;
        }
        let names = self.names.borrow().clone();
        let now = monotonic_ns();
        let fd = {
            use aya::maps::IterableMap as _;
            use std::os::fd::AsFd as _;
            table.map().fd().as_fd().as_raw_fd()
        };
        let (t, id) = (self.timeouts, self.settings.director_id);
        let mut out = Vec::new();
        let _ = crate::dataplane::batch::for_each::<FlowKey, FlowEntry>(fd, 8192, |k, e| {
            let left = crate::dataplane::sweep::expires_in(e, &t, now);
            if left.is_zero() {
                return;
            }
            // Synced entries are relayed with their origin: a restarted director gets back
            // every flow, also those it dispatched itself before it lost its table.
            let origin = if e.sync_flags & FLOW_F_SYNCED != 0 {
                e.origin
            } else {
                id
            };
            let ms = left.as_millis().min(u32::MAX as u128) as u32;
            out.extend(
                names
                    .entry_record(k, e.real_id, e.state, ms, origin)
                    .map(Record::Conn),
            );
        });
        // Own IPv4 flows: only their first packet's event said them otherwise (and not at
        // all if sync was switched on after they began).
        if let Some(sets) = &self.sets {
            sets.for_each(|_, w| {
                let e = way_entry(w, 0, now);
                let left = crate::dataplane::sweep::expires_in(&e, &t, now);
                if w.is_free() || left.is_zero() {
                    return;
                }
                let ms = left.as_millis().min(u32::MAX as u128) as u32;
                out.extend(
                    names
                        .entry_record(&way_key(w), e.real_id, e.state, ms, id)
                        .map(Record::Conn),
                );
            });
        }
        self.pending.extend(out);
    }

    async fn send_pending(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        if self.tokens == 0 {
            // Each waiting record is counted once, however many rounds it waits.
            self.stats.rate_limited += (self.pending.len() - self.waiting) as u64;
            self.waiting = self.pending.len();
            return;
        }
        let take = self.pending.len().min(4096);
        let counted = self.waiting.min(take);
        self.waiting -= counted;
        let records: Vec<Record> = self.pending.drain(..take).collect();
        let datagrams = self.wire.encode(&records);
        let mut sent_records = records.len();
        for (i, d) in datagrams.iter().enumerate() {
            if self.tokens == 0 {
                // Put back what did not go: it waits for the next second's budget.
                let per = records.len().div_ceil(datagrams.len());
                let rest = records.len().saturating_sub(i * per);
                sent_records -= rest;
                for r in records[records.len() - rest..].iter().rev() {
                    self.pending.push_front(*r);
                }
                // The batch's first `counted` records had waited already.
                let recounted = counted.saturating_sub(records.len() - rest);
                self.stats.rate_limited += (rest - recounted) as u64;
                self.waiting += rest;
                break;
            }
            self.tokens -= 1;
            let Some(sock) = &self.sock else { return };
            for dest in &self.dests {
                let _ = sock.send_to(d, dest).await;
            }
            self.stats.messages_sent += 1;
        }
        self.stats.records_sent += sent_records as u64;
    }
}

impl SyncLink {
    /// The slot naming of the latest apply (call after every `MapWriter::apply`).
    pub fn publish(&self, writer: &MapWriter) {
        self.names
            .send_replace(Arc::new(SlotIndex::new(&writer.slots())));
    }

    /// This director's health view (sent at once when it changed, and every second).
    pub fn publish_health(&self, view: Vec<HealthRecord>) {
        self.health_view.send_if_modified(|v| {
            let changed = *v != view;
            *v = view;
            changed
        });
    }

    /// The health records of a peer batch.
    pub fn health_records(batch: &PeerBatch) -> Vec<HealthRecord> {
        batch
            .records
            .iter()
            .filter_map(|r| match r {
                Record::Health(h) => Some(*h),
                _ => None,
            })
            .collect()
    }

    /// Is sync on (not switched off by a reload)?
    pub fn is_enabled(&self) -> bool {
        self.settings.borrow().is_some()
    }

    /// The task's counters with what the writer did with peers' records.
    pub fn stats(&self) -> SyncStats {
        let mut s = self.stats.borrow().clone();
        let w = self.applied.get();
        s.synced_written = w.insert.written as u64;
        s.own_kept = w.insert.own_kept as u64;
        s.states_applied = w.states as u64;
        s.own_states_applied = w.own_states as u64;
        s.expired_removed = w.removed as u64;
        s.expiries_dropped = self.expiries_dropped.get();
        s.unnamed
            .insert("unknown_slot".into(), w.insert.unknown_slot as u64);
        s
    }

    /// Hands this director's expired own flows (from a sweep) to the task, which tells the
    /// peers at the sync rate limit. Never waits: a batch the task has no room for is counted
    /// and dropped (the peers' entries then expire by their own clock).
    pub fn expired(&self, flows: Vec<FlowKey>) {
        if flows.is_empty() || !self.is_enabled() {
            return;
        }
        if self.expired.try_send(flows).is_err() {
            self.expiries_dropped.set(self.expiries_dropped.get() + 1);
        }
    }

    /// Carries a peer batch out through the map writer (the daemon calls this with its
    /// writer): connections inserted or refreshed, state changes applied, expired flows removed.
    pub fn apply(&self, batch: &PeerBatch, writer: &mut MapWriter) -> SyncedInsert {
        if !self.is_enabled() {
            return SyncedInsert::default();
        }
        let names = self.names.borrow().clone();
        let plan = apply::plan(
            &batch.records,
            batch.sender,
            &names,
            &self.timeouts,
            monotonic_ns(),
        );
        let mut total = self.applied.get();
        let mut r = match writer.insert_synced_conns(&plan.conns) {
            Ok(r) => r,
            Err(e) => {
                warn!("inserting synced connections: {e}");
                SyncedInsert::default()
            }
        };
        r.unknown_slot += plan.unnamed;
        match writer.update_peers_states(&plan.states) {
            Ok(n) => {
                total.states += n.synced;
                total.own_states += n.own;
            }
            Err(e) => warn!("applying synced state changes: {e}"),
        }
        match writer.remove_synced_conns(&plan.expired, &self.timeouts) {
            Ok(n) => total.removed += n,
            Err(e) => warn!("removing expired synced connections: {e}"),
        }
        total.insert.written += r.written;
        total.insert.own_kept += r.own_kept;
        total.insert.unknown_slot += r.unknown_slot;
        self.applied.set(total);
        r
    }

    /// `xlb reload` with sync already started once: new settings (key, peers, limits) or
    /// `None` to switch it off. The table stays as it is either way.
    pub fn reconfigure(
        &mut self,
        settings: Option<&SyncSettings>,
        timeouts: Timeouts,
    ) -> Result<(), SyncError> {
        let next = settings.map(Settings::load).transpose()?;
        self.timeouts = timeouts;
        let socket_open = self.stats.borrow().socket_open;
        let (unchanged, reopen) = match (&*self.settings.borrow(), &next) {
            (Some(a), Some(b)) => (
                a.sync == b.sync && a.key == b.key && socket_open,
                !same_endpoint(&a.sync, &b.sync) || !socket_open,
            ),
            (None, None) => (true, false),
            (None, Some(_)) => (false, true),
            (Some(_), None) => (false, false),
        };
        // A new socket is opened here, so that the reload says when it cannot be; the task
        // then keeps trying.
        let mut failed = None;
        if let (true, Some(n)) = (reopen, &next) {
            match socket(&n.sync) {
                Ok(opened) => {
                    if let Ok(mut slot) = n.opened.lock() {
                        *slot = Some(opened);
                    }
                }
                Err(e) => failed = Some(e),
            }
        }
        if !unchanged {
            self.settings.send_replace(next.map(Arc::new));
        }
        failed.map_or(Ok(()), Err)
    }
}

/// What `xlb reload` calls: `[sync]` switched on, off or changed without a restart and
/// without touching the connection table.
pub fn reload(
    link: &mut Option<SyncLink>,
    cfg: &crate::config::Config,
    writer: &mut MapWriter,
) -> Result<(), SyncError> {
    let Some(l) = link else {
        // Never started: the ring buffer is still in the maps, so this is the start's path.
        *link = attach(cfg, writer)?;
        return Ok(());
    };
    l.reconfigure(cfg.sync.as_ref(), Timeouts::from(&cfg.timeouts))?;
    if let Err(e) = writer.maps_mut().set_sync_enabled(cfg.sync.is_some()) {
        warn!("setting the sync flag: {e}");
    }
    l.publish(writer);
    Ok(())
}

/// The counters for `xlb status` (`None` when sync is off).
pub fn report(link: &Option<SyncLink>) -> Option<SyncStats> {
    link.as_ref()
        .filter(|l| l.is_enabled())
        .map(SyncLink::stats)
}

/// What the daemon calls at start: sets the program's sync flag from the configuration and,
/// when `[sync]` is there, starts the task with the ring buffer taken from the maps.
pub fn attach(
    cfg: &crate::config::Config,
    writer: &mut MapWriter,
) -> Result<Option<SyncLink>, SyncError> {
    let on = cfg.sync.is_some();
    if let Err(e) = writer.maps_mut().set_sync_enabled(on) {
        warn!("setting the sync flag: {e}");
    }
    // The ring buffer is taken only when sync starts: left in the maps, a reload that adds
    // `[sync]` later starts it here.
    let Some(settings) = &cfg.sync else {
        return Ok(None);
    };
    let Some(ring) = writer.maps_mut().sync_events.take() else {
        warn!("connection sync: the program's ring buffer is not available; sync stays off");
        return Ok(None);
    };
    let pin = cfg.global.bpffs_dir.join(lb_common::map_names::CONN_TABLE);
    let link = start(settings, ring, Some(&pin), Timeouts::from(&cfg.timeouts))?;
    link.publish(writer);
    Ok(Some(link))
}

/// The next peer batch, or never when sync is off (for the daemon's `select!`).
pub async fn next_batch(link: &mut Option<SyncLink>) -> Option<PeerBatch> {
    match link {
        Some(l) => l.from_peers.recv().await,
        None => std::future::pending().await,
    }
}
