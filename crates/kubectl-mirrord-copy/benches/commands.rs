//! The plugin's own figures against the sandbox, not a test: run
//! `cargo bench -p fakekube --bench commands`. Prints one table:
//!
//! - requests per command (create, create --scale-down, delete, delete with restore, status -A,
//!   gc -A), counted in the fake's request log;
//! - `create --scale-down` with 100 ms of latency on every request: wall time, and the part
//!   after the copy became Ready (what scale-down adds once the copy runs);
//! - at N sessions (MIRRORD_COPY_BENCH_SESSIONS, default 10,000) in M namespaces
//!   (MIRRORD_COPY_BENCH_NAMESPACES, default 100), seeded straight into the store, each with its
//!   copy pod: the peak RSS of the plugin process for `status -A` (and `-o wide`), and the wall
//!   time of `status -A` against `kubectl get cm -A -l <session selector>` in the same run
//!   (median of MIRRORD_COPY_BENCH_RUNS, default 5, interleaved), and `gc -A`.
//!
//! The plugin is the release build next to this bench (`target/release/kubectl-mirrord_copy`,
//! built with cargo when missing) or MIRRORD_COPY_BENCH_BIN, so an older build can be measured
//! the same way. The API server runs in this process; the plugin and kubectl are children, so
//! their peak RSS is theirs alone: VmHWM from /proc/<pid>/status, read while the child is
//! stopped at its exit (ptrace PTRACE_O_TRACEEXIT), or polled every millisecond if it cannot
//! be traced.

use std::io::{BufRead, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fakekube::controllers::Controllers;
use fakekube::{FakeCluster, ServerOptions, ADMIN_TOKEN};
use serde_json::{json, Value};

const SESSION_SELECTOR: &str =
    "app.kubernetes.io/managed-by=kubectl-mirrord-copy,mirrord-copy.io/role=session";

fn env_num(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// The plugin binary to measure.
fn plugin_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("MIRRORD_COPY_BENCH_BIN") {
        return PathBuf::from(bin);
    }
    // target/release/deps/commands-<hash> -> target/release/kubectl-mirrord_copy
    let exe = std::env::current_exe().unwrap();
    let release = exe.parent().and_then(Path::parent).unwrap().to_path_buf();
    let bin = release.join("kubectl-mirrord_copy");
    if !bin.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args([
                "build",
                "--release",
                "-p",
                "kubectl-mirrord-copy",
                "--bin",
                "kubectl-mirrord_copy",
            ])
            .status()
            .expect("run cargo build");
        assert!(status.success(), "building the plugin failed");
    }
    bin
}

struct Env {
    fake: FakeCluster,
    _dir: tempfile::TempDir,
    kubeconfig: PathBuf,
    state: PathBuf,
}

impl Env {
    async fn start(controllers: Option<Arc<Controllers>>) -> Env {
        let fake = FakeCluster::start(ServerOptions {
            controllers,
            ..Default::default()
        })
        .await
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let kubeconfig = dir.path().join("kubeconfig");
        fake.write_kubeconfig(&kubeconfig, "default", ADMIN_TOKEN)
            .unwrap();
        let state = dir.path().join("state");
        Env {
            fake,
            _dir: dir,
            kubeconfig,
            state,
        }
    }

    fn command(&self, program: &Path, args: &[&str]) -> Command {
        let mut c = Command::new(program);
        c.args(args)
            .env("KUBECONFIG", &self.kubeconfig)
            .env("MIRRORD_COPY_STATE_DIR", &self.state)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null());
        c
    }

    fn logged(&self) -> usize {
        self.fake.requests().len()
    }
}

/// What a finished child did.
struct Ran {
    wall: Duration,
    /// VmHWM (peak RSS) in /proc/<pid>/status, KB: read when the child stopped at its exit,
    /// or (if it could not be traced) the highest value polled every millisecond.
    peak_kb: u64,
    /// Read at exit, not polled.
    exact: bool,
    stdout: String,
    stderr_lines: Vec<(Duration, String)>,
    code: i32,
}

