//! hugesept-host-kvm: the host side of hugesept — scenario files and the worlds they describe,
//! and the `hugesept` command line over the core's models.

pub mod cli;
pub mod explore;
pub mod matrix;
pub mod scenario;
pub mod trace;
