//! `xlb man [PAGE] [--dir DIR]`: the man pages. xlb(1) and one xlb-CMD(1) per subcommand come from
//! the clap definitions (clap_mangen); xlb.toml(5) from `man/xlb.toml.5.md`, the hand-written
//! configuration reference (a test checks it names every key the schema accepts), rendered to
//! roff by [`markdown_to_roff`].
use std::{path::PathBuf, process::ExitCode};

use anyhow::{bail, Context as _};
use clap::CommandFactory as _;

use super::Cli;

/// The configuration reference (source of xlb.toml(5)).
pub const CONFIG_REFERENCE: &str = include_str!("../../man/xlb.toml.5.md");

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The page: `xlb` (default), a subcommand (`status` or `xlb-status`), or `xlb.toml`.
    #[arg(default_value = "xlb")]
    pub page: String,
    /// Write every page into DIR (xlb.1, xlb-*.1, xlb.toml.5) instead of printing one.
    #[arg(long, value_name = "DIR", conflicts_with = "page")]
    pub dir: Option<PathBuf>,
}

/// A man page: its file name (`xlb-status.1`) and roff text.
pub struct Page {
    pub file_name: String,
    pub roff: String,
}

fn clap_pages(cmd: clap::Command, out: &mut Vec<Page>) -> anyhow::Result<()> {
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()).cloned() {
        clap_pages(sub, out)?;
    }
    let man = clap_mangen::Man::new(cmd);
    let mut roff = Vec::new();
    man.render(&mut roff).context("rendering a man page")?;
    out.push(Page {
        file_name: man.get_filename(),
        roff: String::from_utf8_lossy(&roff).into_owned(),
    });
    Ok(())
}

/// Every page: xlb.1 and the subcommands' pages, then xlb.toml.5.
pub fn pages() -> anyhow::Result<Vec<Page>> {
    let mut cmd = Cli::command()
        .disable_help_subcommand(true)
        .after_long_help(
            "The configuration file is described in xlb.toml(5) (`xlb man xlb.toml`).",
        );
    cmd.build();
    let mut out = Vec::new();
    clap_pages(cmd, &mut out)?;
    out.push(Page {
        file_name: "xlb.toml.5".into(),
        roff: markdown_to_roff(CONFIG_REFERENCE),
    });
    Ok(out)
}

/// Whether `page` (as typed after `xlb man`) names `file_name`.
fn names(page: &str, file_name: &str) -> bool {
    let stem = file_name.rsplit_once('.').map_or(file_name, |(s, _)| s);
    page == file_name || page == stem || format!("xlb-{page}") == stem
}

