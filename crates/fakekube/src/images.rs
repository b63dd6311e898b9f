//! The fake's image registry: what an image is (its config: entrypoint, cmd, env; its files and
//! what the programs among them do) and which images can be pulled.
//!
//! [`Registry::kit`] holds exactly what the real-cluster kit's loopback registry holds
//! (its `images.sh`), with the digests and sizes its kubelet reports:
//!
//! | image | entrypoint / cmd | programs |
//! |---|---|---|
//! | `registry.k8s.io/pause:3.10.2`, `:3.10` | `["/pause"]` | only `/pause`: sleeps until SIGTERM/SIGINT, then exits 0 at once |
//! | `docker.io/library/busybox` `:latest` `:1.36` `:1.35` `:stable` | cmd `["sh"]` | busybox 1.35 with its applets in `/bin` |
//! | `ghcr.io/example/py-serv:1.0` | `["/usr/local/bin/serve"]` (`PORT=80`) | busybox + `serve`: HTTP until SIGTERM, exits 0 at once on it |
//! | `ghcr.io/example/checkout:2.1` | the same, `PORT=8080` | |
//! | `ghcr.io/example/worker:3` | `["/usr/local/bin/worker"]` | busybox + `worker`: runs until SIGTERM, exits 0 at once on it |
//! | `docker.io/library/postgres:16` | `["docker-entrypoint.sh"]` / `["postgres"]` | busybox + `docker-entrypoint.sh` (runs until SIGTERM, exits 0) and `pg_isready` |
//!
//! Every image's `PATH` is `/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin`
//! (mkimage.py). References normalize as containerd's do (`busybox` is
//! `docker.io/library/busybox:latest`, `ghcr.io/x/y` is `ghcr.io/x/y:latest`); a reference with
//! an upper-case repository is an `InvalidImageName`. An image the registry does not hold fails
//! to pull with containerd's `not found`. A test adds an image as one pushes it:
//! `fake.images().push(Image::new(["ghcr.io/example/app:1"]).busybox().entrypoint(["/app"]) ...)`.
//!
//! The kubelet reports a running container's `image` as containerd does: the first of the
//! image's references in sorted order (`busybox` runs as `docker.io/library/busybox:1.35`, as on
//! the kit, where the four busybox tags are one image), and `imageID` as `<repo>@sha256:<digest>`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, RwLock};

/// What an executable file in an image does when run (the process model in
/// [`crate::process`] gives each its behaviour).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Program {
    /// The busybox multi-call binary (and every applet link to it): the applet is the
    /// basename of argv\[0\], or argv\[1\] when that is `busybox`.
    Busybox,
    /// The kit's `pause.c`: waits for SIGTERM or SIGINT and exits 0 on it (`-v`: prints its
    /// version, exits 0).
    Pause,
    /// A server or worker that runs until SIGTERM and exits 0 at once on it (the kit's
    /// `serve`, `worker` and postgres `docker-entrypoint.sh`, whatever their arguments).
    Service,
    /// The kit's `pg_isready`: exits 2 ("no response") at once (nothing in its own container
    /// listens on :5432 when it is the container's command; it is meant for probes, which the
    /// fake does not run).
    PgIsReady,
    /// A `#!/bin/sh` script, run by the shell model (only the subset [`crate::process`]
    /// documents; a test pushes images with such files).
    Script(String),
}

/// One image: its references, config and files.
#[derive(Debug, Clone)]
pub struct Image {
    /// Normalized references (`docker.io/library/busybox:latest`), every name it is pushed as.
    pub refs: Vec<String>,
    /// Manifest digest, `sha256:<64 hex>`.
    pub digest: String,
    /// Size the kubelet's `Pulled` Event reports.
    pub size: u64,
    /// Config `Entrypoint`.
    pub entrypoint: Vec<String>,
    /// Config `Cmd`.
    pub cmd: Vec<String>,
    /// Config `Env` (`PATH` first).
    pub env: Vec<(String, String)>,
    /// Config `WorkingDir` ("" = `/`).
    pub working_dir: String,
    /// Executable files: absolute path -> what it does (symlinks are listed as their target's
    /// program).
    pub files: BTreeMap<String, Program>,
    /// Directories (besides the parents of `files`).
    pub dirs: BTreeSet<String>,
    /// Already in the node's image store (the kit imports its images into containerd): an
    /// `IfNotPresent` container starts without a pull. Pushed images are pulled once.
    pub preloaded: bool,
}

