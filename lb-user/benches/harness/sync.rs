//! Cost of connection sync on the SYN path: the same fresh-SYN case with `SYNC_F_ENABLED` off
//! and on, round by round, while a thread drains `SYNC_EVENTS` as the daemon's sync task would
//! (so every event is really written, not refused by a full ring). Target: on <= 1.2x off.
use std::{
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    thread,
    time::Duration,
};

use anyhow::{bail, Context as _, Result};
use lb_common::stat;
use serde_json::{json, Value};

use super::{
    dp::{Dp, SLOT_XLB},
    timing::{self, median, Case, Expect, Fresh, FreshAlloc, Prog, Series},
    Progress,
};

/// Target of issue 20: the SYN path with sync on within 1.2x of it with sync off.
pub const TARGET_RATIO: f64 = 1.2;

/// Drains the ring until stopped; returns how many events it read.
fn drainer(
    mut ring: aya::maps::RingBuf<aya::maps::MapData>,
    stop: Arc<AtomicBool>,
    read: Arc<AtomicU64>,
) -> thread::JoinHandle<aya::maps::RingBuf<aya::maps::MapData>> {
    thread::spawn(move || loop {
        let mut n = 0;
        while let Some(item) = ring.next() {
            std::hint::black_box(&*item);
            n += 1;
        }
        read.fetch_add(n, Ordering::Relaxed);
        if n == 0 {
            if stop.load(Ordering::Relaxed) {
                return ring;
            }
            thread::sleep(Duration::from_micros(200));
        }
    })
}

fn merge(acc: &mut Option<Series>, s: Series) {
    match acc {
        None => *acc = Some(s),
        Some(a) => {
            a.ns.extend(s.ns);
            a.ratio.extend(s.ratio);
            a.path_errors.extend(s.path_errors);
            a.reps += s.reps;
            for (x, y) in a.counters.iter_mut().zip(s.counters) {
                *x += y;
            }
        }
    }
}

/// Interleaved rounds: floor, SYN with sync off, floor, SYN with sync on.
pub fn syn_cost(
    dp: &mut Dp,
    floor: &Case,
    syn4: &[u8],
    rounds: usize,
    reps: u32,
    fresh: &mut FreshAlloc,
    progress: &Progress,
) -> Result<Value> {
    let ring = dp
        .writer
        .maps_mut()
        .sync_events
        .take()
        .context("SYNC_EVENTS already taken")?;
    let stop = Arc::new(AtomicBool::new(false));
    let read = Arc::new(AtomicU64::new(0));
    let handle = drainer(ring, stop.clone(), read.clone());
    let lost_before = dp.counters()?[stat::SYNC_RING_FULL as usize];
    let case = |name: &str| {
        Case::new(name, Prog::Wrapped(SLOT_XLB), syn4.to_vec(), Expect::Miss).fresh(Fresh::V4, true)
    };
    let (mut floor_s, mut off_s, mut on_s) = (None, None, None);
    for _ in 0..rounds {
        dp.writer.maps_mut().set_sync_enabled(false)?;
        let mut off = timing::rounds(
            dp,
            &[floor.clone(), case("xlb new flow (SYN) IPv4, sync off")],
            0,
            1,
            reps,
            1,
            fresh,
            progress,
        )?;
        dp.writer.maps_mut().set_sync_enabled(true)?;
        let mut on = timing::rounds(
            dp,
            &[floor.clone(), case("xlb new flow (SYN) IPv4, sync on")],
            0,
            1,
            reps,
            1,
            fresh,
            progress,
        )?;
        merge(&mut on_s, on.pop().unwrap_or_default());
        merge(&mut floor_s, on.pop().unwrap_or_default());
        merge(&mut off_s, off.pop().unwrap_or_default());
    }
    dp.writer.maps_mut().set_sync_enabled(false)?;
    stop.store(true, Ordering::Relaxed);
    let ring = handle
        .join()
        .map_err(|_| anyhow::anyhow!("drain thread panicked"))?;
    dp.writer.maps_mut().sync_events = Some(ring);
    let lost = dp.counters()?[stat::SYNC_RING_FULL as usize] - lost_before;
    let (Some(floor_s), Some(off), Some(on)) = (floor_s, off_s, on_s) else {
        bail!("no rounds");
    };
    let per_round: Vec<f64> = on.ns.iter().zip(&off.ns).map(|(a, b)| a / b).collect();
    let ratio = median(&per_round);
    let events = read.load(Ordering::Relaxed);
    Ok(json!({
        "floor": floor_s.json(),
        "sync_off": off.json(),
        "sync_on": on.json(),
        "on_over_off": {"median": ratio, "runs": per_round, "target": TARGET_RATIO, "met": ratio <= TARGET_RATIO},
        "events_read": events,
        "events_expected": on.reps,
        "events_lost": lost,
    }))
}
