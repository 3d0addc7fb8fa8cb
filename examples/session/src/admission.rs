//! The admission hook (`--admission-url`): before the node accepts a session it asks the
//! operator's service whether the client may run this job, so the on-chain job check the crate
//! cannot do plugs in from outside. Fails closed: anything but a 2xx answer within the timeout
//! refuses the session.

use std::time::Duration;

use sealwire::session::Address;

/// An HTTP endpoint that admits sessions.
///
/// ```no_run
/// use std::time::Duration;
/// use session_examples::admission::Admission;
/// # async fn run(address: sealwire::session::Address) {
/// let hook = Admission::new("http://127.0.0.1:9000/admit".into(), Duration::from_secs(2)).unwrap();
/// let admitted = hook.admits(address, "9", 84532, "llama-3").await;
/// # }
/// ```
pub struct Admission {
    http: reqwest::Client,
    url: String,
    timeout: Duration,
}

impl Admission {
    /// A hook posting to `url`, waiting at most `timeout` for the whole answer.
    pub fn new(url: String, timeout: Duration) -> Result<Self, String> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        Ok(Admission { http, url, timeout })
    }

    /// POSTs `{"address", "jobId", "chainId", "model"}` to the hook: `true` only on a 2xx
    /// status within the timeout.
    pub async fn admits(&self, address: Address, job_id: &str, chain_id: u64, model: &str) -> bool {
        let body = serde_json::json!({
            "address": address.to_string(),
            "jobId": job_id,
            "chainId": chain_id,
            "model": model,
        });
        let asked = self.http.post(&self.url).json(&body).send();
        match tokio::time::timeout(self.timeout, asked).await {
            Ok(Ok(answer)) => {
                let ok = answer.status().is_success();
                if !ok {
                    tracing::debug!(status = answer.status().as_u16(), "admission refused");
                }
                ok
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "admission hook failed; refusing the session");
                false
            }
            Err(_) => {
                tracing::warn!("admission hook timed out; refusing the session");
                false
            }
        }
    }
}
