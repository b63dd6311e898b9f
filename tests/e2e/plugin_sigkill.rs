//! The plugin SIGKILLed at random points of `create`, `create
//! --scale-down`, `run --scale-down` and `delete` (of a scale-down session): not only between
//! steps but after a random delay, right after the Nth request was answered, or while the Nth
//! request is held open by the server (sent, not answered: it lands after the kill). Then `gc`
//! once the provisional lease lapsed (the fake API server's clock, which the plugin judges
//! leases on, moved 3 minutes ahead), and for every kill: the exact original replica count, no
//! copy, no lock, no session.
//!
//! Two outcomes are not a failure, and are checked as what they are: the command finished
//! before the kill landed (`create` then exited 0, or had confirmed its session and printed
//! its name: the session is live and `delete` ends it), and a `delete` killed before its
//! first write (the session is untouched and live: `delete` again ends it).
//!
//! `MIRRORD_COPY_SIGKILL_SEED` replays a run (the seed is printed), `MIRRORD_COPY_SIGKILL_KILLS`
//! sets the kills per command (default 12).

use std::process::Stdio;
use std::time::{Duration, Instant};

use fakekube::harness::TestEnv;
use fakekube::{FakeCluster, Fault, FaultAction};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ListParams};

use crate::plugin_support::*;

/// How long a held request is held; gc runs after it landed.
const HOLD: Duration = Duration::from_millis(400);

/// xorshift64*: reproducible from the printed seed, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in `0..=max`.
    fn upto(&mut self, max: u64) -> u64 {
        self.next() % (max + 1)
    }
}

/// Where a kill lands.
#[derive(Debug, Clone, Copy)]
enum Point {
    /// After this long.
    Delay(Duration),
    /// As soon as this many requests were answered.
    AfterAnswers(usize),
    /// While this request (1-based) is held by the server, `Duration` after the one before it
    /// was answered.
    During(usize, Duration),
}

/// What one kill left.
struct Killed {
    /// The command exited 0 before the kill landed.
    finished: bool,
    stdout: String,
    /// "VERB PATH" of the requests it made (the held one included once it landed).
    requests: Vec<String>,
}

/// `args` run to completion: its requests and how long it took.
async fn calibrate(env: &TestEnv, args: &[&str]) -> (usize, Duration, String) {
    let fake = env.fake().unwrap();
    let from = fake.requests().len();
    let started = Instant::now();
    let run = mc(env, args).await;
    let took = started.elapsed();
    run.ok();
    (fake.requests().len() - from, took, run.stdout)
}

/// The plugin with `args`, SIGKILLed at `point`.
async fn kill_at(env: &TestEnv, fake: &FakeCluster, args: &[&str], point: Point) -> Killed {
    let from = fake.requests().len();
    if let Point::During(n, _) = point {
        fake.faults()
            .add(Fault::on("*", "", FaultAction::Latency(HOLD)).nth(n as u64));
    }
    let mut c = tokio::process::Command::from(env.command(plugin_bin()));
    c.args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    let mut child = c.spawn().expect("spawn the plugin");
    let answered = || fake.requests().len().saturating_sub(from);
    // Until `n` requests were answered, or the command is done.
    let mut wait_answers = async |n: usize| {
        let deadline = Instant::now() + Duration::from_secs(30);
        while answered() < n && Instant::now() < deadline {
            if child.try_wait().ok().flatten().is_some() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    };
    match point {
        Point::Delay(d) => tokio::time::sleep(d).await,
        Point::AfterAnswers(n) => wait_answers(n).await,
        Point::During(n, after) => {
            wait_answers(n - 1).await;
            tokio::time::sleep(after).await;
        }
    }
    let _ = child.start_kill();
    let out = child.wait_with_output().await.expect("the plugin");
    fake.faults().clear();
    if let Point::During(..) = point {
        // A write held when the process died lands (or not) within HOLD of reaching the
        // server: wait that out, so gc sees what the dead process left.
        tokio::time::sleep(HOLD + Duration::from_millis(100)).await;
    }
    let requests = fake.requests()[from..]
        .iter()
        .map(|r| format!("{} {}", r.verb, r.path))
        .collect();
    Killed {
        finished: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        requests,
    }
}

/// A random point within a command of `requests` requests lasting `took`.
fn pick(rng: &mut Rng, i: usize, requests: usize, took: Duration) -> Point {
    let n = requests.max(1) as u64;
    match i % 3 {
        0 => Point::Delay(Duration::from_micros(
            rng.upto(took.as_micros() as u64 * 11 / 10),
        )),
        1 => Point::AfterAnswers(rng.upto(n) as usize),
        _ => Point::During(
            1 + rng.upto(n - 1) as usize,
            Duration::from_millis(5 + rng.upto(40)),
        ),
    }
}

/// `gc` with the API server's clock 3 minutes ahead: every provisional lease (60 s) and
/// `run` lease (60 s) has lapsed, no `--ttl 1h` has.
async fn gc_after_the_lease(env: &TestEnv, fake: &FakeCluster) -> Run {
    fake.set_clock_offset(chrono::Duration::minutes(3));
    let run = mc(env, &["gc"]).await;
    fake.set_clock_offset(chrono::Duration::zero());
    run
}

struct Ours {
    sessions: Vec<ConfigMap>,
    locks: Vec<ConfigMap>,
    copies: Vec<String>,
}

async fn ours(env: &TestEnv) -> Ours {
    let cms: Api<ConfigMap> = Api::namespaced(env.client.clone(), &env.namespace);
    let list = |role: &'static str| {
        let cms = cms.clone();
        async move {
            cms.list(&ListParams::default().labels(&format!(
                "app.kubernetes.io/managed-by=kubectl-mirrord-copy,mirrord-copy.io/role={role}"
            )))
            .await
            .unwrap()
            .items
        }
    };
    let copies = env
        .list_pods("mirrord-copy.io/role=copy")
        .await
        .iter()
        .filter_map(|p| p["metadata"]["name"].as_str().map(String::from))
        .collect();
    Ours {
        sessions: list("session").await,
        locks: list("lock").await,
        copies,
    }
}

