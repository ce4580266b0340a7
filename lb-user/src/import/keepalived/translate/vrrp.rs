//! `vrrp_instance` and `vrrp_sync_group`.

use std::collections::HashSet;
use std::net::IpAddr;

use serde_spanned::Spanned;

use crate::config::schema::{AuthType, Authentication, VrrpInstance, VrrpState, VrrpSyncGroup};
use crate::config::types::IpPrefix;

use super::track::RefKind;
use super::{u, Node, Translator};

/// A vrrp_instance being read: the settings whose absence is decided at the end.
struct Draft {
    vi: VrrpInstance,
    state: Option<VrrpState>,
    interface: Option<String>,
    vrid: Option<u32>,
}

/// keepalived's address-owner priority.
const PRIO_OWNER: u8 = 255;

fn new_instance(name: &str, version: u8) -> VrrpInstance {
    VrrpInstance {
        name: u(name.to_string()),
        state: u(VrrpState::Backup),
        interface: u(String::new()),
        virtual_router_id: u(0),
        priority: u(100),
        advert_int: u(1.0),
        version: u(version),
        authentication: None,
        virtual_ipaddress: u(vec![]),
        unicast_src_ip: None,
        unicast_peer: vec![],
        nopreempt: u(false),
        preempt_delay: u(0.0),
        garp_master_delay: u(5.0),
        garp_master_repeat: 5,
        track_interface: vec![],
        track_service: vec![],
        track_service_weight: None,
        notify_master: None,
        notify_backup: None,
        notify_fault: None,
        notify_stop: None,
        notify: None,
        virtual_ipaddress_excluded: vec![],
        garp_master_refresh: None,
        garp_master_refresh_repeat: None,
        garp_interval: None,
        track_script: vec![],
        track_process: vec![],
        track_file: vec![],
    }
}

/// Linux interface names (what xlb's validation accepts).
pub(super) fn is_ifname(n: &str) -> bool {
    !(n.is_empty()
        || n.len() > 15
        || n == "."
        || n == ".."
        || n.chars().any(|c| c == '/' || c == ':' || c.is_whitespace()))
}

pub(super) fn is_unicast(ip: IpAddr) -> bool {
    let broadcast = matches!(ip, IpAddr::V4(v4) if v4.is_broadcast());
    !(ip.is_unspecified() || ip.is_multicast() || broadcast)
}

impl Translator {
    pub(super) fn vrrp_instance(&mut self, n: &Node) {
        self.summary.vrrp_instances_seen += 1;
        let Some(name) = n.arg(1).filter(|a| !a.trim().is_empty()).map(String::from) else {
            self.note(n, "vrrp_instance without a name: not imported");
            return;
        };
        let ctx = format!("vrrp_instance {name}");
        let mut vi = new_instance(&name, self.default_version.unwrap_or(2));
        self.instance_defaults(&mut vi);
        let mut d = Draft {
            vi,
            state: None,
            interface: None,
            vrid: None,
        };
        for c in n.children() {
            self.instance_setting(c, &mut d, &ctx);
        }
        let Draft {
            mut vi,
            state,
            interface,
            vrid,
        } = d;
        match state {
            Some(s) => vi.state = u(s),
            None => self.note(
                n,
                format!("{ctx}: no `state`: BACKUP assumed (keepalived's default)"),
            ),
        }
        let Some(vrid) = vrid else {
            self.note(
                n,
                format!("{ctx}: no valid virtual_router_id: keepalived drops the instance; not imported"),
            );
            return;
        };
        vi.virtual_router_id = u(vrid as u8);
        match interface {
            Some(i) if is_ifname(&i) => vi.interface = u(i),
            Some(i) => {
                self.note(
                    n,
                    format!("{ctx}: interface `{i}` is not an interface name; not imported"),
                );
                return;
            }
            None => {
                self.note(n, format!("{ctx}: no `interface`: set it (eth0 written)"));
                vi.interface = u("eth0".into());
            }
        }
        self.fix_preemption(n, &ctx, &mut vi);
        self.fix_version(n, &ctx, &mut vi);
        self.summary.vrrp_instances_imported += 1;
        self.vrrp.push((n.loc.clone(), vi));
    }

