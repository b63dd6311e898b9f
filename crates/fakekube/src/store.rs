//! The object store: every resource type in one generic, in-memory map, with the metadata
//! bookkeeping kube-apiserver does (uid, resourceVersion, creationTimestamp, generation,
//! deletionTimestamp, finalizers) and an event history for watches.
//!
//! The HTTP layer and the controllers both go through this API, so a controller's write is
//! indistinguishable from a client's (it bumps resourceVersion and emits watch events).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, Weak};

use bytes::Bytes;

use serde_json::{json, Value};
use tokio::sync::broadcast;

use crate::api_error::ApiError;
use crate::registry::ResourceType;
use crate::selectors::{FieldSelector, LabelSelector};
use crate::validation;

/// The key of a resource type: (group, plural). Versions are not multiplexed here.
pub type ResKey = (&'static str, &'static str);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
/// The type of a watch event.
pub enum EventType {
    /// The object was created.
    Added,
    /// The object was updated.
    Modified,
    /// The object was deleted.
    Deleted,
}

impl EventType {
    /// As a watch sends it: "ADDED", "MODIFIED", "DELETED".
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// One change, as a watch reports it.
#[derive(Debug, Clone)]
pub struct StoreEvent {
    /// What happened.
    pub event: EventType,
    /// The object's resource type.
    pub resource: ResKey,
    /// Its namespace; empty when cluster-scoped.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// The object after the change (a deleted one: as last stored).
    pub object: Arc<Value>,
    /// The resourceVersion the change was stored at.
    pub resource_version: u64,
}

/// Delete options the server honours (metav1.DeleteOptions).
#[derive(Debug, Clone, Default)]
pub struct DeleteOptions {
    /// Precondition: delete only the object with this uid.
    pub uid: Option<String>,
    /// Precondition: delete only at this resourceVersion.
    pub resource_version: Option<String>,
    /// What happens to the objects it owns.
    pub propagation: Propagation,
    /// Validate and answer without deleting.
    pub dry_run: bool,
    /// `gracePeriodSeconds`: for pods, how long the kubelet has to stop it (None: the pod's
    /// `terminationGracePeriodSeconds`).
    pub grace_period_seconds: Option<i64>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
/// propagationPolicy: what a delete does to the objects the deleted one owns.
pub enum Propagation {
    #[default]
    /// Delete now; the garbage collector deletes the dependents afterwards.
    Background,
    /// Keep the object (foregroundDeletion finalizer) until its blocking dependents are gone.
    Foreground,
    /// Delete it and leave the dependents, their ownerReferences to it removed.
    Orphan,
}

/// What a delete did.
#[derive(Debug, Clone)]
pub enum DeleteOutcome {
    /// Removed now; the last state of the object.
    Deleted(Arc<Value>),
    /// Kept with deletionTimestamp set, waiting for finalizers (Foreground, Orphan, or user finalizers).
    Pending(Arc<Value>),
}

/// How many past events are kept for watches that start from an older resourceVersion.
/// A watch from before the window gets 410 Expired, as from a compacted etcd revision.
const HISTORY_WINDOW: usize = 20_000;

/// Live events queued per subscriber before it lags.
const EVENT_QUEUE: usize = 4096;

/// One stored object, kept as compact JSON: a parsed `serde_json::Value` costs ~10x its
/// serialized size (every map is a B-tree node), and the benchmark holds 20,000 objects under
/// 200 MB. Labels are kept parsed for selector matching without a parse; `cache` hands out the
/// parsed object while someone (a watch event, a caller) still holds it.
struct Stored {
    bytes: Bytes,
    labels: Box<[(Box<str>, Box<str>)]>,
    cache: Weak<Value>,
}

impl Stored {
    fn new(obj: &Arc<Value>) -> Stored {
        let labels = obj["metadata"]["labels"]
            .as_object()
            .map(|m| {
                m.iter()
                    .map(|(k, v)| (k.as_str().into(), v.as_str().unwrap_or("").into()))
                    .collect()
            })
            .unwrap_or_default();
        Stored {
            bytes: Bytes::from(serde_json::to_vec(&**obj).expect("serializable")),
            labels,
            cache: Arc::downgrade(obj),
        }
    }

    fn value(&self) -> Arc<Value> {
        materialize(&self.bytes, &self.cache)
    }

