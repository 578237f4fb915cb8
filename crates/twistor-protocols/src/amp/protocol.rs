//! The AMP protocol: commands sent with `_ask`, answered with `_answer` or `_error`.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::fmt;
use std::rc::Rc;

use twistor::defer::{Deferred, Failure};
use twistor::{CloseReason, Protocol, Transport};

use super::codec::{AmpBox, BoxDecoder};
use super::command::{Arguments, Command};
use crate::error::Error;

const ASK: &[u8] = b"_ask";
const ANSWER: &[u8] = b"_answer";
const COMMAND: &[u8] = b"_command";
const ERROR: &[u8] = b"_error";
const ERROR_CODE: &[u8] = b"_error_code";
const ERROR_DESCRIPTION: &[u8] = b"_error_description";

/// The error code for a command with no responder (Twisted's `UNHANDLED_ERROR_CODE`).
pub const UNHANDLED_ERROR_CODE: &str = "UNHANDLED";
/// The error code for a responder that failed unexpectedly (Twisted's
/// `UNKNOWN_ERROR_CODE`).
pub const UNKNOWN_ERROR_CODE: &str = "UNKNOWN";

/// An error a responder answers with: a code the command declares (see
/// [`Command::error`]) and a description. On the Twisted side it becomes the exception
/// type mapped to the code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandError {
    /// The error code, e.g. `ZERO_DIVISION`.
    pub code: String,
    /// What went wrong.
    pub description: String,
}

impl CommandError {
    /// An error with `code` and `description`.
    pub fn new(code: &str, description: impl Into<String>) -> CommandError {
        CommandError {
            code: code.to_string(),
            description: description.into(),
        }
    }
}

impl fmt::Display for CommandError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.description)
    }
}

impl std::error::Error for CommandError {}

/// A question sent and not yet answered: its command and the caller's Deferred.
type Question = (Command, Deferred<Arguments>);

type Responder = Rc<dyn Fn(Arguments) -> Deferred<Arguments>>;

/// One end of an AMP connection: register responders, call the peer's commands. It is a
/// cheap handle (clone it into callbacks); [`protocol`](Amp::protocol) gives the
/// [`Protocol`] to connect or serve with.
///
/// ```
/// use twistor::Protocol;
/// use twistor_protocols::amp::{Amp, ArgType, Arguments, Command};
/// use twistor_testing::ConnectedPair;
///
/// let sum = Command::new("Sum")
///     .argument("a", ArgType::Integer)
///     .argument("b", ArgType::Integer)
///     .response("total", ArgType::Integer);
/// let server = Amp::new();
/// server.responder(&sum, |args| {
///     Ok(Arguments::new().with("total", args.integer("a")? + args.integer("b")?))
/// });
/// let client = Amp::new();
/// let mut pair = ConnectedPair::new(server.protocol(), client.protocol());
/// let answer = client.call_remote(&sum, Arguments::new().with("a", 13).with("b", 81));
/// pair.pump();
/// assert_eq!(answer.try_result().unwrap().unwrap().integer("total").unwrap(), 94);
/// ```
#[derive(Clone, Default)]
pub struct Amp {
    state: Rc<State>,
}

#[derive(Default)]
struct State {
    transport: RefCell<Option<Transport>>,
    responders: RefCell<HashMap<String, (Command, Responder)>>,
    pending: RefCell<HashMap<Vec<u8>, Question>>,
    counter: Cell<u64>,
}

impl Amp {
    /// A new end, not yet connected.
    pub fn new() -> Amp {
        Amp::default()
    }

    /// The protocol for this end's connection (make one connection per `Amp`).
    pub fn protocol(&self) -> AmpProtocol {
        AmpProtocol {
            amp: self.clone(),
            decoder: BoxDecoder::new(),
        }
    }