/// mkimage.py's PATH.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// `busybox --list` of Debian 12's busybox-static 1.35 (the kit's images link each into /bin).
pub const BUSYBOX_APPLETS: &[&str] = &[
    "[",
    "[[",
    "acpid",
    "adjtimex",
    "ar",
    "arch",
    "arp",
    "arping",
    "ascii",
    "ash",
    "awk",
    "base64",
    "basename",
    "bc",
    "blkdiscard",
    "blockdev",
    "brctl",
    "bunzip2",
    "busybox",
    "bzcat",
    "bzip2",
    "cal",
    "cat",
    "chgrp",
    "chmod",
    "chown",
    "chroot",
    "chvt",
    "clear",
    "cmp",
    "cp",
    "cpio",
    "crc32",
    "crond",
    "crontab",
    "cttyhack",
    "cut",
    "date",
    "dc",
    "dd",
    "deallocvt",
    "depmod",
    "devmem",
    "df",
    "diff",
    "dirname",
    "dmesg",
    "dnsdomainname",
    "dos2unix",
    "dpkg",
    "dpkg-deb",
    "du",
    "dumpkmap",
    "dumpleases",
    "echo",
    "ed",
    "egrep",
    "env",
    "expand",
    "expr",
    "factor",
    "fallocate",
    "false",
    "fatattr",
    "fdisk",
    "fgrep",
    "find",
    "findfs",
    "fold",
    "free",
    "freeramdisk",
    "fsfreeze",
    "fstrim",
    "ftpget",
    "ftpput",
    "getopt",
    "getty",
    "grep",
    "groups",
    "gunzip",
    "gzip",
    "halt",
    "head",
    "hexdump",
    "hostid",
    "hostname",
    "httpd",
    "hwclock",
    "i2cdetect",
    "i2cdump",
    "i2cget",
    "i2cset",
    "i2ctransfer",
    "id",
    "ifconfig",
    "ifdown",
    "ifup",
    "init",
    "insmod",
    "ionice",
    "ip",
    "ipcalc",
    "ipneigh",
    "kill",
    "killall",
    "klogd",
    "last",
    "less",
    "link",
    "linux32",
    "linux64",
    "linuxrc",
    "ln",
    "loadfont",
    "loadkmap",
    "logger",
    "login",
    "logname",
    "logread",
    "losetup",
    "ls",
    "lsmod",
    "lsscsi",
    "lzcat",
    "lzma",
    "lzop",
    "md5sum",
    "mdev",
    "microcom",
    "mim",
    "mkdir",
    "mkdosfs",
    "mke2fs",
    "mkfifo",
    "mknod",
    "mkpasswd",
    "mkswap",
    "mktemp",
    "modinfo",
    "modprobe",
    "more",
    "mount",
    "mt",
    "mv",
    "nameif",
    "nc",
    "netstat",
    "nl",
    "nologin",
    "nproc",
    "nsenter",
    "nslookup",
    "nuke",
    "od",
    "openvt",
    "partprobe",
    "passwd",
    "paste",
    "patch",
    "pidof",
    "ping",
    "ping6",
    "pivot_root",
    "poweroff",
    "printf",
    "ps",
    "pwd",
    "rdate",
    "readlink",
    "realpath",
    "reboot",
    "renice",
    "reset",
    "resume",
    "rev",
    "rm",
    "rmdir",
    "rmmod",
    "route",
    "rpm",
    "rpm2cpio",
    "run-init",
    "run-parts",
    "sed",
    "seq",
    "setkeycodes",
    "setpriv",
    "setsid",
    "sh",
    "sha1sum",
    "sha256sum",
    "sha3sum",
    "sha512sum",
    "shred",
    "shuf",
    "sleep",
    "sort",
    "ssl_client",
    "start-stop-daemon",
    "stat",
    "strings",
    "stty",
    "su",
    "sulogin",
    "svc",
    "svok",
    "swapoff",
    "swapon",
    "switch_root",
    "sync",
    "sysctl",
    "syslogd",
    "tac",
    "tail",
    "tar",
    "taskset",
    "tc",
    "tee",
    "telnet",
    "telnetd",
    "test",
    "tftp",
    "time",
    "timeout",
    "top",
    "touch",
    "tr",
    "traceroute",
    "traceroute6",
    "true",
    "truncate",
    "ts",
    "tty",
    "tunctl",
    "ubirename",
    "udhcpc",
    "udhcpd",
    "uevent",
    "umount",
    "uname",
    "uncompress",
    "unexpand",
    "uniq",
    "unix2dos",
    "unlink",
    "unlzma",
    "unshare",
    "unxz",
    "unzip",
    "uptime",
    "usleep",
    "uudecode",
    "uuencode",
    "vconfig",
    "vi",
    "w",
    "watch",
    "watchdog",
    "wc",
    "wget",
    "which",
    "who",
    "whoami",
    "xargs",
    "xxd",
    "xz",
    "xzcat",
    "yes",
    "zcat",
];

