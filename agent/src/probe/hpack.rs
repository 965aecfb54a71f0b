//! The HPACK header compression (RFC 7541) the gRPC probe needs: a full decoder (static and
//! dynamic tables, integers, Huffman strings) for the server's response headers and trailers,
//! and an encoder that writes literals without indexing (always valid, never stateful).
//!
//! The Huffman code of RFC 7541 Appendix B is canonical (codes are assigned in order of
//! length, then symbol), so the decoder is built from the 257 code lengths alone.

use std::collections::VecDeque;

/// Why a header block could not be decoded (a connection error in HTTP/2 terms).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HpackError {
    /// The block ended in the middle of a representation.
    #[error("hpack: header block truncated")]
    Truncated,
    /// An integer did not fit in 32 bits.
    #[error("hpack: integer overflow")]
    Overflow,
    /// An index outside the static and dynamic tables.
    #[error("hpack: index {0} out of range")]
    BadIndex(usize),
    /// Invalid Huffman data (EOS inside, or padding longer than 7 bits / not all ones).
    #[error("hpack: invalid huffman string")]
    BadHuffman,
    /// A table size update above the limit the decoder allows.
    #[error("hpack: table size update {0} above limit")]
    TableTooLarge(usize),
}

/// RFC 7541 Appendix A.
const STATIC_TABLE: [(&str, &str); 61] = [
    (":authority", ""),
    (":method", "GET"),
    (":method", "POST"),
    (":path", "/"),
    (":path", "/index.html"),
    (":scheme", "http"),
    (":scheme", "https"),
    (":status", "200"),
    (":status", "204"),
    (":status", "206"),
    (":status", "304"),
    (":status", "400"),
    (":status", "404"),
    (":status", "500"),
    ("accept-charset", ""),
    ("accept-encoding", "gzip, deflate"),
    ("accept-language", ""),
    ("accept-ranges", ""),
    ("accept", ""),
    ("access-control-allow-origin", ""),
    ("age", ""),
    ("allow", ""),
    ("authorization", ""),
    ("cache-control", ""),
    ("content-disposition", ""),
    ("content-encoding", ""),
    ("content-language", ""),
    ("content-length", ""),
    ("content-location", ""),
    ("content-range", ""),
    ("content-type", ""),
    ("cookie", ""),
    ("date", ""),
    ("etag", ""),
    ("expect", ""),
    ("expires", ""),
    ("from", ""),
    ("host", ""),
    ("if-match", ""),
    ("if-modified-since", ""),
    ("if-none-match", ""),
    ("if-range", ""),
    ("if-unmodified-since", ""),
    ("last-modified", ""),
    ("link", ""),
    ("location", ""),
    ("max-forwards", ""),
    ("proxy-authenticate", ""),
    ("proxy-authorization", ""),
    ("range", ""),
    ("referer", ""),
    ("refresh", ""),
    ("retry-after", ""),
    ("server", ""),
    ("set-cookie", ""),
    ("strict-transport-security", ""),
    ("transfer-encoding", ""),
    ("user-agent", ""),
    ("vary", ""),
    ("via", ""),
    ("www-authenticate", ""),
];

/// Huffman code length of each symbol 0..=256 (256 is EOS), RFC 7541 Appendix B.
const HUFFMAN_LENGTHS: [u8; 257] = [
    13, 23, 28, 28, 28, 28, 28, 28, 28, 24, 30, 28, 28, 30, 28, 28, 28, 28, 28, 28, 28, 28, 30, 28,
    28, 28, 28, 28, 28, 28, 28, 28, 6, 10, 10, 12, 13, 6, 8, 11, 10, 10, 8, 11, 8, 6, 6, 6, 5, 5,
    5, 6, 6, 6, 6, 6, 6, 6, 7, 8, 15, 6, 12, 10, 13, 6, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7,
    7, 7, 7, 7, 7, 7, 7, 7, 8, 7, 8, 13, 19, 13, 14, 6, 15, 5, 6, 5, 6, 5, 6, 6, 6, 5, 7, 7, 6, 6,
    6, 5, 6, 7, 6, 5, 5, 6, 7, 7, 7, 7, 7, 15, 11, 14, 13, 28, 20, 22, 20, 20, 22, 22, 22, 23, 22,
    23, 23, 23, 23, 23, 24, 23, 24, 24, 22, 23, 24, 23, 23, 23, 23, 21, 22, 23, 22, 23, 23, 24, 22,
    21, 20, 22, 22, 23, 23, 21, 23, 22, 22, 24, 21, 22, 23, 23, 21, 21, 22, 21, 23, 22, 23, 23, 20,
    22, 22, 22, 23, 22, 22, 23, 26, 26, 20, 19, 22, 23, 22, 25, 26, 26, 26, 27, 27, 26, 24, 25, 19,
    21, 26, 27, 27, 26, 27, 24, 21, 21, 26, 26, 28, 27, 27, 27, 20, 24, 20, 21, 22, 21, 21, 23, 22,
    22, 25, 25, 24, 24, 26, 23, 26, 27, 26, 26, 27, 27, 27, 27, 27, 28, 27, 27, 27, 27, 27, 26, 30,
];

