//! Who the cluster says we are: the username of a SelfSubjectReview, as `kubectl auth whoami`
//! asks it. Sessions record it so `status -o wide` tells teammates who holds a workload.

use k8s_openapi::api::authentication::v1::SelfSubjectReview;
use kube::Api;

/// The authenticated username, or `None` where the cluster cannot say: SelfSubjectReview is
/// served from Kubernetes 1.28 (GA) and can be disabled; an error here is never fatal, the
/// caller falls back to the local `user@host`.
pub async fn whoami(client: &kube::Client) -> Option<String> {
    let api: Api<SelfSubjectReview> = Api::all(client.clone());
    match api
        .create(
            &mirrord_copy_lock::post_params(),
            &SelfSubjectReview::default(),
        )
        .await
    {
        Ok(review) => review
            .status
            .and_then(|s| s.user_info)
            .and_then(|u| u.username)
            .filter(|u| !u.is_empty()),
        Err(e) => {
            tracing::debug!(
                "SelfSubjectReview failed ({}); recording the local user instead",
                mirrord_copy_lock::kube_error_text(&e)
            );
            None
        }
    }
}
