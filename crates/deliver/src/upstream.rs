//! Where work is delivered: the upstream repository's URL, how it is shown (credentials
//! removed), and which pull-request API serves it.

/// The upstream repository, parsed from a git remote URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    /// The URL git is given (as configured).
    pub url: String,
    /// Host name, when the URL has one (`github.com`, `127.0.0.1:8080`).
    pub host: Option<String>,
    /// `owner/name` from the URL's path (a trailing `.git` removed), when it has two segments.
    pub slug: Option<(String, String)>,
}

/// A repository on a GitHub (or GitHub Enterprise) REST API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitHubRepo {
    /// API root: `https://api.github.com`, or `GITHUB_API_URL` (`https://ghe.example/api/v3`).
    pub api: String,
    pub owner: String,
    pub name: String,
}

impl Upstream {
    /// Parse any URL git accepts: `https://host/o/r(.git)`, `ssh://git@host/o/r.git`,
    /// `git@host:o/r.git`, or a local path (no host, no pull-request API).
    pub fn parse(url: &str) -> Upstream {
        let (host, path) = split_host(url);
        let slug = path.and_then(|p| {
            let p = p.trim_matches('/');
            let p = p.strip_suffix(".git").unwrap_or(p);
            let (prefix, name) = p.rsplit_once('/')?;
            let owner = prefix.rsplit('/').next()?;
            (!owner.is_empty() && !name.is_empty()).then(|| (owner.to_string(), name.to_string()))
        });
        Upstream {
            url: url.to_string(),
            host,
            slug,
        }
    }

    /// `owner/name` (or the URL without credentials when it has no such path).
    pub fn display_name(&self) -> String {
        match &self.slug {
            Some((o, n)) => format!("{o}/{n}"),
            None => self.display(),
        }
    }

    /// The URL without any user name or password (safe to print).
    pub fn display(&self) -> String {
        redact_userinfo(&self.url)
    }

    /// The GitHub repository behind this upstream: on `github.com` through
    /// `https://api.github.com`; on any host when `github_api_url` (`GITHUB_API_URL`) names an
    /// API. `None` when no pull-request API is known for it.
    pub fn github(&self, github_api_url: Option<&str>) -> Option<GitHubRepo> {
        let (owner, name) = self.slug.clone()?;
        let host = self.host.as_deref()?;
        let api = match github_api_url.filter(|u| !u.trim().is_empty()) {
            Some(u) => u.trim_end_matches('/').to_string(),
            None if host.eq_ignore_ascii_case("github.com")
                || host.eq_ignore_ascii_case("www.github.com") =>
            {
                "https://api.github.com".to_string()
            }
            None => return None,
        };
        Some(GitHubRepo { api, owner, name })
    }
}

/// `rclaude start`'s `URL[@REF]`: the URL git is given (`github.com/o/r` becomes
/// `https://github.com/o/r`) and the REF, if any. REF is split at the first `@` inside the
/// repository path (so `git@host:o/r.git` has none, `…/r@feature/x` names `feature/x`).
pub fn parse_start_target(s: &str) -> Result<(String, Option<String>), String> {
    let s = s.trim();
    if s.is_empty() {
        return Err("the repository URL is empty".into());
    }
    let path_start = if let Some(i) = s.find("://") {
        s[i + 3..].find('/').map(|j| i + 3 + j).unwrap_or(s.len())
    } else {
        // scp-like `host:path`: the path starts at the colon; a local path or shorthand at 0.
        s.find(':')
            .filter(|&c| !s[..c].contains('/'))
            .unwrap_or_default()
    };
    let (url, git_ref) = match s[path_start..].find('@') {
        Some(at) => {
            let at = path_start + at;
            (&s[..at], Some(s[at + 1..].to_string()))
        }
        None => (s, None),
    };
    if let Some(r) = &git_ref {
        let ok =
            !r.is_empty() && (is_valid_ref_name(r) || r.chars().all(|c| c.is_ascii_hexdigit()));
        if !ok {
            return Err(format!(
                "{r:?} is not a branch, tag or commit name (URL@REF, e.g. github.com/o/r@main)"
            ));
        }
    }
    let shorthand = !url.contains("://")
        && !url.starts_with(['/', '.', '~'])
        && url
            .split('/')
            .next()
            .is_some_and(|h| h.contains('.') && !h.contains(':'))
        && url.matches('/').count() >= 2
        && !std::path::Path::new(url).exists();
    let url = if shorthand {
        format!("https://{url}")
    } else {
        url.to_string()
    };
    if url.chars().any(char::is_whitespace) {
        return Err(format!("{url:?} is not a repository URL"));
    }
    Ok((url, git_ref))
}

/// A branch or tag name git accepts (the rules of `git check-ref-format --branch`): no control
/// characters, spaces or any of `~^:?*[\`, no `..`, `@{` or `//`, no part starting with `.` or
/// ending with `.lock`, not starting or ending with `/`, not ending with `.`, not `@`.
pub fn is_valid_ref_name(r: &str) -> bool {
    !r.is_empty()
        && r != "@"
        && !r.starts_with(['/', '-'])
        && !r.ends_with(['/', '.'])
        && !r.contains("..")
        && !r.contains("@{")
        && !r.contains("//")
        && !r
            .chars()
            .any(|c| c.is_control() || c == ' ' || "~^:?*[\\".contains(c))
        && r.split('/')
            .all(|part| !part.starts_with('.') && !part.ends_with(".lock"))
}

