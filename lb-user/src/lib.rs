//! xlb: daemon and CLI library.
pub mod cli;
pub mod config;
pub mod control;
pub mod controller;
pub mod daemon;
pub mod dataplane;
pub mod doctor;
pub mod health;
pub mod import;
pub mod logging;
pub mod metrics;
pub mod net;
pub mod overlay;
pub mod realserver;
pub mod realserver_advmss;
pub mod realserver_advmss_io;
pub mod realserver_kernel;
pub mod realserver_kernel_io;
pub mod realserver_tunnel;
pub mod report;
pub mod state;
pub mod status;
pub mod sync;
pub mod tunnel;
pub mod vrrp;

/// The XDP object built from `lb-ebpf` by `build.rs`.
pub static BPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/lb-ebpf"));
