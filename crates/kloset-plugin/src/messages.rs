//! The generated messages that several proto packages repeat field for field, converted once:
//! `Init` options, requests and (protocol v2) answers of every service, and protocol v1's three
//! `Put…Request`s.

use bytes::Bytes;

use crate::host::InitArgs;
use crate::pb;
use crate::types::{InitContext, LocationInfo, Options};

/// Conversions between [`Options`] and the two generated `Options` messages, which are field for
/// field the same but live in two proto packages (protocol §6.2).
macro_rules! options_conversions {
    ($($proto:ty),+) => {$(
        impl From<$proto> for Options {
            fn from(o: $proto) -> Options {
                Options {
                    hostname: o.hostname,
                    os: o.os,
                    arch: o.arch,
                    cwd: o.cwd,
                    max_concurrency: o.maxconcurrency,
                    excludes: o.excludes,
                    no_xattr: o.noxattr,
                }
            }
        }
        impl From<&Options> for $proto {
            fn from(o: &Options) -> $proto {
                Self {
                    hostname: o.hostname.clone(),
                    os: o.os.clone(),
                    arch: o.arch.clone(),
                    cwd: o.cwd.clone(),
                    maxconcurrency: o.max_concurrency,
                    excludes: o.excludes.clone(),
                    noxattr: o.no_xattr,
                }
            }
        }
    )+};
}

options_conversions!(pb::importer::Options, pb::plakar::exporter::Options);

/// Protocol v1 importers get the first five options (no excludes, no noxattr).
impl From<pb::v1::importer::Options> for Options {
    fn from(o: pb::v1::importer::Options) -> Options {
        Options {
            hostname: o.hostname,
            os: o.os,
            arch: o.arch,
            cwd: o.cwd,
            max_concurrency: o.maxconcurrency,
            ..Options::default()
        }
    }
}

impl From<&Options> for pb::v1::importer::Options {
    fn from(o: &Options) -> Self {
        Self {
            hostname: o.hostname.clone(),
            os: o.os.clone(),
            arch: o.arch.clone(),
            cwd: o.cwd.clone(),
            maxconcurrency: o.max_concurrency,
        }
    }
}

/// Protocol v1 exporters get the concurrency only.
impl From<pb::v1::exporter::Options> for Options {
    fn from(o: pb::v1::exporter::Options) -> Options {
        Options {
            max_concurrency: o.maxconcurrency,
            ..Options::default()
        }
    }
}

impl From<&Options> for pb::v1::exporter::Options {
    fn from(o: &Options) -> Self {
        Self {
            maxconcurrency: o.max_concurrency,
        }
    }
}

/// `Init` requests: what a served connector's factory gets ([`InitContext`]) and what the host
/// sends ([`InitArgs`]); stores get no options.
macro_rules! init_requests {
    (with options: $($with:ty),+; without: $($without:ty),+) => {
        $(
            impl From<$with> for InitContext {
                fn from(request: $with) -> Self {
                    Self {
                        proto: request.proto,
                        config: request.config,
                        options: request.options.map(Options::from),
                    }
                }
            }
            impl From<&InitArgs> for $with {
                fn from(args: &InitArgs) -> Self {
                    Self {
                        options: Some((&args.options).into()),
                        proto: args.proto.clone(),
                        config: args.config.clone(),
                    }
                }
            }
        )+
        $(
            impl From<$without> for InitContext {
                fn from(request: $without) -> Self {
                    Self {
                        proto: request.proto,
                        config: request.config,
                        options: None,
                    }
                }
            }
            impl From<&InitArgs> for $without {
                fn from(args: &InitArgs) -> Self {
                    Self {
                        proto: args.proto.clone(),
                        config: args.config.clone(),
                    }
                }
            }
        )+
    };
}

init_requests!(
    with options:
        pb::importer::InitRequest,
        pb::plakar::exporter::InitRequest,
        pb::v1::importer::InitRequest,
        pb::v1::exporter::InitRequest;
    without:
        pb::store::InitRequest,
        pb::v1::store::InitRequest
);

/// Protocol v2 `Init` answers: the connector's [`LocationInfo`].
macro_rules! init_answers {
    ($($answer:ty),+) => {$(
        impl From<LocationInfo> for $answer {
            fn from(location: LocationInfo) -> Self {
                Self {
                    origin: location.origin,
                    r#type: location.r#type,
                    root: location.root,
                    flags: location.flags,
                }
            }
        }
        impl From<$answer> for LocationInfo {
            fn from(answer: $answer) -> Self {
                Self {
                    origin: answer.origin,
                    r#type: answer.r#type,
                    root: answer.root,
                    flags: answer.flags,
                }
            }
        }
    )+};
}

init_answers!(
    pb::importer::InitResponse,
    pb::plakar::exporter::InitResponse,
    pb::store::InitResponse
);

/// The three `Put…Request`s of protocol v1 (states, packfiles, locks), alike field for field.
pub(crate) trait PutMessage: prost::Message + Default + Send + 'static {
    /// A message with a MAC (the first only), a chunk and the cookie.
    fn new(mac: Option<pb::v1::store::Mac>, chunk: Bytes, cookie: String) -> Self;
    /// MAC, chunk and cookie.
    fn into_parts(self) -> (Option<pb::v1::store::Mac>, Bytes, String);
}

macro_rules! put_messages {
    ($($message:ty),+) => {$(
        impl PutMessage for $message {
            fn new(mac: Option<pb::v1::store::Mac>, chunk: Bytes, cookie: String) -> Self {
                Self { mac, chunk, cookie }
            }
            fn into_parts(self) -> (Option<pb::v1::store::Mac>, Bytes, String) {
                (self.mac, self.chunk, self.cookie)
            }
        }
    )+};
}

put_messages!(
    pb::v1::store::PutStateRequest,
    pb::v1::store::PutPackfileRequest,
    pb::v1::store::PutLockRequest
);
