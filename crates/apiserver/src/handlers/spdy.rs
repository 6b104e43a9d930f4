//! The client side of SPDY/3.1 as Kubernetes' streaming protocols use it: streams the
//! client opens with a header block, data frames with a FIN bit, and the few control
//! frames a peer may send (replies, resets, pings, go-away). This is what the API
//! server speaks towards a node when it turns a `v5.channel.k8s.io` WebSocket into
//! the runtime's SPDY session, so that a client's "stdin is done" reaches the command
//! as end-of-file (a FIN on the stdin stream).
//!
//! Header blocks are zlib streams that live as long as the connection. Ours are
//! compressed without SPDY's preset dictionary, which a conforming reader accepts (the
//! zlib header says no dictionary is used); the peer's header blocks are skipped,
//! since nothing this side needs is in them.

use bytes::{BufMut, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt};

const VERSION: u16 = 3;
/// Set on the last frame a side sends on a stream.
pub const FLAG_FIN: u8 = 0x01;

const SYN_STREAM: u16 = 1;
const SYN_REPLY: u16 = 2;
const RST_STREAM: u16 = 3;
const PING: u16 = 6;
const GOAWAY: u16 = 7;

/// The largest payload of one data frame this side writes.
pub const MAX_DATA: usize = 32 * 1024;
/// Frames larger than this from a peer end the session (the format allows 16 MiB;
/// runtimes write their output in pieces of tens of KiB).
const MAX_FRAME: usize = 4 * 1024 * 1024;

/// A frame read from the peer, reduced to what a streaming client acts on.
#[derive(Debug, PartialEq)]
pub enum Frame {
    Data {
        stream: u32,
        fin: bool,
        payload: Bytes,
    },
    /// The peer accepted a stream this side opened.
    Reply {
        stream: u32,
        fin: bool,
    },
    /// The peer aborted a stream.
    Reset {
        stream: u32,
        status: u32,
    },
    Ping {
        id: u32,
    },
    GoAway,
    /// Settings, window updates, headers and the rest: nothing to act on.
    Other,
}

/// Writes the frames of one SPDY connection; owns its header compressor.
pub struct Writer {
    compressor: flate2::Compress,
}

impl Default for Writer {
    fn default() -> Self {
        Self { compressor: flate2::Compress::new(flate2::Compression::default(), true) }
    }
}

fn control(buf: &mut BytesMut, kind: u16, flags: u8, length: usize) {
    buf.put_u16(0x8000 | VERSION);
    buf.put_u16(kind);
    buf.put_u32(((flags as u32) << 24) | (length as u32 & 0x00ff_ffff));
}

impl Writer {
    /// SYN_STREAM opening `stream` with `headers` (names lower-case, as SPDY/3 wants).
    pub fn syn_stream(&mut self, stream: u32, headers: &[(&str, &str)], fin: bool) -> Bytes {
        let mut block = BytesMut::new();
        block.put_u32(headers.len() as u32);
        for (name, value) in headers {
            block.put_u32(name.len() as u32);
            block.put_slice(name.to_ascii_lowercase().as_bytes());
            block.put_u32(value.len() as u32);
            block.put_slice(value.as_bytes());
        }
        let compressed = self.compress(&block);
        let mut buf = BytesMut::with_capacity(18 + compressed.len());
        control(&mut buf, SYN_STREAM, if fin { FLAG_FIN } else { 0 }, 10 + compressed.len());
        buf.put_u32(stream & 0x7fff_ffff);
        buf.put_u32(0); // associated-to stream
        buf.put_u16(0); // priority and slot
        buf.put_slice(&compressed);
        buf.freeze()
    }

    /// One zlib sync-flushed chunk of the connection's header stream.
    fn compress(&mut self, input: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(input.len() + 64);
        let mut consumed = 0;
        loop {
            if out.capacity() - out.len() < 64 {
                out.reserve(256);
            }
            let before = self.compressor.total_in();
            // Compressing into memory cannot fail; a status other than Ok ends the loop.
            let status =
                self.compressor.compress_vec(&input[consumed..], &mut out, flate2::FlushCompress::Sync);
            consumed += (self.compressor.total_in() - before) as usize;
            let done = consumed == input.len() && out.len() < out.capacity();
            if !matches!(status, Ok(flate2::Status::Ok)) || done {
                return out;
            }
        }
    }
}

/// A data frame; payloads longer than [`MAX_DATA`] are the caller's to split.
pub fn data(stream: u32, payload: &[u8], fin: bool) -> Bytes {
    let mut buf = BytesMut::with_capacity(8 + payload.len());
    buf.put_u32(stream & 0x7fff_ffff);
    buf.put_u32(((if fin { FLAG_FIN } else { 0 } as u32) << 24) | (payload.len() as u32 & 0x00ff_ffff));
    buf.put_slice(payload);
    buf.freeze()
}

/// The answer to a peer's PING: the same frame back.
pub fn ping(id: u32) -> Bytes {
    let mut buf = BytesMut::with_capacity(12);
    control(&mut buf, PING, 0, 4);
    buf.put_u32(id);
    buf.freeze()
}

