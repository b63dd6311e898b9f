//! Sandbox capacity benchmark (not a test): N ConfigMaps + N Pods of realistic size stored
//! (N = MIRRORD_COPY_BENCH_N, default 10,000), process RSS, a labelled LIST over HTTPS matching
//! N objects (median of several), create latency over HTTPS, and watch fan-out: W concurrent
//! label-selected watches (MIRRORD_COPY_BENCH_WATCHERS, default 50) each receiving E creates.
//! Run: `cargo bench -p fakekube --bench sandbox`. Controllers are off: the figures
//! are the API server's (a kubelet would rewrite every pod's status once, then idle).
//! The server runs in a child process (this binary again, with MIRRORD_COPY_BENCH_SERVER set),
//! so the RSS figures are the server's alone, read from /proc/<pid>/status; the client
//! (kube-rs) measures from this process over loopback HTTPS.

use std::sync::Arc;
use std::time::{Duration, Instant};

use fakekube::controllers::Controllers;
use fakekube::{FakeCluster, ServerOptions, ADMIN_TOKEN};
use kube::config::{KubeConfigOptions, Kubeconfig};
use serde_json::json;

/// Resident memory of a process ("self" or a pid), in MB.
fn rss_mb(pid: &str) -> f64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

const TIERS: [&str; 3] = ["web", "api", "db"];

/// A ConfigMap of ~1.5 KB: labels, an annotation, a few config keys.
fn config_map(i: usize) -> serde_json::Value {
    json!({
        "metadata": {
            "name": format!("app-config-{i:05}"),
            "labels": {"bench": "cm", "app.kubernetes.io/name": format!("svc-{}", i % 50), "tier": TIERS[i % 3]},
            "annotations": {"meta.helm.sh/release-name": format!("release-{}", i % 50), "meta.helm.sh/release-namespace": "default"},
        },
        "data": {
            "LOG_LEVEL": "info",
            "DATABASE_URL": format!("postgres://app:secret@db-{}.default.svc.cluster.local:5432/app", i % 3),
            "FEATURE_FLAGS": "checkout-v2=true,search-beta=false,new-pricing=true,dark-mode=false",
            "application.yaml": format!("server:\n  port: 8080\n  shutdown: graceful\nspring:\n  application:\n    name: svc-{i}\n  datasource:\n    hikari:\n      maximum-pool-size: 10\nmanagement:\n  endpoints:\n    web:\n      exposure:\n        include: health,info,prometheus\n{}", "# padding\n".repeat(60)),
        }
    })
}

/// A Deployment-made pod (~3 KB stored, after admission defaults).
fn pod(i: usize) -> serde_json::Value {
    json!({
        "metadata": {
            "name": format!("web-5d4f8c9b7-{i:05}"),
            "labels": {"bench": "pod", "app": "web", "pod-template-hash": "5d4f8c9b7"},
            "annotations": {"kubectl.kubernetes.io/restartedAt": "2026-01-01T00:00:00Z"},
        },
        "spec": {
            "containers": [{
                "name": "web",
                "image": "ghcr.io/example/web:1.2.3",
                "ports": [{"containerPort": 8080, "name": "http", "protocol": "TCP"}],
                "env": [
                    {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                    {"name": "LOG_LEVEL", "value": "info"},
                    {"name": "DATABASE_URL", "valueFrom": {"secretKeyRef": {"name": "db", "key": "url"}}},
                ],
                "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "256Mi"}},
                "readinessProbe": {"httpGet": {"path": "/ready", "port": 8080}, "periodSeconds": 5},
                "livenessProbe": {"httpGet": {"path": "/healthz", "port": 8080}, "periodSeconds": 10},
            }],
        },
    })
}

/// Set in the child: serve the seeded store, write the kubeconfig to this path.
const SERVER_ENV: &str = "MIRRORD_COPY_BENCH_SERVER";

/// What the server child reports once seeded, as one line on stdout.
struct Seeded {
    base_mb: f64,
    seed_ms: f64,
    rss_mb: f64,
    bytes_per_object: f64,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let n: usize = std::env::var("MIRRORD_COPY_BENCH_N")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10_000);
    match std::env::var(SERVER_ENV) {
        Ok(kubeconfig) => serve(n, std::path::Path::new(&kubeconfig)).await,
        Err(_) => measure(n).await,
    }
}

