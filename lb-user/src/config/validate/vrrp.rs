//! VRRP instances (keepalived's rules for state, priority, versions, authentication, unicast)
//! and sync groups.
use super::super::error::{did_you_mean, Collector};
use super::*;
use std::collections::{HashMap, HashSet};
use std::net::IpAddr;

pub(super) fn vrrp_instance(vi: &VrrpInstance, cfg: &Config, c: &mut Collector<'_>) {
    if vi.name.get_ref().trim().is_empty() {
        c.at(
            vi.name.span(),
            "`name` is empty: expected an instance name like \"VI_1\"",
        );
    }
    ifname(&vi.interface, c);
    if *vi.virtual_router_id.get_ref() == 0 {
        c.at(
            vi.virtual_router_id.span(),
            "virtual_router_id 0: expected 1..=255",
        );
    }
    if *vi.priority.get_ref() == 0 {
        c.at(
            vi.priority.span(),
            "priority 0 is reserved (master resigning): expected 1..=255",
        );
    }
    let version = *vi.version.get_ref();
    let adv = *vi.advert_int.get_ref();
    match version {
        2 => {
            if !(1.0..=255.0).contains(&adv) || adv.fract() != 0.0 {
                c.at(
                    vi.advert_int.span(),
                    format!("advert_int {adv}: VRRPv2 expects whole seconds 1..=255 (use version = 3 for sub-second)"),
                );
            }
        }
        3 => {
            let cs = adv * 100.0;
            if !(0.01..=40.95).contains(&adv) || (cs - cs.round()).abs() > 1e-6 {
                c.at(
                    vi.advert_int.span(),
                    format!(
                        "advert_int {adv}: VRRPv3 expects 0.01..=40.95 seconds in steps of 0.01"
                    ),
                );
            }
        }
        v => c.at(vi.version.span(), format!("version {v}: expected 2 or 3")),
    }
    if let Some(auth) = &vi.authentication {
        if version == 3 {
            c.at(auth.span(), "authentication is not part of VRRPv3 (RFC 5798): expected version = 2 or no authentication");
        }
        let pass = &auth.get_ref().auth_pass;
        let n = pass.get_ref().chars().count();
        if n == 0 {
            c.at(pass.span(), "auth_pass is empty: expected 1..=8 characters");
        } else if n > 8 || pass.get_ref().len() > 8 {
            c.at(
                pass.span(),
                format!(
                    "auth_pass is {n} characters: expected at most 8 (the VRRPv2 field is 8 bytes; keepalived \
                     silently uses the first 8, so write exactly those to interoperate)"
                ),
            );
        }
    }
    // Addresses: one family, v3 for IPv6, no duplicates within or across instances.
    let vips = vi.virtual_ipaddress.get_ref();
    let family = vips.first().map(|p| p.get_ref().addr.is_ipv4());
    let mut seen = HashSet::new();
    for p in vips {
        let a = p.get_ref().addr;
        if Some(a.is_ipv4()) != family {
            c.at(p.span(), format!("{a}: all virtual_ipaddress of an instance must be of one family (the first is IPv{})", if family == Some(true) { 4 } else { 6 }));
        }
        if a.is_ipv6() && version == 2 {
            c.at(
                p.span(),
                format!("{a} is IPv6: VRRPv2 carries only IPv4, expected version = 3"),
            );
        }
        if a.is_unspecified() || a.is_multicast() || a.is_loopback() {
            c.at(p.span(), format!("{a}: expected a unicast address"));
        }
        if !seen.insert(a) {
            c.at(p.span(), format!("{a} is listed twice"));
        }
        for other in &cfg.vrrp_instances {
            if std::ptr::eq(other, vi) {
                break;
            }
            if other
                .virtual_ipaddress
                .get_ref()
                .iter()
                .any(|q| q.get_ref().addr == a)
            {
                c.at(
                    p.span(),
                    format!("{a} is already in vrrp_instance `{}`", other.name.get_ref()),
                );
            }
        }
    }
    let fam_v4 = family.or_else(|| vi.unicast_src_ip.as_ref().map(|s| s.get_ref().is_ipv4()));
    if let (Some(src), Some(v4)) = (&vi.unicast_src_ip, family) {
        if src.get_ref().is_ipv4() != v4 {
            c.at(
                src.span(),
                format!(
                    "unicast_src_ip {} is not of the family of the virtual_ipaddress",
                    src.get_ref()
                ),
            );
        }
    }
    let mut peers = HashSet::new();
    for p in &vi.unicast_peer {
        if let Some(v4) = fam_v4 {
            if p.get_ref().is_ipv4() != v4 {
                c.at(
                    p.span(),
                    format!(
                        "unicast_peer {}: expected IPv{} like unicast_src_ip/virtual_ipaddress",
                        p.get_ref(),
                        if v4 { 4 } else { 6 }
                    ),
                );
            }
        }
        unicast_addr(c, p, "unicast_peer");
        if !peers.insert(*p.get_ref()) {
            c.at(
                p.span(),
                format!("unicast_peer {} is listed twice", p.get_ref()),
            );
        }
    }
    if *vi.nopreempt.get_ref() && *vi.state.get_ref() == VrrpState::Master {
        c.at(
            vi.nopreempt.span(),
            "nopreempt needs state = \"BACKUP\" (keepalived rule): a MASTER always preempts; set both \
             directors to BACKUP and let priority decide",
        );
    }
    frange(c, &vi.preempt_delay, 0.0, 1000.0, "preempt_delay (seconds)");
    frange(
        c,
        &vi.garp_master_delay,
        0.0,
        1000.0,
        "garp_master_delay (seconds)",
    );
    for i in &vi.track_interface {
        ifname(i, c);
    }
    let names: Vec<String> = cfg
        .virtual_servers
        .iter()
        .map(VirtualServer::service_name)
        .collect();
    for t in &vi.track_service {
        if !names.iter().any(|n| n == t.get_ref()) {
            let hint = did_you_mean(t.get_ref(), names.iter().map(String::as_str))
                .map(|s| format!(", did you mean `{s}`?"))
                .unwrap_or_else(|| {
                    if names.is_empty() {
                        " (there is no virtual_server)".into()
                    } else {
                        format!(" (known: {})", names.join(", "))
                    }
                });
            c.at(
                t.span(),
                format!(
                    "track_service `{}` is not the name of a virtual_server{hint}",
                    t.get_ref()
                ),
            );
        }
    }
    if let Some(w) = &vi.track_service_weight {
        let w_ = *w.get_ref();
        if !(-254..=254).contains(&w_) {
            c.at(
                w.span(),
                format!("track_service_weight {w_}: expected -254..=254"),
            );
        }
        if vi.track_service.is_empty() {
            c.at(w.span(), "track_service_weight without track_service");
        }
    }
    for cmd in [
        &vi.notify_master,
        &vi.notify_backup,
        &vi.notify_fault,
        &vi.notify_stop,
        &vi.notify,
    ]
    .into_iter()
    .flatten()
    {
        command(c, cmd, "notify command");
    }
    excluded_vips(vi, cfg, c);
    garp_timers(vi, c);
    track_refs(vi, cfg, c);
}

