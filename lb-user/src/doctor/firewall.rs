//! Would the host firewall drop VRRP adverts? A small evaluator over `nft -j list ruleset` and
//! `iptables-save`/`ip6tables-save` output: both are translated to one rule model, then a VRRP
//! packet ([`Probe`]) is walked through every input base chain.
//!
//! Matches it understands: address family, IP protocol / l4proto, source and destination
//! address (prefixes, sets), input interface, conntrack state (a VRRP advert is always `new`:
//! nothing ever answers it), packet type and address type `multicast`. Anything else makes the
//! rule a *maybe* match, reported as a warning rather than an error. Jumps into user chains are
//! followed.
//!
//! Why one file of this size: the two input formats end in one rule model and one evaluator,
//! which only make sense together; a tenth of it is the tests with captured rulesets.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};

use serde_json::Value;

use crate::config::IpPrefix;

/// VRRP's IP protocol number.
pub const VRRP_PROTO: u8 = 112;
/// VRRP multicast groups.
pub const VRRP_GROUP_V4: &str = "224.0.0.18";
pub const VRRP_GROUP_V6: &str = "ff02::12";

/// A VRRP advert as it arrives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Probe {
    pub saddr: Option<IpAddr>,
    pub daddr: IpAddr,
    pub iface: Option<String>,
}

impl Probe {
    pub fn multicast_v4(iface: Option<String>) -> Probe {
        Probe {
            saddr: None,
            daddr: VRRP_GROUP_V4.parse().expect("constant"),
            iface,
        }
    }
    pub fn multicast_v6(iface: Option<String>) -> Probe {
        Probe {
            saddr: None,
            daddr: VRRP_GROUP_V6.parse().expect("constant"),
            iface,
        }
    }
    fn v6(&self) -> bool {
        self.daddr.is_ipv6()
    }
    /// Human description.
    pub fn describe(&self) -> String {
        let mut s = format!("VRRP (protocol 112) to {}", self.daddr);
        if let Some(a) = self.saddr {
            s += &format!(" from {a}");
        }
        if let Some(i) = &self.iface {
            s += &format!(" on {i}");
        }
        s
    }
}

/// Three-valued match result.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum M {
    Yes,
    No,
    Maybe,
}

impl M {
    fn not(self) -> M {
        match self {
            M::Yes => M::No,
            M::No => M::Yes,
            M::Maybe => M::Maybe,
        }
    }
    fn of(b: bool) -> M {
        if b {
            M::Yes
        } else {
            M::No
        }
    }
}

/// A prefix as iptables-save and nft print it: `a.b.c.d`, `a.b.c.d/len`, `a.b.c.d/m.m.m.m`
/// (dotted mask) or an IPv6 address with an optional `/len`.
fn parse_prefix(s: &str) -> Option<IpPrefix> {
    if let Some((a, mask)) = s.split_once('/') {
        if let Ok(m) = mask.parse::<Ipv4Addr>() {
            let addr = IpAddr::V4(a.parse().ok()?);
            return Some(IpPrefix {
                addr,
                prefix_len: u32::from(m).count_ones() as u8,
            });
        }
    }
    s.parse().ok()
}

/// A match condition of the common rule model.
#[derive(Clone, Debug, PartialEq)]
pub enum Cond {
    /// Only IPv4 (`false`) or IPv6 (`true`) packets.
    Family(bool),
    /// IP protocol names/numbers.
    Proto(Vec<String>, bool),
    Saddr(Vec<IpPrefix>, bool),
    Daddr(Vec<IpPrefix>, bool),
    /// Input interface names (`+`/`*` suffix = prefix match).
    Iif(Vec<String>, bool),
    /// Conntrack states (lowercase).
    CtState(Vec<String>, bool),
    /// `multicast`, `broadcast`, `host`/`unicast`.
    PktType(String, bool),
    /// Something not modelled.
    Unknown(String),
}

