//! Bridges: Trigger sources outside Sluice (an MQTT topic filter, a plain NATS subject) whose
//! messages become CloudEvents on the trigger's queue. A message that is already a structured
//! CloudEvent (JSON with `specversion`) is taken as is; anything else is wrapped, the payload
//! as `data`. MQTT messages are acknowledged (QoS 1) only after the enqueue is durable, so a
//! crash re-sends rather than loses them.

use std::{sync::Arc, time::Duration};

use futures::StreamExt;
use sluice_api::{
    TriggerSpec,
    credentials::{self, BridgeCredentials, Broker, Login},
    trigger::MqttSource,
    trigger::NatsSource,
};
use sluice_event::{CloudEvent, Extension};
use sluice_pattern::Pattern;

use sluice_bus::{BusError, DEFAULT_BUS, Enqueue, SharedBus, TriggerId, now_ms};
use sluice_delivery::router::key_of;

use crate::secrets::SharedSecrets;

/// Why a bridge stopped or could not start. The caller logs it with the trigger and retries.
#[derive(Debug, thiserror::Error)]
pub enum BridgeError {
    /// The Trigger's source settings are unusable (named by their manifest field).
    #[error("{field}: {message}")]
    Config {
        field: &'static str,
        message: String,
    },
    /// The broker refused, dropped or could not be reached.
    #[error("{broker}: {message}")]
    Broker { broker: String, message: String },
    /// The broker ended the subscription.
    #[error("subscription to {0} ended")]
    Ended(String),
    /// The bus did not take a bridged event (it is not acknowledged to the broker).
    #[error(transparent)]
    Bus(#[from] BusError),
}

/// The largest message a bridge turns into an event: the HTTP ingress's default event limit.
/// A larger one is dropped with an error naming the trigger, subject and size (and, on MQTT,
/// acknowledged, so the broker does not send it again and again).
pub const MAX_BRIDGED_BYTES: usize = 256 * 1024;

/// The largest MQTT packet a bridge accepts, announced to the broker (MQTT 5 Maximum Packet
/// Size) so that it discards anything larger instead of sending it: the largest bridged
/// message with the longest topic and room for properties. A message between the two limits
/// still arrives, and is dropped and logged below.
const MQTT_MAX_PACKET: u32 = MAX_BRIDGED_BYTES as u32 + 65_535 + 4096;

/// How long the broker keeps a bridge's session (its subscription and the QoS 1 messages
/// published meanwhile) after the bridge disconnects: long enough to cover a router's restart
/// or an outage of a day, without every router pod that ever ran leaving a session behind.
const MQTT_SESSION_EXPIRY_SECS: u32 = 24 * 3600;

/// Whether a bridged message fits; logs the drop when it does not.
fn fits(trigger: &str, subject: &str, bytes: usize) -> bool {
    let ok = bytes <= MAX_BRIDGED_BYTES;
    if !ok {
        tracing::error!(
            trigger,
            subject,
            bytes,
            limit = MAX_BRIDGED_BYTES,
            "bridged message over the size limit dropped"
        );
    }
    ok
}

fn broker(url: &str) -> impl Fn(&dyn std::fmt::Display) -> BridgeError + '_ {
    move |e| BridgeError::Broker {
        broker: url.to_owned(),
        message: e.to_string(),
    }
}

/// The NATS server Sluice itself uses: a `nats` source without a `url` bridges from it,
/// logging in as Sluice does unless the Trigger names a Secret of its own.
#[derive(Clone, Debug)]
pub struct DefaultNats {
    pub url: String,
    /// Sluice's `.creds` file (`--nats-creds`).
    pub credentials: Option<std::path::PathBuf>,
}

