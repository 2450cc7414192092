//! A fake worker for tests: a task that speaks protocol version 2 over an in-memory pipe, so
//! that pools, sessions and service scheduling can be tested without Python or R.
//!
//! It does what the code it is given says, one word per line: `sleep MS` waits (on tokio's
//! clock, so a test can pause time), `fail` makes the execution unsuccessful, `exit` ends the
//! worker as a crash would, `print TEXT` writes console output, `misbehave` answers with a
//! message of the wrong kind. Anything else succeeds and binds every requested output to its
//! name. A service's `initCode` runs the same way when it loads (so `sleep MS` makes a slow
//! load); one that fails does not load. An interrupt makes a running `sleep` stop as cancelled.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use o16n_compute::NamedValue;
use o16n_types::RuntimeType;
use serde_json::{Map, Value};
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinHandle;
use tokio_util::codec::FramedRead;

use crate::RuntimeError;
use crate::protocol::{self, FailureKind, OutputFileEntry, Request, WorkerMessage};
use crate::workdir::WorkDir;
use crate::worker::{Frame, PendingWorker, WorkerHandle, WorkerProcess};

/// Starts a fake worker with a fresh working directory under `work_root`.
pub(crate) async fn spawn(
    runtime: RuntimeType,
    work_root: &std::path::Path,
) -> Result<WorkerHandle, RuntimeError> {
    let id = uuid::Uuid::new_v4().simple().to_string();
    let workdir = WorkDir::create(&work_root.join(&id), None)?;
    let (host_side, worker_side) = tokio::io::duplex(1 << 16);
    let (host_reads, host_writes) = tokio::io::split(host_side);
    let interrupts = Arc::new(Notify::new());
    let task = tokio::spawn(serve(worker_side, interrupts.clone()));
    let (frame_sender, mut frames) = mpsc::channel::<Frame>(64);
    tokio::spawn(async move {
        let mut reader = FramedRead::new(host_reads, protocol::frame_codec(1 << 30));
        loop {
            let frame = match reader.next().await {
                Some(Ok(body)) => protocol::decode_frame(body),
                Some(Err(err)) => Err(protocol::read_error(err, 1 << 30)),
                None => Err(protocol::FrameError::Closed),
            };
            let end = frame.is_err();
            if frame_sender.send(frame).await.is_err() || end {
                return;
            }
        }
    });
    match frames.recv().await {
        Some(Ok((WorkerMessage::Hello { .. }, _))) => {}
        _ => {
            return Err(RuntimeError::RuntimeUnavailable(
                "the fake worker did not say hello".to_owned(),
            ));
        }
    }
    let process = Box::new(FakeProcess {
        task: Some(task),
        interrupts,
    });
    Ok(PendingWorker::fake(runtime, workdir, process, Box::new(host_writes), frames).start(id))
}

struct FakeProcess {
    task: Option<JoinHandle<()>>,
    interrupts: Arc<Notify>,
}

#[async_trait::async_trait]
impl WorkerProcess for FakeProcess {
    fn interrupt(&self) {
        self.interrupts.notify_waiters();
    }

    fn kill(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }

    async fn wait(&mut self, patience: Duration) -> String {
        match self.task.take() {
            Some(task) => match tokio::time::timeout(patience, task).await {
                Ok(_) => "ended".to_owned(),
                Err(_) => "still running but not answering".to_owned(),
            },
            None => "ended".to_owned(),
        }
    }
}

/// What `run` returns as the error of code that asks for a wrong answer.
const MISBEHAVE: &str = "misbehave";

async fn send<W: AsyncWrite + Unpin>(writer: &mut W, message: &WorkerMessage, blob: &[u8]) {
    let _ = protocol::write_frame(writer, message, blob).await;
}

