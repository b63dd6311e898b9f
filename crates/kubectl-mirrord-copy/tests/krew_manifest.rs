//! krew.yaml is a valid Krew Plugin manifest, and the renderer that makes it from release
//! archives produces one for every platform with the archives' real sha256.
//!
//! The rules mirror Krew's own manifest validation (pkg/index/validation): apiVersion/kind,
//! a plugin name matching the binary's `kubectl-<name>`, a `v`-prefixed semantic version,
//! shortDescription, and per platform a selector, an https uri, a 64-hex sha256, a `bin` that
//! one of the `files` provides (`.exe` on windows).
//!
//! The repository is also a custom Krew index (`kubectl krew index add mirrord-copy <git-url>`):
//! Krew clones it and reads `plugins/<name>.yaml` at its root, regular `.yaml` files only, and
//! installs `mirrord-copy/mirrord-copy` from `plugins/mirrord-copy.yaml`. That file is krew.yaml,
//! byte for byte, written by the same rendering.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_yaml_ng::Value;
use sha2::{Digest, Sha256};

const PLATFORMS: [(&str, &str); 6] = [
    ("linux", "amd64"),
    ("linux", "arm64"),
    ("darwin", "amd64"),
    ("darwin", "arm64"),
    ("windows", "amd64"),
    ("windows", "arm64"),
];

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .unwrap()
        .to_path_buf()
}

/// Every problem found, so one run reports them all.
fn validate(manifest: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    let mut need = |cond: bool, what: String| {
        if !cond {
            problems.push(what);
        }
    };
    need(
        manifest["apiVersion"].as_str() == Some("krew.googlecontainertools.github.com/v1alpha2"),
        "apiVersion must be krew.googlecontainertools.github.com/v1alpha2".into(),
    );
    need(
        manifest["kind"].as_str() == Some("Plugin"),
        "kind must be Plugin".into(),
    );
    need(
        manifest["metadata"]["name"].as_str() == Some("mirrord-copy"),
        "metadata.name must be mirrord-copy (binary kubectl-mirrord_copy)".into(),
    );
    let spec = &manifest["spec"];
    let version = spec["version"].as_str().unwrap_or("");
    let semver = version
        .strip_prefix('v')
        .map(|v| v.split('.').count() == 3 && v.split('.').all(|p| p.parse::<u64>().is_ok()))
        .unwrap_or(false);
    need(
        semver,
        format!("spec.version {version:?} must look like v1.2.3"),
    );
    for field in ["shortDescription", "description", "caveats", "homepage"] {
        need(
            spec[field].as_str().is_some_and(|s| !s.trim().is_empty()),
            format!("spec.{field} is required"),
        );
    }
    need(
        spec["homepage"]
            .as_str()
            .is_some_and(|h| h.starts_with("https://")),
        "spec.homepage must be an https URL".into(),
    );
    need(
        spec["shortDescription"]
            .as_str()
            .is_some_and(|s| s.len() <= 80),
        "spec.shortDescription must fit in 80 characters".into(),
    );
    let platforms = spec["platforms"].as_sequence().cloned().unwrap_or_default();
    need(
        !platforms.is_empty(),
        "spec.platforms must not be empty".into(),
    );
    for (i, p) in platforms.iter().enumerate() {
        let labels = &p["selector"]["matchLabels"];
        let os = labels["os"].as_str().unwrap_or("");
        let arch = labels["arch"].as_str().unwrap_or("");
        need(
            PLATFORMS.contains(&(os, arch)),
            format!("platforms[{i}]: unexpected selector {os}/{arch}"),
        );
        let uri = p["uri"].as_str().unwrap_or("");
        need(
            uri.starts_with("https://"),
            format!("platforms[{i}].uri must be https"),
        );
        let sha = p["sha256"].as_str().unwrap_or("");
        need(
            sha.len() == 64
                && sha
                    .chars()
                    .all(|c| c.is_ascii_hexdigit() && !c.is_uppercase()),
            format!("platforms[{i}].sha256 must be 64 lowercase hex digits"),
        );
        let bin = p["bin"].as_str().unwrap_or("");
        let want_bin = if os == "windows" {
            "kubectl-mirrord_copy.exe"
        } else {
            "kubectl-mirrord_copy"
        };
        need(
            bin == want_bin,
            format!("platforms[{i}].bin must be {want_bin}"),
        );
        let provides_bin = p["files"]
            .as_sequence()
            .is_some_and(|files| files.iter().any(|f| f["from"].as_str() == Some(bin)));
        need(
            provides_bin,
            format!("platforms[{i}].files must include {bin}"),
        );
    }
    problems
}

