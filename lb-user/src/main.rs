//! `xlb`: clap dispatch only; every subcommand lives in `xlb::cli`.
use clap::Parser as _;

fn main() -> std::process::ExitCode {
    let cli = xlb::cli::Cli::parse();
    match xlb::cli::dispatch(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("xlb: {e:#}");
            std::process::ExitCode::from(1)
        }
    }
}
