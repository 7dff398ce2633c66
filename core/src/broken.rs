//! Deliberately broken variants of the models, for measuring what the fuzz targets find.
//!
//! Each variant is the smallest faithful change a real patch could make at one point of the
//! TDX module's model, KVM's fault path and host operations, a design, or a guest's accept
//! loop. They exist only to be found: `cargo xtask fuzz --check-power` turns each on in turn
//! and times how long each target takes to report it from an empty corpus.
//!
//! Only a build with the `broken` cargo feature (the fuzz crate's test-only feature of the
//! same name) can turn one on, with `set`, which exists only in that build. In every other
//! build [`active`] is a `const fn` that returns false, so the variants compile away and
//! cannot be reached.

/// A broken variant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Variant {
    /// KVM's conversion and punch hole skip the split at a 2M boundary, so the removal that
    /// follows takes the whole 2M leaf (kvm/host_ops.rs; the rule: split across the range
    /// boundaries first, then remove exactly the converted 4K pages).
    ConversionRemoves2M = 1,
    /// KVM's split goes to TDH.MEM.PAGE.DEMOTE without TDH.MEM.RANGE.BLOCK and TRACK
    /// (kvm/split.rs; the module demotes only a blocked entry whose epoch was tracked).
    SplitWithoutBlock = 2,
    /// KVM's removal BLOCKs and then REMOVEs without TDH.MEM.TRACK in between (kvm/split.rs).
    RemoveWithoutTrack = 3,
    /// KVM_SET_MEMORY_ATTRIBUTES does not set MIXED on a 2M range it leaves mixed
    /// (kvm/vm.rs `set_private`; mmu.c `hugepage_set_mixed`).
    MixedNotSet = 4,
    /// RFC v1 keeps the per-vCPU window on a private EPT violation without an accept level
    /// (policy/designs.rs; RFC v1 resets it to empty).
    RfcV1WindowKept = 5,
    /// A design's hook forgets the build-time rule and allows 2M before the TD is runnable
    /// (policy/designs.rs `before_runnable`; every private mapping is PAGE.ADD at 4K then).
    HugeBeforeRunnable = 6,
    /// fault-max-level passes 2M as the fault's max level for every ACCEPT exit instead of the
    /// accept level (policy/designs.rs).
    FaultMaxLevelIgnoresAccept = 7,
    /// Linux's `try_accept_one` takes TDX_PAGE_SIZE_MISMATCH as success and moves on
    /// (guest/rules.rs; Linux takes any non-zero status as failure of the level).
    LinuxSizeMismatchAdvance = 8,
    /// The module's DEMOTE of a mapped (accepted) 2M leaf gives PENDING children
    /// (sept/host_apply.rs; the children take the parent's state).
    DemoteChildrenPending = 9,
    /// The module's guest-side entry lock ignores the host-priority bit, so an ACCEPT takes
    /// an entry a SEAMCALL just found locked (sept/accept.rs; tdx_locks.h
    /// `sept_lock_acquire_guest` backs off with BUSY when the bit is set).
    AcceptIgnoresHostPriority = 10,
    /// The module's RANGE.BLOCK keeps a PENDING entry's accept counter (sept/host_apply.rs;
    /// `sept_cleanup_if_pending` resets it, so an interrupted 2M ACCEPT starts over).
    BlockKeepsAcceptCounter = 11,
}

impl Variant {
    /// Every variant, in order.
    pub const ALL: [Variant; 11] = [
        Variant::ConversionRemoves2M,
        Variant::SplitWithoutBlock,
        Variant::RemoveWithoutTrack,
        Variant::MixedNotSet,
        Variant::RfcV1WindowKept,
        Variant::HugeBeforeRunnable,
        Variant::FaultMaxLevelIgnoresAccept,
        Variant::LinuxSizeMismatchAdvance,
        Variant::DemoteChildrenPending,
        Variant::AcceptIgnoresHostPriority,
        Variant::BlockKeepsAcceptCounter,
    ];

    /// The name the fuzz tooling uses.
    pub const fn name(self) -> &'static str {
        match self {
            Variant::ConversionRemoves2M => "conversion-removes-2m",
            Variant::SplitWithoutBlock => "split-without-block",
            Variant::RemoveWithoutTrack => "remove-without-track",
            Variant::MixedNotSet => "mixed-not-set",
            Variant::RfcV1WindowKept => "rfc-v1-window-kept",
            Variant::HugeBeforeRunnable => "huge-before-runnable",
            Variant::FaultMaxLevelIgnoresAccept => "fault-max-level-ignores-accept",
            Variant::LinuxSizeMismatchAdvance => "linux-size-mismatch-advance",
            Variant::DemoteChildrenPending => "demote-children-pending",
            Variant::AcceptIgnoresHostPriority => "accept-ignores-host-priority",
            Variant::BlockKeepsAcceptCounter => "block-keeps-accept-counter",
        }
    }

    /// The variant named `name`.
    pub fn from_name(name: &str) -> Option<Variant> {
        Variant::ALL.into_iter().find(|v| v.name() == name)
    }
}

#[cfg(feature = "broken")]
static ACTIVE: core::sync::atomic::AtomicU8 = core::sync::atomic::AtomicU8::new(0);

/// Turns `variant` on (or, with `None`, every variant off) for the whole process.
#[cfg(feature = "broken")]
pub fn set(variant: Option<Variant>) {
    ACTIVE.store(
        variant.map_or(0, |v| v as u8),
        core::sync::atomic::Ordering::Relaxed,
    );
}

/// Whether `variant` is on.
#[cfg(feature = "broken")]
#[inline]
pub fn active(variant: Variant) -> bool {
    ACTIVE.load(core::sync::atomic::Ordering::Relaxed) == variant as u8
}

/// Whether `variant` is on: never, in a build without the `broken` feature.
#[cfg(not(feature = "broken"))]
#[inline(always)]
pub const fn active(_variant: Variant) -> bool {
    false
}
