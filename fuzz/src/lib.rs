//! The checks behind the fuzz targets, callable from libFuzzer and from `cargo test` (which
//! replays the committed corpus through them).
//!
//! Each check decodes arbitrary 64-bit words with hugesept-core's ABI decoders and compares the
//! result with a shadow statement of the encoding written out here: a decoder must never panic,
//! must accept exactly the values the ABI defines, and must give back its input when re-encoded.

use std::fmt;

use hugesept_core::abi::{
    AbiError, AcceptExitInfo, AcceptOperand, EeqType, ExitQualification, ExtendedExitQualification,
    Gfn, Gpa, Gpaw, KvmPgLevel, PageLevel, SeamcallLeaf, SeptEntryState, StatusClass, StatusCode,
    StatusDetail, TdcallLeaf, TdcallRax, TdxSeptLevel, TdxStatus,
};
use hugesept_core::guest::{Guest, GuestKind};
use hugesept_core::kvm::KvmStorage;
use hugesept_core::kvm::{HostOpKind, Kvm, KvmArrayStorage, Memslot};
use hugesept_core::policy::PolicyId;
use hugesept_core::sept::{
    AcceptOutcome, ArrayStorage, ModuleProfile, Sept, SeptConfig, SeptStorage,
};
use hugesept_core::world::{
    Choice, HostAction, Limits, Metrics, Observer, RandomScheduler, ScheduleError, Scheduler,
    Stepped, Verdict, World, supports,
};

pub mod interleave;
pub mod policy_decisions;
pub mod sept_ops;
pub mod sept_ref;

pub use policy_decisions::policy_decisions;

/// A target's check over one input.
pub type Check = fn(&[u8]);

/// Every target, by the name of its corpus directory and `fuzz_targets/` file.
pub const TARGETS: [(&str, Check); 8] = [
    ("abi_status", abi_status),
    ("abi_accept_operand", abi_accept_operand),
    ("abi_exit", abi_exit),
    ("abi_encodings", abi_encodings),
    ("world_schedule", world_schedule),
    ("interleave", interleave),
    ("policy_decisions", policy_decisions),
    ("sept_ops", sept_ops),
];

/// The `sept_ops` target: SEAMCALL and TDCALL sequences on the core's S-EPT model and on the
/// reference model beside it, compared after every operation (see [`sept_ops`](mod@sept_ops)).
pub fn sept_ops(data: &[u8]) {
    let _ = sept_ops::run(&sept_ops::Ops::decode(data));
}

/// The broken variant named by `HUGESEPT_BROKEN`, turned on once per process (a build with
/// the `broken` feature only; `cargo xtask fuzz --check-power` sets it).
pub fn broken_from_env() {
    #[cfg(feature = "broken")]
    {
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| {
            let v = std::env::var("HUGESEPT_BROKEN").ok();
            let variant = v.as_deref().map(|n| {
                hugesept_core::broken::Variant::from_name(n)
                    .unwrap_or_else(|| panic!("HUGESEPT_BROKEN={n}: no such broken variant"))
            });
            hugesept_core::broken::set(variant);
        });
    }
}

/// The hunt `HUGESEPT_HUNT` names (`verdict[:policy[:guest]]`), read once.
fn hunt() -> Option<interleave::Hunt> {
    static HUNT: std::sync::OnceLock<Option<interleave::Hunt>> = std::sync::OnceLock::new();
    *HUNT.get_or_init(|| {
        let v = std::env::var("HUGESEPT_HUNT").ok()?;
        Some(
            interleave::Hunt::parse(&v)
                .unwrap_or_else(|| panic!("HUGESEPT_HUNT={v}: not verdict[:policy[:guest]]")),
        )
    })
}

/// The `interleave` target: a small world and a schedule from the input, every step checked,
/// the end held to the design's claim (see [`interleave`](mod@interleave)).
pub fn interleave(data: &[u8]) {
    interleave_spec(&interleave::Spec::decode(data));
}

