//! hugesept-core: executable models of how Intel TDX private memory gets its mapping level.
//!
//! The crate is sans-IO: it holds state and pure transition functions and never performs a
//! TDCALL, an ioctl, a lock, a clock read or an allocation. Frontends (the `/dev/kvm` VMM, the
//! command line, fuzzers, the bare-metal TD payload) drive it.
//!
//! Layers, bottom up:
//! - [`abi`]: the TDX encodings (levels, GPAs, leaves, ACCEPT operand, statuses, exit
//!   qualifications, public S-EPT state codes).
//! - [`sept`]: the TDX module's Secure EPT: entry states, ACCEPT, the host SEAMCALLs, entry
//!   locks, TLB-tracking epochs, content tracking and module profiles.
//! - [`kvm`]: KVM's side: the mirror, the private fault path, the host operations.
//! - [`policy`]: the decision points where the KVM TDX huge-page designs differ.
//! - [`guest`]: how real TD firmware and kernels accept memory, as step machines.
//! - [`world`]: vCPUs, host actors, the module and KVM composed into one deterministic world.

#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod abi;
pub mod guest;
pub mod kvm;
pub mod policy;
pub mod sept;
pub mod snapshot;
pub mod world;
