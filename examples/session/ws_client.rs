//! An encrypted Fabstir session from the command line: a thin tokio pump around
//! [`sealwire::session::Client`] (with the helpers it shares with `ws_node` from
//! `session_examples`).
//!
//! ```text
//! cargo run --example ws_client -- --url ws://127.0.0.1:8080/v1/ws --node-pub 02… tell me a story
//! ```
//!
//! Opens the WebSocket, starts an encrypted session (`encrypted_session_init`, wait for the ack),
//! sends the prompt given as the positional arguments, prints the decrypted answer as it streams
//! in, then a newline. Exits non-zero on any error (node error frame, timeout, closed socket),
//! and on an answer cut short (`Truncated`: the node's sealed end of answer never arrived, so
//! the text shown may be only a prefix).
//! Ctrl-C sends `stream_cancel`; a second Ctrl-C quits at once.

use std::path::Path;
use std::process::ExitCode;

use futures_util::{SinkExt, StreamExt};
use sealwire::session::{
    Client, ClientConfig, ClientEvent, Prompt, PublicKey, SecretKey, SessionParams,
};
use sealwire::time::Clock;
use session_examples::{options_or_exit, read_key_file, secret_env, sleep_until, system_rng};
use tokio_tungstenite::tungstenite::Message;
use zeroize::Zeroizing;

const USAGE: &str = "\
ws_client — send one prompt over an encrypted Fabstir session (sealwire example)

USAGE:
    ws_client [OPTIONS] --node-pub HEX PROMPT…

OPTIONS:
    --url URL            the node's WebSocket (default ws://127.0.0.1:8080/v1/ws); wss://
                         checks the node's certificate against the system's roots
    --ca FILE            for wss://: trust the PEM certificates in FILE instead
    --node-pub HEX       the node's public key (33-byte compressed or 65-byte, hex, optional 0x)
    --node-key HEX       or the node's private key (the public key is derived; for tests)
    --client-key HEX     this client's identity key (default: a fresh random key; visible to
                         other users in the process list: prefer --client-key-file)
    --client-key-file FILE  read this client's identity key from FILE
    --session-id ID      decimal session id (default 1)
    --job-id ID          decimal job id (default 1)
    --chain-id N         chain id (default 84532)
    --model NAME         model name (default echo)
    --connect-timeout-ms N  longest wait for the TCP connection and the WebSocket handshake
                         together (default 10000); then exit 1
    -h, --help           print this help

ENVIRONMENT:
    CLIENT_PRIVATE_KEY_FILE  a file holding the identity key (when neither option is given)
    CLIENT_PRIVATE_KEY   the identity key (when no option and no CLIENT_PRIVATE_KEY_FILE)

The decrypted answer goes to stdout; diagnostics go to stderr. Exit status: 0 when the
answer arrived whole (its sealed end matched every chunk) or Ctrl-C cancelled it; 1 on any
error, including an answer cut short (the text shown is then only what arrived); 2 on a bad
command line.
";

struct Options {
    url: String,
    node_public_key: PublicKey,
    client_key: Option<SecretKey>,
    session_id: String,
    job_id: String,
    chain_id: u64,
    model: String,
    prompt: Zeroizing<String>,
    connect_timeout: std::time::Duration,
    ca: Option<std::path::PathBuf>,
}

