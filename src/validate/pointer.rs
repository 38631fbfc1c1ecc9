//! JSON Pointers (RFC 6901) naming where in the input an error is.
//!
//! Member names come from the client, so each one is cut to a bounded length before it is put in
//! a response: an error report must not become a way to echo megabytes back.

use std::fmt::Write as _;

/// Longest member name, in characters, copied into a pointer.
const MAX_SEGMENT_CHARS: usize = 64;

/// Builds a pointer segment by segment.
#[derive(Default)]
pub(crate) struct Pointer(String);

impl Pointer {
    /// Appends a member name, escaped (`~` as `~0`, `/` as `~1`) and cut to a bounded length.
    pub(crate) fn key(&mut self, name: &str) {
        self.0.push('/');
        for (i, c) in name.chars().enumerate() {
            if i == MAX_SEGMENT_CHARS {
                self.0.push('…');
                break;
            }
            match c {
                '~' => self.0.push_str("~0"),
                '/' => self.0.push_str("~1"),
                c => self.0.push(c),
            }
        }
    }

    /// Appends an array index.
    pub(crate) fn index(&mut self, index: usize) {
        // Writing to a String cannot fail.
        let _ = write!(self.0, "/{index}");
    }

    /// Appends an already built pointer.
    pub(crate) fn push_str(&mut self, pointer: &str) {
        self.0.push_str(pointer);
    }

    pub(crate) fn finish(self) -> String {
        self.0
    }
}

/// Where serde_path_to_error says a deserialization error happened.
pub(crate) fn from_error_path(path: &serde_path_to_error::Path) -> String {
    let mut out = Pointer::default();
    for segment in path.iter() {
        match segment {
            serde_path_to_error::Segment::Seq { index } => out.index(*index),
            serde_path_to_error::Segment::Map { key } => out.key(key),
            serde_path_to_error::Segment::Enum { variant } => out.key(variant),
            serde_path_to_error::Segment::Unknown => {}
        }
    }
    out.finish()
}

/// Where serde_ignored found a member the target type has no field for.
pub(crate) fn from_ignored_path(path: &serde_ignored::Path<'_>) -> String {
    fn walk(path: &serde_ignored::Path<'_>, out: &mut Pointer) {
        use serde_ignored::Path;
        match path {
            Path::Root => {}
            Path::Seq { parent, index } => {
                walk(parent, out);
                out.index(*index);
            }
            Path::Map { parent, key } => {
                walk(parent, out);
                out.key(key);
            }
            Path::Some { parent }
            | Path::NewtypeStruct { parent }
            | Path::NewtypeVariant { parent } => walk(parent, out),
        }
    }
    let mut out = Pointer::default();
    walk(path, &mut out);
    out.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_and_bounds_segments() {
        let mut pointer = Pointer::default();
        pointer.key("a/b~c");
        pointer.index(3);
        pointer.key(&"x".repeat(10_000));
        let pointer = pointer.finish();
        assert!(pointer.starts_with("/a~1b~0c/3/xxx"));
        assert!(pointer.ends_with('…'));
        assert!(pointer.chars().count() < 80);
    }
}
