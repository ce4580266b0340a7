//! Lines -> statements with blocks: a statement is the words of one line; a `{` (on the same
//! line or the next) opens its block, closed by `}`. Nesting is bounded (keepalived's deepest
//! real block is 4 levels; 10,000 nested `{` must not overflow the stack).

use thiserror::Error;

use super::lexer::{Line, Token};
use super::{Loc, Note};

/// Deepest block nesting accepted.
pub const MAX_NESTING: usize = 32;

/// A structure keepalived would not accept either.
#[derive(Debug, Error)]
pub enum TreeError {
    #[error("{at}: blocks nested more than {MAX_NESTING} deep")]
    TooDeep { at: Loc },
}

/// A statement: its words, its text (from its first word to the next brace), where it is, and
/// its block if it has one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    pub words: Vec<String>,
    pub text: String,
    pub loc: Loc,
    pub block: Option<Vec<Node>>,
}

impl Node {
    pub fn key(&self) -> &str {
        self.words.first().map_or("", String::as_str)
    }
    pub fn arg(&self, i: usize) -> Option<&str> {
        self.words.get(i).map(String::as_str)
    }
    pub fn children(&self) -> &[Node] {
        self.block.as_deref().unwrap_or(&[])
    }
    /// The words after the keyword, joined.
    pub fn args(&self) -> String {
        self.words.get(1..).unwrap_or(&[]).join(" ")
    }
}

struct Cursor<'a> {
    /// (line index, token).
    toks: Vec<(usize, &'a Token)>,
    lines: &'a [Line],
    i: usize,
}

impl Cursor<'_> {
    fn peek(&self) -> Option<(usize, &Token)> {
        self.toks.get(self.i).map(|(l, t)| (*l, *t))
    }
}

/// The statements of `lines`; unbalanced braces become notes (keepalived reports them and goes
/// on).
pub fn build(lines: &[Line], notes: &mut Vec<Note>) -> Result<Vec<Node>, TreeError> {
    let toks = lines
        .iter()
        .enumerate()
        .flat_map(|(k, l)| l.tokens.iter().map(move |t| (k, t)))
        .collect();
    let mut c = Cursor { toks, lines, i: 0 };
    let mut out = Vec::new();
    loop {
        out.extend(block(&mut c, notes, 0)?);
        match c.peek() {
            Some((l, _)) => {
                notes.push(Note::at(
                    &lines[l].loc,
                    "extra `}` (keepalived reports it too): ignored",
                ));
                c.i += 1;
            }
            None => return Ok(out),
        }
    }
}

fn block(c: &mut Cursor<'_>, notes: &mut Vec<Note>, depth: usize) -> Result<Vec<Node>, TreeError> {
    let mut out = Vec::new();
    while let Some((line, t)) = c.peek() {
        if t.is_brace("}") {
            return Ok(out);
        }
        let loc = c.lines[line].loc.clone();
        let mut words = Vec::new();
        let start = t.at;
        let mut end = c.lines[line].text.len();
        while let Some((l, t)) = c.peek() {
            if l != line {
                break;
            }
            if t.is_brace("{") || t.is_brace("}") {
                end = t.at;
                break;
            }
            words.push(t.text.clone());
            c.i += 1;
        }
        let mut blk = None;
        if let Some((_, t)) = c.peek() {
            if t.is_brace("{") {
                if depth + 1 >= MAX_NESTING {
                    return Err(TreeError::TooDeep { at: loc });
                }
                c.i += 1;
                let children = block(c, notes, depth + 1)?;
                if c.peek().is_some() {
                    c.i += 1; // the closing brace
                } else {
                    notes.push(Note::at(
                        &loc,
                        "block not closed by `}` before the end of the file",
                    ));
                }
                blk = Some(children);
            }
        }
        if words.is_empty() {
            if blk.is_some() {
                notes.push(Note::at(&loc, "a block without a keyword is ignored"));
            }
            continue;
        }
        let text = c.lines[line].text[start..end].trim_end().to_string();
        out.push(Node {
            words,
            text,
            loc,
            block: blk,
        });
    }
    Ok(out)
}
