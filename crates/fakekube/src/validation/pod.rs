//! Pod validation as `ValidatePodCreate`/`ValidatePodUpdate` (k8s.io/kubernetes
//! pkg/apis/core/validation) do it, for the rules a copy of a workload's pod template can trip
//! over: volumes, containers and init containers (names, images, ports, volume mounts), and what
//! an update may change. Errors come in upstream's order, which the Status message keeps:
//! `ValidateVolumes`, then `validateContainers`, then `validateInitContainers`; within one
//! container `validateContainerCommon` (name, image, ports, volumeMounts) and then the
//! duplicate-name check; last the pod-only image whitespace check.
//!
//! Upstream decodes with defaults before it validates; here validation runs first, so the
//! defaults that matter are applied where they are read (a port without `protocol` is `TCP`).

use std::collections::HashSet;

use serde_json::Value;

use super::label_name_errors;
use crate::api_error::Cause;

fn cause(reason: &str, field: String, message: String) -> Cause {
    Cause {
        reason: reason.into(),
        message,
        field,
    }
}

/// Go's `%q` of a string (printable text: quotes and backslashes escaped), as field errors
/// print string values.
fn quote(s: &str) -> String {
    format!("{s:?}")
}

/// field.Required(path, "")
fn required(field: String) -> Cause {
    cause("FieldValueRequired", field, "Required value".into())
}

/// field.Duplicate(path, value) with a string value.
fn duplicate(field: String, value: &str) -> Cause {
    cause(
        "FieldValueDuplicate",
        field,
        format!("Duplicate value: {}", quote(value)),
    )
}

/// field.NotFound(path, value) with a string value.
fn not_found(field: String, value: &str) -> Cause {
    cause(
        "FieldValueNotFound",
        field,
        format!("Not found: {}", quote(value)),
    )
}

/// field.Invalid(path, value, detail) with a string value.
fn invalid_str(field: String, value: &str, detail: &str) -> Cause {
    cause(
        "FieldValueInvalid",
        field,
        format!("Invalid value: {}: {detail}", quote(value)),
    )
}

/// field.Invalid(path, value, detail) with an int32 value (printed with `%v`).
fn invalid_num(field: String, value: i64, detail: &str) -> Cause {
    cause(
        "FieldValueInvalid",
        field,
        format!("Invalid value: {value}: {detail}"),
    )
}

/// validation.IsValidPortNum's message (InclusiveRangeError(1, 65535)).
const PORT_RANGE_MSG: &str = "must be between 1 and 65535, inclusive";

/// `supportedPortProtocols`, sorted as `sets.List` returns them in the message.
const PORT_PROTOCOLS: &[&str] = &["SCTP", "TCP", "UDP"];

/// validation.IsValidPortName (an IANA_SVC_NAME): every rule that fails, in upstream's order.
fn port_name_errors(name: &str) -> Vec<&'static str> {
    let mut errs = Vec::new();
    if name.len() > 15 {
        errs.push("must be no more than 15 characters");
    }
    if name.is_empty()
        || !name
            .bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
    {
        errs.push("must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)");
    }
    if !name.bytes().any(|c| c.is_ascii_lowercase()) {
        errs.push("must contain at least one letter (a-z)");
    }
    if name.contains("--") {
        errs.push("must not contain consecutive hyphens");
    }
    if name.starts_with('-') || name.ends_with('-') {
        errs.push("must not begin or end with a hyphen");
    }
    errs
}

fn items<'a>(v: &'a Value, key: &str) -> impl Iterator<Item = (usize, &'a Value)> {
    v[key].as_array().into_iter().flatten().enumerate()
}

fn str_of<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key].as_str().unwrap_or("")
}

