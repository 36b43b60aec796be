//! The objects a Function owns, built by pure functions from the Function, its Triggers, the
//! resolved module and the operator's settings. The reconciler only applies what these return,
//! so every field of every child is unit-tested here without a client.

use std::collections::BTreeMap;

use k8s_openapi::{
    api::{
        apps::v1::{Deployment, DeploymentSpec},
        core::v1::{
            Capabilities, ConfigMap, ConfigMapVolumeSource, Container, ContainerPort,
            EmptyDirVolumeSource, EnvVar as K8sEnvVar, EnvVarSource, HTTPGetAction, KeyToPath,
            ObjectFieldSelector, PodSecurityContext, PodSpec, PodTemplateSpec, Probe,
            ResourceRequirements, SeccompProfile, SecretVolumeSource, SecurityContext, Service,
            ServicePort, ServiceSpec, Volume, VolumeMount,
        },
    },
    apimachinery::pkg::{
        api::resource::Quantity,
        apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference},
        util::intstr::IntOrString,
    },
};
use kube::Resource;
use serde_json::{Value, json};
use sluice_api::{EventSchema, Function, Trigger, function::EnvVar};

use crate::{
    Settings,
    module::{Delivery, MODULE_DIR, MODULE_FILE, MODULE_PATH, ResolvedModule},
};

/// Directory of the worker's manifests (the per-Function ConfigMap).
pub const MANIFESTS_DIR: &str = "/etc/sluice/manifests";
/// Key of the per-Function ConfigMap.
pub const MANIFESTS_KEY: &str = "manifests.yaml";
/// Where the NATS credentials Secret is mounted in workers.
pub const NATS_CREDS_DIR: &str = "/etc/sluice/nats";
pub const NATS_CREDS_KEY: &str = "creds";
/// Where the Secrets named by the Function's HTTP Triggers (`tokenSecret`) are mounted in
/// workers, one directory per Secret (`sluice worker --secrets`).
pub const SECRETS_DIR: &str = "/var/run/sluice/secrets";
/// The worker's HTTP port (health, readiness, metrics, synchronous invocations).
pub const WORKER_PORT: i32 = 8080;
/// Prefix of the container variables carrying `valueFrom` env entries to the worker.
pub const SECRET_ENV_PREFIX: &str = "SLUICE_ENV_";
/// Pod-template annotation holding the module digest: a new module rolls the workers.
pub const DIGEST_ANNOTATION: &str = "sluice.dev/module-sha256";
/// The unprivileged user the workers run as (distroless "nonroot").
pub const RUN_AS_USER: i64 = 65532;

/// Memory a worker needs besides its Wasm instances (runtime, compiled code cache, buffers).
pub const BASE_MEMORY_BYTES: u64 = 128 << 20;

/// Name of every per-Function child: Deployment, Service, manifests ConfigMap.
pub fn child_name(function: &str) -> String {
    format!("sluice-fn-{function}")
}

/// The labels of a Function's worker pods; also the Deployment's and Service's selector.
pub fn worker_labels(function: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".into(), "sluice-worker".into()),
        ("app.kubernetes.io/instance".into(), function.into()),
        (
            "app.kubernetes.io/managed-by".into(),
            "sluice-operator".into(),
        ),
        ("sluice.dev/function".into(), function.into()),
    ])
}

/// `status.selector` of a Function (the scale subresource's label selector string).
pub fn selector_string(function: &str) -> String {
    worker_labels(function)
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

fn name_ns(f: &Function) -> (String, String) {
    (
        f.metadata.name.clone().unwrap_or_default(),
        f.metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into()),
    )
}

fn owner(f: &Function) -> Vec<OwnerReference> {
    f.controller_owner_ref(&()).into_iter().collect()
}

fn child_meta(f: &Function) -> ObjectMeta {
    let (name, ns) = name_ns(f);
    ObjectMeta {
        name: Some(child_name(&name)),
        namespace: Some(ns),
        labels: Some(worker_labels(&name)),
        owner_references: Some(owner(f)),
        ..Default::default()
    }
}

/// Does this Trigger target Function `ns/name`?
pub fn targets(t: &Trigger, ns: &str, name: &str) -> bool {
    t.spec.function == name && t.metadata.namespace.as_deref().unwrap_or("default") == ns
}

