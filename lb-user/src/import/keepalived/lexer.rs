//! keepalived.conf lines -> statements' tokens, the way keepalived's `read_line` reads them
//! (lib/parser.c): comments (`#`, `!` outside double quotes; `\#` and `\!` escape them) are
//! removed, `@ID line` / `@^ID line` keep the line only on the director whose config id is (is
//! not) ID, `$NAME=value` defines a parameter that later lines use, `include GLOB` splices
//! files in, and the remaining text is split into words, double-quoted strings and braces.

use std::collections::VecDeque;

use thiserror::Error;

use super::defs::{parse_definition, DefError, Definitions};
use super::include::{IncludeError, LineSource, RawLine};
use super::{Loc, Note};

/// Most lines one import reads, counting those that multi-line definitions add.
pub const MAX_LINES: usize = 1_000_000;

/// Why the text cannot be read as keepalived does.
#[derive(Debug, Error)]
pub enum LexError {
    #[error("{at}: unterminated quote (keepalived reports this line as a configuration error)")]
    UnterminatedQuote { at: Loc },
    #[error("{at}: {source}")]
    Definition { at: Loc, source: DefError },
    #[error("{at}: more than {MAX_LINES} lines after expanding definitions")]
    TooManyLines { at: Loc },
    #[error(transparent)]
    Include(#[from] IncludeError),
}

/// A word, a quoted string (quotes removed) or a brace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Token {
    pub text: String,
    /// Was quoted (so a `{` in quotes is a word).
    pub quoted: bool,
    /// Byte offset in the line's text.
    pub at: usize,
}

impl Token {
    pub fn is_brace(&self, b: &str) -> bool {
        !self.quoted && self.text == b
    }
}

/// One line as keepalived reads it: its tokens and its text (keepalived re-reads the text of a
/// script keyword with its own quoting rules).
#[derive(Clone, Debug)]
pub struct Line {
    pub loc: Loc,
    pub text: String,
    pub tokens: Vec<Token>,
}

/// Reads every line of the configuration (includes followed, definitions applied).
pub fn read_all(
    src: LineSource,
    config_id: &str,
    notes: &mut Vec<Note>,
) -> Result<Vec<Line>, LexError> {
    let mut lx = Lexer {
        src,
        defs: Definitions::new(config_id),
        queue: VecDeque::new(),
        defining: None,
        config_id: config_id.to_string(),
    };
    let mut out = Vec::new();
    let mut read = 0;
    while let Some(raw) = lx.next_raw()? {
        read += 1;
        if read > MAX_LINES {
            return Err(LexError::TooManyLines { at: raw.loc });
        }
        if let Some(line) = lx.line(raw, notes)? {
            out.push(line);
        }
    }
    notes.append(&mut lx.src.notes);
    Ok(out)
}

struct Lexer {
    src: LineSource,
    defs: Definitions,
    /// Further lines of a multi-line definition, read before the next line of the file.
    queue: VecDeque<RawLine>,
    /// The multi-line definition being read.
    defining: Option<String>,
    config_id: String,
}

impl Lexer {
    fn next_raw(&mut self) -> Result<Option<RawLine>, LexError> {
        match self.queue.pop_front() {
            Some(l) => Ok(Some(l)),
            None => Ok(self.src.next_line()?),
        }
    }

    /// One raw line -> the statement line it holds, if any.
    fn line(&mut self, raw: RawLine, notes: &mut Vec<Note>) -> Result<Option<Line>, LexError> {
        if let Some(name) = self.defining.clone() {
            self.continue_definition(&name, &raw)?;
            return Ok(None);
        }
        let text = decomment(&raw.text).ok_or_else(|| LexError::UnterminatedQuote {
            at: raw.loc.clone(),
        })?;
        let Some(text) = self.conditional(&text) else {
            return Ok(None);
        };
        if let Some((name, first, more)) = parse_definition(text) {
            self.defs.define(&name, &first, more);
            if more {
                self.defining = Some(name);
            }
            return Ok(None);
        }
        if text.starts_with("~SEQ") || text.starts_with("~LST") {
            notes.push(Note::at(
                &raw.loc,
                "~SEQ/~LST loops are not expanded by the import: write the lines out",
            ));
            return Ok(None);
        }
        let mut text = text.to_string();
        if text.contains('$') && !text.starts_with('~') {
            text = self.expand(&text, &raw, notes)?;
        }
        if let Some(pattern) = include_pattern(&text) {
            self.src.include(pattern, &raw.loc)?;
            return Ok(None);
        }
        if text.is_empty() {
            return Ok(None);
        }
        let tokens = tokenize(&text).ok_or_else(|| LexError::UnterminatedQuote {
            at: raw.loc.clone(),
        })?;
        Ok(Some(Line {
            loc: raw.loc,
            text,
            tokens,
        }))
    }

    fn continue_definition(&mut self, name: &str, raw: &RawLine) -> Result<(), LexError> {
        if raw.text.trim().is_empty() {
            self.defs.end_definition(name);
            self.defining = None;
            return Ok(());
        }
        let text = decomment(&raw.text).ok_or_else(|| LexError::UnterminatedQuote {
            at: raw.loc.clone(),
        })?;
        match text.strip_suffix('\\') {
            Some(t) => self
                .defs
                .continue_definition(name, t.trim_end_matches([' ', '\t'])),
            None => {
                if !text.is_empty() {
                    self.defs.continue_definition(name, &text);
                }
                self.defs.end_definition(name);
                self.defining = None;
            }
        }
        Ok(())
    }