/// `virtual_ipaddress_excluded`: unicast, not listed twice, owned by no other instance.
fn excluded_vips(vi: &VrrpInstance, cfg: &Config, c: &mut Collector<'_>) {
    let mut seen: HashSet<IpAddr> = vi
        .virtual_ipaddress
        .get_ref()
        .iter()
        .map(|p| p.get_ref().addr)
        .collect();
    for p in &vi.virtual_ipaddress_excluded {
        let a = p.get_ref().addr;
        if a.is_unspecified() || a.is_multicast() || a.is_loopback() {
            c.at(p.span(), format!("{a}: expected a unicast address"));
        }
        if !seen.insert(a) {
            c.at(
                p.span(),
                format!("{a} is listed twice (virtual_ipaddress or virtual_ipaddress_excluded)"),
            );
        }
        let other = cfg.vrrp_instances.iter().find(|o| {
            !std::ptr::eq(*o, vi)
                && o.virtual_ipaddress
                    .get_ref()
                    .iter()
                    .chain(&o.virtual_ipaddress_excluded)
                    .any(|q| q.get_ref().addr == a)
        });
        if let Some(o) = other {
            c.at(
                p.span(),
                format!("{a} is also in vrrp_instance `{}`", o.name.get_ref()),
            );
        }
    }
}

