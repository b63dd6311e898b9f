//! Generated names: session ids and copy pod names, always valid DNS-1123 labels.

use rand::Rng;

const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
/// Longest DNS-1123 label (pod names must be one to get a valid hostname).
pub(crate) const MAX_LABEL: usize = 63;
const COPY_INFIX: &str = "-copy-";
const SUFFIX_LEN: usize = 5;

/// `n` random characters from [a-z0-9].
pub(crate) fn random_chars(n: usize) -> String {
    let mut rng = rand::rng();
    (0..n)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

/// A new session id: 10 random characters from [a-z0-9].
pub(crate) fn session_id() -> String {
    random_chars(10)
}

/// `<target-name truncated>-copy-<5 random chars>`, a valid DNS-1123 label of at most 63 chars.
pub(crate) fn copy_pod_name(target_name: &str) -> String {
    copy_pod_name_with_suffix(target_name, &random_chars(SUFFIX_LEN))
}

/// [`copy_pod_name`] with a given suffix (tests, and callers that need determinism).
pub(crate) fn copy_pod_name_with_suffix(target_name: &str, suffix: &str) -> String {
    let budget = MAX_LABEL - COPY_INFIX.len() - suffix.len();
    // Object names are DNS-1123 subdomains: '.' and uppercase must not reach a label.
    let base: String = target_name
        .chars()
        .map(|c| match c.to_ascii_lowercase() {
            c @ ('a'..='z' | '0'..='9') => c,
            _ => '-',
        })
        .take(budget)
        .collect();
    // A label must start and end alphanumeric.
    let base = match base.trim_matches('-') {
        "" => "mirrord",
        trimmed => trimmed,
    };
    format!("{base}{COPY_INFIX}{suffix}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_ids_are_ten_lowercase_alphanumerics() {
        for _ in 0..100 {
            let id = session_id();
            assert_eq!(id.len(), 10);
            assert!(id
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()));
        }
        assert_ne!(session_id(), session_id());
    }

    #[test]
    fn short_names_keep_the_target_name() {
        assert_eq!(
            copy_pod_name_with_suffix("py-serv-deployment", "abcde"),
            "py-serv-deployment-copy-abcde"
        );
    }

    #[test]
    fn long_and_odd_names_stay_valid_labels() {
        let long = "a".repeat(253);
        let dotted = format!("{}.{}", "x".repeat(60), "y".repeat(100));
        let dash_at_cut = format!("{}-{}", "b".repeat(51), "c".repeat(100));
        let cases = [
            long.as_str(),
            dotted.as_str(),
            dash_at_cut.as_str(),
            "---",
            "",
            "a.b.c",
            "UPPER",
            "x",
        ];
        for name in cases {
            for _ in 0..20 {
                let pod = copy_pod_name(name);
                assert!(pod.len() <= MAX_LABEL, "{pod} is {} chars", pod.len());
                assert!(
                    mirrord_copy_lock::is_dns_label(&pod, MAX_LABEL),
                    "{pod:?} from {name:?}"
                );
                assert!(pod.contains("-copy-"));
            }
        }
        assert_eq!(copy_pod_name_with_suffix(&long, "abcde").len(), 63);
        assert_eq!(
            copy_pod_name_with_suffix(&dash_at_cut, "abcde"),
            format!("{}-copy-abcde", "b".repeat(51))
        );
        assert_eq!(copy_pod_name_with_suffix("a.b", "abcde"), "a-b-copy-abcde");
        assert_eq!(
            copy_pod_name_with_suffix("---", "abcde"),
            "mirrord-copy-abcde"
        );
    }
}
