//! Acquire, take over, renew, update and release: every write preconditioned on the
//! resourceVersion we read (PUT), on uid + resourceVersion (DELETE), or on the holder named in
//! the lock (a JSON patch `test`).
//!
//! A lock carries the finalizer [`FINALIZER`] from its creation until its holder released it,
//! so the way back to the workload's count outlives a hand-made `kubectl delete configmap`
//! (and the garbage collector deleting it with its session): the API server then only marks it
//! deleted, and gc finds it by its label and restores through it. The price: a namespace being
//! deleted waits for such a lock until `gc` (or the holder) releases it.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, Preconditions};
use kube::ResourceExt;

use crate::clock;
use crate::{LockError, LockRecord, WorkloadKey};

/// Label naming the tool that manages an object (value [`MANAGED_BY`]).
pub const LABEL_MANAGED_BY: &str = "app.kubernetes.io/managed-by";
/// Value of [`LABEL_MANAGED_BY`] on every object the plugin makes.
pub const MANAGED_BY: &str = "kubectl-mirrord-copy";
/// The field manager of every write the plugin makes (`fieldManager`; managedFields name it
/// beside kubectl's and controllers'), and the product in its User-Agent.
pub const FIELD_MANAGER: &str = MANAGED_BY;

/// Parameters of every create and replace: [`FIELD_MANAGER`].
pub fn post_params() -> PostParams {
    PostParams {
        field_manager: Some(FIELD_MANAGER.to_string()),
        ..Default::default()
    }
}

/// Parameters of every patch: [`FIELD_MANAGER`].
pub fn patch_params() -> PatchParams {
    PatchParams {
        field_manager: Some(FIELD_MANAGER.to_string()),
        ..Default::default()
    }
}
/// Label carrying the id of the session that holds the lock.
pub const LABEL_SESSION: &str = "mirrord-copy.io/session";
/// Label telling the plugin's ConfigMaps and pods apart (value [`ROLE_LOCK`] on a lock).
pub const LABEL_ROLE: &str = "mirrord-copy.io/role";
/// Value of [`LABEL_ROLE`] on a lock ConfigMap.
pub const ROLE_LOCK: &str = "lock";
/// Keeps a lock ConfigMap until its holder (or gc) has restored the workload and released it.
pub const FINALIZER: &str = "mirrord-copy.io/restore";

/// Compare-and-swap attempts before giving up with [`LockError::Contended`].
const MAX_ATTEMPTS: usize = 5;

/// A lock we hold, as of our last write.
#[derive(Debug, Clone)]
pub struct LockGuard {
    /// Namespace of the lock ConfigMap.
    pub namespace: String,
    /// Name of the lock ConfigMap.
    pub name: String,
    /// uid of the lock ConfigMap: release deletes on this precondition.
    pub uid: String,
    /// resourceVersion of our last write: the next compare-and-swap is on it.
    pub resource_version: String,
    /// The record as we last wrote it.
    pub record: LockRecord,
    /// Set when we took an expired lock over: the dead holder's record.
    pub took_over_from: Option<LockRecord>,
    /// The lock as last written: the next compare-and-swap starts from it (no read first).
    pub config_map: ConfigMap,
    /// The session this guard writes for: a write finds out if another one holds it now.
    pub session: String,
}

impl LockGuard {
    /// The lock `known`, as just listed or read, for `session` to write (it may no longer
    /// hold it: the next write says so, without writing). Malformed data is an error.
    pub fn for_session(known: ConfigMap, session: &str) -> Result<LockGuard, LockError> {
        let record = parse_cm(&known)?;
        let mut guard = guard_from(&known, record, None);
        guard.session = session.to_string();
        Ok(guard)
    }

    /// Change the record with `change`, by compare-and-swap from the lock as this guard last
    /// saw it: no read unless someone wrote in between (the swap then fails, the lock is read
    /// again and the change made anew). [`LockError::Lost`] if the lock is gone or another
    /// session holds it.
    pub async fn update(
        &self,
        client: &kube::Client,
        change: impl Fn(&mut LockRecord),
    ) -> Result<LockGuard, LockError> {
        let known = Some(self.config_map.clone());
        update_from(
            client,
            &self.namespace,
            &self.name,
            &self.session,
            known,
            change,
        )
        .await
    }

