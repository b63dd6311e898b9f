//! The plugin's documented process exit codes: one table that `--help` renders and the README's
//! and DESIGN.md's tables are checked against.

/// What a process exit code means. [`crate::Error::exit_code`] maps every error onto one of
/// these, or onto 128 + N for a signal ([`SIGNAL_SUMMARY`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitCode {
    /// 0: done (for `run`, the command's code is used instead).
    Success = 0,
    /// 1: a bug, or a failure nobody classified.
    Unexpected = 1,
    /// 2: bad input, found before any request.
    Usage = 2,
    /// 3: the target or its container does not exist.
    NotFound = 3,
    /// 4: cannot be done as asked (kind, claims, 422).
    Unsupported = 4,
    /// 5: RBAC said no.
    Forbidden = 5,
    /// 6: the copy pod did not start.
    CopyFailed = 6,
    /// 7: a wait or a request took too long.
    Timeout = 7,
    /// 8: no connection, or no credentials.
    Unreachable = 8,
    /// 9: another session holds the workload's lock.
    Conflict = 9,
    /// 10: a scale-down guardrail annotation refused it.
    Guardrail = 10,
    /// 11: `run`'s session ended or was taken over under it.
    SessionLost = 11,
}

/// The exit code of a command stopped by signal N, after undoing what it made.
pub const SIGNAL_SUMMARY: &str = "stopped by signal N (130 SIGINT, 143 SIGTERM, 129 SIGHUP) during create, or during run before its command started, after undoing what it made";

impl ExitCode {
    /// Every code, in order.
    pub const ALL: [ExitCode; 12] = [
        ExitCode::Success,
        ExitCode::Unexpected,
        ExitCode::Usage,
        ExitCode::NotFound,
        ExitCode::Unsupported,
        ExitCode::Forbidden,
        ExitCode::CopyFailed,
        ExitCode::Timeout,
        ExitCode::Unreachable,
        ExitCode::Conflict,
        ExitCode::Guardrail,
        ExitCode::SessionLost,
    ];

    /// The number the process exits with.
    pub const fn code(self) -> i32 {
        self as i32
    }

    /// What it means, in one sentence; the README and DESIGN.md rows start with it.
    pub const fn summary(self) -> &'static str {
        match self {
            ExitCode::Success => "success (run: the command's own exit code)",
            ExitCode::Unexpected => "unexpected error",
            ExitCode::Usage => "usage error: bad flags, malformed target or name, bad duration (--ttl above 7d), bad config file, unwritable --emit-mirrord-config",
            ExitCode::NotFound => "target not found",
            ExitCode::Unsupported => "unsupported: cannot be copied or scaled down as asked, or the copy was rejected as invalid (422)",
            ExitCode::Forbidden => "permission denied",
            ExitCode::CopyFailed => "the copy pod failed to start",
            ExitCode::Timeout => "timed out",
            ExitCode::Unreachable => "cluster unreachable or authentication failed (or an exec credential plugin did)",
            ExitCode::Conflict => "the workload is already scaled down by another session",
            ExitCode::Guardrail => "refused by the scale-down guardrail annotation",
            ExitCode::SessionLost => "session lost: run stopped its command (session ended or taken over, or not renewable)",
        }
    }
}

/// The "Exit codes:" block of `--help`: every code and its summary, wrapped to `width`.
pub fn help_text(width: usize) -> String {
    let mut out = String::from("Exit codes:");
    let rows = ExitCode::ALL
        .iter()
        .map(|c| (c.code().to_string(), c.summary()))
        .chain(std::iter::once(("128+N".to_string(), SIGNAL_SUMMARY)));
    for (code, summary) in rows {
        // "  9   text", continuation lines under the text; the longer "128+N" pushes its text right.
        let indent = 6;
        let mut line = format!("\n  {code:<3} ");
        let mut used = line.len() - 1;
        let start = used;
        for word in summary.split(' ') {
            if used > start && used + 1 + word.len() > width {
                line.push_str(&format!("\n{:indent$}", ""));
                used = indent;
            } else if used > start && used > indent {
                line.push(' ');
                used += 1;
            }
            line.push_str(word);
            used += word.len();
        }
        out.push_str(&line);
    }
    out
}

/// The code and text of each row of a Markdown table `| code | meaning |` under `heading`
/// (the README's and DESIGN.md's "Exit codes"), backticks removed.
pub fn documented_rows(markdown: &str, heading: &str) -> Vec<(String, String)> {
    markdown
        .lines()
        .skip_while(|l| !l.starts_with(heading))
        .skip(1)
        .take_while(|l| !l.starts_with("## "))
        .filter_map(|l| {
            let cells: Vec<&str> = l.trim().strip_prefix('|')?.split('|').collect();
            let code = cells.first()?.trim();
            let text = cells.get(1)?.trim();
            let numeric = code == "128+N" || code.parse::<i32>().is_ok();
            numeric.then(|| (code.to_string(), text.replace('`', "")))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn help_text_lists_every_code_wrapped() {
        let help = help_text(80);
        for c in ExitCode::ALL {
            assert!(help.contains(&format!("\n  {:<3} ", c.code())), "{help}");
        }
        assert!(help.contains("\n  128+N "), "{help}");
        assert!(help.lines().all(|l| l.len() <= 80), "{help}");
        assert!(help.contains("9   the workload is already scaled down by another session"));
    }

    #[test]
    fn readme_and_design_document_exactly_these_codes() {
        let expected: Vec<String> = ExitCode::ALL
            .iter()
            .map(|c| c.code().to_string())
            .chain(std::iter::once("128+N".to_string()))
            .collect();
        for (file, text, heading) in [
            (
                "README.md",
                include_str!("../../../README.md"),
                "## Exit codes",
            ),
            (
                "DESIGN.md",
                include_str!("../../../DESIGN.md"),
                "## Exit codes",
            ),
        ] {
            let rows = documented_rows(text, heading);
            let codes: Vec<String> = rows.iter().map(|(c, _)| c.clone()).collect();
            assert_eq!(codes, expected, "{file}'s exit-code table");
            for ((code, text), c) in rows.iter().zip(ExitCode::ALL) {
                assert!(
                    text.starts_with(c.summary()),
                    "{file}: exit code {code} reads {text:?}; it must start with {:?}",
                    c.summary()
                );
            }
            let signal = &rows.last().unwrap().1;
            assert!(
                signal.starts_with(SIGNAL_SUMMARY),
                "{file}: 128+N reads {signal:?}"
            );
        }
    }
}
