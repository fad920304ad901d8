//! The seeded source tree: a deterministic, realistic Koofr folder tree (nested folders, names
//! with spaces, accents, Cyrillic, Greek and CJK, sizes from 0 B to the maximum) and its upload.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use anyhow::Context;
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use koofr_core::{KoofrPath, UploadBody, UploadOptions};
use md5::{Digest, Md5};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::progress::Progress;
use koofr_testkit::{RemoteEntry, Site};

/// Uploads running at once while seeding.
const SEED_CONCURRENCY: usize = 4;

/// What tree to generate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TreeSpec {
    /// Number of files.
    pub files: usize,
    /// Largest file size in bytes (one file has exactly this size).
    pub max_file_bytes: u64,
    /// Seed of every choice (names, sizes, times, contents).
    pub seed: u64,
}

impl TreeSpec {
    /// The demo's default: about a thousand files up to 24 MiB, ~200 MiB in total.
    pub fn demo() -> TreeSpec {
        TreeSpec {
            files: 1000,
            max_file_bytes: 24 << 20,
            seed: 2024,
        }
    }

    /// The e2e tests' small tree: 60 files up to 3 MiB.
    pub fn small() -> TreeSpec {
        TreeSpec {
            files: 60,
            max_file_bytes: 3 << 20,
            seed: 7,
        }
    }
}

/// One generated file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeedFile {
    /// Path relative to the tree's root.
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// Modification time, Unix milliseconds.
    pub mtime_ms: i64,
    /// Seed of the content.
    pub content_seed: u64,
}

/// A generated tree: folders (parents first, one of them left empty) and files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeedTree {
    /// Relative folder paths, parents before children.
    pub folders: Vec<String>,
    /// Files in generation order.
    pub files: Vec<SeedFile>,
}

impl SeedTree {
    /// Total file bytes.
    pub fn total_bytes(&self) -> u64 {
        self.files.iter().map(|f| f.size).sum()
    }
}

const FOLDER_STEMS: &[&str] = &[
    "Documents",
    "Photos",
    "Été 2024",
    "Проекты",
    "Фотографии",
    "Έγγραφα",
    "Αρχείο",
    "資料",
    "写真 アルバム",
    "音楽",
    "Année scolaire",
    "Zürich Reise",
    "backup old",
    "Ñandú",
    "Øresund",
];

const FILE_STEMS: &[&str] = &[
    "Quarterly Report",
    "notes",
    "plage à Nice",
    "Čevapi recept",
    "naïve café",
    "Отчёт за год",
    "список дел",
    "Σημειώσεις",
    "λογαριασμός",
    "会议记录",
    "日本語のメモ",
    "한국어 문서",
    "résumé final",
    "Smørrebrød",
    "Straße",
    "año nuevo",
    "data-set_v2",
    "IMG 0042",
    "lecture (draft)",
    "to do list",
];

const EXTENSIONS: &[&str] = &[".txt", ".jpg", ".pdf", ".bin", ".md", ".csv", ".tar", ""];

