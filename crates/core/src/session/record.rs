//! The session ConfigMap: building it, and reading a `Session` back from it. Malformed
//! records are reported as `Error::CorruptRecord`, never guessed at.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::ResourceExt;

use super::Session;
use crate::copy::CopyOptions;
use crate::error::Error;
use crate::labels::{self, Role};
use mirrord_copy_lock::{rfc3339, PausedApplication};

/// `now + ttl`, or None when that is not a representable time.
pub(crate) fn expiry(now: DateTime<Utc>, ttl: Duration) -> Option<DateTime<Utc>> {
    now.checked_add_signed(chrono::Duration::from_std(ttl).ok()?)
}

/// What a new session records.
pub(crate) struct NewSession<'a> {
    pub id: &'a str,
    pub namespace: &'a str,
    pub target: String,
    pub copy_pod: &'a str,
    pub scale_down: bool,
    pub scale_to: crate::ScaleTo,
    pub owner: &'a str,
    pub host: &'a str,
    /// Scale-down: the workload (`kind/name`), so `restore` finds it even if the lock is lost.
    pub workload: Option<String>,
    /// Scale-down: the KEDA ScaledObjects targeting the workload, before any is paused.
    pub scaled_objects: Vec<String>,
    /// Scale-down with `--suspend-argocd`: the Application to pause and its selfHeal before.
    pub argo_application: Option<PausedApplication>,
    pub options: &'a CopyOptions,
    pub now: DateTime<Utc>,
    pub ttl: Option<Duration>,
}

impl NewSession<'_> {
    pub(super) fn expires(&self) -> Option<DateTime<Utc>> {
        self.ttl.and_then(|ttl| expiry(self.now, ttl))
    }

    pub(super) fn config_map(&self) -> ConfigMap {
        let mut data = BTreeMap::from([
            (labels::DATA_VERSION, labels::SESSION_VERSION.to_string()),
            (labels::DATA_TARGET, self.target.clone()),
            (labels::DATA_COPY_POD, self.copy_pod.to_string()),
            (labels::DATA_SCALE_DOWN, self.scale_down.to_string()),
            (labels::DATA_OWNER, self.owner.to_string()),
            (labels::DATA_CREATED, rfc3339(self.now)),
            (labels::DATA_HEARTBEAT, rfc3339(self.now)),
            (labels::DATA_OPTIONS, self.options.to_json()),
            // Until `confirm`: a create that dies leaves a session gc ends within the
            // provisional lease, not its TTL.
            (labels::DATA_PROVISIONAL, "true".to_string()),
        ]);
        if !self.host.is_empty() {
            data.insert(labels::DATA_HOST, self.host.to_string());
        }
        // Only where it is not the default: records of scale-down sessions stay as they were.
        if self.scale_down && self.scale_to != crate::ScaleTo::Zero {
            data.insert(labels::DATA_SCALE_MODE, self.scale_to.as_str().to_string());
        }
        if let Some(workload) = &self.workload {
            data.insert(labels::DATA_WORKLOAD, workload.clone());
        }
        if !self.scaled_objects.is_empty() {
            data.insert(labels::DATA_SCALED_OBJECTS, self.scaled_objects.join(","));
        }
        if let Some(app) = &self.argo_application {
            data.insert(labels::DATA_ARGO_APPLICATION, app.application.clone());
            data.insert(labels::DATA_ARGO_SELF_HEAL_BEFORE, app.before_text().into());
        }
        if let Some(expires) = self.expires() {
            data.insert(labels::DATA_EXPIRES, rfc3339(expires));
        }
        ConfigMap {
            metadata: ObjectMeta {
                name: Some(labels::session_config_map_name(self.id)),
                namespace: Some(self.namespace.to_string()),
                labels: Some(labels::managed_labels(self.id, Role::Session)),
                ..Default::default()
            },
            data: Some(data.into_iter().map(|(k, v)| (k.to_string(), v)).collect()),
            ..Default::default()
        }
    }

    /// [`NewSession::config_map`], read back before it is written: a record the plugin could
    /// not read (an expiry past year 9999, which RFC 3339 cannot hold) is refused, never sent,
    /// since a session nobody can read cannot be ended.
    pub(super) fn checked_config_map(&self) -> Result<ConfigMap, Error> {
        let cm = self.config_map();
        let times = std::iter::once(self.now).chain(self.expires());
        if let Some(t) = times
            .into_iter()
            .find(|t| !mirrord_copy_lock::writes_as_rfc3339(*t))
        {
            return Err(Error::Internal(format!(
                "refusing to write a session record that would not read back: {} is not RFC 3339",
                rfc3339(t)
            )));
        }
        let back = session_from_config_map(&cm).map_err(|e| {
            Error::Internal(format!(
                "refusing to write a session record that would not read back ({e})"
            ))
        })?;
        if back.expires != self.expires().map(second)
            || back.created != second(self.now)
            || back.scale_to != self.scale_to
        {
            return Err(Error::Internal(format!(
                "refusing to write a session record that would not read back: created {}, expires {:?}",
                rfc3339(self.now),
                self.expires().map(rfc3339)
            )));
        }
        Ok(cm)
    }

    pub(super) fn session(&self) -> Session {
        Session {
            id: self.id.to_string(),
            namespace: self.namespace.to_string(),
            target: self.target.clone(),
            copy_pod: self.copy_pod.to_string(),
            scale_down: self.scale_down,
            scale_to: self.scale_to,
            replicas: None,
            owner: self.owner.to_string(),
            host: (!self.host.is_empty()).then(|| self.host.to_string()),
            created: self.now,
            expires: self.expires(),
            heartbeat: Some(self.now),
            interference: None,
            options: self.options.normalized(),
            copy_phase: None,
            runs: None,
            workload: self.workload.clone(),
            scaled_objects: self.scaled_objects.clone(),
            argo_application: self.argo_application.clone(),
            provisional: true,
            confirmed: None,
            record_uid: None,
        }
    }
}

