//! How keepalived 2.x turns a script keyword (`misc_path`, `notify_up`, `notify_master`, ...)
//! into a process, so that the import runs the same program with the same arguments.
//!
//! keepalived (lib/parser.c `alloc_strvec_quoted_escaped`, core/notify.c
//! `set_script_params_array`, `notify_script_init`, `system_call_script`): the keyword's line is
//! split into words with `"` and `'` quoting; the *second word only* is the command, split again
//! into argv (quotes, and backslash escapes such as `\t`, `\x41`, `\"`); for notify scripts the
//! third and fourth words are the user and group to run as. The command is then `execve`d
//! directly: no shell, so `|`, `&>`, `;` and `$VAR` are passed to the program as plain
//! arguments. A shell is used only for a command starting with `</` (a file-exists test, run by
//! `system()`), and for a file without `#!` (which `system()` runs through `/bin/sh`, every
//! argument single-quoted): the import writes the first as a `shell = true` command.

use thiserror::Error;

/// A command keepalived would refuse.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ScriptError {
    #[error("missing terminating {0}")]
    UnterminatedQuote(char),
    #[error("a `\\` ends the command")]
    TrailingBackslash,
    #[error("no command")]
    Empty,
}

/// A script keyword as keepalived reads it.
#[derive(Debug, PartialEq, Eq)]
pub struct Script {
    /// The program and its arguments.
    pub argv: Vec<String>,
    /// notify scripts: the user (and group) to run as.
    pub user: Option<String>,
    /// Words of the line keepalived does not use.
    pub ignored: Vec<String>,
}

/// How the program is started.
#[derive(Debug, PartialEq, Eq)]
pub enum Exec {
    /// `execve(argv[0], argv)`.
    Direct(Vec<String>),
    /// `/bin/sh -c TEXT`.
    Shell(String),
}

/// Reads the line of a script keyword (`misc_path "/bin/check a b"`); `with_user`: the words
/// after the command are a user and group (notify scripts), else they are ignored.
pub fn parse_line(line: &str, with_user: bool) -> Result<Script, ScriptError> {
    let words = split(line, false)?;
    let cmd = words.get(1).ok_or(ScriptError::Empty)?;
    let argv = split(cmd, true)?;
    if argv.first().is_none_or(|p| p.trim().is_empty()) {
        return Err(ScriptError::Empty);
    }
    let rest = words.get(2..).unwrap_or(&[]);
    let (user, ignored) = match (with_user, rest.split_first()) {
        (true, Some((u, more))) => {
            let group = more.first().map(|g| format!(":{g}")).unwrap_or_default();
            (
                Some(format!("{u}{group}")),
                more.get(1..).unwrap_or(&[]).to_vec(),
            )
        }
        _ => (None, rest.to_vec()),
    };
    Ok(Script {
        argv,
        user,
        ignored,
    })
}

/// How keepalived starts `argv`.
pub fn exec_form(argv: &[String]) -> Exec {
    let first = argv.first().map_or("", String::as_str);
    let file_test = first
        .strip_prefix('<')
        .is_some_and(|r| r.trim_start_matches([' ', '\t']).starts_with('/'));
    if file_test {
        Exec::Shell(system_text(argv))
    } else {
        Exec::Direct(argv.to_vec())
    }
}

/// keepalived's `cmd_str`: the first word as is when it is a redirection, every other word in
/// single quotes.
fn system_text(argv: &[String]) -> String {
    let mut out = Vec::new();
    for (i, a) in argv.iter().enumerate() {
        if i == 0 && (a.starts_with('<') || a.starts_with('>')) {
            out.push(a.clone());
        } else {
            out.push(format!("'{}'", a.replace('\'', "'\\''")));
        }
    }
    out.join(" ")
}

