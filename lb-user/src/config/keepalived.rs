//! `xlb import-keepalived`: keepalived.conf -> [`Config`].
//!
//! keepalived's format is line oriented: a statement is the words of one line; a `{` (on the
//! same line or the next) opens a block of statements closed by `}`; `#` and `!` start comments;
//! double quotes group words; `include GLOB` (relative to the including file) splices files in.
//! No crate parses it (it is neither TOML, nor nginx, nor a shell), so this module has a small
//! tokenizer ([`tokenize`]) and block-tree parser ([`parse_tree`]), then translates the tree.
//!
//! Everything without an xlb equivalent (lb_kind NAT/TUN, unknown keywords, a second `url`, ...)
//! becomes a note with its `file:line`; nothing is dropped silently.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use serde_spanned::Spanned;

use super::schema::*;
use super::types::IpPrefix;

// ---------------------------------------------------------------------------------------------
// Tokens and tree

/// A token with its line (1-based).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tok {
    pub text: String,
    pub line: usize,
    /// Was quoted (so `{` in quotes is a word).
    pub quoted: bool,
}

/// Splits keepalived text into tokens: words, quoted strings (quotes removed), `{` and `}`.
pub fn tokenize(src: &str) -> Vec<Tok> {
    let mut out = Vec::new();
    for (n, line) in src.lines().enumerate() {
        let line_no = n + 1;
        let mut chars = line.chars().peekable();
        let mut cur = String::new();
        let flush = |cur: &mut String, out: &mut Vec<Tok>| {
            if !cur.is_empty() {
                out.push(Tok {
                    text: std::mem::take(cur),
                    line: line_no,
                    quoted: false,
                });
            }
        };
        while let Some(c) = chars.next() {
            match c {
                '#' | '!' if cur.is_empty() => break,
                '"' => {
                    flush(&mut cur, &mut out);
                    let mut q = String::new();
                    for d in chars.by_ref() {
                        if d == '"' {
                            break;
                        }
                        q.push(d);
                    }
                    out.push(Tok {
                        text: q,
                        line: line_no,
                        quoted: true,
                    });
                }
                '{' | '}' => {
                    flush(&mut cur, &mut out);
                    out.push(Tok {
                        text: c.to_string(),
                        line: line_no,
                        quoted: false,
                    });
                }
                c if c.is_whitespace() => flush(&mut cur, &mut out),
                c => cur.push(c),
            }
        }
        flush(&mut cur, &mut out);
    }
    out
}

/// A statement: its words, where it is, and its block (if it has one).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    pub words: Vec<String>,
    /// `file:line`.
    pub loc: String,
    pub block: Option<Vec<Node>>,
}

impl Node {
    fn key(&self) -> &str {
        self.words.first().map_or("", String::as_str)
    }
    fn arg(&self, i: usize) -> Option<&str> {
        self.words.get(i).map(String::as_str)
    }
    fn children(&self) -> &[Node] {
        self.block.as_deref().unwrap_or(&[])
    }
}

fn is_brace(t: &Tok, b: &str) -> bool {
    !t.quoted && t.text == b
}

/// Parses the tokens of `file` into statements; `include` statements are replaced by the
/// statements of the files they name (`notes` receives unmatched braces and empty includes).
pub fn parse_tree(toks: &[Tok], file: &Path, notes: &mut Vec<String>, depth: u32) -> Vec<Node> {
    let mut i = 0;
    let nodes = parse_block(toks, &mut i, file, notes, depth);
    if i < toks.len() {
        notes.push(format!(
            "{}:{}: unmatched `}}`; the rest of the file is ignored",
            file.display(),
            toks[i].line
        ));
    }
    nodes
}

fn parse_block(
    toks: &[Tok],
    i: &mut usize,
    file: &Path,
    notes: &mut Vec<String>,
    depth: u32,
) -> Vec<Node> {
    let mut out = Vec::new();
    while *i < toks.len() {
        let t = &toks[*i];
        if is_brace(t, "}") {
            return out;
        }
        let line = t.line;
        let loc = format!("{}:{line}", file.display());
        let mut words = Vec::new();
        while *i < toks.len()
            && toks[*i].line == line
            && !is_brace(&toks[*i], "{")
            && !is_brace(&toks[*i], "}")
        {
            words.push(toks[*i].text.clone());
            *i += 1;
        }
        let mut block = None;
        if *i < toks.len() && is_brace(&toks[*i], "{") {
            *i += 1;
            let children = parse_block(toks, i, file, notes, depth);
            if *i < toks.len() {
                *i += 1; // the closing brace
            } else {
                notes.push(format!(
                    "{loc}: block not closed by `}}` before the end of the file"
                ));
            }
            block = Some(children);
        }
        if words.is_empty() {
            if block.is_some() {
                notes.push(format!("{loc}: a block without a keyword is ignored"));
            }
            continue;
        }
        if words[0] == "include" && block.is_none() {
            out.extend(include(&words[1..], file, &loc, notes, depth));
            continue;
        }
        out.push(Node { words, loc, block });
    }
    out
}

