//! `xlb::vrrp::packet::Advert::decode` (and encode round trip) on arbitrary bytes.
#![no_main]
use libfuzzer_sys::fuzz_target;

#[path = "../common/bodies.rs"]
mod bodies;

fuzz_target!(|data: &[u8]| bodies::vrrp(data));
