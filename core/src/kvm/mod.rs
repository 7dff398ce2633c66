//! KVM's side of TDX private memory: the state its private fault path reads and changes.
//!
//! The per-VM state ([`Kvm`]: mirror page table, memslots, guest_memfd folio levels,
//! private/shared attributes, lpage_info, mmu_lock), the private fault path as a step machine
//! ([`FaultPath`]) and the split sequence it shares with the host operations ([`Split`])
//! (shared/reference/kvm-fault-path.md).

mod check;
mod display;
mod fault;
mod host_ops;
mod lock;
mod lpage;
mod snapshot;
mod split;
mod stats;
mod storage;
mod tdp_map;
mod vm;

pub use check::MirrorMismatch;
pub use fault::{FaultCtx, FaultEnd, FaultPath, FaultStats, FaultStep, RetPf};
pub use host_ops::{HostOpEnd, HostOpKind, HostOperation, HostStep};
pub use lock::{MmuLock, NotHeld};
pub use lpage::LpageInfo;
pub use split::{Finish, Split, SplitStep};
pub use stats::PageStats;
pub use storage::{Attrs, KvmArrayStorage, KvmGig, KvmRegion, KvmStorage, MirrorTable, Spte};
pub use vm::{Kvm, KvmError, MAX_MEMSLOTS, Memslot};