fn include(
    patterns: &[String],
    file: &Path,
    loc: &str,
    notes: &mut Vec<String>,
    depth: u32,
) -> Vec<Node> {
    if depth >= 16 {
        notes.push(format!(
            "{loc}: includes nested too deeply (a loop?): ignored"
        ));
        return vec![];
    }
    let base = file.parent().unwrap_or(Path::new("."));
    let mut out = Vec::new();
    for pat in patterns {
        let full = if Path::new(pat).is_absolute() {
            PathBuf::from(pat)
        } else {
            base.join(pat)
        };
        let files = glob(&full);
        if files.is_empty() {
            notes.push(format!("{loc}: `include {pat}` matches no file"));
        }
        for f in files {
            match std::fs::read_to_string(&f) {
                Ok(src) => out.extend(parse_tree(&tokenize(&src), &f, notes, depth + 1)),
                Err(e) => notes.push(format!("{loc}: cannot read {}: {e}", f.display())),
            }
        }
    }
    out
}

/// Expands `*`, `?` and `[...]` in every component of `pattern`; sorted, files only.
pub fn glob(pattern: &Path) -> Vec<PathBuf> {
    let mut cur = vec![PathBuf::new()];
    for comp in pattern.components() {
        let s = comp.as_os_str().to_string_lossy();
        let wild = s.contains(['*', '?', '[']);
        let mut next = Vec::new();
        for base in &cur {
            if !wild {
                next.push(base.join(comp.as_os_str()));
                continue;
            }
            let dir = if base.as_os_str().is_empty() {
                Path::new(".")
            } else {
                base.as_path()
            };
            let mut names: Vec<String> = std::fs::read_dir(dir)
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| !n.starts_with('.') && fnmatch(&s, n))
                .collect();
            names.sort();
            next.extend(names.into_iter().map(|n| base.join(n)));
        }
        cur = next;
    }
    cur.into_iter().filter(|p| p.is_file()).collect()
}

/// Shell-style wildcard match (`*`, `?`, `[abc]`, `[a-z]`, `[!x]`).
pub fn fnmatch(pat: &str, name: &str) -> bool {
    let p: Vec<char> = pat.chars().collect();
    let n: Vec<char> = name.chars().collect();
    fn go(p: &[char], n: &[char]) -> bool {
        match p.first() {
            None => n.is_empty(),
            Some('*') => (0..=n.len()).any(|k| go(&p[1..], &n[k..])),
            Some('?') => !n.is_empty() && go(&p[1..], &n[1..]),
            Some('[') => {
                let Some(end) = p.iter().skip(2).position(|c| *c == ']').map(|e| e + 2) else {
                    return n.first() == Some(&'[') && go(&p[1..], &n[1..]);
                };
                let Some(&c) = n.first() else { return false };
                let (neg, set) = match p[1] {
                    '!' | '^' => (true, &p[2..end]),
                    _ => (false, &p[1..end]),
                };
                let mut hit = false;
                let mut k = 0;
                while k < set.len() {
                    if k + 2 < set.len() && set[k + 1] == '-' {
                        hit |= set[k] <= c && c <= set[k + 2];
                        k += 3;
                    } else {
                        hit |= set[k] == c;
                        k += 1;
                    }
                }
                hit != neg && go(&p[end + 1..], &n[1..])
            }
            Some(c) => n.first() == Some(c) && go(&p[1..], &n[1..]),
        }
    }
    go(&p, &n)
}

