//! `--suspend-argocd`: the Argo CD Application that applies the workload has its self-heal
//! turned off for the session, so it does not put the replica count back from Git.
//!
//! Argo CD documents `spec.syncPolicy.automated.selfHeal` as the switch for reverting changes
//! made to the live cluster ("Automatic Self-Healing", and toggling the automated policy of a
//! standalone Application by changing `spec.syncPolicy.automated`:
//! <https://argo-cd.readthedocs.io/en/stable/user-guide/auto_sync/>). The
//! `argocd.argoproj.io/skip-reconcile` annotation is documented as an alpha feature for
//! integrating third-party projects that may be removed or changed, and it stops all processing
//! of the Application (its status freezes), more than this needs: selfHeal is what is turned off.
//!
//! The pause is [`pause::Switch`]'s, as for KEDA: `selfHeal: false` and the way back
//! (`mirrord-copy.io/argocd-paused-by`, `mirrord-copy.io/argocd-previous-self-heal`) in one
//! pinned merge patch of the Application; the session and the lock also record the
//! Application and its value before, read before anything is written, and restore puts back
//! the lock's value.
//!
//! Where the Application lives (Argo CD's "Resource Tracking" and "Applications in any
//! namespace"): the tracking id `<app>:<group>/<kind>:<namespace>/<name>` (or the instance
//! label) names `<app>` for an Application in the Argo CD namespace (`--argocd-namespace`,
//! default `argocd`), and `<namespace>_<app>` for one in another namespace. Neither a
//! namespace nor an Application name can hold `_`, so the split is unambiguous.

use kube::api::{ApiResource, DynamicObject};
use serde_json::{json, Value};

use super::pause::Switch;
use crate::error::Error;
use mirrord_copy_lock::PausedApplication;

/// Which session turned the Application's self-heal off.
pub const ARGOCD_PAUSED_BY_ANNOTATION: &str = "mirrord-copy.io/argocd-paused-by";
/// The Application's `selfHeal` before the pause, as JSON (`null` when it was absent).
pub(crate) const ARGOCD_PREVIOUS_ANNOTATION: &str = "mirrord-copy.io/argocd-previous-self-heal";

/// The Argo CD namespace when `--argocd-namespace` is not given.
pub const DEFAULT_ARGOCD_NAMESPACE: &str = "argocd";

const SELF_HEAL: &[&str] = &["spec", "syncPolicy", "automated", "selfHeal"];

fn application_resource() -> ApiResource {
    ApiResource {
        group: "argoproj.io".into(),
        version: "v1alpha1".into(),
        api_version: "argoproj.io/v1alpha1".into(),
        kind: "Application".into(),
        plural: "applications".into(),
    }
}

fn switch() -> Switch {
    Switch {
        resource: application_resource(),
        qualified: "applications.argoproj.io",
        path: SELF_HEAL,
        paused: json!(false),
        by: ARGOCD_PAUSED_BY_ANNOTATION,
        previous: ARGOCD_PREVIOUS_ANNOTATION,
        read_by_list: false,
        valid: Value::is_boolean,
    }
}

/// (namespace, name) of the Application an Argo CD app id names (`<app>` in
/// `argocd_namespace`, or `<namespace>_<app>`).
pub(crate) fn locate(app: &str, argocd_namespace: &str) -> (String, String) {
    match app.split_once('_') {
        Some((ns, name)) if !ns.is_empty() && !name.is_empty() => (ns.into(), name.into()),
        _ => (argocd_namespace.into(), app.into()),
    }
}

/// An Application to pause, as read before anything was written, and what the session and
/// the lock record of it.
#[derive(Debug, Clone)]
pub(crate) struct ToPause {
    pub record: PausedApplication,
    pub object: DynamicObject,
}

/// Is self-heal on in `app` (automated sync, not disabled by `enabled: false`, `selfHeal: true`)?
fn self_heals(app: &DynamicObject) -> bool {
    let automated = &app.data["spec"]["syncPolicy"]["automated"];
    automated.is_object()
        && automated["enabled"].as_bool() != Some(false)
        && automated["selfHeal"].as_bool() == Some(true)
}

