//! Object store servers for the builder's upload tests: S3 (moto's server mode), Azure
//! Blob (Azurite) and GCS (fake-gcs-server).
//!
//! Why these: MinIO is not on the Go module proxy; of the S3 servers that are served here,
//! moto (PyPI) installs in seconds with no compilation, speaks the S3 REST protocol
//! (path-style and virtual-hosted, multipart uploads, `ListObjectsV2`, the real error
//! codes such as `NoSuchBucket`) and is what LocalStack's S3 grew from, which is what
//! `object_store`'s own CI tests against. SeaweedFS is a production server but a large Go
//! build on two cores; `s3s-fs` is a thinner layer. moto does not check signatures, so the
//! tests prove the requests, not the credentials. Azurite is Microsoft's own emulator and
//! fake-gcs-server the emulator `object_store`'s CI uses for GCS (JSON and XML APIs, with
//! the `disable_oauth` service-account file), both built the same way.

use std::ffi::OsStr;
use std::path::PathBuf;
use std::process::Command;

use base64::Engine as _;

use super::build::{self, Recipe, Step};
use super::process::{ServerProcess, free_port};
use crate::{Error, Result, versions};

const FAKE_GCS_GO_MOD: &str = include_str!("../../assets/go/fakegcs/go.mod");
const FAKE_GCS_GO_SUM: &str = include_str!("../../assets/go/fakegcs/go.sum");
/// Bump when one of these recipes changes.
const RECIPE: u32 = 1;

/// Azurite's well-known development account and key (public, documented by Microsoft).
pub const AZURITE_ACCOUNT: &str = "devstoreaccount1";
/// The key of [`AZURITE_ACCOUNT`].
pub const AZURITE_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

async fn ensure(recipe: fn() -> Recipe) -> Result<PathBuf> {
    tokio::task::spawn_blocking(move || build::ensure(&recipe()))
        .await
        .map_err(|e| Error::Internal(format!("server build task: {e}")))?
}

async fn start(name: &str, binary: PathBuf, args: Vec<String>) -> Result<(ServerProcess, u16)> {
    let port = free_port()?;
    let args: Vec<String> = args
        .into_iter()
        .map(|a| a.replace("{port}", &port.to_string()))
        .collect();
    let args: Vec<&OsStr> = args.iter().map(OsStr::new).collect();
    let mut process = ServerProcess::spawn(name, &binary, &args, |_, _| {})?;
    process.wait_for_port(port, 60).await?;
    Ok((process, port))
}

async fn http_ok(what: &str, response: reqwest::Result<reqwest::Response>) -> Result<()> {
    let response = response.map_err(|e| Error::Internal(format!("{what}: {e}")))?;
    if response.status().is_success() {
        return Ok(());
    }
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    Err(Error::Internal(format!("{what}: {status} {body}")))
}

fn moto_recipe() -> Recipe {
    Recipe {
        name: "moto",
        key: format!("moto-{}-r{RECIPE}", versions::MOTO),
        outputs: &["venv/bin/python"],
        build: |step: &Step<'_>| {
            let venv = step.staged.join("venv");
            let mut cmd = Command::new("python3");
            cmd.args(["-m", "venv"]).arg(&venv);
            build::run_logged("python3 -m venv (moto)", cmd, step.log)?;
            let mut cmd = Command::new(venv.join("bin").join("pip"));
            cmd.args(["install", "--quiet", "--disable-pip-version-check"])
                .arg(format!("moto[server]=={}", versions::MOTO));
            build::run_logged(
                &format!("pip install moto {}", versions::MOTO),
                cmd,
                step.log,
            )
        },
    }
}

/// An S3 server (moto) on a loopback port, empty at start, accepting any credentials.
#[derive(Debug)]
pub struct S3Server {
    process: ServerProcess,
    port: u16,
}

impl S3Server {
    /// Installs moto if the cache is cold (seconds), then starts it on loopback.
    pub async fn start() -> Result<S3Server> {
        S3Server::start_bound("127.0.0.1").await
    }

