//! `vrrp_script`, `vrrp_track_process`, `track_file` (and its old name `vrrp_track_file`), the
//! `track_script` / `track_process` / `track_file` lists of an instance, and the VRRP defaults
//! of `global_defs` (`vrrp_garp_*`, `script_user`), read the way keepalived 2.2.7 reads them
//! (vrrp/vrrp_parser.c, trackers/track_file.c, vrrp/vrrp_track.c).

use std::collections::HashSet;
use std::path::PathBuf;

use crate::config::schema::{
    ParamMatch, TrackRef, VrrpInstance, VrrpScript, VrrpTrackFile, VrrpTrackProcess,
};

use super::{script, u, Node, Translator};

/// `global_defs` settings that are defaults of every vrrp_instance / vrrp_script.
#[derive(Clone, Debug, Default)]
pub(super) struct VrrpDefaults {
    pub garp_master_delay: Option<f64>,
    pub garp_master_repeat: Option<u32>,
    pub garp_master_refresh: Option<f64>,
    pub garp_master_refresh_repeat: Option<u32>,
    pub garp_interval: Option<f64>,
    pub script_user: Option<String>,
}

/// Which list of an instance.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum RefKind {
    Script,
    Process,
    File,
}

impl RefKind {
    fn keyword(self) -> &'static str {
        match self {
            RefKind::Script => "track_script",
            RefKind::Process => "track_process",
            RefKind::File => "track_file",
        }
    }
    /// keepalived: scripts -254..=254 with +-254 read as +-253; the others -254..=254.
    fn max_weight(self) -> i32 {
        if self == RefKind::Script {
            253
        } else {
            254
        }
    }
}

/// `weight W [reverse|noreverse]` starting at word `at` of `n`: (weight, reverse).
type Weight = (Option<i32>, Option<bool>);

impl Translator {
    /// The VRRP keywords of `global_defs` (read before the instances, as keepalived applies them
    /// wherever they are). `true` when `n` is one of them.
    pub(super) fn vrrp_default(&mut self, n: &Node) -> bool {
        let d = &mut self.vrrp_defaults.clone();
        match n.key() {
            "vrrp_garp_master_delay" => {
                d.garp_master_delay =
                    self.bounded::<f64>(n, 1, "vrrp_garp_master_delay", 0.0..=1000.0, 0.0..=1000.0)
            }
            "vrrp_garp_master_repeat" => {
                d.garp_master_repeat = self
                    .val::<u32>(n, 1, "vrrp_garp_master_repeat")
                    .map(|r| r.max(1))
            }
            "vrrp_garp_master_refresh" => {
                d.garp_master_refresh = self.refresh(n, "vrrp_garp_master_refresh")
            }
            "vrrp_garp_master_refresh_repeat" => {
                d.garp_master_refresh_repeat = self
                    .bounded::<u32>(
                        n,
                        1,
                        "vrrp_garp_master_refresh_repeat",
                        0..=u32::MAX,
                        1..=100,
                    )
                    .map(|r| r.max(1))
            }
            "vrrp_garp_interval" | "vrrp_gna_interval" => {
                if let Some(i) = self.bounded::<f64>(n, 1, n.key(), 0.000001..=4294.0, 0.0..=1.0) {
                    if d.garp_interval.is_some_and(|o| o != i) {
                        self.note(
                            n,
                            format!(
                                "{}: xlb has one interval for gratuitous ARPs and NAs; {i} written",
                                n.key()
                            ),
                        );
                    }
                    d.garp_interval = Some(i);
                }
            }
            "script_user" => d.script_user = n.arg(1).map(String::from),
            _ => return false,
        }
        self.vrrp_defaults = d.clone();
        true
    }

    /// `garp_master_refresh N` (whole seconds, 0 = off).
    fn refresh(&mut self, n: &Node, what: &str) -> Option<f64> {
        let r = self.bounded::<u32>(n, 1, what, 0..=u32::MAX, 0..=86400)?;
        (r > 0).then_some(f64::from(r))
    }

    /// Applies the `global_defs` defaults to a new instance.
    pub(super) fn instance_defaults(&self, vi: &mut VrrpInstance) {
        let d = &self.vrrp_defaults;
        if let Some(x) = d.garp_master_delay {
            vi.garp_master_delay = u(x);
        }
        if let Some(x) = d.garp_master_repeat {
            vi.garp_master_repeat = x;
        }
        vi.garp_master_refresh = d.garp_master_refresh.map(u);
        vi.garp_master_refresh_repeat = d.garp_master_refresh_repeat.map(u);
        vi.garp_interval = d.garp_interval.map(u);
    }

