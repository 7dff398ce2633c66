//! Each strategy's reading of an ACCEPT status (shared/reference/guests.md, the table).

use crate::abi::{PageLevel, StatusCode, TdxStatus};

use super::GuestKind;

/// What a strategy does after an ACCEPT at some level retired with some status.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reaction {
    /// The unit is accepted (now or before): go on after it.
    Advance,
    /// Issue the same ACCEPT again.
    Retry,
    /// Try the next smaller level at the same position.
    Smaller,
    /// Accept the unit's 512 smaller pages one by one.
    Children,
    /// Zero the unit itself, then go on after it (accepted memory must read as zero).
    ZeroThenAdvance,
    /// The fatal path.
    Panic,
}

/// How `kind` reacts to `status` from an ACCEPT at `level`, the `retries`-th retry of it.
pub fn react(kind: GuestKind, level: PageLevel, status: TdxStatus, retries: u8) -> Reaction {
    let code = status.code();
    let smallest = level == PageLevel::Size4K;
    if code == StatusCode::Success {
        return Reaction::Advance;
    }
    match kind {
        // tdx-shared.c try_accept_one: any non-zero status fails this level.
        GuestKind::Linux | GuestKind::LinuxLazy | GuestKind::LinuxEarly => {
            if code == StatusCode::PageSizeMismatch
                && crate::broken::active(crate::broken::Variant::LinuxSizeMismatchAdvance)
            {
                Reaction::Advance
            } else if smallest {
                Reaction::Panic
            } else {
                Reaction::Smaller
            }
        }
        // AcceptPages.c.
        GuestKind::Ovmf => match code {
            StatusCode::PageSizeMismatch if !smallest => Reaction::Children,
            StatusCode::PageAlreadyAccepted => Reaction::Advance,
            StatusCode::OperandBusy if retries < 3 => Reaction::Retry,
            _ => Reaction::Panic,
        },
        // tdx-tdcall/src/tdx.rs: the already-accepted check compares the whole status.
        GuestKind::TdShim => match code {
            StatusCode::PageSizeMismatch if !smallest => Reaction::Children,
            StatusCode::PageAlreadyAccepted if status.raw() == 0x0000_0B0A_0000_0000 => {
                Reaction::Advance
            }
            StatusCode::OperandBusy if retries < 5 => Reaction::Retry,
            _ => Reaction::Panic,
        },
        // tdx-guest 0.6.0: statuses decoded from `status >> 32` (asterinas accepts through it).
        GuestKind::TdxGuest | GuestKind::Asterinas => match code {
            StatusCode::PageSizeMismatch | StatusCode::OperandInvalid if !smallest => {
                Reaction::Smaller
            }
            StatusCode::PageAlreadyAccepted if smallest => Reaction::Advance,
            StatusCode::PageAlreadyAccepted => Reaction::Children,
            _ => Reaction::Panic,
        },
        // svsm tdcall.rs.
        GuestKind::Svsm => match code {
            StatusCode::PageSizeMismatch if !smallest => Reaction::Children,
            StatusCode::PageAlreadyAccepted => Reaction::ZeroThenAdvance,
            _ => Reaction::Panic,
        },
        // The adversary reads no status (Guest handles it before asking).
        GuestKind::Accept4kOnly
        | GuestKind::TouchFirst
        | GuestKind::Adversarial
        | GuestKind::SingleAccept => match code {
            StatusCode::PageAlreadyAccepted => Reaction::Advance,
            StatusCode::OperandBusy => Reaction::Retry,
            _ => Reaction::Panic,
        },
    }
}

/// The retry count a guest of `kind` keeps after retrying for the `retries`-th time: the
/// count goes up only where a limit reads it (OVMF's 3 and td-shim's 5 BUSY retries above);
/// a guest that retries without limit keeps none, so its state after a retry is its state
/// before it.
pub const fn next_retry(kind: GuestKind, retries: u8) -> u8 {
    match kind {
        GuestKind::Ovmf | GuestKind::TdShim => retries.saturating_add(1),
        GuestKind::Linux
        | GuestKind::LinuxLazy
        | GuestKind::LinuxEarly
        | GuestKind::TdxGuest
        | GuestKind::Asterinas
        | GuestKind::Svsm
        | GuestKind::Accept4kOnly
        | GuestKind::TouchFirst
        | GuestKind::Adversarial
        | GuestKind::SingleAccept => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::abi::OperandId;

    fn aa(l: PageLevel) -> TdxStatus {
        TdxStatus::with_level(StatusCode::PageAlreadyAccepted, l)
    }
    fn sm(l: PageLevel) -> TdxStatus {
        TdxStatus::with_level(StatusCode::PageSizeMismatch, l)
    }
    fn busy() -> TdxStatus {
        TdxStatus::with_operand(StatusCode::OperandBusy, OperandId::RCX)
    }
    use PageLevel::{Size1G as G1, Size2M as M2, Size4K as K4};

    #[test]
    fn the_table_of_guests_md() {
        use GuestKind::*;
        use Reaction::*;
        let oi = TdxStatus::with_operand(StatusCode::OperandInvalid, OperandId::RCX);
        let rows: &[(GuestKind, PageLevel, TdxStatus, u8, Reaction)] = &[
            (Linux, G1, oi, 0, Smaller),
            (Linux, M2, sm(M2), 0, Smaller),
            (Linux, M2, aa(M2), 0, Smaller),
            (Linux, K4, aa(M2), 0, Panic),
            (Linux, K4, busy(), 0, Panic),
            (Ovmf, M2, sm(M2), 0, Children),
            (Ovmf, M2, aa(M2), 0, Advance),
            (Ovmf, K4, busy(), 2, Retry),
            (Ovmf, K4, busy(), 3, Panic),
            (TdShim, M2, sm(M2), 0, Children),
            (TdShim, K4, aa(K4), 0, Advance),
            (TdShim, K4, aa(M2), 0, Panic),
            (TdShim, M2, aa(M2), 0, Panic),
            (TdShim, K4, busy(), 4, Retry),
            (TdShim, K4, busy(), 5, Panic),
            (TdxGuest, G1, oi, 0, Smaller),
            (TdxGuest, M2, sm(M2), 0, Smaller),
            (TdxGuest, K4, aa(M2), 0, Advance),
            (TdxGuest, M2, aa(M2), 0, Children),
            (TdxGuest, K4, busy(), 0, Panic),
            (Svsm, M2, sm(M2), 0, Children),
            (Svsm, M2, aa(M2), 0, ZeroThenAdvance),
            (Svsm, K4, aa(M2), 0, ZeroThenAdvance),
            (Accept4kOnly, K4, aa(M2), 0, Advance),
            (Accept4kOnly, K4, busy(), 200, Retry),
            (Accept4kOnly, K4, sm(K4), 0, Panic),
        ];
        for &(kind, level, status, retries, want) in rows {
            assert_eq!(
                react(kind, level, status, retries),
                want,
                "{kind} {level} {status}"
            );
        }
        for kind in GuestKind::ALL {
            assert_eq!(react(kind, K4, TdxStatus::SUCCESS, 0), Advance);
        }
    }
}
