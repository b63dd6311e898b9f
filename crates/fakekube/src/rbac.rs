//! Authentication (bearer tokens) and authorization: rules given per user by tests, plus the
//! stored rbac.authorization.k8s.io/v1 Roles, ClusterRoles and their bindings, evaluated the
//! way the RBAC authorizer does (a ServiceAccount token's user is
//! `system:serviceaccount:<ns>:<name>`, with groups `system:serviceaccounts`,
//! `system:serviceaccounts:<ns>` and `system:authenticated`).

use std::collections::{BTreeMap, HashMap};
use std::sync::RwLock;

use serde_json::Value;

use crate::store::Store;

/// The token that is cluster-admin (user `admin`, group `system:masters`).
pub const ADMIN_TOKEN: &str = "fakekube-admin-token";

/// Who a token authenticates as (user.Info).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub user: String,
    pub groups: Vec<String>,
    /// The ServiceAccount's uid for its tokens; None for the admin and test users, as for
    /// users from a static token file.
    pub uid: Option<String>,
    /// What the authenticator adds (a ServiceAccount token's credential id).
    pub extra: BTreeMap<String, Vec<String>>,
}

impl Identity {
    /// A plain user in the given groups: no uid, no extra.
    pub fn user(user: &str, groups: &[&str]) -> Identity {
        Identity {
            user: user.to_string(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            uid: None,
            extra: BTreeMap::new(),
        }
    }

    /// What a bound token (TokenRequest) of ServiceAccount `ns/name` authenticates as:
    /// `system:serviceaccount:<ns>:<name>`, its groups, the ServiceAccount's uid and the token's
    /// `authentication.kubernetes.io/credential-id` (`JTI=<uuid>`, the token's id).
    pub fn service_account(ns: &str, name: &str, uid: Option<String>) -> Identity {
        let mut extra = BTreeMap::new();
        extra.insert(
            "authentication.kubernetes.io/credential-id".to_string(),
            vec![format!("JTI={}", uuid::Uuid::new_v4())],
        );
        Identity {
            user: format!("system:serviceaccount:{ns}:{name}"),
            groups: vec![
                "system:serviceaccounts".into(),
                format!("system:serviceaccounts:{ns}"),
                "system:authenticated".into(),
            ],
            uid,
            extra,
        }
    }

    /// `status.userInfo` of a SelfSubjectReview: `uid`, `groups` and `extra` are omitted when
    /// empty (omitempty in authentication/v1 UserInfo).
    pub fn user_info(&self) -> Value {
        let mut info = serde_json::json!({"username": self.user});
        if let Some(uid) = self.uid.as_deref().filter(|u| !u.is_empty()) {
            info["uid"] = uid.into();
        }
        if !self.groups.is_empty() {
            info["groups"] = serde_json::json!(self.groups);
        }
        if !self.extra.is_empty() {
            info["extra"] = serde_json::json!(self.extra);
        }
        info
    }
}

/// The rules of the bootstrap ClusterRole `system:basic-user` (verb `create`): API group and
/// resources (plugin/pkg/auth/authorizer/rbac/bootstrappolicy).
const BASIC_USER_RULES: &[(&str, &[&str])] = &[
    (
        "authorization.k8s.io",
        &["selfsubjectaccessreviews", "selfsubjectrulesreviews"],
    ),
    ("authentication.k8s.io", &["selfsubjectreviews"]),
];

/// One rule given to a user by a test: like a PolicyRule plus the namespaces it applies to.
#[derive(Debug, Clone, Default)]
pub struct Rule {
    /// `get`, `list`, ..., or `*`.
    pub verbs: Vec<String>,
    /// API groups (`""` for core, `apps`, or `*`).
    pub groups: Vec<String>,
    /// `pods`, `deployments/scale`, `*`.
    pub resources: Vec<String>,
    /// Namespaces the rule applies to; empty: every namespace and the cluster scope.
    pub namespaces: Vec<String>,
    /// Object names; empty: all.
    pub resource_names: Vec<String>,
}

impl Rule {
    /// `Rule::new(&["get", "list"], &[""], &["configmaps"])`, in every namespace.
    pub fn new(verbs: &[&str], groups: &[&str], resources: &[&str]) -> Rule {
        let v = |s: &[&str]| s.iter().map(|x| x.to_string()).collect();
        Rule {
            verbs: v(verbs),
            groups: v(groups),
            resources: v(resources),
            namespaces: vec![],
            resource_names: vec![],
        }
    }