    /// One statement of a vrrp_instance block.
    fn instance_setting(&mut self, c: &Node, d: &mut Draft, ctx: &str) {
        match c.key() {
            "state" => match c.arg(1) {
                Some("MASTER") => d.state = Some(VrrpState::Master),
                Some("BACKUP") => d.state = Some(VrrpState::Backup),
                _ => self.note(
                    c,
                    "state: keepalived accepts MASTER or BACKUP (upper case); BACKUP assumed",
                ),
            },
            "interface" => d.interface = c.arg(1).map(String::from),
            "virtual_router_id" => {
                d.vrid = self.bounded::<u32>(c, 1, "virtual_router_id", 1..=255, 1..=255)
            }
            "priority" => {
                if let Some(p) = self.bounded::<u32>(c, 1, "priority", 1..=255, 1..=255) {
                    d.vi.priority = u(p as u8);
                }
            }
            "advert_int" => {
                if let Some(a) = self.bounded::<f64>(c, 1, "advert_int", 0.01..=255.0, 0.01..=255.0)
                {
                    d.vi.advert_int = u(a);
                }
            }
            "version" => {
                if let Some(v) = self.bounded::<u8>(c, 1, "version", 2..=3, 2..=3) {
                    d.vi.version = u(v);
                }
            }
            "authentication" => d.vi.authentication = self.authentication(c),
            "virtual_ipaddress" => {
                let vips = c
                    .children()
                    .iter()
                    .filter_map(|a| self.vip(a, &d.interface));
                d.vi.virtual_ipaddress = u(vips.map(u).collect());
            }
            "virtual_ipaddress_excluded" => {
                let vips: Vec<_> = c
                    .children()
                    .iter()
                    .filter_map(|a| self.vip(a, &d.interface))
                    .collect();
                d.vi.virtual_ipaddress_excluded
                    .extend(vips.into_iter().map(u));
            }
            "virtual_routes" | "virtual_rules" => self.note(
                c,
                format!(
                    "{}: not imported (xlb only manages the VIPs of virtual_ipaddress)",
                    c.key()
                ),
            ),
            "unicast_src_ip" => d.vi.unicast_src_ip = self.val::<IpAddr>(c, 1, "address").map(u),
            "unicast_peer" => self.unicast_peers(c, &mut d.vi),
            "nopreempt" => d.vi.nopreempt = u(true),
            "preempt" => d.vi.nopreempt = u(false),
            "preempt_delay" => {
                if let Some(t) =
                    self.bounded::<f64>(c, 1, "preempt_delay", 0.0..=1000.0, 0.0..=1000.0)
                {
                    d.vi.preempt_delay = u(t);
                }
            }
            "garp_master_delay" => {
                if let Some(t) =
                    self.bounded::<f64>(c, 1, "garp_master_delay", 0.0..=1000.0, 0.0..=1000.0)
                {
                    d.vi.garp_master_delay = u(t);
                }
            }
            "garp_master_repeat" => {
                if let Some(r) = self.val::<u32>(c, 1, "garp_master_repeat") {
                    d.vi.garp_master_repeat = r;
                }
            }
            "track_interface" => self.track_interfaces(c, &mut d.vi),
            "track_script" => self.track_refs(c, RefKind::Script, &mut d.vi),
            "track_process" => self.track_refs(c, RefKind::Process, &mut d.vi),
            "track_file" => self.track_refs(c, RefKind::File, &mut d.vi),
            "garp_master_refresh" | "garp_master_refresh_repeat" => {
                self.instance_garp(c, &mut d.vi);
            }
            "notify_master" => d.vi.notify_master = self.command(c, "notify_master"),
            "notify_backup" => d.vi.notify_backup = self.command(c, "notify_backup"),
            "notify_fault" => d.vi.notify_fault = self.command(c, "notify_fault"),
            "notify_stop" => d.vi.notify_stop = self.command(c, "notify_stop"),
            "notify" => d.vi.notify = self.command(c, "notify"),
            _ => self.unknown(c, ctx),
        }
    }

