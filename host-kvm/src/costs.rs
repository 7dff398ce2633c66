//! The cost model: a run's counts turned into an estimate of its wall time, from a profile of
//! per-event costs measured in the field (docs/costs.md).
//!
//! The model's runs count what each vCPU did: ACCEPT TDCALLs, TD exits to the private fault
//! path, the SEAMCALLs that path issued, the 4K pages its successful ACCEPTs initialised, and
//! the steps it spent waiting (for mmu_lock, an entry lock, the guests, a lazy-accept unit). A
//! [`CostProfile`] prices each; a vCPU's time is the sum of its own, and the run's wall time is
//! the busiest vCPU's (the vCPUs run in parallel), or the host actors' SEAMCALLs when those
//! take longer. What the model does not contain — the host's scheduling, idle vCPUs taking the
//! timer tick — enters through the profile: an exit costs more the more vCPUs the TD has,
//! as measured.

use std::fmt;

use hugesept_core::world::Metrics;
use serde::{Deserialize, Serialize};

/// What each event costs, in microseconds.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CostProfile {
    /// The profile's name.
    pub name: String,
    /// A TD exit to KVM's private fault path and back into the guest, its first SEAMCALL
    /// (the mapping's AUG) included, in a TD of at most `exit_flat_vcpus` vCPUs.
    pub exit_us: f64,
    /// vCPUs up to which an exit costs `exit_us`.
    pub exit_flat_vcpus: u32,
    /// What an exit costs more for each vCPU past `exit_flat_vcpus`.
    pub exit_us_per_vcpu: f64,
    /// One ACCEPT TDCALL into the module and back, whether it retires or exits (the pages it
    /// initialises are priced apart).
    pub tdcall_us: f64,
    /// The module initialising one 4K page an ACCEPT accepts.
    pub page_init_us: f64,
    /// A fault-path or host SEAMCALL past an exit's first (BLOCK, TRACK, DEMOTE, UNBLOCK,
    /// removal), and one step spent waiting on another actor's step.
    pub seamcall_us: f64,
}

/// Where each number of the built-in profile comes from.
pub const FIELD_SOURCES: [(&str, &str); 5] = [
    (
        "exit_us = 8",
        "Dstack-TEE/dstack pull request 1220 (Granite Rapids, 7.0 host, 4K-only KVM): a private \
         fault costs about 8 µs normally",
    ),
    (
        "exit_flat_vcpus = 32, exit_us_per_vcpu = 0.745",
        "Dstack-TEE/dstack pull request 1219, os/common/rootfs/tdx-guest-tune.sh: a TD exit round \
         trip takes about 9 µs with 32 vCPUs and 170 µs with 248 (idle vCPUs taking the 1000 Hz \
         tick); (170 - 9) / (248 - 32). Pull request 1220 measured 153 µs per fault at 248",
    ),
    (
        "tdcall_us = 1",
        "assumed: no per-TDCALL cost is published; a TDCALL is a round trip into the SEAM \
         module without a VM exit, small beside an exit",
    ),
    (
        "page_init_us = 0.5",
        "assumed: 4 KiB written with MOVDIR64B at about 8 GB/s; no published figure",
    ),
    (
        "seamcall_us = 1",
        "assumed: no per-SEAMCALL cost is published (the mapping's own AUG is inside exit_us)",
    ),
];

impl CostProfile {
    /// The field profile: Dstack's measurements on Granite Rapids for exits, assumptions
    /// (named in [`FIELD_SOURCES`]) for the rest.
    pub fn field() -> CostProfile {
        CostProfile {
            name: "field".into(),
            exit_us: 8.0,
            exit_flat_vcpus: 32,
            exit_us_per_vcpu: 0.745,
            tdcall_us: 1.0,
            page_init_us: 0.5,
            seamcall_us: 1.0,
        }
    }

    /// A profile from a TOML file's text (the fields of [`CostProfile`]).
    pub fn parse(text: &str) -> Result<CostProfile, String> {
        let p: CostProfile = toml::from_str(text).map_err(|e| e.to_string())?;
        for (field, v) in [
            ("exit_us", p.exit_us),
            ("exit_us_per_vcpu", p.exit_us_per_vcpu),
            ("tdcall_us", p.tdcall_us),
            ("page_init_us", p.page_init_us),
            ("seamcall_us", p.seamcall_us),
        ] {
            if !v.is_finite() || v < 0.0 {
                return Err(format!(
                    "{field} = {v}: a cost is a finite number of µs, 0 or more"
                ));
            }
        }
        Ok(p)
    }

    /// What one exit costs in a TD of `vcpus` vCPUs.
    pub fn exit_cost(&self, vcpus: u32) -> f64 {
        let past = vcpus.saturating_sub(self.exit_flat_vcpus);
        self.exit_us + f64::from(past) * self.exit_us_per_vcpu
    }

