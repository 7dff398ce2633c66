//! Why a world cannot be built: the world's own limits, the design refusing the module, or a
//! model failing while the world is set up.

use core::fmt;

use crate::kvm::KvmError;
use crate::policy::PolicyError;
use crate::sept::SeptError;

/// Errors of building or arranging a world.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WorldError {
    /// More vCPUs, stages, host actors or script actions than a world holds, or a vCPU with
    /// an empty program.
    TooLarge,
    /// A range that is misaligned or beyond what the world tracks (the lazy-accept bitmap).
    BadRange,
    /// The design cannot run on the module profile.
    Policy(PolicyError),
    /// A model failed while the world was set up.
    Model(KvmError),
}

impl From<KvmError> for WorldError {
    fn from(e: KvmError) -> Self {
        WorldError::Model(e)
    }
}

impl From<SeptError> for WorldError {
    fn from(e: SeptError) -> Self {
        WorldError::Model(KvmError::Sept(e))
    }
}

impl fmt::Display for WorldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WorldError::TooLarge => {
                f.write_str("more vCPUs, stages, host actors or script actions than a world holds")
            }
            WorldError::BadRange => {
                f.write_str("a range that is misaligned or beyond what the world tracks")
            }
            WorldError::Policy(e) => write!(f, "policy: {e}"),
            WorldError::Model(e) => write!(f, "model: {e}"),
        }
    }
}
