//! Tracked objects of VRRP instances (keepalived `vrrp_script`, `track_process`, `track_file`),
//! pure: results and counts come in, statuses and priority effects go out. The IO shell is
//! [`super::tracker`].
//!
//! keepalived's rules (vrrp/vrrp_track.c, vrrp_scheduler.c, trackers/track_file.c, 2.2.7):
//! - a script is up after `rise` successes in a row and down after `fall` failures; before its
//!   first result it is in INIT ("one success is enough": the first result decides), or down
//!   with `init_fail`;
//! - weight 0: the instance is in FAULT while the object is down (`reverse`: while it is up),
//!   and a script in INIT holds the instance in INIT;
//! - weight > 0 is added while up, weight < 0 while down; `reverse` multiplies by -1;
//! - a file adds `value * weight` (times -1 with `reverse`), clamped to -254..=253; -254 is
//!   FAULT; with weight 0 a non-zero value is FAULT (`reverse`: zero is);
//! - the priority is `base + the sum`, clamped to 1..=254; an address owner (255) never
//!   changes.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::config::ParamMatch;

/// What a tracked script or process reports now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// No result yet.
    Init,
    Up,
    Down,
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Status::Init => "init",
            Status::Up => "up",
            Status::Down => "down",
        })
    }
}

/// keepalived's rise/fall counter of one script (`vscript->result`): `rise..rise+fall` is up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScriptCounter {
    rise: u32,
    fall: u32,
    result: u32,
    init: bool,
}

impl ScriptCounter {
    pub fn new(rise: u32, fall: u32, init_fail: bool) -> ScriptCounter {
        let (rise, fall) = (rise.max(1), fall.max(1));
        ScriptCounter {
            rise,
            fall,
            result: if init_fail { 0 } else { rise - 1 },
            init: !init_fail,
        }
    }

    /// A counter that carries on from `status` (the same script across a reload): fully up or
    /// fully down.
    pub fn resume(rise: u32, fall: u32, status: Status) -> ScriptCounter {
        let mut c = ScriptCounter::new(rise, fall, false);
        match status {
            Status::Init => {}
            Status::Up => (c.result, c.init) = (c.rise + c.fall - 1, false),
            Status::Down => (c.result, c.init) = (0, false),
        }
        c
    }

    pub fn status(&self) -> Status {
        if self.init {
            Status::Init
        } else if self.result >= self.rise {
            Status::Up
        } else {
            Status::Down
        }
    }

    /// One run's result (exit 0 = success; failure, signal, timeout = failure). The new status
    /// when it changed.
    pub fn record(&mut self, success: bool) -> Option<Status> {
        let before = self.status();
        let full = self.rise + self.fall - 1;
        if success {
            if self.result < self.rise - 1 {
                self.result += 1;
            } else {
                self.result = full;
            }
        } else if self.result > self.rise {
            self.result -= 1;
        } else {
            self.result = 0;
        }
        self.init = false;
        let after = self.status();
        (after != before).then_some(after)
    }
}

/// Process quorum with keepalived's `fork_delay` (gain) and `terminate_delay` (loss): a change
/// counts once it has lasted that long.
#[derive(Clone, Debug)]
pub struct Quorum {
    min: u32,
    max: u32,
    fork_delay: Duration,
    terminate_delay: Duration,
    reported: Option<bool>,
    /// The other state, seen since.
    pending: Option<(bool, Instant)>,
}

impl Quorum {
    pub fn new(min: u32, max: u32, fork_delay: Duration, terminate_delay: Duration) -> Quorum {
        Quorum {
            min,
            max,
            fork_delay,
            terminate_delay,
            reported: None,
            pending: None,
        }
    }

    pub fn status(&self) -> Status {
        match self.reported {
            None => Status::Init,
            Some(true) => Status::Up,
            Some(false) => Status::Down,
        }
    }

