//! Bundles written by rclaude pass real git; bundles written by real git (thin) are read;
//! corrupt, truncated and incomplete bundles are rejected with nothing applied.

mod support;

use std::io::Write;
use std::path::{Path, PathBuf};

use git2::{Oid, Repository};
use rclaude::gitsync::bundle::{self, BundleRef};
use rclaude::gitsync::{NoProgress, SyncError};
use support::*;

fn repo_with_history(dir: &Path, commits: usize) {
    std::fs::create_dir_all(dir).unwrap();
    git(dir, &["init", "-q"]);
    let big: String = (0..2000)
        .map(|i| format!("line {i} of a file big enough to deltify\n"))
        .collect();
    write(&dir.join("big.txt"), &big);
    for i in 0..commits {
        write(&dir.join(format!("f{}.txt", i % 5)), format!("rev {i}\n"));
        git(dir, &["add", "-A"]);
        git(dir, &["commit", "-q", "-m", &format!("c{i}")]);
    }
}

fn oid(dir: &Path, rev: &str) -> Oid {
    Oid::from_str(&git_t(dir, &["rev-parse", rev])).unwrap()
}

fn write_bundle(
    repo: &Repository,
    refs: &[BundleRef],
    hidden: &[Oid],
    path: &Path,
) -> bundle::Written {
    let mut f = std::fs::File::create(path).unwrap();
    let w = bundle::write(repo, refs, hidden, &mut f, &NoProgress).unwrap();
    f.flush().unwrap();
    w
}

fn pack_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir.join(".git/objects/pack"))
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    v.sort();
    v
}

#[test]
fn written_bundles_pass_git_bundle_verify_and_fetch() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    repo_with_history(&src, 10);
    let repo = Repository::open(&src).unwrap();

    // Complete bundle: verify, then fetch into an empty repository.
    let full = tmp.path().join("full.bundle");
    let w = write_bundle(
        &repo,
        &[BundleRef {
            name: "refs/heads/main".into(),
            oid: oid(&src, "HEAD"),
        }],
        &[],
        &full,
    );
    assert!(w.prerequisites.is_empty());
    assert_eq!(w.commits, 10);
    let dst = tmp.path().join("dst");
    std::fs::create_dir_all(&dst).unwrap();
    git(&dst, &["init", "-q"]);
    let (ok, out, err) = git_try(&dst, &["bundle", "verify", full.to_str().unwrap()]);
    assert!(ok, "verify: {out} {err}");
    git(
        &dst,
        &[
            "fetch",
            "-q",
            full.to_str().unwrap(),
            "refs/heads/main:refs/heads/imported",
        ],
    );
    assert_eq!(
        git_t(&dst, &["rev-parse", "imported"]),
        oid(&src, "HEAD").to_string()
    );
    git(&dst, &["fsck", "--strict", "--no-dangling"]);

    // Incremental bundle with prerequisites.
    write(&src.join("big.txt"), "changed\n");
    git(&src, &["commit", "-q", "-am", "c10"]);
    let inc = tmp.path().join("inc.bundle");
    let w = write_bundle(
        &repo,
        &[BundleRef {
            name: "refs/heads/main".into(),
            oid: oid(&src, "HEAD"),
        }],
        &[oid(&src, "HEAD~1")],
        &inc,
    );
    assert_eq!(w.prerequisites, vec![oid(&src, "HEAD~1")]);
    assert_eq!(w.commits, 1);
    assert!(w.objects <= 3, "{} objects", w.objects);
    let (ok, out, err) = git_try(&dst, &["bundle", "verify", inc.to_str().unwrap()]);
    assert!(ok, "verify: {out} {err}");
    git(
        &dst,
        &[
            "fetch",
            "-q",
            inc.to_str().unwrap(),
            "refs/heads/main:refs/heads/imported",
        ],
    );
    assert_eq!(
        git_t(&dst, &["rev-parse", "imported"]),
        oid(&src, "HEAD").to_string()
    );
    git(&dst, &["fsck", "--strict", "--no-dangling"]);

    // A repository lacking the prerequisite rejects it.
    let empty = tmp.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    git(&empty, &["init", "-q"]);
    assert!(!git_try(&empty, &["bundle", "verify", inc.to_str().unwrap()]).0);

    // Our reader reads our bundles too.
    let back = tmp.path().join("back");
    std::fs::create_dir_all(&back).unwrap();
    git(&back, &["init", "-q"]);
    let back_repo = Repository::open(&back).unwrap();
    let h = bundle::read(&back_repo, &full, &NoProgress).unwrap();
    assert_eq!(h.version, 2);
    assert_eq!(h.get("refs/heads/main"), Some(oid(&src, "HEAD~1")));
    assert!(back_repo.find_commit(oid(&src, "HEAD~1")).is_ok());
    bundle::read(&back_repo, &inc, &NoProgress).unwrap();
    assert!(back_repo.find_commit(oid(&src, "HEAD")).is_ok());
}