/// Runs the bridge of one trigger until aborted, reconnecting after failures.
pub async fn run(
    trigger: TriggerId,
    spec: TriggerSpec,
    pattern: Option<Pattern>,
    default_nats: Option<DefaultNats>,
    bus: SharedBus,
    schemas: Arc<sluice_schema::Shared>,
    secrets: SharedSecrets,
) {
    let bridge = Bridge {
        namespace: trigger.split('/').next().unwrap_or_default().to_owned(),
        secrets,
        trigger,
        home: spec
            .source
            .bus
            .clone()
            .unwrap_or_else(|| DEFAULT_BUS.to_owned()),
        pattern,
        ordering_key: spec.delivery.ordering.as_ref().map(|o| o.key.clone()),
        dead_letter_bus: spec.delivery.dead_letter.as_ref().map(|d| d.bus.clone()),
        bus,
        schemas,
    };
    let mut backoff = Duration::from_millis(200);
    loop {
        let result = if let Some(m) = &spec.source.mqtt {
            bridge.mqtt(m).await
        } else if let Some(n) = &spec.source.nats {
            bridge.nats(n, default_nats.as_ref()).await
        } else {
            return;
        };
        if let Err(e) = result {
            tracing::warn!(trigger = %bridge.trigger, error = %e, "bridge interrupted; reconnecting");
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(10));
    }
}

struct Bridge {
    trigger: TriggerId,
    /// The Trigger's namespace, where its `credentialsSecret` lives.
    namespace: String,
    secrets: SharedSecrets,
    /// Where the trigger's queue lives on NATS (a bridge has no source bus: the default one).
    home: String,
    pattern: Option<Pattern>,
    ordering_key: Option<String>,
    dead_letter_bus: Option<String>,
    bus: SharedBus,
    schemas: Arc<sluice_schema::Shared>,
}

impl Bridge {
    /// The credentials of Secret `name` (read at every connect, so a rotated Secret is used
    /// from the next reconnect on).
    async fn credentials(
        &self,
        broker: Broker,
        field: &'static str,
        name: Option<&String>,
    ) -> Result<BridgeCredentials, BridgeError> {
        let Some(name) = name else {
            return Ok(BridgeCredentials::NONE);
        };
        let bad = |message: String| BridgeError::Config { field, message };
        let values = self.secrets.get(&self.namespace, name).await.map_err(bad)?;
        credentials::bridge_credentials(broker, name, &values).map_err(bad)
    }

    /// Hands one bridged message to the Trigger: checked against its EventSchema (a message
    /// the schema refuses cannot be answered with a 400, so it is dead-lettered with the
    /// reason, as a handler's fatal failure is), then matched and enqueued.
    async fn take(&self, mut event: CloudEvent) -> Result<(), BridgeError> {
        if let Err(invalid) = self.schemas.get().check(&mut event) {
            tracing::warn!(trigger = %self.trigger, event_id = %event.id, "bridged message refused: {invalid}");
            let dead = sluice_bus::DeadLetter {
                trigger: self.trigger.clone(),
                seq: 0,
                reason: "schema".into(),
                attempts: 0,
                last_error: invalid.to_string(),
                at_ms: now_ms(),
                event,
            };
            self.bus
                .dead_letter(dead, self.dead_letter_bus.as_deref(), None)
                .await?;
            return Ok(());
        }
        if let Some(item) = self.to_enqueue(event) {
            self.bus.enqueue(vec![item]).await?;
        }
        Ok(())
    }

    /// Turns one message into an enqueue, unless the trigger's pattern rejects it.
    fn to_enqueue(&self, event: CloudEvent) -> Option<Enqueue> {
        let json = event.to_json_value();
        if let Some(p) = &self.pattern {
            let mut m = sluice_pattern::Matcher::new();
            m.insert(0usize, p);
            if m.matches(&json).is_empty() {
                return None;
            }
        }
        Some(Enqueue {
            trigger: self.trigger.clone(),
            bus: self.home.clone(),
            key: self.ordering_key.as_deref().and_then(|k| key_of(&json, k)),
            replay: None,
            event: Arc::new(event),
            accepted_ms: now_ms(),
        })
    }

