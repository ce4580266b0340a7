//! keepalived 2.x parameter definitions: `$NAME=value` lines (a trailing `\` continues the
//! value on the next lines: a multi-line definition, usable only as the whole rest of a line),
//! replaced in later lines where `$NAME` or `${NAME}` appears, and the standard definitions
//! `${_PWD}` (the directory of the file being read), `${_INSTANCE}` (the config id), `$_HASH`
//! (`#`), `$_BANG` (`!`), `${_ENV NAME}` and `${_RANDOM [min [max]]}`.
//!
//! As in keepalived (lib/parser.c `replace_param`) replacement text is scanned again at once, so
//! definitions may use definitions; unlike keepalived (which loops forever on `$A=$A`) the
//! expansion of one line is bounded.

use std::path::Path;

use thiserror::Error;

/// Most replacements in one line.
const MAX_REPLACEMENTS: usize = 1000;
/// Longest line after replacement (keepalived's buffer is smaller).
const MAX_LINE: usize = 64 * 1024;

/// A line whose expansion does not end.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum DefError {
    #[error("the definitions in this line expand without end (one refers to itself?)")]
    Endless,
}

enum Value {
    /// Text lines (more than one, or a trailing `\` on the definition line: multi-line).
    Text {
        lines: Vec<String>,
        multiline: bool,
    },
    Pwd,
    Instance,
    Env,
    Random,
}

struct Def {
    name: String,
    value: Value,
}

/// What substitution did to a line.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Expanded {
    /// The line, then the further lines of a multi-line definition.
    pub lines: Vec<String>,
    /// `$NAME`s with no definition (kept as written, as keepalived does).
    pub undefined: Vec<String>,
    /// Defined `$NAME`s not replaced because of what follows them (keepalived replaces a bare
    /// `$NAME` only before a blank, `,`, `)` or the end of the line).
    pub misplaced: Vec<String>,
    /// Standard definitions whose value depends on where the import runs.
    pub host_dependent: Vec<String>,
}

/// The definitions seen so far.
pub struct Definitions {
    defs: Vec<Def>,
    config_id: String,
}

/// `$NAME=value`: (name, value, continued by a trailing `\`).
pub fn parse_definition(line: &str) -> Option<(String, String, bool)> {
    let rest = line.strip_prefix('$')?;
    let (name, value) = rest.split_once('=')?;
    let mut chars = name.chars();
    let first = chars.next()?;
    if !(first.is_ascii_alphabetic() || first == '_')
        || !chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
    {
        return None;
    }
    let value = value.trim_start_matches([' ', '\t']);
    match value.strip_suffix('\\') {
        Some(v) => Some((name.into(), v.trim_end_matches([' ', '\t']).into(), true)),
        None => Some((name.into(), value.into(), false)),
    }
}

impl Definitions {
    pub fn new(config_id: &str) -> Self {
        let std = [
            ("_PWD", Value::Pwd),
            ("_INSTANCE", Value::Instance),
            ("_ENV", Value::Env),
            ("_RANDOM", Value::Random),
            ("_HASH", text("#")),
            ("_BANG", text("!")),
        ];
        Self {
            defs: std
                .into_iter()
                .map(|(n, value)| Def {
                    name: n.into(),
                    value,
                })
                .collect(),
            config_id: config_id.into(),
        }
    }

    /// `$name=first` (a later definition replaces an earlier one, standard ones too).
    pub fn define(&mut self, name: &str, first: &str, multiline: bool) {
        let lines = if first.is_empty() && multiline {
            vec![]
        } else {
            vec![first.to_string()]
        };
        let value = Value::Text { lines, multiline };
        match self.defs.iter_mut().find(|d| d.name == name) {
            Some(d) => d.value = value,
            None => self.defs.push(Def {
                name: name.into(),
                value,
            }),
        }
    }

    /// Appends a continuation line to the definition of `name`.
    pub fn continue_definition(&mut self, name: &str, line: &str) {
        if let Some(Def {
            value: Value::Text { lines, .. },
            ..
        }) = self.defs.iter_mut().find(|d| d.name == name)
        {
            lines.push(line.to_string());
        }
    }

    /// A multi-line definition that got no line is an empty single-line one.
    pub fn end_definition(&mut self, name: &str) {
        if let Some(Def {
            value: Value::Text { lines, multiline },
            ..
        }) = self.defs.iter_mut().find(|d| d.name == name)
        {
            if lines.is_empty() {
                *multiline = false;
            }
        }
    }

    /// Replaces the references in `line`; `dir` is `${_PWD}`.
    pub fn expand(&self, line: &str, dir: &Path) -> Result<Expanded, DefError> {
        let mut out = Expanded::default();
        let mut buf = line.to_string();
        let mut extra: Vec<String> = Vec::new();
        let mut pos = 0;
        let mut count = 0;
        while let Some(off) = buf[pos..].find('$') {
            let at = pos + off;
            let Some(r) = self.reference(&buf[at + 1..]) else {
                if let Some(name) = bare_name(&buf[at + 1..]) {
                    let list = if self.defs.iter().any(|d| d.name == name) {
                        &mut out.misplaced
                    } else {
                        &mut out.undefined
                    };
                    if !list.iter().any(|u| u == name) {
                        list.push(name.to_string());
                    }
                }
                pos = at + 1;
                continue;
            };
            count += 1;
            if count > MAX_REPLACEMENTS {
                return Err(DefError::Endless);
            }
            let def = &self.defs[r.def];
            let (first, rest) = self.value_of(def, r.params, dir, &mut out);
            buf.replace_range(at..at + 1 + r.len, &first);
            if buf.len() > MAX_LINE {
                return Err(DefError::Endless);
            }
            if !rest.is_empty() {
                extra = rest;
            }
            pos = at;
        }
        out.lines.push(buf);
        out.lines.extend(extra);
        Ok(out)
    }

