//! How a bench ends: its Markdown report on stdout and, when asked, in a
//! file; or why it failed.

use std::path::Path;
use std::process::ExitCode;

use crate::cleanup;

pub fn finish(program: &str, result: Result<String, String>, out: Option<&Path>) -> ExitCode {
    match result {
        Ok(text) => {
            print!("{text}");
            if let Some(path) = out {
                if let Err(e) = std::fs::write(path, &text) {
                    eprintln!("{program}: writing {}: {e}", path.display());
                    return ExitCode::FAILURE;
                }
            }
            ExitCode::SUCCESS
        }
        // The signal thread is stopping everything and will exit.
        Err(_) if cleanup::stopping() => loop {
            std::thread::park();
        },
        Err(e) => {
            // The run returned, so what it started was dropped and is gone.
            eprintln!("{program}: FAILED: {e}");
            ExitCode::FAILURE
        }
    }
}