fn vm_hwm_kb(pid: i32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse().ok())
}

/// Run `cmd` to completion, timing it and reading its peak RSS; stderr lines are timestamped
/// from the start.
fn run(mut cmd: Command) -> Ran {
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let start = Instant::now();
    let mut child = cmd.spawn().expect("spawn");
    let pid = child.id() as i32;
    let mut out = child.stdout.take().unwrap();
    let err = child.stderr.take().unwrap();
    let out_reader = std::thread::spawn(move || {
        let mut s = String::new();
        out.read_to_string(&mut s).unwrap();
        s
    });
    let err_reader = std::thread::spawn(move || {
        std::io::BufReader::new(err)
            .lines()
            .map_while(Result::ok)
            .map(|l| (start.elapsed(), l))
            .collect::<Vec<_>>()
    });
    // Stop the child at its exit, while its memory is still mapped, to read its VmHWM there
    // (wait4's ru_maxrss would not do: it carries the parent's RSS over the exec).
    // SAFETY: plain syscalls on our own child.
    let traced = unsafe {
        libc::ptrace(
            libc::PTRACE_SEIZE,
            pid,
            std::ptr::null_mut::<libc::c_void>(),
            libc::PTRACE_O_TRACEEXIT as usize as *mut libc::c_void,
        )
    } == 0;
    let mut polled = 0;
    let mut at_exit = None;
    let status = loop {
        let mut status = 0;
        // SAFETY: as above, with a valid out-pointer.
        let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if r == pid && libc::WIFSTOPPED(status) {
            let event = status >> 16;
            let signal = if event == libc::PTRACE_EVENT_EXIT {
                at_exit = vm_hwm_kb(pid);
                0
            } else if event != 0 {
                0
            } else {
                libc::WSTOPSIG(status)
            };
            // SAFETY: the child is in a ptrace stop.
            unsafe {
                libc::ptrace(
                    libc::PTRACE_CONT,
                    pid,
                    std::ptr::null_mut::<libc::c_void>(),
                    signal as usize as *mut libc::c_void,
                )
            };
            continue;
        }
        if r == pid {
            break status;
        }
        assert!(r == 0, "waitpid: {}", std::io::Error::last_os_error());
        polled = polled.max(vm_hwm_kb(pid).unwrap_or(0));
        std::thread::sleep(Duration::from_millis(1));
    };
    let wall = start.elapsed();
    // The child is reaped by waitpid; `child` must not wait again.
    std::mem::forget(child);
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        128 + libc::WTERMSIG(status)
    };
    assert!(traced || at_exit.is_none());
    Ran {
        wall,
        peak_kb: at_exit.unwrap_or(polled).max(polled),
        exact: at_exit.is_some(),
        stdout: out_reader.join().unwrap(),
        stderr_lines: err_reader.join().unwrap(),
        code,
    }
}

async fn run_async(cmd: Command) -> Ran {
    tokio::task::spawn_blocking(move || run(cmd)).await.unwrap()
}