fn garp_timers(vi: &VrrpInstance, c: &mut Collector<'_>) {
    if let Some(r) = &vi.garp_master_refresh {
        frange(c, r, 1.0, 86400.0, "garp_master_refresh (seconds)");
    }
    if let Some(r) = &vi.garp_master_refresh_repeat {
        // Without garp_master_refresh it has no effect (keepalived accepts it too).
        range(c, r, 1, 100, "garp_master_refresh_repeat");
    }
    if let Some(i) = &vi.garp_interval {
        frange(c, i, 0.0, 1.0, "garp_interval (seconds)");
    }
}

/// Each `track_script` / `track_process` / `track_file` names a defined object once, with a
/// weight in keepalived's range.
fn track_refs(vi: &VrrpInstance, cfg: &Config, c: &mut Collector<'_>) {
    let scripts: Vec<&str> = cfg
        .vrrp_scripts
        .iter()
        .map(|s| s.name.get_ref().as_str())
        .collect();
    let procs: Vec<&str> = cfg
        .vrrp_track_processes
        .iter()
        .map(|p| p.name.get_ref().as_str())
        .collect();
    let files: Vec<&str> = cfg
        .vrrp_track_files
        .iter()
        .map(|f| f.name.get_ref().as_str())
        .collect();
    let kinds: [(&[TrackRef], &[&str], &str, i32); 3] = [
        (&vi.track_script, &scripts, "vrrp_script", 253),
        (&vi.track_process, &procs, "vrrp_track_process", 254),
        (&vi.track_file, &files, "vrrp_track_file", 254),
    ];
    for (refs, known, table, max) in kinds {
        let mut seen = HashSet::new();
        for t in refs {
            let n = t.name.get_ref().as_str();
            if !known.contains(&n) {
                let hint = did_you_mean(n, known.iter().copied())
                    .map(|s| format!(", did you mean `{s}`?"))
                    .unwrap_or_else(|| format!(" (there is no [[{table}]] named so)"));
                c.at(
                    t.name.span(),
                    format!("`{n}` is not the name of a [[{table}]]{hint}"),
                );
            } else if !seen.insert(n) {
                c.at(t.name.span(), format!("`{n}` is tracked twice"));
            }
            if let Some(w) = &t.weight {
                range(c, w, -max, max, "weight");
            }
        }
    }
}

/// `[[vrrp_script]]`, `[[vrrp_track_process]]`, `[[vrrp_track_file]]`: unique names, ranges.
pub(super) fn trackers(cfg: &Config, c: &mut Collector<'_>) {
    let mut names = HashSet::new();
    for s in &cfg.vrrp_scripts {
        tracker_name(&s.name, "vrrp_script", &mut names, c);
        command(c, &s.script, "script");
        frange(c, &s.interval, 1.0, 86400.0, "interval (seconds)");
        if let Some(t) = &s.timeout {
            frange(c, t, 1.0, 86400.0, "timeout (seconds)");
        }
        range(c, &s.weight, -253, 253, "weight");
        range(c, &s.rise, 1, 1_000_000, "rise");
        range(c, &s.fall, 1, 1_000_000, "fall");
        if let Some(u) = &s.user {
            if u.get_ref().trim().is_empty() {
                c.at(u.span(), "user is empty: expected a user name");
            }
        }
    }
    let mut names = HashSet::new();
    for p in &cfg.vrrp_track_processes {
        tracker_name(&p.name, "vrrp_track_process", &mut names, c);
        if p.process.get_ref().is_empty() {
            c.at(
                p.process.span(),
                "process is empty: expected a process name",
            );
        } else if p.args.is_none()
            && !p.full_command
            && p.param_match.is_none()
            && p.process.get_ref().len() > 15
        {
            c.at(
                p.process.span(),
                format!(
                    "process `{}` is longer than a process name can be (15 bytes in                      /proc/PID/comm): set full_command = true to match argv[0]",
                    p.process.get_ref()
                ),
            );
        }
        range(c, &p.quorum, 0, 65535, "quorum");
        if let Some(q) = &p.quorum_max {
            range(c, q, 0, 65535, "quorum_max");
            if q.get_ref() < p.quorum.get_ref() {
                c.at(
                    q.span(),
                    format!(
                        "quorum_max {} is below quorum {}",
                        q.get_ref(),
                        p.quorum.get_ref()
                    ),
                );
            }
        }
        frange(
            c,
            &p.terminate_delay,
            0.0,
            3600.0,
            "terminate_delay (seconds)",
        );
        frange(c, &p.fork_delay, 0.0, 3600.0, "fork_delay (seconds)");
        range(c, &p.weight, -254, 254, "weight");
    }
    let mut names = HashSet::new();
    for f in &cfg.vrrp_track_files {
        tracker_name(&f.name, "vrrp_track_file", &mut names, c);
        absolute(c, &f.file, "file");
        range(c, &f.weight, -254, 254, "weight");
    }
}

