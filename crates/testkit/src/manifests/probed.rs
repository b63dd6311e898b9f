//! Workloads whose pod template has everything a copy must handle: app and tier labels, an
//! annotation, a regular init container, a sidecar (an init container with restartPolicy
//! Always), two containers, and liveness, readiness and startup probes on all but the plain
//! init container.

/// The pod template every fixture workload uses: app + tier labels, an annotation, a regular
/// init container, a sidecar (init container with restartPolicy Always), two containers, and
/// liveness/readiness/startup probes on all but the plain init container.
pub fn template(app: &str, restart_policy: Option<&str>, indent: usize) -> String {
    let restart = restart_policy
        .map(|p| format!("  restartPolicy: {p}\n"))
        .unwrap_or_default();
    let t = format!(
        r#"metadata:
  labels: {{app: {app}, tier: backend}}
  annotations: {{team: payments}}
spec:
{restart}  initContainers:
    - name: setup
      image: busybox:1.36
      command: ["true"]
    - name: proxy
      image: registry.k8s.io/pause:3.10
      restartPolicy: Always
      startupProbe: {{tcpSocket: {{port: 15000}}}}
      readinessProbe: {{tcpSocket: {{port: 15000}}}}
      livenessProbe: {{tcpSocket: {{port: 15000}}}}
  containers:
    - name: app
      image: registry.k8s.io/pause:3.10
      startupProbe: {{httpGet: {{path: /, port: 80}}, failureThreshold: 30}}
      livenessProbe: {{httpGet: {{path: /, port: 80}}}}
      readinessProbe: {{httpGet: {{path: /, port: 80}}}}
    - name: side
      image: registry.k8s.io/pause:3.10
      livenessProbe: {{tcpSocket: {{port: 9000}}}}
"#
    );
    let pad = " ".repeat(indent);
    t.lines().map(|l| format!("{pad}{l}\n")).collect::<String>()
}

/// A Deployment, StatefulSet, ReplicaSet or Rollout named `name` (selector `app: name`).
pub fn workload(kind: &str, name: &str, replicas: i32) -> String {
    let api = match kind {
        "Rollout" => "argoproj.io/v1alpha1",
        _ => "apps/v1",
    };
    let service = if kind == "StatefulSet" {
        format!("  serviceName: {name}\n  podManagementPolicy: Parallel\n")
    } else {
        String::new()
    };
    format!(
        "apiVersion: {api}\nkind: {kind}\nmetadata:\n  name: {name}\nspec:\n  replicas: {replicas}\n{service}  selector:\n    matchLabels: {{app: {name}}}\n  template:\n{}",
        template(name, None, 4)
    )
}

/// A Deployment named `name` of `replicas`.
pub fn deployment(name: &str, replicas: i32) -> String {
    workload("Deployment", name, replicas)
}

/// A Job (restartPolicy Never) that keeps running.
pub fn job(name: &str) -> String {
    format!(
        "apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: {name}\nspec:\n  backoffLimit: 0\n  template:\n{}",
        template(name, Some("Never"), 4)
    )
}

/// A CronJob (restartPolicy OnFailure) named `name`.
pub fn cronjob(name: &str) -> String {
    format!(
        "apiVersion: batch/v1\nkind: CronJob\nmetadata:\n  name: {name}\nspec:\n  schedule: \"0 3 * * *\"\n  jobTemplate:\n    spec:\n      template:\n{}",
        template(name, Some("OnFailure"), 8)
    )
}

/// A bare pod (`app: name`).
pub fn bare_pod(name: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\n{}",
        template(name, None, 0).replacen("metadata:\n", &format!("metadata:\n  name: {name}\n"), 1)
    )
}
