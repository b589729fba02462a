use proptest::prelude::*;
use yunhan_model::{SnapshotPolicySpec, SnapshotPolicyStatus, MAX_POLICY_NAME};

use super::*;

const T0: i64 = 1_741_610_096; // 2025-03-10T12:34:56Z

fn spec(schedule: &str, enabled: bool) -> SnapshotPolicySpec {
    SnapshotPolicySpec {
        volume: Some("vol-1".into()),
        instance: None,
        schedule: schedule.into(),
        keep: 3,
        enabled,
    }
}

fn status(next_run: Option<i64>) -> SnapshotPolicyStatus {
    SnapshotPolicyStatus {
        next_run: next_run.map(rfc3339_of),
        ..Default::default()
    }
}

fn plan_of(schedule: &str, enabled: bool, next_run: Option<i64>, now: i64) -> Plan {
    let cron = Cron::parse(schedule).unwrap();
    plan(&spec(schedule, enabled), &status(next_run), &cron, now)
}

#[test]
fn a_new_policy_is_scheduled_then_fires_once_due() {
    let every5 = "*/5 * * * * *";
    assert_eq!(
        plan_of(every5, true, None, T0),
        Plan::Schedule(Some(T0 + 4))
    );
    assert_eq!(plan_of(every5, true, Some(T0 + 4), T0), Plan::Idle);
    let fire = Plan::Fire {
        due: T0 + 4,
        next: Some(T0 + 9),
    };
    assert_eq!(plan_of(every5, true, Some(T0 + 4), T0 + 4), fire);
}

#[test]
fn a_missed_window_is_one_run_and_the_next_is_after_now() {
    let fire = plan_of("*/1 * * * *", true, Some(T0 + 4 - 3600), T0);
    assert_eq!(
        fire,
        Plan::Fire {
            due: T0 + 4 - 3600,
            next: Some(T0 + 4)
        }
    );
}

#[test]
fn disabled_policies_are_unscheduled_and_a_changed_schedule_is_replanned() {
    assert_eq!(
        plan_of("* * * * *", false, Some(T0), T0),
        Plan::Schedule(None)
    );
    assert_eq!(plan_of("* * * * *", false, None, T0), Plan::Idle);
    // 12:35:00 was planned by "*/1 * * * *"; the schedule is now hourly.
    assert_eq!(
        plan_of("0 * * * *", true, Some(T0 + 4), T0),
        Plan::Schedule(Some(T0 + 4 + 25 * 60))
    );
}

#[test]
fn names_carry_the_due_time_and_fit() {
    assert_eq!(
        snapshot_name("nightly", T0, None),
        "nightly-20250310T123456Z"
    );
    assert_eq!(snapshot_name("vm", T0, Some(2)), "vm-20250310T123456Z-d2");
    let longest = snapshot_name(&"p".repeat(MAX_POLICY_NAME), T0, Some(9));
    yunhan_model::validate_name("n", &longest).unwrap();
}

fn taken(i: usize, volume: &str, creating: bool, restoring: bool) -> Taken {
    Taken {
        id: format!("snap-{i}"),
        name: format!("p-{i:03}"),
        volume: volume.into(),
        created: rfc3339_of(T0 + i as i64),
        creating,
        restoring,
    }
}

#[test]
fn the_oldest_beyond_keep_go_per_volume() {
    let snaps: Vec<Taken> = (0..5)
        .map(|i| taken(i, "a", false, false))
        .chain((5..7).map(|i| taken(i, "b", false, false)))
        .collect();
    assert_eq!(to_prune(&snaps, 3), ["snap-0", "snap-1"]);
    assert_eq!(to_prune(&snaps, 1).len(), 4 + 1);
}

#[test]
fn snapshots_being_taken_or_restored_from_stay() {
    let snaps = [
        taken(0, "a", false, true),
        taken(1, "a", true, false),
        taken(2, "a", false, false),
        taken(3, "a", false, false),
    ];
    assert_eq!(to_prune(&snaps, 1), ["snap-2"]);
}

proptest! {
    /// Per volume: the newest `keep` always stay; everything older goes but what is being
    /// taken or restored from; nothing that was not given is named.
    #[test]
    fn pruning_keeps_the_newest(
        flags in prop::collection::vec((0..3usize, any::<bool>(), any::<bool>()), 0..30),
        keep in 1u32..6,
    ) {
        let snaps: Vec<Taken> = flags.iter().enumerate()
            .map(|(i, (v, c, r))| taken(i, &format!("v{v}"), *c, *r))
            .collect();
        let gone = to_prune(&snaps, keep);
        for v in 0..3 {
            let mut of: Vec<&Taken> = snaps.iter().filter(|t| t.volume == format!("v{v}")).collect();
            of.reverse(); // newest first
            for (rank, t) in of.iter().enumerate() {
                let pruned = gone.contains(&t.id);
                let should = rank >= keep as usize && !t.creating && !t.restoring;
                prop_assert_eq!(pruned, should, "rank {} of {:?}", rank, t);
            }
        }
    }
}
