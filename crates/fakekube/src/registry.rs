//! The resource types the fake API server serves. Adding a resource is one entry in [`builtin`].

/// One served resource: what discovery advertises and what routing matches on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceType {
    /// API group, "" for core.
    pub group: &'static str,
    /// API version, e.g. "v1".
    pub version: &'static str,
    /// Plural resource name as in the URL (`deployments`).
    pub plural: &'static str,
    /// Singular resource name (`deployment`), for discovery and kubectl.
    pub singular: &'static str,
    /// Kind, e.g. "Deployment".
    pub kind: &'static str,
    /// Namespaced (true) or cluster-scoped.
    pub namespaced: bool,
    /// kubectl short names (`deploy`).
    pub short_names: &'static [&'static str],
    /// Subresources served besides the object itself (`status`, `scale`).
    pub subresources: &'static [&'static str],
    /// Verbs discovery advertises.
    pub verbs: &'static [&'static str],
    /// Categories discovery advertises (`all`).
    pub categories: &'static [&'static str],
}

/// Verbs every stored resource supports.
pub const ALL_VERBS: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

impl ResourceType {
    /// `configmaps` for core, `deployments.apps` otherwise: the form Status messages use.
    pub fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.plural.to_string()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    /// `v1` or `apps/v1`.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// Whether DELETE answers with the object (pods, services, namespaces, persistentvolumeclaims,
    /// custom resources set `ReturnDeletedObject` upstream) rather than a `Status` of `Success` (ConfigMaps etc.).
    pub fn returns_deleted_object(&self) -> bool {
        matches!(
            self.plural,
            "pods" | "services" | "namespaces" | "persistentvolumeclaims"
        ) || matches!(self.group, "argoproj.io" | "keda.sh")
    }

    /// Whether `/<plural>/<name>` is served: upstream's installer registers the item path only
    /// for storage that gets, updates, patches or deletes (a create-only type answers 404).
    pub fn has_item_path(&self) -> bool {
        self.verbs
            .iter()
            .any(|v| matches!(*v, "get" | "update" | "patch" | "delete"))
    }

    /// Is `sub` (`status`, `scale`) served?
    pub fn has_subresource(&self, sub: &str) -> bool {
        self.subresources.contains(&sub)
    }

    /// Whether `spec` changes bump `metadata.generation` (everything with a spec, as upstream).
    pub fn tracks_generation(&self) -> bool {
        !matches!(
            self.plural,
            "configmaps"
                | "events"
                | "serviceaccounts"
                | "namespaces"
                | "leases"
                | "secrets"
                | "roles"
                | "rolebindings"
                | "clusterroles"
                | "clusterrolebindings"
        )
    }
}

macro_rules! rt {
    ($group:expr, $version:expr, $plural:expr, $singular:expr, $kind:expr, $namespaced:expr,
     short: $short:expr, sub: $sub:expr, cat: $cat:expr) => {
        ResourceType {
            group: $group,
            version: $version,
            plural: $plural,
            singular: $singular,
            kind: $kind,
            namespaced: $namespaced,
            short_names: $short,
            subresources: $sub,
            verbs: ALL_VERBS,
            categories: $cat,
        }
    };
}

/// Namespaces cannot be deleted as a collection (discovery.json).
const NAMESPACE_VERBS: &[&str] = &[
    "create", "delete", "get", "list", "patch", "update", "watch",
];

/// SelfSubjectReviews are only created (pkg/registry/authentication/selfsubjectreview: a
/// Creater with no storage), as discovery shows them.
const CREATE_ONLY_VERBS: &[&str] = &["create"];

/// The resources a sandbox serves.
pub fn builtin() -> Vec<ResourceType> {
    let mut types = served();
    for t in types.iter_mut() {
        match t.plural {
            "namespaces" => t.verbs = NAMESPACE_VERBS,
            "selfsubjectreviews" => t.verbs = CREATE_ONLY_VERBS,
            _ => {}
        }
    }
    types
}