/// [`interleave`] over a decoded input (what the libFuzzer target calls with the `Arbitrary`
/// input).
pub fn interleave_spec(spec: &interleave::Spec) {
    broken_from_env();
    let spec = spec.clone();
    let run = match interleave::run(&spec) {
        Ok(r) => r,
        // A world the model refuses to build is not an input of this target.
        Err(_) => return,
    };
    if let Some(why) = interleave::judge(&spec, &run, hunt()) {
        panic!(
            "interleave: {why}\nworld: {spec:?}\nends: {:?}\nchoices: {}",
            run.ends,
            run.choices
                .iter()
                .map(|c| c.to_string())
                .collect::<Vec<_>>()
                .join(" ")
        );
    }
}

/// The first bytes of a formatted value, without allocating (keeps the targets fast).
struct Prefix {
    buf: [u8; 48],
    len: usize,
}

impl Default for Prefix {
    fn default() -> Self {
        Prefix {
            buf: [0; 48],
            len: 0,
        }
    }
}

impl Prefix {
    fn starts_with(&self, s: &str) -> bool {
        let n = s.len().min(self.buf.len());
        self.len >= n && self.buf[..n] == s.as_bytes()[..n]
    }
}

impl fmt::Write for Prefix {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let room = self.buf.len() - self.len;
        let n = s.len().min(room);
        self.buf[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        Ok(())
    }
}

/// The input as little-endian 64-bit words (a short tail is zero-padded).
fn words(data: &[u8]) -> impl Iterator<Item = u64> + '_ {
    data.chunks(8).map(|c| {
        let mut b = [0u8; 8];
        b[..c.len()].copy_from_slice(c);
        u64::from_le_bytes(b)
    })
}

/// Completion statuses: lossless decoding, class from the top bits, detail by code.
pub fn abi_status(data: &[u8]) {
    for raw in words(data) {
        let s = TdxStatus(raw);
        let code = s.code();
        assert_eq!(TdxStatus::new(code, s.detail_bits()), s);
        assert_eq!(code.value(), (raw >> 32) as u32);
        let class = s.class();
        let expected = if raw >> 32 == 0 {
            StatusClass::Success
        } else if raw >> 63 == 0 {
            StatusClass::Warning
        } else if (raw >> 62) & 1 == 0 {
            StatusClass::Recoverable
        } else {
            StatusClass::Fatal
        };
        assert_eq!(class, expected);
        assert_eq!(s.is_error(), raw >> 63 == 1);
        match s.detail() {
            StatusDetail::Level(l) => {
                assert_eq!(u32::from(l.tdx().raw()), s.detail_bits());
                assert_eq!(s.level(), Some(l));
            }
            StatusDetail::BadLevel(v) => assert!(v > 2 && s.level().is_none()),
            StatusDetail::Operand(op) => assert_eq!(op.0, s.detail_bits()),
            StatusDetail::None => assert_eq!(s.detail_bits(), 0),
            StatusDetail::Raw(v) => assert!(v != 0 && v == s.detail_bits()),
        }
        let mut text = Prefix::default();
        fmt::write(&mut text, format_args!("{s}")).expect("Display never fails");
        if let StatusCode::Unknown(_) = code {
            assert!(text.starts_with("unknown TDX status"));
        } else {
            assert!(text.starts_with(code.name()));
        }
    }
}

