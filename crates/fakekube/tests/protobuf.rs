//! The protobuf body decoder (`fakekube::protobuf`), on bytes encoded with prost through
//! k8s-pb's types (generated from the upstream .proto files, so independent of the decoder's
//! own tables), and through the HTTP front.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_pb::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_pb::api::coordination::v1::{Lease, LeaseSpec};
use k8s_pb::api::core::v1::{
    ConfigMap, Container, ContainerPort, HttpGetAction, PersistentVolumeClaim,
    PersistentVolumeClaimSpec, Pod, PodSpec, PodTemplateSpec, Probe, ProbeHandler,
    ResourceRequirements, Secret, SecurityContext, VolumeResourceRequirements,
};
use k8s_pb::apimachinery::pkg::api::resource::Quantity;
use k8s_pb::apimachinery::pkg::apis::meta::v1::{LabelSelector, MicroTime, ObjectMeta, Time};
use k8s_pb::apimachinery::pkg::runtime::{TypeMeta, Unknown};
use k8s_pb::apimachinery::pkg::util::intstr::IntOrString;
use prost::Message;
use serde_json::json;

use common::{admin, plain_cluster, send};
use fakekube::protobuf::{decode_body, CONTENT_TYPE};
use fakekube::registry::{builtin, ResourceType};
use fakekube::ADMIN_TOKEN;

fn rt(plural: &str) -> ResourceType {
    builtin().into_iter().find(|t| t.plural == plural).unwrap()
}

fn s(v: &str) -> Option<String> {
    Some(v.to_string())
}

/// The wire form client-go sends: the magic, then runtime.Unknown around the object.
fn envelope(api_version: &str, kind: &str, raw: Vec<u8>) -> Vec<u8> {
    let unknown = Unknown {
        type_meta: Some(TypeMeta {
            api_version: s(api_version),
            kind: s(kind),
        }),
        raw: Some(raw),
        content_encoding: s(""),
        content_type: s(""),
    };
    let mut out = b"k8s\0".to_vec();
    out.extend(unknown.encode_to_vec());
    out
}

fn meta(name: &str) -> ObjectMeta {
    ObjectMeta {
        name: s(name),
        labels: BTreeMap::from([("app".to_string(), "web".to_string())]),
        ..Default::default()
    }
}

#[test]
fn config_map_and_secret_decode_to_their_json() {
    let cm = ConfigMap {
        metadata: Some(ObjectMeta {
            // Go always marshals these non-pointer fields; empty, they are omitempty.
            namespace: s(""),
            generation: Some(0),
            // A zero time is marshalled as an empty message: JSON null.
            creation_timestamp: Some(Time::default()),
            ..meta("settings")
        }),
        data: BTreeMap::from([
            ("a".to_string(), "1".to_string()),
            ("empty".to_string(), String::new()),
        ]),
        binary_data: BTreeMap::from([("bin".to_string(), vec![0u8, 255, 1])]),
        immutable: None,
    };
    let v = decode_body(
        &rt("configmaps"),
        &envelope("v1", "ConfigMap", cm.encode_to_vec()),
    )
    .unwrap();
    assert_eq!(
        v,
        json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "settings", "labels": {"app": "web"}, "creationTimestamp": null},
            "data": {"a": "1", "empty": ""},
            "binaryData": {"bin": "AP8B"},
        })
    );

    let secret = Secret {
        metadata: Some(meta("s")),
        data: BTreeMap::from([("k".to_string(), b"v".to_vec())]),
        string_data: BTreeMap::new(),
        r#type: s("Opaque"),
        // *bool set to false: kept, as Go keeps a set pointer.
        immutable: Some(false),
    };
    let v = decode_body(
        &rt("secrets"),
        &envelope("v1", "Secret", secret.encode_to_vec()),
    )
    .unwrap();
    assert_eq!(v["data"], json!({"k": "dg=="}));
    assert_eq!(v["type"], "Opaque");
    assert_eq!(v["immutable"], false);
    assert!(v.get("stringData").is_none(), "{v}");
}

