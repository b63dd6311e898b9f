//! mirrord interop: read `target` and `feature.copy_target` from a mirrord configuration file,
//! and write one whose target is the copy pod, so open-source mirrord can use the copy.

use std::path::Path;

use mirrord_copy_core::Error;
use serde::Deserialize;
use serde_json::{json, Value};

/// What a mirrord configuration says about copying.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct FromMirrord {
    pub target: Option<String>,
    pub namespace: Option<String>,
    /// `feature.copy_target` is present and enabled.
    pub copy_target: bool,
    pub scale_down: bool,
    pub exclude_containers: Vec<String>,
    pub exclude_init_containers: Vec<String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum TargetField {
    Path(String),
    Full {
        path: Option<String>,
        namespace: Option<String>,
    },
}

#[derive(Deserialize)]
#[serde(untagged)]
enum CopyTargetField {
    Enabled(bool),
    Options {
        #[serde(default = "enabled_by_default")]
        enabled: bool,
        #[serde(default)]
        scale_down: bool,
        #[serde(default)]
        exclude_containers: Vec<String>,
        #[serde(default)]
        exclude_init_containers: Vec<String>,
    },
}

fn enabled_by_default() -> bool {
    true
}

#[derive(Deserialize, Default)]
struct Feature {
    copy_target: Option<CopyTargetField>,
}

#[derive(Deserialize, Default)]
struct MirrordConfig {
    target: Option<TargetField>,
    #[serde(default)]
    feature: Feature,
}

fn parse_any(path: &Path, text: &str) -> Result<MirrordConfig, String> {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    let json = || serde_json::from_str::<MirrordConfig>(text).map_err(|e| format!("JSON: {e}"));
    let toml = || toml::from_str::<MirrordConfig>(text).map_err(|e| format!("TOML: {e}"));
    let yaml = || serde_yaml::from_str::<MirrordConfig>(text).map_err(|e| format!("YAML: {e}"));
    match ext.as_str() {
        "json" => json(),
        "toml" => toml(),
        "yaml" | "yml" => yaml(),
        _ => json()
            .or_else(|a| toml().map_err(|b| format!("{a}; {b}")))
            .or_else(|a| yaml().map_err(|b| format!("{a}; {b}"))),
    }
}

pub(crate) fn read(path: &Path) -> Result<FromMirrord, Error> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        Error::Usage(format!(
            "cannot read --mirrord-config {}: {e}",
            path.display()
        ))
    })?;
    let config = parse_any(path, &text).map_err(|e| {
        Error::Usage(format!(
            "--mirrord-config {} is not a valid mirrord configuration: {e}",
            path.display()
        ))
    })?;
    let mut out = FromMirrord::default();
    match config.target {
        Some(TargetField::Path(p)) => out.target = Some(p),
        Some(TargetField::Full { path, namespace }) => {
            out.target = path;
            out.namespace = namespace;
        }
        None => {}
    }
    match config.feature.copy_target {
        Some(CopyTargetField::Enabled(on)) => out.copy_target = on,
        Some(CopyTargetField::Options {
            enabled,
            scale_down,
            exclude_containers,
            exclude_init_containers,
        }) => {
            out.copy_target = enabled;
            out.scale_down = enabled && scale_down;
            out.exclude_containers = exclude_containers;
            out.exclude_init_containers = exclude_init_containers;
        }
        None => {}
    }
    Ok(out)
}

/// A mirrord configuration targeting the copy pod.
pub(crate) fn emitted(copy_pod: &str, namespace: &str) -> Value {
    json!({ "target": { "path": format!("pod/{copy_pod}"), "namespace": namespace } })
}

pub(crate) fn write(path: &Path, copy_pod: &str, namespace: &str) -> Result<(), Error> {
    let body =
        serde_json::to_string_pretty(&emitted(copy_pod, namespace)).unwrap_or_default() + "\n";
    std::fs::write(path, body).map_err(|source| Error::Io {
        context: format!(
            "the copy {copy_pod} was created, but --emit-mirrord-config {} could not be written",
            path.display()
        ),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_str(name: &str, text: &str) -> Result<FromMirrord, Error> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        read(&path)
    }

    #[test]
    fn json_with_full_copy_target() {
        let got = read_str(
            "mirrord.json",
            r#"{"target": {"path": "deployment/api/container/app", "namespace": "prod"},
                "feature": {"copy_target": {"scale_down": true, "exclude_containers": ["istio-proxy"]}}}"#,
        )
        .unwrap();
        assert_eq!(got.target.as_deref(), Some("deployment/api/container/app"));
        assert_eq!(got.namespace.as_deref(), Some("prod"));
        assert!(got.copy_target && got.scale_down);
        assert_eq!(got.exclude_containers, ["istio-proxy"]);
    }

    #[test]
    fn toml_and_yaml_and_bool_form() {
        let t = read_str(
            "m.toml",
            "target = \"pod/x\"\n[feature]\ncopy_target = true\n",
        )
        .unwrap();
        assert_eq!(t.target.as_deref(), Some("pod/x"));
        assert!(t.copy_target && !t.scale_down);
        let y = read_str(
            "m.yaml",
            "target: job/migrate\nfeature:\n  copy_target:\n    enabled: true\n    exclude_init_containers: [init]\n",
        )
        .unwrap();
        assert_eq!(y.exclude_init_containers, ["init"]);
        let unknown_ext = read_str("mirrord.conf", "target: cronjob/nightly\n").unwrap();
        assert_eq!(unknown_ext.target.as_deref(), Some("cronjob/nightly"));
    }

    #[test]
    fn broken_file_is_a_usage_error() {
        let err = read_str("m.json", "{").unwrap_err();
        assert_eq!(err.exit_code(), 2);
    }

    #[test]
    fn emitted_config_targets_the_copy() {
        assert_eq!(
            emitted("x-copy-abcde", "ns"),
            json!({"target": {"path": "pod/x-copy-abcde", "namespace": "ns"}})
        );
    }
}
