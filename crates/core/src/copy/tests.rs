//! Copy rules, asserted on the JSON of the produced pod.

use super::*;
use crate::resolve::WorkloadRef;
use crate::target::TargetRef;
use serde_json::{json, Value};

fn probe() -> Value {
    json!({"httpGet": {"path": "/health", "port": 80}, "periodSeconds": 5})
}

fn template() -> PodTemplateSpec {
    serde_json::from_value(json!({
        "metadata": {
            "labels": {
                "app": "py-serv",
                "tier": "web",
                "pod-template-hash": "5d8f7c",
                "rollouts-pod-template-hash": "x1",
                "controller-revision-hash": "db-7f",
                "statefulset.kubernetes.io/pod-name": "db-0",
                "apps.kubernetes.io/pod-index": "0",
                "controller-uid": "u1",
                "batch.kubernetes.io/controller-uid": "u1",
                "job-name": "migrate",
                "batch.kubernetes.io/job-name": "migrate",
                "app.kubernetes.io/managed-by": "Helm"
            },
            "annotations": {"kubectl.kubernetes.io/restartedAt": "2026-01-01T00:00:00Z", "team": "a"}
        },
        "spec": {
            "restartPolicy": "Always",
            "initContainers": [
                {"name": "setup", "image": "busybox"},
                {"name": "proxy", "image": "envoy", "restartPolicy": "Always",
                 "livenessProbe": probe(), "readinessProbe": probe(), "startupProbe": probe()}
            ],
            "containers": [
                {"name": "app", "image": "py-serv:1", "ports": [{"containerPort": 80}],
                 "livenessProbe": probe(), "readinessProbe": probe(), "startupProbe": probe()},
                {"name": "metrics", "image": "exporter", "readinessProbe": probe()}
            ]
        }
    }))
    .unwrap()
}

fn resolved(target: &str, template: PodTemplateSpec) -> ResolvedTarget {
    let target: TargetRef = target.parse().unwrap();
    ResolvedTarget {
        object: WorkloadRef {
            api_version: target.kind.api_version(),
            kind: target.kind.kind().into(),
            name: target.name.clone(),
            uid: "obj-uid".into(),
            namespace: "default".into(),
        },
        target,
        namespace: "default".into(),
        template,
        raw: json!({}),
        claim_templates: Vec::new(),
    }
}

fn session() -> SessionHandle {
    SessionHandle {
        id: "abcde12345".into(),
        namespace: "default".into(),
        config_map: "mirrord-copy-session-abcde12345".into(),
        uid: "cm-uid".into(),
    }
}

fn pod_json(target: &str, template: PodTemplateSpec, opts: &CopyOptions) -> Value {
    let now = DateTime::parse_from_rfc3339("2026-11-22T10:00:00Z")
        .unwrap()
        .with_timezone(&Utc);
    let pod = build_copy_pod(
        &resolved(target, template),
        opts,
        0,
        &session(),
        "py-serv-copy-xyz12",
        "me@laptop",
        now,
    )
    .unwrap();
    serde_json::to_value(pod).unwrap()
}

fn names(list: &Value) -> Vec<&str> {
    list.as_array()
        .map(|a| a.iter().map(|c| c["name"].as_str().unwrap()).collect())
        .unwrap_or_default()
}

/// The copy rules on their own, without the placeholder (tested below) changing the spec.
fn keep_command() -> CopyOptions {
    CopyOptions {
        keep_command: true,
        ..Default::default()
    }
}

#[test]
fn probes_are_removed_everywhere_including_sidecars() {
    let pod = pod_json("deploy/py-serv", template(), &keep_command());
    let spec = &pod["spec"];
    for list in ["containers", "initContainers"] {
        for c in spec[list].as_array().unwrap() {
            for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
                assert!(c.get(probe).is_none(), "{list}/{}: {probe} kept", c["name"]);
            }
        }
    }
    assert_eq!(names(&spec["containers"]), ["app", "metrics"]);
    assert_eq!(names(&spec["initContainers"]), ["setup", "proxy"]);
    // the sidecar stays a sidecar, the ports stay
    assert_eq!(spec["initContainers"][1]["restartPolicy"], "Always");
    assert_eq!(spec["containers"][0]["ports"][0]["containerPort"], 80);
    assert_eq!(spec["restartPolicy"], "Always");
}

