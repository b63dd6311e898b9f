//! Target syntax: `KIND/NAME[/container/CONTAINER]`, with kubectl's short, singular and
//! plural kind names (and the `.group` forms kubectl prints).

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

    /// Canonical lowercase name used in target strings: "deployment".
    pub fn as_str(self) -> &'static str {
        match self {
            TargetKind::Pod => "pod",
            TargetKind::Deployment => "deployment",
            TargetKind::StatefulSet => "statefulset",
            TargetKind::ReplicaSet => "replicaset",
            TargetKind::Rollout => "rollout",
            TargetKind::Job => "job",
            TargetKind::CronJob => "cronjob",
        }
    }

    /// The API `kind`: "Deployment".
    pub fn kind(self) -> &'static str {
        match self {
            TargetKind::Pod => "Pod",
            TargetKind::Deployment => "Deployment",
            TargetKind::StatefulSet => "StatefulSet",
            TargetKind::ReplicaSet => "ReplicaSet",
            TargetKind::Rollout => "Rollout",
            TargetKind::Job => "Job",
            TargetKind::CronJob => "CronJob",
        }
    }

    /// The API `apiVersion`: "apps/v1".
    pub fn api_version(self) -> &'static str {
        match self {
            TargetKind::Pod => "v1",
            TargetKind::Deployment | TargetKind::StatefulSet | TargetKind::ReplicaSet => "apps/v1",
            TargetKind::Rollout => "argoproj.io/v1alpha1",
            TargetKind::Job | TargetKind::CronJob => "batch/v1",
        }
    }

    /// The resource as kubectl and RBAC name it: "deployments.apps", "pods".
    pub fn resource(self) -> &'static str {
        match self {
            TargetKind::Pod => "pods",
            TargetKind::Deployment => "deployments.apps",
            TargetKind::StatefulSet => "statefulsets.apps",
            TargetKind::ReplicaSet => "replicasets.apps",
            TargetKind::Rollout => "rollouts.argoproj.io",
            TargetKind::Job => "jobs.batch",
            TargetKind::CronJob => "cronjobs.batch",
        }
    }

    /// Map an API `kind` ("Deployment") back to a target kind.
    #[cfg(test)]
    pub(crate) fn from_api_kind(kind: &str) -> Option<TargetKind> {
        TargetKind::ALL.into_iter().find(|k| k.kind() == kind)
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
        let kind =
            match s.to_ascii_lowercase().as_str() {
                "po" | "pod" | "pods" => TargetKind::Pod,
                "deploy" | "deployment" | "deployments" | "deployment.apps"
                | "deployments.apps" => TargetKind::Deployment,
                "sts" | "statefulset" | "statefulsets" | "statefulset.apps"
                | "statefulsets.apps" => TargetKind::StatefulSet,
                "rs" | "replicaset" | "replicasets" | "replicaset.apps" | "replicasets.apps" => {
                    TargetKind::ReplicaSet
                }
                "ro" | "rollout" | "rollouts" | "rollout.argoproj.io" | "rollouts.argoproj.io" => {
                    TargetKind::Rollout
                }
                "job" | "jobs" | "job.batch" | "jobs.batch" => TargetKind::Job,
                "cj" | "cronjob" | "cronjobs" | "cronjob.batch" | "cronjobs.batch" => {
                    TargetKind::CronJob
                }
                other => {
                    return Err(Error::Usage(format!(
                        "unknown target kind \"{other}\"; {ACCEPTED_FORMS}"
                    )))
                }
            };
        Ok(kind)
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

/// DNS-1123 subdomain: what the API server accepts as an object name.
fn is_object_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 253 && name.split('.').all(|part| is_label(part, 253))
}

fn is_container_name(name: &str) -> bool {
    is_label(name, 63)
}

/// DNS-1123 label: lowercase alphanumerics and '-', starting and ending alphanumeric.
pub(crate) fn is_label(s: &str, max: usize) -> bool {
    !s.is_empty()
        && s.len() <= max
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> TargetRef {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
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
