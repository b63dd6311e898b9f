//! The one error type of the core crate, and its mapping onto the documented exit codes
//! ([`crate::exit_code`]). The CLI prints `Display` and exits with `exit_code()`.

use std::fmt;

use mirrord_copy_lock::{error_chain, kube_error_text, status_text};

use crate::exit_code::ExitCode;

/// Every way a core operation can fail. Each variant maps to one documented exit code.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad flags, malformed target, bad duration, bad option combination (exit 2).
    #[error("{0}")]
    Usage(String),

    /// The target (or the container named in it) does not exist (exit 3).
    /// `kind` is what was looked for ("deployment", "container in deployment/x", ...).
    #[error("{}", NotFoundMessage { kind, name, namespace, suggestions })]
    TargetNotFound {
        /// What was looked for, e.g. "deployment".
        kind: String,
        /// The name that was not found.
        name: String,
        /// Where it was looked for.
        namespace: String,
        /// Similar names that do exist ("did you mean").
        suggestions: Vec<String>,
    },

    /// The target exists but has no container of that name (exit 3).
    #[error(
        "container of {workload} \"{name}\" not found in namespace \"{namespace}\"; {}",
        valid_containers(valid)
    )]
    ContainerNotFound {
        /// The target, e.g. "deployment/x".
        workload: String,
        /// The container name asked for.
        name: String,
        /// Where the target is.
        namespace: String,
        /// The containers the pod template does have.
        valid: Vec<String>,
    },

    /// The kind cannot be copied or scaled down, or the request would leave no container (exit 4).
    #[error("{0}")]
    Unsupported(String),

    /// The API server refused the request (exit 5). `message` is the server's own text.
    #[error("permission denied: cannot {verb} {resource}: {message}")]
    Forbidden {
        /// The refused verb, e.g. "create".
        verb: String,
        /// The resource it was refused on, e.g. "pods".
        resource: String,
        /// The API server's own message.
        message: String,
    },

    /// The API server refused an object as invalid (422): what we would create does not pass
    /// its validation for this target (exit 4). `message` is the server's, with its causes.
    #[error("the API server rejected {verb} {resource} as invalid: {message}")]
    Invalid {
        /// The verb of the rejected request, e.g. "create".
        verb: String,
        /// The resource of the rejected object, e.g. "pods".
        resource: String,
        /// The API server's message, with its causes.
        message: String,
    },

    /// The copy pod never became Ready (exit 6).
    #[error("{}", CopyFailedMessage { pod, reasons, events, removed: *removed })]
    CopyFailed {
        /// The copy pod.
        pod: String,
        /// Why it is not Ready, from its status (e.g. "ImagePullBackOff").
        reasons: Vec<String>,
        /// Its Warning events.
        events: Vec<String>,
        /// Whether what the failed create wrote was removed again (set by whoever cleaned up;
        /// false until then, and when the cleanup failed: its warning says what is left).
        removed: bool,
    },

    /// A wait or a request took too long (exit 7).
    #[error("timed out: {0}")]
    Timeout(String),

    /// The cluster cannot be reached, or it rejected our credentials (exit 8).
    #[error("cluster unreachable: {0}")]
    Unreachable(String),

    /// The workload is already scaled down by another session (exit 9).
    /// `holder` is a human summary: session, user@host, since, copy pod.
    #[error("{workload} is already scaled down by another session ({holder}); that session was left untouched")]
    Conflict {
        /// The workload, e.g. "Deployment default/x".
        workload: String,
        /// Who holds it: session, user@host, since, copy pod.
        holder: String,
    },

    /// Scale-down refused by the guardrail annotation (exit 10).
    /// `location` is where the annotation is set: "Deployment default/x" or "Namespace default".
    #[error("{}", GuardrailMessage { workload, location, set_by })]
    Guardrail {
        /// The workload that would have been scaled down.
        workload: String,
        /// Where the annotation is set.
        location: String,
        /// Who set it (the guardrail-by annotation), if recorded.
        set_by: Option<String>,
    },

    /// The session is no longer ours: its ConfigMap or lock is gone or was taken over, or its
    /// lease lapsed because renewals kept failing (exit 11). `run` stops its command.
    #[error("session lost: {0}")]
    SessionLost(String),

    /// A lock or session record whose data is malformed: reported, never acted upon (exit 1).
    #[error("corrupt record: {0}")]
    CorruptRecord(String),

    /// An object vanished while we worked on it: the workload deleted mid-way (exit 3).
    #[error("{0} no longer exists")]
    Vanished(String),

    /// Kept losing compare-and-swap races on an object that others write too (exit 1):
    /// nothing of ours was left half-written.
    #[error("gave up: {0}")]
    Contended(String),

    /// A local input/output failure: the output, a file, the command `run` waits for (exit 1).
    #[error("{context}: {source}")]
    Io {
        /// What was being done, e.g. "writing the output".
        context: String,
        #[source]
        /// The underlying error.
        source: std::io::Error,
    },

    /// Any other API error (exit code derived from the HTTP status where it means something).
    #[error("kubernetes API error: {}", kube_error_text(.0))]
    Kube(#[from] kube::Error),

    /// A value that could not be converted (JSON, YAML): a bug, not a user error (exit 1).
    #[error("{0}")]
    Internal(String),

    /// Stopped by signal N (SIGINT, SIGTERM, SIGHUP) before the command was done: what it had
    /// made was undone first (exit 128 + N, as a shell reports a process killed by N).
    #[error("interrupted by {}", signal_name(*.0))]
    Interrupted(i32),
}

