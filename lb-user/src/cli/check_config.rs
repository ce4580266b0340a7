//! `xlb check-config [--strict] FILE`: errors exit 2, warnings exit 0 (1 with `--strict`).
use std::{path::Path, process::ExitCode};

pub fn run(file: &Path, strict: bool) -> anyhow::Result<ExitCode> {
    match crate::config::load_checked(file) {
        Ok((cfg, warnings)) => {
            for w in &warnings {
                eprintln!("{w}");
            }
            let warned = if warnings.is_empty() {
                String::new()
            } else {
                format!(", {} warning(s)", warnings.len())
            };
            super::stdout::emit_line(&format!(
                "{}: OK ({} virtual servers, {} real servers, {} VRRP instances){warned}",
                file.display(),
                cfg.virtual_servers.len(),
                cfg.virtual_servers
                    .iter()
                    .map(|v| v.real_servers.len())
                    .sum::<usize>(),
                cfg.vrrp_instances.len()
            ))?;
            for holder in crate::doctor::vip::holders(&cfg) {
                super::stdout::emit_line(&format!("  {holder}"))?;
            }
            if strict && !warnings.is_empty() {
                eprintln!(
                    "{}: {} warning(s) and --strict: failing",
                    file.display(),
                    warnings.len()
                );
                return Ok(ExitCode::from(1));
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(errors) => {
            for e in errors.iter() {
                eprintln!("{e}");
            }
            eprintln!(
                "{}: {} error(s); nothing was applied",
                file.display(),
                errors.len()
            );
            Ok(ExitCode::from(2))
        }
    }
}
