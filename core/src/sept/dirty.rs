//! Which regions a step changed, so that checks and copies after it can look at those alone.
//!
//! A model marks a region when it hands out a mutable record of it; a change it cannot place
//! marks everything. The set is bookkeeping, not state: every `Dirty` compares equal and hashes
//! to nothing, so two states that differ only in it are the same state.

/// Regions tracked one by one before the set gives up and says "all".
const TRACKED: usize = 8;

/// The regions changed since the last [`Dirty::clear`].
#[derive(Clone, Copy, Debug, Default)]
pub struct Dirty {
    regions: [u32; TRACKED],
    len: u8,
    all: bool,
    gigs: bool,
}

impl PartialEq for Dirty {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for Dirty {}

impl core::hash::Hash for Dirty {
    fn hash<H: core::hash::Hasher>(&self, _: &mut H) {}
}

impl Dirty {
    /// Everything changed (a fresh model, or a change not placed).
    pub const ALL: Dirty = Dirty {
        regions: [0; TRACKED],
        len: 0,
        all: true,
        gigs: true,
    };

    /// Region `r` changed.
    pub fn mark(&mut self, r: usize) {
        if self.all {
            return;
        }
        let Ok(r) = u32::try_from(r) else {
            self.all = true;
            return;
        };
        let len = usize::from(self.len);
        if self.regions.get(..len).is_some_and(|s| s.contains(&r)) {
            return;
        }
        match self.regions.get_mut(len) {
            Some(slot) => {
                *slot = r;
                self.len = self.len.saturating_add(1);
            }
            None => self.all = true,
        }
    }

    /// A 1G-level record changed.
    pub fn mark_gigs(&mut self) {
        self.gigs = true;
    }

    /// Everything changed.
    pub fn mark_all(&mut self) {
        *self = Dirty::ALL;
    }

    /// Forget what changed.
    pub fn clear(&mut self) {
        *self = Dirty::default();
    }

    /// Whether the set gave up (check everything).
    pub fn is_all(&self) -> bool {
        self.all
    }

    /// Whether a 1G-level record changed.
    pub fn gigs(&self) -> bool {
        self.gigs || self.all
    }

    /// The regions marked (meaningless when [`Dirty::is_all`]).
    pub fn regions(&self) -> &[u32] {
        self.regions.get(..usize::from(self.len)).unwrap_or(&[])
    }

    /// Both sets together.
    pub fn union(&self, o: &Dirty) -> Dirty {
        if o.all {
            return Dirty::ALL;
        }
        if o.len == 0 {
            let mut u = *self;
            u.gigs |= o.gigs;
            return u;
        }
        if self.len == 0 && !self.all {
            let mut u = *o;
            u.gigs |= self.gigs;
            return u;
        }
        let mut u = *self;
        u.gigs |= o.gigs;
        for &r in o.regions() {
            u.mark(r as usize);
        }
        u
    }
}

/// Copies the pool tables `refs` name from `src` to `dst` (two pools indexed alike).
pub(crate) fn copy_tables<T: Clone>(dst: &mut [T], src: &[T], refs: &[super::TableRef]) {
    for i in refs.iter().filter_map(|t| t.index()) {
        if let (Some(d), Some(s)) = (dst.get_mut(i), src.get(i)) {
            d.clone_from(s);
        }
    }
}

/// Copies the region records `d` names from `src` to `dst`, with the pool tables the record
/// references on either side (the table a region held before a step or holds after it). Both
/// stores must have the same sizes; when they do not, or `d` says everything, nothing is
/// copied and the answer is false: the caller copies the whole model then.
pub(crate) fn copy_changed_regions<R: Copy, T: Clone>(
    (dst_regions, dst_tables): (&mut [R], &mut [T]),
    (src_regions, src_tables): (&[R], &[T]),
    d: &Dirty,
    table_of: impl Fn(&R) -> super::TableRef,
) -> bool {
    if d.is_all() || dst_regions.len() != src_regions.len() || dst_tables.len() != src_tables.len()
    {
        return false;
    }
    for &r in d.regions() {
        let (Some(dst), Some(src)) = (dst_regions.get_mut(r as usize), src_regions.get(r as usize))
        else {
            continue;
        };
        copy_tables(dst_tables, src_tables, &[table_of(dst), table_of(src)]);
        *dst = *src;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_up_to_the_limit_then_everything() {
        let mut d = Dirty::default();
        d.mark(3);
        d.mark(3);
        d.mark(5);
        assert_eq!(d.regions(), &[3, 5]);
        assert!(!d.is_all() && !d.gigs());
        for r in 10..20 {
            d.mark(r);
        }
        assert!(d.is_all());
        d.clear();
        assert!(d.regions().is_empty() && !d.is_all());
        assert_eq!(Dirty::ALL, d);
    }
}
