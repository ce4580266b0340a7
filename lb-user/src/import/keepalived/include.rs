//! The lines of a keepalived configuration across its `include` files.
//!
//! keepalived splices each file matched by `include GLOB` (relative to the including file's
//! directory, glob matches in sorted order) in place of the `include` line. It has no loop
//! detection: `include /etc/keepalived/*.conf` in a file of that directory includes itself until
//! memory runs out. Here a file that is already being read (same device and inode, so symlinks
//! and `..` paths are caught too) is an error at the `include` line, as are more than
//! [`MAX_DEPTH`] nested includes and more than [`MAX_FILES`] files in all (a glob fan-out).

use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use thiserror::Error;

use super::decode::{decode, first_non_ascii_line, DecodeError};
use super::{Loc, Note};

/// Deepest chain of nested includes.
pub const MAX_DEPTH: usize = 32;
/// Most files read for one import.
pub const MAX_FILES: usize = 256;
/// Largest file read (keepalived configurations are a few KiB).
const MAX_FILE_BYTES: u64 = 16 << 20;

/// Why the files of a configuration cannot be read.
#[derive(Debug, Error)]
pub enum IncludeError {
    #[error("{at}: include loop: {file} is already being read (via {chain})")]
    Loop {
        at: Loc,
        file: String,
        chain: String,
    },
    #[error("{at}: includes nested more than {MAX_DEPTH} deep")]
    TooDeep { at: Loc },
    #[error("{at}: more than {MAX_FILES} files included in all (a loop through globs?)")]
    TooMany { at: Loc },
    #[error("{}cannot read {file}: {reason}", at_prefix(.at))]
    Read {
        at: Option<Loc>,
        file: String,
        reason: String,
    },
    #[error(transparent)]
    Decode(#[from] DecodeError),
}

fn at_prefix(at: &Option<Loc>) -> String {
    at.as_ref().map(|l| format!("{l}: ")).unwrap_or_default()
}

/// One line of a file, where it is, and the absolute directory of its file (`${_PWD}`).
#[derive(Clone, Debug)]
pub struct RawLine {
    pub loc: Loc,
    pub text: String,
    pub dir: Arc<Path>,
}

struct OpenFile {
    name: Arc<str>,
    dir: Arc<Path>,
    /// (device, inode); `None` for text given in memory.
    id: Option<(u64, u64)>,
    lines: Vec<String>,
    next: usize,
}

enum Frame {
    /// A glob match not read yet (the earlier matches come first).
    Pending {
        path: PathBuf,
        at: Loc,
    },
    Open(OpenFile),
}

/// The lines of the main file with its includes spliced in, read lazily.
pub struct LineSource {
    stack: Vec<Frame>,
    files_read: usize,
    /// Includes resolving outside this directory are not followed (fuzzing).
    within: Option<PathBuf>,
    pub notes: Vec<Note>,
}

impl LineSource {
    /// Reads the main file at `path`.
    pub fn open(path: &Path, within: Option<PathBuf>) -> Result<Self, IncludeError> {
        let mut s = Self::empty(within);
        let f = s.read(path, None)?;
        s.stack.push(Frame::Open(f));
        Ok(s)
    }