    /// Extend the lease to `until`.
    pub async fn renew(
        &self,
        client: &kube::Client,
        until: DateTime<Utc>,
    ) -> Result<LockGuard, LockError> {
        self.update(client, |r| r.lease_expires = until).await
    }

    /// Release the lock, as [`release`] does, starting from the lock as this guard last saw it.
    pub async fn release(&self, client: &kube::Client) -> Result<Released, LockError> {
        let known = Some(self.config_map.clone());
        release_from(client, &self.namespace, &self.name, &self.session, known).await
    }
}

fn api(client: &kube::Client, namespace: &str) -> Api<ConfigMap> {
    Api::namespaced(client.clone(), namespace)
}

fn labels(session: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (LABEL_MANAGED_BY.into(), MANAGED_BY.into()),
        (LABEL_SESSION.into(), session.into()),
        (LABEL_ROLE.into(), ROLE_LOCK.into()),
    ])
}

fn is_status(err: &kube::Error, code: u16, reason: Option<&str>) -> bool {
    matches!(err, kube::Error::Api(s) if s.code == code && reason.is_none_or(|r| s.reason == r))
}

fn is_already_exists(err: &kube::Error) -> bool {
    is_status(err, 409, Some("AlreadyExists"))
}

fn is_conflict(err: &kube::Error) -> bool {
    is_status(err, 409, None) && !is_already_exists(err)
}

fn is_not_found(err: &kube::Error) -> bool {
    is_status(err, 404, None)
}

fn guard_from(cm: &ConfigMap, record: LockRecord, took_over_from: Option<LockRecord>) -> LockGuard {
    let record_session = record.holder_session.clone();
    LockGuard {
        namespace: cm.metadata.namespace.clone().unwrap_or_default(),
        name: cm.metadata.name.clone().unwrap_or_default(),
        uid: cm.metadata.uid.clone().unwrap_or_default(),
        resource_version: cm.metadata.resource_version.clone().unwrap_or_default(),
        record,
        took_over_from,
        config_map: cm.clone(),
        session: record_session,
    }
}

fn parse_cm(cm: &ConfigMap) -> Result<LockRecord, LockError> {
    let empty = BTreeMap::new();
    LockRecord::parse(cm.data.as_ref().unwrap_or(&empty)).map_err(|e| match e {
        LockError::Malformed(why) => LockError::Malformed(format!(
            "configmap {}/{}: {why}",
            cm.metadata.namespace.as_deref().unwrap_or_default(),
            cm.metadata.name.as_deref().unwrap_or_default()
        )),
        other => other,
    })
}

