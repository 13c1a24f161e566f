//! The POSIX shell scripts of the sync steps that run in the sandbox (see [`crate::step`] for
//! how they are run and what they answer). Kept apart from the Rust that drives them: they
//! are data, one constant per step.

pub(crate) const PRELUDE: &str = r#"set -eu
LC_ALL=C
export LC_ALL
unset GIT_INDEX_FILE GIT_OBJECT_DIRECTORY GIT_ALTERNATE_OBJECT_DIRECTORIES GIT_NAMESPACE GIT_COMMON_DIR GIT_CEILING_DIRECTORIES 2>/dev/null || true
rc_say() { printf 'RCLAUDE:%s=%s\n' "$1" "$2"; }
rc_die() { rc_say error "$1"; printf 'rclaude: %s\n' "$1" >&2; exit "${2:-3}"; }
W="${RC_WORKDIR:?RC_WORKDIR is not set}"
GIT_DIR="$W/.git"
GIT_WORK_TREE="$W"
export GIT_DIR GIT_WORK_TREE
R="$GIT_DIR/rclaude"
EMPTY_TREE=4b825dc642cb6eb9a060e54bf8d69288fbee4904
GIT_AUTHOR_NAME='rclaude (sandbox)'
GIT_AUTHOR_EMAIL='rclaude@sandbox'
GIT_COMMITTER_NAME="$GIT_AUTHOR_NAME"
GIT_COMMITTER_EMAIL="$GIT_AUTHOR_EMAIL"
export GIT_AUTHOR_NAME GIT_AUTHOR_EMAIL GIT_COMMITTER_NAME GIT_COMMITTER_EMAIL
g() { git -c core.hooksPath=/dev/null -c gc.auto=0 -c maintenance.auto=false -c 'safe.directory=*' -c core.quotePath=false "$@"; }
rc_commit() { g rev-parse -q --verify "$1^{commit}" 2>/dev/null || true; }
rc_tree() { g rev-parse -q --verify "$1^{tree}" 2>/dev/null || true; }
# Every process a step starts costs milliseconds: what the shell can do itself, it does.
rc_check_git() {
  command -v git >/dev/null 2>&1 || rc_die "git is not installed in the sandbox; add git 2.30 or newer to the sandbox image" 6
  rc_v=$(git version 2>/dev/null || true)
  case "$rc_v" in "git version "*) rc_v=${rc_v#git version } ;; *) rc_v= ;; esac
  rc_maj=${rc_v%%.*}
  rc_min=${rc_v#*.}
  rc_min=${rc_min%%[!0-9]*}
  case "$rc_maj" in ''|*[!0-9]*) rc_die "cannot tell which git the sandbox has; rclaude needs git 2.30 or newer there" 6 ;; esac
  [ -n "$rc_min" ] || rc_die "cannot tell which git the sandbox has; rclaude needs git 2.30 or newer there" 6
  rc_v="$rc_maj.$rc_min"
  if [ "$rc_maj" -lt 2 ] || { [ "$rc_maj" -eq 2 ] && [ "$rc_min" -lt 30 ]; }; then
    rc_die "the sandbox has git $rc_v; rclaude needs git 2.30 or newer in the sandbox image" 6
  fi
  rc_say git_version "$rc_v"
}
# rc_read_identity: rc_id = the sandbox identity (empty when there is none).
rc_read_identity() {
  rc_id=
  if [ -r "$R/identity" ]; then IFS= read -r rc_id < "$R/identity" || true; fi
}
rc_lock() {
  [ -d "$R/tmp" ] || mkdir -p "$R/tmp"
  if command -v flock >/dev/null 2>&1; then
    exec 9>"$R/lock"
    flock -w "${RC_LOCK_WAIT:-600}" 9 || rc_die "another rclaude sync is still running in the sandbox (lock $R/lock); wait for it to finish and retry" 5
  fi
}
rc_tmpdir() {
  T="$R/tmp/run.$$"
  [ ! -e "$T" ] || rm -rf "$T"
  mkdir "$T"
  trap 'rm -rf "$T"' EXIT
  trap 'exit 129' HUP
  trap 'exit 130' INT
  trap 'exit 143' TERM
}
# rc_peel VAR SPEC [VAR SPEC...] (after rc_tmpdir): each VAR = the object SPEC names (`X^{commit}`,
# `X^{tree}`), empty when there is none, all read by one git process.
rc_peel() {
  rc_pv=
  : > "$T/peel.in"
  while [ $# -ge 2 ]; do
    rc_pv="$rc_pv $1"
    case "$2" in *"
"*) printf 'none\n' ;; *) printf '%s\n' "$2" ;; esac >> "$T/peel.in"
    shift 2
  done
  g cat-file --batch-check='%(objectname)' < "$T/peel.in" > "$T/peel.out" 2>/dev/null || : > "$T/peel.out"
  exec 8< "$T/peel.out"
  for rc_v in $rc_pv; do
    IFS= read -r rc_l <&8 || rc_l=
    case "$rc_l" in ''|*[!0-9a-f]*) rc_l= ;; esac
    eval "$rc_v=\$rc_l"
  done
  exec 8<&-
}
# rc_add_all INDEX: `git add -A` into INDEX. An embedded repository without a commit stops it
# ("does not have a commit checked out"); like those with commits (dropped by rc_worktree_tree),
# it is not part of this repository, so the add is made again around it.
rc_add_all() {
  GIT_INDEX_FILE="$1" g -c advice.addEmbeddedRepo=false ${RC_EXCLUDES_FILE:+-c "core.excludesFile=$RC_EXCLUDES_FILE"} add -A >/dev/null 2>"$1.err" && return 0
  printf '.\000' > "$1.ps"
  rc_nx=
  while IFS= read -r rc_l; do
    case "$rc_l" in
      "error: '"*"/' does not have a commit checked out")
        rc_l=${rc_l#"error: '"}
        printf ':(exclude,literal)%s\000' "${rc_l%"/' does not have a commit checked out"}" >> "$1.ps"
        rc_nx=1 ;;
    esac
  done < "$1.err"
  [ -n "$rc_nx" ] || return 1
  GIT_INDEX_FILE="$1" g -c advice.addEmbeddedRepo=false ${RC_EXCLUDES_FILE:+-c "core.excludesFile=$RC_EXCLUDES_FILE"} add -A --pathspec-from-file="$1.ps" --pathspec-file-nul >/dev/null 2>"$1.err"
}
# rc_worktree_tree INDEX: RC_WT = tree of the work tree (tracked and untracked files, ignored
# ones left out) built in a copy of the index (the copy keeps the stat cache and its mtime);
# RC_IT = tree of the index itself (empty when it has conflicts).
rc_worktree_tree() {
  if [ -f "$GIT_DIR/index" ]; then cp -p "$GIT_DIR/index" "$1"; else rm -f "$1"; fi
  RC_IT=$(GIT_INDEX_FILE="$1" g write-tree 2>/dev/null || true)
  rc_add_all "$1" || rc_die "cannot snapshot the sandbox work tree $W: $(tail -n 3 "$1.err" | tr '\n' ' ')" 9
  RC_WT=$(GIT_INDEX_FILE="$1" g write-tree 2>"$1.err") || rc_die "cannot snapshot the sandbox work tree $W: $(tail -n 3 "$1.err" | tr '\n' ' ')" 9
  # New entries that are directories are gitlinks of embedded repositories (clones made in the
  # work tree, not submodules): not part of this repository, so neither saved nor touched.
  if g diff-tree -r -z --name-only --diff-filter=A "${RC_IT:-$EMPTY_TREE}" "$RC_WT" | xargs -0 -r sh -c 'for p do if [ -d "$p" ] && [ ! -L "$p" ]; then printf "%s\000" "$p"; fi; done' sh > "$1.links" && [ -s "$1.links" ]; then
    GIT_INDEX_FILE="$1" g update-index --force-remove -z --stdin < "$1.links"
    RC_WT=$(GIT_INDEX_FILE="$1" g write-tree)
  fi
}
"#;

