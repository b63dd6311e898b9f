//! The process model against what the real cluster's pods did (namespace fk-probe-*, kubelet
//! and containerd 1.6 + runc of the kit, 2026-12-06).

use super::*;
use crate::images::{normalize, Registry};

fn image(r: &str) -> Arc<Image> {
    Registry::kit().get(&normalize(r).unwrap()).unwrap()
}

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

fn cmd(c: &[&str]) -> Spec {
    Spec {
        command: s(c),
        ..Spec::default()
    }
}

fn run(img: &str, spec: Spec) -> Process {
    start(&image(img), &spec, &Volumes::default()).unwrap()
}

fn secs(n: f64) -> Duration {
    Duration::from_secs_f64(n)
}

/// The exit (seconds, code) by `t` seconds.
fn exit_by(p: &mut Process, t: f64) -> Option<(f64, i32)> {
    p.advance(secs(t)).map(|(d, c)| (d.as_secs_f64(), c))
}

#[test]
fn argv_follows_the_kubernetes_rules() {
    let pg = image("postgres:16");
    let e: Vec<(String, String)> = vec![("WHO".into(), "you".into())];
    assert_eq!(
        argv(&pg, &[], &[], &e),
        ["docker-entrypoint.sh", "postgres"]
    );
    // args alone replace cmd
    assert_eq!(
        argv(&pg, &[], &s(&["-c", "x"]), &e),
        ["docker-entrypoint.sh", "-c", "x"]
    );
    // command replaces the entrypoint and drops cmd
    assert_eq!(argv(&pg, &s(&["sleep"]), &[], &e), ["sleep"]);
    assert_eq!(argv(&pg, &s(&["sleep"]), &s(&["1"]), &e), ["sleep", "1"]);
    // $(VAR) from the container's env; unknown names stay; $$ escapes
    assert_eq!(
        argv(&pg, &s(&["echo", "$(WHO)", "$(NOPE)", "$$(WHO)"]), &[], &e),
        ["echo", "you", "$(NOPE)", "$(WHO)"]
    );
    assert_eq!(argv(&image("busybox"), &[], &[], &e), ["sh"]);
}

#[test]
fn a_missing_executable_is_the_runtimes_start_error() {
    // image: registry.k8s.io/pause:3.10, command: [sleep, infinity] on the real cluster
    let err = start(
        &image("registry.k8s.io/pause:3.10"),
        &cmd(&["sleep", "infinity"]),
        &Volumes::default(),
    )
    .unwrap_err();
    assert_eq!(
        err.message(),
        "failed to create containerd task: failed to create shim task: OCI runtime create failed: runc create failed: unable to start container process: exec: \"sleep\": executable file not found in $PATH: unknown"
    );
    let bb = image("busybox");
    let v = Volumes::default();
    assert_eq!(
        start(&bb, &cmd(&["/nope/x"]), &v).unwrap_err().message(),
        format!("{START_ERROR_PREFIX}exec: \"/nope/x\": stat /nope/x: no such file or directory: unknown")
    );
    assert_eq!(
        start(&bb, &cmd(&["./x"]), &v).unwrap_err().message(),
        format!("{START_ERROR_PREFIX}exec: \"./x\": stat ./x: no such file or directory: unknown")
    );
    assert_eq!(
        start(&bb, &cmd(&["/bin"]), &v).unwrap_err().message(),
        format!("{START_ERROR_PREFIX}exec: \"/bin\": permission denied: unknown")
    );
    // A PATH from the container's env is the one searched.
    let mut spec = cmd(&["sleep", "1"]);
    spec.env = vec![("PATH".into(), "/usr/local/bin".into())];
    assert!(start(&bb, &spec, &v).is_err());
    let empty = Arc::new(Image::new(["ghcr.io/example/empty:1"]));
    assert_eq!(
        start(&empty, &Spec::default(), &v).unwrap_err(),
        StartError::NoCommand
    );
}

#[test]
fn sleep_true_false_and_a_bare_sh() {
    let mut p = run("busybox", cmd(&["sleep", "2"]));
    assert_eq!(exit_by(&mut p, 1.9), None);
    assert_eq!(exit_by(&mut p, 5.0), Some((2.0, 0)));
    let mut p = run("busybox", cmd(&["sleep", "1m", "0.5"]));
    assert_eq!(exit_by(&mut p, 100.0), Some((60.5, 0)));
    let mut p = run("busybox", cmd(&["sleep", "infinity"]));
    assert_eq!(exit_by(&mut p, 1e6), None);
    assert_eq!(
        exit_by(&mut run("busybox", cmd(&["true"])), 0.0),
        Some((0.0, 0))
    );
    assert_eq!(
        exit_by(&mut run("busybox", cmd(&["false"])), 0.0),
        Some((0.0, 1))
    );
    // busybox's CMD: sh with no stdin exits 0 at once (the real pod: Completed, restarting)
    assert_eq!(
        exit_by(&mut run("busybox", Spec::default()), 0.0),
        Some((0.0, 0))
    );
    // stdin: true keeps it waiting
    let mut p = run(
        "busybox",
        Spec {
            stdin: true,
            ..Spec::default()
        },
    );
    assert_eq!(exit_by(&mut p, 1e6), None);
    // the applet through the multi-call name
    let mut p = run("busybox", cmd(&["/bin/busybox", "sleep", "3"]));
    assert_eq!(exit_by(&mut p, 9.0), Some((3.0, 0)));
}