/// Read the Application `app` (as the workload names it) for `--suspend-argocd`: `None` when
/// its self-heal is off and no session paused it (nothing to do). Missing, or its type not
/// served: [`Error::Unsupported`] (exit 4), before anything is written, since scaling down
/// under self-heal lasts seconds; no right to read it: [`Error::Forbidden`] (exit 5).
pub(crate) async fn check(
    client: &kube::Client,
    app: &str,
    argocd_namespace: &str,
    workload: &str,
) -> Result<Option<ToPause>, Error> {
    let (namespace, name) = locate(app, argocd_namespace);
    let object = switch()
        .reread(client, &namespace, &name)
        .await?
        .ok_or_else(|| {
            Error::Unsupported(format!(
                "--suspend-argocd: {workload} is tracked by Argo CD application {app:?}, but there is no Application {namespace}/{name} (an Application outside the Argo CD namespace is tracked as <namespace>_<app>; --argocd-namespace names the Argo CD namespace, default {DEFAULT_ARGOCD_NAMESPACE}); nothing was changed"
            ))
        })?;
    // A session that died with it paused (its name on it): carried forward, ours to pause.
    let paused_by_another = object
        .metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(ARGOCD_PAUSED_BY_ANNOTATION));
    if !paused_by_another && !self_heals(&object) {
        return Ok(None);
    }
    let before = switch().value_before(&object, "").unwrap_or(Value::Null);
    Ok(Some(ToPause {
        record: PausedApplication {
            application: format!("{namespace}/{name}"),
            self_heal_before: before.as_bool(),
        },
        object,
    }))
}

/// The Application a dead holder recorded as paused (carried forward by a takeover), to pause
/// as ours with its recorded value before; gone or no longer paused by anyone: None.
pub(crate) async fn reclaim(
    client: &kube::Client,
    carried: &PausedApplication,
) -> Result<Option<ToPause>, Error> {
    let (namespace, name) = carried.application.split_once('/').unwrap_or_default();
    let Some(object) = switch().reread(client, namespace, name).await? else {
        return Ok(None);
    };
    let paused = object
        .metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(ARGOCD_PAUSED_BY_ANNOTATION));
    Ok(paused.then(|| ToPause {
        record: carried.clone(),
        object,
    }))
}

/// Turn self-heal off for `session`, before the workload goes to zero (else self-heal puts
/// the count back within seconds). Whether it was written (an Application deleted since: no).
pub(crate) async fn pause(
    client: &kube::Client,
    to_pause: &ToPause,
    session: &str,
) -> Result<bool, Error> {
    let namespace = namespace_of(&to_pause.record);
    let paused = switch()
        .pause(
            client,
            namespace,
            std::slice::from_ref(&to_pause.object),
            session,
        )
        .await?;
    Ok(!paused.is_empty())
}

/// Put the recorded self-heal back if `paused_by` accepts the session that paused it (see
/// [`Switch::unpause`]). The value is the record's (the lock's, else the session's). Whether
/// it was written.
pub(crate) async fn unpause(
    client: &kube::Client,
    record: &PausedApplication,
    paused_by: &(dyn Fn(&str) -> bool + Sync),
) -> Result<bool, Error> {
    let namespace = namespace_of(record);
    let name = record
        .application
        .split_once('/')
        .map_or("", |(_, n)| n)
        .to_string();
    let before = record.self_heal_before.map_or(Value::Null, Value::Bool);
    let done = switch()
        .unpause(client, namespace, &[name], paused_by, Some(&before))
        .await?;
    Ok(!done.is_empty())
}

fn namespace_of(record: &PausedApplication) -> &str {
    record.application.split_once('/').map_or("", |(ns, _)| ns)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracking_ids_name_the_application_and_its_namespace() {
        assert_eq!(locate("shop", "argocd"), ("argocd".into(), "shop".into()));
        assert_eq!(
            locate("shop", "gitops"),
            ("gitops".into(), "shop".into()),
            "--argocd-namespace"
        );
        assert_eq!(
            locate("team-a_shop", "argocd"),
            ("team-a".into(), "shop".into()),
            "apps in any namespace"
        );
        // Not a namespace and a name: the whole id is the name.
        assert_eq!(locate("_shop", "argocd"), ("argocd".into(), "_shop".into()));
        assert_eq!(locate("shop_", "argocd"), ("argocd".into(), "shop_".into()));
    }

    fn app(automated: Value) -> DynamicObject {
        serde_json::from_value(json!({
            "apiVersion": "argoproj.io/v1alpha1", "kind": "Application",
            "metadata": {"name": "shop", "namespace": "argocd"},
            "spec": {"syncPolicy": {"automated": automated}},
        }))
        .unwrap()
    }

    #[test]
    fn self_heal_is_on_only_with_automated_sync_enabled() {
        assert!(self_heals(&app(json!({"selfHeal": true, "prune": true}))));
        assert!(self_heals(&app(json!({"selfHeal": true, "enabled": true}))));
        assert!(!self_heals(&app(
            json!({"selfHeal": true, "enabled": false})
        )));
        assert!(!self_heals(&app(json!({"prune": true}))));
        assert!(!self_heals(&app(json!({"selfHeal": false}))));
        assert!(!self_heals(&app(Value::Null)));
    }
}