const MAX_CODE_LEN: usize = 30;
const EOS: u16 = 256;

/// The canonical code, arranged for bit-by-bit decoding: for each length, the first code,
/// how many codes have that length, and where their symbols start in `symbols`.
struct Canonical {
    first: [u32; MAX_CODE_LEN + 1],
    count: [u32; MAX_CODE_LEN + 1],
    offset: [usize; MAX_CODE_LEN + 1],
    symbols: [u16; 257],
}

fn canonical() -> Canonical {
    let mut c = Canonical {
        first: [0; 31],
        count: [0; 31],
        offset: [0; 31],
        symbols: [0; 257],
    };
    for &len in &HUFFMAN_LENGTHS {
        c.count[usize::from(len)] += 1;
    }
    let mut code = 0u32;
    let mut offset = 0usize;
    for len in 1..=MAX_CODE_LEN {
        code = (code + c.count[len - 1]) << 1;
        c.first[len] = code;
        c.offset[len] = offset;
        offset += c.count[len] as usize;
    }
    let mut next = c.offset;
    for (sym, &len) in HUFFMAN_LENGTHS.iter().enumerate() {
        let len = usize::from(len);
        c.symbols[next[len]] = sym as u16;
        next[len] += 1;
    }
    c
}

/// Decodes a Huffman-coded string.
pub fn huffman_decode(data: &[u8]) -> Result<Vec<u8>, HpackError> {
    static TABLE: std::sync::OnceLock<Canonical> = std::sync::OnceLock::new();
    let c = TABLE.get_or_init(canonical);
    let mut out = Vec::with_capacity(data.len() * 8 / 5);
    let (mut code, mut len) = (0u32, 0usize);
    for byte in data {
        for shift in (0..8).rev() {
            code = (code << 1) | u32::from((byte >> shift) & 1);
            len += 1;
            let index = code.wrapping_sub(c.first[len]);
            if index < c.count[len] {
                let sym = c.symbols[c.offset[len] + index as usize];
                if sym == EOS {
                    return Err(HpackError::BadHuffman);
                }
                out.push(sym as u8);
                code = 0;
                len = 0;
            } else if len == MAX_CODE_LEN {
                return Err(HpackError::BadHuffman);
            }
        }
    }
    // Padding: fewer than 8 bits, all ones (a prefix of EOS).
    if len > 7 || code != (1u32 << len) - 1 {
        return Err(HpackError::BadHuffman);
    }
    Ok(out)
}

/// A header block decoder with its dynamic table (one per HTTP/2 connection).
#[derive(Debug)]
pub struct Decoder {
    dynamic: VecDeque<(String, String)>,
    size: usize,
    max_size: usize,
    limit: usize,
}

impl Default for Decoder {
    fn default() -> Self {
        Decoder {
            dynamic: VecDeque::new(),
            size: 0,
            max_size: 4096,
            limit: 4096,
        }
    }
}

fn integer(data: &[u8], pos: &mut usize, prefix_bits: u32) -> Result<usize, HpackError> {
    let first = *data.get(*pos).ok_or(HpackError::Truncated)?;
    *pos += 1;
    let max = (1usize << prefix_bits) - 1;
    let mut value = usize::from(first) & max;
    if value < max {
        return Ok(value);
    }
    let mut shift = 0u32;
    loop {
        let b = *data.get(*pos).ok_or(HpackError::Truncated)?;
        *pos += 1;
        if shift > 28 {
            return Err(HpackError::Overflow);
        }
        value += usize::from(b & 0x7f) << shift;
        shift += 7;
        if b & 0x80 == 0 {
            return Ok(value);
        }
    }
}

