//! The kernel side of the daemon: loading, map layout, Maglev tables, the map writer, the sweep.
pub mod alloc;
pub mod batch;
pub mod conn_sets;
pub mod decap;
pub mod desired;
pub mod loader;
pub mod maglev;
pub mod maps;
pub mod mmap;
pub mod ring_plan;
pub mod sweep;
pub mod writer;
