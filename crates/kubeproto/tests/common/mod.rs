//! A tiny protobuf writer for building test bodies by hand, field by field.

#![allow(dead_code)]

/// Protobuf message bytes under construction.
#[derive(Default, Clone)]
pub struct Pb(pub Vec<u8>);

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

impl Pb {
    pub fn new() -> Self {
        Pb(Vec::new())
    }

    /// A varint field (int32, int64, bool; negative numbers sign-extended).
    pub fn int(mut self, tag: u32, v: i64) -> Self {
        varint(&mut self.0, u64::from(tag) << 3);
        varint(&mut self.0, v as u64);
        self
    }

    /// A double field (fixed 64 bits).
    pub fn double(mut self, tag: u32, v: f64) -> Self {
        varint(&mut self.0, (u64::from(tag) << 3) | 1);
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }

    /// A length-delimited field with these bytes.
    pub fn bytes(mut self, tag: u32, b: &[u8]) -> Self {
        varint(&mut self.0, (u64::from(tag) << 3) | 2);
        varint(&mut self.0, b.len() as u64);
        self.0.extend_from_slice(b);
        self
    }

    pub fn str(self, tag: u32, s: &str) -> Self {
        self.bytes(tag, s.as_bytes())
    }

    pub fn msg(self, tag: u32, m: Pb) -> Self {
        self.bytes(tag, &m.0)
    }

    /// One entry of a `map<string, string>`.
    pub fn entry(self, tag: u32, k: &str, v: &str) -> Self {
        self.msg(tag, Pb::new().str(1, k).str(2, v))
    }

    /// One entry of a `map<string, bytes>`.
    pub fn entry_bytes(self, tag: u32, k: &str, v: &[u8]) -> Self {
        self.msg(tag, Pb::new().str(1, k).bytes(2, v))
    }

    /// One entry of a `map<string, Message>`.
    pub fn entry_msg(self, tag: u32, k: &str, v: Pb) -> Self {
        self.msg(tag, Pb::new().str(1, k).msg(2, v))
    }
}

/// A `resource.Quantity`.
pub fn quantity(s: &str) -> Pb {
    Pb::new().str(1, s)
}

/// An `intstr.IntOrString` as Go writes it: all three fields.
pub fn int_or_string_str(s: &str) -> Pb {
    Pb::new().int(1, 1).int(2, 0).str(3, s)
}

pub fn int_or_string_int(n: i32) -> Pb {
    Pb::new().int(1, 0).int(2, n.into()).str(3, "")
}

/// A whole body: magic and `runtime.Unknown` envelope around `obj`.
pub fn body(api_version: &str, kind: &str, obj: Pb) -> Vec<u8> {
    let mut out = b"k8s\0".to_vec();
    let envelope =
        Pb::new().msg(1, Pb::new().str(1, api_version).str(2, kind)).msg(2, obj).str(3, "").str(4, "");
    out.extend_from_slice(&envelope.0);
    out
}
