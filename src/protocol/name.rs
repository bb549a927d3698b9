//! Entry names from the wire: the rules that make a name a single, safe
//! path component. Holding a [`Name`] means the bytes passed them.

use std::fmt;

use super::{MAX_NAME_LEN, ProtocolError, bad};

/// A single path component proposed by the peer: 1..=255 bytes, no `/`, no
/// NUL, not `.` or `..`. The only way to build one is [`Name::new`], so
/// holding a `Name` means it was checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Name(Vec<u8>);

impl Name {
    pub fn new(bytes: &[u8]) -> Result<Name, ProtocolError> {
        let shown = || crate::display::escape_bytes(bytes);
        if bytes.is_empty() {
            return bad("empty file name");
        }
        if bytes.len() > MAX_NAME_LEN {
            return bad(format!("file name of {} bytes exceeds {MAX_NAME_LEN}", bytes.len()));
        }
        if bytes == b"." || bytes == b".." {
            return bad(format!("file name {} is not allowed", shown()));
        }
        if bytes.contains(&b'/') {
            return bad(format!("file name {} contains '/'", shown()));
        }
        if bytes.contains(&0) {
            return bad(format!("file name {} contains a NUL byte", shown()));
        }
        Ok(Name(bytes.to_vec()))
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    pub fn to_os_string(&self) -> std::ffi::OsString {
        use std::os::unix::ffi::OsStringExt;
        std::ffi::OsString::from_vec(self.0.clone())
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&crate::display::escape_bytes(&self.0))
    }
}