#[test]
fn committed_krew_manifest_is_valid() {
    let path = repo_root().join("krew.yaml");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (render it with plugin-manifest/package.sh)",
            path.display()
        )
    });
    let manifest: Value = serde_yaml_ng::from_str(&text).expect("krew.yaml is YAML");
    let problems = validate(&manifest);
    assert!(problems.is_empty(), "krew.yaml: {problems:#?}");
}

/// Krew users on every platform get the plugin: the committed manifest lists each of the six
/// (macOS included) once. Its sha256s are checked against the archives by verify_archives.py
/// when they are built (plugin-manifest/package.sh); the archives are not in the repository.
#[test]
fn committed_krew_manifest_lists_every_platform_once() {
    let text = std::fs::read_to_string(repo_root().join("krew.yaml")).unwrap();
    let manifest: Value = serde_yaml_ng::from_str(&text).expect("krew.yaml is YAML");
    let mut listed: Vec<(String, String)> = manifest["spec"]["platforms"]
        .as_sequence()
        .expect("spec.platforms")
        .iter()
        .map(|p| {
            let labels = &p["selector"]["matchLabels"];
            let label = |k: &str| labels[k].as_str().unwrap_or_default().to_string();
            (label("os"), label("arch"))
        })
        .collect();
    listed.sort();
    let mut want: Vec<(String, String)> = PLATFORMS
        .iter()
        .map(|(os, arch)| (os.to_string(), arch.to_string()))
        .collect();
    want.sort();
    assert_eq!(listed, want);
}

#[test]
fn renderer_covers_every_platform_with_the_archives_sha256() {
    let dir = tempfile::tempdir().unwrap();
    let mut expected = Vec::new();
    for (os, arch) in PLATFORMS {
        let ext = if os == "windows" { "zip" } else { "tar.gz" };
        let name = format!("kubectl-mirrord-copy-v9.8.7-{os}-{arch}.{ext}");
        let content = format!("archive for {os}/{arch}");
        std::fs::write(dir.path().join(&name), &content).unwrap();
        expected.push((os, arch, name, hex(&Sha256::digest(content.as_bytes()))));
    }
    let out = Command::new("python3")
        .arg(repo_root().join("plugin-manifest/render_krew.py"))
        .args(["--version", "v9.8.7", "--archives"])
        .arg(dir.path())
        .args(["--base-url", "https://example.test/releases"])
        .output()
        .expect("python3 runs render_krew.py");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let manifest: Value = serde_yaml_ng::from_slice(&out.stdout).unwrap();
    let problems = validate(&manifest);
    assert!(problems.is_empty(), "rendered manifest: {problems:#?}");
    assert_eq!(manifest["spec"]["version"].as_str(), Some("v9.8.7"));
    let platforms = manifest["spec"]["platforms"].as_sequence().unwrap();
    assert_eq!(platforms.len(), PLATFORMS.len());
    for (os, arch, name, sha) in expected {
        let p = platforms
            .iter()
            .find(|p| {
                p["selector"]["matchLabels"]["os"].as_str() == Some(os)
                    && p["selector"]["matchLabels"]["arch"].as_str() == Some(arch)
            })
            .unwrap_or_else(|| panic!("no platform {os}/{arch}"));
        assert_eq!(p["sha256"].as_str(), Some(sha.as_str()), "{os}/{arch}");
        assert_eq!(
            p["uri"].as_str(),
            Some(format!("https://example.test/releases/v9.8.7/{name}").as_str())
        );
    }
}