#[test]
fn scripts_exit_with_their_status() {
    // sh -c "echo boom; exit 1": Error, exit 1, at once
    let mut p = run("busybox", cmd(&["sh", "-c", "echo boom; exit 1"]));
    assert_eq!(exit_by(&mut p, 0.0), Some((0.0, 1)));
    // sh -c "sleep 1" with restartPolicy Never: Completed after 1 s
    let mut p = run("busybox", cmd(&["sh", "-c", "sleep 1"]));
    assert_eq!(exit_by(&mut p, 0.5), None);
    assert_eq!(exit_by(&mut p, 2.0), Some((1.0, 0)));
    // `nosuch; echo after; exit 0` printed "sh: nosuch: not found" and completed with 0
    let mut p = run("busybox", cmd(&["sh", "-c", "nosuch; echo $?; exit 0"]));
    assert_eq!(exit_by(&mut p, 0.0), Some((0.0, 0)));
    let mut p = run("busybox", cmd(&["sh", "-c", "nosuch"]));
    assert_eq!(exit_by(&mut p, 0.0), Some((0.0, 127)));
    let mut p = run("busybox", cmd(&["sh", "-c", "exit 3"]));
    assert_eq!(exit_by(&mut p, 0.0), Some((0.0, 3)));
    let mut p = run(
        "busybox",
        cmd(&[
            "sh",
            "-c",
            "false && exit 4; true || exit 5; sleep 1; echo done",
        ]),
    );
    assert_eq!(exit_by(&mut p, 9.0), Some((1.0, 0)));
    let mut p = run("busybox", cmd(&["sh", "-ec", "sleep 1\nfalse\nexit 0"]));
    assert_eq!(exit_by(&mut p, 9.0), Some((1.0, 1)));
    let mut p = run(
        "busybox",
        cmd(&[
            "sh",
            "-c",
            "if [ -x /bin/sleep ]; then exit 6; else exit 7; fi",
        ]),
    );
    assert_eq!(exit_by(&mut p, 0.0), Some((0.0, 6)));
    let mut p = run(
        "busybox",
        cmd(&["sh", "-c", "N=${N:-2}; sleep $N; exit $?"]),
    );
    assert_eq!(exit_by(&mut p, 9.0), Some((2.0, 0)));
    // the kubelet's $(VAR), then the shell's own variables
    let mut spec = cmd(&["sh", "-c", "sleep $(T) && sleep \"$T\""]);
    spec.env = vec![("T".into(), "2".into())];
    let mut p = run("busybox", spec);
    assert_eq!(exit_by(&mut p, 9.0), Some((4.0, 0)));
    let mut p = run(
        "busybox",
        cmd(&[
            "sh",
            "-c",
            "i=0; while [ $i != 3 ]; do sleep 1; i=3; done; exit 9",
        ]),
    );
    assert_eq!(exit_by(&mut p, 9.0), Some((1.0, 9)));
}

#[test]
fn pid_1_ignores_sigterm_without_a_handler() {
    // sleep / sh -c "sleep infinity" waited out the grace period and got SIGKILL (137) on
    // the real cluster: the model never exits on SIGTERM.
    for c in [
        &["sleep", "3600"][..],
        &["sh", "-c", "sleep infinity"],
        &["sh", "-c", "sleep 3600 & wait $!"],
        &["tail", "-f", "/dev/null"],
    ] {
        let mut p = run("busybox", cmd(c));
        p.sigterm(secs(1.0));
        assert_eq!(exit_by(&mut p, 1000.0), None, "{c:?}");
    }
    let mut p = run("busybox", cmd(&["sh", "-c", "exec sleep infinity"]));
    p.sigterm(secs(1.0));
    assert_eq!(exit_by(&mut p, 1000.0), None);
}

