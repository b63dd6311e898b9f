//! This machine's sessions, cached in a JSON file so `status` can mark the ones that are yours.
//!
//! Read-modify-write happens under an exclusive lock on a sibling `.lock` file (std's
//! `File::lock`: flock on Unix, LockFileEx on Windows); the file is replaced atomically (temp file in the same directory, fsync, rename) with mode 0600. A file
//! that does not parse, or has an unknown version, is moved aside with a warning: the cluster
//! is the source of truth, the cache is never worth a crash.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

pub(crate) const VERSION: u32 = 1;
const FILE: &str = "sessions.json";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Entry {
    pub id: String,
    pub namespace: String,
    pub context: String,
    pub target: String,
    pub copy_pod: String,
    pub created: DateTime<Utc>,
}

#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
struct StateFile {
    version: u32,
    sessions: Vec<Entry>,
    /// Who each set of credentials authenticates as (a SelfSubjectReview's answer), by
    /// `identity_key`: saves that round trip on every `create`. Absent in older files.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    identities: BTreeMap<String, KnownIdentity>,
}

/// A cached SelfSubjectReview answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct KnownIdentity {
    pub user: String,
    pub checked: DateTime<Utc>,
}

/// How long a cached identity is trusted. Credentials that change (another token, another
/// certificate, another exec command) have another key, so this only bounds how long a
/// renamed user could be recorded under the old name.
pub(crate) const IDENTITY_TTL: chrono::Duration = chrono::Duration::hours(24);

/// How recent an entry [`LocalState::prune`] keeps whatever a listing says: a session made
/// while the LIST was being answered, or whose clock was a little off.
pub(crate) const PRUNE_GRACE: chrono::Duration = chrono::Duration::minutes(2);

pub(crate) struct LocalState {
    dir: PathBuf,
}

impl LocalState {
    /// `$MIRRORD_COPY_STATE_DIR`, else the platform's state directory (cache directory where
    /// there is none, e.g. macOS), plus `kubectl-mirrord-copy`.
    pub(crate) fn default_location() -> Option<LocalState> {
        if let Some(dir) = std::env::var_os("MIRRORD_COPY_STATE_DIR") {
            return Some(LocalState::at(PathBuf::from(dir)));
        }
        dirs::state_dir()
            .or_else(dirs::cache_dir)
            .map(|d| LocalState::at(d.join("kubectl-mirrord-copy")))
    }

    pub(crate) fn at(dir: PathBuf) -> LocalState {
        LocalState { dir }
    }

    pub(crate) fn path(&self) -> PathBuf {
        self.dir.join(FILE)
    }

    /// The recorded sessions (empty when there is no file).
    pub(crate) fn entries(&self) -> std::io::Result<Vec<Entry>> {
        self.update(|_| {}).map(|f| f.sessions)
    }

    pub(crate) fn add(&self, entry: Entry) -> std::io::Result<()> {
        self.update(|f| {
            f.sessions
                .retain(|e| !(e.id == entry.id && e.namespace == entry.namespace));
            f.sessions.push(entry);
        })
        .map(drop)
    }

    pub(crate) fn remove(&self, namespace: &str, id: &str) -> std::io::Result<()> {
        self.update(|f| {
            f.sessions
                .retain(|e| !(e.id == id && e.namespace == namespace))
        })
        .map(drop)
    }

    /// Forgets the sessions of `context` in `namespace` (every namespace if None) that are not
    /// in `live`, the complete list of that scope from a LIST started at `listed_at`. Entries
    /// made from [`PRUNE_GRACE`] before it on are kept: their session may have been created
    /// after the LIST read. Returns what was forgotten.
    pub(crate) fn prune(
        &self,
        context: &str,
        namespace: Option<&str>,
        live: &[(&str, &str)],
        listed_at: DateTime<Utc>,
    ) -> std::io::Result<Vec<Entry>> {
        let mut gone = Vec::new();
        self.update(|f| {
            f.sessions.retain(|e| {
                let ended = e.context == context
                    && namespace.is_none_or(|ns| e.namespace == ns)
                    && e.created < listed_at - PRUNE_GRACE
                    && !live.contains(&(e.namespace.as_str(), e.id.as_str()));
                if ended {
                    gone.push(e.clone());
                }
                !ended
            })
        })?;
        Ok(gone)
    }

