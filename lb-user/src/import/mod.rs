//! Importers: other tools' configurations -> the xlb TOML file format.
pub mod keepalived;
