//! The snapshot archive: a zip of a session's workspace and working directory.
//!
//! Layout: `snapshot.json` (format version and runtime), `workspace.dill` (Python) or
//! `workspace.rds` (R) with the serialized workspace, and every file of the working directory
//! under `files/`, keeping subdirectories. Extraction checks every path component, so an
//! archive cannot write outside the working directory.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Component, Path, PathBuf};

use o16n_types::{FileName, RuntimeType};
use serde::{Deserialize, Serialize};
use zip::write::SimpleFileOptions;

use crate::RuntimeError;
use crate::workdir::WorkDir;

const MANIFEST: &str = "snapshot.json";
const FILES_PREFIX: &str = "files/";
/// Refuse archives that would unpack to more than this (a zip bomb, or a corrupt archive).
const MAX_UNPACKED_BYTES: u64 = 8 * 1024 * 1024 * 1024;

#[derive(Serialize, Deserialize)]
struct Manifest {
    format: u32,
    runtime: String,
}

fn workspace_entry(runtime: RuntimeType) -> &'static str {
    match runtime {
        RuntimeType::Python => "workspace.dill",
        RuntimeType::R => "workspace.rds",
    }
}

/// Builds the archive from a serialized workspace and a working directory, in an anonymous
/// temporary file (gone when closed), positioned at its start.
pub(crate) fn pack(
    runtime: RuntimeType,
    workspace: &[u8],
    workdir: &WorkDir,
) -> Result<std::fs::File, RuntimeError> {
    let mut archive = zip::ZipWriter::new(tempfile::tempfile()?);
    let options = SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .large_file(true);
    let manifest = serde_json::to_vec(&Manifest {
        format: 1,
        runtime: runtime.as_str().to_owned(),
    })
    .expect("the manifest serializes");
    let zip_error = |err: zip::result::ZipError| RuntimeError::Io(std::io::Error::other(err));
    archive.start_file(MANIFEST, options).map_err(zip_error)?;
    archive.write_all(&manifest)?;
    archive
        .start_file(workspace_entry(runtime), options)
        .map_err(zip_error)?;
    archive.write_all(workspace)?;
    workdir.walk_files(|path, content| {
        let name = format!("{FILES_PREFIX}{}", path.to_string_lossy());
        archive.start_file(name, options).map_err(zip_error)?;
        std::io::copy(content, &mut archive)?;
        Ok(())
    })?;
    let mut file = archive.finish().map_err(zip_error)?;
    file.seek(SeekFrom::Start(0))?;
    Ok(file)
}

/// Unpacks an archive made by [`pack`] (refusing one of another runtime): its files go under
/// `under` in the working directory, one at a time; the serialized workspace is returned.
pub(crate) fn unpack_into(
    expected: RuntimeType,
    archive: &Path,
    workdir: &WorkDir,
    under: &Path,
) -> Result<Vec<u8>, RuntimeError> {
    let invalid =
        |what: String| RuntimeError::InvalidInput(format!("the snapshot is not usable: {what}"));
    let mut archive = zip::ZipArchive::new(std::fs::File::open(archive)?)
        .map_err(|err| invalid(err.to_string()))?;
    let manifest: Manifest = {
        let mut entry = archive
            .by_name(MANIFEST)
            .map_err(|_| invalid("it has no manifest".to_owned()))?;
        let mut text = Vec::new();
        entry.read_to_end(&mut text)?;
        serde_json::from_slice(&text).map_err(|err| invalid(err.to_string()))?
    };
    let runtime: RuntimeType = manifest
        .runtime
        .parse()
        .map_err(|err| invalid(format!("{err}")))?;
    if runtime != expected {
        return Err(RuntimeError::InvalidInput(format!(
            "a snapshot of an {runtime} session cannot be loaded into an {expected} session"
        )));
    }
    let mut workspace = Vec::new();
    let mut total = 0u64;
    for index in 0..archive.len() {
        let mut entry = archive
            .by_index(index)
            .map_err(|err| invalid(err.to_string()))?;
        total += entry.size();
        if total > MAX_UNPACKED_BYTES {
            return Err(invalid("it unpacks to more than 8 GiB".to_owned()));
        }
        let name = entry
            .name()
            .map_err(|err| invalid(err.to_string()))?
            .into_owned();
        if entry.is_dir() || name == MANIFEST {
            continue;
        }
        if name == workspace_entry(runtime) {
            entry.read_to_end(&mut workspace)?;
        } else if let Some(relative) = name.strip_prefix(FILES_PREFIX) {
            let relative = safe_relative_path(relative)
                .ok_or_else(|| invalid(format!("bad path `{relative}`")))?;
            workdir.write_file(&under.join(relative), &mut entry)?;
        }
    }
    Ok(workspace)
}

/// A relative path whose every component is a valid file name.
fn safe_relative_path(text: &str) -> Option<PathBuf> {
    let path = Path::new(text);
    let mut safe = PathBuf::new();
    for component in path.components() {
        match component {
            Component::Normal(part) => {
                FileName::parse(part.to_str()?).ok()?;
                safe.push(part);
            }
            _ => return None,
        }
    }
    (!safe.as_os_str().is_empty()).then_some(safe)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch() -> (PathBuf, WorkDir, WorkDir) {
        let root = std::env::temp_dir().join(format!(
            "o16n-snapshot-test-{}",
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir_all(&root).unwrap();
        let source = WorkDir::create(&root.join("source"), None).unwrap();
        let target = WorkDir::create(&root.join("target"), None).unwrap();
        (root, source, target)
    }

    fn archive_file(root: &Path, mut packed: std::fs::File) -> PathBuf {
        let path = root.join("archive.zip");
        std::io::copy(&mut packed, &mut std::fs::File::create(&path).unwrap()).unwrap();
        path
    }

    #[test]
    fn an_archive_round_trips_workspace_and_nested_files() {
        let (root, source, target) = scratch();
        std::fs::write(source.path().join("a.csv"), "1,2").unwrap();
        std::fs::create_dir(source.path().join("sub")).unwrap();
        std::fs::write(source.path().join("sub").join("b.txt"), "b").unwrap();

        let packed = pack(RuntimeType::Python, b"workspace-bytes", &source).unwrap();
        let archive = archive_file(&root, packed);
        let workspace = unpack_into(RuntimeType::Python, &archive, &target, Path::new("")).unwrap();

        assert_eq!(workspace, b"workspace-bytes");
        assert_eq!(std::fs::read(target.path().join("a.csv")).unwrap(), b"1,2");
        assert_eq!(
            std::fs::read(target.path().join("sub").join("b.txt")).unwrap(),
            b"b"
        );
        assert!(matches!(
            unpack_into(RuntimeType::R, &archive, &target, Path::new("")),
            Err(RuntimeError::InvalidInput(_))
        ));
        std::fs::remove_dir_all(root).unwrap();
    }

    #[test]
    fn traversal_paths_are_refused() {
        for bad in ["../x", "/etc/passwd", "a/../../x", ""] {
            assert!(safe_relative_path(bad).is_none(), "{bad}");
        }
        assert_eq!(
            safe_relative_path("a/b.txt"),
            Some(PathBuf::from("a/b.txt"))
        );
    }

    #[test]
    fn garbage_is_not_a_snapshot() {
        let (root, _, target) = scratch();
        let path = root.join("garbage");
        std::fs::write(&path, "not a zip").unwrap();
        assert!(matches!(
            unpack_into(RuntimeType::Python, &path, &target, Path::new("")),
            Err(RuntimeError::InvalidInput(_))
        ));
        std::fs::remove_dir_all(root).unwrap();
    }
}
