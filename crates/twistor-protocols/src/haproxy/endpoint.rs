//! The `haproxy:` endpoint type.

use std::rc::Rc;

use twistor::defer::Deferred;
use twistor::endpoints::{
    Description, ServerEndpoint, register_server_type, server_from_string, wrapped_description,
};
use twistor::{Error, Factory, ListeningPort, Reactor};

use super::wrapper::HAProxyWrappingFactory;

/// A server endpoint whose connections start with a PROXY header: `haproxy:<wrapped
/// description>`, e.g. `haproxy:tcp:8080` or `haproxy:unix:/run/app.sock`.
pub struct HAProxyServerEndpoint {
    wrapped: Box<dyn ServerEndpoint>,
}

impl HAProxyServerEndpoint {
    /// Wraps `wrapped`.
    pub fn new(wrapped: Box<dyn ServerEndpoint>) -> HAProxyServerEndpoint {
        HAProxyServerEndpoint { wrapped }
    }
}

impl ServerEndpoint for HAProxyServerEndpoint {
    fn listen(&self, factory: Rc<dyn Factory>) -> Deferred<ListeningPort> {
        self.wrapped.listen(HAProxyWrappingFactory::new(factory))
    }

    fn describe(&self) -> String {
        format!("haproxy:{}", self.wrapped.describe())
    }
}

/// Adds the `haproxy:` type to `server_from_string` (call once at startup; calling again
/// is harmless).
pub fn register() {
    register_server_type("haproxy", parse);
}

fn parse(reactor: &Reactor, d: &Description) -> Result<Box<dyn ServerEndpoint>, Error> {
    let inner = wrapped_description(d);
    if inner.is_empty() {
        return Err(d.error("haproxy: needs a wrapped endpoint, e.g. haproxy:tcp:8080"));
    }
    Ok(Box::new(HAProxyServerEndpoint::new(server_from_string(
        reactor, inner,
    )?)))
}