/// Worker memory: request = base + one instance's `limits.memory`; limit = base +
/// `limits.memory × concurrency` (every in-flight invocation at its cap). CPU: a 100m request
/// and no limit, so bursts are not throttled.
pub fn resources(f: &Function) -> ResourceRequirements {
    let per_instance = f.spec.limits.memory.bytes();
    let concurrency = u64::from(f.spec.concurrency.max(1));
    let request = BASE_MEMORY_BYTES.saturating_add(per_instance);
    let limit = BASE_MEMORY_BYTES.saturating_add(per_instance.saturating_mul(concurrency));
    let mib = |b: u64| Quantity(format!("{}Mi", b.div_ceil(1 << 20)));
    ResourceRequirements {
        requests: Some(BTreeMap::from([
            ("cpu".into(), Quantity("100m".into())),
            ("memory".into(), mib(request)),
        ])),
        limits: Some(BTreeMap::from([("memory".into(), mib(limit))])),
        ..Default::default()
    }
}

fn restricted_security_context() -> SecurityContext {
    SecurityContext {
        run_as_non_root: Some(true),
        run_as_user: Some(RUN_AS_USER),
        run_as_group: Some(RUN_AS_USER),
        read_only_root_filesystem: Some(true),
        allow_privilege_escalation: Some(false),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".into()]),
            ..Default::default()
        }),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Container variable carrying env entry `name` when it comes from a Secret or ConfigMap.
pub fn secret_env_name(name: &str) -> String {
    format!("{SECRET_ENV_PREFIX}{name}")
}

fn env_from_refs(env: &[EnvVar]) -> Vec<K8sEnvVar> {
    use k8s_openapi::api::core::v1::{ConfigMapKeySelector, SecretKeySelector};
    env.iter()
        .filter_map(|e| {
            let from = e.value_from.as_ref()?;
            let source = if let Some(s) = &from.secret_key_ref {
                EnvVarSource {
                    secret_key_ref: Some(SecretKeySelector {
                        name: s.name.clone(),
                        key: s.key.clone(),
                        optional: None,
                    }),
                    ..Default::default()
                }
            } else {
                let c = from.config_map_key_ref.as_ref()?;
                EnvVarSource {
                    config_map_key_ref: Some(ConfigMapKeySelector {
                        name: c.name.clone(),
                        key: c.key.clone(),
                        optional: None,
                    }),
                    ..Default::default()
                }
            };
            Some(K8sEnvVar {
                name: secret_env_name(&e.name),
                value_from: Some(source),
                ..Default::default()
            })
        })
        .collect()
}

fn mount(name: &str, path: &str, read_only: bool) -> VolumeMount {
    VolumeMount {
        name: name.into(),
        mount_path: path.into(),
        read_only: Some(read_only),
        ..Default::default()
    }
}

fn http_probe(path: &str, period: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::String("http".into()),
            ..Default::default()
        }),
        period_seconds: Some(period),
        failure_threshold: Some(3),
        ..Default::default()
    }
}

/// The worker Deployment of a Function. `spec.replicas` is left out on purpose: the
/// autoscaler owns it through the scale subresource, so applying this never resets it.
/// The Secrets a Function's workers mount: the `tokenSecret` of each HTTP Trigger targeting
/// it, sorted and once each.
pub fn token_secrets(triggers: &[&Trigger]) -> Vec<String> {
    let set: std::collections::BTreeSet<String> = triggers
        .iter()
        .filter_map(|t| t.spec.source.http.as_ref()?.token_secret.clone())
        .collect();
    set.into_iter().collect()
}