impl Cond {
    fn eval(&self, p: &Probe) -> M {
        match self {
            Cond::Family(v6) => M::of(*v6 == p.v6()),
            Cond::Proto(set, neg) => {
                let hit = set.iter().any(|s| {
                    let s = s.to_ascii_lowercase();
                    s == "vrrp" || s == "112" || s == "all" || s == "0"
                });
                neg_if(M::of(hit), *neg)
            }
            Cond::Saddr(prefixes, neg) => match p.saddr {
                Some(a) => neg_if(M::of(prefixes.iter().any(|n| n.contains(a))), *neg),
                None => M::Maybe,
            },
            Cond::Daddr(prefixes, neg) => {
                neg_if(M::of(prefixes.iter().any(|n| n.contains(p.daddr))), *neg)
            }
            Cond::Iif(names, neg) => match &p.iface {
                Some(i) => {
                    let hit = names.iter().any(|n| match n.strip_suffix(['+', '*']) {
                        Some(pre) => i.starts_with(pre),
                        None => n == i,
                    });
                    neg_if(M::of(hit), *neg)
                }
                None => M::Maybe,
            },
            Cond::CtState(states, neg) => neg_if(M::of(states.iter().any(|s| s == "new")), *neg),
            Cond::PktType(t, neg) => {
                let mc = p.daddr.is_multicast();
                let r = match t.as_str() {
                    "multicast" => M::of(mc),
                    "host" | "unicast" => M::of(!mc),
                    "broadcast" => M::No,
                    _ => M::Maybe,
                };
                neg_if(r, *neg)
            }
            Cond::Unknown(_) => M::Maybe,
        }
    }
}

fn neg_if(m: M, neg: bool) -> M {
    if neg {
        m.not()
    } else {
        m
    }
}

/// What a rule does when it matches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Accept,
    Drop,
    Jump(String),
    Goto(String),
    Return,
    /// Counter, log, ...: evaluation continues.
    Continue,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Rule {
    /// Where to find it (`iptables -t filter -A INPUT -d 224.0.0.0/8 -j DROP`, or nft handle).
    pub desc: String,
    pub conds: Vec<Cond>,
    pub verdict: Verdict,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Chain {
    pub rules: Vec<Rule>,
    /// `Some(drop?)` for a base chain hooked on input/prerouting.
    pub policy_drop: Option<bool>,
}

/// One table (nft) or one `*filter` section (iptables): chains by name.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Table {
    pub desc: String,
    /// Families the table sees: (v4, v6).
    pub families: (bool, bool),
    pub chains: HashMap<String, Chain>,
    /// Base chains in evaluation order.
    pub base: Vec<String>,
    /// How to add an accept rule in this table (for the fix text).
    pub fix_hint: String,
}

/// The fate of a probe in the whole ruleset.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fate {
    Accepted,
    /// Certainly dropped, by this rule or policy.
    Dropped(String, String),
    /// Dropped unless a condition we cannot evaluate says otherwise.
    MaybeDropped(String, String),
}

#[derive(Default)]
struct Ctx {
    maybe_accepted: bool,
    maybe_dropped: Option<String>,
}

enum Walk {
    Accepted,
    Dropped(String),
    Fallthrough,
}

fn walk(t: &Table, name: &str, p: &Probe, ctx: &mut Ctx, depth: u32) -> Walk {
    let Some(chain) = t.chains.get(name) else {
        return Walk::Fallthrough;
    };
    if depth > 16 {
        return Walk::Fallthrough;
    }
    for r in &chain.rules {
        let mut m = M::Yes;
        for c in &r.conds {
            match c.eval(p) {
                M::No => {
                    m = M::No;
                    break;
                }
                M::Maybe => m = M::Maybe,
                M::Yes => {}
            }
        }
        if m == M::No {
            continue;
        }
        let sure = m == M::Yes;
        match &r.verdict {
            Verdict::Continue => {}
            Verdict::Accept if sure => return Walk::Accepted,
            Verdict::Accept => ctx.maybe_accepted = true,
            Verdict::Drop if sure => return Walk::Dropped(r.desc.clone()),
            Verdict::Drop => {
                ctx.maybe_dropped.get_or_insert(r.desc.clone());
            }
            Verdict::Return if sure => return Walk::Fallthrough,
            Verdict::Return => {}
            Verdict::Jump(target) | Verdict::Goto(target) => {
                let goto = matches!(r.verdict, Verdict::Goto(_));
                match walk(t, target, p, ctx, depth + 1) {
                    Walk::Fallthrough if goto && sure => return Walk::Fallthrough,
                    Walk::Fallthrough => {}
                    w if sure => return w,
                    Walk::Accepted => ctx.maybe_accepted = true,
                    Walk::Dropped(d) => {
                        ctx.maybe_dropped.get_or_insert(d);
                    }
                }
            }
        }
    }
    match chain.policy_drop {
        Some(true) => Walk::Dropped(format!("{}: chain {name} policy drop", t.desc)),
        _ => Walk::Fallthrough,
    }
}

