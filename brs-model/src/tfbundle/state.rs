//! Finds checkpoints in a directory as TensorFlow does: the `checkpoint` file (a text-format
//! `CheckpointState`) names the latest prefix and the ones kept, and every `PREFIX.index` is a
//! checkpoint, whose step is the number after its last `-` (`model.ckpt-1000`, `ckpt-3`).

use std::io::Read;
use std::path::{Path, PathBuf};

use super::index_path;
use crate::error::TfBundleError;

type Result<T> = std::result::Result<T, TfBundleError>;

/// Checkpoint files this size or larger are refused: a real one lists a few paths.
const MAX_STATE_BYTES: u64 = 1 << 20;

/// The `checkpoint` file of a directory, with relative paths joined to the directory as
/// TensorFlow's `get_checkpoint_state` does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckpointState {
    pub model_checkpoint_path: PathBuf,
    pub all_model_checkpoint_paths: Vec<PathBuf>,
}

/// A checkpoint present in a directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Prefix {
    pub prefix: PathBuf,
    pub step: Option<u64>,
}

/// Reads `DIR/checkpoint`.
pub fn checkpoint_state(dir: &Path) -> Result<CheckpointState> {
    let path = dir.join("checkpoint");
    let io = |cause| TfBundleError::Io {
        path: path.clone(),
        cause,
    };
    let file = std::fs::File::open(&path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            TfBundleError::NoCheckpointFile {
                dir: dir.to_owned(),
                found: present(dir),
            }
        } else {
            io(e)
        }
    })?;
    let mut bytes = Vec::new();
    file.take(MAX_STATE_BYTES)
        .read_to_end(&mut bytes)
        .map_err(io)?;
    let bad = |reason: String| TfBundleError::CheckpointState {
        path: path.clone(),
        reason,
    };
    if bytes.len() as u64 >= MAX_STATE_BYTES {
        return Err(bad(format!("{MAX_STATE_BYTES} bytes or more")));
    }
    let text = std::str::from_utf8(&bytes).map_err(|_| bad("not UTF-8 text".to_owned()))?;
    let (latest, all) = parse_state(text).map_err(bad)?;
    let latest = latest.ok_or_else(|| bad("no model_checkpoint_path".to_owned()))?;
    Ok(CheckpointState {
        model_checkpoint_path: dir.join(latest),
        all_model_checkpoint_paths: all.into_iter().map(|p| dir.join(p)).collect(),
    })
}

/// The prefix of the latest checkpoint in `dir`, as its `checkpoint` file names it; that
/// checkpoint's index must exist. A directory copied from elsewhere keeps the absolute paths
/// TF1's Saver wrote, so a prefix missing there is looked for in `dir` by its file name.
pub fn latest_checkpoint(dir: &Path) -> Result<PathBuf> {
    let state = checkpoint_state(dir)?;
    let prefix = state.model_checkpoint_path;
    if index_path(&prefix).is_file() {
        return Ok(prefix);
    }
    if let Some(moved) = prefix.file_name().map(|name| dir.join(name))
        && index_path(&moved).is_file()
    {
        return Ok(moved);
    }
    Err(TfBundleError::MissingIndex {
        index: index_path(&prefix),
        path: prefix,
    })
}

/// Every checkpoint in `dir` (each `PREFIX.index`), by step, then by name; checkpoints
/// without a step first.
pub fn list_prefixes(dir: &Path) -> Result<Vec<Prefix>> {
    let io = |cause| TfBundleError::Io {
        path: dir.to_owned(),
        cause,
    };
    let mut out = Vec::new();
    for item in std::fs::read_dir(dir).map_err(io)? {
        let item = item.map_err(io)?;
        let name = item.file_name();
        let Some(stem) = name.to_str().and_then(|n| n.strip_suffix(".index")) else {
            continue;
        };
        let path = item.path();
        if stem.is_empty() || !path.is_file() {
            continue;
        }
        out.push(Prefix {
            prefix: dir.join(stem),
            step: step_of(stem),
        });
    }
    out.sort_by(|a, b| (a.step, &a.prefix).cmp(&(b.step, &b.prefix)));
    Ok(out)
}