/// The ACCEPT operand: the decoder against a shadow of the module's checks, then the whole
/// TDCALL on a small S-EPT model, which must reject exactly the invalid operands.
pub fn abi_accept_operand(data: &[u8]) {
    let mut it = words(data);
    while let Some(rcx) = it.next() {
        let flags = it.next().unwrap_or(0);
        let gpaw = if flags & 1 == 0 {
            Gpaw::Bits48
        } else {
            Gpaw::Bits52
        };
        let level_bits = rcx & 7;
        let gpa = rcx & 0x000F_FFFF_FFFF_F000;
        let shadow = if rcx & (0xFF8 | 0xFFF0_0000_0000_0000) != 0 {
            Err(AbiError::ReservedBitsSet)
        } else if level_bits > 2 {
            Err(AbiError::InvalidTdxLevel)
        } else if gpa & ((1u64 << (12 + 9 * level_bits)) - 1) != 0 {
            Err(AbiError::Misaligned)
        } else if gpa >> gpaw.bits() != 0 {
            Err(AbiError::BeyondGpaw)
        } else if gpa & gpaw.shared_mask() != 0 {
            Err(AbiError::SharedGpa)
        } else {
            Ok(())
        };
        let decoded = AcceptOperand::decode_for(rcx, gpaw);
        assert_eq!(decoded.map(|_| ()), shadow, "rcx {rcx:#x}");
        if let Ok(op) = decoded {
            assert_eq!(op.encode(), rcx);
            assert_eq!(u64::from(op.level.tdx().raw()), level_bits);
        }
        // The TDCALL itself, on a TD whose window is [1 GiB, 1 GiB + 8 MiB).
        let profile = if flags & 2 == 0 {
            ModuleProfile::TDX_1_5
        } else {
            ModuleProfile::parse("accept-1g").unwrap_or_default()
        };
        let mut config = SeptConfig::new(Gpa(0x4000_0000), 4);
        config.gpaw = gpaw;
        config.profile = profile;
        let Ok(mut sept) = Sept::new(config, ArrayStorage::<1, 4, 1>::new()) else {
            panic!("model set-up failed");
        };
        let out = sept.accept(rcx).expect("ACCEPT never fails as a model");
        let is_1g = decoded.is_ok_and(|op| op.level == PageLevel::Size1G);
        let rejected = matches!(out, AcceptOutcome::Completed(s)
            if s.code() == StatusCode::OperandInvalid && s.detail_bits() == 1);
        assert_eq!(
            rejected,
            decoded.is_err() || (is_1g && !profile.accept_1g),
            "rcx {rcx:#x}"
        );
    }
}

/// Exit qualification and extended exit qualification.
pub fn abi_exit(data: &[u8]) {
    for rdx in words(data) {
        let ty = (rdx & 0xF) as u8;
        let info = (rdx >> 32) as u32;
        match ExtendedExitQualification::decode(rdx) {
            Ok(e) => {
                assert_eq!(e.encode(), rdx);
                assert_eq!(e.eeq_type().raw(), ty);
                assert_eq!(e.accept_level().is_some(), ty == 1);
            }
            Err(AbiError::ReservedBitsSet) => {
                assert!(
                    rdx & 0xFFFF_FFF0 != 0
                        || ((ty == 0 || ty == 6) && info != 0)
                        || (ty == 1
                            && AcceptExitInfo::decode(info) == Err(AbiError::ReservedBitsSet))
                );
            }
            Err(AbiError::UnknownEeqType) => assert!(EeqType::from_raw(ty).is_err()),
            Err(AbiError::InvalidTdxLevel) => {
                assert_eq!(ty, 1);
                assert!(info & 7 > 2 || (info >> 3) & 7 > 2);
            }
            Err(AbiError::UnknownSeptState) => {
                assert_eq!(ty, 1);
                assert!(SeptEntryState::from_public_code(((info >> 6) & 0xFF) as u8).is_err());
            }
            Err(other) => panic!("unexpected EEQ error {other:?} for {rdx:#x}"),
        }
        let q = ExitQualification::from_bits_retain(rdx);
        assert_eq!(q.bits(), rdx);
        assert_eq!(q.has_permission_bits(), rdx & 0x38 != 0);
    }
}

