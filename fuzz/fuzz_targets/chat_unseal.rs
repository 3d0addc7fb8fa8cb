//! Unsealing arbitrary bytes. Byte 0 selects what the rest is:
//! * even: a sealed chat record, opened with the fixed raw key of `vectors/chat/
//!   sealed_state.json` (as `Chat::unseal`) and, as a passphrase record, under tight
//!   `KdfLimits` (at most 64 KiB, 2 iterations, 1 lane), so a header asking for more is refused
//!   before Argon2 allocates anything;
//! * odd: the state plaintext itself, sealed here under the fixed key (so it authenticates) and
//!   then restored, which drives the state parser with arbitrary authenticated contents.
//!
//! Properties: nothing panics; allocation stays bounded (run with `-malloc_limit_mb`); an
//! opened plaintext is never longer than its record; a restored chat can be sealed again and
//! that record restores.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;
use sealwire::chat::{Chat, ChatConfig, ChatId, SEALED_CHAT_MAGIC};
use sealwire::crypto::ed25519::IdentityKey;
use sealwire::seal::{self, KdfLimits, SealKey, UnsealWith};
use sealwire::time::{Duration, Instant, WallTime};

const WALL: WallTime = WallTime::from_unix(1_700_000_000, 0);

const CHAT_ID: [u8; 16] = *b"sealwire-vector!";
const KEY: [u8; 32] = [0x6b; 32];

fn config() -> ChatConfig {
    let mut c = ChatConfig::new(ChatId::new(CHAT_ID));
    c.kdf_limits = KdfLimits {
        max_memory_kib: 64,
        max_iterations: 2,
        max_parallelism: 1,
    };
    c
}

fn identity() -> IdentityKey {
    IdentityKey::from_seed([0x11; 32])
}

fn restore(record: &[u8], key: &SealKey) {
    let now = Instant::from_secs(5000);
    let Ok(mut chat) = Chat::unseal(
        now,
        WALL,
        identity(),
        config(),
        record,
        UnsealWith::Key(key),
        None,
        ChaCha20Rng::from_seed([3; 32]),
    ) else {
        return;
    };
    // A restored chat behaves: it can run its timers, be sealed again, and that record opens.
    while chat.poll_transmit().is_some() {}
    while chat.poll_event().is_some() {}
    chat.handle_timeout(now + Duration::from_secs(1));
    if let Ok(again) = chat.seal(now, WALL, key) {
        Chat::unseal(
            now,
            WALL,
            identity(),
            config(),
            &again,
            UnsealWith::Key(key),
            Some(chat.seal_sequence()),
            ChaCha20Rng::from_seed([4; 32]),
        )
        .expect("a record this chat just sealed restores");
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let key = SealKey::from_bytes(KEY);
    if mode & 1 == 0 {
        let limits = config().kdf_limits;
        if let Ok(o) = seal::unseal(UnsealWith::Key(&key), SEALED_CHAT_MAGIC, rest, &limits) {
            assert!(o.plaintext.len() <= rest.len());
        }
        if let Ok(o) = seal::unseal(
            UnsealWith::Passphrase(b"passphrase"),
            SEALED_CHAT_MAGIC,
            rest,
            &limits,
        ) {
            assert!(o.plaintext.len() <= rest.len());
        }
        restore(rest, &key);
    } else {
        // Context: chat id ‖ epoch (where the state says it is, if that far) ‖ sequence 1.
        let mut context = CHAT_ID.to_vec();
        context.extend_from_slice(rest.get(65..69).unwrap_or(&[0; 4]));
        context.extend_from_slice(&1u64.to_be_bytes());
        let record = seal::seal(
            &key,
            SEALED_CHAT_MAGIC,
            &context,
            rest,
            &mut ChaCha20Rng::from_seed([5; 32]),
        );
        restore(&record, &key);
    }
});