    /// `count` matching processes seen at `now`; the new status when it changed. The first
    /// count is taken at once (keepalived's startup scan).
    pub fn observe(&mut self, now: Instant, count: u32) -> Option<Status> {
        let have = count >= self.min && count <= self.max;
        let Some(reported) = self.reported else {
            self.reported = Some(have);
            return Some(self.status());
        };
        if have == reported {
            self.pending = None;
            return None;
        }
        let delay = if have {
            self.fork_delay
        } else {
            self.terminate_delay
        };
        let since = match self.pending {
            Some((p, since)) if p == have => since,
            _ => {
                self.pending = Some((have, now));
                now
            }
        };
        if now.duration_since(since) >= delay {
            self.pending = None;
            self.reported = Some(have);
            return Some(self.status());
        }
        None
    }

    /// When a pending change becomes due.
    pub fn deadline(&self) -> Option<Instant> {
        self.pending.map(|(have, since)| {
            since
                + if have {
                    self.fork_delay
                } else {
                    self.terminate_delay
                }
        })
    }
}

/// What a `vrrp_track_process` matches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcessPattern {
    /// Process name (comm) or, with `full_command`, argv[0].
    pub process: String,
    pub args: Option<Vec<String>>,
    /// `None`: the arguments are not compared.
    pub param_match: Option<ParamMatch>,
    pub full_command: bool,
}

impl ProcessPattern {
    /// Whether a process with this `comm` (/proc/PID/comm without the newline) and `cmdline`
    /// (/proc/PID/cmdline: NUL-terminated words) matches, as keepalived's `check_process`.
    pub fn matches(&self, comm: &str, cmdline: &[u8]) -> bool {
        if !self.full_command {
            // The kernel keeps 15 bytes of the name.
            let want = truncate_bytes(&self.process, 15);
            return comm == want;
        }
        let mut words = cmdline.split(|b| *b == 0);
        let Some(argv0) = words.next() else {
            return false;
        };
        if argv0 != self.process.as_bytes() {
            return false;
        }
        let params = cmdline.get(argv0.len() + 1..).unwrap_or_default();
        self.params_match(params)
    }

    /// keepalived's `check_params`, on the NUL-terminated parameter bytes.
    fn params_match(&self, params: &[u8]) -> bool {
        let Some(mode) = self.param_match else {
            return true;
        };
        let Some(args) = &self.args else {
            // keepalived: an exact match with no parameters configured = no parameters.
            return mode != ParamMatch::Exact || params.is_empty();
        };
        let mut want = Vec::new();
        for a in args {
            want.extend_from_slice(a.as_bytes());
            want.push(0);
        }
        match mode {
            ParamMatch::Exact => params == want.as_slice(),
            ParamMatch::Partial => params.starts_with(&want),
            // The last word may be cut short: compare without its terminating NUL.
            ParamMatch::Initial => params.starts_with(&want[..want.len().saturating_sub(1)]),
        }
    }
}

fn truncate_bytes(s: &str, n: usize) -> &str {
    if s.len() <= n {
        return s;
    }
    let mut end = n;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// The value of a tracked file as keepalived reads it: C `strtol(buf, NULL, 0)` (leading
/// blanks, sign, `0x` hex, `0` octal, decimal; no digits = 0). `None` outside the 32-bit range
/// (keepalived ignores such a read and keeps the previous value).
pub fn file_value(text: &str) -> Option<i64> {
    let s = text.trim_start();
    let (neg, s) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let (radix, digits) = if let Some(h) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        if h.starts_with(|c: char| c.is_ascii_hexdigit()) {
            (16, h)
        } else {
            (10, "0")
        }
    } else if s.starts_with('0') {
        (8, s)
    } else {
        (10, s)
    };
    let end = digits
        .find(|c: char| !c.is_digit(radix))
        .unwrap_or(digits.len());
    let digits = &digits[..end];
    if digits.is_empty() {
        return Some(0);
    }
    let v = i64::from_str_radix(digits, radix).ok()?;
    let v = if neg { -v } else { v };
    (i64::from(i32::MIN)..=i64::from(i32::MAX) + 1)
        .contains(&v)
        .then_some(v)
}

/// The current status of every tracked object, by name.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TrackStates {
    pub scripts: BTreeMap<String, Status>,
    pub processes: BTreeMap<String, Status>,
    /// Last value read.
    pub files: BTreeMap<String, i64>,
}

/// The kind of a tracked object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Script,
    Process,
    File,
}

