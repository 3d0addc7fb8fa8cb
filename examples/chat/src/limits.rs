//! Token-bucket rate limits of the relay node (`grpc_chat_node --rate-data N
//! --rate-handshakes N`), per app identity and per chat, for data frames and for handshake
//! frames ([`governor`](https://docs.rs/governor)). A frame over a limit is refused in-band
//! with `RESOURCE_EXHAUSTED` ([`sealwire::chat::relay::RelayError::RateLimited`]); the app
//! sends it again later.

use std::num::NonZeroU32;

use governor::{DefaultKeyedRateLimiter, Quota};

/// The four buckets: (data, handshake) × (app, chat).
pub struct RateLimits {
    data_app: DefaultKeyedRateLimiter<[u8; 32]>,
    data_chat: DefaultKeyedRateLimiter<[u8; 16]>,
    handshake_app: DefaultKeyedRateLimiter<[u8; 32]>,
    handshake_chat: DefaultKeyedRateLimiter<[u8; 16]>,
}

impl RateLimits {
    /// `data_per_second` data (and close) frames per second and `handshakes_per_minute`
    /// handshake frames per minute, each per app and per chat, with a burst of the same size.
    ///
    /// ```
    /// use chat_examples::limits::RateLimits;
    /// use std::num::NonZeroU32;
    /// let limits = RateLimits::new(NonZeroU32::new(2).unwrap(), NonZeroU32::new(1).unwrap());
    /// let (app, chat) = ([1; 32], [2; 16]);
    /// assert_eq!(limits.check(&app, &chat, false), Ok(()));
    /// assert_eq!(limits.check(&app, &chat, false), Ok(()));
    /// assert_eq!(limits.check(&app, &chat, false), Err(("app", "data")));
    /// assert_eq!(limits.check(&app, &chat, true), Ok(()));
    /// assert_eq!(limits.check(&[3; 32], &chat, true), Err(("chat", "handshake")));
    /// ```
    pub fn new(data_per_second: NonZeroU32, handshakes_per_minute: NonZeroU32) -> Self {
        let data = Quota::per_second(data_per_second);
        let handshake = Quota::per_minute(handshakes_per_minute);
        RateLimits {
            data_app: DefaultKeyedRateLimiter::keyed(data),
            data_chat: DefaultKeyedRateLimiter::keyed(data),
            handshake_app: DefaultKeyedRateLimiter::keyed(handshake),
            handshake_chat: DefaultKeyedRateLimiter::keyed(handshake),
        }
    }

    /// Takes a token for a frame of `app` in `chat` (a handshake frame or not) from both of
    /// its buckets; refused with the (scope, kind) of the empty bucket. The app's bucket is
    /// checked first, so one app's flood does not use up its chat's.
    pub fn check(
        &self,
        app: &[u8; 32],
        chat: &[u8; 16],
        handshake: bool,
    ) -> Result<(), (&'static str, &'static str)> {
        let (by_app, by_chat, kind) = if handshake {
            (&self.handshake_app, &self.handshake_chat, "handshake")
        } else {
            (&self.data_app, &self.data_chat, "data")
        };
        by_app.check_key(app).map_err(|_| ("app", kind))?;
        by_chat.check_key(chat).map_err(|_| ("chat", kind))
    }

    /// Forgets buckets that are full again (idle keys), so memory follows the active apps
    /// and chats only. Call it now and then.
    pub fn forget_idle(&self) {
        for l in [&self.data_app, &self.handshake_app] {
            l.retain_recent();
            l.shrink_to_fit();
        }
        for l in [&self.data_chat, &self.handshake_chat] {
            l.retain_recent();
            l.shrink_to_fit();
        }
    }
}