/// `(host, path)` of a URL or scp-like address; `(None, None)` for a local path.
fn split_host(url: &str) -> (Option<String>, Option<&str>) {
    if let Some((scheme, rest)) = url.split_once("://") {
        if scheme.eq_ignore_ascii_case("file") {
            return (None, None);
        }
        let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        let host = authority.rsplit('@').next().unwrap_or(authority);
        // ssh://host:22/o/r keeps its port out of the host name only for ssh.
        let host = if scheme.eq_ignore_ascii_case("ssh") {
            host.split(':').next().unwrap_or(host)
        } else {
            host
        };
        return (
            (!host.is_empty()).then(|| host.to_ascii_lowercase()),
            Some(path),
        );
    }
    // scp-like: [user@]host:path, where host has no slash before the colon.
    if let Some((before, path)) = url.split_once(':')
        && !before.contains('/')
        && !before.is_empty()
        && !path.starts_with("//")
    {
        let host = before.rsplit('@').next().unwrap_or(before);
        return (Some(host.to_ascii_lowercase()), Some(path));
    }
    (None, None)
}

/// `https://user:secret@host/x` → `https://host/x`; other URLs unchanged.
pub fn redact_userinfo(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let end = rest.find('/').unwrap_or(rest.len());
    match rest[..end].rfind('@') {
        Some(at) if rest[..at].contains(':') || !scheme.eq_ignore_ascii_case("ssh") => {
            format!("{scheme}://{}", &rest[at + 1..])
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slug(o: &str, n: &str) -> Option<(String, String)> {
        Some((o.into(), n.into()))
    }

    #[test]
    fn parses_the_forms_git_accepts() {
        let u = Upstream::parse("https://github.com/rust-lang/cargo.git");
        assert_eq!(u.host.as_deref(), Some("github.com"));
        assert_eq!(u.slug, slug("rust-lang", "cargo"));
        let u = Upstream::parse("git@github.com:o/r.git");
        assert_eq!(u.host.as_deref(), Some("github.com"));
        assert_eq!(u.slug, slug("o", "r"));
        let u = Upstream::parse("ssh://git@GitHub.com:22/o/r");
        assert_eq!(u.host.as_deref(), Some("github.com"));
        assert_eq!(u.slug, slug("o", "r"));
        let u = Upstream::parse("http://127.0.0.1:8080/team/app.git");
        assert_eq!(u.host.as_deref(), Some("127.0.0.1:8080"));
        assert_eq!(u.slug, slug("team", "app"));
        let u = Upstream::parse("/srv/git/app.git");
        assert_eq!((u.host, u.slug), (None, None));
        let u = Upstream::parse("file:///srv/git/app.git");
        assert_eq!((u.host, u.slug), (None, None));
        // GitLab subgroups: the last two segments are not a GitHub slug, but parse anyway.
        let u = Upstream::parse("https://gitlab.example/g/sub/r.git");
        assert_eq!(u.slug, slug("sub", "r"));
    }

    #[test]
    fn github_api_only_where_known() {
        let gh = Upstream::parse("https://github.com/o/r.git")
            .github(None)
            .unwrap();
        assert_eq!(gh.api, "https://api.github.com");
        assert_eq!((gh.owner.as_str(), gh.name.as_str()), ("o", "r"));
        assert_eq!(
            Upstream::parse("https://gitlab.com/o/r.git").github(None),
            None
        );
        let ghe = Upstream::parse("https://ghe.example/o/r.git")
            .github(Some("https://ghe.example/api/v3/"))
            .unwrap();
        assert_eq!(ghe.api, "https://ghe.example/api/v3");
        assert_eq!(Upstream::parse("/srv/r.git").github(Some("http://x")), None);
    }

    #[test]
    fn start_targets_split_url_and_ref() {
        let p = |s: &str| parse_start_target(s).unwrap();
        assert_eq!(p("github.com/o/r"), ("https://github.com/o/r".into(), None));
        assert_eq!(
            p("github.com/o/r@v1.2"),
            ("https://github.com/o/r".into(), Some("v1.2".into()))
        );
        assert_eq!(
            p("git@github.com:o/r.git"),
            ("git@github.com:o/r.git".into(), None)
        );
        assert_eq!(
            p("git@github.com:o/r.git@feature/x"),
            ("git@github.com:o/r.git".into(), Some("feature/x".into()))
        );
        assert_eq!(
            p("https://user@host.example/o/r.git@0123abcd"),
            (
                "https://user@host.example/o/r.git".into(),
                Some("0123abcd".into())
            )
        );
        assert_eq!(p("ssh://git@h/o/r"), ("ssh://git@h/o/r".into(), None));
        assert!(parse_start_target("").is_err());
        assert!(parse_start_target("github.com/o/r@bad..ref").is_err());
        assert!(parse_start_target("github.com/o/r@").is_err());
    }

    #[test]
    fn ref_names_follow_git() {
        for good in ["main", "feature/x", "v1.2.3", "release-2.x", "a@b"] {
            assert!(is_valid_ref_name(good), "{good}");
        }
        for bad in [
            "",
            "@",
            "a..b",
            "a b",
            "x.lock",
            "feature/.hidden",
            "/x",
            "x/",
            "x.",
            "a@{1}",
            "a//b",
            "a~1",
            "a^",
            "a:b",
            "-x",
            "a\\b",
        ] {
            assert!(!is_valid_ref_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn credentials_never_shown() {
        assert_eq!(
            redact_userinfo("https://x-access-token:ghp_secret@github.com/o/r.git"),
            "https://github.com/o/r.git"
        );
        assert_eq!(
            redact_userinfo("https://tok@github.com/o/r"),
            "https://github.com/o/r"
        );
        assert_eq!(redact_userinfo("ssh://git@host/o/r"), "ssh://git@host/o/r");
        assert_eq!(redact_userinfo("git@host:o/r"), "git@host:o/r");
        let u = Upstream::parse("https://u:p@github.com/o/r.git");
        assert!(!u.display().contains("p@"));
    }
}
