//! Checkers: `TCP_CHECK`, `HTTP_GET`, `SSL_GET`, `MISC_CHECK`, with keepalived's defaults
//! (status 200-299, a script's timeout is the delay loop) and the service-level and real-server
//! level `connect_timeout` / `retry` / `delay_before_retry` / `delay_loop` defaults.

use std::net::IpAddr;

use crate::config::schema::{Check, CheckType};

use super::super::script::{self, Exec};
use super::{u, Node, Translator};

/// HTTP codes keepalived accepts without `status_code` (check_http.c).
pub(super) const DEFAULT_STATUS: std::ops::RangeInclusive<u16> = 200..=299;
/// Most check times xlb accepts (seconds).
const MAX_SECONDS: f64 = 3600.0;

/// Defaults a virtual server or real server gives its checkers.
#[derive(Clone, Debug, Default)]
pub(super) struct CheckDefaults {
    pub timeout: Option<f64>,
    pub retry: Option<u32>,
    pub delay_before_retry: Option<f64>,
    /// Real-server `delay_loop` (a virtual server's is its own `delay_loop`).
    pub interval: Option<f64>,
    /// A script's default timeout: the delay loop in force.
    pub script_timeout: f64,
}

impl CheckDefaults {
    /// `self`, with what it lacks from `outer`.
    pub fn over(&self, outer: &CheckDefaults) -> CheckDefaults {
        CheckDefaults {
            timeout: self.timeout.or(outer.timeout),
            retry: self.retry.or(outer.retry),
            delay_before_retry: self.delay_before_retry.or(outer.delay_before_retry),
            interval: self.interval.or(outer.interval),
            script_timeout: self.interval.unwrap_or(outer.script_timeout),
        }
    }
}

fn new_check(kind: CheckType, d: &CheckDefaults) -> Check {
    let timeout = match kind {
        CheckType::Script => d.script_timeout.min(MAX_SECONDS),
        _ => d.timeout.unwrap_or(5.0),
    };
    Check {
        kind: u(kind),
        interval: d.interval.map(u),
        timeout: u(timeout),
        rise: u(1),
        fall: u(1),
        retry: d.retry,
        delay_before_retry: d.delay_before_retry.map(u),
        connect_ip: None,
        connect_port: None,
        method: None,
        path: None,
        host: None,
        status_codes: None,
        body_regex: None,
        digest: None,
        tls_verify: false,
        ca_file: None,
        command: None,
        shell: false,
        dynamic: false,
        user: None,
    }
}

/// Words a shell would read as syntax, which keepalived passes to the program as arguments.
fn looks_like_shell(arg: &str) -> bool {
    matches!(
        arg,
        "|" | "||" | "&&" | ";" | "&" | "<" | ">" | ">>" | "&>" | "2>&1"
    ) || arg.starts_with(['>', '<', '|', ';', '&'])
        || arg.starts_with("2>")
        || arg.contains(['$', '`', '*'])
}

impl Translator {
    /// A service- or real-server-level checker default; `false` if `c` is none.
    pub(super) fn check_default(
        &mut self,
        c: &Node,
        d: &mut CheckDefaults,
        rs_level: bool,
    ) -> bool {
        match c.key() {
            "connect_timeout" => d.timeout = self.seconds(c, "connect_timeout", 0.01),
            "retry" => d.retry = self.val::<u32>(c, 1, "retry"),
            "delay_before_retry" => {
                d.delay_before_retry = self.seconds(c, "delay_before_retry", 0.0)
            }
            "delay_loop" if rs_level => d.interval = self.seconds(c, "delay_loop", 0.01),
            "warmup" => self.note(c, "warmup: not imported (xlb checks at once)"),
            _ => return false,
        }
        true
    }

    /// A time in seconds: keepalived accepts any positive value, xlb `min..=3600`.
    pub(super) fn seconds(&mut self, c: &Node, what: &str, min: f64) -> Option<f64> {
        self.bounded::<f64>(c, 1, what, 0.0..=f64::MAX, min..=MAX_SECONDS)
    }

    pub(super) fn checker(&mut self, n: &Node, d: &CheckDefaults) -> Option<Check> {
        let kind = match n.key() {
            "TCP_CHECK" => CheckType::Tcp,
            "HTTP_GET" => CheckType::Http,
            "SSL_GET" => CheckType::Https,
            _ => CheckType::Script,
        };
        let http = matches!(kind, CheckType::Http | CheckType::Https);
        let mut chk = new_check(kind, d);
        let mut urls = 0;
        for c in n.children() {
            match (c.key(), kind) {
                ("connect_timeout", _) => {
                    if let Some(t) = self.seconds(c, "connect_timeout", 0.01) {
                        chk.timeout = u(t);
                    }
                }
                ("misc_timeout", CheckType::Script) => {
                    if let Some(t) = self.seconds(c, "misc_timeout", 0.01) {
                        chk.timeout = u(t);
                    }
                }
                ("retry" | "nb_get_retry", _) => chk.retry = self.val::<u32>(c, 1, "retry"),
                ("delay_before_retry", _) => {
                    chk.delay_before_retry = self.seconds(c, "delay_before_retry", 0.0).map(u)
                }
                ("delay_loop", _) => chk.interval = self.seconds(c, "delay_loop", 0.01).map(u),
                ("connect_ip", _) => {
                    chk.connect_ip = self
                        .val::<IpAddr>(c, 1, "address")
                        .filter(|a| super::vrrp::is_unicast(*a))
                        .map(u)
                }
                ("connect_port", _) => {
                    chk.connect_port = self
                        .bounded::<u16>(c, 1, "connect_port", 1..=65535, 1..=65535)
                        .map(u)
                }
                ("url", _) if http => {
                    urls += 1;
                    if urls > 1 {
                        self.note(
                            c,
                            "a second url block: xlb checks one URL per real server; only the \
                             first is imported",
                        );
                    } else {
                        self.url(c, &mut chk);
                    }
                }
                ("virtualhost", _) if http => chk.host = self.host(c),
                ("enable_sni", CheckType::Https) => {}
                ("misc_path", CheckType::Script) => self.misc_path(c, &mut chk),
                ("misc_dynamic", CheckType::Script) => chk.dynamic = true,
                ("user", CheckType::Script) => {
                    chk.user = c.arg(1).filter(|s| !s.is_empty()).map(|s| u(s.to_string()));
                    if c.words.len() > 2 {
                        self.note(
                            c,
                            "user: the group is not imported (xlb uses the user's group)",
                        );
                    }
                }
                ("warmup", _) => self.note(c, "warmup: not imported (xlb checks at once)"),
                _ => self.unknown(c, n.key()),
            }
        }
        if http && chk.status_codes.is_none() {
            chk.status_codes = Some(u(DEFAULT_STATUS.collect()));
        }
        if kind == CheckType::Script && chk.command.is_none() {
            self.note(
                n,
                "MISC_CHECK without a usable misc_path: keepalived drops it; not imported",
            );
            return None;
        }
        Some(chk)
    }

