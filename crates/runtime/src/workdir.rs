//! A session's working directory: the files API and the detection of files an execution
//! changed. Names reaching this module are already validated [`FileName`]s, so nothing here
//! can address a path outside the directory.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use o16n_types::FileName;

use crate::RuntimeError;

/// What identifies a version of a file cheaply: size and modification time.
type Fingerprint = (u64, Option<SystemTime>);

/// The regular files directly in the directory, by name.
pub(crate) fn fingerprints(dir: &Path) -> Result<BTreeMap<String, Fingerprint>, RuntimeError> {
    let mut files = BTreeMap::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let metadata = entry.metadata()?;
        if metadata.is_file() {
            files.insert(
                entry.file_name().to_string_lossy().into_owned(),
                (metadata.len(), metadata.modified().ok()),
            );
        }
    }
    Ok(files)
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

/// The names of the regular files in the directory, sorted.
pub(crate) fn list(dir: &Path) -> Result<Vec<String>, RuntimeError> {
    Ok(fingerprints(dir)?.into_keys().collect())
}

/// Writes a file, replacing one of the same name atomically (readers never see half a file).
pub(crate) async fn write(dir: &Path, name: &FileName, content: &[u8]) -> Result<(), RuntimeError> {
    let temporary = dir.join(format!(".o16n-upload-{}", uuid::Uuid::new_v4().simple()));
    tokio::fs::write(&temporary, content).await?;
    if let Err(err) = tokio::fs::rename(&temporary, dir.join(name.as_str())).await {
        let _ = tokio::fs::remove_file(&temporary).await;
        return Err(err.into());
    }
    Ok(())
}

/// The path of an existing regular file, for streaming it out.
pub(crate) fn existing_file(dir: &Path, name: &FileName) -> Result<PathBuf, RuntimeError> {
    let path = dir.join(name.as_str());
    match std::fs::symlink_metadata(&path) {
        Ok(metadata) if metadata.is_file() => Ok(path),
        _ => Err(RuntimeError::NotFound(format!("file `{name}` not found"))),
    }
}

/// Deletes a regular file.
pub(crate) async fn delete(dir: &Path, name: &FileName) -> Result<(), RuntimeError> {
    let path = existing_file(dir, name)?;
    tokio::fs::remove_file(path).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