pub fn worker_deployment(
    f: &Function,
    module: &ResolvedModule,
    settings: &Settings,
    token_secrets: &[String],
) -> Deployment {
    let (name, ns) = name_ns(f);
    let labels = worker_labels(&name);
    let mut args: Vec<String> = [
        "worker",
        "--nats",
        "$(SLUICE_NATS_URL)",
        "--function",
        &format!("{ns}/{name}"),
        "--manifests",
        MANIFESTS_DIR,
        "--listen",
        &format!("0.0.0.0:{WORKER_PORT}"),
        // Workers publish too (replies, dead letters), and every publisher stores an event
        // once per Trigger it matches: they need the whole route table, not just their own.
        "--routes-bucket",
        &settings.routes_bucket,
        "--secrets",
        SECRETS_DIR,
    ]
    .map(String::from)
    .to_vec();
    let mut env = vec![
        K8sEnvVar {
            name: "SLUICE_NATS_URL".into(),
            value: Some(settings.nats_url.clone()),
            ..Default::default()
        },
        // This worker's name in its route-table acknowledgements.
        K8sEnvVar {
            name: "POD_NAME".into(),
            value_from: Some(EnvVarSource {
                field_ref: Some(ObjectFieldSelector {
                    field_path: "metadata.name".into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        },
    ];
    env.extend(env_from_refs(&f.spec.env));

    let mut volumes = vec![
        Volume {
            name: "manifests".into(),
            config_map: Some(ConfigMapVolumeSource {
                name: child_name(&name),
                ..Default::default()
            }),
            ..Default::default()
        },
        Volume {
            name: "tmp".into(),
            empty_dir: Some(EmptyDirVolumeSource {
                size_limit: Some(Quantity("64Mi".into())),
                ..Default::default()
            }),
            ..Default::default()
        },
    ];
    let mut mounts = vec![
        mount("manifests", MANIFESTS_DIR, true),
        mount("module", MODULE_DIR, true),
        mount("tmp", "/tmp", false),
    ];
    let mut init_containers = Vec::new();
    match &module.delivery {
        Delivery::ConfigMap { name: cm, key } => volumes.push(Volume {
            name: "module".into(),
            config_map: Some(ConfigMapVolumeSource {
                name: cm.clone(),
                items: Some(vec![KeyToPath {
                    key: key.clone(),
                    path: MODULE_FILE.into(),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        }),
        Delivery::Url(_) | Delivery::Oci(_) => {
            volumes.push(Volume {
                name: "module".into(),
                empty_dir: Some(EmptyDirVolumeSource::default()),
                ..Default::default()
            });
            let (flag, reference) = match &module.delivery {
                Delivery::Url(u) => ("--url", u.clone()),
                Delivery::Oci(r) => ("--oci", r.clone()),
                Delivery::ConfigMap { .. } => unreachable!("matched above"),
            };
            let mut fetch_args: Vec<String> = vec![
                "module".into(),
                "fetch".into(),
                flag.into(),
                reference,
                "--sha256".into(),
                module.sha256.clone(),
                "--out".into(),
                MODULE_PATH.into(),
            ];
            for registry in &settings.oci_plain_http {
                fetch_args.extend(["--oci-plain-http".into(), registry.clone()]);
            }
            for host in &settings.module_allow_hosts {
                fetch_args.extend(["--allow-host".into(), host.clone()]);
            }
            init_containers.push(Container {
                name: "fetch-module".into(),
                image: Some(settings.image.clone()),
                image_pull_policy: settings.image_pull_policy.clone(),
                args: Some(fetch_args),
                volume_mounts: Some(vec![mount("module", MODULE_DIR, false)]),
                security_context: Some(restricted_security_context()),
                resources: Some(ResourceRequirements {
                    requests: Some(BTreeMap::from([
                        ("cpu".into(), Quantity("50m".into())),
                        ("memory".into(), Quantity("64Mi".into())),
                    ])),
                    limits: Some(BTreeMap::from([(
                        "memory".into(),
                        Quantity("512Mi".into()),
                    )])),
                    ..Default::default()
                }),
                ..Default::default()
            });
        }
    }
    if let Some(secret) = &settings.nats_creds_secret {
        volumes.push(Volume {
            name: "nats-creds".into(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(secret.clone()),
                items: Some(vec![KeyToPath {
                    key: NATS_CREDS_KEY.into(),
                    path: NATS_CREDS_KEY.into(),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        });
        mounts.push(mount("nats-creds", NATS_CREDS_DIR, true));
        args.extend([
            "--nats-creds".into(),
            format!("{NATS_CREDS_DIR}/{NATS_CREDS_KEY}"),
        ]);
    }

    // Only the `token` key, read-only; optional, so a Secret not yet created answers that
    // Trigger's callers 503 instead of keeping every pod of the Function from starting. The
    // kubelet updates the files in place when the Secret changes, and the worker reads them
    // at every request. No RBAC on Secrets is needed: the kubelet reads them.
    for (i, secret) in token_secrets.iter().enumerate() {
        let volume = format!("http-token-{i}");
        volumes.push(Volume {
            name: volume.clone(),
            secret: Some(SecretVolumeSource {
                secret_name: Some(secret.clone()),
                items: Some(vec![KeyToPath {
                    key: "token".into(),
                    path: "token".into(),
                    ..Default::default()
                }]),
                optional: Some(true),
                ..Default::default()
            }),
            ..Default::default()
        });
        mounts.push(mount(&volume, &format!("{SECRETS_DIR}/{secret}"), true));
    }

    let worker = Container {
        name: "worker".into(),
        image: Some(settings.image.clone()),
        image_pull_policy: settings.image_pull_policy.clone(),
        args: Some(args),
        env: Some(env),
        ports: Some(vec![ContainerPort {
            name: Some("http".into()),
            container_port: WORKER_PORT,
            protocol: Some("TCP".into()),
            ..Default::default()
        }]),
        liveness_probe: Some(http_probe("/healthz", 10)),
        readiness_probe: Some(http_probe("/readyz", 5)),
        resources: Some(resources(f)),
        security_context: Some(restricted_security_context()),
        volume_mounts: Some(mounts),
        ..Default::default()
    };
    // In-flight invocations get their whole timeout (plus a margin) to finish on shutdown.
    let grace = i64::try_from(f.spec.limits.timeout.as_std().as_secs())
        .unwrap_or(900)
        .saturating_add(10);

    Deployment {
        metadata: child_meta(f),
        spec: Some(DeploymentSpec {
            selector: LabelSelector {
                match_labels: Some(labels.clone()),
                ..Default::default()
            },
            revision_history_limit: Some(3),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels),
                    annotations: Some(BTreeMap::from([(
                        DIGEST_ANNOTATION.into(),
                        module.sha256.clone(),
                    )])),
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    automount_service_account_token: Some(false),
                    enable_service_links: Some(false),
                    security_context: Some(PodSecurityContext {
                        run_as_non_root: Some(true),
                        run_as_user: Some(RUN_AS_USER),
                        run_as_group: Some(RUN_AS_USER),
                        fs_group: Some(RUN_AS_USER),
                        seccomp_profile: Some(SeccompProfile {
                            type_: "RuntimeDefault".into(),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }),
                    termination_grace_period_seconds: Some(grace),
                    init_containers: (!init_containers.is_empty()).then_some(init_containers),
                    containers: vec![worker],
                    volumes: Some(volumes),
                    ..Default::default()
                }),
            },
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The NetworkPolicy of a Function's workers: their one port from `policy.http` when an HTTP
/// Trigger targets the Function (callers and scrapers alike: one port serves both), else from
/// `policy.metrics`; nothing else may reach them. An empty peer list means from anywhere.
pub fn worker_network_policy(
    f: &Function,
    policy: &crate::config::WorkerPolicy,
    http: bool,
) -> k8s_openapi::api::networking::v1::NetworkPolicy {
    use k8s_openapi::api::networking::v1::{
        NetworkPolicy, NetworkPolicyIngressRule, NetworkPolicyPort, NetworkPolicySpec,
    };
    let (name, _) = name_ns(f);
    let from = if http { &policy.http } else { &policy.metrics };
    NetworkPolicy {
        metadata: child_meta(f),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(LabelSelector {
                match_labels: Some(worker_labels(&name)),
                ..Default::default()
            }),
            policy_types: Some(vec!["Ingress".into()]),
            ingress: Some(vec![NetworkPolicyIngressRule {
                ports: Some(vec![NetworkPolicyPort {
                    port: Some(IntOrString::Int(WORKER_PORT)),
                    protocol: Some("TCP".into()),
                    ..Default::default()
                }]),
                from: (!from.is_empty()).then(|| from.clone()),
            }]),
            ..Default::default()
        }),
    }
}

/// The Service of a Function that an HTTP Trigger targets: port 80 → the workers' `http`.
pub fn worker_service(f: &Function) -> Service {
    let (name, _) = name_ns(f);
    Service {
        metadata: child_meta(f),
        spec: Some(ServiceSpec {
            selector: Some(worker_labels(&name)),
            ports: Some(vec![ServicePort {
                name: Some("http".into()),
                port: 80,
                target_port: Some(IntOrString::Int(WORKER_PORT)),
                protocol: Some("TCP".into()),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A resource as a manifest document: apiVersion, kind, name and namespace, spec; never
/// status or server-managed metadata.
fn document(kind: &str, name: &str, namespace: &str, spec: Value) -> Value {
    json!({
        "apiVersion": "sluice.dev/v1alpha1",
        "kind": kind,
        "metadata": { "name": name, "namespace": namespace },
        "spec": spec,
    })
}

fn trigger_document(t: &Trigger) -> Result<Value, serde_json::Error> {
    Ok(document(
        "Trigger",
        t.metadata.name.as_deref().unwrap_or_default(),
        t.metadata.namespace.as_deref().unwrap_or("default"),
        serde_json::to_value(&t.spec)?,
    ))
}

fn multi_document(header: &str, docs: &[Value]) -> Result<String, serde_yaml::Error> {
    let mut out = format!("# {header}\n");
    for d in docs {
        out.push_str("---\n");
        out.push_str(&serde_yaml::to_string(d)?);
    }
    Ok(out)
}

/// `manifests.yaml` of a Function's workers: the Function with its module rewritten to the
/// file the pod holds (pinned by digest) and each valid Trigger targeting it, sorted by name.
/// Literal env values stay as they are; `valueFrom` entries stay too, and the worker reads
/// their values from `SLUICE_ENV_<NAME>`.
pub fn worker_manifests(
    f: &Function,
    module: &ResolvedModule,
    triggers: &[&Trigger],
) -> Result<String, crate::Error> {
    let (name, ns) = name_ns(f);
    let mut spec = f.spec.clone();
    spec.module = sluice_api::function::ModuleSource {
        path: Some(MODULE_PATH.into()),
        sha256: Some(module.sha256.clone()),
        ..Default::default()
    };
    let mut docs = vec![document(
        "Function",
        &name,
        &ns,
        serde_json::to_value(&spec)?,
    )];
    let mut ts: Vec<&&Trigger> = triggers.iter().collect();
    ts.sort_by_key(|t| t.metadata.name.clone());
    for t in ts {
        docs.push(trigger_document(t)?);
    }
    Ok(multi_document(
        &format!("Generated by sluice-operator for Function {ns}/{name}; do not edit."),
        &docs,
    )?)
}

/// The per-Function ConfigMap the workers mount at [`MANIFESTS_DIR`].
pub fn manifests_configmap(f: &Function, manifests: String) -> ConfigMap {
    ConfigMap {
        metadata: child_meta(f),
        data: Some(BTreeMap::from([(MANIFESTS_KEY.into(), manifests)])),
        ..Default::default()
    }
}

/// Is this Trigger in the route table (its events are matched by publishers and queued on its
/// home bus's stream)? HTTP Triggers are served by the ingress instead.
pub fn routed(t: &Trigger) -> bool {
    t.spec.source.http.is_none()
}

/// The route table every publisher follows: every given Trigger (the caller passes the valid ones
/// whose Function exists) and EventSchema (the valid ones), each kind sorted by namespace and
/// name so the text only changes with them.
pub fn routes(triggers: &[&Trigger], schemas: &[&EventSchema]) -> Result<String, crate::Error> {
    let mut ts: Vec<&&Trigger> = triggers.iter().filter(|t| routed(t)).collect();
    ts.sort_by_key(|t| (t.metadata.namespace.clone(), t.metadata.name.clone()));
    let mut docs = ts
        .iter()
        .map(|t| trigger_document(t))
        .collect::<Result<Vec<_>, _>>()?;
    let mut ss: Vec<&&EventSchema> = schemas.iter().collect();
    ss.sort_by_key(|s| (s.metadata.namespace.clone(), s.metadata.name.clone()));
    for s in ss {
        docs.push(document(
            "EventSchema",
            s.metadata.name.as_deref().unwrap_or_default(),
            s.metadata.namespace.as_deref().unwrap_or("default"),
            serde_json::to_value(&s.spec)?,
        ));
    }
    Ok(multi_document(
        &format!(
            "Generated by sluice-operator: the {} routed Triggers and {} EventSchemas of the cluster; do not edit.",
            ts.len(),
            schemas.len()
        ),
        &docs,
    )?)
}

#[cfg(test)]
mod tests;
