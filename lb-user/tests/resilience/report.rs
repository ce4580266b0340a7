//! Figures of the resilience scenarios: one row per figure (scenario | figure | goal | result),
//! printed to stderr and appended to `$XLB_RESILIENCE_REPORT` (tab-separated) when it is set;
//! `cargo xtask test --resilience` prints that file as a table.
use std::{io::Write as _, sync::Mutex};

static FILE: Mutex<()> = Mutex::new(());

/// Records one figure. `ok` says whether `result` meets `goal`.
pub fn row(
    scenario: &str,
    figure: &str,
    goal: &str,
    result: impl std::fmt::Display,
    ok: bool,
) -> bool {
    let verdict = if ok { "ok" } else { "FAIL" };
    let line = format!("{scenario}\t{figure}\t{goal}\t{result}\t{verdict}");
    eprintln!("resilience: {}", line.replace('\t', " | "));
    if let Some(path) = std::env::var_os("XLB_RESILIENCE_REPORT") {
        let _g = FILE.lock().unwrap_or_else(|e| e.into_inner());
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            let _ = writeln!(f, "{line}");
        }
    }
    ok
}

/// A figure that is information only (no goal).
pub fn info(scenario: &str, figure: &str, result: impl std::fmt::Display) {
    let _ = row(scenario, figure, "-", result, true);
}

/// A figure whose goal is exactly `goal`.
pub fn eq(scenario: &str, figure: &str, goal: u64, result: u64) -> bool {
    let ok = result == goal;
    row(scenario, figure, &format!("= {goal}"), result, ok);
    ok
}

/// A figure whose goal is at least `goal`.
pub fn at_least(scenario: &str, figure: &str, goal: u64, result: u64) -> bool {
    let ok = result >= goal;
    row(scenario, figure, &format!(">= {goal}"), result, ok);
    ok
}