/// keepalived's `alloc_strvec_quoted_escaped_common`: words separated by blanks, `"..."` and
/// `'...'` quote (a backslash is special inside both), and with `escapes` `\n`, `\t`, `\xHH`,
/// `\NNN` (octal), `\cX` are decoded (else the backslash is kept).
pub fn split(src: &str, escapes: bool) -> Result<Vec<String>, ScriptError> {
    let mut out = Vec::new();
    let mut chars = src.chars().peekable();
    loop {
        while chars.next_if(|c| *c == ' ' || *c == '\t').is_some() {}
        if chars.peek().is_none() {
            return Ok(out);
        }
        let mut word = String::new();
        let mut quote: Option<char> = None;
        loop {
            let Some(c) = chars.next() else {
                if let Some(q) = quote {
                    return Err(ScriptError::UnterminatedQuote(q));
                }
                break;
            };
            match (c, quote) {
                ('\\', _) => {
                    let d = chars.next().ok_or(ScriptError::TrailingBackslash)?;
                    if escapes {
                        word.push(unescape(d, &mut chars));
                    } else {
                        word.push('\\');
                        word.push(d);
                    }
                }
                (c, Some(q)) if c == q => quote = None,
                ('"' | '\'', None) => quote = Some(c),
                (' ' | '\t', None) => break,
                (c, _) => word.push(c),
            }
        }
        out.push(word);
    }
}

/// The character of the escape `\d...` (`d` already read).
fn unescape(d: char, chars: &mut std::iter::Peekable<std::str::Chars<'_>>) -> char {
    match d {
        'x' if chars.peek().is_some_and(char::is_ascii_hexdigit) => {
            let mut v = 0u32;
            for _ in 0..2 {
                match chars.next_if(char::is_ascii_hexdigit) {
                    Some(h) => v = v * 16 + h.to_digit(16).unwrap_or(0),
                    None => break,
                }
            }
            char::from_u32(v).unwrap_or('?')
        }
        'c' if chars.peek().is_some() => {
            let x = chars.next().map_or(0, |x| x as u32);
            char::from_u32(x & 0x1f).unwrap_or('?')
        }
        '0'..='7' => {
            let mut v = d.to_digit(8).unwrap_or(0);
            for _ in 0..2 {
                match chars.next_if(|c| ('0'..='7').contains(c)) {
                    Some(o) => v = v * 8 + o.to_digit(8).unwrap_or(0),
                    None => break,
                }
            }
            char::from_u32(v & 0xff).unwrap_or('?')
        }
        'a' => '\x07',
        'b' => '\x08',
        'E' => '\x1b',
        'f' => '\x0c',
        'n' => '\n',
        'r' => '\r',
        't' => '\t',
        'v' => '\x0b',
        other => other,
    }
}

/// Splits a command line as a POSIX shell would (quotes, backslashes; no expansion). `None` on
/// an unterminated quote. (Used for iptables-save rules, which are written that way.)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(line: &str) -> Vec<String> {
        parse_line(line, false).unwrap().argv
    }

    #[test]
    fn keepalived_splitting() {
        // Shell syntax is passed as arguments: keepalived execs without a shell.
        assert_eq!(
            argv(r#"misc_path "/usr/bin/dig @10.0.0.11 example.com &> /dev/null""#),
            [
                "/usr/bin/dig",
                "@10.0.0.11",
                "example.com",
                "&>",
                "/dev/null"
            ]
        );
        assert_eq!(
            argv(r#"misc_path "/bin/check 'a b' c\ d \x41\t""#),
            ["/bin/check", "a b", "c d", "A\t"]
        );
        // Unquoted: only the second word is the command.
        let s = parse_line("misc_path /bin/check arg", false).unwrap();
        assert_eq!(
            (s.argv, s.ignored),
            (vec!["/bin/check".into()], vec!["arg".into()])
        );
        // notify scripts: the third word is the user.
        let s = parse_line("notify_master /bin/n.sh backup", true).unwrap();
        assert_eq!(s.argv, ["/bin/n.sh"]);
        assert_eq!(s.user.as_deref(), Some("backup"));
        assert_eq!(
            parse_line(r#"misc_path "/bin/x 'open""#, false),
            Err(ScriptError::UnterminatedQuote('\''))
        );
        assert_eq!(
            exec_form(&argv(r#"misc_path "</etc/keepalived/up 'x'""#)),
            Exec::Shell("</etc/keepalived/up 'x'".into())
        );
    }

    #[test]
    fn posix_words() {
        assert_eq!(
            shell_split(r#"/usr/local/bin/check "a b" 'c d' e\ f"#).unwrap(),
            ["/usr/local/bin/check", "a b", "c d", "e f"]
        );
        assert!(shell_split("\"open").is_none());
    }
}
