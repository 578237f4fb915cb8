//! Waiting on several Deferreds at once: [`DeferredList`], [`gather_results`], [`race`].

use std::cell::RefCell;
use std::rc::Rc;

use super::deferred::{Deferred, Outcome, WeakDeferred};
use super::failure::{Failure, FailureGroup, FirstError};

/// A Deferred that fires when a list of Deferreds has (Twisted's `DeferredList`).
///
/// By default it waits for all of them and fires with every result, in list order. With
/// [`fire_on_one_callback`](DeferredList::fire_on_one_callback) it fires with the first
/// value instead; with [`fire_on_one_errback`](DeferredList::fire_on_one_errback) it fails
/// with the first failure (a [`FirstError`]). A failure stays on its own Deferred's chain
/// too (and is logged as unhandled if nobody handles it there) unless
/// [`consume_errors`](DeferredList::consume_errors) is set.
///
/// Values are moved into the list's result, so after the list has taken it, a Deferred in
/// the list has no value left for callbacks added to it later. A value arriving after the
/// list has fired stays where it is. Cancelling the list's Deferred cancels every Deferred
/// in the list. The list refers to them weakly (whoever will fire them keeps them alive), so
/// an abandoned list never forms a reference cycle with them.
///
/// ```
/// use twistor::defer::{Deferred, DeferredList, ListOutcome, succeed};
///
/// let slow = Deferred::new();
/// let list = DeferredList::new([succeed(1), slow.clone()]).into_deferred();
/// assert!(!list.called());
/// slow.callback(2).unwrap();
/// let ListOutcome::All(results) = list.try_result().unwrap().unwrap() else { unreachable!() };
/// let values: Vec<i32> = results.into_iter().map(|r| r.unwrap()).collect();
/// assert_eq!(values, [1, 2]);
/// ```
pub struct DeferredList<T: 'static> {
    deferreds: Vec<Deferred<T>>,
    fire_on_one_callback: bool,
    fire_on_one_errback: bool,
    consume_errors: bool,
}

/// What a [`DeferredList`] fires with.
#[derive(Debug)]
pub enum ListOutcome<T> {
    /// Every Deferred fired; their results in list order.
    All(Vec<Result<T, Failure>>),
    /// `fire_on_one_callback`: the first value, and the position of its Deferred.
    First {
        /// Position in the list.
        index: usize,
        /// The value.
        value: T,
    },
}

/// The results in list order (for [`ListOutcome::First`], the one value).
///
/// ```
/// use twistor::defer::{DeferredList, Failure, fail, succeed};
///
/// let list = DeferredList::new([succeed(1), fail(Failure::msg("no")), succeed(3)])
///     .consume_errors(true)
///     .into_deferred();
/// let outcome = list.try_result().unwrap().unwrap();
/// let values: Vec<i32> = (&outcome).into_iter().filter_map(|r| r.ok()).copied().collect();
/// assert_eq!(values, [1, 3]);
/// for result in outcome {
///     if let Err(failure) = result {
///         assert_eq!(failure.to_string(), "no");
///     }
/// }
/// ```
impl<T> IntoIterator for ListOutcome<T> {
    type Item = Result<T, Failure>;
    type IntoIter = std::vec::IntoIter<Result<T, Failure>>;

    fn into_iter(self) -> Self::IntoIter {
        match self {
            ListOutcome::All(results) => results.into_iter(),
            ListOutcome::First { value, .. } => vec![Ok(value)].into_iter(),
        }
    }
}

impl<'a, T> IntoIterator for &'a ListOutcome<T> {
    type Item = Result<&'a T, &'a Failure>;
    type IntoIter = ListOutcomeIter<'a, T>;

    fn into_iter(self) -> Self::IntoIter {
        match self {
            ListOutcome::All(results) => ListOutcomeIter::All(results.iter()),
            ListOutcome::First { value, .. } => ListOutcomeIter::First(Some(value)),
        }
    }
}

