//! Panics on the client's and the mock server's background threads.

use std::thread;

static BACKGROUND_PANICS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Counts panics on the client's and the mock server's own threads (named
/// `volt-…`), except those whose message contains `expected panic`: the
/// client catches handler panics on purpose, so a panic there would
/// otherwise go unnoticed. Unlike the testkit's process-wide counter, a
/// failing assertion on another test's thread does not count, so one
/// failing test does not fail the others. Idempotent.
pub fn watch_background_panics() {
    static INSTALLED: std::sync::Once = std::sync::Once::new();
    INSTALLED.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let message = volt_testkit::panic_message(info);
            let background = thread::current()
                .name()
                .is_some_and(|n| n.starts_with("volt-"));
            if background && !message.contains("expected panic") {
                BACKGROUND_PANICS.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
            default(info);
        }));
    });
}

/// Fails when [`watch_background_panics`] has seen a panic.
#[track_caller]
pub fn assert_no_background_panics() {
    assert_eq!(
        BACKGROUND_PANICS.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "a client or mock server thread panicked (see the output above)"
    );
}