    async fn nats(
        &self,
        src: &NatsSource,
        default: Option<&DefaultNats>,
    ) -> Result<(), BridgeError> {
        let (url, own_creds) = match (&src.url, default) {
            (Some(url), _) => (url.as_str(), None),
            (None, Some(d)) => (d.url.as_str(), d.credentials.as_ref()),
            (None, None) => ("nats://127.0.0.1:4222", None),
        };
        let err = broker(url);
        let field = "spec.source.nats.credentialsSecret";
        let creds = self
            .credentials(Broker::Nats, field, src.credentials_secret.as_ref())
            .await?;
        let mut opts = nats_options(&creds, url.starts_with("tls://"))
            .map_err(|message| BridgeError::Config { field, message })?;
        if let Some(path) = own_creds.filter(|_| src.credentials_secret.is_none()) {
            opts = opts
                .credentials_file(path)
                .await
                .map_err(|e| err(&format!("--nats-creds {}: {e}", path.display())))?;
        }
        let client = opts.connect(url).await.map_err(|e| err(&e))?;
        let mut sub = match &src.queue {
            Some(q) => client
                .queue_subscribe(src.subject.clone(), q.clone())
                .await
                .map_err(|e| err(&e))?,
            None => client
                .subscribe(src.subject.clone())
                .await
                .map_err(|e| err(&e))?,
        };
        tracing::info!(trigger = %self.trigger, subject = %src.subject, "NATS bridge subscribed");
        while let Some(msg) = sub.next().await {
            if !fits(&self.trigger, msg.subject.as_str(), msg.payload.len()) {
                if let Some(reply) = msg.reply {
                    let _ = client.publish(reply, "refused: too large".into()).await;
                }
                continue;
            }
            let event = message_event(
                &format!("nats://{}", msg.subject),
                "dev.sluice.nats.message",
                msg.subject.as_str(),
                &msg.payload,
            );
            self.take(event).await?;
            // Core NATS has no acknowledgement: a request-reply sender learns it was taken.
            if let Some(reply) = msg.reply {
                let _ = client.publish(reply, "accepted".into()).await;
            }
        }
        Err(BridgeError::Ended(src.subject.clone()))
    }

