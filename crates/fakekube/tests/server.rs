//! The fake API server's own behaviour tests: one per feature, through raw HTTP (exact
//! status codes and bodies) or through kube-rs (what the plugin uses).

mod common;

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::discovery::Discovery;
use serde_json::{json, Value};

use common::{admin, plain_cluster, send};
use fakekube::{FakeCluster, Fault, FaultAction, Rule, ServerOptions, ADMIN_TOKEN};

const NS: &str = "/api/v1/namespaces/default";

async fn kube_client(fake: &FakeCluster, token: &str) -> kube::Client {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kubeconfig");
    fake.write_kubeconfig(&path, "default", token).unwrap();
    let kc = Kubeconfig::read_from(&path).unwrap();
    let cfg = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .unwrap();
    kube::Client::try_from(cfg).unwrap()
}

fn names(list: &Value) -> Vec<String> {
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["metadata"]["name"].as_str().unwrap().to_string())
        .collect()
}

async fn create_cm(port: u16, name: &str, labels: Value) {
    let r = admin(
        port,
        "POST",
        &format!("{NS}/configmaps"),
        Some(json!({"metadata": {"name": name, "labels": labels}, "data": {"k": "v"}})),
    )
    .await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
}

const DEPLOYMENT: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: default}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: app, image: nginx}]
"#;

#[tokio::test]
async fn kube_client_crud_scale_and_discovery_over_tls() {
    let fake = FakeCluster::start(ServerOptions::default()).await.unwrap();
    assert!(fake.url().starts_with("https://127.0.0.1:"));
    let client = kube_client(&fake, ADMIN_TOKEN).await;

    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let cm: ConfigMap = serde_json::from_value(
        json!({"metadata": {"name": "c", "labels": {"a": "b"}}, "data": {"k": "v"}}),
    )
    .unwrap();
    let created = cms.create(&PostParams::default(), &cm).await.unwrap();
    assert!(created.metadata.uid.is_some());
    let mut got = cms.get("c").await.unwrap();
    got.data.as_mut().unwrap().insert("k".into(), "w".into());
    let replaced = cms
        .replace("c", &PostParams::default(), &got)
        .await
        .unwrap();
    assert_ne!(
        replaced.metadata.resource_version,
        created.metadata.resource_version
    );
    // A stale resourceVersion is a 409 Conflict.
    let err = cms
        .replace("c", &PostParams::default(), &got)
        .await
        .unwrap_err();
    assert!(
        matches!(err, kube::Error::Api(ref s) if s.code == 409),
        "{err}"
    );
    cms.patch(
        "c",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"x": "y"}})),
    )
    .await
    .unwrap();
    let listed = cms
        .list(&ListParams::default().labels("a=b"))
        .await
        .unwrap();
    assert_eq!(listed.items.len(), 1);
    assert_eq!(listed.items[0].data.as_ref().unwrap()["x"], "y");
    cms.delete("c", &DeleteParams::default()).await.unwrap();
    assert!(cms.get_opt("c").await.unwrap().is_none());

    fake.seed_yaml(DEPLOYMENT).unwrap();
    let deploys: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let scale = deploys.get_scale("web").await.unwrap();
    assert_eq!(scale.spec.unwrap().replicas, Some(2));
    assert_eq!(scale.status.unwrap().selector.as_deref(), Some("app=web"));
    deploys
        .patch_scale(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 0}})),
        )
        .await
        .unwrap();
    assert_eq!(
        deploys.get("web").await.unwrap().spec.unwrap().replicas,
        Some(0)
    );

    // kube's watch parser accepts our events and bookmarks.
    {
        use futures::StreamExt;
        let wp = kube::api::WatchParams::default().labels("w=1").timeout(2);
        let stream = cms.watch(&wp, "0").await.unwrap();
        let creator = {
            let cms = cms.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(200)).await;
                let cm: ConfigMap = serde_json::from_value(
                    json!({"metadata": {"name": "w", "labels": {"w": "1"}}}),
                )
                .unwrap();
                cms.create(&PostParams::default(), &cm).await.unwrap();
                cms.delete("w", &DeleteParams::default()).await.unwrap();
            })
        };
        let events: Vec<String> = stream
            .map(|e| match e.unwrap() {
                kube::api::WatchEvent::Added(o) => format!("added {}", o.metadata.name.unwrap()),
                kube::api::WatchEvent::Modified(o) => {
                    format!("modified {}", o.metadata.name.unwrap())
                }
                kube::api::WatchEvent::Deleted(o) => {
                    format!("deleted {}", o.metadata.name.unwrap())
                }
                kube::api::WatchEvent::Bookmark(_) => "bookmark".to_string(),
                kube::api::WatchEvent::Error(e) => format!("error {}", e.code),
            })
            .collect()
            .await;
        creator.await.unwrap();
        assert_eq!(events, ["added w", "deleted w", "bookmark"]);
    }

    let discovery = Discovery::new(client.clone()).run().await.unwrap();
    let groups: Vec<String> = discovery.groups().map(|g| g.name().to_string()).collect();
    for g in [
        "",
        "apps",
        "batch",
        "argoproj.io",
        "keda.sh",
        "coordination.k8s.io",
    ] {
        assert!(
            groups.iter().any(|x| x == g),
            "group {g:?} missing from {groups:?}"
        );
    }
    let (ar, caps) = discovery
        .groups()
        .flat_map(|g| g.recommended_resources())
        .find(|(ar, _)| ar.kind == "Rollout")
        .expect("Rollout discovered");
    assert_eq!(ar.plural, "rollouts");
    assert!(caps
        .subresources
        .iter()
        .any(|(s, _)| s.plural == "rollouts/scale" || s.plural == "scale"));
}