/// ValidateVolumes: returns the names of the volumes that passed (upstream's `vols` map). A
/// volume with any error is left out of it, so mounts naming it are `Not found` too, and a
/// later volume of the same name is not a duplicate.
fn validate_volumes(spec: &Value, causes: &mut Vec<Cause>) -> HashSet<String> {
    let mut valid = HashSet::new();
    for (i, vol) in items(spec, "volumes") {
        let path = format!("spec.volumes[{i}]");
        let name = str_of(vol, "name");
        let mut errs = Vec::new();
        // validateVolumeSource -> validatePersistentClaimVolumeSource. (A volume with no source
        // is defaulted to emptyDir upstream, so "must specify a volume type" never shows.)
        if !vol["persistentVolumeClaim"].is_null()
            && str_of(&vol["persistentVolumeClaim"], "claimName").is_empty()
        {
            errs.push(required(format!("{path}.persistentVolumeClaim.claimName")));
        }
        if name.is_empty() {
            errs.push(required(format!("{path}.name")));
        } else {
            for e in label_name_errors(name) {
                errs.push(invalid_str(format!("{path}.name"), name, &e));
            }
        }
        if valid.contains(name) {
            errs.push(duplicate(format!("{path}.name"), name));
        }
        if errs.is_empty() {
            valid.insert(name.to_string());
        } else {
            causes.append(&mut errs);
        }
    }
    valid
}

/// validateContainerPorts.
fn validate_ports(c: &Value, path: &str, causes: &mut Vec<Cause>) {
    let mut names = HashSet::new();
    for (j, port) in items(c, "ports") {
        let p = format!("{path}.ports[{j}]");
        let name = str_of(port, "name");
        if !name.is_empty() {
            let errs = port_name_errors(name);
            if !errs.is_empty() {
                for e in errs {
                    causes.push(invalid_str(format!("{p}.name"), name, e));
                }
            } else if !names.insert(name) {
                causes.push(duplicate(format!("{p}.name"), name));
            }
        }
        let container_port = port["containerPort"].as_i64().unwrap_or(0);
        if container_port == 0 {
            causes.push(required(format!("{p}.containerPort")));
        } else if !(1..=65535).contains(&container_port) {
            causes.push(invalid_num(
                format!("{p}.containerPort"),
                container_port,
                PORT_RANGE_MSG,
            ));
        }
        let host_port = port["hostPort"].as_i64().unwrap_or(0);
        if host_port != 0 && !(1..=65535).contains(&host_port) {
            causes.push(invalid_num(
                format!("{p}.hostPort"),
                host_port,
                PORT_RANGE_MSG,
            ));
        }
        // SetDefaults_ContainerPort: an empty protocol is TCP before validation sees it.
        let protocol = Some(str_of(port, "protocol"))
            .filter(|s| !s.is_empty())
            .unwrap_or("TCP");
        if !PORT_PROTOCOLS.contains(&protocol) {
            let supported: Vec<String> = PORT_PROTOCOLS.iter().map(|s| quote(s)).collect();
            causes.push(cause(
                "FieldValueNotSupported",
                format!("{p}.protocol"),
                format!(
                    "Unsupported value: {}: supported values: {}",
                    quote(protocol),
                    supported.join(", ")
                ),
            ));
        }
    }
}

/// ValidateVolumeMounts: each mount names a volume that passed validation, once per path.
fn validate_mounts(c: &Value, path: &str, volumes: &HashSet<String>, causes: &mut Vec<Cause>) {
    let mut paths = HashSet::new();
    for (j, m) in items(c, "volumeMounts") {
        let p = format!("{path}.volumeMounts[{j}]");
        let name = str_of(m, "name");
        if name.is_empty() {
            causes.push(required(format!("{p}.name")));
        }
        if !volumes.contains(name) {
            causes.push(not_found(format!("{p}.name"), name));
        }
        let mount_path = str_of(m, "mountPath");
        if mount_path.is_empty() {
            causes.push(required(format!("{p}.mountPath")));
        }
        if !paths.insert(mount_path) {
            causes.push(invalid_str(
                format!("{p}.mountPath"),
                mount_path,
                "must be unique",
            ));
        }
    }
}

/// validateContainerCommon: name (DNS-1123 label), image, ports, volume mounts.
fn validate_container_common(
    c: &Value,
    path: &str,
    volumes: &HashSet<String>,
    causes: &mut Vec<Cause>,
) {
    let name = str_of(c, "name");
    if name.is_empty() {
        causes.push(required(format!("{path}.name")));
    } else {
        for e in label_name_errors(name) {
            causes.push(invalid_str(format!("{path}.name"), name, &e));
        }
    }
    // Only an empty image is Required; whitespace around one is the pod-only check below.
    if str_of(c, "image").is_empty() {
        causes.push(required(format!("{path}.image")));
    }
    validate_ports(c, path, causes);
    validate_mounts(c, path, volumes, causes);
}

