//! The session ConfigMap: building it, and reading a `Session` back from it. Malformed
//! records are reported as `Error::CorruptRecord`, never guessed at.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::ResourceExt;

use super::Session;
use crate::copy::{timestamp, CopyOptions};
use crate::error::Error;
use crate::labels::{self, Role};

/// What a new session records.
pub(crate) struct NewSession<'a> {
    pub id: &'a str,
    pub namespace: &'a str,
    pub target: String,
    pub copy_pod: &'a str,
    pub scale_down: bool,
    pub owner: &'a str,
    pub host: &'a str,
    /// Scale-down: the workload (`kind/name`), so `restore` finds it even if the lock is lost.
    pub workload: Option<String>,
    /// Scale-down: the KEDA ScaledObjects targeting the workload, before any is paused.
    pub scaled_objects: Vec<String>,
    pub options: &'a CopyOptions,
    pub now: DateTime<Utc>,
    pub ttl: Option<Duration>,
}

impl NewSession<'_> {
    pub(super) fn expires(&self) -> Option<DateTime<Utc>> {
        self.ttl
            .and_then(|ttl| super::lifecycle::expiry(self.now, ttl))
    }

    pub(super) fn config_map(&self) -> ConfigMap {
        let mut data = BTreeMap::from([
            (labels::DATA_VERSION, labels::SESSION_VERSION.to_string()),
            (labels::DATA_TARGET, self.target.clone()),
            (labels::DATA_COPY_POD, self.copy_pod.to_string()),
            (labels::DATA_SCALE_DOWN, self.scale_down.to_string()),
            (labels::DATA_OWNER, self.owner.to_string()),
            (labels::DATA_CREATED, timestamp(self.now)),
            (labels::DATA_HEARTBEAT, timestamp(self.now)),
            (labels::DATA_OPTIONS, self.options.to_json()),
        ]);
        if !self.host.is_empty() {
            data.insert(labels::DATA_HOST, self.host.to_string());
        }
        if let Some(workload) = &self.workload {
            data.insert(labels::DATA_WORKLOAD, workload.clone());
        }
        if !self.scaled_objects.is_empty() {
            data.insert(labels::DATA_SCALED_OBJECTS, self.scaled_objects.join(","));
        }
        if let Some(expires) = self.expires() {
            data.insert(labels::DATA_EXPIRES, timestamp(expires));
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

    pub(super) fn session(&self) -> Session {
        Session {
            id: self.id.to_string(),
            namespace: self.namespace.to_string(),
            target: self.target.clone(),
            copy_pod: self.copy_pod.to_string(),
            scale_down: self.scale_down,
            owner: self.owner.to_string(),
            host: (!self.host.is_empty()).then(|| self.host.to_string()),
            created: self.now,
            expires: self.expires(),
            heartbeat: Some(self.now),
            interference: None,
            options: self.options.normalized(),
            copy_phase: None,
            workload: self.workload.clone(),
            scaled_objects: self.scaled_objects.clone(),
            record_uid: None,
        }
    }
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
        DateTime::parse_from_rfc3339(value)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|e| corrupt(format!("{key}: {e}")))
    };
    let scale_down = match field(labels::DATA_SCALE_DOWN)?.as_str() {
        "true" => true,
        "false" => false,
        other => return Err(corrupt(format!("scaleDown: {other:?} is not true/false"))),
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
    Ok(Session {
        id,
        namespace: namespace.clone(),
        target: field(labels::DATA_TARGET)?.clone(),
        copy_pod: field(labels::DATA_COPY_POD)?.clone(),
        scale_down,
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
        workload: data
            .get(labels::DATA_WORKLOAD)
            .filter(|v| !v.is_empty())
            .cloned(),
        scaled_objects: mirrord_copy_lock::split_names(
            data.get(labels::DATA_SCALED_OBJECTS).map(String::as_str),
        ),
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
                owner: "alice@example.com",
                host: "alice@laptop",
                workload: Some("deployment/x".into()),
                scaled_objects: vec!["x-keda".into()],
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
        assert_eq!(data["created"], "2026-11-22T10:00:00Z");
        assert_eq!(data["heartbeat"], "2026-11-22T10:00:00Z");
        assert_eq!(data["expires"], "2026-11-22T18:00:00Z");
        assert_eq!(
            data["options"],
            r#"{"excludeContainers":["metrics"],"excludeInitContainers":[]}"#
        );
        assert_eq!(session_from_config_map(&cm).unwrap(), new.session());
    }

    #[test]
    fn records_without_a_host_still_read() {
        let (new, _) = new_session(None);
        let mut cm = new.config_map();
        cm.data.as_mut().unwrap().remove("host");
        assert_eq!(session_from_config_map(&cm).unwrap().host, None);
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