/// Take the lock on `key` for `record.holder_session`.
///
/// - Nobody holds it: create it with `record`.
/// - The holder's lease is valid: [`LockError::Held`] with their record; nothing is written.
/// - The holder's lease expired: take it over by a PUT preconditioned on the resourceVersion
///   we read (losing that race is `Held` by the winner). If the dead holder recorded the same
///   workload uid, its `originalReplicas`, `scaledObjects` and Argo CD Application are carried forward: the workload
///   is probably at zero because of the dead session, so the caller's view of the count is not
///   trusted. A record for another uid (the workload was recreated) is not trusted: the
///   caller's record is used as is.
/// - The holder is the same session (a retried call): the lock is returned as it is.
/// - The existing data is malformed: [`LockError::Malformed`]; never acted upon.
pub async fn acquire(
    client: &kube::Client,
    namespace: &str,
    key: &WorkloadKey,
    record: LockRecord,
    owner: OwnerReference,
) -> Result<LockGuard, LockError> {
    let api = api(client, namespace);
    let name = key.lock_name();
    for _ in 0..MAX_ATTEMPTS {
        let cm = ConfigMap {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(namespace.to_string()),
                labels: Some(labels(&record.holder_session)),
                owner_references: Some(vec![owner.clone()]),
                finalizers: Some(vec![FINALIZER.to_string()]),
                ..Default::default()
            },
            data: Some(record.to_checked_data()?),
            ..Default::default()
        };
        match api.create(&post_params(), &cm).await {
            Ok(created) => return Ok(guard_from(&created, record, None)),
            Err(e) if is_already_exists(&e) => {}
            Err(e) => return Err(e.into()),
        }
        // Held by someone (perhaps a dead session): look at the holder.
        let Some(current) = api.get_opt(&name).await? else {
            continue; // released meanwhile: try creating again
        };
        let held = parse_cm(&current)?;
        if held.holder_session == record.holder_session {
            return Ok(guard_from(&current, held, None));
        }
        if held.lease_valid(clock::now()) {
            return Err(LockError::Held(Box::new(held)));
        }
        let mut new = record.clone();
        if held.workload_uid == record.workload_uid {
            new.original_replicas = held.original_replicas;
            // The caller's target was reckoned from its own view of the count: never above
            // the carried original (the caller checks it against the original again).
            new.target_replicas = new.target_replicas.min(new.original_replicas);
            // The dead holder may have paused these: restore must look at them too.
            for so in held.scaled_objects.iter() {
                if !new.scaled_objects.contains(so) {
                    new.scaled_objects.push(so.clone());
                }
            }
            // The dead holder may have paused its Application: its value from before the
            // pause is the one to put back, not what the Application says now.
            if held.argo_application.is_some() {
                new.argo_application = held.argo_application.clone();
            }
        }
        let mut replacement = current.clone();
        replacement.metadata.labels = Some(labels(&record.holder_session));
        replacement.metadata.owner_references = Some(vec![owner.clone()]);
        replacement.data = Some(new.to_checked_data()?);
        // The API server refuses a new finalizer on an object being deleted; one that is
        // being deleted still has ours (it would be gone otherwise).
        if current.metadata.deletion_timestamp.is_none() {
            add_finalizer(&mut replacement.metadata);
        }
        match api.replace(&name, &post_params(), &replacement).await {
            Ok(written) => return Ok(guard_from(&written, new, Some(held))),
            // Someone else changed it between our read and our write: look again.
            Err(e) if is_conflict(&e) || is_not_found(&e) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(LockError::Contended(name))
}

/// The lock ConfigMap `name` (see [`WorkloadKey::lock_name`]), if any. Malformed data is an
/// error naming the lock, never a guess.
pub async fn read(
    client: &kube::Client,
    namespace: &str,
    name: &str,
) -> Result<Option<(LockRecord, ObjectMeta)>, LockError> {
    match api(client, namespace).get_opt(name).await? {
        None => Ok(None),
        Some(cm) => Ok(Some((parse_cm(&cm)?, cm.metadata))),
    }
}

/// Every lock ConfigMap (by label) in `namespace`, or in all namespaces. Raw, so callers can
/// report the malformed ones.
pub async fn list(
    client: &kube::Client,
    namespace: Option<&str>,
    session: Option<&str>,
) -> Result<Vec<ConfigMap>, kube::Error> {
    let api: Api<ConfigMap> = match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let mut selector = format!("{LABEL_MANAGED_BY}={MANAGED_BY},{LABEL_ROLE}={ROLE_LOCK}");
    if let Some(s) = session {
        selector.push_str(&format!(",{LABEL_SESSION}={s}"));
    }
    let mut out = Vec::new();
    let mut lp = ListParams::default().labels(&selector).limit(500);
    loop {
        let page = api.list(&lp).await?;
        out.extend(page.items);
        match page.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(token) => lp = lp.continue_token(&token),
            None => return Ok(out),
        }
    }
}

