//! Arbitrary bytes through every decoding entry point. Besides "never panics, never hangs":
//! - the skimmer's notion of well-formed JSON is serde_json's;
//! - a frame that decodes as a message also routes, with the same type and id;
//! - when both envelope paths (skimmer, simd-json) accept a frame they agree;
//! - a decoded message re-encodes to a frame that decodes to the same message.
#![no_main]

use libfuzzer_sys::fuzz_target;
use proto::{Decoder, encode};

fuzz_target!(|data: &[u8]| {
    // Validity agrees with serde_json (numbers too large for f64 are the one known, accepted
    // difference: serde_json refuses them, the skimmer does not evaluate numbers).
    let ours = proto::skim::is_valid_json(data);
    match serde_json::from_slice::<serde_json::Value>(data) {
        Ok(_) => assert!(ours, "serde_json accepts, skimmer rejects"),
        Err(e) if e.to_string().contains("out of range") => {}
        Err(e) => assert!(!ours, "skimmer accepts, serde_json rejects: {e}"),
    }

    let mut dec = Decoder::default();
    let skimmed = dec.envelope(data);
    let mut dec2 = Decoder::default();
    let slow = dec2.envelope_with_simd_json(data);
    if let (Ok(a), Ok(b)) = (&skimmed, &slow) {
        assert_eq!(a, b, "skimmer and simd-json envelopes differ");
    }

    let mut dec3 = Decoder::default();
    if let Ok(msg) = dec3.message(data) {
        let msg = msg.into_owned();
        let env = skimmed.expect("a decodable message routes");
        assert_eq!(env.kind, msg.kind());
        assert_eq!(env.id.as_deref(), msg.id());
        let frame = encode(&msg);
        let back = Decoder::default()
            .message(&frame)
            .expect("re-encoded message decodes")
            .into_owned();
        assert_eq!(back, msg, "encode/decode round trip");
    }
});
