//! Machine-readable documents (-o json|yaml) and the stable shapes they have.
//! Field names are part of the runbook contract: add fields, never rename them.

use chrono::{DateTime, SubsecRound, Utc};
use mirrord_copy_core::{CopyOptions, Error, Session};
use serde::Serialize;

pub(crate) const API_VERSION: &str = "mirrord-copy.io/v1";

/// One session, as `create -o json`, `status -o json` and `delete -o json` print it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct SessionDoc {
    pub api_version: &'static str,
    pub kind: &'static str,
    pub session: String,
    pub namespace: String,
    pub target: String,
    pub copy_pod: String,
    pub scale_down: bool,
    /// With `scaleDown`: `scale-down` (to zero) or `replace-one` (one replica fewer).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<&'static str>,
    /// With `scaleDown`: the count restored at the end, as the lock records it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub original_replicas: Option<i32>,
    /// With `scaleDown`: the count set while the copy lives (0, or one less with replace-one).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scaled_to: Option<i32>,
    pub owner: String,
    /// `localuser@hostname` of the machine that made it (absent in older records).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    pub created: DateTime<Utc>,
    pub expires: Option<DateTime<Utc>>,
    /// `run` sessions: the last heartbeat.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub heartbeat: Option<DateTime<Utc>>,
    /// Over by time (expired, or a `run` session whose heartbeat stopped past its lease), on
    /// the API server's clock: `gc` will end it, and its lock may be taken over.
    pub lapsed: bool,
    /// Still being created (its create has not confirmed it yet, or died: then `gc` ends it
    /// once its provisional lease lapsed).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub provisional: bool,
    /// Someone else scaled the workload during the session (seen by `run`'s heartbeat).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interference: Option<String>,
    pub options: CopyOptions,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    /// What the copy's target container runs (placeholder or application, and which container).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub runs: Option<mirrord_copy_core::session::Runs>,
    /// Its copy pod is gone (deleted, evicted, lost with its node) while the session lives:
    /// `gc` ends it, restoring its workload (status only, where the copy pods are listed).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub copy_gone: bool,
    /// Whether this machine's state file records the session (status only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub yours: Option<bool>,
    /// `--suspend-argocd`: the Argo CD Application (`application`: namespace/name) whose
    /// self-heal is off for the session, and `selfHealBefore` (null: the field was absent).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub argo_application: Option<mirrord_copy_lock::PausedApplication>,
}

impl SessionDoc {
    /// Times at second precision, as the session ConfigMap records them: `create -o json`
    /// prints the same `created`/`expires` as a later `status -o json`.
    pub(crate) fn new(s: &Session) -> SessionDoc {
        SessionDoc {
            api_version: API_VERSION,
            kind: "CopySession",
            session: s.id.clone(),
            namespace: s.namespace.clone(),
            target: s.target.clone(),
            copy_pod: s.copy_pod.clone(),
            scale_down: s.scale_down,
            mode: s.scale_down.then(|| s.scale_to.as_str()),
            original_replicas: s.replicas.map(|r| r.original),
            scaled_to: s.replicas.map(|r| r.scaled_to),
            owner: s.owner.clone(),
            host: s.host.clone(),
            created: s.created.trunc_subsecs(0),
            expires: s.expires.map(|t| t.trunc_subsecs(0)),
            heartbeat: s.heartbeat.map(|t| t.trunc_subsecs(0)),
            lapsed: s.has_lapsed(mirrord_copy_lock::clock::now()),
            provisional: s.provisional,
            interference: s.interference.clone(),
            options: s.options.clone(),
            phase: s.copy_phase.clone(),
            runs: s.runs.clone(),
            copy_gone: false,
            yours: None,
            argo_application: s.argo_application.clone(),
        }
    }
}

/// A list of documents, shaped like a Kubernetes List.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ListDoc<T: Serialize> {
    pub api_version: &'static str,
    pub kind: &'static str,
    pub items: Vec<T>,
}

impl<T: Serialize> ListDoc<T> {
    pub(crate) fn new(kind: &'static str, items: Vec<T>) -> Self {
        ListDoc {
            api_version: API_VERSION,
            kind,
            items,
        }
    }
}

pub(crate) fn to_json<T: Serialize>(value: &T) -> Result<String, Error> {
    serde_json::to_string_pretty(value)
        .map(|s| s + "\n")
        .map_err(|e| Error::Internal(format!("cannot render JSON: {e}")))
}

pub(crate) fn to_yaml<T: Serialize>(value: &T) -> Result<String, Error> {
    serde_yaml_ng::to_string(value).map_err(|e| Error::Internal(format!("cannot render YAML: {e}")))
}

/// Colour is for people: only on a terminal, and never when NO_COLOR is set (no-color.org).
pub(crate) fn use_colour(stream_is_terminal: bool) -> bool {
    stream_is_terminal && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

pub(crate) fn paint(text: &str, ansi: &str, colour: bool) -> String {
    if colour {
        format!("\x1b[{ansi}m{text}\x1b[0m")
    } else {
        text.to_string()
    }
}
