//! Conventions checked as tests: every Rust file of the workspace opens with a `//!` comment
//! saying what it is for, and the layering that ARCHITECTURE.md draws holds in the manifests.

use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, found: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, found);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            found.push(path);
        }
    }
}

#[test]
fn every_rust_file_starts_with_a_module_doc_comment() {
    let crates = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut files = Vec::new();
    rust_files(&crates, &mut files);
    assert!(files.len() > 10, "the walk found too few files: {files:?}");
    let undocumented: Vec<_> = files
        .iter()
        .filter(|path| !std::fs::read_to_string(path).unwrap().starts_with("//!"))
        .collect();
    assert!(
        undocumented.is_empty(),
        "files without a leading //! comment: {undocumented:?}"
    );
}

/// The names of the workspace crates a crate's manifest depends on (normal dependencies).
fn workspace_dependencies(krate: &str) -> Vec<String> {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(krate)
        .join("Cargo.toml");
    let text = std::fs::read_to_string(&manifest).unwrap();
    let mut in_dependencies = false;
    let mut found = Vec::new();
    for line in text.lines() {
        if line.starts_with('[') {
            in_dependencies = line == "[dependencies]";
        } else if in_dependencies
            && let Some(name) = line.split(['.', ' ', '=']).next()
            && name.starts_with("o16n-")
        {
            found.push(name.to_owned());
        }
    }
    found
}

#[test]
fn the_rest_api_knows_the_domain_and_the_use_cases_but_not_the_store() {
    let api = workspace_dependencies("api");
    assert!(api.contains(&"o16n-app".to_owned()), "{api:?}");
    assert!(!api.contains(&"o16n-store".to_owned()), "{api:?}");
    assert!(!api.contains(&"o16n-runtime".to_owned()), "{api:?}");
    let types = workspace_dependencies("types");
    assert!(
        types.is_empty(),
        "the domain vocabulary depends on no crate: {types:?}"
    );
}
