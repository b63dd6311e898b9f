//! preview and create.
//!
//! create's order (DESIGN.md): resolve, validate, [reuse], session ConfigMap (provisional),
//! [scale-down prepare: guardrail, lock, original count], copy pod (owned by the session
//! ConfigMap), wait until Ready, [scale to zero]. A StatefulSet copy that takes over a
//! ReadWriteOnce claim scales to zero first and waits for the ordinal's pod to be gone before
//! the copy pod. Any failure after the session ConfigMap exists ends the session (undoing
//! scale-down first) before the error is returned.
//!
//! Two phases: the session is written provisional and lives by its heartbeat
//! ([`PROVISIONAL_LEASE`], renewed while create waits) until the caller, having shown the
//! result, calls [`super::confirm`]; only then does a detached session's TTL count. A create
//! killed at any step thus leaves a session gc ends within the provisional lease.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::{Api, ResourceExt};

use super::query::sessions_only;
use super::record::{expiry, NewSession};
use super::wait::{pod_state, wait_gone, wait_ready, PodState};
use super::{CreateRequest, Progress, ProgressFn, Replicas, Runs, Session, SessionHandle};
use crate::claims::{check_exclusive, claims, copied_ordinal};
use crate::copy::{build_copy_pod, CopyOptions};
use crate::error::{is_not_found, Error};
use crate::labels::{self};
use crate::naming;
use crate::resolve::{resolve, ResolvedTarget};
use crate::scale_down;
use mirrord_copy_lock::clock;
use mirrord_copy_lock::rfc3339;

use super::end::end;
use super::heartbeat::{keeping_alive, patch_data, PROVISIONAL_LEASE, RUN_LEASE};

/// With `--keep-command`, how long a ready copy is watched for its application crashing
/// before `create` calls it good.
pub(crate) const KEEP_COMMAND_WATCH: Duration = Duration::from_secs(5);

fn validate(req: &CreateRequest) -> Result<(), Error> {
    if req.namespace.is_empty() {
        return Err(Error::Usage("a namespace is required".into()));
    }
    if req.owner.is_empty() {
        return Err(Error::Usage("an owner (user@host) is required".into()));
    }
    if req.ttl.is_some_and(|ttl| ttl.is_zero()) {
        return Err(Error::Usage("--ttl must be longer than zero".into()));
    }
    if req
        .ttl
        .is_some_and(|ttl| ttl > super::MAX_TTL || expiry(clock::now(), ttl).is_none())
    {
        return Err(Error::Usage(format!(
            "--ttl may be at most {}",
            super::MAX_TTL_TEXT
        )));
    }
    if (req.wait || req.scale_down) && req.timeout.is_zero() {
        return Err(Error::Usage("--timeout must be longer than zero".into()));
    }
    Ok(())
}

/// A StatefulSet claim the copy cannot share with a running original (crate::claims).
fn check_claims(
    req: &CreateRequest,
    resolved: &ResolvedTarget,
    options: &CopyOptions,
) -> Result<(), Error> {
    let claims = claims(resolved, ordinal_of(req, resolved));
    check_exclusive(
        resolved,
        &claims,
        req.scale_down,
        options.claims_as_emptydir,
    )
}

/// The StatefulSet ordinal whose claims the copy takes (crate::claims::copied_ordinal).
fn ordinal_of(req: &CreateRequest, resolved: &ResolvedTarget) -> u32 {
    copied_ordinal(resolved, req.scale_down.then_some(req.scale_to))
}

/// The pod `create` would make (`--dry-run=client`): resolves the target, writes nothing.
/// The ownerReference names a session ConfigMap that does not exist (uid empty).
pub async fn preview(client: &kube::Client, req: &CreateRequest) -> Result<Pod, Error> {
    validate(req)?;
    let resolved = resolve(client, &req.namespace, &req.target).await?;
    let options = req.options.normalized();
    check_claims(req, &resolved, &options)?;
    // Read-only: a dry run also says when the guardrail or another session would refuse.
    if req.scale_down {
        scale_down::check(client, &resolved, req.scale_to).await?;
    }
    let (_, pod) = copy_pod_of(req, &resolved, &options, &naming::session_id())?;
    Ok(pod)
}

/// Create a session and its copy (see the module doc for the order). The session is
/// provisional until the caller [`super::confirm`]s it.
pub async fn create(
    client: &kube::Client,
    req: &CreateRequest,
    on_progress: &ProgressFn,
) -> Result<Session, Error> {
    create_or_stop(client, req, on_progress, std::future::pending()).await
}