    fn label(&self, k: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(key, _)| &**key == k)
            .map(|(_, v)| &**v)
    }
}

fn materialize(bytes: &Bytes, cache: &Weak<Value>) -> Arc<Value> {
    cache
        .upgrade()
        .unwrap_or_else(|| Arc::new(serde_json::from_slice(bytes).expect("stored JSON")))
}

type Bucket = BTreeMap<(String, String), Stored>;

/// A past event, kept serialized (sharing the bytes of the stored object).
struct Hist {
    event: EventType,
    resource: ResKey,
    namespace: String,
    name: String,
    bytes: Bytes,
    resource_version: u64,
}

struct Inner {
    resource_version: u64,
    objects: HashMap<ResKey, Bucket>,
    history: VecDeque<Hist>,
    /// uid -> where the object is (owner lookups without a scan).
    uids: HashMap<String, (ResKey, String, String)>,
    /// The resourceVersion of the last compaction (0: never).
    compacted: u64,
}

/// Thread-safe object store; clone the `Arc` to share.
pub struct Store {
    types: Vec<ResourceType>,
    inner: Mutex<Inner>,
    events: broadcast::Sender<StoreEvent>,
}

fn key(rt: &ResourceType) -> ResKey {
    (rt.group, rt.plural)
}

fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn key_only(fields: &FieldSelector) -> bool {
    fields
        .terms
        .iter()
        .all(|(f, _, _)| f == "metadata.name" || f == "metadata.namespace")
}

/// Labels from the index, name/namespace from the key; other fields need the parsed object.
fn selected(
    labels: &LabelSelector,
    fields: &FieldSelector,
    key_only: bool,
    (n, name): &(String, String),
    st: &Stored,
) -> bool {
    if !labels.matches(|k| st.label(k)) {
        return false;
    }
    if key_only {
        fields.terms.iter().all(|(f, eq, want)| {
            let have = if f == "metadata.name" { name } else { n };
            (have == want) == *eq
        })
    } else {
        fields.matches_object(&st.value())
    }
}

fn meta(obj: &Value) -> &Value {
    &obj["metadata"]
}

impl Store {
    /// An empty store serving `types`.
    pub fn new(types: Vec<ResourceType>) -> Arc<Store> {
        // Each queued event holds its object alive until every receiver has read it, so the
        // queue is kept short: a receiver that falls behind gets `Lagged` and must re-list,
        // as a watcher dropped by the watch cache would.
        let (events, _) = broadcast::channel(EVENT_QUEUE);
        Arc::new(Store {
            types,
            inner: Mutex::new(Inner {
                resource_version: 1,
                objects: HashMap::new(),
                history: VecDeque::new(),
                uids: HashMap::new(),
                compacted: 0,
            }),
            events,
        })
    }

    /// The resource types it serves.
    pub fn types(&self) -> &[ResourceType] {
        &self.types
    }

    /// Look up by group and plural (`("apps", "deployments")`).
    pub fn resource(&self, group: &str, plural: &str) -> Option<&ResourceType> {
        self.types
            .iter()
            .find(|t| t.group == group && t.plural == plural)
    }

    /// Look up by apiVersion and kind (`"apps/v1"`, `"Deployment"`), as ownerReferences name them.
    pub fn resource_for_kind(&self, api_version: &str, kind: &str) -> Option<&ResourceType> {
        let group = api_version.rsplit_once('/').map(|(g, _)| g).unwrap_or("");
        self.types
            .iter()
            .find(|t| t.group == group && t.kind == kind)
    }

    /// Subscribe to every future change.
    pub fn subscribe(&self) -> broadcast::Receiver<StoreEvent> {
        self.events.subscribe()
    }

    /// The resourceVersion of the latest write.
    pub fn current_resource_version(&self) -> u64 {
        self.inner.lock().unwrap().resource_version
    }

    /// Events after `rv` for a watch, plus a receiver subscribed atomically with the snapshot so
    /// no event is lost or duplicated. 410 Expired if `rv` is older than the history window.
    pub fn events_since(
        &self,
        rv: u64,
    ) -> Result<(Vec<StoreEvent>, broadcast::Receiver<StoreEvent>), ApiError> {
        self.events_since_for(rv, None)
    }

    /// [`Store::events_since`] for one resource type (only its history is parsed).
    #[allow(clippy::type_complexity)]
    pub fn events_since_for(
        &self,
        rv: u64,
        resource: Option<ResKey>,
    ) -> Result<(Vec<StoreEvent>, broadcast::Receiver<StoreEvent>), ApiError> {
        let inner = self.inner.lock().unwrap();
        let rx = self.events.subscribe();
        let oldest = inner
            .history
            .front()
            .map(|e| e.resource_version)
            .unwrap_or(inner.resource_version + 1);
        // rv is "the state I have seen": the events I need are rv+1 onwards.
        if rv + 1 < oldest && rv < inner.resource_version {
            return Err(ApiError::expired(format!(
                "too old resource version: {rv} ({})",
                oldest.saturating_sub(1)
            )));
        }
        let evs = inner
            .history
            .iter()
            .filter(|e| e.resource_version > rv && resource.is_none_or(|r| r == e.resource))
            .map(|h| StoreEvent {
                event: h.event,
                resource: h.resource,
                namespace: h.namespace.clone(),
                name: h.name.clone(),
                object: Arc::new(serde_json::from_slice(&h.bytes).expect("history JSON")),
                resource_version: h.resource_version,
            })
            .collect();
        Ok((evs, rx))
    }

    /// Forget the watch history, as etcd compaction does: a watch from any earlier
    /// resourceVersion then gets 410 Expired (watch.json's "too old resource version").
    pub fn compact(&self) {
        let mut inner = self.inner.lock().unwrap();
        inner.history.clear();
        inner.compacted = inner.resource_version;
    }

    /// The resourceVersion of the last [`Store::compact`] (0 if never): continue tokens from
    /// before it are expired.
    pub fn compacted_revision(&self) -> u64 {
        self.inner.lock().unwrap().compacted
    }

    /// Record and broadcast an event; `bytes` is the object serialized (shared with the store).
    fn emit(&self, inner: &mut Inner, ev: StoreEvent, bytes: Option<Bytes>) {
        let bytes = bytes.unwrap_or_else(|| Bytes::from(serde_json::to_vec(&*ev.object).unwrap()));
        inner.history.push_back(Hist {
            event: ev.event,
            resource: ev.resource,
            namespace: ev.namespace.clone(),
            name: ev.name.clone(),
            bytes,
            resource_version: ev.resource_version,
        });
        while inner.history.len() > HISTORY_WINDOW {
            inner.history.pop_front();
        }
        let _ = self.events.send(ev);
    }

