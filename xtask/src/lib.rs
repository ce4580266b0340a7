//! xlb project tooling, shared by the `cargo xtask` binary and by tests:
//! - [`setup`]: installs what building and testing need (idempotent),
//! - [`lab`]: the namespaced network lab (hosts = netns, segments = bridges, ports = veths),
//! - [`cmd`]: the `cargo xtask` commands (build, test, demo, bench, lab clean),
//! - [`package`]: the Debian package, [`static_build`]: the static (musl) binary in it.
//!
//! xtask must build before bpf-linker exists, so it depends on neither lb-user nor lb-ebpf.
pub mod cmd;
pub mod lab;
pub mod package;
pub mod setup;
pub mod static_build;
pub mod util;
