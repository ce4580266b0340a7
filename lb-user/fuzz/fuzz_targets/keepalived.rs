//! `xlb::import::keepalived::import_str` (tokenizer, tree, translation, TOML output) on arbitrary
//! bytes, and the emitted TOML through `xlb::config::parse`.
#![no_main]
use libfuzzer_sys::fuzz_target;

#[path = "../common/bodies.rs"]
mod bodies;

fuzz_target!(|data: &[u8]| bodies::keepalived(data));
