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

/// "outer: inner: innermost": transport errors hide their cause in `source()`.
pub fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
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

    #[test]
    fn a_status_without_message_names_code_and_reason() {
        let status = kube::core::Status::failure("", "ServiceUnavailable").with_code(503);
        assert_eq!(
            kube_error_text(&kube::Error::Api(status.boxed())),
            "the server answered 503 ServiceUnavailable"
        );
    }
}
