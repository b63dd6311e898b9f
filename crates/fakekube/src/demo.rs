//! The sandbox's `--demo` workloads: everything in namespace
//! `default`, and all of it runs under the simulated kubelet: every image is one the fake's
//! registry holds (the real-cluster kit's: py-serv, checkout, worker, postgres, busybox), so
//! the same manifests run on the kit's real cluster.

/// Multi-document YAML: Deployment `py-serv-deployment` (2 replicas, app=py-serv, liveness,
/// readiness and startup probes, a sidecar init container with restartPolicy Always and its
/// own probe) and its Service, StatefulSet `db` (3, a ReadWriteOnce claim template `data`), Job `migrate`, CronJob `nightly`, Argo
/// Rollout `checkout` (2), bare Pod `debug-me`, Deployment `queue-worker` with an HPA and a
/// KEDA ScaledObject (minReplicaCount 1).
pub fn demo_manifests() -> &'static str {
    DEMO
}

const DEMO: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: py-serv-deployment
  namespace: default
  labels: {app: py-serv}
spec:
  replicas: 2
  selector:
    matchLabels: {app: py-serv}
  template:
    metadata:
      labels: {app: py-serv}
    spec:
      initContainers:
        - name: log-shipper
          image: ghcr.io/example/worker:3
          restartPolicy: Always
          readinessProbe:
            exec: {command: ["true"]}
            periodSeconds: 10
      containers:
        - name: py-serv
          image: ghcr.io/example/py-serv:1.0
          ports: [{containerPort: 80, name: http}]
          env:
            - {name: MIRRORD_FAKE_VAR_FIRST, value: mirrord.is.running}
          resources:
            requests: {cpu: 50m, memory: 64Mi}
            limits: {memory: 128Mi}
          startupProbe:
            httpGet: {path: /, port: 80}
            failureThreshold: 30
            periodSeconds: 2
          livenessProbe:
            httpGet: {path: /, port: 80}
            periodSeconds: 10
          readinessProbe:
            httpGet: {path: /, port: 80}
            periodSeconds: 5
---
apiVersion: v1
kind: Service
metadata:
  name: py-serv
  namespace: default
  labels: {app: py-serv}
spec:
  type: ClusterIP
  selector: {app: py-serv}
  ports: [{name: http, port: 80, targetPort: 80, protocol: TCP}]
---
apiVersion: v1
kind: Service
metadata:
  name: db
  namespace: default
  labels: {app: db}
spec:
  clusterIP: None
  selector: {app: db}
  ports: [{name: postgres, port: 5432, targetPort: 5432, protocol: TCP}]
---
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: db
  namespace: default
  labels: {app: db}
spec:
  replicas: 3
  serviceName: db
  podManagementPolicy: Parallel
  selector:
    matchLabels: {app: db}
  template:
    metadata:
      labels: {app: db}
    spec:
      containers:
        - name: postgres
          image: postgres:16
          ports: [{containerPort: 5432, name: postgres}]
          env:
            - {name: POSTGRES_PASSWORD, value: demo}
          readinessProbe:
            exec: {command: [pg_isready, -U, postgres]}
            periodSeconds: 5
          volumeMounts:
            - {name: data, mountPath: /var/lib/postgresql/data}
  # Like most real StatefulSets: one ReadWriteOnce claim per ordinal (data-db-0, ...).
  volumeClaimTemplates:
    - metadata:
        name: data
      spec:
        accessModes: [ReadWriteOnce]
        resources:
          requests:
            storage: 1Gi
---
apiVersion: batch/v1
kind: Job
metadata:
  name: migrate
  namespace: default
spec:
  backoffLimit: 2
  template:
    metadata:
      labels: {app: migrate}
    spec:
      restartPolicy: Never
      containers:
        - name: migrate
          image: busybox:1.36
          # a long migration that stops cleanly on SIGTERM
          command: [sh, -c, "trap 'exit 0' TERM; echo migrating; sleep 600 & wait $!"]
---
apiVersion: batch/v1
kind: CronJob
metadata:
  name: nightly
  namespace: default
spec:
  schedule: "0 3 * * *"
  concurrencyPolicy: Forbid
  jobTemplate:
    spec:
      template:
        metadata:
          labels: {app: nightly}
        spec:
          restartPolicy: OnFailure
          containers:
            - name: report
              image: busybox:1.36
              command: [sh, -c, "echo report since 24h"]
---
apiVersion: argoproj.io/v1alpha1
kind: Rollout
metadata:
  name: checkout
  namespace: default
spec:
  replicas: 2
  revisionHistoryLimit: 2
  selector:
    matchLabels: {app: checkout}
  template:
    metadata:
      labels: {app: checkout}
    spec:
      containers:
        - name: checkout
          image: ghcr.io/example/checkout:2.1
          ports: [{containerPort: 8080, name: http}]
          readinessProbe:
            httpGet: {path: /healthz, port: 8080}
  strategy:
    canary:
      steps:
        - setWeight: 20
        - pause: {duration: 30s}
---
apiVersion: v1
kind: Pod
metadata:
  name: debug-me
  namespace: default
  labels: {app: debug-me}
spec:
  containers:
    - name: shell
      image: busybox:1.36
      command: [sleep, infinity]
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: queue-worker
  namespace: default
  labels: {app: queue-worker}
spec:
  replicas: 1
  selector:
    matchLabels: {app: queue-worker}
  template:
    metadata:
      labels: {app: queue-worker}
    spec:
      containers:
        - name: worker
          image: ghcr.io/example/worker:3
          env:
            - {name: QUEUE_URL, value: "amqp://rabbitmq.default.svc:5672"}
          resources:
            requests: {cpu: 100m, memory: 128Mi}
---
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
  name: queue-worker
  namespace: default
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: queue-worker}
  minReplicas: 1
  maxReplicas: 5
  metrics:
    - type: Resource
      resource:
        name: cpu
        target: {type: Utilization, averageUtilization: 70}
---
apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata:
  name: queue-worker
  namespace: default
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: queue-worker}
  minReplicaCount: 1
  maxReplicaCount: 10
  triggers:
    - type: rabbitmq
      metadata: {queueName: jobs, mode: QueueLength, value: "20", hostFromEnv: QUEUE_URL}
"#;

#[cfg(test)]
mod tests {
    #[test]
    fn parses() {
        let docs = crate::seed::parse_documents(super::demo_manifests()).unwrap();
        assert_eq!(docs.len(), 11);
    }
}
