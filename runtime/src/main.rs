use clap::Parser;

// Every event is parsed, encoded and copied at several stages by tasks on every core; glibc's
// allocator spent a quarter of the data path's CPU (arena locks, consolidation) in profiles of
// `sluice bench e2e`, mimalloc's thread-local free lists do not.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    let cli = sluice_runtime::cli::Cli::parse();
    match sluice_runtime::cli::run(cli) {
        Ok(code) => std::process::ExitCode::from(u8::try_from(code).unwrap_or(1)),
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}