/// One tracked object of an instance, its weight resolved (the instance's override, else the
/// object's own).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tracked {
    pub kind: Kind,
    pub name: String,
    pub weight: i32,
    pub reverse: bool,
}

/// The objects `vi` tracks, with their weights resolved (a name not defined is left out:
/// validation refuses it).
pub fn resolve(vi: &crate::config::VrrpInstance, cfg: &crate::config::Config) -> Vec<Tracked> {
    let mut out = Vec::new();
    for r in &vi.track_script {
        if let Some(s) = cfg.vrrp_scripts.iter().find(|s| s.name == r.name) {
            out.push(Tracked::of(Kind::Script, r, s.weight, s.weight_reverse));
        }
    }
    for r in &vi.track_process {
        if let Some(p) = cfg.vrrp_track_processes.iter().find(|p| p.name == r.name) {
            out.push(Tracked::of(Kind::Process, r, p.weight, p.weight_reverse));
        }
    }
    for r in &vi.track_file {
        if let Some(f) = cfg.vrrp_track_files.iter().find(|f| f.name == r.name) {
            out.push(Tracked::of(Kind::File, r, f.weight, f.weight_reverse));
        }
    }
    out
}

/// What one tracked object does to an instance now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Effect {
    /// Add this to the priority.
    Delta(i32),
    /// The instance is in FAULT, for this reason.
    Fault(String),
    /// A weight-0 script has no result yet: the instance stays in INIT.
    Wait(String),
}

impl Tracked {
    fn of(kind: Kind, r: &crate::config::TrackRef, weight: i32, reverse: bool) -> Tracked {
        Tracked {
            kind,
            name: r.name.clone(),
            weight: r.weight.unwrap_or(weight),
            reverse: r.reverse.unwrap_or(reverse),
        }
    }

    fn multiplier(&self) -> i32 {
        if self.reverse {
            -1
        } else {
            1
        }
    }

    pub fn effect(&self, states: &TrackStates) -> Effect {
        match self.kind {
            Kind::Script | Kind::Process => {
                let map = if self.kind == Kind::Script {
                    &states.scripts
                } else {
                    &states.processes
                };
                let status = map.get(&self.name).copied().unwrap_or(Status::Init);
                self.status_effect(status)
            }
            Kind::File => self.file_effect(states.files.get(&self.name).copied().unwrap_or(0)),
        }
    }

    /// What `xlb status` shows for this object.
    pub fn report(&self, states: &TrackStates) -> crate::status::TrackedStatus {
        let state = match self.kind {
            Kind::Script => states.scripts.get(&self.name).copied(),
            Kind::Process => states.processes.get(&self.name).copied(),
            Kind::File => None,
        }
        .map(|s| s.to_string())
        .unwrap_or_else(|| match self.kind {
            Kind::File => states
                .files
                .get(&self.name)
                .copied()
                .unwrap_or(0)
                .to_string(),
            _ => Status::Init.to_string(),
        });
        let effect = match self.effect(states) {
            Effect::Delta(d) if d > 0 => format!("+{d}"),
            Effect::Delta(d) => d.to_string(),
            Effect::Fault(_) => "FAULT".to_string(),
            Effect::Wait(_) => "INIT".to_string(),
        };
        crate::status::TrackedStatus {
            object: self.what(),
            state,
            effect,
        }
    }

    fn what(&self) -> String {
        match self.kind {
            Kind::Script => format!("vrrp_script {}", self.name),
            Kind::Process => format!("vrrp_track_process {}", self.name),
            Kind::File => format!("vrrp_track_file {}", self.name),
        }
    }

    fn status_effect(&self, status: Status) -> Effect {
        let m = self.multiplier();
        if self.weight == 0 {
            return match status {
                Status::Init => Effect::Wait(format!("{} has no result yet", self.what())),
                s if (s == Status::Up) == self.reverse => Effect::Fault(format!(
                    "tracked {} is {s}{}",
                    self.what(),
                    if self.reverse { " (reverse)" } else { "" }
                )),
                _ => Effect::Delta(0),
            };
        }
        Effect::Delta(match status {
            Status::Init => 0,
            Status::Up if self.weight > 0 => self.weight * m,
            Status::Down if self.weight < 0 => self.weight * m,
            _ => 0,
        })
    }

