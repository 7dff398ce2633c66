//! The `interleave` target: a small world and a schedule, both from the input.
//!
//! A world here is small by construction — one to four vCPUs over a window of one to four 2M
//! regions, each vCPU accepting a few 4K pages or one 2M page (and, in a second stage, reading
//! its markers back or accepting again), a host actor with up to eight actions — so one input
//! runs in tens of microseconds and the fuzzer spends its time on the order of steps, where
//! the designs' races live. The input's schedule bytes pick the first steps; a fair random
//! schedule (seeded from the input) then runs the world to its end or to the step budget.
//!
//! Every step is checked against the safety invariants (`World::check_step`, inside the
//! world's schedule loop): a violation, a model error or a bugged VM is always a crash. At the
//! end the verdict is held to the design's claim (`world::supports`): where the world is one
//! the claim covers ([`Spec::claim`]), anything but `ok` is a crash, except the guest limits
//! the project has documented (OVMF's three BUSY retries, td-shim's exact ALREADY_ACCEPTED
//! compare), which a hunt ([`Hunt`]) reports on request. A crash's input becomes a hugesept
//! trace through [`Spec::scenario_text`] and the choices [`run`] records (`examples/to_trace.rs`).

use std::fmt::Write as _;

use arbitrary::{Arbitrary, Unstructured};
use hugesept_core::abi::{Gpa, StatusCode};
use hugesept_core::guest::{Guest, GuestEnd, GuestKind};
use hugesept_core::kvm::{HostOpKind, Kvm, KvmArrayStorage, Memslot};
use hugesept_core::payload::ProgramSpec;
use hugesept_core::policy::PolicyId;
use hugesept_core::sept::{ArrayStorage, ModuleProfile, Sept, SeptConfig};
use hugesept_core::world::{
    Choice, HostAction, Limits, MAX_CHOICES, Metrics, RandomScheduler, ScheduleError, Scheduler,
    Stepped, VcpuState, Verdict, World, supports,
};

/// The window's first GPA (the scenario files' default, 1 GiB).
pub const BASE: u64 = 0x4000_0000;
/// The window's 2M regions (the memslot covers the first one to four).
pub const WINDOW_REGIONS: u32 = 4;
/// Schedule bytes the input may steer (the rest of a run is fair).
pub const MAX_STEERED: usize = 256;
/// Steps one input may take in all: a run that has not ended by then has no verdict.
pub const STEP_BUDGET: u32 = 400;
/// Steps in a row without progress that make a livelock, in the fair part.
pub const PATIENCE: u32 = 150;
/// Steps in a row without progress that confirm a livelock [`PATIENCE`] suspected: the run goes
/// on under the fair schedule, and only a run that makes no progress for this long either is
/// called a livelock. Three vCPUs and a host taking mmu_lock for write in turn (splits for
/// GUEST_INHIBIT, a punch hole) under a uniform random schedule were seen to go 150 steps
/// without a guest operation retiring and then finish.
pub const CONFIRM_PATIENCE: u32 = 2_000;

/// The guests a vCPU may run here. Linux lazy accept needs the shared bitmap and is the
/// `world_schedule` target's.
const KINDS: [GuestKind; 9] = [
    GuestKind::Linux,
    GuestKind::Ovmf,
    GuestKind::TdShim,
    GuestKind::TdxGuest,
    GuestKind::Svsm,
    GuestKind::Accept4kOnly,
    GuestKind::TouchFirst,
    GuestKind::SingleAccept,
    GuestKind::Adversarial,
];

/// Module profiles a world may run on.
const PROFILES: [&str; 4] = [
    "tdx-1.5",
    "non-blocking-resize",
    "no-demote-interruptibility",
    "explicit-demotion",
];

/// One vCPU's program.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VcpuSpec {
    /// Its strategy.
    pub kind: GuestKind,
    /// First page of its range, as a page index in the window.
    pub first: u32,
    /// Pages in its range (512: one 2M page).
    pub pages: u32,
    /// It writes markers and checks them.
    pub markers: bool,
    /// It takes an interrupt during a 2M accept.
    pub interrupt: bool,
    /// A second stage over the same range: reads the markers back (with markers) or accepts
    /// again (without).
    pub second: bool,
}

