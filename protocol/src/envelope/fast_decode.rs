//! The hot-path decoders: a VOLT event straight from the JSON array of a
//! plain event, without building a `Value` tree for the envelope, and the
//! borrowed `command-response` / `command` readers.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::Value;

use super::{
    names, CommandRequest, CommandRequestRef, CommandResponse, CommandResponseRef, ReverseCommand,
    VoltEvent,
};
use crate::DecodeError;

/// Decodes the JSON array of a plain (non-binary) event straight into a
/// [`VoltEvent`], without building a `Value` tree for the envelope: the hot
/// path of both peers. Gives the same result as decoding the packet and
/// calling [`VoltEvent::from_packet`]; `None` when the array is not one this
/// path handles (a binary event, a non-string name, bad JSON), so the caller
/// falls back to the general path, which names the error.
///
/// ```
/// use volt_protocol::envelope::{decode_event_array, VoltEvent};
/// let e = decode_event_array(r#"["command-response",{"requestId":"r1","ok":true,"data":[1]}]"#);
/// assert!(matches!(e, Some(Ok(VoltEvent::CommandResponse(r))) if r.request_id == "r1"));
/// ```
pub fn decode_event_array(json: &str) -> Option<Result<VoltEvent, DecodeError>> {
    let mut de = serde_json::Deserializer::from_str(json);
    let event = serde::Deserializer::deserialize_seq(&mut de, EventArray).ok()?;
    de.end().ok()?;
    Some(event)
}

/// Decodes the JSON array of a plain event when it is a well-formed
/// `command-response`, without parsing its `data`; `None` for any other
/// array, which [`decode_event_array`] then handles. Agrees with it on
/// every field: `data` parses to the value `decode_event_array` gives.
///
/// ```
/// use volt_protocol::envelope::decode_command_response;
/// let r = decode_command_response(r#"["command-response",{"requestId":"r1","ok":true,"data":{"a":[1]}}]"#).unwrap();
/// assert_eq!((r.request_id.as_ref(), r.ok), ("r1", true));
/// assert_eq!(r.data.unwrap().get(), r#"{"a":[1]}"#);
/// assert!(decode_command_response(r#"["message",{"type":"x"}]"#).is_none());
/// ```
pub fn decode_command_response(json: &str) -> Option<CommandResponseRef<'_>> {
    decode_named(json, names::COMMAND_RESPONSE)
}

/// Decodes the JSON array of a plain event when it is a well-formed
/// `command`, without parsing its `payload`; `None` for any other array,
/// which [`decode_event_array`] then handles. For a server (the mock
/// server's `echo`) that sends the payload back as it came.
///
/// ```
/// use volt_protocol::envelope::decode_command_ref;
/// let c = decode_command_ref(r#"["command",{"requestId":"r1","command":"echo","payload":{"a": 1}}]"#).unwrap();
/// assert_eq!((c.request_id.as_ref(), c.command.as_ref()), ("r1", "echo"));
/// assert_eq!(c.payload.unwrap().get(), r#"{"a": 1}"#);
/// assert!(decode_command_ref(r#"["message",{"type":"x"}]"#).is_none());
/// ```
pub fn decode_command_ref(json: &str) -> Option<CommandRequestRef<'_>> {
    decode_named(json, names::COMMAND)
}

/// An event array `[name, arg, ...]` whose name is `self.0`, read as its
/// argument `T` (borrowing from the frame); anything else is an error, and
/// the caller falls back to the general path.
struct NamedArray<T>(&'static str, std::marker::PhantomData<T>);

/// Decodes `json` as the event array named `name` with a `T` argument.
fn decode_named<'de, T: Deserialize<'de>>(json: &'de str, name: &'static str) -> Option<T> {
    let mut de = serde_json::Deserializer::from_str(json);
    let arg = serde::Deserializer::deserialize_seq(
        &mut de,
        NamedArray::<T>(name, std::marker::PhantomData),
    )
    .ok()?;
    de.end().ok()?;
    Some(arg)
}

impl<'de, T: Deserialize<'de>> serde::de::Visitor<'de> for NamedArray<T> {
    type Value = T;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "a {} array", self.0)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        use serde::de::{Error, IgnoredAny};
        let name: Cow<'de, str> = seq
            .next_element()?
            .ok_or_else(|| A::Error::custom("empty event array"))?;
        if name != self.0 {
            return Err(A::Error::custom("another event"));
        }
        let arg = seq
            .next_element()?
            .ok_or_else(|| A::Error::custom("no argument"))?;
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(arg)
    }
}

struct EventArray;

impl<'de> serde::de::Visitor<'de> for EventArray {
    type Value = Result<VoltEvent, DecodeError>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("an event array")
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        use serde::de::{Error, IgnoredAny};
        let name: std::borrow::Cow<'de, str> = seq
            .next_element()?
            .ok_or_else(|| A::Error::custom("empty event array"))?;
        fn typed<'de, A: serde::de::SeqAccess<'de>, T: Deserialize<'de>>(
            seq: &mut A,
            name: &str,
        ) -> Result<Result<T, DecodeError>, A::Error> {
            // A shape error is a decoded answer (the envelope is wrong), not
            // a reason to fall back.
            let arg: Value = seq.next_element()?.unwrap_or(Value::Null);
            Ok(T::deserialize(arg).map_err(|e| DecodeError::payload(name, e.to_string())))
        }
        let event = match name.as_ref() {
            names::COMMAND_RESPONSE => match seq.next_element::<CommandResponse>() {
                Ok(Some(r)) => Ok(VoltEvent::CommandResponse(r)),
                // Wrong shape: let the general path say what is wrong.
                _ => return Err(A::Error::custom("fall back")),
            },
            names::COMMAND => match seq.next_element::<CommandRequest>() {
                Ok(Some(r)) => Ok(VoltEvent::Command(r)),
                _ => return Err(A::Error::custom("fall back")),
            },
            names::REVERSE_COMMAND => match seq.next_element::<ReverseCommand>() {
                Ok(Some(r)) => Ok(VoltEvent::ReverseCommand(r)),
                _ => return Err(A::Error::custom("fall back")),
            },
            names::REVERSE_STREAM_END => typed(&mut seq, &name)?.map(VoltEvent::ReverseStreamEnd),
            _ => {
                let arg: Value = seq.next_element()?.unwrap_or(Value::Null);
                VoltEvent::from_args(&name, arg, Vec::new())
            }
        };
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(event)
    }
}
