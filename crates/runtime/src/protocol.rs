//! The host-to-worker protocol, version 2: typed messages both ways and their framing.
//!
//! A frame is `[u32 total][u32 header_len][header JSON][blob]`, big-endian, where `total` counts
//! everything after itself. The header is one of the enums below, tagged by `type`; the blob
//! carries raw bytes (serialized objects, workspaces, output files) without the cost of
//! base64. The worker speaks first with [`WorkerMessage::Hello`]; after that every [`Request`]
//! gets exactly one answer of the kind [`Request::answered_by`] names, or `failed`, possibly
//! preceded by `console` frames while code runs. Any other answer is a protocol error, never a
//! silent success.
//!
//! Both directions serialize and deserialize, so that a fake worker in Rust can stand on the
//! other side (`fake.rs`). The frames in `workers/protocol/` are golden: this module's tests,
//! the Python worker's and the R worker's read the same files.

use bytes::BytesMut;
use o16n_compute::{NamedValue, TypedName, TypedValue};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio_util::codec::{LengthDelimitedCodec, LengthDelimitedCodecError};

/// The protocol version this host speaks; a worker announcing another is refused.
pub const PROTOCOL_VERSION: u32 = 2;

/// What the host asks of a worker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Request {
    /// Bind `inputs` as globals, run `code`, read `outputs` back. Answered by `executed`.
    Execute {
        /// The code to run.
        code: String,
        /// Values bound as globals before the code runs.
        inputs: Vec<NamedValue>,
        /// Globals read back after the code ran.
        outputs: Vec<String>,
    },
    /// The names of the workspace's objects. Answered by `object_names`.
    ListObjects,
    /// One object, serialized in the runtime's own format. Answered by `object` (blob).
    GetObject {
        /// The object's name.
        name: String,
    },
    /// Deserialize the request's blob into an object. Answered by `done`.
    PutObject {
        /// The object's name.
        name: String,
    },
    /// Remove an object. Answered by `done`.
    DeleteObject {
        /// The object's name.
        name: String,
    },
    /// The whole workspace, serialized. Answered by `workspace` (blob).
    SaveWorkspace,
    /// Merge a serialized workspace (the request's blob) into the workspace. Answered by
    /// `workspace_loaded`.
    LoadWorkspace,
    /// Load a service: the host wrote its files into `directory`; merge the serialized
    /// workspace in the request's blob into a fresh namespace, run `init_code`. The directory is
    /// relative to the worker's working directory, which is where the worker stands between
    /// requests (in a sandbox the host's paths mean nothing). Answered by `service_loaded`.
    LoadService {
        /// The service revision's key.
        key: String,
        /// Runs once, after the workspace is loaded.
        init_code: Option<String>,
        /// The service's directory, relative to the working directory.
        directory: String,
    },
    /// Forget a loaded service. Answered by `done`.
    UnloadService {
        /// The service revision's key.
        key: String,
    },
    /// Run a loaded service's code for one request. Answered by `consumed`.
    Consume {
        /// The service revision's key.
        key: String,
        /// The code.
        code: String,
        /// Typed inputs, bound as globals.
        inputs: Vec<TypedValue>,
        /// Typed outputs, read back.
        outputs: Vec<TypedName>,
        /// Files returned with the answer, their bytes in its blob.
        output_files: Vec<String>,
    },
    /// Exit cleanly. Answered by `done`.
    Shutdown,
}

/// The kinds of answers, as [`Request::answered_by`] names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnswerKind {
    /// [`WorkerMessage::Executed`].
    Executed,
    /// [`WorkerMessage::ObjectNames`].
    ObjectNames,
    /// [`WorkerMessage::Object`].
    Object,
    /// [`WorkerMessage::Done`].
    Done,
    /// [`WorkerMessage::Workspace`].
    Workspace,
    /// [`WorkerMessage::WorkspaceLoaded`].
    WorkspaceLoaded,
    /// [`WorkerMessage::ServiceLoaded`].
    ServiceLoaded,
    /// [`WorkerMessage::Consumed`].
    Consumed,
}

impl Request {
    /// The one kind of answer (besides `failed`) this request may get.
    pub fn answered_by(&self) -> AnswerKind {
        match self {
            Request::Execute { .. } => AnswerKind::Executed,
            Request::ListObjects => AnswerKind::ObjectNames,
            Request::GetObject { .. } => AnswerKind::Object,
            Request::PutObject { .. }
            | Request::DeleteObject { .. }
            | Request::UnloadService { .. }
            | Request::Shutdown => AnswerKind::Done,
            Request::SaveWorkspace => AnswerKind::Workspace,
            Request::LoadWorkspace => AnswerKind::WorkspaceLoaded,
            Request::LoadService { .. } => AnswerKind::ServiceLoaded,
            Request::Consume { .. } => AnswerKind::Consumed,
        }
    }
}