impl VcpuSpec {
    /// [start, end) GPAs.
    pub fn range(&self) -> (u64, u64) {
        let start = BASE + (u64::from(self.first) << 12);
        (start, start + (u64::from(self.pages) << 12))
    }
}

/// One host action.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HostSpec {
    /// A conversion, punch hole or split of one 4K page (page index in the window).
    Op(HostOpKind, u32),
    /// KVM_PRE_FAULT_MEMORY of a page.
    Prefetch(u32),
    /// Wait until every vCPU has finished its first stage.
    AwaitFirstStage,
}

/// A world and its steered schedule, decoded from the input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Spec {
    /// The design.
    pub policy: PolicyId,
    /// The module profile's name.
    pub profile: &'static str,
    /// #VE for guest accesses to pending pages.
    pub ve: bool,
    /// 2M regions the memslot covers (1 to 4).
    pub regions: u32,
    /// guest_memfd folio order of the one memslot (0, 9 or 18).
    pub folio_order: u8,
    /// The vCPUs (1 to 4).
    pub vcpus: Vec<VcpuSpec>,
    /// The host actor's script (0 to 8 actions; no actor when empty).
    pub host: Vec<HostSpec>,
    /// The steered schedule: step `n` takes enabled choice `schedule[n] % count`.
    pub schedule: Vec<u8>,
    /// The fair schedule's seed.
    pub seed: u64,
}

/// The input layout, byte by byte (a missing byte reads as 0, so every input decodes):
///
/// - `policy` (index into `PolicyId::ALL`), `flags` (bit 0 #VE, bits 1-2 profile, bits 3-4
///   folio order 9/0/18/9, bits 5-6 regions − 1), `vcpus` (bits 0-1: count − 1), `host`
///   (count, mod 9), `seed`;
/// - per vCPU four bytes: kind, range (bit 7: one whole 2M region, bits 5-6 the region, bit 3
///   the offset's bit 8, bits 0-2 pages − 1), offset (bits 7-0 of the first page inside the
///   region), flags (bit 0 markers, bit 1 an interrupt, bit 2 a second stage);
/// - per host action three bytes: op (mod 6: convert-to-shared, convert-to-private,
///   punch-hole, split, prefetch, await first stage) and a little-endian page index;
/// - the rest: the steered schedule (at most [`MAX_STEERED`] bytes).
impl<'a> Arbitrary<'a> for Spec {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        let n = u.len();
        Ok(Spec::decode(u.bytes(n)?))
    }

    fn arbitrary_take_rest(u: Unstructured<'a>) -> arbitrary::Result<Self> {
        Ok(Spec::decode(u.take_rest()))
    }
}

struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    fn next(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&b, rest)) => {
                self.0 = rest;
                b
            }
            None => 0,
        }
    }
}

