//! LISTs decoded as they arrive: the response body is split into its `items` one at
//! a time and each item is decoded into a small struct holding only the fields the caller
//! reads, so memory does not grow with the size of the list (a 10,000-object response is never
//! held whole, neither as text nor as k8s-openapi objects). One request per collection,
//! without `limit`: the API server (1.34+: streaming list encoding, KEP-5116, and lists from
//! its watch cache) streams the response item by item too, so neither side holds it whole,
//! and a command costs the same round trips at 10 sessions and at 10,000.
//! Pages with `limit` would cost a round trip per 500 objects for nothing. A server that
//! pages anyway (a `continue` token) is followed.
//!
//! The splitter knows just enough JSON to find the top-level `items` array and `metadata`
//! object (strings with escapes, nesting); every item is then parsed by serde_json, so a
//! malformed body is still an error, never a guess.

use std::collections::BTreeMap;

use futures::AsyncReadExt;
use kube::api::{Api, ListParams};
use serde::de::DeserializeOwned;
use serde::Deserialize;

/// The metadata our decisions read. Everything else in an object (managedFields, spec,
/// status) is skipped by the parser without being kept.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Meta {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub namespace: String,
    #[serde(default)]
    pub uid: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Parsed per item, and only what a caller keeps of it stays in memory.
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    #[serde(default)]
    pub deletion_timestamp: Option<String>,
}

/// A ConfigMap: metadata and data (session records, locks).
#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct ConfigMapLite {
    #[serde(default)]
    pub metadata: Meta,
    #[serde(default)]
    pub data: BTreeMap<String, String>,
}

impl ConfigMapLite {
    /// As a k8s-openapi ConfigMap (name, namespace, labels, uid, data), for the parsers that
    /// take one. Built per item and dropped right after.
    pub(crate) fn to_config_map(&self) -> k8s_openapi::api::core::v1::ConfigMap {
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
        k8s_openapi::api::core::v1::ConfigMap {
            metadata: ObjectMeta {
                name: Some(self.metadata.name.clone()),
                namespace: Some(self.metadata.namespace.clone()),
                uid: (!self.metadata.uid.is_empty()).then(|| self.metadata.uid.clone()),
                labels: Some(self.metadata.labels.clone()),
                ..Default::default()
            },
            data: Some(self.data.clone()),
            ..Default::default()
        }
    }
}

/// A Pod: metadata and phase (copy pods).
#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct PodLite {
    #[serde(default)]
    pub metadata: Meta,
    #[serde(default)]
    pub status: PodStatusLite,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct PodStatusLite {
    #[serde(default)]
    pub phase: Option<String>,
    /// Why the pod is in its phase (`Evicted`), as kubectl shows it in STATUS.
    #[serde(default)]
    pub reason: Option<String>,
}

impl PodLite {
    /// What `status` shows for a copy pod: `Terminating` once deleted, its `reason` when the
    /// kubelet gave one (`Evicted`), else its phase (`Pending` until it has one).
    pub(crate) fn shown_phase(&self) -> String {
        if self.metadata.deletion_timestamp.is_some() {
            return "Terminating".to_string();
        }
        match (&self.status.reason, &self.status.phase) {
            (Some(reason), _) if !reason.is_empty() => reason.clone(),
            (_, Some(phase)) => phase.clone(),
            _ => "Pending".to_string(),
        }
    }
}

/// The list's own metadata: where the next page starts.
#[derive(Debug, Default, Deserialize)]
struct ListMeta {
    #[serde(default, rename = "continue")]
    continue_: Option<String>,
}