impl Image {
    /// An image pushed as `refs` (each normalized), with mkimage.py's PATH and nothing else: no
    /// files, no entrypoint. Its digest is derived from the references.
    pub fn new<I, S>(refs: I) -> Image
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let refs: Vec<String> = refs
            .into_iter()
            .map(|r| normalize(r.as_ref()).unwrap_or_else(|_| r.as_ref().to_string()))
            .collect();
        let digest = format!("sha256:{}", hex64(&refs.join(",")));
        Image {
            refs,
            digest,
            size: 1_000_000,
            entrypoint: Vec::new(),
            cmd: Vec::new(),
            env: vec![("PATH".into(), DEFAULT_PATH.into())],
            working_dir: String::new(),
            files: BTreeMap::new(),
            dirs: BTreeSet::new(),
            preloaded: false,
        }
    }

    /// The kit's busybox base layer: `/bin/busybox` and every applet link in `/bin`,
    /// `/usr/bin/env`, and its directories.
    pub fn busybox(mut self) -> Image {
        for a in BUSYBOX_APPLETS {
            self.files.insert(format!("/bin/{a}"), Program::Busybox);
        }
        self.files.insert("/usr/bin/env".into(), Program::Busybox);
        for d in [
            "/bin",
            "/sbin",
            "/usr/bin",
            "/usr/sbin",
            "/usr/local/bin",
            "/etc",
            "/root",
            "/tmp",
            "/home",
            "/var/www",
            "/var/tmp",
            "/dev",
            "/proc",
            "/sys",
        ] {
            self.dirs.insert(d.into());
        }
        self
    }

    /// Config `Entrypoint`.
    pub fn entrypoint<I: IntoIterator<Item = S>, S: Into<String>>(mut self, argv: I) -> Image {
        self.entrypoint = argv.into_iter().map(Into::into).collect();
        self
    }

    /// Config `Cmd`.
    pub fn cmd<I: IntoIterator<Item = S>, S: Into<String>>(mut self, argv: I) -> Image {
        self.cmd = argv.into_iter().map(Into::into).collect();
        self
    }

    /// Adds (or replaces) one config `Env` entry.
    pub fn env(mut self, name: &str, value: &str) -> Image {
        self.env.retain(|(n, _)| n != name);
        self.env.push((name.into(), value.into()));
        self
    }

    /// Adds an executable file.
    pub fn file(mut self, path: &str, program: Program) -> Image {
        self.files.insert(path.into(), program);
        self
    }

    /// Sets the manifest digest (64 hex digits, with or without `sha256:`) and size.
    pub fn digest(mut self, digest: &str, size: u64) -> Image {
        self.digest = if digest.starts_with("sha256:") {
            digest.to_string()
        } else {
            format!("sha256:{digest}")
        };
        self.size = size;
        self
    }

    /// What the kubelet reports as a running container's `image`: the first reference in
    /// sorted order (containerd's `RepoTags[0]`).
    pub fn display_ref(&self) -> &str {
        self.refs.iter().min().map(String::as_str).unwrap_or("")
    }

    /// `<repo>@sha256:<digest>` of [`Image::display_ref`] (the kubelet's `imageID`).
    pub fn image_id(&self) -> String {
        format!("{}@{}", repository(self.display_ref()), self.digest)
    }

    /// The value of config `Env` `name`.
    pub fn env_var(&self, name: &str) -> Option<&str> {
        self.env
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Is `path` a directory of this image (`/`, one listed, or a parent of a file)?
    pub fn is_dir(&self, path: &str) -> bool {
        if path == "/" || self.dirs.contains(path) {
            return true;
        }
        let prefix = format!("{path}/");
        self.files
            .range(prefix.clone()..)
            .next()
            .is_some_and(|(k, _)| k.starts_with(&prefix))
            || self.dirs.iter().any(|d| d.starts_with(&prefix))
    }
}