impl Spec {
    /// Decodes an input (every input is a spec).
    pub fn decode(data: &[u8]) -> Spec {
        let mut b = Bytes(data);
        let policy = PolicyId::ALL[usize::from(b.next()) % PolicyId::ALL.len()];
        let flags = b.next();
        let mut profile = PROFILES[usize::from(flags >> 1) & 3];
        // The explicit-demotion design needs its module; the profile is its own.
        if policy == PolicyId::ExplicitDemotion {
            profile = "explicit-demotion";
        }
        let folio_order = [9, 0, 18, 9][usize::from(flags >> 3) & 3];
        let regions = u32::from((flags >> 5) & 3) + 1;
        let nvcpus = usize::from(b.next() & 3) + 1;
        let nhost = usize::from(b.next()) % 9;
        let seed = u64::from(b.next());
        let window_pages = regions * 512;
        let mut vcpus = Vec::with_capacity(nvcpus);
        for _ in 0..nvcpus {
            let kind = KINDS[usize::from(b.next()) % KINDS.len()];
            let range = b.next();
            let offset = u32::from(b.next());
            let vflags = b.next();
            let region = u32::from((range >> 5) & 3) % regions;
            let (first, pages) = if range & 0x80 != 0 {
                (region * 512, 512)
            } else {
                let pages = u32::from(range & 7) + 1;
                // Inside the region, so the range stays in the window.
                let offset = offset | (u32::from(range >> 3 & 1) << 8);
                let first = region * 512 + offset.min(512 - pages);
                (first, pages)
            };
            vcpus.push(VcpuSpec {
                kind,
                first,
                pages,
                markers: vflags & 1 != 0,
                interrupt: vflags & 2 != 0,
                second: vflags & 4 != 0,
            });
        }
        let mut host = Vec::with_capacity(nhost);
        for _ in 0..nhost {
            let op = b.next() % 6;
            let page = u32::from(u16::from_le_bytes([b.next(), b.next()])) % window_pages;
            host.push(match op {
                0 => HostSpec::Op(HostOpKind::ConvertToShared, page),
                1 => HostSpec::Op(HostOpKind::ConvertToPrivate, page),
                2 => HostSpec::Op(HostOpKind::PunchHole, page),
                3 => HostSpec::Op(HostOpKind::SplitBoundaries, page),
                4 => HostSpec::Prefetch(page),
                _ => HostSpec::AwaitFirstStage,
            });
        }
        let schedule = b.0.iter().copied().take(MAX_STEERED).collect();
        Spec {
            policy,
            profile,
            ve: flags & 1 != 0,
            regions,
            folio_order,
            vcpus,
            host,
            schedule,
            seed,
        }
    }

