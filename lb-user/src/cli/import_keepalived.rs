//! `xlb import-keepalived keepalived.conf [-o out.toml] [-i ID]`: translate a keepalived
//! configuration (see [`crate::import::keepalived`]).
use std::{path::Path, process::ExitCode};

use anyhow::Context as _;

use crate::import::keepalived::{self, Imported, Options};

pub fn run(
    input: &Path,
    output: Option<&Path>,
    config_id: Option<String>,
) -> anyhow::Result<ExitCode> {
    let mut opts = Options::from_host();
    if let Some(id) = config_id {
        opts.config_id = id;
    }
    let imported = keepalived::import_file(input, &opts)?;
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
    eprintln!("{}", summary_line(input, &imported));
    if let Err(errs) = check {
        for e in errs.iter() {
            let origin = imported
                .origin_of_line(&text, e.line)
                .map(|l| format!("{l}: "))
                .unwrap_or_default();
            eprintln!("{origin}{} (in the generated file: {e})", e.message);
        }
        eprintln!("the generated configuration does not validate: fix it by hand");
        return Ok(ExitCode::from(2));
    }
    if imported.summary.every_virtual_server_dropped() {
        eprintln!(
            "{}: no virtual_server could be translated (see the notes)",
            input.display()
        );
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

fn summary_line(input: &Path, i: &Imported) -> String {
    let s = &i.summary;
    format!(
        "{}: imported {} of {} virtual_server(s) ({} xlb virtual servers) and {} of {} \
         vrrp_instance(s), {} note(s); review the notes, then `xlb check-config`",
        input.display(),
        s.virtual_servers_imported,
        s.virtual_servers_seen,
        i.config.virtual_servers.len(),
        s.vrrp_instances_imported,
        s.vrrp_instances_seen,
        i.notes.len()
    )
}
