//! `xlb import-keepalived keepalived.conf [-o out.toml]`: translate a keepalived configuration
//! (see [`crate::config::keepalived`]).
use std::{path::Path, process::ExitCode};

use anyhow::Context as _;

pub fn run(input: &Path, output: Option<&Path>) -> anyhow::Result<ExitCode> {
    let imported = crate::config::keepalived::import_file(input)?;
    let text = imported.to_toml()?;
    // The result must be a valid xlb configuration; say so loudly if not.
    let name = output.map_or("<stdout>".to_string(), |p| p.display().to_string());
    let check = crate::config::parse(&text, &name);
    match output {
        Some(p) => std::fs::write(p, &text).with_context(|| format!("writing {}", p.display()))?,
        None => super::stdout::emit(&text)?,
    }
    for n in &imported.notes {
        eprintln!("note: {n}");
    }
    match check {
        Ok(_) => {
            eprintln!(
                "{}: imported ({} note(s)); review the notes, then `xlb check-config`",
                input.display(),
                imported.notes.len()
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(errs) => {
            for e in errs.iter() {
                eprintln!("{e}");
            }
            eprintln!("the generated configuration does not validate: fix it by hand");
            Ok(ExitCode::from(2))
        }
    }
}