/// Why a request failed at the protocol level (as opposed to user code failing).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
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

/// A declared output file in a `consumed` answer: its bytes follow in the blob, in the order
/// of the list, unless the code did not write it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputFileEntry {
    /// The file name.
    pub name: String,
    /// Its length in the blob, or `None` when the file was not written.
    pub size: Option<u64>,
}

/// What a worker sends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
        /// How many bytes of output the worker dropped since its last message, past its limit
        /// of console output per execution.
        #[serde(default, skip_serializing_if = "is_zero")]
        dropped: u64,
    },
    /// The answer to `execute`.
    Executed {
        /// Whether the user's code succeeded.
        success: bool,
        /// Its error when it did not.
        error: String,
        /// The requested outputs (empty when the code failed).
        outputs: Vec<NamedValue>,
    },
    /// The answer to `list_objects`.
    ObjectNames {
        /// The objects' names.
        names: Vec<String>,
    },
    /// The answer to `get_object`; the object is the blob.
    Object,
    /// The answer to requests that return nothing.
    Done,
    /// The answer to `save_workspace`; the workspace is the blob.
    Workspace,
    /// The answer to `load_workspace`.
    WorkspaceLoaded {
        /// The names of the objects loaded.
        names: Vec<String>,
    },
    /// The answer to `load_service`.
    ServiceLoaded,
    /// The answer to `consume`.
    Consumed {
        /// Whether the service's code succeeded.
        success: bool,
        /// Its error when it did not.
        error: String,
        /// The declared outputs by name.
        outputs: Map<String, Value>,
        /// The declared output files; their bytes are the blob.
        output_files: Vec<OutputFileEntry>,
        /// Files the request created or modified.
        changed_files: Vec<String>,
    },
    /// A request failed at the protocol level.
    Failed {
        /// Why.
        kind: FailureKind,
        /// In words.
        error: String,
    },
}

impl WorkerMessage {
    /// Whether this message answers a request of `kind`.
    pub fn answers(&self, kind: AnswerKind) -> bool {
        matches!(
            (self, kind),
            (WorkerMessage::Executed { .. }, AnswerKind::Executed)
                | (WorkerMessage::ObjectNames { .. }, AnswerKind::ObjectNames)
                | (WorkerMessage::Object, AnswerKind::Object)
                | (WorkerMessage::Done, AnswerKind::Done)
                | (WorkerMessage::Workspace, AnswerKind::Workspace)
                | (
                    WorkerMessage::WorkspaceLoaded { .. },
                    AnswerKind::WorkspaceLoaded
                )
                | (WorkerMessage::ServiceLoaded, AnswerKind::ServiceLoaded)
                | (WorkerMessage::Consumed { .. }, AnswerKind::Consumed)
                | (WorkerMessage::Failed { .. }, _)
        )
    }
}

/// Framing errors.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The other side closed its end.
    #[error("the channel was closed")]
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

/// Whether a count is zero, so that a field left at zero stays out of the frame.
fn is_zero(count: &u64) -> bool {
    *count == 0
}

/// A frame's bytes: `header` serialized, followed by `blob`.
pub fn encode_frame<T: Serialize>(header: &T, blob: &[u8]) -> Result<Vec<u8>, FrameError> {
    let header =
        serde_json::to_vec(header).map_err(|err| FrameError::Malformed(err.to_string()))?;
    let total = u32::try_from(4 + header.len() + blob.len())
        .map_err(|_| FrameError::Malformed("frame too large".to_owned()))?;
    let mut frame = Vec::with_capacity(8 + header.len() + blob.len());
    frame.extend(total.to_be_bytes());
    frame.extend((header.len() as u32).to_be_bytes());
    frame.extend(header);
    frame.extend(blob);
    Ok(frame)
}

/// Writes one frame; the blob is written as it is, not copied.
pub async fn write_frame<W: AsyncWrite + Unpin, T: Serialize>(
    writer: &mut W,
    header: &T,
    blob: &[u8],
) -> Result<(), FrameError> {
    let head = encode_frame(header, &[])?;
    let total = u32::try_from(head.len() - 4 + blob.len())
        .map_err(|_| FrameError::Malformed("frame too large".to_owned()))?;
    writer.write_all(&total.to_be_bytes()).await?;
    writer.write_all(&head[4..]).await?;
    writer.write_all(blob).await?;
    writer.flush().await?;
    Ok(())
}

/// The codec that cuts a stream into frame bodies (`[u32 header_len][header][blob]`), refusing
/// a frame longer than `max_frame_bytes` before reading any of it.
pub fn frame_codec(max_frame_bytes: usize) -> LengthDelimitedCodec {
    LengthDelimitedCodec::builder()
        .big_endian()
        .length_field_length(4)
        .max_frame_length(max_frame_bytes)
        .new_codec()
}

