//! The lock's object name, derived deterministically from the workload key so that every
//! session that wants the same workload contends for the same ConfigMap.

use sha2::{Digest, Sha256};

/// Prefix of every lock ConfigMap's name.
pub const LOCK_NAME_PREFIX: &str = "mirrord-copy-lock-";

/// Longest name we produce. ConfigMap names may be 253 characters (DNS-1123 subdomain), but
/// we keep to 63 so the name can also be used as a label value.
pub(crate) const MAX_NAME_LEN: usize = 63;

/// Hex digits of the sha256 kept in a shortened name.
const HASH_LEN: usize = 10;

/// What a lock locks: a workload's kind (lower-case, e.g. "deployment") and name, in the
/// namespace the lock lives in.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct WorkloadKey {
    /// Lower-case kind, e.g. "deployment".
    pub kind: String,
    /// The workload's name.
    pub name: String,
}

impl WorkloadKey {
    /// The key of workload `name` of `kind` (any case; stored lower-case).
    pub fn new(kind: &str, name: &str) -> WorkloadKey {
        WorkloadKey {
            kind: kind.to_ascii_lowercase(),
            name: name.to_string(),
        }
    }

    /// "deployment/x"
    pub fn describe(&self) -> String {
        format!("{}/{}", self.kind, self.name)
    }

    /// The lock ConfigMap's name: `mirrord-copy-lock-<kind>-<name>`, or, when that is longer
    /// than 63 characters, a truncation of it followed by `-` and 10 hex digits of
    /// `sha256("<kind>/<name>")` (the hash keeps two long names that share a prefix apart).
    pub fn lock_name(&self) -> String {
        let full = format!("{LOCK_NAME_PREFIX}{}-{}", self.kind, self.name);
        if is_dns_label(&full, MAX_NAME_LEN) {
            return full;
        }
        let digest = Sha256::digest(format!("{}/{}", self.kind, self.name).as_bytes());
        let hash: String = digest
            .iter()
            .flat_map(|b| [b >> 4, b & 0xf])
            .take(HASH_LEN)
            .map(|n| char::from_digit(u32::from(n), 16).unwrap_or('0'))
            .collect();
        let keep = MAX_NAME_LEN - HASH_LEN - 1;
        // Only [a-z0-9-] survive, so the result is a DNS-1123 label whatever the input.
        let mut head: String = full
            .chars()
            .map(|c| c.to_ascii_lowercase())
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .take(keep)
            .collect();
        while head.ends_with('-') {
            head.pop();
        }
        format!("{head}-{hash}")
    }
}

/// A DNS-1123 label of at most `max` bytes: lower-case alphanumerics and '-', starting and
/// ending alphanumeric (what the API server wants of namespaces, container names and the
/// parts of an object name).
pub fn is_dns_label(s: &str, max: usize) -> bool {
    let bytes = s.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= max
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes[0].is_ascii_alphanumeric()
        && bytes[bytes.len() - 1].is_ascii_alphanumeric()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_names_are_readable() {
        let key = WorkloadKey::new("Deployment", "py-serv-deployment");
        assert_eq!(
            key.lock_name(),
            "mirrord-copy-lock-deployment-py-serv-deployment"
        );
    }

    #[test]
    fn long_names_are_hashed_and_valid() {
        let long = "a".repeat(60);
        let name = WorkloadKey::new("deployment", &long).lock_name();
        assert_eq!(name.len(), MAX_NAME_LEN);
        assert!(is_dns_label(&name, MAX_NAME_LEN), "{name}");
        // Deterministic.
        assert_eq!(name, WorkloadKey::new("deployment", &long).lock_name());
        // Same prefix, different tail: different locks.
        let other = WorkloadKey::new("deployment", &format!("{long}b")).lock_name();
        assert_ne!(name, other);
        // Same name, different kind: different locks.
        let sts = WorkloadKey::new("statefulset", &long).lock_name();
        assert_ne!(name, sts);
    }

    #[test]
    fn dotted_and_dash_ending_truncations_stay_valid() {
        // A DNS subdomain name with dots is hashed into a label-safe name.
        let name = WorkloadKey::new("deployment", "web.v2").lock_name();
        assert!(is_dns_label(&name, MAX_NAME_LEN), "{name}");
        assert!(name.starts_with("mirrord-copy-lock-deployment-web-v2-"));
        // Truncation landing on a '-' must not leave "--" or a trailing '-'.
        for n in 30..70 {
            let raw = format!("{}-{}", "x".repeat(n), "y".repeat(10));
            let name = WorkloadKey::new("statefulset", &raw).lock_name();
            assert!(is_dns_label(&name, MAX_NAME_LEN), "{name}");
        }
    }
}
