//! A git checkout at one commit, with the job's `diff.patch` applied (the `git` CLI).
//!
//! Credentials reach git through `GIT_CONFIG_*` environment variables as an HTTP
//! `Authorization` header: never in the command line, the remote URL or an error.

use std::path::Path;
use std::process::Stdio;

use base64::Engine as _;

use crate::request::GitCredentials;
use crate::{Error, Result};

/// One checkout.
pub(crate) struct Checkout<'a> {
    pub run_id: &'a str,
    pub remote: &'a str,
    pub commit: &'a str,
    pub credentials: Option<&'a GitCredentials>,
}

impl Checkout<'_> {
    /// `git init` + fetch of the commit alone (falling back to a full fetch for servers that
    /// refuse to serve an unadvertised commit) + checkout, into `dest`.
    pub async fn run(&self, dest: &Path) -> Result<()> {
        self.git(dest, "init", &["init", "--quiet"]).await?;
        let shallow = self
            .git(
                dest,
                "fetch the commit",
                &["fetch", "--quiet", "--depth=1", self.remote, self.commit],
            )
            .await;
        if shallow.is_err() {
            self.git(
                dest,
                "fetch the repository",
                &[
                    "fetch",
                    "--quiet",
                    self.remote,
                    "+refs/heads/*:refs/remotes/origin/*",
                ],
            )
            .await?;
        }
        let target = if shallow.is_ok() {
            "FETCH_HEAD"
        } else {
            self.commit
        };
        self.git(
            dest,
            "check out the commit",
            &[
                "-c",
                "advice.detachedHead=false",
                "checkout",
                "--quiet",
                target,
            ],
        )
        .await
    }

    /// Applies the job's uncommitted changes.
    pub async fn apply_patch(&self, dest: &Path, patch: &str) -> Result<()> {
        let file = tempfile::NamedTempFile::new().map_err(|source| Error::Context {
            run_id: self.run_id.to_owned(),
            what: "write diff.patch",
            path: std::env::temp_dir(),
            source,
        })?;
        std::fs::write(file.path(), patch).map_err(|source| Error::Context {
            run_id: self.run_id.to_owned(),
            what: "write diff.patch",
            path: file.path().to_owned(),
            source,
        })?;
        let path = file.path().to_string_lossy().into_owned();
        self.git(
            dest,
            "apply diff.patch",
            &["apply", "--whitespace=nowarn", &path],
        )
        .await
    }

    async fn git(&self, dest: &Path, step: &'static str, args: &[&str]) -> Result<()> {
        let mut cmd = tokio::process::Command::new("git");
        cmd.arg("-C")
            .arg(dest)
            .args(args)
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .stdin(Stdio::null());
        if let Some(credentials) = self.credentials {
            let basic = base64::engine::general_purpose::STANDARD
                .encode(format!("{}:{}", credentials.username, credentials.password));
            cmd.env("GIT_CONFIG_COUNT", "1")
                .env("GIT_CONFIG_KEY_0", "http.extraHeader")
                .env(
                    "GIT_CONFIG_VALUE_0",
                    format!("Authorization: Basic {basic}"),
                );
        }
        let output = cmd.output().await.map_err(|source| Error::Git {
            run_id: self.run_id.to_owned(),
            remote: redact(self.remote),
            step,
            detail: format!("cannot run git ({source}); install git on the agent's host"),
        })?;
        if output.status.success() {
            return Ok(());
        }
        let stderr = String::from_utf8_lossy(&output.stderr);
        Err(Error::Git {
            run_id: self.run_id.to_owned(),
            remote: redact(self.remote),
            step,
            detail: last_lines(&stderr, 5),
        })
    }
}

/// The remote without any `user:password@` part.
fn redact(remote: &str) -> String {
    match url::Url::parse(remote) {
        Ok(mut url) if !url.username().is_empty() || url.password().is_some() => {
            let _ = url.set_username("");
            let _ = url.set_password(None);
            url.to_string()
        }
        _ => remote.to_owned(),
    }
}

fn last_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remotes_lose_their_credentials_in_errors() {
        assert_eq!(
            redact("https://user:tok@github.com/team/repo.git"),
            "https://github.com/team/repo.git"
        );
        assert_eq!(
            redact("git@github.com:team/repo.git"),
            "git@github.com:team/repo.git"
        );
    }
}
