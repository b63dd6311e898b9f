//! The round trips a command costs: a regression in the count (a LIST per session, a page per
//! 500 objects, a read before every write) fails here, without timing anything (README
//! "Benchmarks" has the figures with latency). Against the fake the requests come from its
//! request log; against a real cluster from its API server's audit log
//! (MIRRORD_COPY_TEST_AUDIT_LOG), where the commands run as a ServiceAccount of the test's own
//! (bound to every verb, as the admin is), so the log tells its requests apart from those of
//! tests running beside it. Both must count the same.

use std::io::{BufRead, Seek};
use std::path::PathBuf;
use std::time::Duration;

use fakekube::harness::TestEnv;
use serde_json::Value;

use crate::plugin_support::*;

/// One request as the server saw it.
#[derive(Debug, Clone)]
struct Request {
    verb: String,
    path: String,
    /// Without the leading `?`.
    query: String,
}

/// Where the requests of the test's commands are read from.
struct RequestLog {
    /// The kubeconfig the commands run with.
    kubeconfig: PathBuf,
    source: Source,
}

enum Source {
    Fake,
    /// A real API server's audit log and the username of the test's ServiceAccount.
    Audit {
        path: PathBuf,
        user: String,
    },
}

/// A point in the log: requests after it are the ones of interest.
#[derive(Clone, Copy)]
struct Mark(u64, chrono::DateTime<chrono::Utc>);

/// Every verb on every resource, for the test's ServiceAccount on a real cluster.
const EVERYTHING: &str = "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: mirrord-copy-requests}\nrules:\n- apiGroups: ['*']\n  resources: ['*']\n  verbs: ['*']\n";

impl RequestLog {
    async fn new(env: &TestEnv) -> RequestLog {
        if env.fake().is_some() {
            return RequestLog {
                kubeconfig: env.kubeconfig.clone(),
                source: Source::Fake,
            };
        }
        let path = std::env::var_os("MIRRORD_COPY_TEST_AUDIT_LOG")
            .expect("MIRRORD_COPY_TEST_AUDIT_LOG: the real API server's audit log")
            .into();
        let sa = "requests";
        RequestLog {
            kubeconfig: env.kubeconfig_with_roles(sa, EVERYTHING).await,
            source: Source::Audit {
                path,
                user: format!("system:serviceaccount:{}:{sa}", env.namespace),
            },
        }
    }

    fn mark(&self, env: &TestEnv) -> Mark {
        match &self.source {
            Source::Fake => Mark(
                env.fake().unwrap().requests().len() as u64,
                chrono::Utc::now(),
            ),
            Source::Audit { path, .. } => Mark(
                std::fs::metadata(path).map_or(0, |m| m.len()),
                chrono::Utc::now(),
            ),
        }
    }

    /// The requests since `mark`. The audit log is written as responses complete (a watch when
    /// it ends): read until it has been still for a second.
    async fn since(&self, env: &TestEnv, mark: Mark) -> Vec<Request> {
        let Source::Audit { path, user } = &self.source else {
            return env.fake().unwrap().requests()[mark.0 as usize..]
                .iter()
                .map(|r| Request {
                    verb: r.verb.clone(),
                    path: r.path.clone(),
                    query: r.query.trim_start_matches(['?', '&']).to_string(),
                })
                .collect();
        };
        let mut seen = Vec::new();
        for _ in 0..20 {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let now = audited(path, mark, user);
            if !now.is_empty() && now.len() == seen.len() {
                break;
            }
            seen = now;
        }
        seen.sort_by(|a: &(String, Request), b| a.0.cmp(&b.0));
        seen.into_iter().map(|(_, r)| r).collect()
    }

    /// Runs the plugin as the log's identity.
    async fn mc(&self, env: &TestEnv, args: &[&str]) -> Run {
        mc_with(env, args, |c| {
            c.env("KUBECONFIG", &self.kubeconfig);
        })
        .await
    }

