//! The host-to-worker protocol, version 1: typed messages and their framing.
//!
//! A frame is `[u32 total][u32 header_len][header JSON][blob]`, big-endian, where `total` counts
//! everything after itself. The header is one of the enums below (tagged by `type`); the blob
//! carries raw bytes (serialized objects, workspaces) without the cost of base64. The worker
//! speaks first with [`WorkerMessage::Hello`]; after that every [`Request`] gets exactly one
//! [`WorkerMessage::Result`], possibly preceded by [`WorkerMessage::Console`] frames while code
//! runs. The same framing is implemented by the workers under `workers/`.

use bytes::BytesMut;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio_util::codec::{LengthDelimitedCodec, LengthDelimitedCodecError};

/// The protocol version this host speaks; a worker announcing another is refused.
pub const PROTOCOL_VERSION: u32 = 1;

/// A named value crossing the protocol, as in the reference's `WorkspaceObject`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NamedValue {
    /// The variable name.
    pub name: String,
    /// The value as JSON.
    pub value: Value,
}

/// What the host asks of a worker.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Request {
    /// Bind `inputs` as globals, run `code`, read `outputs` back.
    Execute {
        /// The code to run.
        code: String,
        /// Values bound as globals before the code runs.
        inputs: Vec<NamedValue>,
        /// Globals read back after the code ran.
        outputs: Vec<String>,
    },
    /// The names of the workspace's objects.
    ListObjects,
    /// One object, serialized in the runtime's own format (blob of the reply).
    GetObject {
        /// The object's name.
        name: String,
    },
    /// Deserialize the request's blob into an object.
    PutObject {
        /// The object's name.
        name: String,
    },
    /// Remove an object.
    DeleteObject {
        /// The object's name.
        name: String,
    },
    /// The whole workspace, serialized (blob of the reply).
    SaveWorkspace,
    /// Merge a serialized workspace (the request's blob) into the workspace.
    LoadWorkspace,
    /// Load a service: unpack nothing (the host wrote its files into `directory`), merge the
    /// serialized workspace in the request's blob into a fresh namespace, run `init_code`.
    /// The directory is relative to the worker's working directory, which is where the worker
    /// stands between requests (in a sandbox the host's paths mean nothing).
    LoadService {
        /// The service revision's key.
        key: String,
        /// Runs once, after the workspace is loaded.
        init_code: Option<String>,
        /// The service's working directory.
        directory: String,
    },
    /// Forget a loaded service.
    UnloadService {
        /// The service revision's key.
        key: String,
    },
    /// Run a loaded service's code for one request.
    Consume {
        /// The service revision's key.
        key: String,
        /// The code.
        code: String,
        /// Typed inputs, bound as globals.
        inputs: Vec<TypedValue>,
        /// Typed outputs, read back.
        outputs: Vec<TypedName>,
        /// Files returned base64-encoded.
        output_files: Vec<String>,
    },
    /// Exit cleanly.
    Shutdown,
}

/// A value with its declared service parameter type.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TypedValue {
    /// The variable name.
    pub name: String,
    /// The reference type name (`numeric`, `data.frame`, ...).
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// The value as JSON.
    pub value: Value,
}

/// A declared output.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TypedName {
    /// The variable name.
    pub name: String,
    /// The reference type name.
    #[serde(rename = "type")]
    pub kind: &'static str,
}

/// Why a request failed at the protocol level (as opposed to user code failing).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    /// The request was not acceptable (e.g. bytes that do not unpickle).
    BadRequest,
    /// The named object does not exist.
    NotFound,
    /// `consume` named a service this worker has not loaded.
    NotLoaded,
    /// `load_service` failed (its workspace or initCode).
    LoadFailed,
}

/// What a worker sends.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum WorkerMessage {
    /// The handshake, sent once the worker is warm.
    Hello {
        /// Must equal [`PROTOCOL_VERSION`].
        protocol: u32,
        /// `python` or `r`.
        language: String,
        /// The interpreter's version.
        runtime_version: String,
    },
    /// Output printed by the running code.
    Console {
        /// The text.
        text: String,
    },
    /// The answer to the current request.
    Result(ResultMessage),
}

/// The body of a `result` frame.
#[derive(Debug, Clone, Deserialize)]
pub struct ResultMessage {
    /// `false` when the request itself failed (see `kind` and `error`).
    pub ok: bool,
    /// Set when `ok` is false.
    #[serde(default)]
    pub kind: Option<FailureKind>,
    /// For `execute`: whether the user's code succeeded.
    #[serde(default)]
    pub success: Option<bool>,
    /// The protocol failure (when `ok` is false) or the user code's error (when `success` is
    /// false).
    #[serde(default)]
    pub error: Option<String>,
    /// For `execute`: the output values.
    #[serde(default)]
    pub outputs: Vec<NamedValue>,
    /// For `list_objects` and `load_workspace`: object names.
    #[serde(default)]
    pub names: Vec<String>,
    /// For `consume`: output values by name.
    #[serde(default)]
    pub named_outputs: serde_json::Map<String, Value>,
    /// For `consume`: declared output files, base64 or null.
    #[serde(default)]
    pub output_files: serde_json::Map<String, Value>,
    /// For `consume`: files the request created or modified.
    #[serde(default)]
    pub changed_files: Vec<String>,
}

