//! Defaulting on create, for the fields clients read back (the subset of upstream's
//! `SetDefaults_*` and registry `PrepareForCreate` that the plugin and kubectl look at).

use serde_json::{json, Value};

use crate::registry::ResourceType;

fn set_default(obj: &mut Value, key: &str, v: Value) {
    if obj[key].is_null() {
        obj[key] = v;
    }
}

fn default_containers(spec: &mut Value) {
    for list in ["initContainers", "containers"] {
        if let Some(cs) = spec.get_mut(list).and_then(Value::as_array_mut) {
            for c in cs {
                let image = c["image"].as_str().unwrap_or("").to_string();
                let tag = image.rsplit('/').next().unwrap_or("");
                let latest = !tag.contains(':') || tag.ends_with(":latest");
                set_default(
                    c,
                    "imagePullPolicy",
                    json!(if latest { "Always" } else { "IfNotPresent" }),
                );
                set_default(c, "terminationMessagePath", json!("/dev/termination-log"));
                set_default(c, "terminationMessagePolicy", json!("File"));
                set_default(c, "resources", json!({}));
                if let Some(ports) = c.get_mut("ports").and_then(Value::as_array_mut) {
                    for p in ports {
                        set_default(p, "protocol", json!("TCP"));
                    }
                }
            }
        }
    }
}

fn default_pod_spec(spec: &mut Value) {
    if !spec.is_object() {
        return;
    }
    set_default(spec, "restartPolicy", json!("Always"));
    set_default(spec, "terminationGracePeriodSeconds", json!(30));
    set_default(spec, "dnsPolicy", json!("ClusterFirst"));
    set_default(spec, "securityContext", json!({}));
    set_default(spec, "schedulerName", json!("default-scheduler"));
    default_containers(spec);
}

/// The DefaultTolerationSeconds admission plugin: tolerate not-ready/unreachable for 300 s.
fn default_tolerations(spec: &mut Value) {
    if !spec["tolerations"].is_array() {
        spec["tolerations"] = json!([]);
    }
    let tolerations = spec["tolerations"].as_array_mut().unwrap();
    for key in [
        "node.kubernetes.io/not-ready",
        "node.kubernetes.io/unreachable",
    ] {
        if !tolerations.iter().any(|t| t["key"] == key) {
            tolerations.push(json!({"key": key, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}));
        }
    }
}

const SA_TOKEN_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// The ServiceAccount admission plugin: a projected `kube-api-access-xxxxx` volume mounted in
/// every container, unless automounting is off or something is already mounted there.
fn mount_service_account_token(spec: &mut Value) {
    if spec["automountServiceAccountToken"] == json!(false) {
        return;
    }
    let lists = ["initContainers", "containers"];
    let mounted = lists.iter().any(|l| {
        spec[*l].as_array().is_some_and(|cs| {
            cs.iter().any(|c| {
                c["volumeMounts"]
                    .as_array()
                    .is_some_and(|ms| ms.iter().any(|m| m["mountPath"] == SA_TOKEN_PATH))
            })
        })
    });
    if mounted {
        return;
    }
    let name = format!("kube-api-access-{}", crate::validation::random_suffix(5));
    if !spec["volumes"].is_array() {
        spec["volumes"] = json!([]);
    }
    spec["volumes"].as_array_mut().unwrap().push(json!({
        "name": name,
        "projected": {"sources": [
            {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
            {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
            {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}}
        ], "defaultMode": 420}
    }));
    for l in lists {
        if let Some(cs) = spec.get_mut(l).and_then(Value::as_array_mut) {
            for c in cs {
                if !c["volumeMounts"].is_array() {
                    c["volumeMounts"] = json!([]);
                }
                c["volumeMounts"]
                    .as_array_mut()
                    .unwrap()
                    .push(json!({"name": name, "readOnly": true, "mountPath": SA_TOKEN_PATH}));
            }
        }
    }
}

/// Called by the store on create, after uid and name are set.
pub(crate) fn apply_create_defaults(rt: &ResourceType, obj: &mut Value) {
    match (rt.group, rt.plural) {
        ("", "pods") => {
            let spec = &mut obj["spec"];
            default_pod_spec(spec);
            if spec.is_object() {
                set_default(spec, "serviceAccountName", json!("default"));
                let sa = spec["serviceAccountName"].clone();
                set_default(spec, "serviceAccount", sa);
                set_default(spec, "enableServiceLinks", json!(true));
                set_default(spec, "priority", json!(0));
                set_default(spec, "preemptionPolicy", json!("PreemptLowerPriority"));
                default_tolerations(spec);
                mount_service_account_token(spec);
            }
            if obj["status"]["phase"].is_null() {
                obj["status"] = json!({"phase": "Pending", "qosClass": "BestEffort"});
            }
        }
        // SetDefaults_Secret: `kubectl create secret generic` leaves the type empty.
        ("", "secrets") => set_default(obj, "type", json!("Opaque")),
        ("", "namespaces") => {
            set_default(obj, "spec", json!({"finalizers": ["kubernetes"]}));
            obj["status"] = json!({"phase": "Active"});
        }
        ("", "services") => {
            let spec = &mut obj["spec"];
            if spec.is_object() {
                set_default(spec, "type", json!("ClusterIP"));
                set_default(spec, "sessionAffinity", json!("None"));
                if spec["clusterIP"].is_null() {
                    use rand::Rng;
                    let mut r = rand::rng();
                    let ip = format!(
                        "10.96.{}.{}",
                        r.random_range(0..255),
                        r.random_range(1..255)
                    );
                    spec["clusterIP"] = json!(ip);
                    spec["clusterIPs"] = json!([ip]);
                }
                if let Some(ports) = spec.get_mut("ports").and_then(Value::as_array_mut) {
                    for p in ports {
                        set_default(p, "protocol", json!("TCP"));
                        let port = p["port"].clone();
                        set_default(p, "targetPort", port);
                    }
                }
            }
            set_default(obj, "status", json!({"loadBalancer": {}}));
        }
        ("apps", "deployments") => {
            let spec = &mut obj["spec"];
            if spec.is_object() {
                set_default(spec, "replicas", json!(1));
                set_default(spec, "revisionHistoryLimit", json!(10));
                set_default(spec, "progressDeadlineSeconds", json!(600));
                set_default(
                    spec,
                    "strategy",
                    json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}}),
                );
                default_pod_spec(&mut spec["template"]["spec"]);
            }
        }
        ("apps", "statefulsets") => {
            let spec = &mut obj["spec"];
            if spec.is_object() {
                set_default(spec, "replicas", json!(1));
                set_default(spec, "podManagementPolicy", json!("OrderedReady"));
                set_default(spec, "revisionHistoryLimit", json!(10));
                set_default(
                    spec,
                    "updateStrategy",
                    json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 0}}),
                );
                // SetDefaults_StatefulSet defaults each field of the policy on its own.
                set_default(spec, "persistentVolumeClaimRetentionPolicy", json!({}));
                let policy = &mut spec["persistentVolumeClaimRetentionPolicy"];
                if policy.is_object() {
                    set_default(policy, "whenDeleted", json!("Retain"));
                    set_default(policy, "whenScaled", json!("Retain"));
                }
                default_pod_spec(&mut spec["template"]["spec"]);
                // zz_generated.defaults: SetDefaults_PersistentVolumeClaim and
                // SetDefaults_PersistentVolumeClaimSpec on every claim template.
                if let Some(ts) = spec
                    .get_mut("volumeClaimTemplates")
                    .and_then(Value::as_array_mut)
                {
                    for t in ts.iter_mut().filter(|t| t.is_object()) {
                        default_claim(t);
                    }
                }
            }
            set_default(
                obj,
                "status",
                json!({"replicas": 0, "availableReplicas": 0}),
            );
        }
        ("apps", "replicasets") => {
            let spec = &mut obj["spec"];
            if spec.is_object() {
                set_default(spec, "replicas", json!(1));
                default_pod_spec(&mut spec["template"]["spec"]);
            }
            // Zero values of non-omitempty status fields, as a new object serializes upstream.
            set_default(obj, "status", json!({"replicas": 0}));
        }
        ("", "persistentvolumeclaims") => {
            // The registry's PrepareForCreate clears the status, defaulting sets it Pending.
            obj["status"] = json!({});
            default_claim(obj);
            // The StorageObjectInUseProtection admission plugin: the pvc-protection
            // controller removes the finalizer once no scheduled pod uses the claim.
            let fins = &mut obj["metadata"]["finalizers"];
            if !fins.is_array() {
                *fins = json!([]);
            }
            let fins = fins.as_array_mut().unwrap();
            if !fins.iter().any(|f| f == PVC_PROTECTION) {
                fins.push(json!(PVC_PROTECTION));
            }
        }
        ("batch", "jobs") => default_job(obj),
        _ => {}
    }
}

