//! Finds and reads manifest files (`*.yaml`, `*.yml`, `*.json`) under the paths a user names,
//! keeping the per-document outcome from `sluice_api::manifest` and adding the checks that
//! need the whole set, such as one object defined twice.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
};

use sluice_api::{Document, FieldError, ObjectRef, Outcome, manifest};

/// The documents of one manifest file, or why it could not be read.
#[derive(Debug)]
pub struct File {
    pub path: PathBuf,
    pub documents: Result<Vec<Document>, String>,
}

/// Every manifest file under `paths` (files as given, directories recursively, sorted so output
/// and load order are stable), parsed and checked.
pub fn load(paths: &[PathBuf]) -> Vec<File> {
    let mut files: Vec<File> = Vec::new();
    for path in paths {
        match self::files(path) {
            Ok(found) if found.is_empty() => files.push(File {
                path: path.clone(),
                documents: Err("no manifest files (*.yaml, *.yml, *.json) found".into()),
            }),
            Ok(found) => files.extend(found.into_iter().map(read)),
            Err(e) => files.push(File {
                path: path.clone(),
                documents: Err(e),
            }),
        }
    }
    flag_duplicates(&mut files);
    files
}

/// The manifest files at `path`: the file itself, or every `*.yaml`, `*.yml` and `*.json`
/// below a directory (hidden entries, `node_modules` and `target` skipped), sorted.
pub fn files(path: &Path) -> Result<Vec<PathBuf>, String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("cannot read: {e}"))?;
    if meta.is_file() {
        return Ok(vec![path.to_owned()]);
    }
    let mut out = Vec::new();
    let mut stack = vec![path.to_owned()];
    while let Some(dir) = stack.pop() {
        let entries =
            std::fs::read_dir(&dir).map_err(|e| format!("cannot list {}: {e}", dir.display()))?;
        for entry in entries {
            let entry = entry.map_err(|e| format!("cannot list {}: {e}", dir.display()))?;
            let p = entry.path();
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            // Hidden entries, and the build trees of a handler project (npm's packages, cargo's
            // output), which hold thousands of JSON files and no manifests.
            if name.starts_with('.') || (matches!(name, "node_modules" | "target") && p.is_dir()) {
                continue;
            }
            if p.is_dir() {
                stack.push(p);
            } else if is_manifest(&p) {
                out.push(p);
            }
        }
    }
    out.sort();
    Ok(out)
}

fn is_manifest(p: &Path) -> bool {
    matches!(
        p.extension().and_then(|e| e.to_str()),
        Some("yaml" | "yml" | "json")
    )
}

fn read(path: PathBuf) -> File {
    let documents = std::fs::read_to_string(&path)
        .map(|text| manifest::parse(&text))
        .map_err(|e| format!("cannot read: {e}"));
    File { path, documents }
}

/// The same object in two places would make the result depend on load order; reject both
/// copies after the first, naming where the first one is.
fn flag_duplicates(files: &mut [File]) {
    let mut first: HashMap<ObjectRef, String> = HashMap::new();
    for file in files.iter_mut() {
        let Ok(docs) = &mut file.documents else {
            continue;
        };
        for doc in docs.iter_mut() {
            if !matches!(doc.outcome, Outcome::Valid(_)) {
                continue;
            }
            let here = format!("{} document {}", file.path.display(), doc.index);
            if let Some(there) = first.get(&doc.object) {
                doc.outcome = Outcome::Invalid(vec![FieldError::new(
                    "metadata.name",
                    format!("{} is also defined in {there}", doc.object),
                )]);
            } else {
                first.insert(doc.object.clone(), here);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_skips_hidden_entries_and_build_trees() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        for sub in [".git", "node_modules/pkg", "target/debug", "cases"] {
            std::fs::create_dir_all(d.join(sub)).unwrap();
        }
        for file in [
            "function.yaml",
            "event.json",
            "cases/one.event.json",
            ".git/config.yaml",
            "node_modules/pkg/package.json",
            "target/debug/out.json",
            "notes.txt",
        ] {
            std::fs::write(d.join(file), "{}").unwrap();
        }
        let found: Vec<String> = files(d)
            .unwrap()
            .iter()
            .map(|p| p.strip_prefix(d).unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            found,
            ["cases/one.event.json", "event.json", "function.yaml"]
        );
    }
}