fn parse_args() -> Result<Option<Options>, String> {
    let mut url = "ws://127.0.0.1:8080/v1/ws".to_owned();
    let mut node_public_key = None;
    let mut client_key = None;
    let mut session_id = "1".to_owned();
    let mut job_id = "1".to_owned();
    let mut chain_id = 84532;
    let mut model = "echo".to_owned();
    let mut connect_timeout = std::time::Duration::from_secs(10);
    let mut ca = None;
    let mut words: Vec<String> = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or_else(|| format!("{name} needs a value"));
        match arg.as_str() {
            "-h" | "--help" => return Ok(None),
            "--url" => url = value("--url")?,
            "--node-pub" => {
                let v = value("--node-pub")?;
                node_public_key =
                    Some(PublicKey::from_hex(&v).map_err(|e| format!("--node-pub: {e}"))?);
            }
            "--node-key" => {
                let v = Zeroizing::new(value("--node-key")?);
                let k = SecretKey::from_hex(&v).map_err(|_| "--node-key: not a valid key")?;
                node_public_key = Some(k.public_key());
            }
            "--client-key" => {
                let v = Zeroizing::new(value("--client-key")?);
                let k = SecretKey::from_hex(&v).map_err(|_| "--client-key: not a valid key")?;
                client_key = Some(k);
            }
            "--client-key-file" => {
                let v = read_key_file(Path::new(&value("--client-key-file")?))?;
                let k =
                    SecretKey::from_hex(&v).map_err(|_| "--client-key-file: not a valid key")?;
                client_key = Some(k);
            }
            "--session-id" => session_id = value("--session-id")?,
            "--job-id" => job_id = value("--job-id")?,
            "--chain-id" => {
                let v = value("--chain-id")?;
                chain_id = v
                    .parse()
                    .map_err(|_| format!("--chain-id: bad number {v:?}"))?;
            }
            "--model" => model = value("--model")?,
            "--ca" => ca = Some(std::path::PathBuf::from(value("--ca")?)),
            "--connect-timeout-ms" => {
                let v = value("--connect-timeout-ms")?;
                let ms = v
                    .parse()
                    .map_err(|_| format!("--connect-timeout-ms: bad number {v:?}"))?;
                connect_timeout = std::time::Duration::from_millis(ms);
            }
            "--" => words.extend(args.by_ref()),
            s if s.starts_with("--") => return Err(format!("unknown option {s:?} (see --help)")),
            _ => words.push(arg),
        }
    }
    let node_public_key = node_public_key.ok_or("--node-pub or --node-key is required")?;
    if client_key.is_none() {
        client_key = client_key_from_env()?;
    }
    if words.is_empty() {
        return Err("no prompt given".into());
    }
    Ok(Some(Options {
        url,
        node_public_key,
        client_key,
        session_id,
        job_id,
        chain_id,
        model,
        prompt: Zeroizing::new(words.join(" ")),
        connect_timeout,
        ca,
    }))
}

/// The identity key from `CLIENT_PRIVATE_KEY_FILE`, else `CLIENT_PRIVATE_KEY`, read into wiped
/// storage; errors name the source, never the value.
fn client_key_from_env() -> Result<Option<SecretKey>, String> {
    let env_file = std::env::var_os("CLIENT_PRIVATE_KEY_FILE").filter(|p| !p.is_empty());
    let (text, source) = if let Some(path) = env_file {
        (read_key_file(Path::new(&path))?, "CLIENT_PRIVATE_KEY_FILE")
    } else if let Some(text) = secret_env("CLIENT_PRIVATE_KEY") {
        (text, "CLIENT_PRIVATE_KEY")
    } else {
        return Ok(None);
    };
    SecretKey::from_hex(&text)
        .map(Some)
        .map_err(|_| format!("{source}: not a valid key"))
}

