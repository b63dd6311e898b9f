//! The fake kubelet's process model: what a container runs (argv from the pod spec and the
//! image config), whether that program exists, and what it then does over simulated time, from
//! the pod spec and the image alone. Pure: the kubelet (`controllers/kubelet.rs`) asks it when a
//! container's process exits and what happens on SIGTERM.
//!
//! ## argv ([`argv`])
//! As containerd's CRI builds it (`WithProcessArgs`): `command` (non-empty) replaces the image's
//! entrypoint and drops its cmd; `args` alone replace the cmd; neither: entrypoint + cmd.
//! `$(VAR)` in command/args expands from the container's `env` (`$$(` escapes), as the kubelet
//! does. Nothing at all: `CreateContainerError` "no command specified".
//!
//! ## Finding argv\[0\] ([`start`])
//! runc's lookup: a name with a `/` is a path (relative to workingDir); a bare name is looked
//! up in `PATH` (the container's env over the image's). Paths resolve through the container's
//! volume mounts first: an `emptyDir` holds what the pod's containers copied into it (tracked per
//! pod, e.g. an init container's `cp /bin/busybox /.mirrord-copy/busybox`); a file under any other
//! volume (configMap, secret, persistentVolumeClaim, hostPath, projected...) is assumed to exist
//! and to run until killed (see "Loud rules"). Otherwise the image's files. Not found: the
//! runtime's StartError (exit 128), worded as the real cluster printed it:
//! `failed to create containerd task: failed to create shim task: OCI runtime create failed:
//! runc create failed: unable to start container process: exec: "sleep": executable file not
//! found in $PATH: unknown` (`exec: "/x": stat /x: no such file or directory: unknown` for a
//! path, `exec: "/bin": permission denied: unknown` for a directory).
//!
//! ## Programs
//! - the kit's `pause`, `serve`, `worker`, postgres `docker-entrypoint.sh`: run until SIGTERM
//!   and exit 0 at once on it; `pg_isready` exits 2 at once.
//! - busybox (any name linked to it, or `busybox APPLET`): `sleep N` (seconds, `s/m/h/d`
//!   suffixes, fractions; several add up) ends after N with 0, `sleep infinity` never ends;
//!   `usleep`; `true` 0, `false` 1; `sh`/`ash` (below); `cp`/`mv SRC... DST` (a file into an
//!   emptyDir is what later containers can run; a missing source: 1); `test`/`[` (file tests
//!   `-e -f -d -x`, `-n -z`, `= !=`, `-eq -ne -lt -le -gt -ge`, `!`); `tail -f`, `httpd -f` run
//!   until killed; `echo printf mkdir touch chmod chown ln rm rmdir ls cat printenv env date
//!   hostname id pwd uname whoami basename dirname sync head wc` exit 0 at once (their file
//!   arguments are not checked, their output is not kept); a name busybox does not have: 127.
//! - `sh` with no `-c` and no file: exits 0 at once (busybox's CMD: no stdin), or runs until
//!   killed with `stdin: true`. `sh FILE` runs the file's program.
//!
//! ## `sh -c SCRIPT`: the subset
//! Sequences (`;`, newlines, `&&`, `||`, `!`), `{ ...; }`, `if/then/elif/else/fi`,
//! `while`/`until ... do ... done` (`while :`, `while true`: forever), background `CMD &`
//! with `$!` and `wait [PID]`, `trap 'ACTION' TERM|INT|EXIT...` (`trap - SIG`, `trap '' SIG`),
//! `exec CMD` (replaces the shell, traps and all), `exit [N]`, `set -e`/`+e`, `cd`, `kill`
//! (of background jobs), `NAME=value`, `export`, `unset`, `$NAME`, `${NAME}`, `${NAME:-x}`,
//! `${NAME-x}`, `$?`, `$!`, `$$`, quoting, comments; redirections are parsed and ignored (no file
//! contents are modelled); no pathname expansion (a pattern is passed on as sh does when nothing
//! matches). Commands resolve as busybox's standalone ash does: builtins, then busybox applets
//! (even in an image without them, e.g. pause with a copied busybox), then `$PATH`; not found is
//! status 127 and the script goes on. The script's status is its last command's, or `exit N`'s.
//!
//! ## Signals (what the kubelet's SIGTERM does)
//! The runtime signals only PID 1. A PID 1 without a handler ignores SIGTERM (the kernel drops
//! it): `sleep`, `sh -c "sleep infinity"`, `tail -f` wait out the grace period and get SIGKILL
//! (137). A shell's `trap ... TERM` runs at once when the shell is in `wait` (which returns
//! 143) or between commands, but only after a foreground command (`sleep 30`) finishes; the
//! trap's `exit N` ends the container with N, else the script goes on. The kit's programs exit 0
//! at once. `kill` of a background job without a handler ends it with 143.
//!
//! ## Loud rules (what is not modelled)
//! A script outside the subset (pipes, command substitution, `$((...))`, `for`, `case`,
//! functions, here-documents, subshells...), a busybox applet not listed above, or a file on a
//! volume other than emptyDir: the process runs until killed and ignores SIGTERM (SIGKILL at
//! the deadline, 137), and [`Process::take_notes`] says what was assumed (the kubelet records it
//! as a Normal Event `UnmodelledProcess` on the pod). A busy loop (no time passes in 10,000
//! commands) runs forever, its traps handled at once.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::images::{Image, Program, BUSYBOX_APPLETS};

/// SIGTERM's number (exit 143 = 128 + 15).
const SIGTERM: i32 = 15;
/// Commands run without simulated time passing before a loop counts as a busy loop.
const SPIN_LIMIT: usize = 10_000;

/// containerd's wording around runc's start errors.
pub const START_ERROR_PREFIX: &str = "failed to create containerd task: failed to create shim task: OCI runtime create failed: runc create failed: unable to start container process: ";

/// The container's argv from the pod spec's `command`/`args` and the image config (see the
/// module docs); `env` expands `$(VAR)`.
pub fn argv(
    image: &Image,
    command: &[String],
    args: &[String],
    env: &[(String, String)],
) -> Vec<String> {
    let command: Vec<String> = command.iter().map(|s| expand_k8s(s, env)).collect();
    let args: Vec<String> = args.iter().map(|s| expand_k8s(s, env)).collect();
    if !command.is_empty() {
        return command.into_iter().chain(args).collect();
    }
    let args = if args.is_empty() {
        image.cmd.clone()
    } else {
        args
    };
    let entry = if image.entrypoint.len() == 1 && image.entrypoint[0].is_empty() {
        Vec::new()
    } else {
        image.entrypoint.clone()
    };
    entry.into_iter().chain(args).collect()
}

/// The kubelet's `$(VAR)` expansion (third_party/forked/golang/expansion): defined names are
/// replaced, others left as written, `$$` is `$`.
pub fn expand_k8s(s: &str, env: &[(String, String)]) -> String {
    let b = s.as_bytes();
    let mut out = String::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'$' && i + 1 < b.len() {
            if b[i + 1] == b'$' {
                out.push('$');
                i += 2;
                continue;
            }
            if b[i + 1] == b'(' {
                if let Some(end) = s[i + 2..].find(')') {
                    let name = &s[i + 2..i + 2 + end];
                    match env.iter().rev().find(|(n, _)| n == name) {
                        Some((_, v)) => out.push_str(v),
                        None => out.push_str(&s[i..i + 3 + end]),
                    }
                    i += 3 + end;
                    continue;
                }
            }
        }
        let ch = s[i..].chars().next().unwrap();
        out.push(ch);
        i += ch.len_utf8();
    }
    out
}

/// The files the pod's containers put into its emptyDir volumes: volume name -> path inside
/// the volume -> program. Shared by every container of the pod (clone the handle).
#[derive(Debug, Clone, Default)]
pub struct Volumes(Arc<Mutex<HashMap<String, BTreeMap<String, Program>>>>);

impl Volumes {
    /// The program at `path` inside emptyDir `volume`, if one was copied there.
    pub fn file(&self, volume: &str, path: &str) -> Option<Program> {
        self.0.lock().unwrap().get(volume)?.get(path).cloned()
    }
}

/// What kind of volume a mount is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VolumeKind {
    /// An emptyDir: its content is what the pod's containers wrote.
    EmptyDir,
    /// Any other source (`configMap`, `secret`, `persistentVolumeClaim`, `hostPath`...): its
    /// files are not modelled.
    Other(String),
}