/// LIST `api`'s collection (the Api's namespace, or all) with `selector`, calling `each` on
/// every item as it is decoded. One request, whatever the size.
pub(crate) async fn for_each<K, T>(
    api: &Api<K>,
    client: &kube::Client,
    selector: Option<&str>,
    mut each: impl FnMut(T),
) -> Result<(), kube::Error>
where
    K: kube::Resource,
    T: DeserializeOwned,
{
    let mut lp = ListParams::default();
    if let Some(s) = selector {
        lp = lp.labels(s);
    }
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        let request = kube::core::Request::new(api.resource_url())
            .list(&lp)
            .map_err(kube::Error::BuildRequest)?;
        let mut body = client.request_stream(request).await?;
        let mut splitter = Splitter::default();
        loop {
            let n = body
                .read(&mut chunk)
                .await
                .map_err(kube::Error::ReadEvents)?;
            if n == 0 {
                break;
            }
            splitter
                .feed(&chunk[..n], &mut |item| {
                    each(serde_json::from_slice::<T>(item)?);
                    Ok(())
                })
                .map_err(kube::Error::SerdeError)?;
        }
        splitter.finish().map_err(kube::Error::SerdeError)?;
        let meta: ListMeta = match splitter.list_meta.is_empty() {
            true => ListMeta::default(),
            false => {
                serde_json::from_slice(&splitter.list_meta).map_err(kube::Error::SerdeError)?
            }
        };
        match meta.continue_.filter(|c| !c.is_empty()) {
            Some(token) => lp = lp.continue_token(&token),
            None => return Ok(()),
        }
    }
}

/// Splits a Kubernetes list body (`{"kind":..,"metadata":{..},"items":[{..},..]}`) into the
/// bytes of each item, across arbitrary chunk boundaries.
#[derive(Default)]
struct Splitter {
    depth: usize,
    in_string: bool,
    escaped: bool,
    /// The last string completed at depth 1 (the key of the next depth-1 value).
    key: Vec<u8>,
    /// Collecting `key` (a string opened at depth 1).
    in_key: bool,
    /// Inside the top-level `items` array.
    in_items: bool,
    /// Bytes of the item being read (its start in the current chunk is `start`).
    item: Vec<u8>,
    capturing: bool,
    /// Capturing the list's own `metadata` object (into `list_meta`) rather than an item.
    capturing_meta: bool,
    /// The list's `metadata` object, once read (its `continue` token).
    list_meta: Vec<u8>,
    seen_any: bool,
}

type OnItem<'a> = dyn FnMut(&[u8]) -> Result<(), serde_json::Error> + 'a;

impl Splitter {
    fn feed(&mut self, chunk: &[u8], on_item: &mut OnItem<'_>) -> Result<(), serde_json::Error> {
        let mut start = 0;
        for (i, &b) in chunk.iter().enumerate() {
            if self.in_string {
                if self.escaped {
                    self.escaped = false;
                } else if b == b'\\' {
                    self.escaped = true;
                } else if b == b'"' {
                    self.in_string = false;
                    self.in_key = false;
                    continue;
                }
                if self.in_key {
                    self.key.push(b);
                }
                continue;
            }
            match b {
                b'"' => {
                    self.in_string = true;
                    if self.depth == 1 {
                        self.in_key = true;
                        self.key.clear();
                    }
                }
                b'{' | b'[' => {
                    self.seen_any = true;
                    if self.depth == 1 && b == b'[' && self.key == b"items" {
                        self.in_items = true;
                    } else if self.depth == 1 && b == b'{' && self.key == b"metadata" {
                        self.capturing = true;
                        self.capturing_meta = true;
                        start = i;
                    } else if self.depth == 2 && self.in_items {
                        self.capturing = true;
                        start = i;
                    }
                    self.depth += 1;
                }
                b'}' | b']' => {
                    if self.depth == 0 {
                        return Err(invalid("unbalanced list body"));
                    }
                    self.depth -= 1;
                    if self.depth == 1 && self.capturing_meta {
                        self.capturing = false;
                        self.capturing_meta = false;
                        self.item.extend_from_slice(&chunk[start..=i]);
                        self.list_meta = std::mem::take(&mut self.item);
                    } else if self.depth == 2 && self.capturing && !self.capturing_meta {
                        self.capturing = false;
                        if self.item.is_empty() {
                            on_item(&chunk[start..=i])?;
                        } else {
                            self.item.extend_from_slice(&chunk[start..=i]);
                            let item = std::mem::take(&mut self.item);
                            on_item(&item)?;
                            self.item = item;
                            self.item.clear();
                        }
                    } else if self.depth == 1 && self.in_items {
                        self.in_items = false;
                    }
                }
                _ => {}
            }
        }
        if self.capturing {
            self.item.extend_from_slice(&chunk[start..]);
        }
        Ok(())
    }

