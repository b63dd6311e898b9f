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
/// Data key of [`LockRecord::copy_pod`].
pub const COPY_POD: &str = "copyPod";
/// Data key of [`LockRecord::scaled_objects`] (optional).
pub const SCALED_OBJECTS: &str = "scaledObjects";

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
    /// The holder's copy pod; empty until it is created.
    pub copy_pod: String,
    /// KEDA ScaledObjects targeting the workload, recorded before any is paused: the ones
    /// restore must look at (each carries who paused it). Optional key, comma-separated.
    pub scaled_objects: Vec<String>,
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
        BTreeMap::from([
            (HOLDER_SESSION.into(), self.holder_session.clone()),
            (HOLDER.into(), self.holder.clone()),
            (SINCE.into(), rfc3339(self.since)),
            (LEASE_EXPIRES.into(), rfc3339(self.lease_expires)),
            (WORKLOAD_UID.into(), self.workload_uid.clone()),
            (WORKLOAD_KIND.into(), self.workload_kind.clone()),
            (WORKLOAD_NAME.into(), self.workload_name.clone()),
            (ORIGINAL_REPLICAS.into(), self.original_replicas.to_string()),
            (COPY_POD.into(), self.copy_pod.clone()),
            (SCALED_OBJECTS.into(), self.scaled_objects.join(",")),
        ])
    }

    /// Parse and validate a lock's data. Every key but `scaledObjects` must be present; counts
    /// must be integers in `0..=MAX_REPLICAS`; timestamps RFC 3339. Keys we do not know (such
    /// as an earlier build's `scaledDown`) are ignored.
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
            copy_pod: get(COPY_POD)?.to_string(),
            scaled_objects: split_names(data.get(SCALED_OBJECTS).map(String::as_str)),
        };
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
    DateTime::parse_from_rfc3339(value)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| LockError::Malformed(format!("{key:?} is {value:?}, not RFC 3339: {e}")))
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
            copy_pod: "x-copy".into(),
            scaled_objects: vec!["so-a".into(), "so-b".into()],
        }
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