    /// As [`S3Server::start`], listening on every interface, so the real node's pods reach
    /// it at [`S3Server::endpoint_at`]`(host_ip)` ([`crate::RealNodeInfo::host_ip`]).
    pub async fn start_on_all_interfaces() -> Result<S3Server> {
        S3Server::start_bound("0.0.0.0").await
    }

    async fn start_bound(host: &str) -> Result<S3Server> {
        let dir = ensure(moto_recipe).await?;
        // `python -m` rather than the venv's scripts: their shebangs name the build directory.
        let args = ["-m", "moto.server", "-H", host, "-p", "{port}"];
        let (process, port) = start(
            "moto",
            dir.join("venv").join("bin").join("python"),
            args.iter().map(|a| (*a).to_owned()).collect(),
        )
        .await?;
        Ok(S3Server { process, port })
    }

    /// `http://127.0.0.1:<port>`, the endpoint (path-style).
    pub fn endpoint(&self) -> String {
        self.endpoint_at("127.0.0.1")
    }

    /// `http://<host>:<port>`: the endpoint through another address of this machine (a
    /// server started [`S3Server::start_on_all_interfaces`]).
    pub fn endpoint_at(&self, host: &str) -> String {
        format!("http://{host}:{}", self.port)
    }

    /// Creates a bucket.
    pub async fn create_bucket(&self, bucket: &str) -> Result<()> {
        let url = format!("{}/{bucket}", self.endpoint());
        http_ok(
            &format!("create S3 bucket {bucket}"),
            reqwest::Client::new().put(url).send().await,
        )
        .await
    }

    /// The server process (its log).
    pub fn process(&self) -> &ServerProcess {
        &self.process
    }
}

fn azurite_recipe() -> Recipe {
    Recipe {
        name: "azurite",
        key: format!("azurite-{}-r{RECIPE}", versions::AZURITE),
        outputs: &["node_modules/azurite/dist/src/blob/main.js"],
        build: |step: &Step<'_>| {
            let mut cmd = Command::new("npm");
            cmd.args(["install", "--no-audit", "--no-fund", "--prefix"])
                .arg(step.staged)
                .arg(format!("azurite@{}", versions::AZURITE));
            build::run_logged(
                &format!("npm install azurite {}", versions::AZURITE),
                cmd,
                step.log,
            )
        },
    }
}

/// Azurite's blob service on a loopback port, in memory, with the development account.
#[derive(Debug)]
pub struct Azurite {
    process: ServerProcess,
    port: u16,
}

impl Azurite {
    /// Installs Azurite if the cache is cold, then starts its blob service.
    pub async fn start() -> Result<Azurite> {
        let dir = ensure(azurite_recipe).await?;
        let main = dir.join("node_modules/azurite/dist/src/blob/main.js");
        let args = vec![
            main.display().to_string(),
            "--blobHost".into(),
            "127.0.0.1".into(),
            "--blobPort".into(),
            "{port}".into(),
            "--inMemoryPersistence".into(),
            "--skipApiVersionCheck".into(),
            "--loose".into(),
        ];
        let (process, port) = start("azurite", PathBuf::from("node"), args).await?;
        Ok(Azurite { process, port })
    }

    /// `http://127.0.0.1:<port>/devstoreaccount1`, the account endpoint (path-style).
    pub fn account_endpoint(&self) -> String {
        format!("http://127.0.0.1:{}/{AZURITE_ACCOUNT}", self.port)
    }

