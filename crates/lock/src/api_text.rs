//! How a `kube::Error` reads to a person. kube's own `Display` of an API error is a Rust debug
//! dump of the Status; users need the server's message and its causes, as kubectl prints them.

use std::fmt::Write;

/// The server's message with one line per cause (`field: message`) for API errors; for
/// transport errors the chain of causes, outermost first ("outer: inner: innermost").
pub fn kube_error_text(err: &kube::Error) -> String {
    match err {
        kube::Error::Api(status) => status_text(status),
        other => error_chain(other),
    }
}

/// `message` (falling back to reason and code when the server sent none), then each cause.
pub fn status_text(status: &kube::core::Status) -> String {
    let mut text = if status.message.is_empty() {
        format!("the server answered {} {}", status.code, status.reason)
    } else {
        status.message.clone()
    };
    let causes = status.details.iter().flat_map(|d| d.causes.iter());
    for cause in causes {
        let line = match (cause.field.is_empty(), cause.message.is_empty()) {
            (false, false) => format!("{}: {}", cause.field, cause.message),
            (true, false) => cause.message.clone(),
            (false, true) => format!("{}: {}", cause.field, cause.reason),
            (true, true) => continue,
        };
        let _ = write!(text, "\n  {line}");
    }
    text
}

/// "outer: inner: innermost": transport errors hide their cause in `source()`. Layers that
/// only wrap (kube's `ServiceError:`/`HyperError:`, the HTTP client's `client error
/// (Connect)`) say nothing a person can act on and are left out: what remains reads as
/// `tcp connect error: Connection refused (os error 111)`.
pub fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut level = Some(err);
    while let Some(e) = level {
        if let Some(text) = exec_failure(e) {
            parts.push(text);
            break;
        }
        let next = e.source();
        let text = e.to_string();
        // A layer's own words: its text without the cause it repeats at the end.
        let own = match next.map(|n| n.to_string()).filter(|n| !n.is_empty()) {
            Some(cause) => match text.strip_suffix(&cause) {
                Some(head) => head.trim_end_matches([':', ' ']).to_string(),
                None => text,
            },
            None => text,
        };
        if !is_wrapper(&own) && !parts.iter().any(|p| p.contains(&own)) {
            parts.push(own);
        }
        level = next;
    }
    if parts.is_empty() {
        return err.to_string();
    }
    parts.join(": ")
}

/// A failed exec credential plugin as kubectl words it (`getting credentials: exec: ...
/// failed with exit code 3`), with its stderr when captured: kube's own text of it is a dump
/// of the process output.
fn exec_failure(err: &(dyn std::error::Error + 'static)) -> Option<String> {
    let kube::client::AuthError::AuthExecRun { out, .. } =
        err.downcast_ref::<kube::client::AuthError>()?
    else {
        return None;
    };
    let how = match out.status.code() {
        Some(code) => format!("failed with exit code {code}"),
        None => format!("failed ({})", out.status),
    };
    let mut text = format!("getting credentials: exec: the credential plugin {how}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !stderr.trim().is_empty() {
        text.push_str(&format!(" (stderr: {})", stderr.trim()));
    }
    Some(text)
}

/// A layer that only wraps its cause.
fn is_wrapper(text: &str) -> bool {
    let text = text.trim();
    text.is_empty()
        || matches!(text, "ServiceError" | "HyperError")
        || (text.starts_with("client error (") && text.ends_with(')'))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The 422 the real server answers for a StatefulSet copy whose mount names a claim
    /// template (shared transcript pod-validation).
    fn invalid_pod() -> kube::Error {
        let status: kube::core::Status = serde_json::from_value(serde_json::json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": "Pod \"db-copy-abcde\" is invalid: spec.containers[0].volumeMounts[0].name: Not found: \"data\"",
            "reason": "Invalid",
            "details": {"name": "db-copy-abcde", "kind": "Pod", "causes": [
                {"reason": "FieldValueNotFound", "message": "Not found: \"data\"",
                 "field": "spec.containers[0].volumeMounts[0].name"}]},
            "code": 422
        }))
        .unwrap();
        kube::Error::Api(status.boxed())
    }

    #[test]
    fn api_errors_read_as_the_server_message_and_causes() {
        let text = kube_error_text(&invalid_pod());
        assert_eq!(
            text,
            "Pod \"db-copy-abcde\" is invalid: spec.containers[0].volumeMounts[0].name: Not found: \"data\"\n  spec.containers[0].volumeMounts[0].name: Not found: \"data\""
        );
        assert!(!text.contains("Status {"), "no debug dump: {text}");
    }

    /// An error with a message and a cause, as transport layers nest them.
    #[derive(Debug)]
    struct Layer(&'static str, Option<Box<Layer>>, bool);

    impl std::fmt::Display for Layer {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            // `true`: the layer repeats its cause after its own words, as kube's do.
            match (&self.1, self.2) {
                (Some(cause), true) => write!(f, "{}: {cause}", self.0),
                _ => f.write_str(self.0),
            }
        }
    }

    impl std::error::Error for Layer {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            self.1.as_deref().map(|l| l as _)
        }
    }

    #[test]
    fn transport_errors_read_without_internal_prefixes() {
        let io = Layer("Connection refused (os error 111)", None, false);
        let connect = Layer("tcp connect error", Some(Box::new(io)), false);
        let client = Layer("client error (Connect)", Some(Box::new(connect)), false);
        let service = Layer("ServiceError", Some(Box::new(client)), true);
        assert_eq!(
            error_chain(&service),
            "tcp connect error: Connection refused (os error 111)"
        );
        let tls = Layer("invalid peer certificate: UnknownIssuer", None, false);
        let client = Layer("client error (Connect)", Some(Box::new(tls)), false);
        let service = Layer("ServiceError", Some(Box::new(client)), true);
        assert_eq!(
            error_chain(&service),
            "invalid peer certificate: UnknownIssuer"
        );
        // Nothing but wrappers: the text as it is.
        let alone = Layer("client error (Connect)", None, false);
        assert_eq!(error_chain(&alone), "client error (Connect)");
    }

    #[cfg(unix)]
    #[test]
    fn a_failed_exec_plugin_is_no_output_dump() {
        use std::os::unix::process::ExitStatusExt;
        let auth = kube::client::AuthError::AuthExecRun {
            cmd: "KUBERNETES_EXEC_INFO=\"{}\" \"/bin/sh\"".into(),
            out: Box::new(std::process::Output {
                status: std::process::ExitStatus::from_raw(3 << 8),
                stdout: b"ignored".to_vec(),
                stderr: b"token expired\n".to_vec(),
            }),
        };
        let text = error_chain(&kube::Error::Auth(auth));
        assert!(
            text.ends_with(
                "getting credentials: exec: the credential plugin failed with exit code 3 (stderr: token expired)"
            ),
            "{text}"
        );
        assert!(
            !text.contains("Output {") && !text.contains("ignored"),
            "{text}"
        );
    }

    #[test]
    fn a_status_without_message_names_code_and_reason() {
        let status = kube::core::Status::failure("", "ServiceUnavailable").with_code(503);
        assert_eq!(
            kube_error_text(&kube::Error::Api(status.boxed())),
            "the server answered 503 ServiceUnavailable"
        );
    }
}
