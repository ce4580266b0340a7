//! `cargo xtask`: project tooling for xlb. See `cargo xtask --help`.
use anyhow::Result;
use clap::{Parser, Subcommand};
use xtask::{cmd, package, setup, static_build};

#[derive(Parser)]
#[command(
    name = "cargo xtask",
    bin_name = "cargo xtask",
    about = "xlb project tooling (needs root: it installs packages and makes network namespaces)"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Install what building, the demo and the tests need (apt packages, nightly + rust-src, bpf-linker,
    /// bpffs, cargo-deb); idempotent, and never enables a service on the host.
    Setup,
    /// Build the xlb binary (`cargo build -p lb-user`).
    Build {
        #[arg(long)]
        release: bool,
        /// A static binary for old distributions (glibc 2.28+): x86_64-unknown-linux-musl, release.
        #[arg(long = "static", conflicts_with = "release")]
        static_musl: bool,
    },
    /// Build the Debian package target/debian/xlb_VERSION-1_amd64.deb (static binary, unit, man
    /// pages, completions, example configs).
    Package,
    /// Run all tests (`cargo test --workspace --exclude lb-ebpf --no-fail-fast`, XLB_TEST_FULL=1).
    Test {
        /// Run only the resilience suite (`cargo test -p lb-user --test resilience -- --include-ignored`).
        #[arg(long)]
        resilience: bool,
        /// Passed to the test binaries (a name filter, --nocapture, ...).
        #[arg(last = true)]
        extra: Vec<String>,
    },
    /// Build xlb, make a namespaced lab (client, director, rs1, rs2) and show traffic balanced.
    Demo,
    /// Run the benchmarks (results in bench/results/, method in bench/README.md).
    Bench {
        /// Tiny counts: runs in seconds (also run by the test suite).
        #[arg(long)]
        quick: bool,
        /// Drive the kernel packet generator (/proc/net/pktgen) on IFACE instead.
        #[arg(long, value_name = "IFACE")]
        pktgen: Option<String>,
    },
    /// Manage lab leftovers.
    Lab {
        #[command(subcommand)]
        cmd: LabCmd,
    },
}

#[derive(Subcommand)]
enum LabCmd {
    /// Remove every `xlb-*` netns (killing its processes), `xlb-*` link in the root netns and lab mount.
    Clean,
}

fn main() -> Result<()> {
    match Cli::parse().cmd {
        Cmd::Setup => setup::ensure(false),
        Cmd::Build {
            static_musl: true, ..
        } => {
            setup::ensure(true)?;
            static_build::build().map(|_| ())
        }
        Cmd::Build { release, .. } => cmd::build(release),
        Cmd::Package => package::package().map(|_| ()),
        Cmd::Test { resilience, extra } => cmd::test(resilience, &extra),
        Cmd::Demo => cmd::demo(),
        Cmd::Bench { quick, pktgen } => cmd::bench(quick, pktgen.as_deref()),
        Cmd::Lab { cmd: LabCmd::Clean } => {
            setup::ensure(true)?;
            cmd::lab_clean()
        }
    }
}