    /// Store `object` at `ns`/`name` at a new resourceVersion with a MODIFIED event: a delete
    /// that keeps the object (deletionTimestamp set, held by finalizers or a grace period), as
    /// the real server updates it before it removes it. The stored and the broadcast object
    /// share one serialization.
    fn keep_modified(
        &self,
        inner: &mut Inner,
        rt: &ResourceType,
        ns: &str,
        name: &str,
        mut object: Value,
    ) -> Arc<Value> {
        let rv = Self::next_rv(inner);
        object["metadata"]["resourceVersion"] = json!(rv.to_string());
        let object = Arc::new(object);
        let stored = Stored::new(&object);
        let bytes = stored.bytes.clone();
        inner
            .objects
            .entry(key(rt))
            .or_default()
            .insert((ns.to_string(), name.to_string()), stored);
        self.emit(
            inner,
            StoreEvent {
                event: EventType::Modified,
                resource: key(rt),
                namespace: ns.to_string(),
                name: name.to_string(),
                object: object.clone(),
                resource_version: rv,
            },
            Some(bytes),
        );
        object
    }

    /// Remove `object` (stored at `ns`/`name`) now: gone from the store and its uid index, a
    /// DELETED event at a new resourceVersion; the object as last seen.
    fn remove_now(
        &self,
        inner: &mut Inner,
        rt: &ResourceType,
        ns: &str,
        name: &str,
        object: &Value,
    ) -> Arc<Value> {
        let rv = Self::next_rv(inner);
        let mut last = object.clone();
        last["metadata"]["resourceVersion"] = json!(rv.to_string());
        let last = Arc::new(last);
        inner
            .objects
            .entry(key(rt))
            .or_default()
            .remove(&(ns.to_string(), name.to_string()));
        if let Some(uid) = object["metadata"]["uid"].as_str() {
            inner.uids.remove(uid);
        }
        self.emit(
            inner,
            StoreEvent {
                event: EventType::Deleted,
                resource: key(rt),
                namespace: ns.to_string(),
                name: name.to_string(),
                object: last.clone(),
                resource_version: rv,
            },
            None,
        );
        last
    }

    fn next_rv(inner: &mut Inner) -> u64 {
        inner.resource_version += 1;
        inner.resource_version
    }

    fn namespace_exists(inner: &Inner, ns: &str) -> bool {
        inner
            .objects
            .get(&("", "namespaces"))
            .is_some_and(|b| b.contains_key(&(String::new(), ns.to_string())))
    }

    /// Create. `ns` is ignored for cluster-scoped types. Fills in metadata as the real server
    /// does; honours generateName; with `dry_run` validates and answers but stores nothing.
    pub fn create(
        &self,
        rt: &ResourceType,
        ns: Option<&str>,
        obj: Value,
        dry_run: bool,
    ) -> Result<Arc<Value>, ApiError> {
        let mut inner = self.inner.lock().unwrap();
        let created = self.create_locked(&mut inner, rt, ns, obj, dry_run)?;
        if rt.group.is_empty() && rt.plural == "namespaces" && !dry_run {
            // The root-CA publisher in kube-controller-manager puts this ConfigMap into every
            // namespace (asynchronously upstream; synchronously here).
            if let Some(cm) = self.resource("", "configmaps") {
                let name = created["metadata"]["name"]
                    .as_str()
                    .unwrap_or("")
                    .to_string();
                let root_ca = json!({
                    "metadata": {
                        "name": "kube-root-ca.crt",
                        "annotations": {"kubernetes.io/description": "Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across distributions of Kubernetes clusters."}
                    },
                    "data": {"ca.crt": "-----BEGIN CERTIFICATE-----\nfakekube\n-----END CERTIFICATE-----\n"}
                });
                let _ = self.create_locked(&mut inner, cm, Some(&name), root_ca, false);
            }
            // ... and the ServiceAccount controller a `default` ServiceAccount.
            if let Some(sa) = self.resource("", "serviceaccounts") {
                let name = created["metadata"]["name"]
                    .as_str()
                    .unwrap_or("")
                    .to_string();
                let default_sa = json!({"metadata": {"name": "default"}});
                let _ = self.create_locked(&mut inner, sa, Some(&name), default_sa, false);
            }
        }
        Ok(created)
    }