    /// The input bytes of this spec ([`Spec::decode`] gives it back).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let policy = PolicyId::ALL.iter().position(|p| *p == self.policy);
        out.push(policy.unwrap_or(0) as u8);
        let profile = PROFILES
            .iter()
            .position(|p| *p == self.profile)
            .unwrap_or(0) as u8;
        let folio = match self.folio_order {
            0 => 1,
            18 => 2,
            _ => 0,
        };
        out.push(
            u8::from(self.ve) | (profile << 1) | (folio << 3) | ((self.regions as u8 - 1) << 5),
        );
        out.push(self.vcpus.len() as u8 - 1);
        out.push(self.host.len() as u8);
        out.push(self.seed as u8);
        for v in &self.vcpus {
            out.push(KINDS.iter().position(|k| *k == v.kind).unwrap_or(0) as u8);
            let region = (v.first / 512) as u8;
            if v.pages == 512 {
                out.push(0x80 | (region << 5));
                out.push(0);
            } else {
                let offset = v.first % 512;
                out.push((region << 5) | (((offset >> 8) as u8) << 3) | (v.pages as u8 - 1));
                out.push(offset as u8);
            }
            out.push(
                u8::from(v.markers) | (u8::from(v.interrupt) << 1) | (u8::from(v.second) << 2),
            );
        }
        for h in &self.host {
            let (op, page) = match *h {
                HostSpec::Op(HostOpKind::ConvertToShared, p) => (0, p),
                HostSpec::Op(HostOpKind::ConvertToPrivate, p) => (1, p),
                HostSpec::Op(HostOpKind::PunchHole, p) => (2, p),
                HostSpec::Op(HostOpKind::SplitBoundaries, p) => (3, p),
                HostSpec::Prefetch(p) => (4, p),
                HostSpec::AwaitFirstStage => (5, 0),
            };
            out.push(op);
            out.extend_from_slice(&(page as u16).to_le_bytes());
        }
        out.extend_from_slice(&self.schedule);
        out
    }

    fn program(&self, i: usize, v: &VcpuSpec) -> Vec<ProgramSpec> {
        let (start, end) = v.range();
        let first = ProgramSpec {
            kind: v.kind,
            start: Gpa(start),
            end: Gpa(end),
            tag: i as u16 + 1,
            markers: v.markers,
            verify_only: false,
            stride: None,
        };
        let mut stages = vec![first];
        if v.second {
            stages.push(ProgramSpec {
                verify_only: v.markers,
                ..first
            });
        }
        stages
    }

    fn actions(&self) -> Vec<HostAction> {
        let gfn = |p: u32| Gpa(BASE + (u64::from(p) << 12)).gfn();
        self.host
            .iter()
            .map(|h| match *h {
                HostSpec::Op(kind, p) => HostAction::Operation {
                    kind,
                    start: gfn(p),
                    end: gfn(p + 1),
                },
                HostSpec::Prefetch(p) => HostAction::Prefetch(gfn(p)),
                HostSpec::AwaitFirstStage => HostAction::AwaitStage(1),
            })
            .collect()
    }

    /// The world at its start, as the scenario [`Spec::scenario_text`] builds it
    /// (host-kvm's `Scenario::world`): finalized, one guest_memfd memslot over the window.
    pub fn world(&self) -> Result<FuzzWorld, String> {
        // The window is always four regions (the storage's); the memslot covers `regions`.
        let mut config = SeptConfig::new(Gpa(BASE), WINDOW_REGIONS);
        config.profile = ModuleProfile::parse(self.profile).map_err(|e| e.to_string())?;
        config.pending_ve_disable = !self.ve;
        let mut sept: Sept<FuzzSept> =
            Sept::new(config, ArrayStorage::new()).map_err(|e| e.to_string())?;
        sept.finalize();
        let mut kvm: Kvm<FuzzKvm> =
            Kvm::new(&config, KvmArrayStorage::new()).map_err(|e| e.to_string())?;
        kvm.add_memslot(Memslot {
            base: Gpa(BASE).gfn(),
            pages: u64::from(self.regions) * 512,
            guest_memfd: true,
        })
        .map_err(|e| e.to_string())?;
        let folio = Kvm::<FuzzKvm>::folio_level(self.folio_order);
        for r in 0..u64::from(self.regions) {
            kvm.set_folio(Gpa(BASE + (r << 21)).gfn(), folio)
                .map_err(|e| e.to_string())?;
        }
        let programs: Vec<Vec<Guest>> = self
            .vcpus
            .iter()
            .enumerate()
            .map(|(i, v)| self.program(i, v).iter().map(ProgramSpec::guest).collect())
            .collect();
        let programs: Vec<&[Guest]> = programs.iter().map(Vec::as_slice).collect();
        let actions = self.actions();
        let scripts: Vec<&[HostAction]> = if actions.is_empty() {
            Vec::new()
        } else {
            vec![&actions]
        };
        let interrupts = u8::from(self.vcpus.iter().any(|v| v.interrupt));
        World::with_programs(sept, kvm, self.policy, &programs, &scripts, interrupts)
            .map_err(|e| e.to_string())
    }

    /// The scenario file of this world (what a trace embeds).
    pub fn scenario_text(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "name = \"interleave fuzz input\"");
        let _ = writeln!(s, "module = \"{}\"", self.profile);
        let _ = writeln!(s, "policy = \"{}\"", self.policy);
        let _ = writeln!(s, "ve = {}", self.ve);
        let _ = writeln!(s, "base = \"{BASE:#x}\"");
        let _ = writeln!(s, "regions = {WINDOW_REGIONS}");
        let _ = writeln!(s, "steps = {STEP_BUDGET}");
        let _ = writeln!(s, "patience = {PATIENCE}");
        let _ = writeln!(s);
        let _ = writeln!(s, "[[memslot]]");
        let _ = writeln!(s, "start = \"{BASE:#x}\"");
        let _ = writeln!(s, "end = \"{:#x}\"", BASE + (u64::from(self.regions) << 21));
        let _ = writeln!(s, "folio_order = {}", self.folio_order);
        let interrupts = u8::from(self.vcpus.iter().any(|v| v.interrupt));
        for (i, v) in self.vcpus.iter().enumerate() {
            let _ = writeln!(s, "\n[[vcpu]]");
            let _ = writeln!(s, "interrupts = {interrupts}");
            for p in self.program(i, v) {
                let _ = writeln!(s, "[[vcpu.stage]]");
                let _ = writeln!(s, "guest = \"{}\"", p.kind.name());
                let _ = writeln!(s, "start = \"{:#x}\"", p.start.raw());
                let _ = writeln!(s, "end = \"{:#x}\"", p.end.raw());
                let _ = writeln!(s, "markers = {}", p.markers);
                let _ = writeln!(s, "tag = {}", p.tag);
                let _ = writeln!(s, "verify_only = {}", p.verify_only);
            }
        }
        if !self.host.is_empty() {
            let _ = writeln!(s, "\n[[host]]\nactions = [");
            let gpa = |p: u32| BASE + (u64::from(p) << 12);
            for h in &self.host {
                let _ = match *h {
                    HostSpec::Op(kind, p) => writeln!(
                        s,
                        "  {{ op = \"{}\", start = \"{:#x}\", end = \"{:#x}\" }},",
                        op_name(kind),
                        gpa(p),
                        gpa(p + 1)
                    ),
                    HostSpec::Prefetch(p) => {
                        writeln!(s, "  {{ op = \"prefetch\", gpa = \"{:#x}\" }},", gpa(p))
                    }
                    HostSpec::AwaitFirstStage => {
                        writeln!(s, "  {{ op = \"await-stage\", stage = 1 }},")
                    }
                };
            }
            let _ = writeln!(s, "]");
        }
        s
    }

    /// Whether the design's claim covers this world, and so every end but `ok` (and the
    /// documented guest limits) is a bug: the module is the current one (or one that resizes
    /// without blocking; explicit demotion's for that design), every guest is one the design claims
    /// (`world::supports`) and a complete strategy (not the bare single ACCEPT nor the
    /// adversarial guest); a touch-first guest has #VE; the host removes or converts no page
    /// a guest uses; guests whose ranges overlap tolerate another's ACCEPT (OVMF, the
    /// 4K-only guest) and at most one of them writes markers; a second stage that accepts
    /// again does so with a strategy that takes ALREADY_ACCEPTED (OVMF, the 4K-only guest,
    /// td-shim, whose panic on level bits is a documented limit).
    pub fn claim(&self) -> bool {
        // The claims are made for the current module (and one that resizes without blocking);
        // the explicit-demotion module is a TD's opt-in, a module without demote
        // interruptibility one huge pages are not enabled on (kvm-fault-path.md).
        let module_claimed = match self.profile {
            "tdx-1.5" | "non-blocking-resize" => true,
            "explicit-demotion" => self.policy == PolicyId::ExplicitDemotion,
            _ => false,
        };
        if !module_claimed {
            return false;
        }
        let tolerant = |k: GuestKind| matches!(k, GuestKind::Ovmf | GuestKind::Accept4kOnly);
        for v in &self.vcpus {
            if supports(self.policy, v.kind).is_err()
                || matches!(v.kind, GuestKind::SingleAccept | GuestKind::Adversarial)
                || (v.kind == GuestKind::TouchFirst && !self.ve)
                || (v.second && !v.markers && !(tolerant(v.kind) || v.kind == GuestKind::TdShim))
            {
                return false;
            }
        }
        for (i, a) in self.vcpus.iter().enumerate() {
            for b in self.vcpus.iter().skip(i + 1) {
                let (a0, a1) = a.range();
                let (b0, b1) = b.range();
                if a0 < b1
                    && b0 < a1
                    && (!tolerant(a.kind) || !tolerant(b.kind) || (a.markers && b.markers))
                {
                    return false;
                }
            }
        }
        !self.host.iter().any(|h| match *h {
            HostSpec::Op(HostOpKind::SplitBoundaries, _) => false,
            HostSpec::Op(_, p) => {
                let g = BASE + (u64::from(p) << 12);
                self.vcpus.iter().any(|v| {
                    let (s, e) = v.range();
                    g >= s && g < e
                })
            }
            _ => false,
        })
    }

    /// Whether `gpa` is a page some host action removes or converts (its content may go).
    pub fn host_touches(&self, gpa: u64) -> bool {
        self.host.iter().any(|h| match *h {
            HostSpec::Op(HostOpKind::SplitBoundaries, _) => false,
            HostSpec::Op(_, p) => BASE + (u64::from(p) << 12) == gpa & !0xFFF,
            _ => false,
        })
    }
}

