//! Generated protobuf and gRPC code, nested exactly like the proto packages.

#![allow(missing_docs, missing_debug_implementations, clippy::all)]

/// Package `plakar`.
pub mod plakar {
    /// Package `plakar.connectors`: shared types.
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
