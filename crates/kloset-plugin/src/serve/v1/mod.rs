//! Protocol v1 (plakar v1.0.x) served onto the same [`crate::Store`], [`crate::Importer`] and
//! [`crate::Exporter`] connectors as protocol v2: thin adapters, no connector logic.
//!
//! What v1 changes for a connector, and how these adapters absorb it:
//! * every request after `Init` carries the cookie `Init` answered; a wrong one is refused,
//!   an empty one (hosts older than integration-grpc v1.0.18) accepted;
//! * the importer and the exporter check the remote with [`crate::Importer::ping`] (or the
//!   exporter's) during `Init`: v1 has no `Ping`, and plakar 1.0.6 loops forever on a `Scan`
//!   that ends with an error status, so a failure that dooms the whole backup or restore must
//!   surface at `Init`;
//! * a scan that fails after it started becomes one error record for the root, and the stream
//!   ends cleanly (same reason);
//! * exporter pathnames are absolute under the answer of `Root`; they are re-rooted (`/` = the
//!   destination) before they reach the connector.

mod exporter;
mod importer;
mod store;

use std::sync::Arc;

use tonic::Status;

use super::{ConnectorSlot, Factory};
use crate::types::InitContext;

pub(crate) use exporter::ExporterService;
pub(crate) use importer::router as importer_router;
pub(crate) use store::router as store_router;

/// 16 bytes from the operating system's random source, in hex: a host cannot guess it.
fn new_cookie() -> String {
    let mut raw = [0u8; 16];
    // As for any random source (`rand` does the same): a system without one cannot serve.
    getrandom::fill(&mut raw).expect("the operating system's random source failed");
    hex::encode(raw)
}

/// A v1 service whose one state is its [`Session`] (the store's and the importer's).
pub(crate) struct SessionService<C> {
    session: Session<C>,
}

impl<C: Send + Sync + 'static> SessionService<C> {
    fn new(factory: Factory<C>) -> Self {
        Self {
            session: Session::new(factory),
        }
    }
}

/// The answer to `Close`, once the connector closed.
fn answer_close(closed: crate::Result<()>) -> Result<tonic::Response<()>, Status> {
    closed?;
    Ok(tonic::Response::new(()))
}

/// The connector built by `Init`, and the cookie that proves a request belongs to it.
pub(crate) struct Session<C> {
    slot: ConnectorSlot<C>,
    cookie: String,
}

impl<C: Send + Sync + 'static> Session<C> {
    pub(crate) fn new(factory: Factory<C>) -> Self {
        Self {
            slot: ConnectorSlot::new(factory),
            cookie: new_cookie(),
        }
    }

    /// Builds the connector; the answer to `Init` carries [`Session::cookie`].
    pub(crate) async fn init(&self, ctx: InitContext) -> Result<Arc<C>, Status> {
        self.slot.init(ctx).await
    }

    /// The cookie `Init` answers.
    pub(crate) fn cookie(&self) -> String {
        self.cookie.clone()
    }

    /// The connector, for a request carrying `cookie`.
    pub(crate) fn get(&self, cookie: &str) -> Result<Arc<C>, Status> {
        let connector = self.slot.get()?;
        if !cookie.is_empty() && cookie != self.cookie {
            return Err(Status::failed_precondition(
                "unknown cookie: not the one this plugin's Init answered",
            ));
        }
        Ok(connector)
    }
}
