//! The kloset layout on Koofr (protocol §9): where `CONFIG` and each object live, written flat
//! (`packfiles/<hex>`, as Plakar's rclone integration does) and read tolerantly (flat names and
//! 2-hex bucket folders `packfiles/<hex[0:2]>/<hex>`, as the fs/sftp stores write).

use kloset_plugin::{Mac, ObjectKey, Resource};
use koofr_core::KoofrPath;

/// Name of the file holding the kloset configuration.
pub const CONFIG_NAME: &str = "CONFIG";

/// The paths of one kloset rooted at a Koofr folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    root: KoofrPath,
}

impl Layout {
    /// The layout of the kloset in `root`.
    pub fn new(root: KoofrPath) -> Layout {
        Layout { root }
    }

    /// The kloset's folder.
    pub fn root(&self) -> &KoofrPath {
        &self.root
    }

    /// `<root>/CONFIG`.
    pub fn config(&self) -> KoofrPath {
        self.child(&self.root, CONFIG_NAME)
    }

    /// `<root>/packfiles`, `<root>/states` or `<root>/locks`.
    pub fn folder(&self, resource: Resource) -> KoofrPath {
        self.child(&self.root, resource.folder())
    }

    /// Where objects are written: `<root>/<folder>/<hex>`.
    pub fn flat(&self, key: ObjectKey) -> KoofrPath {
        self.child(&self.folder(key.resource), &key.mac.to_hex())
    }

    /// The bucket-layout name read as a fallback: `<root>/<folder>/<hex[0:2]>/<hex>`.
    pub fn bucket(&self, key: ObjectKey) -> KoofrPath {
        let hex = key.mac.to_hex();
        let bucket = self.child(&self.folder(key.resource), &hex[..2]);
        self.child(&bucket, &hex)
    }

    /// `parent/name` for names this module builds (fixed words and hex), which are always valid.
    fn child(&self, parent: &KoofrPath, name: &str) -> KoofrPath {
        parent
            .child(name)
            .expect("layout names are plain ASCII words or hex")
    }
}

/// The MAC of a file found at `relative` (a path below a resource folder, without a leading
/// `/`): `<hex>` or `<hex[0:2]>/<hex>`. Anything else (junk names, deeper files, wrong bucket)
/// is not an object.
pub fn mac_of_relative(relative: &str) -> Option<Mac> {
    match relative.split_once('/') {
        None => Mac::from_name(relative),
        Some((bucket, name)) => {
            let mac = Mac::from_name(name)?;
            (bucket.len() == 2 && name.starts_with(bucket)).then_some(mac)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "ab23456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn paths_follow_the_flat_layout_with_bucket_fallback() {
        let layout = Layout::new(KoofrPath::parse("/backups/k").unwrap());
        let mac = Mac::from_name(HEX).unwrap();
        assert_eq!(layout.config().as_str(), "/backups/k/CONFIG");
        assert_eq!(
            layout.flat(Resource::Packfile.key(mac)).as_str(),
            format!("/backups/k/packfiles/{HEX}")
        );
        assert_eq!(
            layout.bucket(Resource::State.key(mac)).as_str(),
            format!("/backups/k/states/ab/{HEX}")
        );
        assert_eq!(layout.folder(Resource::Lock).as_str(), "/backups/k/locks");
    }

    #[test]
    fn only_mac_names_flat_or_in_their_bucket_are_objects() {
        let mac = Mac::from_name(HEX).unwrap();
        assert_eq!(mac_of_relative(HEX), Some(mac));
        assert_eq!(mac_of_relative(&format!("ab/{HEX}")), Some(mac));
        assert_eq!(mac_of_relative(&format!("cd/{HEX}")), None);
        assert_eq!(mac_of_relative(&format!("ab/x/{HEX}")), None);
        assert_eq!(mac_of_relative("ab"), None);
        assert_eq!(mac_of_relative("junk.txt"), None);
        assert_eq!(mac_of_relative(&HEX.to_uppercase()), None);
        assert_eq!(mac_of_relative(&HEX[1..]), None);
        assert_eq!(mac_of_relative(&format!("{HEX}a")), None);
    }
}