    /// The value of `def`: its first line and further lines.
    fn value_of(
        &self,
        def: &Def,
        params: &str,
        dir: &Path,
        out: &mut Expanded,
    ) -> (String, Vec<String>) {
        match &def.value {
            Value::Text { lines, .. } => match lines.split_first() {
                Some((first, rest)) => (first.clone(), rest.to_vec()),
                None => (String::new(), vec![]),
            },
            Value::Pwd => (dir.display().to_string(), vec![]),
            Value::Instance => (self.config_id.clone(), vec![]),
            Value::Env => {
                out.host_dependent
                    .push(format!("${{_ENV {params}}} (from this host's environment)"));
                (std::env::var(params).unwrap_or_default(), vec![])
            }
            Value::Random => {
                let min = params.split_whitespace().next().unwrap_or("0");
                out.host_dependent.push(format!(
                    "${{_RANDOM {params}}} (its lowest value, {min}, written)"
                ));
                (min.to_string(), vec![])
            }
        }
    }

    /// The definition referred to at the start of `s` (just after a `$`).
    fn reference<'a>(&self, s: &'a str) -> Option<Ref<'a>> {
        let (braces, body) = match s.strip_prefix('{') {
            Some(b) => (true, b),
            None => (false, s),
        };
        let name = bare_name(body)?;
        let after = &body[name.len()..];
        let (params, len) = if braces {
            // Names and parameters are short: bounding the search keeps a line of many `${`
            // linear.
            let (close, _) = after.char_indices().take(64).find(|(_, c)| *c == '}')?;
            let params = &after[..close];
            if !params.is_empty()
                && (!params.starts_with([' ', '\t'])
                    || params.ends_with([' ', '\t'])
                    || !params
                        .chars()
                        .all(|c| c == ' ' || c == '\t' || c.is_ascii_alphanumeric() || c == '_'))
            {
                return None;
            }
            (params.trim(), name.len() + close + 2)
        } else {
            if !matches!(after.chars().next(), None | Some(' ' | '\t' | ',' | ')')) {
                return None;
            }
            ("", name.len())
        };
        let at_end = s[len..].is_empty();
        let def = self.defs.iter().position(|d| {
            d.name == name
                && (at_end
                    || !matches!(
                        d.value,
                        Value::Text {
                            multiline: true,
                            ..
                        }
                    ))
                && (params.is_empty() || matches!(d.value, Value::Env | Value::Random))
                && !(matches!(d.value, Value::Env) && params.is_empty())
        })?;
        Some(Ref { def, params, len })
    }
}

struct Ref<'a> {
    def: usize,
    params: &'a str,
    /// Length of the reference after the `$`.
    len: usize,
}

fn text(s: &str) -> Value {
    Value::Text {
        lines: vec![s.into()],
        multiline: false,
    }
}

/// `[A-Za-z_][A-Za-z0-9_]*` at the start of `s`.
fn bare_name(s: &str) -> Option<&str> {
    let first = s.chars().next()?;
    if !(first.is_ascii_alphabetic() || first == '_') {
        return None;
    }
    let end = s
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(s.len());
    Some(&s[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defs() -> Definitions {
        let mut d = Definitions::new("lvs1");
        d.define("IF", "bond0", false);
        d.define("PORT", "80", false);
        d.define("RS", "", true);
        d.continue_definition("RS", "real_server 10.0.0.1 $PORT {");
        d.continue_definition("RS", "}");
        d
    }

    fn expand(d: &Definitions, s: &str) -> Vec<String> {
        d.expand(s, Path::new("/etc/keepalived")).unwrap().lines
    }

    #[test]
    fn definitions_and_references() {
        assert_eq!(
            parse_definition("$IF= bond0"),
            Some(("IF".into(), "bond0".into(), false))
        );
        assert_eq!(
            parse_definition("$RS=a  \\"),
            Some(("RS".into(), "a".into(), true))
        );
        assert_eq!(parse_definition("$1=x"), None);
        assert_eq!(parse_definition("$A B=x"), None);
        let d = defs();
        assert_eq!(expand(&d, "interface $IF"), ["interface bond0"]);
        assert_eq!(expand(&d, "interface ${IF}.53"), ["interface bond0.53"]);
        assert_eq!(expand(&d, "x $IFX $IF,"), ["x $IFX bond0,"]);
        assert_eq!(
            expand(&d, "notify ${_PWD}/n.sh ${_INSTANCE}"),
            ["notify /etc/keepalived/n.sh lvs1"]
        );
        assert_eq!(expand(&d, "$RS"), ["real_server 10.0.0.1 80 {", "}"]);
        // A multi-line definition is not replaced inside a line.
        assert_eq!(expand(&d, "$RS x"), ["$RS x"]);
        let e = d.expand("a $NOPE b", Path::new("/")).unwrap();
        assert_eq!(e.undefined, ["NOPE"]);
    }

    #[test]
    fn self_reference_is_bounded() {
        let mut d = Definitions::new("x");
        d.define("A", "$A", false);
        assert_eq!(d.expand("$A", Path::new("/")), Err(DefError::Endless));
        d.define("B", "$B$B", false);
        assert_eq!(d.expand("${B}", Path::new("/")), Err(DefError::Endless));
    }
}