    fn host(&mut self, c: &Node) -> Option<serde_spanned::Spanned<String>> {
        let h = c.arg(1)?;
        if h.is_empty()
            || h.chars()
                .any(|ch| ch.is_whitespace() || ch.is_control() || ch == '/')
        {
            self.note(
                c,
                format!("virtualhost `{h}`: not a host name; not imported"),
            );
            return None;
        }
        Some(u(h.to_string()))
    }

    /// keepalived execs `misc_path` itself (see [`script`]): the same argv, no shell.
    fn misc_path(&mut self, c: &Node, chk: &mut crate::config::schema::Check) {
        let s = match script::parse_line(&c.text, false) {
            Ok(s) => s,
            Err(e) => return self.script_error(c, "misc_path", &e),
        };
        if !s.ignored.is_empty() {
            self.note(
                c,
                format!(
                    "misc_path: keepalived runs only the first word of an unquoted command; `{}` \
                     ignored as keepalived does (quote the whole command to pass arguments)",
                    s.ignored.join(" ")
                ),
            );
        }
        match script::exec_form(&s.argv) {
            Exec::Direct(argv) => {
                let shellish: Vec<&str> = argv[1..]
                    .iter()
                    .map(String::as_str)
                    .filter(|a| looks_like_shell(a))
                    .collect();
                if !shellish.is_empty() {
                    self.note(
                        c,
                        format!(
                            "misc_path: keepalived runs {} without a shell, so `{}` reach it as \
                             plain arguments (no pipe, redirection or variable); imported the \
                             same way (shell = false). If a shell was meant, write the command as \
                             [\"/bin/sh\", \"-c\", \"...\"] here and in keepalived",
                            argv[0],
                            shellish.join(" ")
                        ),
                    );
                }
                chk.command = Some(u(argv));
                chk.shell = false;
            }
            Exec::Shell(text) => {
                self.note(
                    c,
                    "misc_path starting with `<`: keepalived runs it with /bin/sh (a file test); \
                     imported as shell = true",
                );
                chk.command = Some(u(vec![text]));
                chk.shell = true;
            }
        }
    }

    fn url(&mut self, n: &Node, chk: &mut Check) {
        let mut codes: Vec<u16> = Vec::new();
        for c in n.children() {
            match c.key() {
                "path" => match c.arg(1) {
                    Some(p) if p.starts_with('/') && !p.chars().any(char::is_whitespace) => {
                        chk.path = Some(u(p.to_string()))
                    }
                    other => self.note(
                        c,
                        format!("url path `{}`: not an absolute request path; `/` used", other.unwrap_or("")),
                    ),
                },
                "digest" => match c.arg(1) {
                    Some(d) if d.len() == 32 && d.chars().all(|ch| ch.is_ascii_hexdigit()) => {
                        chk.digest = Some(u(d.to_ascii_lowercase()))
                    }
                    other => self.note(c, format!("digest `{}`: not 32 hex digits; not imported", other.unwrap_or(""))),
                },
                "status_code" => {
                    for w in &c.words[1..] {
                        let r = match w.split_once('-') {
                            Some((a, b)) => a.parse::<u16>().ok().zip(b.parse::<u16>().ok()),
                            None => w.parse::<u16>().ok().map(|a| (a, a)),
                        };
                        match r {
                            Some((a, b)) if a <= b && a >= 100 && b <= 599 => {
                                for x in a..=b {
                                    if !codes.contains(&x) {
                                        codes.push(x);
                                    }
                                }
                            }
                            _ => self.note(c, format!("status_code `{w}`: not a code or range in 100..=599; ignored")),
                        }
                    }
                }
                "regex" => match c.arg(1) {
                    Some(r) if regex::Regex::new(r).is_ok() => {
                        self.note(
                            c,
                            "url regex: imported as body_regex (Rust regex syntax, close to but not \
                             POSIX ERE: check it)",
                        );
                        chk.body_regex = Some(u(r.to_string()));
                    }
                    other => self.note(
                        c,
                        format!("url regex `{}`: not a valid Rust regex; not imported: rewrite it as body_regex", other.unwrap_or("")),
                    ),
                },
                _ => self.unknown(c, "url"),
            }
        }
        if !codes.is_empty() {
            chk.status_codes = Some(u(codes));
        }
    }
}