/// What running `code` does; `None` when the worker must end (`exit`).
async fn run(code: &str, interrupts: &Notify, console: &mut Vec<String>) -> Option<(bool, String)> {
    for line in code.lines() {
        let mut words = line.split_whitespace();
        match (words.next(), words.next()) {
            (Some("sleep"), Some(ms)) => {
                let ms: u64 = ms.parse().unwrap_or(0);
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_millis(ms)) => {}
                    () = interrupts.notified() => {
                        return Some((false, "the execution was cancelled".to_owned()));
                    }
                }
            }
            (Some("fail"), _) => return Some((false, "Error: fail".to_owned())),
            (Some("exit"), _) => return None,
            (Some("misbehave"), _) => return Some((true, MISBEHAVE.to_owned())),
            (Some("print"), _) => console.push(line["print".len()..].trim().to_owned()),
            _ => {}
        }
    }
    Some((true, String::new()))
}

async fn serve(channel: tokio::io::DuplexStream, interrupts: Arc<Notify>) {
    let (reader, mut writer) = tokio::io::split(channel);
    let hello = WorkerMessage::Hello {
        protocol: protocol::PROTOCOL_VERSION,
        language: "fake".to_owned(),
        runtime_version: "0".to_owned(),
    };
    send(&mut writer, &hello, &[]).await;
    let mut requests = FramedRead::new(reader, protocol::frame_codec(1 << 30));
    let mut loaded = std::collections::HashSet::new();
    while let Some(Ok(body)) = requests.next().await {
        let Ok((request, _blob)) = protocol::decode_frame::<Request>(body) else {
            return;
        };
        let mut console = Vec::new();
        let answer = match request {
            Request::Execute { code, outputs, .. } => {
                let Some((success, error)) = run(&code, &interrupts, &mut console).await else {
                    return;
                };
                if error == MISBEHAVE {
                    send(&mut writer, &WorkerMessage::Done, &[]).await;
                    continue;
                }
                let outputs = if success {
                    outputs
                        .into_iter()
                        .map(|name| NamedValue {
                            value: Value::String(name.clone()),
                            name,
                        })
                        .collect()
                } else {
                    Vec::new()
                };
                WorkerMessage::Executed {
                    success,
                    error,
                    outputs,
                }
            }
            Request::LoadService { key, init_code, .. } => {
                let init_code = init_code.unwrap_or_default();
                let Some((success, error)) = run(&init_code, &interrupts, &mut console).await
                else {
                    return;
                };
                if success {
                    loaded.insert(key);
                    WorkerMessage::ServiceLoaded
                } else {
                    WorkerMessage::Failed {
                        kind: FailureKind::LoadFailed,
                        error: format!("initCode failed: {error}"),
                    }
                }
            }
            Request::Consume {
                key,
                code,
                outputs,
                output_files,
                ..
            } => {
                if !loaded.contains(&key) {
                    WorkerMessage::Failed {
                        kind: FailureKind::NotLoaded,
                        error: "service not loaded".to_owned(),
                    }
                } else {
                    let Some((success, error)) = run(&code, &interrupts, &mut console).await else {
                        return;
                    };
                    let outputs: Map<String, Value> = outputs
                        .into_iter()
                        .map(|output| (output.name.clone(), Value::String(output.name)))
                        .collect();
                    WorkerMessage::Consumed {
                        success,
                        error,
                        outputs,
                        output_files: output_files
                            .into_iter()
                            .map(|name| OutputFileEntry { name, size: None })
                            .collect(),
                        changed_files: Vec::new(),
                    }
                }
            }
            Request::UnloadService { key } => {
                loaded.remove(&key);
                WorkerMessage::Done
            }
            Request::ListObjects => WorkerMessage::ObjectNames { names: Vec::new() },
            Request::SaveWorkspace => WorkerMessage::Workspace,
            Request::LoadWorkspace => WorkerMessage::WorkspaceLoaded { names: Vec::new() },
            Request::GetObject { name } => WorkerMessage::Failed {
                kind: FailureKind::NotFound,
                error: format!("object `{name}` not found"),
            },
            Request::PutObject { .. } | Request::DeleteObject { .. } => WorkerMessage::Done,
            Request::Shutdown => {
                send(&mut writer, &WorkerMessage::Done, &[]).await;
                return;
            }
        };
        for text in console {
            send(
                &mut writer,
                &WorkerMessage::Console { text, dropped: 0 },
                &[],
            )
            .await;
        }
        send(&mut writer, &answer, &[]).await;
        let _ = writer.flush().await;
    }
}
