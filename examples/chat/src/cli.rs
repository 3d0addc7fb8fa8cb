//! The command-line contract the chat programs share: `--help` prints the full help to stdout
//! and exits 0; bad usage prints a short usage naming `--help` to stderr and exits 2
//! (`tests/e2e_chat.sh` checks both for each program).

use std::io::Write;

/// The parsed arguments (`Ok(None)` means `--help` was asked for), or the process ends as the
/// contract says.
pub fn args_or_exit<T>(parsed: Result<Option<T>, String>, help: &str) -> T {
    match parsed {
        Ok(Some(args)) => args,
        Ok(None) => {
            print!("{help}");
            let _ = std::io::stdout().flush();
            std::process::exit(0)
        }
        Err(msg) => {
            eprintln!("{msg}");
            std::process::exit(2)
        }
    }
}
