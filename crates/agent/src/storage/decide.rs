//! The pure decision: one step per volume from its document and what the
//! agent observes, and the status a settled volume reports.

use yunhan_model::{Doc, Volume, VolumePhase, VolumeStatus};

/// What the agent sees of one volume, besides its document.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Observed {
    /// The backend's size of the volume; None when it does not exist.
    pub backend_size: Option<u64>,
    /// The instance the volume is plugged into now: `status.attached_to` if
    /// that VM still runs the same QEMU it was plugged into.
    pub plugged: Option<String>,
    /// `spec.instance` if that VM runs on this host now (so it can be plugged).
    pub target_running: Option<String>,
    /// The instance booting from this volume (its root disk, on QEMU's
    /// command line: never hot-plugged).
    pub root_of: Option<String>,
}

/// One step for one volume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Create,
    Attach(String),
    Detach(String),
    Extend,
    Restore,
    /// Remove from the backend, then the object.
    Delete,
    /// Bring phase, attachment and usage figures in status up to date.
    Report,
    Nothing,
}

/// The next step, a pure function of the volume and what is observed:
///
/// - deleting → unplug first, then delete;
/// - missing in the backend → unplug if plugged, else create (unless the
///   create failed: the user deletes the volume);
/// - a restore requested → unplug, then restore;
/// - smaller than the spec → extend (and `block_resize` if plugged);
/// - plugged where it should not be → unplug; wanted in a running VM → plug;
/// - otherwise report.
pub fn decide(vol: &Doc<Volume>, obs: &Observed) -> Action {
    if vol.metadata.deleting.is_some() {
        return match &obs.plugged {
            Some(i) => Action::Detach(i.clone()),
            None => Action::Delete,
        };
    }
    let Some(size) = obs.backend_size else {
        // Gone from under a VM (someone removed it): unplug first.
        return match (&obs.plugged, vol.status.phase) {
            (Some(i), _) => Action::Detach(i.clone()),
            (None, VolumePhase::Failed) => Action::Nothing,
            (None, _) => Action::Create,
        };
    };
    let restore_pending = vol
        .spec
        .restore
        .as_ref()
        .is_some_and(|r| r.generation > vol.status.restore_generation);
    if restore_pending {
        return match &obs.plugged {
            Some(i) => Action::Detach(i.clone()),
            None => Action::Restore,
        };
    }
    if size < vol.spec.size_bytes {
        return Action::Extend;
    }
    if obs.root_of.is_some() {
        return Action::Report;
    }
    match (&obs.plugged, &obs.target_running) {
        (Some(p), t) if t.as_ref() != Some(p) => Action::Detach(p.clone()),
        (None, Some(t)) => Action::Attach(t.clone()),
        _ => Action::Report,
    }
}

