//! Discovery documents, shaped like discovery.json: /version, /api, /apis, /apis/G,
//! /api/v1 and /apis/G/V, and the aggregated `apidiscovery.k8s.io/v2` form that kubectl and
//! kube's discovery ask for with `Accept: application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList`.

use serde_json::{json, Value};

use crate::registry::ResourceType;

/// The content type of an aggregated discovery answer.
pub(crate) const AGGREGATED_CONTENT_TYPE: &str =
    "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";

/// Whether the Accept header asks for aggregated discovery (v2).
pub(crate) fn wants_aggregated(accept: &str) -> bool {
    accept.split(',').any(|a| {
        a.contains("as=APIGroupDiscoveryList")
            && a.contains("g=apidiscovery.k8s.io")
            && a.contains("v=v2")
            && !a.contains("v=v2beta1")
    })
}

pub(crate) fn version() -> Value {
    json!({
        "major": "1", "minor": "36", "emulationMajor": "1", "emulationMinor": "36",
        "minCompatibilityMajor": "1", "minCompatibilityMinor": "35",
        "gitVersion": "v1.36.2-fakekube", "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean", "buildDate": "2026-11-22T00:00:00Z", "goVersion": "go1.26.6",
        "compiler": "gc", "platform": "linux/amd64"
    })
}