/// Iterates over a borrowed [`ListOutcome`]'s results.
#[derive(Debug)]
pub enum ListOutcomeIter<'a, T> {
    /// Over [`ListOutcome::All`].
    All(std::slice::Iter<'a, Result<T, Failure>>),
    /// Over [`ListOutcome::First`]: its value, once.
    First(Option<&'a T>),
}

impl<'a, T> Iterator for ListOutcomeIter<'a, T> {
    type Item = Result<&'a T, &'a Failure>;

    fn next(&mut self) -> Option<Self::Item> {
        match self {
            ListOutcomeIter::All(iter) => iter.next().map(Result::as_ref),
            ListOutcomeIter::First(value) => value.take().map(Ok),
        }
    }
}

impl<T: 'static> DeferredList<T> {
    /// A list over `deferreds`, waiting for all of them, not consuming errors.
    pub fn new(deferreds: impl IntoIterator<Item = Deferred<T>>) -> DeferredList<T> {
        DeferredList {
            deferreds: deferreds.into_iter().collect(),
            fire_on_one_callback: false,
            fire_on_one_errback: false,
            consume_errors: false,
        }
    }

    /// Fire with the first value to arrive ([`ListOutcome::First`]).
    pub fn fire_on_one_callback(mut self, yes: bool) -> Self {
        self.fire_on_one_callback = yes;
        self
    }

    /// Fail with the first failure to arrive (a [`FirstError`]).
    pub fn fire_on_one_errback(mut self, yes: bool) -> Self {
        self.fire_on_one_errback = yes;
        self
    }

    /// Take failures off the listed Deferreds' chains, so they are not also reported as
    /// unhandled there.
    pub fn consume_errors(mut self, yes: bool) -> Self {
        self.consume_errors = yes;
        self
    }

    /// Starts listening and returns the list's Deferred. An empty list fires at once with
    /// no results (unless `fire_on_one_callback` is set: then it never fires, as in
    /// Twisted).
    pub fn into_deferred(self) -> Deferred<ListOutcome<T>> {
        let count = self.deferreds.len();
        let out = cancelling_all(&self.deferreds);
        if count == 0 && !self.fire_on_one_callback {
            let _ = out.callback(ListOutcome::All(Vec::new()));
            return out;
        }
        let state = Rc::new(RefCell::new(ListState {
            results: (0..count).map(|_| None).collect(),
            remaining: count,
            out: out.clone(),
            fire_on_one_callback: self.fire_on_one_callback,
            fire_on_one_errback: self.fire_on_one_errback,
            consume_errors: self.consume_errors,
        }));
        for (index, d) in self.deferreds.iter().enumerate() {
            let state = state.clone();
            d.add_handoff(move |result| ListState::record(&state, index, result));
        }
        out
    }
}

struct ListState<T: 'static> {
    results: Vec<Option<Result<T, Failure>>>,
    remaining: usize,
    out: Deferred<ListOutcome<T>>,
    fire_on_one_callback: bool,
    fire_on_one_errback: bool,
    consume_errors: bool,
}

impl<T: 'static> ListState<T> {
    fn record(state: &Rc<RefCell<Self>>, index: usize, result: Result<T, Failure>) -> Outcome<T> {
        let mut s = state.borrow_mut();
        let fire: Option<Result<ListOutcome<T>, Failure>>;
        let leave = match result {
            Ok(value) => {
                if s.out.called() {
                    return Outcome::Done(Ok(value));
                }
                if s.fire_on_one_callback {
                    fire = Some(Ok(ListOutcome::First { index, value }));
                } else {
                    s.results[index] = Some(Ok(value));
                    fire = s.one_less();
                }
                Outcome::Consumed
            }
            Err(failure) => {
                let leave = if s.consume_errors {
                    Outcome::Consumed
                } else {
                    Outcome::Done(Err(failure.clone()))
                };
                if s.out.called() {
                    return leave;
                }
                if s.fire_on_one_errback {
                    fire = Some(Err(Failure::new(FirstError { index, failure })));
                } else {
                    s.results[index] = Some(Err(failure));
                    fire = s.one_less();
                }
                leave
            }
        };
        let out = s.out.clone();
        drop(s);
        if let Some(result) = fire {
            let _ = out.resolve(result);
        }
        leave
    }

    /// Counts one more result in; the full list once all are in.
    fn one_less(&mut self) -> Option<Result<ListOutcome<T>, Failure>> {
        self.remaining -= 1;
        if self.remaining > 0 {
            return None;
        }
        let results = self
            .results
            .iter_mut()
            .map(|r| {
                r.take()
                    .unwrap_or_else(|| Err(Failure::new(super::DeferredError::ResultConsumed)))
            })
            .collect();
        Some(Ok(ListOutcome::All(results)))
    }
}

