//! Fuzz target bodies, shared by the cargo-fuzz targets (nightly) and by
//! `lb-user/tests/resilience.rs` (stable, deterministic mutations of the seeds). A body must
//! never panic, whatever the input; errors are fine.
#![allow(dead_code)]

use std::path::Path;

/// Configuration text: parse + validate. A configuration that validates must produce a clean
/// error-free second parse of the same text (determinism) and have sane figures.
pub fn config(data: &[u8]) {
    let Ok(src) = std::str::from_utf8(data) else {
        return;
    };
    match xlb::config::parse(src, "fuzz.toml") {
        Ok(cfg) => {
            assert!(
                xlb::config::parse(src, "fuzz.toml").is_ok(),
                "parse is not deterministic"
            );
            for vs in &cfg.virtual_servers {
                let _ = vs.service_name();
            }
        }
        Err(errors) => {
            // Every error renders (with its location) without panicking.
            for e in errors.iter() {
                let _ = e.to_string();
            }
        }
    }
}

/// keepalived.conf text: import, render as TOML, and parse that TOML back (it may fail
/// validation, e.g. an unsupported checker, but must not panic). Includes are anchored in a
/// directory that does not exist, so relative `include`s find nothing.
pub fn keepalived(data: &[u8]) {
    let src = String::from_utf8_lossy(data);
    let imported = xlb::config::keepalived::import_str(
        &src,
        Path::new("/nonexistent/xlb-fuzz/keepalived.conf"),
    );
    if let Ok(toml) = imported.to_toml() {
        let _ = xlb::config::parse(&toml, "imported.toml");
    }
}