/// The checkpoint of step `step` in `dir`.
pub fn prefix_for_step(dir: &Path, step: u64) -> Result<PathBuf> {
    let all = list_prefixes(dir)?;
    let mut matching: Vec<PathBuf> = all
        .iter()
        .filter(|p| p.step == Some(step))
        .map(|p| p.prefix.clone())
        .collect();
    match matching.len() {
        1 => Ok(matching.remove(0)),
        0 => {
            let steps: Vec<String> = all
                .iter()
                .filter_map(|p| p.step)
                .map(|s| s.to_string())
                .collect();
            Err(TfBundleError::NoSuchStep {
                dir: dir.to_owned(),
                step,
                found: if steps.is_empty() {
                    "none".to_owned()
                } else {
                    steps.join(", ")
                },
            })
        }
        _ => Err(TfBundleError::AmbiguousStep {
            dir: dir.to_owned(),
            step,
            found: names(&matching),
        }),
    }
}

fn step_of(stem: &str) -> Option<u64> {
    let (_, digits) = stem.rsplit_once('-')?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The checkpoints present, for messages.
fn present(dir: &Path) -> String {
    match list_prefixes(dir) {
        Ok(all) if !all.is_empty() => names(&all.into_iter().map(|p| p.prefix).collect::<Vec<_>>()),
        _ => "none".to_owned(),
    }
}

fn names(prefixes: &[PathBuf]) -> String {
    prefixes
        .iter()
        .map(|p| {
            p.file_name().map_or_else(
                || p.display().to_string(),
                |n| n.to_string_lossy().into_owned(),
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// `model_checkpoint_path` and `all_model_checkpoint_paths` from protobuf text format. Other
/// fields (the timestamps) are skipped; a nested message is refused, as CheckpointState has
/// none.
fn parse_state(text: &str) -> std::result::Result<(Option<String>, Vec<String>), String> {
    let mut lex = Lexer {
        s: text.as_bytes(),
        pos: 0,
    };
    let mut latest = None;
    let mut all = Vec::new();
    loop {
        lex.skip_space();
        if lex.pos >= lex.s.len() {
            break;
        }
        let name = lex.ident()?;
        lex.skip_space();
        if !lex.eat(b':') {
            return Err(format!(
                "expected ':' after {name} (CheckpointState has no nested messages)"
            ));
        }
        lex.skip_space();
        let values = if lex.eat(b'[') {
            let mut values = Vec::new();
            lex.skip_space();
            if !lex.eat(b']') {
                loop {
                    values.push(lex.value()?);
                    lex.skip_space();
                    if lex.eat(b']') {
                        break;
                    }
                    if !lex.eat(b',') {
                        return Err(format!("expected ',' or ']' in the list of {name}"));
                    }
                    lex.skip_space();
                }
            }
            values
        } else {
            vec![lex.value()?]
        };
        let path = |v: Scalar| match v {
            Scalar::Str(bytes) => {
                String::from_utf8(bytes).map_err(|_| format!("{name} is not UTF-8"))
            }
            Scalar::Other => Err(format!("{name} is not a string")),
        };
        match name.as_str() {
            "model_checkpoint_path" => {
                for v in values {
                    latest = Some(path(v)?);
                }
            }
            "all_model_checkpoint_paths" => {
                for v in values {
                    all.push(path(v)?);
                }
            }
            _ => {}
        }
        lex.skip_space();
        let _ = lex.eat(b';') || lex.eat(b',');
    }
    Ok((latest, all))
}

enum Scalar {
    Str(Vec<u8>),
    Other,
}

struct Lexer<'a> {
    s: &'a [u8],
    pos: usize,
}

impl Lexer<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }

    fn eat(&mut self, c: u8) -> bool {
        let hit = self.peek() == Some(c);
        if hit {
            self.pos += 1;
        }
        hit
    }

    /// Whitespace and `#` comments.
    fn skip_space(&mut self) {
        while let Some(c) = self.peek() {
            if c == b'#' {
                while self.peek().is_some_and(|c| c != b'\n') {
                    self.pos += 1;
                }
            } else if c.is_ascii_whitespace() {
                self.pos += 1;
            } else {
                break;
            }
        }
    }

    fn ident(&mut self) -> std::result::Result<String, String> {
        let start = self.pos;
        while self
            .peek()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == b'_')
        {
            self.pos += 1;
        }
        if start == self.pos {
            return Err(format!("expected a field name at byte {start}"));
        }
        Ok(String::from_utf8_lossy(&self.s[start..self.pos]).into_owned())
    }

    /// A string (adjacent quoted parts concatenate, as in C) or another scalar token.
    fn value(&mut self) -> std::result::Result<Scalar, String> {
        if matches!(self.peek(), Some(b'"' | b'\'')) {
            let mut out = Vec::new();
            while let Some(quote @ (b'"' | b'\'')) = self.peek() {
                self.pos += 1;
                self.string(quote, &mut out)?;
                self.skip_space();
            }
            return Ok(Scalar::Str(out));
        }
        let start = self.pos;
        while self
            .peek()
            .is_some_and(|c| c.is_ascii_alphanumeric() || b"_.+-".contains(&c))
        {
            self.pos += 1;
        }
        if start == self.pos {
            return Err(format!("expected a value at byte {start}"));
        }
        Ok(Scalar::Other)
    }

    /// The rest of a quoted string, with protobuf's C escapes (Python's text_format writes
    /// non-ASCII bytes as octal escapes).
    fn string(&mut self, quote: u8, out: &mut Vec<u8>) -> std::result::Result<(), String> {
        let start = self.pos;
        loop {
            let c = self
                .peek()
                .ok_or_else(|| format!("unterminated string at byte {start}"))?;
            self.pos += 1;
            match c {
                b'\n' => return Err(format!("unterminated string at byte {start}")),
                c if c == quote => return Ok(()),
                b'\\' => {
                    let e = self
                        .peek()
                        .ok_or_else(|| format!("unterminated string at byte {start}"))?;
                    self.pos += 1;
                    match e {
                        b'n' => out.push(b'\n'),
                        b't' => out.push(b'\t'),
                        b'r' => out.push(b'\r'),
                        b'a' => out.push(0x07),
                        b'b' => out.push(0x08),
                        b'f' => out.push(0x0c),
                        b'v' => out.push(0x0b),
                        b'\\' | b'\'' | b'"' | b'?' => out.push(e),
                        b'0'..=b'7' => {
                            let mut v = u32::from(e - b'0');
                            for _ in 0..2 {
                                match self.peek() {
                                    Some(d @ b'0'..=b'7') => {
                                        v = v * 8 + u32::from(d - b'0');
                                        self.pos += 1;
                                    }
                                    _ => break,
                                }
                            }
                            out.push(u8::try_from(v).map_err(|_| {
                                format!("octal escape \\{v:o} is larger than a byte")
                            })?);
                        }
                        b'x' => {
                            let mut v = 0u8;
                            let mut n = 0;
                            while n < 2 {
                                let Some(d) = self.peek().and_then(|d| (d as char).to_digit(16))
                                else {
                                    break;
                                };
                                v = v * 16 + d as u8;
                                self.pos += 1;
                                n += 1;
                            }
                            if n == 0 {
                                return Err(format!("\\x without hex digits at byte {}", self.pos));
                            }
                            out.push(v);
                        }
                        other => {
                            return Err(format!(
                                "unsupported escape \\{} at byte {}",
                                other as char,
                                self.pos - 1
                            ));
                        }
                    }
                }
                c => out.push(c),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn parses_what_tensorflow_writes() {
        let text = "model_checkpoint_path: \"model.ckpt-20\"\n\
                    all_model_checkpoint_paths: \"model.ckpt-10\"\n\
                    all_model_checkpoint_paths: \"model.ckpt-20\"\n\
                    all_model_checkpoint_timestamps: 1733500000.123\n\
                    last_preserved_timestamp: 1.7335e+09\n";
        let (latest, all) = parse_state(text).unwrap();
        assert_eq!(latest.as_deref(), Some("model.ckpt-20"));
        assert_eq!(all, ["model.ckpt-10", "model.ckpt-20"]);
    }

    #[test]
    fn parses_the_rest_of_text_format() {
        let text = "# a comment\nall_model_checkpoint_paths: ['a', \"b\" 'c'];\
                    model_checkpoint_path:'/abs/caf\\303\\251\\x21\\\"q\\\"' ,";
        let (latest, all) = parse_state(text).unwrap();
        assert_eq!(latest.as_deref(), Some("/abs/café!\"q\""));
        assert_eq!(all, ["a", "bc"]);
        assert_eq!(parse_state("").unwrap(), (None, vec![]));
    }

    #[test]
    fn refuses_malformed_state() {
        for bad in [
            "model_checkpoint_path \"x\"",
            "model_checkpoint_path: \"x",
            "model_checkpoint_path: \"x\ny\"",
            "model_checkpoint_path: 12",
            "model_checkpoint_path: \"\\400\"",
            "model_checkpoint_path: \"\\q\"",
            "model_checkpoint_path: \"\\xzz\"",
            "model_checkpoint_path: \"\\377\"",
            "model_checkpoint_path: [\"a\" \"b\"",
            "state { x: 1 }",
            ": \"x\"",
        ] {
            assert!(parse_state(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn steps_come_from_the_last_dash() {
        assert_eq!(step_of("model.ckpt-1000"), Some(1000));
        assert_eq!(step_of("ckpt-3"), Some(3));
        assert_eq!(step_of("UGATIT.model-0"), Some(0));
        assert_eq!(step_of("model.ckpt"), None);
        assert_eq!(step_of("model-"), None);
        assert_eq!(step_of("model-1x"), None);
        assert_eq!(step_of("model-99999999999999999999999"), None);
    }

    #[test]
    fn finds_latest_listed_and_stepped_prefixes() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        assert!(matches!(
            latest_checkpoint(d),
            Err(TfBundleError::NoCheckpointFile { .. })
        ));
        for name in ["model.ckpt-10", "model.ckpt-2", "plain", "other-10"] {
            std::fs::write(d.join(format!("{name}.index")), b"").unwrap();
        }
        std::fs::write(d.join("model.ckpt-3.data-00000-of-00001"), b"").unwrap();
        std::fs::create_dir(d.join("dir.index")).unwrap();
        let listed: Vec<(String, Option<u64>)> = list_prefixes(d)
            .unwrap()
            .into_iter()
            .map(|p| {
                (
                    p.prefix.file_name().unwrap().to_str().unwrap().to_owned(),
                    p.step,
                )
            })
            .collect();
        assert_eq!(
            listed,
            [
                ("plain".to_owned(), None),
                ("model.ckpt-2".to_owned(), Some(2)),
                ("model.ckpt-10".to_owned(), Some(10)),
                ("other-10".to_owned(), Some(10)),
            ]
        );
        let err = latest_checkpoint(d).unwrap_err().to_string();
        assert!(err.contains("model.ckpt-10"), "{err}");

        assert_eq!(prefix_for_step(d, 2).unwrap(), d.join("model.ckpt-2"));
        let none = prefix_for_step(d, 7).unwrap_err().to_string();
        assert!(none.contains("2, 10, 10"), "{none}");
        assert!(matches!(
            prefix_for_step(d, 10),
            Err(TfBundleError::AmbiguousStep { .. })
        ));

        // Relative paths join the directory; an absolute path from another machine falls back
        // to the file of that name here.
        std::fs::write(
            d.join("checkpoint"),
            "model_checkpoint_path: \"/elsewhere/model.ckpt-10\"\n\
             all_model_checkpoint_paths: \"model.ckpt-2\"\n",
        )
        .unwrap();
        assert_eq!(latest_checkpoint(d).unwrap(), d.join("model.ckpt-10"));
        let state = checkpoint_state(d).unwrap();
        assert_eq!(state.all_model_checkpoint_paths, [d.join("model.ckpt-2")]);
        std::fs::write(d.join("checkpoint"), "model_checkpoint_path: \"gone-5\"\n").unwrap();
        assert!(matches!(
            latest_checkpoint(d),
            Err(TfBundleError::MissingIndex { .. })
        ));
        std::fs::write(d.join("checkpoint"), "all_model_checkpoint_paths: \"x\"\n").unwrap();
        assert!(matches!(
            latest_checkpoint(d),
            Err(TfBundleError::CheckpointState { .. })
        ));
    }
}