    /// The instance-level garp keywords this module knows; `true` when `c` is one.
    pub(super) fn instance_garp(&mut self, c: &Node, vi: &mut VrrpInstance) -> bool {
        match c.key() {
            "garp_master_refresh" => {
                vi.garp_master_refresh = self.refresh(c, "garp_master_refresh").map(u)
            }
            "garp_master_refresh_repeat" => {
                vi.garp_master_refresh_repeat = self
                    .bounded::<u32>(c, 1, "garp_master_refresh_repeat", 0..=u32::MAX, 1..=100)
                    .map(|r| u(r.max(1)))
            }
            _ => return false,
        }
        true
    }

    /// `weight W [reverse|noreverse]` from word `at`.
    fn weight(&mut self, n: &Node, at: usize, max: i32, ctx: &str) -> Weight {
        if n.arg(at).is_none() {
            return (None, None);
        }
        if n.arg(at) != Some("weight") {
            self.note(
                n,
                format!(
                    "{ctx}: `{}` ignored, as keepalived does",
                    n.words[at..].join(" ")
                ),
            );
            return (None, None);
        }
        let Some(w) =
            self.bounded::<i32>(n, at + 1, &format!("{ctx} weight"), -254..=254, -max..=max)
        else {
            return (None, None);
        };
        let reverse = match n.arg(at + 2) {
            None => None,
            Some("reverse") => Some(true),
            Some("noreverse") => Some(false),
            Some(other) => {
                self.note(
                    n,
                    format!("{ctx}: weight option `{other}` unknown to keepalived, ignored"),
                );
                None
            }
        };
        (Some(w), reverse)
    }

    /// `track_script { NAME [weight W [reverse]] ... }` and the like. Names are checked against
    /// the definitions at the end ([`Translator::resolve_track_refs`]).
    pub(super) fn track_refs(&mut self, c: &Node, kind: RefKind, vi: &mut VrrpInstance) {
        let max = kind.max_weight();
        for t in c.children() {
            let ctx = format!("{} {}", kind.keyword(), t.key());
            let (weight, reverse) = self.weight(t, 1, max, &ctx);
            let r = TrackRef {
                name: u(t.key().to_string()),
                weight: weight.map(u),
                reverse,
            };
            match kind {
                RefKind::Script => vi.track_script.push(r),
                RefKind::Process => vi.track_process.push(r),
                RefKind::File => vi.track_file.push(r),
            }
        }
    }

    /// `vrrp_script NAME { ... }`.
    pub(super) fn vrrp_script(&mut self, n: &Node) {
        let Some(name) = n.arg(1).map(String::from) else {
            self.note(n, "vrrp_script without a name: not imported");
            return;
        };
        let ctx = format!("vrrp_script {name}");
        let mut s = VrrpScript {
            name: u(name.clone()),
            script: u(vec![]),
            interval: u(1.0),
            timeout: None,
            weight: u(0),
            weight_reverse: false,
            rise: u(1),
            fall: u(1),
            user: self.vrrp_defaults.script_user.clone().map(u),
            init_fail: false,
        };
        for c in n.children() {
            self.script_setting(c, &mut s, &ctx);
        }
        if s.script.get_ref().is_empty() {
            self.note(n, format!("{ctx}: no `script`: keepalived removes it; not imported (instances tracking it do not)"));
            return;
        }
        self.scripts.push(s);
    }

