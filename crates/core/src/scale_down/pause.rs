//! Pausing another object for a session, and putting it back: what would fight the zero is
//! switched off for the session (a KEDA ScaledObject's `paused-replicas`, an Argo CD
//! Application's self-heal). One field is set to its paused value, and in the same merge
//! patch, pinned to the resourceVersion read, two annotations record which session paused it
//! and the value before (as JSON, `null` for absent). So restore works from the object alone,
//! from any machine, and a dead session's pause is carried forward by the session that takes
//! its place: the value put back is the one from before any session paused it.

use kube::api::{Api, ApiResource, DynamicObject, ListParams, Patch};
use kube::ResourceExt;
use serde_json::{json, Value};

use crate::error::{is_conflict, is_not_found, Error};

/// One kind of pause: which field, to what, and where the way back is written.
pub(super) struct Switch {
    pub resource: ApiResource,
    /// `scaledobjects.keda.sh`: how errors name the resource.
    pub qualified: &'static str,
    /// The paused field, from the object's root (`["spec", "syncPolicy", ...]`).
    pub path: &'static [&'static str],
    /// Its value while paused.
    pub paused: Value,
    /// Annotation naming the session that paused the object.
    pub by: &'static str,
    /// Annotation holding the value before the pause, as JSON.
    pub previous: &'static str,
    /// Read the object again by a LIST on its name (the shipped Roles grant list and patch on
    /// ScaledObjects, not get), else by a GET.
    pub read_by_list: bool,
    /// A recorded value that may be put back; anything else puts back "absent".
    pub valid: fn(&Value) -> bool,
}

impl Switch {
    fn api(&self, client: &kube::Client, namespace: &str) -> Api<DynamicObject> {
        Api::namespaced_with(client.clone(), namespace, &self.resource)
    }

    /// The paused field of `object` as it is now (`null` when absent).
    fn current(&self, object: &DynamicObject) -> Value {
        let whole = serde_json::to_value(object).unwrap_or_default();
        self.path
            .iter()
            .try_fold(&whole, |v, key| v.get(*key))
            .cloned()
            .unwrap_or(Value::Null)
    }

    /// A merge patch setting the field to `value`, the two annotations to `by` and
    /// `previous`, pinned to `rv`.
    fn patch(&self, value: Value, by: Value, previous: Value, rv: Option<String>) -> Value {
        let mut patch = json!({});
        let mut at = &mut patch;
        for key in self.path {
            at = &mut at[*key];
        }
        *at = value;
        patch["metadata"]["annotations"][self.by] = by;
        patch["metadata"]["annotations"][self.previous] = previous;
        if let Some(rv) = rv {
            patch["metadata"]["resourceVersion"] = json!(rv);
        }
        patch
    }

    async fn write(
        &self,
        api: &Api<DynamicObject>,
        object: &DynamicObject,
        patch: Value,
    ) -> Result<(), kube::Error> {
        let params = mirrord_copy_lock::patch_params();
        api.patch(&object.name_any(), &params, &Patch::Merge(&patch))
            .await
            .map(drop)
    }

    /// Read one object again; gone (or its type no longer served): None.
    pub(super) async fn reread(
        &self,
        client: &kube::Client,
        namespace: &str,
        name: &str,
    ) -> Result<Option<DynamicObject>, Error> {
        let api = self.api(client, namespace);
        let read = match self.read_by_list {
            true => {
                let lp = ListParams::default().fields(&format!("metadata.name={name}"));
                api.list(&lp).await.map(|l| l.items.into_iter().next())
            }
            false => api.get_opt(name).await,
        };
        match read {
            Ok(o) => Ok(o),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(Error::from_kube(e, verb(self.read_by_list), self.qualified)),
        }
    }

    /// Pause `objects` (as read) for `session`; the names paused. Idempotent: one this
    /// session paused already keeps its recorded value. One deleted meanwhile is skipped.
    pub(super) async fn pause(
        &self,
        client: &kube::Client,
        namespace: &str,
        objects: &[DynamicObject],
        session: &str,
    ) -> Result<Vec<String>, Error> {
        let api = self.api(client, namespace);
        let mut paused = Vec::new();
        for object in objects {
            let name = object.name_any();
            let mut current = Some(object.clone());
            for _ in 0..8 {
                let Some(object) = current.take() else {
                    break;
                };
                match self.pause_one(&api, &object, session).await {
                    Ok(()) => {
                        paused.push(name.clone());
                        break;
                    }
                    // Its controller writes it too: read again and retry.
                    Err(e) if is_conflict(&e) => {
                        current = self.reread(client, namespace, &name).await?;
                    }
                    Err(e) if is_not_found(&e) => break,
                    Err(e) => return Err(Error::from_kube(e, "patch", self.qualified)),
                }
            }
        }
        Ok(paused)
    }

    /// The value before this pause: a dead session's record when another session paused it,
    /// else the field as it is.
    pub(super) fn value_before(&self, object: &DynamicObject, session: &str) -> Option<Value> {
        let annotations = object.annotations();
        match annotations.get(self.by).map(String::as_str) {
            Some(by) if by == session => None,
            Some(_) => Some(
                annotations
                    .get(self.previous)
                    .and_then(|p| serde_json::from_str(p).ok())
                    .unwrap_or(Value::Null),
            ),
            None => Some(self.current(object)),
        }
    }