    fn create_locked(
        &self,
        inner: &mut Inner,
        rt: &ResourceType,
        ns: Option<&str>,
        mut obj: Value,
        dry_run: bool,
    ) -> Result<Arc<Value>, ApiError> {
        let ns = if rt.namespaced { ns.unwrap_or("") } else { "" };
        if !obj.is_object() {
            return Err(ApiError::bad_request(
                "the body of the request was not an object",
            ));
        }
        if obj["metadata"].is_null() {
            obj["metadata"] = json!({});
        }
        if rt.namespaced && !Self::namespace_exists(inner, ns) {
            return Err(ApiError::namespace_not_found(ns));
        }
        let name = match obj["metadata"]["name"].as_str() {
            Some(n) if !n.is_empty() => n.to_string(),
            _ => match obj["metadata"]["generateName"].as_str() {
                // names.SimpleNameGenerator: the prefix is cut to 58 characters so that the
                // generated name fits in 63.
                Some(prefix) => loop {
                    let cut = prefix
                        .char_indices()
                        .nth(58)
                        .map_or(prefix, |(i, _)| &prefix[..i]);
                    let candidate = format!("{cut}{}", validation::random_suffix(5));
                    let taken = inner
                        .objects
                        .get(&key(rt))
                        .is_some_and(|b| b.contains_key(&(ns.to_string(), candidate.clone())));
                    if !taken {
                        break candidate;
                    }
                },
                None => {
                    return Err(ApiError::invalid(
                        rt,
                        "",
                        vec![crate::api_error::Cause {
                            reason: "FieldValueRequired".into(),
                            message: "Required value: name or generateName is required".into(),
                            field: "metadata.name".into(),
                        }],
                    ))
                }
            },
        };
        obj["metadata"]["name"] = json!(name);
        crate::volumes::validate(
            rt,
            &name,
            &obj,
            validation::validate_object(rt, &name, &obj, None),
        )?;
        if inner
            .objects
            .get(&key(rt))
            .is_some_and(|b| b.contains_key(&(ns.to_string(), name.clone())))
        {
            return Err(ApiError::already_exists(rt, &name));
        }
        obj["apiVersion"] = json!(rt.api_version());
        obj["kind"] = json!(rt.kind);
        let m = &mut obj["metadata"];
        if rt.namespaced {
            m["namespace"] = json!(ns);
        } else if let Some(o) = m.as_object_mut() {
            o.remove("namespace");
        }
        m["uid"] = json!(uuid::Uuid::new_v4().to_string());
        m["creationTimestamp"] = json!(now_rfc3339());
        if let Some(o) = m.as_object_mut() {
            o.remove("deletionTimestamp");
            o.remove("deletionGracePeriodSeconds");
        }
        if rt.tracks_generation() {
            obj["metadata"]["generation"] = json!(1);
        }
        crate::defaults::apply_create_defaults(rt, &mut obj);
        if dry_run {
            if let Some(o) = obj["metadata"].as_object_mut() {
                o.remove("resourceVersion");
            }
            return Ok(Arc::new(obj));
        }
        let rv = Self::next_rv(inner);
        obj["metadata"]["resourceVersion"] = json!(rv.to_string());
        let obj = Arc::new(obj);
        let stored = Stored::new(&obj);
        let bytes = stored.bytes.clone();
        if let Some(uid) = obj["metadata"]["uid"].as_str() {
            inner
                .uids
                .insert(uid.to_string(), (key(rt), ns.to_string(), name.clone()));
        }
        inner
            .objects
            .entry(key(rt))
            .or_default()
            .insert((ns.to_string(), name.clone()), stored);
        self.emit(
            inner,
            StoreEvent {
                event: EventType::Added,
                resource: key(rt),
                namespace: ns.to_string(),
                name,
                object: obj.clone(),
                resource_version: rv,
            },
            Some(bytes),
        );
        Ok(obj)
    }

    /// The object `name` (in `ns` when namespaced), or 404 NotFound.
    pub fn get(
        &self,
        rt: &ResourceType,
        ns: Option<&str>,
        name: &str,
    ) -> Result<Arc<Value>, ApiError> {
        let ns = if rt.namespaced { ns.unwrap_or("") } else { "" };
        let inner = self.inner.lock().unwrap();
        inner
            .objects
            .get(&key(rt))
            .and_then(|b| b.get(&(ns.to_string(), name.to_string())))
            .map(Stored::value)
            .ok_or_else(|| ApiError::not_found(rt, name))
    }

    /// Every object of a type (in one namespace, or all when `ns` is None) that `keep` accepts,
    /// in (namespace, name) order, with the store's resourceVersion at the time of the snapshot.
    /// Each candidate is parsed for `keep`: prefer `Store::list_selected` for large lists.
    pub fn list(
        &self,
        rt: &ResourceType,
        ns: Option<&str>,
        keep: &dyn Fn(&Value) -> bool,
    ) -> (Vec<Arc<Value>>, u64) {
        let (items, rv, _) = self.list_page(rt, ns, keep, None, 0);
        (items, rv)
    }

    /// One page of a list: objects after the key `after` (exclusive), at most `limit` of them
    /// (0 = no limit), and the key to continue from if more remain. Pages are read from the
    /// live state, not from a snapshot at the first page's resourceVersion (upstream reads etcd
    /// at that revision; a knowing divergence that only matters for concurrent writers).
    #[allow(clippy::type_complexity)]
    pub fn list_page(
        &self,
        rt: &ResourceType,
        ns: Option<&str>,
        keep: &dyn Fn(&Value) -> bool,
        after: Option<&(String, String)>,
        limit: usize,
    ) -> (Vec<Arc<Value>>, u64, Option<(String, String)>) {
        // Copy the candidates out under the lock (cheap: shared bytes), parse outside it so a
        // big list never blocks other requests.
        let mut candidates = Vec::new();
        let (_, rv, _) = self.scan(rt, ns, after, 0, &mut |k, st| {
            candidates.push((k.clone(), st.bytes.clone(), st.cache.clone()));
            false
        });
        let mut items = Vec::new();
        let mut last_key = None;
        let mut more = false;
        for (k, bytes, cache) in candidates {
            let v = materialize(&bytes, &cache);
            if !keep(&v) {
                continue;
            }
            if limit > 0 && items.len() == limit {
                more = true;
                break;
            }
            items.push(v);
            last_key = Some(k);
        }
        (items, rv, if more { last_key } else { None })
    }

