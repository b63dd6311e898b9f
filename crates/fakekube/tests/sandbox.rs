//! The sandbox binary's contract: `--demo` seeds the demo workloads, a line with
//! `ready` is printed once it serves, everything runs, SIGTERM ends it with exit code 0.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::api::{Api, DynamicObject, ListParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::core::{ApiResource, GroupVersionKind};

fn ready(p: &Pod) -> bool {
    let s = p.status.as_ref();
    s.and_then(|s| s.phase.as_deref()) == Some("Running")
        && s.and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_sandbox_serves_running_workloads_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    let extra = dir.path().join("extra");
    std::fs::create_dir(&extra).unwrap();
    std::fs::write(
        extra.join("cm.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: from-dir}\ndata: {k: v}\n",
    )
    .unwrap();
    std::fs::write(extra.join("ignored.txt"), "not yaml").unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_mirrord-copy-sandbox"))
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .arg("--demo")
        .arg("--manifests")
        .arg(&extra)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let _ = tx.send(line.unwrap_or_default());
        }
    });
    let line = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("a ready line");
    assert!(line.contains("ready"), "{line}");
    assert!(line.contains("https://127.0.0.1:"), "{line}");

    let kc = Kubeconfig::read_from(&kubeconfig).unwrap();
    let cfg = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .unwrap();
    assert_eq!(cfg.default_namespace, "default");
    let client = kube::Client::try_from(cfg).unwrap();
    let d: Deployment = Api::default_namespaced(client.clone())
        .get("py-serv-deployment")
        .await
        .unwrap();
    let spec = d.spec.unwrap();
    assert_eq!(spec.replicas, Some(2));
    let pod_spec = spec.template.spec.unwrap();
    let c = &pod_spec.containers[0];
    assert!(c.liveness_probe.is_some() && c.readiness_probe.is_some() && c.startup_probe.is_some());
    let sidecar = &pod_spec.init_containers.unwrap()[0];
    assert_eq!(sidecar.restart_policy.as_deref(), Some("Always"));
    assert!(sidecar.readiness_probe.is_some());
    let svc: Service = Api::default_namespaced(client.clone())
        .get("py-serv")
        .await
        .unwrap();
    assert_eq!(svc.spec.unwrap().selector.unwrap()["app"], "py-serv");
    let sts: StatefulSet = Api::default_namespaced(client.clone())
        .get("db")
        .await
        .unwrap();
    assert_eq!(sts.spec.unwrap().replicas, Some(3));
    let _: Job = Api::default_namespaced(client.clone())
        .get("migrate")
        .await
        .unwrap();
    let _: CronJob = Api::default_namespaced(client.clone())
        .get("nightly")
        .await
        .unwrap();
    let _: HorizontalPodAutoscaler = Api::default_namespaced(client.clone())
        .get("queue-worker")
        .await
        .unwrap();
    let _: k8s_openapi::api::core::v1::ConfigMap = Api::default_namespaced(client.clone())
        .get("from-dir")
        .await
        .unwrap();
    for (g, v, k, plural, name) in [
        ("argoproj.io", "v1alpha1", "Rollout", "rollouts", "checkout"),
        (
            "keda.sh",
            "v1alpha1",
            "ScaledObject",
            "scaledobjects",
            "queue-worker",
        ),
    ] {
        let ar = ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(g, v, k), plural);
        let api: Api<DynamicObject> = Api::default_namespaced_with(client.clone(), &ar);
        api.get(name)
            .await
            .unwrap_or_else(|e| panic!("{k} {name}: {e}"));
    }

    // All running: 2 py-serv, 3 db, 2 checkout, debug-me, 1 queue-worker, the migrate Job's pod.
    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let list = pods.list(&ListParams::default()).await.unwrap();
        let count = |app: &str| {
            list.items
                .iter()
                .filter(|p| {
                    p.metadata
                        .labels
                        .as_ref()
                        .and_then(|l| l.get("app"))
                        .map(String::as_str)
                        == Some(app)
                        && ready(p)
                })
                .count()
        };
        let counts = [
            count("py-serv"),
            count("db"),
            count("checkout"),
            count("debug-me"),
            count("queue-worker"),
            count("migrate"),
        ];
        if counts == [2, 3, 2, 1, 1, 1] {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "pods not all running: {counts:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let status = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let code = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "sandbox did not exit on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(code.code(), Some(0));
}