#[tokio::test]
async fn label_and_field_selectors() {
    let fake = plain_cluster().await;
    let port = fake.port();
    create_cm(port, "a", json!({"app": "x", "tier": "web"})).await;
    create_cm(port, "b", json!({"app": "y"})).await;
    create_cm(port, "c", json!({"tier": "db"})).await;
    let cases = [
        ("app=x", vec!["a"]),
        ("app==y", vec!["b"]),
        ("app!=x,tier", vec!["c"]),
        ("app in (x,y)", vec!["a", "b"]),
        ("app notin (x),tier", vec!["c"]),
        ("tier", vec!["a", "c"]),
        ("!app", vec!["c", "kube-root-ca.crt"]),
        ("app,!tier", vec!["b"]),
    ];
    for (sel, want) in cases {
        let q = sel
            .replace(' ', "%20")
            .replace('!', "%21")
            .replace('(', "%28")
            .replace(')', "%29");
        let r = admin(
            port,
            "GET",
            &format!("{NS}/configmaps?labelSelector={q}"),
            None,
        )
        .await;
        assert_eq!(r.status, 200);
        assert_eq!(names(&r.json()), want, "selector {sel}");
    }
    let r = admin(
        port,
        "GET",
        &format!("{NS}/configmaps?fieldSelector=metadata.name%3Db"),
        None,
    )
    .await;
    assert_eq!(names(&r.json()), ["b"]);
    let r = admin(port, "GET", "/api/v1/configmaps?fieldSelector=metadata.namespace%3Ddefault,metadata.name!%3Da&labelSelector=app", None).await;
    assert_eq!(names(&r.json()), ["b"]);
    for bad in ["a%20in%20(b", "a%3D%3D%3D", "in%20in"] {
        let r = admin(
            port,
            "GET",
            &format!("{NS}/configmaps?labelSelector={bad}"),
            None,
        )
        .await;
        assert_eq!(r.status, 400, "{bad}");
        assert_eq!(r.json()["reason"], "BadRequest");
    }
    let r = admin(
        port,
        "GET",
        &format!("{NS}/configmaps?fieldSelector=data.k%3Dv"),
        None,
    )
    .await;
    assert_eq!(r.status, 400);
    assert_eq!(
        r.json()["message"],
        "\"data.k\" is not a known field selector: only \"metadata.name\", \"metadata.namespace\""
    );
    // Pods and events take the extra fields upstream registers (kubectl describe uses them).
    let r = admin(
        port,
        "GET",
        &format!("{NS}/pods?fieldSelector=status.phase%3DRunning"),
        None,
    )
    .await;
    assert_eq!(r.status, 200);
    let r = admin(
        port,
        "GET",
        &format!("{NS}/events?fieldSelector=involvedObject.name%3Dx"),
        None,
    )
    .await;
    assert_eq!(r.status, 200);
}

#[tokio::test]
async fn pagination_with_limit_and_continue() {
    let fake = plain_cluster().await;
    let port = fake.port();
    for i in 0..7 {
        create_cm(port, &format!("p-{i}"), json!({"page": "yes"})).await;
    }
    let mut seen = Vec::new();
    let mut token: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut path = format!("{NS}/configmaps?labelSelector=page%3Dyes&limit=3");
        if let Some(t) = &token {
            path.push_str(&format!("&continue={t}"));
        }
        let r = admin(port, "GET", &path, None).await.json();
        assert!(r["metadata"]["resourceVersion"].as_str().is_some());
        seen.extend(names(&r));
        pages += 1;
        match r["metadata"]["continue"].as_str() {
            Some(t) => token = Some(t.to_string()),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, (0..7).map(|i| format!("p-{i}")).collect::<Vec<_>>());
    // After a compaction an old token is 410 Expired, with a token to go on anyway.
    let first = admin(
        port,
        "GET",
        &format!("{NS}/configmaps?labelSelector=page%3Dyes&limit=3"),
        None,
    )
    .await
    .json();
    let token = first["metadata"]["continue"].as_str().unwrap().to_string();
    create_cm(port, "later", json!({})).await;
    fake.store().compact();
    let r = admin(
        port,
        "GET",
        &format!("{NS}/configmaps?labelSelector=page%3Dyes&limit=3&continue={token}"),
        None,
    )
    .await;
    assert_eq!(r.status, 410);
    let s = r.json();
    assert_eq!(
        (s["reason"].as_str(), s["code"].as_u64()),
        (Some("Expired"), Some(410))
    );
    let fresh = s["metadata"]["continue"].as_str().unwrap();
    let r = admin(
        port,
        "GET",
        &format!("{NS}/configmaps?labelSelector=page%3Dyes&limit=3&continue={fresh}"),
        None,
    )
    .await;
    assert_eq!(names(&r.json()), ["p-3", "p-4", "p-5"]);
    let r = admin(
        port,
        "GET",
        &format!("{NS}/configmaps?limit=2&continue=garbage"),
        None,
    )
    .await;
    assert_eq!(r.status, 400);
}