pub(crate) fn api_versions(server_address: &str) -> Value {
    json!({"kind": "APIVersions", "versions": ["v1"],
           "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}]})
}

/// Named groups in registration order, each with its versions.
fn groups(types: &[ResourceType]) -> Vec<(&'static str, Vec<&'static str>)> {
    let mut out: Vec<(&'static str, Vec<&'static str>)> = Vec::new();
    for t in types.iter().filter(|t| !t.group.is_empty()) {
        match out.iter_mut().find(|(g, _)| *g == t.group) {
            Some((_, vs)) => {
                if !vs.contains(&t.version) {
                    vs.push(t.version)
                }
            }
            None => out.push((t.group, vec![t.version])),
        }
    }
    out
}

fn group_json(group: &str, versions: &[&str]) -> Value {
    let vs: Vec<Value> = versions
        .iter()
        .map(|v| json!({"groupVersion": format!("{group}/{v}"), "version": v}))
        .collect();
    json!({"name": group, "versions": vs, "preferredVersion": vs[0]})
}

pub(crate) fn api_group_list(types: &[ResourceType]) -> Value {
    let gs: Vec<Value> = groups(types)
        .iter()
        .map(|(g, vs)| group_json(g, vs))
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": gs})
}

pub(crate) fn api_group(types: &[ResourceType], group: &str) -> Option<Value> {
    groups(types)
        .iter()
        .find(|(g, _)| *g == group)
        .map(|(g, vs)| {
            let mut v = group_json(g, vs);
            v["kind"] = json!("APIGroup");
            v["apiVersion"] = json!("v1");
            v
        })
}

fn sub_verbs(sub: &str) -> Vec<&'static str> {
    match sub {
        "status" | "scale" => vec!["get", "patch", "update"],
        _ => vec!["get"],
    }
}

fn base_resource(t: &ResourceType) -> Value {
    let mut r = json!({
        "name": t.plural, "singularName": t.singular, "namespaced": t.namespaced,
        "kind": t.kind, "verbs": t.verbs,
    });
    if !t.short_names.is_empty() {
        r["shortNames"] = json!(t.short_names);
    }
    if !t.categories.is_empty() {
        r["categories"] = json!(t.categories);
    }
    r
}

/// `GET /api/v1` or `/apis/G/V`; None when nothing is served there.
pub(crate) fn api_resource_list(
    types: &[ResourceType],
    group: &str,
    version: &str,
) -> Option<Value> {
    let mut resources = Vec::new();
    for t in types
        .iter()
        .filter(|t| t.group == group && t.version == version)
    {
        resources.push(base_resource(t));
        for sub in t.subresources {
            let mut r = json!({"name": format!("{}/{sub}", t.plural), "singularName": "",
                               "namespaced": t.namespaced, "kind": t.kind, "verbs": sub_verbs(sub)});
            if *sub == "scale" {
                r["group"] = json!("autoscaling");
                r["version"] = json!("v1");
                r["kind"] = json!("Scale");
            }
            resources.push(r);
        }
    }
    if resources.is_empty() {
        return None;
    }
    let gv = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    let mut v = json!({"kind": "APIResourceList", "groupVersion": gv, "resources": resources});
    if !group.is_empty() {
        v["apiVersion"] = json!("v1");
    }
    Some(v)
}

fn aggregated_resource(t: &ResourceType) -> Value {
    let mut r = json!({
        "resource": t.plural,
        "responseKind": {"group": "", "version": "", "kind": t.kind},
        "scope": if t.namespaced { "Namespaced" } else { "Cluster" },
        "singularResource": t.singular,
        "verbs": t.verbs,
    });
    if !t.short_names.is_empty() {
        r["shortNames"] = json!(t.short_names);
    }
    if !t.categories.is_empty() {
        r["categories"] = json!(t.categories);
    }
    if !t.subresources.is_empty() {
        let subs: Vec<Value> = t
            .subresources
            .iter()
            .map(|s| {
                let kind = if *s == "scale" {
                    json!({"group": "autoscaling", "version": "v1", "kind": "Scale"})
                } else {
                    json!({"group": "", "version": "", "kind": t.kind})
                };
                json!({"subresource": s, "responseKind": kind, "verbs": sub_verbs(s)})
            })
            .collect();
        r["subresources"] = json!(subs);
    }
    r
}

/// The aggregated document for `/api` (core = true) or `/apis`.
pub(crate) fn aggregated(types: &[ResourceType], core: bool) -> Value {
    let items: Vec<Value> = if core {
        let rs: Vec<Value> = types
            .iter()
            .filter(|t| t.group.is_empty())
            .map(aggregated_resource)
            .collect();
        vec![
            json!({"metadata": {}, "versions": [{"version": "v1", "resources": rs, "freshness": "Current"}]}),
        ]
    } else {
        groups(types)
            .iter()
            .map(|(g, vs)| {
                let versions: Vec<Value> = vs
                    .iter()
                    .map(|v| {
                        let rs: Vec<Value> = types
                            .iter()
                            .filter(|t| t.group == *g && t.version == *v)
                            .map(aggregated_resource)
                            .collect();
                        json!({"version": v, "resources": rs, "freshness": "Current"})
                    })
                    .collect();
                json!({"metadata": {"name": g}, "versions": versions})
            })
            .collect()
    };
    json!({"kind": "APIGroupDiscoveryList", "apiVersion": "apidiscovery.k8s.io/v2", "metadata": {}, "items": items})
}

/// `GET /openapi/v3`: the index of per-group-version documents.
pub(crate) fn openapi_v3_root(types: &[ResourceType]) -> Value {
    let mut paths = serde_json::Map::new();
    let mut seen = Vec::new();
    for t in types {
        let p = if t.group.is_empty() {
            format!("api/{}", t.version)
        } else {
            format!("apis/{}/{}", t.group, t.version)
        };
        if !seen.contains(&p) {
            paths.insert(
                p.clone(),
                json!({"serverRelativeURL": format!("/openapi/v3/{p}?hash=fakekube")}),
            );
            seen.push(p);
        }
    }
    json!({"paths": paths})
}

/// `GET /openapi/v3/api/v1` or `/openapi/v3/apis/G/V`: operations only, no schemas. This is
/// what kubectl reads to learn that the server validates fields itself (`fieldValidation` on
/// PATCH), so it skips client-side schema validation; `kubectl explain` gets nothing useful.
pub(crate) fn openapi_v3_gv(types: &[ResourceType], group: &str, version: &str) -> Option<Value> {
    let mut paths = serde_json::Map::new();
    let params = json!([
        {"name": "fieldValidation", "in": "query", "schema": {"type": "string", "uniqueItems": true}},
        {"name": "fieldManager", "in": "query", "schema": {"type": "string", "uniqueItems": true}},
        {"name": "dryRun", "in": "query", "schema": {"type": "string", "uniqueItems": true}},
        {"name": "force", "in": "query", "schema": {"type": "boolean", "uniqueItems": true}}
    ]);
    for t in types
        .iter()
        .filter(|t| t.group == group && t.version == version)
    {
        let prefix = if group.is_empty() {
            format!("/api/{version}")
        } else {
            format!("/apis/{group}/{version}")
        };
        let base = if t.namespaced {
            format!("{prefix}/namespaces/{{namespace}}/{}", t.plural)
        } else {
            format!("{prefix}/{}", t.plural)
        };
        let gvk = json!({"group": group, "version": version, "kind": t.kind});
        let op = |action: &str| {
            json!({"operationId": format!("{action}{}", t.kind), "x-kubernetes-action": action,
                   "x-kubernetes-group-version-kind": gvk, "parameters": params,
                   "responses": {"200": {"description": "OK"}}})
        };
        // The operations of the verbs served (a create-only type has just `post`), as the
        // installer registers routes.
        let ops = |pairs: &[(&str, &str, &str)]| -> serde_json::Map<String, Value> {
            pairs
                .iter()
                .filter(|(verb, _, _)| t.verbs.contains(verb))
                .map(|(_, method, action)| (method.to_string(), op(action)))
                .collect()
        };
        let collection = ops(&[("create", "post", "post"), ("list", "get", "list")]);
        paths.insert(base.clone(), Value::Object(collection));
        let item = ops(&[
            ("get", "get", "get"),
            ("update", "put", "put"),
            ("patch", "patch", "patch"),
            ("delete", "delete", "delete"),
        ]);
        if !item.is_empty() {
            paths.insert(format!("{base}/{{name}}"), Value::Object(item));
        }
    }
    if paths.is_empty() {
        return None;
    }
    Some(
        json!({"openapi": "3.0.0", "info": {"title": "Kubernetes", "version": "v1.36.2"},
                "paths": paths, "components": {"schemas": {}}}),
    )
}
