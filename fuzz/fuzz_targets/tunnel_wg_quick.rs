//! The wg-quick file parser (what `tun_node --config` reads): any text gives a file or a
//! line-numbered error, never a panic; parsing is a pure function of the text; and an
//! accepted file whose endpoints are resolved always becomes a device (or a typed refusal).
#![no_main]

use libfuzzer_sys::fuzz_target;
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;
use sealwire::time::Instant;
use sealwire::tunnel::wg_quick::WgQuick;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = core::str::from_utf8(data) else {
        return;
    };
    match WgQuick::parse(text) {
        Ok(mut file) => {
            let again = WgQuick::parse(text).expect("same text parses again");
            assert_eq!(again.peers.len(), file.peers.len());
            file.resolve_endpoints(|_, port| {
                Ok::<_, ()>(std::net::SocketAddr::from(([192, 0, 2, 1], port)))
            })
            .expect("the resolver never fails");
            // Only the interface's own key as a peer may be refused.
            if let Err(e) = file.device(Instant::ZERO, ChaCha20Rng::seed_from_u64(1)) {
                assert_eq!(
                    e,
                    sealwire::tunnel::DeviceError::InvalidConfig("public_key")
                );
            }
        }
        Err(e) => {
            let lines = text.split('\n').count().max(1);
            assert!(e.line() <= lines + 1, "error names a line of the file");
        }
    }
});