/// "SIGINT" for 2, as the signals the CLI stops on are named.
fn signal_name(signal: i32) -> String {
    match signal {
        1 => "SIGHUP".into(),
        2 => "SIGINT".into(),
        15 => "SIGTERM".into(),
        n => format!("signal {n}"),
    }
}

impl Error {
    /// A next step for the errors people hit most, printed as `hint:` after the error.
    pub fn hint(&self) -> Option<&'static str> {
        match self {
            Error::Forbidden { .. } => Some(
                "the permissions the plugin needs are in plugin-manifest/role.yaml and clusterrole.yaml",
            ),
            Error::Unreachable(_) => {
                Some("check the cluster with `kubectl cluster-info` using the same --kubeconfig/--context")
            }
            Error::Conflict { .. } => Some(
                "`kubectl mirrord-copy status -o wide` shows who holds it; copy without --scale-down to share the workload. If that session's create was killed, `kubectl mirrord-copy gc` ends it once 60 s passed",
            ),
            Error::Timeout(_) => Some("raise --timeout, or look at the pod with `kubectl describe pod`"),
            Error::SessionLost(_) => Some(
                "the command was stopped because the session could no longer be vouched for; `kubectl mirrord-copy status -o wide` shows who holds the workload now",
            ),
            Error::Invalid { .. } => Some(
                "`kubectl mirrord-copy create TARGET --dry-run=client -o yaml` prints the pod that was sent",
            ),
            _ => None,
        }
    }

    /// This error, once what the failed operation wrote was cleaned up (`removed`: the cleanup
    /// succeeded), so that its message says only what is true.
    pub fn after_cleanup(self, removed: bool) -> Error {
        match self {
            Error::CopyFailed {
                pod,
                reasons,
                events,
                ..
            } => Error::CopyFailed {
                pod,
                reasons,
                events,
                removed,
            },
            other => other,
        }
    }

    /// The documented process exit code for this error ([`ExitCode`], or 128 + N for signal N).
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Interrupted(signal) => 128 + signal,
            other => other.exit_kind().code(),
        }
    }

    /// Which documented exit code this error is (a signal is [`ExitCode::Unexpected`] here:
    /// its code is 128 + N, [`Error::exit_code`]).
    pub fn exit_kind(&self) -> ExitCode {
        match self {
            Error::Usage(_) => ExitCode::Usage,
            Error::TargetNotFound { .. } | Error::ContainerNotFound { .. } | Error::Vanished(_) => {
                ExitCode::NotFound
            }
            Error::Unsupported(_) | Error::Invalid { .. } => ExitCode::Unsupported,
            Error::Forbidden { .. } => ExitCode::Forbidden,
            Error::CopyFailed { .. } => ExitCode::CopyFailed,
            Error::Timeout(_) => ExitCode::Timeout,
            Error::Unreachable(_) => ExitCode::Unreachable,
            Error::Conflict { .. } => ExitCode::Conflict,
            Error::Guardrail { .. } => ExitCode::Guardrail,
            Error::SessionLost(_) => ExitCode::SessionLost,
            Error::CorruptRecord(_)
            | Error::Contended(_)
            | Error::Io { .. }
            | Error::Internal(_)
            | Error::Interrupted(_) => ExitCode::Unexpected,
            // Errors nobody classified still deserve the right code when the status says it.
            Error::Kube(err) => match status_code(err) {
                Some(403) => ExitCode::Forbidden,
                Some(401) => ExitCode::Unreachable,
                Some(504) => ExitCode::Timeout,
                Some(422) => ExitCode::Unsupported,
                Some(_) => ExitCode::Unexpected,
                None if is_transport(err) => ExitCode::Unreachable,
                None => ExitCode::Unexpected,
            },
        }
    }

    /// Classify a kube error from a request `verb` on `resource` (e.g. "get", "deployments.apps").
    ///
    /// 403 -> Forbidden with the server's message; 401 -> Unreachable (authentication failed);
    /// 404 of a resource type the server does not serve -> Unsupported; connection failures ->
    /// Unreachable; timeouts -> Timeout. Everything else, including a 404 of a named object,
    /// stays `Kube` so callers can still test it with `is_not_found` and friends.
    pub fn from_kube(err: kube::Error, verb: &str, resource: &str) -> Error {
        if let kube::Error::Api(status) = &err {
            return match status.code {
                403 => Error::Forbidden {
                    verb: verb.to_string(),
                    resource: resource.to_string(),
                    message: status.message.clone(),
                },
                401 => Error::Unreachable(format!(
                    "authentication failed ({}); check your kubeconfig credentials",
                    status.message
                )),
                // A 404 naming no object means the resource type itself is not served
                // (e.g. Argo Rollouts' CRD is not installed).
                404 if status.details.as_ref().is_none_or(|d| d.name.is_empty()) => {
                    Error::Unsupported(format!(
                        "the cluster does not serve {resource} ({}); cannot {verb} it",
                        status.message
                    ))
                }
                504 => Error::Timeout(format!("{verb} {resource}: {}", status.message)),
                // The server's validation refused what we built from the target: the target
                // cannot be copied as it is (exit 4), never an "unexpected" 1.
                422 => Error::Invalid {
                    verb: verb.to_string(),
                    resource: resource.to_string(),
                    message: status_text(status),
                },
                _ => Error::Kube(err),
            };
        }
        if let kube::Error::Auth(auth) = &err {
            return Error::Unreachable(format!(
                "authentication failed ({}); check your kubeconfig credentials",
                error_chain(auth)
            ));
        }
        if is_transport(&err) {
            let text = error_chain(&err);
            if timed_out(&err) {
                return Error::Timeout(format!("{verb} {resource}: {text}"));
            }
            return Error::Unreachable(format!("{verb} {resource}: {text}"));
        }
        Error::Kube(err)
    }

    /// True when this is an API 404 for a named object.
    #[cfg(test)]
    pub(crate) fn is_not_found(&self) -> bool {
        matches!(self, Error::Kube(e) if is_not_found(e))
    }
}

