//! Someone else scaling a workload while a session holds it scaled (a person, an HPA, a
//! GitOps controller): the session cannot stop them, but it says who, so nobody is surprised.
//! The writer is named from the workload's `managedFields`: the most recent entry that owns
//! the replica count (`f:spec` / `f:replicas`; a CronJob's `f:suspend`).

use kube::ResourceExt;

use super::target_of_record;
use super::workload::{self, ScaleKind, ScaleTarget};
use crate::error::Error;
use crate::labels::SCALED_DOWN_BY_ANNOTATION;
use mirrord_copy_lock::LockRecord;

/// "Deployment ns/x was scaled to 2 by kubectl (2026-12-04T15:00:00Z)" for each workload
/// `records` (the session's locks, as just renewed) holds that is no longer at the count the
/// lock records as set (0, or one less with `--replace-one`); empty when all are where we
/// left them. One GET per locked workload; one not yet scaled (no record of the holder on
/// it) is not expected at that count.
pub async fn interference(
    client: &kube::Client,
    namespace: &str,
    records: &[LockRecord],
) -> Result<Vec<String>, Error> {
    let mut found = Vec::new();
    for record in records {
        let target = target_of_record(namespace, record)?;
        let Some(object) = workload::get(client, &target).await? else {
            continue;
        };
        let observed = workload::observed(target.kind, object);
        let held =
            observed.annotation(SCALED_DOWN_BY_ANNOTATION) == Some(record.holder_session.as_str());
        if !held || observed.replicas == record.target_replicas {
            continue;
        }
        let field = if target.kind == ScaleKind::CronJob {
            "f:suspend"
        } else {
            "f:replicas"
        };
        let writer = observed
            .object
            .managed_fields()
            .iter()
            .filter(|m| {
                m.fields_v1
                    .as_ref()
                    .is_some_and(|f| f.0["f:spec"].get(field).is_some())
            })
            .max_by_key(|m| m.time.as_ref().map(|t| t.0))
            .map(|m| {
                let when = m
                    .time
                    .as_ref()
                    .map(|t| format!(" at {}", t.0))
                    .unwrap_or_default();
                format!(
                    "{}{}",
                    m.manager.as_deref().unwrap_or("an unnamed field manager"),
                    when
                )
            })
            .unwrap_or_else(|| "a writer the API server did not record".into());
        found.push(describe(&target, observed.replicas, &writer));
    }
    Ok(found)
}

fn describe(target: &ScaleTarget, replicas: i32, writer: &str) -> String {
    if target.kind == ScaleKind::CronJob {
        format!("{} was resumed by {writer}", target.describe())
    } else {
        format!(
            "{} was scaled to {replicas} by {writer} during the session",
            target.describe()
        )
    }
}
