//! Framing: one envelope per line, bounded in size.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::{Envelope, PROTOCOL_VERSION, ProtocolError};

/// Serializes `message` into one frame, newline included.
pub fn encode<M: Serialize>(message: M) -> Result<Vec<u8>, ProtocolError> {
    let mut frame =
        serde_json::to_vec(&Envelope::new(message)).map_err(|e| ProtocolError::Malformed(e.to_string()))?;
    frame.push(b'\n');
    Ok(frame)
}

/// [`encode`], refusing a frame longer than `limit` (newline excluded) as the reader would.
pub fn encode_within<M: Serialize>(message: M, limit: usize) -> Result<Vec<u8>, ProtocolError> {
    let frame = encode(message)?;
    if frame.len() - 1 > limit {
        return Err(ProtocolError::FrameTooLarge { size: frame.len() - 1, limit });
    }
    Ok(frame)
}

/// Parses one frame (without its newline) and checks its size and protocol version.
pub fn decode<M: DeserializeOwned>(line: &[u8], limit: usize) -> Result<M, ProtocolError> {
    if line.len() > limit {
        return Err(ProtocolError::FrameTooLarge { size: line.len(), limit });
    }
    match serde_json::from_slice::<Envelope<M>>(line) {
        Ok(envelope) if envelope.protocol_version == PROTOCOL_VERSION => Ok(envelope.message),
        Ok(envelope) => Err(version_mismatch(envelope.protocol_version)),
        Err(error) => Err(explain_malformed(line, error)),
    }
}

fn version_mismatch(found: u32) -> ProtocolError {
    ProtocolError::VersionMismatch { expected: PROTOCOL_VERSION, found }
}

/// A frame of another version fails to parse as ours; say so rather than "missing field".
fn explain_malformed(line: &[u8], error: serde_json::Error) -> ProtocolError {
    #[derive(serde::Deserialize)]
    struct VersionOnly {
        protocol_version: u32,
    }
    match serde_json::from_slice::<VersionOnly>(line) {
        Ok(v) if v.protocol_version != PROTOCOL_VERSION => version_mismatch(v.protocol_version),
        _ => ProtocolError::Malformed(error.to_string()),
    }
}

/// Accumulates bytes into lines without ever holding more than the frame limit.
///
/// Shared by the blocking reader of the worker and the async reader of the kernel.
#[derive(Debug)]
pub struct FrameBuffer {
    line: Vec<u8>,
    limit: usize,
}

impl FrameBuffer {
    pub fn new(limit: usize) -> Self {
        FrameBuffer { line: Vec::new(), limit }
    }

    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Takes bytes from `available`. Returns how many were consumed, and the line if one ended.
    pub fn push(&mut self, available: &[u8]) -> Result<(usize, Option<Vec<u8>>), ProtocolError> {
        let end = available.iter().position(|&b| b == b'\n');
        let taken = end.unwrap_or(available.len());
        let size = self.line.len() + taken;
        if size > self.limit {
            return Err(ProtocolError::FrameTooLarge { size, limit: self.limit });
        }
        self.line.extend_from_slice(&available[..taken]);
        match end {
            Some(end) => Ok((end + 1, Some(std::mem::take(&mut self.line)))),
            None => Ok((taken, None)),
        }
    }

    /// Called at end of stream: a partial line there is a truncated frame.
    pub fn finish_eof(&mut self) -> Result<(), ProtocolError> {
        if self.line.is_empty() {
            Ok(())
        } else {
            Err(ProtocolError::Malformed(format!(
                "stream ended inside a frame ({} bytes without a newline)",
                self.line.len()
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{FrameReader, KernelMessage, WorkerMessage};

    #[test]
    fn round_trip_through_reader() {
        let mut wire = encode(KernelMessage::Ping { nonce: 7 }).unwrap();
        wire.extend(encode(KernelMessage::Shutdown).unwrap());
        let mut reader = FrameReader::new(wire.as_slice(), 1024);
        assert_eq!(reader.read::<KernelMessage>().unwrap(), Some(KernelMessage::Ping { nonce: 7 }));
        assert_eq!(reader.read::<KernelMessage>().unwrap(), Some(KernelMessage::Shutdown));
        assert_eq!(reader.read::<KernelMessage>().unwrap(), None);
    }

    #[test]
    fn newlines_in_strings_stay_inside_one_frame() {
        let log = WorkerMessage::Log(crate::LogRecord {
            correlation_id: 1,
            level: crate::LogLevel::Info,
            message: "line\n{\"protocol_version\":1}\n".into(),
            fields: Default::default(),
        });
        let frame = encode(log.clone()).unwrap();
        assert_eq!(frame.iter().filter(|&&b| b == b'\n').count(), 1);
        assert_eq!(decode::<WorkerMessage>(&frame[..frame.len() - 1], 1024).unwrap(), log);
    }

    #[test]
    fn oversized_frame_is_refused_before_buffering_it_all() {
        let mut buffer = FrameBuffer::new(10);
        assert!(matches!(
            buffer.push(&[b'x'; 11]),
            Err(ProtocolError::FrameTooLarge { size: 11, limit: 10 })
        ));
    }

    #[test]
    fn other_version_is_named() {
        let line = br#"{"protocol_version":9,"timestamp":0,"message":{"type":"Shutdown"}}"#;
        assert!(matches!(
            decode::<KernelMessage>(line, 1024),
            Err(ProtocolError::VersionMismatch { expected: crate::PROTOCOL_VERSION, found: 9 })
        ));
        let line = br#"{"protocol_version":9,"message":{"type":"Other"}}"#;
        assert!(matches!(
            decode::<KernelMessage>(line, 1024),
            Err(ProtocolError::VersionMismatch { found: 9, .. })
        ));
    }

    #[test]
    fn garbage_is_malformed() {
        for line in [&b"not json"[..], b"{}", b"[1,2]", br#"{"protocol_version":2}"#] {
            assert!(matches!(decode::<KernelMessage>(line, 1024), Err(ProtocolError::Malformed(_))));
        }
    }

    #[test]
    fn truncated_stream_is_malformed() {
        let mut reader = FrameReader::new(&b"{\"protocol"[..], 1024);
        assert!(matches!(reader.read::<KernelMessage>(), Err(ProtocolError::Malformed(_))));
    }

    #[test]
    fn depth_counts_levels_without_recursion() {
        assert_eq!(crate::value_depth(&serde_json::json!(1)), 0);
        assert_eq!(crate::value_depth(&serde_json::json!({"a": [1, {"b": []}]})), 3);
        let mut deep = serde_json::json!(0);
        for _ in 0..10_000 {
            deep = serde_json::Value::Array(vec![deep]);
        }
        assert_eq!(crate::value_depth(&deep), 10_000);
        std::mem::forget(deep); // dropping 10k nested arrays recurses; not what this tests
    }
}
