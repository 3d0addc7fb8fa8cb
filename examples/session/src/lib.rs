//! Code shared by the session programs (`ws_node`, `ws_client`) and their tests: the node's
//! tokio driver ([`node_driver`]), the model seam ([`model`]), and the small pieces both
//! programs need (the system RNG, sleeping until a machine's deadline, the command-line
//! outcome).

use std::process::ExitCode;

pub mod model;
pub mod node_driver;

/// The operating system's generator, as the machines take it (`rand_core` 0.10).
pub fn system_rng() -> rand_core::UnwrapErr<getrandom::SysRng> {
    rand_core::UnwrapErr(getrandom::SysRng)
}

/// Sleeps until `deadline`, or forever when there is none (a machine with no deadline waits
/// only for input).
pub async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// The options of a program, or its exit: `--help` prints `usage` and succeeds, a bad command
/// line prints the error and exits with 2.
pub fn options_or_exit<T>(
    program: &str,
    usage: &str,
    parsed: Result<Option<T>, String>,
) -> Result<T, ExitCode> {
    match parsed {
        Ok(Some(options)) => Ok(options),
        Ok(None) => {
            print!("{usage}");
            Err(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("{program}: {e}");
            Err(ExitCode::from(2))
        }
    }
}