#[test]
fn the_kits_programs_exit_0_at_once_on_sigterm() {
    for img in [
        "registry.k8s.io/pause:3.10.2",
        "ghcr.io/example/py-serv:1.0",
        "ghcr.io/example/checkout:2.1",
        "ghcr.io/example/worker:3",
        "postgres:16",
    ] {
        let mut p = run(img, Spec::default());
        assert_eq!(exit_by(&mut p, 1e6), None, "{img}");
        p.sigterm(secs(1e6 + 1.0));
        assert_eq!(exit_by(&mut p, 1e6 + 1.0), Some((1e6 + 1.0, 0)), "{img}");
    }
    let mut p = run("busybox", cmd(&["sh", "-c", "exec /bin/busybox sleep 5"]));
    assert_eq!(exit_by(&mut p, 9.0), Some((5.0, 0)));
    let mut p = run("postgres:16", cmd(&["pg_isready"]));
    assert_eq!(exit_by(&mut p, 0.0), Some((0.0, 2)));
}

#[test]
fn a_trap_runs_at_once_in_wait_but_after_a_foreground_sleep() {
    // trapwait: `trap 'echo got; exit 3' TERM; sleep 3600 & wait $!` exited 3 at once
    let mut p = run(
        "busybox",
        cmd(&[
            "sh",
            "-c",
            "trap 'echo got; exit 3' TERM; sleep 3600 & wait $!",
        ]),
    );
    p.sigterm(secs(2.0));
    assert_eq!(exit_by(&mut p, 2.0), Some((2.0, 3)));
    // trapfg2: `trap ...; sleep 8; echo slept; sleep 3600`, deleted ~3.5 s in: exit 3 once
    // the sleep 8 was over
    let mut p = run(
        "busybox",
        cmd(&[
            "sh",
            "-c",
            "trap 'echo got; exit 3' TERM; sleep 8; echo slept; sleep 3600",
        ]),
    );
    p.sigterm(secs(3.5));
    assert_eq!(exit_by(&mut p, 7.9), None);
    assert_eq!(exit_by(&mut p, 30.0), Some((8.0, 3)));
    // trapfg: the same, signalled during `sleep 3600`: SIGKILL at the deadline
    let mut p = run(
        "busybox",
        cmd(&["sh", "-c", "trap 'exit 3' TERM; sleep 4; sleep 3600"]),
    );
    p.sigterm(secs(6.0));
    assert_eq!(exit_by(&mut p, 100.0), None);
    // the worker's loop: `while :; do ...; sleep 5 & wait $!; done` with a trap
    let mut p = run(
        "busybox",
        cmd(&[
            "sh",
            "-c",
            "trap 'exit 0' TERM INT\nwhile :; do echo tick; sleep 5 & wait $!; done",
        ]),
    );
    assert_eq!(exit_by(&mut p, 60.0), None);
    p.sigterm(secs(61.0));
    assert_eq!(exit_by(&mut p, 61.0), Some((61.0, 0)));
    // a trap that does not exit: wait returns 143 and the script goes on
    let mut p = run(
        "busybox",
        cmd(&[
            "sh",
            "-c",
            "trap 'echo got' TERM; sleep 100 & wait $!; exit $?",
        ]),
    );
    p.sigterm(secs(1.0));
    assert_eq!(exit_by(&mut p, 1.0), Some((1.0, 143)));
    // trap '' TERM ignores; trap - TERM restores the default (ignored by PID 1)
    let mut p = run(
        "busybox",
        cmd(&["sh", "-c", "trap '' TERM; sleep 100 & wait"]),
    );
    p.sigterm(secs(1.0));
    assert_eq!(exit_by(&mut p, 50.0), None);
    // an EXIT trap runs on the way out and may set the status
    let mut p = run("busybox", cmd(&["sh", "-c", "trap 'exit 4' EXIT; sleep 1"]));
    assert_eq!(exit_by(&mut p, 5.0), Some((1.0, 4)));
    // `while true` with a foreground sleep: the trap waits for the current sleep
    let mut p = run(
        "busybox",
        cmd(&[
            "sh",
            "-c",
            "trap 'exit 5' TERM; while true; do sleep 2; done",
        ]),
    );
    p.sigterm(secs(3.0));
    assert_eq!(exit_by(&mut p, 30.0), Some((4.0, 5)));
    // a busy loop handles the trap at once
    let mut p = run(
        "busybox",
        cmd(&["sh", "-c", "trap 'exit 6' TERM; while :; do :; done"]),
    );
    assert_eq!(exit_by(&mut p, 10.0), None);
    p.sigterm(secs(11.0));
    assert_eq!(exit_by(&mut p, 11.0), Some((11.0, 6)));
}