async fn run(opts: Options) -> Result<(), String> {
    let clock = Clock::new();
    let identity = opts
        .client_key
        .unwrap_or_else(|| SecretKey::generate(&mut system_rng()));
    let mut client = Client::new(
        identity,
        opts.node_public_key,
        ClientConfig::default(),
        system_rng(),
    )
    .map_err(|e| format!("cannot create the client: {e}"))?;
    let connector = match &opts.ca {
        Some(path) => Some(tokio_tungstenite::Connector::Rustls(trusting(path)?)),
        None => None,
    };
    let connect =
        tokio_tungstenite::connect_async_tls_with_config(opts.url.as_str(), None, true, connector);
    let (ws, _) = tokio::time::timeout(opts.connect_timeout, connect)
        .await
        .map_err(|_| format!("cannot connect to {}: timed out", opts.url))?
        .map_err(|e| format!("cannot connect to {}: {e}", opts.url))?;
    let (mut sink, mut incoming) = ws.split();

    client
        .start_session(
            clock.now(),
            SessionParams {
                session_id: opts.session_id,
                job_id: opts.job_id,
                chain_id: opts.chain_id,
                model: opts.model.clone(),
                price_per_token: 0,
                vector_database: None,
            },
        )
        .map_err(|e| format!("cannot start the session: {e}"))?;
    let mut prompt = Some(Prompt {
        model: Some(opts.model.clone()),
        ..Prompt::new(opts.prompt.as_str())
    });
    let mut cancelled = false;
    // One long-lived Ctrl-C future, so a signal during event handling is not lost.
    let mut interrupt = Box::pin(tokio::signal::ctrl_c());
    let mut stdout = std::io::stdout();

    loop {
        // Output first: frames to send, then events.
        while let Some(frame) = client.poll_transmit() {
            sink.send(Message::text(frame))
                .await
                .map_err(|e| format!("send failed: {e}"))?;
        }
        let mut handled = false;
        while let Some(event) = client.poll_event() {
            handled = true;
            match event {
                ClientEvent::SessionReady => {
                    if let Some(p) = prompt.take() {
                        client
                            .send_prompt(clock.now(), &p)
                            .map_err(|e| format!("cannot send the prompt: {e}"))?;
                    }
                }
                ClientEvent::Chunk { text, .. } => {
                    use std::io::Write;
                    print!("{text}");
                    let _ = stdout.flush();
                }
                ClientEvent::Finished { .. } => {
                    // Authenticated (the node's sealed end matched every chunk), or cancelled
                    // by Ctrl-C, which is what the user asked for.
                    println!();
                    let _ = sink.send(Message::Close(None)).await;
                    return Ok(());
                }
                ClientEvent::Truncated { text } => {
                    println!();
                    return Err(format!(
                        "the answer was cut short: its sealed end never arrived \
                         ({} bytes received, shown above)",
                        text.len()
                    ));
                }
                ClientEvent::NodeError { code, message } => {
                    return Err(format!(
                        "the node answered with an error: {code}: {message}"
                    ));
                }
                ClientEvent::TimedOut => return Err("timed out waiting for the node".into()),
                ClientEvent::AnswerFailed { error } => {
                    return Err(format!("the answer failed the client's checks: {error}"));
                }
                _ => {}
            }
        }
        if handled {
            continue; // handling an event may have queued frames
        }
        let deadline = client
            .poll_timeout()
            .map(|t| tokio::time::Instant::from_std(clock.to_std(t)));
        tokio::select! {
            msg = incoming.next() => match msg {
                Some(Ok(Message::Text(text))) => {
                    // A bad frame of the answer also fails it (AnswerFailed, handled above);
                    // anything else the client ignores.
                    if let Err(e) = client.handle_frame(clock.now(), text.as_str()) {
                        eprintln!("ws_client: ignoring a frame from the node: {e}");
                    }
                }
                Some(Ok(Message::Close(_))) | None => {
                    return Err("the node closed the connection".into())
                }
                Some(Err(e)) => return Err(format!("connection failed: {e}")),
                Some(Ok(_)) => {}
            },
            () = sleep_until(deadline) => client.handle_timeout(clock.now()),
            _ = &mut interrupt => {
                interrupt = Box::pin(tokio::signal::ctrl_c());
                if cancelled {
                    return Err("interrupted".into());
                }
                cancelled = true;
                eprintln!("\nws_client: cancelling (Ctrl-C again to quit)");
                client.cancel().map_err(|e| format!("cannot cancel: {e}"))?;
            }
        }
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let opts = match options_or_exit("ws_client", USAGE, parse_args()) {
        Ok(opts) => opts,
        Err(exit) => return exit,
    };
    match run(opts).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ws_client: {e}");
            ExitCode::FAILURE
        }
    }
}

/// A TLS client configuration that trusts only the PEM certificates in `path`.
fn trusting(path: &std::path::Path) -> Result<std::sync::Arc<rustls::ClientConfig>, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;
    let mut roots = rustls::RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("--ca {}: {e}", path.display()))?;
    for cert in certs {
        roots
            .add(cert)
            .map_err(|e| format!("--ca {}: {e}", path.display()))?;
    }
    if roots.is_empty() {
        return Err(format!("--ca {}: no certificate", path.display()));
    }
    // The `ring` provider, as ws_node's (see its TLS note).
    #[allow(deprecated)]
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(std::sync::Arc::new(config))
}
