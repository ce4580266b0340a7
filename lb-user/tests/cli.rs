//! The CLI surface: the shipped systemd unit calls real subcommands, completions and man pages
//! are generated from the clap definitions, check-config answers with exit codes 0 and 2.
use std::process::Command;

use clap::Parser as _;
use xlb::cli::Cli;

fn unit_commands() -> Vec<Vec<String>> {
    let unit = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../configs/xlb.service"
    ))
    .unwrap();
    unit.lines()
        .filter_map(|l| {
            l.strip_prefix("ExecStart=")
                .or_else(|| l.strip_prefix("ExecStartPre="))
        })
        .map(|l| {
            l.split_whitespace()
                .map(|w| w.rsplit('/').next().unwrap().to_string())
                .collect()
        })
        .collect()
}

#[test]
fn systemd_unit_uses_real_subcommands() {
    let cmds = unit_commands();
    assert_eq!(cmds.len(), 2);
    for argv in cmds {
        assert_eq!(argv[0], "xlb");
        Cli::try_parse_from(&argv).unwrap_or_else(|e| panic!("{argv:?}: {e}"));
    }
    let unit = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../configs/xlb.service"
    ))
    .unwrap();
    assert!(unit.contains("Type=notify"));
    assert!(unit.contains("ExecReload=/bin/kill -HUP $MAINPID"));
}

#[test]
fn completions_and_man_pages() {
    let xlb = env!("CARGO_BIN_EXE_xlb");
    let out = Command::new(xlb)
        .args(["completions", "bash"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("check-config") && text.contains("realserver"),
        "bash completion lists subcommands"
    );
    let dir = std::env::temp_dir().join(format!("xlb-man-{}", std::process::id()));
    let out = Command::new(xlb)
        .args(["man", dir.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success());
    let page = std::fs::read_to_string(dir.join("xlb.1")).unwrap();
    assert!(page.contains(".TH xlb"), "{page}");
    assert!(dir.join("xlb-status.1").exists());
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn check_config_exit_codes() {
    let xlb = env!("CARGO_BIN_EXE_xlb");
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    for f in ["configs/xlb.toml", "configs/demo.toml"] {
        let out = Command::new(xlb)
            .args(["check-config", &format!("{root}/{f}")])
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{f}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let bad = std::env::temp_dir().join(format!("xlb-bad-{}.toml", std::process::id()));
    std::fs::write(
        &bad,
        "[global]\ninterfaces = [\"eth0\"]\nconn_table_size = \"big\"\n",
    )
    .unwrap();
    let out = Command::new(xlb)
        .args(["check-config", bad.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(":3:19:"), "{err}");
    std::fs::remove_file(bad).unwrap();
}
