//! `xlb doctor`: check a director (and a real server) and explain each finding with its fix.
use std::{net::IpAddr, path::PathBuf, process::ExitCode};

use crate::doctor::{self, gather};

pub fn run(
    config: Option<PathBuf>,
    realserver: bool,
    vips: Vec<IpAddr>,
    json: bool,
    strict: bool,
) -> anyhow::Result<ExitCode> {
    anyhow::ensure!(
        !realserver || !vips.is_empty(),
        "--realserver needs the VIPs to look for: --vip VIP..."
    );
    // Without --config: the default file when it exists (director checks), else host-only checks.
    let config = config.or_else(|| {
        let d = PathBuf::from(super::DEFAULT_CONFIG);
        (d.exists() && !realserver).then_some(d)
    });
    let facts = gather::gather(&gather::Options {
        config,
        realserver_vips: realserver.then_some(vips),
    });
    let findings = doctor::check(&facts);
    let code = doctor::exit_code(&findings, strict);
    if json {
        let count = |s| findings.iter().filter(|f| f.severity == s).count();
        let v = serde_json::json!({
            "findings": findings,
            "errors": count(doctor::Severity::Error),
            "warnings": count(doctor::Severity::Warn),
            "skipped": count(doctor::Severity::Skip),
            "exit": code,
        });
        super::stdout::emit_line(&serde_json::to_string_pretty(&v)?)?;
    } else {
        super::stdout::emit(&doctor::render(&findings))?;
    }
    Ok(ExitCode::from(code))
}
