//! The host side of protocol v1: plugins driven as plakar v1.0.6 drives them (integration-grpc
//! v1.0.18), behind the same traits as the v2 host, so the suites run unchanged over v1.
//!
//! Like plakar 1.0.6, every request echoes the cookie `Init` answered. Unlike it, a broken
//! `Scan` stream ends the scan with an error instead of looping (§12.7 of the protocol notes).

mod exporter;
mod importer;
mod store;

use crate::pb::v1::session::{Cookie, PathnameRequest};

pub use exporter::RemoteExporter;
pub use importer::RemoteImporter;
pub use store::RemoteStore;

/// The location of a v1 answer, which has no flags.
fn location(origin: String, r#type: String, root: String) -> crate::LocationInfo {
    crate::LocationInfo {
        origin,
        r#type,
        root,
        flags: 0,
    }
}

/// The request of a call that names nothing but the session.
fn cookie(cookie: &str) -> Cookie {
    Cookie {
        cookie: cookie.to_owned(),
    }
}

/// The request of a call that names a pathname.
fn pathname(pathname: &str, cookie: &str) -> PathnameRequest {
    PathnameRequest {
        pathname: pathname.to_owned(),
        cookie: cookie.to_owned(),
    }
}