/// Generates the tree of `spec` (a pure function of it).
pub fn generate(spec: &TreeSpec) -> SeedTree {
    let mut rng = SmallRng::seed_from_u64(spec.seed);
    let folder_count = (spec.files / 12).max(3);
    let mut folders: Vec<(String, usize)> = Vec::with_capacity(folder_count);
    for index in 0..folder_count {
        let stem = FOLDER_STEMS[rng.random_range(0..FOLDER_STEMS.len())];
        let name = format!("{stem} {index:02}");
        // The first three are top-level; the others hang below a random folder (depth ≤ 5).
        let parent = if index < 3 || rng.random_bool(0.25) {
            None
        } else {
            let candidate = rng.random_range(0..folders.len());
            (folders[candidate].1 < 5).then_some(candidate)
        };
        match parent {
            None => folders.push((name, 1)),
            Some(p) => {
                let (parent_path, depth) = folders[p].clone();
                folders.push((format!("{parent_path}/{name}"), depth + 1));
            }
        }
    }
    // The last folder stays empty: only folders before it receive files.
    let fillable = folder_count - 1;
    let empty_folder = folders[fillable].0.clone();
    let mut files = Vec::with_capacity(spec.files);
    let max = spec.max_file_bytes;
    for index in 0..spec.files {
        let size = match index {
            0 => 0,
            1 => max,
            2 => ((1 << 20) + 1).min(max),
            _ => {
                let roll: f64 = rng.random();
                if roll < 0.02 {
                    0
                } else if roll < 0.02 + 1.0 / 200.0 {
                    rng.random_range(max / 4..=max)
                } else if roll < 0.20 {
                    rng.random_range((16 << 10).min(max)..=(640 << 10).min(max))
                } else {
                    rng.random_range(1..=(16 << 10).min(max).max(1))
                }
            }
        };
        let folder = rng.random_range(0..=fillable);
        let stem = FILE_STEMS[rng.random_range(0..FILE_STEMS.len())];
        let extension = EXTENSIONS[rng.random_range(0..EXTENSIONS.len())];
        let name = format!("{stem} {index:04}{extension}");
        let path = if folder == fillable {
            name // The root gets the files drawn for the empty folder's slot.
        } else {
            format!("{}/{name}", folders[folder].0)
        };
        files.push(SeedFile {
            path,
            size,
            mtime_ms: 1_500_000_000_000 + rng.random_range(0..250_000_000_000i64),
            content_seed: rng.random(),
        });
    }
    let mut folder_paths: Vec<String> = folders.into_iter().map(|(p, _)| p).collect();
    folder_paths.sort();
    debug_assert!(folder_paths.contains(&empty_folder));
    SeedTree {
        folders: folder_paths,
        files,
    }
}

/// The content of a file: `size` bytes of the shared test pattern `seed`, in 256 KiB chunks.
pub use koofr_testkit::content_chunks;

/// [`content_chunks`] as a stream.
pub fn content_stream(seed: u64, size: u64) -> impl futures::Stream<Item = Bytes> + Send + 'static {
    futures::stream::iter(content_chunks(seed, size))
}

/// The MD5 of a file's content, computed by generating it again.
pub async fn content_md5(seed: u64, size: u64) -> String {
    let mut hasher = Md5::new();
    let mut stream = std::pin::pin!(content_stream(seed, size));
    while let Some(chunk) = stream.next().await {
        hasher.update(&chunk);
    }
    hex::encode(hasher.finalize())
}

/// What the source should hold after seeding: relative path → (size, MD5, mtime).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Manifest {
    /// Files by relative path.
    pub files: BTreeMap<String, ManifestFile>,
    /// Folders by relative path.
    pub folders: Vec<String>,
}

/// The expected state of one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestFile {
    /// Size in bytes.
    pub size: u64,
    /// Lowercase hex MD5.
    pub md5: String,
    /// Modification time, Unix milliseconds.
    pub mtime_ms: i64,
}

impl Manifest {
    /// Total file bytes.
    pub fn total_bytes(&self) -> u64 {
        self.files.values().map(|f| f.size).sum()
    }

    /// `N files in M folders, X MiB, seed S` (for summaries).
    pub fn describe(&self, seed: u64) -> String {
        format!(
            "{} files in {} folders, {:.1} MiB, seed {seed}",
            self.files.len(),
            self.folders.len(),
            self.total_bytes() as f64 / 1048576.0
        )
    }
}