    fn file_effect(&self, value: i64) -> Effect {
        let m = self.multiplier();
        let status = if self.weight == 0 {
            if (value != 0) == (m == 1) {
                -254
            } else {
                0
            }
        } else {
            (value.saturating_mul(i64::from(self.weight) * i64::from(m))).clamp(-254, 253)
        };
        if status == -254 {
            Effect::Fault(format!("tracked {} has value {value}", self.what()))
        } else {
            Effect::Delta(status as i32)
        }
    }
}

/// The instance's tracked objects together.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Evaluation {
    /// Sum of the weights in effect.
    pub delta: i32,
    /// Why the instance is in FAULT (the first cause).
    pub fault: Option<String>,
    /// Why the instance must stay in INIT (the first cause).
    pub wait: Option<String>,
}

pub fn evaluate(tracked: &[Tracked], states: &TrackStates) -> Evaluation {
    let mut e = Evaluation::default();
    for t in tracked {
        match t.effect(states) {
            Effect::Delta(d) => e.delta += d,
            Effect::Fault(why) => {
                e.fault.get_or_insert(why);
            }
            Effect::Wait(why) => {
                e.wait.get_or_insert(why);
            }
        }
    }
    e
}

/// keepalived's `vrrp_set_effective_priority`: `base + delta` in 1..=254; 255 stays 255.
pub fn effective_priority(base: u8, delta: i32) -> u8 {
    if base == 255 {
        return 255;
    }
    (i32::from(base) + delta).clamp(1, 254) as u8
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(c: &mut ScriptCounter, results: &[bool]) -> Vec<Option<Status>> {
        results.iter().map(|r| c.record(*r)).collect()
    }

    #[test]
    fn script_first_result_decides() {
        let mut c = ScriptCounter::new(3, 2, false);
        assert_eq!(c.status(), Status::Init);
        assert_eq!(c.record(true), Some(Status::Up));
        let mut c = ScriptCounter::new(3, 2, false);
        assert_eq!(c.record(false), Some(Status::Down));
    }

    #[test]
    fn script_rise_and_fall() {
        use Status::*;
        let mut c = ScriptCounter::new(2, 3, false);
        assert_eq!(c.record(true), Some(Up));
        // fall 3: two failures keep it up, the third brings it down.
        assert_eq!(
            run(&mut c, &[false, false, false]),
            [None, None, Some(Down)]
        );
        // rise 2.
        assert_eq!(run(&mut c, &[true, true]), [None, Some(Up)]);
        // A success in between restarts the fall count.
        assert_eq!(
            run(&mut c, &[false, false, true, false, false, false]),
            [None, None, None, None, None, Some(Down)]
        );
        // A failure in between restarts the rise count.
        assert_eq!(
            run(&mut c, &[true, false, true, true]),
            [None, None, None, Some(Up)]
        );
    }

    #[test]
    fn script_resumed_after_a_reload() {
        let mut c = ScriptCounter::resume(2, 2, Status::Up);
        assert_eq!(c.status(), Status::Up);
        assert_eq!(run(&mut c, &[false, false]), [None, Some(Status::Down)]);
        let mut c = ScriptCounter::resume(2, 2, Status::Down);
        assert_eq!(run(&mut c, &[true, true]), [None, Some(Status::Up)]);
    }

    #[test]
    fn script_init_fail_is_down_until_rise_successes() {
        let mut c = ScriptCounter::new(2, 1, true);
        assert_eq!(c.status(), Status::Down);
        assert_eq!(c.record(false), None);
        assert_eq!(run(&mut c, &[true, true]), [None, Some(Status::Up)]);
        assert_eq!(c.record(false), Some(Status::Down));
    }

    fn t(kind: Kind, weight: i32, reverse: bool) -> Tracked {
        Tracked {
            kind,
            name: "x".into(),
            weight,
            reverse,
        }
    }

    fn states(s: Status) -> TrackStates {
        let mut st = TrackStates::default();
        st.scripts.insert("x".into(), s);
        st.processes.insert("x".into(), s);
        st
    }

    #[test]
    fn weights_as_keepalived() {
        use Status::*;
        let d = |k, w, r, s| t(k, w, r).effect(&states(s));
        for k in [Kind::Script, Kind::Process] {
            assert_eq!(d(k, 10, false, Up), Effect::Delta(10));
            assert_eq!(d(k, 10, false, Down), Effect::Delta(0));
            assert_eq!(d(k, -10, false, Up), Effect::Delta(0));
            assert_eq!(d(k, -10, false, Down), Effect::Delta(-10));
            // reverse: success lowers, failure raises.
            assert_eq!(d(k, 10, true, Up), Effect::Delta(-10));
            assert_eq!(d(k, 10, true, Down), Effect::Delta(0));
            assert_eq!(d(k, -10, true, Down), Effect::Delta(10));
            assert_eq!(d(k, -10, true, Up), Effect::Delta(0));
            assert!(matches!(d(k, 0, false, Down), Effect::Fault(_)));
            assert_eq!(d(k, 0, false, Up), Effect::Delta(0));
            assert!(matches!(d(k, 0, true, Up), Effect::Fault(_)));
            assert_eq!(d(k, 0, true, Down), Effect::Delta(0));
            assert!(matches!(d(k, 0, false, Init), Effect::Wait(_)));
            assert_eq!(d(k, -10, false, Init), Effect::Delta(0));
        }
    }

    #[test]
    fn reports_say_state_and_effect() {
        let r = |k, w, st: &TrackStates| {
            let rep = t(k, w, false).report(st);
            (rep.object, rep.state, rep.effect)
        };
        let s = |a: &str, b: &str, c: &str| (a.to_string(), b.to_string(), c.to_string());
        assert_eq!(
            r(Kind::Script, 5, &states(Status::Up)),
            s("vrrp_script x", "up", "+5")
        );
        assert_eq!(
            r(Kind::Process, -20, &states(Status::Down)),
            s("vrrp_track_process x", "down", "-20")
        );
        assert_eq!(
            r(Kind::Script, 0, &states(Status::Down)),
            s("vrrp_script x", "down", "FAULT")
        );
        let none = TrackStates::default();
        assert_eq!(
            r(Kind::Script, 0, &none),
            s("vrrp_script x", "init", "INIT")
        );
        let mut file = TrackStates::default();
        file.files.insert("x".into(), -3);
        assert_eq!(r(Kind::File, 2, &file), s("vrrp_track_file x", "-3", "-6"));
    }

    #[test]
    fn file_value_times_weight() {
        let f = |w, r, v| {
            let mut st = TrackStates::default();
            st.files.insert("x".into(), v);
            t(Kind::File, w, r).effect(&st)
        };
        assert_eq!(f(1, false, 0), Effect::Delta(0));
        assert_eq!(f(1, false, -20), Effect::Delta(-20));
        assert_eq!(f(-2, false, 5), Effect::Delta(-10));
        assert_eq!(f(-2, true, 5), Effect::Delta(10));
        assert_eq!(f(10, false, 100), Effect::Delta(253));
        assert!(matches!(f(1, false, -254), Effect::Fault(_)));
        assert!(matches!(f(-1, false, 300), Effect::Fault(_)));
        // Weight 0: non-zero is FAULT; reversed, zero is.
        assert!(matches!(f(0, false, 3), Effect::Fault(_)));
        assert_eq!(f(0, false, 0), Effect::Delta(0));
        assert!(matches!(f(0, true, 0), Effect::Fault(_)));
        assert_eq!(f(0, true, 7), Effect::Delta(0));
        // A file never read counts as 0.
        assert_eq!(
            t(Kind::File, 5, false).effect(&TrackStates::default()),
            Effect::Delta(0)
        );
    }

    #[test]
    fn strtol_base_0() {
        assert_eq!(file_value("42\n"), Some(42));
        assert_eq!(file_value("  -17 junk"), Some(-17));
        assert_eq!(file_value("0x1f"), Some(31));
        assert_eq!(file_value("010"), Some(8));
        assert_eq!(file_value("0x"), Some(0));
        assert_eq!(file_value(""), Some(0));
        assert_eq!(file_value("abc"), Some(0));
        assert_eq!(file_value("+5"), Some(5));
        assert_eq!(file_value("99999999999"), None);
    }

    #[test]
    fn priority_clamped_owner_fixed() {
        assert_eq!(effective_priority(100, -20), 80);
        assert_eq!(effective_priority(100, -200), 1);
        assert_eq!(effective_priority(250, 20), 254);
        assert_eq!(effective_priority(255, -100), 255);
        let tracked = [t(Kind::Script, -30, false), t(Kind::Process, 0, false)];
        let e = evaluate(&tracked, &states(Status::Down));
        assert_eq!(e.delta, -30);
        assert!(e.fault.unwrap().contains("vrrp_track_process x is down"));
        assert!(e.wait.is_none());
    }

    #[test]
    fn quorum_delays() {
        let s = Duration::from_secs(1);
        let t0 = Instant::now();
        let mut q = Quorum::new(1, 2, 2 * s, 3 * s);
        assert_eq!(q.status(), Status::Init);
        assert_eq!(q.observe(t0, 1), Some(Status::Up));
        // Lost: counts after terminate_delay (3 s).
        assert_eq!(q.observe(t0 + s, 0), None);
        assert_eq!(q.deadline(), Some(t0 + 4 * s));
        assert_eq!(q.observe(t0 + 3 * s, 0), None);
        assert_eq!(q.observe(t0 + 4 * s, 0), Some(Status::Down));
        // Back briefly, then gone again: no change reported.
        assert_eq!(q.observe(t0 + 5 * s, 1), None);
        assert_eq!(q.observe(t0 + 6 * s, 0), None);
        assert_eq!(q.deadline(), None);
        // Above quorum_max is no quorum.
        let mut q = Quorum::new(1, 2, Duration::ZERO, Duration::ZERO);
        assert_eq!(q.observe(t0, 3), Some(Status::Down));
        assert_eq!(q.observe(t0, 2), Some(Status::Up));
    }

    #[test]
    fn process_patterns() {
        let p = |process: &str, args: Option<&[&str]>, m, full| ProcessPattern {
            process: process.into(),
            args: args.map(|a| a.iter().map(|s| s.to_string()).collect()),
            param_match: m,
            full_command: full,
        };
        let cmd = b"/usr/sbin/nginx\0-g\0daemon off;\0";
        assert!(p("nginx", None, None, false).matches("nginx", cmd));
        assert!(!p("nginx", None, None, false).matches("nginx-debug", cmd));
        assert!(p("a-very-long-process-name", None, None, false).matches("a-very-long-pro", b""));
        let full = p("/usr/sbin/nginx", None, None, true);
        assert!(full.matches("nginx", cmd));
        assert!(!full.matches("nginx", b"/usr/bin/nginx\0"));
        let no_args = p("/usr/sbin/nginx", None, Some(ParamMatch::Exact), true);
        assert!(!no_args.matches("nginx", cmd));
        assert!(no_args.matches("nginx", b"/usr/sbin/nginx\0"));
        let exact = p(
            "/usr/sbin/nginx",
            Some(&["-g", "daemon off;"]),
            Some(ParamMatch::Exact),
            true,
        );
        assert!(exact.matches("nginx", cmd));
        let partial = p(
            "/usr/sbin/nginx",
            Some(&["-g"]),
            Some(ParamMatch::Partial),
            true,
        );
        assert!(partial.matches("nginx", cmd));
        let exact_short = p(
            "/usr/sbin/nginx",
            Some(&["-g"]),
            Some(ParamMatch::Exact),
            true,
        );
        assert!(!exact_short.matches("nginx", cmd));
        let initial = p(
            "/usr/sbin/nginx",
            Some(&["-g", "dae"]),
            Some(ParamMatch::Initial),
            true,
        );
        assert!(initial.matches("nginx", cmd));
        let partial_cut = p(
            "/usr/sbin/nginx",
            Some(&["-g", "dae"]),
            Some(ParamMatch::Partial),
            true,
        );
        assert!(!partial_cut.matches("nginx", cmd));
    }
}