/// [`create`], stopped when `stop` completes (the CLI: SIGINT or SIGTERM) with the error it
/// yields: whatever the step, what this create wrote is undone as after a failure (the
/// session ended: scale-down restored first, then the copy, the lock and the session
/// deleted), then that error is returned. A write in flight when `stop` fires may still land
/// after the cleanup: it is part of a provisional session (or owned by one that is gone),
/// which gc ends within [`PROVISIONAL_LEASE`].
pub async fn create_or_stop(
    client: &kube::Client,
    req: &CreateRequest,
    on_progress: &ProgressFn,
    stop: impl std::future::Future<Output = Error>,
) -> Result<Session, Error> {
    let id = naming::session_id();
    let written = AtomicBool::new(false);
    let stopped = {
        let work = create_as(client, req, on_progress, &id, &written);
        tokio::pin!(work);
        tokio::select! {
            result = &mut work => return result,
            err = stop => err,
        }
    };
    if !written.load(Ordering::SeqCst) {
        return Err(stopped);
    }
    on_progress(Progress::Warning(format!(
        "{stopped}: undoing what this create did (session {id}{})",
        if req.scale_down {
            ", scale-down first"
        } else {
            ""
        }
    )));
    if let Err(cleanup) = end(client, &req.namespace, &id, on_progress).await {
        on_progress(Progress::Warning(format!(
            "could not clean up session {id} ({cleanup}); `kubectl mirrord-copy gc -n {}` ends it once its provisional lease ({}s) lapsed",
            req.namespace,
            PROVISIONAL_LEASE.as_secs()
        )));
    }
    Err(stopped)
}

/// The copy pod of session `id` (not written yet: its handle's uid is empty until the session
/// ConfigMap exists), and that handle.
fn copy_pod_of(
    req: &CreateRequest,
    resolved: &ResolvedTarget,
    options: &CopyOptions,
    id: &str,
) -> Result<(SessionHandle, Pod), Error> {
    let handle = SessionHandle {
        config_map: labels::session_config_map_name(id),
        id: id.to_string(),
        namespace: req.namespace.clone(),
        uid: String::new(),
    };
    let pod = build_copy_pod(
        resolved,
        options,
        ordinal_of(req, resolved),
        &handle,
        &naming::copy_pod_name(&req.target.name),
        &req.owner,
        clock::now(),
    )?;
    Ok((handle, pod))
}

async fn create_as(
    client: &kube::Client,
    req: &CreateRequest,
    on_progress: &ProgressFn,
    id: &str,
    written: &AtomicBool,
) -> Result<Session, Error> {
    validate(req)?;
    let options = req.options.normalized();
    let resolved = resolve(client, &req.namespace, &req.target).await?;
    on_progress(Progress::Resolved {
        target: req.target.to_string(),
        object: resolved.object.describe(),
    });

    let id = id.to_string();
    // Bad exclusions and a claim the copy cannot share fail here, before anything is written.
    check_claims(req, &resolved, &options)?;
    let (handle, preview) = copy_pod_of(req, &resolved, &options, &id)?;
    let pod_name = preview.name_any();
    let runs = Runs::annotated(preview.annotations())
        .map(|(container, mode)| Runs::new(container, mode, &options));

    if req.reuse {
        if let Some(session) = reuse(client, req, &options, on_progress).await? {
            return Ok(session);
        }
    }
    // Which workload, and its guardrails, before anything is written; a lock held by another
    // session is found by acquiring it (the session just created is then ended again).
    let checked = match req.scale_down {
        true => {
            let checked = scale_down::check_for_create(
                client,
                &resolved,
                req.scale_to,
                req.suspend_argocd,
                &req.argocd_namespace,
            );
            Some(checked.await?)
        }
        false => None,
    };

    let new = NewSession {
        id: &id,
        namespace: &req.namespace,
        target: req.target.to_string(),
        copy_pod: &pod_name,
        scale_down: req.scale_down,
        scale_to: req.scale_to,
        owner: &req.owner,
        host: &req.host,
        workload: checked.as_ref().map(scale_down::Checked::workload),
        scaled_objects: checked
            .as_ref()
            .map(scale_down::Checked::scaled_object_names)
            .unwrap_or_default(),
        argo_application: checked
            .as_ref()
            .and_then(scale_down::Checked::paused_application),
        options: &options,
        now: clock::now(),
        ttl: req.ttl,
    };
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &req.namespace);
    // From here on a stop undoes: the POST may land even if its answer never arrives.
    written.store(true, Ordering::SeqCst);
    let cm = cms
        .create(
            &mirrord_copy_lock::post_params(),
            &new.checked_config_map()?,
        )
        .await
        .map_err(|e| Error::from_kube(e, "create", "configmaps"))?;
    let handle = SessionHandle {
        uid: cm.uid().unwrap_or_default(),
        ..handle
    };
    on_progress(Progress::SessionCreated {
        session: id.clone(),
        config_map: handle.config_map.clone(),
    });

    match start_copy(
        client,
        req,
        checked,
        &resolved,
        &handle,
        &pod_name,
        on_progress,
    )
    .await
    {
        Ok(replicas) => Ok(Session {
            record_uid: cm.uid(),
            runs,
            replicas,
            ..new.session()
        }),
        Err(err) => {
            let cleaned = end(client, &req.namespace, &id, on_progress).await;
            if let Err(cleanup) = &cleaned {
                on_progress(Progress::Warning(format!(
                    "could not clean up session {id} after the failure ({cleanup}); \
                     `kubectl mirrord-copy delete {pod_name} -n {}` or `gc` will retry",
                    req.namespace
                )));
            }
            Err(err.after_cleanup(cleaned.is_ok()))
        }
    }
}