    /// Creates a container (a Shared Key signed `Create Container` call with the
    /// development account, as the Azure SDKs send it).
    pub async fn create_container(&self, container: &str) -> Result<()> {
        const VERSION: &str = "2021-08-06";
        let date = httpdate::fmt_http_date(std::time::SystemTime::now());
        let string_to_sign = format!(
            "PUT\n\n\n\n\n\n\n\n\n\n\n\nx-ms-date:{date}\nx-ms-version:{VERSION}\n/{AZURITE_ACCOUNT}/{AZURITE_ACCOUNT}/{container}\nrestype:container"
        );
        let key = base64::engine::general_purpose::STANDARD
            .decode(AZURITE_KEY)
            .map_err(|e| Error::Internal(format!("Azurite key: {e}")))?;
        let signature = base64::engine::general_purpose::STANDARD
            .encode(hmac_sha256(&key, string_to_sign.as_bytes()));
        let url = format!("{}/{container}?restype=container", self.account_endpoint());
        let request = reqwest::Client::new()
            .put(url)
            .header("x-ms-date", date)
            .header("x-ms-version", VERSION)
            .header("content-length", "0")
            .header(
                "authorization",
                format!("SharedKey {AZURITE_ACCOUNT}:{signature}"),
            );
        http_ok(
            &format!("create Azure container {container}"),
            request.send().await,
        )
        .await
    }

    /// The server process (its log).
    pub fn process(&self) -> &ServerProcess {
        &self.process
    }
}

/// HMAC-SHA256 (RFC 2104), for the Shared Key signature.
fn hmac_sha256(key: &[u8], message: &[u8]) -> Vec<u8> {
    use sha2::{Digest, Sha256};
    let mut block = [0u8; 64];
    if key.len() > 64 {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let pad = |byte: u8| block.iter().map(|b| b ^ byte).collect::<Vec<u8>>();
    let inner = Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(message)
        .finalize();
    Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize()
        .to_vec()
}

fn fake_gcs_recipe() -> Recipe {
    Recipe {
        name: "fake-gcs-server",
        key: format!("fake-gcs-server-{}-r{RECIPE}", versions::FAKE_GCS_SERVER),
        outputs: &["bin/fake-gcs-server"],
        build: |step: &Step<'_>| {
            build::go_build(
                step,
                (FAKE_GCS_GO_MOD, FAKE_GCS_GO_SUM),
                &["github.com/fsouza/fake-gcs-server"],
            )
        },
    }
}

/// fake-gcs-server on a loopback port, plain HTTP, in memory.
#[derive(Debug)]
pub struct FakeGcs {
    process: ServerProcess,
    port: u16,
}

impl FakeGcs {
    /// Builds fake-gcs-server if the cache is cold (a few minutes), then starts it.
    pub async fn start() -> Result<FakeGcs> {
        let dir = ensure(fake_gcs_recipe).await?;
        let args = [
            "-scheme",
            "http",
            "-host",
            "127.0.0.1",
            "-port",
            "{port}",
            "-public-host",
            "127.0.0.1:{port}",
            "-backend",
            "memory",
        ];
        let (process, port) = start(
            "fake-gcs-server",
            dir.join("bin").join("fake-gcs-server"),
            args.iter().map(|a| (*a).to_owned()).collect(),
        )
        .await?;
        Ok(FakeGcs { process, port })
    }

    /// `http://127.0.0.1:<port>`, the base URL of the JSON and XML APIs.
    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// A service-account file body that makes clients skip OAuth (fake-gcs-server's and
    /// `object_store`'s convention).
    pub fn service_account_key() -> &'static str {
        r#"{"private_key": "private_key", "private_key_id": "private_key_id", "client_email": "client_email", "disable_oauth": true}"#
    }

    /// Creates a bucket.
    pub async fn create_bucket(&self, bucket: &str) -> Result<()> {
        let url = format!("{}/storage/v1/b?project=test", self.base_url());
        http_ok(
            &format!("create GCS bucket {bucket}"),
            reqwest::Client::new()
                .post(url)
                .json(&serde_json::json!({ "name": bucket }))
                .send()
                .await,
        )
        .await
    }

    /// The server process (its log).
    pub fn process(&self) -> &ServerProcess {
        &self.process
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_sha256_matches_rfc_4231_case_2() {
        let mac = hmac_sha256(b"Jefe", b"what do ya want for nothing?");
        let hex: String = mac.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
