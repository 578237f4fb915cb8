//! A Deferred dropped while holding a failure logs "Unhandled error in Deferred" with the
//! failure (Twisted logs it when the Deferred is garbage collected); a handled one does not.

use std::fmt::Write as _;
use std::sync::{Arc, Mutex};

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Metadata, Subscriber};
use twistor::defer::{Deferred, DeferredList, Failure, fail};

/// Records the level and formatted fields of every event.
#[derive(Clone, Default)]
struct Recorder {
    events: Arc<Mutex<Vec<(Level, String)>>>,
}

struct Fields(String);

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.0, "{value:?}");
        } else {
            let _ = write!(self.0, " {}={value:?}", field.name());
        }
    }
}

impl Subscriber for Recorder {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &Event<'_>) {
        let mut fields = Fields(String::new());
        event.record(&mut fields);
        self.events
            .lock()
            .unwrap()
            .push((*event.metadata().level(), fields.0));
    }
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

/// Runs `f` with a recording subscriber and returns the error-level messages it logged.
fn errors_logged(f: impl FnOnce()) -> Vec<String> {
    let recorder = Recorder::default();
    tracing::subscriber::with_default(recorder.clone(), f);
    let events = recorder.events.lock().unwrap();
    events
        .iter()
        .filter(|(level, _)| *level == Level::ERROR)
        .map(|(_, text)| text.clone())
        .collect()
}

#[test]
fn a_dropped_failure_is_logged_with_the_error() {
    let logged = errors_logged(|| {
        let d: Deferred<i32> = Deferred::new();
        d.add_callback(|n| Ok(n + 1));
        d.errback(Failure::msg("the disk is on fire").context("saving"))
            .unwrap();
        drop(d);
    });
    assert_eq!(logged.len(), 1, "{logged:?}");
    assert!(
        logged[0].starts_with("Unhandled error in Deferred: saving: the disk is on fire"),
        "{logged:?}"
    );
    assert!(
        logged[0].contains("defer_unhandled.rs"),
        "says where: {logged:?}"
    );
}

#[test]
fn only_the_last_handle_dropping_logs() {
    let logged = errors_logged(|| {
        let d: Deferred<()> = fail(Failure::msg("x"));
        let other = d.clone();
        drop(d);
        assert!(other.called());
        drop(other);
    });
    assert_eq!(logged.len(), 1);
}

#[test]
fn handled_failures_are_not_logged() {
    let logged = errors_logged(|| {
        let recovered: Deferred<i32> = fail(Failure::msg("recovered"));
        recovered.add_errback(|_| Ok(0));
        let consumed: Deferred<i32> = fail(Failure::msg("consumed"));
        consumed.consume(|_| {});
        let taken: Deferred<i32> = fail(Failure::msg("taken"));
        assert!(taken.try_result().unwrap().is_err());
        let mapped: Deferred<i32> = fail(Failure::msg("moved on"));
        mapped.map(|n| n + 1).add_errback(|_| Ok(0));
        let succeeded = Deferred::new();
        succeeded.callback(1).unwrap();
        let pending: Deferred<i32> = Deferred::new();
        drop(pending);
    });
    assert!(logged.is_empty(), "{logged:?}");
}

#[test]
fn a_failure_moved_on_is_logged_where_it_ends_up() {
    let logged = errors_logged(|| {
        let d: Deferred<i32> = Deferred::new();
        let mapped = d.map(|n| n * 2);
        d.errback(Failure::msg("ends up in the mapped one"))
            .unwrap();
        drop(d);
        drop(mapped);
    });
    assert_eq!(logged.len(), 1);
    assert!(logged[0].contains("ends up in the mapped one"));
}

#[test]
fn a_deferred_list_without_consume_errors_leaves_failures_to_be_logged() {
    let logged = errors_logged(|| {
        let bad: Deferred<i32> = fail(Failure::msg("listed failure"));
        let list = DeferredList::new([bad]).into_deferred();
        drop(list.try_result());
    });
    assert_eq!(logged.len(), 1, "{logged:?}");

    let logged = errors_logged(|| {
        let bad: Deferred<i32> = fail(Failure::msg("listed failure"));
        let list = DeferredList::new([bad])
            .consume_errors(true)
            .into_deferred();
        drop(list.try_result());
    });
    assert!(logged.is_empty(), "{logged:?}");
}