#[tokio::test]
async fn watch_events_bookmarks_selectors_and_expiry() {
    let fake = plain_cluster().await;
    let port = fake.port();
    let list = admin(port, "GET", &format!("{NS}/configmaps"), None)
        .await
        .json();
    let rv = list["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string();
    let watch = tokio::spawn(async move {
        send(
            port,
            "GET",
            &format!("{NS}/configmaps?watch=true&resourceVersion={rv}&labelSelector=w%3D1&allowWatchBookmarks=true&timeoutSeconds=1"),
            &[],
            Some(ADMIN_TOKEN),
            None,
            Duration::from_secs(3),
        )
        .await
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    create_cm(port, "w", json!({"w": "1"})).await;
    create_cm(port, "other", json!({"w": "2"})).await;
    admin(
        port,
        "PATCH",
        &format!("{NS}/configmaps/w"),
        Some(json!({"data": {"k": "2"}})),
    )
    .await;
    admin(port, "DELETE", &format!("{NS}/configmaps/w"), None).await;
    let resp = watch.await.unwrap();
    assert_eq!(resp.status, 200);
    assert!(resp.content_type.contains("stream=watch"));
    let types: Vec<String> = resp
        .lines()
        .iter()
        .map(|l| {
            format!(
                "{} {}",
                l["type"].as_str().unwrap(),
                l["object"]["metadata"]["name"].as_str().unwrap_or("")
            )
        })
        .collect();
    assert_eq!(types, ["ADDED w", "MODIFIED w", "DELETED w", "BOOKMARK "]);

    // resourceVersion=0: the current state first, as ADDED.
    let resp = send(
        port,
        "GET",
        &format!("{NS}/configmaps?watch=1&resourceVersion=0&timeoutSeconds=1"),
        &[],
        Some(ADMIN_TOKEN),
        None,
        Duration::from_secs(3),
    )
    .await;
    let added: Vec<String> = resp
        .lines()
        .iter()
        .map(|l| {
            l["object"]["metadata"]["name"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(added, ["kube-root-ca.crt", "other"]);

    // After compaction an old resourceVersion is answered 200 + one ERROR 410 Expired event.
    fake.store().compact();
    let resp = send(
        port,
        "GET",
        &format!("{NS}/configmaps?watch=1&resourceVersion=2"),
        &[],
        Some(ADMIN_TOKEN),
        None,
        Duration::from_secs(3),
    )
    .await;
    assert_eq!(resp.status, 200);
    let lines = resp.lines();
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["type"], "ERROR");
    assert_eq!(lines[0]["object"]["code"], 410);
    assert_eq!(lines[0]["object"]["reason"], "Expired");
}

#[tokio::test]
async fn patch_kinds_and_server_side_apply() {
    let fake = plain_cluster().await;
    let port = fake.port();
    let pod = json!({"metadata": {"name": "p"}, "spec": {"containers": [
        {"name": "app", "image": "nginx", "env": [{"name": "A", "value": "1"}]}]}});
    assert_eq!(
        admin(port, "POST", &format!("{NS}/pods"), Some(pod))
            .await
            .status,
        201
    );
    let smp = |body: Value| async move {
        send(
            port,
            "PATCH",
            &format!("{NS}/pods/p"),
            &[("Content-Type", "application/strategic-merge-patch+json")],
            Some(ADMIN_TOKEN),
            Some(serde_json::to_vec(&body).unwrap()),
            Duration::from_secs(5),
        )
        .await
    };
    // A pod's image may change; anything else in its spec may not (ValidatePodUpdate).
    let r = smp(json!({"spec": {"containers": [{"name": "app", "image": "httpd"}]}})).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["spec"]["containers"][0]["image"], "httpd");
    let r = smp(
        json!({"spec": {"containers": [{"name": "app", "env": [{"name": "B", "value": "2"}]}]}}),
    )
    .await;
    assert_eq!(r.status, 422);
    assert_eq!(r.json()["details"]["causes"][0]["field"], "spec");
    // On a Deployment's template, env lists merge by name.
    fake.seed_yaml(DEPLOYMENT).unwrap();
    let r = send(
        port,
        "PATCH",
        "/apis/apps/v1/namespaces/default/deployments/web",
        &[("Content-Type", "application/strategic-merge-patch+json")],
        Some(ADMIN_TOKEN),
        Some(
            serde_json::to_vec(&json!({"spec": {"template": {"spec": {"containers": [
            {"name": "app", "env": [{"name": "A", "value": "1"}]}]}}}}))
            .unwrap(),
        ),
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(r.status, 200);
    let d = r.json();
    assert_eq!(
        d["spec"]["template"]["spec"]["containers"][0]["image"],
        "nginx"
    );
    assert_eq!(
        d["spec"]["template"]["spec"]["containers"][0]["env"][0]["name"],
        "A"
    );
    assert_eq!(d["metadata"]["generation"], 2);
    let r = smp(json!({"spec": {"containers": [{"name": "extra", "image": "nginx"}]}})).await;
    assert_eq!(r.status, 422, "adding a container to a pod");
    let jp = |body: Value| async move {
        send(
            port,
            "PATCH",
            &format!("{NS}/pods/p"),
            &[("Content-Type", "application/json-patch+json")],
            Some(ADMIN_TOKEN),
            Some(serde_json::to_vec(&body).unwrap()),
            Duration::from_secs(5),
        )
        .await
    };
    let r = jp(json!([{"op": "test", "path": "/metadata/name", "value": "nope"}])).await;
    assert_eq!(r.status, 422);
    assert_eq!(
        r.json()["message"],
        "the server rejected our request due to an error in our request"
    );
    let r = jp(json!([{"op": "add", "path": "/metadata/labels", "value": {"x": "1"}}])).await;
    assert_eq!(r.status, 200);
    let r = send(
        port,
        "PATCH",
        &format!("{NS}/pods/p"),
        &[("Content-Type", "text/plain")],
        Some(ADMIN_TOKEN),
        Some(b"{}".to_vec()),
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(r.status, 415);
    // Merge patch pinned to a stale resourceVersion: 409.
    let r = admin(
        port,
        "PATCH",
        &format!("{NS}/pods/p"),
        Some(json!({"metadata": {"resourceVersion": "1"}})),
    )
    .await;
    assert_eq!(r.status, 409);

    let apply = |mgr: &'static str, force: bool, v: &'static str| async move {
        let q = if mgr.is_empty() {
            String::new()
        } else {
            format!(
                "?fieldManager={mgr}{}",
                if force { "&force=true" } else { "" }
            )
        };
        let body =
            format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: s\ndata:\n  k: {v}\n");
        send(
            port,
            "PATCH",
            &format!("{NS}/configmaps/s{q}"),
            &[("Content-Type", "application/apply-patch+yaml")],
            Some(ADMIN_TOKEN),
            Some(body.into_bytes()),
            Duration::from_secs(5),
        )
        .await
    };
    assert_eq!(apply("a", false, "one").await.status, 201);
    assert_eq!(
        apply("a", false, "uno").await.status,
        200,
        "a manager may change its own fields"
    );
    let r = apply("b", false, "two").await;
    assert_eq!(r.status, 409);
    assert_eq!(
        r.json()["message"],
        "Apply failed with 1 conflict: conflict with \"a\": .data.k"
    );
    let r = apply("b", true, "two").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["data"]["k"], "two");
    assert_eq!(r.json()["metadata"]["managedFields"][0]["manager"], "b");
    assert_eq!(apply("", false, "x").await.status, 422);
}

#[tokio::test]
async fn create_generate_name_dry_run_and_validation() {
    let fake = plain_cluster().await;
    let port = fake.port();
    let r = admin(
        port,
        "POST",
        &format!("{NS}/configmaps?dryRun=All"),
        Some(json!({"metadata": {"name": "dry"}})),
    )
    .await;
    assert_eq!(r.status, 201);
    assert_eq!(
        admin(port, "GET", &format!("{NS}/configmaps/dry"), None)
            .await
            .status,
        404
    );
    let r = admin(
        port,
        "POST",
        &format!("{NS}/configmaps"),
        Some(json!({"metadata": {"generateName": "gen-"}})),
    )
    .await;
    let name = r.json()["metadata"]["name"].as_str().unwrap().to_string();
    assert!(name.starts_with("gen-") && name.len() == 9, "{name}");
    let r = admin(
        port,
        "POST",
        &format!("{NS}/configmaps"),
        Some(json!({"metadata": {"name": "x", "labels": {"bad key!": "v"}}})),
    )
    .await;
    assert_eq!(r.status, 422);
    let r = admin(port, "POST", &format!("{NS}/pods"), Some(json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "Bad", "image": "x"}]}}))).await;
    assert_eq!(r.status, 422);
    assert_eq!(
        r.json()["details"]["causes"][0]["field"],
        "spec.containers[0].name"
    );
    let r = admin(
        port,
        "POST",
        "/api/v1/namespaces/nope/configmaps",
        Some(json!({"metadata": {"name": "x"}})),
    )
    .await;
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["message"], "namespaces \"nope\" not found");
    // apps/v1 workloads: the selector must select the template.
    let bad = json!({"metadata": {"name": "bad"}, "spec": {"selector": {"matchLabels": {"app": "x"}},
        "template": {"metadata": {"labels": {"app": "y"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}}});
    let r = admin(
        port,
        "POST",
        "/apis/apps/v1/namespaces/default/deployments",
        Some(bad),
    )
    .await;
    assert_eq!(r.status, 422);
    assert_eq!(
        r.json()["message"],
        "Deployment.apps \"bad\" is invalid: spec.template.metadata.labels: Invalid value: map[string]string{\"app\":\"y\"}: `selector` does not match template `labels`"
    );
    // Pods are defaulted as upstream does, and start Pending.
    let r = admin(port, "POST", &format!("{NS}/pods"), Some(json!({"metadata": {"name": "ok"}, "spec": {"containers": [{"name": "c", "image": "nginx:1.2"}]}}))).await;
    let p = r.json();
    assert_eq!(p["status"]["phase"], "Pending");
    assert_eq!(
        p["spec"]["containers"][0]["imagePullPolicy"],
        "IfNotPresent"
    );
    assert_eq!(p["metadata"]["generation"], 1);
}

#[tokio::test]
async fn delete_preconditions_propagation_and_finalizers() {
    let fake = plain_cluster().await;
    let port = fake.port();
    create_cm(port, "a", json!({})).await;
    let cm = admin(port, "GET", &format!("{NS}/configmaps/a"), None)
        .await
        .json();
    let uid = cm["metadata"]["uid"].as_str().unwrap();
    let rv = cm["metadata"]["resourceVersion"].as_str().unwrap();
    let del = |body: Value| async move {
        admin(port, "DELETE", &format!("{NS}/configmaps/a"), Some(body)).await
    };
    let r = del(json!({"preconditions": {"uid": "00000000-0000-0000-0000-000000000000"}})).await;
    assert_eq!(r.status, 409);
    let r = del(json!({"preconditions": {"resourceVersion": "1"}})).await;
    assert_eq!(r.status, 409);
    let r = del(json!({"preconditions": {"uid": uid, "resourceVersion": rv}})).await;
    assert_eq!(r.status, 200);
    let s = r.json();
    assert_eq!(
        (s["kind"].as_str(), s["status"].as_str()),
        (Some("Status"), Some("Success"))
    );
    assert_eq!(s["details"]["uid"], uid);

    // Foreground / Orphan keep the object with deletionTimestamp and the policy's finalizer
    // until the garbage collector (or anyone) removes it.
    for (name, policy, finalizer) in [
        ("fg", "Foreground", "foregroundDeletion"),
        ("or", "Orphan", "orphan"),
    ] {
        create_cm(port, name, json!({})).await;
        let r = admin(
            port,
            "DELETE",
            &format!("{NS}/configmaps/{name}"),
            Some(json!({"propagationPolicy": policy})),
        )
        .await;
        assert_eq!(r.status, 200);
        let o = r.json();
        assert_eq!(o["kind"], "ConfigMap");
        assert_eq!(o["metadata"]["finalizers"], json!([finalizer]));
        assert!(o["metadata"]["deletionTimestamp"].is_string());
        let r = admin(
            port,
            "PATCH",
            &format!("{NS}/configmaps/{name}"),
            Some(json!({"metadata": {"finalizers": null}})),
        )
        .await;
        assert_eq!(r.status, 200);
        assert_eq!(
            admin(port, "GET", &format!("{NS}/configmaps/{name}"), None)
                .await
                .status,
            404
        );
    }
    // A user finalizer keeps a deleted object, which may then lose finalizers but never gain
    // one (upstream's ValidateNoNewFinalizers, with its message).
    let r = admin(
        port,
        "POST",
        &format!("{NS}/configmaps"),
        Some(json!({"metadata": {"name": "u", "finalizers": ["example.com/keep"]}})),
    )
    .await;
    assert_eq!(r.status, 201);
    let r = admin(port, "DELETE", &format!("{NS}/configmaps/u"), None).await;
    assert_eq!(r.status, 200);
    assert!(r.json()["metadata"]["deletionTimestamp"].is_string());
    let r = admin(
        port,
        "PATCH",
        &format!("{NS}/configmaps/u"),
        Some(json!({"metadata": {"finalizers": ["example.com/keep", "example.com/more"]}})),
    )
    .await;
    assert_eq!(r.status, 422);
    assert_eq!(
        r.json()["message"],
        "ConfigMap \"u\" is invalid: metadata.finalizers: Forbidden: no new finalizers can be added if the object is being deleted, found new finalizers []string{\"example.com/more\"}"
    );
    let r = admin(
        port,
        "PATCH",
        &format!("{NS}/configmaps/u"),
        Some(json!({"metadata": {"finalizers": null}})),
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        admin(port, "GET", &format!("{NS}/configmaps/u"), None)
            .await
            .status,
        404
    );
    // Query-parameter DeleteOptions work too; an unknown policy is 422.
    create_cm(port, "q", json!({})).await;
    let r = admin(
        port,
        "DELETE",
        &format!("{NS}/configmaps/q?propagationPolicy=Sideways"),
        None,
    )
    .await;
    assert_eq!(r.status, 422);
    // Pods answer a delete with the pod itself.
    admin(port, "POST", &format!("{NS}/pods"), Some(json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "x"}]}}))).await;
    let r = admin(port, "DELETE", &format!("{NS}/pods/p"), None).await;
    assert_eq!(r.json()["kind"], "Pod");
    // deletecollection by label.
    create_cm(port, "d1", json!({"del": "y"})).await;
    create_cm(port, "d2", json!({"del": "y"})).await;
    let r = admin(
        port,
        "DELETE",
        &format!("{NS}/configmaps?labelSelector=del%3Dy"),
        None,
    )
    .await;
    assert_eq!(names(&r.json()), ["d1", "d2"]);
    // Deleting a namespace deletes what is in it.
    fake.seed_yaml("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x, namespace: gone}\n")
        .unwrap();
    let r = admin(port, "GET", "/api/v1/namespaces/gone/configmaps", None).await;
    assert_eq!(names(&r.json()), ["kube-root-ca.crt", "x"]);
    assert_eq!(
        admin(port, "DELETE", "/api/v1/namespaces/gone", None)
            .await
            .status,
        200
    );
    let r = admin(
        port,
        "GET",
        "/api/v1/configmaps?fieldSelector=metadata.namespace%3Dgone",
        None,
    )
    .await;
    assert_eq!(names(&r.json()), Vec::<String>::new());
}