#[test]
fn background_jobs_wait_and_kill() {
    let mut p = run(
        "busybox",
        cmd(&["sh", "-c", "sleep 2 & sleep 1; wait; exit 0"]),
    );
    assert_eq!(exit_by(&mut p, 9.0), Some((2.0, 0)));
    let mut p = run(
        "busybox",
        cmd(&["sh", "-c", "sleep 100 & kill $!; wait $!"]),
    );
    assert_eq!(exit_by(&mut p, 9.0), Some((0.0, 143)));
}

#[test]
fn files_copied_into_an_empty_dir_run_in_other_containers() {
    // okinit / standalone: an init container copies busybox into an emptyDir, the pause
    // image runs it; its applets need no /bin (busybox's standalone shell)
    let vols = Volumes::default();
    let mount = |path: &str| Mount {
        path: path.into(),
        volume: "s".into(),
        kind: VolumeKind::EmptyDir,
        sub_path: String::new(),
    };
    let mut cp = cmd(&["sh", "-c", "cp /bin/busybox /shared/busybox"]);
    cp.mounts = vec![mount("/shared")];
    let mut p = start(&image("busybox"), &cp, &vols).unwrap();
    assert_eq!(p.advance(Duration::ZERO), Some((Duration::ZERO, 0)));
    assert_eq!(vols.file("s", "busybox"), Some(Program::Busybox));
    let mut main = cmd(&[
        "/.mirrord-copy/busybox",
        "sh",
        "-c",
        "ls / >/dev/null; sleep 2; nosuch; exit 4",
    ]);
    main.mounts = vec![mount("/.mirrord-copy")];
    let mut p = start(&image("registry.k8s.io/pause:3.10"), &main, &vols).unwrap();
    assert_eq!(exit_by(&mut p, 9.0), Some((2.0, 4)));
    // into a directory: the source's name
    let mut cp = cmd(&["cp", "/bin/busybox", "/shared/"]);
    cp.mounts = vec![mount("/shared")];
    let vols2 = Volumes::default();
    let mut p = start(&image("busybox"), &cp, &vols2).unwrap();
    assert_eq!(p.advance(Duration::ZERO), Some((Duration::ZERO, 0)));
    assert_eq!(vols2.file("s", "busybox"), Some(Program::Busybox));
    // nothing was copied: the start error
    let err = start(
        &image("registry.k8s.io/pause:3.10"),
        &main,
        &Volumes::default(),
    )
    .unwrap_err();
    assert!(
        err.message()
            .contains("stat /.mirrord-copy/busybox: no such file"),
        "{}",
        err.message()
    );
    // a missing source or directory: cp fails
    let mut bad = cmd(&["cp", "/nope", "/shared/x"]);
    bad.mounts = vec![mount("/shared")];
    let mut p = start(&image("busybox"), &bad, &Volumes::default()).unwrap();
    assert_eq!(exit_by(&mut p, 0.0), Some((0.0, 1)));
}

#[test]
fn what_is_not_modelled_runs_until_killed_and_says_so() {
    let mut p = run("busybox", cmd(&["sh", "-c", "echo x | grep x"]));
    p.sigterm(secs(1.0));
    assert_eq!(exit_by(&mut p, 1e5), None);
    let notes = p.take_notes();
    assert!(notes[0].contains("pipes"), "{notes:?}");
    let mut p = run("busybox", cmd(&["sh", "-c", "echo $(date)"]));
    assert_eq!(exit_by(&mut p, 1e5), None);
    assert!(p.take_notes()[0].contains("command substitution"));
    let mut p = run("busybox", cmd(&["nc", "-l", "-p", "80"]));
    assert_eq!(exit_by(&mut p, 1e5), None);
    assert!(p.take_notes()[0].contains("busybox nc"));
    // a script on a configMap volume: assumed to exist, runs until killed
    let mut spec = cmd(&["/scripts/run.sh"]);
    spec.mounts = vec![Mount {
        path: "/scripts".into(),
        volume: "cfg".into(),
        kind: VolumeKind::Other("configMap".into()),
        sub_path: String::new(),
    }];
    let mut p = run("registry.k8s.io/pause:3.10", spec);
    assert_eq!(exit_by(&mut p, 1e5), None);
    assert!(p.take_notes()[0].contains("configMap volume"));
}

#[test]
fn pushed_script_programs_run_in_the_subset() {
    let img = Arc::new(
        Image::new(["ghcr.io/example/job:1"])
            .busybox()
            .entrypoint(["/usr/local/bin/job"])
            .file(
                "/usr/local/bin/job",
                Program::Script("sleep 3\nexit 2".into()),
            ),
    );
    let mut p = start(&img, &Spec::default(), &Volumes::default()).unwrap();
    assert_eq!(exit_by(&mut p, 9.0), Some((3.0, 2)));
}