    async fn mqtt(&self, src: &MqttSource) -> Result<(), BridgeError> {
        use rumqttc::v5::{AsyncClient, Event, Incoming, MqttOptions, mqttbytes::QoS};
        let (tls, host, port) = parse_mqtt_url(&src.url)?;
        let err = broker(&src.url);
        let field = "spec.source.mqtt.credentialsSecret";
        let creds = self
            .credentials(Broker::Mqtt, field, src.credentials_secret.as_ref())
            .await?;
        // A client id stable per (trigger, broker, topic, host) with a session that outlives
        // the connection: QoS 1 messages published while this bridge was away are delivered
        // when it returns. Several routers share the topic through an MQTT shared
        // subscription, so each message is bridged once.
        let id = mqtt_client_id(&self.trigger, &src.url, &src.topic);
        let filter = format!(
            "$share/sluice-{}/{}",
            self.trigger.replace('/', "-"),
            src.topic
        );
        let mut opts = MqttOptions::new(id, host, port);
        opts.set_keep_alive(Duration::from_secs(15));
        opts.set_clean_start(false);
        opts.set_session_expiry_interval(Some(MQTT_SESSION_EXPIRY_SECS));
        opts.set_manual_acks(true);
        opts.set_max_packet_size(Some(MQTT_MAX_PACKET));
        match &creds.login {
            Login::None => {}
            Login::UserPassword { username, password } => {
                opts.set_credentials(username.clone(), password.clone().unwrap_or_default());
            }
            // The Secret's keys were checked against what an MQTT bridge reads.
            Login::Token(_) | Login::NKey(_) | Login::Creds(_) => {}
        }
        if tls {
            let config = crate::tls::client_config(&creds)
                .map_err(|message| BridgeError::Config { field, message })?;
            opts.set_transport(rumqttc::Transport::tls_with_config(
                rumqttc::TlsConfiguration::Rustls(Arc::new(config)),
            ));
        } else if creds.has_certificates() {
            return Err(BridgeError::Config {
                field: "spec.source.mqtt.url",
                message: format!(
                    "{:?} is plain MQTT but the credentials Secret holds certificates; use mqtts://",
                    src.url
                ),
            });
        }
        let (client, mut events) = AsyncClient::new(opts, 64);
        let qos = match src.qos {
            0 => QoS::AtMostOnce,
            1 => QoS::AtLeastOnce,
            _ => QoS::ExactlyOnce,
        };
        client
            .subscribe(filter.clone(), qos)
            .await
            .map_err(|e| err(&e))?;
        tracing::info!(trigger = %self.trigger, topic = %src.topic, "MQTT bridge subscribed");
        loop {
            match events.poll().await.map_err(|e| err(&e))? {
                Event::Incoming(Incoming::Publish(p)) => {
                    let topic = String::from_utf8_lossy(&p.topic).into_owned();
                    if !fits(&self.trigger, &topic, p.payload.len()) {
                        client.ack(&p).await.map_err(|e| err(&e))?;
                        continue;
                    }
                    let event = message_event(
                        &format!("mqtt://{topic}"),
                        "dev.sluice.mqtt.message",
                        &topic,
                        &p.payload,
                    );
                    self.take(event).await?;
                    client.ack(&p).await.map_err(|e| err(&e))?;
                }
                Event::Incoming(Incoming::ConnAck(ack)) if !ack.session_present => {
                    // A new session (the broker forgot us) needs the subscription again.
                    client
                        .subscribe(filter.clone(), qos)
                        .await
                        .map_err(|e| err(&e))?;
                }
                _ => {}
            }
        }
    }
}

/// The NATS connect options of a bridge: its login and, for `tls://` or a Secret with
/// certificates, TLS checked against them.
fn nats_options(
    creds: &BridgeCredentials,
    tls_url: bool,
) -> Result<async_nats::ConnectOptions, String> {
    let opts = match &creds.login {
        Login::None => async_nats::ConnectOptions::new(),
        Login::UserPassword { username, password } => async_nats::ConnectOptions::new()
            .user_and_password(username.clone(), password.clone().unwrap_or_default()),
        Login::Token(t) => async_nats::ConnectOptions::new().token(t.clone()),
        Login::NKey(seed) => async_nats::ConnectOptions::new().nkey(seed.clone()),
        Login::Creds(c) => {
            async_nats::ConnectOptions::with_credentials(c).map_err(|e| format!("creds: {e}"))?
        }
    };
    if tls_url || creds.has_certificates() {
        Ok(opts
            .require_tls(true)
            .tls_client_config(crate::tls::client_config(creds)?))
    } else {
        Ok(opts)
    }
}

/// A bridged message as a CloudEvent.
pub fn message_event(source: &str, ty: &str, subject: &str, payload: &[u8]) -> CloudEvent {
    if let Ok(mut e) = CloudEvent::from_json(payload) {
        // The runtime's own attributes are not the sender's to set (a bridge cannot answer
        // 400, so they are dropped).
        e.extensions
            .retain(|k, _| !sluice_event::is_reserved_extension(k));
        return e;
    }
    let mut e = CloudEvent::new(uuid::Uuid::new_v4().to_string(), source, ty);
    e.subject = Some(subject.to_owned());
    e.time = Some(sluice_event::now_rfc3339());
    let json = serde_json::from_slice::<serde_json::Value>(payload).is_ok();
    e.datacontenttype = Some(
        if json {
            "application/json"
        } else {
            "application/octet-stream"
        }
        .into(),
    );
    e.extensions
        .insert("sluicebridge".into(), Extension::String(source.to_owned()));
    if !payload.is_empty() {
        e.data = Some(payload.to_vec());
    }
    e
}