#[test]
fn controller_labels_are_dropped_and_ours_added() {
    let pod = pod_json("deploy/py-serv", template(), &CopyOptions::default());
    let labels = pod["metadata"]["labels"].as_object().unwrap();
    let mut keys: Vec<&str> = labels.keys().map(String::as_str).collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "app",
            "app.kubernetes.io/managed-by",
            "mirrord-copy.io/role",
            "mirrord-copy.io/session",
            "tier"
        ]
    );
    assert_eq!(labels["app"], "py-serv");
    assert_eq!(
        labels["app.kubernetes.io/managed-by"],
        "kubectl-mirrord-copy"
    );
    assert_eq!(labels["mirrord-copy.io/session"], "abcde12345");
    assert_eq!(labels["mirrord-copy.io/role"], "copy");
}

#[test]
fn metadata_annotations_and_owner_reference() {
    let opts = CopyOptions {
        exclude_containers: vec!["metrics".into()],
        exclude_init_containers: vec![],
        ..Default::default()
    };
    let pod = pod_json("deploy/py-serv/container/app", template(), &opts);
    let meta = &pod["metadata"];
    assert_eq!(meta["name"], "py-serv-copy-xyz12");
    assert_eq!(meta["namespace"], "default");
    let ann = &meta["annotations"];
    assert_eq!(
        ann["mirrord-copy.io/original-target"],
        "deployment/py-serv/container/app"
    );
    assert_eq!(ann["mirrord-copy.io/created-by"], "me@laptop");
    assert_eq!(ann["mirrord-copy.io/created-at"], "2026-11-22T10:00:00Z");
    assert_eq!(
        ann["mirrord-copy.io/options"],
        r#"{"excludeContainers":["metrics"],"excludeInitContainers":[]}"#
    );
    assert_eq!(
        ann["kubectl.kubernetes.io/restartedAt"],
        "2026-01-01T00:00:00Z"
    );
    assert_eq!(ann["team"], "a");
    assert_eq!(
        meta["ownerReferences"],
        json!([{
            "apiVersion": "v1", "kind": "ConfigMap", "name": "mirrord-copy-session-abcde12345",
            "uid": "cm-uid", "controller": true, "blockOwnerDeletion": true
        }])
    );
    assert!(pod.get("status").is_none());
}

#[test]
fn exclusions_remove_by_name() {
    let opts = CopyOptions {
        exclude_containers: vec!["metrics".into()],
        exclude_init_containers: vec!["setup".into(), "proxy".into()],
        ..keep_command()
    };
    let pod = pod_json("deploy/py-serv", template(), &opts);
    assert_eq!(names(&pod["spec"]["containers"]), ["app"]);
    assert!(pod["spec"].get("initContainers").is_none());
}

#[test]
fn exclusion_errors_name_the_valid_containers() {
    let t = template();
    let bad = CopyOptions {
        exclude_containers: vec!["nope".into()],
        ..Default::default()
    };
    let err = copy_pod_spec(&t, TargetKind::Deployment, &bad).unwrap_err();
    assert_eq!(err.exit_code(), 2);
    assert!(
        err.to_string().contains("valid containers: app, metrics"),
        "{err}"
    );

    let bad = CopyOptions {
        exclude_init_containers: vec!["app".into()],
        ..Default::default()
    };
    let err = copy_pod_spec(&t, TargetKind::Deployment, &bad).unwrap_err();
    assert!(
        err.to_string()
            .contains("valid init containers: setup, proxy"),
        "{err}"
    );

    let all = CopyOptions {
        exclude_containers: vec!["app".into(), "metrics".into()],
        ..Default::default()
    };
    let err = copy_pod_spec(&t, TargetKind::Deployment, &all).unwrap_err();
    assert_eq!(err.exit_code(), 4);
    assert!(err.to_string().contains("app, metrics"), "{err}");

    let target_excluded = CopyOptions {
        exclude_containers: vec!["app".into()],
        ..Default::default()
    };
    let err = build_copy_pod(
        &resolved("deploy/py-serv/container/app", t),
        &target_excluded,
        0,
        &session(),
        "p",
        "me",
        Utc::now(),
    )
    .unwrap_err();
    assert_eq!(err.exit_code(), 2);
}