    /// Answers `command` with `f`. An error that is a [`CommandError`] with a code the
    /// command declares is sent as that error (`Err(CommandError::new(..).into())`); any
    /// other error is sent as `UNKNOWN` and the connection is closed (as Twisted does for
    /// an unexpected exception). `?` works on any error type.
    pub fn responder(
        &self,
        command: &Command,
        f: impl Fn(Arguments) -> Result<Arguments, Failure> + 'static,
    ) {
        self.responder_deferred(command, move |args| Deferred::resolved(f(args)));
    }

    /// Answers `command` with `f`, whose Deferred may fire later. A failure carrying a
    /// [`CommandError`] with a declared code is sent as that error; any other failure as
    /// `UNKNOWN`, and the connection is closed.
    pub fn responder_deferred(
        &self,
        command: &Command,
        f: impl Fn(Arguments) -> Deferred<Arguments> + 'static,
    ) {
        self.state
            .responders
            .borrow_mut()
            .insert(command.name().to_string(), (command.clone(), Rc::new(f)));
    }

    /// Calls `command` on the peer. The Deferred fires with the typed response, or fails
    /// with the peer's error (a declared code is [`Error::AmpRemote`], another
    /// [`Error::AmpUnknownRemote`], a missing responder
    /// [`Error::AmpUnhandledCommand`]), or with a local error (arguments that do not match
    /// the command or break the limits — nothing is sent — or [`Error::NotConnected`]).
    /// For a command that needs no answer, it fires at once with no values.
    pub fn call_remote(&self, command: &Command, args: Arguments) -> Deferred<Arguments> {
        let Some(transport) = self.state.transport.borrow().clone() else {
            return Deferred::failed(Failure::new(Error::NotConnected));
        };
        let mut b = match command.encode_arguments(&args) {
            Ok(b) => b,
            Err(err) => return Deferred::failed(Failure::new(err)),
        };
        b.insert(COMMAND, command.name().as_bytes());
        let answer = if command.requires_answer() {
            let n = self.state.counter.get() + 1;
            self.state.counter.set(n);
            let tag = format!("{n:x}").into_bytes();
            b.insert(ASK, tag.clone());
            let d = Deferred::new();
            self.state
                .pending
                .borrow_mut()
                .insert(tag, (command.clone(), d.clone()));
            d
        } else {
            Deferred::succeeded(Arguments::new())
        };
        match b.encode() {
            Ok(bytes) => transport.write(&bytes),
            Err(err) => {
                if let Some(tag) = b.get(ASK) {
                    self.state.pending.borrow_mut().remove(tag);
                }
                return Deferred::failed(Failure::new(err));
            }
        }
        answer
    }

    /// The transport, while connected.
    pub fn transport(&self) -> Option<Transport> {
        self.state.transport.borrow().clone()
    }

    fn send(&self, b: &AmpBox) {
        let Some(transport) = self.transport() else {
            return;
        };
        match b.encode() {
            Ok(bytes) => transport.write(&bytes),
            Err(err) => tracing::error!("AMP: cannot send a box: {err}"),
        }
    }

    fn box_received(&self, mut b: AmpBox) -> Result<(), Error> {
        if let Some(tag) = b.remove(ANSWER) {
            let (command, d) = self.take_pending(&tag)?;
            let _ = d.resolve(command.decode_response(&b).map_err(Failure::new));
        } else if let Some(tag) = b.remove(ERROR) {
            let (command, d) = self.take_pending(&tag)?;
            let code = String::from_utf8_lossy(b.get(ERROR_CODE).unwrap_or_default()).into_owned();
            let description =
                String::from_utf8_lossy(b.get(ERROR_DESCRIPTION).unwrap_or_default()).into_owned();
            let err = if code == UNHANDLED_ERROR_CODE {
                Error::AmpUnhandledCommand(description)
            } else if command.declares(&code) {
                Error::AmpRemote { code, description }
            } else {
                Error::AmpUnknownRemote { code, description }
            };
            let _ = d.errback(Failure::new(err));
        } else if b.contains(COMMAND) {
            self.command_received(b);
        } else {
            return Err(Error::AmpProtocol(
                "a box with none of _answer, _error or _command".into(),
            ));
        }
        Ok(())
    }

