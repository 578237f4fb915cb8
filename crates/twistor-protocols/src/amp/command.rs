//! Commands and their typed arguments (Twisted's `Command` and `Argument` types).

use std::fmt;

use super::codec::{AmpBox, BoxDecoder, MAX_VALUE_LENGTH, check_key};
use crate::error::Error;

/// The type of an argument or response value, and how it is written on the wire (each
/// as Twisted's argument class of the same name).
#[derive(Debug, Clone, PartialEq)]
pub enum ArgType {
    /// A signed integer, in decimal (`123`).
    Integer,
    /// Raw bytes.
    String,
    /// Text, as UTF-8.
    Unicode,
    /// A float, as Python's `repr` reads it (`1.5`, `1e+100`, `inf`, `nan`).
    Float,
    /// `True` or `False`.
    Boolean,
    /// A list of values of one type, each with a 16-bit length prefix.
    ListOf(Box<ArgType>),
    /// A list of boxes with the given fields (Twisted's `AmpList`).
    AmpList(Vec<Param>),
}

/// A value of some [`ArgType`].
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// An [`ArgType::Integer`].
    Integer(i64),
    /// An [`ArgType::String`].
    String(Vec<u8>),
    /// An [`ArgType::Unicode`].
    Unicode(String),
    /// An [`ArgType::Float`].
    Float(f64),
    /// An [`ArgType::Boolean`].
    Boolean(bool),
    /// An [`ArgType::ListOf`].
    List(Vec<Value>),
    /// An [`ArgType::AmpList`].
    AmpList(Vec<Arguments>),
}

impl From<i64> for Value {
    fn from(v: i64) -> Value {
        Value::Integer(v)
    }
}
impl From<i32> for Value {
    fn from(v: i32) -> Value {
        Value::Integer(v.into())
    }
}
impl From<f64> for Value {
    fn from(v: f64) -> Value {
        Value::Float(v)
    }
}
impl From<bool> for Value {
    fn from(v: bool) -> Value {
        Value::Boolean(v)
    }
}
impl From<&str> for Value {
    fn from(v: &str) -> Value {
        Value::Unicode(v.to_string())
    }
}
impl From<String> for Value {
    fn from(v: String) -> Value {
        Value::Unicode(v)
    }
}
impl From<&[u8]> for Value {
    fn from(v: &[u8]) -> Value {
        Value::String(v.to_vec())
    }
}
impl From<Vec<u8>> for Value {
    fn from(v: Vec<u8>) -> Value {
        Value::String(v)
    }
}
impl<T: Into<Value>> From<Vec<T>> for Value {
    fn from(v: Vec<T>) -> Value {
        Value::List(v.into_iter().map(Into::into).collect())
    }
}
impl From<Vec<Arguments>> for Value {
    fn from(v: Vec<Arguments>) -> Value {
        Value::AmpList(v)
    }
}

/// One named argument or response field of a command.
#[derive(Debug, Clone, PartialEq)]
pub struct Param {
    /// The name (also the box key).
    pub name: String,
    /// The type.
    pub ty: ArgType,
    /// Whether it may be left out.
    pub optional: bool,
}

impl Param {
    /// A required field.
    pub fn new(name: &str, ty: ArgType) -> Param {
        Param {
            name: name.to_string(),
            ty,
            optional: false,
        }
    }

    /// An optional field.
    pub fn optional(name: &str, ty: ArgType) -> Param {
        Param {
            optional: true,
            ..Param::new(name, ty)
        }
    }
}

/// Named values: a command's arguments or its response.
///
/// ```
/// use twistor_protocols::amp::Arguments;
///
/// let args = Arguments::new().with("a", 13).with("name", "Ada");
/// assert_eq!(args.integer("a").unwrap(), 13);
/// assert_eq!(args.unicode("name").unwrap(), "Ada");
/// assert!(args.integer("b").is_err());
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Arguments {
    values: Vec<(String, Value)>,
}

