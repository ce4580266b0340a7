//! TOML syntax errors said once. The parser recovers and reports on: an array whose `]` is
//! missing makes every following line an error ("missing comma", "string values must be
//! quoted", ...), and a keepalived.conf fails on every line. Both are reported as the one error
//! that explains them.
use super::error::Collector;

/// keepalived.conf block keywords (`global_defs {`, `vrrp_instance VI_1 {`, ...).
const KEEPALIVED_BLOCKS: [&str; 12] = [
    "global_defs",
    "vrrp_instance",
    "vrrp_sync_group",
    "vrrp_script",
    "virtual_server",
    "virtual_server_group",
    "static_ipaddress",
    "static_routes",
    "static_rules",
    "track_file",
    "track_process",
    "linkbeat_interfaces",
];

/// Records the syntax errors of `c`'s source.
pub(super) fn report(c: &mut Collector<'_>, errors: &[toml::de::Error]) {
    let src = c.src();
    if let Some(at) = keepalived_block(src) {
        let message = format!(
            "this looks like keepalived.conf, not an xlb configuration: use \
             `xlb import-keepalived {} -o xlb.toml` to translate it",
            c.file()
        );
        c.at(at..at, message);
        return;
    }
    for e in errors {
        c.toml(e, "");
    }
    let parser_saw_it = errors
        .iter()
        .any(|e| e.message().starts_with("unclosed array,"));
    if let Some(open) = unclosed_array(src).filter(|_| parser_saw_it) {
        c.replace_errors_from(
            open..open,
            "unclosed array: `]` is missing (the next line starts a new key or table)",
        );
    }
}

/// Byte offset of the first line that opens a keepalived block (`keyword ... {`).
fn keepalived_block(src: &str) -> Option<usize> {
    lines(src).find_map(|(at, line)| {
        let code = strip_comment(line, &['#', '!']).trim();
        let first = code.split_whitespace().next()?;
        let opens = code.ends_with('{');
        (opens && KEEPALIVED_BLOCKS.contains(&first)).then(|| at + line.find(first).unwrap_or(0))
    })
}

/// Byte offset of the `[` of a `key = [` array that is still open when a line starting a new
/// key (`name =`) or table (`[name]`) comes: TOML allows arrays over several lines, but not
/// that.
fn unclosed_array(src: &str) -> Option<usize> {
    let mut open: Option<usize> = None;
    let mut depth = 0usize;
    for (at, line) in lines(src) {
        let code = strip_comment(line, &['#']);
        let trimmed = code.trim_start();
        if trimmed.is_empty() {
            continue;
        }
        if depth > 0 && starts_key_or_table(trimmed) {
            return open;
        }
        // The value part of `key = value` lines, or the whole line inside an open array.
        let (value, value_at) = if depth > 0 {
            (code, at)
        } else {
            match outside_quotes(code).find(|&(_, ch)| ch == '=') {
                Some((i, _)) if !trimmed.starts_with('[') => (&code[i + 1..], at + i + 1),
                _ => continue,
            }
        };
        for (i, ch) in outside_quotes(value) {
            match ch {
                '[' => {
                    if depth == 0 {
                        open = Some(value_at + i);
                    }
                    depth += 1;
                }
                ']' => depth = depth.saturating_sub(1),
                _ => {}
            }
        }
    }
    None
}

/// `name = ...`, `"name" = ...`, `[table]`, `[[array]]`: not an array element (`[1, 2],` is one).
fn starts_key_or_table(line: &str) -> bool {
    let line = line.trim_end();
    let header = line
        .strip_prefix("[[")
        .and_then(|rest| rest.strip_suffix("]]"))
        .or_else(|| {
            line.strip_prefix('[')
                .and_then(|rest| rest.strip_suffix(']'))
        })
        .is_some_and(|name| {
            let name = name.trim();
            !name.is_empty() && name.chars().all(|ch| is_bare_key_char(ch) || ch == '.')
        });
    let key = outside_quotes(line)
        .find(|&(_, ch)| ch == '=')
        .is_some_and(|(i, _)| {
            let k = line[..i].trim();
            !k.is_empty()
                && (k.chars().all(|ch| is_bare_key_char(ch) || ch == '.')
                    || (k.starts_with('"') && k.ends_with('"')))
        });
    header || key
}

fn is_bare_key_char(ch: char) -> bool {
    ch.is_ascii_alphanumeric() || ch == '_' || ch == '-'
}

/// The characters of `s` outside single- and double-quoted strings, with their byte offsets.
fn outside_quotes(s: &str) -> impl Iterator<Item = (usize, char)> + '_ {
    let mut quote: Option<char> = None;
    let mut escaped = false;
    s.char_indices().filter(move |&(_, ch)| match quote {
        Some(q) => {
            if escaped {
                escaped = false;
            } else if ch == '\\' && q == '"' {
                escaped = true;
            } else if ch == q {
                quote = None;
            }
            false
        }
        None if ch == '"' || ch == '\'' => {
            quote = Some(ch);
            false
        }
        None => true,
    })
}

/// `line` up to its first comment character outside quotes.
fn strip_comment<'s>(line: &'s str, markers: &[char]) -> &'s str {
    match outside_quotes(line).find(|(_, ch)| markers.contains(ch)) {
        Some((i, _)) => &line[..i],
        None => line,
    }
}

/// The lines of `src` with their byte offsets.
fn lines(src: &str) -> impl Iterator<Item = (usize, &str)> {
    src.split_inclusive('\n').scan(0, |at, line| {
        let start = *at;
        *at += line.len();
        Some((start, line.trim_end_matches(['\n', '\r'])))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_open_array_is_found_at_its_bracket() {
        let src = "[global]\ninterfaces = [\"eth0\"\nconn_table_size = 1024\n";
        assert_eq!(unclosed_array(src), Some(22));
        let src = "[global]\ninterfaces = [\"eth0\", \"eth1\"\n[[virtual_server]]\n";
        assert_eq!(unclosed_array(src), Some(22));
    }

    #[test]
    fn multi_line_arrays_and_brackets_in_strings_are_not_open() {
        let ok = "a = [\n  \"x\",\n  [1, 2],\n]\nb = \"[\" # [\nc = ['[', \"]\"]\nd = 1\n";
        assert_eq!(unclosed_array(ok), None);
    }

    #[test]
    fn keepalived_blocks_are_recognised() {
        let k = "! Configuration File for keepalived\nglobal_defs {\n   router_id LVS_1\n}\n";
        assert_eq!(keepalived_block(k), Some(k.find("global_defs").unwrap()));
        let k = "vrrp_instance VI_1 {\n state MASTER\n}\n";
        assert_eq!(keepalived_block(k), Some(0));
        assert_eq!(keepalived_block("[[virtual_server]]\nvip = \"{\"\n"), None);
    }
}