/// Walks `p` through every base chain of every table that sees its family.
pub fn fate(tables: &[Table], p: &Probe) -> Fate {
    let mut maybe: Option<(String, String)> = None;
    for t in tables {
        if !(if p.v6() { t.families.1 } else { t.families.0 }) {
            continue;
        }
        for b in &t.base {
            let mut ctx = Ctx::default();
            match walk(t, b, p, &mut ctx, 0) {
                Walk::Dropped(why) if ctx.maybe_accepted => {
                    maybe.get_or_insert((why, t.fix_hint.clone()));
                }
                Walk::Dropped(why) => return Fate::Dropped(why, t.fix_hint.clone()),
                Walk::Accepted | Walk::Fallthrough => {
                    if let Some(why) = ctx.maybe_dropped {
                        maybe.get_or_insert((why, t.fix_hint.clone()));
                    }
                }
            }
        }
    }
    match maybe {
        Some((why, fix)) => Fate::MaybeDropped(why, fix),
        None => Fate::Accepted,
    }
}

// ---------------------------------------------------------------------------------------------
// nftables (`nft -j list ruleset`)

/// Tables of iptables-nft (analysed through `iptables-save` instead when that is nft-based).
const XT_TABLES: [&str; 5] = ["filter", "mangle", "raw", "nat", "security"];

/// Parses `nft -j list ruleset`. With `skip_xt_tables`, the ip/ip6 tables named like
/// iptables' are left out (iptables-nft owns them and they are read through `iptables-save`).
pub fn parse_nft(json: &str, skip_xt_tables: bool) -> Result<Vec<Table>, String> {
    let v: Value = serde_json::from_str(json).map_err(|e| format!("nft -j output: {e}"))?;
    let items = v["nftables"]
        .as_array()
        .ok_or("nft -j output: no `nftables` array")?;
    let mut tables: Vec<(String, String, Table)> = Vec::new();
    let find = |tables: &mut Vec<(String, String, Table)>, fam: &str, name: &str| -> usize {
        if let Some(i) = tables.iter().position(|t| t.0 == fam && t.1 == name) {
            return i;
        }
        let families = match fam {
            "ip" => (true, false),
            "ip6" => (false, true),
            "inet" => (true, true),
            _ => (false, false),
        };
        tables.push((
            fam.into(),
            name.into(),
            Table {
                desc: format!("nft table {fam} {name}"),
                families,
                fix_hint: format!("nft insert rule {fam} {name} CHAIN"),
                ..Default::default()
            },
        ));
        tables.len() - 1
    };
    for it in items {
        if let Some(c) = it.get("chain") {
            let (fam, tname, cname) = (
                str_of(&c["family"]),
                str_of(&c["table"]),
                str_of(&c["name"]),
            );
            let i = find(&mut tables, &fam, &tname);
            let t = &mut tables[i].2;
            let hook = str_of(&c["hook"]);
            let ch = t.chains.entry(cname.clone()).or_default();
            if c["type"].as_str() == Some("filter") && (hook == "input" || hook == "prerouting") {
                ch.policy_drop = Some(c["policy"].as_str() == Some("drop"));
                t.base.push(cname.clone());
                t.fix_hint = format!("nft insert rule {fam} {tname} {cname}");
            }
        } else if let Some(r) = it.get("rule") {
            let (fam, tname, cname) = (
                str_of(&r["family"]),
                str_of(&r["table"]),
                str_of(&r["chain"]),
            );
            let i = find(&mut tables, &fam, &tname);
            let rule = nft_rule(r, &fam, &tname, &cname);
            tables[i]
                .2
                .chains
                .entry(cname)
                .or_default()
                .rules
                .push(rule);
        }
    }
    Ok(tables
        .into_iter()
        .filter(|(fam, name, _)| {
            !(skip_xt_tables && (fam == "ip" || fam == "ip6") && XT_TABLES.contains(&name.as_str()))
        })
        .map(|t| t.2)
        .collect())
}

