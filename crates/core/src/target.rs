//! Target syntax: `KIND/NAME[/container/CONTAINER]`, with kubectl's short, singular and
//! plural kind names (and the `.group` forms kubectl prints).

use mirrord_copy_lock::is_dns_label;
use std::fmt;
use std::str::FromStr;

use crate::error::Error;

/// The kinds of object a copy can be made from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TargetKind {
    /// core/v1 Pod: copied as it is.
    Pod,
    /// apps/v1 Deployment.
    Deployment,
    /// apps/v1 StatefulSet.
    StatefulSet,
    /// apps/v1 ReplicaSet.
    ReplicaSet,
    /// argoproj.io/v1alpha1 Rollout (Argo Rollouts).
    Rollout,
    /// batch/v1 Job.
    Job,
    /// batch/v1 CronJob: its job template's pod template.
    CronJob,
}

/// The accepted forms, shown in every parse error.
pub(crate) const ACCEPTED_FORMS: &str = "accepted targets: pod/NAME, deployment/NAME, statefulset/NAME, \
replicaset/NAME, rollout/NAME, job/NAME, cronjob/NAME, each optionally followed by /container/NAME \
(kubectl's short and plural kind names work too: po, deploy, sts, rs, ro, job, cj, pods, deployments, ...)";

/// How a scale-down holds a workload of a kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scaling {
    /// Its `spec.replicas` (through the scale subresource's semantics).
    Replicas,
    /// Its `spec.suspend` (a CronJob: no new Jobs while suspended).
    Suspend,
    /// Not at all: a bare pod or a Job has nothing to scale.
    None,
}

/// The facts about a target kind, written once: everything else (parsing, API calls, messages,
/// RBAC names, scale-down) reads them from [`KINDS`].
#[derive(Debug)]
pub struct KindInfo {
    /// The kind.
    pub kind: TargetKind,
    /// Lower-case name in targets, messages and lock names: "deployment".
    pub name: &'static str,
    /// The API `kind`: "Deployment".
    pub api_kind: &'static str,
    /// API group ("" for core).
    pub group: &'static str,
    /// API version.
    pub version: &'static str,
    /// Resource plural.
    pub plural: &'static str,
    /// kubectl's short names, besides the name, the plural and their `.group` forms.
    pub short_names: &'static [&'static str],
    /// Where the pod template lives in the object (a JSON pointer); None: the object is a pod.
    pub template: Option<&'static str>,
    /// How a scale-down holds it.
    pub scaling: Scaling,
}

/// Every kind a target can name, in the order help and errors list them.
pub const KINDS: &[KindInfo] = &[
    KindInfo {
        kind: TargetKind::Pod,
        name: "pod",
        api_kind: "Pod",
        group: "",
        version: "v1",
        plural: "pods",
        short_names: &["po"],
        template: None,
        scaling: Scaling::None,
    },
    KindInfo {
        kind: TargetKind::Deployment,
        name: "deployment",
        api_kind: "Deployment",
        group: "apps",
        version: "v1",
        plural: "deployments",
        short_names: &["deploy"],
        template: Some("/spec/template"),
        scaling: Scaling::Replicas,
    },
    KindInfo {
        kind: TargetKind::StatefulSet,
        name: "statefulset",
        api_kind: "StatefulSet",
        group: "apps",
        version: "v1",
        plural: "statefulsets",
        short_names: &["sts"],
        template: Some("/spec/template"),
        scaling: Scaling::Replicas,
    },
    KindInfo {
        kind: TargetKind::ReplicaSet,
        name: "replicaset",
        api_kind: "ReplicaSet",
        group: "apps",
        version: "v1",
        plural: "replicasets",
        short_names: &["rs"],
        template: Some("/spec/template"),
        scaling: Scaling::Replicas,
    },
    KindInfo {
        kind: TargetKind::Rollout,
        name: "rollout",
        api_kind: "Rollout",
        group: "argoproj.io",
        version: "v1alpha1",
        plural: "rollouts",
        short_names: &["ro"],
        // Or `spec.workloadRef`'s Deployment's: resolve follows it.
        template: Some("/spec/template"),
        scaling: Scaling::Replicas,
    },
    KindInfo {
        kind: TargetKind::Job,
        name: "job",
        api_kind: "Job",
        group: "batch",
        version: "v1",
        plural: "jobs",
        short_names: &[],
        template: Some("/spec/template"),
        scaling: Scaling::None,
    },
    KindInfo {
        kind: TargetKind::CronJob,
        name: "cronjob",
        api_kind: "CronJob",
        group: "batch",
        version: "v1",
        plural: "cronjobs",
        short_names: &["cj"],
        template: Some("/spec/jobTemplate/spec/template"),
        scaling: Scaling::Suspend,
    },
];