/// The scenario-file name of a host operation.
pub fn op_name(kind: HostOpKind) -> &'static str {
    match kind {
        HostOpKind::ConvertToShared => "convert-to-shared",
        HostOpKind::ConvertToPrivate => "convert-to-private",
        HostOpKind::PunchHole => "punch-hole",
        HostOpKind::SplitBoundaries => "split",
    }
}

/// The S-EPT storage of a fuzz world (four regions, a table each).
pub type FuzzSept = ArrayStorage<1, 4, 4>;
/// KVM's storage of a fuzz world.
pub type FuzzKvm = KvmArrayStorage<1, 4, 4>;
/// A fuzz world.
pub type FuzzWorld = World<FuzzSept, FuzzKvm>;

/// The steered schedule, then the fair one.
struct InputThenFair<'a> {
    steered: &'a [u8],
    fair: RandomScheduler,
    /// Steps taken before the schedule loop that calls `pick` now started counting.
    offset: u32,
}

impl Scheduler for InputThenFair<'_> {
    fn pick(&mut self, step: u32, choices: &[Choice]) -> usize {
        let step = step.saturating_add(self.offset);
        match self.steered.get(step as usize) {
            Some(&b) => usize::from(b) % choices.len().max(1),
            None => self.fair.pick(step, choices),
        }
    }
}

