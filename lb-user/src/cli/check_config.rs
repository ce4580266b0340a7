//! `xlb check-config FILE`.
use std::{path::Path, process::ExitCode};

pub fn run(file: &Path) -> anyhow::Result<ExitCode> {
    match crate::config::load(file) {
        Ok(cfg) => {
            super::stdout::emit_line(&format!(
                "{}: OK ({} virtual servers, {} real servers, {} VRRP instances)",
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
