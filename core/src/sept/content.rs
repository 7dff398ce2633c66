//! What a guest page holds, as far as the models care: nothing, zeros, or a guest's data tag.
//!
//! ACCEPT zeroes a page with the TD's key (tdg_mem_page_accept.c); PAGE.ADD copies its source
//! page; DEMOTE and PROMOTE keep the pages where they are; PAGE.REMOVE gives the page back to
//! the host, and whatever was in it is gone for the guest. A guest writes a tag after accepting
//! and checks it later, so lost data shows as a tag that changed without the guest asking.

use core::fmt;

/// The content of one 4K guest page.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub struct Content(u16);

impl Content {
    /// No guest-visible data: never accepted or added, or removed since.
    pub const NONE: Content = Content(0);
    /// Zeroed by ACCEPT.
    pub const ZERO: Content = Content(1);
    /// The largest data tag [`Content::data`] keeps distinct.
    pub const MAX_TAG: u16 = u16::MAX - 2;

    /// Data a guest (or PAGE.ADD's source) wrote, named by `tag`; tags above
    /// [`Content::MAX_TAG`] are folded onto it.
    pub const fn data(tag: u16) -> Content {
        let t = if tag > Self::MAX_TAG {
            Self::MAX_TAG
        } else {
            tag
        };
        Content(t.wrapping_add(2))
    }

    /// The data tag, if this is data.
    pub const fn tag(self) -> Option<u16> {
        if self.0 >= 2 {
            Some(self.0.wrapping_sub(2))
        } else {
            None
        }
    }

    /// The raw encoding (0 none, 1 zero, n + 2 data tag n).
    pub const fn raw(self) -> u16 {
        self.0
    }

    /// From the raw encoding.
    pub const fn from_raw(raw: u16) -> Content {
        Content(raw)
    }
}

impl fmt::Display for Content {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.tag() {
            Some(t) => write!(f, "data:{t}"),
            None if *self == Content::ZERO => f.write_str("zero"),
            None => f.write_str("none"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_round_trip() {
        assert_eq!(Content::data(0).tag(), Some(0));
        assert_eq!(Content::data(7).tag(), Some(7));
        assert_eq!(Content::data(u16::MAX).tag(), Some(Content::MAX_TAG));
        assert_eq!(Content::ZERO.tag(), None);
        assert_ne!(Content::data(0), Content::ZERO);
        assert_ne!(Content::data(0), Content::NONE);
    }
}