/// The HTTP status of an API error, if it is one.
pub(crate) fn status_code(err: &kube::Error) -> Option<u16> {
    match err {
        kube::Error::Api(status) => Some(status.code),
        _ => None,
    }
}

/// API 404 NotFound.
pub(crate) fn is_not_found(err: &kube::Error) -> bool {
    status_code(err) == Some(404)
}

/// API 403 Forbidden (RBAC said no).
pub fn is_forbidden(err: &kube::Error) -> bool {
    status_code(err) == Some(403)
}

/// API 409 AlreadyExists (a create lost the race).
#[cfg(test)]
pub(crate) fn is_already_exists(err: &kube::Error) -> bool {
    matches!(err, kube::Error::Api(s) if s.code == 409 && s.reason == "AlreadyExists")
}

/// API 409 Conflict (a stale resourceVersion or a failed precondition).
pub(crate) fn is_conflict(err: &kube::Error) -> bool {
    matches!(err, kube::Error::Api(s) if s.code == 409 && s.reason != "AlreadyExists")
}

/// A transport error caused by a timeout, decided from the typed causes (an I/O error of kind
/// TimedOut, as the connect/read/write timeouts report, or tokio's Elapsed), not from text.
fn timed_out(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(err);
    while let Some(e) = cause {
        let io_timeout = e
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut);
        if io_timeout || e.is::<tokio::time::error::Elapsed>() {
            return true;
        }
        cause = e.source();
    }
    false
}

