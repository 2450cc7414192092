//! A worker's working directory as the server touches it: the files API, the files of loaded
//! services and snapshots, and the detection of files an execution changed.
//!
//! The directory belongs to the worker, whose code may plant symbolic links or FIFOs in it at
//! any moment, while the server reads and writes there with more privileges than the worker
//! has. So every path is resolved beneath the directory (`cap_std`: a link pointing outside is
//! refused, however it got there), only regular files are read, and what the server creates is
//! handed to the worker's user so that its code may change it.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use cap_std::fs::{Dir, OpenOptions};
use o16n_types::FileName;

use crate::RuntimeError;

/// The most files of a working directory the server keeps track of (listing, changed files):
/// the directory is the worker's, which may create millions, and the server's memory is not.
const MAX_TRACKED_FILES: usize = 100_000;
/// The deepest subdirectory whose files a walk (a snapshot) takes, and the most files it takes.
const MAX_WALK_DEPTH: usize = 64;
const MAX_WALK_FILES: usize = 1_000_000;

/// What identifies a version of a file cheaply: size and modification time.
type Fingerprint = (u64, Option<SystemTime>);

/// An opened working directory.
#[derive(Debug)]
pub(crate) struct WorkDir {
    path: PathBuf,
    dir: Dir,
    /// The worker's user id, when it is not the server's.
    owner: Option<u32>,
}