/// The child: seed `n` ConfigMaps and `n` Pods straight into the store, report, serve until
/// stdin closes.
async fn serve(n: usize, kubeconfig: &std::path::Path) {
    let base = rss_mb("self");
    let fake = FakeCluster::start(ServerOptions {
        controllers: Some(Arc::new(Controllers::none())),
        ..Default::default()
    })
    .await
    .unwrap();
    let store = fake.store();
    let cm_rt = store.resource("", "configmaps").unwrap().clone();
    let pod_rt = store.resource("", "pods").unwrap().clone();
    let t = Instant::now();
    for i in 0..n {
        store
            .create(&cm_rt, Some("default"), config_map(i), false)
            .unwrap();
        store
            .create(&pod_rt, Some("default"), pod(i), false)
            .unwrap();
    }
    let seeded = t.elapsed();
    store.compact();
    // Before anything below parses stored objects back (which leaves freed heap behind).
    let rss = rss_mb("self");
    let stored_bytes: usize = ["configmaps", "pods"]
        .iter()
        .map(|p| {
            let rt = store.resource("", p).unwrap().clone();
            store
                .list(&rt, Some("default"), &|_| true)
                .0
                .iter()
                .map(|o| serde_json::to_vec(&**o).unwrap().len())
                .sum::<usize>()
        })
        .sum();
    fake.write_kubeconfig(kubeconfig, "default", ADMIN_TOKEN)
        .unwrap();
    println!(
        "seeded {base} {} {rss} {}",
        ms(seeded),
        stored_bytes as f64 / (2 * n) as f64
    );
    // Serve until the parent closes our stdin.
    let _ =
        tokio::task::spawn_blocking(|| std::io::copy(&mut std::io::stdin(), &mut std::io::sink()))
            .await;
    fake.stop().await;
}

