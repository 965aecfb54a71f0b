//! Layer and archive compression: gzip (all members), zstd or none, told apart by magic bytes
//! rather than trusted media types (docker-archives and some registries mislabel them).

use std::io::{self, BufRead, BufReader, Read};

/// Read buffer for compressed input.
const READ_BUF: usize = 256 * 1024;

/// How a layer blob is compressed, from its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// A plain tar.
    None,
    /// gzip (possibly several members, as pigz and some builders write).
    Gzip,
    /// zstd.
    Zstd,
}

impl Compression {
    /// Recognises gzip (`1f 8b`) and zstd (`28 b5 2f fd`) magic; anything else is plain tar.
    pub fn detect(magic: &[u8]) -> Self {
        if magic.starts_with(&[0x1f, 0x8b]) {
            Compression::Gzip
        } else if magic.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Compression::Zstd
        } else {
            Compression::None
        }
    }
}

/// Wraps `blob` in the decompressor its magic bytes call for.
pub fn decompress<'a, R: Read + 'a>(blob: R) -> io::Result<Box<dyn Read + 'a>> {
    let mut buffered = BufReader::with_capacity(READ_BUF, blob);
    let kind = Compression::detect(buffered.fill_buf()?);
    Ok(match kind {
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(buffered)),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(buffered)?),
        Compression::None => Box::new(buffered),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compression_is_detected_from_magic() {
        assert_eq!(Compression::detect(&[0x1f, 0x8b, 8]), Compression::Gzip);
        assert_eq!(
            Compression::detect(&[0x28, 0xb5, 0x2f, 0xfd, 0]),
            Compression::Zstd
        );
        assert_eq!(Compression::detect(b"etc/\0\0"), Compression::None);
        assert_eq!(Compression::detect(b""), Compression::None);
    }
}
