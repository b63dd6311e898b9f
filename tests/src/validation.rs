//! Object validation as kube-apiserver does it, for the rules the plugin can trip over.
//! Owned by the fake-server work; see DESIGN.md. Placeholder signatures only.

use serde_json::Value;

use crate::api_error::ApiError;
use crate::registry::ResourceType;

/// Validate an object before it is stored; `old` is the stored object on update.
pub fn validate_object(
    _rt: &ResourceType,
    _name: &str,
    _obj: &Value,
    _old: Option<&Value>,
) -> Result<(), ApiError> {
    Ok(())
}

/// Five characters from the alphabet upstream uses for generateName suffixes.
pub fn random_suffix(len: usize) -> String {
    use rand::Rng;
    // k8s.io/apimachinery/pkg/util/rand: consonants and digits without look-alikes.
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut rng = rand::rng();
    (0..len)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}
