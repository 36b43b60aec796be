//! `sluice build [DIR]`: builds a handler project. It recognises the language from the files,
//! checks every tool `build.sh` needs (naming the missing one and how to install it, rather
//! than letting a compiler fail half-way), runs `build.sh`, then loads the module the Function
//! names into the same engine a worker uses, so a module that would not load fails here.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, bail};

use super::Project;
use super::languages::{Check, Language, Tool};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The project folder (holding build.sh and function.yaml).
    #[arg(default_value = ".", value_name = "DIR")]
    pub dir: PathBuf,
    /// The language, when the files do not say (rust, c, cpp, zig, assemblyscript, …).
    #[arg(long, value_parser = Language::parse)]
    pub language: Option<Language>,
    /// The Function to load after the build, when function.yaml defines several.
    #[arg(long, value_name = "NAME")]
    pub function: Option<String>,
}

/// Whether `name` is an executable file in one of `path`'s directories.
fn on_path(name: &str, path: &std::ffi::OsStr) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::env::split_paths(path).any(|dir| {
        std::fs::metadata(dir.join(name))
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    })
}

fn present(tool: &Tool) -> bool {
    match tool.check {
        Check::Command(name) => on_path(name, &std::env::var_os("PATH").unwrap_or_default()),
        Check::AnyPath(paths) => paths.iter().any(|p| Path::new(p).exists()),
        Check::RustTarget(target) => Command::new("rustc")
            .args(["--print", "target-libdir", "--target", target])
            .output()
            .ok()
            .filter(|o| o.status.success())
            .is_some_and(|o| Path::new(String::from_utf8_lossy(&o.stdout).trim()).exists()),
    }
}

/// The tools a build lacks, as lines for the user; empty when everything is there.
pub fn missing(lang: Language) -> Vec<String> {
    lang.tools()
        .iter()
        .filter(|t| !present(t))
        .map(|t| {
            let how = match t.check {
                Check::Command(_) => "not found on PATH",
                Check::AnyPath(_) => "not found",
                Check::RustTarget(_) => "not installed",
            };
            format!("{}: {how}; install: {}", t.name, t.install)
        })
        .collect()
}

fn file_names(dir: &Path) -> anyhow::Result<Vec<String>> {
    let entries = std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))?;
    Ok(entries
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect())
}

pub fn run(args: Args) -> anyhow::Result<i32> {
    let dir = &args.dir;
    let lang = match args.language {
        Some(lang) => lang,
        None => Language::detect(&file_names(dir)?).with_context(|| {
            format!(
                "{}: cannot tell the language from the files; say it with --language",
                dir.display()
            )
        })?,
    };
    let script = dir.join("build.sh");
    if !script.is_file() {
        bail!(
            "{}: no build.sh; `sluice new {} NAME` writes one",
            dir.display(),
            lang.id()
        );
    }
    let missing = missing(lang);
    if !missing.is_empty() {
        eprintln!(
            "error: building {} ({}) needs tools that are missing:",
            dir.display(),
            lang.title()
        );
        for line in missing {
            eprintln!("  {line}");
        }
        return Ok(1);
    }

    let started = Instant::now();
    eprintln!(
        "building {} ({}) with build.sh",
        dir.display(),
        lang.title()
    );
    let status = Command::new("bash")
        .arg("build.sh")
        .current_dir(dir)
        .status()
        .with_context(|| format!("running {}", script.display()))?;
    if !status.success() {
        eprintln!("error: {} failed ({status})", script.display());
        return Ok(1);
    }

    // The module must be there, and must load the way a worker loads it.
    let project = Project::load(dir, args.function.as_deref())?;
    let module = project.module_path()?;
    let wasm = std::fs::read(&module).with_context(|| {
        format!(
            "build.sh succeeded but {} (spec.module.path of Function {} in {}) cannot be read",
            module.display(),
            project.name(),
            project.manifest.display()
        )
    })?;
    let handler = crate::invoke::load(&project, &wasm, Vec::new())
        .with_context(|| format!("{}: the module does not load", module.display()))?;
    println!(
        "built {} ({}, {:.1} KiB) in {:.1}s",
        module.display(),
        handler.abi().as_str(),
        wasm.len() as f64 / 1024.0,
        started.elapsed().as_secs_f64()
    );
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn on_path_finds_executables_only() {
        let dir = tempfile::tempdir().unwrap();
        let exe = dir.path().join("tool");
        std::fs::write(&exe, "#!/bin/sh\n").unwrap();
        let plain = dir.path().join("data");
        std::fs::write(&plain, "").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
        let path = std::env::join_paths(["/nonexistent", dir.path().to_str().unwrap()]).unwrap();
        assert!(on_path("tool", &path));
        assert!(!on_path("data", &path));
        assert!(!on_path("missing", &path));
    }
}