/// The exact count, no annotation of ours, nothing of ours left (deleted copies once their
/// kubelet stopped them).
async fn assert_repaired(env: &TestEnv, name: &str, count: i32, what: &str) {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(45);
    let mut left = ours(env).await;
    while !left.copies.is_empty() && tokio::time::Instant::now() < deadline {
        env.wait_pods_gone(
            "mirrord-copy.io/role=copy",
            std::time::Duration::from_secs(45),
        )
        .await;
        left = ours(env).await;
    }
    let names = |cms: &[ConfigMap]| -> Vec<String> {
        cms.iter().filter_map(|c| c.metadata.name.clone()).collect()
    };
    assert!(
        left.sessions.is_empty() && left.locks.is_empty() && left.copies.is_empty(),
        "{what}: left sessions {:?}, locks {:?}, copies {:?}",
        names(&left.sessions),
        names(&left.locks),
        left.copies
    );
    let d = env
        .get_json("apps", "v1", "Deployment", "deployments", name)
        .await
        .unwrap();
    assert_eq!(
        d["spec"]["replicas"].as_i64(),
        Some(i64::from(count)),
        "{what}: {d}"
    );
    let annotations = &d["metadata"]["annotations"];
    assert!(
        annotations["mirrord-copy.io/scaled-down-by"].is_null()
            && annotations["mirrord-copy.io/original-replicas"].is_null(),
        "{what}: {annotations}"
    );
}

/// The one session left, confirmed (its create finished its work): `delete` ends it.
async fn end_the_finished_session(env: &TestEnv, killed: &Killed, what: &str) {
    let left = ours(env).await;
    assert_eq!(left.sessions.len(), 1, "{what}");
    let data = left.sessions[0].data.clone().unwrap_or_default();
    assert!(
        data.contains_key("confirmed") && !data.contains_key("provisional"),
        "{what}: a session that outlived gc must be a confirmed one: {data:?}"
    );
    let pod = &data["copyPod"];
    assert!(
        killed.stdout.contains(pod.as_str()),
        "{what}: confirmed only after its name was printed: {:?}",
        killed.stdout
    );
    mc(env, &["delete", pod]).await.ok();
}

const WRITES: [&str; 5] = ["create", "update", "patch", "delete", "deletecollection"];

#[derive(Default)]
struct Tally {
    kills: usize,
    finished_first: usize,
    untouched: usize,
}

