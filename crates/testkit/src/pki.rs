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

/// Generates everything into `dir` (created if needed).
pub fn generate(dir: &Path) -> Result<Pki> {
    fs::create_dir_all(dir).map_err(|source| Error::Io {
        what: "cannot create the pki directory".into(),
        path: dir.to_owned(),
        source,
    })?;

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
    let ca_pem = ca_cert.pem();
    let issuer = Issuer::new(ca_params, ca_key);

    let server_key = KeyPair::generate().map_err(pki_err("apiserver key"))?;
    let mut server = CertificateParams::new(vec![
        "127.0.0.1".to_owned(),
        "10.96.0.1".to_owned(),
        "localhost".to_owned(),
        "kubernetes".to_owned(),
        "kubernetes.default".to_owned(),
        "kubernetes.default.svc".to_owned(),
        "kubernetes.default.svc.cluster.local".to_owned(),
    ])
    .map_err(pki_err("apiserver cert"))?;
    server.distinguished_name = dn("kube-apiserver", None);
    server.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let server_cert = server
        .signed_by(&server_key, &issuer)
        .map_err(pki_err("apiserver cert"))?;

    let admin_key = KeyPair::generate().map_err(pki_err("admin key"))?;
    let mut admin = CertificateParams::new(Vec::<String>::new()).map_err(pki_err("admin cert"))?;
    admin.distinguished_name = dn("rlaunch-test-admin", Some("system:masters"));
    admin.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    admin.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let admin_cert = admin
        .signed_by(&admin_key, &issuer)
        .map_err(pki_err("admin cert"))?;

    let sa_key = KeyPair::generate().map_err(pki_err("service-account key"))?;

    let pki = Pki {
        ca_cert: dir.join("ca.crt"),
        apiserver_cert: dir.join("apiserver.crt"),
        apiserver_key: dir.join("apiserver.key"),
        sa_key: dir.join("sa.key"),
        sa_pub: dir.join("sa.pub"),
        ca_pem,
        admin_cert_pem: admin_cert.pem(),
        admin_key_pem: admin_key.serialize_pem(),
    };
    let files = [
        (&pki.ca_cert, pki.ca_pem.clone()),
        (&pki.apiserver_cert, server_cert.pem()),
        (&pki.apiserver_key, server_key.serialize_pem()),
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