/// The request never got an HTTP answer (connection refused, reset, TLS, timeout). A failed
/// TLS handshake comes back from the plugin's connector as a Service or Hyper error (kube's
/// RustlsTls only exists with its rustls-tls feature, which the plugin does not enable).
fn is_transport(err: &kube::Error) -> bool {
    matches!(
        err,
        kube::Error::HyperError(_)
            | kube::Error::Service(_)
            | kube::Error::ReadEvents(_)
            | kube::Error::TlsRequired
    )
}

fn valid_containers(valid: &[String]) -> String {
    match valid {
        [] => "the template has no containers".to_string(),
        valid => format!("valid containers: {}", valid.join(", ")),
    }
}

struct NotFoundMessage<'a> {
    kind: &'a str,
    name: &'a str,
    namespace: &'a str,
    suggestions: &'a [String],
}

impl fmt::Display for NotFoundMessage<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} \"{}\" not found in namespace \"{}\"",
            self.kind, self.name, self.namespace
        )?;
        match self.suggestions {
            [] => Ok(()),
            [one] => write!(f, "; did you mean {one}?"),
            many => write!(f, "; did you mean one of: {}?", many.join(", ")),
        }
    }
}

struct CopyFailedMessage<'a> {
    pod: &'a str,
    reasons: &'a [String],
    events: &'a [String],
    removed: bool,
}

impl fmt::Display for CopyFailedMessage<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "copy pod {} failed to start", self.pod)?;
        if self.reasons.is_empty() {
            write!(f, " (no container reported a reason)")?;
        } else {
            write!(f, ": {}", self.reasons.join("; "))?;
        }
        if !self.events.is_empty() {
            write!(f, "\nrecent events:")?;
            for event in self.events {
                write!(f, "\n  {event}")?;
            }
        }
        if self.removed {
            write!(f, "\neverything this run created was removed")?;
        }
        Ok(())
    }
}

struct GuardrailMessage<'a> {
    workload: &'a str,
    location: &'a str,
    set_by: &'a Option<String>,
}