#[test]
fn renderer_refuses_to_invent_a_manifest_without_archives() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new("python3")
        .arg(repo_root().join("plugin-manifest/render_krew.py"))
        .args(["--version", "v1.0.0", "--archives"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no archives found"));
}

/// The custom index's manifest, relative to the repository root.
const INDEX_FILE: &str = "plugins/mirrord-copy.yaml";

/// How to make krew.yaml and the index file again without the archives.
const RERENDER: &str = "python3 plugin-manifest/render_krew.py --from-manifest krew.yaml \
                        --out krew.yaml --index .";

/// `kubectl krew index add mirrord-copy <this repository>` finds exactly one plugin, under the
/// name its file gives (Krew installs `INDEX/NAME` from `plugins/NAME.yaml`), and installs from
/// it what `krew install --manifest=krew.yaml` installs.
#[test]
fn committed_index_is_krew_yaml_as_plugins_mirrord_copy_yaml() {
    let root = repo_root();
    let plugins = root.join("plugins");
    let mut entries: Vec<String> = std::fs::read_dir(&plugins)
        .unwrap_or_else(|e| panic!("{}: {e} (render it: {RERENDER})", plugins.display()))
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    entries.sort();
    assert_eq!(
        entries,
        ["mirrord-copy.yaml"],
        "plugins/ must hold exactly the plugin's one manifest"
    );
    let path = root.join(INDEX_FILE);
    // Krew's index scan takes regular files only (a symlink to krew.yaml would not be listed).
    let kind = std::fs::symlink_metadata(&path).unwrap().file_type();
    assert!(kind.is_file(), "{INDEX_FILE} must be a regular file");
    let index = std::fs::read_to_string(&path).unwrap();
    let krew = std::fs::read_to_string(root.join("krew.yaml")).unwrap();
    assert!(
        index == krew,
        "{INDEX_FILE} differs from krew.yaml: render both ({RERENDER})"
    );
    let manifest: Value = serde_yaml_ng::from_str(&index).expect("the index file is YAML");
    let name = manifest["metadata"]["name"].as_str().unwrap_or_default();
    assert_eq!(
        format!("plugins/{name}.yaml"),
        INDEX_FILE,
        "the file name is metadata.name + .yaml"
    );
    let problems = validate(&manifest);
    assert!(problems.is_empty(), "{INDEX_FILE}: {problems:#?}");

    // Krew reads the index from a git clone: an ignored file would never reach it.
    if let Ok(out) = Command::new("git")
        .current_dir(&root)
        .args(["check-ignore", "-q", INDEX_FILE])
        .output()
    {
        assert_ne!(out.status.code(), Some(0), "{INDEX_FILE} is git-ignored");
    }
}

/// Neither file is edited by hand: both are what the renderer makes of krew.yaml's own version,
/// uri and sha256 (the descriptions and the caveats, read from role.yaml, come from the renderer).
#[test]
fn committed_manifests_are_what_the_renderer_makes() {
    let root = repo_root();
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new("python3")
        .arg(root.join("plugin-manifest/render_krew.py"))
        .arg("--from-manifest")
        .arg(root.join("krew.yaml"))
        .arg("--out")
        .arg(dir.path().join("krew.yaml"))
        .arg("--index")
        .arg(dir.path())
        .output()
        .expect("python3 runs render_krew.py");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rendered = std::fs::read_to_string(dir.path().join("krew.yaml")).unwrap();
    let committed = std::fs::read_to_string(root.join("krew.yaml")).unwrap();
    assert!(
        rendered == committed,
        "krew.yaml is not what render_krew.py makes of it (edited by hand, or the renderer or \
         plugin-manifest/role.yaml changed since): {RERENDER}\n--- rendered:\n{rendered}"
    );
    let index = std::fs::read_to_string(dir.path().join(INDEX_FILE)).unwrap();
    assert_eq!(index, rendered, "one rendering writes both files");
    let committed_index = std::fs::read_to_string(root.join(INDEX_FILE)).unwrap_or_default();
    assert!(committed_index == rendered, "{INDEX_FILE}: {RERENDER}");
}

/// verify_archives.py (as package.sh runs it) accepts the committed index layout.
#[test]
fn index_verifier_accepts_the_committed_index() {
    let root = repo_root();
    let out = Command::new("python3")
        .arg(root.join("plugin-manifest/verify_archives.py"))
        .arg("--manifest")
        .arg(root.join("krew.yaml"))
        .arg("--index")
        .arg(&root)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("ok index: plugins/mirrord-copy.yaml is krew.yaml"),
        "{text}"
    );
}