/// Kill `create [--scale-down] deployment/NAME` (or `run`) at `kills` random points.
async fn kill_creates(kind: &'static str, kills: usize, seed: u64) -> Tally {
    let env = TestEnv::new().await;
    let fake = env.fake().expect("the fake API server").clone();
    let name = format!("k-{kind}");
    let count = 3;
    env.apply_yaml(&deployment(&name, count)).await;
    let target = format!("deployment/{name}");
    let args: Vec<&str> = match kind {
        "create" => vec!["create", &target, "--ttl", "1h"],
        "scale-down" => vec!["create", &target, "--scale-down", "--ttl", "1h"],
        _ => vec!["run", &target, "--scale-down", "--", "true"],
    };
    // Warm (the identity is cached after the first create), then measure.
    let (_, _, out) = calibrate(&env, &args).await;
    if kind != "run" {
        mc(&env, &["delete", out.trim()]).await.ok();
    }
    let (requests, took, out) = calibrate(&env, &args).await;
    if kind != "run" {
        mc(&env, &["delete", out.trim()]).await.ok();
    }
    assert_repaired(&env, &name, count, "after the calibration").await;
    let mut rng = Rng(seed);
    let mut tally = Tally::default();
    for i in 0..kills {
        let point = pick(&mut rng, i, requests, took);
        let killed = kill_at(&env, &fake, &args, point).await;
        let what = format!(
            "{kind} killed at {point:?} (of {requests} requests, {took:?}), seed {seed}; its requests: {:#?}",
            killed.requests
        );
        gc_after_the_lease(&env, &fake).await.ok();
        if !ours(&env).await.sessions.is_empty() && kind != "run" {
            end_the_finished_session(&env, &killed, &what).await;
            tally.finished_first += 1;
        } else if killed.finished {
            tally.finished_first += 1;
        }
        assert_repaired(&env, &name, count, &what).await;
        tally.kills += 1;
    }
    tally
}

/// Kill `delete POD` of a live `create --scale-down` session at `kills` random points.
async fn kill_deletes(kills: usize, seed: u64) -> Tally {
    let env = TestEnv::new().await;
    let fake = env.fake().expect("the fake API server").clone();
    let name = "k-delete";
    let count = 2;
    env.apply_yaml(&deployment(name, count)).await;
    let target = format!("deployment/{name}");
    let create = ["create", target.as_str(), "--scale-down", "--ttl", "1h"];
    let mut calibrated = None;
    for _ in 0..2 {
        let (_, _, out) = calibrate(&env, &create).await;
        calibrated = Some(calibrate(&env, &["delete", out.trim()]).await);
    }
    let (requests, took, _) = calibrated.unwrap();
    assert_repaired(&env, name, count, "after the calibration").await;
    let mut rng = Rng(seed);
    let mut tally = Tally::default();
    for i in 0..kills {
        let (_, _, out) = calibrate(&env, &create).await;
        let pod = out.trim().to_string();
        let point = pick(&mut rng, i, requests, took);
        let killed = kill_at(&env, &fake, &["delete", &pod], point).await;
        let what = format!(
            "delete killed at {point:?} (of {requests} requests, {took:?}), seed {seed}; its requests: {:#?}",
            killed.requests
        );
        gc_after_the_lease(&env, &fake).await.ok();
        let wrote = killed
            .requests
            .iter()
            .any(|r| WRITES.contains(&r.split(' ').next().unwrap_or_default()));
        if !wrote {
            // Killed before its first write: the session is as it was, live (gc must not have
            // touched it), and ends with the next delete.
            let left = ours(&env).await;
            assert!(
                left.sessions.len() == 1 && left.locks.len() == 1 && left.copies == [pod.clone()],
                "{what}: untouched"
            );
            assert_eq!(
                replicas(&env, "Deployment", "deployments", name).await,
                0,
                "{what}"
            );
            mc(&env, &["delete", &pod]).await.ok();
            tally.untouched += 1;
        } else if killed.finished {
            tally.finished_first += 1;
        }
        assert_repaired(&env, name, count, &what).await;
        tally.kills += 1;
    }
    tally
}

#[tokio::test]
#[cfg_attr(
    real_cluster,
    ignore = "moves the fake API server's clock and holds its requests open"
)]
async fn sigkill_at_random_points_then_gc_leaves_the_exact_count_and_nothing_else() {
    let seed = std::env::var("MIRRORD_COPY_SIGKILL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    let kills: usize = std::env::var("MIRRORD_COPY_SIGKILL_KILLS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(12);
    let started = Instant::now();
    // Each command against its own fake API server, the four at once.
    let (create, scale_down, run, delete) = tokio::join!(
        kill_creates("create", kills, seed),
        kill_creates("scale-down", kills, seed ^ 0x9e37_79b9),
        kill_creates("run", kills, seed ^ 0x7f4a_7c15),
        kill_deletes(kills, seed ^ 0x2545_f491),
    );
    let total = create.kills + scale_down.kills + run.kills + delete.kills;
    let finished = create.finished_first
        + scale_down.finished_first
        + run.finished_first
        + delete.finished_first;
    let line = format!(
        "SIGKILL suite: {total} kills (create {}, create --scale-down {}, run --scale-down {}, delete {}), each followed by gc and checked; {finished} finished before the kill landed, {} deletes killed before their first write; seed {seed}; {:.1?}\n",
        create.kills,
        scale_down.kills,
        run.kills,
        delete.kills,
        delete.untouched,
        started.elapsed()
    );
    // Past the test harness's capture: the count is in every log.
    use std::io::Write;
    let _ = std::io::stderr().write_all(line.as_bytes());
    assert_eq!(total, 4 * kills);
}