#[tokio::test]
async fn rbac_rules_and_stored_roles() {
    let fake = plain_cluster().await;
    let port = fake.port();
    fake.seed_yaml(DEPLOYMENT).unwrap();
    let get = |token: String, path: &str| {
        let path = path.to_string();
        async move {
            send(
                port,
                "GET",
                &path,
                &[],
                Some(&token),
                None,
                Duration::from_secs(5),
            )
            .await
        }
    };
    // No token, or an unknown one: 401.
    let r = send(
        port,
        "GET",
        &format!("{NS}/configmaps"),
        &[],
        None,
        None,
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["message"], "Unauthorized");
    // Rules given by a test.
    let token = fake.rbac().user_token("alice");
    assert_eq!(
        get(token.clone(), &format!("{NS}/configmaps")).await.status,
        403
    );
    fake.rbac().allow(
        "alice",
        Rule::new(&["list"], &[""], &["configmaps"]).in_namespaces(&["default"]),
    );
    assert_eq!(
        get(token.clone(), &format!("{NS}/configmaps")).await.status,
        200
    );
    let r = get(token.clone(), "/api/v1/configmaps").await;
    assert_eq!(r.status, 403);
    assert_eq!(
        r.json()["message"],
        "configmaps is forbidden: User \"alice\" cannot list resource \"configmaps\" in API group \"\" at the cluster scope"
    );

    // A ServiceAccount token bound to the project's shipped Role.
    let role = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../plugin-manifest/role.yaml"
    ))
    .unwrap();
    let sa = fake.token_with_roles("default", "copier", &role).unwrap();
    let patch = |path: &'static str| {
        let sa = sa.clone();
        async move {
            send(
                port,
                "PATCH",
                path,
                &[("Content-Type", "application/merge-patch+json")],
                Some(&sa),
                Some(br#"{"spec":{"replicas":0}}"#.to_vec()),
                Duration::from_secs(5),
            )
            .await
        }
    };
    // The plugin scales the workload itself (with its annotations, in one write); the
    // Role grants no more than that: /scale is refused.
    let scale = patch("/apis/apps/v1/namespaces/default/deployments/web").await;
    assert_eq!(
        scale.status,
        200,
        "{}",
        String::from_utf8_lossy(&scale.body)
    );
    let sub = patch("/apis/apps/v1/namespaces/default/deployments/web/scale").await;
    assert_eq!(sub.status, 403);
    let del = send(
        port,
        "DELETE",
        "/apis/apps/v1/namespaces/default/deployments/web",
        &[],
        Some(&sa),
        None,
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(del.status, 403);
    assert_eq!(
        del.json()["message"],
        "deployments.apps \"web\" is forbidden: User \"system:serviceaccount:default:copier\" cannot delete resource \"deployments\" in API group \"apps\" in the namespace \"default\""
    );
    // 403, not 404, for an object that does not exist in a namespace the token has no rights in.
    assert_eq!(
        get(
            sa.clone(),
            "/apis/apps/v1/namespaces/kube-system/deployments/nope"
        )
        .await
        .status,
        403
    );
}

