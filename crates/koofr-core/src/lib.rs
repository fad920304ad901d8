//! The Koofr API client shared by the Plakar connectors: config, auth, transport, retries, paths, errors.
