//! Workloads of one plain pause container (`app: NAME` selects them), for tests about counts,
//! locks and annotations rather than about what a copy's pod spec holds.

/// A Deployment of `replicas` pause containers (`app: name`).
pub fn deployment(name: &str, replicas: i32) -> String {
    deployment_of(name, replicas, "registry.k8s.io/pause:3.10")
}

/// A Deployment of `replicas` with one plain container running `image`.
pub fn deployment_of(name: &str, replicas: i32, image: &str) -> String {
    format!(
        r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
spec:
  replicas: {replicas}
  selector:
    matchLabels: {{app: {name}}}
  template:
    metadata:
      labels: {{app: {name}}}
    spec:
      containers:
        - name: app
          image: {image}
"#
    )
}

/// A StatefulSet of `replicas` pause containers (its governing Service named `name`).
pub fn statefulset(name: &str, replicas: i32) -> String {
    deployment(name, replicas)
        .replace("kind: Deployment", "kind: StatefulSet")
        .replace(
            "spec:\n  replicas",
            &format!("spec:\n  serviceName: {name}\n  replicas"),
        )
}

/// A bare ReplicaSet (no owner) of `replicas` pause containers.
pub fn replicaset(name: &str, replicas: i32) -> String {
    deployment(name, replicas).replace("kind: Deployment", "kind: ReplicaSet")
}

/// An Argo Rollout of `replicas` pause containers.
pub fn rollout(name: &str, replicas: i32) -> String {
    deployment(name, replicas)
        .replace("apiVersion: apps/v1", "apiVersion: argoproj.io/v1alpha1")
        .replace("kind: Deployment", "kind: Rollout")
}

/// A CronJob (not suspended) of one busybox container.
pub fn cronjob(name: &str) -> String {
    format!(
        r#"apiVersion: batch/v1
kind: CronJob
metadata:
  name: {name}
spec:
  schedule: "0 3 * * *"
  suspend: false
  jobTemplate:
    spec:
      template:
        spec:
          restartPolicy: Never
          containers:
            - name: job
              image: busybox
"#
    )
}

/// `manifest` with `lines` added to its metadata, right after `name: {name}`.
pub fn with_metadata(manifest: &str, name: &str, lines: &str) -> String {
    let head = format!("metadata:\n  name: {name}\n");
    manifest.replace(&head, &format!("{head}{lines}"))
}

/// A Deployment whose metadata carries `annotations` (key, YAML value).
pub fn annotated_deployment(name: &str, replicas: i32, annotations: &[(&str, &str)]) -> String {
    let lines: String = annotations
        .iter()
        .map(|(k, v)| format!("    {k}: {v}\n"))
        .collect();
    with_metadata(
        &deployment(name, replicas),
        name,
        &format!("  annotations:\n{lines}"),
    )
}

/// A KEDA ScaledObject `name` scaling the Deployment `name`.
pub fn scaled_object(name: &str) -> String {
    format!(
        "apiVersion: keda.sh/v1alpha1\nkind: ScaledObject\nmetadata:\n  name: {name}\nspec:\n  scaleTargetRef: {{name: {name}}}\n"
    )
}

/// A Deployment of one plain container running `image` with `command` (the image's own
/// when empty), for the failure tests: an image the registry does not hold fails to pull, a
/// command that exits non-zero crash-loops, on the fake as on a real cluster.
pub fn failing_deployment(name: &str, image: &str, command: &[&str]) -> String {
    let d = deployment_of(name, 1, image);
    if command.is_empty() {
        return d;
    }
    let command = serde_json::to_string(command).unwrap();
    d.replace(
        &format!("image: {image}\n"),
        &format!("image: {image}\n          command: {command}\n"),
    )
}