/// Reads the next frame; `Ok(None)` at a clean end of the connection.
pub async fn read_frame<R: AsyncRead + Unpin>(r: &mut R) -> std::io::Result<Option<Frame>> {
    let mut head = [0u8; 8];
    match r.read_exact(&mut head).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let flags = head[4];
    let length = u32::from_be_bytes([0, head[5], head[6], head[7]]) as usize;
    if length > MAX_FRAME {
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, "SPDY frame too large"));
    }
    let mut payload = vec![0u8; length];
    r.read_exact(&mut payload).await?;
    let word = |i: usize| payload.get(i..i + 4).map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
    let short = || std::io::Error::new(std::io::ErrorKind::InvalidData, "SPDY control frame too short");
    if head[0] & 0x80 == 0 {
        let stream = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) & 0x7fff_ffff;
        return Ok(Some(Frame::Data { stream, fin: flags & FLAG_FIN != 0, payload: payload.into() }));
    }
    let kind = u16::from_be_bytes([head[2], head[3]]);
    Ok(Some(match kind {
        SYN_REPLY => {
            Frame::Reply { stream: word(0).ok_or_else(short)? & 0x7fff_ffff, fin: flags & FLAG_FIN != 0 }
        }
        RST_STREAM => Frame::Reset {
            stream: word(0).ok_or_else(short)? & 0x7fff_ffff,
            status: word(4).ok_or_else(short)?,
        },
        PING => Frame::Ping { id: word(0).ok_or_else(short)? },
        GOAWAY => Frame::GoAway,
        _ => Frame::Other,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads back a header block the way a peer does: one zlib stream over all of them.
    fn headers_of(frames: &[Bytes]) -> Vec<Vec<(String, String)>> {
        let mut inflater = flate2::Decompress::new(true);
        let mut blocks = Vec::new();
        for f in frames {
            assert_eq!(&f[..4], &[0x80, 0x03, 0x00, 0x01], "a SYN_STREAM of version 3");
            let length = u32::from_be_bytes([0, f[5], f[6], f[7]]) as usize;
            assert_eq!(length, f.len() - 8);
            let mut out = Vec::with_capacity(4096);
            inflater.decompress_vec(&f[18..], &mut out, flate2::FlushDecompress::Sync).unwrap();
            let word = |b: &[u8], i: usize| u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]) as usize;
            let (mut i, mut pairs) = (4, Vec::new());
            for _ in 0..word(&out, 0) {
                let n = word(&out, i);
                let name = String::from_utf8(out[i + 4..i + 4 + n].to_vec()).unwrap();
                i += 4 + n;
                let n = word(&out, i);
                let value = String::from_utf8(out[i + 4..i + 4 + n].to_vec()).unwrap();
                i += 4 + n;
                pairs.push((name, value));
            }
            assert_eq!(i, out.len(), "nothing after the pairs");
            blocks.push(pairs);
        }
        blocks
    }

    #[test]
    fn header_blocks_share_one_zlib_stream_and_lower_case_names() {
        let mut w = Writer::default();
        let a = w.syn_stream(1, &[("streamType", "error")], false);
        let b = w.syn_stream(3, &[("streamType", "stdin"), ("port", "8080")], true);
        assert_eq!(u32::from_be_bytes([b[8], b[9], b[10], b[11]]), 3);
        assert_eq!(b[4], FLAG_FIN);
        let blocks = headers_of(&[a, b]);
        assert_eq!(blocks[0], [("streamtype".to_owned(), "error".to_owned())]);
        assert_eq!(
            blocks[1],
            [("streamtype".to_owned(), "stdin".to_owned()), ("port".to_owned(), "8080".to_owned())]
        );
    }

    #[tokio::test]
    async fn frames_read_back_as_written() {
        let mut wire = Vec::new();
        wire.extend_from_slice(&data(5, b"hello", false));
        wire.extend_from_slice(&data(5, b"", true));
        wire.extend_from_slice(&ping(2));
        // A SYN_REPLY for stream 3 with an (unread) header block, a reset, settings.
        wire.extend_from_slice(&[0x80, 3, 0, 2, 0, 0, 0, 6, 0, 0, 0, 3, 0xaa, 0xbb]);
        wire.extend_from_slice(&[0x80, 3, 0, 3, 0, 0, 0, 8, 0, 0, 0, 7, 0, 0, 0, 5]);
        wire.extend_from_slice(&[0x80, 3, 0, 4, 0, 0, 0, 4, 0, 0, 0, 0]);
        wire.extend_from_slice(&[0x80, 3, 0, 7, 0, 0, 0, 8, 0, 0, 0, 9, 0, 0, 0, 0]);
        let mut r = &wire[..];
        let mut got = Vec::new();
        while let Some(f) = read_frame(&mut r).await.unwrap() {
            got.push(f);
        }
        assert_eq!(
            got,
            [
                Frame::Data { stream: 5, fin: false, payload: Bytes::from_static(b"hello") },
                Frame::Data { stream: 5, fin: true, payload: Bytes::new() },
                Frame::Ping { id: 2 },
                Frame::Reply { stream: 3, fin: false },
                Frame::Reset { stream: 7, status: 5 },
                Frame::Other,
                Frame::GoAway,
            ]
        );
    }

    #[tokio::test]
    async fn a_truncated_or_oversized_frame_is_an_error() {
        let frame = data(1, b"abcdef", false);
        let mut r = &frame[..10];
        assert!(read_frame(&mut r).await.is_err());
        let mut r: &[u8] = &[0, 0, 0, 1, 0, 0xff, 0xff, 0xff];
        assert!(read_frame(&mut r).await.is_err());
        let mut r: &[u8] = &[0x80, 3, 0, 3, 0, 0, 0, 2, 0, 0];
        assert!(read_frame(&mut r).await.is_err(), "a reset without its fields");
    }
}
