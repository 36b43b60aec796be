use clap::Parser;

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