/// What `kubectl krew info` shows says what the copy runs and what sets it apart from
/// `kubectl debug --copy-to` and `dup` (krew-index reviewers check plugins for overlap), and the
/// caveats list exactly role.yaml's rules.
#[test]
fn manifest_says_what_the_copy_runs_how_it_differs_and_the_rights_it_needs() {
    let text = std::fs::read_to_string(repo_root().join("krew.yaml")).unwrap();
    let manifest: Value = serde_yaml_ng::from_str(&text).unwrap();
    let flat = |field: &str| {
        manifest["spec"][field]
            .as_str()
            .unwrap_or_default()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    };
    let short = flat("shortDescription");
    for word in ["probe-free", "placeholder"] {
        assert!(short.contains(word), "shortDescription: {short}");
    }
    let description = flat("description");
    for phrase in [
        "from a workload's pod spec",
        "no liveness, readiness or startup probes",
        "placeholder that never exits instead of the application",
        "your own process, under mirrord, plays the application's part",
        "--keep-command runs the application",
        "out of Service ready endpoints unless it replaces a scaled-down workload",
        "--scale-down scales the original to zero",
        "cluster-side lock",
        "`gc`",
        "after a crash",
        "listed by `status`",
        "`kubectl debug --copy-to` and the `dup` plugin",
        "Neither scales the original workload down and restores it",
    ] {
        assert!(
            description.contains(phrase),
            "description lacks {phrase:?}: {description}"
        );
    }

    let caveats = flat("caveats");
    let role: Value = serde_yaml_ng::from_str(
        &std::fs::read_to_string(repo_root().join("plugin-manifest/role.yaml")).unwrap(),
    )
    .unwrap();
    let strings = |v: &Value| -> Vec<String> {
        v.as_sequence()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap().to_string())
            .collect()
    };
    for rule in role["rules"].as_sequence().unwrap() {
        let group: String = strings(&rule["apiGroups"])
            .iter()
            .filter(|g| !g.is_empty())
            .map(|g| format!(" ({g})"))
            .collect();
        let line = format!(
            "- {}{group}: {}",
            strings(&rule["resources"]).join(", "),
            strings(&rule["verbs"]).join(", ")
        );
        assert!(caveats.contains(&line), "caveats lack {line:?}: {caveats}");
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The first bytes of an executable for `os/arch`: enough header for the format and machine.
fn executable_header(os: &str, arch: &str) -> Vec<u8> {
    let mut head = vec![0u8; 512];
    match (os, arch) {
        ("linux", arch) => {
            head[..6].copy_from_slice(b"\x7fELF\x02\x01");
            let machine: u16 = if arch == "amd64" { 0x3E } else { 0xB7 };
            head[18..20].copy_from_slice(&machine.to_le_bytes());
        }
        ("darwin", arch) => return macho(arch, &MAC_LIBS, true),
        (_, arch) => {
            head[..2].copy_from_slice(b"MZ");
            head[0x3C..0x40].copy_from_slice(&0x80u32.to_le_bytes());
            head[0x80..0x84].copy_from_slice(b"PE\0\0");
            let machine: u16 = if arch == "amd64" { 0x8664 } else { 0xAA64 };
            head[0x84..0x86].copy_from_slice(&machine.to_le_bytes());
        }
    }
    head
}

/// What a Rust binary links on macOS: system libraries in /usr/lib, present on every Mac.
const MAC_LIBS: [&str; 2] = ["/usr/lib/libSystem.B.dylib", "/usr/lib/libiconv.2.dylib"];

const PAGE: usize = 4096;

/// A minimal 64-bit Mach-O executable: the header, one LC_LOAD_DYLIB per library in `dylibs`,
/// some code, and, when `signed`, an embedded ad-hoc signature (a SuperBlob holding one SHA-256
/// CodeDirectory over every 4 KiB page before it, as rcodesign writes) named by
/// LC_CODE_SIGNATURE.
fn macho(arch: &str, dylibs: &[&str], signed: bool) -> Vec<u8> {
    let oldest = if arch == "amd64" { (10, 12) } else { (11, 0) };
    macho_for_macos(arch, dylibs, signed, oldest)
}

/// `macho` with LC_BUILD_VERSION naming `minos` as the oldest macOS it runs on.
fn macho_for_macos(arch: &str, dylibs: &[&str], signed: bool, minos: (u32, u32)) -> Vec<u8> {
    let le = |v: u32| v.to_le_bytes();
    let be = |v: u32| v.to_be_bytes();
    let code_limit = 3 * PAGE + 100;
    let ident = b"kubectl-mirrord_copy\0";
    let slots = code_limit.div_ceil(PAGE);
    let cd_len = 44 + ident.len() + 32 * slots;
    let sig_len = 20 + cd_len;

    let mut commands = Vec::new();
    for v in [0x32, 24, 1, minos.0 << 16 | minos.1 << 8, 26 << 16, 0] {
        commands.extend(le(v)); // LC_BUILD_VERSION, cmdsize, macOS, minos, sdk, no tools
    }
    for lib in dylibs {
        let size = (24 + lib.len() + 1).next_multiple_of(8);
        for v in [0xC, size as u32, 24, 2, 0x1_0000, 0x1_0000] {
            commands.extend(le(v)); // cmd, cmdsize, name offset, timestamp, versions
        }
        let mut name = lib.as_bytes().to_vec();
        name.resize(size - 24, 0);
        commands.extend(name);
    }
    if signed {
        for v in [0x1D, 16, code_limit as u32, sig_len as u32] {
            commands.extend(le(v)); // LC_CODE_SIGNATURE, cmdsize, dataoff, datasize
        }
    }
    let ncmds = 1 + dylibs.len() as u32 + u32::from(signed);
    let cpu = if arch == "amd64" {
        0x0100_0007
    } else {
        0x0100_000C
    };
    let mut out = Vec::new();
    for v in [0xFEED_FACF, cpu, 0, 2, ncmds, commands.len() as u32, 0, 0] {
        out.extend(le(v)); // magic, cputype, cpusubtype, MH_EXECUTE, ncmds, sizeofcmds, flags
    }
    out.extend(commands);
    let mut code = 0u8;
    out.resize_with(code_limit, || {
        code = code.wrapping_add(7);
        code
    });
    if signed {
        let mut sig = Vec::new();
        for v in [0xFADE_0CC0, sig_len as u32, 1, 0, 20] {
            sig.extend(be(v)); // SuperBlob: magic, length, count, slot 0 at offset 20
        }
        let hash_offset = (44 + ident.len()) as u32;
        for v in [0xFADE_0C02, cd_len as u32, 0x20001, 0x2, hash_offset, 44, 0] {
            sig.extend(be(v)); // CodeDirectory: magic, length, version, adhoc, hash/ident offsets, special slots
        }
        sig.extend(be(slots as u32));
        sig.extend(be(code_limit as u32));
        sig.extend([32, 2, 0, 12]); // SHA-256 hashes of 2^12-byte pages
        sig.extend(be(0));
        sig.extend(ident);
        for page in out.chunks(PAGE) {
            sig.extend(Sha256::digest(page));
        }
        assert_eq!(sig.len(), sig_len);
        out.extend(sig);
    }
    out
}

/// Pack `binary` as package.sh does: tar.gz with an executable bit, or zip on Windows.
fn pack(dir: &Path, os: &str, arch: &str, binary: &[u8]) {
    let stage = tempfile::tempdir().unwrap();
    let exe = if os == "windows" {
        "kubectl-mirrord_copy.exe"
    } else {
        "kubectl-mirrord_copy"
    };
    std::fs::write(stage.path().join(exe), binary).unwrap();
    std::fs::copy(repo_root().join("LICENSE"), stage.path().join("LICENSE")).unwrap();
    let status = if os == "windows" {
        let archive = dir.join(format!("kubectl-mirrord-copy-v9.8.7-{os}-{arch}.zip"));
        Command::new("python3")
            .current_dir(stage.path())
            .args(["-m", "zipfile", "-c"])
            .arg(archive)
            .args([exe, "LICENSE"])
            .status()
    } else {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(
            stage.path().join(exe),
            std::fs::Permissions::from_mode(0o755),
        )
        .unwrap();
        let archive = dir.join(format!("kubectl-mirrord-copy-v9.8.7-{os}-{arch}.tar.gz"));
        Command::new("tar")
            .arg("-C")
            .arg(stage.path())
            .arg("-czf")
            .arg(archive)
            .args([exe, "LICENSE"])
            .status()
    };
    assert!(status.unwrap().success());
}

fn render_and_verify(dir: &Path) -> (bool, String) {
    let render = Command::new("python3")
        .arg(repo_root().join("plugin-manifest/render_krew.py"))
        .args(["--version", "v9.8.7", "--archives"])
        .arg(dir)
        .arg("--out")
        .arg(dir.join("krew.yaml"))
        .status()
        .unwrap();
    assert!(render.success());
    verify(dir)
}

/// verify_archives.py on `dir`'s krew.yaml and archives: (passed?, everything it printed).
fn verify(dir: &Path) -> (bool, String) {
    let out = Command::new("python3")
        .arg(repo_root().join("plugin-manifest/verify_archives.py"))
        .arg("--manifest")
        .arg(dir.join("krew.yaml"))
        .arg("--archives")
        .arg(dir)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

#[test]
fn archive_verifier_accepts_right_binaries_and_names_a_mixed_up_one() {
    let dir = tempfile::tempdir().unwrap();
    for (os, arch) in PLATFORMS {
        pack(dir.path(), os, arch, &executable_header(os, arch));
    }
    let (ok, text) = render_and_verify(dir.path());
    assert!(ok, "{text}");
    assert_eq!(
        text.lines().filter(|l| l.starts_with("ok ")).count(),
        6,
        "{text}"
    );

    // An amd64 binary in the arm64 archive is caught, naming the platform.
    pack(
        dir.path(),
        "linux",
        "arm64",
        &executable_header("linux", "amd64"),
    );
    let (ok, text) = render_and_verify(dir.path());
    assert!(!ok);
    assert!(
        text.contains("linux/arm64: kubectl-mirrord_copy is ('ELF', 62)"),
        "{text}"
    );
}

#[test]
fn archive_verifier_catches_a_changed_archive() {
    let dir = tempfile::tempdir().unwrap();
    pack(
        dir.path(),
        "windows",
        "arm64",
        &executable_header("windows", "arm64"),
    );
    let (ok, text) = render_and_verify(dir.path());
    assert!(ok, "{text}");
    // Rebuilt after krew.yaml was rendered: the sha256 no longer matches.
    pack(
        dir.path(),
        "windows",
        "arm64",
        &executable_header("windows", "amd64"),
    );
    let (ok, text) = verify(dir.path());
    assert!(!ok);
    assert!(
        text.contains(
            "windows/arm64: sha256 of kubectl-mirrord-copy-v9.8.7-windows-arm64.zip differs"
        ),
        "{text}"
    );
}

#[test]
fn archive_verifier_wants_signed_macos_binaries_linking_only_system_libraries() {
    let dir = tempfile::tempdir().unwrap();
    for arch in ["amd64", "arm64"] {
        pack(dir.path(), "darwin", arch, &macho(arch, &MAC_LIBS, true));
    }
    let (ok, text) = render_and_verify(dir.path());
    assert!(ok, "{text}");

    // Unsigned arm64: Apple Silicon would refuse to run it.
    pack(
        dir.path(),
        "darwin",
        "arm64",
        &macho("arm64", &MAC_LIBS, false),
    );
    // Linking a framework (as security-framework did): only Apple's SDK can link that.
    let security = "/System/Library/Frameworks/Security.framework/Versions/A/Security";
    pack(
        dir.path(),
        "darwin",
        "amd64",
        &macho("amd64", &[MAC_LIBS[0], security], true),
    );
    let (ok, text) = render_and_verify(dir.path());
    assert!(!ok, "{text}");
    assert!(
        text.contains("darwin/arm64: kubectl-mirrord_copy has no code signature"),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "darwin/amd64: kubectl-mirrord_copy links {security}"
        )),
        "{text}"
    );
    assert!(!text.contains("ok darwin"), "{text}");

    // Changed after signing (e.g. stripped): the signature no longer matches its pages.
    let mut changed = macho("arm64", &MAC_LIBS, true);
    changed[PAGE + 1] ^= 0xFF;
    pack(dir.path(), "darwin", "arm64", &changed);
    pack(
        dir.path(),
        "darwin",
        "amd64",
        &macho("amd64", &MAC_LIBS, true),
    );
    let (ok, text) = render_and_verify(dir.path());
    assert!(!ok, "{text}");
    assert!(
        text.contains(
            "darwin/arm64: kubectl-mirrord_copy has a code signature that does not match page 1"
        ),
        "{text}"
    );
    assert!(!text.contains("darwin/amd64:"), "{text}");

    // Built for a newer macOS than Rust supports (zig's default when MACOSX_DEPLOYMENT_TARGET
    // is not set): older Macs would refuse it.
    pack(
        dir.path(),
        "darwin",
        "arm64",
        &macho_for_macos("arm64", &MAC_LIBS, true, (15, 0)),
    );
    let (ok, text) = render_and_verify(dir.path());
    assert!(!ok, "{text}");
    assert!(
        text.contains("darwin/arm64: kubectl-mirrord_copy needs macOS 15.0, want 11.0"),
        "{text}"
    );
}

