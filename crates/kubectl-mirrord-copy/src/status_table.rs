//! `status` for people: exactly the layout of the reference (`Active Copy Targets:` and an
//! ASCII table, `*` marking scale-down), or `No active copy targets`. A replace-one session
//! is marked `-1` in the same column: one replica fewer, not zero.

use chrono::{DateTime, Utc};
use mirrord_copy_core::{ScaleTo, Session};
use tabled::settings::Style;
use tabled::{Table, Tabled};

pub(crate) const NONE: &str = "No active copy targets";
pub(crate) const HEADING: &str = "Active Copy Targets:";

#[derive(Tabled)]
struct Row {
    #[tabled(rename = "Original Target")]
    target: String,
    #[tabled(rename = "Namespace")]
    namespace: String,
    #[tabled(rename = "Copy Pod Name")]
    copy_pod: String,
    #[tabled(rename = "Scale Down?")]
    scale_down: &'static str,
}

#[derive(Tabled)]
struct WideRow {
    #[tabled(rename = "Original Target")]
    target: String,
    #[tabled(rename = "Namespace")]
    namespace: String,
    #[tabled(rename = "Copy Pod Name")]
    copy_pod: String,
    #[tabled(rename = "Scale Down?")]
    scale_down: &'static str,
    #[tabled(rename = "Owner")]
    owner: String,
    #[tabled(rename = "Host")]
    host: String,
    #[tabled(rename = "Age")]
    age: String,
    #[tabled(rename = "Phase")]
    phase: String,
    #[tabled(rename = "Runs")]
    runs: String,
    #[tabled(rename = "Expires")]
    expires: String,
    #[tabled(rename = "Yours")]
    yours: &'static str,
    #[tabled(rename = "Replicas")]
    replicas: String,
    #[tabled(rename = "Notes")]
    notes: String,
}

/// The "Scale Down?" column: the reference's `*` for a scale to zero, `-1` for one replica
/// fewer, empty when the workload is left alone.
fn star(s: &Session) -> &'static str {
    match (s.scale_down, s.scale_to) {
        (false, _) => "",
        (true, ScaleTo::Zero) => "*",
        (true, ScaleTo::OneLess) => "-1",
    }
}

/// The reference layout. `sessions` are printed in the order given.
pub(crate) fn render(sessions: &[Session]) -> String {
    if sessions.is_empty() {
        return format!("{NONE}\n");
    }
    let rows = sessions.iter().map(|s| Row {
        target: s.target.clone(),
        namespace: s.namespace.clone(),
        copy_pod: s.copy_pod.clone(),
        scale_down: star(s),
    });
    format!("{HEADING}\n{}\n", Table::new(rows).with(Style::ascii()))
}

/// `-o wide`: the reference columns plus owner, age, phase, what runs in the copy, expiry,
/// whether it is yours, and the scale-down's counts (restored -> set).
pub(crate) fn render_wide(
    sessions: &[Session],
    now: DateTime<Utc>,
    is_yours: &dyn Fn(&Session) -> bool,
) -> String {
    if sessions.is_empty() {
        return format!("{NONE}\n");
    }
    let rows = sessions.iter().map(|s| WideRow {
        target: s.target.clone(),
        namespace: s.namespace.clone(),
        copy_pod: s.copy_pod.clone(),
        scale_down: star(s),
        owner: s.owner.clone(),
        host: s.host.clone().unwrap_or_default(),
        age: short_duration(now - s.created),
        phase: match (s.copy_gone(), &s.copy_phase) {
            (true, Some(phase)) => format!("{phase} (copy gone)"),
            (true, None) => "Gone".into(),
            (false, phase) => phase.clone().unwrap_or_else(|| "<missing>".into()),
        },
        runs: s.runs.as_ref().map(|r| r.summary()).unwrap_or_default(),
        expires: match s.expires {
            _ if s.provisional && s.has_lapsed(now) => format!(
                "lapsed {} ago (create never finished)",
                short_duration(now - s.lapses_at())
            ),
            _ if s.provisional => "being created".into(),
            Some(at) if at <= now => "expired".into(),
            Some(at) => format!("in {}", short_duration(at - now)),
            None if s.has_lapsed(now) => format!(
                "lapsed {} ago (no heartbeat)",
                short_duration(now - s.lapses_at())
            ),
            None => "while attached".into(),
        },
        yours: if is_yours(s) { "yes" } else { "" },
        // The lock's two counts: "3 -> 2" (replace-one), "3 -> 0" (scale-down).
        replicas: s
            .replicas
            .map(|r| format!("{} -> {}", r.original, r.scaled_to))
            .unwrap_or_default(),
        notes: {
            let gone = s
                .copy_gone()
                .then(|| "copy pod gone: gc ends the session".to_string());
            [gone, s.interference.clone()]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join("; ")
        },
    });
    format!("{HEADING}\n{}\n", Table::new(rows).with(Style::ascii()))
}