#[test]
fn deployment_pointers_int_or_string_quantities_and_omitempty() {
    let container = Container {
        name: s("app"),
        image: s("nginx:1.27"),
        // Non-pointer omitempty zeros, as Go's marshaller always writes them: dropped.
        working_dir: s(""),
        stdin: Some(false),
        image_pull_policy: s(""),
        command: vec!["sh".into(), "-c".into()],
        ports: vec![
            ContainerPort {
                name: s("http"),
                container_port: Some(8080),
                host_port: Some(0),
                protocol: s("TCP"),
                ..Default::default()
            },
            // containerPort has no omitempty: a zero stays.
            ContainerPort {
                container_port: Some(0),
                ..Default::default()
            },
        ],
        resources: Some(ResourceRequirements {
            limits: BTreeMap::from([("memory".to_string(), Quantity { string: s("128Mi") })]),
            requests: BTreeMap::from([("cpu".to_string(), Quantity { string: s("100m") })]),
            claims: vec![],
        }),
        liveness_probe: Some(Probe {
            handler: Some(ProbeHandler {
                http_get: Some(HttpGetAction {
                    path: s("/healthz"),
                    port: Some(IntOrString {
                        r#type: Some(1),
                        int_val: Some(0),
                        str_val: s("http"),
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            period_seconds: Some(5),
            ..Default::default()
        }),
        readiness_probe: Some(Probe {
            handler: Some(ProbeHandler {
                http_get: Some(HttpGetAction {
                    port: Some(IntOrString {
                        r#type: Some(0),
                        int_val: Some(8080),
                        str_val: s(""),
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        security_context: Some(SecurityContext {
            run_as_user: Some(0),
            privileged: Some(false),
            ..Default::default()
        }),
        ..Default::default()
    };
    let deployment = Deployment {
        metadata: Some(meta("web")),
        spec: Some(DeploymentSpec {
            // *int32 set to 0: kept (a scale-to-zero, not "default to 1").
            replicas: Some(0),
            selector: Some(LabelSelector {
                match_labels: BTreeMap::from([("app".to_string(), "web".to_string())]),
                match_expressions: vec![],
            }),
            template: Some(PodTemplateSpec {
                metadata: Some(meta("")),
                spec: Some(PodSpec {
                    containers: vec![container],
                    termination_grace_period_seconds: Some(0),
                    host_network: Some(false),
                    node_selector: BTreeMap::new(),
                    ..Default::default()
                }),
            }),
            min_ready_seconds: Some(0),
            paused: Some(false),
            ..Default::default()
        }),
        status: None,
    };
    let v = decode_body(
        &rt("deployments"),
        &envelope("apps/v1", "Deployment", deployment.encode_to_vec()),
    )
    .unwrap();
    assert_eq!(v["apiVersion"], "apps/v1");
    assert_eq!(v["kind"], "Deployment");
    let spec = &v["spec"];
    assert_eq!(spec["replicas"], 0);
    assert!(spec.get("minReadySeconds").is_none(), "{spec}");
    assert!(spec.get("paused").is_none(), "{spec}");
    // A non-pointer struct is never omitted by Go's JSON: the unset strategy is `{}`.
    assert_eq!(spec["strategy"], json!({}));
    assert_eq!(spec["selector"], json!({"matchLabels": {"app": "web"}}));
    let pod = &spec["template"]["spec"];
    assert_eq!(pod["terminationGracePeriodSeconds"], 0);
    assert!(pod.get("hostNetwork").is_none(), "{pod}");
    assert!(pod.get("nodeSelector").is_none(), "{pod}");
    let c = &pod["containers"][0];
    assert_eq!(
        c,
        &json!({
            "name": "app",
            "image": "nginx:1.27",
            "command": ["sh", "-c"],
            "ports": [
                {"name": "http", "containerPort": 8080, "protocol": "TCP"},
                {"containerPort": 0},
            ],
            "resources": {"limits": {"memory": "128Mi"}, "requests": {"cpu": "100m"}},
            // ProbeHandler is inline in Probe: httpGet sits on the probe itself.
            "livenessProbe": {"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 5},
            "readinessProbe": {"httpGet": {"port": 8080}},
            "securityContext": {"runAsUser": 0, "privileged": false},
        })
    );
}

#[test]
fn times_are_rfc3339_micro_times_keep_microseconds() {
    let lease = Lease {
        metadata: Some(ObjectMeta {
            creation_timestamp: Some(Time {
                seconds: Some(1_700_000_000),
                // metav1.Time marshals whole seconds.
                nanos: Some(999_000_000),
            }),
            ..meta("lock")
        }),
        spec: Some(LeaseSpec {
            holder_identity: s("me"),
            lease_duration_seconds: Some(15),
            renew_time: Some(MicroTime {
                seconds: Some(1_700_000_001),
                nanos: Some(123_456_789),
            }),
            ..Default::default()
        }),
    };
    let v = decode_body(
        &rt("leases"),
        &envelope("coordination.k8s.io/v1", "Lease", lease.encode_to_vec()),
    )
    .unwrap();
    assert_eq!(v["metadata"]["creationTimestamp"], "2023-11-14T22:13:20Z");
    assert_eq!(v["spec"]["renewTime"], "2023-11-14T22:13:21.123456Z");
    assert_eq!(v["spec"]["holderIdentity"], "me");
    assert_eq!(v["spec"]["leaseDurationSeconds"], 15);
    assert!(v["spec"].get("acquireTime").is_none());
}

#[test]
fn repeated_messages_and_unknown_fields() {
    let pod = Pod {
        metadata: Some(meta("p")),
        spec: Some(PodSpec {
            containers: vec![
                Container {
                    name: s("a"),
                    image: s("busybox"),
                    ..Default::default()
                },
                Container {
                    name: s("b"),
                    image: s("nginx"),
                    args: vec!["x".into()],
                    ..Default::default()
                },
            ],
            ..Default::default()
        }),
        status: None,
    };
    let mut raw = pod.encode_to_vec();
    // A field number this server does not know (a newer client's field): skipped, as the Go
    // unmarshallers skip it.
    prost::encoding::encode_key(999, prost::encoding::WireType::Varint, &mut raw);
    prost::encoding::encode_varint(1, &mut raw);
    let v = decode_body(&rt("pods"), &envelope("v1", "Pod", raw)).unwrap();
    let cs = v["spec"]["containers"].as_array().unwrap();
    assert_eq!(cs.len(), 2);
    // resources is a non-pointer struct: Go writes `{}` for it even when unset.
    assert_eq!(
        cs[1],
        json!({"name": "b", "image": "nginx", "args": ["x"], "resources": {}})
    );
    // No status in the body: absent on the wire, so Go's zero PodStatus `{}`.
    assert_eq!(v["status"], json!({}));
}

#[test]
fn claim_keeps_an_empty_storage_class() {
    let pvc = PersistentVolumeClaim {
        metadata: Some(meta("data")),
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: vec!["ReadWriteOnce".into()],
            resources: Some(VolumeResourceRequirements {
                requests: BTreeMap::from([("storage".to_string(), Quantity { string: s("1Gi") })]),
                limits: BTreeMap::new(),
            }),
            // *string set to "": "no class", which Go keeps (unlike an omitempty string).
            storage_class_name: s(""),
            volume_mode: None,
            ..Default::default()
        }),
        status: None,
    };
    let v = decode_body(
        &rt("persistentvolumeclaims"),
        &envelope("v1", "PersistentVolumeClaim", pvc.encode_to_vec()),
    )
    .unwrap();
    assert_eq!(
        v["spec"],
        json!({
            "accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": "1Gi"}},
            "storageClassName": "",
        })
    );
}

#[test]
fn envelope_errors() {
    let cm = ConfigMap {
        metadata: Some(meta("x")),
        ..Default::default()
    }
    .encode_to_vec();
    // No magic prefix.
    let e = decode_body(&rt("configmaps"), &cm).unwrap_err();
    assert_eq!(e.code, 400);
    assert!(
        e.message
            .contains("does not appear to be a protobuf message"),
        "{}",
        e.message
    );
    // A kind the server has no type for.
    let e = decode_body(&rt("configmaps"), &envelope("v1", "Nope", cm.clone())).unwrap_err();
    assert_eq!(e.code, 400);
    assert!(e.message.contains("no kind \"Nope\""), "{}", e.message);
    // An object cut short inside a field.
    let cut = cm[..cm.len() - 1].to_vec();
    let e = decode_body(&rt("configmaps"), &envelope("v1", "ConfigMap", cut)).unwrap_err();
    assert_eq!(e.code, 400);
    assert_eq!(e.message, "error decoding body: unexpected EOF");
    // An empty typeMeta falls back to the resource's own kind, as the serializer's default.
    let unknown = Unknown {
        type_meta: None,
        raw: Some(cm.clone()),
        ..Default::default()
    };
    let mut body = b"k8s\0".to_vec();
    body.extend(unknown.encode_to_vec());
    let v = decode_body(&rt("configmaps"), &body).unwrap();
    assert_eq!(v["kind"], "ConfigMap");
    assert_eq!(v["metadata"]["name"], "x");
    // Custom resources have no protobuf form: 415, as apiextensions-apiserver answers.
    let e = decode_body(
        &rt("rollouts"),
        &envelope("argoproj.io/v1alpha1", "Rollout", cm),
    )
    .unwrap_err();
    assert_eq!(e.code, 415);
    assert_eq!(e.reason, "UnsupportedMediaType");
}

async fn proto_request(port: u16, method: &str, path: &str, body: Vec<u8>) -> common::Resp {
    send(
        port,
        method,
        path,
        &[
            ("Content-Type", CONTENT_TYPE),
            (
                "Accept",
                "application/vnd.kubernetes.protobuf,application/json",
            ),
        ],
        Some(ADMIN_TOKEN),
        Some(body),
        Duration::from_secs(10),
    )
    .await
}

#[tokio::test]
async fn http_create_and_update_take_protobuf_and_answer_json() {
    let fake = plain_cluster().await;
    let port = fake.port();
    let cm = |value: &str, rv: Option<String>| ConfigMap {
        metadata: Some(ObjectMeta {
            resource_version: rv,
            ..meta("settings")
        }),
        data: BTreeMap::from([("a".to_string(), value.to_string())]),
        ..Default::default()
    };
    let path = "/api/v1/namespaces/default/configmaps";
    let r = proto_request(
        port,
        "POST",
        path,
        envelope("v1", "ConfigMap", cm("1", None).encode_to_vec()),
    )
    .await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.content_type, "application/json");
    let created = r.json();
    assert_eq!(created["data"], json!({"a": "1"}));
    let rv = created["metadata"]["resourceVersion"].as_str().unwrap();

    let r = proto_request(
        port,
        "PUT",
        &format!("{path}/settings"),
        envelope("v1", "ConfigMap", cm("2", s(rv)).encode_to_vec()),
    )
    .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let got = admin(port, "GET", &format!("{path}/settings"), None)
        .await
        .json();
    assert_eq!(got["data"], json!({"a": "2"}));
    assert_eq!(got["metadata"]["labels"], json!({"app": "web"}));

    // A custom resource in protobuf: 415 with the upstream Status, not a JSON parse error.
    let r = proto_request(
        port,
        "POST",
        "/apis/argoproj.io/v1alpha1/namespaces/default/rollouts",
        envelope("argoproj.io/v1alpha1", "Rollout", vec![]),
    )
    .await;
    assert_eq!(r.status, 415);
    let status = r.json();
    assert_eq!(status["reason"], "UnsupportedMediaType");
    assert_eq!(
        status["message"],
        "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml"
    );
}
