//! Reading what a worker or a build writes without letting its size decide the server's memory.
//!
//! User code chooses how much it prints and how long its lines are; a server that reads
//! "a line" or "everything" grows with it (a worker printing one endless line to stderr grew the
//! server by gigabytes). [`BoundedLines`] reads lines of at most a fixed length, skipping the
//! rest of a longer line, and [`read_head_and_tail`] keeps the start and the end of a stream and
//! drops the middle.

use std::collections::VecDeque;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, BufReader};

/// The lines of a stream, each cut to at most `max_bytes`.
pub(crate) struct BoundedLines<R> {
    reader: BufReader<R>,
    max_bytes: usize,
    /// A suffix that keeps its meaning on a cut line: when the part skipped ends with it, the
    /// cut line ends with it too (the R console's end marker).
    keep_suffix: Option<&'static str>,
}

impl<R: AsyncRead + Unpin> BoundedLines<R> {
    pub(crate) fn new(reader: R, max_bytes: usize, keep_suffix: Option<&'static str>) -> Self {
        BoundedLines {
            reader: BufReader::new(reader),
            max_bytes,
            keep_suffix,
        }
    }

    /// The next line without its newline, or `None` at the end of the stream (or on an error,
    /// which ends it too). A cut line says how many bytes were skipped.
    pub(crate) async fn next_line(&mut self) -> Option<String> {
        let suffix_len = self.keep_suffix.map_or(0, str::len);
        let mut line = Vec::new();
        let mut skipped = 0_usize;
        // The last bytes skipped, as many as the kept suffix is long.
        let mut skipped_end: VecDeque<u8> = VecDeque::with_capacity(suffix_len);
        let mut ended = false;
        loop {
            let buffer = match self.reader.fill_buf().await {
                Ok(buffer) => buffer,
                Err(_) => return None,
            };
            if buffer.is_empty() {
                if line.is_empty() && skipped == 0 {
                    return None;
                }
                break;
            }
            let (chunk, consumed) = match buffer.iter().position(|&byte| byte == b'\n') {
                Some(newline) => {
                    ended = true;
                    (&buffer[..newline], newline + 1)
                }
                None => (buffer, buffer.len()),
            };
            let room = self.max_bytes - line.len();
            let taken = room.min(chunk.len());
            line.extend_from_slice(&chunk[..taken]);
            for &byte in &chunk[taken..] {
                if suffix_len > 0 {
                    if skipped_end.len() == suffix_len {
                        skipped_end.pop_front();
                    }
                    skipped_end.push_back(byte);
                }
            }
            skipped += chunk.len() - taken;
            self.reader.consume(consumed);
            if ended {
                break;
            }
        }
        let mut text = String::from_utf8_lossy(&line).into_owned();
        if skipped > 0 {
            text.push_str(&format!(
                " [o16n: {skipped} more bytes of this line were dropped]"
            ));
            if let Some(suffix) = self.keep_suffix
                && skipped_end.iter().copied().eq(suffix.bytes())
            {
                text.push_str(suffix);
            }
        }
        Some(text)
    }
}

/// Reads a stream to its end, keeping its first `head` and last `tail` bytes; the text says
/// how much of the middle was dropped.
pub(crate) async fn read_head_and_tail(
    mut reader: impl AsyncRead + Unpin,
    head: usize,
    tail: usize,
) -> std::io::Result<String> {
    let mut start = Vec::new();
    let mut end: VecDeque<u8> = VecDeque::new();
    let mut dropped = 0_u64;
    let mut buffer = vec![0_u8; 64 * 1024];
    loop {
        let read = reader.read(&mut buffer).await?;
        if read == 0 {
            break;
        }
        let mut chunk = &buffer[..read];
        let into_start = (head - start.len()).min(chunk.len());
        start.extend_from_slice(&chunk[..into_start]);
        chunk = &chunk[into_start..];
        for &byte in chunk {
            if end.len() == tail {
                end.pop_front();
                dropped += 1;
            }
            if tail > 0 {
                end.push_back(byte);
            } else {
                dropped += 1;
            }
        }
    }
    let mut text = String::from_utf8_lossy(&start).into_owned();
    if dropped > 0 {
        text.push_str(&format!(
            "\n[o16n: {dropped} bytes of output were dropped here]\n"
        ));
    }
    let (first, second) = end.as_slices();
    text.push_str(&String::from_utf8_lossy(&[first, second].concat()));
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn long_lines_are_cut_and_the_rest_of_them_skipped() {
        let mut input = b"short\n".to_vec();
        input.extend(std::iter::repeat_n(b'x', 100_000));
        input.extend_from_slice(b"\nafter\nno newline at the end");
        let mut lines = BoundedLines::new(&input[..], 10, None);
        assert_eq!(lines.next_line().await.unwrap(), "short");
        assert_eq!(
            lines.next_line().await.unwrap(),
            "xxxxxxxxxx [o16n: 99990 more bytes of this line were dropped]"
        );
        assert_eq!(lines.next_line().await.unwrap(), "after");
        assert_eq!(
            lines.next_line().await.unwrap(),
            "no newline [o16n: 11 more bytes of this line were dropped]"
        );
        assert_eq!(lines.next_line().await, None);
    }

    #[tokio::test]
    async fn a_kept_suffix_survives_the_cut() {
        let mut input = vec![b'y'; 50_000];
        input.extend_from_slice("END\n".as_bytes());
        let mut lines = BoundedLines::new(&input[..], 4, Some("END"));
        let line = lines.next_line().await.unwrap();
        assert!(line.starts_with("yyyy ["), "{line}");
        assert!(line.ends_with("END"), "{line}");
    }

    #[tokio::test]
    async fn a_stream_keeps_its_head_and_tail() {
        let input: Vec<u8> = (0..10_000)
            .flat_map(|n: u32| format!("{n}\n").into_bytes())
            .collect();
        let text = read_head_and_tail(&input[..], 6, 10).await.unwrap();
        assert!(text.starts_with("0\n1\n2\n"), "{text}");
        assert!(text.ends_with("9998\n9999\n"), "{text}");
        assert!(text.contains("bytes of output were dropped here"), "{text}");
        let short = read_head_and_tail(&b"all of it"[..], 6, 10).await.unwrap();
        assert_eq!(short, "all of it");
    }
}