fn ok(what: &str, r: Ran) -> Ran {
    assert_eq!(
        r.code,
        0,
        "{what} failed: {}\n{}",
        r.stdout,
        r.stderr_lines
            .iter()
            .map(|(_, l)| l.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    );
    r
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

fn mb(kb: u64) -> String {
    format!("{:.1} MB", kb as f64 / 1024.0)
}

type Rows = Vec<(String, String)>;

/// Requests made by each command, on the demo cluster with every controller on.
async fn request_counts(bin: &Path, rows: &mut Rows) {
    let env = Env::start(None).await;
    env.fake
        .seed_yaml(fakekube::demo::demo_manifests())
        .unwrap();
    let mut count = |what: &str, args: &[&str]| {
        let before = env.logged();
        let r = ok(what, run(env.command(bin, args)));
        let n = env.logged() - before;
        rows.push((format!("requests: {what}"), n.to_string()));
        r.stdout.trim().to_string()
    };
    let pod = count("create", &["create", "deployment/py-serv-deployment"]);
    count("delete (one session)", &["delete", &pod]);
    let pod = count(
        "create --scale-down",
        &["create", "deployment/py-serv-deployment", "--scale-down"],
    );
    count("delete with scale-down restore", &["delete", &pod]);
}

/// `create --scale-down` with `latency` added to every request.
async fn scale_down_with_latency(bin: &Path, latency: Duration, rows: &mut Rows) {
    let env = Env::start(None).await;
    env.fake
        .seed_yaml(fakekube::demo::demo_manifests())
        .unwrap();
    env.fake.faults().latency("*", "", latency);
    let r = ok(
        "create --scale-down",
        run_async(env.command(
            bin,
            &[
                "create",
                "deployment/py-serv-deployment",
                "--scale-down",
                "-v",
            ],
        ))
        .await,
    );
    let ready = r
        .stderr_lines
        .iter()
        .find(|(_, l)| l.contains("is Ready"))
        .map(|(t, _)| *t)
        .expect("a Ready progress line");
    let label = format!("{} ms latency per request", latency.as_millis());
    rows.push((
        format!("create --scale-down, {label}: wall time"),
        ms(r.wall),
    ));
    rows.push((
        format!("create --scale-down, {label}: after the copy was Ready"),
        ms(r.wall - ready),
    ));
}

/// A session ConfigMap as `create` writes it, with the managedFields entry a real API server
/// adds to it.
fn session_config_map(id: &str, ns: &str, target: &str, pod: &str, scale_down: bool) -> Value {
    json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {
            "name": format!("mirrord-copy-session-{id}"), "namespace": ns,
            "labels": {
                "app.kubernetes.io/managed-by": "kubectl-mirrord-copy",
                "mirrord-copy.io/session": id, "mirrord-copy.io/role": "session",
            },
            "managedFields": [{
                "manager": "kubectl-mirrord_copy", "operation": "Update", "apiVersion": "v1",
                "time": "2026-12-04T09:00:00Z", "fieldsType": "FieldsV1",
                "fieldsV1": {"f:data": {".": {}, "f:copyPod": {}, "f:created": {}, "f:expires": {},
                    "f:heartbeat": {}, "f:host": {}, "f:options": {}, "f:owner": {},
                    "f:scaleDown": {}, "f:target": {}, "f:version": {}},
                    "f:metadata": {"f:labels": {".": {}, "f:app.kubernetes.io/managed-by": {},
                    "f:mirrord-copy.io/role": {}, "f:mirrord-copy.io/session": {}}}},
            }],
        },
        "data": {
            "version": "1", "target": target, "copyPod": pod,
            "scaleDown": scale_down.to_string(), "owner": "system:serviceaccount:dev:alice",
            "host": "alice@laptop", "created": "2026-12-04T09:00:00Z",
            "heartbeat": "2026-12-04T09:00:00Z", "expires": "2099-12-04T17:00:00Z",
            "options": r#"{"excludeContainers":[],"excludeInitContainers":[]}"#,
        }
    })
}