/// Everything after the session ConfigMap exists; with scale-down, the two counts of its lock.
async fn start_copy(
    client: &kube::Client,
    req: &CreateRequest,
    checked: Option<scale_down::Checked>,
    resolved: &ResolvedTarget,
    handle: &SessionHandle,
    pod_name: &str,
    on_progress: &ProgressFn,
) -> Result<Option<Replicas>, Error> {
    let options = &req.options.normalized();
    let plan = match checked {
        Some(checked) => {
            let mut holder = scale_down::Holder::new(&req.owner, Some(&req.host), pod_name);
            holder.expires = req.ttl.and_then(|ttl| expiry(clock::now(), ttl));
            let lease = req.ttl.unwrap_or(RUN_LEASE);
            let plan = scale_down::prepare_checked(
                client,
                checked,
                handle,
                &holder,
                lease,
                req.suspend_flux,
                on_progress,
            );
            Some(plan.await?)
        }
        None => None,
    };
    // A claim only one pod can use (StatefulSet, ReadWriteOnce) is handed over: the originals
    // stop first, then the copy mounts it. Otherwise the originals go only once the copy can
    // take their place.
    let ordinal = ordinal_of(req, resolved);
    let held: Vec<String> = claims(resolved, ordinal)
        .into_iter()
        .filter(|c| c.exclusive && !options.claims_as_emptydir)
        .map(|c| c.claim_name)
        .collect();
    let scale_first = plan.is_some() && !held.is_empty();
    if let (true, Some(plan)) = (scale_first, &plan) {
        scale_down::apply(client, plan, on_progress).await?;
        let holder = format!("{}-{ordinal}", resolved.object.name);
        on_progress(Progress::Releasing {
            pod: holder.clone(),
            claims: held,
        });
        let gone = wait_gone(client, &req.namespace, &holder, req.timeout);
        keeping_alive(client, req, handle, gone, on_progress).await?;
    }
    let pod = build_copy_pod(
        resolved,
        options,
        ordinal,
        handle,
        pod_name,
        &req.owner,
        clock::now(),
    )?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), &req.namespace);
    let created = pods
        .create(&mirrord_copy_lock::post_params(), &pod)
        .await
        .map_err(|e| Error::from_kube(e, "create", "pods"))?;
    on_progress(Progress::CopyCreated {
        pod: pod_name.to_string(),
    });
    // Scale-down always waits: the originals go only once the copy can take their place.
    if req.wait || plan.is_some() {
        let ready = wait_ready(
            client,
            &req.namespace,
            pod_name,
            Some(created),
            req.timeout,
            req.options.keep_command.then_some(KEEP_COMMAND_WATCH),
            on_progress,
        );
        keeping_alive(client, req, handle, ready, on_progress).await?;
    }
    if let (false, Some(plan)) = (scale_first, &plan) {
        scale_down::apply(client, plan, on_progress).await?;
    }
    Ok(plan.map(|p| Replicas {
        original: p.original_replicas,
        scaled_to: p.target_replicas,
    }))
}

