//! The count a session sets, as data: `--scale-down` sets 0, `--replace-one` one less than
//! the original (the copy takes the place of one replica). Everything else (the lock, the
//! fenced write, the way back, restore, gc) is the same mechanism for both; this module is
//! where they differ, and where restore decides from the two counts (pure, no I/O).

use serde::{Deserialize, Serialize};

use super::workload::ScaleKind;
use crate::error::Error;

/// How far a session scales its workload while the copy lives.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ScaleTo {
    /// `--scale-down`: to zero (a CronJob: suspended).
    #[default]
    Zero,
    /// `--replace-one`: one less than the original count.
    OneLess,
}

impl ScaleTo {
    /// The count this mode sets on a workload at `original`.
    pub fn count(self, original: i32) -> i32 {
        match self {
            ScaleTo::Zero => 0,
            ScaleTo::OneLess => original - 1,
        }
    }

    /// The flag that asks for it, as messages and the session record name it.
    pub fn flag(self) -> &'static str {
        match self {
            ScaleTo::Zero => "--scale-down",
            ScaleTo::OneLess => "--replace-one",
        }
    }

    /// The session record's value (`scaleMode`), and `-o json`'s `mode`.
    pub fn as_str(self) -> &'static str {
        match self {
            ScaleTo::Zero => "scale-down",
            ScaleTo::OneLess => "replace-one",
        }
    }

    /// From [`ScaleTo::as_str`].
    pub fn parse(value: &str) -> Option<ScaleTo> {
        [ScaleTo::Zero, ScaleTo::OneLess]
            .into_iter()
            .find(|m| m.as_str() == value)
    }

    /// Refuse, before anything is written, a workload this mode cannot act on: `describe`
    /// names it, `original` is its count (the way back's, if a dead session scaled it).
    /// Exit 4 (unsupported), as every kind scale-down cannot act on.
    pub(crate) fn check(self, kind: ScaleKind, describe: &str, original: i32) -> Result<(), Error> {
        match self {
            ScaleTo::Zero => Ok(()),
            ScaleTo::OneLess if kind == ScaleKind::CronJob => Err(Error::Unsupported(format!(
                "{describe} cannot run one replica fewer: a CronJob has no replica count, it can only be suspended (--scale-down)"
            ))),
            ScaleTo::OneLess if original <= 1 => Err(Error::Unsupported(format!(
                "{describe} runs {original} replica{}; --replace-one needs at least 2 (one stays beside the copy): use --scale-down to replace {}",
                if original == 1 { "" } else { "s" },
                if original == 1 { "it" } else { "the workload" },
            ))),
            ScaleTo::OneLess => Ok(()),
        }
    }

    /// Refuse autoscalers this mode cannot live with. At zero an HPA is idle and KEDA is
    /// paused at 0, so scale-down only warns. At N-1 an HPA is active: it would scale the
    /// workload back to its own desired count within a sync period, the copy would compete
    /// with N replicas again and restore would keep the HPA's count as someone else's. A
    /// warning would leave a session that silently is not what was asked for, so it is
    /// refused; KEDA drives an HPA of its own and is refused alike. Exit 4.
    pub(crate) fn check_autoscalers(
        self,
        describe: &str,
        hpas: &[String],
        scaled_objects: &[String],
    ) -> Result<(), Error> {
        if self == ScaleTo::Zero {
            return Ok(());
        }
        let mut found: Vec<String> = hpas
            .iter()
            .map(|h| format!("HorizontalPodAutoscaler {h}"))
            .collect();
        found.extend(
            scaled_objects
                .iter()
                .map(|so| format!("KEDA ScaledObject {so}")),
        );
        if found.is_empty() {
            return Ok(());
        }
        Err(Error::Unsupported(format!(
            "{describe} is autoscaled by {}, which would scale it back from one replica fewer; use --scale-down (an HPA is idle at zero, KEDA is paused for the session)",
            found.join(", ")
        )))
    }
}

