//! The netlink side of [`crate::realserver_advmss`]: installs, removes and checks the VIPs'
//! policy rules and the advmss table.
use std::net::IpAddr;

use futures::TryStreamExt as _;
use netlink_packet_route::{route::RouteMessage, rule::RuleMessage, AddressFamily};
use rtnetlink::{Handle, IpVersion};

use crate::net::{BlockingNet, NetError};
use crate::realserver_advmss::{
    advmss_copies, advmss_of, is_vip_rule, route_identity, rule_source, table_of, AdvmssState,
    ADVMSS_TABLE, RULE_PRIORITY,
};

fn failed(what: &str) -> impl FnOnce(rtnetlink::Error) -> NetError + '_ {
    move |source| NetError::Netlink {
        what: what.to_owned(),
        source,
    }
}

fn version(v6: bool) -> IpVersion {
    if v6 {
        IpVersion::V6
    } else {
        IpVersion::V4
    }
}

/// Every route of one family (all tables).
async fn routes(h: &Handle, v6: bool) -> Result<Vec<RouteMessage>, NetError> {
    let mut m = RouteMessage::default();
    m.header.address_family = if v6 {
        AddressFamily::Inet6
    } else {
        AddressFamily::Inet
    };
    h.route()
        .get(m)
        .execute()
        .try_collect()
        .await
        .map_err(failed("dumping the routes"))
}

async fn rules(h: &Handle, v6: bool) -> Result<Vec<RuleMessage>, NetError> {
    h.rule()
        .get(version(v6))
        .execute()
        .try_collect()
        .await
        .map_err(failed("dumping the policy rules"))
}

fn in_table(all: Vec<RouteMessage>, table: u32) -> Vec<RouteMessage> {
    all.into_iter().filter(|m| table_of(m) == table).collect()
}

/// Removes every route of `table` (one family).
async fn flush(h: &Handle, v6: bool, table: u32) -> Result<usize, NetError> {
    let ours = in_table(routes(h, v6).await?, table);
    let n = ours.len();
    for m in ours {
        h.route()
            .del(m)
            .execute()
            .await
            .map_err(failed("removing a route of the advmss table"))?;
    }
    Ok(n)
}

/// Fills `table` with the main table's routes of one family, with `advmss mss`.
async fn fill(h: &Handle, v6: bool, table: u32, mss: u32) -> Result<usize, NetError> {
    let copies = advmss_copies(&routes(h, v6).await?, table, mss);
    let n = copies.len();
    for m in copies {
        h.route()
            .add(m)
            .execute()
            .await
            .map_err(failed("adding a route to the advmss table"))?;
    }
    Ok(n)
}

async fn add_rule(h: &Handle, vip: IpAddr, table: u32, priority: u32) -> Result<(), NetError> {
    let req = h
        .rule()
        .add()
        .table_id(table)
        .priority(priority)
        .action(netlink_packet_route::rule::RuleAction::ToTable);
    match vip {
        IpAddr::V4(a) => req.v4().source_prefix(a, 32).execute().await,
        IpAddr::V6(a) => req.v6().source_prefix(a, 128).execute().await,
    }
    .map_err(failed("adding the VIP's policy rule"))
}

/// Is anything (not recorded as ours) using the table or the rule priority? `up` refuses then.
pub fn foreign_use(net: &BlockingNet) -> Result<Option<String>, NetError> {
    net.with_handle(|h| async move {
        for v6 in [false, true] {
            if !in_table(routes(&h, v6).await?, ADVMSS_TABLE).is_empty() {
                return Ok(Some(format!(
                    "routing table {ADVMSS_TABLE} already has routes"
                )));
            }
            for r in rules(&h, v6).await? {
                if is_vip_rule(&r, ADVMSS_TABLE, RULE_PRIORITY) {
                    return Ok(Some(format!("a rule at priority {RULE_PRIORITY} exists")));
                }
            }
        }
        Ok(None)
    })
}