/// Levels, leaves, RAX, public state codes, GPAs and profile names.
pub fn abi_encodings(data: &[u8]) {
    for raw in words(data) {
        assert_eq!(TdxSeptLevel::new(raw).is_ok(), raw <= 2);
        assert_eq!(KvmPgLevel::new(raw).is_ok(), (1..=3).contains(&raw));
        if let Ok(l) = KvmPgLevel::new(raw) {
            assert_eq!(u64::from(l.to_tdx().raw()) + 1, raw);
        }
        match TdcallRax::decode(raw) {
            Ok(r) => assert_eq!(r.encode(), raw),
            Err(AbiError::ReservedBitsSet) => assert!(raw >> 24 != 0),
            Err(AbiError::UnknownLeaf) => {
                assert!(TdcallLeaf::from_number(raw as u16).is_err())
            }
            Err(e) => panic!("unexpected RAX error {e:?}"),
        }
        if let Ok(l) = SeamcallLeaf::from_number(raw as u16) {
            assert_eq!(l.number(), raw as u16);
        }
        let code = raw as u8;
        if let Ok(s) = SeptEntryState::from_public_code(code) {
            assert_eq!(s.public_code(), code);
            assert_eq!(
                s.blocked().map(SeptEntryState::unblocked),
                s.blocked().map(|_| s)
            );
        }
        let gpa = Gpa(raw);
        for level in PageLevel::ALL {
            let down = gpa.align_down(level);
            assert!(down.is_aligned(level) && down <= gpa);
            assert_eq!(down.gfn().round_for_level(level), down.gfn());
        }
        match Gfn(raw).gpa() {
            Ok(g) => assert_eq!(g.gfn(), Gfn(raw)),
            Err(e) => assert_eq!((e, raw >> 52 != 0), (AbiError::AddressOverflow, true)),
        }
        for gpaw in [Gpaw::Bits48, Gpaw::Bits52] {
            assert!(!gpa.to_private(gpaw).is_shared(gpaw));
            assert!(gpa.to_shared(gpaw).is_shared(gpaw));
        }
    }
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(p) = ModuleProfile::parse(text)
    {
        assert_eq!(ModuleProfile::parse(&p.to_string()), Ok(p));
    }
}