    /// `create ARGS`, asserting success; the pod name.
    async fn create(&self, env: &TestEnv, args: &[&str]) -> String {
        let mut all = vec!["create"];
        all.extend_from_slice(args);
        self.mc(env, &all).await.ok().trim().to_string()
    }
}

/// (requestReceivedTimestamp, request) of `user`'s completed requests after `mark`.
fn audited(path: &PathBuf, mark: Mark, user: &str) -> Vec<(String, Request)> {
    let mut file = std::fs::File::open(path).expect("the audit log");
    file.seek(std::io::SeekFrom::Start(mark.0)).unwrap();
    std::io::BufReader::new(file)
        .lines()
        .map_while(Result::ok)
        .filter_map(|line| serde_json::from_str::<Value>(&line).ok())
        .filter(|e| e["stage"] == "ResponseComplete" && e["user"]["username"] == user)
        // Received after the mark: a watch of an earlier command is logged when it ends, which
        // may be after the mark (the API server's clock is this machine's).
        .filter(|e| {
            e["requestReceivedTimestamp"]
                .as_str()
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                .is_some_and(|t| t >= mark.1)
        })
        .map(|e| {
            let uri = e["requestURI"].as_str().unwrap_or_default();
            let (path, query) = uri.split_once('?').unwrap_or((uri, ""));
            // As the fake logs it: without the separator kube's URL builder leaves first.
            let query = query.trim_start_matches('&');
            // What the fake logs as a watch's query: the client's, minus `watch=true`.
            let query = match e["verb"].as_str() {
                Some("watch") => query
                    .split('&')
                    .filter(|p| *p != "watch=true")
                    .collect::<Vec<_>>()
                    .join("&"),
                _ => query.to_string(),
            };
            let received = e["requestReceivedTimestamp"].as_str().unwrap_or_default();
            (
                received.to_string(),
                Request {
                    verb: e["verb"].as_str().unwrap_or_default().to_string(),
                    path: path.to_string(),
                    query,
                },
            )
        })
        .collect()
}

/// `(verb, path after /namespaces/<ns>)` of every request since `mark`.
async fn sequence(env: &TestEnv, log: &RequestLog, mark: Mark) -> Vec<(String, String)> {
    let ns = format!("/namespaces/{}", env.namespace);
    log.since(env, mark)
        .await
        .into_iter()
        .map(|r| {
            let path = match r.path.split_once(&ns) {
                Some((_, rest)) => rest.to_string(),
                None => r.path.clone(),
            };
            (r.verb, path)
        })
        .collect()
}

/// Marks the tests that count requests: the fake's log, or a real server's audit log.
macro_rules! counts_requests {
    ($($item:item)*) => {$(
        #[cfg_attr(
            all(real_cluster, not(audit_log)),
            ignore = "reads the fake's request log, or the real API server's audit log (MIRRORD_COPY_TEST_AUDIT_LOG)"
        )]
        $item
    )*};
}

/// `(verb, path)` with the API prefixes dropped, for comparing with a written-out sequence.
fn short(seq: Vec<(String, String)>) -> Vec<String> {
    seq.into_iter()
        .map(|(v, p)| {
            let p = p
                .replace("/apis/apps/v1", "")
                .replace("/apis/autoscaling/v2", "")
                .replace("/apis/keda.sh/v1alpha1", "")
                .replace("/api/v1", "");
            format!("{v} {p}")
        })
        .collect()
}

const COPIES: &str = "labelSelector=app.kubernetes.io%2Fmanaged-by%3Dkubectl-mirrord-copy%2Cmirrord-copy.io%2Frole%3Dcopy";
const OURS: &str = "labelSelector=app.kubernetes.io%2Fmanaged-by%3Dkubectl-mirrord-copy";

