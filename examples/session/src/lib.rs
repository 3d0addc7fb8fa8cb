//! Code shared by the session programs (`ws_node`, `ws_client`) and their tests: the node's
//! tokio driver ([`node_driver`]), the model seam ([`model`]), and the small pieces both
//! programs need (the system RNG, sleeping until a machine's deadline, the command-line
//! outcome, reading keys from files and the environment into wiped storage).

#![forbid(unsafe_code)]
#![warn(missing_docs)]

use std::io::Read;
use std::path::Path;
use std::process::ExitCode;

use zeroize::Zeroizing;

pub mod admission;
pub mod limits;
pub mod metrics;
pub mod model;
pub mod node_driver;
pub mod replay_file;
pub mod upstream;

/// Largest key file read: a hex key (66 characters with `0x`) and some whitespace.
const MAX_KEY_FILE: usize = 1024;

/// Reads a key file (a hex key, surrounding whitespace ignored) into wiped storage: the bytes
/// go through a wiped stack buffer into a string of exactly their size, so no copy of the key
/// is left in freed memory (`std::fs::read_to_string` grows its buffer and frees the old
/// ones unwiped). Errors name the file, never its content.
///
/// ```
/// let path = std::env::temp_dir().join(format!("sealwire-doc-key-{}", std::process::id()));
/// std::fs::write(&path, "  0x0707\n").unwrap();
/// assert_eq!(session_examples::read_key_file(&path).unwrap().as_str(), "0x0707");
/// std::fs::remove_file(&path).unwrap();
/// assert!(session_examples::read_key_file(&path).is_err());
/// ```
pub fn read_key_file(path: &Path) -> Result<Zeroizing<String>, String> {
    let shown = path.display();
    let mut file = std::fs::File::open(path).map_err(|e| format!("cannot open {shown}: {e}"))?;
    let mut buf = Zeroizing::new([0u8; MAX_KEY_FILE]);
    let mut len = 0;
    while let Some(room) = buf.get_mut(len..).filter(|r| !r.is_empty()) {
        match file.read(room) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("cannot read {shown}: {e}")),
        }
    }
    let mut probe = [0u8; 1];
    if len == MAX_KEY_FILE && file.read(&mut probe).map_or(true, |n| n > 0) {
        return Err(format!(
            "{shown} is larger than a key file ({MAX_KEY_FILE} bytes)"
        ));
    }
    let text = std::str::from_utf8(&buf[..len])
        .map_err(|_| format!("{shown} is not a text file holding a hex key"))?
        .trim();
    let mut key = Zeroizing::new(String::with_capacity(text.len()));
    key.push_str(text);
    Ok(key)
}

/// A secret from the environment (`None` when unset or blank), moved at once into wiped
/// storage. (The process environment keeps its own copy: prefer a key file.)
///
/// ```
/// assert!(session_examples::secret_env("SEALWIRE_DOC_SURELY_UNSET").is_none());
/// ```
pub fn secret_env(name: &str) -> Option<Zeroizing<String>> {
    let value = Zeroizing::new(std::env::var(name).ok()?);
    (!value.trim().is_empty()).then_some(value)
}

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
