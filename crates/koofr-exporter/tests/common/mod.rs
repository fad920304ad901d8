//! What the exporter's test binaries share: the exporter fixture on a test site.

use koofr_exporter::testkit::{KoofrExporterSite, Transport};
use koofr_testkit::Site;

/// The exporter fixture owning `h`'s base folder, reached through `transport`.
pub fn site(h: &Site, transport: Transport) -> KoofrExporterSite {
    KoofrExporterSite::new(
        h.client().clone(),
        h.base().clone(),
        h.plugin_config(h.base()),
        transport,
    )
}
