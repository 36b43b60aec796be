//! `sluice new LANG NAME`: writes a handler project (a Function + Trigger, a sample event and
//! its expected reply, failure cases, a build script, a README) from the templates compiled
//! into the binary, then says how to build, test and run it.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

use super::languages::{COMMON, Language};
use super::render;

#[derive(clap::Args, Debug)]
pub struct Args {
    /// rust, c, cpp, zig, assemblyscript, javascript, python, go or wat.
    #[arg(value_parser = Language::parse)]
    pub language: Language,
    /// The Function's name (a DNS label: lowercase letters, digits and '-'); also the folder's.
    pub name: String,
    /// Where to write the project; defaults to ./NAME. Must not exist or be empty.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

/// A Function's name as Kubernetes takes it: a DNS-1123 label. The Trigger's name adds
/// `-hello`, hence 57 rather than 63.
fn check_name(name: &str) -> Result<(), String> {
    let ok_chars = name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    let ok_ends = name.starts_with(|c: char| c.is_ascii_lowercase())
        && name.ends_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit());
    if name.is_empty() || name.len() > 57 || !ok_chars || !ok_ends {
        return Err(format!(
            "NAME {name:?}: must be 1 to 57 lowercase letters, digits and '-', starting with a \
             letter and ending with a letter or digit (it becomes the Function's name)"
        ));
    }
    Ok(())
}

/// The project's files, rendered: path in the project, contents, executable.
pub fn project_files(lang: Language, name: &str) -> Vec<(String, String, bool)> {
    let module = format!("{name}.wasm");
    let crate_file = name.replace('-', "_");
    let tools: Vec<String> = lang
        .tools()
        .iter()
        .map(|t| format!("`{}`", t.name))
        .collect();
    let own = lang.files();
    let listing: String = own
        .iter()
        .filter(|(p, _)| *p != "build.sh")
        .map(|(p, _)| format!("| `{p}` | {} |\n", describe(p)))
        .collect();
    let abi = lang.abi().to_string();
    let values = [
        ("name", name),
        ("module", module.as_str()),
        ("crate", crate_file.as_str()),
        ("abi", abi.as_str()),
        ("memory", lang.memory()),
        ("language", lang.title()),
        ("lang", lang.id()),
        ("tools", &tools.join(", ")),
        ("files", listing.as_str()),
    ];
    own.iter()
        .chain(COMMON)
        .map(|(path, template)| {
            let mut text = render(template, &values);
            // The embedded lock file names the example's package; npm ci wants the project's.
            if *path == "package-lock.json" {
                text = text.replace("\"sluice-example-assemblyscript\"", &format!("{name:?}"));
            }
            (path.to_string(), text, path.ends_with(".sh"))
        })
        .collect()
}

fn describe(path: &str) -> &'static str {
    match path {
        "wit/function.wit" => {
            "the component interface (world `handler`) the bindings are generated from"
        }
        "json.c" | "json.h" | "assembly/json.ts" => "a small JSON reader",
        "Cargo.toml" | "go.mod" | "package.json" | "asconfig.json" => "the build's own manifest",
        "package-lock.json" => "the exact compiler versions npm ci installs",
        p if p.contains("test") => "unit tests, run by build.sh before it builds",
        _ => "the handler",
    }
}

pub fn run(args: Args) -> anyhow::Result<i32> {
    check_name(&args.name).map_err(anyhow::Error::msg)?;
    let dir = args
        .dir
        .clone()
        .unwrap_or_else(|| PathBuf::from(&args.name));
    if let Ok(mut entries) = std::fs::read_dir(&dir)
        && entries.next().is_some()
    {
        bail!(
            "{}: already exists and is not empty; pick another NAME or --dir",
            dir.display()
        );
    }
    for (path, text, executable) in project_files(args.language, &args.name) {
        write(&dir.join(&path), &text, executable)?;
    }
    let shown = dir.display();
    println!(
        "Created {shown}: a {} handler ({} ABI) for com.example.hello events.",
        args.language.title(),
        args.language.abi()
    );
    println!("Next:");
    println!("  cd {shown}");
    println!("  sluice build     # checks the toolchain, runs build.sh");
    println!("  sluice test      # event.json and cases/ through the sandbox");
    println!(
        "  sluice dev .     # serve it; then: sluice publish --type com.example.hello --data '{{\"name\":\"Ada\"}}'"
    );
    Ok(0)
}

fn write(path: &Path, text: &str, executable: bool) -> anyhow::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    if executable {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
            .with_context(|| format!("making {} executable", path.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_dns_labels() {
        for ok in ["greeter", "a", "order-check-2"] {
            assert!(check_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "Greeter",
            "-a",
            "a-",
            "2fa",
            "a_b",
            "a.b",
            &"x".repeat(58),
        ] {
            let err = check_name(bad).unwrap_err();
            assert!(err.starts_with("NAME"), "{bad}: {err}");
        }
    }

    #[test]
    fn every_template_renders_completely() {
        for lang in Language::ALL {
            let files = project_files(lang, "my-handler");
            for (path, text, _) in &files {
                for key in [
                    "name", "module", "crate", "abi", "memory", "language", "lang", "tools",
                    "files",
                ] {
                    let placeholder = format!("{{{{{key}}}}}");
                    assert!(
                        !text.contains(&placeholder),
                        "{lang:?} {path}: {placeholder} left"
                    );
                }
            }
            let function = &files.iter().find(|(p, ..)| p == "function.yaml").unwrap().1;
            assert!(function.contains("name: my-handler\n"), "{function}");
            assert!(function.contains("path: my-handler.wasm\n"), "{function}");
            assert!(
                function.contains(&format!("abi: {}\n", lang.abi())),
                "{function}"
            );
            let build = &files.iter().find(|(p, ..)| p == "build.sh").unwrap();
            assert!(build.2, "{lang:?}: build.sh is executable");
            assert!(build.1.contains("my-handler.wasm") || lang == Language::AssemblyScript);
        }
        let rust = project_files(Language::Rust, "my-handler");
        let build = &rust.iter().find(|(p, ..)| p == "build.sh").unwrap().1;
        assert!(build.contains("release/my_handler.wasm"), "{build}");
        let lock = project_files(Language::AssemblyScript, "my-handler");
        let lock = &lock
            .iter()
            .find(|(p, ..)| p == "package-lock.json")
            .unwrap()
            .1;
        assert!(lock.contains("\"name\": \"my-handler\"") && !lock.contains("sluice-example"));
    }

    /// The manifests a new project starts with are valid as they are.
    #[test]
    fn new_manifests_validate() {
        for lang in Language::ALL {
            for (path, text, _) in project_files(lang, "greeter") {
                if !path.ends_with(".yaml") {
                    continue;
                }
                for doc in sluice_api::manifest::parse(&text) {
                    assert!(
                        matches!(doc.outcome, sluice_api::Outcome::Valid(_)),
                        "{lang:?} {path}: {:?}",
                        doc.outcome
                    );
                }
            }
        }
    }
}
