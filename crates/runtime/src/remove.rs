//! Removing a directory tree that user code built, whatever its shape.
//!
//! Working directories, service directories and environment staging directories hold what
//! user code left there: possibly a chain of hundreds of thousands of nested directories,
//! links, FIFOs or millions of files. The standard library's `remove_dir_all` (and cap-std's)
//! recurses once per level and keeps a descriptor open per level, so such a chain overflows the
//! thread's stack (which aborts the whole server) or runs out of descriptors (and the tree is
//! never removed). [`remove_tree`] walks the tree iteratively with at most
//! [`MAX_OPEN_LEVELS`] directories open: a directory deeper than that is first moved up to the
//! top of the tree being removed, which is always possible within one file system and turns
//! any depth into breadth. Links are removed, never followed, and every step is relative to
//! an open directory, so nothing the tree's owner does meanwhile can make the removal reach
//! outside it.

use std::ffi::{CStr, CString, OsStr};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, Dir, FileType, Mode, OFlags, RenameFlags};
use rustix::io::Errno;

/// The most directories of one tree held open at once while it is removed.
const MAX_OPEN_LEVELS: usize = 32;

/// Removes `path` and everything beneath it. A missing `path` is not an error; a `path` that
/// is a link or a file is removed itself.
pub(crate) fn remove_tree(path: &Path) -> std::io::Result<()> {
    let (parent, name) = match (path.parent(), path.file_name()) {
        (Some(parent), Some(name)) if !parent.as_os_str().is_empty() => (parent, name),
        (_, Some(name)) => (Path::new("."), name),
        _ => {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("cannot remove `{}`", path.display()),
            ));
        }
    };
    let parent = match rustix::fs::open(
        parent,
        OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
    ) {
        Ok(parent) => parent,
        // Nothing above it, so nothing to remove.
        Err(Errno::NOENT) => return Ok(()),
        Err(err) => return Err(err.into()),
    };
    remove_tree_at(&parent, name)
}

/// [`remove_tree`] on a blocking thread, for async callers.
pub(crate) async fn remove_tree_blocking(path: PathBuf) -> std::io::Result<()> {
    tokio::task::spawn_blocking(move || remove_tree(&path))
        .await
        .map_err(std::io::Error::other)?
}

/// [`remove_tree`] on a blocking thread for a caller that goes on either way: a failure is
/// logged with `what` was being removed.
pub(crate) async fn remove_tree_off_thread(path: PathBuf, what: &str) {
    if let Err(err) = remove_tree_blocking(path.clone()).await {
        tracing::warn!(path = %path.display(), "{what} was not removed: {err}");
    }
}

/// Removes the entry `name` of the open directory `parent`, and everything beneath it when it
/// is a directory. A missing entry is not an error.
pub(crate) fn remove_tree_at(parent: impl AsFd, name: &OsStr) -> std::io::Result<()> {
    let parent = parent.as_fd();
    let root = match open_directory(parent, name) {
        Ok(root) => root,
        Err(Errno::NOENT) => return Ok(()),
        // Not a directory (a file, a link, anything else): it is removed as it is.
        Err(Errno::NOTDIR | Errno::LOOP) => {
            return match rustix::fs::unlinkat(parent, name, AtFlags::empty()) {
                Err(Errno::NOENT) => Ok(()),
                other => Ok(other?),
            };
        }
        Err(err) => return Err(err.into()),
    };
    empty_directory(root)?;
    match rustix::fs::unlinkat(parent, name, AtFlags::REMOVEDIR) {
        Err(Errno::NOENT) => Ok(()),
        other => Ok(other?),
    }
}

/// One open directory on the way down, with its name in the directory above it.
struct Level {
    entries: Dir,
    name: CString,
    /// Whether its entries were read to the end once since anything was removed from it.
    clean_pass: bool,
}

/// Removes everything in `root`, leaving it empty.
fn empty_directory(root: OwnedFd) -> std::io::Result<()> {
    let root_entries = Dir::new(root)?;
    let mut levels = vec![Level {
        entries: root_entries,
        name: CString::default(),
        clean_pass: true,
    }];
    let mut moved = 0_u64;
    loop {
        let depth = levels.len();
        let Some(level) = levels.last_mut() else {
            break;
        };
        let entry = match level.entries.read() {
            Some(entry) => entry?,
            None => {
                if !level.clean_pass {
                    // Entries removed while reading may have hidden others: read again
                    // until one whole pass finds nothing left.
                    level.entries.rewind();
                    level.clean_pass = true;
                    continue;
                }
                let done = levels.pop().expect("the loop holds a level");
                if let Some(above) = levels.last_mut() {
                    rustix::fs::unlinkat(above.entries.fd()?, &done.name, AtFlags::REMOVEDIR)?;
                    above.clean_pass = false;
                }
                continue;
            }
        };
        let name = entry.file_name();
        if is_dot(name) {
            continue;
        }
        level.clean_pass = false;
        let here = level.entries.fd()?;
        let is_directory = match entry.file_type() {
            FileType::Directory => true,
            FileType::Unknown => rustix::fs::statat(here, name, AtFlags::SYMLINK_NOFOLLOW)
                .is_ok_and(|stat| FileType::from_raw_mode(stat.st_mode) == FileType::Directory),
            _ => false,
        };
        if !is_directory {
            remove_entry(here, name)?;
            continue;
        }
        let name = name.to_owned();
        if depth >= MAX_OPEN_LEVELS {
            // Too deep to hold one more level open: move the directory up to the top of the
            // tree, where a later pass over the top removes it.
            let top = levels[0].entries.fd()?;
            let here = levels
                .last()
                .expect("the loop holds a level")
                .entries
                .fd()?;
            move_to_top(here, &name, top, &mut moved)?;
            levels[0].clean_pass = false;
            continue;
        }
        match open_directory(here, OsStr::from_bytes(name.to_bytes())) {
            Ok(below) => levels.push(Level {
                entries: Dir::new(below)?,
                name,
                clean_pass: true,
            }),
            Err(Errno::NOENT) => {}
            // Replaced by something that is not a directory since it was read.
            Err(Errno::NOTDIR | Errno::LOOP) => remove_entry(here, &name)?,
            Err(err) => return Err(err.into()),
        }
    }
    Ok(())
}