counts_requests! {
#[tokio::test]
async fn create_until_ready_is_five_requests_then_the_confirmation() {
    let env = TestEnv::new().await;
    let log = RequestLog::new(&env).await;
    env.apply_yaml(&deployment("rt", 1)).await;
    let mark = log.mark(&env);
    let pod = log.create(&env, &["deployment/rt"]).await;
    let seq = short(sequence(&env, &log, mark).await);
    assert_eq!(
        session_named(seq),
        [
            // Who we are (recorded as the owner).
            "create /apis/authentication.k8s.io/v1/selfsubjectreviews",
            "get /deployments/rt",
            "create /configmaps",
            "create /pods",
            // From the POST's resourceVersion: no GET of the pod first.
            "watch /pods",
            // Ready and its name printed: the provisional session becomes durable (its TTL).
            "patch /configmaps/<session>",
        ],
        "{pod}"
    );
}

#[tokio::test]
async fn create_scale_down_is_eleven_requests() {
    create_scaling_is_eleven_requests("--scale-down", 3, 0).await;
}

#[tokio::test]
async fn create_replace_one_is_eleven_requests_as_scale_down() {
    create_scaling_is_eleven_requests("--replace-one", 3, 2).await;
}

/// `create FLAG` of a Deployment at `from`: the same requests whichever count it sets (`to`).
async fn create_scaling_is_eleven_requests(flag: &str, from: i32, to: i64) {
    let env = TestEnv::new().await;
    let log = RequestLog::new(&env).await;
    env.apply_yaml(&deployment("sd", from)).await;
    let warm = log.create(&env, &["deployment/sd"]).await;
    log.mc(&env, &["delete", &warm]).await.ok();
    let mark = log.mark(&env);
    let pod = log.create(&env, &["deployment/sd", flag]).await;
    assert_eq!(
        session_named(short(sequence(&env, &log, mark).await)),
        [
            "get /deployments/sd",
            "get ", // the Namespace (its guardrail)
            "list /horizontalpodautoscalers",
            "list /scaledobjects",
            "create /configmaps", // the session, recording the workload and ScaledObjects
            "create /configmaps", // the lock, with both counts and a finalizer
            "create /pods",
            "watch /pods",
            // To the count with the way back (counts, session) in one write, pinned to the
            // version `resolve` read: nothing on the workload before the copy is Ready.
            "patch /deployments/sd",
            // The breadcrumb a teammate without the plugin finds in `kubectl describe`.
            "create /events",
            // The provisional session becomes durable.
            "patch /configmaps/<session>",
        ],
        "{flag}"
    );
    assert_eq!(replicas(&env, "Deployment", "deployments", "sd").await, to);

    log.mc(&env, &["delete", &pod]).await.ok();
    assert_eq!(
        replicas(&env, "Deployment", "deployments", "sd").await,
        i64::from(from)
    );
}

/// `--suspend-argocd` costs two requests on each side, and only when an Application is found:
/// its GET before anything is written and its PATCH before the zero; on delete its GET and
/// PATCH after the count. The plain `--scale-down` sequence above is unchanged.
#[tokio::test]
async fn suspend_argocd_adds_a_read_and_a_patch_of_the_application_each_way() {
    let env = TestEnv::new().await;
    env.install_crd(APPLICATION_CRD).await;
    let log = RequestLog::new(&env).await;
    let ns = env.namespace.clone();
    env.apply_yaml(&application(&ns, "shop", true)).await;
    env.apply_yaml(&tracked_deployment(&env, "ac", 2, "shop")).await;
    let warm = log.create(&env, &["deployment/ac"]).await;
    log.mc(&env, &["delete", &warm]).await.ok();
    let mark = log.mark(&env);
    let args = ["deployment/ac", "--scale-down", "--suspend-argocd", "--argocd-namespace", &ns];
    let pod = log.create(&env, &args).await;
    assert_eq!(
        session_named(short(sequence(&env, &log, mark).await)),
        [
            "get /deployments/ac",
            "get ",
            "list /horizontalpodautoscalers",
            "list /scaledobjects",
            "get /applications/shop", // its self-heal and our record, before anything is written
            "create /configmaps",     // the session, recording the Application too
            "create /configmaps",     // the lock, likewise
            "create /pods",
            "watch /pods",
            "patch /applications/shop", // self-heal off with the way back, pinned
            "patch /deployments/ac",
            "create /events",
            "patch /configmaps/<session>",
        ]
    );
    let mark = log.mark(&env);
    log.mc(&env, &["delete", &pod]).await.ok();
    let session = "/configmaps/mirrord-copy-session-";
    let lock = "/configmaps/mirrord-copy-lock-deployment-ac";
    let seq: Vec<String> = short(sequence(&env, &log, mark).await)
        .into_iter()
        .map(|r| match r.find(session) {
            Some(i) => format!("{}{session}<id>", &r[..i]),
            None => r,
        })
        .collect();
    assert_eq!(
        without_wait_for_gone(seq),
        [
            "list /configmaps",
            &format!("get {lock}"), // the count and the Application's value before
            "deletecollection /pods",
            "get /deployments/ac",
            "patch /deployments/ac",
            "create /events",
            // After the count: self-heal back only once the workload is.
            "get /applications/shop",
            "patch /applications/shop", // selfHeal as before and our record off, pinned
            &format!("patch {lock}"),
            &format!("delete {lock}"),
            &format!("delete {session}<id>"),
        ]
    );
    assert_eq!(replicas(&env, "Deployment", "deployments", "ac").await, 2);
}

/// The session ConfigMap's name as `<session>`.
fn session_named(seq: Vec<String>) -> Vec<String> {
    seq.into_iter()
        .map(|r| match r.find("/configmaps/mirrord-copy-session-") {
            Some(i) => format!("{}/configmaps/<session>", &r[..i]),
            None => r,
        })
        .collect()
}

/// `seq` ends with the wait for the copy to be gone: a LIST of the session's copies, and a
/// WATCH while one is still terminating (a placeholder ends on SIGTERM in well under a second,
/// so whether the LIST still sees it is a matter of timing).
fn without_wait_for_gone(mut seq: Vec<String>) -> Vec<String> {
    if seq.last().map(String::as_str) == Some("watch /pods") {
        seq.pop();
    }
    assert_eq!(seq.pop().as_deref(), Some("list /pods"), "the wait for the copy: {seq:?}");
    seq
}

#[tokio::test]
async fn delete_with_restore_is_eleven_requests_at_most() {
    delete_restoring_is_eleven_requests_at_most("--scale-down").await;
}

#[tokio::test]
async fn delete_with_replace_one_restore_is_as_scale_downs() {
    delete_restoring_is_eleven_requests_at_most("--replace-one").await;
}

/// `delete` of a session made with `flag`: the same requests whichever count it set.
async fn delete_restoring_is_eleven_requests_at_most(flag: &str) {
    let env = TestEnv::new().await;
    let log = RequestLog::new(&env).await;
    env.apply_yaml(&deployment("dl", 2)).await;
    let pod = log.create(&env, &["deployment/dl", flag]).await;
    let mark = log.mark(&env);
    log.mc(&env, &["delete", &pod]).await.ok();
    let session = "/configmaps/mirrord-copy-session-";
    let lock = "/configmaps/mirrord-copy-lock-deployment-dl";
    let seq: Vec<String> = short(sequence(&env, &log, mark).await)
        .into_iter()
        .map(|r| match r.find(session) {
            Some(i) => format!("{}{session}<id>", &r[..i]),
            None => r,
        })
        .collect();
    assert_eq!(
        without_wait_for_gone(seq),
        [
            "list /configmaps",       // the session of the pod: its whole record
            &format!("get {lock}"),   // the count the lock recorded, to compare
            "deletecollection /pods", // the session's copies, by label
            "get /deployments/dl",    // the count and our record, at one version
            "patch /deployments/dl",  // back to 2 and our record off, pinned
            "create /events",         // the breadcrumb: restored
            &format!("patch {lock}"), // finalizer off, if still ours (JSON patch test)
            &format!("delete {lock}"), // release, preconditioned
            &format!("delete {session}<id>"),
        ],
        "{flag}"
    );
    assert_eq!(replicas(&env, "Deployment", "deployments", "dl").await, 2);
    assert!(env.list_pods("mirrord-copy.io/role=copy").await.is_empty());
}

#[tokio::test]
async fn delete_is_five_requests_at_most() {
    let env = TestEnv::new().await;
    let log = RequestLog::new(&env).await;
    env.apply_yaml(&deployment("dn", 1)).await;
    let pod = log.create(&env, &["deployment/dn"]).await;
    let mark = log.mark(&env);
    log.mc(&env, &["delete", &pod]).await.ok();
    let seq: Vec<String> = short(sequence(&env, &log, mark).await)
        .into_iter()
        .map(|r| match r.find("/configmaps/") {
            Some(i) => r[..i].to_string() + "/configmaps/<session>",
            None => r,
        })
        .collect();
    assert_eq!(
        without_wait_for_gone(seq),
        [
            "list /configmaps",
            "deletecollection /pods",
            "delete /configmaps/<session>"
        ]
    );
    assert!(env.list_pods("mirrord-copy.io/role=copy").await.is_empty());
}

#[tokio::test]
async fn status_and_gc_make_a_fixed_number_of_requests() {
    let env = TestEnv::new().await;
    let log = RequestLog::new(&env).await;
    env.apply_yaml(&deployment("web", 2)).await;
    env.apply_yaml(&deployment("worker", 1)).await;
    log.create(&env, &["deployment/web"]).await;
    log.create(&env, &["deployment/worker", "--scale-down"]).await;
    if env.fake().is_none() {
        // A real cluster may hold what earlier runs left to collect: gc it first, so the
        // count below is the one of a cluster with nothing to do.
        log.mc(&env, &["gc", "-A"]).await.ok();
    }
    let ns = &env.namespace;
    let requests_of = |args: &'static [&'static str]| {
        let log = &log;
        let env = &env;
        async move {
            let mark = log.mark(env);
            log.mc(env, args).await.ok();
            log.since(env, mark)
                .await
                .into_iter()
                .map(|r| match r.query.is_empty() {
                    true => format!("{} {}", r.verb, r.path),
                    false => format!("{} {}?{}", r.verb, r.path, r.query),
                })
                .collect::<Vec<_>>()
        }
    };

    // Our ConfigMaps (sessions, and locks whose session is gone, to warn about) and the copy
    // pods (a session whose copy is gone is named).
    assert_eq!(
        requests_of(&["status", "-A"]).await,
        [
            format!("list /api/v1/configmaps?{OURS}"),
            format!("list /api/v1/pods?{COPIES}"),
        ]
    );
    assert_eq!(
        requests_of(&["status"]).await,
        [
            format!("list /api/v1/namespaces/{ns}/configmaps?{OURS}"),
            format!("list /api/v1/namespaces/{ns}/pods?{COPIES}"),
        ]
    );
    for wide in [
        &["status", "-A", "-o", "wide"][..],
        &["status", "-A", "-o", "json"],
    ] {
        let wide: &'static [&'static str] = wide;
        assert_eq!(
            requests_of(wide).await,
            [
                format!("list /api/v1/configmaps?{OURS}"),
                format!("list /api/v1/pods?{COPIES}"),
            ],
            "{wide:?}"
        );
    }

    // Nothing expired or orphaned: one LIST of our ConfigMaps (sessions and locks: a dead
    // session's lock outlives it by its finalizer, so no workload needs listing), one of
    // copy pods; no GET, no write.
    let expected_gc = [
        format!("list /api/v1/configmaps?{OURS}"),
        format!("list /api/v1/pods?{COPIES}"),
    ];
    assert_eq!(requests_of(&["gc", "-A"]).await, expected_gc);
    // The same in one namespace.
    let in_ns: Vec<String> = expected_gc
        .iter()
        .map(|r| {
            let (verb, rest) = r.split_once(" /").unwrap();
            let (prefix, plural) = rest.rsplit_once('/').unwrap();
            format!("{verb} /{prefix}/namespaces/{ns}/{plural}")
        })
        .collect();
    assert_eq!(requests_of(&["gc"]).await, in_ns);
}
}