/// `t` at the second precision records are written with.
fn second(t: DateTime<Utc>) -> DateTime<Utc> {
    use chrono::SubsecRound;
    t.trunc_subsecs(0)
}

/// Read a session back from its ConfigMap.
pub(crate) fn session_from_config_map(cm: &ConfigMap) -> Result<Session, Error> {
    let name = cm.name_any();
    let namespace = cm.namespace().unwrap_or_default();
    let corrupt =
        |why: String| Error::CorruptRecord(format!("session ConfigMap {namespace}/{name}: {why}"));
    let id = cm
        .labels()
        .get(labels::SESSION_LABEL)
        .cloned()
        .ok_or_else(|| corrupt(format!("missing label {}", labels::SESSION_LABEL)))?;
    let empty = BTreeMap::new();
    let data = cm.data.as_ref().unwrap_or(&empty);
    let field = |key: &str| {
        data.get(key)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| corrupt(format!("missing data key {key}")))
    };
    let version = field(labels::DATA_VERSION)?;
    if version != labels::SESSION_VERSION {
        return Err(corrupt(format!("unknown version {version:?}")));
    }
    let time = |key: &str, value: &str| {
        mirrord_copy_lock::parse_rfc3339(value).map_err(|e| corrupt(format!("{key}: {e}")))
    };
    let scale_down = match field(labels::DATA_SCALE_DOWN)?.as_str() {
        "true" => true,
        "false" => false,
        other => return Err(corrupt(format!("scaleDown: {other:?} is not true/false"))),
    };
    let scale_to = match data.get(labels::DATA_SCALE_MODE).filter(|v| !v.is_empty()) {
        None => crate::ScaleTo::Zero,
        Some(v) => crate::ScaleTo::parse(v).ok_or_else(|| {
            corrupt(format!(
                "{}: {v:?} is not scale-down or replace-one",
                labels::DATA_SCALE_MODE
            ))
        })?,
    };
    let options = match data.get(labels::DATA_OPTIONS) {
        Some(json) => serde_json::from_str::<CopyOptions>(json)
            .map_err(|e| corrupt(format!("options: {e}")))?,
        None => CopyOptions::default(),
    };
    let expires = match data.get(labels::DATA_EXPIRES).filter(|v| !v.is_empty()) {
        Some(v) => Some(time(labels::DATA_EXPIRES, v)?),
        None => None,
    };
    let provisional = match data.get(labels::DATA_PROVISIONAL).map(String::as_str) {
        None | Some("") | Some("false") => false,
        Some("true") => true,
        Some(other) => return Err(corrupt(format!("provisional: {other:?} is not true/false"))),
    };
    let confirmed = match data.get(labels::DATA_CONFIRMED).filter(|v| !v.is_empty()) {
        Some(v) => Some(time(labels::DATA_CONFIRMED, v)?),
        None => None,
    };
    Ok(Session {
        id,
        namespace: namespace.clone(),
        target: field(labels::DATA_TARGET)?.clone(),
        copy_pod: field(labels::DATA_COPY_POD)?.clone(),
        scale_down,
        scale_to,
        replicas: None,
        owner: field(labels::DATA_OWNER)?.clone(),
        host: data
            .get(labels::DATA_HOST)
            .filter(|v| !v.is_empty())
            .cloned(),
        created: time(labels::DATA_CREATED, field(labels::DATA_CREATED)?)?,
        expires,
        heartbeat: match data.get(labels::DATA_HEARTBEAT).filter(|v| !v.is_empty()) {
            Some(v) => Some(time(labels::DATA_HEARTBEAT, v)?),
            None => None,
        },
        interference: data
            .get(labels::DATA_INTERFERENCE)
            .filter(|v| !v.is_empty())
            .cloned(),
        options: options.normalized(),
        copy_phase: None,
        runs: None,
        workload: data
            .get(labels::DATA_WORKLOAD)
            .filter(|v| !v.is_empty())
            .cloned(),
        scaled_objects: mirrord_copy_lock::split_names(
            data.get(labels::DATA_SCALED_OBJECTS).map(String::as_str),
        ),
        argo_application: PausedApplication::parse(
            data.get(labels::DATA_ARGO_APPLICATION).map(String::as_str),
            data.get(labels::DATA_ARGO_SELF_HEAL_BEFORE)
                .map(String::as_str),
        )
        .map_err(corrupt)?,
        provisional,
        confirmed,
        record_uid: cm.uid(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new_session(ttl: Option<Duration>) -> (NewSession<'static>, &'static CopyOptions) {
        static OPTS: std::sync::OnceLock<CopyOptions> = std::sync::OnceLock::new();
        let opts = OPTS.get_or_init(|| CopyOptions {
            exclude_containers: vec!["metrics".into()],
            exclude_init_containers: vec![],
            ..Default::default()
        });
        let now = DateTime::parse_from_rfc3339("2026-11-22T10:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        (
            NewSession {
                id: "abcde12345",
                namespace: "default",
                target: "deployment/x/container/app".into(),
                copy_pod: "x-copy-aaaaa",
                scale_down: true,
                scale_to: crate::ScaleTo::Zero,
                owner: "alice@example.com",
                host: "alice@laptop",
                workload: Some("deployment/x".into()),
                scaled_objects: vec!["x-keda".into()],
                argo_application: Some(PausedApplication {
                    application: "argocd/shop".into(),
                    self_heal_before: Some(true),
                }),
                options: opts,
                now,
                ttl,
            },
            opts,
        )
    }

    #[test]
    fn config_map_round_trips() {
        let (new, _) = new_session(Some(Duration::from_secs(8 * 3600)));
        let cm = new.config_map();
        let json = serde_json::to_value(&cm).unwrap();
        assert_eq!(json["metadata"]["name"], "mirrord-copy-session-abcde12345");
        assert_eq!(
            json["metadata"]["labels"]["mirrord-copy.io/role"],
            "session"
        );
        let data = &json["data"];
        assert_eq!(data["version"], "1");
        assert_eq!(data["target"], "deployment/x/container/app");
        assert_eq!(data["copyPod"], "x-copy-aaaaa");
        assert_eq!(data["scaleDown"], "true");
        assert_eq!(data["owner"], "alice@example.com");
        assert_eq!(data["host"], "alice@laptop");
        assert_eq!(data["workload"], "deployment/x");
        assert_eq!(data["scaledObjects"], "x-keda");
        assert_eq!(data["argoApplication"], "argocd/shop");
        assert_eq!(data["argoSelfHealBefore"], "true");
        assert_eq!(data["created"], "2026-11-22T10:00:00Z");
        assert_eq!(data["heartbeat"], "2026-11-22T10:00:00Z");
        assert_eq!(data["expires"], "2026-11-22T18:00:00Z");
        assert_eq!(
            data["options"],
            r#"{"excludeContainers":["metrics"],"excludeInitContainers":[]}"#
        );
        assert_eq!(data["provisional"], "true");
        assert!(data.get("confirmed").is_none());
        assert_eq!(session_from_config_map(&cm).unwrap(), new.session());
    }

    #[test]
    fn a_record_that_would_not_read_back_is_never_written() {
        let (mut new, _) = new_session(Some(Duration::from_secs(8 * 3600)));
        let cm = new
            .checked_config_map()
            .expect("an ordinary record reads back");
        assert_eq!(session_from_config_map(&cm).unwrap(), new.session());
        // An expiry past year 9999 is written as "+10000-..." and RFC 3339 cannot read it.
        new.now = DateTime::parse_from_rfc3339("9999-12-31T20:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert!(new.config_map().data.unwrap()["expires"].starts_with("+10000-"));
        let err = new.checked_config_map().unwrap_err();
        assert!(err.to_string().contains("would not read back"), "{err}");
        new.ttl = Some(Duration::from_secs(3600));
        new.checked_config_map()
            .expect("an expiry within year 9999 reads back");
    }

    #[test]
    fn the_scale_mode_round_trips_and_defaults_to_scale_down() {
        let (mut new, _) = new_session(None);
        let cm = new.checked_config_map().unwrap();
        assert!(
            !cm.data.as_ref().unwrap().contains_key("scaleMode"),
            "a scale-down record is as before"
        );
        new.scale_to = crate::ScaleTo::OneLess;
        let cm = new.checked_config_map().unwrap();
        assert_eq!(cm.data.as_ref().unwrap()["scaleMode"], "replace-one");
        let back = session_from_config_map(&cm).unwrap();
        assert_eq!(back.scale_to, crate::ScaleTo::OneLess);
        assert_eq!(back, new.session());
        let mut bad = cm.clone();
        bad.data
            .as_mut()
            .unwrap()
            .insert("scaleMode".into(), "half".into());
        let err = session_from_config_map(&bad).unwrap_err();
        assert!(err.to_string().contains("scaleMode"), "{err}");
    }

    #[test]
    fn records_without_a_host_still_read() {
        let (new, _) = new_session(None);
        let mut cm = new.config_map();
        cm.data.as_mut().unwrap().remove("host");
        assert_eq!(session_from_config_map(&cm).unwrap().host, None);
    }

    #[test]
    fn records_without_an_application_still_read() {
        let (mut new, _) = new_session(None);
        new.argo_application = None;
        let cm = new.config_map();
        assert!(!cm.data.as_ref().unwrap().contains_key("argoApplication"));
        assert_eq!(session_from_config_map(&cm).unwrap(), new.session());
    }

    #[test]
    fn run_sessions_have_no_expiry() {
        let (new, _) = new_session(None);
        let cm = new.config_map();
        assert!(!cm.data.as_ref().unwrap().contains_key("expires"));
        assert_eq!(session_from_config_map(&cm).unwrap().expires, None);
    }

    #[test]
    fn malformed_records_are_reported() {
        let (new, _) = new_session(None);
        for (key, value) in [
            ("version", "2"),
            ("scaleDown", "yes"),
            ("created", "yesterday"),
            ("options", "{"),
            ("copyPod", ""),
            ("provisional", "maybe"),
            ("confirmed", "soon"),
            ("argoSelfHealBefore", "on"),
            ("argoApplication", "shop"),
        ] {
            let mut cm = new.config_map();
            cm.data.as_mut().unwrap().insert(key.into(), value.into());
            let err = session_from_config_map(&cm).unwrap_err();
            assert!(matches!(err, Error::CorruptRecord(_)), "{key}: {err}");
        }
        let mut cm = new.config_map();
        cm.metadata.labels = None;
        assert!(session_from_config_map(&cm).is_err());
    }
}