/// The caller's live, detached session of the same target with the same options, if any;
/// its expiry is pushed out to now + ttl.
async fn reuse(
    client: &kube::Client,
    req: &CreateRequest,
    options: &CopyOptions,
    on_progress: &ProgressFn,
) -> Result<Option<Session>, Error> {
    let now = clock::now();
    let target = req.target.to_string();
    let candidates = sessions_only(client, Some(&req.namespace)).await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), &req.namespace);
    for mut session in candidates {
        let same = session.target == target
            && session.owner == req.owner
            && session.host.as_deref().unwrap_or_default() == req.host
            && &session.options == options
            && session.scale_down == req.scale_down
            && session.scale_to == req.scale_to
            // Only detached sessions: a `run` session ends with its command.
            && session.expires.is_some_and(|e| e > now)
            // Only finished ones: a provisional session is another create in progress, or a
            // dead one gc is about to end.
            && !session.provisional;
        if !same {
            continue;
        }
        let healthy = match pods.get(&session.copy_pod).await {
            Ok(pod) => !matches!(pod_state(&pod), PodState::Failed(_)),
            Err(e) if is_not_found(&e) => false,
            Err(e) => return Err(Error::from_kube(e, "get", "pods")),
        };
        if !healthy {
            continue;
        }
        on_progress(Progress::Info(format!(
            "reusing session {} (copy pod {})",
            session.id, session.copy_pod
        )));
        if let Some(ttl) = req.ttl {
            let expires = expiry(now, ttl)
                .unwrap_or(now)
                .max(session.expires.unwrap_or(now));
            patch_data(
                client,
                &session.namespace,
                &session.id,
                labels::DATA_EXPIRES,
                &rfc3339(expires),
            )
            .await?;
            session.expires = Some(expires);
            if session.scale_down {
                scale_down::renew(client, &session.namespace, &session.id, ttl).await?;
            }
        }
        if req.wait {
            wait_ready(
                client,
                &session.namespace,
                &session.copy_pod,
                None,
                req.timeout,
                None,
                on_progress,
            )
            .await?;
        }
        return Ok(Some(session));
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req() -> CreateRequest {
        CreateRequest {
            namespace: "default".into(),
            target: "deploy/x".parse().unwrap(),
            options: CopyOptions::default(),
            scale_down: false,
            scale_to: crate::ScaleTo::Zero,
            ttl: Some(Duration::from_secs(3600)),
            owner: "me".into(),
            host: "me@host".into(),
            wait: true,
            timeout: Duration::from_secs(60),
            reuse: false,
            suspend_flux: false,
            suspend_argocd: false,
            argocd_namespace: scale_down::DEFAULT_ARGOCD_NAMESPACE.into(),
        }
    }

    #[test]
    fn validation_rejects_nonsense_as_usage_errors() {
        validate(&req()).unwrap();
        type Change = Box<dyn Fn(&mut CreateRequest)>;
        let cases: Vec<(&str, Change)> = vec![
            ("zero ttl", Box::new(|r| r.ttl = Some(Duration::ZERO))),
            (
                "huge ttl",
                Box::new(|r| r.ttl = Some(Duration::from_secs(u64::MAX))),
            ),
            (
                "ttl above the cap",
                Box::new(|r| r.ttl = Some(super::super::MAX_TTL + Duration::from_secs(1))),
            ),
            ("zero timeout", Box::new(|r| r.timeout = Duration::ZERO)),
            ("no owner", Box::new(|r| r.owner.clear())),
            ("no namespace", Box::new(|r| r.namespace.clear())),
        ];
        for (what, change) in cases {
            let mut r = req();
            change(&mut r);
            let err = validate(&r).expect_err(what);
            assert_eq!(err.exit_code(), 2, "{what}: {err}");
        }
        let mut no_wait = req();
        no_wait.wait = false;
        no_wait.timeout = Duration::ZERO;
        validate(&no_wait).unwrap();
    }

    #[test]
    fn expiry_is_checked() {
        let now = clock::now();
        assert_eq!(
            expiry(now, Duration::from_secs(60)),
            Some(now + chrono::Duration::seconds(60))
        );
        assert_eq!(expiry(now, Duration::from_secs(u64::MAX)), None);
    }
}
