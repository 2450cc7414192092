//! Sealing a finished environment build: what a build made becomes a read-only tree owned by
//! the server before any worker sees it, or is refused.
//!
//! A build runs package code (an R package's `configure`, a Python sdist's build backend) as
//! the builder's user id, in a staging directory that user owns. Whatever it leaves there is
//! hostile: a link where the result should be (the server would then move, write into or
//! bind-mount whatever the link names), a hard link to a file elsewhere, a FIFO that blocks
//! a reader, a set-user-id program, or a tree deep enough to exhaust a recursive walk. So, once
//! every process of the builder has ended (see [`crate::reaper`]), the server walks the result
//! through directory handles only, never following a link: each directory is taken over
//! (owner root, no write for others, no special bits) *before* its entries are read, regular
//! files must have one link, links are kept as links (a virtual environment's `bin/python`
//! is one) and owned by root, anything else is refused; the lock file is then created, never
//! opened if it exists, and the result is moved to its final place by handle.

use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, Dir, FileType, Gid, Mode, OFlags, Uid};

/// The deepest directory a build may leave (virtual environments and R libraries are far
/// shallower).
const MAX_DEPTH: usize = 64;
/// The most entries a build may leave.
const MAX_ENTRIES: u64 = 1_000_000;
/// The permission bits a sealed entry keeps: no write for group and others, no set-id or
/// sticky bits.
const KEPT_BITS: u32 = 0o755;

/// Where a build's result is and where it goes.
pub(crate) struct Sealing {
    /// The build's staging directory (the builder's home while it ran).
    pub(crate) staging: PathBuf,
    /// The result's name inside it (`env`, `library`).
    pub(crate) result: String,
    /// The file the lock is written to inside the result, and the lock.
    pub(crate) lock_file: &'static str,
    pub(crate) lock: String,
    /// Where the sealed result goes; its parent exists and belongs to the server.
    pub(crate) finished: PathBuf,
}

/// Seals a build's result and moves it to its place; a refusal says what the build left.
/// Blocks: call it off the async threads, and only once no process of the builder runs.
pub(crate) fn seal(sealing: &Sealing) -> std::io::Result<()> {
    let to_root = nix::unistd::geteuid().is_root();
    let staging = rustix::fs::open(
        &sealing.staging,
        OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    // From here on the builder's user could not add, rename or remove entries of the staging
    // directory even if one of its processes still ran.
    take_over(&staging, to_root)?;
    let result = open_directory(&staging, sealing.result.as_str()).map_err(|err| {
        refused(format!(
            "its result `{}` is not a directory ({err})",
            sealing.result
        ))
    })?;
    let mut entries = 0;
    seal_directory(result, 1, &mut entries, to_root)?;

    let result = open_directory(&staging, sealing.result.as_str())?;
    let lock = rustix::fs::openat(
        &result,
        sealing.lock_file,
        OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o644),
    )
    .map_err(|err| match err {
        rustix::io::Errno::EXIST => {
            refused(format!("it left a `{}` of its own", sealing.lock_file))
        }
        other => other.into(),
    })?;
    std::fs::File::from(lock).write_all(sealing.lock.as_bytes())?;

    let (Some(parent), Some(name)) = (sealing.finished.parent(), sealing.finished.file_name())
    else {
        return Err(std::io::Error::other(
            "a finished build needs a parent directory",
        ));
    };
    let parent = rustix::fs::open(
        parent,
        OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    rustix::fs::renameat(&staging, sealing.result.as_str(), &parent, name)?;
    Ok(())
}

/// Takes a directory over, then every entry beneath it.
fn seal_directory(
    directory: OwnedFd,
    depth: usize,
    entries: &mut u64,
    to_root: bool,
) -> std::io::Result<()> {
    take_over(&directory, to_root)?;
    let mut listing = Dir::read_from(&directory)?;
    while let Some(entry) = listing.read() {
        let entry = entry?;
        let name = entry.file_name();
        if matches!(name.to_bytes(), b"." | b"..") {
            continue;
        }
        *entries += 1;
        if *entries > MAX_ENTRIES {
            return Err(refused(format!("it left more than {MAX_ENTRIES} files")));
        }
        let stat = rustix::fs::statat(&directory, name, AtFlags::SYMLINK_NOFOLLOW)?;
        let shown = String::from_utf8_lossy(name.to_bytes()).into_owned();
        match FileType::from_raw_mode(stat.st_mode) {
            FileType::Directory => {
                if depth >= MAX_DEPTH {
                    return Err(refused(format!(
                        "it left directories more than {MAX_DEPTH} levels deep"
                    )));
                }
                let below = open_directory(&directory, name)?;
                seal_directory(below, depth + 1, entries, to_root)?;
            }
            FileType::RegularFile => {
                let file = rustix::fs::openat(
                    &directory,
                    name,
                    OFlags::RDONLY
                        | OFlags::NOFOLLOW
                        | OFlags::NONBLOCK
                        | OFlags::NOCTTY
                        | OFlags::CLOEXEC,
                    Mode::empty(),
                )?;
                // Checked on the open file: what was statted may have been replaced.
                let opened = rustix::fs::fstat(&file)?;
                if FileType::from_raw_mode(opened.st_mode) != FileType::RegularFile {
                    return Err(refused(format!("`{shown}` changed while it was sealed")));
                }
                if opened.st_nlink != 1 {
                    return Err(refused(format!(
                        "`{shown}` is a hard link (builds may not link files)"
                    )));
                }
                take_over(&file, to_root)?;
            }
            FileType::Symlink => {
                if to_root {
                    rustix::fs::chownat(
                        &directory,
                        name,
                        Some(Uid::ROOT),
                        Some(Gid::ROOT),
                        AtFlags::SYMLINK_NOFOLLOW,
                    )?;
                }
            }
            other => {
                return Err(refused(format!(
                    "`{shown}` is a special file ({other:?}), which builds may not leave"
                )));
            }
        }
    }
    Ok(())
}

/// Makes an open file or directory the server's (when it is root), with no write for others
/// and no special bits.
fn take_over(file: impl AsFd, to_root: bool) -> std::io::Result<()> {
    let file = file.as_fd();
    if to_root {
        rustix::fs::fchown(file, Some(Uid::ROOT), Some(Gid::ROOT))?;
    }
    let mode = rustix::fs::fstat(file)?.st_mode;
    rustix::fs::fchmod(file, Mode::from_raw_mode(mode & KEPT_BITS))?;
    Ok(())
}

fn open_directory(parent: impl AsFd, name: impl rustix::path::Arg) -> rustix::io::Result<OwnedFd> {
    rustix::fs::openat(
        parent,
        name,
        OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
    )
}

fn refused(why: String) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        format!("the build was refused: {why}"),
    )
}

