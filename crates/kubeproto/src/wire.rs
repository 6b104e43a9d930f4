//! Protocol buffers wire format: varints, tags and the wire types Kubernetes messages use.

/// Wire type numbers.
pub(crate) const VARINT: u8 = 0;
pub(crate) const FIXED64: u8 = 1;
pub(crate) const LEN: u8 = 2;
pub(crate) const FIXED32: u8 = 5;

/// One field's payload as it appears on the wire.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Wire<'a> {
    Varint(u64),
    Fixed64(u64),
    Fixed32(u32),
    Len(&'a [u8]),
}

impl Wire<'_> {
    /// The wire type number of this payload.
    pub(crate) fn wire_type(&self) -> u8 {
        match self {
            Wire::Varint(_) => VARINT,
            Wire::Fixed64(_) => FIXED64,
            Wire::Len(_) => LEN,
            Wire::Fixed32(_) => FIXED32,
        }
    }
}

/// What went wrong reading the wire format; the caller adds which message it was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Problem {
    /// The field (tag 0 when the tag itself was cut) runs past the end of its message.
    Truncated(u32),
    /// A varint longer than ten bytes.
    Overlong(u32),
    /// Tag number 0 or above the protobuf maximum.
    BadTag(u64),
    /// Groups (wire types 3 and 4) or a wire type protobuf does not define.
    WireType(u32, u8),
}

/// Reads the fields of one message in order.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    fn varint(&mut self, tag: u32) -> Result<u64, Problem> {
        let mut value = 0u64;
        for i in 0..10 {
            let Some(&b) = self.buf.get(self.pos) else {
                return Err(Problem::Truncated(tag));
            };
            self.pos += 1;
            value |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(Problem::Overlong(tag))
    }

    fn take(&mut self, n: u64, tag: u32) -> Result<&'a [u8], Problem> {
        let n = usize::try_from(n).map_err(|_| Problem::Truncated(tag))?;
        let end =
            self.pos.checked_add(n).filter(|&end| end <= self.buf.len()).ok_or(Problem::Truncated(tag))?;
        let out = &self.buf[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    /// The next field, or `None` at the end of the message.
    pub(crate) fn next_field(&mut self) -> Option<Result<(u32, Wire<'a>), Problem>> {
        if self.pos >= self.buf.len() {
            return None;
        }
        Some(self.read_field())
    }

    fn read_field(&mut self) -> Result<(u32, Wire<'a>), Problem> {
        let key = self.varint(0)?;
        let tag = key >> 3;
        if tag == 0 || tag > (1 << 29) - 1 {
            return Err(Problem::BadTag(tag));
        }
        let tag = tag as u32;
        let wire = match (key & 7) as u8 {
            VARINT => Wire::Varint(self.varint(tag)?),
            FIXED64 => {
                let b = self.take(8, tag)?;
                Wire::Fixed64(u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]))
            }
            LEN => {
                let n = self.varint(tag)?;
                Wire::Len(self.take(n, tag)?)
            }
            FIXED32 => {
                let b = self.take(4, tag)?;
                Wire::Fixed32(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            }
            other => return Err(Problem::WireType(tag, other)),
        };
        Ok((tag, wire))
    }
}

/// Reads a packed run of varints.
pub(crate) fn packed_varints(data: &[u8], tag: u32) -> Result<Vec<u64>, Problem> {
    let mut r = Reader::new(data);
    let mut out = Vec::new();
    while r.pos < data.len() {
        out.push(r.varint(tag)?);
    }
    Ok(out)
}

/// Reads a packed run of 8-byte values.
pub(crate) fn packed_fixed64(data: &[u8], tag: u32) -> Result<Vec<u64>, Problem> {
    if !data.len().is_multiple_of(8) {
        return Err(Problem::Truncated(tag));
    }
    Ok(data
        .chunks_exact(8)
        .map(|b| u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]))
        .collect())
}

/// Appends a varint.
pub(crate) fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Appends a field key.
pub(crate) fn put_key(out: &mut Vec<u8>, tag: u32, wire_type: u8) {
    put_varint(out, (u64::from(tag) << 3) | u64::from(wire_type));
}

/// Appends a varint field.
pub(crate) fn put_varint_field(out: &mut Vec<u8>, tag: u32, v: u64) {
    put_key(out, tag, VARINT);
    put_varint(out, v);
}

/// Appends a length-delimited field.
pub(crate) fn put_len_field(out: &mut Vec<u8>, tag: u32, bytes: &[u8]) {
    put_key(out, tag, LEN);
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_round_trip_at_every_width() {
        for v in [0u64, 1, 127, 128, 300, 16_383, 16_384, u32::MAX as u64, (-1i64) as u64, u64::MAX] {
            let mut buf = Vec::new();
            put_varint_field(&mut buf, 7, v);
            let mut r = Reader::new(&buf);
            assert_eq!(r.next_field(), Some(Ok((7, Wire::Varint(v)))));
            assert_eq!(r.next_field(), None);
        }
    }

    #[test]
    fn a_length_running_past_the_end_is_truncated() {
        let buf = [0x12, 0x05, b'a', b'b'];
        assert_eq!(Reader::new(&buf).next_field(), Some(Err(Problem::Truncated(2))));
    }

    #[test]
    fn a_huge_length_is_truncated_not_an_overflow() {
        let mut buf = vec![0x12];
        put_varint(&mut buf, u64::MAX);
        assert_eq!(Reader::new(&buf).next_field(), Some(Err(Problem::Truncated(2))));
    }

    #[test]
    fn groups_and_tag_zero_are_rejected() {
        assert_eq!(Reader::new(&[0x0b]).next_field(), Some(Err(Problem::WireType(1, 3))));
        assert_eq!(Reader::new(&[0x02, 0x00]).next_field(), Some(Err(Problem::BadTag(0))));
    }

    #[test]
    fn an_eleven_byte_varint_is_overlong() {
        let buf = [0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01];
        assert_eq!(Reader::new(&buf).next_field(), Some(Err(Problem::Overlong(1))));
    }
}