fn str_of(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => String::new(),
    }
}

fn nft_rule(r: &Value, fam: &str, table: &str, chain: &str) -> Rule {
    let mut conds = Vec::new();
    let mut verdict = Verdict::Continue;
    for e in r["expr"].as_array().into_iter().flatten() {
        let Some((k, body)) = e.as_object().and_then(|o| o.iter().next()) else {
            continue;
        };
        match k.as_str() {
            "match" => conds.extend(nft_match(body)),
            "accept" => verdict = Verdict::Accept,
            "drop" | "reject" => verdict = Verdict::Drop,
            "return" => verdict = Verdict::Return,
            "jump" => verdict = Verdict::Jump(str_of(&body["target"])),
            "goto" => verdict = Verdict::Goto(str_of(&body["target"])),
            "counter" | "log" | "limit" | "comment" => {}
            other => conds.push(Cond::Unknown(other.into())),
        }
    }
    let comment = r["comment"]
        .as_str()
        .map(|c| format!(" ({c})"))
        .unwrap_or_default();
    Rule {
        desc: format!(
            "nft rule in {fam} {table} {chain}, handle {}{comment} (see `nft -a list chain {fam} {table} {chain}`)",
            str_of(&r["handle"])
        ),
        conds,
        verdict,
    }
}

/// The right-hand side of an nft match as a list of strings.
fn nft_values(v: &Value) -> Vec<String> {
    match v {
        Value::String(_) | Value::Number(_) => vec![str_of(v)],
        Value::Array(a) => a.iter().flat_map(nft_values).collect(),
        Value::Object(o) => {
            if let Some(s) = o.get("set") {
                nft_values(s)
            } else if let Some(p) = o.get("prefix") {
                vec![format!("{}/{}", str_of(&p["addr"]), str_of(&p["len"]))]
            } else if let Some(r) = o.get("range") {
                // Ranges of addresses: approximated by their first address's /32 or /128
                // neighbourhood would be wrong; keep both ends, matched as a range below.
                vec![format!("{}-{}", str_of(&r[0]), str_of(&r[1]))]
            } else {
                vec![]
            }
        }
        _ => vec![],
    }
}

fn prefixes(vals: &[String]) -> Option<Vec<IpPrefix>> {
    vals.iter()
        .map(|s| {
            if let Some((a, b)) = s.split_once('-') {
                // An address range: only exact when both ends are the same address.
                let (a, b): (IpAddr, IpAddr) = (a.parse().ok()?, b.parse().ok()?);
                return (a == b).then(|| IpPrefix::host(a));
            }
            parse_prefix(s)
        })
        .collect()
}

