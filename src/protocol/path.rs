//! Paths and link texts from the wire, and the rules that make them safe to
//! use under a destination directory. Holding a [`Name`], [`RelPath`] or
//! [`LinkText`] means the bytes passed these rules: the only constructors
//! check them.

use std::fmt;

use super::{MAX_LINK_LEN, MAX_NAME_LEN, MAX_PATH_LEN, ProtocolError, bad};
use crate::display::escape_bytes;

/// Checks one path component: 1..=255 bytes, no `/`, no NUL, not `.` or
/// `..`.
fn check_component(bytes: &[u8]) -> Result<(), ProtocolError> {
    if bytes.is_empty() {
        return bad("empty file name");
    }
    if bytes.len() > MAX_NAME_LEN {
        return bad(format!("file name of {} bytes exceeds {MAX_NAME_LEN}", bytes.len()));
    }
    if bytes == b"." || bytes == b".." {
        return bad(format!("file name {} is not allowed", escape_bytes(bytes)));
    }
    if bytes.contains(&b'/') {
        return bad(format!("file name {} contains '/'", escape_bytes(bytes)));
    }
    if bytes.contains(&0) {
        return bad(format!("file name {} contains a NUL byte", escape_bytes(bytes)));
    }
    Ok(())
}

/// A single path component.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Name(Vec<u8>);

impl Name {
    pub fn new(bytes: &[u8]) -> Result<Name, ProtocolError> {
        check_component(bytes)?;
        Ok(Name(bytes.to_vec()))
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&escape_bytes(&self.0))
    }
}

/// A relative path: 1..=4096 bytes of components joined by single `/`,
/// each a valid [`Name`]. It cannot be absolute, climb with `..`, or hold
/// an empty component.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RelPath(Vec<u8>);

impl RelPath {
    pub fn new(bytes: &[u8]) -> Result<RelPath, ProtocolError> {
        if bytes.len() > MAX_PATH_LEN {
            return bad(format!("path of {} bytes exceeds {MAX_PATH_LEN}", bytes.len()));
        }
        if bytes.is_empty() {
            return bad("empty path");
        }
        if bytes[0] == b'/' {
            return bad(format!("path {} is absolute", escape_bytes(bytes)));
        }
        for component in bytes.split(|b| *b == b'/') {
            check_component(component).map_err(|e| ProtocolError(format!("path {}: {}", escape_bytes(bytes), e.0)))?;
        }
        Ok(RelPath(bytes.to_vec()))
    }

    /// A one-component path.
    pub fn from_name(name: &Name) -> RelPath {
        RelPath(name.0.clone())
    }

    /// `parent/name`, or just `name` at the top.
    pub fn join(parent: Option<&RelPath>, name: &Name) -> Result<RelPath, ProtocolError> {
        match parent {
            None => Ok(RelPath(name.0.clone())),
            Some(p) => {
                let mut bytes = Vec::with_capacity(p.0.len() + 1 + name.0.len());
                bytes.extend_from_slice(&p.0);
                bytes.push(b'/');
                bytes.extend_from_slice(&name.0);
                if bytes.len() > MAX_PATH_LEN {
                    return bad(format!("path of {} bytes exceeds {MAX_PATH_LEN}", bytes.len()));
                }
                Ok(RelPath(bytes))
            }
        }
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// The path without its last component; empty at the top.
    pub fn parent(&self) -> &[u8] {
        match self.0.iter().rposition(|b| *b == b'/') {
            Some(i) => &self.0[..i],
            None => &[],
        }
    }

    /// The last component.
    pub fn file_name(&self) -> &[u8] {
        match self.0.iter().rposition(|b| *b == b'/') {
            Some(i) => &self.0[i + 1..],
            None => &self.0,
        }
    }
}

impl fmt::Display for RelPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&escape_bytes(&self.0))
    }
}

/// The text of a symbolic link: 1..=4095 bytes without NUL. It is stored
/// verbatim and never resolved by zcp, so `..` and absolute texts are
/// allowed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkText(Vec<u8>);

impl LinkText {
    pub fn new(bytes: &[u8]) -> Result<LinkText, ProtocolError> {
        if bytes.is_empty() {
            return bad("empty symbolic link target");
        }
        if bytes.len() > MAX_LINK_LEN {
            return bad(format!(
                "symbolic link target of {} bytes exceeds {MAX_LINK_LEN}",
                bytes.len()
            ));
        }
        if bytes.contains(&0) {
            return bad("symbolic link target contains a NUL byte");
        }
        Ok(LinkText(bytes.to_vec()))
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Display for LinkText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&escape_bytes(&self.0))
    }
}
