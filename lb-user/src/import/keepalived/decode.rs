//! Bytes of a keepalived file -> text.
//!
//! keepalived reads bytes and never decodes them, so files written in the local legacy encoding
//! work there: GBK/GB18030 in Chinese LVS how-tos, Latin-1 elsewhere (usually in comments and
//! notify script paths). Valid UTF-8 is taken as is; otherwise GB18030 (a superset of GBK and
//! GB2312) is tried, then windows-1252 (a superset of printable Latin-1, which decodes any byte),
//! and the encoding assumed is reported so that the operator can check the non-ASCII text.

use thiserror::Error;

/// Why a file is not text.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum DecodeError {
    /// keepalived ignores a line with a NUL byte; a NUL means this is not a configuration file.
    #[error("{file}:{line}: NUL byte: this is not a text file (keepalived would ignore the line)")]
    Nul { file: String, line: usize },
}

/// The text of a file and the legacy encoding it was decoded from (`None` = UTF-8).
#[derive(Debug, PartialEq, Eq)]
pub struct Decoded {
    pub text: String,
    pub assumed: Option<&'static str>,
}

/// Decodes `bytes` (the contents of `file`, for the error location).
pub fn decode(bytes: &[u8], file: &str) -> Result<Decoded, DecodeError> {
    if let Some(at) = bytes.iter().position(|b| *b == 0) {
        let line = 1 + bytes[..at].iter().filter(|b| **b == b'\n').count();
        return Err(DecodeError::Nul {
            file: file.to_string(),
            line,
        });
    }
    if let Ok(s) = std::str::from_utf8(bytes) {
        return Ok(Decoded {
            text: s.strip_prefix('\u{feff}').unwrap_or(s).to_string(),
            assumed: None,
        });
    }
    let gbk = gbk_shaped(bytes)
        .then(|| encoding_rs::GB18030.decode_without_bom_handling_and_without_replacement(bytes))
        .flatten();
    if let Some(s) = gbk {
        return Ok(Decoded {
            text: s.into_owned(),
            assumed: Some("GB18030 (GBK)"),
        });
    }
    let (s, _) = encoding_rs::WINDOWS_1252.decode_without_bom_handling(bytes);
    Ok(Decoded {
        text: s.into_owned(),
        assumed: Some("Latin-1 (windows-1252)"),
    })
}

/// Chinese text in GBK is pairs of bytes >= 0x81 (GB2312 hanzi and punctuation); Latin-1 text
/// has single high bytes between ASCII letters (`\xe9t\xe9`), which GB18030 would also decode,
/// as nonsense. So GB18030 is assumed only when every high byte is in such a pair.
fn gbk_shaped(bytes: &[u8]) -> bool {
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] < 0x80 {
            i += 1;
        } else if bytes.get(i + 1).is_some_and(|b| *b >= 0x81) {
            i += 2;
        } else {
            return false;
        }
    }
    true
}

/// The first line (1-based) with a byte that is not ASCII: where to look in a legacy file.
pub fn first_non_ascii_line(bytes: &[u8]) -> usize {
    let at = bytes.iter().position(|b| !b.is_ascii()).unwrap_or(0);
    1 + bytes[..at].iter().filter(|b| **b == b'\n').count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf8_gbk_latin1_nul() {
        assert_eq!(decode("a é".as_bytes(), "f").unwrap().assumed, None);
        // "负载均衡" in GBK.
        let gbk = b"# \xb8\xba\xd4\xd8\xbe\xf9\xba\xe2\n";
        let d = decode(gbk, "f").unwrap();
        assert_eq!(d.text, "# 负载均衡\n");
        assert_eq!(d.assumed, Some("GB18030 (GBK)"));
        // 0xe9 then a newline is not GB18030: Latin-1 "é".
        let d = decode(b"# caf\xe9\n", "f").unwrap();
        assert_eq!(d.text, "# café\n");
        assert_eq!(d.assumed, Some("Latin-1 (windows-1252)"));
        // "été": valid GB18030 bytes, but Latin-1-shaped.
        let d = decode(b"# \xe9t\xe9 ma\xeetre\n", "f").unwrap();
        assert_eq!(d.text, "# été maître\n");
        assert_eq!(
            decode(b"a\nb\0", "f"),
            Err(DecodeError::Nul {
                file: "f".into(),
                line: 2
            })
        );
        assert_eq!(first_non_ascii_line(b"a\nb\n\xe9"), 3);
    }
}