/// The MQTT client id of a bridge: per trigger, broker and topic (two bridges of one host
/// never take each other's session over), and per host (each router its own session).
pub fn mqtt_client_id(trigger: &str, url: &str, topic: &str) -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| std::process::id().to_string());
    use sha2::Digest as _;
    let digest = hex::encode(&sha2::Sha256::digest(format!("{url}\n{topic}").as_bytes())[..4]);
    format!("sluice-{}-{digest}-{host}", trigger.replace('/', "-"))
        .chars()
        .take(128)
        .collect()
}

/// `mqtt://host:port` → (TLS?, host, port); `mqtts://` (or `ssl://`) is TLS, and the port
/// defaults to 1883, or 8883 with TLS.
pub fn parse_mqtt_url(url: &str) -> Result<(bool, String, u16), BridgeError> {
    let bad = |message: String| BridgeError::Config {
        field: "spec.source.mqtt.url",
        message,
    };
    let (tls, rest) = [
        ("mqtt://", false),
        ("tcp://", false),
        ("mqtts://", true),
        ("ssl://", true),
    ]
    .iter()
    .find_map(|(p, tls)| url.strip_prefix(p).map(|r| (*tls, r)))
    .ok_or_else(|| {
        bad(format!(
            "{url:?} is not mqtt://host:port or mqtts://host:port"
        ))
    })?;
    let rest = rest.trim_end_matches('/');
    let (host, port) = match rest.rsplit_once(':') {
        Some((h, p)) => (
            h,
            p.parse().map_err(|_| bad(format!("bad port in {url:?}")))?,
        ),
        None => (rest, if tls { 8883 } else { 1883 }),
    };
    if host.is_empty() {
        return Err(bad(format!("{url:?} names no host")));
    }
    Ok((tls, host.to_owned(), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wraps_plain_payloads_and_keeps_cloudevents() {
        let e = message_event(
            "mqtt://a/b",
            "dev.sluice.mqtt.message",
            "a/b",
            br#"{"t":1}"#,
        );
        assert_eq!(e.datacontenttype.as_deref(), Some("application/json"));
        assert_eq!(e.data.as_deref(), Some(&br#"{"t":1}"#[..]));
        assert_eq!(e.subject.as_deref(), Some("a/b"));
        let ce = br#"{"specversion":"1.0","id":"x","source":"/s","type":"t"}"#;
        let e = message_event("mqtt://a", "ignored", "a", ce);
        assert_eq!((e.id.as_str(), e.ty.as_str()), ("x", "t"));
        let forged = br#"{"specversion":"1.0","id":"x","source":"/s","type":"t","sluicehops":16,"sluicereason":"fatal","region":"eu"}"#;
        let e = message_event("mqtt://a", "ignored", "a", forged);
        let names: Vec<&str> = e.extensions.keys().map(String::as_str).collect();
        assert_eq!(
            names,
            ["region"],
            "the runtime's attributes are dropped, the rest kept"
        );
    }

    #[test]
    fn mqtt_urls() {
        for (url, want) in [
            ("mqtt://127.0.0.1:1883", (false, "127.0.0.1", 1883)),
            ("mqtt://broker", (false, "broker", 1883)),
            ("mqtts://broker", (true, "broker", 8883)),
            ("ssl://broker:9883/", (true, "broker", 9883)),
        ] {
            let (tls, host, port) = parse_mqtt_url(url).unwrap();
            assert_eq!((tls, host.as_str(), port), want, "{url}");
        }
        assert!(parse_mqtt_url("http://x").is_err());
        assert!(parse_mqtt_url("mqtt://x:notaport").is_err());
        assert!(parse_mqtt_url("mqtts://:8883").is_err());
    }
}