    /// The same rule, bound only in `namespaces`.
    pub fn in_namespaces(mut self, namespaces: &[&str]) -> Rule {
        self.namespaces = namespaces.iter().map(|x| x.to_string()).collect();
        self
    }
}

/// What a request wants to do, as the authorizer sees it.
#[derive(Debug, Clone)]
pub struct Attributes<'a> {
    pub verb: &'a str,
    pub group: &'a str,
    pub resource: &'a str,
    pub subresource: Option<&'a str>,
    pub namespace: Option<&'a str>,
    pub name: &'a str,
}

#[derive(Default)]
struct Inner {
    tokens: HashMap<String, Identity>,
    rules: HashMap<String, Vec<Rule>>,
}

/// Tokens and rules; shared by the server and the tests.
pub struct Rbac {
    inner: RwLock<Inner>,
}

impl Default for Rbac {
    fn default() -> Self {
        let rbac = Rbac {
            inner: RwLock::new(Inner::default()),
        };
        rbac.add_token(
            ADMIN_TOKEN,
            Identity::user("admin", &["system:masters", "system:authenticated"]),
        );
        rbac
    }
}

fn matches(list: &[String], v: &str) -> bool {
    list.iter().any(|x| x == "*" || x == v)
}

fn rule_allows(
    verbs: &[String],
    groups: &[String],
    resources: &[String],
    names: &[String],
    a: &Attributes,
) -> bool {
    let res = match a.subresource {
        Some(s) => format!("{}/{s}", a.resource),
        None => a.resource.to_string(),
    };
    let res_ok = resources.iter().any(|r| {
        r == "*" || *r == res || (a.subresource.is_some() && r.strip_prefix("*/") == a.subresource)
    });
    matches(verbs, a.verb)
        && matches(groups, a.group)
        && res_ok
        && (names.is_empty() || (!a.name.is_empty() && names.iter().any(|n| n == a.name)))
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

impl Rbac {
    pub fn add_token(&self, token: &str, identity: Identity) {
        self.inner
            .write()
            .unwrap()
            .tokens
            .insert(token.to_string(), identity);
    }

    /// A new token for a plain user (no permissions until rules or bindings grant some).
    pub fn user_token(&self, user: &str) -> String {
        let token = format!("user-{}", uuid::Uuid::new_v4());
        self.add_token(&token, Identity::user(user, &["system:authenticated"]));
        token
    }

    /// A new user with exactly these rules, and its token.
    pub fn token_with_rules(&self, user: &str, rules: Vec<Rule>) -> String {
        let token = self.user_token(user);
        for r in rules {
            self.allow(user, r);
        }
        token
    }

    /// A token for ServiceAccount `ns/name`, authorized by stored (Cluster)RoleBindings, as a
    /// projected ServiceAccount token is.
    pub fn service_account_token(&self, ns: &str, name: &str) -> String {
        self.service_account_token_with_uid(ns, name, None)
    }

    /// As [`Rbac::service_account_token`], with the ServiceAccount object's uid (which a real
    /// token carries; [`crate::FakeCluster::token_with_roles`] passes it when the object exists).
    pub fn service_account_token_with_uid(
        &self,
        ns: &str,
        name: &str,
        uid: Option<String>,
    ) -> String {
        let token = format!("sa-{ns}-{name}-{}", uuid::Uuid::new_v4());
        self.add_token(&token, Identity::service_account(ns, name, uid));
        token
    }

    pub fn authenticate(&self, token: &str) -> Option<Identity> {
        self.inner.read().unwrap().tokens.get(token).cloned()
    }

    /// Give `user` a rule (additive, like RBAC).
    pub fn allow(&self, user: &str, rule: Rule) {
        self.inner
            .write()
            .unwrap()
            .rules
            .entry(user.to_string())
            .or_default()
            .push(rule);
    }

    /// Remove every rule given to `user` by [`Rbac::allow`].
    pub fn clear(&self, user: &str) {
        self.inner.write().unwrap().rules.remove(user);
    }

    pub fn authorize(&self, store: &Store, who: &Identity, a: &Attributes) -> bool {
        if who.groups.iter().any(|g| g == "system:masters") {
            return true;
        }
        // The bootstrap ClusterRole system:basic-user, bound to system:authenticated by the
        // ClusterRoleBinding of the same name: every user may ask who it is and what it may do.
        // (Divergence: the bootstrap policy is built in here, not stored as objects.)
        if who.groups.iter().any(|g| g == "system:authenticated")
            && BASIC_USER_RULES.iter().any(|(group, resources)| {
                a.verb == "create"
                    && a.group == *group
                    && a.subresource.is_none()
                    && resources.contains(&a.resource)
            })
        {
            return true;
        }
        {
            let inner = self.inner.read().unwrap();
            if let Some(rules) = inner.rules.get(&who.user) {
                for r in rules {
                    let ns_ok = r.namespaces.is_empty()
                        || a.namespace
                            .is_some_and(|ns| r.namespaces.iter().any(|n| n == ns));
                    if ns_ok && rule_allows(&r.verbs, &r.groups, &r.resources, &r.resource_names, a)
                    {
                        return true;
                    }
                }
            }
        }
        self.authorize_stored(store, who, a)
    }

    fn subject_matches(who: &Identity, s: &Value, binding_ns: &str) -> bool {
        let name = s["name"].as_str().unwrap_or("");
        match s["kind"].as_str().unwrap_or("") {
            "ServiceAccount" => {
                let ns = s["namespace"].as_str().unwrap_or(binding_ns);
                who.user == format!("system:serviceaccount:{ns}:{name}")
            }
            "User" => who.user == name,
            "Group" => who.groups.iter().any(|g| g == name),
            _ => false,
        }
    }

    fn role_rules_allow(
        store: &Store,
        role: Option<std::sync::Arc<Value>>,
        a: &Attributes,
    ) -> bool {
        let _ = store;
        let Some(role) = role else { return false };
        role["rules"].as_array().is_some_and(|rules| {
            rules.iter().any(|r| {
                rule_allows(
                    &strings(&r["verbs"]),
                    &strings(&r["apiGroups"]),
                    &strings(&r["resources"]),
                    &strings(&r["resourceNames"]),
                    a,
                )
            })
        })
    }

    fn authorize_stored(&self, store: &Store, who: &Identity, a: &Attributes) -> bool {
        let g = "rbac.authorization.k8s.io";
        let (Some(crb), Some(cr)) = (
            store.resource(g, "clusterrolebindings"),
            store.resource(g, "clusterroles"),
        ) else {
            return false;
        };
        let (bindings, _) = store.list(crb, None, &|_| true);
        for b in bindings {
            let subjects = b["subjects"].as_array().cloned().unwrap_or_default();
            if subjects.iter().any(|s| Self::subject_matches(who, s, "")) {
                let role = store
                    .get(cr, None, b["roleRef"]["name"].as_str().unwrap_or(""))
                    .ok();
                if Self::role_rules_allow(store, role, a) {
                    return true;
                }
            }
        }
        let Some(ns) = a.namespace else { return false };
        let (Some(rb), Some(r)) = (
            store.resource(g, "rolebindings"),
            store.resource(g, "roles"),
        ) else {
            return false;
        };
        let (bindings, _) = store.list(rb, Some(ns), &|_| true);
        for b in bindings {
            let subjects = b["subjects"].as_array().cloned().unwrap_or_default();
            if subjects.iter().any(|s| Self::subject_matches(who, s, ns)) {
                let name = b["roleRef"]["name"].as_str().unwrap_or("");
                let role = match b["roleRef"]["kind"].as_str() {
                    Some("ClusterRole") => store.get(cr, None, name).ok(),
                    _ => store.get(r, Some(ns), name).ok(),
                };
                if Self::role_rules_allow(store, role, a) {
                    return true;
                }
            }
        }
        false
    }
}
