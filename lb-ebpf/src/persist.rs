//! Persistence as IPVS does it (`ip_vs_sched_persist`): a persistent service keeps a client
//! (network, under `persistence_granularity`) on one real server through a template entry per
//! (client network, service), whatever the scheduler. On a connection-table miss the template
//! decides before the scheduler; a new connection refreshes it; it expires `persistence_timeout`
//! after its last use (the daemon's sweep keeps it in use while connections of the client live).
//!
//! A template holds while its real server does: same slot generation and alive. A real server
//! with weight 0 (quiescent) is still alive, so its clients keep coming (IPVS's default,
//! `expire_quiescent_template=0`); a removed or failed one is not, and the client is scheduled
//! afresh (IPVS: `ip_vs_check_template` fails when the destination is no longer available).
use lb_common::{stat, FlowKey, PersistEntry, PersistKey, Persistence, RealServer, Service};

use crate::{
    maps::{count, PERSISTENCE, PERSIST_TEMPLATES, SERVICE_STATE},
    select::{alive_real, pick},
};

const NS_PER_SEC: u64 = 1_000_000_000;

#[inline(always)]
fn template_key(svc: &Service, flow: &FlowKey, p: &Persistence) -> PersistKey {
    PersistKey {
        client: [
            flow.src[0] & p.mask[0],
            flow.src[1] & p.mask[1],
            flow.src[2] & p.mask[2],
            flow.src[3] & p.mask[3],
        ],
        service_id: svc.id,
        family: flow.family,
        _pad: [0; 3],
    }
}

/// The template's real server if the template still holds at `now`.
#[inline(always)]
fn valid_real(
    t: &PersistEntry,
    p: &Persistence,
    service_gen: u32,
    now: u64,
) -> Option<&'static RealServer> {
    let idle = now.saturating_sub(t.last_used_ns);
    if idle > p.timeout_secs as u64 * NS_PER_SEC || t.service_gen != service_gen {
        return None;
    }
    let real = alive_real(t.real_id)?;
    (real.generation == t.real_gen).then_some(real)
}

/// The real server for a new connection of the persistent service `svc`: the client's template
/// if it holds (refreshed), else the scheduler's pick, remembered in a new template. `None`:
/// the scheduler has no real server either (the caller tries the sorry server, which gets no
/// template: the client is scheduled again once a real server is back).
#[inline(always)]
pub fn schedule(svc: &Service, flow: &FlowKey, now: u64) -> Option<(u32, &'static RealServer)> {
    let Some(p) = PERSISTENCE.get(svc.id) else {
        let id = pick(svc, flow);
        return alive_real(id).map(|r| (id, r));
    };
    let key = template_key(svc, flow, p);
    let service_gen = SERVICE_STATE.get(svc.id).map_or(0, |s| s.generation);
    if let Some(t) = PERSIST_TEMPLATES.get_ptr_mut(&key) {
        // SAFETY: the kernel keeps the element alive for this program run; plain data.
        let t = unsafe { &mut *t };
        if let Some(real) = valid_real(t, p, service_gen, now) {
            count(stat::PERSIST_HIT);
            t.last_used_ns = now;
            return Some((t.real_id, real));
        }
    }
    let real_id = pick(svc, flow);
    let real = alive_real(real_id)?;
    count(stat::PERSIST_MISS);
    let template = PersistEntry {
        real_id,
        real_gen: real.generation,
        service_gen,
        _pad: 0,
        last_used_ns: now,
    };
    // A failed insert (table full of locked entries) costs only persistence for this client.
    let _ = PERSIST_TEMPLATES.insert(&key, &template, 0);
    Some((real_id, real))
}