fn tracker_name<'a>(
    n: &'a Spanned<String>,
    table: &str,
    names: &mut HashSet<&'a str>,
    c: &mut Collector<'_>,
) {
    if n.get_ref().trim().is_empty() {
        c.at(n.span(), format!("[[{table}]] `name` is empty"));
    } else if !names.insert(n.get_ref().as_str()) {
        c.at(
            n.span(),
            format!("duplicate [[{table}]] name `{}`", n.get_ref()),
        );
    }
}

/// Unique names; unique (interface, virtual_router_id).
pub(super) fn vrrp_unique(cfg: &Config, c: &mut Collector<'_>) {
    let mut names = HashSet::new();
    let mut vrids = HashMap::new();
    for vi in &cfg.vrrp_instances {
        if !names.insert(vi.name.get_ref()) {
            c.at(
                vi.name.span(),
                format!("duplicate vrrp_instance name `{}`", vi.name.get_ref()),
            );
        }
        let key = (vi.interface.get_ref(), *vi.virtual_router_id.get_ref());
        if let Some(first) = vrids.insert(key, vi.name.get_ref()) {
            c.at(
                vi.virtual_router_id.span(),
                format!(
                    "virtual_router_id {} is already used on {} by vrrp_instance `{first}`: expected a \
                     vrid unique per interface",
                    key.1, key.0
                ),
            );
        }
    }
}

pub(super) fn sync_groups(cfg: &Config, c: &mut Collector<'_>) {
    let instances: Vec<&str> = cfg
        .vrrp_instances
        .iter()
        .map(|i| i.name.get_ref().as_str())
        .collect();
    let mut names = HashSet::new();
    let mut member_of: HashMap<&str, &str> = HashMap::new();
    for g in &cfg.vrrp_sync_groups {
        if !names.insert(g.name.get_ref()) {
            c.at(
                g.name.span(),
                format!("duplicate vrrp_sync_group name `{}`", g.name.get_ref()),
            );
        }
        if g.group.get_ref().is_empty() {
            c.at(
                g.group.span(),
                "`group` is empty: expected names of vrrp_instance",
            );
        }
        for m in g.group.get_ref() {
            let m_ = m.get_ref().as_str();
            if !instances.contains(&m_) {
                let hint = did_you_mean(m_, instances.iter().copied())
                    .map(|s| format!(", did you mean `{s}`?"))
                    .unwrap_or_default();
                c.at(
                    m.span(),
                    format!("`{m_}` is not the name of a vrrp_instance{hint}"),
                );
            } else if let Some(other) = member_of.insert(m_, g.name.get_ref()) {
                c.at(m.span(), format!("vrrp_instance `{m_}` is already in vrrp_sync_group `{other}`: an instance may be in one group only"));
            }
        }
    }
}
