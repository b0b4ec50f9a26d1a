//! Any JSON as the payload of the `message` event:
//! `TeamClusterDaemonMessage::from_value` may fail but not panic, and what it
//! accepts must come back from `to_value` as the same message.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use volt_protocol::message::TeamClusterDaemonMessage;
use volt_fuzz::has_float;

fuzz_target!(|data: &[u8]| {
    let Ok(value) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let floaty = has_float(&value);
    if let Ok(m) = TeamClusterDaemonMessage::from_value(value) {
        let wire = m.to_value().expect("a decoded message encodes");
        assert_eq!(
            wire.get("type").and_then(Value::as_str),
            Some(m.message_type())
        );
        if !floaty {
            let back = TeamClusterDaemonMessage::from_value(wire).expect("re-decodes");
            assert_eq!(back, m);
        }
    }
});