fn nft_match(m: &Value) -> Vec<Cond> {
    let c = |c: Cond| vec![c];
    let op = m["op"].as_str().unwrap_or("==");
    let neg = match op {
        "==" | "in" => false,
        "!=" => true,
        _ => return c(Cond::Unknown(format!("match op {op}"))),
    };
    let left = &m["left"];
    let vals = nft_values(&m["right"]);
    if let Some(p) = left.get("payload") {
        let proto = str_of(&p["protocol"]);
        let field = str_of(&p["field"]);
        // `ip ...` matches imply IPv4 (even negated), `ip6 ...` IPv6.
        let fam = Cond::Family(proto == "ip6");
        return match (proto.as_str(), field.as_str()) {
            ("ip", "protocol") | ("ip6", "nexthdr") => vec![fam, Cond::Proto(vals, neg)],
            ("ip" | "ip6", "saddr") => match prefixes(&vals) {
                Some(n) => vec![fam, Cond::Saddr(n, neg)],
                None => vec![fam, Cond::Unknown(format!("{proto} saddr"))],
            },
            ("ip" | "ip6", "daddr") => match prefixes(&vals) {
                Some(n) => vec![fam, Cond::Daddr(n, neg)],
                None => vec![fam, Cond::Unknown(format!("{proto} daddr"))],
            },
            // A transport header match never matches VRRP.
            ("tcp" | "udp" | "sctp" | "udplite" | "dccp" | "icmp" | "icmpv6" | "th", _) => {
                c(Cond::Proto(vec![proto], false))
            }
            _ => c(Cond::Unknown(format!("{proto} {field}"))),
        };
    }
    if let Some(meta) = left.get("meta") {
        let key = str_of(&meta["key"]);
        return c(match key.as_str() {
            "l4proto" => Cond::Proto(vals, neg),
            "nfproto" => match vals.first().map(String::as_str) {
                Some("ipv4") => Cond::Family(neg),
                Some("ipv6") => Cond::Family(!neg),
                _ => Cond::Unknown("meta nfproto".into()),
            },
            "iifname" | "iif" => Cond::Iif(vals, neg),
            "pkttype" => match vals.as_slice() {
                [t] => Cond::PktType(t.clone(), neg),
                _ => Cond::Unknown("meta pkttype set".into()),
            },
            _ => Cond::Unknown(format!("meta {key}")),
        });
    }
    if let Some(ct) = left.get("ct") {
        if str_of(&ct["key"]) == "state" {
            return c(Cond::CtState(
                vals.iter().map(|s| s.to_ascii_lowercase()).collect(),
                neg,
            ));
        }
    }
    if left.get("fib").is_some() && vals == ["multicast"] {
        return c(Cond::PktType("multicast".into(), neg));
    }
    c(Cond::Unknown(left.to_string()))
}

// ---------------------------------------------------------------------------------------------
// iptables (`iptables-save` / `ip6tables-save`)

/// Parses the `*filter` table of `iptables-save` (`v6`: `ip6tables-save`) output.
pub fn parse_iptables_save(text: &str, v6: bool) -> Vec<Table> {
    let cmd = if v6 { "ip6tables" } else { "iptables" };
    let mut out = Vec::new();
    let mut cur: Option<Table> = None;
    for line in text.lines() {
        let line = line.trim();
        if let Some(name) = line.strip_prefix('*') {
            cur = (name == "filter").then(|| Table {
                desc: format!("{cmd} table filter"),
                families: (!v6, v6),
                fix_hint: format!("{cmd} -I INPUT 1"),
                ..Default::default()
            });
        } else if line == "COMMIT" {
            out.extend(cur.take());
        } else if let Some(t) = cur.as_mut() {
            if let Some(decl) = line.strip_prefix(':') {
                let mut w = decl.split_whitespace();
                let name = w.next().unwrap_or_default().to_string();
                let policy = w.next().unwrap_or("-");
                let ch = t.chains.entry(name.clone()).or_default();
                if name == "INPUT" {
                    ch.policy_drop = Some(policy == "DROP");
                    t.base.push(name);
                }
            } else if let Some(rest) = line.strip_prefix("-A ") {
                let words = crate::import::keepalived::shell_split(rest).unwrap_or_default();
                if let Some((chain, args)) = words.split_first() {
                    let rule = iptables_rule(cmd, chain, args, line);
                    t.chains.entry(chain.clone()).or_default().rules.push(rule);
                }
            }
        }
    }
    out
}