impl WorkDir {
    /// Creates the directory (readable by its owner only), gives it to `owner` and opens it.
    pub(crate) fn create(path: &Path, owner: Option<u32>) -> Result<WorkDir, RuntimeError> {
        use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
        std::fs::DirBuilder::new().mode(0o700).create(path)?;
        if let Some(owner) = owner {
            std::os::unix::fs::chown(path, Some(owner), Some(owner))?;
        }
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700))?;
        let dir = Dir::open_ambient_dir(path, cap_std::ambient_authority())?;
        Ok(WorkDir {
            path: path.to_path_buf(),
            dir,
            owner,
        })
    }

    /// The directory on the server's side.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The regular files directly in the directory, by name (the first
    /// [`MAX_TRACKED_FILES`] found).
    pub(crate) fn fingerprints(&self) -> Result<BTreeMap<String, Fingerprint>, RuntimeError> {
        let mut files = BTreeMap::new();
        for entry in self.dir.entries()?.take(MAX_TRACKED_FILES) {
            let entry = entry?;
            // The entry's own metadata: a link is not followed.
            let metadata = entry.metadata()?;
            if metadata.is_file() {
                files.insert(
                    entry.file_name().to_string_lossy().into_owned(),
                    (
                        metadata.len(),
                        metadata.modified().ok().map(|time| time.into_std()),
                    ),
                );
            }
        }
        Ok(files)
    }

    /// The names of the regular files in the directory, sorted.
    pub(crate) fn list(&self) -> Result<Vec<String>, RuntimeError> {
        Ok(self.fingerprints()?.into_keys().collect())
    }

    /// Opens an existing regular file for reading. A link, a FIFO or anything else that is not
    /// a plain file is "not found": reading it could escape the directory or block forever.
    pub(crate) fn open(&self, name: &FileName) -> Result<std::fs::File, RuntimeError> {
        self.open_regular(Path::new(name.as_str()))
            .ok_or_else(|| RuntimeError::NotFound(format!("file `{name}` not found")))
    }

    fn open_regular(&self, relative: &Path) -> Option<std::fs::File> {
        use cap_std::fs::OpenOptionsExt;
        if !self.dir.symlink_metadata(relative).ok()?.is_file() {
            return None;
        }
        // Non-blocking, so that a FIFO swapped in after the check cannot hang the open.
        let file = self
            .dir
            .open_with(
                relative,
                OpenOptions::new()
                    .read(true)
                    .custom_flags(nix::fcntl::OFlag::O_NONBLOCK.bits()),
            )
            .ok()?;
        file.metadata().ok()?.is_file().then(|| file.into_std())
    }

    /// Deletes a regular file.
    pub(crate) fn delete(&self, name: &FileName) -> Result<(), RuntimeError> {
        let found = self
            .dir
            .symlink_metadata(name.as_str())
            .is_ok_and(|metadata| metadata.is_file());
        if !found {
            return Err(RuntimeError::NotFound(format!("file `{name}` not found")));
        }
        self.dir.remove_file(name.as_str())?;
        Ok(())
    }

    /// Writes a file at a relative path, creating its directories and replacing a file of the
    /// same name; the file and the directories are the worker's.
    pub(crate) fn write_file(
        &self,
        relative: &Path,
        content: &mut dyn Read,
    ) -> Result<(), RuntimeError> {
        if let Some(parent) = relative.parent() {
            self.create_dirs(parent)?;
        }
        self.create_file(relative, content)
    }

    /// Creates a file for the worker that the caller fills (an upload arriving in chunks),
    /// under a temporary name; [`WorkDir::commit`] gives it its real name.
    pub(crate) fn create_temporary(&self) -> Result<(String, std::fs::File), RuntimeError> {
        let temporary = format!(".o16n-upload-{}", uuid::Uuid::new_v4().simple());
        self.create_file(Path::new(&temporary), &mut std::io::empty())?;
        let file = self
            .dir
            .open_with(&temporary, OpenOptions::new().write(true).append(true))?;
        Ok((temporary, file.into_std()))
    }

    /// Renames a file made by [`WorkDir::create_temporary`] to its name, atomically.
    pub(crate) fn commit(&self, temporary: &str, name: &FileName) -> Result<(), RuntimeError> {
        let renamed = self.dir.rename(temporary, &self.dir, name.as_str());
        if renamed.is_err() {
            let _ = self.dir.remove_file(temporary);
        }
        Ok(renamed?)
    }

    /// Removes a file made by [`WorkDir::create_temporary`] that will not be committed.
    pub(crate) fn discard(&self, temporary: &str) {
        let _ = self.dir.remove_file(temporary);
    }

    /// Creates a directory and its missing parents beneath the working directory, each given
    /// to the worker.
    pub(crate) fn create_dirs(&self, relative: &Path) -> Result<(), RuntimeError> {
        let mut parent = PathBuf::new();
        for component in relative.components() {
            let below = if parent.as_os_str().is_empty() {
                self.dir.try_clone()?
            } else {
                self.dir.open_dir(&parent)?
            };
            match below.create_dir(component) {
                Ok(()) => {
                    if let Some(owner) = self.owner {
                        // Handed over by name in its parent, without following a link that
                        // might have replaced it meanwhile.
                        let owner = Some(rustix::fs::Uid::from_raw(owner));
                        rustix::fs::chownat(
                            &below,
                            component.as_os_str(),
                            owner,
                            owner.map(|uid| rustix::fs::Gid::from_raw(uid.as_raw())),
                            rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
                        )
                        .map_err(std::io::Error::from)?;
                    }
                }
                Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(err) => return Err(err.into()),
            }
            parent.push(component);
        }
        Ok(())
    }

    /// Removes a subdirectory and everything in it, however deep; links inside are removed,
    /// not followed.
    pub(crate) fn remove_dir_all(&self, relative: &Path) -> Result<(), RuntimeError> {
        let Some(name) = relative.file_name() else {
            return Ok(());
        };
        let parent = match relative.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => match self.dir.open_dir(parent) {
                Ok(parent) => parent,
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(()),
                Err(err) => return Err(err.into()),
            },
            _ => self.dir.try_clone()?,
        };
        Ok(crate::remove::remove_tree_at(&parent, name)?)
    }

    /// Every regular file beneath the directory with its path relative to it, in the order
    /// found; subdirectories are walked, links are skipped. A tree deeper than
    /// [`MAX_WALK_DEPTH`] or with more than [`MAX_WALK_FILES`] files is refused: each level
    /// costs a lookup of the whole path, so a deep chain would cost time squared in its depth.
    pub(crate) fn walk_files(
        &self,
        mut visit: impl FnMut(&Path, &mut dyn Read) -> Result<(), RuntimeError>,
    ) -> Result<(), RuntimeError> {
        let mut pending = vec![(PathBuf::new(), 0_usize)];
        let mut visited = 0_usize;
        while let Some((relative, depth)) = pending.pop() {
            if depth > MAX_WALK_DEPTH {
                return Err(RuntimeError::InvalidInput(format!(
                    "the working directory is nested more than {MAX_WALK_DEPTH} directories deep"
                )));
            }
            let entries = if relative.as_os_str().is_empty() {
                self.dir.entries()?
            } else {
                self.dir.read_dir(&relative)?
            };
            for entry in entries {
                let entry = entry?;
                let file_type = entry.file_type()?;
                let path = relative.join(entry.file_name());
                if file_type.is_dir() {
                    pending.push((path, depth + 1));
                } else if file_type.is_file()
                    && let Some(mut file) = self.open_regular(&path)
                {
                    visited += 1;
                    if visited > MAX_WALK_FILES {
                        return Err(RuntimeError::InvalidInput(format!(
                            "the working directory holds more than {MAX_WALK_FILES} files"
                        )));
                    }
                    visit(&path, &mut file)?;
                }
            }
        }
        Ok(())
    }

    /// Creates (or truncates) a file and gives it to the worker.
    fn create_file(&self, relative: &Path, content: &mut dyn Read) -> Result<(), RuntimeError> {
        use cap_std::fs::OpenOptionsExt;
        // A link at the path is replaced, never written through.
        match self.dir.symlink_metadata(relative) {
            Ok(metadata) if !metadata.is_file() => self.dir.remove_file(relative)?,
            _ => {}
        }
        let mut file = self.dir.open_with(
            relative,
            OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .custom_flags(nix::fcntl::OFlag::O_NOFOLLOW.bits()),
        )?;
        std::io::copy(content, &mut file)?;
        if let Some(owner) = self.owner {
            std::os::unix::fs::fchown(&file, Some(owner), Some(owner))?;
        }
        Ok(())
    }
}