/// ValidatePodSpec's volumes, containers and init containers. Container names are unique
/// within `containers`; an init container whose name is taken by a container (or an earlier
/// init container) is the duplicate, reported at `spec.initContainers[i].name`.
fn validate_pod_spec(spec: &Value, causes: &mut Vec<Cause>) {
    let volumes = validate_volumes(spec, causes);
    let containers = spec["containers"].as_array().filter(|cs| !cs.is_empty());
    let mut names: HashSet<&str> = HashSet::new();
    match containers {
        None => causes.push(required("spec.containers".into())),
        Some(cs) => {
            for (i, c) in cs.iter().enumerate() {
                let path = format!("spec.containers[{i}]");
                validate_container_common(c, &path, &volumes, causes);
                let name = str_of(c, "name");
                if !names.insert(name) {
                    causes.push(duplicate(format!("{path}.name"), name));
                }
            }
        }
    }
    for (i, c) in items(spec, "initContainers") {
        let path = format!("spec.initContainers[{i}]");
        validate_container_common(c, &path, &volumes, causes);
        let name = str_of(c, "name");
        if names.contains(name) {
            causes.push(duplicate(format!("{path}.name"), name));
        } else if !name.is_empty() {
            names.insert(name);
        }
    }
}

/// validateContainersOnlyForPod (pods, not templates): no whitespace around an image.
fn validate_images_only_for_pod(spec: &Value, causes: &mut Vec<Cause>) {
    for list in ["containers", "initContainers"] {
        for (i, c) in items(spec, list) {
            let image = str_of(c, "image");
            if image.len() != image.trim().len() {
                causes.push(invalid_str(
                    format!("spec.{list}[{i}].image"),
                    image,
                    "must not have leading or trailing whitespace",
                ));
            }
        }
    }
}

pub(super) fn validate_pod(obj: &Value, old: Option<&Value>, causes: &mut Vec<Cause>) {
    validate_pod_spec(&obj["spec"], causes);
    validate_images_only_for_pod(&obj["spec"], causes);
    if let Some(old) = old {
        // Pod spec is immutable except images and a few fields; adding or removing containers
        // is the failure the transcript records (validation.ValidatePodUpdate).
        let count = |v: &Value, l: &str| v["spec"][l].as_array().map(|a| a.len()).unwrap_or(0);
        let mut resized = false;
        for list in ["containers", "initContainers"] {
            if count(obj, list) != count(old, list) {
                resized = true;
                causes.push(Cause {
                    reason: "FieldValueForbidden".into(),
                    message: "Forbidden: pod updates may not add or remove containers".into(),
                    field: format!("spec.{list}"),
                });
            }
        }
        if !resized && mutable_view(&obj["spec"]) != mutable_view(&old["spec"]) {
            // Upstream appends a diff of the specs to this message; that part is not reproduced.
            causes.push(Cause {
                reason: "FieldValueForbidden".into(),
                message: POD_SPEC_IMMUTABLE.into(),
                field: "spec".into(),
            });
        }
    }
}

const POD_SPEC_IMMUTABLE: &str = "Forbidden: pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)";

