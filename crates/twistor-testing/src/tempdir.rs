//! `TempDir`: a scratch directory for a test, removed when dropped.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

/// A fresh directory under the system's temp dir, named after the test's `tag`, this
/// process and a counter (so parallel tests never share one), removed when dropped.
///
/// ```
/// let dir = twistor_testing::TempDir::new("example");
/// let file = dir.write("sub/hello.txt", "hi");
/// assert_eq!(std::fs::read_to_string(&file).unwrap(), "hi");
/// assert_eq!(file, dir.join("sub/hello.txt"));
/// ```
pub struct TempDir(PathBuf);

impl TempDir {
    /// Makes the directory (emptied if a crashed run left it).
    pub fn new(tag: &str) -> TempDir {
        static N: AtomicU32 = AtomicU32::new(0);
        let path = std::env::temp_dir().join(format!(
            "twistor-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("a temporary directory");
        TempDir(path)
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.0
    }

    /// The path of `name` in the directory.
    pub fn join(&self, name: impl AsRef<Path>) -> PathBuf {
        self.0.join(name)
    }

    /// Writes `data` to `name` in the directory (making the directories on the way);
    /// returns its path.
    pub fn write(&self, name: impl AsRef<Path>, data: impl AsRef<[u8]>) -> PathBuf {
        let path = self.0.join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("directories in a temporary directory");
        }
        std::fs::write(&path, data).expect("a file in a temporary directory");
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
