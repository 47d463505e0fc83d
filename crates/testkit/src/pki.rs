//! Certificates and keys of a test cluster: a CA, the apiserver serving cert (IP SAN
//! 127.0.0.1), an admin client cert in `system:masters`, and the service-account key.

use std::fs;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};

use crate::{Error, Result};

/// Paths of the generated files plus the PEM text the kubeconfig embeds.
#[derive(Debug, Clone)]
pub struct Pki {
    pub ca_cert: PathBuf,
    pub apiserver_cert: PathBuf,
    pub apiserver_key: PathBuf,
    pub sa_key: PathBuf,
    pub sa_pub: PathBuf,
    pub ca_pem: String,
    pub admin_cert_pem: String,
    pub admin_key_pem: String,
}

fn pki_err(what: &'static str) -> impl FnOnce(rcgen::Error) -> Error {
    move |e| Error::Pki {
        what,
        detail: e.to_string(),
    }
}

fn dn(cn: &str, org: Option<&str>) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    if let Some(o) = org {
        dn.push(DnType::OrganizationName, o);
    }
    dn
}

/// A certificate and its key, PEM-encoded.
struct Signed {
    cert_pem: String,
    key_pem: String,
}

/// The test CA: self-signed, and the issuer of every other certificate.
fn certificate_authority() -> Result<(String, Issuer<'static, KeyPair>)> {
    let ca_key = KeyPair::generate().map_err(pki_err("CA key"))?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(pki_err("CA"))?;
    ca_params.distinguished_name = dn("rlaunch-test-ca", None);
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca_params.self_signed(&ca_key).map_err(pki_err("CA cert"))?;
    Ok((ca_cert.pem(), Issuer::new(ca_params, ca_key)))
}

/// A leaf certificate signed by the CA: a server one with these SANs, or a client one.
fn leaf(
    issuer: &Issuer<'static, KeyPair>,
    what: &'static str,
    subject: DistinguishedName,
    server_sans: Option<Vec<String>>,
) -> Result<Signed> {
    let key = KeyPair::generate().map_err(pki_err(what))?;
    let usage = if server_sans.is_some() {
        ExtendedKeyUsagePurpose::ServerAuth
    } else {
        ExtendedKeyUsagePurpose::ClientAuth
    };
    let mut params =
        CertificateParams::new(server_sans.unwrap_or_default()).map_err(pki_err(what))?;
    params.distinguished_name = subject;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![usage];
    let cert = params.signed_by(&key, issuer).map_err(pki_err(what))?;
    Ok(Signed {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// Names the apiserver answers to, in-cluster and on loopback.
fn apiserver_sans() -> Vec<String> {
    [
        "127.0.0.1",
        "10.96.0.1",
        "localhost",
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        "kubernetes.default.svc.cluster.local",
    ]
    .map(str::to_owned)
    .to_vec()
}

/// Generates everything into `dir` (created if needed).
pub fn generate(dir: &Path) -> Result<Pki> {
    fs::create_dir_all(dir).map_err(|source| Error::Io {
        what: "cannot create the pki directory".into(),
        path: dir.to_owned(),
        source,
    })?;
    let (ca_pem, issuer) = certificate_authority()?;
    let server = leaf(
        &issuer,
        "apiserver cert",
        dn("kube-apiserver", None),
        Some(apiserver_sans()),
    )?;
    let admin = leaf(
        &issuer,
        "admin cert",
        dn("rlaunch-test-admin", Some("system:masters")),
        None,
    )?;
    let sa_key = KeyPair::generate().map_err(pki_err("service-account key"))?;
    let pki = Pki {
        ca_cert: dir.join("ca.crt"),
        apiserver_cert: dir.join("apiserver.crt"),
        apiserver_key: dir.join("apiserver.key"),
        sa_key: dir.join("sa.key"),
        sa_pub: dir.join("sa.pub"),
        ca_pem,
        admin_cert_pem: admin.cert_pem,
        admin_key_pem: admin.key_pem,
    };
    let files = [
        (&pki.ca_cert, pki.ca_pem.clone()),
        (&pki.apiserver_cert, server.cert_pem),
        (&pki.apiserver_key, server.key_pem),
        (&pki.sa_key, sa_key.serialize_pem()),
        (&pki.sa_pub, sa_key.public_key_pem()),
        (&dir.join("admin.crt"), pki.admin_cert_pem.clone()),
        (&dir.join("admin.key"), pki.admin_key_pem.clone()),
    ];
    for (path, text) in files {
        fs::write(path, text).map_err(|source| Error::Io {
            what: "cannot write".into(),
            path: path.clone(),
            source,
        })?;
    }
    Ok(pki)
}