    /// The user the credentials `key` authenticated as, if checked within [`IDENTITY_TTL`].
    pub(crate) fn identity(
        &self,
        key: &str,
        now: DateTime<Utc>,
    ) -> std::io::Result<Option<String>> {
        let file = self.update(|_| {})?;
        Ok(file
            .identities
            .get(key)
            .filter(|k| now - k.checked < IDENTITY_TTL && k.checked <= now)
            .map(|k| k.user.clone()))
    }

    pub(crate) fn remember_identity(
        &self,
        key: &str,
        user: &str,
        now: DateTime<Utc>,
    ) -> std::io::Result<()> {
        self.update(|f| {
            f.identities.retain(|_, k| now - k.checked < IDENTITY_TTL);
            f.identities.insert(
                key.to_string(),
                KnownIdentity {
                    user: user.to_string(),
                    checked: now,
                },
            );
        })
        .map(drop)
    }

    /// Lock, read, apply `change`, write back if it changed anything; returns the new state.
    fn update(&self, change: impl FnOnce(&mut StateFile)) -> std::io::Result<StateFile> {
        fs::create_dir_all(&self.dir)?;
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(self.dir.join(format!("{FILE}.lock")))?;
        lock.lock()?;
        let result = (|| {
            let before = self.read_or_set_aside()?;
            let mut file = before.clone();
            change(&mut file);
            if file != before {
                self.write(&file)?;
            }
            Ok(file)
        })();
        let _ = lock.unlock();
        result
    }

    fn read_or_set_aside(&self) -> std::io::Result<StateFile> {
        let path = self.path();
        let empty = StateFile {
            version: VERSION,
            ..Default::default()
        };
        let text = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(empty),
            Err(e) => return Err(e),
        };
        let problem = match serde_json::from_str::<StateFile>(&text) {
            Ok(f) if f.version == VERSION => return Ok(f),
            Ok(f) => format!("unknown version {}", f.version),
            Err(e) => format!("it does not parse: {e}"),
        };
        let aside = path.with_file_name(format!(
            "{FILE}.corrupt-{}",
            Utc::now().format("%Y%m%dT%H%M%S%.3fZ")
        ));
        fs::rename(&path, &aside)?;
        eprintln!(
            "warning: the local session cache {} was set aside as {} ({problem}); starting a new one",
            path.display(),
            aside.display()
        );
        Ok(empty)
    }

    fn write(&self, file: &StateFile) -> std::io::Result<()> {
        let body = serde_json::to_vec_pretty(file)?;
        let tmp = self.dir.join(format!(".{FILE}.tmp-{}", std::process::id()));
        {
            let mut f = create_private(&tmp)?;
            f.write_all(&body)?;
            f.write_all(b"\n")?;
            f.sync_all()?;
        }
        fs::rename(&tmp, self.path())?;
        // Make the rename durable too.
        if let Ok(d) = File::open(&self.dir) {
            let _ = d.sync_all();
        }
        Ok(())
    }
}

#[cfg(unix)]
fn create_private(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
}