    /// The estimate for a run of a TD of `vcpus` vCPUs that counted `m`.
    pub fn estimate(&self, m: &Metrics, vcpus: u32) -> Estimate {
        let exit = self.exit_cost(vcpus);
        let mut busiest = VcpuCost::default();
        let n = usize::try_from(vcpus).unwrap_or(usize::MAX);
        for i in 0..n.min(m.vcpu_steps.len()) {
            let at = |a: &[u32]| f64::from(a.get(i).copied().unwrap_or(0));
            let exits = at(&m.vcpu_exits);
            let seamcalls = at(&m.vcpu_seamcalls);
            let c = VcpuCost {
                vcpu: i,
                exits: exits * exit,
                tdcalls: at(&m.vcpu_tdcalls) * self.tdcall_us,
                pages: at(&m.vcpu_pages) * self.page_init_us,
                seamcalls: (seamcalls - exits).max(0.0) * self.seamcall_us,
                waits: at(&m.vcpu_waits) * self.seamcall_us,
            };
            if c.total() > busiest.total() {
                busiest = c;
            }
        }
        let host = f64::from(m.host_seamcalls) * self.seamcall_us
            + f64::from(m.host_waits) * self.seamcall_us;
        // A kick bounce is one vCPU leaving the guest and entering again; the counts do not
        // say which, so each vCPU is charged its share.
        let kicks = f64::from(m.kicks) * exit / f64::from(vcpus.max(1));
        Estimate {
            busiest,
            kicks,
            host,
            exit_cost: exit,
        }
    }
}

/// One vCPU's estimated time, by what it spent it on (µs).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct VcpuCost {
    /// The vCPU.
    pub vcpu: usize,
    /// Its exits to the fault path.
    pub exits: f64,
    /// Its ACCEPT TDCALLs.
    pub tdcalls: f64,
    /// The pages its ACCEPTs initialised.
    pub pages: f64,
    /// Its fault path's SEAMCALLs past each exit's first.
    pub seamcalls: f64,
    /// Its waits.
    pub waits: f64,
}

impl VcpuCost {
    /// The vCPU's time.
    pub fn total(&self) -> f64 {
        self.exits + self.tdcalls + self.pages + self.seamcalls + self.waits
    }
}

/// A run's estimated wall time (µs).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Estimate {
    /// The vCPU that took longest.
    pub busiest: VcpuCost,
    /// Each vCPU's share of the kick bounces.
    pub kicks: f64,
    /// The host actors' SEAMCALLs and waits.
    pub host: f64,
    /// What one exit cost (the profile at this vCPU count).
    pub exit_cost: f64,
}

impl Estimate {
    /// The run's wall time: the busiest vCPU with its share of kicks, or the host actors when
    /// they took longer.
    pub fn wall_us(&self) -> f64 {
        (self.busiest.total() + self.kicks).max(self.host)
    }
}

/// Microseconds as a person reads them (µs, ms, s).
pub struct Duration(pub f64);

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let us = self.0;
        if us >= 1e6 {
            write!(f, "{:.1} s", us / 1e6)
        } else if us >= 1e3 {
            write!(f, "{:.1} ms", us / 1e3)
        } else {
            write!(f, "{us:.0} µs")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_exit_costs_more_past_the_flat_vcpu_count() {
        let p = CostProfile::field();
        assert_eq!(p.exit_cost(1), 8.0);
        assert_eq!(p.exit_cost(32), 8.0);
        // Dstack's 170 µs at 248 vCPUs, from 9 µs at 32 (the slope's two points).
        assert!((p.exit_cost(248) - (8.0 + 216.0 * 0.745)).abs() < 1e-9);
        assert!((p.exit_cost(248) - 169.0).abs() < 1.0);
    }

    #[test]
    fn the_busiest_vcpu_sets_the_wall_time() {
        let p = CostProfile::field();
        let mut m = Metrics::default();
        // vCPU 0: 1024 exits and 2048 TDCALLs initialising 1024 pages (a 4 MiB block on a
        // 4K-only host); vCPU 1: two 2M accepts.
        m.vcpu_exits[0] = 1024;
        m.vcpu_seamcalls[0] = 1024;
        m.vcpu_tdcalls[0] = 2048;
        m.vcpu_pages[0] = 1024;
        m.vcpu_exits[1] = 2;
        m.vcpu_seamcalls[1] = 2;
        m.vcpu_tdcalls[1] = 4;
        m.vcpu_pages[1] = 1024;
        let e = p.estimate(&m, 2);
        assert_eq!(e.busiest.vcpu, 0);
        assert_eq!(e.busiest.exits, 1024.0 * 8.0);
        assert_eq!(e.busiest.tdcalls, 2048.0);
        assert_eq!(e.busiest.pages, 512.0);
        assert_eq!(e.busiest.seamcalls, 0.0);
        assert_eq!(e.wall_us(), 1024.0 * 8.0 + 2048.0 + 512.0);
        // A vCPU past the TD's count is not looked at.
        m.vcpu_exits[5] = 1_000_000;
        assert_eq!(p.estimate(&m, 2).wall_us(), e.wall_us());
        // Host actors that take longer set it instead.
        m.host_seamcalls = 100_000;
        assert_eq!(p.estimate(&m, 2).wall_us(), 100_000.0);
    }

    #[test]
    fn a_profile_file_is_checked() {
        let text = "name = \"mine\"\nexit_us = 5\nexit_flat_vcpus = 8\nexit_us_per_vcpu = 0.5\n\
                    tdcall_us = 1\npage_init_us = 0.2\nseamcall_us = 2\n";
        let p = CostProfile::parse(text).unwrap();
        assert_eq!(p.exit_cost(10), 6.0);
        assert!(CostProfile::parse(&text.replace("= 5", "= -5")).is_err());
        assert!(CostProfile::parse(&text.replace("= 5", "= nan")).is_err());
        assert!(CostProfile::parse("name = \"x\"\n").is_err());
    }
}