    /// keepalived's own fix-ups (vrrp.c `vrrp_complete_instance`).
    fn fix_preemption(&mut self, n: &Node, ctx: &str, vi: &mut VrrpInstance) {
        if *vi.nopreempt.get_ref() && *vi.priority.get_ref() == PRIO_OWNER {
            self.note(n, format!("{ctx}: nopreempt with priority 255: keepalived clears nopreempt; so does the import"));
            vi.nopreempt = u(false);
        }
        if *vi.state.get_ref() == VrrpState::Master {
            if *vi.nopreempt.get_ref() {
                self.note(
                    n,
                    format!(
                        "{ctx}: nopreempt with state MASTER: keepalived clears nopreempt (\"nopreempt \
                         will not work with initial state MASTER\"), so this director preempts; \
                         imported the same way. For nopreempt, set state BACKUP on both directors"
                    ),
                );
                vi.nopreempt = u(false);
            }
            if *vi.preempt_delay.get_ref() > 0.0 {
                self.note(n, format!("{ctx}: preempt_delay with state MASTER: keepalived clears it; so does the import"));
                vi.preempt_delay = u(0.0);
            }
        }
        if *vi.nopreempt.get_ref() && *vi.preempt_delay.get_ref() > 0.0 {
            self.note(n, format!("{ctx}: preempt_delay with nopreempt: keepalived clears preempt_delay; so does the import"));
            vi.preempt_delay = u(0.0);
        }
    }

    /// IPv6 needs v3; v3 has no authentication; each version's advert_int steps.
    fn fix_version(&mut self, n: &Node, ctx: &str, vi: &mut VrrpInstance) {
        let v6 = vi
            .virtual_ipaddress
            .get_ref()
            .iter()
            .any(|p| p.get_ref().addr.is_ipv6());
        if v6 && *vi.version.get_ref() == 2 {
            self.note(
                n,
                format!("{ctx}: IPv6 VIPs need VRRPv3: version = 3 written"),
            );
            vi.version = u(3);
        }
        if *vi.version.get_ref() == 3 && vi.authentication.take().is_some() {
            self.note(
                n,
                format!("{ctx}: authentication dropped (not part of VRRPv3)"),
            );
        }
        let adv = *vi.advert_int.get_ref();
        let fixed = if *vi.version.get_ref() == 2 {
            adv.round().clamp(1.0, 255.0)
        } else {
            ((adv * 100.0).round() / 100.0).clamp(0.01, 40.95)
        };
        if fixed != adv {
            self.note(
                n,
                format!(
                    "{ctx}: advert_int {adv}: VRRPv{} sends {fixed} s (whole seconds 1..=255 for v2, \
                     0.01..=40.95 for v3); {fixed} written",
                    vi.version.get_ref()
                ),
            );
            vi.advert_int = u(fixed);
        }
    }

    fn unicast_peers(&mut self, c: &Node, vi: &mut VrrpInstance) {
        let mut seen: HashSet<IpAddr> = vi.unicast_peer.iter().map(|p| *p.get_ref()).collect();
        for p in c.children() {
            let Some(a) = self.val::<IpAddr>(p, 0, "peer address") else {
                continue;
            };
            if !is_unicast(a) || !seen.insert(a) {
                self.note(
                    p,
                    format!(
                        "unicast_peer {a}: not a unicast address or listed twice; not imported"
                    ),
                );
                continue;
            }
            vi.unicast_peer.push(u(a));
            if p.words.len() > 1 {
                self.note(
                    p,
                    "unicast_peer options (min_ttl, max_ttl) are not imported",
                );
            }
        }
    }

    fn track_interfaces(&mut self, c: &Node, vi: &mut VrrpInstance) {
        for t in c.children() {
            if !is_ifname(t.key()) {
                self.note(
                    t,
                    format!(
                        "track_interface `{}`: not an interface name; not imported",
                        t.key()
                    ),
                );
                continue;
            }
            vi.track_interface.push(u(t.key().to_string()));
            if t.words.len() > 1 {
                self.note(
                    t,
                    "track_interface weight: not imported (a tracked interface going down always \
                     means FAULT in xlb)",
                );
            }
        }
    }

