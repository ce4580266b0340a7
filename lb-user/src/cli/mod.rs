//! The command line: one file per subcommand. `dispatch` is all `main` calls.
use std::{path::PathBuf, process::ExitCode};

use clap::{CommandFactory as _, Parser, Subcommand};

pub mod check_config;

/// Default configuration file.
pub const DEFAULT_CONFIG: &str = "/etc/xlb/xlb.toml";

/// xlb: an XDP direct-routing load balancer (the LVS-DR + keepalived replacement).
#[derive(Debug, Parser)]
#[command(name = "xlb", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validate a configuration file; every error is reported as file:line:column.
    CheckConfig {
        /// The file to check.
        #[arg(default_value = DEFAULT_CONFIG)]
        file: PathBuf,
    },
    /// Print shell completions (bash, zsh, fish, elvish, powershell) to stdout.
    Completions { shell: clap_complete::Shell },
    /// Write the man pages (xlb.1 and one per subcommand) into a directory.
    Man {
        #[arg(default_value = ".")]
        dir: PathBuf,
    },
}

pub fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::CheckConfig { file } => check_config::run(&file),
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "xlb", &mut std::io::stdout());
            Ok(ExitCode::SUCCESS)
        }
        Command::Man { dir } => {
            std::fs::create_dir_all(&dir)?;
            clap_mangen::generate_to(Cli::command(), &dir)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}
