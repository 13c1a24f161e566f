use super::*;

fn memo_of(walk_ns: i128, plain: bool, file: FileRec) -> Memo {
    Memo {
        walk_ns,
        index_id: None,
        tracked: 7,
        tree: Oid::hash_object(ObjectType::Blob, b"tree").unwrap(),
        index_tree: Oid::hash_object(ObjectType::Blob, b"index").unwrap(),
        plain,
        nested: vec!["vendor/other".into()],
        sides: vec![(PathBuf::from("/nowhere/config"), None)],
        dirs: Vec::new(),
        files: vec![file],
    }
}

fn file(dir: &Path, text: &[u8], oid_of: &[u8]) -> FileRec {
    std::fs::write(dir.join("f"), text).unwrap();
    let m = std::fs::symlink_metadata(dir.join("f")).unwrap();
    FileRec {
        path: b"f".to_vec(),
        link: false,
        stamp: Stamp::indexed(&m),
        oid: Oid::hash_object(ObjectType::Blob, oid_of).unwrap(),
    }
}

#[test]
fn recent_stat_data_is_not_trusted_without_the_content() {
    let tmp = tempfile::tempdir().unwrap();
    let now = now_ns();
    // The stat data is what the memo holds, but the memo's blob is other content: an edit in
    // the same clock tick as the walk would look like this.
    let stale = file(tmp.path(), b"one\n", b"two\n");
    assert!(!memo_of(now, true, stale).work_tree_unchanged(tmp.path()));
    let same = file(tmp.path(), b"one\n", b"one\n");
    assert!(memo_of(now, true, same).work_tree_unchanged(tmp.path()));
    // Where attributes could rewrite content, a racy file is not trusted at all.
    let same = file(tmp.path(), b"one\n", b"one\n");
    assert!(!memo_of(now, false, same).work_tree_unchanged(tmp.path()));
    // Stat data older than the racy window is trusted, as git trusts its index.
    let stale = file(tmp.path(), b"one\n", b"two\n");
    assert!(memo_of(now + 10 * RACY_NS, true, stale).work_tree_unchanged(tmp.path()));
    // Any change of the stat data is seen.
    let old = file(tmp.path(), b"one\n", b"one\n");
    std::fs::write(tmp.path().join("f"), b"one, longer\n").unwrap();
    assert!(!memo_of(now + 10 * RACY_NS, true, old).work_tree_unchanged(tmp.path()));
    std::fs::remove_file(tmp.path().join("f")).unwrap();
    let gone = FileRec {
        path: b"f".to_vec(),
        link: false,
        stamp: Stamp::indexed(&std::fs::symlink_metadata(tmp.path()).unwrap()),
        oid: Oid::ZERO_SHA1,
    };
    assert!(!memo_of(now + 10 * RACY_NS, true, gone).work_tree_unchanged(tmp.path()));
}

#[test]
fn the_memo_file_round_trips_and_damage_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let memo = memo_of(now_ns(), true, file(tmp.path(), b"x\n", b"x\n"));
    let bytes = encode(&memo, 42);
    let (back, setting) = decode(&bytes).expect("decodes");
    assert_eq!(setting, 42);
    assert_eq!(encode(&back, 42), bytes);
    assert_eq!(
        (back.tree, back.index_tree, back.tracked),
        (memo.tree, memo.index_tree, 7)
    );
    assert_eq!(back.nested, memo.nested);
    for cut in [0, 8, bytes.len() / 2, bytes.len() - 1] {
        assert!(decode(&bytes[..cut]).is_none(), "cut at {cut}");
    }
    let mut flipped = bytes.clone();
    let at = bytes.len() - 10;
    flipped[at] ^= 0xff;
    assert!(decode(&flipped).is_none());
    let mut longer = bytes.clone();
    longer.insert(20, 0);
    assert!(decode(&longer).is_none());
}
