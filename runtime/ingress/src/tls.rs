//! The TLS client settings of a bridge: the broker's certificate checked against the Secret's
//! `ca.crt` (or the public web roots bundled in the binary, since a slim image may hold no
//! system store), and the Secret's client certificate when it has one.

use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
use sluice_api::credentials::BridgeCredentials;

/// A rustls client configuration for `creds`; the error names the Secret key at fault.
pub fn client_config(creds: &BridgeCredentials) -> Result<rustls::ClientConfig, String> {
    let mut roots = rustls::RootCertStore::empty();
    match &creds.ca {
        Some(pem) => {
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(pem)
                .collect::<Result<_, _>>()
                .map_err(|e| format!("ca.crt: {e}"))?;
            if certs.is_empty() {
                return Err("ca.crt holds no certificate".into());
            }
            for c in certs {
                roots
                    .add(c)
                    .map_err(|e| format!("ca.crt: not a usable CA certificate: {e}"))?;
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    // The provider is named rather than taken from the process default: more than one is
    // compiled in (the MQTT client brings aws-lc-rs), and then there is no default.
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| format!("TLS: {e}"))?
    .with_root_certificates(roots);
    match &creds.client_cert {
        None => Ok(builder.with_no_client_auth()),
        Some((cert, key)) => {
            let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert)
                .collect::<Result<_, _>>()
                .map_err(|e| format!("tls.crt: {e}"))?;
            if chain.is_empty() {
                return Err("tls.crt holds no certificate".into());
            }
            let key = PrivateKeyDer::from_pem_slice(key).map_err(|e| format!("tls.key: {e}"))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| format!("tls.crt/tls.key: {e}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_api::credentials::Login;

    #[test]
    fn names_the_key_at_fault() {
        let bad_ca = BridgeCredentials {
            login: Login::None,
            ca: Some(
                b"-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n".to_vec(),
            ),
            client_cert: None,
        };
        let e = client_config(&bad_ca).unwrap_err();
        assert!(e.starts_with("ca.crt"), "{e}");
        let no_cert = BridgeCredentials {
            ca: None,
            client_cert: Some((b"".to_vec(), b"".to_vec())),
            ..BridgeCredentials::NONE
        };
        let e = client_config(&no_cert).unwrap_err();
        assert!(e.starts_with("tls.crt"), "{e}");
        assert!(client_config(&BridgeCredentials::NONE).is_ok(), "web roots");
    }
}