    /// `@ID rest` / `@^ID rest`: `rest` when it applies to this config id, else `None`.
    fn conditional<'a>(&self, text: &'a str) -> Option<&'a str> {
        let Some(rest) = text.strip_prefix('@') else {
            return Some(text);
        };
        let (negated, rest) = match rest.strip_prefix('^') {
            Some(r) => (true, r),
            None => (false, rest),
        };
        let (id, line) = rest.split_once([' ', '\t'])?;
        ((id == self.config_id) != negated).then(|| line.trim_start_matches([' ', '\t']))
    }

    fn expand(
        &mut self,
        text: &str,
        raw: &RawLine,
        notes: &mut Vec<Note>,
    ) -> Result<String, LexError> {
        let e = self
            .defs
            .expand(text, &raw.dir)
            .map_err(|source| LexError::Definition {
                at: raw.loc.clone(),
                source,
            })?;
        for name in &e.undefined {
            notes.push(Note::at(
                &raw.loc,
                format!("`${name}` is not defined: kept as written (keepalived does the same)"),
            ));
        }
        for name in &e.misplaced {
            notes.push(Note::at(
                &raw.loc,
                format!(
                    "`${name}` is not replaced here: keepalived replaces a bare `$NAME` only \
                     before a blank, `,`, `)` or the end of the line; kept as written (write \
                     `${{{name}}}`)"
                ),
            ));
        }
        for what in &e.host_dependent {
            notes.push(Note::at(&raw.loc, format!("{what}: check it")));
        }
        let mut lines = e.lines;
        let rest = lines.split_off(1.min(lines.len()));
        let first = lines.pop().unwrap_or_default();
        // The further lines of a multi-line definition come next, before what was queued.
        for l in rest.into_iter().rev() {
            self.queue.push_front(RawLine {
                loc: raw.loc.clone(),
                text: l,
                dir: raw.dir.clone(),
            });
        }
        Ok(decomment(&first).unwrap_or(first))
    }
}

/// `include PATTERN` (also keepalived's `includer`/`includea`/... variants): the pattern.
fn include_pattern(text: &str) -> Option<&str> {
    let rest = text.strip_prefix("include")?;
    let rest = match rest.chars().next()? {
        c if c.is_whitespace() => rest,
        'r' | 'm' | 'w' | 'b' | 'a' => rest[1..].strip_prefix([' ', '\t'])?,
        _ => return None,
    };
    let p = rest.trim();
    (!p.is_empty()).then_some(p)
}

/// keepalived's `decomment`: removes a comment and the surrounding blanks; `None` when a double
/// quote is not closed.
pub fn decomment(line: &str) -> Option<String> {
    let mut out = String::with_capacity(line.len());
    let mut quote = false;
    let mut chars = line.trim_start_matches([' ', '\t']).chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                quote = !quote;
                out.push(c);
            }
            '\\' => match chars.next() {
                Some(d @ ('#' | '!')) if !quote => out.push(d),
                Some(d) => {
                    out.push(c);
                    out.push(d);
                }
                None => out.push(c),
            },
            '#' | '!' if !quote => break,
            c => out.push(c),
        }
    }
    if quote {
        return None;
    }
    let trimmed = out.trim_end_matches([' ', '\t']).len();
    out.truncate(trimmed);
    Some(out)
}

/// keepalived's `alloc_strvec_r` plus its brace split: words end at blanks or a double quote, a
/// double-quoted string is one word, and `{` / `}` outside quotes are tokens of their own.
/// `None` when a quote is not closed.
pub fn tokenize(text: &str) -> Option<Vec<Token>> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut cur_at = 0;
    let mut chars = text.char_indices();
    let flush = |cur: &mut String, at: usize, out: &mut Vec<Token>| {
        if !cur.is_empty() {
            out.push(Token {
                text: std::mem::take(cur),
                quoted: false,
                at,
            });
        }
    };
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => {
                flush(&mut cur, cur_at, &mut out);
                let mut q = String::new();
                loop {
                    match chars.next()? {
                        (_, '"') => break,
                        (_, d) => q.push(d),
                    }
                }
                out.push(Token {
                    text: q,
                    quoted: true,
                    at: i,
                });
            }
            '{' | '}' => {
                flush(&mut cur, cur_at, &mut out);
                out.push(Token {
                    text: c.to_string(),
                    quoted: false,
                    at: i,
                });
            }
            c if c.is_whitespace() => flush(&mut cur, cur_at, &mut out),
            c => {
                if cur.is_empty() {
                    cur_at = i;
                }
                cur.push(c);
            }
        }
    }
    flush(&mut cur, cur_at, &mut out);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comments_quotes_tokens() {
        assert_eq!(decomment("  a b # c").as_deref(), Some("a b"));
        assert_eq!(decomment("a \"#x\" ! c").as_deref(), Some("a \"#x\""));
        assert_eq!(decomment("a \\#1").as_deref(), Some("a #1"));
        assert_eq!(decomment("a \"open"), None);
        let t = tokenize("vrrp_instance \"VI 1\"{ state MASTER }").unwrap();
        let words: Vec<&str> = t.iter().map(|t| t.text.as_str()).collect();
        assert_eq!(
            words,
            ["vrrp_instance", "VI 1", "{", "state", "MASTER", "}"]
        );
        assert!(tokenize("a \"b").is_none());
        assert_eq!(
            include_pattern("include  conf.d/*.conf"),
            Some("conf.d/*.conf")
        );
        assert_eq!(include_pattern("includer x"), Some("x"));
        assert_eq!(include_pattern("included x"), None);
    }
}
