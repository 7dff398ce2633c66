//! KVM's page statistics for the TD's private memory (`kvm->stat.pages[level]`, which
//! `kvm_update_page_stats` keeps): how many leaves the mirror holds at each level.
//!
//! The v5 review of the huge-page series corrected where KVM updates them: only after
//! `set_external_spte`'s SEAMCALL succeeds (Yan Zhao on 08/45, 2026-02-11; Sean
//! Christopherson's fix, 2026-02-13; kvm-fault-path.md, "State of the field"), since a failed
//! AUG or DEMOTE had counted pages that were never mapped. The model writes a mirror leaf only
//! after its SEAMCALL's second phase returned success (tdp_map.rs `install_end`, split.rs
//! `demote_end`), so it keeps the statistics as the mirror's leaves, which is what the
//! corrected update order guarantees.

use crate::abi::{Gfn, PageLevel};

use super::{Kvm, KvmStorage};

/// Pages mapped at each level.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct PageStats {
    /// 4K leaves.
    pub pages_4k: u64,
    /// 2M leaves.
    pub pages_2m: u64,
    /// 1G leaves.
    pub pages_1g: u64,
}

impl PageStats {
    /// The count at `level`.
    pub const fn at(&self, level: PageLevel) -> u64 {
        match level {
            PageLevel::Size4K => self.pages_4k,
            PageLevel::Size2M => self.pages_2m,
            PageLevel::Size1G => self.pages_1g,
        }
    }

    /// Bytes mapped in all.
    pub const fn bytes(&self) -> u64 {
        self.pages_4k
            .saturating_mul(PageLevel::Size4K.bytes())
            .saturating_add(self.pages_2m.saturating_mul(PageLevel::Size2M.bytes()))
            .saturating_add(self.pages_1g.saturating_mul(PageLevel::Size1G.bytes()))
    }
}

impl<S: KvmStorage> Kvm<S> {
    /// The page statistics: the mirror's leaves at each level, below tables only (a 2M
    /// region's 4K table holds attributes, not SPTEs, unless the region's mirror entry is a
    /// table; a region under a 1G leaf is part of that leaf).
    pub fn page_stats(&self) -> PageStats {
        let mut st = PageStats::default();
        for g in self.storage.gigs() {
            if g.mirror.is_leaf() {
                st.pages_1g = st.pages_1g.saturating_add(1);
            }
        }
        let first = self.base.gfn().raw();
        for (r, region) in self.storage.regions().iter().enumerate() {
            let gfn = Gfn(first.saturating_add((r as u64) << 9));
            let under_table = self
                .gig_index(gfn)
                .and_then(|g| self.storage.gigs().get(g))
                .is_some_and(|g| g.mirror.is_table());
            if !under_table {
                continue;
            }
            if region.mirror.is_leaf() {
                st.pages_2m = st.pages_2m.saturating_add(1);
            } else if region.mirror.is_table()
                && let Some(t) = region
                    .table
                    .index()
                    .and_then(|t| self.storage.tables().get(t))
            {
                let leaves = t.entries.iter().filter(|e| e.is_leaf()).count();
                st.pages_4k = st.pages_4k.saturating_add(leaves as u64);
            }
        }
        st
    }
}
