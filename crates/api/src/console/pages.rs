//! What every console page shares: the embedded assets (the stylesheet and the vendored htmx
//! 2.0.11, BSD-0 licensed) and the formatting of times and sizes.

use axum::extract::Path;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use o16n_types::Code;
use serde_json::{Map, Value};

use super::PageError;

const STYLESHEET: &str = include_str!("../../assets/console/console.css");
const HTMX: &str = include_str!("../../assets/console/htmx.min.js");

/// `GET /console/assets/{file}`: the files are part of the binary and never change while it
/// runs, so browsers may keep them for a day.
pub(super) async fn asset(Path(file): Path<String>) -> Response {
    let (content_type, body) = match file.as_str() {
        "console.css" => ("text/css; charset=utf-8", STYLESHEET),
        "htmx.min.js" => ("text/javascript; charset=utf-8", HTMX),
        _ => return PageError::new(Code::NotFound, "there is no such file").into_response(),
    };
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "public, max-age=86400"),
        ],
        body,
    )
        .into_response()
}

/// A file's name and a `data:` URI of its content.
pub(super) type DataLink = (String, String);

/// Files as `data:` links, from their base64 contents (`null` contents are left out): images
/// a browser shows inline first, every other file second. SVG is not shown inline, since a
/// script in it would run in the console's origin.
pub(super) fn data_links(files: Map<String, Value>) -> (Vec<DataLink>, Vec<DataLink>) {
    let mut images = Vec::new();
    let mut others = Vec::new();
    for (name, content) in files {
        let Value::String(base64) = content else {
            continue;
        };
        let extension = name
            .rsplit_once('.')
            .map(|(_, extension)| extension.to_ascii_lowercase());
        let image = match extension.as_deref() {
            Some("png") => Some("image/png"),
            Some("jpg" | "jpeg") => Some("image/jpeg"),
            Some("gif") => Some("image/gif"),
            Some("webp") => Some("image/webp"),
            _ => None,
        };
        match image {
            Some(mime) => images.push((name, format!("data:{mime};base64,{base64}"))),
            None => others.push((
                name,
                format!("data:application/octet-stream;base64,{base64}"),
            )),
        }
    }
    (images, others)
}

/// The name of a named environment, or `default` for the runtime's own.
pub(super) fn environment_name(environment: Option<&str>) -> String {
    environment.unwrap_or("default").to_owned()
}

/// How long ago `unix_seconds` was, in words: "12 s", "5 min", "3 h", "2 d".
pub(super) fn age(unix_seconds: i64, now: i64) -> String {
    let seconds = (now - unix_seconds).max(0);
    match seconds {
        0..60 => format!("{seconds} s"),
        60..3600 => format!("{} min", seconds / 60),
        3600..86400 => format!("{} h", seconds / 3600),
        _ => format!("{} d", seconds / 86400),
    }
}

/// A size in bytes, in words: "512 B", "3.2 KiB", "1.5 MiB".
pub(super) fn size(bytes: i64) -> String {
    let bytes = bytes.max(0) as f64;
    if bytes < 1024.0 {
        format!("{bytes} B")
    } else if bytes < 1024.0 * 1024.0 {
        format!("{:.1} KiB", bytes / 1024.0)
    } else {
        format!("{:.1} MiB", bytes / (1024.0 * 1024.0))
    }
}

/// The time now, Unix seconds.
pub(super) fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_and_sizes_read_as_words() {
        assert_eq!(age(100, 112), "12 s");
        assert_eq!(age(0, 300), "5 min");
        assert_eq!(age(0, 3 * 3600 + 5), "3 h");
        assert_eq!(age(0, 2 * 86400), "2 d");
        assert_eq!(age(10, 0), "0 s");
        assert_eq!(size(512), "512 B");
        assert_eq!(size(3277), "3.2 KiB");
        assert_eq!(size(1572864), "1.5 MiB");
    }

    #[test]
    fn images_are_shown_and_other_files_downloaded() {
        let files = Map::from_iter([
            ("plot.PNG".to_owned(), Value::String("iVBO".to_owned())),
            ("evil.svg".to_owned(), Value::String("PHN2Zz4=".to_owned())),
            ("gone.txt".to_owned(), Value::Null),
        ]);
        let (images, others) = data_links(files);
        assert_eq!(
            images,
            [(
                "plot.PNG".to_owned(),
                "data:image/png;base64,iVBO".to_owned()
            )]
        );
        assert_eq!(
            others,
            [(
                "evil.svg".to_owned(),
                "data:application/octet-stream;base64,PHN2Zz4=".to_owned()
            )]
        );
    }
}
