//! `ProcessEndpoint`: a client endpoint whose "connection" is a child process's stdin and
//! stdout (Twisted's `endpoints.ProcessEndpoint`).

use super::{
    ProcessCommand, ProcessProtocol, ProcessStatus, ProcessTransport, exit_error, start_process,
};
use std::rc::Rc;

use crate::address::Address;
use crate::defer::{Deferred, Failure};
use crate::endpoints::ClientEndpoint;
use crate::error::Error;
use crate::protocol::{CloseReason, Factory, Protocol};
use crate::reactor::Reactor;
use crate::transport::Transport;

/// What a [`ProcessEndpoint`] does with the child's stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum StderrBehavior {
    /// Log each chunk at `info` level (Twisted's default).
    #[default]
    Log,
    /// Drop it.
    Drop,
}

/// Connects a plain [`Protocol`] to a child process: the protocol's writes go to the child's
/// stdin, the child's stdout arrives in `data_received`, and the protocol's
/// `connection_lost` comes when the process has ended (`Done` for exit code 0, `Lost`
/// otherwise).
///
/// ```no_run
/// use twistor::process::{ProcessCommand, ProcessEndpoint};
/// use twistor::protocol::{Protocol, factory};
/// use twistor::{Reactor, Transport};
///
/// struct Print;
/// impl Protocol for Print {
///     fn connection_made(&mut self, transport: &Transport) {
///         transport.write(b"hello\n");
///         transport.lose_write_connection();
///     }
///     fn data_received(&mut self, _t: &Transport, data: &[u8]) {
///         print!("{}", String::from_utf8_lossy(data));
///     }
/// }
///
/// let reactor = Reactor::new()?;
/// let endpoint = ProcessEndpoint::new(&reactor, ProcessCommand::new("cat"));
/// endpoint.spawn(&factory(|_| Print))?;
/// # Ok::<(), twistor::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct ProcessEndpoint {
    reactor: Reactor,
    command: ProcessCommand,
    stderr: StderrBehavior,
}

impl ProcessEndpoint {
    /// An endpoint that runs `command` for each connection.
    pub fn new(reactor: &Reactor, command: ProcessCommand) -> ProcessEndpoint {
        ProcessEndpoint {
            reactor: reactor.clone(),
            command,
            stderr: StderrBehavior::default(),
        }
    }

    /// Says what to do with the child's stderr.
    pub fn stderr(mut self, behavior: StderrBehavior) -> ProcessEndpoint {
        self.stderr = behavior;
        self
    }

    /// The command each connection runs.
    pub fn command(&self) -> &ProcessCommand {
        &self.command
    }

    /// Starts the child and connects a protocol built by `factory` to it, at once. Fails if
    /// the factory refuses or the program cannot be started. (As a [`ClientEndpoint`],
    /// `connect` does the same and reports through a Deferred.)
    pub fn spawn<F: Factory + ?Sized>(&self, factory: &F) -> Result<Transport, Error> {
        let protocol = factory
            .build_protocol(&Address::Pipe)
            .ok_or(Error::FactoryRefused)?;
        self.spawn_protocol(protocol)
    }

    /// Starts the child and connects `protocol` to it.
    pub fn spawn_protocol(&self, protocol: Box<dyn Protocol>) -> Result<Transport, Error> {
        let adapter = ProtocolAdapter {
            protocol,
            transport: None,
            stderr: self.stderr,
        };
        let (process, failure) = start_process(&self.reactor, Box::new(adapter), &self.command);
        match failure {
            Some(err) => Err(err),
            None => Ok(process.transport()),
        }
    }
}

impl ClientEndpoint for ProcessEndpoint {
    fn connect(&self, factory: Rc<dyn Factory>) -> Deferred<Transport> {
        Deferred::resolved(self.spawn(&*factory).map_err(Failure::new))
    }

    fn describe(&self) -> String {
        format!("process:{}", self.command.program().to_string_lossy())
    }
}

/// Runs a plain protocol over a process's stdin and stdout.
struct ProtocolAdapter {
    protocol: Box<dyn Protocol>,
    /// Set by `make_connection`; `None` if the process never started.
    transport: Option<Transport>,
    stderr: StderrBehavior,
}

impl ProcessProtocol for ProtocolAdapter {
    fn make_connection(&mut self, process: &ProcessTransport) {
        let transport = process.transport();
        self.protocol.make_connection(&transport);
        self.transport = Some(transport);
    }

    fn out_received(&mut self, _process: &ProcessTransport, data: &[u8]) {
        if let Some(t) = &self.transport {
            self.protocol.data_received(t, data);
        }
    }

    fn err_received(&mut self, process: &ProcessTransport, data: &[u8]) {
        if self.stderr == StderrBehavior::Log {
            tracing::info!(
                "process {:?} stderr: {}",
                process.pid(),
                String::from_utf8_lossy(data).trim_end()
            );
        }
    }

    fn in_connection_lost(&mut self, _process: &ProcessTransport) {
        if let Some(t) = &self.transport {
            self.protocol.write_connection_lost(t);
        }
    }

    fn out_connection_lost(&mut self, _process: &ProcessTransport) {
        if let Some(t) = &self.transport {
            self.protocol.read_connection_lost(t);
        }
    }

    fn process_ended(&mut self, status: &ProcessStatus) {
        if self.transport.is_none() {
            return;
        }
        let reason = if status.success() {
            CloseReason::Done
        } else {
            CloseReason::Lost(exit_error(status))
        };
        self.protocol.connection_lost(&reason);
    }
}