/// A Role granting `get namespaces` in N, bound in N, reaches `GET /api/v1/namespaces/N`: the
/// request resolver gives a namespaces request the name as its namespace, so the RoleBinding
/// in N applies. Another namespace, or listing namespaces (cluster scope), is 403.
#[tokio::test]
async fn role_on_namespaces_covers_its_own_namespace() {
    let fake = plain_cluster().await;
    let port = fake.port();
    fake.seed_yaml(
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: team-a\n---\n\
         apiVersion: v1\nkind: Namespace\nmetadata:\n  name: team-b\n",
    )
    .unwrap();
    let role = "apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata:\n  name: ns-reader\n\
                rules:\n- apiGroups: [\"\"]\n  resources: [namespaces]\n  verbs: [get, list, watch]\n";
    let token = fake.token_with_roles("team-a", "viewer", role).unwrap();
    let get = |path: &str| {
        let (path, token) = (path.to_string(), token.clone());
        async move {
            send(
                port,
                "GET",
                &path,
                &[],
                Some(&token),
                None,
                Duration::from_secs(5),
            )
            .await
        }
    };
    let own = get("/api/v1/namespaces/team-a").await;
    assert_eq!(own.status, 200, "{}", String::from_utf8_lossy(&own.body));
    assert_eq!(own.json()["metadata"]["name"], "team-a");

    let user = "system:serviceaccount:team-a:viewer";
    for name in ["team-b", "absent"] {
        let other = get(&format!("/api/v1/namespaces/{name}")).await;
        assert_eq!(other.status, 403);
        let body = other.json();
        assert_eq!(body["reason"], "Forbidden");
        assert_eq!(
            body["message"],
            format!("namespaces \"{name}\" is forbidden: User \"{user}\" cannot get resource \"namespaces\" in API group \"\" in the namespace \"{name}\"")
        );
        assert_eq!(body["details"], json!({"name": name, "kind": "namespaces"}));
    }

    let list = get("/api/v1/namespaces").await;
    assert_eq!(list.status, 403);
    let body = list.json();
    assert_eq!(
        body["message"],
        format!("namespaces is forbidden: User \"{user}\" cannot list resource \"namespaces\" in API group \"\" at the cluster scope")
    );
    assert_eq!(body["details"], json!({"kind": "namespaces"}));
    let watch = get("/api/v1/namespaces?watch=true&fieldSelector=metadata.name%3Dteam-a").await;
    assert_eq!(watch.status, 403);
    assert_eq!(
        watch.json()["message"],
        format!("namespaces is forbidden: User \"{user}\" cannot watch resource \"namespaces\" in API group \"\" at the cluster scope")
    );
}

