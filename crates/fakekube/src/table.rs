//! `meta.k8s.io/v1 Table` answers for `kubectl get` (Accept `...;as=Table;...`), shaped like
//! table.json: column definitions, then one row per object with cells and the object as
//! `PartialObjectMetadata`. Columns follow upstream's printers for the common kinds; other
//! kinds get NAME and AGE, as custom resources without printer columns do.

use std::sync::Arc;

use serde_json::{json, Value};

use crate::registry::ResourceType;

pub(crate) fn wants_table(accept: &str) -> bool {
    accept
        .split(',')
        .next()
        .is_some_and(|first| first.contains("as=Table"))
}

fn col(name: &str, ty: &str, priority: u8) -> Value {
    let format = if name == "Name" { "name" } else { "" };
    json!({"name": name, "type": ty, "format": format, "description": "", "priority": priority})
}

/// kubectl's `duration.HumanDuration`.
pub(crate) fn human_duration(secs: i64) -> String {
    let s = secs.max(0);
    if s < 120 {
        return format!("{s}s");
    }
    let m = s / 60;
    if m < 10 {
        let rem = s % 60;
        return if rem == 0 {
            format!("{m}m")
        } else {
            format!("{m}m{rem}s")
        };
    }
    if m < 180 {
        return format!("{m}m");
    }
    let h = m / 60;
    if h < 8 {
        let rem = m % 60;
        return if rem == 0 {
            format!("{h}h")
        } else {
            format!("{h}h{rem}m")
        };
    }
    if h < 48 {
        return format!("{h}h");
    }
    let d = h / 24;
    if d < 8 {
        let rem = h % 24;
        return if rem == 0 {
            format!("{d}d")
        } else {
            format!("{d}d{rem}h")
        };
    }
    if d < 365 * 2 {
        return format!("{d}d");
    }
    format!("{}y", d / 365)
}

fn age(obj: &Value) -> String {
    obj["metadata"]["creationTimestamp"]
        .as_str()
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .map(|t| human_duration((chrono::Utc::now() - t.with_timezone(&chrono::Utc)).num_seconds()))
        .unwrap_or_else(|| "<unknown>".into())
}

fn int(v: &Value) -> i64 {
    v.as_i64().unwrap_or(0)
}

