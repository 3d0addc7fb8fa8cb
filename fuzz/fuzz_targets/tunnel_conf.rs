//! The wg-quick config-file parser (what `tun_node --config` reads): any text gives a config
//! or a line-numbered error, never a panic; an accepted config re-parses after a round trip
//! through its own interface/peer counts.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sealwire::tunnel::conf::Config;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = core::str::from_utf8(data) else {
        return;
    };
    match Config::parse(text) {
        Ok(config) => {
            // Parsing is a pure function of the text.
            let again = Config::parse(text).expect("same text parses again");
            assert_eq!(again.peers.len(), config.peers.len());
        }
        Err(e) => {
            let lines = text.split('\n').count().max(1);
            assert!(e.line() <= lines + 1, "error names a line of the file");
        }
    }
});
