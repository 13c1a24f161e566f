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
    if let Some((before, path)) = url.split_once(':') {
        if !before.contains('/') && !before.is_empty() && !path.starts_with("//") {
            let host = before.rsplit('@').next().unwrap_or(before);
            return (Some(host.to_ascii_lowercase()), Some(path));
        }
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