    fn authentication(&mut self, n: &Node) -> Option<Spanned<Authentication>> {
        // Children are `auth_type X` / `auth_pass Y`, possibly all on one line.
        let words: Vec<String> = n.children().iter().flat_map(|c| c.words.clone()).collect();
        let (mut kind, mut pass) = (None, None);
        for w in words.chunks(2) {
            match (w[0].as_str(), w.get(1)) {
                ("auth_type", Some(t)) => kind = Some(t.to_ascii_uppercase()),
                ("auth_pass", Some(p)) => pass = Some(p.clone()),
                _ => self.note(
                    n,
                    format!("authentication: `{}` not understood", w.join(" ")),
                ),
            }
        }
        match (kind.as_deref(), pass) {
            (Some("PASS"), Some(p)) if !p.is_empty() => {
                let mut p = p;
                if p.len() > 8 {
                    self.note(
                        n,
                        "auth_pass longer than 8 bytes: keepalived uses the first 8; truncated to them",
                    );
                    let mut end = 8;
                    while !p.is_char_boundary(end) {
                        end -= 1;
                    }
                    p.truncate(end);
                }
                Some(u(Authentication {
                    auth_type: AuthType::Pass,
                    auth_pass: u(p),
                }))
            }
            (Some("AH"), _) => {
                self.note(
                    n,
                    "auth_type AH: not supported by xlb; authentication not imported",
                );
                None
            }
            _ => {
                self.note(
                    n,
                    "authentication without auth_type PASS and auth_pass: not imported",
                );
                None
            }
        }
    }

    fn vip(&mut self, n: &Node, iface: &Option<String>) -> Option<IpPrefix> {
        let p = match n.key().parse::<IpPrefix>() {
            Ok(p) if is_unicast(p.addr) && !p.addr.is_loopback() => p,
            Ok(_) => {
                self.note(
                    n,
                    format!(
                        "virtual_ipaddress `{}`: not a unicast address; not imported",
                        n.key()
                    ),
                );
                return None;
            }
            Err(e) => {
                self.note(
                    n,
                    format!("virtual_ipaddress `{}`: {e}; not imported", n.key()),
                );
                return None;
            }
        };
        let mut k = 1;
        while k < n.words.len() {
            let opt = n.words[k].as_str();
            let v = n.words.get(k + 1).cloned().unwrap_or_default();
            match opt {
                "dev" if Some(&v) != iface.as_ref() => self.note(
                    n,
                    format!(
                        "{}: `dev {v}` differs from the instance interface; xlb adds VIPs on the \
                         instance interface",
                        n.key()
                    ),
                ),
                "dev" | "brd" | "broadcast" | "scope" => {}
                "label" => self.note(n, format!("{}: `label {v}` not imported", n.key())),
                _ => {
                    self.note(n, format!("{}: option `{opt}` not imported", n.key()));
                    k -= 1;
                }
            }
            k += 2;
        }
        Some(p)
    }

    pub(super) fn sync_group(&mut self, n: &Node) {
        let Some(name) = n.arg(1).map(String::from) else {
            self.note(n, "vrrp_sync_group without a name: not imported");
            return;
        };
        let mut members = vec![];
        for c in n.children() {
            match c.key() {
                "group" => {
                    for m in c.children() {
                        members.extend(m.words.iter().map(|w| u(w.clone())));
                    }
                }
                _ => self.unknown(c, &format!("vrrp_sync_group {name}")),
            }
        }
        self.sync_groups.push(VrrpSyncGroup {
            name: u(name),
            group: u(members),
        });
    }