/// A new Deferred whose cancellation cancels every one of `deferreds`.
fn cancelling_all<T: 'static, U: 'static>(deferreds: &[Deferred<T>]) -> Deferred<U> {
    let weak: Vec<WeakDeferred<T>> = deferreds.iter().map(Deferred::downgrade).collect();
    Deferred::with_canceller(move |_| {
        for d in weak.iter().filter_map(WeakDeferred::upgrade) {
            d.cancel();
        }
    })
}

/// A Deferred for all the values of `deferreds`, in order, or the first failure (as a
/// [`FirstError`]) — Twisted's `gatherResults`. With `consume_errors`, failures are taken
/// off the listed Deferreds' chains.
pub fn gather_results<T: 'static>(
    deferreds: impl IntoIterator<Item = Deferred<T>>,
    consume_errors: bool,
) -> Deferred<Vec<T>> {
    DeferredList::new(deferreds)
        .fire_on_one_errback(true)
        .consume_errors(consume_errors)
        .into_deferred()
        .and_then(|outcome| match outcome {
            ListOutcome::All(results) => results.into_iter().collect(),
            ListOutcome::First { value, .. } => Ok(vec![value]),
        })
}

/// A Deferred for the first of `deferreds` to succeed, with its position; the others are
/// cancelled then (Twisted's `race`). If all fail, it fails with a [`FailureGroup`] of
/// their failures, in list order. The raced Deferreds' results are consumed; like
/// [`DeferredList`], the race refers to them weakly. Unlike
/// Twisted, racing an empty list fails at once (with an empty group) instead of never
/// firing.
pub fn race<T: 'static>(deferreds: impl IntoIterator<Item = Deferred<T>>) -> Deferred<(usize, T)> {
    let deferreds: Vec<Deferred<T>> = deferreds.into_iter().collect();
    let out = cancelling_all(&deferreds);
    if deferreds.is_empty() {
        let _ = out.errback(FailureGroup {
            failures: Vec::new(),
        });
        return out;
    }
    let weak: Rc<Vec<WeakDeferred<T>>> =
        Rc::new(deferreds.iter().map(Deferred::downgrade).collect());
    let state = Rc::new(RefCell::new(RaceState {
        failures: (0..deferreds.len()).map(|_| None).collect(),
        failed: 0,
        won: false,
    }));
    for (index, d) in deferreds.iter().enumerate() {
        let (state, weak, out) = (state.clone(), weak.clone(), out.clone());
        d.add_handoff(move |result| {
            match result {
                Ok(value) => {
                    if std::mem::replace(&mut state.borrow_mut().won, true) {
                        return Outcome::Consumed;
                    }
                    for (i, loser) in weak.iter().enumerate() {
                        if i != index
                            && let Some(loser) = loser.upgrade()
                        {
                            loser.cancel();
                        }
                    }
                    let _ = out.callback((index, value));
                }
                Err(failure) => {
                    let mut s = state.borrow_mut();
                    s.failures[index] = Some(failure);
                    s.failed += 1;
                    if s.failed == s.failures.len() && !s.won {
                        let failures = s.failures.iter_mut().filter_map(Option::take).collect();
                        drop(s);
                        let _ = out.errback(FailureGroup { failures });
                    }
                }
            }
            Outcome::Consumed
        });
    }
    out
}

struct RaceState {
    failures: Vec<Option<Failure>>,
    failed: usize,
    won: bool,
}