    fn take_pending(&self, tag: &[u8]) -> Result<(Command, Deferred<Arguments>), Error> {
        self.state.pending.borrow_mut().remove(tag).ok_or_else(|| {
            Error::AmpProtocol(format!(
                "an answer to unknown question {:?}",
                String::from_utf8_lossy(tag)
            ))
        })
    }

    fn command_received(&self, mut b: AmpBox) {
        let name = b.remove(COMMAND).unwrap_or_default();
        let tag = b.remove(ASK);
        let name_text = String::from_utf8_lossy(&name).into_owned();
        let found = self.state.responders.borrow().get(&name_text).cloned();
        let Some((command, responder)) = found else {
            // Twisted's wording, with Python's bytes repr of the name.
            let description = format!("Unhandled Command: b'{name_text}'");
            if let Some(tag) = tag {
                self.send_error(&tag, UNHANDLED_ERROR_CODE, &description, false);
            }
            return;
        };
        let answer = match command.decode_arguments(&b) {
            Ok(args) => responder(args),
            Err(err) => Deferred::failed(Failure::new(err)),
        };
        let Some(tag) = tag else {
            answer.consume(|_| {});
            return;
        };
        let me = self.clone();
        answer.consume(move |result| {
            let result = result.and_then(|r| command.encode_response(&r).map_err(Failure::new));
            match result {
                Ok(mut answer) => {
                    answer.insert(ANSWER, tag);
                    me.send(&answer);
                }
                Err(failure) => me.responder_failed(&command, &tag, &failure),
            }
        });
    }

    fn responder_failed(&self, command: &Command, tag: &[u8], failure: &Failure) {
        let declared = failure
            .find::<CommandError>()
            .filter(|e| command.declares(&e.code));
        match declared {
            Some(err) => {
                let fatal = command.is_fatal(&err.code);
                self.send_error(tag, &err.code, &err.description, fatal);
            }
            None => {
                tracing::error!(
                    "AMP responder for {} failed: {failure}; closing the connection",
                    command.name()
                );
                self.send_error(tag, UNKNOWN_ERROR_CODE, "Unknown Error", true);
            }
        }
    }

    fn send_error(&self, tag: &[u8], code: &str, description: &str, close: bool) {
        let mut b = AmpBox::new();
        b.insert(ERROR, tag);
        b.insert(ERROR_CODE, code);
        b.insert(ERROR_DESCRIPTION, description);
        self.send(&b);
        if close && let Some(t) = self.transport() {
            t.lose_connection();
        }
    }

    fn connection_lost(&self) {
        self.state.transport.borrow_mut().take();
        let pending: Vec<_> = self.state.pending.borrow_mut().drain().collect();
        for (_, (_, d)) in pending {
            let _ = d.errback(Failure::new(Error::NotConnected));
        }
    }
}

/// The [`Protocol`] of an [`Amp`] end: decodes boxes and dispatches them.
pub struct AmpProtocol {
    amp: Amp,
    decoder: BoxDecoder,
}

impl AmpProtocol {
    /// The handle of this end.
    pub fn amp(&self) -> &Amp {
        &self.amp
    }
}

impl Protocol for AmpProtocol {
    fn connection_made(&mut self, transport: &Transport) {
        *self.amp.state.transport.borrow_mut() = Some(transport.clone());
    }

    fn data_received(&mut self, transport: &Transport, data: &[u8]) {
        self.decoder.feed(data);
        while !transport.disconnecting() {
            let result = match self.decoder.poll_box() {
                Ok(Some(b)) => self.amp.box_received(b),
                Ok(None) => return,
                Err(err) => Err(err),
            };
            if let Err(err) = result {
                tracing::warn!(
                    "AMP peer {}: {err}; closing the connection",
                    transport.peer()
                );
                transport.lose_connection();
                return;
            }
        }
    }

    fn connection_lost(&mut self, _reason: &CloseReason) {
        self.amp.connection_lost();
    }
}