/// One volumeMount of the container.
#[derive(Debug, Clone)]
pub struct Mount {
    /// `mountPath`.
    pub path: String,
    /// The volume's name.
    pub volume: String,
    /// Its source.
    pub kind: VolumeKind,
    /// `subPath` ("" for none).
    pub sub_path: String,
}

/// What the kubelet hands the runtime for one container.
#[derive(Debug, Clone, Default)]
pub struct Spec {
    /// `command`.
    pub command: Vec<String>,
    /// `args`.
    pub args: Vec<String>,
    /// `env` (name, value); later entries win.
    pub env: Vec<(String, String)>,
    /// `workingDir` ("": the image's, else `/`).
    pub working_dir: String,
    /// `stdin: true` (a shell waits on it).
    pub stdin: bool,
    /// `volumeMounts`, resolved against the pod's volumes.
    pub mounts: Vec<Mount>,
}

/// Why a container could not start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartError {
    /// No argv at all: the runtime's CreateContainerError.
    NoCommand,
    /// runc could not exec argv\[0\]: the detail after [`START_ERROR_PREFIX`] (exit 128).
    Exec(String),
}

impl StartError {
    /// The message the kubelet reports (`lastState.terminated.message`, the `Failed` Event).
    pub fn message(&self) -> String {
        match self {
            StartError::NoCommand => {
                "failed to generate container spec: no command specified".into()
            }
            StartError::Exec(detail) => format!("{START_ERROR_PREFIX}{detail}"),
        }
    }
}

#[derive(Debug, Clone)]
enum Node {
    File(Program),
    Dir,
    /// A file under a volume whose content is not modelled (the volume kind).
    Opaque(String),
}

/// A container's filesystem view: mounts over the image, plus what it wrote to its own rootfs.
#[derive(Debug)]
struct Fs {
    image: Arc<Image>,
    mounts: Vec<Mount>,
    volumes: Volumes,
    overlay: BTreeMap<String, Program>,
}

/// `/a/./b//c/../d` -> `/a/b/d` (relative paths against `cwd`).
fn clean(path: &str, cwd: &str) -> String {
    let full = if path.starts_with('/') {
        path.to_string()
    } else {
        format!("{cwd}/{path}")
    };
    let mut parts: Vec<&str> = Vec::new();
    for p in full.split('/') {
        match p {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    format!("/{}", parts.join("/"))
}

impl Fs {
    /// The mount `path` lies under (the longest mount path), and the path inside the volume.
    fn mount_of(&self, path: &str) -> Option<(&Mount, String)> {
        self.mounts
            .iter()
            .filter(|m| {
                let mp = clean(&m.path, "/");
                path == mp || mp == "/" || path.starts_with(&format!("{mp}/"))
            })
            .max_by_key(|m| clean(&m.path, "/").len())
            .map(|m| {
                let mp = clean(&m.path, "/");
                let rel = path[mp.len().min(path.len())..].trim_start_matches('/');
                let inner = [m.sub_path.trim_matches('/'), rel]
                    .iter()
                    .filter(|s| !s.is_empty())
                    .cloned()
                    .collect::<Vec<_>>()
                    .join("/");
                (m, inner)
            })
    }

    fn lookup(&self, path: &str) -> Option<Node> {
        if let Some((m, inner)) = self.mount_of(path) {
            if inner.is_empty() {
                return Some(Node::Dir);
            }
            return match &m.kind {
                VolumeKind::Other(kind) => Some(Node::Opaque(kind.clone())),
                VolumeKind::EmptyDir => {
                    let vols = self.volumes.0.lock().unwrap();
                    let files = vols.get(&m.volume)?;
                    if let Some(p) = files.get(&inner) {
                        return Some(Node::File(p.clone()));
                    }
                    let prefix = format!("{inner}/");
                    files
                        .keys()
                        .any(|k| k.starts_with(&prefix))
                        .then_some(Node::Dir)
                }
            };
        }
        if let Some(p) = self
            .overlay
            .get(path)
            .or_else(|| self.image.files.get(path))
        {
            return Some(Node::File(p.clone()));
        }
        let prefix = format!("{path}/");
        (self.image.is_dir(path) || self.overlay.keys().any(|k| k.starts_with(&prefix)))
            .then_some(Node::Dir)
    }

    /// Write `program` at `path` (false: its directory does not exist).
    fn write(&mut self, path: &str, program: Program) -> bool {
        let parent = match path.rfind('/') {
            Some(0) | None => "/".to_string(),
            Some(i) => path[..i].to_string(),
        };
        if !matches!(self.lookup(&parent), Some(Node::Dir)) {
            return false;
        }
        match self.mount_of(path) {
            Some((m, inner)) => {
                if m.kind == VolumeKind::EmptyDir {
                    self.volumes
                        .0
                        .lock()
                        .unwrap()
                        .entry(m.volume.clone())
                        .or_default()
                        .insert(inner, program);
                }
            }
            None => {
                self.overlay.insert(path.to_string(), program);
            }
        }
        true
    }
}

/// A running container's process tree, over the container's own simulated time (zero = when
/// it started).
#[derive(Debug)]
pub struct Process {
    fs: Fs,
    main: Proc,
    notes: Vec<String>,
    next_pid: u32,
    exit: Option<(Duration, i32)>,
}

/// The container's process from `spec` and `image` (a new process for every start); an error
/// when the runtime cannot start it.
pub fn start(image: &Arc<Image>, spec: &Spec, volumes: &Volumes) -> Result<Process, StartError> {
    let mut env: Vec<(String, String)> = image.env.clone();
    for (n, v) in &spec.env {
        env.retain(|(k, _)| k != n);
        env.push((n.clone(), v.clone()));
    }
    let argv = argv(image, &spec.command, &spec.args, &spec.env);
    if argv.is_empty() {
        return Err(StartError::NoCommand);
    }
    let cwd = if !spec.working_dir.is_empty() {
        spec.working_dir.clone()
    } else if !image.working_dir.is_empty() {
        image.working_dir.clone()
    } else {
        "/".to_string()
    };
    let mut fs = Fs {
        image: image.clone(),
        mounts: spec.mounts.clone(),
        volumes: volumes.clone(),
        overlay: BTreeMap::new(),
    };
    let a0 = &argv[0];
    let path_var = env
        .iter()
        .rev()
        .find(|(n, _)| n == "PATH")
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    let (target, path) = if a0.contains('/') {
        let p = clean(a0, &cwd);
        match fs.lookup(&p) {
            Some(Node::File(prog)) => (Target::Program(prog), p),
            Some(Node::Opaque(kind)) => (Target::Opaque(kind), p),
            Some(Node::Dir) => {
                return Err(StartError::Exec(format!(
                    "exec: \"{a0}\": permission denied: unknown"
                )))
            }
            None => {
                return Err(StartError::Exec(format!(
                    "exec: \"{a0}\": stat {a0}: no such file or directory: unknown"
                )))
            }
        }
    } else {
        let mut found = None;
        for dir in path_var.split(':').filter(|d| !d.is_empty()) {
            let p = clean(&format!("{dir}/{a0}"), &cwd);
            match fs.lookup(&p) {
                Some(Node::File(prog)) => {
                    found = Some((Target::Program(prog), p));
                    break;
                }
                Some(Node::Opaque(kind)) => {
                    found = Some((Target::Opaque(kind), p));
                    break;
                }
                _ => {}
            }
        }
        found.ok_or_else(|| {
            StartError::Exec(format!(
                "exec: \"{a0}\": executable file not found in $PATH: unknown"
            ))
        })?
    };
    let mut notes = Vec::new();
    let mut next_pid = 2;
    let vars: HashMap<String, String> = env.into_iter().collect();
    let main = {
        let mut cx = Cx {
            fs: &mut fs,
            notes: &mut notes,
            next_pid: &mut next_pid,
        };
        run_target(
            &target,
            &path,
            &argv,
            Duration::ZERO,
            &Ctx {
                vars: &vars,
                cwd: &cwd,
                stdin: spec.stdin,
                pid1: true,
            },
            &mut cx,
        )
    };
    Ok(Process {
        fs,
        main,
        notes,
        next_pid,
        exit: None,
    })
}

impl Process {
    /// Run until `t` (since the container started): the exit (when, code) once the process
    /// has exited by then.
    pub fn advance(&mut self, t: Duration) -> Option<(Duration, i32)> {
        if self.exit.is_none() {
            let mut cx = Cx {
                fs: &mut self.fs,
                notes: &mut self.notes,
                next_pid: &mut self.next_pid,
            };
            self.exit = self.main.advance(t, &mut cx);
        }
        self.exit
    }

    /// The kubelet sends SIGTERM at `t` (the runtime signals PID 1 only).
    pub fn sigterm(&mut self, t: Duration) {
        if self.advance(t).is_some() {
            return;
        }
        let mut cx = Cx {
            fs: &mut self.fs,
            notes: &mut self.notes,
            next_pid: &mut self.next_pid,
        };
        self.main.signal(SIGTERM, t, &mut cx);
    }

    /// What the model had to assume (see "Loud rules"), once each.
    pub fn take_notes(&mut self) -> Vec<String> {
        std::mem::take(&mut self.notes)
    }
}

/// Mutable state a process tree shares.
struct Cx<'a> {
    fs: &'a mut Fs,
    notes: &'a mut Vec<String>,
    next_pid: &'a mut u32,
}

/// What a spawned process inherits.
struct Ctx<'a> {
    vars: &'a HashMap<String, String>,
    cwd: &'a str,
    stdin: bool,
    pid1: bool,
}