/// Opens a directory beneath `parent` without following a link.
fn open_directory(parent: impl AsFd, name: impl rustix::path::Arg) -> Result<OwnedFd, Errno> {
    rustix::fs::openat(
        parent,
        name,
        OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
    )
}

/// Removes an entry that is not a directory; one that is already gone is fine.
fn remove_entry(parent: impl AsFd, name: &CStr) -> std::io::Result<()> {
    match rustix::fs::unlinkat(parent, name, AtFlags::empty()) {
        Ok(()) | Err(Errno::NOENT) => Ok(()),
        // It became a directory since it was read: the next pass descends into it.
        Err(Errno::ISDIR) => Ok(()),
        Err(err) => Err(err.into()),
    }
}

/// Moves `name` from `here` to `top` under a name no entry of `top` has.
fn move_to_top(
    here: impl AsFd,
    name: &CStr,
    top: impl AsFd,
    moved: &mut u64,
) -> std::io::Result<()> {
    let (here, top) = (here.as_fd(), top.as_fd());
    loop {
        *moved += 1;
        let new_name = format!(".o16n-removing-{moved}");
        match rustix::fs::renameat_with(here, name, top, &new_name, RenameFlags::NOREPLACE) {
            Ok(()) | Err(Errno::NOENT) => return Ok(()),
            Err(Errno::EXIST) => continue,
            Err(err) => return Err(err.into()),
        }
    }
}

fn is_dot(name: &CStr) -> bool {
    matches!(name.to_bytes(), b"." | b"..")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch() -> std::path::PathBuf {
        let root = std::env::temp_dir().join(format!("o16n-remove-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&root).unwrap();
        root
    }

    /// A chain of `depth` nested directories named `d` under `base`, made without long paths.
    fn nested_chain(base: &Path, depth: usize) {
        let mut current = rustix::fs::open(base, OFlags::DIRECTORY, Mode::empty()).unwrap();
        for _ in 0..depth {
            rustix::fs::mkdirat(&current, "d", Mode::from_raw_mode(0o700)).unwrap();
            current = open_directory(&current, "d").unwrap();
            let file = rustix::fs::openat(
                &current,
                "f",
                OFlags::CREATE | OFlags::WRONLY | OFlags::CLOEXEC,
                Mode::from_raw_mode(0o600),
            );
            drop(file.unwrap());
        }
    }

    #[test]
    fn a_very_deep_tree_is_removed_on_a_small_stack_with_few_descriptors() {
        let root = scratch();
        let tree = root.join("tree");
        std::fs::create_dir(&tree).unwrap();
        nested_chain(&tree, 20_000);
        // A thread with a small stack: recursion per level would overflow it long before.
        std::thread::Builder::new()
            .stack_size(64 * 1024)
            .spawn({
                let tree = tree.clone();
                move || remove_tree(&tree).unwrap()
            })
            .unwrap()
            .join()
            .unwrap();
        assert!(!tree.exists());
        std::fs::remove_dir(root).unwrap();
    }

    #[test]
    fn links_are_removed_and_never_followed() {
        let root = scratch();
        let outside = root.join("outside");
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(outside.join("keep"), "keep").unwrap();
        let tree = root.join("tree");
        std::fs::create_dir_all(tree.join("a/b")).unwrap();
        std::fs::write(tree.join("a/b/file"), "x").unwrap();
        std::os::unix::fs::symlink(&outside, tree.join("a/link")).unwrap();
        std::os::unix::fs::symlink(&outside, tree.join("top-link")).unwrap();
        nix::unistd::mkfifo(&tree.join("a/fifo"), nix::sys::stat::Mode::S_IRWXU).unwrap();
        for index in 0..2_000 {
            std::fs::write(tree.join(format!("a/many-{index}")), "").unwrap();
        }

        remove_tree(&tree).unwrap();

        assert!(!tree.exists());
        assert_eq!(
            std::fs::read_to_string(outside.join("keep")).unwrap(),
            "keep"
        );
        // The tree's root given as a link: the link goes, its target stays.
        std::os::unix::fs::symlink(&outside, &tree).unwrap();
        remove_tree(&tree).unwrap();
        assert!(tree.symlink_metadata().is_err());
        assert!(outside.join("keep").exists());
        // A missing tree, or one whose parent is missing, is already removed.
        remove_tree(&tree).unwrap();
        remove_tree(&root.join("missing/tree")).unwrap();
        std::fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn a_moved_name_never_replaces_an_entry_at_the_top() {
        let root = scratch();
        let tree = root.join("tree");
        std::fs::create_dir(&tree).unwrap();
        // Entries named as the removal's own moved directories are removed like any other.
        std::fs::create_dir_all(tree.join(".o16n-removing-1/x")).unwrap();
        nested_chain(&tree, 200);
        remove_tree(&tree).unwrap();
        assert!(!tree.exists());
        std::fs::remove_dir(root).unwrap();
    }
}
