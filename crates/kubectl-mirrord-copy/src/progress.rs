//! Progress on stderr: a spinner on a terminal, plain lines with -v otherwise; warnings always.
//! stdout stays clean for `$(kubectl mirrord-copy create ...)` and -o json|yaml.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use mirrord_copy_core::Progress;

use crate::output::{paint, use_colour};

#[derive(Clone)]
pub(crate) struct Reporter {
    spinner: Option<ProgressBar>,
    verbose: bool,
    colour: bool,
}

impl Reporter {
    pub(crate) fn new(verbose: u8) -> Reporter {
        let terminal = std::io::stderr().is_terminal();
        let spinner = terminal.then(|| {
            let bar = ProgressBar::new_spinner();
            bar.set_style(
                ProgressStyle::with_template("{spinner} {msg} ({elapsed})")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            bar.enable_steady_tick(Duration::from_millis(100));
            bar
        });
        Reporter {
            spinner,
            verbose: verbose > 0,
            colour: use_colour(terminal),
        }
    }

    pub(crate) fn report(&self, event: Progress) {
        match event {
            Progress::Warning(text) => {
                self.line(&format!("{} {text}", paint("warning:", "33", self.colour)))
            }
            other => {
                let text = describe(&other);
                match &self.spinner {
                    // A finished step stays on screen; what is still going on spins.
                    Some(bar) if is_step_done(&other) => {
                        bar.println(text);
                        bar.set_message("");
                    }
                    Some(bar) => bar.set_message(text),
                    None if self.verbose => eprintln!("{text}"),
                    None => {}
                }
            }
        }
    }

    /// A `'static` progress callback for core (which takes `&ProgressFn`, a `'static` trait
    /// object): it owns a handle to the same spinner.
    pub(crate) fn sink(&self) -> impl Fn(Progress) + Send + Sync + 'static {
        let me = self.clone();
        move |p| me.report(p)
    }

    /// Print a line above the spinner (or plainly).
    pub(crate) fn line(&self, text: &str) {
        match &self.spinner {
            Some(bar) => bar.suspend(|| eprintln!("{text}")),
            None => eprintln!("{text}"),
        }
    }

    pub(crate) fn finish(&self) {
        if let Some(bar) = &self.spinner {
            bar.finish_and_clear();
        }
    }
}

/// Steps that are over once reported, as opposed to a wait still going on.
fn is_step_done(event: &Progress) -> bool {
    !matches!(
        event,
        Progress::Waiting { .. } | Progress::Releasing { .. } | Progress::Terminating { .. }
    )
}

fn describe(event: &Progress) -> String {
    match event {
        Progress::Resolved { target, object } => format!("resolved {target} to {object}"),
        Progress::SessionCreated { session, .. } => format!("session {session} created"),
        Progress::LockAcquired { workload, .. } => {
            format!("scale-down lock on {workload} acquired")
        }
        Progress::CopyCreated { pod } => format!("copy pod {pod} created"),
        Progress::Waiting { pod, reason } => format!("waiting for {pod} to start: {reason}"),
        Progress::Releasing { pod, claims } => format!(
            "waiting for {pod} to stop and release {}",
            claims.join(", ")
        ),
        Progress::Terminating { pods } => {
            format!("waiting for pod(s) {} to terminate", pods.join(", "))
        }
        Progress::Ready { pod } => format!("copy pod {pod} is running"),
        Progress::ScaledDown { workload, from, to } => {
            format!("scaled {workload} down from {from} to {to}")
        }
        Progress::Restored { workload, to } => format!("restored {workload} to {to} replicas"),
        Progress::Unpaused { scaled_object } => {
            format!("unpaused KEDA ScaledObject {scaled_object}")
        }
        Progress::Deleted { object } => format!("deleted {object}"),
        Progress::Warning(text) => format!("warning: {text}"),
        Progress::Info(text) => text.clone(),
    }
}