/// A Running copy pod of a session (~3 KB, as the copy of a typical Deployment).
fn copy_pod(id: &str, ns: &str, name: &str, app: &str, owner_uid: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "name": name, "namespace": ns,
            "labels": {"app": app, "tier": "backend",
                "app.kubernetes.io/managed-by": "kubectl-mirrord-copy",
                "mirrord-copy.io/session": id, "mirrord-copy.io/role": "copy"},
            "annotations": {"mirrord-copy.io/original-target": format!("deployment/{app}"),
                "mirrord-copy.io/created-by": "system:serviceaccount:dev:alice",
                "mirrord-copy.io/created-at": "2026-12-04T09:00:00Z",
                "mirrord-copy.io/options": r#"{"excludeContainers":[],"excludeInitContainers":[]}"#},
            "ownerReferences": [{"apiVersion": "v1", "kind": "ConfigMap",
                "name": format!("mirrord-copy-session-{id}"), "uid": owner_uid,
                "controller": true, "blockOwnerDeletion": true}],
        },
        "spec": {
            "restartPolicy": "Always",
            "containers": [{
                "name": "app", "image": format!("ghcr.io/example/{app}:1.2.3"),
                "ports": [{"containerPort": 8080, "name": "http", "protocol": "TCP"}],
                "env": [
                    {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                    {"name": "LOG_LEVEL", "value": "info"},
                    {"name": "DATABASE_URL", "valueFrom": {"secretKeyRef": {"name": "db", "key": "url"}}},
                ],
                "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "256Mi"}},
            }, {
                "name": "metrics", "image": "ghcr.io/example/metrics-sidecar:0.9",
                "ports": [{"containerPort": 9090, "name": "metrics", "protocol": "TCP"}],
            }],
        },
        "status": {
            "phase": "Running",
            "conditions": [
                {"type": "PodScheduled", "status": "True", "lastTransitionTime": "2026-12-04T09:00:01Z"},
                {"type": "Initialized", "status": "True", "lastTransitionTime": "2026-12-04T09:00:01Z"},
                {"type": "ContainersReady", "status": "True", "lastTransitionTime": "2026-12-04T09:00:03Z"},
                {"type": "Ready", "status": "True", "lastTransitionTime": "2026-12-04T09:00:03Z"},
            ],
            "containerStatuses": [
                {"name": "app", "ready": true, "restartCount": 0, "started": true,
                 "image": format!("ghcr.io/example/{app}:1.2.3"),
                 "state": {"running": {"startedAt": "2026-12-04T09:00:02Z"}}},
                {"name": "metrics", "ready": true, "restartCount": 0, "started": true,
                 "image": "ghcr.io/example/metrics-sidecar:0.9",
                 "state": {"running": {"startedAt": "2026-12-04T09:00:02Z"}}},
            ],
            "podIP": "10.244.0.17", "hostIP": "172.18.0.2", "startTime": "2026-12-04T09:00:01Z",
        }
    })
}

