//! `sluice validate FILE|DIR…`: one line per object, `ok` or each problem with its field path,
//! in the form `file: Kind namespace/name: field: message`; exit 1 on any problem.

use std::path::PathBuf;

use sluice_api::Outcome;

use sluice_process::manifests;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Manifest files or directories (searched recursively for *.yaml, *.yml, *.json).
    #[arg(required = true, value_name = "FILE|DIR")]
    pub paths: Vec<PathBuf>,
}

pub fn run(args: Args) -> anyhow::Result<i32> {
    let mut failed = false;
    for file in manifests::load(&args.paths) {
        let name = file.path.display();
        match file.documents {
            Err(e) => {
                println!("{name}: {e}");
                failed = true;
            }
            Ok(docs) => {
                for doc in docs {
                    match doc.outcome {
                        Outcome::Valid(_) => println!("{name}: {}: ok", doc.object),
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
        }
    }
    Ok(i32::from(failed))
}