/// Installs (or refreshes) the rules and the table; returns one line per change.
pub fn install(net: &BlockingNet, st: &AdvmssState) -> Result<Vec<String>, NetError> {
    net.with_handle(|h| async move {
        let mut changes = Vec::new();
        for v6 in [false, true] {
            let vips: Vec<IpAddr> = st
                .vips
                .iter()
                .copied()
                .filter(|v| v.is_ipv6() == v6)
                .collect();
            if vips.is_empty() {
                continue;
            }
            let mss = if v6 { st.mss_v6 } else { st.mss_v4 };
            flush(&h, v6, st.table).await?;
            let n = fill(&h, v6, st.table, mss).await?;
            changes.push(format!(
                "table {}: {n} route(s) of main copied with advmss {mss}",
                st.table
            ));
            let existing: Vec<IpAddr> = rules(&h, v6)
                .await?
                .iter()
                .filter(|r| is_vip_rule(r, st.table, st.priority))
                .filter_map(rule_source)
                .collect();
            for vip in vips.into_iter().filter(|v| !existing.contains(v)) {
                add_rule(&h, vip, st.table, st.priority).await?;
                changes.push(format!(
                    "rule: from {vip} lookup {} (priority {})",
                    st.table, st.priority
                ));
            }
        }
        Ok(changes)
    })
}

/// Removes the rules and the table's routes.
pub fn remove(net: &BlockingNet, st: &AdvmssState) -> Result<Vec<String>, NetError> {
    net.with_handle(|h| async move {
        let mut changes = Vec::new();
        for v6 in [false, true] {
            for r in rules(&h, v6).await? {
                if is_vip_rule(&r, st.table, st.priority) {
                    let src = rule_source(&r);
                    h.rule()
                        .del(r)
                        .execute()
                        .await
                        .map_err(failed("removing the VIP's policy rule"))?;
                    if let Some(s) = src {
                        changes.push(format!("removed rule from {s} lookup {}", st.table));
                    }
                }
            }
            let n = flush(&h, v6, st.table).await?;
            if n > 0 {
                changes.push(format!("removed {n} route(s) of table {}", st.table));
            }
        }
        Ok(changes)
    })
}

/// One finding of [`check`].
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct AdvmssCheck {
    pub what: String,
    pub ok: bool,
}

/// Each VIP's rule present, and the table a current copy of main with the recorded advmss.
pub fn check(net: &BlockingNet, st: &AdvmssState) -> Result<Vec<AdvmssCheck>, NetError> {
    net.with_handle(|h| async move {
        let mut out = Vec::new();
        for v6 in [false, true] {
            let vips: Vec<IpAddr> = st.vips.iter().copied().filter(|v| v.is_ipv6() == v6).collect();
            if vips.is_empty() {
                continue;
            }
            let rules = rules(&h, v6).await?;
            for vip in &vips {
                let ok = rules
                    .iter()
                    .any(|r| is_vip_rule(r, st.table, st.priority) && rule_source(r) == Some(*vip));
                out.push(AdvmssCheck {
                    what: format!("rule from {vip} lookup {}", st.table),
                    ok,
                });
            }
            let mss = if v6 { st.mss_v6 } else { st.mss_v4 };
            let all = routes(&h, v6).await?;
            let want: Vec<_> = advmss_copies(&all, st.table, mss)
                .iter()
                .map(route_identity)
                .collect();
            let have = in_table(all, st.table);
            let same = have.len() == want.len()
                && have.iter().all(|m| {
                    advmss_of(m) == Some(mss) && want.contains(&route_identity(m))
                });
            out.push(AdvmssCheck {
                what: format!(
                    "table {}: main's routes with advmss {mss} ({} of {}; after a route change run `up` again)",
                    st.table,
                    have.len(),
                    want.len()
                ),
                ok: same,
            });
        }
        Ok(out)
    })
}