/// How a run ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Run {
    /// The verdict, or why there is none.
    pub outcome: Result<Verdict, ScheduleError>,
    /// Every choice taken, in order.
    pub choices: Vec<Choice>,
    /// Each vCPU's end, where its program ended.
    pub ends: Vec<Option<GuestEnd>>,
}

/// Runs `spec`'s world: the steered steps, then a fair schedule, within [`STEP_BUDGET`]
/// steps in all. A livelock is suspected after [`PATIENCE`] steps in a row without progress
/// counted past the steered ones (the patience grows by the steered length, so a schedule the
/// input starves is never suspected before the fair part has had its full patience), and
/// confirmed only if the fair schedule then goes [`CONFIRM_PATIENCE`] more steps without
/// progress; a run that moves on ends as it ends (the confirmation may take it past the
/// budget).
pub fn run(spec: &Spec) -> Result<Run, String> {
    let mut w = spec.world()?;
    let mut choices = Vec::with_capacity(256);
    let mut m = Metrics::default();
    let mut steps = 0u64;
    let steered = u32::try_from(spec.schedule.len()).unwrap_or(0);
    let mut sched = InputThenFair {
        steered: &spec.schedule,
        fair: RandomScheduler::new(spec.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1),
        offset: 0,
    };
    let mut outcome = w.advance_schedule(
        &mut sched,
        Limits {
            bound: STEP_BUDGET,
            patience: PATIENCE.saturating_add(steered),
        },
        &mut m,
        &mut steps,
        |c: Choice, _: Stepped| choices.push(c),
    );
    if outcome == Ok(Verdict::Livelock) {
        sched.offset = u32::try_from(choices.len()).unwrap_or(u32::MAX);
        outcome = w.advance_schedule(
            &mut sched,
            Limits {
                bound: CONFIRM_PATIENCE.saturating_mul(2),
                patience: CONFIRM_PATIENCE,
            },
            &mut m,
            &mut steps,
            |c: Choice, _: Stepped| choices.push(c),
        );
    }
    let ends = w
        .vcpus()
        .map(|v| match v.state() {
            VcpuState::Finished(e) => Some(e),
            _ => None,
        })
        .collect();
    Ok(Run {
        outcome,
        choices,
        ends,
    })
}

/// A documented guest limit a run ended in (shared/reference/guests.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Limit {
    /// A guest panicked on TDX_OPERAND_BUSY: it retries fewer times than it met (OVMF three,
    /// td-shim five; docs/architecture.md has the 19-step schedule for OVMF) or not at all
    /// (tdx-guest, svsm, Linux at 4K). Contention (another vCPU's fault path or a host
    /// prefetch holding the entry) makes it; the guest's loop, not the host, decides.
    Busy(GuestKind),
    /// td-shim panicked on ALREADY_ACCEPTED with level bits (it compares the status exactly).
    TdShimAlreadyAccepted,
}