pub(crate) const INIT: &str = r#"rc_check_git
mkdir -p "$W" || rc_die "cannot create the sandbox work directory $W" 4
cd "$W"
if [ ! -d "$GIT_DIR" ]; then
  (unset GIT_DIR GIT_WORK_TREE; git -c init.defaultBranch=main init -q "$W") >/dev/null 2>"$W/.rclaude-init.err" || rc_die "git init failed in $W: $(cat "$W/.rclaude-init.err")" 4
  rm -f "$W/.rclaude-init.err"
fi
mkdir -p "$R/tmp"
if [ ! -s "$R/identity" ]; then
  printf '%s\n' "$RC_NEW_IDENTITY" > "$R/identity.$$"
  if [ -e "$R/identity" ]; then mv -f "$R/identity.$$" "$R/identity"; else ln "$R/identity.$$" "$R/identity" 2>/dev/null || true; fi
  rm -f "$R/identity.$$"
fi
rc_read_identity
rc_say identity "$rc_id"
rc_say done 1
"#;

pub(crate) const QUERY: &str = r#"rc_check_git
if [ ! -d "$W" ]; then rc_say state missing; rc_say done 1; exit 0; fi
cd "$W"
if [ ! -d "$GIT_DIR" ] || [ ! -s "$R/identity" ]; then rc_say state uninitialized; rc_say done 1; exit 0; fi
rc_say state ready
rc_read_identity
rc_say identity "$rc_id"
mkdir -p "$R/tmp"
find "$R/tmp" -mindepth 1 -maxdepth 1 -mmin +120 -exec rm -rf {} + 2>/dev/null || true
rc_say head_ref "$(g symbolic-ref -q HEAD || true)"
rc_say head_oid "$(rc_commit HEAD)"
g for-each-ref --format='RCLAUDE:ref=%(objectname) %(refname)' refs/heads refs/rclaude
if [ -f "$R/applying" ]; then rc_say marker 1; else rc_say marker 0; fi
if [ -f "$R/synced" ]; then sed -n 's/^\([a-z_]*\)=\(.*\)$/RCLAUDE:synced_\1=\2/p' "$R/synced"; fi
rc_say done 1
"#;