#[derive(Debug, Clone)]
enum Target {
    Program(Program),
    Opaque(String),
}

/// A program that does not interpret anything: ends at a time (or never) with a code, and
/// reacts to SIGTERM one way.
#[derive(Debug)]
struct Simple {
    ends: Option<Duration>,
    code: i32,
    /// Some(code): a handler exits with it at once; None: the default action (PID 1 ignores,
    /// another process dies with 143).
    on_term: Option<i32>,
    pid1: bool,
}

#[derive(Debug)]
enum Proc {
    Simple(Simple),
    Shell(Box<Shell>),
}

impl Proc {
    fn simple(
        now: Duration,
        after: Option<Duration>,
        code: i32,
        on_term: Option<i32>,
        pid1: bool,
    ) -> Proc {
        Proc::Simple(Simple {
            ends: after.map(|d| now + d),
            code,
            on_term,
            pid1,
        })
    }

    fn exits(now: Duration, code: i32, pid1: bool) -> Proc {
        Proc::simple(now, Some(Duration::ZERO), code, None, pid1)
    }

    fn forever(now: Duration, pid1: bool) -> Proc {
        Proc::simple(now, None, 0, None, pid1)
    }

    fn advance(&mut self, t: Duration, cx: &mut Cx) -> Option<(Duration, i32)> {
        loop {
            match self {
                Proc::Simple(s) => {
                    return s.ends.filter(|e| *e <= t).map(|e| (e, s.code));
                }
                Proc::Shell(sh) => {
                    let r = sh.run(t, cx);
                    if let Some(next) = sh.replaced.take() {
                        *self = *next;
                        continue;
                    }
                    return r;
                }
            }
        }
    }

    fn signal(&mut self, sig: i32, at: Duration, cx: &mut Cx) {
        if self.advance(at, cx).is_some() {
            return;
        }
        match self {
            Proc::Simple(s) => match s.on_term {
                Some(code) => {
                    s.ends = Some(at);
                    s.code = code;
                }
                None if !s.pid1 => {
                    s.ends = Some(at);
                    s.code = 128 + sig;
                }
                None => {}
            },
            Proc::Shell(sh) => sh.signal(sig, at, cx),
        }
    }
}

/// Run a resolved program.
fn run_target(
    target: &Target,
    path: &str,
    argv: &[String],
    now: Duration,
    ctx: &Ctx,
    cx: &mut Cx,
) -> Proc {
    let pid1 = ctx.pid1;
    match target {
        Target::Opaque(kind) => {
            cx.notes.push(format!(
                "{path} is on a {kind} volume, whose files the fake does not model: assumed to run until killed, ignoring SIGTERM"
            ));
            Proc::forever(now, pid1)
        }
        Target::Program(Program::Pause) => {
            if argv.get(1).map(String::as_str) == Some("-v") {
                Proc::exits(now, 0, pid1)
            } else {
                Proc::simple(now, None, 0, Some(0), pid1)
            }
        }
        Target::Program(Program::Service) => Proc::simple(now, None, 0, Some(0), pid1),
        Target::Program(Program::PgIsReady) => Proc::exits(now, 2, pid1),
        Target::Program(Program::Script(text)) => shell_proc(text, false, now, ctx, cx),
        Target::Program(Program::Busybox) => {
            let base = argv[0].rsplit('/').next().unwrap_or("");
            let (applet, args) = if base == "busybox" {
                match argv.get(1) {
                    Some(a) => (a.as_str(), &argv[2..]),
                    None => return Proc::exits(now, 0, pid1),
                }
            } else {
                (base, &argv[1..])
            };
            run_applet(applet, args, now, ctx, cx)
        }
    }
}

fn shell_proc(script: &str, errexit: bool, now: Duration, ctx: &Ctx, cx: &mut Cx) -> Proc {
    match Shell::parse(script, errexit, now, ctx) {
        Ok(sh) => Proc::Shell(Box::new(sh)),
        Err(why) => {
            cx.notes.push(format!(
                "sh script outside the modelled subset ({why}): assumed to run until killed, ignoring SIGTERM: {script:?}"
            ));
            Proc::forever(now, ctx.pid1)
        }
    }
}

/// busybox sleep's argument: `N`, `N.M`, with `s`/`m`/`h`/`d`; `inf`/`infinity`: None.
fn parse_sleep(args: &[String]) -> Result<Option<Duration>, ()> {
    if args.is_empty() {
        return Err(());
    }
    let mut total = Duration::ZERO;
    for a in args {
        if a == "inf" || a == "infinity" {
            return Ok(None);
        }
        let (num, mult) = match a.chars().last() {
            Some('s') => (&a[..a.len() - 1], 1.0),
            Some('m') => (&a[..a.len() - 1], 60.0),
            Some('h') => (&a[..a.len() - 1], 3600.0),
            Some('d') => (&a[..a.len() - 1], 86400.0),
            _ => (a.as_str(), 1.0),
        };
        let n: f64 = num.parse().map_err(|_| ())?;
        if n.is_nan() || n < 0.0 || !n.is_finite() {
            return Err(());
        }
        total += Duration::from_secs_f64(n * mult);
    }
    Ok(Some(total))
}

/// Applets that exit 0 at once (their arguments unchecked).
const INSTANT_APPLETS: &[&str] = &[
    "echo", "printf", "mkdir", "touch", "chmod", "chown", "ln", "rm", "rmdir", "ls", "cat",
    "printenv", "date", "hostname", "id", "pwd", "uname", "whoami", "basename", "dirname", "sync",
    "head", "wc",
];