/// Creates the tree's folders and uploads its files (streamed, 4 at a time, with their mtimes)
/// into `root` on `site`; returns the manifest (MD5s computed locally).
pub async fn seed(
    site: &Site,
    root: &KoofrPath,
    tree: &SeedTree,
    progress: &Progress,
) -> anyhow::Result<Manifest> {
    let client = site.client();
    client
        .create_folder_all(root)
        .await
        .with_context(|| format!("seeding: creating {root}"))?;
    for folder in &tree.folders {
        let path = root
            .join(folder)
            .with_context(|| format!("seeding: folder {folder}"))?;
        client
            .create_folder_all(&path)
            .await
            .with_context(|| format!("seeding: creating {path}"))?;
    }
    let bar = progress.bytes("seed", tree.total_bytes());
    let files = futures::stream::iter(tree.files.iter().cloned())
        .map(|file| {
            let bar = bar.clone();
            async move {
                let path = root
                    .join(&file.path)
                    .with_context(|| format!("seeding: file {}", file.path))?;
                let (parent, name) = path.split().context("seeding: a file at the root")?;
                let (seed, size) = (file.content_seed, file.size);
                let replay: koofr_core::ReplayFn = Arc::new(move || {
                    content_stream(seed, size)
                        .map(Ok::<Bytes, koofr_core::Error>)
                        .boxed()
                });
                let options = UploadOptions {
                    modified_ms: Some(file.mtime_ms),
                    size_hint: Some(size),
                    ..UploadOptions::default()
                };
                let (uploaded, md5) = tokio::join!(
                    client.upload(&parent, name, UploadBody::Replayable(replay), options),
                    content_md5(seed, size)
                );
                let uploaded = uploaded.with_context(|| format!("seeding: uploading {path}"))?;
                anyhow::ensure!(
                    uploaded.size == size,
                    "seeding: {path} stored with {} bytes instead of {size}",
                    uploaded.size
                );
                bar.inc(size);
                Ok::<_, anyhow::Error>((
                    file.path.clone(),
                    ManifestFile {
                        size,
                        md5,
                        mtime_ms: file.mtime_ms,
                    },
                ))
            }
        })
        .buffer_unordered(SEED_CONCURRENCY)
        .try_collect::<BTreeMap<_, _>>()
        .await?;
    bar.finish_and_clear();
    Ok(Manifest {
        files,
        folders: tree.folders.clone(),
    })
}