#[test]
fn pod_target_drops_what_the_cluster_filled_in() {
    let t: PodTemplateSpec = serde_json::from_value(json!({
        "metadata": {"labels": {"app": "debug", "pod-template-hash": "abc"}},
        "spec": {
            "nodeName": "node-1",
            "priorityClassName": "high",
            "priority": 1000,
            "preemptionPolicy": "PreemptLowerPriority",
            "runtimeClassName": "gvisor",
            "overhead": {"cpu": "250m"},
            "restartPolicy": "Never",
            "serviceAccountName": "default",
            "ephemeralContainers": [{"name": "debugger", "image": "busybox"}],
            "volumes": [
                {"name": "data", "emptyDir": {}},
                {"name": "kube-api-access-x7k2p", "projected": {"sources": []}}
            ],
            "containers": [{"name": "main", "image": "busybox",
                "livenessProbe": probe(),
                "volumeMounts": [
                    {"name": "data", "mountPath": "/data"},
                    {"name": "kube-api-access-x7k2p", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"}
                ]}]
        }
    }))
    .unwrap();
    let pod = pod_json("pod/debug-me", t, &keep_command());
    let spec = &pod["spec"];
    assert!(spec.get("nodeName").is_none());
    assert!(spec.get("ephemeralContainers").is_none());
    for filled_by_admission in ["priority", "preemptionPolicy", "overhead"] {
        assert!(
            spec.get(filled_by_admission).is_none(),
            "{filled_by_admission}"
        );
    }
    assert_eq!(spec["priorityClassName"], "high");
    assert_eq!(spec["runtimeClassName"], "gvisor");
    assert_eq!(names(&spec["volumes"]), ["data"]);
    assert_eq!(names(&spec["containers"][0]["volumeMounts"]), ["data"]);
    assert!(spec["containers"][0].get("livenessProbe").is_none());
    assert_eq!(spec["restartPolicy"], "Never");
    assert_eq!(spec["serviceAccountName"], "default");
    assert_eq!(pod["metadata"]["labels"]["app"], "debug");
    assert!(pod["metadata"]["labels"].get("pod-template-hash").is_none());
}

#[test]
fn job_keeps_its_restart_policy() {
    let t: PodTemplateSpec = serde_json::from_value(json!({
        "metadata": {"labels": {"job-name": "migrate", "controller-uid": "u", "app": "m"}},
        "spec": {"restartPolicy": "OnFailure", "containers": [{"name": "m", "image": "x"}]}
    }))
    .unwrap();
    let pod = pod_json("job/migrate", t.clone(), &CopyOptions::default());
    assert_eq!(pod["spec"]["restartPolicy"], "OnFailure");
    let labels = pod["metadata"]["labels"].as_object().unwrap();
    assert!(!labels.contains_key("job-name") && !labels.contains_key("controller-uid"));
    // node name on a template (rare, but legal) is kept: only a pod's own is runtime state
    let mut pinned = t;
    pinned.spec.as_mut().unwrap().node_name = Some("n1".into());
    let spec = copy_pod_spec(&pinned, TargetKind::Job, &CopyOptions::default()).unwrap();
    assert_eq!(spec.node_name.as_deref(), Some("n1"));
}

#[test]
fn options_json_is_normalized() {
    let a = CopyOptions {
        exclude_containers: vec!["b".into(), "a".into(), "a".into()],
        exclude_init_containers: vec![],
        ..Default::default()
    };
    let b = CopyOptions {
        exclude_containers: vec!["a".into(), "b".into()],
        exclude_init_containers: vec![],
        ..Default::default()
    };
    assert_eq!(a.to_json(), b.to_json());
    assert_eq!(a.normalized(), b);
    let back: CopyOptions = serde_json::from_str("{}").unwrap();
    assert_eq!(back, CopyOptions::default());
}

#[test]
fn pod_only_annotations_are_dropped_from_pod_targets_only() {
    let mut t = template();
    let meta = t.metadata.as_mut().unwrap();
    let ann = meta.annotations.as_mut().unwrap();
    ann.insert("kubernetes.io/config.mirror".into(), "abc".into());
    ann.insert(
        "kubectl.kubernetes.io/last-applied-configuration".into(),
        "{}".into(),
    );
    let pod = pod_json("pod/debug-me", t.clone(), &CopyOptions::default());
    let ann = pod["metadata"]["annotations"].as_object().unwrap();
    assert!(!ann.contains_key("kubernetes.io/config.mirror"));
    assert!(!ann.contains_key("kubectl.kubernetes.io/last-applied-configuration"));
    assert_eq!(
        ann["kubectl.kubernetes.io/restartedAt"],
        "2026-01-01T00:00:00Z"
    );
    let deploy = pod_json("deploy/py-serv", t, &CopyOptions::default());
    assert!(deploy["metadata"]["annotations"]
        .as_object()
        .unwrap()
        .contains_key("kubernetes.io/config.mirror"));
}

#[test]
fn by_default_the_target_container_runs_the_placeholder_and_the_copy_is_gated() {
    let pod = pod_json("deploy/py-serv", template(), &CopyOptions::default());
    let spec = &pod["spec"];
    assert_eq!(
        names(&spec["initContainers"]),
        ["mirrord-copy-placeholder", "setup", "proxy"]
    );
    assert_eq!(spec["containers"][0]["name"], "app");
    assert_eq!(spec["containers"][0]["image"], "py-serv:1");
    assert_eq!(
        spec["containers"][0]["command"][0],
        "/.mirrord-copy/busybox"
    );
    assert_eq!(spec["containers"][0]["ports"][0]["containerPort"], 80);
    assert!(
        spec["containers"][1].get("command").is_none(),
        "metrics runs as before"
    );
    assert_eq!(
        spec["readinessGates"],
        json!([{"conditionType": "mirrord-copy.io/serving"}])
    );
    let ann = &pod["metadata"]["annotations"];
    assert_eq!(ann["kubectl.kubernetes.io/default-container"], "app");
    assert_eq!(ann["mirrord-copy.io/runs"], "placeholder");
}

#[test]
fn keep_command_runs_the_application_and_serving_drops_the_gate() {
    let opts = CopyOptions {
        serve_traffic: true,
        ..keep_command()
    };
    let pod = pod_json("deploy/py-serv/container/metrics", template(), &opts);
    let spec = &pod["spec"];
    assert_eq!(names(&spec["initContainers"]), ["setup", "proxy"]);
    assert!(spec["containers"][0].get("command").is_none());
    assert!(spec.get("readinessGates").is_none());
    let ann = &pod["metadata"]["annotations"];
    assert_eq!(ann["kubectl.kubernetes.io/default-container"], "metrics");
    assert_eq!(ann["mirrord-copy.io/runs"], "application");
}

#[test]
fn a_named_container_runs_the_placeholder() {
    let pod = pod_json(
        "deploy/py-serv/container/metrics",
        template(),
        &CopyOptions::default(),
    );
    let spec = &pod["spec"];
    assert!(spec["containers"][0].get("command").is_none());
    assert_eq!(
        spec["containers"][1]["command"][0],
        "/.mirrord-copy/busybox"
    );
}