/// A pod spec without the fields an update may change: images, activeDeadlineSeconds,
/// tolerations, terminationGracePeriodSeconds. `nodeName` is left out too: upstream sets it
/// through the binding subresource, which the simulated scheduler does not use.
fn mutable_view(spec: &Value) -> Value {
    let mut v = spec.clone();
    if let Some(m) = v.as_object_mut() {
        for k in [
            "activeDeadlineSeconds",
            "tolerations",
            "terminationGracePeriodSeconds",
            "nodeName",
        ] {
            m.remove(k);
        }
    }
    for list in ["containers", "initContainers", "ephemeralContainers"] {
        if let Some(cs) = v.get_mut(list).and_then(Value::as_array_mut) {
            for c in cs {
                if let Some(m) = c.as_object_mut() {
                    m.remove("image");
                }
            }
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use crate::names::LABEL_MSG;
    use crate::validation::validate_object;

    fn pods() -> crate::registry::ResourceType {
        crate::registry::builtin()
            .into_iter()
            .find(|t| t.plural == "pods")
            .unwrap()
    }

    /// The Status message and the (reason, field, message) causes a pod `p` with `spec` gets.
    fn rejected(spec: Value) -> (String, Vec<(String, String, String)>) {
        let pod = json!({"metadata": {"name": "p"}, "spec": spec});
        let e = validate_object(&pods(), "p", &pod, None).expect_err("the pod was accepted");
        assert_eq!((e.code, e.reason.as_str()), (422, "Invalid"));
        let details = e.details.expect("details");
        assert_eq!(details["kind"], "Pod");
        assert_eq!(details["name"], "p");
        let causes = details["causes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                let s = |k: &str| c[k].as_str().unwrap().to_string();
                (s("reason"), s("field"), s("message"))
            })
            .collect();
        (e.message, causes)
    }

    fn accepted(spec: Value) {
        let pod = json!({"metadata": {"name": "p"}, "spec": spec});
        if let Err(e) = validate_object(&pods(), "p", &pod, None) {
            panic!("rejected: {}", e.message);
        }
    }

    fn c(reason: &str, field: &str, message: &str) -> (String, String, String) {
        (reason.into(), field.into(), message.into())
    }

    /// The message NewInvalid builds: one error as is, several in brackets.
    fn message(causes: &[(String, String, String)]) -> String {
        let parts: Vec<String> = causes.iter().map(|(_, f, m)| format!("{f}: {m}")).collect();
        if parts.len() == 1 {
            format!("Pod \"p\" is invalid: {}", parts[0])
        } else {
            format!("Pod \"p\" is invalid: [{}]", parts.join(", "))
        }
    }

    fn assert_rejected(spec: Value, want: &[(String, String, String)]) {
        let (msg, causes) = rejected(spec);
        assert_eq!(causes, want);
        assert_eq!(msg, message(want));
    }

    #[test]
    fn init_container_named_like_a_container_is_the_duplicate() {
        // pod-validation.json: containers are validated first, init containers against them.
        let (msg, causes) = rejected(json!({
            "initContainers": [{"name": "a", "image": "x"}],
            "containers": [{"name": "a", "image": "y"}]}));
        assert_eq!(
            msg,
            "Pod \"p\" is invalid: spec.initContainers[0].name: Duplicate value: \"a\""
        );
        assert_eq!(
            causes,
            [c(
                "FieldValueDuplicate",
                "spec.initContainers[0].name",
                "Duplicate value: \"a\""
            )]
        );
        assert_rejected(
            json!({
                "initContainers": [{"name": "b", "image": "x"}, {"name": "b", "image": "x"}],
                "containers": [{"name": "a", "image": "y"}]}),
            &[c(
                "FieldValueDuplicate",
                "spec.initContainers[1].name",
                "Duplicate value: \"b\"",
            )],
        );
    }

    #[test]
    fn container_port_zero_or_missing_is_required() {
        assert_rejected(
            json!({"containers": [{"name": "a", "image": "x",
                "ports": [{"containerPort": 0}, {"name": "http"}]}]}),
            &[
                c(
                    "FieldValueRequired",
                    "spec.containers[0].ports[0].containerPort",
                    "Required value",
                ),
                c(
                    "FieldValueRequired",
                    "spec.containers[0].ports[1].containerPort",
                    "Required value",
                ),
            ],
        );
    }

    #[test]
    fn ports_must_be_between_1_and_65535() {
        let range = "must be between 1 and 65535, inclusive";
        assert_rejected(
            json!({"containers": [{"name": "a", "image": "x", "ports": [
                {"containerPort": 70000},
                {"containerPort": -1},
                {"containerPort": 80, "hostPort": 65536},
                {"containerPort": 81, "hostPort": -8080}]}]}),
            &[
                c(
                    "FieldValueInvalid",
                    "spec.containers[0].ports[0].containerPort",
                    &format!("Invalid value: 70000: {range}"),
                ),
                c(
                    "FieldValueInvalid",
                    "spec.containers[0].ports[1].containerPort",
                    &format!("Invalid value: -1: {range}"),
                ),
                c(
                    "FieldValueInvalid",
                    "spec.containers[0].ports[2].hostPort",
                    &format!("Invalid value: 65536: {range}"),
                ),
                c(
                    "FieldValueInvalid",
                    "spec.containers[0].ports[3].hostPort",
                    &format!("Invalid value: -8080: {range}"),
                ),
            ],
        );
        accepted(json!({"containers": [{"name": "a", "image": "x", "ports": [
            {"containerPort": 1}, {"containerPort": 65535, "hostPort": 65535}]}]}));
    }

    #[test]
    fn port_names_are_unique_within_a_container() {
        assert_rejected(
            json!({"containers": [{"name": "a", "image": "x", "ports": [
                {"name": "http", "containerPort": 80},
                {"name": "http", "containerPort": 81}]}]}),
            &[c(
                "FieldValueDuplicate",
                "spec.containers[0].ports[1].name",
                "Duplicate value: \"http\"",
            )],
        );
        // Upstream checks names per container only.
        accepted(json!({"containers": [
            {"name": "a", "image": "x", "ports": [{"name": "http", "containerPort": 80}]},
            {"name": "b", "image": "x", "ports": [{"name": "http", "containerPort": 81}]}]}));
    }

    #[test]
    fn port_names_are_iana_service_names() {
        let f = |j: usize| format!("spec.containers[0].ports[{j}].name");
        assert_rejected(
            json!({"containers": [{"name": "a", "image": "x", "ports": [
                {"name": "HTTP", "containerPort": 80},
                {"name": "web--admin-port1", "containerPort": 81},
                {"name": "-metrics", "containerPort": 82},
                {"name": "8080", "containerPort": 83}]}]}),
            &[
                c("FieldValueInvalid", &f(0), "Invalid value: \"HTTP\": must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)"),
                c("FieldValueInvalid", &f(0), "Invalid value: \"HTTP\": must contain at least one letter (a-z)"),
                c("FieldValueInvalid", &f(1), "Invalid value: \"web--admin-port1\": must be no more than 15 characters"),
                c("FieldValueInvalid", &f(1), "Invalid value: \"web--admin-port1\": must not contain consecutive hyphens"),
                c("FieldValueInvalid", &f(2), "Invalid value: \"-metrics\": must not begin or end with a hyphen"),
                c("FieldValueInvalid", &f(3), "Invalid value: \"8080\": must contain at least one letter (a-z)"),
            ],
        );
    }

    #[test]
    fn protocol_is_tcp_udp_or_sctp() {
        assert_rejected(
            json!({"containers": [{"name": "a", "image": "x",
                "ports": [{"containerPort": 53, "protocol": "udp"}]}]}),
            &[c(
                "FieldValueNotSupported",
                "spec.containers[0].ports[0].protocol",
                "Unsupported value: \"udp\": supported values: \"SCTP\", \"TCP\", \"UDP\"",
            )],
        );
        // No protocol: defaulted to TCP before validation.
        accepted(json!({"containers": [{"name": "a", "image": "x", "ports": [
            {"containerPort": 53, "protocol": "UDP"}, {"containerPort": 80}]}]}));
    }

    #[test]
    fn volume_names_are_dns_labels_and_bad_volumes_cannot_be_mounted() {
        assert_rejected(
            json!({"volumes": [{"name": "Data_1", "emptyDir": {}}],
                "containers": [{"name": "a", "image": "x",
                    "volumeMounts": [{"name": "Data_1", "mountPath": "/d"}]}]}),
            &[
                c(
                    "FieldValueInvalid",
                    "spec.volumes[0].name",
                    &format!("Invalid value: \"Data_1\": {LABEL_MSG}"),
                ),
                c(
                    "FieldValueNotFound",
                    "spec.containers[0].volumeMounts[0].name",
                    "Not found: \"Data_1\"",
                ),
            ],
        );
    }

    #[test]
    fn persistent_volume_claim_needs_a_claim_name() {
        assert_rejected(
            json!({"volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": ""}}],
                "containers": [{"name": "a", "image": "x",
                    "volumeMounts": [{"name": "data", "mountPath": "/d"}]}]}),
            &[
                c(
                    "FieldValueRequired",
                    "spec.volumes[0].persistentVolumeClaim.claimName",
                    "Required value",
                ),
                c(
                    "FieldValueNotFound",
                    "spec.containers[0].volumeMounts[0].name",
                    "Not found: \"data\"",
                ),
            ],
        );
    }

    #[test]
    fn duplicate_volume_names_count_only_valid_volumes() {
        // The second "w" is no duplicate: the first one failed, so it never was a volume.
        assert_rejected(
            json!({"volumes": [
                    {"name": "v", "emptyDir": {}},
                    {"name": "v", "emptyDir": {}},
                    {"name": "w", "persistentVolumeClaim": {}},
                    {"name": "w", "emptyDir": {}}],
                "containers": [{"name": "a", "image": "x",
                    "volumeMounts": [{"name": "w", "mountPath": "/w"}]}]}),
            &[
                c(
                    "FieldValueDuplicate",
                    "spec.volumes[1].name",
                    "Duplicate value: \"v\"",
                ),
                c(
                    "FieldValueRequired",
                    "spec.volumes[2].persistentVolumeClaim.claimName",
                    "Required value",
                ),
            ],
        );
    }

    #[test]
    fn volume_mounts_need_a_name_and_a_path() {
        assert_rejected(
            json!({"containers": [{"name": "a", "image": "x",
                "volumeMounts": [{"mountPath": "/d"}, {"name": "data"}]}]}),
            &[
                c(
                    "FieldValueRequired",
                    "spec.containers[0].volumeMounts[0].name",
                    "Required value",
                ),
                c(
                    "FieldValueNotFound",
                    "spec.containers[0].volumeMounts[0].name",
                    "Not found: \"\"",
                ),
                c(
                    "FieldValueNotFound",
                    "spec.containers[0].volumeMounts[1].name",
                    "Not found: \"data\"",
                ),
                c(
                    "FieldValueRequired",
                    "spec.containers[0].volumeMounts[1].mountPath",
                    "Required value",
                ),
            ],
        );
    }

    #[test]
    fn image_is_required_and_has_no_surrounding_whitespace() {
        // An empty image is Required (in container order); whitespace is the pod-only check,
        // reported after every ValidatePodSpec error.
        assert_rejected(
            json!({"containers": [
                {"name": "a", "image": " nginx"},
                {"name": "b"}]}),
            &[
                c(
                    "FieldValueRequired",
                    "spec.containers[1].image",
                    "Required value",
                ),
                c(
                    "FieldValueInvalid",
                    "spec.containers[0].image",
                    "Invalid value: \" nginx\": must not have leading or trailing whitespace",
                ),
            ],
        );
    }

    #[test]
    fn errors_come_in_upstream_order() {
        // Volumes, then each container (name, image, ports, mounts, duplicate name), then
        // init containers.
        assert_rejected(
            json!({"volumes": [{"name": "v", "emptyDir": {}}, {"name": "v", "emptyDir": {}}],
                "initContainers": [{"name": "i", "image": "busybox",
                    "volumeMounts": [{"name": "y", "mountPath": "/y"}]}],
                "containers": [
                    {"name": "A", "ports": [{"containerPort": 0}],
                        "volumeMounts": [{"name": "x", "mountPath": "/x"}]},
                    {"name": "b", "image": "x"},
                    {"name": "b", "image": "x"}]}),
            &[
                c(
                    "FieldValueDuplicate",
                    "spec.volumes[1].name",
                    "Duplicate value: \"v\"",
                ),
                c(
                    "FieldValueInvalid",
                    "spec.containers[0].name",
                    &format!("Invalid value: \"A\": {LABEL_MSG}"),
                ),
                c(
                    "FieldValueRequired",
                    "spec.containers[0].image",
                    "Required value",
                ),
                c(
                    "FieldValueRequired",
                    "spec.containers[0].ports[0].containerPort",
                    "Required value",
                ),
                c(
                    "FieldValueNotFound",
                    "spec.containers[0].volumeMounts[0].name",
                    "Not found: \"x\"",
                ),
                c(
                    "FieldValueDuplicate",
                    "spec.containers[2].name",
                    "Duplicate value: \"b\"",
                ),
                c(
                    "FieldValueNotFound",
                    "spec.initContainers[0].volumeMounts[0].name",
                    "Not found: \"y\"",
                ),
            ],
        );
    }
}
