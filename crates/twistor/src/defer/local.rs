//! Per-reactor singletons (the thread pool, the cooperator) kept outside the reactor.
//!
//! The reactor owns each one through a system event trigger that holds the strong
//! reference (so it lives and dies with the reactor); this thread-local registry keeps
//! weak references to find it again.

use std::any::{Any, TypeId};
use std::cell::RefCell;
use std::rc::{Rc, Weak};

use crate::reactor::{Inner, Reactor};

type Entry = (Weak<Inner>, TypeId, Weak<dyn Any>);

thread_local! {
    static REGISTRY: RefCell<Vec<Entry>> = const { RefCell::new(Vec::new()) };
}

/// The reactor's `T`, made by `make` the first time. `make` must arrange for the reactor to
/// own the value it returns (typically by capturing it in a system event trigger).
pub(crate) fn reactor_local<T: 'static>(reactor: &Reactor, make: impl FnOnce() -> Rc<T>) -> Rc<T> {
    let key = Rc::downgrade(&reactor.inner);
    let found = REGISTRY.with(|r| {
        let mut r = r.borrow_mut();
        r.retain(|(owner, _, value)| owner.strong_count() > 0 && value.strong_count() > 0);
        r.iter()
            .find(|(owner, ty, _)| owner.ptr_eq(&key) && *ty == TypeId::of::<T>())
            .and_then(|(_, _, value)| value.upgrade())
    });
    if let Some(found) = found
        && let Ok(value) = found.downcast::<T>()
    {
        return value;
    }
    let value = make();
    let erased: Rc<dyn Any> = value.clone();
    REGISTRY.with(|r| {
        r.borrow_mut()
            .push((key, TypeId::of::<T>(), Rc::downgrade(&erased)))
    });
    value
}