impl KindInfo {
    /// Does `word` (any case) name this kind, as kubectl accepts it: the name, the plural, a
    /// short name, or either of the first two with `.group`?
    fn is_named(&self, word: &str) -> bool {
        let word = word.to_ascii_lowercase();
        let grouped = |n: &str| !self.group.is_empty() && word == format!("{n}.{}", self.group);
        word == self.name
            || word == self.plural
            || self.short_names.contains(&word.as_str())
            || grouped(self.name)
            || grouped(self.plural)
    }
}

impl TargetKind {
    /// Every kind a target can name.
    #[cfg(test)]
    pub(crate) const ALL: [TargetKind; 7] = [
        TargetKind::Pod,
        TargetKind::Deployment,
        TargetKind::StatefulSet,
        TargetKind::ReplicaSet,
        TargetKind::Rollout,
        TargetKind::Job,
        TargetKind::CronJob,
    ];

    /// Its row of [`KINDS`].
    pub fn info(self) -> &'static KindInfo {
        KINDS
            .iter()
            .find(|i| i.kind == self)
            .expect("every kind has its row in KINDS")
    }

    /// Canonical lowercase name used in target strings: "deployment".
    pub fn as_str(self) -> &'static str {
        self.info().name
    }

    /// The API `kind`: "Deployment".
    pub fn kind(self) -> &'static str {
        self.info().api_kind
    }

    /// The API `apiVersion`: "apps/v1".
    pub fn api_version(self) -> String {
        let i = self.info();
        match i.group {
            "" => i.version.to_string(),
            group => format!("{group}/{}", i.version),
        }
    }

    /// The resource as kubectl and RBAC name it: "deployments.apps", "pods".
    pub fn resource(self) -> String {
        let i = self.info();
        match i.group {
            "" => i.plural.to_string(),
            group => format!("{}.{group}", i.plural),
        }
    }

    /// The kind's API resource, for dynamic API calls.
    pub fn api_resource(self) -> kube::discovery::ApiResource {
        let i = self.info();
        kube::discovery::ApiResource::from_gvk_with_plural(
            &kube::core::GroupVersionKind::gvk(i.group, i.version, i.api_kind),
            i.plural,
        )
    }

    /// Map an API `kind` ("Deployment") back to a target kind.
    #[cfg(test)]
    pub(crate) fn from_api_kind(kind: &str) -> Option<TargetKind> {
        KINDS.iter().find(|i| i.api_kind == kind).map(|i| i.kind)
    }
}

impl fmt::Display for TargetKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for TargetKind {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        KINDS
            .iter()
            .find(|i| i.is_named(s))
            .map(|i| i.kind)
            .ok_or_else(|| {
                Error::Usage(format!(
                    "unknown target kind \"{}\"; {ACCEPTED_FORMS}",
                    s.to_ascii_lowercase()
                ))
            })
    }
}

/// A parsed target: what to copy, and optionally which container mirrord should target.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TargetRef {
    /// What kind of object the target names.
    pub kind: TargetKind,
    /// The object's name.
    pub name: String,
    /// `/container/NAME`: the container mirrord should target, if given.
    pub container: Option<String>,
}

impl TargetRef {
    /// "deployment/x" without the container part: what a workload lock or `--target` matches on.
    pub fn workload(&self) -> String {
        format!("{}/{}", self.kind, self.name)
    }
}

impl fmt::Display for TargetRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.kind, self.name)?;
        if let Some(container) = &self.container {
            write!(f, "/container/{container}")?;
        }
        Ok(())
    }
}

impl FromStr for TargetRef {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        let malformed =
            |why: &str| Error::Usage(format!("invalid target \"{s}\": {why}; {ACCEPTED_FORMS}"));
        let parts: Vec<&str> = s.split('/').collect();
        let (kind, name, container) = match parts.as_slice() {
            [kind, name] => (*kind, *name, None),
            [kind, name, "container", container] => (*kind, *name, Some(*container)),
            [_] => return Err(malformed("expected KIND/NAME")),
            [_, _, word, ..] if *word != "container" => {
                return Err(malformed("expected \"container\" after KIND/NAME"))
            }
            _ => {
                return Err(malformed(
                    "expected KIND/NAME or KIND/NAME/container/CONTAINER",
                ))
            }
        };
        let kind: TargetKind = kind.parse().map_err(|_| malformed("unknown kind"))?;
        if !is_object_name(name) {
            return Err(malformed("the name must be a lowercase DNS-1123 name"));
        }
        if let Some(container) = container {
            if !is_container_name(container) {
                return Err(malformed(
                    "the container name must be a lowercase DNS-1123 label",
                ));
            }
        }
        Ok(TargetRef {
            kind,
            name: name.to_string(),
            container: container.map(str::to_string),
        })
    }
}

