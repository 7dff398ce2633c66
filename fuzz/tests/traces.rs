//! Every seed of the `interleave` target becomes a trace that replay reproduces with the
//! outcome the run ended in (the path a crash takes to a readable trace).

#[path = "../examples/to_trace.rs"]
mod to_trace;

use hugesept_fuzz::interleave;
use hugesept_host_kvm::trace::Claim;

#[test]
fn every_seed_becomes_a_trace_replay_reproduces() {
    for (name, spec) in interleave::seeds() {
        let run = interleave::run(&spec).unwrap();
        let (t, claim) = to_trace::trace_of(&spec).unwrap_or_else(|e| panic!("{name}: {e}"));
        let want = match run.outcome {
            Ok(v) => Claim::Verdict(v),
            Err(_) => Claim::BudgetExhausted,
        };
        assert_eq!(claim, want, "{name}");
        assert_eq!(t.verdict, want.name(), "{name}");
        // The text is a trace file replay reads back.
        let back = hugesept_host_kvm::trace::Trace::parse(&t.to_toml()).unwrap();
        assert_eq!(back.choices, t.choices, "{name}");
    }
}