/// Splits a command line as a POSIX shell would (quotes, backslashes; no expansion). `None` on
/// an unterminated quote.
pub fn shell_split(s: &str) -> Option<Vec<String>> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut it = s.chars();
    while let Some(c) = it.next() {
        match c {
            '\'' => {
                in_word = true;
                loop {
                    match it.next()? {
                        '\'' => break,
                        d => cur.push(d),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match it.next()? {
                        '"' => break,
                        '\\' => {
                            let d = it.next()?;
                            if !matches!(d, '"' | '\\' | '$' | '`') {
                                cur.push('\\');
                            }
                            cur.push(d);
                        }
                        d => cur.push(d),
                    }
                }
            }
            '\\' => {
                in_word = true;
                if let Some(d) = it.next() {
                    cur.push(d);
                }
            }
            c if c.is_whitespace() => {
                if in_word {
                    out.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            c => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        out.push(cur);
    }
    Some(out)
}

// ---------------------------------------------------------------------------------------------
// Translation

/// The result of an import.
#[derive(Clone, Debug)]
pub struct Imported {
    pub config: Config,
    /// What could not be translated as is, each with `file:line`.
    pub notes: Vec<String>,
    /// The source file name (for the header).
    pub source: String,
}

impl Imported {
    /// The TOML text: a header comment with the notes, then the configuration.
    pub fn to_toml(&self) -> Result<String> {
        let mut s = format!(
            "# Generated by `xlb import-keepalived {}`.\n# Review before use",
            self.source
        );
        if self.notes.is_empty() {
            s += ": everything was translated.\n";
        } else {
            s += &format!(
                ": {} note(s) on what was not translated as is:\n",
                self.notes.len()
            );
            for n in &self.notes {
                for (k, l) in n.lines().enumerate() {
                    s += if k == 0 { "#  - " } else { "#    " };
                    s += l;
                    s += "\n";
                }
            }
        }
        s += "\n";
        s += &toml::to_string_pretty(&self.config).context("serializing the configuration")?;
        Ok(s)
    }
}

/// Imports the keepalived configuration at `path` (following its includes).
pub fn import_file(path: &Path) -> Result<Imported> {
    let src =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(import_str(&src, path))
}

/// Imports keepalived text; `path` names it in notes and anchors relative includes.
pub fn import_str(src: &str, path: &Path) -> Imported {
    let mut notes = Vec::new();
    let tree = parse_tree(&tokenize(src), path, &mut notes, 0);
    let mut t = Translator {
        notes,
        router_id: None,
        default_version: None,
        vrrp: Vec::new(),
        groups: Vec::new(),
        vs: Vec::new(),
    };
    for n in &tree {
        t.top(n);
    }
    let config = t.finish();
    Imported {
        config,
        notes: t.notes,
        source: path.display().to_string(),
    }
}

struct Translator {
    notes: Vec<String>,
    router_id: Option<String>,
    default_version: Option<u8>,
    vrrp: Vec<VrrpInstance>,
    groups: Vec<VrrpSyncGroup>,
    vs: Vec<VirtualServer>,
}

fn u<T>(v: T) -> Spanned<T> {
    unspanned(v)
}

impl Translator {
    fn note(&mut self, n: &Node, msg: impl AsRef<str>) {
        self.notes.push(format!("{}: {}", n.loc, msg.as_ref()));
    }

    fn unknown(&mut self, n: &Node, ctx: &str) {
        let what = if n.block.is_some() { " block" } else { "" };
        self.note(
            n,
            format!(
                "`{}`{what} in {ctx}: no xlb equivalent, not imported",
                n.words.join(" ")
            ),
        );
    }

    /// The argument `i` parsed as `T`, or a note.
    fn val<T: std::str::FromStr>(&mut self, n: &Node, i: usize, what: &str) -> Option<T> {
        match n.arg(i).map(str::parse::<T>) {
            Some(Ok(v)) => Some(v),
            Some(Err(_)) => {
                self.note(
                    n,
                    format!("`{}`: invalid {what}, not imported", n.words.join(" ")),
                );
                None
            }
            None => {
                self.note(n, format!("`{}`: missing {what}, not imported", n.key()));
                None
            }
        }
    }

    fn top(&mut self, n: &Node) {
        match n.key() {
            "global_defs" => {
                for c in n.children() {
                    self.global(c);
                }
            }
            "vrrp_instance" => self.vrrp_instance(n),
            "vrrp_sync_group" => self.sync_group(n),
            "virtual_server" => self.virtual_server(n),
            "vrrp_script" => self.note(
                n,
                "vrrp_script: not imported; xlb tracks its own virtual servers (`track_service`, \
                 `track_service_weight` on the vrrp_instance) instead of scripts",
            ),
            "virtual_server_group" => self.note(
                n,
                "virtual_server_group: no equivalent; list each VIP as its own virtual_server",
            ),
            _ => self.unknown(n, "the top level"),
        }
    }

    fn global(&mut self, n: &Node) {
        match n.key() {
            "router_id" | "lvs_id" => self.router_id = n.arg(1).map(String::from),
            "vrrp_version" => self.default_version = self.val(n, 1, "VRRP version"),
            "notification_email"
            | "notification_email_from"
            | "smtp_server"
            | "smtp_connect_timeout"
            | "smtp_alert" => self.note(
                n,
                format!(
                    "global_defs {}: xlb sends no mail; use notify_* programs",
                    n.key()
                ),
            ),
            _ => self.unknown(n, "global_defs"),
        }
    }

    fn command(&mut self, n: &Node, ctx: &str) -> Option<Spanned<Vec<String>>> {
        let line = n.words[1..].join(" ");
        match shell_split(&line) {
            Some(v) if !v.is_empty() => Some(u(v)),
            _ => {
                self.note(
                    n,
                    format!("{ctx} `{line}`: cannot split into a command, not imported"),
                );
                None
            }
        }
    }

    fn vrrp_instance(&mut self, n: &Node) {
        let Some(name) = n.arg(1).map(String::from) else {
            self.note(n, "vrrp_instance without a name: not imported");
            return;
        };
        let mut state = None;
        let mut interface = None;
        let mut vrid = None;
        let mut vi = VrrpInstance {
            name: u(name.clone()),
            state: u(VrrpState::Backup),
            interface: u(String::new()),
            virtual_router_id: u(0),
            priority: u(100),
            advert_int: u(1.0),
            version: u(self.default_version.unwrap_or(2)),
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
        };
        let ctx = format!("vrrp_instance {name}");
        for c in n.children() {
            match c.key() {
                "state" => match c.arg(1).map(str::to_ascii_uppercase).as_deref() {
                    Some("MASTER") => state = Some(VrrpState::Master),
                    Some("BACKUP") => state = Some(VrrpState::Backup),
                    _ => self.note(c, "state: expected MASTER or BACKUP; BACKUP assumed"),
                },
                "interface" => interface = c.arg(1).map(String::from),
                "virtual_router_id" => vrid = self.val::<u8>(c, 1, "virtual_router_id"),
                "priority" => {
                    if let Some(p) = self.val::<u8>(c, 1, "priority") {
                        vi.priority = u(p);
                    }
                }
                "advert_int" => {
                    if let Some(a) = self.val::<f64>(c, 1, "advert_int") {
                        vi.advert_int = u(a);
                    }
                }
                "version" => {
                    if let Some(v) = self.val::<u8>(c, 1, "version") {
                        vi.version = u(v);
                    }
                }
                "authentication" => vi.authentication = self.authentication(c),
                "virtual_ipaddress" => {
                    let mut vips = vec![];
                    for a in c.children() {
                        if let Some(p) = self.vip(a, &interface) {
                            vips.push(u(p));
                        }
                    }
                    vi.virtual_ipaddress = u(vips);
                }
                "virtual_ipaddress_excluded" | "virtual_routes" | "virtual_rules" => self.note(
                    c,
                    format!(
                        "{}: not imported (xlb only manages the VIPs of virtual_ipaddress)",
                        c.key()
                    ),
                ),
                "unicast_src_ip" => vi.unicast_src_ip = self.val::<IpAddr>(c, 1, "address").map(u),
                "unicast_peer" => {
                    for p in c.children() {
                        if let Some(a) = self.val::<IpAddr>(p, 0, "peer address") {
                            vi.unicast_peer.push(u(a));
                        }
                        if p.words.len() > 1 {
                            self.note(
                                p,
                                "unicast_peer options (min_ttl, max_ttl) are not imported",
                            );
                        }
                    }
                }
                "nopreempt" => vi.nopreempt = u(true),
                "preempt" => vi.nopreempt = u(false),
                "preempt_delay" => {
                    if let Some(d) = self.val::<f64>(c, 1, "preempt_delay") {
                        vi.preempt_delay = u(d);
                    }
                }
                "garp_master_delay" => {
                    if let Some(d) = self.val::<f64>(c, 1, "garp_master_delay") {
                        vi.garp_master_delay = u(d);
                    }
                }
                "garp_master_repeat" => {
                    if let Some(r) = self.val::<u32>(c, 1, "garp_master_repeat") {
                        vi.garp_master_repeat = r;
                    }
                }
                "track_interface" => {
                    for t in c.children() {
                        vi.track_interface.push(u(t.key().to_string()));
                        if t.words.len() > 1 {
                            self.note(
                                t,
                                "track_interface weight: not imported (a tracked interface going \
                                 down always means FAULT in xlb)",
                            );
                        }
                    }
                }
                "track_script" => self.note(
                    c,
                    "track_script: not imported; use track_service (+ track_service_weight) on \
                     the xlb virtual servers the script was checking",
                ),
                "notify_master" => vi.notify_master = self.command(c, "notify_master"),
                "notify_backup" => vi.notify_backup = self.command(c, "notify_backup"),
                "notify_fault" => vi.notify_fault = self.command(c, "notify_fault"),
                "notify_stop" | "notify" => self.note(
                    c,
                    format!(
                        "{}: no equivalent (xlb has notify_master/backup/fault)",
                        c.key()
                    ),
                ),
                _ => self.unknown(c, &ctx),
            }
        }
        match state {
            Some(s) => vi.state = u(s),
            None => self.note(n, format!("{ctx}: no `state`: BACKUP assumed")),
        }
        match interface {
            Some(i) => vi.interface = u(i),
            None => {
                self.note(n, format!("{ctx}: no `interface`: set it (eth0 written)"));
                vi.interface = u("eth0".into());
            }
        }
        match vrid {
            Some(v) => vi.virtual_router_id = u(v),
            None => {
                self.note(
                    n,
                    format!("{ctx}: no valid `virtual_router_id`: set it (1 written)"),
                );
                vi.virtual_router_id = u(1);
            }
        }
        if vi
            .virtual_ipaddress
            .get_ref()
            .iter()
            .any(|p| p.get_ref().addr.is_ipv6())
            && *vi.version.get_ref() == 2
        {
            self.note(
                n,
                format!("{ctx}: IPv6 VIPs need VRRPv3: version = 3 written"),
            );
            vi.version = u(3);
            if vi.authentication.take().is_some() {
                self.note(
                    n,
                    format!("{ctx}: authentication dropped (not part of VRRPv3)"),
                );
            }
        }
        self.vrrp.push(vi);
    }

    fn authentication(&mut self, n: &Node) -> Option<Spanned<Authentication>> {
        // Children are `auth_type X` / `auth_pass Y`, possibly all on one line.
        let words: Vec<String> = n.children().iter().flat_map(|c| c.words.clone()).collect();
        let mut kind = None;
        let mut pass = None;
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
            (Some("PASS"), Some(mut p)) => {
                if p.chars().count() > 8 {
                    self.note(
                        n,
                        "auth_pass longer than 8 characters: keepalived uses the first 8; \
                         truncated to them",
                    );
                    p = p.chars().take(8).collect();
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
            Ok(p) => p,
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

    fn sync_group(&mut self, n: &Node) {
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
        self.groups.push(VrrpSyncGroup {
            name: u(name),
            group: u(members),
        });
    }

    fn virtual_server(&mut self, n: &Node) {
        let (vip, port) = match (n.arg(1), n.arg(2)) {
            (Some("fwmark"), _) | (Some("group"), _) => {
                self.note(
                    n,
                    format!(
                        "`virtual_server {}`: fwmark and group services have no equivalent; \
                         not imported (list each VIP and port as its own virtual_server)",
                        n.words[1..].join(" ")
                    ),
                );
                return;
            }
            (Some(a), Some(p)) => match (a.parse::<IpAddr>(), p.parse::<u16>()) {
                (Ok(a), Ok(p)) => (a, p),
                _ => {
                    self.note(n, "virtual_server: expected `IP PORT`; not imported");
                    return;
                }
            },
            _ => {
                self.note(n, "virtual_server: expected `IP PORT`; not imported");
                return;
            }
        };
        let ctx = format!("virtual_server {vip} {port}");
        let mut vs = VirtualServer {
            name: None,
            vip: u(vip),
            port: u(port),
            protocol: Protocol::Tcp,
            scheduler: Scheduler::Maglev,
            maglev_table_size: u(65_537),
            persistence_timeout: u(0),
            sorry_server: None,
            sorry_server_mac: None,
            quorum: 1,
            hysteresis: u(0),
            delay_loop: u(6.0),
            alpha: false,
            inhibit_on_failure: false,
            announce: None,
            check: None,
            real_servers: vec![],
        };
        let mut virtualhost = None;
        let mut lb_algo_seen = false;
        for c in n.children() {
            match c.key() {
                "delay_loop" => {
                    if let Some(d) = self.val::<f64>(c, 1, "delay_loop") {
                        vs.delay_loop = u(d);
                    }
                }
                "lb_algo" | "lvs_sched" => {
                    lb_algo_seen = true;
                    let a = c.arg(1).unwrap_or("").to_ascii_lowercase();
                    vs.scheduler = match a.as_str() {
                        "rr" => Scheduler::RoundRobin,
                        "wrr" => Scheduler::WeightedRoundRobin,
                        "sh" => Scheduler::SourceHash,
                        "mh" => Scheduler::Maglev,
                        other => {
                            self.note(
                                c,
                                format!(
                                    "lb_algo {other}: connection-counting and other IPVS \
                                     schedulers cannot work across directors (each must pick \
                                     the same server for a flow by itself): maglev (consistent \
                                     hashing, weighted) used instead"
                                ),
                            );
                            Scheduler::Maglev
                        }
                    };
                }
                "lb_kind" | "lvs_method" => {
                    let k = c.arg(1).unwrap_or("").to_ascii_uppercase();
                    if k != "DR" {
                        self.note(
                            c,
                            format!(
                                "lb_kind {k}: xlb only does direct routing (DR); imported as DR. \
                                 The real servers must then hold the VIP on lo with ARP \
                                 silenced (`xlb realserver up --vip {vip}`), answer clients \
                                 directly, and serve on the virtual server's port"
                            ),
                        );
                    }
                }
                "protocol" => match c.arg(1).map(str::to_ascii_uppercase).as_deref() {
                    Some("TCP") => vs.protocol = Protocol::Tcp,
                    Some("UDP") => vs.protocol = Protocol::Udp,
                    other => self.note(
                        c,
                        format!(
                            "protocol {}: not supported; TCP written",
                            other.unwrap_or("")
                        ),
                    ),
                },
                "persistence_timeout" => {
                    let t = if c.words.len() > 1 {
                        self.val::<u32>(c, 1, "persistence_timeout")
                    } else {
                        Some(360)
                    };
                    if let Some(t) = t {
                        vs.persistence_timeout = u(t);
                    }
                }
                "sorry_server" => {
                    if let Some(a) = self.val::<IpAddr>(c, 1, "sorry_server address") {
                        vs.sorry_server = Some(u(a));
                        if c.arg(2).is_some_and(|p| p != port.to_string()) {
                            self.note(
                                c,
                                "sorry_server port differs from the service port: direct \
                                 routing keeps the port; the sorry server must listen on the \
                                 service port",
                            );
                        }
                    }
                }
                "quorum" => {
                    if let Some(q) = self.val::<u32>(c, 1, "quorum") {
                        vs.quorum = q;
                    }
                }
                "hysteresis" => {
                    if let Some(h) = self.val::<u32>(c, 1, "hysteresis") {
                        vs.hysteresis = u(h);
                    }
                }
                "alpha" => vs.alpha = true,
                "inhibit_on_failure" => vs.inhibit_on_failure = true,
                "virtualhost" => virtualhost = c.arg(1).map(String::from),
                "real_server" => {
                    if let Some(rs) = self.real_server(c, port) {
                        vs.real_servers.push(rs);
                    }
                }
                "omega"
                | "ha_suspend"
                | "persistence_granularity"
                | "quorum_up"
                | "quorum_down"
                | "sorry_server_inhibit"
                | "sorry_server_lvs_method"
                | "ops" => self.note(
                    c,
                    format!("{}: no equivalent in xlb, not imported", c.words.join(" ")),
                ),
                _ => self.unknown(c, &ctx),
            }
        }
        if !lb_algo_seen {
            self.note(
                n,
                format!(
                    "{ctx}: no lb_algo (keepalived default wlc): maglev used (connection \
                     counting cannot work across directors)"
                ),
            );
        }
        if let Some(h) = virtualhost {
            for rs in &mut vs.real_servers {
                if let Some(chk) = &mut rs.check {
                    if matches!(chk.kind.get_ref(), CheckType::Http | CheckType::Https)
                        && chk.host.is_none()
                    {
                        chk.host = Some(u(h.clone()));
                    }
                }
            }
        }
        // The same check on every real server is written once, on the virtual server.
        if let Some(first) = vs.real_servers.first().and_then(|r| r.check.clone()) {
            if vs.real_servers.len() > 1
                && vs
                    .real_servers
                    .iter()
                    .all(|r| r.check.as_ref() == Some(&first))
            {
                vs.check = Some(first);
                for rs in &mut vs.real_servers {
                    rs.check = None;
                }
            }
        }
        self.vs.push(vs);
    }

    fn real_server(&mut self, n: &Node, vport: u16) -> Option<RealServer> {
        let addr = self.val::<IpAddr>(n, 1, "real_server address")?;
        let mut rs = RealServer {
            address: u(addr),
            port: None,
            weight: u(1),
            mac: None,
            interface: None,
            notify_up: None,
            notify_down: None,
            check: None,
        };
        if let Some(p) = n.arg(2) {
            match p.parse::<u16>() {
                Ok(p) if p == vport || vport == 0 => {
                    if vport == 0 {
                        rs.port = Some(u(p));
                    }
                }
                Ok(p) => self.note(
                    n,
                    format!(
                        "real_server {addr} port {p} differs from the virtual server port \
                         {vport}: direct routing cannot change ports; imported without a port \
                         (map the port on the real server, e.g. iptables REDIRECT, as the field \
                         deployments did)"
                    ),
                ),
                Err(_) => self.note(n, format!("real_server {addr}: invalid port `{p}`")),
            }
        }
        let ctx = format!("real_server {addr}");
        for c in n.children() {
            match c.key() {
                "weight" => {
                    if let Some(w) = self.val::<u32>(c, 1, "weight") {
                        rs.weight = u(w);
                    }
                }
                "notify_up" => rs.notify_up = self.command(c, "notify_up"),
                "notify_down" => rs.notify_down = self.command(c, "notify_down"),
                "inhibit_on_failure" => self.note(
                    c,
                    "inhibit_on_failure on a real server: xlb sets it per virtual server; set \
                     `inhibit_on_failure = true` there if wanted",
                ),
                "TCP_CHECK" | "HTTP_GET" | "SSL_GET" | "MISC_CHECK" => {
                    if rs.check.is_some() {
                        self.note(
                            c,
                            format!(
                                "{}: a second checker on {addr}; xlb has one check per real \
                                 server, only the first is imported",
                                c.key()
                            ),
                        );
                    } else {
                        rs.check = self.checker(c);
                    }
                }
                "DNS_CHECK" | "SMTP_CHECK" | "BFD_CHECK" | "UDP_CHECK" | "PING_CHECK"
                | "FILE_CHECK" => self.note(
                    c,
                    format!(
                        "{}: no equivalent checker in xlb; use a MISC_CHECK-style script check",
                        c.key()
                    ),
                ),
                _ => self.unknown(c, &ctx),
            }
        }
        Some(rs)
    }

    fn checker(&mut self, n: &Node) -> Option<Check> {
        let kind = match n.key() {
            "TCP_CHECK" => CheckType::Tcp,
            "HTTP_GET" => CheckType::Http,
            "SSL_GET" => CheckType::Https,
            _ => CheckType::Script,
        };
        let mut chk = Check {
            kind: u(kind),
            interval: None,
            timeout: u(5.0),
            rise: u(1),
            fall: u(1),
            retry: None,
            delay_before_retry: None,
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
        };
        let mut urls = 0;
        for c in n.children() {
            match (c.key(), kind) {
                ("connect_timeout", _) | ("misc_timeout", CheckType::Script) => {
                    if let Some(t) = self.val::<f64>(c, 1, "timeout") {
                        chk.timeout = u(t);
                    }
                }
                ("retry" | "nb_get_retry", _) => chk.retry = self.val::<u32>(c, 1, "retry"),
                ("delay_before_retry", _) => {
                    chk.delay_before_retry = self.val::<f64>(c, 1, "delay_before_retry").map(u)
                }
                ("delay_loop", _) => chk.interval = self.val::<f64>(c, 1, "delay_loop").map(u),
                ("connect_ip", _) => chk.connect_ip = self.val::<IpAddr>(c, 1, "address").map(u),
                ("connect_port", _) => chk.connect_port = self.val::<u16>(c, 1, "port").map(u),
                ("url", CheckType::Http | CheckType::Https) => {
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
                ("virtualhost", CheckType::Http | CheckType::Https) => {
                    chk.host = c.arg(1).map(|h| u(h.to_string()))
                }
                ("enable_sni", CheckType::Https) => {}
                ("misc_path", CheckType::Script) => {
                    let line = c.words[1..].join(" ");
                    if line.contains(['|', '>', '<', ';', '&', '$', '`', '*']) {
                        chk.command = Some(u(vec![line]));
                        chk.shell = true;
                    } else {
                        chk.command = self.command(c, "misc_path");
                    }
                }
                ("misc_dynamic", CheckType::Script) => chk.dynamic = true,
                ("user", CheckType::Script) => chk.user = c.arg(1).map(|s| u(s.to_string())),
                _ => self.unknown(c, n.key()),
            }
        }
        if kind == CheckType::Script && chk.command.is_none() {
            self.note(n, "MISC_CHECK without misc_path: not imported");
            return None;
        }
        Some(chk)
    }

    fn url(&mut self, n: &Node, chk: &mut Check) {
        let mut codes = Vec::new();
        for c in n.children() {
            match c.key() {
                "path" => chk.path = c.arg(1).map(|p| u(p.to_string())),
                "digest" => chk.digest = c.arg(1).map(|d| u(d.to_ascii_lowercase())),
                "status_code" => {
                    for w in &c.words[1..] {
                        let r = match w.split_once('-') {
                            Some((a, b)) => a.parse::<u16>().ok().zip(b.parse::<u16>().ok()),
                            None => w.parse::<u16>().ok().map(|a| (a, a)),
                        };
                        match r {
                            Some((a, b)) if a <= b => codes.extend(a..=b),
                            _ => self.note(c, format!("status_code `{w}` not understood")),
                        }
                    }
                }
                "regex" => {
                    self.note(
                        c,
                        "url regex: imported as body_regex (Rust regex syntax, close to but not \
                         POSIX ERE: check it)",
                    );
                    chk.body_regex = c.arg(1).map(|r| u(r.to_string()));
                }
                _ => self.unknown(c, "url"),
            }
        }
        if !codes.is_empty() {
            chk.status_codes = Some(u(codes));
        }
    }

    fn finish(&mut self) -> Config {
        let mut ifaces: Vec<String> = Vec::new();
        for v in &self.vrrp {
            if !ifaces.contains(v.interface.get_ref()) {
                ifaces.push(v.interface.get_ref().clone());
            }
        }
        if ifaces.is_empty() {
            self.notes.push(
                "global.interfaces: keepalived has no such setting and no vrrp_instance names \
                 an interface: `eth0` written, set the interfaces VIP traffic arrives on"
                    .into(),
            );
            ifaces.push("eth0".into());
        } else {
            self.notes.push(format!(
                "global.interfaces: set to the vrrp_instance interfaces ({}); xlb attaches XDP \
                 there, check that VIP traffic arrives on them",
                ifaces.join(", ")
            ));
        }
        Config {
            global: Global {
                router_id: self.router_id.clone(),
                interfaces: u(ifaces.into_iter().map(u).collect()),
                xdp_mode: XdpMode::Auto,
                conn_table_size: u(1_048_576),
                flood_threshold: 125_000,
                maglev_capacity: u(0),
                control_socket: u(PathBuf::from("/run/xlb/xlb.sock")),
                bpffs_dir: u(PathBuf::from("/sys/fs/bpf/xlb")),
                state_dir: u(PathBuf::from("/var/lib/xlb")),
                metrics_listen: None,
                sweep_interval: u(2.0),
                log_format: Default::default(),
            },
            timeouts: Timeouts::default(),
            virtual_servers: std::mem::take(&mut self.vs),
            vrrp_instances: std::mem::take(&mut self.vrrp),
            vrrp_sync_groups: std::mem::take(&mut self.groups),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_and_tree() {
        let src = "global_defs {\n  router_id \"lvs #1\" # comment\n}\n! bang comment\n\
                   vrrp_instance VI_1\n{\n  state MASTER\n  virtual_ipaddress { 192.168.2.212 }\n}\n";
        let mut notes = vec![];
        let t = parse_tree(&tokenize(src), Path::new("k.conf"), &mut notes, 0);
        assert!(notes.is_empty(), "{notes:?}");
        assert_eq!(t.len(), 2);
        assert_eq!(t[0].children()[0].words, ["router_id", "lvs #1"]);
        assert_eq!(t[1].words, ["vrrp_instance", "VI_1"]);
        assert_eq!(t[1].loc, "k.conf:5");
        assert_eq!(t[1].children()[1].children()[0].words, ["192.168.2.212"]);
    }

    #[test]
    fn shell_words_and_globs() {
        assert_eq!(
            shell_split(r#"/usr/local/bin/check "a b" 'c d' e\ f"#).unwrap(),
            ["/usr/local/bin/check", "a b", "c d", "e f"]
        );
        assert!(shell_split("\"open").is_none());
        assert!(fnmatch("*.conf", "a.conf") && !fnmatch("*.conf", "a.conf.bak"));
        assert!(fnmatch("vs-[0-9]?.c*", "vs-12.conf") && !fnmatch("[!v]*", "vs"));
    }
}