/// The documented guest limit behind a guest panic, if that is what it is.
pub fn limit(spec: &Spec, run: &Run) -> Option<Limit> {
    spec.vcpus.iter().zip(&run.ends).find_map(|(v, e)| match e {
        Some(GuestEnd::Panic { status, .. }) => match (v.kind, status.code()) {
            (k, StatusCode::OperandBusy) => Some(Limit::Busy(k)),
            (GuestKind::TdShim, StatusCode::PageAlreadyAccepted) => {
                Some(Limit::TdShimAlreadyAccepted)
            }
            _ => None,
        },
        _ => None,
    })
}

/// An outcome a hunt turns into a crash: a verdict, optionally only under one design and
/// with one guest kind among the vCPUs (`HUGESEPT_HUNT=verdict[:policy[:guest]]`, `*` for
/// any design).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hunt {
    /// The verdict hunted.
    pub verdict: Verdict,
    /// Only under this design.
    pub policy: Option<PolicyId>,
    /// Only with this guest on some vCPU.
    pub guest: Option<GuestKind>,
}

impl Hunt {
    /// Parses `verdict[:policy[:guest]]`.
    pub fn parse(s: &str) -> Option<Hunt> {
        let mut parts = s.split(':');
        let verdict = parse_verdict(parts.next()?)?;
        let policy = match parts.next() {
            Some("*") | None => None,
            Some(p) => Some(PolicyId::parse(p)?),
        };
        let guest = match parts.next() {
            Some(g) => Some(GuestKind::parse(g)?),
            None => None,
        };
        Some(Hunt {
            verdict,
            policy,
            guest,
        })
    }

    fn matches(&self, spec: &Spec, v: Verdict) -> bool {
        v == self.verdict
            && self.policy.is_none_or(|p| p == spec.policy)
            && self
                .guest
                .is_none_or(|g| spec.vcpus.iter().any(|x| x.kind == g))
    }
}

fn parse_verdict(s: &str) -> Option<Verdict> {
    [
        Verdict::Ok,
        Verdict::GuestPanic,
        Verdict::DataLoss,
        Verdict::VmBugged,
        Verdict::VmKilled,
        Verdict::Livelock,
    ]
    .into_iter()
    .find(|v| v.name() == s)
}

/// What is wrong with a run, if anything: `None` when it ended as the design's claim allows.
pub fn judge(spec: &Spec, run: &Run, hunt: Option<Hunt>) -> Option<String> {
    let v = match &run.outcome {
        Ok(v) => Some(*v),
        Err(ScheduleError::BudgetExhausted { .. }) => None,
        Err(e) => return Some(format!("{e:?}")),
    };
    if let (Some(h), Some(v)) = (hunt, v)
        && h.matches(spec, v)
    {
        return Some(format!("hunted outcome {}", v.name()));
    }
    match v {
        Some(Verdict::VmBugged) => return Some("the host bugged the VM".into()),
        Some(Verdict::DataLoss) => {
            // Data loss in a page no host action touched is always a bug.
            let lost = run.ends.iter().find_map(|e| match e {
                Some(GuestEnd::DataLoss { gpa, .. }) => Some(gpa.raw()),
                _ => None,
            });
            let overlapping_markers = spec.vcpus.iter().enumerate().any(|(i, a)| {
                spec.vcpus.iter().skip(i + 1).any(|b| {
                    let (a0, a1) = a.range();
                    let (b0, b1) = b.range();
                    a0 < b1
                        && b0 < a1
                        && (a.markers || a.kind == GuestKind::Svsm)
                        && (b.markers || b.kind == GuestKind::Svsm)
                })
            });
            let adversarial = spec.vcpus.iter().any(|x| x.kind == GuestKind::Adversarial);
            if let Some(g) = lost
                && !spec.host_touches(g)
                && !overlapping_markers
                && !adversarial
            {
                return Some(format!(
                    "data loss at {g:#x}, a page no host action touched"
                ));
            }
        }
        _ => {}
    }
    if !spec.claim() {
        return None;
    }
    match v {
        Some(Verdict::Ok) | None => None,
        Some(Verdict::GuestPanic) if limit(spec, run).is_some() => None,
        Some(v) => Some(format!(
            "{} claims {:?} but the run ended in {}",
            spec.policy,
            spec.vcpus.iter().map(|x| x.kind).collect::<Vec<_>>(),
            v.name()
        )),
    }
}

