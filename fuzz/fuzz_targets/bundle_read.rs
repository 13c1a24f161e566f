//! Arbitrary bytes as a bundle: the reader must refuse or accept them without panicking, and
//! only ever write into the repository it was given.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let dir = tempfile::tempdir().unwrap();
    let repo = git2::Repository::init_bare(dir.path().join("repo")).unwrap();
    let path = dir.path().join("in.bundle");
    std::fs::write(&path, data).unwrap();
    if let Ok(header) = rclaude::gitsync::bundle::read(&repo, &path, &rclaude::gitsync::NoProgress)
    {
        for (_, oid) in header.refs {
            assert!(repo.find_object(oid, None).is_ok(), "accepted a ref without its object");
        }
    }
});
