//! A handler project on disk: what `sluice new` writes, `sluice build` builds and `sluice test`
//! checks. `languages` is the table the three share (templates, tools, how a folder is
//! recognised); `render` fills a template. Both are pure; the commands do the I/O.

pub mod build;
pub mod languages;
pub mod new;
pub mod test;

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use sluice_api::function::Function;
use sluice_api::trigger::Trigger;
use sluice_api::{Outcome, Resource};

/// Replaces every `{{key}}` in `template` with its value. An unknown key is left as it is, so
/// a template's own braces (C, Go, JSON) need no escaping; a test checks no template keeps one.
pub fn render(template: &str, values: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(template.len() + 64);
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        match after.find("}}") {
            Some(end) => match values.iter().find(|(k, _)| *k == &after[..end]) {
                Some((_, v)) => {
                    out.push_str(v);
                    rest = &after[end + 2..];
                }
                None => {
                    out.push_str("{{");
                    rest = after;
                }
            },
            None => {
                out.push_str("{{");
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// The Function and its Triggers in a project folder: the manifests directly in `dir` (a
/// project keeps them at its top; sample events beside them are skipped as non-objects).
pub struct Project {
    pub function: Function,
    /// Where the Function was defined, for messages.
    pub manifest: PathBuf,
    pub triggers: Vec<Trigger>,
}

impl Project {
    /// Reads `dir`'s manifests. `function` picks one when the folder defines several.
    pub fn load(dir: &Path, function: Option<&str>) -> anyhow::Result<Project> {
        let mut functions = Vec::new();
        let mut triggers = Vec::new();
        let mut problems = Vec::new();
        let entries =
            std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))?;
        let mut paths: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.is_file()
                    && matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml"))
            })
            .collect();
        paths.sort();
        for file in sluice_process::manifests::load(&paths) {
            let docs = match file.documents {
                Ok(docs) => docs,
                Err(e) => {
                    problems.push(format!("{}: {e}", file.path.display()));
                    continue;
                }
            };
            for doc in docs {
                match doc.outcome {
                    Outcome::Valid(Resource::Function(f)) => {
                        functions.push((*f, file.path.clone()))
                    }
                    Outcome::Valid(Resource::Trigger(t)) => triggers.push(*t),
                    Outcome::Valid(Resource::Secret(..) | Resource::EventSchema(..))
                    | Outcome::Skipped { .. } => {}
                    Outcome::Invalid(errors) => problems.extend(
                        errors
                            .iter()
                            .map(|e| format!("{}: {}: {e}", file.path.display(), doc.object)),
                    ),
                }
            }
        }
        if !problems.is_empty() {
            bail!("invalid manifests:\n  {}", problems.join("\n  "));
        }
        let names = || {
            functions
                .iter()
                .map(|(f, _)| f.metadata.name.clone().unwrap_or_default())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let picked = match function {
            Some(name) => functions
                .iter()
                .position(|(f, _)| f.metadata.name.as_deref() == Some(name))
                .with_context(|| {
                    format!(
                        "--function {name}: no such Function in {} (found: {})",
                        dir.display(),
                        names()
                    )
                })?,
            None if functions.len() == 1 => 0,
            None if functions.is_empty() => bail!(
                "{}: no Function manifest (*.yaml) in this folder; `sluice new LANG NAME` writes a project",
                dir.display()
            ),
            None => bail!(
                "{}: several Functions ({}); pick one with --function NAME",
                dir.display(),
                names()
            ),
        };
        let (function, manifest) = functions.swap_remove(picked);
        let name = function.metadata.name.clone().unwrap_or_default();
        triggers.retain(|t| {
            t.spec.function == name && t.metadata.namespace == function.metadata.namespace
        });
        Ok(Project {
            function,
            manifest,
            triggers,
        })
    }

    pub fn name(&self) -> &str {
        self.function.metadata.name.as_deref().unwrap_or_default()
    }

    /// The module `spec.module.path` names, relative to the manifest's folder.
    pub fn module_path(&self) -> anyhow::Result<PathBuf> {
        let Some(path) = &self.function.spec.module.path else {
            bail!(
                "{}: Function {}: spec.module.path: not set; a local build needs the module as a file \
                 (url, oci and configMap are for clusters)",
                self.manifest.display(),
                self.name()
            );
        };
        let base = self.manifest.parent().unwrap_or(Path::new("."));
        Ok(base.join(path))
    }
}

#[cfg(test)]
mod tests {
    use super::render;

    #[test]
    fn render_fills_known_keys_and_keeps_other_braces() {
        let values = [("name", "greeter"), ("module", "greeter.wasm")];
        assert_eq!(
            render("{{name}} builds {{module}}; {{other}} {{ x", &values),
            "greeter builds greeter.wasm; {{other}} {{ x"
        );
        assert_eq!(
            render("int main() {{ return 0; }}", &values),
            "int main() {{ return 0; }}"
        );
        assert_eq!(render("", &values), "");
    }
}
