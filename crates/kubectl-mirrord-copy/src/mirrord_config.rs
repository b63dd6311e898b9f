//! mirrord interop: read `target` and `feature.copy_target` from a mirrord configuration file,
//! and write one whose target is the copy pod, so open-source mirrord can use the copy.

use std::path::{Path, PathBuf};

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

/// `feature.copy_target` as a table. mirrord denies unknown fields here, so a misspelt key
/// (`scale_dwon`) is an error naming it, never a copy made without what it asked for.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CopyTargetOptions {
    #[serde(default = "enabled_by_default")]
    enabled: bool,
    #[serde(default)]
    scale_down: bool,
    #[serde(default)]
    exclude_containers: Vec<String>,
    #[serde(default)]
    exclude_init_containers: Vec<String>,
}

fn enabled_by_default() -> bool {
    true
}

#[derive(Deserialize, Default)]
struct Feature {
    /// A bool or a table ([`CopyTargetOptions`]), decoded after the file parses so that its
    /// errors name the field (an untagged enum would only say that nothing matched).
    copy_target: Option<Value>,
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
    let yaml = || serde_yaml_ng::from_str::<MirrordConfig>(text).map_err(|e| format!("YAML: {e}"));
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
        None | Some(Value::Null) => {}
        Some(Value::Bool(on)) => out.copy_target = on,
        Some(table @ Value::Object(_)) => {
            let o: CopyTargetOptions = serde_json::from_value(table).map_err(|e| {
                Error::Usage(format!(
                    "--mirrord-config {}: feature.copy_target: {e}",
                    path.display()
                ))
            })?;
            out.copy_target = o.enabled;
            out.scale_down = o.enabled && o.scale_down;
            out.exclude_containers = o.exclude_containers;
            out.exclude_init_containers = o.exclude_init_containers;
        }
        Some(other) => {
            return Err(Error::Usage(format!(
                "--mirrord-config {}: feature.copy_target must be true, false or a table of enabled, scale_down, exclude_containers, exclude_init_containers (found {other})",
                path.display()
            )))
        }
    }
    Ok(out)
}

/// A mirrord configuration targeting the copy pod's target container (where the placeholder
/// runs), or the pod alone when the container is not known.
pub(crate) fn emitted(copy_pod: &str, container: Option<&str>, namespace: &str) -> Value {
    let path = match container {
        Some(c) => format!("pod/{copy_pod}/container/{c}"),
        None => format!("pod/{copy_pod}"),
    };
    json!({ "target": { "path": path, "namespace": namespace } })
}

/// The `--emit-mirrord-config` file, opened for writing before anything is created, so that a
/// path that cannot be written (no such directory, no permission, a directory) is a usage
/// error before the copy and the scale-down exist, not after. Opening does not truncate: what
/// was there stays until [`Emit::write`]. A file this opening created is removed again if the
/// command fails before writing it.
pub(crate) struct Emit {
    path: PathBuf,
    file: Option<std::fs::File>,
    created: bool,
}

impl Emit {
    pub(crate) fn open(path: &Path) -> Result<Emit, Error> {
        let existed = path.exists();
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(|e| {
                Error::Usage(format!(
                    "cannot write --emit-mirrord-config {}: {e}; nothing was created",
                    path.display()
                ))
            })?;
        Ok(Emit {
            path: path.to_path_buf(),
            file: Some(file),
            created: !existed,
        })
    }

    /// Writes the configuration targeting the copy pod, replacing what the file held.
    pub(crate) fn write(
        mut self,
        copy_pod: &str,
        container: Option<&str>,
        namespace: &str,
    ) -> Result<(), Error> {
        use std::io::Write;
        let body = serde_json::to_string_pretty(&emitted(copy_pod, container, namespace))
            .unwrap_or_default()
            + "\n";
        let Some(mut file) = self.file.take() else {
            return Ok(());
        };
        self.created = false;
        file.set_len(0)
            .and_then(|_| file.write_all(body.as_bytes()))
            .and_then(|_| file.sync_all())
            .map_err(|source| Error::Io {
                context: format!(
                    "the copy {copy_pod} was created, but --emit-mirrord-config {} could not be written",
                    self.path.display()
                ),
                source,
            })
    }
}

impl Drop for Emit {
    fn drop(&mut self) {
        if self.created && self.file.take().is_some() {
            let _ = std::fs::remove_file(&self.path);
        }
    }
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
    fn unknown_copy_target_fields_are_usage_errors_naming_the_key() {
        for (name, text) in [
            (
                "m.json",
                r#"{"target": "deployment/x", "feature": {"copy_target": {"scale_dwon": true}}}"#,
            ),
            (
                "m.toml",
                "target = \"deployment/x\"\n[feature.copy_target]\nscale_dwon = true\n",
            ),
            (
                "m.yaml",
                "target: deployment/x\nfeature:\n  copy_target:\n    scale_dwon: true\n",
            ),
        ] {
            let err = read_str(name, text).unwrap_err();
            assert_eq!(err.exit_code(), 2, "{name}: {err}");
            let text = err.to_string();
            assert!(
                text.contains("feature.copy_target") && text.contains("scale_dwon"),
                "{name}: {text}"
            );
            assert!(
                text.contains("scale_down"),
                "names the known fields: {text}"
            );
        }
        // Wrong types are named too.
        let err = read_str(
            "m.json",
            r#"{"feature": {"copy_target": {"scale_down": "yes"}}}"#,
        )
        .unwrap_err();
        assert_eq!(err.exit_code(), 2);
        let err = read_str("m.json", r#"{"feature": {"copy_target": 1}}"#).unwrap_err();
        assert!(err.to_string().contains("true, false or a table"), "{err}");
        // Unknown keys elsewhere are mirrord's business, not ours.
        read_str(
            "m.json",
            r#"{"agent": {"ttl": 30}, "feature": {"network": {"incoming": "steal"}, "copy_target": {"scale_down": true}}}"#,
        )
        .unwrap();
    }

    #[test]
    fn broken_file_is_a_usage_error() {
        let err = read_str("m.json", "{").unwrap_err();
        assert_eq!(err.exit_code(), 2);
    }

    #[test]
    fn the_emit_file_is_checked_first_and_removed_if_never_written() {
        let dir = tempfile::tempdir().unwrap();
        let err = Emit::open(&dir.path().join("missing/dir/m.json"))
            .err()
            .expect("no such directory");
        assert_eq!(err.exit_code(), 2);
        assert!(err.to_string().contains("--emit-mirrord-config"), "{err}");
        assert!(Emit::open(dir.path()).is_err(), "a directory");
        let path = dir.path().join("m.json");
        drop(Emit::open(&path).unwrap());
        assert!(!path.exists(), "created by the check, removed when unused");
        std::fs::write(&path, "old").unwrap();
        drop(Emit::open(&path).unwrap());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "old", "kept");
        Emit::open(&path)
            .unwrap()
            .write("x-copy-abcde", None, "ns")
            .unwrap();
        let written: Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(written, emitted("x-copy-abcde", None, "ns"));
    }

    #[test]
    fn emitted_config_targets_the_copy() {
        assert_eq!(
            emitted("x-copy-abcde", None, "ns"),
            json!({"target": {"path": "pod/x-copy-abcde", "namespace": "ns"}})
        );
        assert_eq!(
            emitted("x-copy-abcde", Some("app"), "ns"),
            json!({"target": {"path": "pod/x-copy-abcde/container/app", "namespace": "ns"}})
        );
    }
}