    fn script_setting(&mut self, c: &Node, s: &mut VrrpScript, ctx: &str) {
        let secs = |t: &mut Self, what: &str| {
            let v = t.bounded::<u32>(
                c,
                1,
                &format!("{ctx} {what}"),
                0..=u32::MAX / 1_000_000,
                0..=86400,
            )?;
            if v == 0 {
                t.note(c, format!("{ctx}: {what} 0: keepalived uses 1; 1 written"));
            }
            Some(u(f64::from(v.max(1))))
        };
        match c.key() {
            "script" => match script::parse_line(&c.text, false) {
                Ok(sc) => {
                    if !sc.ignored.is_empty() {
                        self.note(
                            c,
                            format!(
                                "{ctx}: `{}` ignored, as keepalived does",
                                sc.ignored.join(" ")
                            ),
                        );
                    }
                    s.script = u(match script::exec_form(&sc.argv) {
                        script::Exec::Direct(argv) => argv,
                        script::Exec::Shell(text) => vec!["/bin/sh".into(), "-c".into(), text],
                    });
                }
                Err(e) => self.script_error(c, ctx, &e),
            },
            "interval" => {
                if let Some(v) = secs(self, "interval") {
                    s.interval = v;
                }
            }
            "timeout" => s.timeout = secs(self, "timeout").or(s.timeout.take()),
            "weight" => {
                let (w, r) = self.weight(c, 0, 253, ctx);
                if let Some(w) = w {
                    s.weight = u(w);
                }
                s.weight_reverse = r.unwrap_or(false);
            }
            "rise" | "fall" => {
                let v = match self.val::<u32>(c, 1, c.key()) {
                    Some(v) if v >= 1 => v,
                    _ => {
                        self.note(
                            c,
                            format!("{ctx}: {}: keepalived uses 1; 1 written", c.key()),
                        );
                        1
                    }
                };
                let slot = if c.key() == "rise" {
                    &mut s.rise
                } else {
                    &mut s.fall
                };
                *slot = u(v.min(1_000_000));
            }
            "user" => {
                s.user = c.arg(1).map(|x| u(x.to_string()));
                if let Some(g) = c.arg(2) {
                    self.note(
                        c,
                        format!(
                            "{ctx}: group `{g}`: xlb runs the script with the user's primary group"
                        ),
                    );
                }
            }
            "init_fail" => s.init_fail = true,
            _ => self.unknown(c, ctx),
        }
    }

    /// `vrrp_track_process NAME { ... }`.
    pub(super) fn track_process_def(&mut self, n: &Node) {
        let Some(name) = n.arg(1).map(String::from) else {
            self.note(n, "vrrp_track_process without a name: not imported");
            return;
        };
        let ctx = format!("vrrp_track_process {name}");
        let mut p = VrrpTrackProcess {
            name: u(name),
            process: u(String::new()),
            args: None,
            param_match: None,
            full_command: false,
            quorum: u(1),
            quorum_max: None,
            terminate_delay: u(0.0),
            fork_delay: u(0.0),
            weight: u(0),
            weight_reverse: false,
        };
        for c in n.children() {
            self.process_setting(c, &mut p, &ctx);
        }
        if p.process.get_ref().is_empty() {
            self.note(
                n,
                format!("{ctx}: no `process`: keepalived removes it; not imported"),
            );
            return;
        }
        if p.args.is_none()
            && !p.full_command
            && p.param_match.is_none()
            && p.process.get_ref().len() > 15
        {
            self.note(n, format!("{ctx}: process name longer than 15 bytes: keepalived compares it with /proc/PID/comm (15 bytes) and never matches it, so the tracker would never have its quorum; full_command written (argv[0] compared instead): check that this is what was meant"));
            p.full_command = true;
        }
        self.processes.push(p);
    }