pub(crate) const APPLY: &str = r#"rc_check_git
cd "$W" 2>/dev/null || rc_die "the sandbox work directory $W is missing; run the sync again" 4
[ -d "$GIT_DIR" ] || rc_die "the sandbox repository $W is not initialised; run the sync again" 4
rc_read_identity
[ "$rc_id" = "$RC_IDENTITY" ] || rc_die "the sandbox identity changed during the sync (expected $RC_IDENTITY, found ${rc_id:-none}); run the sync again" 4
rc_lock
rc_tmpdir

# 1. The same extra ignore patterns as on the laptop.
[ -d "$GIT_DIR/info" ] || mkdir -p "$GIT_DIR/info"
printf '%s' "$RC_EXCLUDES" > "$T/exclude"
if ! cmp -s "$T/exclude" "$GIT_DIR/info/exclude"; then
  cp "$T/exclude" "$GIT_DIR/info/exclude.rclaude"
  mv -f "$GIT_DIR/info/exclude.rclaude" "$GIT_DIR/info/exclude"
fi

# 2. Objects: verify and fetch the bundle (refs/rclaude/push/* keep them reachable). A shallow
# laptop repository sends commits without their parents: the sandbox becomes shallow there too.
if [ -n "$RC_SHALLOW" ]; then
  { if [ -f "$GIT_DIR/shallow" ]; then cat "$GIT_DIR/shallow"; fi; for rc_c in $RC_SHALLOW; do echo "$rc_c"; done; } | sort -u > "$T/shallow"
  mv -f "$T/shallow" "$GIT_DIR/shallow"
fi
if [ -n "$RC_BUNDLE" ]; then
  [ -f "$RC_BUNDLE" ] || rc_die "the uploaded bundle $RC_BUNDLE is missing in the sandbox; run the sync again" 7
  # The fetch verifies the bundle (its header, and that the sandbox has every prerequisite)
  # before reading it, as `git bundle verify` would.
  if ! g fetch --quiet --no-tags --no-write-fetch-head --no-recurse-submodules "$RC_BUNDLE" '+refs/rclaude/push/*:refs/rclaude/push/*' >"$T/fetch.out" 2>&1; then
    rm -f "$RC_BUNDLE"
    rc_die "git in the sandbox rejected the bundle, nothing was applied: $(tail -n 4 "$T/fetch.out" | tr '\n' ' ')" 7
  fi
  rm -f "$RC_BUNDLE"
fi
S="$RC_SNAPSHOT"
I="$RC_INDEX"
H="$RC_HEAD"
B="$RC_BRANCH"
# The commits and trees this step compares, with one git: what the laptop sent, what the last
# complete apply installed (3.), the sandbox's HEAD (4.) and its branch of the laptop's name (5.).
rc_peel Sc "$S^{commit}" Ic "$I^{commit}" Hc "${H:-none}^{commit}" St "$S^{tree}" It "$I^{tree}" \
  Ts "refs/rclaude/snapshot^{tree}" Xs "refs/rclaude/index^{tree}" Hs "refs/rclaude/head^{commit}" \
  C "HEAD^{commit}" Ct "HEAD^{tree}" O "refs/heads/$B^{commit}"