fn run_applet(applet: &str, args: &[String], now: Duration, ctx: &Ctx, cx: &mut Cx) -> Proc {
    let pid1 = ctx.pid1;
    if !BUSYBOX_APPLETS.contains(&applet) {
        // busybox: "<name>: applet not found"
        return Proc::exits(now, 127, pid1);
    }
    match applet {
        "sh" | "ash" => {
            let mut errexit = false;
            let mut script = None;
            let mut file = None;
            let mut i = 0;
            let mut want_c = false;
            while i < args.len() {
                let a = &args[i];
                if a == "--" {
                    i += 1;
                    break;
                }
                if let Some(flags) = a.strip_prefix('-').filter(|f| !f.is_empty()) {
                    for f in flags.chars() {
                        match f {
                            'c' => want_c = true,
                            'e' => errexit = true,
                            _ => {}
                        }
                    }
                    i += 1;
                    continue;
                }
                if let Some(f) = a.strip_prefix('+') {
                    if f.contains('e') {
                        errexit = false;
                    }
                    i += 1;
                    continue;
                }
                break;
            }
            if i < args.len() {
                if want_c {
                    script = Some(args[i].clone());
                } else {
                    file = Some(args[i].clone());
                }
            }
            if let Some(s) = script {
                return shell_proc(&s, errexit, now, ctx, cx);
            }
            if want_c {
                // sh: -c requires an argument
                return Proc::exits(now, 2, pid1);
            }
            if let Some(f) = file {
                let p = clean(&f, ctx.cwd);
                return match cx.fs.lookup(&p) {
                    Some(Node::File(Program::Busybox)) | Some(Node::Dir) => {
                        cx.notes.push(format!(
                            "sh {f}: not a shell script the fake can read: assumed to run until killed, ignoring SIGTERM"
                        ));
                        Proc::forever(now, pid1)
                    }
                    Some(Node::File(prog)) => run_target(
                        &Target::Program(prog),
                        &p,
                        std::slice::from_ref(&p),
                        now,
                        ctx,
                        cx,
                    ),
                    Some(Node::Opaque(kind)) => run_target(
                        &Target::Opaque(kind),
                        &p,
                        std::slice::from_ref(&p),
                        now,
                        ctx,
                        cx,
                    ),
                    // sh: can't open 'f': No such file or directory
                    None => Proc::exits(now, 2, pid1),
                };
            }
            if ctx.stdin {
                Proc::forever(now, pid1)
            } else {
                Proc::exits(now, 0, pid1)
            }
        }
        "sleep" => match parse_sleep(args) {
            Ok(d) => Proc::simple(now, d, 0, None, pid1),
            Err(()) => Proc::exits(now, 1, pid1),
        },
        "usleep" => match args.first().and_then(|a| a.parse::<u64>().ok()) {
            Some(us) => Proc::simple(now, Some(Duration::from_micros(us)), 0, None, pid1),
            None => Proc::exits(now, 1, pid1),
        },
        "true" => Proc::exits(now, 0, pid1),
        "false" => Proc::exits(now, 1, pid1),
        "cp" | "mv" => Proc::exits(now, copy(args, ctx.cwd, cx), pid1),
        "test" | "[" | "[[" => {
            let mut a: Vec<&str> = args.iter().map(String::as_str).collect();
            if applet != "test" {
                let close = if applet == "[" { "]" } else { "]]" };
                if a.last() != Some(&close) {
                    return Proc::exits(now, 2, pid1);
                }
                a.pop();
            }
            Proc::exits(now, test(&a, ctx.cwd, cx.fs), pid1)
        }
        "tail" | "httpd" if args.iter().any(|a| a == "-f" || a == "-F") => Proc::forever(now, pid1),
        "tail" | "httpd" | "kill" => Proc::exits(now, 0, pid1),
        "env" if args.iter().all(|a| a.contains('=') || a == "-i") => Proc::exits(now, 0, pid1),
        a if INSTANT_APPLETS.contains(&a) => Proc::exits(now, 0, pid1),
        other => {
            cx.notes.push(format!(
                "busybox {other} is not modelled: assumed to run until killed, ignoring SIGTERM"
            ));
            Proc::forever(now, pid1)
        }
    }
}

/// `cp [-options] SRC... DST`: 0, or 1 when a source is missing or the destination's directory
/// does not exist.
fn copy(args: &[String], cwd: &str, cx: &mut Cx) -> i32 {
    let operands: Vec<&String> = args.iter().filter(|a| !a.starts_with('-')).collect();
    if operands.len() < 2 {
        return 1;
    }
    let (dst, srcs) = operands.split_last().unwrap();
    let dst = clean(dst, cwd);
    let dst_is_dir = matches!(cx.fs.lookup(&dst), Some(Node::Dir));
    let mut status = 0;
    for s in srcs {
        let src = clean(s, cwd);
        let program = match cx.fs.lookup(&src) {
            Some(Node::File(p)) => Some(p),
            Some(Node::Dir) | Some(Node::Opaque(_)) => None, // not modelled: nothing runnable copied
            None => {
                status = 1;
                continue;
            }
        };
        let target = if dst_is_dir {
            format!(
                "{}/{}",
                dst.trim_end_matches('/'),
                src.rsplit('/').next().unwrap_or("")
            )
        } else {
            dst.clone()
        };
        if let Some(p) = program {
            if !cx.fs.write(&target, p) {
                status = 1;
            }
        }
    }
    status
}

/// `test` with the operators listed in the module docs: 0 true, 1 false, 2 error.
fn test(a: &[&str], cwd: &str, fs: &Fs) -> i32 {
    fn eval(a: &[&str], cwd: &str, fs: &Fs) -> Option<bool> {
        match a {
            [] => Some(false),
            ["!", rest @ ..] => eval(rest, cwd, fs).map(|b| !b),
            [s] => Some(!s.is_empty()),
            ["-n", s] => Some(!s.is_empty()),
            ["-z", s] => Some(s.is_empty()),
            [op @ ("-e" | "-f" | "-d" | "-x" | "-s" | "-r" | "-w"), p] => {
                let n = fs.lookup(&clean(p, cwd));
                Some(match *op {
                    "-d" => matches!(n, Some(Node::Dir)),
                    "-f" | "-x" | "-s" => matches!(n, Some(Node::File(_)) | Some(Node::Opaque(_))),
                    _ => n.is_some(),
                })
            }
            [l, "=" | "==", r] => Some(l == r),
            [l, "!=", r] => Some(l != r),
            [l, op, r] => {
                let (l, r): (i64, i64) = (l.parse().ok()?, r.parse().ok()?);
                match *op {
                    "-eq" => Some(l == r),
                    "-ne" => Some(l != r),
                    "-lt" => Some(l < r),
                    "-le" => Some(l <= r),
                    "-gt" => Some(l > r),
                    "-ge" => Some(l >= r),
                    _ => None,
                }
            }
            _ => None,
        }
    }
    match eval(a, cwd, fs) {
        Some(true) => 0,
        Some(false) => 1,
        None => 2,
    }
}

// ---------------------------------------------------------------------------------------
// The shell: tokens, a parser for the subset, and an interpreter over simulated time.

/// One piece of a word.
#[derive(Debug, Clone)]
enum Part {
    /// Literal text; `quoted` text is not split.
    Lit(String, bool),
    /// `$NAME`, `${NAME}`, `${NAME:-w}` (colon: also when empty), `${NAME-w}`.
    Var {
        name: String,
        default: Option<(bool, Vec<Part>)>,
        quoted: bool,
    },
}

type Word = Vec<Part>;

#[derive(Debug, Clone)]
enum Tok {
    Word(Word),
    Op(&'static str),
}

fn plain(w: &Word) -> Option<&str> {
    match w.as_slice() {
        [Part::Lit(s, false)] => Some(s),
        _ => None,
    }
}

struct Lexer<'a> {
    s: &'a [u8],
    src: &'a str,
    i: usize,
}