/// `ghcr.io/example/app` of `ghcr.io/example/app:1` (tag or digest removed).
pub fn repository(reference: &str) -> &str {
    let no_digest = reference.split('@').next().unwrap_or(reference);
    match no_digest.rfind(':') {
        Some(i) if !no_digest[i..].contains('/') => &no_digest[..i],
        _ => no_digest,
    }
}

/// Why a reference cannot be used: the kubelet's `InvalidImageName` message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidImageName(pub String);

/// Normalizes a reference as containerd (docker's reference.ParseNormalizedNamed plus the
/// kubelet's default tag) does: `busybox` -> `docker.io/library/busybox:latest`. The error is
/// the kubelet's `InvalidImageName` message, e.g. `Failed to apply default image tag "BusyBox":
/// couldn't parse image name "BusyBox": invalid reference format: repository name
/// (library/BusyBox) must be lowercase` (as the real cluster printed it).
pub fn normalize(reference: &str) -> Result<String, InvalidImageName> {
    let fail = |why: &str| {
        InvalidImageName(format!(
            "Failed to apply default image tag \"{reference}\": couldn't parse image name \"{reference}\": invalid reference format{why}"
        ))
    };
    if reference.is_empty() || reference.chars().any(|c| c.is_whitespace()) {
        return Err(fail(""));
    }
    let (name, digest) = match reference.split_once('@') {
        Some((n, d)) => (n, Some(d)),
        None => (reference, None),
    };
    let (domain, rest) = match name.split_once('/') {
        Some((d, r)) if d.contains('.') || d.contains(':') || d == "localhost" => {
            (d.to_string(), r.to_string())
        }
        _ => ("docker.io".to_string(), name.to_string()),
    };
    let (path, tag) = match rest.rfind(':') {
        Some(i) if !rest[i..].contains('/') => (&rest[..i], Some(&rest[i + 1..])),
        _ => (rest.as_str(), None),
    };
    let path = if domain == "docker.io" && !path.contains('/') {
        format!("library/{path}")
    } else {
        path.to_string()
    };
    if path.chars().any(|c| c.is_ascii_uppercase()) {
        return Err(fail(&format!(
            ": repository name ({path}) must be lowercase"
        )));
    }
    let ok = |s: &str| {
        !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-/".contains(c))
            && !s.starts_with(['.', '_', '-', '/'])
            && !s.ends_with(['.', '_', '-', '/'])
    };
    if !ok(&path) || tag.is_some_and(|t| t.is_empty() || t.len() > 128) {
        return Err(fail(""));
    }
    let mut out = format!("{domain}/{path}");
    match (tag, digest) {
        (Some(t), _) => {
            out.push(':');
            out.push_str(t);
        }
        (None, None) => out.push_str(":latest"),
        (None, Some(_)) => {}
    }
    if let Some(d) = digest {
        out.push('@');
        out.push_str(d);
    }
    Ok(out)
}

