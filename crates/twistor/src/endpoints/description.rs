//! The endpoint description grammar, exactly as Twisted's `serverFromString` and
//! `clientFromString` read it.
//!
//! - `:` separates arguments;
//! - within an argument, the first `=` splits a key from its value (later `=` are part of
//!   the value);
//! - `\` makes the next character literal (`\:` is a colon inside an argument);
//! - arguments without `=` are positional, the others are keyword arguments; the first
//!   positional argument is the endpoint type.

use std::collections::BTreeMap;

use crate::error::Error;

/// A parsed endpoint description: its type, positional and keyword arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Description {
    /// The text as given, for error messages.
    pub text: String,
    /// The endpoint type (`tcp`, `unix`, `ssl`...), as written.
    pub kind: String,
    /// Positional arguments after the type, in order.
    pub args: Vec<String>,
    /// Keyword arguments. A repeated key keeps its last value, as in Twisted.
    pub kwargs: BTreeMap<String, String>,
}

impl Description {
    /// Parses `text`. Only the grammar is checked here; what the arguments mean is up to
    /// each endpoint type.
    pub fn parse(text: &str) -> Result<Description, Error> {
        let (mut args, kwargs) = split(text)?;
        if args.is_empty() || args[0].is_empty() {
            return Err(bad(
                text,
                "it must start with an endpoint type, like \"tcp:8080\"",
            ));
        }
        let kind = args.remove(0);
        Ok(Description {
            text: text.to_string(),
            kind,
            args,
            kwargs,
        })
    }

    /// An error about this description.
    pub fn error(&self, problem: impl Into<String>) -> Error {
        bad(&self.text, problem)
    }

    /// The `index`th positional argument, or the keyword argument `name` (Twisted lets
    /// either spell most arguments), or `None`.
    pub fn arg(&self, index: usize, name: &str) -> Option<&str> {
        self.args
            .get(index)
            .map(String::as_str)
            .or_else(|| self.kwargs.get(name).map(String::as_str))
    }

    /// Like [`arg`](Self::arg), but an error naming what is missing if absent.
    pub fn required(&self, index: usize, name: &str) -> Result<&str, Error> {
        self.arg(index, name)
            .ok_or_else(|| self.error(format!("missing {name}")))
    }

    /// Fails if there are more than `max` positional arguments or a keyword not in
    /// `known`, naming the stray one.
    pub fn check_known(&self, max: usize, known: &[&str]) -> Result<(), Error> {
        if self.args.len() > max {
            return Err(self.error(format!(
                "unexpected argument {:?} (a {} endpoint takes at most {} positional arguments)",
                self.args[max], self.kind, max
            )));
        }
        if let Some(key) = self.kwargs.keys().find(|k| !known.contains(&k.as_str())) {
            return Err(self.error(format!(
                "unknown option {key:?} for a {} endpoint (expected one of: {})",
                self.kind,
                known.join(", ")
            )));
        }
        Ok(())
    }

    /// Parses a port number argument.
    pub fn port(&self, index: usize, name: &str) -> Result<u16, Error> {
        let text = self.required(index, name)?;
        text.parse::<u16>().map_err(|_| {
            self.error(format!(
                "{name} must be a number from 0 to 65535, got {text:?}"
            ))
        })
    }

    /// Parses an optional integer argument.
    pub fn int<T: std::str::FromStr>(&self, index: usize, name: &str) -> Result<Option<T>, Error> {
        match self.arg(index, name) {
            None => Ok(None),
            Some(text) => text
                .parse::<T>()
                .map(Some)
                .map_err(|_| self.error(format!("{name} must be a number, got {text:?}"))),
        }
    }
}

fn bad(text: &str, problem: impl Into<String>) -> Error {
    Error::BadDescription {
        description: text.to_string(),
        problem: problem.into(),
    }
}

/// Twisted's `_tokenize` and `_parse` in one pass.
fn split(text: &str) -> Result<(Vec<String>, BTreeMap<String, String>), Error> {
    let mut args = Vec::new();
    let mut kwargs = BTreeMap::new();
    let mut key: Option<String> = None;
    let mut current = String::new();
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some(escaped) => current.push(escaped),
                None => return Err(bad(text, "it ends with a lone backslash")),
            },
            ':' => {
                finish(
                    &mut args,
                    &mut kwargs,
                    key.take(),
                    std::mem::take(&mut current),
                );
            }
            '=' if key.is_none() => key = Some(std::mem::take(&mut current)),
            c => current.push(c),
        }
    }
    finish(&mut args, &mut kwargs, key, current);
    Ok((args, kwargs))
}

fn finish(
    args: &mut Vec<String>,
    kwargs: &mut BTreeMap<String, String>,
    key: Option<String>,
    value: String,
) {
    match key {
        Some(key) => {
            kwargs.insert(key, value);
        }
        None => args.push(value),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Description {
        Description::parse(text).unwrap()
    }

    #[test]
    fn positional_then_keyword() {
        let d = parse("tcp:8080:interface=127.0.0.1:backlog=5");
        assert_eq!(d.kind, "tcp");
        assert_eq!(d.args, ["8080"]);
        assert_eq!(d.kwargs["interface"], "127.0.0.1");
        assert_eq!(d.kwargs["backlog"], "5");
    }

    #[test]
    fn escaped_colons_in_paths() {
        let d = parse(r"unix:/tmp/a\:b.sock:mode=600");
        assert_eq!(d.args, ["/tmp/a:b.sock"]);
        assert_eq!(d.kwargs["mode"], "600");
    }

    #[test]
    fn first_equals_splits_later_ones_are_value() {
        let d = parse("ssl:443:privateKey=a=b=c.pem");
        assert_eq!(d.kwargs["privateKey"], "a=b=c.pem");
    }

    #[test]
    fn escaped_equals_stays_in_a_positional() {
        let d = parse(r"unix:/tmp/x\=y");
        assert_eq!(d.args, ["/tmp/x=y"]);
        assert!(d.kwargs.is_empty());
    }

    #[test]
    fn ipv6_interface_needs_escapes() {
        let d = parse(r"tcp6:8080:interface=\:\:1");
        assert_eq!(d.kind, "tcp6");
        assert_eq!(d.kwargs["interface"], "::1");
    }

    #[test]
    fn empty_arguments_are_kept() {
        let d = parse("tcp::x");
        assert_eq!(d.args, ["", "x"]);
        let d = parse("stdio:");
        assert_eq!(d.kind, "stdio");
        assert_eq!(d.args, [""]);
    }

    #[test]
    fn errors_quote_the_description() {
        let err = Description::parse("").unwrap_err().to_string();
        assert!(
            err.contains("\"\"") && err.contains("endpoint type"),
            "{err}"
        );
        let err = Description::parse("tcp:80\\").unwrap_err().to_string();
        assert!(err.contains("tcp:80") && err.contains("backslash"), "{err}");
        let err = parse("tcp:http").port(0, "port").unwrap_err().to_string();
        assert!(
            err.contains("\"tcp:http\"") && err.contains("\"http\""),
            "{err}"
        );
    }

    #[test]
    fn unknown_options_are_named() {
        let d = parse("tcp:80:colour=blue");
        let err = d
            .check_known(1, &["interface", "backlog"])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("colour") && err.contains("interface, backlog"),
            "{err}"
        );
        let d = parse("tcp:80:lo:5:extra");
        let err = d.check_known(3, &[]).unwrap_err().to_string();
        assert!(err.contains("extra"), "{err}");
    }
}
