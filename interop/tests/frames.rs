//! Frame-level check against real socket.io: the transcripts in
//! `interop/transcripts/` were recorded from ref-daemon.js (socket.io-client
//! 4.8.4) talking to ref-server.js (socket.io 4.8.4) by
//! `interop/record-transcripts.js`. Each flow is replayed here
//!
//! - with our client against our mock server: every frame (daemon to server
//!   from our client, server to daemon from our mock) must equal what real
//!   socket.io exchanged;
//! - with our client against the real server: the same (our client's frames
//!   are judged by the very server that recorded the transcript);
//! - with the real client against our mock server: the same (our mock's
//!   frames are judged against the real server's, with the real client).
//!
//! Frames are compared as exact text (JSON key order included) after masking
//! sids, UUIDs and the client name, leaving out pings, pongs and heartbeats.

use volt_interop::transcript::{
    assert_same_frames, only, recorded_flows, replay, DaemonKind, ServerKind, Transcript,
};

fn check(flow: &str, server: ServerKind, daemon: DaemonKind) {
    volt_interop::watch_background_panics();
    let recorded = Transcript::load(flow);
    let ours = replay(&recorded, server, daemon);
    let what = format!("flow {flow} ({daemon:?} daemon, {server:?} server)");
    // The side under test first, for a clearer failure.
    match (server, daemon) {
        (ServerKind::Mock, DaemonKind::Real) => assert_same_frames(
            &format!("{what}, server-to-daemon frames"),
            &only("out", &recorded.frames),
            &only("out", &ours),
        ),
        (_, DaemonKind::Ours) => assert_same_frames(
            &format!("{what}, daemon-to-server frames"),
            &only("in", &recorded.frames),
            &only("in", &ours),
        ),
        (ServerKind::Real, DaemonKind::Real) => {}
    }
    assert_same_frames(&what, &recorded.frames, &ours);
    volt_interop::assert_no_background_panics();
}

macro_rules! flows {
    ($($test:ident => $flow:literal,)*) => {
        /// Every transcript on disk is replayed by the tests below.
        const FLOWS: &[&str] = &[$($flow),*];

        /// Our client (daemon-to-server frames) and our mock server
        /// (server-to-daemon frames) against the recording.
        mod our_client_with_our_mock_server_sends_the_frames_socket_io_sends {
            use super::*;
            $(#[test] fn $test() { check($flow, ServerKind::Mock, DaemonKind::Ours) })*
        }

        /// Our client against the real socket.io server.
        mod our_client_with_the_real_server_sends_the_frames_socket_io_client_sends {
            use super::*;
            $(#[test] fn $test() { check($flow, ServerKind::Real, DaemonKind::Ours) })*
        }

        /// The real socket.io-client against our mock server.
        mod our_mock_server_with_the_real_client_sends_the_frames_the_socket_io_server_sends {
            use super::*;
            $(#[test] fn $test() { check($flow, ServerKind::Mock, DaemonKind::Real) })*
        }
    };
}

flows! {
    registration => "registration",
    registration_rejected => "registration-rejected",
    command_echo_with_payload => "command-echo-payload",
    command_echo_without_payload => "command-echo-no-payload",
    command_rejected => "command-rejected",
    reverse_command_answered_with_data => "reverse-data",
    reverse_command_answered_with_a_binary_body => "reverse-body",
    reverse_command_answered_with_a_stream => "reverse-stream",
    reverse_command_without_a_handler_gets_404 => "reverse-404",
    messages_both_ways_including_unknown_types => "messages",
    server_kick => "kick",
}

#[test]
fn every_recorded_transcript_is_replayed() {
    let mut listed: Vec<String> = FLOWS.iter().map(|s| (*s).to_owned()).collect();
    listed.sort();
    assert_eq!(
        recorded_flows(),
        listed,
        "interop/transcripts/*.json and the flows of tests/frames.rs differ"
    );
}

#[test]
fn transcripts_come_from_the_pinned_socket_io_versions() {
    for flow in FLOWS {
        let path = volt_interop::transcript::transcripts_dir().join(format!("{flow}.json"));
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).expect("readable")).expect("JSON");
        assert_eq!(v["recordedWith"]["socket.io"], "4.8.4", "{flow}");
        assert_eq!(v["recordedWith"]["socket.io-client"], "4.8.4", "{flow}");
        let recorded = Transcript::load(flow);
        assert!(!recorded.frames.is_empty(), "{flow} has no frames");
        assert!(
            recorded.frames[0].data.starts_with("0{\"sid\":\"<sid-1>\""),
            "{flow} does not start with the open packet"
        );
    }
}