/// kubectl's AGE style (apimachinery's HumanDuration): 45s, 7m30s, 12m, 7h59m, 3h, 2d5h, 9d.
pub(crate) fn short_duration(d: chrono::Duration) -> String {
    let secs = d.num_seconds().max(0);
    let (m, h, days) = (secs / 60, secs / 3600, secs / 86_400);
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 600 && s % 60 != 0 => format!("{m}m{}s", s % 60),
        s if s < 3 * 3600 => format!("{m}m"),
        s if s < 8 * 3600 && m % 60 != 0 => format!("{h}h{}m", m % 60),
        s if s < 48 * 3600 => format!("{h}h"),
        s if s < 8 * 86_400 && h % 24 != 0 => format!("{days}d{}h", h % 24),
        _ => format!("{days}d"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mirrord_copy_core::CopyOptions;

    fn session(target: &str, ns: &str, pod: &str, scale_down: bool) -> Session {
        Session {
            id: "abc".into(),
            namespace: ns.into(),
            target: target.into(),
            copy_pod: pod.into(),
            scale_down,
            scale_to: ScaleTo::Zero,
            replicas: None,
            owner: "me@host".into(),
            host: None,
            heartbeat: None,
            runs: None,
            interference: None,
            created: Utc::now(),
            expires: None,
            options: CopyOptions::default(),
            copy_phase: Some("Running".into()),
            workload: None,
            scaled_objects: Vec::new(),
            argo_application: None,
            provisional: false,
            confirmed: None,
            record_uid: None,
        }
    }

    /// Byte for byte the reference layout of copy-target status (the README shows the same).
    #[test]
    fn matches_the_reference_example() {
        let expected = "\
Active Copy Targets:
+-------------------------------+-----------+------------------------------+-------------+
| Original Target               | Namespace | Copy Pod Name                | Scale Down? |
+-------------------------------+-----------+------------------------------+-------------+
| deployment/py-serv-deployment | default   | mirrord-copy-job-wd8kj-2gvd4 | *           |
+-------------------------------+-----------+------------------------------+-------------+
";
        let got = render(&[session(
            "deployment/py-serv-deployment",
            "default",
            "mirrord-copy-job-wd8kj-2gvd4",
            true,
        )]);
        assert_eq!(got, expected);
    }

    #[test]
    fn none_is_the_reference_sentence() {
        assert_eq!(render(&[]), "No active copy targets\n");
    }

    #[test]
    fn many_rows_are_separated_and_unstarred_without_scale_down() {
        let got = render(&[
            session("deployment/a", "default", "a-copy-xxxxx", true),
            session("statefulset/db", "prod", "db-copy-yyyyy", false),
        ]);
        let expected = "\
Active Copy Targets:
+-----------------+-----------+---------------+-------------+
| Original Target | Namespace | Copy Pod Name | Scale Down? |
+-----------------+-----------+---------------+-------------+
| deployment/a    | default   | a-copy-xxxxx  | *           |
+-----------------+-----------+---------------+-------------+
| statefulset/db  | prod      | db-copy-yyyyy |             |
+-----------------+-----------+---------------+-------------+
";
        assert_eq!(got, expected);
    }

    #[test]
    fn replace_one_is_marked_apart_from_scale_down() {
        let one_less = Session {
            scale_to: ScaleTo::OneLess,
            ..session("deployment/q", "default", "q-copy-zzzzz", true)
        };
        let got = render(&[
            session("deployment/a", "default", "a-copy-xxxxx", true),
            one_less,
        ]);
        let expected = "\
Active Copy Targets:
+-----------------+-----------+---------------+-------------+
| Original Target | Namespace | Copy Pod Name | Scale Down? |
+-----------------+-----------+---------------+-------------+
| deployment/a    | default   | a-copy-xxxxx  | *           |
+-----------------+-----------+---------------+-------------+
| deployment/q    | default   | q-copy-zzzzz  | -1          |
+-----------------+-----------+---------------+-------------+
";
        assert_eq!(got, expected);
    }

    #[test]
    fn ages_read_like_kubectl() {
        let d = |s: i64| short_duration(chrono::Duration::seconds(s));
        assert_eq!(d(45), "45s");
        assert_eq!(d(450), "7m30s");
        assert_eq!(d(12 * 60), "12m");
        assert_eq!(d(3 * 3600), "3h");
        assert_eq!(d(8 * 3600 - 60), "7h59m");
        assert_eq!(d(2 * 86_400 + 5 * 3600), "2d5h");
        assert_eq!(d(9 * 86_400), "9d");
    }
}