    fn process_setting(&mut self, c: &Node, p: &mut VrrpTrackProcess, ctx: &str) {
        let delay = |t: &mut Self, what: &str| {
            t.bounded::<f64>(
                c,
                1,
                &format!("{ctx} {what}"),
                0.000001..=3600.0,
                0.0..=3600.0,
            )
        };
        match c.key() {
            "process" => match c.arg(1) {
                Some(path) if p.process.get_ref().is_empty() => {
                    p.process = u(path.to_string());
                    if c.words.len() > 2 {
                        p.args = Some(c.words[2..].to_vec());
                        p.full_command = true;
                    }
                }
                Some(_) => self.note(
                    c,
                    format!("{ctx}: process already set; keepalived ignores this one"),
                ),
                None => self.note(c, format!("{ctx}: `process` without a name, ignored")),
            },
            "param_match" => match c.arg(1) {
                None => p.param_match = Some(ParamMatch::Exact),
                Some("initial") => p.param_match = Some(ParamMatch::Initial),
                Some("partial") => p.param_match = Some(ParamMatch::Partial),
                Some(o) => self.note(
                    c,
                    format!("{ctx}: param_match `{o}` unknown to keepalived, ignored"),
                ),
            },
            "full_command" => p.full_command = true,
            "weight" => {
                let (w, r) = self.weight(c, 0, 254, ctx);
                if let Some(w) = w {
                    p.weight = u(w);
                }
                p.weight_reverse = r.unwrap_or(false);
            }
            "quorum" => {
                if let Some(q) =
                    self.bounded::<u32>(c, 1, &format!("{ctx} quorum"), 1..=65535, 1..=65535)
                {
                    p.quorum = u(q);
                }
            }
            "quorum_max" => {
                if let Some(q) =
                    self.bounded::<u32>(c, 1, &format!("{ctx} quorum_max"), 0..=65535, 0..=65535)
                {
                    if q == 0 {
                        p.quorum = u(0);
                    }
                    p.quorum_max = Some(u(q));
                }
            }
            "delay" => {
                if let Some(d) = delay(self, "delay") {
                    p.terminate_delay = u(d);
                    p.fork_delay = u(d);
                }
            }
            "terminate_delay" => {
                if let Some(d) = delay(self, "terminate_delay") {
                    p.terminate_delay = u(d);
                }
            }
            "fork_delay" => {
                if let Some(d) = delay(self, "fork_delay") {
                    p.fork_delay = u(d);
                }
            }
            _ => self.unknown(c, ctx),
        }
    }

    /// `track_file NAME { ... }` / `vrrp_track_file NAME { ... }`.
    pub(super) fn track_file_def(&mut self, n: &Node) {
        let Some(name) = n.arg(1).map(String::from) else {
            self.note(n, format!("{} without a name: not imported", n.key()));
            return;
        };
        let ctx = format!("{} {name}", n.key());
        let mut f = VrrpTrackFile {
            name: u(name),
            file: u(PathBuf::new()),
            weight: u(1),
            weight_reverse: false,
        };
        for c in n.children() {
            match c.key() {
                "file" => match c.arg(1) {
                    Some(path) if path.starts_with('/') => f.file = u(PathBuf::from(path)),
                    Some(path) => self.note(c, format!("{ctx}: file `{path}` is not an absolute path: not imported")),
                    None => self.note(c, format!("{ctx}: `file` without a path")),
                },
                "weight" => {
                    let (w, r) = self.weight(c, 0, 254, &ctx);
                    if let Some(w) = w {
                        f.weight = u(w);
                    }
                    f.weight_reverse = r.unwrap_or(false);
                }
                "init_file" => self.note(
                    c,
                    format!("{ctx}: init_file: not translated (xlb does not create the file; a missing file reads as 0, as in keepalived without init_file)"),
                ),
                _ => self.unknown(c, &ctx),
            }
        }
        if f.file.get_ref().as_os_str().is_empty() {
            self.note(
                n,
                format!("{ctx}: no `file`: keepalived removes it; not imported"),
            );
            return;
        }
        self.files.push(f);
    }

    /// Drops references to tracked objects that are not defined (or not imported), as keepalived
    /// does ("track script ... not found, ignoring"), and duplicates.
    pub(super) fn resolve_track_refs(&mut self) {
        let scripts: HashSet<String> = self
            .scripts
            .iter()
            .map(|s| s.name.get_ref().clone())
            .collect();
        let procs: HashSet<String> = self
            .processes
            .iter()
            .map(|s| s.name.get_ref().clone())
            .collect();
        let files: HashSet<String> = self
            .files
            .iter()
            .map(|s| s.name.get_ref().clone())
            .collect();
        let mut notes = Vec::new();
        for (loc, vi) in &mut self.vrrp {
            let name = vi.name.get_ref().clone();
            for (list, known, kind) in [
                (&mut vi.track_script, &scripts, RefKind::Script),
                (&mut vi.track_process, &procs, RefKind::Process),
                (&mut vi.track_file, &files, RefKind::File),
            ] {
                let mut seen = HashSet::new();
                list.retain(|r| {
                    let n = r.name.get_ref();
                    let keep = known.contains(n) && seen.insert(n.clone());
                    if !keep {
                        notes.push(super::Note::at(
                            loc,
                            format!("vrrp_instance {name}: {} `{n}` is not defined (or listed twice): keepalived ignores it; not imported", kind.keyword()),
                        ));
                    }
                    keep
                });
            }
        }
        self.notes.extend(notes);
    }
}
