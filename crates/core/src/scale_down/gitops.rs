//! GitOps controllers that put a workload's replica count back from Git: a scale-down lasts
//! only until their next sync. Detected from the marks they leave on the objects they apply:
//! Argo CD's tracking annotation (or its instance label), Flux's kustomize-controller and
//! helm-controller labels. Flux's kustomize-controller skips an object annotated
//! `kustomize.toolkit.fluxcd.io/reconcile: disabled`; `--suspend-flux` sets that for the
//! session and puts the previous value back on restore. Argo CD's self-heal is a switch on the
//! Application, not on the object: `--suspend-argocd` turns it off for the session (`argocd`).
//! Flux's helm-controller documents no per-object opt-out (only `spec.suspend` and drift
//! detection ignore rules on the HelmRelease itself): the warning says to suspend the
//! HelmRelease.

use std::collections::BTreeMap;

/// Flux kustomize-controller's per-object opt-out.
pub(crate) const FLUX_RECONCILE_ANNOTATION: &str = "kustomize.toolkit.fluxcd.io/reconcile";
/// The value of [`FLUX_RECONCILE_ANNOTATION`] before the session set it ("" if there was none).
pub(crate) const FLUX_PREVIOUS_ANNOTATION: &str = "mirrord-copy.io/flux-reconcile-previous";

/// Who applies the workload from Git.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Manager {
    /// Argo CD application, as the workload's tracking id or instance label names it: `<app>`,
    /// or `<namespace>_<app>` for an Application outside the Argo CD namespace.
    ArgoCd(String),
    /// A Flux Kustomization (`namespace/name`): honours the reconcile annotation.
    FluxKustomization(String),
    /// A Flux HelmRelease (`namespace/name`): does not; suspend the HelmRelease instead.
    FluxHelmRelease(String),
}

/// The GitOps manager of an object with these labels and annotations, if any.
pub(crate) fn manager(
    labels: &BTreeMap<String, String>,
    annotations: &BTreeMap<String, String>,
) -> Option<Manager> {
    // "<app>:<group>/<kind>:<namespace>/<name>" (annotation tracking, Argo CD's default since 3.0).
    if let Some(id) = annotations.get("argocd.argoproj.io/tracking-id") {
        let app = id.split(':').next().unwrap_or(id);
        return Some(Manager::ArgoCd(app.to_string()));
    }
    if let Some(app) = labels.get("argocd.argoproj.io/instance") {
        return Some(Manager::ArgoCd(app.clone()));
    }
    let flux = |group: &str| {
        let name = labels.get(&format!("{group}.toolkit.fluxcd.io/name"))?;
        let ns = labels
            .get(&format!("{group}.toolkit.fluxcd.io/namespace"))
            .map(String::as_str)
            .unwrap_or("flux-system");
        Some(format!("{ns}/{name}"))
    };
    if let Some(k) = flux("kustomize") {
        return Some(Manager::FluxKustomization(k));
    }
    flux("helm").map(Manager::FluxHelmRelease)
}

/// What `--suspend-argocd` does about an Argo CD application.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ArgoSuspend {
    /// Not asked for.
    NotAsked,
    /// Self-heal is turned off for the session.
    Pausing,
    /// Self-heal is already off: nothing to pause.
    SelfHealOff,
}

/// The warning for a scale-down of `workload` (e.g. "Deployment default/x") managed by `m`.
/// `argocd_namespace`: where an Application named without a namespace lives.
pub(crate) fn warning(
    workload: &str,
    m: &Manager,
    suspending_flux: bool,
    argocd_namespace: &str,
    argo: ArgoSuspend,
) -> String {
    match m {
        Manager::ArgoCd(app) => {
            let (ns, name) = super::argocd::locate(app, argocd_namespace);
            match argo {
                ArgoSuspend::Pausing => format!(
                    "{workload} is managed by Argo CD Application {ns}/{name}: its self-heal is turned off for the session (--suspend-argocd, spec.syncPolicy.automated.selfHeal=false) and restored afterwards; an automated sync of a new Git revision still applies Git's replica count"
                ),
                ArgoSuspend::SelfHealOff => format!(
                    "{workload} is managed by Argo CD Application {ns}/{name}, whose self-heal is off: nothing to pause; an automated sync of a new Git revision still applies Git's replica count"
                ),
                ArgoSuspend::NotAsked => format!(
                    "{workload} is managed by Argo CD Application {ns}/{name}: with automated sync and self-heal it puts the replica count back from Git within seconds; --suspend-argocd turns its self-heal off for the session (or copy without --scale-down)"
                ),
            }
        }
        Manager::FluxKustomization(k) if suspending_flux => format!(
            "{workload} is managed by Flux Kustomization {k}: annotated {FLUX_RECONCILE_ANNOTATION}=disabled for the session (--suspend-flux); restored afterwards"
        ),
        Manager::FluxKustomization(k) => format!(
            "{workload} is managed by Flux Kustomization {k}: its next reconcile puts the replica count back; --suspend-flux annotates the workload {FLUX_RECONCILE_ANNOTATION}=disabled for the session"
        ),
        Manager::FluxHelmRelease(h) => format!(
            "{workload} is managed by Flux HelmRelease {h}: with drift detection on, its reconcile puts the replica count back, and helm-controller has no per-object opt-out; `flux suspend helmrelease` for the session (and `flux resume helmrelease` after)"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn managers_are_recognised_by_their_marks() {
        let none = map(&[]);
        assert_eq!(manager(&map(&[("app", "x")]), &none), None);
        assert_eq!(
            manager(
                &none,
                &map(&[(
                    "argocd.argoproj.io/tracking-id",
                    "shop:apps/Deployment:default/api"
                )])
            ),
            Some(Manager::ArgoCd("shop".into()))
        );
        assert_eq!(
            manager(
                &map(&[
                    ("kustomize.toolkit.fluxcd.io/name", "apps"),
                    ("kustomize.toolkit.fluxcd.io/namespace", "flux-system")
                ]),
                &none
            ),
            Some(Manager::FluxKustomization("flux-system/apps".into()))
        );
        assert_eq!(
            manager(
                &map(&[
                    ("helm.toolkit.fluxcd.io/name", "db"),
                    ("helm.toolkit.fluxcd.io/namespace", "data")
                ]),
                &none
            ),
            Some(Manager::FluxHelmRelease("data/db".into()))
        );
        let argo = Manager::ArgoCd("shop".into());
        let w = warning(
            "Deployment d/x",
            &argo,
            false,
            "argocd",
            ArgoSuspend::NotAsked,
        );
        assert!(
            w.contains("Argo CD Application argocd/shop") && w.contains("--suspend-argocd"),
            "{w}"
        );
        let elsewhere = Manager::ArgoCd("team-a_shop".into());
        let w = warning(
            "Deployment d/x",
            &elsewhere,
            false,
            "argocd",
            ArgoSuspend::Pausing,
        );
        assert!(
            w.contains("Application team-a/shop: its self-heal is turned off"),
            "{w}"
        );
        assert_eq!(
            manager(
                &map(&[("argocd.argoproj.io/instance", "team-a_shop")]),
                &none
            ),
            Some(Manager::ArgoCd("team-a_shop".into()))
        );
    }
}
