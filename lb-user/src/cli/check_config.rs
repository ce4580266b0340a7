//! `xlb check-config FILE`.
use std::{path::Path, process::ExitCode};

pub fn run(file: &Path) -> anyhow::Result<ExitCode> {
    match crate::config::load(file) {
        Ok(cfg) => {
            println!(
                "{}: OK ({} virtual servers, {} real servers, {} VRRP instances)",
                file.display(),
                cfg.virtual_servers.len(),
                cfg.virtual_servers
                    .iter()
                    .map(|v| v.real_servers.len())
                    .sum::<usize>(),
                cfg.vrrp_instances.len()
            );
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
