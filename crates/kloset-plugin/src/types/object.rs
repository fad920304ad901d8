//! The names of stored objects: MACs, resources, the key of one object, byte ranges.

use std::fmt;
use std::str::FromStr;

use crate::error::{ConnectorError, Result};

/// A 32-byte kloset object MAC; displayed and parsed as 64 lowercase hex characters.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Mac(pub [u8; 32]);

impl Mac {
    /// The MAC from raw bytes, which must be exactly 32 long.
    pub fn from_slice(bytes: &[u8]) -> Result<Self> {
        let raw: [u8; 32] = bytes.try_into().map_err(|_| {
            ConnectorError::invalid_input(format!("MAC must be 32 bytes, got {}", bytes.len()))
        })?;
        Ok(Self(raw))
    }
    /// The MAC of a name if it is exactly 64 hex characters (the object-name rule of §7.5).
    pub fn from_name(name: &str) -> Option<Self> {
        if name.len() != 64 {
            return None;
        }
        // Object names are lowercase hex; anything else is a stray file.
        if name.bytes().any(|b| b.is_ascii_uppercase()) {
            return None;
        }
        let mut raw = [0u8; 32];
        hex::decode_to_slice(name, &mut raw).ok()?;
        Some(Self(raw))
    }
    /// The 64-character lowercase hex name.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Mac({})", self.to_hex())
    }
}

impl FromStr for Mac {
    type Err = ConnectorError;
    fn from_str(s: &str) -> Result<Self> {
        Self::from_name(s).ok_or_else(|| {
            ConnectorError::invalid_input(format!("not a MAC (64 hex characters): {s:?}"))
        })
    }
}

/// A kloset resource kind served by a store (§7.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Resource {
    /// Packfiles: bulk data, read with ranges.
    Packfile,
    /// States: indexes, listed on every open.
    State,
    /// Locks: small, rewritten periodically.
    Lock,
}

impl Resource {
    /// Every supported resource.
    pub const ALL: [Resource; 3] = [Resource::Packfile, Resource::State, Resource::Lock];

    /// The proto enum value.
    pub fn to_proto(self) -> i32 {
        match self {
            Resource::Packfile => 1,
            Resource::State => 2,
            Resource::Lock => 3,
        }
    }
    /// The resource of a proto enum value; others are "unsupported resource".
    pub fn from_proto(value: i32) -> Result<Self> {
        match value {
            1 => Ok(Resource::Packfile),
            2 => Ok(Resource::State),
            3 => Ok(Resource::Lock),
            other => Err(ConnectorError::invalid_input(format!(
                "unsupported resource {other}"
            ))),
        }
    }
    /// The folder name of the flat kloset layout (§9).
    pub fn folder(self) -> &'static str {
        match self {
            Resource::Packfile => "packfiles",
            Resource::State => "states",
            Resource::Lock => "locks",
        }
    }
    /// The key of this resource's object `mac`.
    pub fn key(self, mac: Mac) -> ObjectKey {
        ObjectKey {
            resource: self,
            mac,
        }
    }
}

impl fmt::Display for Resource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Resource::Packfile => "packfile",
            Resource::State => "state",
            Resource::Lock => "lock",
        })
    }
}

/// The key of one stored object: its resource and MAC (what every `Get`, `Put` and `Delete`
/// names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectKey {
    /// The resource the object belongs to.
    pub resource: Resource,
    /// The object's MAC.
    pub mac: Mac,
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.resource, self.mac)
    }
}

/// A byte range of a stored object: `length` bytes from `offset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteRange {
    /// Offset from the start of the stored object.
    pub offset: u64,
    /// Number of bytes.
    pub length: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_hex_round_trip_and_rejects_junk() {
        let mac = Mac([0xab; 32]);
        let hex = mac.to_string();
        assert_eq!(hex.len(), 64);
        assert_eq!(hex, hex.to_lowercase());
        assert_eq!(hex.parse::<Mac>().unwrap(), mac);
        assert!(Mac::from_name("CONFIG").is_none());
        assert!(Mac::from_name(&"g".repeat(64)).is_none());
        assert!(Mac::from_slice(&[0; 31]).is_err());
    }
}