/// A world built from the input and driven by it: the design, up to three vCPUs with guest
/// strategies over disjoint ranges, a host script confined to a range no guest uses, then the
/// input's bytes as the schedule and a fair random schedule to the end. Every step must keep
/// the safety invariants; the run must keep the design's declaration (`world::supports`): a
/// supported guest ends ok, and nothing bugs the host or loses a guest's data.
pub fn world_schedule(data: &[u8]) {
    broken_from_env();
    let mut bytes = data.iter().copied();
    let mut next = || bytes.next().unwrap_or(0);
    let policy = PolicyId::ALL[usize::from(next()) % PolicyId::ALL.len()];
    let mut config = SeptConfig::new(Gpa(WORLD_BASE), 3);
    if policy == PolicyId::ExplicitDemotion {
        config.profile = ModuleProfile::parse("explicit-demotion").expect("a known profile");
    }
    // Guests use 2 MiB units 0 and 1 (the lazy-accept bitmap's units); the host's 64 KiB is
    // the end of unit 1 — inside a page a guest may accept at 2M — unless the guests accept
    // lazily: Linux accepts whole units, and never one it made shared, so then it is unit 2.
    let vcpus = 1 + usize::from(next()) % 3;
    let lazy = next() % 4 == 0;
    let guests_end = WORLD_BASE + 0x40_0000 - 0x1_0000;
    let host_start = if lazy {
        WORLD_BASE + 0x40_0000
    } else {
        guests_end
    };
    let mut cuts = [WORLD_BASE, 0, 0, guests_end];
    for k in 1..vcpus {
        let at = WORLD_BASE + (u64::from(next()) << 14);
        cuts[k] = at.clamp(
            cuts[k - 1] + 0x1000,
            guests_end - 0x1000 * (vcpus - k) as u64,
        );
    }
    cuts[vcpus] = guests_end;
    let mut guests = [None; 3];
    let mut ve = false;
    for (k, slot) in guests.iter_mut().enumerate().take(vcpus) {
        let kind = if lazy {
            GuestKind::LinuxLazy
        } else {
            // linux-lazy only with the bitmap (and then every guest is lazy).
            match GuestKind::ALL[usize::from(next()) % GuestKind::ALL.len()] {
                GuestKind::LinuxLazy | GuestKind::LinuxEarly => GuestKind::Linux,
                k => k,
            }
        };
        ve |= kind == GuestKind::TouchFirst;
        *slot = Some(Guest::new(
            kind,
            Gpa(cuts[k]),
            Gpa(cuts[k + 1]),
            k as u16 + 1,
        ));
    }
    config.pending_ve_disable = !ve;
    let guests: Vec<Guest> = guests.iter().flatten().copied().collect();
    let mut script = Vec::new();
    for _ in 0..usize::from(next()) % 4 {
        let page = host_start + (u64::from(next() % 16) << 12);
        let (start, end) = (Gpa(page).gfn(), Gpa(page + 0x1000).gfn());
        script.push(match next() % 5 {
            0 => HostAction::Operation {
                kind: HostOpKind::ConvertToShared,
                start,
                end,
            },
            1 => HostAction::Operation {
                kind: HostOpKind::ConvertToPrivate,
                start,
                end,
            },
            2 => HostAction::Operation {
                kind: HostOpKind::PunchHole,
                start,
                end,
            },
            3 => HostAction::Operation {
                kind: HostOpKind::SplitBoundaries,
                start,
                end,
            },
            _ => HostAction::Prefetch(start),
        });
    }
    let mut sept: Sept<ArrayStorage<1, 3, 3>> =
        Sept::new(config, ArrayStorage::new()).expect("the storage fits the window");
    sept.finalize();
    let mut kvm: Kvm<KvmArrayStorage<1, 3, 3>> =
        Kvm::new(&config, KvmArrayStorage::new()).expect("the storage fits the window");
    kvm.add_memslot(Memslot {
        base: Gpa(WORLD_BASE).gfn(),
        pages: 3 * 512,
        guest_memfd: true,
    })
    .expect("one memslot");
    let scripts: [&[HostAction]; 1] = [&script];
    let mut w = World::new(sept, kvm, policy, &guests, &scripts, 1).expect("a world that fits");
    if lazy {
        w.set_unaccepted(Gpa(WORLD_BASE), Gpa(WORLD_BASE + 0x40_0000))
            .expect("two units");
    }
    let mut m = Metrics::default();
    let mut steps = 0u64;
    // The input's schedule first, with the shadow checks after every step...
    let rest = data.get(data.len() - bytes.len()..).unwrap_or(&[]);
    let bound = u32::try_from(rest.len()).unwrap_or(u32::MAX);
    let first = w.advance_schedule(
        &mut InputSchedule(rest),
        Limits {
            bound,
            patience: u32::MAX,
        },
        &mut m,
        &mut steps,
        Shadow { policy },
    );
    // The input's schedule may run out before the world ends: the fair schedule goes on.
    if let Err(e) = first
        && !matches!(e, ScheduleError::BudgetExhausted { .. })
    {
        panic!("{policy}: {e:?}");
    }
    // ...then a fair schedule to the end.
    let verdict = w.run_schedule(
        &mut RandomScheduler::new(7),
        Limits {
            bound: 200_000,
            patience: 5_000,
        },
        &mut m,
        &mut steps,
        |_, _| {},
    );
    // No verdict within the budget is no verdict (a claimed guest must still end ok).
    let verdict = match verdict {
        Ok(v) => Some(v),
        Err(ScheduleError::BudgetExhausted { .. }) => None,
        Err(e) => panic!("{policy}: {e:?}"),
    };
    assert!(
        !matches!(verdict, Some(Verdict::VmBugged | Verdict::DataLoss)),
        "{policy} with {:?}: {}",
        guests.iter().map(|g| g.kind()).collect::<Vec<_>>(),
        verdict.map_or("budget-exhausted", Verdict::name)
    );
    let claimed = guests.iter().all(|g| {
        supports(policy, g.kind()).is_ok()
            && !matches!(g.kind(), GuestKind::Adversarial | GuestKind::SingleAccept)
    });
    if claimed {
        assert_eq!(
            verdict,
            Some(Verdict::Ok),
            "{policy} claims {:?}",
            guests.iter().map(|g| g.kind()).collect::<Vec<_>>()
        );
    }
}

