//! npm inside a local sandbox sees the host npm's registry, CA file and proxy settings
//! (behind a TLS-inspecting proxy the CA file is what makes `npm install` work at all), and
//! none of its credentials.

mod common;
#[path = "support/skip.rs"]
mod skip;

use common::TestRepo;

#[test]
fn sandbox_npm_uses_the_hosts_registry_and_ca_file_but_not_its_tokens() {
    let npm_ok = std::process::Command::new("npm")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !npm_ok
        && skip::opted_out(
            "RCLAUDE_SKIP_CLAUDE",
            "sandbox npm settings test: npm missing",
        )
    {
        return;
    }
    assert!(
        npm_ok,
        "this test needs npm on PATH (Debian: apt-get install -y nodejs npm), or set \
         RCLAUDE_SKIP_CLAUDE=1 to skip it"
    );
    let repo = TestRepo::new("[sandbox]\nprovider = \"local\"\n");
    repo.write("README", "hi\n");
    repo.commit_all("init");
    // A global npmrc as a corporate machine has one: its own registry and CA file, plus a
    // credential that must stay on the host.
    let npmrc = repo.home.path().join("global-npmrc");
    std::fs::write(
        &npmrc,
        "registry=http://registry.corp.invalid:4873/\ncafile=/etc/corp-ca.pem\n\
         //registry.corp.invalid:4873/:_authToken=npm_host_only_secret\n",
    )
    .unwrap();
    // A slow host npm: the new sandbox's agent asks it beside the first sync, and the first
    // command must still find the settings written (commands wait for them).
    let real_npm = std::process::Command::new("sh")
        .args(["-c", "command -v npm"])
        .output()
        .unwrap();
    let real_npm = String::from_utf8(real_npm.stdout).unwrap();
    let shims = repo.home.path().join("slow-npm");
    std::fs::create_dir_all(&shims).unwrap();
    let shim = shims.join("npm");
    std::fs::write(
        &shim,
        format!("#!/bin/sh\nsleep 2\nexec {} \"$@\"\n", real_npm.trim()),
    )
    .unwrap();
    std::fs::set_permissions(&shim, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let path = format!(
        "{}:{}",
        shims.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut up = repo.cmd(&["up"]);
    up.env("NPM_CONFIG_GLOBALCONFIG", &npmrc).env("PATH", &path);
    let out = up.output().unwrap();
    assert!(
        out.status.success(),
        "up failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let first = repo
        .ok(&["exec", "--", "sh", "-c", "cat ~/.npmrc"])
        .stdout();
    assert!(
        first.contains("registry=http://registry.corp.invalid:4873/"),
        "the first command ran before the sandbox's .npmrc was written:\n{first}"
    );
    let npm_get = |key: &str| {
        repo.ok(&["exec", "--", "npm", "config", "get", key])
            .stdout()
            .trim()
            .to_string()
    };
    assert_eq!(
        npm_get("cafile"),
        "/etc/corp-ca.pem",
        "sandbox npm lost the CA file"
    );
    assert_eq!(
        npm_get("registry"),
        "http://registry.corp.invalid:4873/",
        "sandbox npm lost the registry"
    );
    let npmrc_in_sandbox = repo
        .ok(&["exec", "--", "sh", "-c", "cat ~/.npmrc"])
        .stdout();
    assert!(
        !npmrc_in_sandbox.contains("npm_host_only_secret"),
        "a host npm credential reached the sandbox:\n{npmrc_in_sandbox}"
    );
}