#[test]
fn reads_thin_bundles_made_by_git() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    repo_with_history(&src, 3);
    let base = oid(&src, "HEAD");
    // A clone at the base.
    let dst = tmp.path().join("dst");
    git(
        tmp.path(),
        &[
            "clone",
            "-q",
            "--no-local",
            src.to_str().unwrap(),
            dst.to_str().unwrap(),
        ],
    );
    // A one-line change to a big file: git deltifies it against the base blob (thin pack).
    let mut big = std::fs::read_to_string(src.join("big.txt")).unwrap();
    big = big.replacen("line 1000 ", "line one thousand ", 1);
    write(&src.join("big.txt"), &big);
    git(&src, &["commit", "-q", "-am", "one line"]);
    let b = tmp.path().join("thin.bundle");
    git(
        &src,
        &[
            "bundle",
            "create",
            b.to_str().unwrap(),
            "main",
            "--not",
            &base.to_string(),
        ],
    );
    let size = std::fs::metadata(&b).unwrap().len();
    assert!(
        size < 1024,
        "git made a {size}-byte bundle; expected a thin delta"
    );
    assert!(!git_try(&dst, &["cat-file", "-e", &oid(&src, "main").to_string()]).0);
    let repo = Repository::open(&dst).unwrap();
    let h = bundle::read(&repo, &b, &NoProgress).unwrap();
    let tip = h.get("refs/heads/main").unwrap();
    assert_eq!(tip, oid(&src, "main"));
    assert_eq!(
        git_t(&dst, &["rev-parse", "main"]),
        base.to_string(),
        "refs are the caller's business"
    );
    let c = repo.find_commit(tip).unwrap();
    let entry = c
        .tree()
        .unwrap()
        .get_name("big.txt")
        .unwrap()
        .to_object(&repo)
        .unwrap();
    assert_eq!(entry.as_blob().unwrap().content(), big.as_bytes());
    git(&dst, &["fsck", "--no-dangling"]);
}

fn expect_bad(res: Result<bundle::Header, SyncError>, what: &str) {
    match res {
        Err(SyncError::BadBundle { reason, .. }) => {
            let msg = reason.to_lowercase();
            assert!(msg.contains(what), "{what:?} not in {reason:?}");
        }
        other => panic!("expected a bad-bundle error, got {other:?}"),
    }
}

