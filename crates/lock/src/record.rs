//! What a lock records, as ConfigMap data, and its validation. A record that fails
//! validation is reported and never acted upon: a wrong replica count restored onto a
//! production workload is worse than no restore.

use std::collections::BTreeMap;

use chrono::{DateTime, SecondsFormat, Utc};

use crate::LockError;

// Data keys (DESIGN.md "Lock ConfigMap"; crates/core/src/labels.rs lists the same names).
/// Data key of [`LockRecord::holder_session`].
pub const HOLDER_SESSION: &str = "holderSession";
/// Data key of [`LockRecord::holder`].
pub const HOLDER: &str = "holder";
/// Data key of [`LockRecord::since`].
pub const SINCE: &str = "since";
/// Data key of [`LockRecord::lease_expires`].
pub const LEASE_EXPIRES: &str = "leaseExpires";
/// Data key of [`LockRecord::workload_uid`].
pub const WORKLOAD_UID: &str = "workloadUid";
/// Data key of [`LockRecord::workload_kind`].
pub const WORKLOAD_KIND: &str = "workloadKind";
/// Data key of [`LockRecord::workload_name`].
pub const WORKLOAD_NAME: &str = "workloadName";
/// Data key of [`LockRecord::original_replicas`].
pub const ORIGINAL_REPLICAS: &str = "originalReplicas";
/// Data key of [`LockRecord::target_replicas`] (optional: absent in an earlier build's
/// records, which always scaled to zero).
pub const TARGET_REPLICAS: &str = "targetReplicas";
/// Data key of [`LockRecord::copy_pod`].
pub const COPY_POD: &str = "copyPod";
/// Data key of [`LockRecord::scaled_objects`] (optional).
pub const SCALED_OBJECTS: &str = "scaledObjects";
/// Data key of [`PausedApplication::application`] (optional: absent, no Application paused).
pub const ARGO_APPLICATION: &str = "argoApplication";
/// Data key of [`PausedApplication::self_heal_before`] (present exactly when
/// [`ARGO_APPLICATION`] is): `true`, `false`, or `unset`.
pub const ARGO_SELF_HEAL_BEFORE: &str = "argoSelfHealBefore";

/// The largest replica count we record or trust. Kubernetes allows any int32, but no real
/// workload runs 100,000 replicas of one pod (the documented scalability limit is 150,000 pods
/// per cluster), so a bigger number means a corrupt or hostile record. Callers refuse to scale
/// down a workload above it, so we never write a record we would later refuse.
pub const MAX_REPLICAS: i32 = 100_000;

/// The content of a lock ConfigMap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockRecord {
    /// Session id of the holder.
    pub holder_session: String,
    /// "user@host" of the holder.
    pub holder: String,
    /// When the current holder took the lock.
    pub since: DateTime<Utc>,
    /// The holder must renew before this; after it, anyone may take the lock over.
    pub lease_expires: DateTime<Utc>,
    /// uid of the workload when its count was recorded: a recreated workload is another object.
    pub workload_uid: String,
    /// Kind of the locked workload, e.g. "Deployment" (for messages and gc).
    pub workload_kind: String,
    /// Name of the locked workload.
    pub workload_name: String,
    /// The count to restore. Carried forward on takeover.
    pub original_replicas: i32,
    /// The count the holder scales the workload to (0 for a scale-down, one less than
    /// [`LockRecord::original_replicas`] to replace one replica); never above it.
    pub target_replicas: i32,
    /// The holder's copy pod; empty until it is created.
    pub copy_pod: String,
    /// KEDA ScaledObjects targeting the workload, recorded before any is paused: the ones
    /// restore must look at (each carries who paused it). Optional key, comma-separated.
    pub scaled_objects: Vec<String>,
    /// The Argo CD Application whose self-heal `--suspend-argocd` turns off for the session,
    /// recorded before it is paused, with the value to put back. Optional keys.
    pub argo_application: Option<PausedApplication>,
}

/// An Argo CD Application paused for a session, and what its
/// `spec.syncPolicy.automated.selfHeal` was before.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PausedApplication {
    /// `namespace/name` of the Application.
    pub application: String,
    /// `selfHeal` before the pause: `None` when the field was absent.
    pub self_heal_before: Option<bool>,
}