/// `sessions` sessions (each with its copy pod) spread over `namespaces` namespaces, written
/// straight into the store.
fn seed_sessions(fake: &FakeCluster, sessions: usize, namespaces: usize) {
    let store = fake.store();
    let ns_rt = store.resource("", "namespaces").unwrap().clone();
    let cm_rt = store.resource("", "configmaps").unwrap().clone();
    let pod_rt = store.resource("", "pods").unwrap().clone();
    for n in 0..namespaces {
        store
            .create(
                &ns_rt,
                None,
                json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": format!("team-{n:03}")}}),
                false,
            )
            .unwrap();
    }
    for i in 0..sessions {
        let ns = format!("team-{:03}", i % namespaces);
        let id = format!("s{i:09}");
        let app = format!("service-{}", i / namespaces % 25);
        let pod = format!("{app}-copy-{:05}", i % 100_000);
        let cm = store
            .create(
                &cm_rt,
                Some(&ns),
                session_config_map(&id, &ns, &format!("deployment/{app}"), &pod, i % 4 == 0),
                false,
            )
            .unwrap();
        let uid = cm["metadata"]["uid"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        store
            .create(
                &pod_rt,
                Some(&ns),
                copy_pod(&id, &ns, &pod, &app, &uid),
                false,
            )
            .unwrap();
    }
    store.compact();
}

/// Figures at scale: status -A (peak RSS, wall time against kubectl), status -A -o wide, gc -A.
async fn at_scale(bin: &Path, sessions: usize, namespaces: usize, runs: usize, rows: &mut Rows) {
    let env = Env::start(Some(Arc::new(Controllers::none()))).await;
    let t = Instant::now();
    seed_sessions(&env.fake, sessions, namespaces);
    rows.push((
        format!("seeded {sessions} sessions + copy pods in {namespaces} namespaces"),
        ms(t.elapsed()),
    ));
    let kubectl = PathBuf::from(std::env::var("KUBECTL").unwrap_or_else(|_| "kubectl".into()));
    let status = ["status", "-A"];
    let kubectl_args = ["get", "cm", "-A", "-l", SESSION_SELECTOR];

    // Warm up both (kubectl's discovery cache, the page cache), checking what they print.
    let before = env.logged();
    let first = ok("status -A", run_async(env.command(bin, &status)).await);
    let status_requests = env.logged() - before;
    assert_eq!(
        first.stdout.lines().filter(|l| l.starts_with("| ")).count(),
        sessions + 1,
        "status -A printed every session"
    );
    let k = ok(
        "kubectl",
        run_async(env.command(&kubectl, &kubectl_args)).await,
    );
    assert_eq!(
        k.stdout.lines().count(),
        sessions + 1,
        "kubectl listed them"
    );

    let (mut ours, mut theirs, mut peaks, mut hwm, mut k_peaks) =
        (vec![], vec![], vec![], vec![], vec![]);
    for _ in 0..runs {
        let r = ok("status -A", run_async(env.command(bin, &status)).await);
        ours.push(r.wall);
        peaks.push(r.peak_kb);
        hwm.push(r.exact);
        let k = ok(
            "kubectl",
            run_async(env.command(&kubectl, &kubectl_args)).await,
        );
        theirs.push(k.wall);
        k_peaks.push(k.peak_kb);
    }
    let (ours, theirs) = (median(ours), median(theirs));
    let peak = *peaks.iter().max().unwrap();
    rows.push(("requests: status -A".into(), status_requests.to_string()));
    rows.push((
        format!("status -A, {sessions} sessions: peak RSS of the plugin (max of {runs})"),
        format!(
            "{}{}",
            mb(peak),
            if hwm.iter().all(|e| *e) {
                ""
            } else {
                " (polled: could not trace)"
            }
        ),
    ));
    rows.push((
        format!("status -A, {sessions} sessions: wall time (median of {runs})"),
        ms(ours),
    ));
    rows.push((
        "kubectl get cm -A -l <session selector>: wall time, peak RSS".into(),
        format!("{}, {}", ms(theirs), mb(*k_peaks.iter().max().unwrap())),
    ));
    rows.push((
        "status -A / kubectl wall time".into(),
        format!("{:.2}x", ours.as_secs_f64() / theirs.as_secs_f64()),
    ));

    let before = env.logged();
    let wide = ok(
        "status -A -o wide",
        run_async(env.command(bin, &["status", "-A", "-o", "wide"])).await,
    );
    rows.push((
        "requests: status -A -o wide".into(),
        (env.logged() - before).to_string(),
    ));
    rows.push((
        format!("status -A -o wide, {sessions} sessions: wall time, peak RSS"),
        format!("{}, {}", ms(wide.wall), mb(wide.peak_kb)),
    ));

    let before = env.logged();
    let gc = ok("gc -A", run_async(env.command(bin, &["gc", "-A"])).await);
    assert_eq!(gc.stdout, "nothing to collect\n");
    rows.push((
        format!("requests: gc -A, {sessions} sessions, none expired"),
        (env.logged() - before).to_string(),
    ));
    rows.push((
        format!("gc -A, {sessions} sessions: wall time, peak RSS"),
        format!("{}, {}", ms(gc.wall), mb(gc.peak_kb)),
    ));
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let bin = plugin_bin();
    let sessions = env_num("MIRRORD_COPY_BENCH_SESSIONS", 10_000);
    let namespaces = env_num("MIRRORD_COPY_BENCH_NAMESPACES", 100);
    let runs = env_num("MIRRORD_COPY_BENCH_RUNS", 5).max(1);
    let mut rows = Rows::new();
    request_counts(&bin, &mut rows).await;
    scale_down_with_latency(&bin, Duration::from_millis(100), &mut rows).await;
    at_scale(&bin, sessions, namespaces, runs, &mut rows).await;

    println!("plugin: {}", bin.display());
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    println!("| {:width$} | value |", "figure");
    println!("|{}|-------|", "-".repeat(width + 2));
    for (k, v) in rows {
        println!("| {k:width$} | {v} |");
    }
}
