//! The kernel side of the daemon: loading, map layout, Maglev tables, the map writer, the sweep.
pub mod loader;
pub mod maglev;