impl Lexer<'_> {
    fn tokens(src: &str) -> Result<Vec<Tok>, String> {
        let mut lx = Lexer {
            s: src.as_bytes(),
            src,
            i: 0,
        };
        let mut out = Vec::new();
        loop {
            // blanks, comments, line continuations
            while lx.i < lx.s.len() {
                match lx.s[lx.i] {
                    b' ' | b'\t' | b'\r' => lx.i += 1,
                    b'\\' if lx.s.get(lx.i + 1) == Some(&b'\n') => lx.i += 2,
                    b'#' => {
                        while lx.i < lx.s.len() && lx.s[lx.i] != b'\n' {
                            lx.i += 1;
                        }
                    }
                    _ => break,
                }
            }
            if lx.i >= lx.s.len() {
                return Ok(out);
            }
            let rest = &lx.src[lx.i..];
            let ops: &[&'static str] = &[
                "&&", "||", ";;", "<<", ">>", ">&", "<&", "&>", ">|", "\n", ";", "&", "|", "(",
                ")", ">", "<",
            ];
            if let Some(op) = ops.iter().find(|o| rest.starts_with(**o)) {
                lx.i += op.len();
                out.push(Tok::Op(op));
                continue;
            }
            // `2>` / `2>&1`: an fd number right before a redirection is part of it
            let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
            if digits > 0 && matches!(rest.as_bytes().get(digits), Some(b'>' | b'<')) {
                lx.i += digits;
                continue;
            }
            out.push(Tok::Word(lx.word()?));
        }
    }

    fn word(&mut self) -> Result<Word, String> {
        let mut parts: Word = Vec::new();
        let mut lit = String::new();
        let flush = |lit: &mut String, parts: &mut Word, quoted: bool| {
            if !lit.is_empty() || quoted {
                parts.push(Part::Lit(std::mem::take(lit), quoted));
            }
        };
        while self.i < self.s.len() {
            let c = self.s[self.i];
            match c {
                b' ' | b'\t' | b'\r' | b'\n' | b';' | b'&' | b'|' | b'<' | b'>' | b'(' | b')' => {
                    break
                }
                b'\'' => {
                    flush(&mut lit, &mut parts, false);
                    let end = self.src[self.i + 1..]
                        .find('\'')
                        .ok_or("unterminated quote")?;
                    parts.push(Part::Lit(
                        self.src[self.i + 1..self.i + 1 + end].to_string(),
                        true,
                    ));
                    self.i += end + 2;
                }
                b'"' => {
                    flush(&mut lit, &mut parts, false);
                    self.i += 1;
                    let mut q = String::new();
                    let mut any = false;
                    loop {
                        let Some(&c) = self.s.get(self.i) else {
                            return Err("unterminated quote".into());
                        };
                        match c {
                            b'"' => {
                                self.i += 1;
                                break;
                            }
                            b'\\'
                                if matches!(
                                    self.s.get(self.i + 1),
                                    Some(b'"' | b'\\' | b'$' | b'`' | b'\n')
                                ) =>
                            {
                                if self.s[self.i + 1] != b'\n' {
                                    q.push(self.s[self.i + 1] as char);
                                }
                                self.i += 2;
                            }
                            b'$' => {
                                if let Some(v) = self.dollar(true)? {
                                    parts.push(Part::Lit(std::mem::take(&mut q), true));
                                    any = true;
                                    parts.push(v);
                                } else {
                                    q.push('$');
                                }
                            }
                            b'`' => return Err("command substitution".into()),
                            _ => {
                                let ch = self.src[self.i..].chars().next().unwrap();
                                q.push(ch);
                                self.i += ch.len_utf8();
                            }
                        }
                    }
                    if !q.is_empty() || !any {
                        parts.push(Part::Lit(q, true));
                    }
                }
                b'\\' => {
                    flush(&mut lit, &mut parts, false);
                    if let Some(ch) = self.src[self.i + 1..].chars().next() {
                        parts.push(Part::Lit(ch.to_string(), true));
                        self.i += 1 + ch.len_utf8();
                    } else {
                        self.i += 1;
                    }
                }
                b'$' => {
                    if let Some(v) = self.dollar(false)? {
                        flush(&mut lit, &mut parts, false);
                        parts.push(v);
                    } else {
                        lit.push('$');
                    }
                }
                b'`' => return Err("command substitution".into()),
                _ => {
                    let ch = self.src[self.i..].chars().next().unwrap();
                    lit.push(ch);
                    self.i += ch.len_utf8();
                }
            }
        }
        flush(&mut lit, &mut parts, false);
        Ok(parts)
    }

    /// At a `$`: the expansion, or None for a literal `$` (consumed).
    fn dollar(&mut self, quoted: bool) -> Result<Option<Part>, String> {
        let rest = &self.src[self.i + 1..];
        let special = |c: char| matches!(c, '?' | '!' | '$' | '#' | '@' | '*' | '0'..='9');
        if rest.starts_with('(') {
            return Err(if rest.starts_with("((") {
                "arithmetic expansion".into()
            } else {
                "command substitution".into()
            });
        }
        if let Some(body) = rest.strip_prefix('{') {
            let end = body.find('}').ok_or("unterminated ${")?;
            let inner = &body[..end];
            self.i += 1 + 1 + end + 1;
            let name_len = match inner.chars().next() {
                Some(c) if special(c) => 1,
                _ => inner
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .count(),
            };
            if name_len == 0 {
                return Err(format!("parameter expansion ${{{inner}}}"));
            }
            let (name, op) = inner.split_at(name_len);
            let default = if op.is_empty() {
                None
            } else if let Some(w) = op.strip_prefix(":-") {
                Some((true, default_word(w, quoted)?))
            } else if let Some(w) = op.strip_prefix('-') {
                Some((false, default_word(w, quoted)?))
            } else {
                return Err(format!("parameter expansion ${{{inner}}}"));
            };
            return Ok(Some(Part::Var {
                name: name.to_string(),
                default,
                quoted,
            }));
        }
        let first = rest.chars().next();
        match first {
            Some(c) if special(c) => {
                self.i += 2;
                Ok(Some(Part::Var {
                    name: c.to_string(),
                    default: None,
                    quoted,
                }))
            }
            Some(c) if c.is_ascii_alphabetic() || c == '_' => {
                let n = rest
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .count();
                self.i += 1 + n;
                Ok(Some(Part::Var {
                    name: rest[..n].to_string(),
                    default: None,
                    quoted,
                }))
            }
            _ => {
                self.i += 1;
                Ok(None)
            }
        }
    }
}

/// The word of `${NAME:-word}`.
fn default_word(w: &str, quoted: bool) -> Result<Word, String> {
    if !w.contains('$') {
        return Ok(vec![Part::Lit(w.to_string(), quoted)]);
    }
    let mut sub = Lexer {
        s: w.as_bytes(),
        src: w,
        i: 0,
    };
    let parts = sub.word()?;
    if sub.i < w.len() {
        return Err(format!("parameter expansion default {w:?}"));
    }
    Ok(parts)
}

/// The parsed script.
#[derive(Debug, Clone)]
enum Ast {
    Simple {
        assigns: Vec<(String, Word)>,
        words: Vec<Word>,
        background: bool,
    },
    AndOr(Box<Ast>, bool, Box<Ast>),
    Not(Box<Ast>),
    Loop {
        until: bool,
        cond: Vec<Ast>,
        body: Vec<Ast>,
    },
    If {
        cond: Vec<Ast>,
        then: Vec<Ast>,
        els: Vec<Ast>,
    },
    Group(Vec<Ast>),
}

struct Parser {
    toks: Vec<Tok>,
    i: usize,
}

const KEYWORDS: &[&str] = &[
    "while", "until", "do", "done", "if", "then", "elif", "else", "fi", "{", "}", "!", "for",
    "case", "esac", "in", "function", "select",
];

impl Parser {
    fn peek_kw(&self) -> Option<&str> {
        match self.toks.get(self.i) {
            Some(Tok::Word(w)) => plain(w).filter(|s| KEYWORDS.contains(s)),
            _ => None,
        }
    }