    /// Objects of a type whose labels match `selector`, parsed (only the matching ones are,
    /// outside the store's lock): the cheap way for controllers to find a workload's pods
    /// among thousands.
    pub fn list_matching(
        &self,
        rt: &ResourceType,
        ns: Option<&str>,
        selector: &LabelSelector,
    ) -> (Vec<Arc<Value>>, u64) {
        let mut hits = Vec::new();
        let (_, rv, _) = self.scan(rt, ns, None, 0, &mut |_, st| {
            if selector.matches(|k| st.label(k)) {
                hits.push((st.bytes.clone(), st.cache.clone()));
            }
            false
        });
        let out = hits.iter().map(|(b, c)| materialize(b, c)).collect();
        (out, rv)
    }

    /// The fast list behind `GET .../configmaps?labelSelector=...`: labels are matched on the
    /// label index and name/namespace field selectors on the key, so only objects selected by
    /// other fields are parsed; the objects come back serialized, ready to send.
    #[allow(clippy::type_complexity)]
    pub(crate) fn list_selected(
        &self,
        rt: &ResourceType,
        ns: Option<&str>,
        labels: &LabelSelector,
        fields: &FieldSelector,
        after: Option<&(String, String)>,
        limit: usize,
    ) -> (Vec<Bytes>, u64, Option<(String, String)>) {
        let key_only = key_only(fields);
        let (items, rv, next) = self.scan(rt, ns, after, limit, &mut |k, st| {
            selected(labels, fields, key_only, k, st)
        });
        (items, rv, next)
    }

    /// The (namespace, name) keys of the objects a selector pair picks now (for watches that
    /// must notice objects leaving or entering the selection).
    pub(crate) fn matching_keys(
        &self,
        rt: &ResourceType,
        ns: Option<&str>,
        labels: &LabelSelector,
        fields: &FieldSelector,
    ) -> std::collections::HashSet<(String, String)> {
        let key_only = key_only(fields);
        let mut keys = std::collections::HashSet::new();
        self.scan(rt, ns, None, 0, &mut |k, st| {
            let hit = selected(labels, fields, key_only, k, st);
            if hit {
                keys.insert(k.clone());
            }
            false
        });
        keys
    }

    /// Walk one type's objects in key order from `after`, keeping those `take` accepts, up to
    /// `limit`; returns their bytes, the store's resourceVersion and the continue key.
    #[allow(clippy::type_complexity)]
    fn scan(
        &self,
        rt: &ResourceType,
        ns: Option<&str>,
        after: Option<&(String, String)>,
        limit: usize,
        take: &mut dyn FnMut(&(String, String), &Stored) -> bool,
    ) -> (Vec<Bytes>, u64, Option<(String, String)>) {
        use std::ops::Bound;
        let inner = self.inner.lock().unwrap();
        let rv = inner.resource_version;
        let Some(bucket) = inner.objects.get(&key(rt)) else {
            return (Vec::new(), rv, None);
        };
        let ns = ns.filter(|_| rt.namespaced);
        let lower = match (after, ns) {
            (Some(k), _) => Bound::Excluded(k.clone()),
            (None, Some(ns)) => Bound::Included((ns.to_string(), String::new())),
            (None, None) => Bound::Unbounded,
        };
        let mut items = Vec::new();
        let mut last = None;
        let mut more = false;
        for (k, st) in bucket.range((lower, Bound::Unbounded)) {
            if let Some(ns) = ns {
                if k.0 != ns {
                    break;
                }
            }
            if limit > 0 && items.len() == limit {
                // One more match means another page.
                if take(k, st) {
                    more = true;
                    break;
                }
                continue;
            }
            if take(k, st) {
                items.push(st.bytes.clone());
                last = Some(k);
            }
        }
        // The token names the last item returned; the next page starts after it.
        let next = if more { last.cloned() } else { None };
        (items, rv, next)
    }