/// render_krew.py --index, as package.sh runs it: render with an index directory.
fn render_with_index(dir: &Path) {
    let render = Command::new("python3")
        .arg(repo_root().join("plugin-manifest/render_krew.py"))
        .args(["--version", "v9.8.7", "--archives"])
        .arg(dir)
        .arg("--out")
        .arg(dir.join("krew.yaml"))
        .arg("--index")
        .arg(dir.join("index"))
        .status()
        .unwrap();
    assert!(render.success());
}

/// verify_archives.py on `dir`'s krew.yaml, archives and index: (passed?, what it printed).
fn verify_index(dir: &Path) -> (bool, String) {
    let out = Command::new("python3")
        .arg(repo_root().join("plugin-manifest/verify_archives.py"))
        .arg("--manifest")
        .arg(dir.join("krew.yaml"))
        .arg("--archives")
        .arg(dir)
        .arg("--index")
        .arg(dir.join("index"))
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

#[test]
fn renderer_writes_the_index_file_as_krew_yaml_with_the_archives_sha256() {
    let dir = tempfile::tempdir().unwrap();
    for (os, arch) in PLATFORMS {
        pack(dir.path(), os, arch, &executable_header(os, arch));
    }
    render_with_index(dir.path());
    let krew = std::fs::read_to_string(dir.path().join("krew.yaml")).unwrap();
    let index = std::fs::read_to_string(dir.path().join("index").join(INDEX_FILE)).unwrap();
    assert_eq!(index, krew);
    let manifest: Value = serde_yaml_ng::from_str(&index).unwrap();
    assert!(validate(&manifest).is_empty());
    for p in manifest["spec"]["platforms"].as_sequence().unwrap() {
        let name = p["uri"].as_str().unwrap().rsplit('/').next().unwrap();
        let archive = std::fs::read(dir.path().join(name)).unwrap();
        assert_eq!(
            p["sha256"].as_str(),
            Some(hex(&Sha256::digest(archive)).as_str())
        );
    }
    let (ok, text) = verify_index(dir.path());
    assert!(ok, "{text}");
    assert_eq!(
        text.lines().filter(|l| l.starts_with("ok ")).count(),
        7,
        "six platforms and the index: {text}"
    );
    assert!(
        text.contains("ok index: plugins/mirrord-copy.yaml is krew.yaml"),
        "{text}"
    );

    // Re-rendering that manifest without the archives changes nothing.
    let again = Command::new("python3")
        .arg(repo_root().join("plugin-manifest/render_krew.py"))
        .arg("--from-manifest")
        .arg(dir.path().join("krew.yaml"))
        .output()
        .unwrap();
    assert!(again.status.success());
    assert_eq!(String::from_utf8_lossy(&again.stdout), krew);
}

#[test]
fn index_verifier_names_a_missing_differing_or_misnamed_index_file() {
    let dir = tempfile::tempdir().unwrap();
    pack(
        dir.path(),
        "linux",
        "amd64",
        &executable_header("linux", "amd64"),
    );
    render_with_index(dir.path());
    let plugins = dir.path().join("index/plugins");
    let krew = std::fs::read_to_string(dir.path().join("krew.yaml")).unwrap();
    assert!(verify_index(dir.path()).0);
    let reset = |files: &[(&str, &str)]| {
        std::fs::remove_dir_all(&plugins).unwrap();
        std::fs::create_dir(&plugins).unwrap();
        for (name, text) in files {
            std::fs::write(plugins.join(name), text).unwrap();
        }
    };

    // Missing: krew install mirrord-copy/mirrord-copy would find nothing.
    reset(&[]);
    let (ok, text) = verify_index(dir.path());
    assert!(!ok);
    assert!(
        text.contains("index: plugins/mirrord-copy.yaml is missing"),
        "{text}"
    );
    std::fs::remove_dir_all(&plugins).unwrap();
    let (ok, text) = verify_index(dir.path());
    assert!(!ok);
    assert!(text.contains("plugins is missing"), "{text}");
    std::fs::create_dir(&plugins).unwrap();

    // Named wrongly: Krew installs INDEX/NAME from plugins/NAME.yaml and scans only .yaml files.
    reset(&[("mirrord_copy.yaml", &krew)]);
    let (ok, text) = verify_index(dir.path());
    assert!(!ok);
    for want in [
        "index: plugins/mirrord-copy.yaml is missing",
        "index: plugins/mirrord_copy.yaml is another manifest",
        "index: plugins/mirrord_copy.yaml: metadata.name is 'mirrord-copy', want 'mirrord_copy'",
    ] {
        assert!(text.contains(want), "{want}: {text}");
    }
    reset(&[("mirrord-copy.yml", &krew)]);
    let (ok, text) = verify_index(dir.path());
    assert!(!ok);
    assert!(
        text.contains("index: plugins/mirrord-copy.yml ends in .yml"),
        "{text}"
    );
    reset(&[]);
    std::os::unix::fs::symlink(
        dir.path().join("krew.yaml"),
        plugins.join("mirrord-copy.yaml"),
    )
    .unwrap();
    let (ok, text) = verify_index(dir.path());
    assert!(!ok);
    assert!(
        text.contains("index: plugins/mirrord-copy.yaml is a symlink"),
        "{text}"
    );

    // A second plugin: the index holds exactly one manifest per plugin, and only this one.
    reset(&[
        ("mirrord-copy.yaml", &krew),
        (
            "other.yaml",
            &krew.replace("name: mirrord-copy", "name: other"),
        ),
    ]);
    let (ok, text) = verify_index(dir.path());
    assert!(!ok);
    assert!(
        text.contains("index: plugins/other.yaml is another manifest"),
        "{text}"
    );

    // Differs from krew.yaml: another sha256 (an archive rebuilt since) is named twice, as a
    // difference and as a mismatch with the archive.
    let sha = Sha256::digest(b"not the archive");
    let old_sha = krew
        .lines()
        .find_map(|l| l.trim().strip_prefix("sha256: "))
        .unwrap();
    reset(&[("mirrord-copy.yaml", &krew.replace(old_sha, &hex(&sha)))]);
    let (ok, text) = verify_index(dir.path());
    assert!(!ok);
    for want in [
        "index: plugins/mirrord-copy.yaml differs from krew.yaml (first at line",
        "index: linux/amd64: sha256 of kubectl-mirrord-copy-v9.8.7-linux-amd64.tar.gz differs",
    ] {
        assert!(text.contains(want), "{want}: {text}");
    }

    // Not a Plugin manifest Krew would load.
    reset(&[(
        "mirrord-copy.yaml",
        &krew.replace("kind: Plugin", "kind: Plugins"),
    )]);
    let (ok, text) = verify_index(dir.path());
    assert!(!ok);
    assert!(
        text.contains("index: plugins/mirrord-copy.yaml: kind is 'Plugins', want Plugin"),
        "{text}"
    );

    reset(&[("mirrord-copy.yaml", &krew)]);
    let (ok, text) = verify_index(dir.path());
    assert!(ok, "{text}");
}