/// Parses a frame body cut by [`frame_codec`].
pub fn decode_frame<T: for<'de> Deserialize<'de>>(
    mut body: BytesMut,
) -> Result<(T, Vec<u8>), FrameError> {
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
    use std::path::PathBuf;

    use futures_util::StreamExt;
    use o16n_types::ParameterType;
    use serde_json::json;
    use tokio_util::codec::FramedRead;

    use super::*;

    async fn read_one<T: for<'de> Deserialize<'de>>(
        bytes: &[u8],
        limit: usize,
    ) -> Result<(T, Vec<u8>), FrameError> {
        let mut reader = FramedRead::new(bytes, frame_codec(limit));
        match reader.next().await {
            Some(Ok(body)) => decode_frame(body),
            Some(Err(err)) => Err(read_error(err, limit)),
            None => Err(FrameError::Closed),
        }
    }

    #[tokio::test]
    async fn truncated_malformed_and_oversized_frames_are_refused() {
        let refused = |result: Result<(WorkerMessage, Vec<u8>), FrameError>| result.err();
        assert!(matches!(
            refused(read_one(b"", 1024).await),
            Some(FrameError::Closed)
        ));
        assert!(matches!(
            refused(read_one(b"\x00\x00\x00\x10abc", 1024).await),
            Some(FrameError::Closed)
        ));
        assert!(matches!(
            refused(read_one(b"\x00\x00\x00\x01a", 1024).await),
            Some(FrameError::Malformed(_))
        ));
        // A worker announcing 2 GiB gets nothing allocated: the frame is refused unread.
        assert!(matches!(
            refused(read_one(b"\x7f\xff\xff\xff", 1024).await),
            Some(FrameError::TooLarge { limit: 1024 })
        ));
    }

    #[test]
    fn every_request_expects_one_kind_of_answer_or_a_failure() {
        let request = Request::GetObject {
            name: "x".to_owned(),
        };
        assert!(WorkerMessage::Object.answers(request.answered_by()));
        assert!(!WorkerMessage::Done.answers(request.answered_by()));
        let failure = WorkerMessage::Failed {
            kind: FailureKind::NotFound,
            error: "object `x` not found".to_owned(),
        };
        assert!(failure.answers(request.answered_by()));
    }

    /// The golden frames shared with the workers' own tests: each is a file of frame bytes,
    /// and `frames.json` says what it holds.
    fn golden() -> (PathBuf, Vec<Value>) {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../workers/protocol");
        let index = std::fs::read_to_string(dir.join("frames.json")).unwrap();
        let cases: Value = serde_json::from_str(&index).unwrap();
        (dir, cases.as_array().unwrap().clone())
    }

    fn golden_blob(case: &Value) -> Vec<u8> {
        let hex = case["blob_hex"].as_str().unwrap_or("");
        (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect()
    }

    #[tokio::test]
    async fn the_golden_frames_decode_to_their_typed_messages_and_encode_back() {
        let (dir, cases) = golden();
        assert!(cases.len() >= 20, "{} golden frames", cases.len());
        for case in cases {
            let name = case["name"].as_str().unwrap();
            let bytes = std::fs::read(dir.join(format!("{name}.frame"))).unwrap();
            let blob = golden_blob(&case);
            let encoded = match case["from"].as_str().unwrap() {
                "host" => {
                    let (request, read_blob): (Request, Vec<u8>) =
                        read_one(&bytes, 1 << 20).await.unwrap();
                    assert_eq!(
                        serde_json::to_value(&request).unwrap(),
                        case["header"],
                        "{name}"
                    );
                    assert_eq!(read_blob, blob, "{name}");
                    encode_frame(&request, &blob).unwrap()
                }
                _ => {
                    let (message, read_blob): (WorkerMessage, Vec<u8>) =
                        read_one(&bytes, 1 << 20).await.unwrap();
                    assert_eq!(
                        serde_json::to_value(&message).unwrap(),
                        case["header"],
                        "{name}"
                    );
                    assert_eq!(read_blob, blob, "{name}");
                    encode_frame(&message, &blob).unwrap()
                }
            };
            assert_eq!(encoded, bytes, "{name} does not encode to its golden bytes");
        }
    }

    #[test]
    fn typed_values_carry_the_reference_type_names() {
        let request = Request::Consume {
            key: "k".to_owned(),
            code: "y <- x".to_owned(),
            inputs: vec![TypedValue {
                name: "x".to_owned(),
                kind: ParameterType::Vector,
                value: json!([1, 2]),
            }],
            outputs: vec![TypedName {
                name: "y".to_owned(),
                kind: ParameterType::Vector,
            }],
            output_files: vec![],
        };
        let header = serde_json::to_value(&request).unwrap();
        assert_eq!(header["inputs"][0]["type"], "vector");
        assert_eq!(serde_json::from_value::<Request>(header).unwrap(), request);
    }
}
