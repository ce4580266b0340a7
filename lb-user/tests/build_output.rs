//! The build's terminal output: the nested eBPF build's progress (`Compiling ...`, `Finished ...`)
//! is not forwarded as `warning: lb-user@...` lines; real diagnostics are.
#[path = "../build/diagnostics.rs"]
mod diagnostics;

/// Cargo's progress verbs, as the nested build prints them (right-aligned).
fn is_cargo_progress(line: &str) -> bool {
    let verbs = [
        "Compiling",
        "Finished",
        "Fresh",
        "Blocking",
        "Updating",
        "Downloading",
        "Downloaded",
        "Locking",
        "Adding",
        "Checking",
        "Running",
        "Building",
    ];
    let first = line.split_whitespace().next().unwrap_or("");
    line.starts_with(' ') && verbs.contains(&first)
}

const NESTED_STDERR: &str = "   Compiling compiler_builtins v0.1.160
   Compiling core v0.0.0 (/root/.rustup/toolchains/nightly/lib/rustlib/src/rust/library/core)
    Blocking waiting for file lock on build directory
warning: unused manifest key: package.foo
   Compiling lb-ebpf v0.1.0 (/work/lb-ebpf)
    Finished `release` profile [optimized] target(s) in 21.3s
";

const RENDERED_WARNING: &str = "warning: unused variable: `x`
  --> lb-ebpf/src/main.rs:35:9
   |
35 |     let x = 1u32;
   |         ^ help: if this is intentional, prefix it with an underscore: `_x`
   |
   = note: `#[warn(unused_variables)]` (part of `#[warn(unused)]`) on by default

";

#[test]
fn progress_is_dropped_and_cargo_warnings_kept() {
    assert_eq!(
        diagnostics::diagnostic_lines(NESTED_STDERR),
        vec!["warning: unused manifest key: package.foo"]
    );
}

#[test]
fn a_rendered_compiler_warning_is_kept_whole() {
    let lines = diagnostics::diagnostic_lines(RENDERED_WARNING);
    assert_eq!(lines.len(), 7, "{lines:?}");
    assert_eq!(lines[0], "warning: unused variable: `x`");
    assert!(lines.iter().all(|l| !is_cargo_progress(l)));
}

#[test]
fn errors_are_kept() {
    let text =
        "   Compiling lb-ebpf v0.1.0\nerror[E0425]: cannot find value `y`\n --> src/main.rs:3:5\n";
    assert_eq!(diagnostics::diagnostic_lines(text).len(), 2);
}

/// The build script's recorded output for this very build (cargo replays its `cargo:warning`
/// lines on every later build, also when nothing is rebuilt): none is progress.
#[test]
fn this_builds_script_output_has_no_progress_warnings() {
    let output = std::path::Path::new(env!("OUT_DIR")).join("../output");
    let text = std::fs::read_to_string(&output)
        .unwrap_or_else(|e| panic!("reading {}: {e}", output.display()));
    assert!(text.contains("cargo:rerun-if-changed="), "{text}");
    let progress: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("cargo:warning="))
        .filter(|l| is_cargo_progress(l))
        .collect();
    assert!(
        progress.is_empty(),
        "progress forwarded as warnings: {progress:?}"
    );
}