    fn finish(&self) -> Result<(), serde_json::Error> {
        if self.depth != 0 || self.in_string || !self.seen_any {
            return Err(invalid("truncated list body"));
        }
        Ok(())
    }
}

fn invalid(what: &str) -> serde_json::Error {
    use serde::de::Error as _;
    serde_json::Error::custom(what)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(body: &str, chunk: usize) -> Result<Vec<String>, serde_json::Error> {
        let mut s = Splitter::default();
        let mut out = Vec::new();
        for c in body.as_bytes().chunks(chunk) {
            s.feed(c, &mut |item| {
                out.push(String::from_utf8(item.to_vec()).unwrap());
                Ok(())
            })?;
        }
        s.finish()?;
        Ok(out)
    }

    #[test]
    fn items_are_split_whatever_the_chunking() {
        let body = r#"{"kind":"ConfigMapList","apiVersion":"v1","metadata":{"resourceVersion":"7","items":[{"x":1}]},
            "items":[{"metadata":{"name":"a \"}{[\\"},"data":{"k":"]"}},
            {"metadata":{"name":"b","labels":{"items":"["}},"data":{"l":[1,{"m":2}]}}],"extra":[{"no":1}]}"#;
        let want = vec![
            r#"{"metadata":{"name":"a \"}{[\\"},"data":{"k":"]"}}"#.to_string(),
            r#"{"metadata":{"name":"b","labels":{"items":"["}},"data":{"l":[1,{"m":2}]}}"#
                .to_string(),
        ];
        for chunk in [1, 2, 3, 7, 64, 10_000] {
            assert_eq!(split(body, chunk).unwrap(), want, "chunk {chunk}");
        }
        let parsed: ConfigMapLite = serde_json::from_str(&want[0]).unwrap();
        assert_eq!(parsed.metadata.name, "a \"}{[\\");
    }

    #[test]
    fn the_list_metadata_gives_the_next_page() {
        let body = r#"{"kind":"ConfigMapList","metadata":{"resourceVersion":"9","continue":"tok\"en"},"items":[{"a":1}]}"#;
        for chunk in [1, 5, 1000] {
            let mut s = Splitter::default();
            let mut items = 0;
            for c in body.as_bytes().chunks(chunk) {
                s.feed(c, &mut |_| {
                    items += 1;
                    Ok(())
                })
                .unwrap();
            }
            s.finish().unwrap();
            let meta: ListMeta = serde_json::from_slice(&s.list_meta).unwrap();
            assert_eq!(meta.continue_.as_deref(), Some("tok\"en"), "chunk {chunk}");
            assert_eq!(items, 1);
        }
    }

    #[test]
    fn empty_and_null_items() {
        assert!(split(r#"{"kind":"PodList","items":[]}"#, 3)
            .unwrap()
            .is_empty());
        assert!(split(r#"{"kind":"PodList","items":null}"#, 3)
            .unwrap()
            .is_empty());
    }

    #[test]
    fn truncated_bodies_are_errors() {
        assert!(split(r#"{"kind":"PodList","items":[{"a":1}"#, 4).is_err());
        assert!(split("", 4).is_err());
        assert!(split(r#"{"items":[{"a":"x}]}"#, 4).is_err());
    }
}