/// The status a settled volume should report (usage figures aside): its
/// phase and where it is plugged, from what is observed.
pub fn reported(status: &VolumeStatus, obs: &Observed) -> VolumeStatus {
    let mut s = status.clone();
    let plugged = obs.plugged.clone().or_else(|| obs.root_of.clone());
    if obs.root_of.is_some() {
        s.attached_to.clone_from(&plugged);
        s.attached_since = None;
        s.device = Some("root".into());
    } else if plugged.is_none() {
        s.attached_to = None;
        s.attached_since = None;
        s.device = None;
    }
    let phase = if plugged.is_some() {
        VolumePhase::InUse
    } else {
        VolumePhase::Available
    };
    if s.phase != phase {
        s.phase = phase;
        s.message.clear();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use yunhan_model::{Metadata, Resource, VolumeRestore, VolumeSpec};

    fn vol(size: u64, instance: Option<&str>) -> Doc<Volume> {
        Resource {
            metadata: Metadata {
                created: String::new(),
                revision: 1,
                ..Metadata::new("vol-1", "v", None)
            },
            spec: VolumeSpec {
                size_bytes: size,
                pool: "local".into(),
                instance: instance.map(Into::into),
                ..Default::default()
            },
            status: VolumeStatus {
                host: Some("hst-1".into()),
                phase: VolumePhase::Available,
                ..Default::default()
            },
        }
    }

    fn obs(size: Option<u64>, plugged: Option<&str>, target: Option<&str>) -> Observed {
        Observed {
            backend_size: size,
            plugged: plugged.map(Into::into),
            target_running: target.map(Into::into),
            root_of: None,
        }
    }

    fn arb_id() -> impl Strategy<Value = Option<String>> {
        prop::option::of(prop::sample::select(vec![
            "ins-a".to_string(),
            "ins-b".to_string(),
        ]))
    }

    proptest! {
        /// Whatever the state: a plugged volume is unplugged before it is
        /// deleted, restored or plugged elsewhere; a deleting volume is never
        /// created, extended or plugged; a root volume is never hot-plugged.
        #[test]
        fn decide_is_safe(
            deleting in any::<bool>(),
            failed in any::<bool>(),
            size in prop::option::of(1u64..4),
            want in 1u64..4,
            restore in 0u64..3,
            restored in 0u64..3,
            plugged in arb_id(),
            target in arb_id(),
            root in arb_id(),
        ) {
            let mut v = vol(want, None);
            if deleting {
                v.metadata.deleting = Some("now".into());
            }
            if failed {
                v.status.phase = VolumePhase::Failed;
            }
            if restore > 0 {
                v.spec.restore = Some(VolumeRestore { snapshot: "snap-1".into(), generation: restore });
            }
            v.status.restore_generation = restored;
            let o = Observed { backend_size: size, plugged: plugged.clone(), target_running: target.clone(), root_of: root.clone() };
            let a = decide(&v, &o);
            if plugged.is_some() {
                prop_assert!(!matches!(a, Action::Delete | Action::Restore | Action::Create));
                prop_assert!(!matches!(a, Action::Attach(_)));
            }
            if deleting {
                prop_assert!(matches!(a, Action::Delete | Action::Detach(_)));
            }
            if root.is_some() {
                prop_assert!(!matches!(a, Action::Attach(_)));
            }
            if let Action::Attach(i) = &a {
                prop_assert_eq!(Some(i), target.as_ref());
            }
            if let Action::Detach(i) = &a {
                prop_assert_eq!(Some(i), plugged.as_ref());
            }
        }
    }

    #[test]
    fn reported_status_follows_what_is_plugged() {
        let mut st = vol(1 << 30, None).status;
        st.attached_to = Some("ins-a".into());
        st.attached_since = Some("t1".into());
        st.phase = VolumePhase::InUse;
        // The VM restarted (or stopped): the plug is gone.
        let r = reported(&st, &obs(Some(1 << 30), None, None));
        assert_eq!((r.phase, r.attached_to), (VolumePhase::Available, None));
        // Still plugged: nothing to change, so a settled volume stays idle.
        assert_eq!(
            reported(&st, &obs(Some(1 << 30), Some("ins-a"), Some("ins-a"))),
            st
        );
        let mut root = obs(Some(1 << 30), None, None);
        root.root_of = Some("ins-r".into());
        let r = reported(&st, &root);
        assert_eq!(r.attached_to.as_deref(), Some("ins-r"));
        assert_eq!(r.device.as_deref(), Some("root"));
        assert_eq!(r.phase, VolumePhase::InUse);
    }

    #[test]
    fn a_root_volume_is_never_hot_plugged_but_still_extends() {
        let v = vol(2 << 30, None);
        let mut o = obs(Some(2 << 30), None, None);
        o.root_of = Some("ins-a".into());
        assert_eq!(decide(&v, &o), Action::Report);
        o.backend_size = Some(1 << 30);
        assert_eq!(decide(&v, &o), Action::Extend);
    }

    #[test]
    fn create_then_attach_then_report() {
        let v = vol(1 << 30, Some("ins-a"));
        assert_eq!(decide(&v, &obs(None, None, Some("ins-a"))), Action::Create);
        assert_eq!(
            decide(&v, &obs(Some(1 << 30), None, Some("ins-a"))),
            Action::Attach("ins-a".into())
        );
        assert_eq!(
            decide(&v, &obs(Some(1 << 30), Some("ins-a"), Some("ins-a"))),
            Action::Report
        );
        // The VM is not running: nothing to plug into.
        assert_eq!(decide(&v, &obs(Some(1 << 30), None, None)), Action::Report);
        let mut failed = v.clone();
        failed.status.phase = VolumePhase::Failed;
        assert_eq!(decide(&failed, &obs(None, None, None)), Action::Nothing);
    }

    #[test]
    fn detach_move_and_extend() {
        let v = vol(1 << 30, None);
        assert_eq!(
            decide(&v, &obs(Some(1 << 30), Some("ins-a"), None)),
            Action::Detach("ins-a".into())
        );
        let moved = vol(1 << 30, Some("ins-b"));
        assert_eq!(
            decide(&moved, &obs(Some(1 << 30), Some("ins-a"), Some("ins-b"))),
            Action::Detach("ins-a".into())
        );
        let bigger = vol(2 << 30, Some("ins-a"));
        assert_eq!(
            decide(&bigger, &obs(Some(1 << 30), Some("ins-a"), Some("ins-a"))),
            Action::Extend
        );
    }

    #[test]
    fn restore_unplugs_first_and_runs_once_per_generation() {
        let mut v = vol(1 << 30, None);
        v.spec.restore = Some(VolumeRestore {
            snapshot: "snap-1".into(),
            generation: 1,
        });
        assert_eq!(decide(&v, &obs(Some(1 << 30), None, None)), Action::Restore);
        assert_eq!(
            decide(&v, &obs(Some(1 << 30), Some("ins-a"), None)),
            Action::Detach("ins-a".into())
        );
        v.status.restore_generation = 1;
        assert_eq!(decide(&v, &obs(Some(1 << 30), None, None)), Action::Report);
    }

    #[test]
    fn deleting_unplugs_then_deletes() {
        let mut v = vol(1 << 30, Some("ins-a"));
        v.metadata.deleting = Some("now".into());
        assert_eq!(
            decide(&v, &obs(Some(1 << 30), Some("ins-a"), Some("ins-a"))),
            Action::Detach("ins-a".into())
        );
        assert_eq!(decide(&v, &obs(Some(1 << 30), None, None)), Action::Delete);
        assert_eq!(decide(&v, &obs(None, None, None)), Action::Delete);
    }
}
