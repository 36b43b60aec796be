//! What Sluice reads out of a Kubernetes Secret: the credentials and certificates of a bridge's
//! broker, and the bearer token of an HTTP Trigger. Pure decisions over the Secret's decoded
//! values; where the values come from (the API server, a mounted volume, a Secret manifest
//! beside `sluice dev`'s Functions) is the caller's business.

use std::collections::BTreeMap;

/// The label a Secret must carry before a bridge uses it. Bridges run in the routers, outside
/// the Trigger's namespace, and connect to the broker the Trigger names: without this opt-in,
/// whoever may write a Trigger could have a router send any Secret of the namespace (one they
/// may not read themselves) to a broker of their choosing.
pub const BRIDGE_LABEL: &str = "sluice.dev/bridge-credentials";

/// The decoded contents of one Secret.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SecretValues {
    pub labels: BTreeMap<String, String>,
    pub data: BTreeMap<String, Vec<u8>>,
}

#[cfg(feature = "crd")]
impl From<k8s_openapi::api::core::v1::Secret> for SecretValues {
    /// `data` and `stringData` merged as the API server does, `stringData` winning (the API
    /// returns only `data`; a manifest may hold either).
    fn from(s: k8s_openapi::api::core::v1::Secret) -> Self {
        let mut data: BTreeMap<String, Vec<u8>> = s
            .data
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, v.0))
            .collect();
        for (k, v) in s.string_data.unwrap_or_default() {
            data.insert(k, v.into_bytes());
        }
        SecretValues {
            labels: s.metadata.labels.unwrap_or_default(),
            data,
        }
    }
}

/// The broker a bridge logs in to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Broker {
    Mqtt,
    Nats,
}

impl Broker {
    /// The keys a bridge Secret of this broker may hold.
    pub fn keys(self) -> &'static [&'static str] {
        match self {
            Broker::Mqtt => &["username", "password", "ca.crt", "tls.crt", "tls.key"],
            Broker::Nats => &[
                "username", "password", "token", "nkey", "creds", "ca.crt", "tls.crt", "tls.key",
            ],
        }
    }
}

/// How a bridge proves who it is.
#[derive(Clone, PartialEq, Eq)]
pub enum Login {
    None,
    /// MQTT: the username alone is allowed (some brokers check only it).
    UserPassword {
        username: String,
        password: Option<String>,
    },
    Token(String),
    /// An NKey user seed (`SU…`).
    NKey(String),
    /// A NATS credentials file (JWT and seed).
    Creds(String),
}

impl std::fmt::Debug for Login {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print a secret: only which kind of login it is.
        f.write_str(match self {
            Login::None => "None",
            Login::UserPassword { .. } => "UserPassword",
            Login::Token(_) => "Token",
            Login::NKey(_) => "NKey",
            Login::Creds(_) => "Creds",
        })
    }
}

/// Everything a bridge needs from its Secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BridgeCredentials {
    pub login: Login,
    /// PEM certificates to trust instead of the system's roots.
    pub ca: Option<Vec<u8>>,
    /// PEM client certificate chain and key.
    pub client_cert: Option<(Vec<u8>, Vec<u8>)>,
}

impl BridgeCredentials {
    pub const NONE: BridgeCredentials = BridgeCredentials {
        login: Login::None,
        ca: None,
        client_cert: None,
    };

    /// Whether the Secret holds certificates, which only a TLS connection can use.
    pub fn has_certificates(&self) -> bool {
        self.ca.is_some() || self.client_cert.is_some()
    }
}

