//! `sluice crds`: the generated CRDs, to stdout or as one file per CRD.

use std::path::PathBuf;

use anyhow::Context;
use sluice_api::crd;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Write one YAML file per CRD into this directory instead of printing them.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// With --out: change nothing, exit 1 if a file there differs from the generated one.
    #[arg(long, requires = "out")]
    pub check: bool,
}

pub fn run(args: Args) -> anyhow::Result<i32> {
    let crds = crd::all();
    let Some(dir) = args.out else {
        let docs: Vec<String> = crds.iter().map(|(_, c)| crd::to_yaml(c)).collect();
        print!("{}", docs.join("---\n"));
        return Ok(0);
    };
    let mut stale = 0;
    for (name, c) in &crds {
        let path = dir.join(name);
        let want = crd::to_yaml(c);
        if args.check {
            let have = std::fs::read_to_string(&path).unwrap_or_default();
            if have != want {
                eprintln!(
                    "{}: differs from the generated CRD; run `sluice crds --out {}`",
                    path.display(),
                    dir.display()
                );
                stale += 1;
            }
        } else {
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            std::fs::write(&path, want).with_context(|| format!("writing {}", path.display()))?;
            println!("wrote {}", path.display());
        }
    }
    Ok(i32::from(stale > 0))
}