/// What restore does with a workload it finds at `observed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decision {
    /// At the original already (never scaled, or restored by an earlier run): no count written.
    AlreadyAtOriginal,
    /// At a count this session set: put the original back.
    Restore { to: i32 },
    /// Someone else scaled it during the session: their count is kept, with a warning.
    KeepTheirs { current: i32 },
}

/// Restore's decision: `original` is the way back, `set` the counts this session (or the dead
/// holder whose place it took) set, as the lock and the workload's record say.
pub(crate) fn decide(observed: i32, original: i32, set: &[i32]) -> Decision {
    if observed == original {
        Decision::AlreadyAtOriginal
    } else if set.contains(&observed) {
        Decision::Restore { to: original }
    } else {
        Decision::KeepTheirs { current: observed }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_mode_sets_its_count() {
        assert_eq!(ScaleTo::Zero.count(3), 0);
        assert_eq!(ScaleTo::OneLess.count(3), 2);
        for m in [ScaleTo::Zero, ScaleTo::OneLess] {
            assert_eq!(ScaleTo::parse(m.as_str()), Some(m));
        }
        assert_eq!(ScaleTo::parse("zero"), None);
    }

    #[test]
    fn replace_one_refuses_what_it_cannot_act_on() {
        let d = "Deployment ns/x";
        assert!(ScaleTo::OneLess.check(ScaleKind::Deployment, d, 2).is_ok());
        for n in [1, 0] {
            let err = ScaleTo::OneLess
                .check(ScaleKind::Deployment, d, n)
                .unwrap_err();
            assert_eq!(err.exit_code(), 4, "{err}");
            assert!(err.to_string().contains("use --scale-down"), "{err}");
        }
        let err = ScaleTo::OneLess
            .check(ScaleKind::CronJob, "CronJob ns/c", 1)
            .unwrap_err();
        assert_eq!(err.exit_code(), 4);
        assert!(err.to_string().contains("no replica count"), "{err}");
        let err = ScaleTo::OneLess
            .check_autoscalers(d, &["x-hpa".into()], &[])
            .unwrap_err();
        assert_eq!(err.exit_code(), 4);
        assert!(
            err.to_string().contains("HorizontalPodAutoscaler x-hpa"),
            "{err}"
        );
        let err = ScaleTo::OneLess
            .check_autoscalers(d, &[], &["x-so".into()])
            .unwrap_err();
        assert!(err.to_string().contains("KEDA ScaledObject x-so"), "{err}");
        assert!(ScaleTo::OneLess.check_autoscalers(d, &[], &[]).is_ok());
        assert!(ScaleTo::Zero
            .check_autoscalers(d, &["x-hpa".into()], &["x-so".into()])
            .is_ok());
        // Scale-down acts on all of them.
        assert!(ScaleTo::Zero.check(ScaleKind::CronJob, d, 1).is_ok());
        assert!(ScaleTo::Zero.check(ScaleKind::Deployment, d, 0).is_ok());
    }

    #[test]
    fn restore_puts_back_only_what_it_set() {
        use Decision::*;
        // Scale-down: 3 -> 0.
        assert_eq!(decide(0, 3, &[0]), Restore { to: 3 });
        assert_eq!(decide(3, 3, &[0]), AlreadyAtOriginal);
        assert_eq!(decide(5, 3, &[0]), KeepTheirs { current: 5 });
        // Replace-one: 3 -> 2.
        assert_eq!(decide(2, 3, &[2]), Restore { to: 3 });
        assert_eq!(decide(3, 3, &[2]), AlreadyAtOriginal);
        assert_eq!(decide(5, 3, &[2]), KeepTheirs { current: 5 });
        assert_eq!(
            decide(0, 3, &[2]),
            KeepTheirs { current: 0 },
            "someone else took it to zero"
        );
        // A takeover across modes: either count set is ours.
        assert_eq!(decide(2, 3, &[0, 2]), Restore { to: 3 });
        // A workload that was at zero: nothing to put back.
        assert_eq!(decide(0, 0, &[0]), AlreadyAtOriginal);
    }
}
