//! Reading the files `[authentication]` names, with errors that name the
//! file and the line.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::limits::{AUTHN_FILE_LINES_MAX, AUTHN_FILE_MAX_BYTES};

/// Why a password file, ACL file or the user database was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileError {
    pub path: PathBuf,
    /// 1-based; `None` when the whole file is at fault (unreadable, too
    /// large).
    pub line: Option<usize>,
    pub message: String,
}

impl fmt::Display for FileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}, line {line}: {}", self.path.display(), self.message),
            None => write!(f, "{}: {}", self.path.display(), self.message),
        }
    }
}

impl std::error::Error for FileError {}

/// An error of one line of `path`.
pub fn line_error(path: &Path, line: usize, message: impl Into<String>) -> FileError {
    FileError {
        path: path.to_path_buf(),
        line: Some(line),
        message: message.into(),
    }
}

/// Reads `path` as UTF-8 text within [`AUTHN_FILE_MAX_BYTES`] and
/// [`AUTHN_FILE_LINES_MAX`] lines.
pub fn read_text(path: &Path) -> Result<String, FileError> {
    let whole = |message: String| FileError {
        path: path.to_path_buf(),
        line: None,
        message,
    };
    let meta = std::fs::metadata(path).map_err(|e| whole(format!("cannot read it: {e}")))?;
    if meta.len() > AUTHN_FILE_MAX_BYTES {
        return Err(whole(format!(
            "{} bytes; at most {AUTHN_FILE_MAX_BYTES} are read (limits::AUTHN_FILE_MAX_BYTES)",
            meta.len()
        )));
    }
    let text = std::fs::read_to_string(path).map_err(|e| whole(format!("cannot read it: {e}")))?;
    let lines = text.lines().count();
    if lines > AUTHN_FILE_LINES_MAX {
        return Err(whole(format!(
            "{lines} lines; at most {AUTHN_FILE_LINES_MAX} (limits::AUTHN_FILE_LINES_MAX)"
        )));
    }
    Ok(text)
}

/// Lines worth parsing with their 1-based numbers: trailing `\r` and
/// surrounding blanks removed, empty lines and `#` comments skipped (as
/// Mosquitto does).
pub fn content_lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines()
        .enumerate()
        .map(|(i, line)| (i + 1, line.trim()))
        .filter(|(_, line)| !line.is_empty() && !line.starts_with('#'))
}