macro_rules! getter {
    ($(#[$doc:meta])* $name:ident, $variant:ident, $ty:ty, $what:literal) => {
        $(#[$doc])*
        pub fn $name(&self, name: &str) -> Result<$ty, Error> {
            match self.get(name) {
                Some(Value::$variant(v)) => Ok(v.clone()),
                Some(other) => Err(bad(name, format!(concat!("expected ", $what, ", got {:?}"), other))),
                None => Err(bad(name, "missing")),
            }
        }
    };
}

impl Arguments {
    /// No values.
    pub fn new() -> Arguments {
        Arguments::default()
    }

    /// Adds (or replaces) `name`.
    pub fn with(mut self, name: &str, value: impl Into<Value>) -> Arguments {
        self.set(name, value);
        self
    }

    /// Sets `name`.
    pub fn set(&mut self, name: &str, value: impl Into<Value>) {
        let value = value.into();
        match self.values.iter_mut().find(|(n, _)| n == name) {
            Some(slot) => slot.1 = value,
            None => self.values.push((name.to_string(), value)),
        }
    }

    /// The value of `name`.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.values.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }

    /// The names and values, in the order they were set.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.values.iter().map(|(n, v)| (n.as_str(), v))
    }

    getter!(
        /// An integer value.
        integer, Integer, i64, "an integer");
    getter!(
        /// A bytes value.
        string, String, Vec<u8>, "a string");
    getter!(
        /// A text value.
        unicode, Unicode, String, "unicode text");
    getter!(
        /// A float value.
        float, Float, f64, "a float");
    getter!(
        /// A boolean value.
        boolean, Boolean, bool, "a boolean");
    getter!(
        /// A list value.
        list, List, Vec<Value>, "a list");
    getter!(
        /// An `AmpList` value.
        amp_list, AmpList, Vec<Arguments>, "a list of boxes");
}

fn bad(name: &str, problem: impl Into<String>) -> Error {
    Error::AmpBadArgument {
        name: name.to_string(),
        problem: problem.into(),
    }
}

/// A command: its name, arguments, response, and the error codes it may answer with
/// (Twisted's `Command` subclasses, as a value).
///
/// ```
/// use twistor_protocols::amp::{ArgType, Command};
///
/// let divide = Command::new("Divide")
///     .argument("numerator", ArgType::Integer)
///     .argument("denominator", ArgType::Integer)
///     .response("result", ArgType::Float)
///     .error("ZERO_DIVISION");
/// assert_eq!(divide.name(), "Divide");
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Command {
    name: String,
    arguments: Vec<Param>,
    response: Vec<Param>,
    errors: Vec<String>,
    fatal_errors: Vec<String>,
    requires_answer: bool,
}

impl Command {
    /// A command called `name` with no arguments and an empty response.
    pub fn new(name: &str) -> Command {
        Command {
            name: name.to_string(),
            arguments: Vec::new(),
            response: Vec::new(),
            errors: Vec::new(),
            fatal_errors: Vec::new(),
            requires_answer: true,
        }
    }

    /// Adds a required argument.
    pub fn argument(mut self, name: &str, ty: ArgType) -> Self {
        self.arguments.push(Param::new(name, ty));
        self
    }

    /// Adds an optional argument.
    pub fn optional_argument(mut self, name: &str, ty: ArgType) -> Self {
        self.arguments.push(Param::optional(name, ty));
        self
    }

    /// Adds a response field.
    pub fn response(mut self, name: &str, ty: ArgType) -> Self {
        self.response.push(Param::new(name, ty));
        self
    }

    /// Adds an optional response field.
    pub fn optional_response(mut self, name: &str, ty: ArgType) -> Self {
        self.response.push(Param::optional(name, ty));
        self
    }

    /// Declares an error code the responder may answer with (Twisted's `errors`).
    pub fn error(mut self, code: &str) -> Self {
        self.errors.push(code.to_string());
        self
    }

    /// Declares an error code after which the connection is closed (Twisted's
    /// `fatalErrors`).
    pub fn fatal_error(mut self, code: &str) -> Self {
        self.fatal_errors.push(code.to_string());
        self
    }

    /// The command expects no answer (Twisted's `requiresAnswer = False`).
    pub fn no_answer(mut self) -> Self {
        self.requires_answer = false;
        self
    }

    /// The command's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether the command expects an answer.
    pub fn requires_answer(&self) -> bool {
        self.requires_answer
    }

    /// Whether `code` is a declared error (fatal or not).
    pub fn declares(&self, code: &str) -> bool {
        self.errors
            .iter()
            .chain(&self.fatal_errors)
            .any(|c| c == code)
    }

    /// Whether `code` is a declared fatal error.
    pub fn is_fatal(&self, code: &str) -> bool {
        self.fatal_errors.iter().any(|c| c == code)
    }

    /// Encodes arguments into a box (checked against the declared types and limits).
    pub fn encode_arguments(&self, args: &Arguments) -> Result<AmpBox, Error> {
        to_box(&self.arguments, args)
    }

    /// Decodes arguments from a box.
    pub fn decode_arguments(&self, b: &AmpBox) -> Result<Arguments, Error> {
        from_box(&self.arguments, b)
    }

    /// Encodes a response into a box.
    pub fn encode_response(&self, response: &Arguments) -> Result<AmpBox, Error> {
        to_box(&self.response, response)
    }

    /// Decodes a response from a box.
    pub fn decode_response(&self, b: &AmpBox) -> Result<Arguments, Error> {
        from_box(&self.response, b)
    }
}

fn to_box(params: &[Param], args: &Arguments) -> Result<AmpBox, Error> {
    for (name, _) in args.iter() {
        if !params.iter().any(|p| p.name == name) {
            return Err(bad(name, "not a field of this command"));
        }
    }
    let mut b = AmpBox::new();
    for p in params {
        check_key(p.name.as_bytes())?;
        let Some(value) = args.get(&p.name) else {
            if p.optional {
                continue;
            }
            return Err(bad(&p.name, "missing"));
        };
        let bytes = encode_value(&p.ty, value).map_err(|why| bad(&p.name, why))?;
        if bytes.len() > MAX_VALUE_LENGTH {
            return Err(Error::AmpValueTooLong {
                key: p.name.clone(),
                length: bytes.len(),
            });
        }
        b.insert(p.name.as_bytes(), bytes);
    }
    Ok(b)
}

fn from_box(params: &[Param], b: &AmpBox) -> Result<Arguments, Error> {
    let mut args = Arguments::new();
    for p in params {
        match b.get(p.name.as_bytes()) {
            Some(bytes) => {
                let value = decode_value(&p.ty, bytes).map_err(|why| bad(&p.name, why))?;
                args.values.push((p.name.clone(), value));
            }
            None if p.optional => {}
            None => return Err(bad(&p.name, "missing")),
        }
    }
    Ok(args)
}

/// Encodes one value as `ty` says.
fn encode_value(ty: &ArgType, value: &Value) -> Result<Vec<u8>, String> {
    Ok(match (ty, value) {
        (ArgType::Integer, Value::Integer(i)) => i.to_string().into_bytes(),
        (ArgType::String, Value::String(s)) => s.clone(),
        (ArgType::Unicode, Value::Unicode(s)) => s.as_bytes().to_vec(),
        (ArgType::Float, Value::Float(f)) => float_repr(*f).into_bytes(),
        (ArgType::Boolean, Value::Boolean(b)) => (if *b { "True" } else { "False" }).into(),
        (ArgType::ListOf(elem), Value::List(items)) => {
            let mut out = Vec::new();
            for item in items {
                let bytes = encode_value(elem, item)?;
                if bytes.len() > u16::MAX as usize {
                    return Err(format!(
                        "a list element of {} bytes is too long",
                        bytes.len()
                    ));
                }
                out.extend_from_slice(&(bytes.len() as u16).to_be_bytes());
                out.extend_from_slice(&bytes);
            }
            out
        }
        (ArgType::AmpList(fields), Value::AmpList(items)) => {
            let mut out = Vec::new();
            for item in items {
                to_box(fields, item)
                    .and_then(|b| b.encode_into(&mut out))
                    .map_err(|e| e.to_string())?;
            }
            out
        }
        (ty, value) => return Err(format!("expected {}, got {value:?}", TypeName(ty))),
    })
}

/// Python reads Rust's shortest round-trip form: `1.5`, `1e100`, `inf`, `NaN`.
fn float_repr(f: f64) -> String {
    format!("{f:?}")
}

/// Decodes one value of type `ty`.
fn decode_value(ty: &ArgType, bytes: &[u8]) -> Result<Value, String> {
    let text = || std::str::from_utf8(bytes).map_err(|_| "not UTF-8".to_string());
    Ok(match ty {
        ArgType::Integer => {
            Value::Integer(text()?.trim().parse().map_err(|_| {
                format!("not a 64-bit integer: {:?}", String::from_utf8_lossy(bytes))
            })?)
        }
        ArgType::String => Value::String(bytes.to_vec()),
        ArgType::Unicode => Value::Unicode(text()?.to_string()),
        ArgType::Float => Value::Float(
            text()?
                .trim()
                .parse()
                .map_err(|_| format!("not a float: {:?}", String::from_utf8_lossy(bytes)))?,
        ),
        ArgType::Boolean => match bytes {
            b"True" => Value::Boolean(true),
            b"False" => Value::Boolean(false),
            other => {
                return Err(format!(
                    "bad boolean value {:?}",
                    String::from_utf8_lossy(other)
                ));
            }
        },
        ArgType::ListOf(elem) => {
            let mut items = Vec::new();
            let mut rest = bytes;
            while !rest.is_empty() {
                if rest.len() < 2 {
                    return Err("truncated list".into());
                }
                let len = u16::from_be_bytes([rest[0], rest[1]]) as usize;
                let item = rest.get(2..2 + len).ok_or("truncated list element")?;
                items.push(decode_value(elem, item)?);
                rest = &rest[2 + len..];
            }
            Value::List(items)
        }
        ArgType::AmpList(fields) => Value::AmpList(
            BoxDecoder::decode_all(bytes)
                .and_then(|boxes| boxes.iter().map(|b| from_box(fields, b)).collect())
                .map_err(|e| e.to_string())?,
        ),
    })
}

struct TypeName<'a>(&'a ArgType);

impl fmt::Display for TypeName<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            ArgType::Integer => f.write_str("an integer"),
            ArgType::String => f.write_str("a string"),
            ArgType::Unicode => f.write_str("unicode text"),
            ArgType::Float => f.write_str("a float"),
            ArgType::Boolean => f.write_str("a boolean"),
            ArgType::ListOf(_) => f.write_str("a list"),
            ArgType::AmpList(_) => f.write_str("a list of boxes"),
        }
    }
}