fn iptables_rule(cmd: &str, chain: &str, args: &[String], line: &str) -> Rule {
    let _ = chain;
    let mut conds = Vec::new();
    let mut verdict = Verdict::Continue;
    let mut i = 0;
    let mut neg = false;
    let next_vals = |i: &mut usize| -> Vec<String> {
        let mut v = Vec::new();
        while *i + 1 < args.len() && !args[*i + 1].starts_with('-') && args[*i + 1] != "!" {
            *i += 1;
            v.push(args[*i].clone());
        }
        v
    };
    while i < args.len() {
        let a = args[i].as_str();
        if a == "!" {
            neg = true;
            i += 1;
            continue;
        }
        let vals = next_vals(&mut i);
        let first = vals.first().cloned().unwrap_or_default();
        let list = |s: &str| s.split(',').map(str::to_string).collect::<Vec<_>>();
        match a {
            "-p" | "--protocol" => conds.push(Cond::Proto(vec![first], neg)),
            "-s" | "--source" | "-d" | "--destination" => {
                let n: Option<Vec<IpPrefix>> =
                    list(&first).iter().map(|s| parse_prefix(s)).collect();
                conds.push(match (n, a.starts_with("-s") || a == "--source") {
                    (Some(n), true) => Cond::Saddr(n, neg),
                    (Some(n), false) => Cond::Daddr(n, neg),
                    (None, _) => Cond::Unknown(format!("{a} {first}")),
                });
            }
            "-i" | "--in-interface" => conds.push(Cond::Iif(vec![first], neg)),
            "--state" | "--ctstate" => {
                conds.push(Cond::CtState(list(&first.to_ascii_lowercase()), neg))
            }
            "--pkt-type" => conds.push(Cond::PktType(first.to_ascii_lowercase(), neg)),
            "--dst-type" if first.eq_ignore_ascii_case("multicast") => {
                conds.push(Cond::PktType("multicast".into(), neg))
            }
            "-m" | "--match" | "--comment" => {}
            "-j" | "--jump" => {
                verdict = match first.as_str() {
                    "ACCEPT" => Verdict::Accept,
                    "DROP" | "REJECT" => Verdict::Drop,
                    "RETURN" => Verdict::Return,
                    "LOG" | "NFLOG" | "ULOG" | "MARK" | "CONNMARK" | "TRACE" => Verdict::Continue,
                    other => Verdict::Jump(other.into()),
                }
            }
            "-g" | "--goto" => verdict = Verdict::Goto(first),
            // Target options (after -j), e.g. --reject-with, --log-prefix.
            _ if matches!(verdict, Verdict::Drop | Verdict::Continue)
                && (a.starts_with("--reject") || a.starts_with("--log")) => {}
            other => conds.push(Cond::Unknown(other.to_string())),
        }
        neg = false;
        i += 1;
    }
    Rule {
        desc: format!("{cmd} rule `{line}`"),
        conds,
        verdict,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4() -> Probe {
        Probe::multicast_v4(Some("eth0".into()))
    }

    #[test]
    fn prefixes_as_the_tools_print_them() {
        let p = |s: &str| parse_prefix(s).map(|p| p.to_string());
        assert_eq!(p("224.0.0.0/8").as_deref(), Some("224.0.0.0/8"));
        assert_eq!(p("224.0.0.0/255.0.0.0").as_deref(), Some("224.0.0.0/8"));
        assert_eq!(p("224.0.0.18").as_deref(), Some("224.0.0.18/32"));
        assert_eq!(p("ff02::/16").as_deref(), Some("ff02::/16"));
        assert_eq!(p("224.0.0.0/33"), None);
        assert_eq!(p("eth0"), None);
    }

    #[test]
    fn iptables_field_report_rules() {
        // The field report's first problem: a drop of 224.0.0.0/8 before any VRRP accept.
        let save = "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n\
            -A INPUT -m state --state RELATED,ESTABLISHED -j ACCEPT\n\
            -A INPUT -d 224.0.0.0/8 -j DROP\n-A INPUT -p vrrp -j ACCEPT\nCOMMIT\n";
        let t = parse_iptables_save(save, false);
        assert!(matches!(fate(&t, &v4()), Fate::Dropped(w, _) if w.contains("224.0.0.0/8")));
        // Default drop with only NEW on port 80 accepted: dropped by policy.
        let save = "*filter\n:INPUT DROP [0:0]\n\
            -A INPUT -p tcp -m state --state NEW -m tcp --dport 80 -j ACCEPT\nCOMMIT\n";
        let t = parse_iptables_save(save, false);
        assert!(matches!(fate(&t, &v4()), Fate::Dropped(w, _) if w.contains("policy")));
        // The fixed firewall: VRRP accepted first.
        let save = "*filter\n:INPUT DROP [0:0]\n:vrrp - [0:0]\n-A INPUT -j vrrp\n\
            -A INPUT -d 224.0.0.0/8 -j DROP\n\
            -A vrrp -p 112 -d 224.0.0.18/32 -m comment --comment \"keep alive\" -j ACCEPT\nCOMMIT\n";
        assert_eq!(
            fate(&parse_iptables_save(save, false), &v4()),
            Fate::Accepted
        );
        // An unknown match in a drop rule: maybe.
        let save = "*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -m mark --mark 0x1 -j DROP\nCOMMIT\n";
        assert!(matches!(
            fate(&parse_iptables_save(save, false), &v4()),
            Fate::MaybeDropped(..)
        ));
        // v4 rules do not touch v6.
        let save = "*filter\n:INPUT DROP [0:0]\nCOMMIT\n";
        let t = parse_iptables_save(save, false);
        assert_eq!(fate(&t, &Probe::multicast_v6(None)), Fate::Accepted);
    }

    #[test]
    fn nft_rules() {
        let json = r#"{"nftables":[{"metainfo":{"version":"1.0.6"}},
          {"table":{"family":"inet","name":"fw","handle":1}},
          {"chain":{"family":"inet","table":"fw","name":"input","handle":1,"type":"filter","hook":"input","prio":0,"policy":"accept"}},
          {"rule":{"family":"inet","table":"fw","chain":"input","handle":3,"expr":[
             {"match":{"op":"==","left":{"payload":{"protocol":"tcp","field":"dport"}},"right":80}},{"accept":null}]}},
          {"rule":{"family":"inet","table":"fw","chain":"input","handle":4,"expr":[
             {"match":{"op":"==","left":{"payload":{"protocol":"ip","field":"daddr"}},"right":{"prefix":{"addr":"224.0.0.0","len":8}}}},
             {"counter":{"packets":0,"bytes":0}},{"drop":null}]}}]}"#;
        let t = parse_nft(json, false).unwrap();
        assert!(matches!(fate(&t, &v4()), Fate::Dropped(w, _) if w.contains("handle 4")));
        // The ip daddr match does not apply to IPv6.
        assert_eq!(fate(&t, &Probe::multicast_v6(None)), Fate::Accepted);
        // Policy drop with an accept of l4proto vrrp: accepted.
        let json = r#"{"nftables":[
          {"chain":{"family":"inet","table":"fw","name":"input","type":"filter","hook":"input","prio":0,"policy":"drop"}},
          {"rule":{"family":"inet","table":"fw","chain":"input","handle":2,"expr":[
             {"match":{"op":"in","left":{"ct":{"key":"state"}},"right":{"set":["established","related"]}}},{"accept":null}]}},
          {"rule":{"family":"inet","table":"fw","chain":"input","handle":3,"expr":[
             {"match":{"op":"==","left":{"meta":{"key":"l4proto"}},"right":"vrrp"}},{"accept":null}]}}]}"#;
        let t = parse_nft(json, false).unwrap();
        assert_eq!(fate(&t, &v4()), Fate::Accepted);
        assert_eq!(fate(&t, &Probe::multicast_v6(None)), Fate::Accepted);
        // Without the vrrp accept: the ct state rule does not help (adverts are always new).
        let json = json.replace("\"vrrp\"", "\"tcp\"");
        let t = parse_nft(&json, false).unwrap();
        assert!(matches!(fate(&t, &v4()), Fate::Dropped(w, _) if w.contains("policy")));
    }
}
