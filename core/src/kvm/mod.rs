//! KVM's side of TDX private memory: the state its private fault path reads and changes.
//!
//! So far: `lpage_info.disallow_lpage` ([`LpageInfo`]) and `mmu_lock` ([`MmuLock`]). The mirror
//! page table, memslots with guest_memfd folio orders, attributes, and the fault path and host
//! operations as step machines build on these (shared/reference/kvm-fault-path.md).

mod lock;
mod lpage;

pub use lock::{MmuLock, NotHeld};
pub use lpage::LpageInfo;