#[cfg(not(unix))]
fn create_private(path: &Path) -> std::io::Result<File> {
    File::create(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identities_are_cached_per_key_for_a_day_beside_the_sessions() {
        let dir = tempfile::tempdir().unwrap();
        let state = LocalState::at(dir.path().to_path_buf());
        let now = Utc::now();
        state.add(entry("s1")).unwrap();
        assert_eq!(state.identity("k1", now).unwrap(), None);
        state
            .remember_identity("k1", "alice@example.com", now)
            .unwrap();
        assert_eq!(
            state.identity("k1", now).unwrap().as_deref(),
            Some("alice@example.com")
        );
        assert_eq!(
            state.identity("k2", now).unwrap(),
            None,
            "other credentials"
        );
        let later = now + IDENTITY_TTL + chrono::Duration::seconds(1);
        assert_eq!(state.identity("k1", later).unwrap(), None, "stale");
        assert_eq!(state.entries().unwrap().len(), 1, "sessions untouched");
    }

    fn entry(id: &str) -> Entry {
        Entry {
            id: id.into(),
            namespace: "default".into(),
            context: "ctx".into(),
            target: "deployment/x".into(),
            copy_pod: format!("x-copy-{id}"),
            created: Utc::now(),
        }
    }

    #[test]
    fn add_list_remove_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let state = LocalState::at(dir.path().join("s"));
        assert!(state.entries().unwrap().is_empty());
        state.add(entry("a")).unwrap();
        state.add(entry("b")).unwrap();
        state.add(entry("a")).unwrap(); // re-adding replaces
        let ids: Vec<_> = state.entries().unwrap().into_iter().map(|e| e.id).collect();
        assert_eq!(ids, ["b", "a"]);
        state.remove("default", "b").unwrap();
        assert_eq!(state.entries().unwrap().len(), 1);
    }

    #[test]
    fn sessions_ended_elsewhere_are_pruned_within_the_listed_scope() {
        let dir = tempfile::tempdir().unwrap();
        let state = LocalState::at(dir.path().to_path_buf());
        let listed_at = Utc::now();
        let old = listed_at - chrono::Duration::hours(1);
        let at = |id: &str, ns: &str, ctx: &str, created| Entry {
            namespace: ns.into(),
            context: ctx.into(),
            created,
            ..entry(id)
        };
        for e in [
            at("live", "default", "ctx", old),
            at("ended", "default", "ctx", old),
            at("other-ns", "prod", "ctx", old),
            at("other-ctx", "default", "elsewhere", old),
            at(
                "just-made",
                "default",
                "ctx",
                listed_at - chrono::Duration::seconds(30),
            ),
        ] {
            state.add(e).unwrap();
        }
        let ids = |s: &LocalState| -> Vec<String> {
            s.entries().unwrap().into_iter().map(|e| e.id).collect()
        };
        let gone = state
            .prune("ctx", Some("default"), &[("default", "live")], listed_at)
            .unwrap();
        assert_eq!(
            gone.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(),
            ["ended"]
        );
        assert_eq!(ids(&state), ["live", "other-ns", "other-ctx", "just-made"]);
        // Every namespace of the context: prod's session is gone too; the other context's stays.
        state
            .prune("ctx", None, &[("default", "live")], listed_at)
            .unwrap();
        assert_eq!(ids(&state), ["live", "other-ctx", "just-made"]);
    }

    #[cfg(unix)]
    #[test]
    fn file_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let state = LocalState::at(dir.path().to_path_buf());
        state.add(entry("a")).unwrap();
        let mode = fs::metadata(state.path()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn corrupt_and_unknown_version_files_are_set_aside() {
        let dir = tempfile::tempdir().unwrap();
        let state = LocalState::at(dir.path().to_path_buf());
        fs::write(state.path(), "{ not json").unwrap();
        assert!(state.entries().unwrap().is_empty());
        state.add(entry("a")).unwrap();
        fs::write(state.path(), r#"{"version": 99, "sessions": []}"#).unwrap();
        assert!(state.entries().unwrap().is_empty());
        let aside = fs::read_dir(dir.path())
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .contains(".corrupt-")
            })
            .count();
        assert_eq!(aside, 2, "both bad files kept for inspection");
        state.add(entry("b")).unwrap();
        assert_eq!(state.entries().unwrap().len(), 1);
    }

    #[test]
    fn concurrent_writers_lose_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let path = path.clone();
                std::thread::spawn(move || {
                    let state = LocalState::at(path);
                    for i in 0..10 {
                        state.add(entry(&format!("t{t}-{i}"))).unwrap();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let state = LocalState::at(path);
        assert_eq!(state.entries().unwrap().len(), 80);
    }
}