/// What apimachinery says of a name that is not a DNS-1123 label (validation.IsDNS1123Label).
const LABEL_RULE: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric \
characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or \
'123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";

/// What apimachinery says of a name that is not a DNS-1123 subdomain (IsDNS1123Subdomain).
const SUBDOMAIN_RULE: &str = "a lowercase RFC 1123 subdomain must consist of lower case \
alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character \
(e.g. 'example.com', regex used for validation is \
'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";

/// What client-go refuses to put in a request path (rest.Request's IsValidPathSegmentName),
/// in its words.
fn path_segment_problem(name: &str) -> Option<&'static str> {
    match name {
        "." => Some("may not be '.'"),
        ".." => Some("may not be '..'"),
        _ if name.contains('/') => Some("may not contain '/'"),
        _ if name.contains('%') => Some("may not contain '%'"),
        _ => None,
    }
}

/// A namespace as kubectl and the API server accept it: a DNS-1123 label of at most 63
/// characters. Checked before any request, so that `-n 'x/../default'` or
/// `-n 'default?labelSelector=x'` never becomes part of a URL. Exit 2, in kubectl's words:
/// `invalid namespace "x/../default": may not contain '/'`.
pub fn validate_namespace(namespace: &str) -> Result<(), Error> {
    let invalid = |why: &str| Error::Usage(format!("invalid namespace \"{namespace}\": {why}"));
    if namespace.is_empty() {
        return Err(invalid("may not be empty"));
    }
    if let Some(why) = path_segment_problem(namespace) {
        return Err(invalid(why));
    }
    if namespace.len() > 63 {
        return Err(invalid("must be no more than 63 characters"));
    }
    if !is_dns_label(namespace, 63) {
        return Err(invalid(LABEL_RULE));
    }
    Ok(())
}

/// An object name (a pod's, a workload's) as the API server accepts it: a DNS-1123 subdomain
/// of at most 253 characters. `what` names it in the message (`pod`): `invalid pod name
/// "Bad/Pod": may not contain '/'`. Exit 2.
pub fn validate_object_name(what: &str, name: &str) -> Result<(), Error> {
    let invalid = |why: &str| Error::Usage(format!("invalid {what} name \"{name}\": {why}"));
    if name.is_empty() {
        return Err(invalid("may not be empty"));
    }
    if let Some(why) = path_segment_problem(name) {
        return Err(invalid(why));
    }
    if name.len() > 253 {
        return Err(invalid("must be no more than 253 characters"));
    }
    if !is_object_name(name) {
        return Err(invalid(SUBDOMAIN_RULE));
    }
    Ok(())
}

/// DNS-1123 subdomain: what the API server accepts as an object name.
fn is_object_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 253 && name.split('.').all(|part| is_dns_label(part, 253))
}

