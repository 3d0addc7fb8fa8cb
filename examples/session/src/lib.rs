//! Code shared by the session programs (`ws_node`, `ws_client`) and their tests: the node's
//! tokio driver ([`node_driver`]), the model seam ([`model`]), and the small pieces both
//! programs need (the system RNG, sleeping until a machine's deadline, the command-line
//! outcome).

#![forbid(unsafe_code)]
#![warn(missing_docs)]

use std::process::ExitCode;

pub mod model;
pub mod node_driver;

/// The operating system's generator, as the machines take it (`rand_core` 0.10).
///
/// ```
/// use sealwire::session::SecretKey;
/// let key = SecretKey::generate(&mut session_examples::system_rng());
/// assert_ne!(key.public_key(), SecretKey::generate(&mut session_examples::system_rng()).public_key());
/// ```
pub fn system_rng() -> rand_core::UnwrapErr<getrandom::SysRng> {
    rand_core::UnwrapErr(getrandom::SysRng)
}

/// Sleeps until `deadline`, or forever when there is none (a machine with no deadline waits
/// only for input).
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let soon = tokio::time::Instant::now() + std::time::Duration::from_millis(1);
/// session_examples::sleep_until(Some(soon)).await;
/// let never = session_examples::sleep_until(None);
/// assert!(tokio::time::timeout(std::time::Duration::from_millis(1), never).await.is_err());
/// # });
/// ```
pub async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// The options of a program, or its exit: `--help` prints `usage` and succeeds, a bad command
/// line prints the error and exits with 2.
///
/// ```
/// use std::process::ExitCode;
/// use session_examples::options_or_exit;
/// assert_eq!(options_or_exit("prog", "usage", Ok(Some(7))), Ok(7));
/// assert_eq!(options_or_exit::<u8>("prog", "usage", Ok(None)), Err(ExitCode::SUCCESS));
/// assert_eq!(options_or_exit::<u8>("prog", "usage", Err("bad".into())), Err(ExitCode::from(2)));
/// ```
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
