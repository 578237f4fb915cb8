//! The `Service` trait and `MultiService`, the tree a program is assembled from (Twisted's
//! `twisted.application.service`).

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::fmt;
use std::rc::Rc;

use crate::defer::{Deferred, Failure};

/// Something that runs while the program runs: a listening port, a kept-up client
/// connection, a periodic job (Twisted's `IService`).
///
/// Starting is immediate and may fail (a port in use); stopping may take time (connections
/// finishing), so it returns a [`Deferred`] that fires once the service has stopped.
/// Services are shared (`Rc<dyn Service>`) and change state through `&self`.
pub trait Service: Any {
    /// Starts the service (Twisted's `startService`). On `Err` it did not start. Starting
    /// a service that is running does nothing.
    fn start_service(&self) -> Result<(), Failure>;

    /// Stops the service (Twisted's `stopService`); the Deferred fires once it has
    /// stopped. Stopping a service that is not running fires at once.
    fn stop_service(&self) -> Deferred<()>;

    /// Whether the service is running: started, and not yet asked to stop.
    fn running(&self) -> bool;
}

/// A child of a [`MultiService`]: its name, and the service both as a `Service` and as
/// `Any` (for [`MultiService::get`]).
struct Child {
    name: Option<String>,
    service: Rc<dyn Service>,
    any: Rc<dyn Any>,
}

/// A service made of services (Twisted's `MultiService`): starting it starts its children
/// in the order they were added; stopping it stops them in reverse order, each only once
/// the one after it has finished stopping, so what was started first (a database, a
/// connection count to drain) is stopped last.
///
/// A child added while the parent runs is started at once. Children may have names, by
/// which they can be found again.
///
/// ```
/// use std::rc::Rc;
/// use twistor::application::{MultiService, Service, TimerService};
/// use twistor_testing::Clock;
///
/// let clock = Clock::new();
/// let root = MultiService::new();
/// let tick = TimerService::new(clock.clone(), std::time::Duration::from_secs(60), || {});
/// root.add_named("tick", Rc::new(tick)).unwrap();
/// root.start_service().unwrap();
/// assert!(root.get::<TimerService>("tick").unwrap().running());
/// let stopped = root.stop_service();
/// assert!(stopped.try_result().unwrap().is_ok());
/// ```
pub struct MultiService {
    children: RefCell<Vec<Child>>,
    running: Cell<bool>,
}

/// A second child with a name already taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DuplicateName(pub String);

impl fmt::Display for DuplicateName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a service named {:?} is already there", self.0)
    }
}

impl std::error::Error for DuplicateName {}

impl Default for MultiService {
    fn default() -> Self {
        MultiService::new()
    }
}

impl MultiService {
    /// An empty, stopped `MultiService`.
    pub fn new() -> MultiService {
        MultiService {
            children: RefCell::new(Vec::new()),
            running: Cell::new(false),
        }
    }

    /// Adds an unnamed child (Twisted's `setServiceParent`), starting it if this service
    /// runs; an error starting it is returned, and the child stays added but stopped.
    pub fn add<S: Service>(&self, service: Rc<S>) -> Result<(), Failure> {
        self.insert(None, service)
    }

    /// Adds a child found again by `name`; fails with [`DuplicateName`] if a child has it.
    pub fn add_named<S: Service>(&self, name: &str, service: Rc<S>) -> Result<(), Failure> {
        if self.position(name).is_some() {
            return Err(Failure::new(DuplicateName(name.to_string())));
        }
        self.insert(Some(name.to_string()), service)
    }

    fn insert<S: Service>(&self, name: Option<String>, service: Rc<S>) -> Result<(), Failure> {
        let any: Rc<dyn Any> = service.clone();
        let dynamic: Rc<dyn Service> = service;
        self.children.borrow_mut().push(Child {
            name: name.clone(),
            service: dynamic.clone(),
            any,
        });
        if self.running.get() {
            dynamic
                .start_service()
                .map_err(|f| f.context(starting(name.as_deref())))?;
        }
        Ok(())
    }