fn string(data: &[u8], pos: &mut usize) -> Result<String, HpackError> {
    let huffman = data.get(*pos).ok_or(HpackError::Truncated)? & 0x80 != 0;
    let len = integer(data, pos, 7)?;
    let raw = data.get(*pos..*pos + len).ok_or(HpackError::Truncated)?;
    *pos += len;
    let bytes = if huffman {
        huffman_decode(raw)?
    } else {
        raw.to_vec()
    };
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

impl Decoder {
    /// Decodes one complete header block into (name, value) pairs, in order.
    pub fn decode(&mut self, block: &[u8]) -> Result<Vec<(String, String)>, HpackError> {
        let mut pos = 0;
        let mut headers = Vec::new();
        while pos < block.len() {
            let b = block[pos];
            if b & 0x80 != 0 {
                let index = integer(block, &mut pos, 7)?;
                headers.push(self.entry(index)?);
            } else if b & 0x40 != 0 {
                let (name, value) = self.literal(block, &mut pos, 6)?;
                self.insert(name.clone(), value.clone());
                headers.push((name, value));
            } else if b & 0x20 != 0 {
                let size = integer(block, &mut pos, 5)?;
                if size > self.limit {
                    return Err(HpackError::TableTooLarge(size));
                }
                self.max_size = size;
                self.evict();
            } else {
                // Literal without indexing (0000) or never indexed (0001): 4-bit prefix.
                headers.push(self.literal(block, &mut pos, 4)?);
            }
        }
        Ok(headers)
    }

    fn literal(
        &self,
        block: &[u8],
        pos: &mut usize,
        prefix: u32,
    ) -> Result<(String, String), HpackError> {
        let index = integer(block, pos, prefix)?;
        let name = if index == 0 {
            string(block, pos)?
        } else {
            self.entry(index)?.0
        };
        Ok((name, string(block, pos)?))
    }

    fn entry(&self, index: usize) -> Result<(String, String), HpackError> {
        match index {
            1..=61 => {
                let (n, v) = STATIC_TABLE[index - 1];
                Ok((n.to_owned(), v.to_owned()))
            }
            _ => self
                .dynamic
                .get(index.wrapping_sub(62))
                .cloned()
                .ok_or(HpackError::BadIndex(index)),
        }
    }

    fn insert(&mut self, name: String, value: String) {
        self.size += name.len() + value.len() + 32;
        self.dynamic.push_front((name, value));
        self.evict();
    }

    fn evict(&mut self) {
        while self.size > self.max_size {
            let Some((n, v)) = self.dynamic.pop_back() else {
                break;
            };
            self.size -= n.len() + v.len() + 32;
        }
    }
}

/// Appends `name: value` as a literal without indexing and with a new name, no Huffman.
pub fn encode_literal(out: &mut Vec<u8>, name: &str, value: &str) {
    out.push(0x00);
    for s in [name, value] {
        encode_integer(out, s.len(), 7, 0x00);
        out.extend_from_slice(s.as_bytes());
    }
}

fn encode_integer(out: &mut Vec<u8>, mut value: usize, prefix_bits: u32, flags: u8) {
    let max = (1usize << prefix_bits) - 1;
    if value < max {
        out.push(flags | value as u8);
        return;
    }
    out.push(flags | max as u8);
    value -= max;
    while value >= 0x80 {
        out.push((value as u8 & 0x7f) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
            .collect()
    }

    #[test]
    fn rfc7541_c4_1_request_with_huffman() {
        let block = hex("828684418cf1e3c2e5f23a6ba0ab90f4ff");
        let got = Decoder::default().decode(&block).expect("decode");
        let want = [
            (":method", "GET"),
            (":scheme", "http"),
            (":path", "/"),
            (":authority", "www.example.com"),
        ];
        assert_eq!(got, want.map(|(n, v)| (n.to_owned(), v.to_owned())));
    }

    #[test]
    fn grpc_trailers_with_dynamic_table_across_blocks() {
        // Produced by Python's `hpack` encoder (huffman=True), the way grpc servers encode.
        let mut d = Decoder::default();
        let first = d
            .decode(&hex(concat!(
                "885f8b1d75d0620d263d4c4d656440889acac8b21234da8f8208bf40899acac8b5254207317f9b",
                "b6aeb51fc54a20b677310aa4d65645e728e84cebf70af8ca3a133fbf"
            )))
            .expect("first block");
        assert_eq!(first[1], ("content-type".into(), "application/grpc".into()));
        assert_eq!(first[2], ("grpc-status".into(), "12".into()));
        assert_eq!(
            first[3],
            (
                "grpc-message".into(),
                "unknown service grpc.health.v1.Health".into()
            )
        );
        assert_eq!(first[4], ("grpc-status".into(), "12".into()));
        let second = d.decode(&hex("88c0be")).expect("second block");
        assert_eq!(second[1].0, "content-type");
        assert_eq!(second[2].1, "unknown service grpc.health.v1.Health");
    }

    #[test]
    fn literals_round_trip_and_bad_input_is_rejected() {
        let mut block = Vec::new();
        encode_literal(&mut block, "grpc-timeout", "1000m");
        encode_literal(&mut block, "x-long", &"v".repeat(300));
        let got = Decoder::default().decode(&block).expect("decode");
        assert_eq!(got[0], ("grpc-timeout".into(), "1000m".into()));
        assert_eq!(got[1].1.len(), 300);
        assert_eq!(
            Decoder::default().decode(&[0xff, 0x00]),
            Err(HpackError::BadIndex(127))
        );
        assert_eq!(
            Decoder::default().decode(&[0x00, 0x05, b'a']),
            Err(HpackError::Truncated)
        );
        assert_eq!(
            huffman_decode(&[0x00]),
            Err(HpackError::BadHuffman),
            "zero padding"
        );
    }
}
