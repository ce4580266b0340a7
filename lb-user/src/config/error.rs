//! Located configuration errors: `file:line:column: message`.

use std::fmt;
use std::ops::Range;

/// One problem found in a configuration file.
///
/// `line` and `column` are 1-based; the column counts characters, not bytes. Both are 0 when the
/// error has no position (e.g. the file could not be read).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    /// The file name as given to [`super::load`] or [`super::parse`].
    pub file: String,
    /// 1-based line of the offending value (0 = no position).
    pub line: usize,
    /// 1-based column (in characters) of the offending value (0 = no position).
    pub column: usize,
    /// What is wrong and what was expected.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.file, self.message)
        } else {
            write!(
                f,
                "{}:{}:{}: {}",
                self.file, self.line, self.column, self.message
            )
        }
    }
}

impl std::error::Error for ConfigError {}

/// Something in a configuration that is valid but most likely not what was meant (a service
/// without real servers, a VIP nobody fails over, a check command that is not there). Printed
/// as `file:line:column: warning: message`; `xlb check-config --strict` fails on it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigWarning(pub ConfigError);

impl fmt::Display for ConfigWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let e = &self.0;
        if e.line == 0 {
            write!(f, "{}: warning: {}", e.file, e.message)
        } else {
            write!(
                f,
                "{}:{}:{}: warning: {}",
                e.file, e.line, e.column, e.message
            )
        }
    }
}

/// Every error found in a configuration, sorted by position. Never empty.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl ConfigErrors {
    /// The errors, sorted by line and column.
    pub fn errors(&self) -> &[ConfigError] {
        &self.0
    }

    /// Number of errors.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Always false for a value returned by `load`/`parse`.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Iterate over the errors.
    pub fn iter(&self) -> std::slice::Iter<'_, ConfigError> {
        self.0.iter()
    }
}

impl fmt::Display for ConfigErrors {
    /// One error per line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

impl IntoIterator for ConfigErrors {
    type Item = ConfigError;
    type IntoIter = std::vec::IntoIter<ConfigError>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl<'a> IntoIterator for &'a ConfigErrors {
    type Item = &'a ConfigError;
    type IntoIter = std::slice::Iter<'a, ConfigError>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

/// Collects errors for one source text, turning byte spans into line:column.
pub(crate) struct Collector<'a> {
    file: &'a str,
    src: &'a str,
    line_starts: Vec<usize>,
    errors: Vec<ConfigError>,
    warnings: Vec<ConfigWarning>,
}

impl<'a> Collector<'a> {
    pub(crate) fn new(file: &'a str, src: &'a str) -> Self {
        let mut line_starts = vec![0];
        line_starts.extend(src.match_indices('\n').map(|(i, _)| i + 1));
        Self {
            file,
            src,
            line_starts,
            errors: Vec::new(),
            warnings: Vec::new(),
        }
    }

    /// 1-based (line, column) of a byte offset; the column counts characters.
    pub(crate) fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.src.len());
        let line = self.line_starts.partition_point(|&s| s <= offset) - 1;
        let start = self.line_starts[line];
        let column = self
            .src
            .get(start..offset)
            .map_or(offset - start, |s| s.chars().count());
        (line + 1, column + 1)
    }

    /// Record an error at the start of `span`.
    pub(crate) fn at(&mut self, span: Range<usize>, message: impl Into<String>) {
        let e = self.located(span, message.into());
        self.errors.push(e);
    }

    /// Record a warning at the start of `span`.
    pub(crate) fn warn(&mut self, span: Range<usize>, message: impl Into<String>) {
        let e = self.located(span, message.into());
        self.warnings.push(ConfigWarning(e));
    }

    fn located(&self, span: Range<usize>, message: String) -> ConfigError {
        let (line, column) = self.line_col(span.start);
        ConfigError {
            file: self.file.to_string(),
            line,
            column,
            message,
        }
    }

    /// Replace the errors recorded at or after `span` by one there (a cascade of syntax errors
    /// with one cause).
    pub(crate) fn replace_errors_from(&mut self, span: Range<usize>, message: impl Into<String>) {
        let from = self.line_col(span.start);
        self.errors.retain(|e| (e.line, e.column) < from);
        self.at(span, message);
    }