pub fn run(args: &Args) -> anyhow::Result<ExitCode> {
    let pages = pages()?;
    if let Some(dir) = &args.dir {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        for p in &pages {
            let path = dir.join(&p.file_name);
            std::fs::write(&path, &p.roff)
                .with_context(|| format!("writing {}", path.display()))?;
        }
        eprintln!("wrote {} man pages into {}", pages.len(), dir.display());
        return Ok(ExitCode::SUCCESS);
    }
    match pages.iter().find(|p| names(&args.page, &p.file_name)) {
        Some(p) => super::stdout::emit(&p.roff)?,
        None => {
            let known: Vec<&str> = pages.iter().map(|p| p.file_name.as_str()).collect();
            bail!(
                "no man page {:?}; there are: {}",
                args.page,
                known.join(" ")
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Roff-escapes running text: backslashes, and a leading `.` or `'` (a request otherwise).
fn escape(text: &str) -> String {
    let s = text.replace('\\', "\\e").replace('-', "\\-");
    if s.starts_with('.') || s.starts_with('\'') {
        format!("\\&{s}")
    } else {
        s
    }
}

/// Inline markup: `code` becomes bold, *text* italic.
fn inline(text: &str) -> String {
    let mut out = String::new();
    for (i, part) in escape(text).split('`').enumerate() {
        if i % 2 == 1 {
            out += &format!("\\fB{part}\\fR");
        } else {
            out += part;
        }
    }
    out
}

/// Renders the reference's markdown subset: `# NAME section "title"` (the .TH line), `## X`
/// (.SH), `### X` (.SS), `* term` followed by lines indented two spaces (a .TP entry), fenced code
/// (.nf), blank lines (.PP).
pub fn markdown_to_roff(md: &str) -> String {
    let mut out = String::new();
    let mut in_code = false;
    for line in md.lines() {
        if line.starts_with("```") {
            out += if in_code {
                ".fi\n.RE\n"
            } else {
                ".RS 4\n.nf\n"
            };
            in_code = !in_code;
        } else if in_code {
            out += &escape(line);
            out.push('\n');
        } else if let Some(th) = line.strip_prefix("# ") {
            out += &format!(".TH {th}\n");
        } else if let Some(h) = line.strip_prefix("## ") {
            out += &format!(".SH {}\n", escape(h));
        } else if let Some(h) = line.strip_prefix("### ") {
            out += &format!(".SS {}\n", inline(h));
        } else if let Some(term) = line.strip_prefix("* ") {
            out += &format!(".TP\n{}\n", inline(term));
        } else if line.trim().is_empty() {
            out += ".PP\n";
        } else {
            out += &inline(line.trim_start());
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_the_subset() {
        let roff = markdown_to_roff(
            "# XLB.TOML 5\n## NAME\nxlb.toml - x\n\n* `port` (integer)\n  The port.\n```\n.x = 1\n```\n",
        );
        assert!(roff.starts_with(".TH XLB.TOML 5\n.SH NAME\n"), "{roff}");
        assert!(
            roff.contains(".TP\n\\fBport\\fR (integer)\nThe port.\n"),
            "{roff}"
        );
        assert!(roff.contains(".nf\n\\&.x = 1\n.fi\n"), "{roff}");
    }

    /// A valid configuration; `{G}`, `{VS}`, ... mark where a table's unknown key goes.
    const SKELETON: &str = r#"
[global]
interfaces = ["eth0"]
{G}
[timeouts]
{T}
[[virtual_server]]
vip = "198.18.0.100"
port = 80
{VS}
check = { type = "tcp" {C} }
[[virtual_server.real_server]]
address = "198.18.0.11"
{RS}
[[vrrp_instance]]
name = "VI_1"
state = "MASTER"
interface = "eth0"
virtual_router_id = 51
virtual_ipaddress = ["198.18.0.100"]
authentication = { auth_type = "PASS", auth_pass = "x" {A} }
{V}
track_script = [{ name = "S" {TR} }]
[[vrrp_sync_group]]
name = "G"
group = ["VI_1"]
{SG}
[[vrrp_script]]
name = "S"
script = ["/bin/true"]
{S}
[[vrrp_track_process]]
name = "P"
process = "p"
{P}
[[vrrp_track_file]]
name = "F"
file = "/f"
{F}
[sync]
director_id = 1
key_file = "/etc/xlb/sync.key"
peers = ["198.18.0.2"]
{SY}
"#;

    const MARKS: [&str; 13] = [
        "{G}", "{T}", "{VS}", "{C}", "{RS}", "{A}", "{V}", "{SG}", "{TR}", "{S}", "{P}", "{F}",
        "{SY}",
    ];

    /// The keys the schema accepts in the table marked `mark`, from the parser's own "unknown
    /// key ..., expected one of `a`, `b`" answer (so a key added to the schema shows up here).
    fn schema_keys(mark: &str) -> Vec<String> {
        let mut src = SKELETON.to_string();
        for m in MARKS {
            let inline = m == "{C}" || m == "{A}" || m == "{TR}";
            let with = if inline {
                ", zz_unknown = 1"
            } else {
                "zz_unknown = 1"
            };
            src = src.replace(m, if m == mark { with } else { "" });
        }
        let errors = crate::config::parse(&src, "t.toml").expect_err(mark);
        let msg = errors
            .iter()
            .map(|e| e.to_string())
            .collect::<Vec<_>>()
            .join("\n");
        let list = msg
            .split_once("expected one of ")
            .unwrap_or_else(|| panic!("{mark}: {msg}"))
            .1;
        list.lines()
            .next()
            .unwrap_or("")
            .split(", ")
            .map(|k| k.trim_matches('`').to_string())
            .collect()
    }

    #[test]
    fn the_reference_describes_every_schema_key() {
        let mut missing = Vec::new();
        for mark in MARKS {
            let keys = schema_keys(mark);
            assert!(keys.len() >= 2, "{mark}: {keys:?}");
            for k in keys {
                let entry = format!("* `{k}`");
                let table = format!("`[virtual_server.{k}]`");
                let array = format!("`[[virtual_server.{k}]]`");
                let alias = format!("`{k}`, accepted as an alias");
                if ![entry, table, array, alias]
                    .iter()
                    .any(|e| CONFIG_REFERENCE.contains(e.as_str()))
                {
                    missing.push(format!("{mark} {k}"));
                }
            }
        }
        assert!(
            missing.is_empty(),
            "keys missing from man/xlb.toml.5.md: {missing:?}"
        );
        for section in [
            "[global]",
            "[timeouts]",
            "[[virtual_server]]",
            "[[vrrp_instance]]",
            "[[vrrp_sync_group]]",
            "[[vrrp_script]]",
            "[[vrrp_track_process]]",
            "[[vrrp_track_file]]",
            "[sync]",
        ] {
            assert!(
                CONFIG_REFERENCE.contains(&format!("## {section}")),
                "{section}"
            );
        }
    }

    #[test]
    fn page_names() {
        assert!(names("xlb", "xlb.1"));
        assert!(names("status", "xlb-status.1"));
        assert!(names("xlb-status", "xlb-status.1"));
        assert!(names("xlb.toml", "xlb.toml.5"));
        assert!(!names("xlb", "xlb-status.1"));
    }
}