    /// What xlb's validation refuses across instances: resolved the way keepalived behaves where
    /// it can, else the later one is dropped, with a note at it.
    pub(super) fn resolve_vrrp_conflicts(&mut self) {
        let mut names = HashSet::new();
        let mut vrids = HashSet::new();
        let mut vips: std::collections::HashMap<IpAddr, String> = Default::default();
        let mut kept = Vec::new();
        for (loc, mut vi) in std::mem::take(&mut self.vrrp) {
            let name = vi.name.get_ref().clone();
            let key = (
                vi.interface.get_ref().clone(),
                *vi.virtual_router_id.get_ref(),
            );
            if !names.insert(name.clone()) || !vrids.insert(key.clone()) {
                self.notes.push(super::Note::at(
                    &loc,
                    format!(
                        "vrrp_instance {name}: its name or virtual_router_id {} on {} is already \
                         used by another instance; not imported",
                        key.1, key.0
                    ),
                ));
                self.summary.vrrp_instances_imported -= 1;
                continue;
            }
            let mut own: Vec<Spanned<IpPrefix>> = Vec::new();
            let mut own_set = HashSet::new();
            for p in std::mem::take(vi.virtual_ipaddress.get_mut()) {
                let a = p.get_ref().addr;
                let family_ok = own
                    .first()
                    .is_none_or(|f| f.get_ref().addr.is_ipv4() == a.is_ipv4());
                if !family_ok || !own_set.insert(a) {
                    self.notes.push(super::Note::at(
                        &loc,
                        format!("vrrp_instance {name}: VIP {a} listed twice or of another family than the first; not imported"),
                    ));
                } else if let Some(other) = vips.get(&a) {
                    self.notes.push(super::Note::at(
                        &loc,
                        format!(
                            "vrrp_instance {name}: VIP {a} is also in vrrp_instance {other}; \
                             keepalived adds it from both, xlb lets one instance own a VIP: kept \
                             in {other} only"
                        ),
                    ));
                } else {
                    vips.insert(a, name.clone());
                    own.push(p);
                }
            }
            *vi.virtual_ipaddress.get_mut() = own;
            let mut excluded = Vec::new();
            for p in std::mem::take(&mut vi.virtual_ipaddress_excluded) {
                let a = p.get_ref().addr;
                if own_set.insert(a) && !vips.contains_key(&a) {
                    vips.insert(a, name.clone());
                    excluded.push(p);
                } else {
                    self.notes.push(super::Note::at(
                        &loc,
                        format!("vrrp_instance {name}: virtual_ipaddress_excluded {a} is listed twice or held by another instance; not imported"),
                    ));
                }
            }
            vi.virtual_ipaddress_excluded = excluded;
            self.fix_unicast_family(&loc, &mut vi);
            kept.push((loc, vi));
        }
        self.vrrp = kept;
        self.resolve_sync_groups();
    }

    fn fix_unicast_family(&mut self, loc: &super::Loc, vi: &mut VrrpInstance) {
        let family = vi
            .virtual_ipaddress
            .get_ref()
            .first()
            .map(|p| p.get_ref().addr.is_ipv4())
            .or_else(|| vi.unicast_src_ip.as_ref().map(|s| s.get_ref().is_ipv4()));
        let Some(v4) = family else { return };
        let name = vi.name.get_ref().clone();
        if let Some(src) = vi.unicast_src_ip.take() {
            if src.get_ref().is_ipv4() == v4 && is_unicast(*src.get_ref()) {
                vi.unicast_src_ip = Some(src);
            } else {
                self.notes.push(super::Note::at(loc, format!("vrrp_instance {name}: unicast_src_ip {} is not of the VIPs' family; not imported", src.get_ref())));
            }
        }
        let before = vi.unicast_peer.len();
        vi.unicast_peer.retain(|p| p.get_ref().is_ipv4() == v4);
        if vi.unicast_peer.len() != before {
            self.notes.push(super::Note::at(loc, format!("vrrp_instance {name}: unicast_peer addresses of the other family than the VIPs are not imported")));
        }
    }

    /// Members that are no (imported) instance, or already in a group, and empty groups.
    fn resolve_sync_groups(&mut self) {
        let instances: HashSet<String> = self
            .vrrp
            .iter()
            .map(|(_, v)| v.name.get_ref().clone())
            .collect();
        let mut names = HashSet::new();
        let mut member_of = HashSet::new();
        let mut kept = Vec::new();
        for mut g in std::mem::take(&mut self.sync_groups) {
            let gname = g.name.get_ref().clone();
            let mut own = Vec::new();
            for m in std::mem::take(g.group.get_mut()) {
                let mname = m.get_ref().clone();
                if instances.contains(&mname) && member_of.insert(mname.clone()) {
                    own.push(m);
                } else {
                    self.notes.push(super::Note::general(format!(
                        "vrrp_sync_group {gname}: `{mname}` is not an imported vrrp_instance or is \
                         already in a group; left out"
                    )));
                }
            }
            if own.is_empty() || !names.insert(gname.clone()) {
                self.notes.push(super::Note::general(format!(
                    "vrrp_sync_group {gname}: empty or a duplicate name; not imported"
                )));
                continue;
            }
            *g.group.get_mut() = own;
            kept.push(g);
        }
        self.sync_groups = kept;
    }
}
