//! `xlb`: clap dispatch only; every subcommand lives in `xlb::cli`.
use clap::Parser as _;

fn main() -> std::process::ExitCode {
    let cli = xlb::cli::Cli::parse();
    match xlb::cli::dispatch(cli) {
        Ok(code) => code,
        // `xlb conns | head`: the reader has what it wanted.
        Err(e) if xlb::cli::stdout::is_stdout_closed(&e) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xlb: {e:#}");
            std::process::ExitCode::from(1)
        }
    }
}
