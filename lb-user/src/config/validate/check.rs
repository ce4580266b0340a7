//! Health checks: types, fields that belong to their type, ports, HTTP fields.
use super::super::error::Collector;
use super::*;

pub(super) fn check(
    chk: &Check,
    vs: &VirtualServer,
    rs: Option<&RealServer>,
    c: &mut Collector<'_>,
) {
    let kind = *chk.kind.get_ref();
    let http = matches!(kind, CheckType::Http | CheckType::Https);
    let type_name = match kind {
        CheckType::Tcp => "tcp",
        CheckType::Http => "http",
        CheckType::Https => "https",
        CheckType::Script => "script",
        CheckType::None => "none",
    };
    let wrong = |c: &mut Collector<'_>, span: std::ops::Range<usize>, key: &str, for_: &str| {
        c.at(
            span,
            format!(
                "`{key}` is only valid for {for_} checks, this one is `type = \"{type_name}\"`"
            ),
        );
    };
    if let Some(i) = &chk.interval {
        frange(c, i, 0.01, 3600.0, "check interval (seconds)");
    }
    frange(c, &chk.timeout, 0.01, 3600.0, "check timeout (seconds)");
    range(c, &chk.rise, 1, 1_000_000, "rise");
    range(c, &chk.fall, 1, 1_000_000, "fall");
    if let Some(d) = &chk.delay_before_retry {
        frange(c, d, 0.0, 3600.0, "delay_before_retry (seconds)");
    }
    if let Some(ip) = &chk.connect_ip {
        unicast_addr(c, ip, "connect_ip");
    }
    if let Some(p) = &chk.connect_port {
        if *p.get_ref() == 0 {
            c.at(p.span(), "connect_port 0: expected 1..=65535");
        }
    }
    // A port must be known for network checks.
    if matches!(kind, CheckType::Tcp | CheckType::Http | CheckType::Https)
        && chk.connect_port.is_none()
    {
        let port = match rs {
            Some(rs) => rs.effective_port(vs),
            None => *vs.port.get_ref(),
        };
        // A VS-level check of a port-0 service is fine if every real server has a port.
        let reals_ok = rs.is_none()
            && vs
                .real_servers
                .iter()
                .all(|r| r.effective_port(vs) != 0 || r.check.is_some());
        if port == 0 && !reals_ok {
            c.at(
                chk.kind.span(),
                "this check has no port to probe (the virtual server's port is 0): expected \
                 `connect_port`, or a `port` on the real server",
            );
        }
    }
    // Fields of other check types.
    if !http {
        for (span, key) in [
            (chk.method.as_ref().map(Spanned::span), "method"),
            (chk.path.as_ref().map(Spanned::span), "path"),
            (chk.host.as_ref().map(Spanned::span), "host"),
            (chk.status_codes.as_ref().map(Spanned::span), "status_codes"),
            (chk.body_regex.as_ref().map(Spanned::span), "body_regex"),
            (chk.digest.as_ref().map(Spanned::span), "digest"),
        ] {
            if let Some(span) = span {
                wrong(c, span, key, "http/https");
            }
        }
    }
    if kind != CheckType::Https {
        if chk.tls_verify {
            wrong(c, chk.kind.span(), "tls_verify", "https");
        }
        if let Some(f) = &chk.ca_file {
            wrong(c, f.span(), "ca_file", "https");
        }
    }
    if kind != CheckType::Script {
        if let Some(cmd) = &chk.command {
            wrong(c, cmd.span(), "command", "script");
        }
        if let Some(u) = &chk.user {
            wrong(c, u.span(), "user", "script");
        }
        if chk.shell {
            wrong(c, chk.kind.span(), "shell", "script");
        }
        if chk.dynamic {
            wrong(c, chk.kind.span(), "dynamic", "script");
        }
    }
    match kind {
        CheckType::Script => match &chk.command {
            None => c.at(
                chk.kind.span(),
                "a `script` check needs `command = [\"/path/to/check\", \"arg\", ...]` (keepalived misc_path)",
            ),
            Some(cmd) => command(c, cmd, "command"),
        },
        CheckType::Http | CheckType::Https => http_fields(chk, c),
        _ => {}
    }
    if let Some(u) = &chk.user {
        if u.get_ref().is_empty() {
            c.at(u.span(), "`user` is empty: expected a user name");
        }
    }
}

fn http_fields(chk: &Check, c: &mut Collector<'_>) {
    if let Some(p) = &chk.path {
        if !p.get_ref().starts_with('/') || p.get_ref().chars().any(char::is_whitespace) {
            c.at(
                p.span(),
                format!(
                    "path `{}`: expected an absolute request path like \"/monitor.html\"",
                    p.get_ref()
                ),
            );
        }
    }
    if let Some(h) = &chk.host {
        let h_ = h.get_ref();
        if h_.is_empty()
            || h_
                .chars()
                .any(|ch| ch.is_whitespace() || ch.is_control() || ch == '/')
        {
            c.at(
                h.span(),
                format!("host `{h_}`: expected a host name like \"www.example.com\""),
            );
        }
    }
    if let Some(codes) = &chk.status_codes {
        if codes.get_ref().is_empty() {
            c.at(codes.span(), "`status_codes` is empty: expected e.g. [200]");
        }
        for code in codes.get_ref() {
            if !(100..=599).contains(code) {
                c.at(
                    codes.span(),
                    format!("status code {code}: expected 100..=599"),
                );
            }
        }
    }
    if let Some(r) = &chk.body_regex {
        if let Err(e) = regex::Regex::new(r.get_ref()) {
            let text = e.to_string();
            let last = text.lines().last().unwrap_or_default().trim();
            let detail = last.strip_prefix("error: ").unwrap_or(last);
            c.at(r.span(), format!("body_regex does not compile: {detail}"));
        }
    }
    if let Some(d) = &chk.digest {
        if d.get_ref().len() != 32 || !d.get_ref().chars().all(|ch| ch.is_ascii_hexdigit()) {
            c.at(
                d.span(),
                "digest: expected the MD5 of the body as 32 hex digits (e.g. from `md5sum`)",
            );
        }
    }
    let head = chk
        .method
        .as_ref()
        .is_some_and(|m| *m.get_ref() == HttpMethod::Head);
    if head {
        for (s, k) in [
            (chk.body_regex.as_ref().map(Spanned::span), "body_regex"),
            (chk.digest.as_ref().map(Spanned::span), "digest"),
        ] {
            if let Some(s) = s {
                c.at(
                    s,
                    format!("`{k}` needs the body: expected method = \"GET\""),
                );
            }
        }
    }
}
