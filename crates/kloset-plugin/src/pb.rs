//! Generated protobuf and gRPC code, nested exactly like the proto packages (protocol v2 at the
//! top, protocol v1 under [`v1`]).

#![allow(missing_docs, missing_debug_implementations, clippy::all)]

/// Package `plakar`.
pub mod plakar {
    /// Package `plakar.connectors`: messages shared by the services of both protocols.
    pub mod connectors {
        tonic::include_proto!("plakar.connectors");
    }
    /// Package `plakar.exporter`: the exporter service.
    pub mod exporter {
        tonic::include_proto!("plakar.exporter");
    }
}

/// Package `importer`: the importer service.
pub mod importer {
    tonic::include_proto!("importer");
}

/// Package `store`: the store service.
pub mod store {
    tonic::include_proto!("store");
}

/// Protocol v1 (plakar v1.0.x), generated apart: its packages reuse v2's names.
pub mod v1 {
    /// Package `session` of protocol v1: requests several services share.
    pub mod session {
        include!(concat!(env!("OUT_DIR"), "/v1/session.rs"));
    }
    /// Package `importer` of protocol v1.
    pub mod importer {
        include!(concat!(env!("OUT_DIR"), "/v1/importer.rs"));
    }
    /// Package `exporter` of protocol v1.
    pub mod exporter {
        include!(concat!(env!("OUT_DIR"), "/v1/exporter.rs"));
    }
    /// Package `store` of protocol v1.
    pub mod store {
        include!(concat!(env!("OUT_DIR"), "/v1/store.rs"));
    }
}
