//! hugesept-core: executable models of how Intel TDX private memory gets its mapping level.
//!
//! The crate is sans-IO: it holds state and pure transition functions and never performs a
//! TDCALL, an ioctl, a lock, a clock read or an allocation. Frontends (the `/dev/kvm` VMM, the
//! command line, fuzzers, the bare-metal TD payload) drive it.
//!
//! Layers, bottom up; each imports only the layers below it:
//! - [`abi`]: the TDX encodings (levels, GPAs, leaves, ACCEPT operand, statuses, exit
//!   qualifications, public S-EPT state codes).
//! - [`sept`]: the TDX module's Secure EPT: entry states, ACCEPT, the host SEAMCALLs, entry
//!   locks, TLB-tracking epochs, content tracking and module profiles.
//! - [`policy`]: the decision points where the KVM TDX huge-page designs differ (it reads
//!   the module's profile, nothing of KVM's state).
//! - [`kvm`]: KVM's side: the mirror, the private fault path, the host operations; it asks
//!   the policy at each decision point.
//! - [`guest`]: how real TD firmware and kernels accept memory, as step machines.
//! - [`world`]: vCPUs, host actors, the module and KVM composed into one deterministic world.
//!
//! Beside them, [`payload`]: the contract between the hugesept VMM and the guest-td payload
//! (boot block, reports, hugesept calls, content in real memory); and [`snapshot`]: the explorer's incremental-state plumbing (change records,
//! copies by what changed, hashing apart), one trait that the S-EPT model, KVM's model and
//! the world implement in their own `snapshot.rs`. [`broken`] holds the deliberately broken
//! variants the fuzzers are measured against; only the `broken` feature can turn one on.
//!
//! Each layer has one error type, `Copy`, whose `Display` names its inner cause:
//! [`abi::AbiError`], [`sept::SeptError`], [`policy::PolicyError`], [`kvm::KvmError`],
//! [`world::WorldError`].

#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod abi;
pub mod broken;
pub mod guest;
pub mod kvm;
pub mod payload;
pub mod policy;
pub mod sept;
pub mod snapshot;
pub mod world;
