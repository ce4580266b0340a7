//! Which lines of the nested eBPF build's output are diagnostics (warnings, errors and the notes
//! that belong to them) and which are progress (`Compiling`, `Finished`, lock waits, downloads).
//! Shared by `build.rs` and `tests/build_output.rs` (`#[path]` include), so the filter is tested.

/// Whether `line` opens a diagnostic: `warning: ...`, `warning[E..]: ...`, `error: ...`.
pub fn opens_diagnostic(line: &str) -> bool {
    ["warning", "error"].iter().any(|level| {
        line.strip_prefix(level)
            .is_some_and(|rest| rest.starts_with(':') || rest.starts_with('['))
    })
}

/// Whether `line` is cargo's progress output (`   Compiling lb-ebpf v0.1.0 (...)`): a right-aligned
/// capitalised verb.
pub fn is_progress(line: &str) -> bool {
    let trimmed = line.trim_start();
    let verb = trimmed.split_whitespace().next().unwrap_or("");
    line.starts_with(' ')
        && verb.chars().next().is_some_and(|c| c.is_ascii_uppercase())
        && verb.chars().all(|c| c.is_ascii_alphabetic())
}

/// The lines of `text` that belong to a diagnostic: from a line that opens one up to the next
/// progress line or blank line.
pub fn diagnostic_lines(text: &str) -> Vec<&str> {
    let mut inside = false;
    let mut out = Vec::new();
    for line in text.lines() {
        if opens_diagnostic(line) {
            inside = true;
        } else if line.trim().is_empty() || is_progress(line) {
            inside = false;
        }
        if inside {
            out.push(line);
        }
    }
    out
}