async fn update_from(
    client: &kube::Client,
    namespace: &str,
    name: &str,
    session: &str,
    mut known: Option<ConfigMap>,
    change: impl Fn(&mut LockRecord),
) -> Result<LockGuard, LockError> {
    let api = api(client, namespace);
    for _ in 0..MAX_ATTEMPTS {
        let current = match known.take() {
            Some(cm) => Some(cm),
            None => api.get_opt(name).await?,
        };
        let Some(mut cm) = current else {
            return Err(LockError::Lost(format!(
                "lock {namespace}/{name} no longer exists"
            )));
        };
        let mut record = parse_cm(&cm)?;
        if record.holder_session != session {
            return Err(LockError::Lost(format!(
                "lock {namespace}/{name} is now held by {}",
                record.describe_holder()
            )));
        }
        change(&mut record);
        cm.data = Some(record.to_checked_data()?);
        match api.replace(name, &post_params(), &cm).await {
            Ok(written) => return Ok(guard_from(&written, record, None)),
            Err(e) if is_conflict(&e) => continue,
            Err(e) if is_not_found(&e) => {
                return Err(LockError::Lost(format!(
                    "lock {namespace}/{name} no longer exists"
                )))
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(LockError::Contended(name.to_string()))
}

/// What [`release`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Released {
    /// We deleted our lock.
    Deleted,
    /// There was no lock (already released).
    Absent,
    /// The lock is held by another session now (ours expired and was taken over): untouched.
    HeldByOther(String),
}

fn add_finalizer(meta: &mut ObjectMeta) {
    let finalizers = meta.finalizers.get_or_insert_with(Vec::new);
    if !finalizers.iter().any(|f| f == FINALIZER) {
        finalizers.push(FINALIZER.to_string());
    }
}

fn has_finalizer(meta: &ObjectMeta) -> bool {
    meta.finalizers
        .as_ref()
        .is_some_and(|f| f.iter().any(|x| x == FINALIZER))
}

/// Release `session`'s lock `name`: its finalizer off, then a DELETE preconditioned on its
/// uid and resourceVersion, so a lock taken over meanwhile is never touched. Without a read
/// first: one JSON patch whose `test` operations say "still held by `session`, with only our
/// finalizer" (the API server applies all operations or none), then the DELETE. Anything else
/// (another holder, other finalizers, a write in between) goes the reading way. Idempotent.
/// A malformed lock is not deleted (the caller reports it).
pub async fn release(
    client: &kube::Client,
    namespace: &str,
    name: &str,
    session: &str,
) -> Result<Released, LockError> {
    let api = api(client, namespace);
    let ops = serde_json::json!([
        {"op": "test", "path": "/data/holderSession", "value": session},
        {"op": "test", "path": "/metadata/finalizers", "value": [FINALIZER]},
        {"op": "remove", "path": "/metadata/finalizers"},
    ]);
    let patch: json_patch::Patch = serde_json::from_value(ops).expect("a well-formed JSON patch");
    let known = match api
        .patch(name, &patch_params(), &Patch::<()>::Json(patch))
        .await
    {
        Ok(unfinalized) => match delete_exactly(&api, &unfinalized).await {
            Ok(()) => return Ok(Released::Deleted),
            Err(e) if is_conflict(&e) => None,
            Err(e) => return Err(e.into()),
        },
        Err(e) if is_not_found(&e) => return Ok(Released::Absent),
        // A failed `test` (422 Invalid): decide from the lock as it is.
        Err(e) if is_status(&e, 422, None) => None,
        Err(e) => return Err(e.into()),
    };
    release_from(client, namespace, name, session, known).await
}

/// DELETE `cm` with its uid and resourceVersion as preconditions. Already gone (a lock being
/// deleted goes when its last finalizer does) is success.
async fn delete_exactly(api: &Api<ConfigMap>, cm: &ConfigMap) -> Result<(), kube::Error> {
    let dp = DeleteParams {
        preconditions: Some(Preconditions {
            uid: cm.metadata.uid.clone(),
            resource_version: cm.metadata.resource_version.clone(),
        }),
        ..Default::default()
    };
    match api.delete(&cm.name_any(), &dp).await {
        Ok(_) => Ok(()),
        Err(e) if is_not_found(&e) => Ok(()),
        Err(e) => Err(e),
    }
}

async fn release_from(
    client: &kube::Client,
    namespace: &str,
    name: &str,
    session: &str,
    mut known: Option<ConfigMap>,
) -> Result<Released, LockError> {
    let api = api(client, namespace);
    for _ in 0..MAX_ATTEMPTS {
        let current = match known.take() {
            Some(cm) => Some(cm),
            None => api.get_opt(name).await?,
        };
        let Some(mut cm) = current else {
            return Ok(Released::Absent);
        };
        let record = parse_cm(&cm)?;
        if record.holder_session != session {
            return Ok(Released::HeldByOther(record.describe_holder()));
        }
        if has_finalizer(&cm.metadata) {
            if let Some(f) = cm.metadata.finalizers.as_mut() {
                f.retain(|x| x != FINALIZER);
            }
            cm = match api.replace(name, &post_params(), &cm).await {
                Ok(written) => written,
                Err(e) if is_not_found(&e) => return Ok(Released::Absent),
                Err(e) if is_conflict(&e) => continue,
                Err(e) => return Err(e.into()),
            };
        }
        match delete_exactly(&api, &cm).await {
            Ok(()) => return Ok(Released::Deleted),
            Err(e) if is_conflict(&e) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(LockError::Contended(name.to_string()))
}
