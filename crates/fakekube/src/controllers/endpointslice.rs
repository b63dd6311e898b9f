//! The EndpointSlice controller (pkg/controller/endpointslice): for every Service with a
//! selector, `discovery.k8s.io/v1` EndpointSlices `<svc>-<5 random>` (generateName `<svc>-`),
//! labels `kubernetes.io/service-name: <svc>`, `endpointslice.kubernetes.io/managed-by:
//! endpointslice-controller.k8s.io`, the Service's own labels and `service.kubernetes.io/headless`
//! for a headless one; a controller ownerReference to the Service; `addressType: IPv4`.
//!
//! Endpoints: every pod of the namespace matching the selector that has a podIP and is not
//! terminal (`ShouldPodBeInEndpoints`, terminating pods included): `addresses: [podIP]`,
//! `conditions` (podToEndpoint: serving = Ready condition True, or publishNotReadyAddresses;
//! terminating = deletionTimestamp set; ready = serving and not terminating, or
//! publishNotReadyAddresses), `nodeName`, `targetRef {kind: Pod, name, namespace, uid}`, and
//! `hostname` when the pod's subdomain is the Service. Ports: each Service port with its
//! target resolved against the pod (a named targetPort the pod's containers do not declare is
//! left out), `name`, `protocol`, `appProtocol`; pods with different port sets go to different
//! slices. No matching pod: one placeholder slice with `endpoints: null, ports: null`. As the
//! real cluster showed them (fk-probe-2: a pod whose readiness gate was unmet listed as `ready:
//! false, serving: false`; a terminating pod as `ready: false, serving: true, terminating:
//! true`; terminal pods dropped).
//!
//! Divergences: ports are ordered by name (upstream by a hash of each port); endpoints by pod
//! name; no 100-endpoint limit per slice; `generation` does not bump on updates; no v1
//! Endpoints objects; no topology hints or zones.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{json, Value};

use super::util::{self, deleting, name, namespace, pod_phase, pod_ready, uid};
use super::{controller_ref, rt, Controllers, Reconciler, PODS};
use crate::selectors::LabelSelector;
use crate::store::{DeleteOptions, ResKey, Store};

const SERVICES: ResKey = ("", "services");
const SLICES: ResKey = ("discovery.k8s.io", "endpointslices");
const MANAGED_BY: &str = "endpointslice.kubernetes.io/managed-by";
const CONTROLLER: &str = "endpointslice-controller.k8s.io";
const SERVICE_NAME: &str = "kubernetes.io/service-name";

pub(super) struct EndpointSliceController;

impl Reconciler for EndpointSliceController {
    const NAME: &'static str = "endpointslice";

    fn watches(&self) -> &'static [ResKey] {
        &[SERVICES, PODS, SLICES]
    }

    fn reconcile(&mut self, store: &Store, _ctl: &Controllers) {
        if store.resource(SLICES.0, SLICES.1).is_none() {
            return;
        }
        let services = util::list_all(store, SERVICES);
        let pods = util::list_all(store, PODS);
        let slices = util::list_all(store, SLICES);
        for svc in &services {
            if deleting(svc) {
                continue;
            }
            let Some(sel) = svc["spec"]["selector"]
                .as_object()
                .filter(|m| !m.is_empty())
            else {
                continue; // a Service without a selector: its slices are someone else's
            };
            let selector = LabelSelector::from_object(&json!({ "matchLabels": sel }));
            let mine: Vec<&Arc<Value>> = slices
                .iter()
                .filter(|s| {
                    namespace(s) == namespace(svc)
                        && s["metadata"]["labels"][SERVICE_NAME] == name(svc)
                        && s["metadata"]["labels"][MANAGED_BY] == CONTROLLER
                })
                .collect();
            let members: Vec<&Arc<Value>> = pods
                .iter()
                .filter(|p| namespace(p) == namespace(svc) && selector.matches_object(p))
                .filter(|p| {
                    p["status"]["podIP"]
                        .as_str()
                        .is_some_and(|ip| !ip.is_empty())
                })
                .filter(|p| !matches!(pod_phase(p), "Succeeded" | "Failed"))
                .collect();
            sync_service(store, svc, &members, &mine);
        }
    }
}