/// READY, STATUS, RESTARTS of a pod, as kubectl's pod printer computes them (simplified).
fn pod_cells(p: &Value) -> (String, String, i64) {
    let statuses = p["status"]["containerStatuses"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let total = p["spec"]["containers"]
        .as_array()
        .map(|a| a.len())
        .unwrap_or(0);
    let ready = statuses
        .iter()
        .filter(|c| c["ready"].as_bool() == Some(true))
        .count();
    let restarts: i64 = statuses.iter().map(|c| int(&c["restartCount"])).sum();
    let mut reason = p["status"]["reason"]
        .as_str()
        .or(p["status"]["phase"].as_str())
        .unwrap_or("Pending")
        .to_string();
    for c in &statuses {
        if let Some(r) = c["state"]["waiting"]["reason"].as_str() {
            reason = r.to_string();
        } else if let Some(r) = c["state"]["terminated"]["reason"].as_str() {
            reason = r.to_string();
        }
    }
    if !p["metadata"]["deletionTimestamp"].is_null() {
        reason = "Terminating".into();
    }
    (format!("{ready}/{total}"), reason, restarts)
}

fn columns_and_cells(rt: &ResourceType, objs: &[Arc<Value>]) -> (Vec<Value>, Vec<Vec<Value>>) {
    let name = |o: &Value| json!(o["metadata"]["name"]);
    match (rt.group, rt.plural) {
        ("", "pods") => (
            vec![
                col("Name", "string", 0),
                col("Ready", "string", 0),
                col("Status", "string", 0),
                col("Restarts", "string", 0),
                col("Age", "string", 0),
                col("IP", "string", 1),
                col("Node", "string", 1),
            ],
            objs.iter()
                .map(|o| {
                    let (ready, status, restarts) = pod_cells(o);
                    vec![
                        name(o),
                        json!(ready),
                        json!(status),
                        json!(restarts.to_string()),
                        json!(age(o)),
                        json!(o["status"]["podIP"].as_str().unwrap_or("<none>")),
                        json!(o["spec"]["nodeName"].as_str().unwrap_or("<none>")),
                    ]
                })
                .collect(),
        ),
        ("apps", "deployments") => (
            vec![
                col("Name", "string", 0),
                col("Ready", "string", 0),
                col("Up-to-date", "integer", 0),
                col("Available", "integer", 0),
                col("Age", "string", 0),
            ],
            objs.iter()
                .map(|o| {
                    let s = &o["status"];
                    vec![
                        name(o),
                        json!(format!(
                            "{}/{}",
                            int(&s["readyReplicas"]),
                            int(&o["spec"]["replicas"])
                        )),
                        json!(int(&s["updatedReplicas"])),
                        json!(int(&s["availableReplicas"])),
                        json!(age(o)),
                    ]
                })
                .collect(),
        ),
        ("apps", "statefulsets") => (
            vec![
                col("Name", "string", 0),
                col("Ready", "string", 0),
                col("Age", "string", 0),
            ],
            objs.iter()
                .map(|o| {
                    vec![
                        name(o),
                        json!(format!(
                            "{}/{}",
                            int(&o["status"]["readyReplicas"]),
                            int(&o["spec"]["replicas"])
                        )),
                        json!(age(o)),
                    ]
                })
                .collect(),
        ),
        ("apps", "replicasets") => (
            vec![
                col("Name", "string", 0),
                col("Desired", "integer", 0),
                col("Current", "integer", 0),
                col("Ready", "integer", 0),
                col("Age", "string", 0),
            ],
            objs.iter()
                .map(|o| {
                    vec![
                        name(o),
                        json!(int(&o["spec"]["replicas"])),
                        json!(int(&o["status"]["replicas"])),
                        json!(int(&o["status"]["readyReplicas"])),
                        json!(age(o)),
                    ]
                })
                .collect(),
        ),
        // printEndpointSlice: ports and addresses comma-joined, at most three addresses
        // ("+ N more..."), `<unset>` for none (`kubectl get endpointslices` on the kit).
        ("discovery.k8s.io", "endpointslices") => (
            vec![
                col("Name", "string", 0),
                col("AddressType", "string", 0),
                col("Ports", "string", 0),
                col("Endpoints", "string", 0),
                col("Age", "string", 0),
            ],
            objs.iter()
                .map(|o| {
                    let ports: Vec<String> = o["ports"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|p| int(&p["port"]).to_string())
                        .collect();
                    let addrs: Vec<&str> = o["endpoints"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .flat_map(|e| e["addresses"].as_array().into_iter().flatten())
                        .filter_map(Value::as_str)
                        .collect();
                    let unset = |v: String| {
                        if v.is_empty() {
                            "<unset>".to_string()
                        } else {
                            v
                        }
                    };
                    let mut eps = addrs.iter().take(3).cloned().collect::<Vec<_>>().join(",");
                    if addrs.len() > 3 {
                        eps.push_str(&format!(" + {} more...", addrs.len() - 3));
                    }
                    vec![
                        name(o),
                        json!(o["addressType"].as_str().unwrap_or("")),
                        json!(unset(ports.join(","))),
                        json!(unset(eps)),
                        json!(age(o)),
                    ]
                })
                .collect(),
        ),
        ("", "configmaps") => (
            vec![
                col("Name", "string", 0),
                col("Data", "string", 0),
                col("Age", "string", 0),
            ],
            objs.iter()
                .map(|o| {
                    let n = o["data"].as_object().map(|m| m.len()).unwrap_or(0)
                        + o["binaryData"].as_object().map(|m| m.len()).unwrap_or(0);
                    vec![name(o), json!(n), json!(age(o))]
                })
                .collect(),
        ),
        ("", "services") => (
            vec![
                col("Name", "string", 0),
                col("Type", "string", 0),
                col("Cluster-IP", "string", 0),
                col("External-IP", "string", 0),
                col("Port(s)", "string", 0),
                col("Age", "string", 0),
            ],
            objs.iter()
                .map(|o| {
                    let ports: Vec<String> = o["spec"]["ports"]
                        .as_array()
                        .map(|ps| {
                            ps.iter()
                                .map(|p| {
                                    format!(
                                        "{}/{}",
                                        int(&p["port"]),
                                        p["protocol"].as_str().unwrap_or("TCP")
                                    )
                                })
                                .collect()
                        })
                        .unwrap_or_default();
                    vec![
                        name(o),
                        json!(o["spec"]["type"].as_str().unwrap_or("ClusterIP")),
                        json!(o["spec"]["clusterIP"].as_str().unwrap_or("<none>")),
                        json!("<none>"),
                        json!(if ports.is_empty() {
                            "<none>".to_string()
                        } else {
                            ports.join(",")
                        }),
                        json!(age(o)),
                    ]
                })
                .collect(),
        ),
        ("batch", "jobs") => (
            vec![
                col("Name", "string", 0),
                col("Status", "string", 0),
                col("Completions", "string", 0),
                col("Age", "string", 0),
            ],
            objs.iter()
                .map(|o| {
                    let s = &o["status"];
                    let status = if int(&s["succeeded"]) >= int(&o["spec"]["completions"]).max(1) {
                        "Complete"
                    } else if int(&s["failed"]) > 0 && int(&s["active"]) == 0 {
                        "Failed"
                    } else {
                        "Running"
                    };
                    vec![
                        name(o),
                        json!(status),
                        json!(format!(
                            "{}/{}",
                            int(&s["succeeded"]),
                            int(&o["spec"]["completions"]).max(1)
                        )),
                        json!(age(o)),
                    ]
                })
                .collect(),
        ),
        ("batch", "cronjobs") => (
            vec![
                col("Name", "string", 0),
                col("Schedule", "string", 0),
                col("Suspend", "boolean", 0),
                col("Active", "integer", 0),
                col("Age", "string", 0),
            ],
            objs.iter()
                .map(|o| {
                    vec![
                        name(o),
                        json!(o["spec"]["schedule"]),
                        json!(o["spec"]["suspend"].as_bool().unwrap_or(false)),
                        json!(o["status"]["active"]
                            .as_array()
                            .map(|a| a.len())
                            .unwrap_or(0)),
                        json!(age(o)),
                    ]
                })
                .collect(),
        ),
        ("", "events") => (
            vec![
                col("Last Seen", "string", 0),
                col("Type", "string", 0),
                col("Reason", "string", 0),
                col("Object", "string", 0),
                col("Message", "string", 0),
            ],
            objs.iter()
                .map(|o| {
                    let last = o["lastTimestamp"]
                        .as_str()
                        .or(o["eventTime"].as_str())
                        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                        .map(|t| {
                            human_duration(
                                (chrono::Utc::now() - t.with_timezone(&chrono::Utc)).num_seconds(),
                            )
                        })
                        .unwrap_or_else(|| age(o));
                    let inv = &o["involvedObject"];
                    vec![
                        json!(last),
                        json!(o["type"].as_str().unwrap_or("Normal")),
                        json!(o["reason"].as_str().unwrap_or("")),
                        json!(format!(
                            "{}/{}",
                            inv["kind"].as_str().unwrap_or("").to_lowercase(),
                            inv["name"].as_str().unwrap_or("")
                        )),
                        json!(o["message"].as_str().unwrap_or("")),
                    ]
                })
                .collect(),
        ),
        // printPersistentVolumeClaim: capacity and access modes from the status once bound
        // (spec.volumeName set); an unset class prints empty, an unset attributes class
        // `<unset>`.
        ("", "persistentvolumeclaims") => (
            vec![
                col("Name", "string", 0),
                col("Status", "string", 0),
                col("Volume", "string", 0),
                col("Capacity", "string", 0),
                col("Access Modes", "string", 0),
                col("StorageClass", "string", 0),
                col("VolumeAttributesClass", "string", 0),
                col("Age", "string", 0),
                col("VolumeMode", "string", 1),
            ],
            objs.iter()
                .map(|o| {
                    let volume = o["spec"]["volumeName"].as_str().unwrap_or("");
                    let (capacity, modes) = if volume.is_empty() {
                        (String::new(), String::new())
                    } else {
                        let modes: Vec<&str> = o["status"]["accessModes"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .filter_map(Value::as_str)
                            .collect();
                        (
                            o["status"]["capacity"]["storage"]
                                .as_str()
                                .unwrap_or("")
                                .to_string(),
                            crate::volumes::access_modes_short(&modes),
                        )
                    };
                    let phase = if o["metadata"]["deletionTimestamp"].is_null() {
                        o["status"]["phase"].as_str().unwrap_or("")
                    } else {
                        "Terminating"
                    };
                    vec![
                        name(o),
                        json!(phase),
                        json!(volume),
                        json!(capacity),
                        json!(modes),
                        json!(o["spec"]["storageClassName"].as_str().unwrap_or("")),
                        json!(o["spec"]["volumeAttributesClassName"]
                            .as_str()
                            .unwrap_or("<unset>")),
                        json!(age(o)),
                        json!(o["spec"]["volumeMode"].as_str().unwrap_or("<unset>")),
                    ]
                })
                .collect(),
        ),
        ("", "namespaces") => (
            vec![
                col("Name", "string", 0),
                col("Status", "string", 0),
                col("Age", "string", 0),
            ],
            objs.iter()
                .map(|o| {
                    vec![
                        name(o),
                        json!(o["status"]["phase"].as_str().unwrap_or("Active")),
                        json!(age(o)),
                    ]
                })
                .collect(),
        ),
        _ => (
            vec![col("Name", "string", 0), col("Age", "string", 0)],
            objs.iter().map(|o| vec![name(o), json!(age(o))]).collect(),
        ),
    }
}

/// A Table of `objs`; `list_meta` is the list's metadata (resourceVersion, continue).
pub(crate) fn table(rt: &ResourceType, objs: &[Arc<Value>], list_meta: Value) -> Value {
    let (columns, cells) = columns_and_cells(rt, objs);
    let rows: Vec<Value> = objs
        .iter()
        .zip(cells)
        .map(|(o, c)| {
            json!({"cells": c, "object": {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": o["metadata"]}})
        })
        .collect();
    json!({"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": list_meta,
           "columnDefinitions": columns, "rows": rows})
}
