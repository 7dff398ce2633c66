//! hugesept-host-kvm: the host side of hugesept — scenario files and the worlds they describe
//! (`scenario`), the exhaustive explorer (`explore`), livelock cycles (`cycle`), trace files
//! (`trace`) and their minimisation (`minimise`), the policy × guest matrix (`matrix`), the
//! cost model that turns a run's counts into estimated time (`costs`) and the field's shapes
//! it prices (`shapes`), and the `hugesept` command line over them (`cli`).

pub mod cli;
pub mod costs;
pub mod cycle;
pub mod explore;
pub mod matrix;
pub mod minimise;
pub mod scenario;
pub mod shapes;
pub mod trace;
#[cfg(target_os = "linux")]
pub mod vmm;