fn is_container_name(name: &str) -> bool {
    is_dns_label(name, 63)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> TargetRef {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn the_kinds_table_has_one_row_a_kind_and_the_help_names_them_all() {
        for kind in TargetKind::ALL {
            assert_eq!(KINDS.iter().filter(|i| i.kind == kind).count(), 1, "{kind}");
            let info = kind.info();
            assert_eq!(info.name.parse::<TargetKind>().unwrap(), kind);
            assert_eq!(info.plural.parse::<TargetKind>().unwrap(), kind);
            assert!(
                ACCEPTED_FORMS.contains(&format!("{}/NAME", info.name)),
                "{kind}"
            );
            for short in info.short_names {
                assert_eq!(short.parse::<TargetKind>().unwrap(), kind);
                assert!(ACCEPTED_FORMS.contains(short), "{short}");
            }
            assert_eq!(TargetKind::from_api_kind(info.api_kind), Some(kind));
        }
        assert_eq!(TargetKind::Rollout.api_version(), "argoproj.io/v1alpha1");
        assert_eq!(TargetKind::Pod.api_version(), "v1");
        assert_eq!(TargetKind::CronJob.resource(), "cronjobs.batch");
        assert!("Deployments.Apps".parse::<TargetKind>().is_ok());
        assert!("deployment.batch".parse::<TargetKind>().is_err());
    }

    #[test]
    fn accepts_kubectl_kind_names() {
        let cases = [
            ("po/x", TargetKind::Pod),
            ("pods/x", TargetKind::Pod),
            ("pod/x", TargetKind::Pod),
            ("deploy/x", TargetKind::Deployment),
            ("deployments/x", TargetKind::Deployment),
            ("deployment.apps/x", TargetKind::Deployment),
            ("Deployment/x", TargetKind::Deployment),
            ("sts/x", TargetKind::StatefulSet),
            ("statefulsets/x", TargetKind::StatefulSet),
            ("rs/x", TargetKind::ReplicaSet),
            ("replicasets/x", TargetKind::ReplicaSet),
            ("ro/x", TargetKind::Rollout),
            ("rollouts/x", TargetKind::Rollout),
            ("rollouts.argoproj.io/x", TargetKind::Rollout),
            ("job/x", TargetKind::Job),
            ("jobs/x", TargetKind::Job),
            ("cj/x", TargetKind::CronJob),
            ("cronjobs/x", TargetKind::CronJob),
        ];
        for (input, kind) in cases {
            let t = parse(input);
            assert_eq!(t.kind, kind, "{input}");
            assert_eq!(t.name, "x");
            assert_eq!(t.container, None);
        }
    }

    #[test]
    fn container_suffix_and_canonical_display() {
        let t = parse("deploy/py-serv-deployment/container/app");
        assert_eq!(t.container.as_deref(), Some("app"));
        assert_eq!(t.to_string(), "deployment/py-serv-deployment/container/app");
        assert_eq!(t.workload(), "deployment/py-serv-deployment");
        assert_eq!(parse("sts/db").to_string(), "statefulset/db");
    }

    #[test]
    fn rejects_malformed_targets_listing_accepted_forms() {
        for bad in [
            "",
            "deployment",
            "deployment/",
            "/x",
            "service/x",
            "deployment/x/y",
            "deployment/x/containers/c",
            "deployment/x/container/",
            "deployment/x/container/c/extra",
            "deployment/X",
            "deployment/x y",
        ] {
            let err = bad.parse::<TargetRef>().expect_err(bad);
            assert_eq!(err.exit_code(), 2, "{bad}");
            assert!(err.to_string().contains("accepted targets"), "{bad}: {err}");
        }
    }

    #[test]
    fn namespaces_and_names_are_checked_as_kubectl_does() {
        for ok in ["default", "kube-system", "a", "mc-1x2y", &"a".repeat(63)] {
            validate_namespace(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        for (bad, why) in [
            ("x/../default", "may not contain '/'"),
            ("..", "may not be '..'"),
            (".", "may not be '.'"),
            ("a%2Fb", "may not contain '%'"),
            ("default?labelSelector=x", "RFC 1123 label"),
            ("Default", "RFC 1123 label"),
            ("-x", "RFC 1123 label"),
            ("a.b", "RFC 1123 label"),
            ("", "may not be empty"),
            (&"a".repeat(64), "no more than 63 characters"),
        ] {
            let err = validate_namespace(bad).expect_err(bad);
            assert_eq!(err.exit_code(), 2);
            let text = err.to_string();
            assert!(
                text.starts_with(&format!("invalid namespace \"{bad}\": ")) && text.contains(why),
                "{bad}: {text}"
            );
        }
        assert_eq!(
            validate_namespace("x/../default").unwrap_err().to_string(),
            "invalid namespace \"x/../default\": may not contain '/'"
        );
        for ok in ["x-copy-abcde", "a.b", &"a".repeat(253)] {
            validate_object_name("pod", ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        for (bad, why) in [
            ("Bad/Pod", "may not contain '/'"),
            ("BadPod", "RFC 1123 subdomain"),
            ("x?y=z", "RFC 1123 subdomain"),
            ("..", "may not be '..'"),
            (&"a".repeat(254), "no more than 253 characters"),
        ] {
            let err = validate_object_name("pod", bad).expect_err(bad);
            assert_eq!(err.exit_code(), 2);
            let text = err.to_string();
            assert!(
                text.starts_with(&format!("invalid pod name \"{bad}\": ")) && text.contains(why),
                "{bad}: {text}"
            );
        }
    }

    #[test]
    fn display_round_trips() {
        for kind in TargetKind::ALL {
            let t = TargetRef {
                kind,
                name: "a.b-c".into(),
                container: Some("c1".into()),
            };
            assert_eq!(parse(&t.to_string()), t);
            assert_eq!(TargetKind::from_api_kind(kind.kind()), Some(kind));
        }
    }
}
