//! Conversions of the generated `Init` messages: options, requests and (protocol v2) answers of
//! every service, written once for the shapes several packages repeat.

use crate::host::InitArgs;
use crate::pb;
use crate::pb::plakar::connectors;
use crate::types::{InitContext, LocationInfo, Options};

impl From<connectors::Options> for Options {
    fn from(o: connectors::Options) -> Options {
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

impl From<&Options> for connectors::Options {
    fn from(o: &Options) -> Self {
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
        connectors::InitRequest,
        pb::v1::importer::InitRequest,
        pb::v1::exporter::InitRequest;
    without:
        connectors::StoreInitRequest
);

/// Protocol v2 `Init` answers (the store's has its flags in another field): the connector's
/// [`LocationInfo`].
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

init_answers!(connectors::InitResponse, pb::store::InitResponse);
