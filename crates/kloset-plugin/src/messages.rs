//! Conversions of the generated `Init` messages: options, requests and (protocol v2) answers of
//! every service, written once for the shapes several packages repeat.

use crate::host::InitArgs;
use crate::pb;
use crate::pb::plakar::connectors;
use crate::types::{InitContext, LocationInfo, Options};

/// Both ways between [`Options`] and each options message, `wire: ours` for the fields it holds;
/// the fields a message lacks (protocol v1 importers get the first five options, exporters the
/// concurrency only) take their defaults.
macro_rules! options_conversions {
    ($($message:ty { $($wire:ident: $ours:ident),+ })+) => {
        $(
            // The update is needless for the one message that holds every field.
            #[allow(clippy::needless_update)]
            impl From<$message> for Options {
                fn from(o: $message) -> Options {
                    Options {
                        $($ours: o.$wire,)+
                        ..Options::default()
                    }
                }
            }

            // Some fields are `Copy`, some not: one clone for all.
            #[allow(clippy::clone_on_copy)]
            impl From<&Options> for $message {
                fn from(o: &Options) -> Self {
                    Self {
                        $($wire: o.$ours.clone(),)+
                    }
                }
            }
        )+
    };
}

options_conversions! {
    connectors::Options {
        hostname: hostname, os: os, arch: arch, cwd: cwd, maxconcurrency: max_concurrency,
        excludes: excludes, noxattr: no_xattr
    }
    pb::v1::importer::Options {
        hostname: hostname, os: os, arch: arch, cwd: cwd, maxconcurrency: max_concurrency
    }
    pb::v1::exporter::Options { maxconcurrency: max_concurrency }
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
