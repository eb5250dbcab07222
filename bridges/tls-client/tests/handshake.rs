//! Real handshakes against a rustls server on loopback, with certificates made here:
//! which chains each setting trusts and which it refuses.

use std::path::PathBuf;
use std::sync::Arc;

use bridge_tls::{Pin, Pins, TlsClient, TlsSettings};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, PublicKeyData,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{crypto, RootCertStore, ServerConfig};
use tokio_rustls::TlsAcceptor;

struct Leaf {
    chain: Vec<CertificateDer<'static>>,
    key: KeyPair,
}

fn ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
}

fn leaf_signed_by(issuer: &CertifiedIssuer<'static, KeyPair>, name: &str) -> Leaf {
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec![name.to_string()])
        .unwrap()
        .signed_by(&key, issuer)
        .unwrap();
    Leaf {
        chain: vec![cert.der().clone()],
        key,
    }
}

/// As `openssl req -x509` makes them: self-signed, and CA:TRUE.
fn self_signed_ca_true(name: &str) -> Leaf {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(vec![name.to_string()]).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let cert = params.self_signed(&key).unwrap();
    Leaf {
        chain: vec![cert.der().clone()],
        key,
    }
}

fn pin_of(key: &impl PublicKeyData) -> Pins {
    Pins(vec![Pin::of_spki(&key.subject_public_key_info())])
}

struct Dir(PathBuf);

impl Dir {
    fn new(tag: &str) -> Dir {
        let d = std::env::temp_dir().join(format!("bridge-tls-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        Dir(d)
    }
    fn write(&self, name: &str, pem: &str) -> PathBuf {
        let p = self.0.join(name);
        std::fs::write(&p, pem).unwrap();
        p
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn pem(der: &CertificateDer<'_>) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der.as_ref());
    let lines: Vec<&str> = b64
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    format!(
        "-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n",
        lines.join("\n")
    )
}

/// Serves one TLS connection on loopback and writes "ok" once the handshake is done;
/// `client_ca` makes a client certificate signed by it mandatory.
async fn serve(leaf: &Leaf, client_ca: Option<&CertificateDer<'static>>) -> u16 {
    let provider = Arc::new(crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap();
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            roots.add(ca.clone()).unwrap();
            builder.with_client_cert_verifier(
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                    .build()
                    .unwrap(),
            )
        }
    };
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf.key.serialize_der()));
    let config = builder.with_single_cert(leaf.chain.clone(), key).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        if let Ok(mut tls) = TlsAcceptor::from(Arc::new(config)).accept(tcp).await {
            let _ = tls.write_all(b"ok").await;
            let _ = tls.shutdown().await;
        }
    });
    port
}

/// Ok when the client finished the handshake and read the server's "ok".
async fn talk(settings: &TlsSettings, port: u16, host: &str) -> Result<(), String> {
    let client = TlsClient::new(settings).map_err(|e| format!("settings: {e}"))?;
    let tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let mut tls = client.connect(host, tcp).await.map_err(|e| e.to_string())?;
    let mut got = Vec::new();
    tls.read_to_end(&mut got).await.map_err(|e| e.to_string())?;
    if got == b"ok" {
        Ok(())
    } else {
        Err(format!("read {got:?}"))
    }
}

#[tokio::test]
async fn a_self_signed_ca_true_certificate_in_ca_file_is_trusted_with_its_name_checked() {
    let dir = Dir::new("selfsigned");
    let leaf = self_signed_ca_true("broker.test");
    let ca_file = dir.write("server.pem", &pem(&leaf.chain[0]));
    let s = TlsSettings {
        ca_file: Some(ca_file.clone()),
        ..Default::default()
    };
    talk(&s, serve(&leaf, None).await, "broker.test")
        .await
        .unwrap();
    let e = talk(&s, serve(&leaf, None).await, "other.test")
        .await
        .unwrap_err();
    assert!(
        e.contains("TLS handshake with other.test failed") && e.contains("NotValidForName"),
        "{e}"
    );
    // server_name overrides the host for SNI and the check.
    let s = TlsSettings {
        ca_file: Some(ca_file),
        server_name: Some("broker.test".into()),
        ..Default::default()
    };
    talk(&s, serve(&leaf, None).await, "127.0.0.1")
        .await
        .unwrap();
    // Without the file the same server is unknown.
    let e = talk(
        &TlsSettings::default(),
        serve(&leaf, None).await,
        "broker.test",
    )
    .await
    .unwrap_err();
    assert!(e.contains("invalid peer certificate"), "{e}");
}

#[tokio::test]
async fn a_leaf_pin_alone_is_the_trust_and_a_wrong_one_names_the_servers_key() {
    let leaf = self_signed_ca_true("broker.test");
    let s = TlsSettings {
        pin_sha256: pin_of(&leaf.key),
        ..Default::default()
    };
    talk(&s, serve(&leaf, None).await, "broker.test")
        .await
        .unwrap();
    let e = talk(&s, serve(&leaf, None).await, "other.test")
        .await
        .unwrap_err();
    assert!(e.contains("NotValidForName"), "{e}");

    let other = self_signed_ca_true("broker.test");
    let e = talk(&s, serve(&other, None).await, "broker.test")
        .await
        .unwrap_err();
    let shown = pin_of(&other.key).0[0].to_string();
    assert!(
        e.contains("pinned key (pin_sha256)") && e.contains(&shown),
        "{e}"
    );
}