/// The window of [`world_schedule`]'s worlds.
const WORLD_BASE: u64 = 0x4000_0000;

/// The input's bytes as a schedule: step `n` takes enabled choice `bytes[n] % count`.
struct InputSchedule<'a>(&'a [u8]);

impl Scheduler for InputSchedule<'_> {
    fn pick(&mut self, step: u32, choices: &[Choice]) -> usize {
        let b = self.0.get(step as usize).copied().unwrap_or(0);
        usize::from(b) % choices.len().max(1)
    }
}

/// The shadow checks of each step: the full checks agree with the per-step ones (and find the
/// tables' digests current), and the copy brought up to date by what the step changed equals
/// the world.
struct Shadow {
    policy: PolicyId,
}

impl<SS, KS> Observer<World<SS, KS>> for Shadow
where
    SS: SeptStorage + Clone + PartialEq,
    KS: KvmStorage + Clone + PartialEq,
{
    fn stepped(
        &mut self,
        _n: u32,
        c: Choice,
        _stepped: Stepped,
        before: &World<SS, KS>,
        after: &World<SS, KS>,
    ) {
        let policy = self.policy;
        if let Err(v) = after.check_step(before) {
            panic!("{policy}: invariant {v:?} after {c:?}");
        }
        assert_eq!(after.check(), Ok(()), "{policy}: full checks after {c:?}");
    }

    fn synced(&mut self, copy: &World<SS, KS>, world: &World<SS, KS>) {
        assert!(
            copy == world,
            "{}: a copy synced by the change record differs",
            self.policy
        );
    }
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::path::Path;

    /// Replays every committed corpus file through its target's checks.
    #[test]
    fn corpus_replays_cleanly() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
        for (name, check) in super::TARGETS {
            let dir = root.join(name);
            let mut n = 0;
            for entry in fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
                let path = entry.unwrap().path();
                check(&fs::read(&path).unwrap());
                n += 1;
            }
            assert!(n > 0, "no corpus for {name} in {}", dir.display());
        }
    }

    /// Replays every regression input (`regressions/TARGET/NAME`: inputs that once crashed,
    /// kept after the fix) through its target's checks.
    #[test]
    fn regressions_replay_cleanly() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("regressions");
        let Ok(dirs) = fs::read_dir(&root) else {
            return;
        };
        for d in dirs {
            let d = d.unwrap().path();
            let name = d.file_name().unwrap().to_str().unwrap().to_owned();
            let check = super::TARGETS
                .iter()
                .find(|(t, _)| *t == name)
                .unwrap_or_else(|| panic!("regressions/{name}: no such target"))
                .1;
            for entry in fs::read_dir(&d).unwrap() {
                check(&fs::read(entry.unwrap().path()).unwrap());
            }
        }
    }

    /// The committed seeds of `interleave` are the known interleavings
    /// ([`super::interleave::seeds`]), byte for byte; `HUGESEPT_BLESS=1` writes them.
    #[test]
    fn the_interleave_seeds_are_the_known_interleavings() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus/interleave");
        for (name, spec) in super::interleave::seeds() {
            let bytes = spec.encode();
            assert_eq!(super::interleave::Spec::decode(&bytes), spec, "{name}");
            let path = dir.join(name);
            if std::env::var_os("HUGESEPT_BLESS").is_some() {
                fs::create_dir_all(&dir).unwrap();
                fs::write(&path, &bytes).unwrap();
            }
            assert_eq!(
                fs::read(&path).ok().as_deref(),
                Some(bytes.as_slice()),
                "{} is stale (HUGESEPT_BLESS=1 cargo test rewrites it)",
                path.display()
            );
        }
    }

    /// The committed seeds of `sept_ops` are its known sequences
    /// ([`super::sept_ops::seeds`]), byte for byte; `HUGESEPT_BLESS=1` writes them. Each
    /// decodes back to itself and runs without a disagreement.
    #[test]
    fn the_sept_ops_seeds_are_the_known_sequences() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus/sept_ops");
        for (name, ops) in super::sept_ops::seeds() {
            let bytes = ops.encode();
            assert_eq!(super::sept_ops::Ops::decode(&bytes), ops, "{name}");
            let log = super::sept_ops::run(&ops);
            let want = super::sept_ops::SEED_LINES
                .iter()
                .find(|(n, _)| *n == name)
                .unwrap_or_else(|| panic!("{name}: no expected line"))
                .1;
            assert!(
                log.iter().any(|l| l.contains(want)),
                "{name}: no line with {want:?} in\n{}",
                log.join("\n")
            );
            let path = dir.join(name);
            if std::env::var_os("HUGESEPT_BLESS").is_some() {
                fs::create_dir_all(&dir).unwrap();
                fs::write(&path, &bytes).unwrap();
            }
            assert_eq!(
                fs::read(&path).ok().as_deref(),
                Some(bytes.as_slice()),
                "{} is stale (HUGESEPT_BLESS=1 cargo test rewrites it)",
                path.display()
            );
        }
    }

    /// Each seed ends as its scenario file says it does (the scenario tests hold those
    /// files): the 2M-first seed orders, the prefetch and the conversion end ok, td-shim's
    /// re-accept in its documented panic, RFC v1's touch-first guest in a livelock and
    /// GUEST_INHIBIT's ok. The 4K-first orders use the step budget: OVMF's 2M ACCEPT meets
    /// the 4K mapping (SIZE_MISMATCH) and goes on over 512 4K pages, past the race.
    #[test]
    fn the_seeds_end_as_their_scenarios() {
        use hugesept_core::world::{ScheduleError, Verdict};
        for (name, spec) in super::interleave::seeds() {
            let run = super::interleave::run(&spec).unwrap();
            let want = match name {
                "td-shim-reaccept-2m" => Ok(Verdict::GuestPanic),
                "touch-first-4k-rfc-v1" => Ok(Verdict::Livelock),
                "seed-4k-first-rfc-v1" | "seed-4k-first-guest-inhibit" => {
                    Err(ScheduleError::BudgetExhausted {
                        steps: super::interleave::STEP_BUDGET,
                    })
                }
                _ => Ok(Verdict::Ok),
            };
            assert_eq!(run.outcome, want, "{name}: {:?}", run.ends);
            assert_eq!(super::interleave::judge(&spec, &run, None), None, "{name}");
        }
    }

    /// Pseudo-random inputs (xorshift) of every length up to 200 bytes.
    fn inputs(n: usize, seed: u64) -> impl Iterator<Item = Vec<u8>> {
        let mut x = seed | 1;
        (0..n).map(move |i| {
            (0..(i * 37) % 200)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect()
        })
    }

    /// The world and decision targets hold on inputs no fuzzer chose (the correct models
    /// have nothing for them to find).
    #[test]
    fn random_inputs_find_nothing_in_the_correct_models() {
        for data in inputs(3_000, 0x5eed) {
            super::interleave(&data);
            super::policy_decisions(&data);
            super::sept_ops(&data);
        }
    }

    /// Values the ABI defines pass every check.
    #[test]
    fn known_values_pass() {
        super::abi_status(&0xC000_0100_0000_0001u64.to_le_bytes());
        super::abi_exit(&(1u64 | (0x4088u64 << 32)).to_le_bytes());
        super::abi_accept_operand(&0x4020_0001u64.to_le_bytes());
        super::abi_encodings(b"explicit-demotion+accept-1g");
    }
}