    /// Replace an object (PUT, and every patch after it is applied). If `obj` carries a
    /// resourceVersion it must match the stored one (409 Conflict otherwise). uid and
    /// creationTimestamp are kept; generation bumps when `spec` changed. When `subresource` is
    /// `status` only `.status` is taken from `obj`; for anything else `.status` is kept, as the
    /// real server does for resources with a status subresource.
    /// An object with deletionTimestamp whose finalizers become empty is removed.
    pub fn update(
        &self,
        rt: &ResourceType,
        ns: Option<&str>,
        name: &str,
        mut obj: Value,
        subresource: Option<&str>,
        dry_run: bool,
    ) -> Result<Arc<Value>, ApiError> {
        let ns = if rt.namespaced { ns.unwrap_or("") } else { "" };
        let mut inner = self.inner.lock().unwrap();
        let current = inner
            .objects
            .get(&key(rt))
            .and_then(|b| b.get(&(ns.to_string(), name.to_string())))
            .map(Stored::value)
            .ok_or_else(|| ApiError::not_found(rt, name))?;
        let cur_rv = meta(&current)["resourceVersion"]
            .as_str()
            .unwrap_or("")
            .to_string();
        if let Some(rv) = obj["metadata"]["resourceVersion"].as_str() {
            if !rv.is_empty() && rv != cur_rv {
                return Err(ApiError::conflict_modified(rt, name));
            }
        }
        if let Some(n) = obj["metadata"]["name"].as_str() {
            if n != name {
                return Err(ApiError::bad_request(format!(
                    "the name of the object ({n}) does not match the name on the URL ({name})"
                )));
            }
        }
        if subresource == Some("status") {
            let mut merged = (*current).clone();
            merged["status"] = obj["status"].take();
            obj = merged;
        } else if rt.has_subresource("status") {
            obj["status"] = current["status"].clone();
            if obj["status"].is_null() {
                if let Some(o) = obj.as_object_mut() {
                    o.remove("status");
                }
            }
        }
        obj["apiVersion"] = json!(rt.api_version());
        obj["kind"] = json!(rt.kind);
        if obj["metadata"].is_null() {
            obj["metadata"] = json!({});
        }
        crate::volumes::validate(
            rt,
            name,
            &obj,
            validation::validate_object(rt, name, &obj, Some(&current)),
        )?;
        {
            let cm = meta(&current);
            let m = &mut obj["metadata"];
            m["name"] = json!(name);
            if rt.namespaced {
                m["namespace"] = json!(ns);
            }
            for k in [
                "uid",
                "creationTimestamp",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
            ] {
                if let Some(o) = m.as_object_mut() {
                    o.remove(k);
                }
                if !cm[k].is_null() {
                    m[k] = cm[k].clone();
                }
            }
        }
        if rt.tracks_generation() {
            let g = meta(&current)["generation"].as_i64().unwrap_or(1);
            let g = if obj["spec"] != current["spec"] {
                g + 1
            } else {
                g
            };
            obj["metadata"]["generation"] = json!(g);
        }
        obj["metadata"]["resourceVersion"] = json!(cur_rv);
        if obj == *current {
            // A no-op write does not bump resourceVersion or emit an event, as upstream.
            return Ok(current);
        }
        if dry_run {
            return Ok(Arc::new(obj));
        }
        // shouldDeleteDuringUpdate: no finalizers left and deletionGracePeriodSeconds 0 (a pod
        // still in its grace period stays until the kubelet's delete).
        let finalizing = !obj["metadata"]["deletionTimestamp"].is_null()
            && obj["metadata"]["finalizers"]
                .as_array()
                .is_none_or(|f| f.is_empty())
            && obj["metadata"]["deletionGracePeriodSeconds"]
                .as_i64()
                .is_none_or(|g| g == 0);
        let rv = Self::next_rv(&mut inner);
        obj["metadata"]["resourceVersion"] = json!(rv.to_string());
        let obj = Arc::new(obj);
        let mut shared = None;
        let bucket = inner.objects.entry(key(rt)).or_default();
        let event = if finalizing {
            bucket.remove(&(ns.to_string(), name.to_string()));
            if let Some(uid) = obj["metadata"]["uid"].as_str() {
                inner.uids.remove(uid);
            }
            EventType::Deleted
        } else {
            let stored = Stored::new(&obj);
            shared = Some(stored.bytes.clone());
            bucket.insert((ns.to_string(), name.to_string()), stored);
            EventType::Modified
        };
        self.emit(
            &mut inner,
            StoreEvent {
                event,
                resource: key(rt),
                namespace: ns.to_string(),
                name: name.to_string(),
                object: obj.clone(),
                resource_version: rv,
            },
            shared,
        );
        Ok(obj)
    }