[ -n "$Sc" ] || rc_die "the sandbox lacks snapshot commit $S; run the sync again" 8
[ -n "$Ic" ] || rc_die "the sandbox lacks index commit $I; run the sync again" 8
if [ -n "$H" ]; then [ -n "$Hc" ] || rc_die "the sandbox lacks commit $H; run the sync again" 8; fi

# 3. What the last complete apply installed, and an interrupted apply, if any.
[ -n "$Ts" ] || Ts=$EMPTY_TREE
recover=0
Mft=
Mfh=
Mfi=
Mts=
Mth=
if [ -f "$R/applying" ]; then
  recover=1
  Mft=$(sed -n 's/^from_tree=//p' "$R/applying")
  Mfh=$(sed -n 's/^from_head=//p' "$R/applying")
  Mfi=$(sed -n 's/^from_index=//p' "$R/applying")
  Mts=$(sed -n 's/^snapshot=//p' "$R/applying")
  Mth=$(sed -n 's/^head=//p' "$R/applying")
  rc_say recovered 1
fi

# 4. The sandbox as it is now: HEAD (read above), index, work tree.
[ -n "$C" ] || Ct=$EMPTY_TREE
# Ignore rules for reading the work tree: the sandbox's own, plus the incoming snapshot's root
# .gitignore (patterns the laptop just added leave matching sandbox files alone, unsaved).
RC_EXCLUDES_FILE="$T/excludes"
rc_gx=$(g config --path core.excludesFile 2>/dev/null || true)
[ -n "$rc_gx" ] || rc_gx="${XDG_CONFIG_HOME:-${HOME:-/nonexistent}/.config}/git/ignore"
{ if [ -f "$rc_gx" ]; then cat "$rc_gx"; echo; fi; g cat-file blob "$S:.gitignore" 2>/dev/null || true; } > "$RC_EXCLUDES_FILE"
ti="$T/index"
rc_worktree_tree "$ti"
W0=$RC_WT
X=$RC_IT
# Untracked files (ignored ones too) in the way of paths the new snapshot brings in, directly or
# as a parent: into the temporary index, so they count as sandbox work and are saved before being
# replaced. A directory holding untracked files where a file arrives stops the sync instead (git
# would delete it, ignored content included).
RC_TI="$ti"
RC_BLOCKED="$T/blocked"
export RC_TI RC_BLOCKED
: > "$RC_BLOCKED"
if ! g diff-tree -r -z --name-only --diff-filter=A "$W0" "$St" | xargs -0 -r sh -c '
rc_in_way() { [ -L "$1" ] || { [ -e "$1" ] && [ ! -d "$1" ]; }; }
for p do
  # A parent that is a symlink or a file is what is in the way (the topmost such one): nothing
  # beyond a symlink is looked at, so a link replaced by a real directory is saved as the link.
  q=$p
  hit=
  while case "$q" in */*) true ;; *) false ;; esac; do
    q=${q%/*}
    if rc_in_way "$q"; then hit=$q; fi
  done
  if [ -n "$hit" ]; then
    printf "%s\000" "$hit"
  elif rc_in_way "$p"; then
    printf "%s\000" "$p"
  elif [ -d "$p" ]; then
    if [ -n "$(GIT_INDEX_FILE="$RC_TI" git -c "safe.directory=*" --literal-pathspecs ls-files -o -- "$p" | head -n 1)" ]; then
      printf "%s\n" "$p" >> "$RC_BLOCKED"
    fi
  fi
done' sh > "$T/in_way"; then
  rc_die "cannot look for sandbox files the sync would overwrite" 9
fi
if [ -s "$RC_BLOCKED" ]; then
  rc_die "the sandbox has directories with untracked or ignored files where the laptop now has files: $(head -n 5 "$RC_BLOCKED" | tr '\n' ' ')- nothing was changed and nothing was lost; move or delete them in the sandbox, then sync again" 11
fi
Wt=$W0
if [ -s "$T/in_way" ]; then
  GIT_INDEX_FILE="$ti" g update-index --add -z --stdin < "$T/in_way" 2>"$T/ui.err" || rc_die "cannot record sandbox files the sync would overwrite: $(tail -n 3 "$T/ui.err" | tr '\n' ' ')" 9
  Wt=$(GIT_INDEX_FILE="$ti" g write-tree)
fi

# 5. Anything the laptop does not have is committed to refs/rclaude/saved/<stamp> first.
rc_known() {
  for rc_k in $RC_KNOWN; do [ "$1" = "$rc_k" ] && return 0; done
  for rc_k in $RC_KNOWN; do g merge-base --is-ancestor "$1" "$rc_k" 2>/dev/null && return 0; done
  return 1
}
# A tree equal to the tree of a commit the laptop has is not sandbox work.
rc_known_tree() {
  for rc_k in $RC_KNOWN; do [ "$(rc_tree "$rc_k")" = "$1" ] && return 0; done
  return 1
}
rc_free_saved() {
  rc_n="refs/rclaude/saved/$1"
  rc_i=2
  while g show-ref --verify -q "$rc_n"; do rc_n="refs/rclaude/saved/$1-$rc_i"; rc_i=$((rc_i + 1)); done
}
rc_commit_tree() {
  if [ -n "$2" ]; then RC_NEW=$(printf '%s\n' "$3" | g commit-tree "$1" -p "$2"); else RC_NEW=$(printf '%s\n' "$3" | g commit-tree "$1"); fi
}
why=
if [ "$recover" = 1 ]; then
  # Explained: every path is as before the interrupted apply or as its target.
  Mtst=$(rc_tree "$Mts")
  if [ "$Wt" != "$Mft" ] && [ "$Wt" != "${Mtst:-none}" ] && [ "$Wt" != "$Ct" ] && ! rc_known_tree "$Wt"; then
    if [ -z "$Mtst" ] || [ -z "$(rc_tree "$Mft")" ]; then
      why="$why worktree"
    elif ! g diff-tree -r -z --name-only "$Mft" "$Wt" | xargs -0 -r git -c core.hooksPath=/dev/null -c 'safe.directory=*' --literal-pathspecs diff-tree --quiet -r "$Mtst" "$Wt" -- ; then
      why="$why worktree"
    fi
  fi
else
  if [ "$Wt" != "$Ts" ] && [ "$Wt" != "$Ct" ] && ! rc_known_tree "$Wt"; then why="$why worktree"; fi
fi
if [ -n "$C" ] && [ "$C" != "$Hs" ] && [ "$C" != "${Mfh:-none}" ] && [ "$C" != "${Mth:-none}" ] && ! rc_known "$C"; then
  why="$why commits"
fi
idx_save=0
if [ -n "$X" ] && [ "$X" != "$Wt" ] && [ "$X" != "$Ct" ] && [ "$X" != "${Xs:-none}" ] && [ "$X" != "${Mfi:-none}" ] && [ "$X" != "$It" ] && ! rc_known_tree "$X"; then
  why="$why index"
  idx_save=1
fi
# The time that names saved refs, read only when something is saved.
stamp=
rc_stamp() { [ -n "$stamp" ] || stamp=$(date -u +%Y%m%dT%H%M%SZ); }
if [ -n "$why" ]; then
  rc_stamp
  tip=$C
  if [ "$idx_save" = 1 ]; then
    rc_commit_tree "$X" "$tip" "rclaude: changes staged in the sandbox, saved before a sync ($stamp)"
    tip=$RC_NEW
  fi
  tipt=$EMPTY_TREE
  [ -z "$tip" ] || tipt=$(rc_tree "$tip")
  if [ -z "$tip" ] || [ "$Wt" != "$tipt" ]; then
    rc_commit_tree "$Wt" "$tip" "rclaude: sandbox work saved before a sync ($stamp)

The sandbox work tree had edits the laptop did not have (changed, new or
deleted files). rclaude committed them here before making the sandbox
match the laptop. Parent: the sandbox HEAD at that time."
    tip=$RC_NEW
  fi
  rc_free_saved "$stamp"
  g update-ref -m "rclaude: saved before sync" "$rc_n" "$tip" "" || rc_die "cannot create $rc_n in the sandbox; nothing was changed" 10
  rc_say saved "$rc_n $tip $(printf '%s' "$why" | sed 's/^ //; s/ /,/g')"
fi
if [ -n "$B" ]; then
  if [ -n "$O" ] && [ "$O" != "$C" ] && [ "$O" != "$Hs" ] && [ "$O" != "${Mth:-none}" ] && ! rc_known "$O"; then
    rc_stamp
    rc_free_saved "$stamp-branch-$(printf '%s' "$B" | tr '/' '-')"
    g update-ref -m "rclaude: saved before sync" "$rc_n" "$O" "" || rc_die "cannot create $rc_n in the sandbox; nothing was changed" 10
    rc_say saved "$rc_n $O branch"
  fi
fi

# 6. Install the laptop's state; the marker says an apply is under way.
printf 'from_tree=%s\nfrom_head=%s\nfrom_index=%s\nsnapshot=%s\nhead=%s\nbranch=%s\n' "$Wt" "$C" "$X" "$S" "$H" "$B" > "$T/marker"
mv -f "$T/marker" "$R/applying"
if [ "$Wt" != "$St" ]; then
  GIT_INDEX_FILE="$ti" g read-tree -m -u "$Wt" "$St" 2>"$T/rt.err" || rc_die "cannot update the sandbox work tree (nothing was lost; fix the cause and run the sync again): $(tail -n 4 "$T/rt.err" | tr '\n' ' ')" 10
fi
if [ "$It" = "$St" ] && [ ! -e "$GIT_DIR/index.lock" ]; then
  # The laptop's index is its work tree (nothing unstaged, nothing untracked): the temporary
  # index holds that tree with the stat data of every file (read above or just written), so it
  # becomes the index. A reset and a refresh would read every file just written again (a first
  # sync's whole checkout).
  mv -f "$ti" "$GIT_DIR/index" || rc_die "cannot set the sandbox index" 10
else
  g read-tree --reset "$It" 2>"$T/ri.err" || rc_die "cannot set the sandbox index: $(tail -n 3 "$T/ri.err" | tr '\n' ' ')" 10
  g update-index -q --refresh >/dev/null 2>&1 || true
fi
if [ -n "$H" ]; then
  if [ -n "$B" ]; then
    g update-ref -m "rclaude: sync from the laptop" "refs/heads/$B" "$H" 2>"$T/ur.err" || rc_die "cannot update branch $B in the sandbox: $(tail -n 3 "$T/ur.err" | tr '\n' ' ')" 10
    g symbolic-ref -m "rclaude: sync from the laptop" HEAD "refs/heads/$B"
  else
    g update-ref --no-deref -m "rclaude: sync from the laptop" HEAD "$H"
  fi
else
  if g show-ref --verify -q "refs/heads/$B"; then g update-ref -d "refs/heads/$B"; fi
  g symbolic-ref HEAD "refs/heads/$B"
fi
{
  printf 'update refs/rclaude/snapshot %s\n' "$S"
  printf 'update refs/rclaude/index %s\n' "$I"
  if [ -n "$H" ]; then
    printf 'update refs/rclaude/head %s\n' "$H"
  elif g show-ref --verify -q refs/rclaude/head; then
    printf 'delete refs/rclaude/head\n'
  fi
  g for-each-ref --format='delete %(refname)' refs/rclaude/push
} > "$T/refs"
g update-ref --stdin < "$T/refs" 2>"$T/us.err" || rc_die "cannot record the sync in the sandbox: $(tail -n 3 "$T/us.err" | tr '\n' ' ')" 10
printf 'snapshot=%s\nindex=%s\nhead=%s\nbranch=%s\nexcludes=%s\n' "$S" "$I" "$H" "$B" "$RC_EXCLUDES_ID" > "$T/synced"
mv -f "$T/synced" "$R/synced"
rm -f "$R/applying"
rc_say done 1
"#;

pub(crate) const EXPORT: &str = r#"rc_check_git
cd "$W" 2>/dev/null || rc_die "the sandbox work directory $W is missing" 4
if [ ! -d "$GIT_DIR" ] || [ ! -s "$R/identity" ]; then rc_die "the sandbox repository $W is not initialised; push to it first (rclaude sync)" 4; fi
rc_read_identity
rc_say identity "$rc_id"
rc_lock
rc_tmpdir
if [ "$RC_MODE" = worktree ]; then
  rc_peel C "HEAD^{commit}" Ct "HEAD^{tree}" rc_ss "refs/rclaude/snapshot^{commit}" rc_si "refs/rclaude/index^{commit}"
  [ -n "$C" ] || Ct=$EMPTY_TREE
  rc_say head "$C"
  rc_say branch "$(g symbolic-ref -q --short HEAD || true)"
  rc_worktree_tree "$T/index"
  Wt=$RC_WT
  if [ "$Wt" = "$Ct" ]; then
    if [ -z "$C" ]; then rc_say empty 1; rc_say done 1; exit 0; fi
    tip=$C
    rc_say wip 0
  else
    if [ -n "$C" ]; then
      rc_d="@$(g log -1 --format=%ct "$C") +0000"
      tip=$(printf 'rclaude: uncommitted sandbox edits\n' | GIT_AUTHOR_DATE="$rc_d" GIT_COMMITTER_DATE="$rc_d" g commit-tree "$Wt" -p "$C")
    else
      tip=$(printf 'rclaude: uncommitted sandbox edits\n' | GIT_AUTHOR_DATE="@0 +0000" GIT_COMMITTER_DATE="@0 +0000" g commit-tree "$Wt")
    fi
    rc_say wip 1
  fi
  g update-ref -m "rclaude: pull" refs/rclaude/pull/tip "$tip"
  rc_say tip "$tip"
  refs=refs/rclaude/pull/tip
else
  refs=
  for r in $RC_REFS; do
    o=$(rc_commit "$r")
    [ -n "$o" ] || rc_die "the sandbox has no ref $r" 12
    rc_say ref "$o $r"
    refs="$refs $r"
  done
fi
# Published history the receiver has (RC_BASE_REFS, e.g. refs/remotes) is left out too.
if [ -n "${RC_BASE_REFS:-}" ]; then
  RC_BASES="$RC_BASES $(g for-each-ref --format='%(objectname)' $RC_BASE_REFS | tr '\n' ' ')"
fi
# The bases the sandbox has, checked by one git process whatever their number.
ok=
rc_nb=
for b in $RC_BASES; do printf '%s^{commit}\n' "$b"; rc_nb=1; done > "$T/bases"
if [ -n "$rc_nb" ]; then
  g cat-file --batch-check='%(objectname)' < "$T/bases" > "$T/found" 2>/dev/null || true
  while IFS= read -r l; do
    case "$l" in ''|*[!0-9a-f]*) ;; *) ok="$ok $l" ;; esac
  done < "$T/found"
fi
rc_say bases "$ok"
if [ "$RC_MODE" = worktree ]; then
  rc_say synced_snapshot "$rc_ss"
  rc_say synced_index "$rc_si"
fi
new=$(g rev-list -n 1 $refs --not $ok --)
if [ -z "$new" ]; then rc_say bundle none; rc_say done 1; exit 0; fi
g bundle create "$T/out.bundle" $refs --not $ok >"$T/bundle.out" 2>&1 || rc_die "git bundle create failed in the sandbox: $(tail -n 4 "$T/bundle.out" | tr '\n' ' ')" 12
mv -f "$T/out.bundle" "$RC_OUT"
rc_say bundle "$RC_OUT"
rc_say size "$(wc -c < "$RC_OUT" | tr -d ' ')"
rc_say done 1
"#;

pub(crate) const RESTORE: &str = r#"rc_check_git
cd "$W" 2>/dev/null || rc_die "the sandbox work directory $W is missing; run \`rclaude up\` again" 4
[ -d "$GIT_DIR" ] || rc_die "the sandbox repository $W is not initialised; run \`rclaude up\` again" 4
rc_read_identity
[ "$rc_id" = "$RC_IDENTITY" ] || rc_die "the sandbox identity changed (expected $RC_IDENTITY, found ${rc_id:-none}); run \`rclaude up\` again" 4
rc_lock
rc_tmpdir
if [ -n "$RC_BUNDLE" ]; then
  [ -f "$RC_BUNDLE" ] || rc_die "the uploaded checkpoint bundle $RC_BUNDLE is missing in the sandbox" 7
  if ! g bundle verify "$RC_BUNDLE" >"$T/verify.out" 2>&1; then
    rm -f "$RC_BUNDLE"
    rc_die "git in the sandbox rejected the checkpoint bundle, nothing was changed: $(tail -n 4 "$T/verify.out" | tr '\n' ' ')" 7
  fi
  if ! g fetch --quiet --no-tags --no-write-fetch-head --no-recurse-submodules "$RC_BUNDLE" '+refs/rclaude/restore/*:refs/rclaude/restore/*' >"$T/fetch.out" 2>&1; then
    rm -f "$RC_BUNDLE"
    rc_die "git in the sandbox could not read the checkpoint bundle, nothing was changed: $(tail -n 4 "$T/fetch.out" | tr '\n' ' ')" 7
  fi
  rm -f "$RC_BUNDLE"
fi
P="$RC_TIP"
H="$RC_HEAD"
B="$RC_BRANCH"
[ -n "$(rc_commit "$P")" ] || rc_die "the sandbox lacks checkpoint commit $P" 8
if [ -n "$H" ]; then [ -n "$(rc_commit "$H")" ] || rc_die "the sandbox lacks commit $H" 8; fi
Pt=$(rc_tree "$P")
# The work tree as it is (the sync just installed it), then moved to the checkpoint's tree:
# files it lacks go, files it has come back, ignored files stay.
RC_EXCLUDES_FILE=
rc_worktree_tree "$T/index"
if [ "$RC_WT" != "$Pt" ]; then
  GIT_INDEX_FILE="$T/index" g read-tree -m -u "$RC_WT" "$Pt" 2>"$T/rt.err" || rc_die "cannot lay the checkpoint over the sandbox work tree: $(tail -n 4 "$T/rt.err" | tr '\n' ' ')" 10
fi
# HEAD and the branch as the sandbox had them; the index = HEAD (edits show as unstaged).
if [ -n "$H" ]; then
  if [ -n "$B" ]; then
    g update-ref -m "rclaude: rebuilt from a checkpoint" "refs/heads/$B" "$H" 2>"$T/ur.err" || rc_die "cannot set branch $B in the sandbox: $(tail -n 3 "$T/ur.err" | tr '\n' ' ')" 10
    g symbolic-ref -m "rclaude: rebuilt from a checkpoint" HEAD "refs/heads/$B"
  else
    g update-ref --no-deref -m "rclaude: rebuilt from a checkpoint" HEAD "$H"
  fi
  g read-tree --reset "$H" 2>"$T/ri.err" || rc_die "cannot set the sandbox index: $(tail -n 3 "$T/ri.err" | tr '\n' ' ')" 10
else
  g symbolic-ref HEAD "refs/heads/${B:-main}"
  g read-tree --empty
fi
g update-index -q --refresh >/dev/null 2>&1 || true
{
  printf 'update refs/rclaude/restored %s\n' "$P"
  g for-each-ref --format='delete %(refname)' refs/rclaude/restore
} > "$T/refs"
g update-ref --stdin < "$T/refs" 2>"$T/us.err" || rc_die "cannot record the rebuild in the sandbox: $(tail -n 3 "$T/us.err" | tr '\n' ' ')" 10
rc_worktree_tree "$T/check"
rc_say tree "$RC_WT"
rc_say done 1
"#;

#[cfg(test)]
mod tests {
    use super::PRELUDE;

    /// The prelude's git check with a `git` that answers `version` as given: (exit code, output).
    fn check_git(version: &str) -> (i32, String) {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let git = dir.path().join("git");
        std::fs::write(&git, format!("#!/bin/sh\necho '{version}'\n")).unwrap();
        std::fs::set_permissions(&git, std::fs::Permissions::from_mode(0o755)).unwrap();
        let out = std::process::Command::new("sh")
            .args(["-c", &format!("{PRELUDE}rc_check_git")])
            .env("RC_WORKDIR", dir.path())
            .env("PATH", format!("{}:/usr/bin:/bin", dir.path().display()))
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    }

    #[test]
    fn the_sandboxs_git_version_is_read_without_other_tools() {
        for (version, want) in [
            ("git version 2.47.3", "2.47"),
            ("git version 2.39.5 (Apple Git-154)", "2.39"),
            ("git version 2.30", "2.30"),
            ("git version 3.0.0", "3.0"),
        ] {
            let (code, out) = check_git(version);
            assert_eq!(code, 0, "{version}: {out}");
            assert_eq!(out, format!("RCLAUDE:git_version={want}\n"), "{version}");
        }
        for (version, why) in [
            ("git version 2.29.2", "needs git 2.30 or newer"),
            ("git version 1.8.3.1", "needs git 2.30 or newer"),
            ("git version x.y", "cannot tell which git"),
            ("something else", "cannot tell which git"),
        ] {
            let (code, out) = check_git(version);
            assert_eq!(code, 6, "{version}: {out}");
            assert!(out.contains(why), "{version}: {out}");
        }
    }
}