/// The parent: start the server child, then measure it over HTTPS.
async fn measure(n: usize) {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kubeconfig");
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .env(SERVER_ENV, &path)
        .env("MIRRORD_COPY_BENCH_N", n.to_string())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("start the server process");
    let server_pid = child.id().to_string();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let f: Vec<f64> = line
        .strip_prefix("seeded ")
        .unwrap_or_else(|| panic!("server said {line:?}"))
        .split_whitespace()
        .map(|x| x.parse().unwrap())
        .collect();
    let seeded = Seeded {
        base_mb: f[0],
        seed_ms: f[1],
        rss_mb: f[2],
        bytes_per_object: f[3],
    };
    let cfg = kube::Config::from_custom_kubeconfig(
        Kubeconfig::read_from(&path).unwrap(),
        &KubeConfigOptions::default(),
    )
    .await
    .unwrap();
    let client = kube::Client::try_from(cfg).unwrap();
    let list = |plural: &str, sel: &str| {
        http::Request::get(format!(
            "/api/v1/namespaces/default/{plural}?labelSelector={sel}"
        ))
        .body(Vec::new())
        .unwrap()
    };
    let mut lists = Vec::new();
    let mut size = 0;
    for _ in 0..7 {
        let t = Instant::now();
        let body = client
            .request_text(list("configmaps", "bench%3Dcm"))
            .await
            .unwrap();
        lists.push(t.elapsed());
        size = body.len();
        assert!(body.matches("\"app-config-").count() >= n);
    }
    let mut pod_lists = Vec::new();
    let mut pod_size = 0;
    for _ in 0..7 {
        let t = Instant::now();
        let body = client
            .request_text(list("pods", "bench%3Dpod"))
            .await
            .unwrap();
        pod_lists.push(t.elapsed());
        pod_size = body.len();
    }
    let mut sel_lists = Vec::new();
    for _ in 0..7 {
        let t = Instant::now();
        let body = client
            .request_text(list("configmaps", "app.kubernetes.io%2Fname%3Dsvc-7"))
            .await
            .unwrap();
        sel_lists.push(t.elapsed());
        assert!(body.contains("app-config-"));
    }
    let mut creates = Vec::new();
    for i in 0..200 {
        let mut cm = config_map(n + i);
        cm["metadata"]["labels"]["bench"] = json!("latency");
        let req = http::Request::post("/api/v1/namespaces/default/configmaps")
            .header("Content-Type", "application/json")
            .body(serde_json::to_vec(&cm).unwrap())
            .unwrap();
        let t = Instant::now();
        client.request_text(req).await.unwrap();
        creates.push(t.elapsed());
    }
    let rss_after = rss_mb(&server_pid);
    creates.sort();
    let watchers: usize = std::env::var("MIRRORD_COPY_BENCH_WATCHERS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(50);
    let fan_out = watch_fan_out(&client, watchers, 200).await;
    let rss_after_watch = rss_mb(&server_pid);

    println!("objects stored: {} configmaps + {} pods", n, n);
    println!(
        "stored object size (JSON): {:.0} bytes/object average",
        seeded.bytes_per_object
    );
    println!("seed time (store, no HTTP): {:.0} ms", seeded.seed_ms);
    println!("server rss baseline: {:.1} MB", seeded.base_mb);
    println!(
        "server rss with objects: {:.1} MB (goal < 200 MB)",
        seeded.rss_mb
    );
    println!("server rss after lists and creates: {rss_after:.1} MB (goal < 200 MB)");
    println!("server rss after the watch fan-out: {rss_after_watch:.1} MB");
    println!("labelled list of {n} configmaps over https: {:.1} ms median of 7, {:.1} MB body (goal < 100 ms)", ms(median(lists)), size as f64 / 1e6);
    println!(
        "labelled list of {n} pods over https: {:.1} ms median of 7, {:.1} MB body (goal < 100 ms)",
        ms(median(pod_lists)),
        pod_size as f64 / 1e6
    );
    println!(
        "labelled list of {} of {n} configmaps over https: {:.2} ms median of 7",
        n / 50,
        ms(median(sel_lists))
    );
    println!(
        "create latency over https: {:.2} ms median, {:.2} ms p99 of 200",
        ms(creates[100]),
        ms(creates[197])
    );
    println!(
        "watch fan-out, {watchers} watchers x {} creates over https: create-to-last-watcher {:.2} ms median, {:.2} ms p99; {:.0} events/s delivered",
        fan_out.events,
        ms(fan_out.median),
        ms(fan_out.p99),
        fan_out.delivered_per_second
    );
    drop(child.stdin.take());
    child.wait().unwrap();
}

struct FanOut {
    events: usize,
    /// From sending a create to the last watcher seeing its ADDED event.
    median: Duration,
    p99: Duration,
    delivered_per_second: f64,
}

/// `watchers` label-selected watches from one resourceVersion, then `events` creates one after
/// another; every watcher must see every create.
async fn watch_fan_out(client: &kube::Client, watchers: usize, events: usize) -> FanOut {
    use futures::{StreamExt, TryStreamExt};
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::api::{Api, ListParams, PostParams, WatchEvent, WatchParams};
    use kube::ResourceExt;

    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let rv = api
        .list_metadata(&ListParams::default().labels("bench=fanout"))
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap_or_default();
    let (seen_tx, mut seen_rx) = tokio::sync::mpsc::unbounded_channel::<(usize, Instant)>();
    let mut tasks = Vec::new();
    for _ in 0..watchers {
        let (api, rv, seen_tx) = (api.clone(), rv.clone(), seen_tx.clone());
        tasks.push(tokio::spawn(async move {
            let params = WatchParams::default().labels("bench=fanout").timeout(120);
            let mut stream = api.watch(&params, &rv).await.unwrap().boxed();
            let mut seen = 0;
            while seen < events {
                match stream.try_next().await.unwrap() {
                    Some(WatchEvent::Added(cm)) => {
                        let seq = cm.labels()["seq"].parse().unwrap();
                        seen_tx.send((seq, Instant::now())).unwrap();
                        seen += 1;
                    }
                    Some(_) => {}
                    None => panic!("watch closed after {seen} of {events} events"),
                }
            }
        }));
    }
    drop(seen_tx);
    let start = Instant::now();
    let mut sent = Vec::with_capacity(events);
    for seq in 0..events {
        let mut cm: ConfigMap = serde_json::from_value(config_map(seq)).unwrap();
        cm.metadata.name = Some(format!("fanout-{seq:04}"));
        cm.labels_mut().insert("bench".into(), "fanout".into());
        cm.labels_mut().insert("seq".into(), seq.to_string());
        sent.push(Instant::now());
        api.create(&PostParams::default(), &cm).await.unwrap();
    }
    let mut last_seen = vec![start; events];
    let mut count = vec![0usize; events];
    while let Some((seq, at)) = seen_rx.recv().await {
        last_seen[seq] = last_seen[seq].max(at);
        count[seq] += 1;
    }
    for task in tasks {
        task.await.unwrap();
    }
    assert!(
        count.iter().all(|&c| c == watchers),
        "a watcher missed an event"
    );
    let total = last_seen.iter().max().unwrap().duration_since(start);
    let mut latencies: Vec<Duration> = last_seen
        .iter()
        .zip(&sent)
        .map(|(seen, sent)| seen.duration_since(*sent))
        .collect();
    latencies.sort();
    FanOut {
        events,
        median: latencies[events / 2],
        p99: latencies[events * 99 / 100],
        delivered_per_second: (watchers * events) as f64 / total.as_secs_f64(),
    }
}