/// Files that are new or different in `after`, in name order.
pub(crate) fn changed_files(
    before: &BTreeMap<String, Fingerprint>,
    after: &BTreeMap<String, Fingerprint>,
) -> Vec<String> {
    after
        .iter()
        .filter(|(name, fingerprint)| before.get(*name) != Some(fingerprint))
        .map(|(name, _)| name.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch() -> (PathBuf, WorkDir) {
        let root = std::env::temp_dir().join(format!("o16n-workdir-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&root).unwrap();
        let workdir = WorkDir::create(&root.join("w"), None).unwrap();
        (root, workdir)
    }

    fn name(text: &str) -> FileName {
        FileName::parse(text).unwrap()
    }

    #[test]
    fn new_and_modified_files_count_as_changed_and_untouched_ones_do_not() {
        let before = BTreeMap::from([("a".to_owned(), (1, None)), ("b".to_owned(), (2, None))]);
        let after = BTreeMap::from([
            ("a".to_owned(), (1, None)),
            ("b".to_owned(), (3, None)),
            ("c".to_owned(), (1, None)),
        ]);
        assert_eq!(changed_files(&before, &after), ["b", "c"]);
    }

    #[test]
    fn links_planted_by_a_worker_are_never_followed() {
        let (root, workdir) = scratch();
        let outside = root.join("secret");
        std::fs::write(&outside, "server secret").unwrap();
        std::os::unix::fs::symlink(&outside, workdir.path().join("leak")).unwrap();
        std::os::unix::fs::symlink(&root, workdir.path().join("up")).unwrap();

        assert!(matches!(
            workdir.open(&name("leak")),
            Err(RuntimeError::NotFound(_))
        ));
        assert!(workdir.list().unwrap().is_empty());
        // Writing through a planted directory link must not reach outside.
        let written = workdir.write_file(Path::new("up/secret"), &mut &b"overwritten"[..]);
        assert!(written.is_err());
        // Writing over a planted file link replaces the link.
        let (temporary, mut file) = workdir.create_temporary().unwrap();
        std::io::Write::write_all(&mut file, b"mine").unwrap();
        workdir.commit(&temporary, &name("leak")).unwrap();
        assert_eq!(std::fs::read_to_string(&outside).unwrap(), "server secret");
        let mut content = String::new();
        workdir
            .open(&name("leak"))
            .unwrap()
            .read_to_string(&mut content)
            .unwrap();
        assert_eq!(content, "mine");
        let mut seen = Vec::new();
        workdir
            .walk_files(|path, _| {
                seen.push(path.to_path_buf());
                Ok(())
            })
            .unwrap();
        assert_eq!(seen, [PathBuf::from("leak")]);
        std::fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn a_fifo_is_not_a_file() {
        let (root, workdir) = scratch();
        nix::unistd::mkfifo(&workdir.path().join("pipe"), nix::sys::stat::Mode::S_IRWXU).unwrap();
        assert!(matches!(
            workdir.open(&name("pipe")),
            Err(RuntimeError::NotFound(_))
        ));
        std::fs::remove_dir_all(root).unwrap();
    }
}