#[tokio::test]
async fn a_pinned_ca_must_really_have_signed_the_leaf() {
    let real = ca("Pinned CA");
    let mut leaf = leaf_signed_by(&real, "broker.test");
    leaf.chain.push(real.der().clone());
    let s = TlsSettings {
        pin_sha256: pin_of(real.key()),
        ..Default::default()
    };
    talk(&s, serve(&leaf, None).await, "broker.test")
        .await
        .unwrap();

    // A server that merely carries the pinned CA's (public) certificate.
    let rogue = ca("Pinned CA");
    let mut forged = leaf_signed_by(&rogue, "broker.test");
    forged.chain.push(real.der().clone());
    let e = talk(&s, serve(&forged, None).await, "broker.test")
        .await
        .unwrap_err();
    assert!(e.contains("invalid peer certificate"), "{e}");
}

#[tokio::test]
async fn a_pin_with_a_ca_file_needs_both() {
    let dir = Dir::new("both");
    let authority = ca("Broker CA");
    let leaf = leaf_signed_by(&authority, "broker.test");
    let ca_file = dir.write("ca.pem", &authority.pem());
    let unrelated = dir.write("other.pem", &ca("Other CA").pem());
    let both = |file: &PathBuf| TlsSettings {
        ca_file: Some(file.clone()),
        pin_sha256: pin_of(&leaf.key),
        ..Default::default()
    };
    talk(&both(&ca_file), serve(&leaf, None).await, "broker.test")
        .await
        .unwrap();
    let e = talk(&both(&unrelated), serve(&leaf, None).await, "broker.test")
        .await
        .unwrap_err();
    assert!(e.contains("UnknownIssuer"), "{e}");
    // The CA file alone trusts the chain as usual.
    let s = TlsSettings {
        ca_file: Some(ca_file),
        ..Default::default()
    };
    talk(&s, serve(&leaf, None).await, "broker.test")
        .await
        .unwrap();
}

#[tokio::test]
async fn a_client_certificate_is_presented_when_given() {
    let dir = Dir::new("client");
    let server = self_signed_ca_true("broker.test");
    let clients = ca("Client CA");
    let client_key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(DnType::CommonName, "gateway");
    let client_cert = params.signed_by(&client_key, &clients).unwrap();
    let without = TlsSettings {
        pin_sha256: pin_of(&server.key),
        ..Default::default()
    };
    let with = TlsSettings {
        client_cert: Some(dir.write("client.pem", &client_cert.pem())),
        client_key: Some(dir.write("client.key", &client_key.serialize_pem())),
        ..without.clone()
    };
    talk(
        &with,
        serve(&server, Some(clients.der())).await,
        "broker.test",
    )
    .await
    .unwrap();
    let e = talk(
        &without,
        serve(&server, Some(clients.der())).await,
        "broker.test",
    )
    .await
    .unwrap_err();
    assert!(e.to_lowercase().contains("certificate"), "{e}");
}

#[test]
fn unusable_files_and_combinations_name_their_key() {
    let dir = Dir::new("errors");
    let junk = dir.write("junk.pem", "not PEM at all\n");
    let cert = dir.write(
        "cert.pem",
        &self_signed_ca_true("x.test").key.serialize_pem(),
    );
    let missing = dir.0.join("missing.pem");
    let pin = pin_of(&KeyPair::generate().unwrap());
    let cases: Vec<(TlsSettings, &str, &str)> = vec![
        (
            TlsSettings {
                ca_file: Some(missing.clone()),
                ..Default::default()
            },
            "ca_file",
            "missing.pem",
        ),
        (
            TlsSettings {
                ca_file: Some(junk.clone()),
                ..Default::default()
            },
            "ca_file",
            "no PEM certificate",
        ),
        (
            TlsSettings {
                client_cert: Some(junk.clone()),
                ..Default::default()
            },
            "client_key",
            "give its private key",
        ),
        (
            TlsSettings {
                client_key: Some(junk.clone()),
                ..Default::default()
            },
            "client_cert",
            "give its certificate",
        ),
        (
            TlsSettings {
                client_cert: Some(junk.clone()),
                client_key: Some(cert.clone()),
                ..Default::default()
            },
            "client_cert",
            "no PEM certificate",
        ),
        (
            TlsSettings {
                client_cert: Some(dir.write("c.pem", &pem(&self_signed_ca_true("x").chain[0]))),
                client_key: Some(junk),
                ..Default::default()
            },
            "client_key",
            "no PEM private key",
        ),
        (
            TlsSettings {
                insecure: true,
                pin_sha256: pin,
                ..Default::default()
            },
            "insecure",
            "pin_sha256",
        ),
        (
            TlsSettings {
                server_name: Some("not a name!".into()),
                ..Default::default()
            },
            "server_name",
            "not a name",
        ),
    ];
    for (settings, key, says) in cases {
        let e = TlsClient::new(&settings).expect_err(key);
        assert_eq!(e.key, key, "{e}");
        assert!(e.message.contains(says), "{e}");
    }
}