/// Reads a bridge's credentials out of Secret `name`; the error says what is wrong with the
/// Secret (the caller names the Trigger field that points at it).
pub fn bridge_credentials(
    broker: Broker,
    name: &str,
    secret: &SecretValues,
) -> Result<BridgeCredentials, String> {
    if secret.labels.get(BRIDGE_LABEL).map(String::as_str) != Some("true") {
        return Err(format!(
            "Secret {name} is not labelled {BRIDGE_LABEL}=\"true\" (label it to let bridges use it: \
             kubectl label secret {name} {BRIDGE_LABEL}=true)"
        ));
    }
    let allowed = broker.keys();
    if let Some(unknown) = secret.data.keys().find(|k| !allowed.contains(&k.as_str())) {
        return Err(format!(
            "Secret {name} has key {unknown:?}; a {broker:?} bridge reads only {}",
            allowed.join(", ")
        ));
    }
    let text = |key: &str| -> Result<Option<String>, String> {
        match secret.data.get(key) {
            None => Ok(None),
            Some(v) => {
                let s = std::str::from_utf8(v)
                    .map_err(|_| format!("Secret {name} key {key:?} is not UTF-8 text"))?;
                // `kubectl create secret --from-file` keeps a file's final newline.
                let s = s.trim_end_matches(['\r', '\n']);
                if s.is_empty() {
                    return Err(format!("Secret {name} key {key:?} is empty"));
                }
                Ok(Some(s.to_owned()))
            }
        }
    };
    let username = text("username")?;
    let password = text("password")?;
    let token = text("token")?;
    let nkey = text("nkey")?;
    let creds = text("creds")?;
    let logins = [
        username.is_some(),
        token.is_some(),
        nkey.is_some(),
        creds.is_some(),
    ]
    .iter()
    .filter(|x| **x)
    .count();
    if logins > 1 {
        return Err(format!(
            "Secret {name} holds more than one way to log in; keep one of username/password, \
             token, nkey, creds"
        ));
    }
    if password.is_some() && username.is_none() {
        return Err(format!("Secret {name} has a password but no username"));
    }
    if broker == Broker::Nats && username.is_some() && password.is_none() {
        return Err(format!("Secret {name} has a username but no password"));
    }
    let login = if let Some(username) = username {
        Login::UserPassword { username, password }
    } else if let Some(t) = token {
        Login::Token(t)
    } else if let Some(seed) = nkey {
        if !seed.starts_with("SU") {
            return Err(format!(
                "Secret {name} key \"nkey\" is not a user seed (it starts with SU)"
            ));
        }
        Login::NKey(seed)
    } else if let Some(c) = creds {
        if !c.contains("BEGIN NATS USER JWT") || !c.contains("BEGIN USER NKEY SEED") {
            return Err(format!(
                "Secret {name} key \"creds\" is not a NATS credentials file (a user JWT and seed)"
            ));
        }
        Login::Creds(c)
    } else {
        Login::None
    };
    let pem = |key: &str| -> Result<Option<Vec<u8>>, String> {
        match secret.data.get(key) {
            None => Ok(None),
            Some(v) if !v.windows(11).any(|w| w == b"-----BEGIN ") => Err(format!(
                "Secret {name} key {key:?} is not PEM (no -----BEGIN line)"
            )),
            Some(v) => Ok(Some(v.clone())),
        }
    };
    let ca = pem("ca.crt")?;
    let client_cert = match (pem("tls.crt")?, pem("tls.key")?) {
        (Some(c), Some(k)) => Some((c, k)),
        (None, None) => None,
        _ => {
            return Err(format!(
                "Secret {name} needs both tls.crt and tls.key for a client certificate"
            ));
        }
    };
    Ok(BridgeCredentials {
        login,
        ca,
        client_cert,
    })
}