impl PausedApplication {
    /// How [`ARGO_SELF_HEAL_BEFORE`] writes [`PausedApplication::self_heal_before`].
    pub fn before_text(&self) -> &'static str {
        match self.self_heal_before {
            Some(true) => "true",
            Some(false) => "false",
            None => "unset",
        }
    }

    /// The record from its two data values (the session's and the lock's); `None` when no
    /// Application is named. A name not `namespace/name` or a value other than `true`,
    /// `false` or `unset` is malformed: putting back a guess could leave self-heal off for good.
    pub fn parse(
        application: Option<&str>,
        before: Option<&str>,
    ) -> Result<Option<PausedApplication>, String> {
        let Some(application) = application.map(str::trim).filter(|a| !a.is_empty()) else {
            return Ok(None);
        };
        let well_formed = application
            .split_once('/')
            .is_some_and(|(ns, name)| !ns.is_empty() && !name.is_empty() && !name.contains('/'));
        if !well_formed {
            return Err(format!(
                "{ARGO_APPLICATION:?} is {application:?}, not namespace/name"
            ));
        }
        let self_heal_before = match before {
            Some("true") => Some(true),
            Some("false") => Some(false),
            Some("unset") => None,
            other => {
                return Err(format!(
                    "{ARGO_SELF_HEAL_BEFORE:?} is {other:?}, not true, false or unset"
                ))
            }
        };
        Ok(Some(PausedApplication {
            application: application.to_string(),
            self_heal_before,
        }))
    }
}

impl LockRecord {
    /// Is the lease still valid at `now`?
    pub fn lease_valid(&self, now: DateTime<Utc>) -> bool {
        now < self.lease_expires
    }

    /// "session abc (alice@laptop) since 2026-01-01T10:00:00Z, copy pod p": how a conflict
    /// names the holder.
    pub fn describe_holder(&self) -> String {
        format!(
            "session {} ({}) since {}, copy pod {}",
            self.holder_session,
            self.holder,
            rfc3339(self.since),
            if self.copy_pod.is_empty() {
                "not created yet"
            } else {
                &self.copy_pod
            }
        )
    }

    /// The record as the lock ConfigMap's data (the inverse of [`LockRecord::parse`]).
    pub fn to_data(&self) -> BTreeMap<String, String> {
        let mut data = BTreeMap::from([
            (HOLDER_SESSION.into(), self.holder_session.clone()),
            (HOLDER.into(), self.holder.clone()),
            (SINCE.into(), rfc3339(self.since)),
            (LEASE_EXPIRES.into(), rfc3339(self.lease_expires)),
            (WORKLOAD_UID.into(), self.workload_uid.clone()),
            (WORKLOAD_KIND.into(), self.workload_kind.clone()),
            (WORKLOAD_NAME.into(), self.workload_name.clone()),
            (ORIGINAL_REPLICAS.into(), self.original_replicas.to_string()),
            (TARGET_REPLICAS.into(), self.target_replicas.to_string()),
            (COPY_POD.into(), self.copy_pod.clone()),
            (SCALED_OBJECTS.into(), self.scaled_objects.join(",")),
        ]);
        if let Some(app) = &self.argo_application {
            data.insert(ARGO_APPLICATION.into(), app.application.clone());
            data.insert(ARGO_SELF_HEAL_BEFORE.into(), app.before_text().into());
        }
        data
    }

    /// [`LockRecord::to_data`], read back with [`LockRecord::parse`] first: what would not read
    /// back (a lease past year 9999, which RFC 3339 cannot hold; a count above
    /// [`MAX_REPLICAS`]) is [`LockError::Malformed`] and never written, since a lock nobody
    /// can read holds its workload for good.
    pub fn to_checked_data(&self) -> Result<BTreeMap<String, String>, LockError> {
        let data = self.to_data();
        let refuse = |why: String| {
            LockError::Malformed(format!(
                "refusing to write a lock record that would not read back: {why}"
            ))
        };
        for (key, t) in [(SINCE, self.since), (LEASE_EXPIRES, self.lease_expires)] {
            if !writes_as_rfc3339(t) {
                return Err(refuse(format!("{key} {} is not RFC 3339", rfc3339(t))));
            }
        }
        let back = LockRecord::parse(&data).map_err(|e| refuse(e.to_string()))?;
        use chrono::SubsecRound;
        let expected = LockRecord {
            since: self.since.trunc_subsecs(0),
            lease_expires: self.lease_expires.trunc_subsecs(0),
            ..self.clone()
        };
        if back != expected {
            return Err(refuse(format!("{data:?} reads back as {back:?}")));
        }
        Ok(data)
    }