    /// The file name, as given.
    pub(crate) fn file(&self) -> &'a str {
        self.file
    }

    /// The source text (for checks that look at the file's shape).
    pub(crate) fn src(&self) -> &'a str {
        self.src
    }

    /// The warnings recorded so far, sorted by position.
    pub(crate) fn take_warnings(&mut self) -> Vec<ConfigWarning> {
        let mut w = std::mem::take(&mut self.warnings);
        w.sort_by_key(|w| (w.0.line, w.0.column));
        w.dedup();
        w
    }

    /// Record a toml parse or deserialization error; `context` names the section (e.g.
    /// `[[virtual_server]]`) for unknown-key messages.
    pub(crate) fn toml(&mut self, err: &toml::de::Error, context: &str) {
        let span = err.span().unwrap_or(0..0);
        let header = self.enclosing_header(span.start);
        let context = header.as_deref().unwrap_or(context);
        let mut message = improve_message(err.message(), context);
        if let Some(what) = message
            .strip_prefix("invalid ")
            .and_then(|m| m.strip_suffix(" address syntax"))
        {
            let text = self.src.get(span.clone()).unwrap_or_default().trim();
            let example = if what == "IP" {
                "\"192.0.2.1\" or \"2001:db8::1\""
            } else {
                "\"127.0.0.1:9108\" or \"[::1]:9108\""
            };
            message = format!("invalid {what} address {text}: expected an address like {example}");
        }
        self.at(span, message);
    }

    /// The `[table]` / `[[array]]` header governing `offset`, for messages.
    fn enclosing_header(&self, offset: usize) -> Option<String> {
        let (line, _) = self.line_col(offset);
        self.src
            .lines()
            .take(line)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .skip(1)
            .map(str::trim_start)
            .find(|l| l.starts_with('['))
            .and_then(|l| {
                let end = if l.starts_with("[[") {
                    l.find("]]")? + 2
                } else {
                    l.find(']')? + 1
                };
                Some(l[..end].to_string())
            })
    }

    pub(crate) fn has_errors(&self) -> bool {
        !self.errors.is_empty()
    }

    pub(crate) fn finish(mut self) -> Result<(), ConfigErrors> {
        if self.errors.is_empty() {
            return Ok(());
        }
        self.errors.sort_by_key(|e| (e.line, e.column));
        self.errors.dedup();
        Err(ConfigErrors(self.errors))
    }
}

/// Make serde's messages speak TOML: unknown fields become unknown keys with a suggestion, Rust
/// integer type names become ranges.
fn improve_message(msg: &str, context: &str) -> String {
    let msg = msg.trim_end();
    if let Some(rest) = msg.strip_prefix("unknown field `") {
        if let Some((key, tail)) = rest.split_once('`') {
            let expected = parse_expected(tail);
            return unknown_key_message(key, context, &expected);
        }
    }
    let mut out = msg.to_string();
    for (ty, range) in [
        ("expected u8", "expected an integer in 0..=255"),
        ("expected u16", "expected an integer in 0..=65535"),
        ("expected u32", "expected an integer in 0..=4294967295"),
        (
            "expected i32",
            "expected an integer in -2147483648..=2147483647",
        ),
        ("expected f64", "expected a number"),
    ] {
        if out.ends_with(ty) {
            out.truncate(out.len() - ty.len());
            out.push_str(range);
        }
    }
    out
}

/// `, expected one of `a`, `b`` / `, expected `a`` / `, there are no fields` -> names.
fn parse_expected(tail: &str) -> Vec<String> {
    tail.split('`')
        .enumerate()
        .filter(|(i, _)| i % 2 == 1)
        .map(|(_, s)| s.to_string())
        .collect()
}

/// "unknown key `x` in [section], did you mean `y`?" or the list of accepted keys.
pub(crate) fn unknown_key_message(key: &str, context: &str, expected: &[String]) -> String {
    let mut m = format!("unknown key `{key}`");
    if !context.is_empty() {
        m.push_str(" in ");
        m.push_str(context);
    }
    if let Some(s) = did_you_mean(key, expected.iter().map(String::as_str)) {
        m.push_str(&format!(", did you mean `{s}`?"));
    } else if expected.is_empty() {
        m.push_str(", this table takes no keys");
    } else {
        let list: Vec<String> = expected.iter().map(|e| format!("`{e}`")).collect();
        m.push_str(&format!(", expected one of {}", list.join(", ")));
    }
    m
}

/// The closest candidate to `key`, if it is close enough to be a likely typo.
pub(crate) fn did_you_mean<'c>(
    key: &str,
    candidates: impl Iterator<Item = &'c str>,
) -> Option<&'c str> {
    let key_l = key.to_ascii_lowercase();
    candidates
        .map(|c| {
            let score = if c.eq_ignore_ascii_case(key) {
                1.0
            } else {
                strsim::jaro_winkler(&key_l, &c.to_ascii_lowercase())
            };
            (c, score)
        })
        .filter(|&(_, s)| s >= 0.8)
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(c, _)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_col_counts_chars() {
        let c = Collector::new("f", "ab\n\u{e9}x = 1\n");
        assert_eq!(c.line_col(0), (1, 1));
        assert_eq!(c.line_col(3), (2, 1));
        assert_eq!(c.line_col(5), (2, 2)); // after the 2-byte é
        assert_eq!(c.line_col(100), (3, 1));
    }

    #[test]
    fn suggestions() {
        let cands = ["protocol", "port", "persistence_timeout"];
        assert_eq!(did_you_mean("protocl", cands.into_iter()), Some("protocol"));
        assert_eq!(did_you_mean("zzz", cands.into_iter()), None);
        let m = improve_message(
            "unknown field `prot`, expected one of `port`, `protocol`",
            "[x]",
        );
        assert!(
            m.starts_with("unknown key `prot` in [x], did you mean"),
            "{m}"
        );
        assert_eq!(
            improve_message("invalid value: integer `256`, expected u8", ""),
            "invalid value: integer `256`, expected an integer in 0..=255"
        );
    }
}