    /// Delete with preconditions and a propagation policy. Objects with finalizers, and
    /// Foreground/Orphan deletes, are kept with deletionTimestamp set (plus the
    /// `foregroundDeletion`/`orphan` finalizer) for the garbage collector to finish.
    ///
    /// Pods are deleted gracefully, as kube-apiserver's pod strategy does: a pod bound to a node
    /// and not terminal gets `deletionTimestamp` = now + grace and `deletionGracePeriodSeconds`
    /// = grace (`opts.grace_period_seconds`, else `spec.terminationGracePeriodSeconds`) and is
    /// kept (a MODIFIED event) until the kubelet, having stopped it, deletes it with grace 0; a
    /// later delete may only shorten the grace. An unbound or terminal pod, or grace 0, is
    /// removed at once, after the same update (MODIFIED, then DELETED), unless finalizers
    /// keep it.
    pub fn delete(
        &self,
        rt: &ResourceType,
        ns: Option<&str>,
        name: &str,
        opts: &DeleteOptions,
    ) -> Result<DeleteOutcome, ApiError> {
        let ns = if rt.namespaced { ns.unwrap_or("") } else { "" };
        let mut inner = self.inner.lock().unwrap();
        let current = inner
            .objects
            .get(&key(rt))
            .and_then(|b| b.get(&(ns.to_string(), name.to_string())))
            .map(Stored::value)
            .ok_or_else(|| ApiError::not_found(rt, name))?;
        let cm = meta(&current);
        let cur_uid = cm["uid"].as_str().unwrap_or("");
        let cur_rv = cm["resourceVersion"].as_str().unwrap_or("");
        if let Some(uid) = &opts.uid {
            if uid != cur_uid {
                return Err(ApiError::precondition_uid(rt, name, uid, cur_uid));
            }
        }
        if let Some(rv) = &opts.resource_version {
            if rv != cur_rv {
                return Err(ApiError::precondition_rv(rt, name, rv, cur_rv));
            }
        }
        let mut finalizers: Vec<String> = cm["finalizers"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        let policy_finalizer = match opts.propagation {
            Propagation::Background => None,
            Propagation::Foreground => Some("foregroundDeletion"),
            Propagation::Orphan => Some("orphan"),
        };
        if let Some(f) = policy_finalizer {
            if !finalizers.iter().any(|x| x == f) {
                finalizers.push(f.to_string());
            }
        }
        if opts.dry_run {
            return Ok(DeleteOutcome::Deleted(current));
        }
        let is_pod = rt.group.is_empty() && rt.plural == "pods";
        if is_pod {
            match pod_grace(&current, opts.grace_period_seconds) {
                Grace::Pending => return Ok(DeleteOutcome::Pending(current)),
                Grace::Set(dts, grace) => {
                    // BeforeDelete: the object is updated with deletionTimestamp and
                    // deletionGracePeriodSeconds (a MODIFIED event) ...
                    let mut pending = (*current).clone();
                    pending["metadata"]["deletionTimestamp"] = json!(dts);
                    pending["metadata"]["deletionGracePeriodSeconds"] = json!(grace);
                    if !finalizers.is_empty() {
                        pending["metadata"]["finalizers"] = json!(finalizers);
                    }
                    let pending = self.keep_modified(&mut inner, rt, ns, name, pending);
                    // ... and kept while the kubelet stops it (grace > 0) or finalizers hold it;
                    // with grace 0 and no finalizers it is removed now (DELETED).
                    if grace > 0 || !finalizers.is_empty() {
                        return Ok(DeleteOutcome::Pending(pending));
                    }
                    let last = self.remove_now(&mut inner, rt, ns, name, &pending);
                    return Ok(DeleteOutcome::Deleted(last));
                }
                Grace::Proceed => {}
            }
        }
        if finalizers.is_empty() {
            let last = self.remove_now(&mut inner, rt, ns, name, &current);
            if rt.group.is_empty() && rt.plural == "namespaces" {
                self.delete_namespace_contents(&mut inner, name);
            }
            return Ok(DeleteOutcome::Deleted(last));
        }
        let mut pending = (*current).clone();
        let m = &mut pending["metadata"];
        if m["deletionTimestamp"].is_null() {
            m["deletionTimestamp"] = json!(now_rfc3339());
            m["deletionGracePeriodSeconds"] = json!(0);
        }
        m["finalizers"] = json!(finalizers);
        let pending = self.keep_modified(&mut inner, rt, ns, name, pending);
        Ok(DeleteOutcome::Pending(pending))
    }

    /// Deleting a Namespace deletes everything in it. Simplified: upstream the namespace goes
    /// `Terminating` (finalizer `kubernetes`) while the namespace controller deletes its contents
    /// (honouring their finalizers); here the contents vanish at once, each with a DELETED event.
    fn delete_namespace_contents(&self, inner: &mut Inner, ns: &str) {
        let mut doomed = Vec::new();
        for (k, bucket) in inner.objects.iter() {
            for ((n, name), _) in bucket.range((ns.to_string(), String::new())..) {
                if n != ns {
                    break;
                }
                doomed.push((*k, name.clone()));
            }
        }
        for (k, name) in doomed {
            let rv = Self::next_rv(inner);
            let Some(obj) = inner
                .objects
                .get_mut(&k)
                .and_then(|b| b.remove(&(ns.to_string(), name.clone())))
            else {
                continue;
            };
            let mut last = (*obj.value()).clone();
            if let Some(uid) = last["metadata"]["uid"].as_str() {
                inner.uids.remove(uid);
            }
            last["metadata"]["resourceVersion"] = json!(rv.to_string());
            self.emit(
                inner,
                StoreEvent {
                    event: EventType::Deleted,
                    resource: k,
                    namespace: ns.to_string(),
                    name,
                    object: Arc::new(last),
                    resource_version: rv,
                },
                None,
            );
        }
    }

    /// Total number of stored objects (for benchmarks and counters).
    pub fn len(&self) -> usize {
        self.inner
            .lock()
            .unwrap()
            .objects
            .values()
            .map(|b| b.len())
            .sum()
    }

    /// True when it holds no objects.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every object of every type, for the garbage collector's owner index and for snapshots.
    pub fn all_objects(&self) -> Vec<(ResKey, Arc<Value>)> {
        let raw: Vec<(ResKey, Bytes, Weak<Value>)> = {
            let inner = self.inner.lock().unwrap();
            inner
                .objects
                .iter()
                .flat_map(|(k, b)| {
                    b.values()
                        .map(move |v| (*k, v.bytes.clone(), v.cache.clone()))
                })
                .collect()
        };
        raw.iter()
            .map(|(k, b, c)| (*k, materialize(b, c)))
            .collect()
    }

    /// Objects that have ownerReferences (found without parsing the others): what a garbage
    /// collector scans.
    pub fn owned_objects(&self) -> Vec<(ResKey, Arc<Value>)> {
        const NEEDLE: &[u8] = b"\"ownerReferences\"";
        let raw: Vec<(ResKey, Bytes, Weak<Value>)> = {
            let inner = self.inner.lock().unwrap();
            inner
                .objects
                .iter()
                .flat_map(|(k, b)| {
                    b.values()
                        .filter(|v| v.bytes.windows(NEEDLE.len()).any(|w| w == NEEDLE))
                        .map(move |v| (*k, v.bytes.clone(), v.cache.clone()))
                })
                .collect()
        };
        raw.iter()
            .map(|(k, b, c)| (*k, materialize(b, c)))
            .collect()
    }

    /// The object with this uid, if any (an owner lookup for the garbage collector).
    pub fn get_by_uid(&self, uid: &str) -> Option<(ResKey, Arc<Value>)> {
        let inner = self.inner.lock().unwrap();
        let (k, ns, name) = inner.uids.get(uid)?;
        let st = inner.objects.get(k)?.get(&(ns.clone(), name.clone()))?;
        Some((*k, st.value()))
    }
}

/// What a delete does to a pod (podStrategy.CheckGracefulDelete + rest.BeforeDelete).
enum Grace {
    /// Set deletionTimestamp and deletionGracePeriodSeconds to these.
    Set(String, i64),
    /// Already being deleted with at most this grace: nothing changes.
    Pending,
    /// Already being deleted with grace 0: finalizers decide, as for any object.
    Proceed,
}

fn pod_grace(pod: &Value, requested: Option<i64>) -> Grace {
    let m = &pod["metadata"];
    let now = chrono::Utc::now();
    let fmt =
        |t: chrono::DateTime<chrono::Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    if !m["deletionTimestamp"].is_null() {
        let current = m["deletionGracePeriodSeconds"].as_i64().unwrap_or(0);
        if current == 0 {
            return Grace::Proceed;
        }
        return match requested {
            // Only a shorter grace period may be given: the deadline moves back by the
            // difference, never before now (the real cluster: 21:11:00 with 30 s, then a
            // delete with 3 s at 21:10:32.9 gave 21:10:33; the kubelet's grace-0 delete gives
            // its own time).
            Some(g) if g.max(0) < current => {
                let g = g.max(0);
                let old = m["deletionTimestamp"]
                    .as_str()
                    .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                    .map(|t| t.with_timezone(&chrono::Utc))
                    .unwrap_or(now);
                let new = old - chrono::Duration::seconds(current) + chrono::Duration::seconds(g);
                Grace::Set(fmt(new.max(now)), g)
            }
            _ => Grace::Pending,
        };
    }
    let mut period = requested.unwrap_or_else(|| {
        pod["spec"]["terminationGracePeriodSeconds"]
            .as_i64()
            .unwrap_or(0)
    });
    // Not scheduled, or already terminal: deleted at once.
    if pod["spec"]["nodeName"].as_str().is_none_or(str::is_empty)
        || matches!(
            pod["status"]["phase"].as_str(),
            Some("Succeeded" | "Failed")
        )
    {
        period = 0;
    }
    if period < 0 {
        period = 1;
    }
    Grace::Set(fmt(now + chrono::Duration::seconds(period)), period)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_parse_and_stop_at_limit() {
        let store = Store::new(crate::registry::builtin());
        let ns = store.resource("", "namespaces").unwrap().clone();
        store
            .create(&ns, None, json!({"metadata": {"name": "n"}}), false)
            .unwrap();
        let cm = store.resource("", "configmaps").unwrap().clone();
        for i in 0..5 {
            let o = json!({"metadata": {"name": format!("c{i}"), "labels": {"x": "y"}}});
            store.create(&cm, Some("n"), o, false).unwrap();
        }
        let keep = |o: &Value| o["metadata"]["labels"]["x"] == "y";
        let (page, _, next) = store.list_page(&cm, Some("n"), &keep, None, 2);
        assert_eq!(page.len(), 2);
        assert_eq!(next, Some(("n".to_string(), "c1".to_string())));
        let (page, _, next) = store.list_page(&cm, Some("n"), &keep, next.as_ref(), 3);
        assert_eq!(page.len(), 3);
        assert_eq!(page[2]["metadata"]["name"], "c4");
        assert!(next.is_none());
        let uid = store.get(&cm, Some("n"), "c3").unwrap()["metadata"]["uid"]
            .as_str()
            .unwrap()
            .to_string();
        assert_eq!(store.get_by_uid(&uid).unwrap().1["metadata"]["name"], "c3");
        store
            .delete(&cm, Some("n"), "c3", &DeleteOptions::default())
            .unwrap();
        assert!(store.get_by_uid(&uid).is_none());
        let owned = json!({"metadata": {"name": "o", "ownerReferences": [
            {"apiVersion": "v1", "kind": "ConfigMap", "name": "c0", "uid": "u", "controller": true}]}});
        store.create(&cm, Some("n"), owned, false).unwrap();
        let owned = store.owned_objects();
        assert_eq!(owned.len(), 1);
        assert_eq!(owned[0].1["metadata"]["name"], "o");
        let long = json!({"metadata": {"generateName": format!("{}-", "x".repeat(70))}});
        let made = store.create(&cm, Some("n"), long, false).unwrap();
        assert_eq!(made["metadata"]["name"].as_str().unwrap().len(), 63);
        // Values handed out are independent of what is stored.
        let got = store.get(&cm, Some("n"), "c0").unwrap();
        assert_eq!(got["metadata"]["namespace"], "n");
        // 5 + generated + root CA + default ServiceAccount + the namespace
        assert_eq!(store.len(), 5 + 1 + 1 + 1 + 1);
        let ns_rt = store.resource("", "namespaces").unwrap().clone();
        store
            .delete(&ns_rt, None, "n", &DeleteOptions::default())
            .unwrap();
        assert!(store.get_by_uid(&uid).is_none());
        assert_eq!(store.len(), 0);
    }
}