/// The finalizer the StorageObjectInUseProtection admission plugin puts on every new claim.
pub(crate) const PVC_PROTECTION: &str = "kubernetes.io/pvc-protection";

/// SetDefaults_PersistentVolumeClaim (status.phase Pending) and
/// SetDefaults_PersistentVolumeClaimSpec (volumeMode Filesystem).
fn default_claim(claim: &mut Value) {
    if claim["spec"].is_object() {
        set_default(&mut claim["spec"], "volumeMode", json!("Filesystem"));
    }
    if !claim["status"].is_object() {
        claim["status"] = json!({});
    }
    set_default(&mut claim["status"], "phase", json!("Pending"));
}

/// The Job registry generates the selector and template labels from the Job's uid unless
/// `spec.manualSelector` is true (pkg/registry/batch/job/strategy.go generateSelector).
fn default_job(obj: &mut Value) {
    let uid = obj["metadata"]["uid"].as_str().unwrap_or("").to_string();
    let name = obj["metadata"]["name"].as_str().unwrap_or("").to_string();
    let spec = &mut obj["spec"];
    if !spec.is_object() {
        return;
    }
    set_default(spec, "parallelism", json!(1));
    set_default(spec, "completions", json!(1));
    set_default(spec, "backoffLimit", json!(6));
    set_default(spec, "completionMode", json!("NonIndexed"));
    set_default(spec, "suspend", json!(false));
    set_default(spec, "podReplacementPolicy", json!("TerminatingOrFailed"));
    if spec["manualSelector"].as_bool() != Some(true) {
        spec["manualSelector"] = json!(false);
        spec["selector"] = json!({"matchLabels": {"batch.kubernetes.io/controller-uid": uid}});
        let labels = &mut spec["template"]["metadata"]["labels"];
        if !labels.is_object() {
            *labels = json!({});
        }
        for (k, v) in [
            ("batch.kubernetes.io/controller-uid", &uid),
            ("batch.kubernetes.io/job-name", &name),
            ("controller-uid", &uid),
            ("job-name", &name),
        ] {
            labels[k] = json!(v);
        }
    }
    if spec["template"]["spec"]["restartPolicy"].is_null() && spec["template"]["spec"].is_object() {
        spec["template"]["spec"]["restartPolicy"] = json!("Never");
    }
    default_pod_spec(&mut spec["template"]["spec"]);
}
