//! The node's replay cache kept in a file across restarts (`ws_node --replay-state FILE`).
//!
//! Why: a node that forgets which inits it saw accepts every init recorded on the wire within
//! the key lifetime again after a restart, and runs the prompt that follows under the
//! victim's address. [`ReplayFile`] loads the state at start
//! ([`Node::restore_replay_state`]) and writes it again whenever the node recorded a new
//! ephemeral key ([`NodeStats::replay_cache_inserts`](sealwire::session::NodeStats)), before
//! the frames of that input are sent — so an acknowledged init is on disk even if the process
//! is killed right after. Each write is atomic: a temporary file beside FILE (mode 0600),
//! flushed to disk, then renamed over FILE.
//!
//! The state holds public values (ephemeral keys and client addresses seen on the wire); what
//! must be protected is its integrity: whoever can edit or roll back FILE can let replays in.

use std::io::Write;
use std::path::{Path, PathBuf};

use sealwire::session::Node;
use sealwire::time::{Instant, WallTime};

/// A replay-state file and what was last written to it.
pub struct ReplayFile {
    path: PathBuf,
    /// `replay_cache_inserts` at the last load or save.
    saved: u64,
}

impl ReplayFile {
    /// Loads `path` into `node` at `now` (a missing file means nothing was seen yet) and
    /// returns the file with the number of entries restored. Errors name the file and the
    /// reason; a file that is not a replay state is an error, not an empty state.
    ///
    /// ```
    /// use sealwire::session::{Node, NodeConfig, SecretKey};
    /// use session_examples::replay_file::ReplayFile;
    /// let path = std::env::temp_dir().join(format!("sealwire-doc-replay-{}", std::process::id()));
    /// let key = SecretKey::generate(&mut session_examples::system_rng());
    /// let mut node = Node::new(key, NodeConfig::default(), session_examples::system_rng()).unwrap();
    /// let now = sealwire::time::Instant::ZERO;
    /// let (mut file, restored) = ReplayFile::open(path.clone(), &mut node, now).unwrap();
    /// assert_eq!(restored, 0);
    /// file.save(&node, now).unwrap();
    /// assert!(ReplayFile::open(path.clone(), &mut node, now).is_ok());
    /// std::fs::write(&path, "garbage").unwrap();
    /// assert!(ReplayFile::open(path.clone(), &mut node, now).is_err());
    /// std::fs::remove_file(&path).unwrap();
    /// ```
    pub fn open<R: rand_core::CryptoRng>(
        path: PathBuf,
        node: &mut Node<R>,
        now: Instant,
    ) -> Result<(Self, usize), String> {
        let restored = match std::fs::read(&path) {
            Ok(state) => node
                .restore_replay_state(now, WallTime::now(), &state)
                .map_err(|e| format!("{}: {e}", path.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
        };
        let saved = node.stats().replay_cache_inserts;
        Ok((ReplayFile { path, saved }, restored))
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes the state again if the node recorded a key since the last load or save;
    /// `Ok(true)` when it wrote.
    pub fn save_if_changed<R: rand_core::CryptoRng>(
        &mut self,
        node: &Node<R>,
        now: Instant,
    ) -> Result<bool, String> {
        if node.stats().replay_cache_inserts == self.saved {
            return Ok(false);
        }
        self.save(node, now).map(|()| true)
    }

    /// Writes the state atomically (temporary file, fsync, rename).
    pub fn save<R: rand_core::CryptoRng>(
        &mut self,
        node: &Node<R>,
        now: Instant,
    ) -> Result<(), String> {
        let inserts = node.stats().replay_cache_inserts;
        let state = node.replay_state(now, WallTime::now());
        let name = self.path.file_name().unwrap_or_default().to_string_lossy();
        let tmp = self.path.with_file_name(format!(".{name}.tmp"));
        let fail = |e: std::io::Error| format!("cannot write {}: {e}", self.path.display());
        {
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create(true).truncate(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            let mut file = options.open(&tmp).map_err(fail)?;
            file.write_all(&state).map_err(fail)?;
            file.sync_all().map_err(fail)?;
        }
        std::fs::rename(&tmp, &self.path).map_err(fail)?;
        // Make the rename itself durable (best effort: not every platform can open a dir).
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            if let Ok(d) = std::fs::File::open(dir) {
                let _ = d.sync_all();
            }
        }
        self.saved = inserts;
        Ok(())
    }
}
