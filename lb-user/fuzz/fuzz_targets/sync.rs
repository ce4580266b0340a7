//! `xlb::sync::codec::decode` (xlb's sync message, re-signed so records are reached) and
//! `xlb::sync::ipvs::decode` (IPVS sync v1) on arbitrary bytes, with round trips.
#![no_main]
use libfuzzer_sys::fuzz_target;

#[path = "../common/bodies.rs"]
mod bodies;

fuzz_target!(|data: &[u8]| bodies::sync(data));
