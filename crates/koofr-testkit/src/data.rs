//! Deterministic test bytes, the same generator for every crate (kloset-plugin's suites'
//! position-addressable pattern), and collecting a byte stream.

use bytes::Bytes;
use futures::StreamExt;
use kloset_plugin::suites::pattern_bytes;

/// Chunk size of [`content_chunks`].
const CHUNK: usize = 256 << 10;

/// `len` bytes of the pattern `seed`: the same seed gives the same bytes, other seeds others.
pub fn content(seed: u64, len: usize) -> Bytes {
    pattern_bytes(seed, 0, len)
}

/// [`content`] of `size` bytes as chunks of at most 256 KiB, generated one at a time (for
/// files too large to hold).
pub fn content_chunks(seed: u64, size: u64) -> impl Iterator<Item = Bytes> + Send + 'static {
    (0..size.div_ceil(CHUNK as u64)).map(move |i| {
        let offset = i * CHUNK as u64;
        pattern_bytes(seed, offset, (size - offset).min(CHUNK as u64) as usize)
    })
}

/// Collects a koofr-core byte stream.
pub async fn collect(mut stream: koofr_core::ByteStream) -> koofr_core::Result<Vec<u8>> {
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await {
        out.extend_from_slice(&chunk?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_are_the_content_cut_up() {
        let size = 3 * CHUNK as u64 + 17;
        let chunks: Vec<Bytes> = content_chunks(5, size).collect();
        assert_eq!(
            chunks.iter().map(Bytes::len).collect::<Vec<_>>(),
            [CHUNK, CHUNK, CHUNK, 17]
        );
        assert_eq!(chunks.concat(), content(5, size as usize));
        assert_ne!(content(5, 64), content(6, 64));
        assert_eq!(content_chunks(5, 0).count(), 0);
    }
}