/// The Service's ports as the pod serves them (FindPort).
fn ports_for(svc: &Value, pod: &Value) -> Vec<Value> {
    let mut out: Vec<Value> = Vec::new();
    for sp in svc["spec"]["ports"].as_array().into_iter().flatten() {
        let target = &sp["targetPort"];
        let number = match target {
            Value::Number(n) => n.as_i64(),
            Value::String(s) => s.parse::<i64>().ok().or_else(|| {
                pod["spec"]["containers"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .flat_map(|c| c["ports"].as_array().into_iter().flatten())
                    .find(|p| p["name"] == s.as_str())
                    .and_then(|p| p["containerPort"].as_i64())
            }),
            _ => sp["port"].as_i64(),
        };
        let Some(number) = number else { continue };
        let mut p = json!({
            "name": sp["name"].as_str().unwrap_or(""),
            "port": number,
            "protocol": sp["protocol"].as_str().unwrap_or("TCP"),
        });
        if let Some(a) = sp["appProtocol"].as_str() {
            p["appProtocol"] = json!(a);
        }
        out.push(p);
    }
    out.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
    out
}

/// podToEndpoint.
fn endpoint(svc: &Value, pod: &Value) -> Value {
    let publish = svc["spec"]["publishNotReadyAddresses"] == true;
    let serving = publish || pod_ready(pod);
    let terminating = deleting(pod);
    let ready = publish || (serving && !terminating);
    let mut ep = json!({
        "addresses": [pod["status"]["podIP"]],
        "conditions": {"ready": ready, "serving": serving, "terminating": terminating},
        "targetRef": {"kind": "Pod", "name": name(pod), "namespace": namespace(pod), "uid": uid(pod)},
    });
    if let Some(n) = pod["spec"]["nodeName"].as_str().filter(|n| !n.is_empty()) {
        ep["nodeName"] = json!(n);
    }
    if let Some(h) = pod["spec"]["hostname"].as_str().filter(|h| !h.is_empty()) {
        if pod["spec"]["subdomain"] == name(svc) {
            ep["hostname"] = json!(h);
        }
    }
    ep
}

fn labels_for(svc: &Value) -> Value {
    let mut labels = svc["metadata"]["labels"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    labels.insert(SERVICE_NAME.into(), json!(name(svc)));
    labels.insert(MANAGED_BY.into(), json!(CONTROLLER));
    if svc["spec"]["clusterIP"] == "None" {
        labels.insert("service.kubernetes.io/headless".into(), json!(""));
    }
    Value::Object(labels)
}

fn sync_service(store: &Store, svc: &Arc<Value>, members: &[&Arc<Value>], mine: &[&Arc<Value>]) {
    // port set (as JSON) -> (ports, endpoints)
    let mut groups: BTreeMap<String, (Value, Vec<(String, Value)>)> = BTreeMap::new();
    for p in members {
        let ports = ports_for(svc, p);
        let key = serde_json::to_string(&ports).unwrap_or_default();
        let ports = if ports.is_empty() {
            Value::Null
        } else {
            json!(ports)
        };
        groups
            .entry(key)
            .or_insert_with(|| (ports, Vec::new()))
            .1
            .push((name(p).to_string(), endpoint(svc, p)));
    }
    let mut desired: Vec<(Value, Value)> = groups
        .into_values()
        .map(|(ports, mut eps)| {
            eps.sort_by(|a, b| a.0.cmp(&b.0));
            (
                ports,
                json!(eps.into_iter().map(|e| e.1).collect::<Vec<_>>()),
            )
        })
        .collect();
    if desired.is_empty() {
        desired.push((Value::Null, Value::Null)); // the placeholder slice
    }
    let srt = rt(store, SLICES);
    let labels = labels_for(svc);
    let mut unused: Vec<&Arc<Value>> = mine.to_vec();
    for (ports, endpoints) in desired {
        // Reuse the slice that has these ports, else any left over.
        let pick = unused
            .iter()
            .position(|s| s["ports"] == ports)
            .or(if unused.is_empty() { None } else { Some(0) });
        match pick {
            Some(i) => {
                let s = unused.remove(i);
                if s["ports"] == ports
                    && s["endpoints"] == endpoints
                    && s["metadata"]["labels"] == labels
                    && s["addressType"] == "IPv4"
                {
                    continue;
                }
                let mut o = (**s).clone();
                o["ports"] = ports;
                o["endpoints"] = endpoints;
                o["addressType"] = json!("IPv4");
                o["metadata"]["labels"] = labels.clone();
                o["metadata"]["annotations"]["endpoints.kubernetes.io/last-change-trigger-time"] =
                    json!(util::now());
                let _ = store.update(&srt, Some(namespace(s)), name(s), o, None, false);
            }
            None => {
                let slice = json!({
                    "apiVersion": "discovery.k8s.io/v1",
                    "kind": "EndpointSlice",
                    "metadata": {
                        "generateName": format!("{}-", name(svc)),
                        "labels": labels,
                        "annotations": {"endpoints.kubernetes.io/last-change-trigger-time": util::now()},
                        "ownerReferences": [controller_ref(svc)],
                    },
                    "addressType": "IPv4",
                    "endpoints": endpoints,
                    "ports": ports,
                });
                if let Err(e) = store.create(&srt, Some(namespace(svc)), slice, false) {
                    tracing::debug!("endpointslice for {}: {}", name(svc), e.message);
                }
            }
        }
    }
    for s in unused {
        let opts = DeleteOptions {
            uid: Some(uid(s).to_string()),
            ..Default::default()
        };
        let _ = store.delete(&srt, Some(namespace(s)), name(s), &opts);
    }
}