    /// Parse and validate a lock's data. Every key but `scaledObjects`, `targetReplicas` and
    /// the Argo CD Application's two must be present (`targetReplicas` absent is 0: earlier
    /// builds only scaled to zero); counts must be integers in `0..=MAX_REPLICAS`, the target
    /// not above the original (a record of a scale *up* is none we write); timestamps RFC
    /// 3339. Keys we do not know (such as an earlier build's `scaledDown`) are ignored.
    pub fn parse(data: &BTreeMap<String, String>) -> Result<LockRecord, LockError> {
        let get = |key: &str| -> Result<&str, LockError> {
            data.get(key)
                .map(String::as_str)
                .ok_or_else(|| LockError::Malformed(format!("missing key {key:?}")))
        };
        let non_empty = |key: &str| -> Result<String, LockError> {
            let v = get(key)?;
            if v.trim().is_empty() {
                return Err(LockError::Malformed(format!("{key:?} is empty")));
            }
            Ok(v.to_string())
        };
        let record = LockRecord {
            holder_session: non_empty(HOLDER_SESSION)?,
            holder: get(HOLDER)?.to_string(),
            since: parse_time(SINCE, get(SINCE)?)?,
            lease_expires: parse_time(LEASE_EXPIRES, get(LEASE_EXPIRES)?)?,
            workload_uid: non_empty(WORKLOAD_UID)?,
            workload_kind: non_empty(WORKLOAD_KIND)?,
            workload_name: non_empty(WORKLOAD_NAME)?,
            original_replicas: parse_replicas(ORIGINAL_REPLICAS, get(ORIGINAL_REPLICAS)?)
                .map_err(LockError::Malformed)?,
            target_replicas: match data.get(TARGET_REPLICAS) {
                None => 0,
                Some(v) => parse_replicas(TARGET_REPLICAS, v).map_err(LockError::Malformed)?,
            },
            copy_pod: get(COPY_POD)?.to_string(),
            scaled_objects: split_names(data.get(SCALED_OBJECTS).map(String::as_str)),
            argo_application: PausedApplication::parse(
                data.get(ARGO_APPLICATION).map(String::as_str),
                data.get(ARGO_SELF_HEAL_BEFORE).map(String::as_str),
            )
            .map_err(LockError::Malformed)?,
        };
        if record.target_replicas > record.original_replicas {
            return Err(LockError::Malformed(format!(
                "{TARGET_REPLICAS:?} is {}, above {ORIGINAL_REPLICAS:?} {}: not a scale-down",
                record.target_replicas, record.original_replicas
            )));
        }
        Ok(record)
    }
}

/// A comma-separated list of names, as the lock and the session record ScaledObjects; absent
/// or empty is none.
pub fn split_names(value: Option<&str>) -> Vec<String> {
    value
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(String::from)
        .collect()
}

/// A replica count as recorded by us (lock data or workload annotation): a plain decimal in
/// `0..=MAX_REPLICAS`. The error names `what` and the bad value.
pub fn parse_replicas(what: &str, value: &str) -> Result<i32, String> {
    let trimmed = value.trim();
    if trimmed.is_empty() || !trimmed.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("{what:?} is {value:?}, not a non-negative integer"));
    }
    match trimmed.parse::<i64>() {
        Ok(n) if n <= i64::from(MAX_REPLICAS) => Ok(n as i32),
        _ => Err(format!(
            "{what:?} is {value:?}, above the maximum of {MAX_REPLICAS} replicas we trust"
        )),
    }
}

fn parse_time(key: &str, value: &str) -> Result<DateTime<Utc>, LockError> {
    parse_rfc3339(value)
        .map_err(|e| LockError::Malformed(format!("{key:?} is {value:?}, not RFC 3339: {e}")))
}