/// The images that can be pulled. Shared by the kubelet and the tests (through
/// `FakeCluster::images()`); pushing is the only way to add one.
#[derive(Debug)]
pub struct Registry {
    images: RwLock<Vec<Arc<Image>>>,
}

impl Default for Registry {
    fn default() -> Self {
        Registry::kit()
    }
}

impl Registry {
    /// A registry with no images.
    pub fn empty() -> Registry {
        Registry {
            images: RwLock::new(Vec::new()),
        }
    }

    /// The real-cluster kit's loopback registry (see the module docs).
    pub fn kit() -> Registry {
        let r = Registry::empty();
        for mut image in kit_images() {
            image.preloaded = true;
            r.push(image);
        }
        r
    }

    /// Push `image` under each of its references (replacing what those names held).
    pub fn push(&self, image: Image) {
        let image = Arc::new(image);
        let mut images = self.images.write().unwrap();
        for old in images.iter_mut() {
            if old.refs.iter().any(|r| image.refs.contains(r)) {
                let mut o = (**old).clone();
                o.refs.retain(|r| !image.refs.contains(r));
                *old = Arc::new(o);
            }
        }
        images.retain(|i| !i.refs.is_empty());
        images.push(image);
    }

    /// The image a normalized reference names (by tag, or by `@sha256:` digest).
    pub fn get(&self, normalized: &str) -> Option<Arc<Image>> {
        let images = self.images.read().unwrap();
        if let Some((repo, digest)) = normalized.split_once('@') {
            let repo = repository(repo);
            return images
                .iter()
                .find(|i| i.digest == digest && i.refs.iter().any(|r| repository(r) == repo))
                .cloned();
        }
        images
            .iter()
            .find(|i| i.refs.iter().any(|r| r == normalized))
            .cloned()
    }

    /// Every reference held, sorted.
    pub fn references(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .images
            .read()
            .unwrap()
            .iter()
            .flat_map(|i| i.refs.clone())
            .collect();
        v.sort();
        v
    }
}

/// images.sh's six images, as its kubelet reported them (digests and `Image size` from the
/// real cluster's pod statuses and `Pulled` Events).
fn kit_images() -> Vec<Image> {
    let server = |refs: &[&str], port: &str, app: &str, digest: &str, size: u64| {
        Image::new(refs)
            .busybox()
            .entrypoint(["/usr/local/bin/serve"])
            .env("PORT", port)
            .env("WEB_ROOT", "/www")
            .env("APP_NAME", app)
            .file("/usr/local/bin/serve", Program::Service)
            .digest(digest, size)
    };
    let mut pause = Image::new(["registry.k8s.io/pause:3.10.2", "registry.k8s.io/pause:3.10"])
        .entrypoint(["/pause"])
        .file("/pause", Program::Pause)
        .digest(
            "845cf9abc8f3c5b30a5f7ef6682e4ef7538b2abeb08679c0d9ceced59c304fba",
            306_416,
        );
    pause.dirs.clear();
    vec![
        pause,
        Image::new([
            "docker.io/library/busybox:latest",
            "docker.io/library/busybox:1.36",
            "docker.io/library/busybox:1.35",
            "docker.io/library/busybox:stable",
        ])
        .busybox()
        .cmd(["sh"])
        .digest(
            "a9ec2570aaf096496c974ee2b7b82a14c0383d0f8e8002a5ca9b13cb3283045a",
            1_037_190,
        ),
        server(
            &["ghcr.io/example/py-serv:1.0"],
            "80",
            "py-serv",
            "446f9ea426a958ca6ef60d31f978bdcbce2a3309af5a6cd449af779eac5d40a7",
            1_038_171,
        ),
        server(
            &["ghcr.io/example/checkout:2.1"],
            "8080",
            "checkout",
            "41db5711d623ee24350d1804415e3dcb34f63c32ee56a7c7d7fb316475baa693",
            1_038_177,
        ),
        Image::new(["ghcr.io/example/worker:3"])
            .busybox()
            .entrypoint(["/usr/local/bin/worker"])
            .file("/usr/local/bin/worker", Program::Service)
            .digest(
                "3e126cb08ea3abde50f6105dbdaf3147699b243df4eb9852f8d61fde780f9c3b",
                1_037_902,
            ),
        Image::new(["docker.io/library/postgres:16"])
            .busybox()
            .entrypoint(["docker-entrypoint.sh"])
            .cmd(["postgres"])
            .env("PG_MAJOR", "16")
            .env("PGDATA", "/var/lib/postgresql/data")
            .file("/usr/local/bin/docker-entrypoint.sh", Program::Service)
            .file("/usr/local/bin/pg_isready", Program::PgIsReady)
            .digest(
                "b103d4addebb2586a96d03af0dcdfa86e31b5d4c70e0d6e78c9a00b71e5c8431",
                1_038_661,
            ),
    ]
}

