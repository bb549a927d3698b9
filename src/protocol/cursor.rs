//! Reading and writing frame bodies: a bounds-checked cursor that never
//! reads past the bytes it was given, and the field encodings shared by
//! several messages (digests, text, HELLO options).

use super::{MAX_MESSAGE_LEN, ProtocolError, bad};
use crate::checksum::{Algorithm, Digest};

/// Appends one HELLO option: tag, value length, value.
pub fn put_option(out: &mut Vec<u8>, tag: u16, value: &[u8]) {
    out.extend_from_slice(&tag.to_be_bytes());
    out.extend_from_slice(&u16::try_from(value.len()).unwrap_or(0).to_be_bytes());
    out.extend_from_slice(value);
}

/// Appends a digest: algorithm id, length, bytes.
pub fn put_digest(d: &Digest, out: &mut Vec<u8>) {
    out.push(d.algorithm().wire_id());
    let bytes = d.as_bytes();
    out.push(u8::try_from(bytes.len()).unwrap_or(0));
    out.extend_from_slice(bytes);
}

/// Reads a digest and checks its length against its algorithm.
pub fn take_digest(r: &mut Reader<'_>) -> Result<Digest, ProtocolError> {
    let id = r.u8("digest algorithm")?;
    let algorithm =
        Algorithm::from_wire_id(id).ok_or_else(|| ProtocolError(format!("unknown digest algorithm {id}")))?;
    let len = usize::from(r.u8("digest length")?);
    let bytes = r.bytes(len, "digest")?;
    Digest::from_parts(algorithm, bytes)
        .ok_or_else(|| ProtocolError(format!("{} digest of {len} bytes", algorithm.name())))
}

/// The longest prefix of `s` of at most `max` bytes that ends on a
/// character boundary.
pub fn truncate_utf8(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Text from the peer: invalid UTF-8 replaced, then cut to at most `max`
/// bytes on a character boundary, as the encoder cuts it. The cut matters:
/// each replacement character takes three bytes, so `max` bytes on the wire
/// can decode to nearly three times as many, which would be cut when
/// encoded again and so not survive a round trip.
pub fn lossy_text(bytes: &[u8], max: usize) -> String {
    truncate_utf8(&String::from_utf8_lossy(bytes), max).to_owned()
}

/// Appends `text`: a u16 length and UTF-8, cut to MAX_MESSAGE_LEN.
pub fn put_text(s: &str, out: &mut Vec<u8>) {
    let s = truncate_utf8(s, MAX_MESSAGE_LEN);
    out.extend_from_slice(&u16::try_from(s.len()).unwrap_or(0).to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// Reads `text`, refusing lengths over MAX_MESSAGE_LEN.
pub fn take_text(r: &mut Reader<'_>) -> Result<String, ProtocolError> {
    let len = usize::from(r.u16("message length")?);
    if len > MAX_MESSAGE_LEN {
        return bad(format!("message of {len} bytes exceeds {MAX_MESSAGE_LEN}"));
    }
    Ok(lossy_text(r.bytes(len, "message")?, MAX_MESSAGE_LEN))
}

/// A bounds-checked cursor over a frame body.
pub struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    pub fn new(body: &'a [u8]) -> Self {
        Reader { rest: body }
    }

    /// Bytes not read yet.
    pub fn remaining(&self) -> usize {
        self.rest.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    pub fn bytes(&mut self, n: usize, what: &str) -> Result<&'a [u8], ProtocolError> {
        if self.rest.len() < n {
            return bad(format!("frame too short for {what}"));
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self, what: &str) -> Result<[u8; N], ProtocolError> {
        let b = self.bytes(N, what)?;
        let mut out = [0u8; N];
        out.copy_from_slice(b);
        Ok(out)
    }

    pub fn u8(&mut self, what: &str) -> Result<u8, ProtocolError> {
        Ok(self.array::<1>(what)?[0])
    }
    pub fn u16(&mut self, what: &str) -> Result<u16, ProtocolError> {
        Ok(u16::from_be_bytes(self.array(what)?))
    }
    pub fn u32(&mut self, what: &str) -> Result<u32, ProtocolError> {
        Ok(u32::from_be_bytes(self.array(what)?))
    }
    pub fn u64(&mut self, what: &str) -> Result<u64, ProtocolError> {
        Ok(u64::from_be_bytes(self.array(what)?))
    }
    pub fn i64(&mut self, what: &str) -> Result<i64, ProtocolError> {
        Ok(i64::from_be_bytes(self.array(what)?))
    }

    /// Fails if bytes are left over in a message that has no extension area.
    pub fn finish(&self, what: &str) -> Result<(), ProtocolError> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            bad(format!("{} unexpected bytes at the end of {what}", self.rest.len()))
        }
    }
}