/// Writes the tree below the local folder `root` (created if missing): its folders, then its
/// files with their mtimes; returns the manifest.
pub fn write_local(root: &Path, tree: &SeedTree) -> anyhow::Result<Manifest> {
    for folder in std::iter::once("").chain(tree.folders.iter().map(String::as_str)) {
        let dir = root.join(folder);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let mut files = BTreeMap::new();
    for file in &tree.files {
        let path = root.join(&file.path);
        let mut out =
            std::fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?;
        let mut hasher = Md5::new();
        for chunk in content_chunks(file.content_seed, file.size) {
            hasher.update(&chunk);
            out.write_all(&chunk)
                .with_context(|| format!("writing {}", path.display()))?;
        }
        let mtime = UNIX_EPOCH + Duration::from_millis(u64::try_from(file.mtime_ms)?);
        out.set_modified(mtime)
            .with_context(|| format!("setting the mtime of {}", path.display()))?;
        files.insert(
            file.path.clone(),
            ManifestFile {
                size: file.size,
                md5: hex::encode(hasher.finalize()),
                mtime_ms: file.mtime_ms,
            },
        );
    }
    Ok(Manifest {
        files,
        folders: tree.folders.clone(),
    })
}

/// Everything below the local folder `root` (excluded), with `/`-separated paths relative to it
/// and the MD5 of every file, sorted by path: the local counterpart of [`Site::walk`].
pub fn walk_local(root: &Path) -> anyhow::Result<Vec<RemoteEntry>> {
    let mut out = Vec::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in
            std::fs::read_dir(&dir).with_context(|| format!("listing {}", dir.display()))?
        {
            let entry = entry.with_context(|| format!("listing {}", dir.display()))?;
            let path = entry.path();
            let meta = std::fs::symlink_metadata(&path)
                .with_context(|| format!("reading {}", path.display()))?;
            let relative = path
                .strip_prefix(root)
                .context("walked outside the root")?
                .to_str()
                .with_context(|| format!("{} is not UTF-8", path.display()))?
                .to_owned();
            let modified_ms = meta
                .modified()
                .ok()
                .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                .map(|d| d.as_millis() as i64)
                .unwrap_or(0);
            if meta.is_dir() {
                pending.push(path);
                out.push(RemoteEntry {
                    path: relative,
                    is_dir: true,
                    size: 0,
                    modified_ms,
                    md5: None,
                });
                continue;
            }
            let mut hasher = Md5::new();
            let mut file = std::fs::File::open(&path)
                .with_context(|| format!("opening {}", path.display()))?;
            std::io::copy(&mut file, &mut hasher)
                .with_context(|| format!("reading {}", path.display()))?;
            out.push(RemoteEntry {
                path: relative,
                is_dir: false,
                size: meta.len(),
                modified_ms,
                md5: Some(hex::encode(hasher.finalize())),
            });
        }
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generation_is_deterministic_and_covers_the_edges() {
        let spec = TreeSpec::small();
        let tree = generate(&spec);
        assert_eq!(tree, generate(&spec));
        assert_eq!(tree.files.len(), 60);
        assert!(tree.files.iter().any(|f| f.size == 0));
        assert!(tree.files.iter().any(|f| f.size == spec.max_file_bytes));
        assert!(tree.files.iter().all(|f| f.size <= spec.max_file_bytes));
        let mut paths: Vec<&str> = tree.files.iter().map(|f| f.path.as_str()).collect();
        paths.sort();
        paths.dedup();
        assert_eq!(paths.len(), 60, "file paths are unique");
        let nested = tree.folders.iter().filter(|f| f.contains('/')).count();
        assert!(nested > 0, "some folders are nested: {:?}", tree.folders);
        let empty = tree.folders.iter().filter(|folder| {
            !tree
                .files
                .iter()
                .any(|f| f.path.starts_with(&format!("{folder}/")))
                && !tree
                    .folders
                    .iter()
                    .any(|o| o.starts_with(&format!("{folder}/")))
        });
        assert!(empty.count() >= 1, "one folder stays empty");
        let other = generate(&TreeSpec { seed: 8, ..spec });
        assert_ne!(tree, other);
    }

    #[test]
    fn demo_tree_has_the_advertised_shape() {
        let tree = generate(&TreeSpec::demo());
        let total = tree.total_bytes();
        assert!(
            (150 << 20..=250 << 20).contains(&total),
            "demo tree is {} MiB",
            total >> 20
        );
        for script in ['é', 'Ф', 'Σ', '資'] {
            assert!(
                tree.files.iter().any(|f| f.path.contains(script))
                    || tree.folders.iter().any(|f| f.contains(script)),
                "no name with {script}"
            );
        }
        assert!(
            tree.files
                .iter()
                .chain(std::iter::empty())
                .all(|f| f.path.chars().all(|c| (c as u32) < 0x10000)),
            "no names outside the BMP (Koofr refuses emoji)"
        );
    }

    #[test]
    fn a_local_tree_walks_back_to_its_manifest() {
        let dir = tempfile::tempdir().unwrap();
        let tree = generate(&TreeSpec {
            files: 30,
            max_file_bytes: 300 << 10,
            seed: 11,
        });
        let manifest = write_local(dir.path(), &tree).unwrap();
        let entries = walk_local(dir.path()).unwrap();
        let problems = crate::pipeline::compare_with_manifest(&entries, &manifest);
        assert!(problems.is_empty(), "{problems:?}");
        // One byte changed is seen.
        let (victim, _) = manifest.files.iter().find(|(_, f)| f.size > 0).unwrap();
        let path = dir.path().join(victim);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[0] ^= 1;
        std::fs::write(&path, bytes).unwrap();
        let problems =
            crate::pipeline::compare_with_manifest(&walk_local(dir.path()).unwrap(), &manifest);
        assert_eq!(problems.len(), 2, "{problems:?}"); // the MD5 and the mtime
    }

    #[tokio::test]
    async fn content_is_reproducible() {
        let a: Vec<Bytes> = content_stream(5, 600_000).collect().await;
        let b: Vec<Bytes> = content_stream(5, 600_000).collect().await;
        assert_eq!(a, b);
        assert_eq!(a.iter().map(|c| c.len()).sum::<usize>(), 600_000);
        assert_eq!(content_md5(5, 0).await, "d41d8cd98f00b204e9800998ecf8427e");
        assert_ne!(content_md5(5, 10).await, content_md5(6, 10).await);
    }
}