/// authentication.k8s.io/v1 selfsubjectreviews: create-only and cluster-scoped, answered with
/// the caller's user info (pkg/registry/authentication/selfsubjectreview), allowed to every
/// authenticated user, and advertised in both discovery forms.
#[tokio::test]
async fn self_subject_reviews() {
    let fake = plain_cluster().await;
    let port = fake.port();
    let path = "/apis/authentication.k8s.io/v1/selfsubjectreviews";
    let review = br#"{"apiVersion":"authentication.k8s.io/v1","kind":"SelfSubjectReview"}"#;
    let post = |token: Option<String>| async move {
        send(
            port,
            "POST",
            path,
            &[("Content-Type", "application/json")],
            token.as_deref(),
            Some(review.to_vec()),
            Duration::from_secs(5),
        )
        .await
    };
    let r = post(Some(ADMIN_TOKEN.to_string())).await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let body = r.json();
    assert_eq!(body["kind"], "SelfSubjectReview");
    assert_eq!(body["apiVersion"], "authentication.k8s.io/v1");
    assert!(body["metadata"]["creationTimestamp"].is_string(), "{body}");
    assert_eq!(
        body["status"],
        json!({"userInfo": {"username": "admin", "groups": ["system:masters", "system:authenticated"]}})
    );
    // A user without any rule may ask (system:basic-user is bound to system:authenticated).
    let nobody = fake.rbac().user_token("nobody");
    let r = post(Some(nobody.clone())).await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(
        r.json()["status"]["userInfo"],
        json!({"username": "nobody", "groups": ["system:authenticated"]})
    );
    let sa = fake.rbac().service_account_token("default", "robot");
    let info = post(Some(sa)).await.json()["status"]["userInfo"].clone();
    assert_eq!(info["username"], "system:serviceaccount:default:robot");
    assert_eq!(
        info["groups"],
        json!([
            "system:serviceaccounts",
            "system:serviceaccounts:default",
            "system:authenticated"
        ])
    );
    assert!(
        info["extra"]["authentication.kubernetes.io/credential-id"][0]
            .as_str()
            .is_some_and(|c| c.starts_with("JTI="))
    );
    assert_eq!(post(None).await.status, 401);
    // Nothing is stored: no list (405, the collection only takes POST), no item path (404).
    let get = |path: String, token: String| async move {
        send(
            port,
            "GET",
            &path,
            &[],
            Some(&token),
            None,
            Duration::from_secs(5),
        )
        .await
    };
    let r = get(path.to_string(), ADMIN_TOKEN.to_string()).await;
    assert_eq!(r.status, 405);
    assert_eq!(r.json()["reason"], "MethodNotAllowed");
    let r = get(format!("{path}/x"), ADMIN_TOKEN.to_string()).await;
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["reason"], "NotFound");
    // The basic-user rule is create only.
    let r = get(path.to_string(), nobody).await;
    assert_eq!(r.status, 403);
    assert_eq!(
        r.json()["message"],
        "selfsubjectreviews.authentication.k8s.io is forbidden: User \"nobody\" cannot list resource \"selfsubjectreviews\" in API group \"authentication.k8s.io\" at the cluster scope"
    );

    // Discovery, shaped as a real server's entry.
    let r = get("/apis/authentication.k8s.io/v1".into(), ADMIN_TOKEN.into()).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.json()["resources"],
        json!([{"name": "selfsubjectreviews", "singularName": "selfsubjectreview",
                "namespaced": false, "kind": "SelfSubjectReview", "verbs": ["create"]}])
    );
    let groups = get("/apis".into(), ADMIN_TOKEN.into()).await.json();
    assert!(groups["groups"]
        .as_array()
        .unwrap()
        .iter()
        .any(|g| g["name"] == "authentication.k8s.io"
            && g["preferredVersion"]["groupVersion"] == "authentication.k8s.io/v1"));
    let aggregated = send(
        port,
        "GET",
        "/apis",
        &[(
            "Accept",
            "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList",
        )],
        Some(ADMIN_TOKEN),
        None,
        Duration::from_secs(5),
    )
    .await
    .json();
    let group = aggregated["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["metadata"]["name"] == "authentication.k8s.io")
        .expect("authentication.k8s.io in aggregated discovery")
        .clone();
    assert_eq!(
        group["versions"],
        json!([{"version": "v1", "freshness": "Current", "resources": [
            {"resource": "selfsubjectreviews",
             "responseKind": {"group": "", "version": "", "kind": "SelfSubjectReview"},
             "scope": "Cluster", "singularResource": "selfsubjectreview", "verbs": ["create"]}]}])
    );
}

