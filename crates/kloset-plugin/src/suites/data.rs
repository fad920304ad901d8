//! Deterministic, position-addressable test data, streamed and verified without storing it.

use bytes::{Bytes, BytesMut};
use futures::StreamExt;

use crate::ByteStream;
use crate::error::Result;

/// Generation chunk size (deliberately not a multiple of 1 MiB).
const GEN_CHUNK: usize = 300 * 1024 + 7;

fn word(seed: u64, index: u64) -> u64 {
    // SplitMix64 of (seed, index): cheap and position-addressable.
    let mut z =
        seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ index.wrapping_add(0x632B_E59B_D9B4_E019);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// `len` bytes of the pattern `seed` starting at `offset`.
pub fn pattern_bytes(seed: u64, offset: u64, len: usize) -> Bytes {
    let mut out = BytesMut::with_capacity(len + 16);
    let first_word = offset / 8;
    let skip = (offset % 8) as usize;
    let words = (skip + len).div_ceil(8) as u64;
    for i in 0..words {
        out.extend_from_slice(&word(seed, first_word + i).to_le_bytes());
    }
    out.freeze().slice(skip..skip + len)
}

/// The pattern `seed` of `len` bytes as a stream of chunks.
pub fn pattern_stream(seed: u64, len: u64) -> ByteStream {
    let chunks = (0..len.div_ceil(GEN_CHUNK as u64)).map(move |i| {
        let offset = i * GEN_CHUNK as u64;
        let n = (len - offset).min(GEN_CHUNK as u64) as usize;
        Ok(pattern_bytes(seed, offset, n))
    });
    futures::stream::iter(chunks).boxed()
}

/// `good` bytes of the pattern `seed`, then an error: a source that breaks midway.
pub(super) fn failing_stream(seed: u64, good: u64) -> ByteStream {
    pattern_stream(seed, good)
        .chain(futures::stream::once(async {
            Err(crate::ConnectorError::other("source failed midway (test)"))
        }))
        .boxed()
}

/// Reads a stream and checks it equals the pattern `seed` from `offset` for `len` bytes.
pub async fn verify_pattern(
    mut stream: ByteStream,
    seed: u64,
    offset: u64,
    len: u64,
) -> std::result::Result<(), String> {
    let mut position = 0u64;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| format!("read failed at byte {position}: {e}"))?;
        if position + chunk.len() as u64 > len {
            return Err(format!("got more than the {len} expected bytes"));
        }
        let expected = pattern_bytes(seed, offset + position, chunk.len());
        if chunk != expected {
            let at = chunk
                .iter()
                .zip(expected.iter())
                .position(|(a, b)| a != b)
                .unwrap_or(0);
            return Err(format!("content differs at byte {}", position + at as u64));
        }
        position += chunk.len() as u64;
    }
    if position != len {
        return Err(format!("got {position} bytes, expected {len}"));
    }
    Ok(())
}

/// Reads a (small) stream fully.
pub async fn read_all(mut stream: ByteStream) -> Result<Bytes> {
    let mut out = BytesMut::new();
    while let Some(chunk) = stream.next().await {
        out.extend_from_slice(&chunk?);
    }
    Ok(out.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn pattern_is_position_addressable() {
        let whole = pattern_bytes(7, 0, 1000);
        assert_eq!(pattern_bytes(7, 13, 100), whole.slice(13..113));
        assert_ne!(pattern_bytes(8, 0, 100), whole.slice(0..100));
        verify_pattern(pattern_stream(7, 1_000_000), 7, 0, 1_000_000)
            .await
            .unwrap();
        assert!(
            verify_pattern(pattern_stream(7, 10), 8, 0, 10)
                .await
                .is_err()
        );
        assert!(
            verify_pattern(pattern_stream(7, 10), 7, 0, 11)
                .await
                .is_err()
        );
    }
}