impl fmt::Display for GuardrailMessage<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "scale-down of {} is forbidden by the annotation mirrord-copy.io/scale-down=forbidden on {}",
            self.workload, self.location
        )?;
        if let Some(who) = self.set_by {
            write!(f, " (set by {who})")?;
        }
        write!(f, "; nothing was created")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::core::Status;

    fn api(code: u16, reason: &str, name: &str) -> kube::Error {
        let mut status = Status::failure("the message", reason).with_code(code);
        if !name.is_empty() {
            status.details =
                Some(serde_json::from_value(serde_json::json!({ "name": name })).unwrap());
        }
        kube::Error::Api(status.boxed())
    }

    #[test]
    fn exit_codes_match_design() {
        let cases: Vec<(Error, i32)> = vec![
            (Error::Usage("x".into()), 2),
            (Error::Interrupted(2), 130),
            (Error::Interrupted(15), 143),
            (
                Error::TargetNotFound {
                    kind: "deployment".into(),
                    name: "x".into(),
                    namespace: "default".into(),
                    suggestions: vec![],
                },
                3,
            ),
            (Error::Unsupported("x".into()), 4),
            (
                Error::Forbidden {
                    verb: "get".into(),
                    resource: "pods".into(),
                    message: "no".into(),
                },
                5,
            ),
            (
                Error::CopyFailed {
                    pod: "p".into(),
                    reasons: vec![],
                    events: vec![],
                    removed: true,
                },
                6,
            ),
            (Error::Timeout("x".into()), 7),
            (Error::Unreachable("x".into()), 8),
            (
                Error::Conflict {
                    workload: "w".into(),
                    holder: "h".into(),
                },
                9,
            ),
            (
                Error::Guardrail {
                    workload: "w".into(),
                    location: "Namespace default".into(),
                    set_by: None,
                },
                10,
            ),
            (Error::SessionLost("x".into()), 11),
            (Error::CorruptRecord("x".into()), 1),
            (Error::Internal("x".into()), 1),
            (Error::Vanished("Deployment d/x".into()), 3),
            (Error::Contended("x".into()), 1),
        ];
        for (err, code) in cases {
            assert_eq!(err.exit_code(), code, "{err:?}");
        }
    }

    #[test]
    fn from_kube_classifies_statuses() {
        let e = Error::from_kube(api(403, "Forbidden", "x"), "get", "deployments.apps");
        assert!(matches!(&e, Error::Forbidden { verb, resource, message }
                if verb == "get" && resource == "deployments.apps" && message == "the message"));
        assert_eq!(e.exit_code(), 5);
        let e = Error::from_kube(api(401, "Unauthorized", ""), "list", "pods");
        assert_eq!(e.exit_code(), 8);
        let e = Error::from_kube(api(404, "NotFound", "x"), "get", "pods");
        assert!(e.is_not_found());
        let e = Error::from_kube(api(404, "NotFound", ""), "get", "rollouts.argoproj.io");
        assert_eq!(e.exit_code(), 4);
        let e = Error::from_kube(api(409, "AlreadyExists", "x"), "create", "configmaps");
        assert!(matches!(&e, Error::Kube(k) if is_already_exists(k) && !is_conflict(k)));
    }

    #[test]
    fn invalid_is_exit_4_with_the_server_message_and_causes() {
        let mut status = Status::failure(
            "Pod \"db-copy-x\" is invalid: spec.containers[0].volumeMounts[0].name: Not found: \"data\"",
            "Invalid",
        )
        .with_code(422);
        status.details = Some(
            serde_json::from_value(
                serde_json::json!({"name": "db-copy-x", "kind": "Pod", "causes": [
                {"reason": "FieldValueNotFound", "message": "Not found: \"data\"",
                 "field": "spec.containers[0].volumeMounts[0].name"}]}),
            )
            .unwrap(),
        );
        let raw = kube::Error::Api(status.boxed());
        // Unclassified, it still reads as the server's words and exits 4, not 1.
        let unclassified = Error::Kube(raw);
        assert_eq!(unclassified.exit_code(), 4);
        let text = unclassified.to_string();
        assert!(!text.contains("Status {"), "debug dump: {text}");
        assert!(
            text.contains("\n  spec.containers[0].volumeMounts[0].name: Not found: \"data\""),
            "{text}"
        );
        let Error::Kube(raw) = unclassified else {
            unreachable!()
        };
        let e = Error::from_kube(raw, "create", "pods");
        assert_eq!(e.exit_code(), 4);
        assert_eq!(
            e.to_string(),
            "the API server rejected create pods as invalid: Pod \"db-copy-x\" is invalid: spec.containers[0].volumeMounts[0].name: Not found: \"data\"\n  spec.containers[0].volumeMounts[0].name: Not found: \"data\""
        );
    }

    #[test]
    fn messages_are_actionable() {
        let e = Error::TargetNotFound {
            kind: "deployment".into(),
            name: "py-serv".into(),
            namespace: "default".into(),
            suggestions: vec!["py-serv-deployment".into()],
        };
        assert_eq!(
            e.to_string(),
            "deployment \"py-serv\" not found in namespace \"default\"; did you mean py-serv-deployment?"
        );
        let failed = |removed| Error::CopyFailed {
            pod: "p".into(),
            reasons: vec!["app: ImagePullBackOff".into()],
            events: vec!["Warning Failed: pull failed".into()],
            removed,
        };
        let text = failed(true).to_string();
        assert!(text.contains("ImagePullBackOff") && text.contains("pull failed"));
        assert!(
            text.ends_with("everything this run created was removed"),
            "{text}"
        );
        // Not cleaned up (yet, or the cleanup failed): the message does not claim it was.
        assert!(!failed(false).to_string().contains("removed"));
    }
}