    /// Main file text given in memory; `path` names it and anchors its includes.
    pub fn from_text(
        text: &str,
        path: &Path,
        within: Option<PathBuf>,
    ) -> Result<Self, IncludeError> {
        // The same refusal as for a file's bytes.
        decode(text.as_bytes(), &path.display().to_string())?;
        let mut s = Self::empty(within);
        let id = std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()));
        s.stack.push(Frame::Open(OpenFile {
            name: path.display().to_string().into(),
            dir: abs_dir(path),
            id,
            lines: text.lines().map(String::from).collect(),
            next: 0,
        }));
        Ok(s)
    }

    fn empty(within: Option<PathBuf>) -> Self {
        Self {
            stack: Vec::new(),
            files_read: 0,
            within,
            notes: Vec::new(),
        }
    }

    /// The next line, opening included files as they come.
    pub fn next_line(&mut self) -> Result<Option<RawLine>, IncludeError> {
        loop {
            match self.stack.last_mut() {
                None => return Ok(None),
                Some(Frame::Open(f)) if f.next < f.lines.len() => {
                    let text = std::mem::take(&mut f.lines[f.next]);
                    f.next += 1;
                    let loc = Loc::new(f.name.clone(), f.next);
                    return Ok(Some(RawLine {
                        loc,
                        text,
                        dir: f.dir.clone(),
                    }));
                }
                Some(Frame::Open(_)) => {
                    self.stack.pop();
                }
                Some(Frame::Pending { .. }) => {
                    if let Some(Frame::Pending { path, at }) = self.stack.pop() {
                        let f = self.read(&path, Some(&at))?;
                        self.stack.push(Frame::Open(f));
                    }
                }
            }
        }
    }

    /// `include PATTERN` at `at`: the matching files come next.
    pub fn include(&mut self, pattern: &str, at: &Loc) -> Result<(), IncludeError> {
        let open: Vec<&OpenFile> = self.open_files().collect();
        if open.len() >= MAX_DEPTH {
            return Err(IncludeError::TooDeep { at: at.clone() });
        }
        let base = open
            .last()
            .map_or_else(|| Path::new(".").into(), |f| f.dir.clone());
        let full = if Path::new(pattern).is_absolute() {
            PathBuf::from(pattern)
        } else {
            base.join(pattern)
        };
        if let Some(w) = &self.within {
            if !full.starts_with(w) || pattern.contains("..") {
                self.notes.push(Note::at(
                    at,
                    format!("`include {pattern}`: outside {}: not followed", w.display()),
                ));
                return Ok(());
            }
        }
        let files = glob(&relative_to_cwd(&full, pattern, &base));
        if files.is_empty() {
            self.notes.push(Note::at(
                at,
                format!("`include {pattern}` matches no file (keepalived skips it too)"),
            ));
        }
        for path in files.into_iter().rev() {
            self.stack.push(Frame::Pending {
                path,
                at: at.clone(),
            });
        }
        Ok(())
    }

    fn open_files(&self) -> impl Iterator<Item = &OpenFile> {
        self.stack.iter().filter_map(|f| match f {
            Frame::Open(o) => Some(o),
            Frame::Pending { .. } => None,
        })
    }

    fn read(&mut self, path: &Path, at: Option<&Loc>) -> Result<OpenFile, IncludeError> {
        let name = path.display().to_string();
        let read_err = |reason: String| IncludeError::Read {
            at: at.cloned(),
            file: name.clone(),
            reason,
        };
        self.files_read += 1;
        if self.files_read > MAX_FILES {
            if let Some(at) = at {
                return Err(IncludeError::TooMany { at: at.clone() });
            }
        }
        let meta = std::fs::metadata(path).map_err(|e| read_err(e.to_string()))?;
        if !meta.is_file() {
            return Err(read_err("not a regular file".into()));
        }
        if meta.len() > MAX_FILE_BYTES {
            return Err(read_err(format!(
                "{} bytes: too large for a keepalived configuration",
                meta.len()
            )));
        }
        let id = (meta.dev(), meta.ino());
        if let Some(at) = at {
            let chain: Vec<&OpenFile> = self.open_files().collect();
            if chain.iter().any(|f| f.id == Some(id)) {
                let names: Vec<&str> = chain.iter().map(|f| &*f.name).collect();
                return Err(IncludeError::Loop {
                    at: at.clone(),
                    file: name,
                    chain: names.join(" -> "),
                });
            }
        }
        let bytes = std::fs::read(path).map_err(|e| read_err(e.to_string()))?;
        let decoded = decode(&bytes, &name)?;
        let name: Arc<str> = name.into();
        if let Some(enc) = decoded.assumed {
            self.notes.push(Note::at(
                &Loc::new(name.clone(), first_non_ascii_line(&bytes)),
                format!(
                    "not UTF-8: decoded as {enc}, the encoding keepalived.conf files in a legacy \
                     locale usually have; check the non-ASCII text (first here)"
                ),
            ));
        }
        Ok(OpenFile {
            name,
            dir: abs_dir(path),
            id: Some(id),
            lines: decoded.text.lines().map(String::from).collect(),
            next: 0,
        })
    }
}