/// Whether `path` is a directory itself, not a link to one: the server lists finished builds
/// without following what a build could have made a link.
pub(crate) fn is_real_directory(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|metadata| metadata.is_dir())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    use super::*;

    struct Bench {
        root: tempfile::TempDir,
    }

    impl Bench {
        /// A staging directory whose build left `env/` with a package in it.
        fn new() -> Bench {
            let root = tempfile::tempdir().unwrap();
            let env = root.path().join("staging").join("env");
            std::fs::create_dir_all(env.join("lib").join("pkg")).unwrap();
            std::fs::write(env.join("lib").join("pkg").join("mod.py"), "x = 1").unwrap();
            std::os::unix::fs::symlink("/usr/bin/python3", env.join("python")).unwrap();
            std::fs::create_dir(root.path().join("finished")).unwrap();
            Bench { root }
        }

        fn path(&self, relative: &str) -> PathBuf {
            self.root.path().join(relative)
        }

        fn seal(&self) -> std::io::Result<()> {
            seal(&Sealing {
                staging: self.path("staging"),
                result: "env".to_owned(),
                lock_file: "o16n-lock",
                lock: "pkg==1".to_owned(),
                finished: self.path("finished/key"),
            })
        }
    }

    #[test]
    fn a_result_is_sealed_read_only_with_its_lock_and_moved() {
        let bench = Bench::new();
        let program = bench.path("staging/env/lib/pkg/run");
        std::fs::write(&program, "#!/bin/sh").unwrap();
        std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o4777)).unwrap();
        std::fs::set_permissions(
            bench.path("staging/env/lib"),
            std::fs::Permissions::from_mode(0o777),
        )
        .unwrap();

        bench.seal().unwrap();
        let finished = bench.path("finished/key");
        assert_eq!(
            std::fs::read_to_string(finished.join("o16n-lock")).unwrap(),
            "pkg==1"
        );
        let mode = |path: PathBuf| std::fs::metadata(path).unwrap().permissions().mode() & 0o7777;
        assert_eq!(
            mode(finished.join("lib/pkg/run")),
            0o755,
            "set-id bit and writes kept"
        );
        assert_eq!(mode(finished.join("lib")), 0o755);
        assert_eq!(
            std::fs::read_link(finished.join("python")).unwrap(),
            Path::new("/usr/bin/python3"),
            "a link stays a link"
        );
        if nix::unistd::geteuid().is_root() {
            assert_eq!(
                std::fs::metadata(finished.join("lib/pkg/mod.py"))
                    .unwrap()
                    .uid(),
                0
            );
        }
        assert!(!bench.path("staging/env").exists());
    }

    #[test]
    fn a_result_that_is_a_link_is_refused_and_its_target_untouched() {
        let bench = Bench::new();
        let outside = bench.path("outside");
        std::fs::create_dir(&outside).unwrap();
        std::fs::set_permissions(&outside, std::fs::Permissions::from_mode(0o777)).unwrap();
        std::fs::remove_dir_all(bench.path("staging/env")).unwrap();
        std::os::unix::fs::symlink(&outside, bench.path("staging/env")).unwrap();

        let err = bench.seal().unwrap_err();
        assert!(err.to_string().contains("not a directory"), "{err}");
        assert_eq!(
            std::fs::metadata(&outside).unwrap().permissions().mode() & 0o777,
            0o777
        );
        assert!(!outside.join("o16n-lock").exists());
        assert!(!bench.path("finished/key").exists());
    }

    #[test]
    fn hard_links_special_files_and_a_planted_lock_are_refused() {
        let hard_link = Bench::new();
        std::fs::hard_link(
            hard_link.path("staging/env/lib/pkg/mod.py"),
            hard_link.path("staging/env/linked.py"),
        )
        .unwrap();
        let err = hard_link.seal().unwrap_err();
        assert!(err.to_string().contains("hard link"), "{err}");

        let fifo = Bench::new();
        rustix::fs::mknodat(
            rustix::fs::CWD,
            fifo.path("staging/env/lib/pipe").as_path(),
            FileType::Fifo,
            Mode::from_raw_mode(0o644),
            0,
        )
        .unwrap();
        let err = fifo.seal().unwrap_err();
        assert!(err.to_string().contains("special file"), "{err}");

        let planted = Bench::new();
        std::os::unix::fs::symlink("/etc/passwd", planted.path("staging/env/o16n-lock")).unwrap();
        let err = planted.seal().unwrap_err();
        assert!(err.to_string().contains("o16n-lock"), "{err}");
        assert!(!planted.path("finished/key").exists());
    }
}