fn served() -> Vec<ResourceType> {
    vec![
        rt!("", "v1", "namespaces", "namespace", "Namespace", false, short: &["ns"], sub: &["status"], cat: &[]),
        rt!("", "v1", "pods", "pod", "Pod", true, short: &["po"], sub: &["status"], cat: &["all"]),
        rt!("", "v1", "configmaps", "configmap", "ConfigMap", true, short: &["cm"], sub: &[], cat: &[]),
        rt!("", "v1", "secrets", "secret", "Secret", true, short: &[], sub: &[], cat: &[]),
        rt!("", "v1", "services", "service", "Service", true, short: &["svc"], sub: &["status"], cat: &["all"]),
        rt!("", "v1", "events", "event", "Event", true, short: &["ev"], sub: &[], cat: &[]),
        rt!("", "v1", "serviceaccounts", "serviceaccount", "ServiceAccount", true, short: &["sa"], sub: &[], cat: &[]),
        rt!("", "v1", "persistentvolumeclaims", "persistentvolumeclaim", "PersistentVolumeClaim", true, short: &["pvc"], sub: &["status"], cat: &[]),
        rt!("apps", "v1", "deployments", "deployment", "Deployment", true, short: &["deploy"], sub: &["status", "scale"], cat: &["all"]),
        rt!("apps", "v1", "statefulsets", "statefulset", "StatefulSet", true, short: &["sts"], sub: &["status", "scale"], cat: &["all"]),
        rt!("apps", "v1", "replicasets", "replicaset", "ReplicaSet", true, short: &["rs"], sub: &["status", "scale"], cat: &["all"]),
        // Not stored: a create answers with the caller's user info (`kubectl auth whoami`).
        rt!("authentication.k8s.io", "v1", "selfsubjectreviews", "selfsubjectreview", "SelfSubjectReview", false, short: &[], sub: &[], cat: &[]),
        rt!("batch", "v1", "jobs", "job", "Job", true, short: &[], sub: &["status"], cat: &["all"]),
        rt!("batch", "v1", "cronjobs", "cronjob", "CronJob", true, short: &["cj"], sub: &["status"], cat: &["all"]),
        rt!("autoscaling", "v2", "horizontalpodautoscalers", "horizontalpodautoscaler", "HorizontalPodAutoscaler", true, short: &["hpa"], sub: &["status"], cat: &["all"]),
        rt!("discovery.k8s.io", "v1", "endpointslices", "endpointslice", "EndpointSlice", true, short: &[], sub: &[], cat: &[]),
        rt!("coordination.k8s.io", "v1", "leases", "lease", "Lease", true, short: &[], sub: &[], cat: &[]),
        rt!("argoproj.io", "v1alpha1", "rollouts", "rollout", "Rollout", true, short: &["ro"], sub: &["status", "scale"], cat: &[]),
        // Argo CD's Application (its CRD: namespaced, short names app and apps, no subresources).
        rt!("argoproj.io", "v1alpha1", "applications", "application", "Application", true, short: &["app", "apps"], sub: &[], cat: &[]),
        rt!("keda.sh", "v1alpha1", "scaledobjects", "scaledobject", "ScaledObject", true, short: &["so"], sub: &["status"], cat: &[]),
        rt!("rbac.authorization.k8s.io", "v1", "roles", "role", "Role", true, short: &[], sub: &[], cat: &[]),
        rt!("rbac.authorization.k8s.io", "v1", "rolebindings", "rolebinding", "RoleBinding", true, short: &[], sub: &[], cat: &[]),
        rt!("rbac.authorization.k8s.io", "v1", "clusterroles", "clusterrole", "ClusterRole", false, short: &[], sub: &[], cat: &[]),
        rt!("rbac.authorization.k8s.io", "v1", "clusterrolebindings", "clusterrolebinding", "ClusterRoleBinding", false, short: &[], sub: &[], cat: &[]),
        // Stored only: CRDs are accepted (the transcripts install one) but do not create new types;
        // the Argo Rollout, Argo CD Application and KEDA ScaledObject types above are always served.
        rt!("apiextensions.k8s.io", "v1", "customresourcedefinitions", "customresourcedefinition", "CustomResourceDefinition", false, short: &["crd", "crds"], sub: &["status"], cat: &["api-extensions"]),
    ]
}