/// A relative pattern stays relative to the working directory when its base was (so that file
/// names in notes read as the operator gave them).
fn relative_to_cwd(full: &Path, pattern: &str, base: &Path) -> PathBuf {
    if Path::new(pattern).is_absolute() {
        return full.to_path_buf();
    }
    match std::env::current_dir() {
        Ok(cwd) => match base.strip_prefix(&cwd) {
            Ok(rel) => rel.join(pattern),
            Err(_) => full.to_path_buf(),
        },
        Err(_) => full.to_path_buf(),
    }
}

/// The absolute directory of `file` (keepalived chdirs there while reading it).
fn abs_dir(file: &Path) -> Arc<Path> {
    let dir = file.parent().unwrap_or(Path::new("."));
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    std::path::absolute(dir)
        .unwrap_or_else(|_| dir.to_path_buf())
        .into()
}

/// Expands `*`, `?` and `[...]` in every component of `pattern`; sorted, regular files only,
/// names starting with `.` only when the pattern says so (glob(3)).
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
                .filter(|n| (!n.starts_with('.') || s.starts_with('.')) && fnmatch(&s, n))
                .collect();
            names.sort();
            next.extend(names.into_iter().map(|n| base.join(n)));
        }
        cur = next;
    }
    cur.into_iter().filter(|p| p.is_file()).collect()
}

/// Shell wildcard match (`*`, `?`, `[abc]`, `[a-z]`, `[!x]`), linear in practice: a `*` is
/// retried from the last star only (no exponential backtracking on hostile patterns).
pub fn fnmatch(pat: &str, name: &str) -> bool {
    let p: Vec<char> = pat.chars().collect();
    let n: Vec<char> = name.chars().collect();
    let (mut pi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        let step = match p.get(pi) {
            Some('*') => {
                star = Some((pi, ni));
                pi += 1;
                continue;
            }
            Some('?') => Some(pi + 1),
            Some('[') => match class(&p, pi, n[ni]) {
                Some((true, next)) => Some(next),
                Some((false, _)) => None,
                None => (n[ni] == '[').then_some(pi + 1),
            },
            Some(c) => (*c == n[ni]).then_some(pi + 1),
            None => None,
        };
        match (step, star) {
            (Some(next), _) => {
                pi = next;
                ni += 1;
            }
            (None, Some((sp, sn))) => {
                pi = sp + 1;
                ni = sn + 1;
                star = Some((sp, sn + 1));
            }
            (None, None) => return false,
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// `[...]` at `p[at]` against `c`: (matched, index after `]`), `None` if not closed.
fn class(p: &[char], at: usize, c: char) -> Option<(bool, usize)> {
    let neg = matches!(p.get(at + 1), Some('!' | '^'));
    let start = at + 1 + usize::from(neg);
    let end = (start + 1..p.len()).find(|&i| p[i] == ']')?;
    let set = &p[start..end];
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
    Some((hit != neg, end + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards() {
        assert!(fnmatch("*.conf", "a.conf") && !fnmatch("*.conf", "a.conf.bak"));
        assert!(fnmatch("vs-[0-9]?.c*", "vs-12.conf") && !fnmatch("[!v]*", "vs"));
        assert!(fnmatch("[]x]", "]") && fnmatch("a[", "a[") && !fnmatch("a?", "a"));
        assert!(fnmatch("**", "") && fnmatch("*a*b", "xxaxxb") && !fnmatch("*a*b", "xxaxx"));
        // Hostile pattern: returns at once instead of exploring 2^n splits.
        let bomb = "*a".repeat(40) + "b";
        assert!(!fnmatch(&bomb, &"a".repeat(200)));
    }
}