/// Framing errors.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The worker closed its end.
    #[error("the worker closed the channel")]
    Closed,
    /// Reading or writing failed.
    #[error("channel I/O failed: {0}")]
    Io(#[from] std::io::Error),
    /// A frame did not parse.
    #[error("malformed frame: {0}")]
    Malformed(String),
    /// The worker announced a frame longer than the limit; nothing of it was read.
    #[error("a frame longer than {limit} bytes")]
    TooLarge {
        /// The limit, in bytes.
        limit: usize,
    },
}

/// Writes one frame.
pub async fn write_frame<W: AsyncWrite + Unpin>(
    writer: &mut W,
    header: &Request,
    blob: &[u8],
) -> Result<(), FrameError> {
    let header =
        serde_json::to_vec(header).map_err(|err| FrameError::Malformed(err.to_string()))?;
    let total = 4 + header.len() + blob.len();
    let total =
        u32::try_from(total).map_err(|_| FrameError::Malformed("frame too large".to_owned()))?;
    let mut prefix = [0u8; 8];
    prefix[..4].copy_from_slice(&total.to_be_bytes());
    prefix[4..].copy_from_slice(&(header.len() as u32).to_be_bytes());
    writer.write_all(&prefix).await?;
    writer.write_all(&header).await?;
    writer.write_all(blob).await?;
    writer.flush().await?;
    Ok(())
}

/// The codec that cuts the worker's stream into frame bodies (`[u32 header_len][header][blob]`),
/// refusing a frame longer than `max_frame_bytes` before reading any of it.
pub fn frame_codec(max_frame_bytes: usize) -> LengthDelimitedCodec {
    LengthDelimitedCodec::builder()
        .big_endian()
        .length_field_length(4)
        .max_frame_length(max_frame_bytes)
        .new_codec()
}

/// Parses a frame body cut by [`frame_codec`].
pub fn decode_frame(mut body: BytesMut) -> Result<(WorkerMessage, Vec<u8>), FrameError> {
    if body.len() < 4 {
        return Err(FrameError::Malformed(format!(
            "frame length {}",
            body.len()
        )));
    }
    let header_len = u32::from_be_bytes(body[..4].try_into().expect("4 bytes")) as usize;
    if header_len > body.len() - 4 {
        return Err(FrameError::Malformed(format!("header length {header_len}")));
    }
    let message = serde_json::from_slice(&body[4..4 + header_len])
        .map_err(|err| FrameError::Malformed(err.to_string()))?;
    let blob = body.split_off(4 + header_len).to_vec();
    Ok((message, blob))
}

/// What a read error of [`frame_codec`] means.
pub fn read_error(err: std::io::Error, max_frame_bytes: usize) -> FrameError {
    let too_long = err
        .get_ref()
        .is_some_and(|inner| inner.is::<LengthDelimitedCodecError>());
    match err.kind() {
        _ if too_long => FrameError::TooLarge {
            limit: max_frame_bytes,
        },
        // The stream ended inside a frame: the worker died while writing it.
        std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::Other => FrameError::Closed,
        _ => FrameError::Io(err),
    }
}

#[cfg(test)]
mod tests {
    use futures_util::StreamExt;
    use tokio_util::codec::FramedRead;

    use super::*;

    #[tokio::test]
    async fn a_request_frame_has_the_documented_layout() {
        let mut buffer = Vec::new();
        let request = Request::PutObject {
            name: "x".to_owned(),
        };
        write_frame(&mut buffer, &request, b"\x00\x01")
            .await
            .unwrap();
        let header = br#"{"type":"put_object","name":"x"}"#;
        let mut expected = ((4 + header.len() + 2) as u32).to_be_bytes().to_vec();
        expected.extend((header.len() as u32).to_be_bytes());
        expected.extend(header);
        expected.extend(b"\x00\x01");
        assert_eq!(buffer, expected);
    }

    async fn read_one(bytes: &[u8], limit: usize) -> Result<(WorkerMessage, Vec<u8>), FrameError> {
        let mut reader = FramedRead::new(bytes, frame_codec(limit));
        match reader.next().await {
            Some(Ok(body)) => decode_frame(body),
            Some(Err(err)) => Err(read_error(err, limit)),
            None => Err(FrameError::Closed),
        }
    }

    #[tokio::test]
    async fn a_worker_frame_parses_with_its_blob() {
        let header = br#"{"type":"result","ok":true,"names":["a"]}"#;
        let mut frame = ((4 + header.len() + 3) as u32).to_be_bytes().to_vec();
        frame.extend((header.len() as u32).to_be_bytes());
        frame.extend(header);
        frame.extend(b"xyz");
        let (message, blob) = read_one(&frame, 1024).await.unwrap();
        assert!(
            matches!(message, WorkerMessage::Result(ResultMessage { ok: true, ref names, .. }) if names == &["a"])
        );
        assert_eq!(blob, b"xyz");
    }

    #[tokio::test]
    async fn truncated_malformed_and_oversized_frames_are_refused() {
        assert!(matches!(read_one(b"", 1024).await, Err(FrameError::Closed)));
        assert!(matches!(
            read_one(b"\x00\x00\x00\x10abc", 1024).await,
            Err(FrameError::Closed)
        ));
        assert!(matches!(
            read_one(b"\x00\x00\x00\x01a", 1024).await,
            Err(FrameError::Malformed(_))
        ));
        // A worker announcing 2 GiB gets nothing allocated: the frame is refused unread.
        assert!(matches!(
            read_one(b"\x7f\xff\xff\xff", 1024).await,
            Err(FrameError::TooLarge { limit: 1024 })
        ));
    }
}
