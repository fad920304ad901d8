//! Maps koofr-core errors onto the connector error type that crosses the plugin wire.

use kloset_plugin::{ConnectorError, ErrorKind};

/// The connector error for a koofr-core error. The message is koofr-core's, which names the
/// operation and the Koofr path at fault and never holds credentials.
pub fn connector_error(err: koofr_core::Error) -> ConnectorError {
    use koofr_core::ErrorKind as K;
    let kind = match err.kind() {
        K::NotFound => ErrorKind::NotFound,
        K::AlreadyExists | K::Conflict => ErrorKind::AlreadyExists,
        K::PermissionDenied | K::Unauthenticated => ErrorKind::PermissionDenied,
        K::InvalidInput | K::NotADirectory | K::NotAFile => ErrorKind::InvalidInput,
        K::RangeNotSatisfiable => ErrorKind::RangeNotSatisfiable,
        _ => ErrorKind::Other,
    };
    ConnectorError::new(kind, err.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_path_and_maps_the_kind() {
        let err =
            koofr_core::Error::permanent(koofr_core::ErrorKind::NotAFile, "upload", "Not a file")
                .with_path("/dest/a.txt");
        let mapped = connector_error(err);
        assert_eq!(mapped.kind(), ErrorKind::InvalidInput);
        assert!(mapped.message().contains("/dest/a.txt"), "{mapped}");
        let integrity = koofr_core::Error::permanent(
            koofr_core::ErrorKind::Integrity,
            "upload",
            "MD5 mismatch",
        );
        assert_eq!(connector_error(integrity).kind(), ErrorKind::Other);
    }
}