#[test]
fn corrupt_truncated_and_incomplete_bundles_are_rejected_without_trace() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    repo_with_history(&src, 4);
    let good = tmp.path().join("good.bundle");
    git(&src, &["bundle", "create", good.to_str().unwrap(), "main"]);
    let data = std::fs::read(&good).unwrap();
    let header_len = data.windows(2).position(|w| w == b"\n\n").unwrap() + 2;

    let dst = tmp.path().join("dst");
    std::fs::create_dir_all(&dst).unwrap();
    git(&dst, &["init", "-q"]);
    let repo = Repository::open(&dst).unwrap();
    let packs_before = pack_files(&dst);

    let flip = tmp.path().join("flip.bundle");
    let mut d = data.clone();
    let mid = header_len + (d.len() - header_len) / 2;
    d[mid] ^= 0xff;
    std::fs::write(&flip, &d).unwrap();
    expect_bad(bundle::read(&repo, &flip, &NoProgress), "corrupt");

    let trunc = tmp.path().join("trunc.bundle");
    std::fs::write(&trunc, &data[..data.len() - 30]).unwrap();
    expect_bad(bundle::read(&repo, &trunc, &NoProgress), "truncated");

    let header_only = tmp.path().join("header.bundle");
    std::fs::write(&header_only, &data[..header_len - 1]).unwrap();
    expect_bad(bundle::read(&repo, &header_only, &NoProgress), "header");

    let not_bundle = tmp.path().join("x.bundle");
    std::fs::write(&not_bundle, b"PK\x03\x04 zip file").unwrap();
    expect_bad(
        bundle::read(&repo, &not_bundle, &NoProgress),
        "not a git bundle",
    );

    let sha256 = tmp.path().join("sha256.bundle");
    let mut d = b"# v3 git bundle\n@object-format=sha256\n".to_vec();
    d.extend_from_slice(&data[16..]);
    std::fs::write(&sha256, &d).unwrap();
    expect_bad(bundle::read(&repo, &sha256, &NoProgress), "sha-1");

    let v3 = tmp.path().join("v3.bundle");
    let mut d = b"# v3 git bundle\n@object-format=sha1\n".to_vec();
    d.extend_from_slice(&data[16..]);
    std::fs::write(&v3, &d).unwrap();
    let filter = tmp.path().join("filter.bundle");
    let mut d = b"# v3 git bundle\n@filter=blob:none\n".to_vec();
    d.extend_from_slice(&data[16..]);
    std::fs::write(&filter, &d).unwrap();
    expect_bad(bundle::read(&repo, &filter, &NoProgress), "capability");

    // Nothing from the bad ones landed, no refs were made.
    assert_eq!(pack_files(&dst), packs_before, "stray pack files");
    assert_eq!(git(&dst, &["for-each-ref"]), "");
    let stray: Vec<_> = std::fs::read_dir(dst.join(".git/objects/pack"))
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_else(|_| Vec::new());
    assert!(stray.is_empty(), "{stray:?}");

    // The v3/sha1 one is fine.
    bundle::read(&repo, &v3, &NoProgress).unwrap();

    // Missing prerequisite.
    let inc = tmp.path().join("inc.bundle");
    git(
        &src,
        &[
            "bundle",
            "create",
            inc.to_str().unwrap(),
            "main",
            "--not",
            "main~1",
        ],
    );
    let other = tmp.path().join("other");
    std::fs::create_dir_all(&other).unwrap();
    git(&other, &["init", "-q"]);
    let other_repo = Repository::open(&other).unwrap();
    match bundle::read(&other_repo, &inc, &NoProgress) {
        Err(SyncError::MissingPrerequisite { oid, .. }) => {
            assert_eq!(oid, git_t(&src, &["rev-parse", "main~1"]))
        }
        other => panic!("expected a missing prerequisite, got {other:?}"),
    }
}

#[test]
fn long_histories_are_packed_by_git_and_pass_verify_fetch_and_fsck() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let n = bundle::GIT_PACK_ABOVE_COMMITS + 5;
    repo_with_history(&src, n);
    let repo = Repository::open(&src).unwrap();
    let main = |at: &str| BundleRef {
        name: "refs/heads/main".into(),
        oid: oid(&src, at),
    };

    // The first commit alone (libgit2), then everything after it (git pack-objects, thin).
    let first = tmp.path().join("first.bundle");
    let rev_first = format!("HEAD~{}", n - 1);
    let w1 = write_bundle(&repo, &[main(&rev_first)], &[], &first);
    assert_eq!(w1.commits, 1);
    let rest = tmp.path().join("rest.bundle");
    let w2 = write_bundle(&repo, &[main("HEAD")], &[oid(&src, &rev_first)], &rest);
    assert_eq!(w2.commits as usize, n - 1);
    assert_eq!(w2.prerequisites, vec![oid(&src, &rev_first)]);
    let full = tmp.path().join("full.bundle");
    let wf = write_bundle(&repo, &[main("HEAD")], &[], &full);
    assert_eq!(wf.commits as usize, n);
    assert!(
        w2.objects < wf.objects,
        "the hidden commit's objects are left out: {} vs {}",
        w2.objects,
        wf.objects
    );

    for (name, bundles) in [("dst", vec![&full]), ("dst2", vec![&first, &rest])] {
        let dst = tmp.path().join(name);
        std::fs::create_dir_all(&dst).unwrap();
        git(&dst, &["init", "-q"]);
        for b in bundles {
            let (ok, out, err) = git_try(&dst, &["bundle", "verify", b.to_str().unwrap()]);
            assert!(ok, "verify {}: {out} {err}", b.display());
            git(
                &dst,
                &[
                    "fetch",
                    "-q",
                    b.to_str().unwrap(),
                    "refs/heads/main:refs/heads/imported",
                ],
            );
        }
        assert_eq!(
            git_t(&dst, &["rev-parse", "imported"]),
            oid(&src, "HEAD").to_string()
        );
        git(&dst, &["fsck", "--strict", "--no-dangling"]);
    }

    // Our reader takes git's pack too.
    let back = tmp.path().join("back");
    std::fs::create_dir_all(&back).unwrap();
    git(&back, &["init", "-q"]);
    let back_repo = Repository::open(&back).unwrap();
    bundle::read(&back_repo, &first, &NoProgress).unwrap();
    bundle::read(&back_repo, &rest, &NoProgress).unwrap();
    assert!(back_repo.find_commit(oid(&src, "HEAD")).is_ok());
}
