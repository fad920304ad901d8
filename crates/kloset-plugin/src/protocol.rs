//! Which plugin protocol a plugin process speaks, chosen by its argv (`--plakar-protocol v1`).
//!
//! The two protocols share method paths (`/importer.Importer/Init`, `/store.Store/Init`) with
//! incompatible messages, so a plugin cannot tell them apart on the wire: the package manifest
//! says which one it wants through the connector's `args`.

use std::fmt;
use std::str::FromStr;

/// A plugin protocol of Plakar.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Protocol {
    /// Protocol v1 of plakar v1.0.x (plugin API v1.0.0, integration-grpc v1.0.18).
    V1,
    /// Protocol v2 of plakar v1.1.x (plugin API v1.1.0): the default.
    #[default]
    V2,
}

/// The argv option that selects the protocol.
pub const PROTOCOL_ARG: &str = "--plakar-protocol";

/// A plugin's argv that names no known protocol, or holds anything else.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(String);

impl Protocol {
    /// The protocol named by a plugin's arguments (argv without the program name): none means
    /// [`Protocol::V2`]; `--plakar-protocol v1` (or `=v1`) means v1. Anything else is an error
    /// naming the argument at fault.
    pub fn from_args<I, S>(args: I) -> Result<Protocol, UsageError>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut chosen: Option<Protocol> = None;
        let mut args = args.into_iter().map(Into::into);
        while let Some(arg) = args.next() {
            let value = if arg == PROTOCOL_ARG {
                args.next()
                    .ok_or_else(|| UsageError(format!("{PROTOCOL_ARG} needs a value: v1 or v2")))?
            } else if let Some(value) = arg
                .strip_prefix(PROTOCOL_ARG)
                .and_then(|rest| rest.strip_prefix('='))
            {
                value.to_owned()
            } else {
                return Err(UsageError(format!("unexpected argument {arg:?}")));
            };
            if chosen.is_some() {
                return Err(UsageError(format!("{PROTOCOL_ARG} given twice")));
            }
            chosen = Some(value.parse()?);
        }
        Ok(chosen.unwrap_or_default())
    }

    /// The arguments that select this protocol (none for the default, v2).
    pub fn args(self) -> Vec<String> {
        match self {
            Protocol::V1 => vec![PROTOCOL_ARG.to_owned(), self.to_string()],
            Protocol::V2 => Vec::new(),
        }
    }

    /// One line of usage for a plugin program.
    pub fn usage(program: &str) -> String {
        format!("usage: {program} [{PROTOCOL_ARG} v1|v2]")
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Protocol::V1 => "v1",
            Protocol::V2 => "v2",
        })
    }
}

impl FromStr for Protocol {
    type Err = UsageError;
    fn from_str(value: &str) -> Result<Protocol, UsageError> {
        match value {
            "v1" => Ok(Protocol::V1),
            "v2" => Ok(Protocol::V2),
            other => Err(UsageError(format!(
                "unknown {PROTOCOL_ARG} {other:?}: expected v1 (plakar 1.0.x) or v2 (plakar 1.1.x)"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argv_selects_the_protocol_and_refuses_anything_else() {
        let none: [&str; 0] = [];
        assert_eq!(Protocol::from_args(none), Ok(Protocol::V2));
        assert_eq!(
            Protocol::from_args(["--plakar-protocol", "v1"]),
            Ok(Protocol::V1)
        );
        assert_eq!(
            Protocol::from_args(["--plakar-protocol=v2"]),
            Ok(Protocol::V2)
        );
        for (args, needle) in [
            (vec!["--plakar-protocol"], "needs a value"),
            (vec!["--plakar-protocol", "v3"], "\"v3\""),
            (vec!["store"], "unexpected argument \"store\""),
            (vec!["--plakar-protocol=v1", "-x"], "\"-x\""),
            (
                vec!["--plakar-protocol", "v1", "--plakar-protocol", "v1"],
                "twice",
            ),
        ] {
            let err = Protocol::from_args(args.clone()).unwrap_err().to_string();
            assert!(err.contains(needle), "{args:?}: {err}");
        }
        for protocol in [Protocol::V1, Protocol::V2] {
            assert_eq!(Protocol::from_args(protocol.args()), Ok(protocol));
        }
    }
}
