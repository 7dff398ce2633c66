//! Module profiles: which TDX module the S-EPT model behaves as.
//!
//! `tdx-1.5` is the behaviour of the open TDX module source (intel/tdx-module, TDX 1.5, with
//! ENHANCE_DEMOTE_INTERRUPTIBILITY as huge-page support requires). The other capabilities are
//! the module changes proposed on the kvm list, opt-in so their effect can be measured
//! (shared/reference/tdx-module.md, "The proposed module changes").

use core::fmt;

/// A set of module capabilities.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ModuleProfile {
    /// ACCEPT smaller than a PENDING leaf returns TDX_PAGE_SIZE_MISMATCH to the guest instead of
    /// exiting to the VMM (Sean Christopherson's request; Yan Zhao's
    /// TDX_ATTR_SEPT_EXPLICIT_DEMOTION).
    pub explicit_demotion: bool,
    /// PAGE.DEMOTE of an unblocked leaf, with no BLOCK and TLB tracking first (named in the RFC v2
    /// cover letter, <https://lore.kernel.org/all/20250807093950.4395-1-yan.y.zhao@intel.com/>).
    pub non_blocking_resize: bool,
    /// ACCEPT and PAGE.AUG at 1G (hypothetical: in no module source found).
    pub accept_1g: bool,
    /// TDX_FEATURES0 bit 51: DEMOTE never returns TDX_INTERRUPTED_RESTARTABLE (first in
    /// TDX_1.5.28.00.972). Without it, an interrupt pending during DEMOTE aborts it.
    pub demote_interruptibility: bool,
}

/// A profile name that names nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct UnknownProfile;

impl fmt::Display for UnknownProfile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("unknown module profile (known: tdx-1.5, explicit-demotion, non-blocking-resize, accept-1g, no-demote-interruptibility, joined with '+')")
    }
}

impl ModuleProfile {
    /// The TDX 1.5 module source behaviour.
    pub const TDX_1_5: ModuleProfile = ModuleProfile {
        explicit_demotion: false,
        non_blocking_resize: false,
        accept_1g: false,
        demote_interruptibility: true,
    };

    /// The named single-capability profiles, `tdx-1.5` first.
    pub const NAMED: [(&'static str, ModuleProfile); 5] = [
        ("tdx-1.5", Self::TDX_1_5),
        (
            "explicit-demotion",
            ModuleProfile {
                explicit_demotion: true,
                ..Self::TDX_1_5
            },
        ),
        (
            "non-blocking-resize",
            ModuleProfile {
                non_blocking_resize: true,
                ..Self::TDX_1_5
            },
        ),
        (
            "accept-1g",
            ModuleProfile {
                accept_1g: true,
                ..Self::TDX_1_5
            },
        ),
        (
            "no-demote-interruptibility",
            ModuleProfile {
                demote_interruptibility: false,
                ..Self::TDX_1_5
            },
        ),
    ];

    /// Parses `tdx-1.5`, a capability name, or several joined with `+`
    /// (e.g. `explicit-demotion+accept-1g`); every part adds its change to `tdx-1.5`.
    pub fn parse(name: &str) -> Result<ModuleProfile, UnknownProfile> {
        let mut p = Self::TDX_1_5;
        for part in name.split('+') {
            let part = part.trim();
            match part {
                "tdx-1.5" => {}
                "explicit-demotion" => p.explicit_demotion = true,
                "non-blocking-resize" => p.non_blocking_resize = true,
                "accept-1g" => p.accept_1g = true,
                "no-demote-interruptibility" => p.demote_interruptibility = false,
                _ => return Err(UnknownProfile),
            }
        }
        Ok(p)
    }
}

impl Default for ModuleProfile {
    fn default() -> Self {
        Self::TDX_1_5
    }
}

impl fmt::Display for ModuleProfile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if *self == Self::TDX_1_5 {
            return f.write_str("tdx-1.5");
        }
        let mut first = true;
        let mut part = |f: &mut fmt::Formatter<'_>, on: bool, name: &str| -> fmt::Result {
            if on {
                if !first {
                    f.write_str("+")?;
                }
                first = false;
                f.write_str(name)?;
            }
            Ok(())
        };
        part(f, self.explicit_demotion, "explicit-demotion")?;
        part(f, self.non_blocking_resize, "non-blocking-resize")?;
        part(f, self.accept_1g, "accept-1g")?;
        part(
            f,
            !self.demote_interruptibility,
            "no-demote-interruptibility",
        )
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::string::ToString;

    #[test]
    fn names_round_trip() {
        for (name, p) in ModuleProfile::NAMED {
            assert_eq!(ModuleProfile::parse(name), Ok(p));
            assert_eq!(p.to_string(), name);
        }
        let both = ModuleProfile::parse("explicit-demotion+accept-1g").unwrap();
        assert!(both.explicit_demotion && both.accept_1g);
        assert_eq!(ModuleProfile::parse(&both.to_string()), Ok(both));
        assert_eq!(ModuleProfile::parse("tdx-2"), Err(UnknownProfile));
    }
}