    /// The child named `name`, as the service type it is (Twisted's `getServiceNamed`).
    pub fn get<S: Service>(&self, name: &str) -> Option<Rc<S>> {
        let i = self.position(name)?;
        self.children.borrow()[i].any.clone().downcast::<S>().ok()
    }

    /// The child named `name`, as a `dyn Service`.
    pub fn service_named(&self, name: &str) -> Option<Rc<dyn Service>> {
        let i = self.position(name)?;
        Some(self.children.borrow()[i].service.clone())
    }

    /// Takes out the child named `name` (Twisted's `removeService`), stopping it if this
    /// service runs; `None` if there is no such child. The Deferred fires once it stopped.
    pub fn remove(&self, name: &str) -> Option<Deferred<()>> {
        let i = self.position(name)?;
        let child = self.children.borrow_mut().remove(i);
        Some(if self.running.get() {
            child.service.stop_service()
        } else {
            Deferred::succeeded(())
        })
    }

    /// How many children there are.
    pub fn len(&self) -> usize {
        self.children.borrow().len()
    }

    /// Whether there are no children.
    pub fn is_empty(&self) -> bool {
        self.children.borrow().is_empty()
    }

    /// The children's names, in order (`None` for unnamed ones).
    pub fn names(&self) -> Vec<Option<String>> {
        self.children
            .borrow()
            .iter()
            .map(|c| c.name.clone())
            .collect()
    }

    fn position(&self, name: &str) -> Option<usize> {
        self.children
            .borrow()
            .iter()
            .position(|c| c.name.as_deref() == Some(name))
    }

    /// The children as they are now, so that a child's start or stop may add or remove
    /// children without a borrow held.
    fn snapshot(&self) -> Vec<(Option<String>, Rc<dyn Service>)> {
        self.children
            .borrow()
            .iter()
            .map(|c| (c.name.clone(), c.service.clone()))
            .collect()
    }
}

fn starting(name: Option<&str>) -> String {
    match name {
        Some(name) => format!("starting service {name:?}"),
        None => "starting a service".to_string(),
    }
}

/// Stops `children` one after another from the last, each once the previous stop has
/// fired; a failed stop is logged and the next one goes on. Fires `done` at the end.
fn stop_in_reverse(mut children: Vec<(Option<String>, Rc<dyn Service>)>, done: Deferred<()>) {
    let Some((name, service)) = children.pop() else {
        let _ = done.callback(());
        return;
    };
    service.stop_service().consume(move |result| {
        if let Err(failure) = result {
            match &name {
                Some(name) => tracing::error!("stopping service {name:?} failed: {failure}"),
                None => tracing::error!("stopping a service failed: {failure}"),
            }
        }
        stop_in_reverse(children, done);
    });
}

impl Service for MultiService {
    /// Starts the children in order. If one fails, those already started are stopped again
    /// (in reverse order) and its error is returned.
    fn start_service(&self) -> Result<(), Failure> {
        if self.running.replace(true) {
            return Ok(());
        }
        let children = self.snapshot();
        for (i, (name, service)) in children.iter().enumerate() {
            if let Err(failure) = service.start_service() {
                self.running.set(false);
                let started = children[..i].to_vec();
                stop_in_reverse(started, Deferred::new());
                return Err(failure.context(starting(name.as_deref())));
            }
        }
        Ok(())
    }

    fn stop_service(&self) -> Deferred<()> {
        if !self.running.replace(false) {
            return Deferred::succeeded(());
        }
        let done = Deferred::new();
        stop_in_reverse(self.snapshot(), done.clone());
        done
    }

    fn running(&self) -> bool {
        self.running.get()
    }
}

impl fmt::Debug for MultiService {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MultiService")
            .field("children", &self.names())
            .field("running", &self.running.get())
            .finish()
    }
}
