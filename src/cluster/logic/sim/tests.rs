use super::*;

/// Issue 13 item 8 in CI: 200 seeds of 3-5 nodes with faults.
#[test]
fn small_clusters_hold_every_invariant_over_200_seeds() {
    let mut met = 0;
    let mut faults = 0;
    for seed in 0..200 {
        match run(SimConfig::small(seed)) {
            Ok(report) => {
                met += report.expectations_met;
                faults += report.faults;
            }
            Err(failure) => panic!("{failure}"),
        }
    }
    // The checks must have had something to check.
    assert!(met > 1_000, "only {met} deliveries were owed");
    assert!(faults > 100, "only {faults} faults");
}

#[test]
fn without_faults_every_owed_delivery_is_checked_and_met() {
    let report = run(SimConfig {
        faults: false,
        steps: 5_000,
        ..SimConfig::small(7)
    })
    .unwrap_or_else(|f| panic!("{f}"));
    assert_eq!(report.faults, 0);
    assert!(report.expectations_met > 200, "{report:?}");
    assert_eq!(report.frames_lost, 0);
}

#[test]
fn a_seed_replays_to_the_identical_trace() {
    let config = SimConfig {
        keep_trace: true,
        ..SimConfig::small(42)
    };
    let a = run(config.clone()).unwrap_or_else(|f| panic!("{f}"));
    let b = run(config).unwrap_or_else(|f| panic!("{f}"));
    assert_eq!(a.trace_hash, b.trace_hash);
    assert_eq!(a.trace, b.trace);
    assert!(a.trace.len() > 1_000);
    let c = run(SimConfig::small(43)).unwrap_or_else(|f| panic!("{f}"));
    assert_ne!(a.trace_hash, c.trace_hash, "another seed, another run");
}

/// The checks can fail: each deliberate bug is caught within a few seeds.
#[test]
fn the_invariant_checks_catch_deliberate_bugs() {
    for (sabotage, what) in [
        (Sabotage::SubackWithoutAcks, "SUBACK implies delivery"),
        (Sabotage::NoHolding, ""),
    ] {
        let caught = (0..50).find_map(|seed| {
            run(SimConfig {
                sabotage: Some(sabotage),
                faults: false,
                ..SimConfig::small(seed)
            })
            .err()
        });
        let failure = caught.unwrap_or_else(|| panic!("{sabotage:?} went unnoticed"));
        assert!(failure.message.contains(what), "{sabotage:?}: {failure}");
    }
}