    fn peek_op(&self) -> Option<&'static str> {
        match self.toks.get(self.i) {
            Some(Tok::Op(o)) => Some(o),
            _ => None,
        }
    }

    fn expect_kw(&mut self, kw: &str) -> Result<(), String> {
        if self.peek_kw() == Some(kw) {
            self.i += 1;
            Ok(())
        } else {
            Err(format!("expected `{kw}`"))
        }
    }

    fn skip_newlines(&mut self) {
        while self.peek_op() == Some("\n") {
            self.i += 1;
        }
    }

    /// Commands until EOF or one of `stop` (a keyword in command position), not consumed.
    fn list(&mut self, stop: &[&str]) -> Result<Vec<Ast>, String> {
        let mut out = Vec::new();
        loop {
            while matches!(self.peek_op(), Some("\n" | ";")) {
                self.i += 1;
            }
            if self.i >= self.toks.len() || self.peek_kw().is_some_and(|k| stop.contains(&k)) {
                return Ok(out);
            }
            if let Some(op) = self.peek_op() {
                return Err(format!("unexpected `{}`", op.escape_debug()));
            }
            let mut node = self.and_or()?;
            match self.peek_op() {
                Some("&") => {
                    self.i += 1;
                    match &mut node {
                        Ast::Simple { background, .. } => *background = true,
                        _ => return Err("background job of a compound command".into()),
                    }
                }
                Some(";" | "\n") => self.i += 1,
                None => {}
                Some(op) => return Err(format!("`{}`", op.escape_debug())),
            }
            out.push(node);
        }
    }

    fn and_or(&mut self) -> Result<Ast, String> {
        let mut left = self.pipeline()?;
        loop {
            let and = match self.peek_op() {
                Some("&&") => true,
                Some("||") => false,
                _ => return Ok(left),
            };
            self.i += 1;
            self.skip_newlines();
            let right = self.pipeline()?;
            left = Ast::AndOr(Box::new(left), and, Box::new(right));
        }
    }

    fn pipeline(&mut self) -> Result<Ast, String> {
        let not = self.peek_kw() == Some("!");
        if not {
            self.i += 1;
        }
        let c = self.command()?;
        if self.peek_op() == Some("|") {
            return Err("pipes".into());
        }
        Ok(if not { Ast::Not(Box::new(c)) } else { c })
    }

    fn command(&mut self) -> Result<Ast, String> {
        match self.peek_kw() {
            Some(kw @ ("while" | "until")) => {
                let until = kw == "until";
                self.i += 1;
                let cond = self.list(&["do"])?;
                self.expect_kw("do")?;
                let body = self.list(&["done"])?;
                self.expect_kw("done")?;
                self.redirections()?;
                Ok(Ast::Loop { until, cond, body })
            }
            Some("if") => {
                self.i += 1;
                self.if_rest()
            }
            Some("{") => {
                self.i += 1;
                let body = self.list(&["}"])?;
                self.expect_kw("}")?;
                self.redirections()?;
                Ok(Ast::Group(body))
            }
            Some(kw @ ("for" | "case" | "function" | "select")) => Err(format!("`{kw}`")),
            Some(kw) => Err(format!("unexpected `{kw}`")),
            None => self.simple(),
        }
    }

    fn if_rest(&mut self) -> Result<Ast, String> {
        let cond = self.list(&["then"])?;
        self.expect_kw("then")?;
        let then = self.list(&["elif", "else", "fi"])?;
        let els = match self.peek_kw() {
            Some("elif") => {
                self.i += 1;
                vec![self.if_rest()?]
            }
            Some("else") => {
                self.i += 1;
                let e = self.list(&["fi"])?;
                self.expect_kw("fi")?;
                e
            }
            _ => {
                self.expect_kw("fi")?;
                Vec::new()
            }
        };
        self.redirections()?;
        Ok(Ast::If { cond, then, els })
    }

    /// Redirections after a compound command: parsed, ignored.
    fn redirections(&mut self) -> Result<(), String> {
        while let Some(op) = self.peek_op() {
            if !matches!(op, ">" | ">>" | "<" | ">&" | "<&" | "&>" | ">|") {
                break;
            }
            self.i += 1;
            match self.toks.get(self.i) {
                Some(Tok::Word(_)) => self.i += 1,
                _ => return Err("redirection without a target".into()),
            }
        }
        if self.peek_op() == Some("<<") {
            return Err("here-documents".into());
        }
        Ok(())
    }

    fn simple(&mut self) -> Result<Ast, String> {
        let mut assigns = Vec::new();
        let mut words: Vec<Word> = Vec::new();
        loop {
            match self.toks.get(self.i) {
                Some(Tok::Word(w)) => {
                    let w = w.clone();
                    self.i += 1;
                    if words.is_empty() {
                        if let Some(Part::Lit(s, false)) = w.first() {
                            if let Some((name, v)) = s.split_once('=') {
                                if !name.is_empty()
                                    && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                                    && !name.starts_with(|c: char| c.is_ascii_digit())
                                {
                                    let mut value: Word = vec![Part::Lit(v.to_string(), false)];
                                    value.extend(w[1..].iter().cloned());
                                    assigns.push((name.to_string(), value));
                                    continue;
                                }
                            }
                        }
                    }
                    words.push(w);
                }
                Some(Tok::Op(op))
                    if matches!(*op, ">" | ">>" | "<" | ">&" | "<&" | "&>" | ">|") =>
                {
                    self.i += 1;
                    match self.toks.get(self.i) {
                        Some(Tok::Word(_)) => self.i += 1,
                        _ => return Err("redirection without a target".into()),
                    }
                }
                Some(Tok::Op("<<")) => return Err("here-documents".into()),
                Some(Tok::Op("(")) => {
                    return Err(if words.is_empty() {
                        "subshells".into()
                    } else {
                        "functions".into()
                    })
                }
                _ => break,
            }
        }
        if words.is_empty() && assigns.is_empty() {
            return Err("empty command".into());
        }
        Ok(Ast::Simple {
            assigns,
            words,
            background: false,
        })
    }
}

#[derive(Debug, Clone)]
enum Ins {
    Cmd {
        assigns: Vec<(String, Word)>,
        words: Vec<Word>,
        background: bool,
        /// Subject to `set -e` (not a condition, not left of `&&`/`||`, not under `!`).
        checked: bool,
    },
    Jump(usize),
    JumpIfFail(usize),
    JumpIfOk(usize),
    Not,
    /// A loop ended: status 0 (POSIX: the last body's status; 0 here).
    Status0,
}

fn compile(nodes: &[Ast], checked: bool, out: &mut Vec<Ins>) {
    for n in nodes {
        compile_one(n, checked, out);
    }
}

fn compile_one(n: &Ast, checked: bool, out: &mut Vec<Ins>) {
    match n {
        Ast::Simple {
            assigns,
            words,
            background,
        } => out.push(Ins::Cmd {
            assigns: assigns.clone(),
            words: words.clone(),
            background: *background,
            checked,
        }),
        Ast::AndOr(l, and, r) => {
            compile_one(l, false, out);
            let j = out.len();
            out.push(Ins::Jump(0));
            compile_one(r, checked, out);
            let end = out.len();
            out[j] = if *and {
                Ins::JumpIfFail(end)
            } else {
                Ins::JumpIfOk(end)
            };
        }
        Ast::Not(c) => {
            compile_one(c, false, out);
            out.push(Ins::Not);
        }
        Ast::Loop { until, cond, body } => {
            let top = out.len();
            compile(cond, false, out);
            let j = out.len();
            out.push(Ins::Jump(0));
            compile(body, checked, out);
            out.push(Ins::Jump(top));
            let end = out.len();
            out[j] = if *until {
                Ins::JumpIfOk(end)
            } else {
                Ins::JumpIfFail(end)
            };
            out.push(Ins::Status0);
        }
        Ast::If { cond, then, els } => {
            compile(cond, false, out);
            let j = out.len();
            out.push(Ins::Jump(0));
            compile(then, checked, out);
            let j2 = out.len();
            out.push(Ins::Jump(0));
            let else_at = out.len();
            compile(els, checked, out);
            let end = out.len();
            out[j] = Ins::JumpIfFail(else_at);
            out[j2] = Ins::Jump(end);
        }
        Ast::Group(body) => compile(body, checked, out),
    }
}