/// A time as we write it ([`rfc3339`]), read back: RFC 3339, or, for a year past 9999 (which
/// RFC 3339 cannot express), the expanded form chrono writes then (`+12027-01-01T00:00:00Z`):
/// an earlier build wrote such times for an unbounded `--ttl`, and records that
/// cannot be read back cannot be ended.
pub fn parse_rfc3339(value: &str) -> Result<DateTime<Utc>, chrono::ParseError> {
    match DateTime::parse_from_rfc3339(value) {
        Ok(t) => Ok(t.with_timezone(&Utc)),
        Err(e) if value.starts_with('+') => value.parse::<DateTime<Utc>>().map_err(|_| e),
        Err(e) => Err(e),
    }
}

/// Whether `t` is written as strict RFC 3339 (four-digit years), which every other reader of
/// our records (kubectl, jq, another build) takes. [`parse_rfc3339`] also reads the `+12027-…`
/// that an unbounded TTL once wrote, so such records can be ended; none is written again.
pub fn writes_as_rfc3339(t: DateTime<Utc>) -> bool {
    DateTime::parse_from_rfc3339(&rfc3339(t)).is_ok()
}

/// RFC 3339 with second precision and a `Z`, as everything we write.
pub fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> LockRecord {
        let t = DateTime::parse_from_rfc3339("2026-01-01T10:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        LockRecord {
            holder_session: "s1".into(),
            holder: "alice@laptop".into(),
            since: t,
            lease_expires: t + chrono::Duration::seconds(60),
            workload_uid: "uid-1".into(),
            workload_kind: "Deployment".into(),
            workload_name: "x".into(),
            original_replicas: 3,
            target_replicas: 0,
            copy_pod: "x-copy".into(),
            scaled_objects: vec!["so-a".into(), "so-b".into()],
            argo_application: None,
        }
    }

    #[test]
    fn a_paused_application_round_trips_and_older_records_still_parse() {
        for before in [Some(true), Some(false), None] {
            let mut r = sample();
            r.argo_application = Some(PausedApplication {
                application: "argocd/shop".into(),
                self_heal_before: before,
            });
            assert_eq!(r.to_checked_data().unwrap(), r.to_data());
            assert_eq!(LockRecord::parse(&r.to_data()).unwrap(), r);
        }
        // A record without the keys (an earlier build's) has no Application.
        let data = sample().to_data();
        assert!(!data.contains_key(ARGO_APPLICATION));
        assert_eq!(LockRecord::parse(&data).unwrap().argo_application, None);
        let mut data = sample().to_data();
        data.insert(ARGO_APPLICATION.into(), "argocd/shop".into());
        for bad in [None, Some(""), Some("yes"), Some("True")] {
            match bad {
                Some(v) => data.insert(ARGO_SELF_HEAL_BEFORE.into(), v.into()),
                None => data.remove(ARGO_SELF_HEAL_BEFORE),
            };
            let err = LockRecord::parse(&data).unwrap_err();
            assert!(
                err.to_string().contains(ARGO_SELF_HEAL_BEFORE),
                "{bad:?}: {err}"
            );
        }
        data.insert(ARGO_SELF_HEAL_BEFORE.into(), "true".into());
        for bad in ["shop", "/shop", "argocd/", "a/b/c"] {
            data.insert(ARGO_APPLICATION.into(), bad.into());
            assert!(LockRecord::parse(&data).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_record_that_would_not_read_back_is_refused() {
        let r = sample();
        assert_eq!(r.to_checked_data().unwrap(), r.to_data());
        let mut far = sample();
        far.lease_expires = DateTime::parse_from_rfc3339("9999-12-31T23:59:59Z")
            .unwrap()
            .with_timezone(&Utc)
            + chrono::Duration::days(1);
        assert!(far.to_data()[LEASE_EXPIRES].starts_with("+10000-"));
        let err = far.to_checked_data().unwrap_err();
        assert!(matches!(err, LockError::Malformed(_)), "{err}");
        assert!(err.to_string().contains("would not read back"), "{err}");
        let mut many = sample();
        many.original_replicas = MAX_REPLICAS + 1;
        assert!(many.to_checked_data().is_err());
        // A target above the original is a scale up, which no session records.
        let mut up = sample();
        up.target_replicas = up.original_replicas + 1;
        let err = up.to_checked_data().unwrap_err();
        assert!(err.to_string().contains(TARGET_REPLICAS), "{err}");
    }

    #[test]
    fn the_count_set_round_trips_and_defaults_to_zero() {
        for (original, target) in [
            (3, 2),
            (3, 0),
            (0, 0),
            (1, 0),
            (MAX_REPLICAS, MAX_REPLICAS - 1),
        ] {
            let r = LockRecord {
                original_replicas: original,
                target_replicas: target,
                ..sample()
            };
            let data = r.to_checked_data().unwrap();
            assert_eq!(data[TARGET_REPLICAS], target.to_string());
            assert_eq!(LockRecord::parse(&data).unwrap(), r);
        }
        // An earlier build's record has no key: it scaled to zero.
        let old = with(TARGET_REPLICAS, None).unwrap();
        assert_eq!((old.original_replicas, old.target_replicas), (3, 0));
        for bad in ["-1", "two", "", "4", "100001"] {
            let err = with(TARGET_REPLICAS, Some(bad)).unwrap_err();
            assert!(matches!(err, LockError::Malformed(_)), "{bad}: {err:?}");
        }
        assert_eq!(with(TARGET_REPLICAS, Some("3")).unwrap().target_replicas, 3);
    }

    #[test]
    fn round_trips() {
        let r = sample();
        assert_eq!(LockRecord::parse(&r.to_data()).unwrap(), r);
        assert!(r.lease_valid(r.since));
        assert!(!r.lease_valid(r.lease_expires));
        assert_eq!(
            r.describe_holder(),
            "session s1 (alice@laptop) since 2026-01-01T10:00:00Z, copy pod x-copy"
        );
    }

    fn with(key: &str, value: Option<&str>) -> Result<LockRecord, LockError> {
        let mut data = sample().to_data();
        match value {
            Some(v) => data.insert(key.into(), v.into()),
            None => data.remove(key),
        };
        LockRecord::parse(&data)
    }

    #[test]
    fn rejects_bad_counts() {
        for bad in [
            "-1",
            "abc",
            "",
            " ",
            "3.5",
            "+3",
            "0x10",
            "100001",
            "99999999999999999999",
        ] {
            let err = with(ORIGINAL_REPLICAS, Some(bad)).unwrap_err();
            assert!(matches!(err, LockError::Malformed(_)), "{bad}: {err:?}");
        }
        assert_eq!(
            with(ORIGINAL_REPLICAS, Some("0"))
                .unwrap()
                .original_replicas,
            0
        );
        assert_eq!(
            with(ORIGINAL_REPLICAS, Some("100000"))
                .unwrap()
                .original_replicas,
            100_000
        );
    }

    #[test]
    fn rejects_missing_keys_times_and_flags() {
        for key in [
            HOLDER_SESSION,
            HOLDER,
            SINCE,
            LEASE_EXPIRES,
            WORKLOAD_UID,
            WORKLOAD_KIND,
            WORKLOAD_NAME,
            ORIGINAL_REPLICAS,
            COPY_POD,
        ] {
            let err = with(key, None).unwrap_err();
            assert!(err.to_string().contains(key), "{key}: {err}");
        }
        assert!(with(SINCE, Some("yesterday")).is_err());
        // What an earlier build wrote for `--ttl 10000y`: read back, so the lock can be ended.
        let far = rfc3339(DateTime::<Utc>::MAX_UTC - chrono::Duration::days(1));
        assert!(far.starts_with('+'), "{far}");
        assert!(with(LEASE_EXPIRES, Some(&far)).is_ok());
        assert!(with(LEASE_EXPIRES, Some("+12027-13-01T00:00:00Z")).is_err());
        assert!(with(LEASE_EXPIRES, Some("2026-13-01T00:00:00Z")).is_err());
        // Optional: absent or empty is no ScaledObject; an earlier build's key is ignored.
        assert!(with(SCALED_OBJECTS, None)
            .unwrap()
            .scaled_objects
            .is_empty());
        assert!(with(SCALED_OBJECTS, Some(""))
            .unwrap()
            .scaled_objects
            .is_empty());
        assert!(with("scaledDown", Some("true")).is_ok());
        assert!(with(WORKLOAD_UID, Some("")).is_err());
        assert!(with(HOLDER_SESSION, Some(" ")).is_err());
    }
}
