//! GitOps controllers that put a workload's replica count back from Git: a scale-down lasts
//! only until their next sync. Detected from the marks they leave on the objects they apply:
//! Argo CD's tracking annotation (or its instance label), Flux's kustomize-controller and
//! helm-controller labels. Flux's kustomize-controller skips an object annotated
//! `kustomize.toolkit.fluxcd.io/reconcile: disabled`; `--suspend-flux` sets that for the
//! session and puts the previous value back on restore.

use std::collections::BTreeMap;

/// Flux kustomize-controller's per-object opt-out.
pub(crate) const FLUX_RECONCILE_ANNOTATION: &str = "kustomize.toolkit.fluxcd.io/reconcile";
/// The value of [`FLUX_RECONCILE_ANNOTATION`] before the session set it ("" if there was none).
pub(crate) const FLUX_PREVIOUS_ANNOTATION: &str = "mirrord-copy.io/flux-reconcile-previous";

/// Who applies the workload from Git.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Manager {
    /// Argo CD application (its name).
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

/// The warning for a scale-down of `workload` (e.g. "Deployment default/x") managed by `m`.
pub(crate) fn warning(workload: &str, m: &Manager, suspending_flux: bool) -> String {
    match m {
        Manager::ArgoCd(app) => format!(
            "{workload} is managed by Argo CD application {app}: with automated sync and self-heal it puts the replica count back from Git; disable self-heal for the session or copy without --scale-down"
        ),
        Manager::FluxKustomization(k) if suspending_flux => format!(
            "{workload} is managed by Flux Kustomization {k}: annotated {FLUX_RECONCILE_ANNOTATION}=disabled for the session (--suspend-flux); restored afterwards"
        ),
        Manager::FluxKustomization(k) => format!(
            "{workload} is managed by Flux Kustomization {k}: its next reconcile puts the replica count back; --suspend-flux annotates the workload {FLUX_RECONCILE_ANNOTATION}=disabled for the session"
        ),
        Manager::FluxHelmRelease(h) => format!(
            "{workload} is managed by Flux HelmRelease {h}: its next reconcile puts the replica count back; `flux suspend helmrelease` for the session"
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
        let w = warning("Deployment d/x", &Manager::ArgoCd("shop".into()), false);
        assert!(w.contains("Argo CD application shop"), "{w}");
    }
}
