//! Copy rules (pure): from a target's pod template to the copy pod.

use serde::{Deserialize, Serialize};

/// User options that shape the copy. Stored as JSON in the session and on the pod.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct CopyOptions {
    pub exclude_containers: Vec<String>,
    pub exclude_init_containers: Vec<String>,
}
