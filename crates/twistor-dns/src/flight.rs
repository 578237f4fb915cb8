//! Identical questions in flight share one piece of work: the first asker starts it, later
//! askers wait for the same result, and the work stops when the last waiter is cancelled.
//!
//! Used by the stub [`Resolver`](crate::client::Resolver) (one exchange per question) and
//! the [`Recursive`](crate::recursive::Recursive) resolver (one resolution per question).

use std::cell::RefCell;
use std::collections::HashMap;
use std::hash::Hash;
use std::rc::{Rc, Weak};

use twistor::defer::{Deferred, Failure};

/// The work under way for each key, and the Deferreds waiting for it.
pub(crate) struct Flights<K, T: 'static> {
    table: Rc<RefCell<HashMap<K, Flight<T>>>>,
}

struct Flight<T: 'static> {
    waiters: Vec<Deferred<T>>,
    /// Stops the work; set by [`Flights::started`] once the work exists.
    stop: Option<Box<dyn FnOnce()>>,
}

/// What [`Flights::join`] found.
pub(crate) enum Joined<T: 'static> {
    /// The same key is in flight: this waiter gets its result.
    Waiting(Deferred<T>),
    /// Nothing was in flight: the caller starts the work (then calls
    /// [`Flights::started`]) and this waiter gets its result.
    First(Deferred<T>),
}

impl<K: Hash + Eq + Clone + 'static, T: Clone + 'static> Flights<K, T> {
    /// No work in flight.
    pub(crate) fn new() -> Self {
        Flights {
            table: Rc::new(RefCell::new(HashMap::new())),
        }
    }

    /// A new waiter for `key`'s result. Cancelling it stops waiting, and stops the work if
    /// no one else waits.
    pub(crate) fn join(&self, key: &K) -> Joined<T> {
        let waiter = {
            let table = Rc::downgrade(&self.table);
            let key = key.clone();
            Deferred::with_canceller(move |d: &Deferred<T>| leave(&table, &key, d))
        };
        let mut table = self.table.borrow_mut();
        match table.get_mut(key) {
            Some(flight) => {
                flight.waiters.push(waiter.clone());
                Joined::Waiting(waiter)
            }
            None => {
                table.insert(
                    key.clone(),
                    Flight {
                        waiters: vec![waiter.clone()],
                        stop: None,
                    },
                );
                Joined::First(waiter)
            }
        }
    }

    /// The work for `key` is under way; `stop` stops it. Nothing if it already landed.
    pub(crate) fn started(&self, key: &K, stop: impl FnOnce() + 'static) {
        if let Some(flight) = self.table.borrow_mut().get_mut(key) {
            flight.stop = Some(Box::new(stop));
        }
    }

    /// The work for `key` ended: every waiter gets `result`.
    pub(crate) fn land(&self, key: &K, result: Result<T, Failure>) {
        let waiters = self
            .table
            .borrow_mut()
            .remove(key)
            .map(|flight| flight.waiters)
            .unwrap_or_default();
        for waiter in waiters {
            let _ = waiter.resolve(result.clone());
        }
    }
}

/// `waiter` was cancelled: it stops waiting, and the work stops if no one waits.
fn leave<K: Hash + Eq, T: 'static>(
    table: &Weak<RefCell<HashMap<K, Flight<T>>>>,
    key: &K,
    waiter: &Deferred<T>,
) {
    let Some(table) = table.upgrade() else { return };
    let stop = {
        let mut table = table.borrow_mut();
        let Some(flight) = table.get_mut(key) else {
            return;
        };
        flight.waiters.retain(|w| !w.ptr_eq(waiter));
        if !flight.waiters.is_empty() {
            return;
        }
        table.remove(key).and_then(|flight| flight.stop)
    };
    // Outside the borrow: stopping may land other keys' work.
    if let Some(stop) = stop {
        stop();
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;

    fn first(joined: Joined<u32>) -> Deferred<u32> {
        match joined {
            Joined::First(d) => d,
            Joined::Waiting(_) => panic!("joined work in flight"),
        }
    }

    fn waiting(joined: Joined<u32>) -> Deferred<u32> {
        match joined {
            Joined::Waiting(d) => d,
            Joined::First(_) => panic!("started new work"),
        }
    }

    #[test]
    fn waiters_of_one_key_share_its_result() {
        let flights: Flights<&str, u32> = Flights::new();
        let a = first(flights.join(&"q"));
        let b = waiting(flights.join(&"q"));
        let other = first(flights.join(&"r"));
        flights.land(&"q", Ok(7));
        assert_eq!(a.try_result().unwrap().unwrap(), 7);
        assert_eq!(b.try_result().unwrap().unwrap(), 7);
        assert!(other.try_result().is_none());
        // Landed: the next asker starts again.
        first(flights.join(&"q"));
    }

    #[test]
    fn the_work_stops_when_the_last_waiter_leaves() {
        let flights: Flights<&str, u32> = Flights::new();
        let stopped = Rc::new(Cell::new(0));
        let a = first(flights.join(&"q"));
        let b = waiting(flights.join(&"q"));
        let s = stopped.clone();
        flights.started(&"q", move || s.set(s.get() + 1));
        a.cancel();
        assert!(a.try_result().unwrap().unwrap_err().is_cancelled());
        assert_eq!(stopped.get(), 0, "one still waits");
        b.cancel();
        assert_eq!(stopped.get(), 1);
        // Gone from the table: a late result reaches no one, a new asker starts again.
        flights.land(&"q", Ok(1));
        first(flights.join(&"q"));
    }

    #[test]
    fn a_result_before_started_is_kept() {
        let flights: Flights<&str, u32> = Flights::new();
        let a = first(flights.join(&"q"));
        flights.land(&"q", Err(Failure::new(crate::Error::Invalid("no".into()))));
        flights.started(&"q", || panic!("not stopped after landing"));
        assert!(a.try_result().unwrap().is_err());
        a.cancel();
    }
}