/// The choices available in a world's state (for tests and tools).
pub fn enabled(w: &FuzzWorld) -> Vec<Choice> {
    let mut out = [Choice::Vcpu(0); MAX_CHOICES];
    let n = w.enabled(&mut out);
    out.get(..n).map(<[Choice]>::to_vec).unwrap_or_default()
}

/// The known interleavings, as inputs: the committed seed corpus (`corpus/interleave/seed-*`,
/// kept equal to these by a test) — the seed scenario (a 2M ACCEPT by OVMF and a 4K ACCEPT
/// inside it) in both orders under RFC v1 and GUEST_INHIBIT, a prefetch then 4K accepts,
/// a 4K conversion inside an accepted and marked 2M page, td-shim re-accepting its 2M page,
/// and a touch-first #VE guest accepting 4K under RFC v1 and GUEST_INHIBIT.
pub fn seeds() -> Vec<(&'static str, Spec)> {
    let vcpu = |kind, first, pages, markers| VcpuSpec {
        kind,
        first,
        pages,
        markers,
        interrupt: false,
        second: false,
    };
    let base = |policy| Spec {
        policy,
        profile: "tdx-1.5",
        ve: false,
        regions: 2,
        folio_order: 9,
        vcpus: Vec::new(),
        host: Vec::new(),
        schedule: Vec::new(),
        seed: 0,
    };
    let seed_pair = |policy, first_4k: bool| Spec {
        vcpus: vec![
            VcpuSpec {
                interrupt: true,
                ..vcpu(GuestKind::Ovmf, 512, 512, false)
            },
            vcpu(GuestKind::Accept4kOnly, 513, 1, false),
        ],
        // Index 0 is vCPU 0 and index 2 vCPU 1 while both can move (vCPU 0's interrupt is
        // index 1); once one is done, any byte picks the other.
        schedule: vec![if first_4k { 2 } else { 0 }; 64],
        ..base(policy)
    };
    vec![
        ("seed-2m-first-rfc-v1", seed_pair(PolicyId::RfcV1, false)),
        ("seed-4k-first-rfc-v1", seed_pair(PolicyId::RfcV1, true)),
        (
            "seed-2m-first-guest-inhibit",
            seed_pair(PolicyId::GuestInhibit, false),
        ),
        (
            "seed-4k-first-guest-inhibit",
            seed_pair(PolicyId::GuestInhibit, true),
        ),
        (
            "prefetch-then-4k",
            Spec {
                vcpus: vec![vcpu(GuestKind::Accept4kOnly, 513, 2, true)],
                host: vec![HostSpec::Prefetch(512)],
                // The host actor (index 1) first.
                schedule: vec![1; 8],
                ..base(PolicyId::GuestInhibit)
            },
        ),
        (
            "conversion-4k-in-2m",
            Spec {
                vcpus: vec![VcpuSpec {
                    interrupt: true,
                    second: true,
                    ..vcpu(GuestKind::Ovmf, 512, 512, true)
                }],
                host: vec![
                    HostSpec::AwaitFirstStage,
                    HostSpec::Op(HostOpKind::ConvertToShared, 1023),
                    HostSpec::Op(HostOpKind::ConvertToPrivate, 1023),
                    HostSpec::Op(HostOpKind::ConvertToShared, 1023),
                ],
                ..base(PolicyId::GuestInhibit)
            },
        ),
        (
            "td-shim-reaccept-2m",
            Spec {
                vcpus: vec![VcpuSpec {
                    second: true,
                    ..vcpu(GuestKind::TdShim, 512, 512, false)
                }],
                ..base(PolicyId::GuestInhibit)
            },
        ),
        (
            "touch-first-4k-rfc-v1",
            Spec {
                ve: true,
                vcpus: vec![vcpu(GuestKind::TouchFirst, 513, 2, true)],
                ..base(PolicyId::RfcV1)
            },
        ),
        (
            "touch-first-4k-guest-inhibit",
            Spec {
                ve: true,
                vcpus: vec![vcpu(GuestKind::TouchFirst, 513, 2, true)],
                ..base(PolicyId::GuestInhibit)
            },
        ),
    ]
}