fn parse_program(src: &str) -> Result<Vec<Ins>, String> {
    let toks = Lexer::tokens(src)?;
    let mut p = Parser { toks, i: 0 };
    let ast = p.list(&[])?;
    if p.i < p.toks.len() {
        return Err("unexpected input".into());
    }
    let mut out = Vec::new();
    compile(&ast, true, &mut out);
    Ok(out)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Sig {
    Term,
    Int,
    Exit,
}

fn parse_sig(s: &str) -> Option<Option<Sig>> {
    let s = s.trim_start_matches("SIG");
    Some(match s {
        "TERM" | "15" => Some(Sig::Term),
        "INT" | "2" => Some(Sig::Int),
        "EXIT" | "0" => Some(Sig::Exit),
        "HUP" | "1" | "QUIT" | "3" | "USR1" | "10" | "USR2" | "12" | "PIPE" | "13" | "ALRM"
        | "14" | "CHLD" | "17" | "WINCH" => None,
        _ => return None,
    })
}

#[derive(Debug, Clone, Copy)]
enum Trap {
    Ignore,
    Run(usize),
}

#[derive(Debug)]
struct Frame {
    prog: usize,
    pc: usize,
    /// A trap's frame: `$?` to restore after it.
    saved: Option<i32>,
}

#[derive(Debug)]
enum Block {
    None,
    /// A foreground command (signals do not reach it); `set -e` applies to it when checked.
    Fg(Box<Proc>, bool),
    /// `wait` for these background jobs (None: all).
    Wait(Option<Vec<u32>>, bool),
    /// A busy loop: time never passes, traps run at once.
    Spin,
    /// Outside the subset at run time: runs until killed, ignores signals.
    Stuck,
}

#[derive(Debug)]
struct Shell {
    progs: Vec<Vec<Ins>>,
    frames: Vec<Frame>,
    vars: HashMap<String, String>,
    cwd: String,
    status: i32,
    errexit: bool,
    traps: HashMap<Sig, Trap>,
    jobs: Vec<(u32, Proc)>,
    last_job: Option<u32>,
    block: Block,
    pending: Vec<Sig>,
    now: Duration,
    pid1: bool,
    stdin: bool,
    /// Running the EXIT trap on the way out with this status.
    exiting: Option<i32>,
    exited: Option<(Duration, i32)>,
    replaced: Option<Box<Proc>>,
    spin: usize,
}

impl Shell {
    fn parse(src: &str, errexit: bool, now: Duration, ctx: &Ctx) -> Result<Shell, String> {
        let main = parse_program(src)?;
        Ok(Shell {
            progs: vec![main],
            frames: vec![Frame {
                prog: 0,
                pc: 0,
                saved: None,
            }],
            vars: ctx.vars.clone(),
            cwd: ctx.cwd.to_string(),
            status: 0,
            errexit,
            traps: HashMap::new(),
            jobs: Vec::new(),
            last_job: None,
            block: Block::None,
            pending: Vec::new(),
            now,
            pid1: ctx.pid1,
            stdin: ctx.stdin,
            exiting: None,
            exited: None,
            replaced: None,
            spin: 0,
        })
    }

    fn var(&self, name: &str) -> Option<String> {
        match name {
            "?" => Some(self.status.to_string()),
            "!" => self.last_job.map(|p| p.to_string()),
            "$" => Some(if self.pid1 { "1".into() } else { "2".into() }),
            "#" => Some("0".into()),
            "0" => Some("sh".into()),
            "@" | "*" => Some(String::new()),
            n if n.chars().all(|c| c.is_ascii_digit()) => None,
            n => self.vars.get(n).cloned(),
        }
    }

    /// Expand words into fields (unquoted expansions split on blanks; no pathname expansion).
    fn expand(&self, words: &[Word]) -> Vec<String> {
        let mut out = Vec::new();
        for w in words {
            let mut fields: Vec<String> = Vec::new();
            let mut cur = String::new();
            let mut has = false;
            self.expand_parts(w, &mut fields, &mut cur, &mut has);
            if has || !cur.is_empty() {
                fields.push(cur);
            }
            out.extend(fields);
        }
        out
    }

    fn expand_parts(&self, w: &[Part], fields: &mut Vec<String>, cur: &mut String, has: &mut bool) {
        for p in w {
            match p {
                Part::Lit(s, quoted) => {
                    cur.push_str(s);
                    *has |= *quoted || !s.is_empty();
                }
                Part::Var {
                    name,
                    default,
                    quoted,
                } => {
                    let v = self.var(name);
                    let use_default = match (default, &v) {
                        (Some((true, _)), Some(v)) => v.is_empty(),
                        (Some(_), None) => true,
                        _ => false,
                    };
                    if use_default {
                        let (_, d) = default.as_ref().unwrap();
                        self.expand_parts(d, fields, cur, has);
                        continue;
                    }
                    let v = v.unwrap_or_default();
                    if *quoted {
                        cur.push_str(&v);
                        *has = true;
                    } else {
                        let mut pieces = v
                            .split([' ', '\t', '\n'])
                            .filter(|s| !s.is_empty())
                            .peekable();
                        if v.starts_with([' ', '\t', '\n']) && (*has || !cur.is_empty()) {
                            fields.push(std::mem::take(cur));
                            *has = false;
                        }
                        while let Some(piece) = pieces.next() {
                            cur.push_str(piece);
                            *has = true;
                            if pieces.peek().is_some() {
                                fields.push(std::mem::take(cur));
                            }
                        }
                        if v.ends_with([' ', '\t', '\n']) && (*has || !cur.is_empty()) {
                            fields.push(std::mem::take(cur));
                            *has = false;
                        }
                    }
                }
            }
        }
    }

    fn ctx(&self) -> (HashMap<String, String>, String) {
        (self.vars.clone(), self.cwd.clone())
    }

    /// Leave with `code` (running the EXIT trap first, once).
    fn exit(&mut self, code: i32) {
        if self.exiting.is_none() {
            if let Some(Trap::Run(p)) = self.traps.get(&Sig::Exit).copied() {
                self.exiting = Some(code);
                self.status = code;
                self.frames.clear();
                self.frames.push(Frame {
                    prog: p,
                    pc: 0,
                    saved: None,
                });
                return;
            }
        }
        self.exited = Some((self.now, code));
        self.frames.clear();
        self.jobs.clear();
    }

    /// The end of a background job, if it has ended by `t`.
    fn job_end(&mut self, pid: u32, t: Duration, cx: &mut Cx) -> Option<(Duration, i32)> {
        let j = self.jobs.iter_mut().find(|(p, _)| *p == pid)?;
        j.1.advance(t, cx)
    }

    /// Run a trap's action now, or queue it while a foreground command runs.
    fn deliver(&mut self, sig: Sig) {
        match self.traps.get(&sig).copied() {
            Some(Trap::Run(p)) => {
                let saved = self.status;
                self.frames.push(Frame {
                    prog: p,
                    pc: 0,
                    saved: Some(saved),
                });
            }
            Some(Trap::Ignore) | None => {}
        }
    }

    fn signal(&mut self, sig: i32, at: Duration, cx: &mut Cx) {
        let _ = self.run(at, cx);
        if self.exited.is_some() {
            return;
        }
        let s = if sig == SIGTERM { Sig::Term } else { Sig::Int };
        match self.traps.get(&s).copied() {
            None => {
                if !self.pid1 {
                    self.exited = Some((at, 128 + sig));
                }
            }
            Some(Trap::Ignore) => {}
            Some(Trap::Run(_)) => match self.block {
                Block::Fg(..) => self.pending.push(s),
                Block::Stuck => {}
                Block::Wait(..) => {
                    self.block = Block::None;
                    self.now = self.now.max(at);
                    self.status = 128 + sig;
                    self.deliver(s);
                }
                Block::Spin | Block::None => {
                    self.block = Block::None;
                    self.now = self.now.max(at);
                    self.spin = 0;
                    self.deliver(s);
                }
            },
        }
    }

    /// Run until `t` or until blocked past it.
    fn run(&mut self, t: Duration, cx: &mut Cx) -> Option<(Duration, i32)> {
        loop {
            if let Some(e) = self.exited {
                return Some(e);
            }
            if self.replaced.is_some() {
                return None;
            }
            match std::mem::replace(&mut self.block, Block::None) {
                Block::None => {}
                b @ (Block::Spin | Block::Stuck) => {
                    self.block = b;
                    return None;
                }
                Block::Fg(mut child, checked) => match child.advance(t, cx) {
                    Some((end, code)) => {
                        self.now = self.now.max(end);
                        self.spin = 0;
                        self.finish_cmd(code, checked);
                        for s in std::mem::take(&mut self.pending) {
                            self.deliver(s);
                        }
                        continue;
                    }
                    None => {
                        self.block = Block::Fg(child, checked);
                        return None;
                    }
                },
                Block::Wait(which, checked) => {
                    let pids: Vec<u32> = match &which {
                        Some(p) => p.clone(),
                        None => self.jobs.iter().map(|(p, _)| *p).collect(),
                    };
                    let mut end = self.now;
                    let mut code = 0;
                    for p in &pids {
                        match self.job_end(*p, t, cx) {
                            Some((e, c)) => {
                                end = end.max(e);
                                code = c;
                            }
                            None => {
                                self.block = Block::Wait(which, checked);
                                return None;
                            }
                        }
                    }
                    self.now = end;
                    self.spin = 0;
                    self.jobs.retain(|(p, _)| !pids.contains(p));
                    self.finish_cmd(code, checked);
                    continue;
                }
            }
            if self.now > t {
                return None;
            }
            // Execute the next instruction.
            let Some(frame) = self.frames.last_mut() else {
                // End of the script.
                let code = self.exiting.unwrap_or(self.status);
                if self.exiting.is_some() {
                    self.exited = Some((self.now, code));
                    self.jobs.clear();
                } else {
                    self.exit(code);
                }
                continue;
            };
            let prog = frame.prog;
            let pc = frame.pc;
            if pc >= self.progs[prog].len() {
                let f = self.frames.pop().unwrap();
                if let Some(s) = f.saved {
                    self.status = s;
                }
                if let (Some(code), true) = (self.exiting, self.frames.is_empty()) {
                    self.exited = Some((self.now, code));
                    self.jobs.clear();
                }
                continue;
            }
            frame.pc += 1;
            self.spin += 1;
            if self.spin > SPIN_LIMIT {
                self.block = Block::Spin;
                return None;
            }
            let ins = self.progs[prog][pc].clone();
            match ins {
                Ins::Jump(to) => self.frames.last_mut().unwrap().pc = to,
                Ins::JumpIfFail(to) => {
                    if self.status != 0 {
                        self.frames.last_mut().unwrap().pc = to;
                    }
                }
                Ins::JumpIfOk(to) => {
                    if self.status == 0 {
                        self.frames.last_mut().unwrap().pc = to;
                    }
                }
                Ins::Not => self.status = i32::from(self.status == 0),
                Ins::Status0 => self.status = 0,
                Ins::Cmd {
                    assigns,
                    words,
                    background,
                    checked,
                } => self.command(&assigns, &words, background, checked, cx),
            }
        }
    }

    /// A command finished with `code`.
    fn finish_cmd(&mut self, code: i32, checked: bool) {
        self.status = code;
        if self.errexit && checked && code != 0 && self.exiting.is_none() {
            self.exit(code);
        }
    }

    fn command(
        &mut self,
        assigns: &[(String, Word)],
        words: &[Word],
        background: bool,
        checked: bool,
        cx: &mut Cx,
    ) {
        let argv = self.expand(words);
        if argv.is_empty() {
            for (n, w) in assigns {
                let v = self.expand(std::slice::from_ref(w)).join(" ");
                self.vars.insert(n.clone(), v);
            }
            self.status = 0;
            return;
        }
        let checked = checked && !background;
        let name = argv[0].as_str();
        let args = &argv[1..];
        // ash builtins
        let builtin = |code: i32, sh: &mut Shell| sh.finish_cmd(code, checked);
        match name {
            ":" | "true" | "echo" | "printf" | "shift" | "umask" | "ulimit" | "hash" | "type"
            | "alias" => return builtin(0, self),
            "false" => return builtin(1, self),
            "exit" => {
                let code = match args.first() {
                    None => self.status,
                    Some(a) => a.parse::<i32>().map(|c| c & 0xff).unwrap_or(2),
                };
                return self.exit(code);
            }
            "trap" => return self.trap(args, cx),
            "wait" => {
                let pids = if args.is_empty() {
                    None
                } else {
                    let mut v = Vec::new();
                    for a in args {
                        match a.parse::<u32>() {
                            Ok(p) if self.jobs.iter().any(|(j, _)| *j == p) => v.push(p),
                            _ => return builtin(127, self),
                        }
                    }
                    Some(v)
                };
                self.block = Block::Wait(pids, checked);
                return;
            }
            "export" | "readonly" | "local" => {
                for a in args {
                    if let Some((n, v)) = a.split_once('=') {
                        self.vars.insert(n.to_string(), v.to_string());
                    }
                }
                return builtin(0, self);
            }
            "unset" => {
                for a in args {
                    self.vars.remove(a);
                }
                return builtin(0, self);
            }
            "set" => {
                for a in args {
                    if a == "-o" || a == "+o" {
                        continue;
                    }
                    if a == "errexit" {
                        self.errexit = true;
                    } else if let Some(f) = a.strip_prefix('-') {
                        if f.contains('e') {
                            self.errexit = true;
                        }
                    } else if let Some(f) = a.strip_prefix('+') {
                        if f.contains('e') {
                            self.errexit = false;
                        }
                    }
                }
                return builtin(0, self);
            }
            "cd" => {
                let dir = args.first().cloned().unwrap_or_else(|| {
                    self.vars.get("HOME").cloned().unwrap_or_else(|| "/".into())
                });
                let p = clean(&dir, &self.cwd);
                let code = if matches!(cx.fs.lookup(&p), Some(Node::Dir)) {
                    self.cwd = p;
                    0
                } else {
                    2
                };
                return builtin(code, self);
            }
            "kill" => {
                let mut sig = SIGTERM;
                let mut code = 0;
                let mut it = args.iter().peekable();
                while let Some(a) = it.next() {
                    if a == "-s" {
                        if let Some(s) = it.next() {
                            sig = sig_number(s).unwrap_or(SIGTERM);
                        }
                        continue;
                    }
                    if let Some(s) = a.strip_prefix('-') {
                        sig = sig_number(s).unwrap_or(SIGTERM);
                        continue;
                    }
                    match a.parse::<u32>() {
                        Ok(p) => {
                            let now = self.now;
                            match self.jobs.iter_mut().find(|(j, _)| *j == p) {
                                Some((_, job)) if sig == 9 => {
                                    *job = Proc::exits(now, 137, false);
                                }
                                Some((_, job)) => job.signal(sig, now, cx),
                                None => code = 1,
                            }
                        }
                        Err(_) => code = 1,
                    }
                }
                return builtin(code, self);
            }
            "test" | "[" => {
                let mut a: Vec<&str> = args.iter().map(String::as_str).collect();
                if name == "[" {
                    if a.last() != Some(&"]") {
                        return builtin(2, self);
                    }
                    a.pop();
                }
                let code = test(&a, &self.cwd, cx.fs);
                return builtin(code, self);
            }
            "exec" => {
                if args.is_empty() {
                    return builtin(0, self);
                }
                let now = self.now;
                let (vars, cwd) = self.ctx();
                let ctx = Ctx {
                    vars: &vars,
                    cwd: &cwd,
                    stdin: self.stdin,
                    pid1: self.pid1,
                };
                match self.resolve(&args[0], cx) {
                    Ok((target, path)) => {
                        let p = run_target(&target, &path, args, now, &ctx, cx);
                        self.replaced = Some(Box::new(p));
                    }
                    // sh: exec: X: not found
                    Err(code) => self.exit(code),
                }
                return;
            }
            "eval" | "." | "source" | "read" | "return" | "break" | "continue" | "getopts"
            | "command" | "builtin" => {
                cx.notes.push(format!(
                    "sh builtin {name} is not modelled: assumed to run until killed, ignoring SIGTERM"
                ));
                self.block = Block::Stuck;
                self.traps.clear();
                return;
            }
            _ => {}
        }
        let (vars, cwd) = self.ctx();
        let now = self.now;
        let ctx = Ctx {
            vars: &vars,
            cwd: &cwd,
            stdin: false,
            pid1: false,
        };
        let child = match self.resolve(name, cx) {
            Ok((target, path)) => run_target(&target, &path, &argv, now, &ctx, cx),
            Err(code) => {
                if background {
                    Proc::exits(now, code, false)
                } else {
                    return self.finish_cmd(code, checked);
                }
            }
        };
        if background {
            let pid = *cx.next_pid;
            *cx.next_pid += 1;
            self.jobs.push((pid, child));
            self.last_job = Some(pid);
            self.status = 0;
        } else {
            self.block = Block::Fg(Box::new(child), checked);
        }
    }

    /// busybox ash's lookup: applets first (standalone shell), then `$PATH`. Err: 127 not
    /// found, 126 not executable.
    fn resolve(&self, name: &str, cx: &mut Cx) -> Result<(Target, String), i32> {
        if name.contains('/') {
            let p = clean(name, &self.cwd);
            return match cx.fs.lookup(&p) {
                Some(Node::File(prog)) => Ok((Target::Program(prog), p)),
                Some(Node::Opaque(kind)) => Ok((Target::Opaque(kind), p)),
                Some(Node::Dir) => Err(126),
                None => Err(127),
            };
        }
        if BUSYBOX_APPLETS.contains(&name) {
            return Ok((Target::Program(Program::Busybox), name.to_string()));
        }
        let path = self.vars.get("PATH").cloned().unwrap_or_default();
        for dir in path.split(':').filter(|d| !d.is_empty()) {
            let p = clean(&format!("{dir}/{name}"), &self.cwd);
            match cx.fs.lookup(&p) {
                Some(Node::File(prog)) => return Ok((Target::Program(prog), p)),
                Some(Node::Opaque(kind)) => return Ok((Target::Opaque(kind), p)),
                _ => {}
            }
        }
        Err(127)
    }

    fn trap(&mut self, args: &[String], cx: &mut Cx) {
        if args.is_empty() || args[0] == "-l" || args[0] == "-p" {
            return self.finish_cmd(0, false);
        }
        let (action, sigs) = if parse_sig(&args[0]).is_some() && args.len() == 1 {
            ("-".to_string(), args)
        } else {
            (args[0].clone(), &args[1..])
        };
        let trap = match action.as_str() {
            "-" => None,
            "" => Some(Trap::Ignore),
            src => match parse_program(src) {
                Ok(p) => {
                    self.progs.push(p);
                    Some(Trap::Run(self.progs.len() - 1))
                }
                Err(why) => {
                    cx.notes.push(format!(
                        "trap action outside the modelled subset ({why}): assumed to run until killed, ignoring SIGTERM: {src:?}"
                    ));
                    self.block = Block::Stuck;
                    self.traps.clear();
                    return;
                }
            },
        };
        let mut code = 0;
        for s in sigs {
            match parse_sig(s) {
                Some(Some(sig)) => match trap {
                    Some(t) => {
                        self.traps.insert(sig, t);
                    }
                    None => {
                        self.traps.remove(&sig);
                    }
                },
                Some(None) => {}
                None => code = 1,
            }
        }
        self.finish_cmd(code, false);
    }
}

fn sig_number(s: &str) -> Option<i32> {
    Some(match s.trim_start_matches("SIG") {
        "TERM" | "15" => 15,
        "INT" | "2" => 2,
        "KILL" | "9" => 9,
        "HUP" | "1" => 1,
        "QUIT" | "3" => 3,
        _ => return None,
    })
}

#[cfg(test)]
mod tests;
