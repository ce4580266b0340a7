//! `cargo xtask package`: the Debian package `target/debian/xlb_<version>-1_amd64.deb`.
//!
//! The binary is the static one ([`static_build`]), so the package installs on Debian 11 and
//! Ubuntu 20.04 as well as on current releases. Generated files go to `target/xlb-package/`,
//! where the `[package.metadata.deb]` assets of lb-user/Cargo.toml pick them up:
//! - `man/`: `xlb man --dir` (xlb.1, xlb-*.1, xlb.toml.5), gzipped as Debian ships man pages,
//! - `completions/`: bash, zsh, fish,
//! - `systemd/xlb.service`: configs/xlb.service with the package's `/usr/bin/xlb` paths.
//!
//! Then `cargo deb --no-build` (cargo-deb, installed by setup) assembles the package.
use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Context as _, Result};

use crate::{
    setup, static_build,
    util::{cargo, output_ok, run_inherit, target_dir, workspace_root},
};

/// Where the generated package inputs go: `<workspace>/target/xlb-package`, the path the assets
/// in lb-user/Cargo.toml name (also when CARGO_TARGET_DIR moves the build elsewhere).
pub fn staging_dir() -> PathBuf {
    workspace_root().join("target").join("xlb-package")
}

/// configs/xlb.service as installed by the package: the binary is `/usr/bin/xlb`, and the
/// manual-install hint is dropped.
pub fn packaged_unit(unit: &str) -> String {
    unit.lines()
        .filter(|l| !l.starts_with("# Install:") && !l.starts_with("#          "))
        .map(|l| l.replace("/usr/local/bin/xlb", "/usr/bin/xlb"))
        .map(|l| l + "\n")
        .collect()
}

fn xlb_stdout(bin: &Path, args: &[&str]) -> Result<String> {
    output_ok(Command::new(bin).args(args))
}

/// Writes man pages, completions and the unit under [`staging_dir`].
pub fn generate_inputs(bin: &Path) -> Result<PathBuf> {
    let dir = staging_dir();
    if dir.exists() {
        fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    let man = dir.join("man");
    output_ok(Command::new(bin).arg("man").arg("--dir").arg(&man))?;
    // -n: no name/timestamp in the gzip header, so the package is reproducible.
    run_inherit(
        Command::new("sh")
            .arg("-c")
            .arg("gzip -9nf -- *")
            .current_dir(&man),
    )?;
    let comp = dir.join("completions");
    fs::create_dir_all(&comp)?;
    for (shell, file) in [("bash", "xlb.bash"), ("zsh", "_xlb"), ("fish", "xlb.fish")] {
        fs::write(comp.join(file), xlb_stdout(bin, &["completions", shell])?)?;
    }
    let systemd = dir.join("systemd");
    fs::create_dir_all(&systemd)?;
    let unit = fs::read_to_string(workspace_root().join("configs/xlb.service"))?;
    fs::write(systemd.join("xlb.service"), packaged_unit(&unit))?;
    Ok(dir)
}

/// The `.deb` path in cargo-deb's output (it prints the path on success).
pub fn deb_path_in(stdout: &str) -> Option<PathBuf> {
    stdout
        .lines()
        .map(str::trim)
        .rfind(|l| l.ends_with(".deb"))
        .map(PathBuf::from)
}

/// Builds the package; returns the `.deb`.
pub fn package() -> Result<PathBuf> {
    setup::ensure(true)?;
    let bin = static_build::build()?;
    generate_inputs(&bin)?;
    let out_dir = target_dir().join("debian");
    let mut c = cargo();
    c.args(["deb", "-p", "lb-user", "--no-build", "--target"])
        .arg(static_build::MUSL_TARGET)
        .arg("--output")
        .arg(&out_dir)
        .current_dir(workspace_root());
    // Its stderr (shown only on failure) warns that the ../target/xlb-package assets "will not
    // be built": true, they are generated above.
    let stdout = output_ok(&mut c)?;
    let Some(deb) = deb_path_in(&stdout) else {
        bail!("cargo deb did not say where the package is: {stdout}");
    };
    println!("package: {}", deb.display());
    Ok(deb)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_packaged_unit_runs_usr_bin_xlb() {
        let unit = fs::read_to_string(workspace_root().join("configs/xlb.service")).unwrap();
        let packaged = packaged_unit(&unit);
        assert!(!packaged.contains("/usr/local/bin"), "{packaged}");
        assert!(packaged.contains("ExecStart=/usr/bin/xlb run --config ${XLB_CONFIG}"));
        assert!(packaged.contains("ExecStartPre=/usr/bin/xlb check-config ${XLB_CONFIG}"));
        assert!(packaged.contains("ExecReload=/usr/bin/xlb reload --config ${XLB_CONFIG}"));
        assert!(packaged.contains("[Install]"));
    }

    #[test]
    fn finds_the_deb_in_cargo_debs_output() {
        let out = "warning: x\n/w/target/debian/xlb_0.1.0-1_amd64.deb\n";
        assert_eq!(
            deb_path_in(out),
            Some(PathBuf::from("/w/target/debian/xlb_0.1.0-1_amd64.deb"))
        );
        assert_eq!(deb_path_in("nothing"), None);
    }
}
