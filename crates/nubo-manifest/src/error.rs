//! Errors that point at the place in `nubo.toml` that caused them.
//!
//! A user fixing a definition file wants the same thing a compiler gives:
//! `file:line:col`, what is wrong, and what to do about it. Validation keeps
//! going after the first problem so one run of `nubo check` lists them all.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// One problem found in a definition file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// 1-based line, 0 when the problem has no position (e.g. unreadable file).
    pub line: usize,
    /// 1-based column in characters.
    pub col: usize,
    pub message: String,
    pub hint: Option<String>,
}

/// Everything wrong with one definition file.
#[derive(Debug, Clone, thiserror::Error)]
pub struct ManifestError {
    pub path: PathBuf,
    pub diagnostics: Vec<Diagnostic>,
}

impl fmt::Display for ManifestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.diagnostics.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            if d.line == 0 {
                write!(f, "{}: {}", self.path.display(), d.message)?;
            } else {
                write!(
                    f,
                    "{}:{}:{}: {}",
                    self.path.display(),
                    d.line,
                    d.col,
                    d.message
                )?;
            }
            if let Some(hint) = &d.hint {
                write!(f, "\n  hint: {hint}")?;
            }
        }
        Ok(())
    }
}

/// Collects diagnostics while walking a parsed file; turns byte spans into
/// line and column against the file's text.
pub(crate) struct Reporter<'a> {
    text: &'a str,
    path: &'a Path,
    pub(crate) diagnostics: Vec<Diagnostic>,
}

impl<'a> Reporter<'a> {
    pub(crate) fn new(path: &'a Path, text: &'a str) -> Self {
        Self {
            text,
            path,
            diagnostics: Vec::new(),
        }
    }

    pub(crate) fn error(&mut self, span: Range<usize>, message: impl std::fmt::Display) {
        self.push(span, message.to_string(), None);
    }

    pub(crate) fn error_hint(
        &mut self,
        span: Range<usize>,
        message: impl std::fmt::Display,
        hint: impl Into<String>,
    ) {
        self.push(span, message.to_string(), Some(hint.into()));
    }

    fn push(&mut self, span: Range<usize>, message: String, hint: Option<String>) {
        let (line, col) = line_col(self.text, span.start);
        self.diagnostics.push(Diagnostic {
            line,
            col,
            message,
            hint,
        });
    }

    /// `PATH:L:C`, for messages that refer to another place in the file:
    /// the same path as the diagnostic's own, so both open in an editor.
    pub(crate) fn location(&self, span: Range<usize>) -> String {
        let (line, col) = line_col(self.text, span.start);
        format!("{}:{line}:{col}", self.path.display())
    }

    pub(crate) fn finish(self) -> Result<(), ManifestError> {
        if self.diagnostics.is_empty() {
            Ok(())
        } else {
            Err(ManifestError {
                path: self.path.to_path_buf(),
                diagnostics: self.diagnostics,
            })
        }
    }
}

/// 1-based line and character column of a byte offset.
pub(crate) fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
    let col = before
        .get(line_start..)
        .map(|s| s.chars().count())
        .unwrap_or(0)
        + 1;
    (line, col)
}

pub(crate) const DOCS_HINT: &str = "see docs/nubo-toml.md for every key nubo.toml accepts";

/// A file the TOML parser or serde refused: its message, reworded where
/// it speaks Rust ("expected i64") or leaves out what it means
/// ("duplicate key" without the key), and a hint.
pub(crate) fn parse_error(path: &Path, text: &str, e: &toml::de::Error) -> ManifestError {
    ManifestError {
        path: path.to_path_buf(),
        diagnostics: vec![diagnostic(text, e)],
    }
}

/// The diagnostic for one error of the TOML parser or serde in `text`.
pub(crate) fn diagnostic(text: &str, e: &toml::de::Error) -> Diagnostic {
    let span = e.span();
    let (line, col) = span
        .clone()
        .map(|s| line_col(text, s.start))
        .unwrap_or((0, 0));
    let mut message = plain_types(e.message().trim());
    if message == "duplicate key"
        && let Some(key) = span.and_then(|s| text.get(s)).map(|k| k.trim())
        && !key.is_empty()
    {
        message = format!("duplicate key `{}`", key.trim_matches('"'));
    }
    let hint = if message.contains("unknown field") {
        Some(format!("check the spelling; {DOCS_HINT}"))
    } else if message.contains("missing field") {
        Some(DOCS_HINT.to_string())
    } else if message.starts_with("invalid type") {
        Some(format!("the value has the wrong type; {DOCS_HINT}"))
    } else if message.starts_with("duplicate key") {
        Some("each key may appear once in a table; remove or rename one".to_string())
    } else {
        None
    };
    Diagnostic {
        line,
        col,
        message,
        hint,
    }
}

/// serde names the Rust type it wanted; a nubo.toml author wants the
/// TOML one.
fn plain_types(message: &str) -> String {
    let Some((head, wanted)) = message.rsplit_once(", expected ") else {
        return message.to_string();
    };
    let plain = match wanted {
        "i8" | "i16" | "i32" | "i64" | "u8" | "u16" | "u32" | "u64" | "usize" => "an integer",
        "f32" | "f64" => "a number",
        "a boolean" | "bool" => "true or false",
        "a string" | "a borrowed string" => "a string in quotes",
        "a sequence" => "an array, as [\"a\", \"b\"]",
        "a map" => "a table",
        other => other,
    };
    format!("{head}, expected {plain}")
}

#[cfg(test)]
mod tests {
    use super::line_col;

    #[test]
    fn line_col_counts_from_one_and_in_chars() {
        let text = "a = 1\nbé = 2\n";
        assert_eq!(line_col(text, 0), (1, 1));
        assert_eq!(line_col(text, 6), (2, 1));
        // 'é' is two bytes but one column.
        assert_eq!(line_col(text, 9), (2, 3));
        assert_eq!(line_col(text, 999), (3, 1));
    }
}
