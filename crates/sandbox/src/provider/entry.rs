//! A file system entry of a sandbox, as every provider reports it (envd's wire type stays in
//! `envd::proto`; providers convert).

/// What a sandbox path is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum EntryKind {
    #[default]
    File,
    Directory,
    Symlink,
}

/// One file, directory or symlink in a sandbox.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Entry {
    /// The last path component.
    pub name: String,
    /// The path as the sandbox names it.
    pub path: String,
    pub kind: EntryKind,
    /// Size in bytes.
    pub size: u64,
    /// Permission bits (`0o755`); 0 when the provider does not report them.
    pub mode: u32,
    /// Last modification, RFC 3339 UTC (nanoseconds where the provider has them).
    pub modified_time: Option<String>,
    /// Where a symlink points, when the entry is one and the provider says.
    pub symlink_target: Option<String>,
}

impl Entry {
    pub fn is_dir(&self) -> bool {
        self.kind == EntryKind::Directory
    }

    pub fn is_symlink(&self) -> bool {
        self.kind == EntryKind::Symlink || self.symlink_target.is_some()
    }
}

impl From<crate::envd::proto::EntryInfo> for Entry {
    fn from(e: crate::envd::proto::EntryInfo) -> Entry {
        use crate::envd::proto::FileType;
        let kind = match e.file_type {
            FileType::Directory => EntryKind::Directory,
            FileType::Symlink => EntryKind::Symlink,
            _ if e.is_symlink => EntryKind::Symlink,
            _ => EntryKind::File,
        };
        Entry {
            name: e.name,
            path: e.path,
            kind,
            size: u64::try_from(e.size.0).unwrap_or(0),
            mode: e.mode,
            modified_time: e.modified_time,
            symlink_target: e.symlink_target,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envd::proto::EntryInfo;

    #[test]
    fn envd_entries_convert_with_their_kind() {
        let wire: EntryInfo = serde_json::from_str(
            r#"{"name":"d","type":"FILE_TYPE_DIRECTORY","path":"/w/d","size":"4096","mode":493}"#,
        )
        .unwrap();
        let e = Entry::from(wire);
        assert_eq!(
            (e.kind, e.size, e.mode, e.path.as_str()),
            (EntryKind::Directory, 4096, 0o755, "/w/d")
        );
        let link: EntryInfo = serde_json::from_str(
            r#"{"name":"l","type":"FILE_TYPE_FILE","symlinkTarget":"/w/x","is_symlink":true}"#,
        )
        .unwrap();
        let l = Entry::from(link);
        assert!(l.is_symlink() && !l.is_dir());
        assert_eq!(l.symlink_target.as_deref(), Some("/w/x"));
    }
}
