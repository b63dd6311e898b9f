//! Seeding a store from multi-document YAML manifests, as `kubectl create -f` would, minus
//! HTTP: each document's namespace (or `default`) is created when missing.

use anyhow::{anyhow, Context};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::store::Store;

/// Parse multi-document YAML into JSON objects, skipping empty documents; `kind: List`
/// documents are flattened.
pub(crate) fn parse_documents(yaml: &str) -> anyhow::Result<Vec<Value>> {
    let mut out = Vec::new();
    for doc in serde_yaml_ng::Deserializer::from_str(yaml) {
        let v = Value::deserialize(doc).context("parsing YAML document")?;
        if v.is_null() {
            continue;
        }
        if v["kind"] == "List" {
            out.extend(v["items"].as_array().cloned().unwrap_or_default());
        } else {
            out.push(v);
        }
    }
    Ok(out)
}

pub(crate) fn seed_yaml(store: &Store, yaml: &str) -> anyhow::Result<()> {
    let ns_rt = store
        .resource("", "namespaces")
        .ok_or_else(|| anyhow!("no namespaces type"))?
        .clone();
    for doc in parse_documents(yaml)? {
        let api_version = doc["apiVersion"].as_str().unwrap_or("").to_string();
        let kind = doc["kind"].as_str().unwrap_or("").to_string();
        let rt = store
            .resource_for_kind(&api_version, &kind)
            .ok_or_else(|| anyhow!("seed: unknown kind {api_version} {kind}"))?
            .clone();
        let ns = doc["metadata"]["namespace"]
            .as_str()
            .unwrap_or("default")
            .to_string();
        if rt.namespaced && store.get(&ns_rt, None, &ns).is_err() {
            store
                .create(&ns_rt, None, json!({"metadata": {"name": ns}}), false)
                .map_err(|e| anyhow!("seed: namespace {ns}: {e}"))?;
        }
        let name = doc["metadata"]["name"].as_str().unwrap_or("").to_string();
        store
            .create(&rt, Some(&ns), doc, false)
            .map_err(|e| anyhow!("seed: {kind} {ns}/{name}: {e}"))?;
    }
    Ok(())
}
