//! `sluice validate FILE|DIR…`: one line per object, `ok` or each problem with its field path,
//! in the form `file: Kind namespace/name: field: message`; exit 1 on any problem. Besides each
//! object alone, a Trigger's transform is checked against the EventSchemas among the files.

use std::path::PathBuf;

use sluice_api::{Outcome, Resource, validate::transform_paths_against_schemas};

use sluice_process::manifests;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Manifest files or directories (searched recursively for *.yaml, *.yml, *.json).
    #[arg(required = true, value_name = "FILE|DIR")]
    pub paths: Vec<PathBuf>,
}

pub fn run(args: Args) -> anyhow::Result<i32> {
    let files = manifests::load(&args.paths);
    let schemas: Vec<(String, &sluice_api::EventSchemaSpec)> = files
        .iter()
        .filter_map(|f| f.documents.as_ref().ok())
        .flatten()
        .filter_map(|d| match &d.outcome {
            Outcome::Valid(Resource::EventSchema(s)) => {
                Some((format!("{}/{}", d.object.namespace, d.object.name), &s.spec))
            }
            _ => None,
        })
        .collect();
    let mut failed = false;
    for file in &files {
        let name = file.path.display();
        let docs = match &file.documents {
            Err(e) => {
                println!("{name}: {e}");
                failed = true;
                continue;
            }
            Ok(docs) => docs,
        };
        for doc in docs {
            match &doc.outcome {
                Outcome::Valid(resource) => {
                    let errors = match resource {
                        Resource::Trigger(t) => {
                            transform_paths_against_schemas(&t.spec, "spec", &schemas)
                        }
                        _ => Vec::new(),
                    };
                    if errors.is_empty() {
                        println!("{name}: {}: ok", doc.object);
                    }
                    for e in errors {
                        failed = true;
                        println!("{name}: {}: {e}", doc.object);
                    }
                }
                Outcome::Skipped { reason } => {
                    println!("{name}: {}: skipped ({reason})", doc.object)
                }
                Outcome::Invalid(errors) => {
                    failed = true;
                    for e in errors {
                        println!("{name}: {}: {e}", doc.object);
                    }
                }
            }
        }
    }
    Ok(i32::from(failed))
}