#[tokio::test]
async fn faults_request_log_and_restart() {
    let fake = plain_cluster().await;
    let port = fake.port();
    fake.faults().fail_nth("GET", "/configmaps", 2, 503);
    let path = format!("{NS}/configmaps");
    assert_eq!(admin(port, "GET", &path, None).await.status, 200);
    let r = admin(port, "GET", &path, None).await;
    assert_eq!(r.status, 503);
    assert_eq!(r.json()["reason"], "ServiceUnavailable");
    assert_eq!(
        admin(port, "GET", &path, None).await.status,
        200,
        "fires once"
    );

    fake.faults().add(
        Fault::on(
            "GET",
            "/pods",
            FaultAction::Latency(Duration::from_millis(300)),
        )
        .times(1),
    );
    let t = std::time::Instant::now();
    admin(port, "GET", &format!("{NS}/pods"), None).await;
    assert!(t.elapsed() >= Duration::from_millis(300));

    fake.faults().drop_nth("*", "/secrets", 1);
    let stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    let req = hyper::Request::get(format!("{NS}/secrets"))
        .header("Authorization", format!("Bearer {ADMIN_TOKEN}"))
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    assert!(
        sender.send_request(req).await.is_err(),
        "connection dropped without an answer"
    );

    assert_eq!(fake.request_log().count("list", "/configmaps"), 3);
    let rec = fake
        .requests()
        .into_iter()
        .find(|r| r.status == 503)
        .unwrap();
    assert_eq!((rec.method.as_str(), rec.verb.as_str()), ("GET", "list"));

    // stop: nothing listens; restart: same port, same objects.
    create_cm(port, "kept", json!({})).await;
    fake.stop().await;
    assert!(tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err());
    fake.restart().await.unwrap();
    assert_eq!(fake.port(), port);
    assert_eq!(
        admin(port, "GET", &format!("{NS}/configmaps/kept"), None)
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn discovery_documents_and_tables() {
    let fake = plain_cluster().await;
    let port = fake.port();
    let v = admin(port, "GET", "/version", None).await.json();
    assert_eq!(v["major"], "1");
    let r = send(
        port,
        "GET",
        "/apis",
        &[(
            "Accept",
            "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json",
        )],
        Some(ADMIN_TOKEN),
        None,
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(
        r.content_type,
        "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
    );
    assert_eq!(r.json()["kind"], "APIGroupDiscoveryList");
    let apps = admin(port, "GET", "/apis/apps/v1", None).await.json();
    let scale = apps["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "deployments/scale")
        .unwrap();
    assert_eq!(
        (scale["group"].as_str(), scale["kind"].as_str()),
        (Some("autoscaling"), Some("Scale"))
    );
    assert_eq!(
        admin(port, "GET", "/apis/nope.io/v1", None).await.status,
        404
    );
    assert_eq!(
        admin(port, "GET", "/api/v1/nothings", None).await.status,
        404
    );

    fake.seed_yaml(DEPLOYMENT).unwrap();
    let table = send(
        port,
        "GET",
        "/apis/apps/v1/namespaces/default/deployments",
        &[(
            "Accept",
            "application/json;as=Table;v=v1;g=meta.k8s.io,application/json",
        )],
        Some(ADMIN_TOKEN),
        None,
        Duration::from_secs(5),
    )
    .await
    .json();
    assert_eq!(table["kind"], "Table");
    assert_eq!(table["rows"][0]["cells"][0], "web");
    assert_eq!(table["rows"][0]["cells"][1], "0/2");
}

#[tokio::test]
async fn harness_test_env() {
    let env = fakekube::harness::TestEnv::new().await;
    assert!(env.namespace.starts_with("mc-"));
    assert!(env.fake().is_some());
    env.apply_yaml(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: p, labels: {app: a}}\nspec: {containers: [{name: c, image: nginx}]}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata: {k: v}\n",
    )
    .await;
    // Applying again updates in place.
    env.apply_yaml("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata: {k: w}\n")
        .await;
    let pods = env.list_pods("app=a").await;
    assert_eq!(pods.len(), 1);
    let pod = env.get_pod("p").await.unwrap();
    assert_eq!(pod["metadata"]["namespace"], env.namespace.as_str());
    let cm = env
        .get_json("", "v1", "ConfigMap", "configmaps", "c")
        .await
        .unwrap();
    assert_eq!(cm["data"]["k"], "w");
    let got = env
        .wait_until("the pod", Duration::from_secs(1), || async {
            env.get_pod("p").await
        })
        .await;
    assert_eq!(got["metadata"]["name"], "p");
    let pods_api: Api<Pod> = Api::namespaced(env.client.clone(), &env.namespace);
    assert_eq!(
        pods_api
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .len(),
        1
    );
    let out = env
        .command("sh")
        .args(["-c", "echo $KUBECONFIG $NO_COLOR $MIRRORD_COPY_STATE_DIR"])
        .output()
        .unwrap();
    let out = String::from_utf8(out.stdout).unwrap();
    assert!(
        out.contains("kubeconfig 1 ") && out.trim_end().ends_with("state"),
        "{out}"
    );
    // A restricted identity bound to the shipped Role.
    let role = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../plugin-manifest/role.yaml"
    ))
    .unwrap();
    let restricted = env.kubeconfig_with_roles("user", &role).await;
    let kc = Kubeconfig::read_from(&restricted).unwrap();
    let cfg = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .unwrap();
    let limited: Api<Pod> = Api::namespaced(kube::Client::try_from(cfg).unwrap(), &env.namespace);
    assert_eq!(
        limited
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .len(),
        1
    );
    let err = limited.delete("p", &DeleteParams::default()).await;
    assert!(err.is_ok(), "the Role allows deleting pods: {err:?}");
    let secrets: Api<k8s_openapi::api::core::v1::Secret> =
        Api::namespaced(limited.into_client(), &env.namespace);
    assert!(
        matches!(secrets.list(&ListParams::default()).await, Err(kube::Error::Api(s)) if s.code == 403)
    );
    let kc = std::fs::read_to_string(&env.kubeconfig).unwrap();
    assert!(kc.contains(&format!("namespace: {}", env.namespace)));
}

#[tokio::test]
async fn watch_reports_objects_leaving_and_entering_the_selection() {
    let fake = plain_cluster().await;
    let port = fake.port();
    create_cm(port, "m", json!({"sel": "in"})).await;
    let watch = tokio::spawn(async move {
        send(
            port,
            "GET",
            &format!("{NS}/configmaps?watch=1&labelSelector=sel%3Din&timeoutSeconds=1"),
            &[],
            Some(ADMIN_TOKEN),
            None,
            Duration::from_secs(3),
        )
        .await
    });
    // Go on once the server has answered the watch (it subscribes before answering).
    for _ in 0..100 {
        if fake.request_log().count("watch", "/configmaps") == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let relabel = |v: &'static str| async move {
        admin(
            port,
            "PATCH",
            &format!("{NS}/configmaps/m"),
            Some(json!({"metadata": {"labels": {"sel": v}}})),
        )
        .await
    };
    relabel("out").await;
    relabel("out").await; // no-op, and outside the selection anyway
    admin(
        port,
        "PATCH",
        &format!("{NS}/configmaps/m"),
        Some(json!({"data": {"x": "1"}})),
    )
    .await;
    relabel("in").await;
    admin(port, "DELETE", &format!("{NS}/configmaps/m"), None).await;
    let lines = watch.await.unwrap().lines();
    let types: Vec<&str> = lines.iter().map(|l| l["type"].as_str().unwrap()).collect();
    assert_eq!(types, ["ADDED", "DELETED", "ADDED", "DELETED"]);
}