/// The bearer token of an HTTP Trigger out of Secret `name` (key `token`).
pub fn http_token(name: &str, secret: &SecretValues) -> Result<String, String> {
    let v = secret
        .data
        .get("token")
        .ok_or_else(|| format!("Secret {name} has no key \"token\""))?;
    let t = std::str::from_utf8(v)
        .map_err(|_| format!("Secret {name} key \"token\" is not UTF-8 text"))?
        .trim_end_matches(['\r', '\n']);
    // A short token is guessable; 16 characters is what `openssl rand -hex 8` gives.
    if t.len() < 16 {
        return Err(format!(
            "Secret {name} key \"token\" has {} characters; use at least 16",
            t.len()
        ));
    }
    if t.bytes().any(|b| !(0x21..0x7f).contains(&b)) {
        return Err(format!(
            "Secret {name} key \"token\" must be printable ASCII without spaces (it travels in an HTTP header)"
        ));
    }
    Ok(t.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(labelled: bool, data: &[(&str, &str)]) -> SecretValues {
        SecretValues {
            labels: labelled
                .then(|| (BRIDGE_LABEL.to_owned(), "true".to_owned()))
                .into_iter()
                .collect(),
            data: data
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.as_bytes().to_vec()))
                .collect(),
        }
    }

    const PEM: &str = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";

    #[test]
    fn bridges_use_only_labelled_secrets() {
        let e = bridge_credentials(Broker::Mqtt, "s", &secret(false, &[("username", "u")]))
            .unwrap_err();
        assert!(
            e.contains("kubectl label secret s sluice.dev/bridge-credentials=true"),
            "{e}"
        );
    }

    #[test]
    fn reads_each_login_and_the_certificates() {
        let c = bridge_credentials(
            Broker::Mqtt,
            "s",
            &secret(
                true,
                &[("username", "u\n"), ("password", "p"), ("ca.crt", PEM)],
            ),
        )
        .unwrap();
        assert_eq!(
            c.login,
            Login::UserPassword {
                username: "u".into(),
                password: Some("p".into())
            }
        );
        assert_eq!(c.ca.as_deref(), Some(PEM.as_bytes()));
        assert_eq!(c.client_cert, None);
        let c = bridge_credentials(
            Broker::Nats,
            "s",
            &secret(
                true,
                &[("nkey", "SUABC"), ("tls.crt", PEM), ("tls.key", PEM)],
            ),
        )
        .unwrap();
        assert_eq!(c.login, Login::NKey("SUABC".into()));
        assert!(c.client_cert.is_some());
        let c = bridge_credentials(Broker::Nats, "s", &secret(true, &[])).unwrap();
        assert_eq!(c, BridgeCredentials::NONE);
    }

    #[test]
    fn refuses_what_a_bridge_could_not_use() {
        type Case<'a> = (Broker, &'a [(&'a str, &'a str)], &'a str);
        let cases: &[Case] = &[
            (Broker::Mqtt, &[("token", "t")], "reads only"),
            (Broker::Nats, &[("user", "u")], "has key \"user\""),
            (
                Broker::Nats,
                &[("token", "t"), ("nkey", "SU")],
                "more than one way",
            ),
            (Broker::Mqtt, &[("password", "p")], "no username"),
            (Broker::Nats, &[("username", "u")], "no password"),
            (Broker::Nats, &[("nkey", "UABC")], "not a user seed"),
            (
                Broker::Nats,
                &[("creds", "x")],
                "not a NATS credentials file",
            ),
            (Broker::Mqtt, &[("ca.crt", "x")], "not PEM"),
            (
                Broker::Mqtt,
                &[("tls.crt", PEM)],
                "both tls.crt and tls.key",
            ),
            (Broker::Mqtt, &[("username", "\n")], "is empty"),
        ];
        for (broker, data, want) in cases {
            let e = bridge_credentials(*broker, "s", &secret(true, data)).unwrap_err();
            assert!(e.contains(want), "{data:?}: {e}");
        }
        let mut bad = secret(true, &[]);
        bad.data.insert("username".into(), vec![0xff]);
        assert!(
            bridge_credentials(Broker::Mqtt, "s", &bad)
                .unwrap_err()
                .contains("not UTF-8")
        );
    }

    #[cfg(feature = "crd")]
    #[test]
    fn a_secret_reads_data_and_string_data_as_the_api_server_merges_them() {
        let s: k8s_openapi::api::core::v1::Secret = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "s", "labels": {BRIDGE_LABEL: "true"}},
            "data": {"username": "ZnJvbS1kYXRh", "password": "cA=="},
            "stringData": {"username": "from-string-data"},
        }))
        .unwrap();
        let v = SecretValues::from(s);
        assert_eq!(v.labels[BRIDGE_LABEL], "true");
        assert_eq!(v.data["username"], b"from-string-data");
        assert_eq!(v.data["password"], b"p");
    }

    #[test]
    fn logins_never_print_their_secret() {
        let l = Login::UserPassword {
            username: "admin".into(),
            password: Some("hunter2".into()),
        };
        assert_eq!(format!("{l:?}"), "UserPassword");
    }

    #[test]
    fn http_tokens() {
        let ok = "0123456789abcdef\n";
        assert_eq!(
            http_token("t", &secret(false, &[("token", ok)])).unwrap(),
            "0123456789abcdef"
        );
        for (data, want) in [
            (&[][..], "no key \"token\""),
            (&[("token", "short")][..], "at least 16"),
            (&[("token", "0123456789 abcdef")][..], "printable ASCII"),
        ] {
            let e = http_token("t", &secret(false, data)).unwrap_err();
            assert!(e.contains(want), "{e}");
        }
    }
}