    async fn pause_one(
        &self,
        api: &Api<DynamicObject>,
        object: &DynamicObject,
        session: &str,
    ) -> Result<(), kube::Error> {
        let Some(previous) = self.value_before(object, session) else {
            return Ok(()); // ours already
        };
        let patch = self.patch(
            self.paused.clone(),
            json!(session),
            json!(previous.to_string()),
            object.resource_version(),
        );
        self.write(api, object, patch).await
    }

    /// Put back the objects `names` whose pausing session `paused_by` accepts: this session,
    /// or any session when restoring through a lock we hold (a dead holder whose place we took
    /// may have paused them). `recorded`: the value before, as the lock records it (the record
    /// that counts); else the object's own annotation. No names, no request.
    pub(super) async fn unpause(
        &self,
        client: &kube::Client,
        namespace: &str,
        names: &[String],
        paused_by: &(dyn Fn(&str) -> bool + Sync),
        recorded: Option<&Value>,
    ) -> Result<Vec<String>, Error> {
        let api = self.api(client, namespace);
        let mut restored = Vec::new();
        for name in names {
            let mut current = self.reread(client, namespace, name).await?;
            for _ in 0..8 {
                let Some(object) = current.take() else {
                    break;
                };
                match self.unpause_one(&api, &object, paused_by, recorded).await {
                    Ok(true) => restored.push(name.clone()),
                    Ok(false) => {}
                    // Changed meanwhile (its controller, another gc): read again, decide again.
                    Err(e) if is_conflict(&e) => {
                        current = self.reread(client, namespace, name).await?;
                        continue;
                    }
                    Err(e) if is_not_found(&e) => {}
                    Err(e) => return Err(Error::from_kube(e, "patch", self.qualified)),
                }
                break;
            }
        }
        Ok(restored)
    }

    /// Put back the value before, if `paused_by` accepts the pausing session. Pinned to what
    /// we read. An unreadable value puts back "absent": the object's normal state, rather than
    /// paused for good.
    async fn unpause_one(
        &self,
        api: &Api<DynamicObject>,
        object: &DynamicObject,
        paused_by: &(dyn Fn(&str) -> bool + Sync),
        recorded: Option<&Value>,
    ) -> Result<bool, kube::Error> {
        let annotations = object.annotations();
        let Some(by) = annotations.get(self.by) else {
            return Ok(false);
        };
        if !paused_by(by) {
            return Ok(false);
        }
        let previous = match recorded {
            Some(v) => v.clone(),
            None => annotations
                .get(self.previous)
                .and_then(|p| serde_json::from_str(p).ok())
                .unwrap_or(Value::Null),
        };
        let previous = Some(previous)
            .filter(|v| (self.valid)(v))
            .unwrap_or(Value::Null);
        let patch = self.patch(
            previous,
            Value::Null,
            Value::Null,
            object.resource_version(),
        );
        self.write(api, object, patch).await?;
        Ok(true)
    }
}

fn verb(by_list: bool) -> &'static str {
    match by_list {
        true => "list",
        false => "get",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn switch() -> Switch {
        Switch {
            resource: ApiResource {
                group: "argoproj.io".into(),
                version: "v1alpha1".into(),
                api_version: "argoproj.io/v1alpha1".into(),
                kind: "Application".into(),
                plural: "applications".into(),
            },
            qualified: "applications.argoproj.io",
            path: &["spec", "syncPolicy", "automated", "selfHeal"],
            paused: json!(false),
            by: "x/by",
            previous: "x/previous",
            read_by_list: false,
            valid: Value::is_boolean,
        }
    }

    fn object(annotations: Value, self_heal: Value) -> DynamicObject {
        serde_json::from_value(json!({
            "apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
            "metadata": {"name": "shop", "annotations": annotations, "resourceVersion": "7"},
            "spec": {"syncPolicy": {"automated": {"prune": true, "selfHeal": self_heal}}},
        }))
        .unwrap()
    }

    #[test]
    fn the_pause_and_the_way_back_are_one_pinned_patch() {
        let s = switch();
        let o = object(json!({}), json!(true));
        let before = s.value_before(&o, "s1").unwrap();
        assert_eq!(before, json!(true));
        let patch = s.patch(
            s.paused.clone(),
            json!("s1"),
            json!(before.to_string()),
            o.resource_version(),
        );
        assert_eq!(
            patch,
            json!({"spec": {"syncPolicy": {"automated": {"selfHeal": false}}},
                "metadata": {"resourceVersion": "7",
                    "annotations": {"x/by": "s1", "x/previous": "true"}}})
        );
    }

    #[test]
    fn a_dead_sessions_record_is_carried_forward() {
        let s = switch();
        let theirs = object(json!({"x/by": "dead", "x/previous": "null"}), json!(false));
        assert_eq!(s.value_before(&theirs, "s2"), Some(Value::Null));
        assert_eq!(s.value_before(&theirs, "dead"), None);
        let unset: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
            "metadata": {"name": "shop"}, "spec": {}}))
        .unwrap();
        assert_eq!(s.current(&unset), Value::Null);
    }
}