/// 64 hex digits derived from `seed` (fnv-1a 64, four salted rounds): the shape of a
/// container id or an image digest.
pub(crate) fn hex64(seed: &str) -> String {
    (0u8..4)
        .map(|salt| {
            let mut h: u64 = 0xcbf29ce484222325;
            for b in seed.bytes().chain([salt]) {
                h ^= b as u64;
                h = h.wrapping_mul(0x100000001b3);
            }
            format!("{h:016x}")
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_normalize_like_containerd() {
        let n = |r: &str| normalize(r).unwrap();
        assert_eq!(n("busybox"), "docker.io/library/busybox:latest");
        assert_eq!(n("busybox:1.36"), "docker.io/library/busybox:1.36");
        assert_eq!(n("postgres:16"), "docker.io/library/postgres:16");
        assert_eq!(
            n("fluent/fluent-bit:3.1"),
            "docker.io/fluent/fluent-bit:3.1"
        );
        assert_eq!(
            n("ghcr.io/example/py-serv"),
            "ghcr.io/example/py-serv:latest"
        );
        assert_eq!(n("localhost:5000/x:1"), "localhost:5000/x:1");
        assert_eq!(n("x@sha256:ab"), "docker.io/library/x@sha256:ab");
        // As the real kubelet worded it for `image: BusyBox`.
        assert_eq!(
            normalize("BusyBox").unwrap_err().0,
            "Failed to apply default image tag \"BusyBox\": couldn't parse image name \"BusyBox\": invalid reference format: repository name (library/BusyBox) must be lowercase"
        );
        assert!(normalize("a b").is_err());
    }

    #[test]
    fn the_kit_has_its_six_images_and_reports_them_as_containerd_does() {
        let r = Registry::kit();
        let bb = r.get(&normalize("busybox").unwrap()).unwrap();
        assert_eq!(bb.display_ref(), "docker.io/library/busybox:1.35");
        assert_eq!(
            bb.image_id(),
            "docker.io/library/busybox@sha256:a9ec2570aaf096496c974ee2b7b82a14c0383d0f8e8002a5ca9b13cb3283045a"
        );
        assert_eq!(bb.cmd, ["sh"]);
        assert_eq!(bb.files.get("/bin/sleep"), Some(&Program::Busybox));
        let pause = r.get("registry.k8s.io/pause:3.10.2").unwrap();
        assert_eq!(pause.display_ref(), "registry.k8s.io/pause:3.10");
        assert_eq!(pause.files.len(), 1);
        assert!(pause.is_dir("/") && !pause.is_dir("/bin"));
        assert!(r.get("docker.io/library/postgres:16").is_some());
        assert!(r.get("ghcr.io/example/py-serv:1").is_none());
        assert_eq!(r.references().len(), 10);
        r.push(Image::new(["ghcr.io/example/app:1"]).busybox());
        assert!(r.get("ghcr.io/example/app:1").is_some());
        // Pushing a tag moves it.
        r.push(Image::new(["busybox:stable"]));
        assert!(r
            .get("docker.io/library/busybox:stable")
            .unwrap()
            .files
            .is_empty());
        assert_eq!(
            r.get("docker.io/library/busybox:latest")
                .unwrap()
                .refs
                .len(),
            3
        );
    }
}
