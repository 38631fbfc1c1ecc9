//! One-line configurations for the common identity providers: their issuer forms, where their
//! tokens keep roles, scopes, client and tenant, and the checks that tell their access tokens
//! from their ID tokens. See [`Issuer`](super::Issuer#identity-provider-presets).

use std::collections::HashMap;

use jsonwebtoken::Algorithm;

use super::Issuer;
use super::issuer::IssuerBuilder;
use crate::auth::jwt::{AcceptedIssuers, ClaimRule};
use crate::error::ConfigError;
use crate::identity::{ClaimMapping, ClaimSource};

/// Which provider a builder was preset for: what it still has to check or add at build time,
/// once every later setting is known.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Preset {
    /// Adds the client roles of each audience, as `{client}:{role}`.
    Keycloak,
    /// Tenant ids must be GUIDs.
    Entra,
    Auth0,
    Okta,
    /// No `aud` in access tokens: the app clients take its place.
    Cognito,
    /// Needs the callers named: every Google account can mint a token for any audience.
    Google,
    /// Adds the roles of each audience's project.
    Zitadel,
    Authentik,
    Dex,
    Hydra,
}

/// A builder for `issuer` preset with `mapping` (which does not count as the user's choice).
fn preset(kind: Preset, issuer: String, mapping: ClaimMapping) -> IssuerBuilder {
    let mut builder = Issuer::builder(issuer);
    builder.jwt = builder.jwt.claim_mapping(mapping);
    builder.preset = Some(kind);
    builder
}

/// Microsoft Entra ID's global authority.
const ENTRA_GLOBAL: &str = "https://login.microsoftonline.com";

impl Issuer {
    /// Keycloak: the realm `realm` at `base_url` (issuer `{base_url}/realms/{realm}`).
    ///
    /// Roles are the realm roles (`realm_access.roles`) plus, for each accepted audience, that
    /// client's roles (`resource_access.{client}.roles`) as `{client}:{role}`; scopes come from
    /// `scope`, the client from `azp`. Only tokens whose `typ` claim is `Bearer` pass (Keycloak's
    /// ID tokens say `ID`, its refresh tokens `Refresh`). Keycloak names your API in `aud` only
    /// with an audience mapper on the calling client (or when the token carries the API's
    /// client roles); configure one, or accept Keycloak's default audience and name the calling
    /// clients instead: `.any_audience().clients(["web"])`.
    ///
    /// Client roles are read for the configured audiences only: with `any_audience()`, or once
    /// you choose roles with [`roles_from`](IssuerBuilder::roles_from) or
    /// [`claim_mapping`](IssuerBuilder::claim_mapping), list them yourself, e.g.
    /// `ClaimSource::path("/resource_access/items-api/roles")`. Two audiences where one is the
    /// other followed by `:` are refused, so prefixed names never collide; a realm role whose
    /// name contains `:` can read like a client role (realm administrators can grant both).
    pub fn keycloak(base_url: &str, realm: &str) -> IssuerBuilder {
        preset(
            Preset::Keycloak,
            format!("{}/realms/{realm}", base_url.trim_end_matches('/')),
            ClaimMapping::default()
                .roles_from(["/realm_access/roles"])
                .scopes_from(["scope"])
                .client_from(["azp"]),
        )
        .require_claim("typ", ["Bearer"])
    }

    /// Microsoft Entra ID, one tenant: v2 tokens (issuer
    /// `https://login.microsoftonline.com/{tenant}/v2.0`) and v1 tokens
    /// (`https://sts.windows.net/{tenant}/`), each required to carry the same `tid`.
    ///
    /// Audience: your API's App ID URI (`api://...`, in v1 tokens) and/or its client id (v2
    /// tokens); list the ones your app registration issues. Scopes come from `scp` (delegated
    /// permissions, space-separated), roles from `roles` (app roles and application
    /// permissions), the client from `azp` (v2) or `appid` (v1), the tenant from `tid`. A token
    /// that names no client is refused: Entra's ID tokens carry neither `azp` nor `appid`.
    /// `sub` is pairwise (per application); the stable user id is the `oid` claim.
    pub fn entra(tenant_id: &str) -> IssuerBuilder {
        entra(ENTRA_GLOBAL, &[tenant_id.to_owned()], true)
    }

    /// Microsoft Entra ID, a multi-tenant application: tokens from exactly these tenants, v2
    /// and v1 as [`entra`](Self::entra), discovered from the `organizations` metadata (whose
    /// issuer is the template `https://login.microsoftonline.com/{tenantid}/v2.0`).
    ///
    /// The token's `iss` must be the template filled with one of these tenants, and its `tid`
    /// must name the same tenant. There is no "any tenant": list the tenants you have onboarded.
    pub fn entra_tenants<I: IntoIterator<Item = T>, T: Into<String>>(
        tenant_ids: I,
    ) -> IssuerBuilder {
        let tenants: Vec<String> = tenant_ids.into_iter().map(Into::into).collect();
        entra(ENTRA_GLOBAL, &tenants, true)
    }

    /// Microsoft Entra ID under another authority: a national cloud
    /// (`https://login.microsoftonline.us`, `https://login.chinacloudapi.cn`) or a stand-in in
    /// tests. One tenant or several, as [`entra`](Self::entra) and
    /// [`entra_tenants`](Self::entra_tenants); v2 tokens only.
    pub fn entra_at<I: IntoIterator<Item = T>, T: Into<String>>(
        authority: &str,
        tenant_ids: I,
    ) -> IssuerBuilder {
        let tenants: Vec<String> = tenant_ids.into_iter().map(Into::into).collect();
        entra(authority.trim_end_matches('/'), &tenants, false)
    }

    /// Auth0: the tenant domain `domain` (`example.eu.auth0.com` or a custom domain; issuer
    /// `https://{domain}/`, with the trailing slash Auth0 writes).
    ///
    /// Scopes come from `scope` and `permissions` (the API's RBAC permissions, when "Add
    /// Permissions in the Access Token" is on), the client from `azp` (or `client_id` in the
    /// RFC 9068 token profile, whose header `typ` is `at+jwt`). Auth0 has no standard
    /// roles claim: add your Action's namespaced one with
    /// `.roles_from(["https://example.com/roles"])`. The audience is your API's identifier;
    /// ID tokens (audience: the client id) are refused by it. Machine-to-machine tokens carry
    /// `gty: "client-credentials"` and a subject ending in `@clients`; where only users belong,
    /// check [`Identity::claim`](crate::Identity::claim)`("gty")` in the handler.
    pub fn auth0(domain: &str) -> IssuerBuilder {
        preset(
            Preset::Auth0,
            format!("https://{}/", domain.trim_end_matches('/')),
            ClaimMapping::default()
                .scopes_from(["scope", "permissions"])
                .roles_from(Vec::<String>::new()),
        )
        .algorithms([Algorithm::RS256, Algorithm::PS256])
    }

    /// Okta: the custom authorization server `authorization_server` (`default` or its id) of
    /// the Okta org at `domain` (issuer `https://{domain}/oauth2/{authorization_server}`).
    ///
    /// Access tokens of the org authorization server (issuer `https://{domain}`) are meant for
    /// Okta's own APIs and cannot be verified by yours; they are refused by issuer. Scopes come
    /// from `scp`, roles from `groups` (when a groups claim is configured), the client from
    /// `cid`; a token without `cid` (an ID token) is refused. The audience is the server's
    /// (`api://default` for the default server).
    pub fn okta(domain: &str, authorization_server: &str) -> IssuerBuilder {
        let mut builder = preset(
            Preset::Okta,
            format!(
                "https://{}/oauth2/{authorization_server}",
                domain.trim_end_matches('/')
            ),
            ClaimMapping::default()
                .scopes_from(["scp"])
                .roles_from(["groups"])
                .client_from(["cid"]),
        )
        .algorithms([Algorithm::RS256]);
        builder.jwt = builder.jwt.require_client();
        builder
    }

    /// Amazon Cognito: the user pool `user_pool_id` in `region` (issuer
    /// `https://cognito-idp.{region}.amazonaws.com/{user_pool_id}`). Name the app clients
    /// allowed to call your API with [`clients`](IssuerBuilder::clients).
    ///
    /// Cognito access tokens carry no `aud`: the preset replaces the audience check with
    /// Cognito's equivalent, `client_id` among the named app clients and `token_use` equal to
    /// `access` (ID tokens, `token_use: "id"`, are refused), and [`build`](IssuerBuilder::build)
    /// refuses an [`audience`](IssuerBuilder::audience). Scopes come from `scope`, roles from
    /// `cognito:groups`.
    pub fn cognito(region: &str, user_pool_id: &str) -> IssuerBuilder {
        preset(
            Preset::Cognito,
            format!("https://cognito-idp.{region}.amazonaws.com/{user_pool_id}"),
            ClaimMapping::default()
                .scopes_from(["scope"])
                .roles_from(["cognito:groups"])
                .client_from(["client_id"]),
        )
        .algorithms([Algorithm::RS256])
        .require_claim("token_use", ["access"])
    }

    /// Google: Google-signed ID tokens, e.g. service-to-service credentials minted for a
    /// service account (`gcloud auth print-identity-token`, the metadata server, Cloud Run and
    /// Cloud Tasks). Google writes the issuer two ways, `https://accounts.google.com` and
    /// `accounts.google.com`; both are accepted.
    ///
    /// The audience is what the caller asked for: your service's URL (or your OAuth client id
    /// for sign-in tokens). Any Google account can mint a token for any audience, so
    /// [`build`](IssuerBuilder::build) insists that the callers are named: by e-mail,
    /// `.require_claim("email", ["svc@project.iam.gserviceaccount.com"])`, or, for users of a
    /// Workspace domain, `.require_claim("hd", ["example.com"])` (service accounts' tokens carry
    /// no `hd`). [`clients`](IssuerBuilder::clients) does not count: `azp` names an app, which
    /// every Google account may use. Tokens whose `email_verified` is not `true` are refused:
    /// the e-mail is what names a service account.
    pub fn google() -> IssuerBuilder {
        let mut builder = preset(
            Preset::Google,
            "https://accounts.google.com".to_owned(),
            ClaimMapping::default()
                .scopes_from(Vec::<String>::new())
                .roles_from(Vec::<String>::new())
                .client_from(["azp"]),
        )
        .algorithms([Algorithm::RS256])
        .require_claim("email_verified", [true]);
        builder.accepted = Some(AcceptedIssuers {
            issuers: [
                ("https://accounts.google.com".to_owned(), None),
                ("accounts.google.com".to_owned(), None),
            ]
            .into_iter()
            .collect(),
            tenant_claim: "",
        });
        builder
    }

    /// ZITADEL: the instance at `issuer_url` (`https://example-abc123.zitadel.cloud` or your
    /// domain). The audience is your API's project id, alone. Roles are the member names of that
    /// project's claim, `urn:zitadel:iam:org:project:{project id}:roles` (an object keyed by
    /// role), never the unqualified `urn:zitadel:iam:org:project:roles`, which holds the roles
    /// of whichever project the calling client belongs to. The client comes from `client_id`
    /// or `azp`, the tenant from `urn:zitadel:iam:user:resourceowner:id` (the user's
    /// organisation, when the client asks for it; the organisation each role was granted in is
    /// in the claims, not in the role names). Tokens without `jti` are refused: ZITADEL's
    /// ID tokens have none, its JWT access tokens always do.
    pub fn zitadel(issuer_url: &str) -> IssuerBuilder {
        let mut builder = preset(
            Preset::Zitadel,
            issuer_url.trim_end_matches('/').to_owned(),
            ClaimMapping::default()
                .scopes_from(["scope"])
                .roles_from(Vec::<String>::new())
                .tenant_from(["urn:zitadel:iam:user:resourceowner:id"]),
        );
        builder.jwt.claim_rules.push(ClaimRule {
            path: "jti".to_owned(),
            values: None,
        });
        builder
    }

    /// Authentik: the OAuth2/OpenID provider of the application `slug` at `base_url` (issuer
    /// `{base_url}/application/o/{slug}/`, with the trailing slash Authentik writes). Roles come
    /// from `groups`, scopes from `scope`, the client from `azp`; a token without `azp` (an ID
    /// token) is refused. Give the provider a signing key: without one Authentik signs with the
    /// client secret (HS256), which an issuer never accepts.
    pub fn authentik(base_url: &str, slug: &str) -> IssuerBuilder {
        let mut builder = preset(
            Preset::Authentik,
            format!("{}/application/o/{slug}/", base_url.trim_end_matches('/')),
            ClaimMapping::default()
                .scopes_from(["scope"])
                .roles_from(["groups"])
                .client_from(["azp"]),
        );
        builder.jwt = builder.jwt.require_client();
        builder
    }

    /// Dex: the instance whose configured `issuer` is `issuer_url`, exactly as written in its
    /// configuration. Dex's access tokens carry exactly its ID tokens' claims, so the two cannot
    /// be told apart: the audience is the client id they were issued to (list the clients whose
    /// tokens your API takes); roles come from `groups`.
    pub fn dex(issuer_url: &str) -> IssuerBuilder {
        preset(
            Preset::Dex,
            issuer_url.to_owned(),
            ClaimMapping::default()
                .scopes_from(Vec::<String>::new())
                .roles_from(["groups"])
                .client_from(["azp"]),
        )
    }

    /// Ory Hydra (and Ory Network) with JWT access tokens: the server at `issuer_url`. Scopes
    /// come from `scp`, the client from `client_id`. Hydra fills `aud` only with the audiences
    /// the client asked for (`audience=` at the token endpoint): have clients request your API's
    /// audience. Custom session claims sit under `ext`: read roles with
    /// `.roles_from(["/ext/roles"])`.
    pub fn hydra(issuer_url: &str) -> IssuerBuilder {
        let mut builder = preset(
            Preset::Hydra,
            issuer_url.to_owned(),
            ClaimMapping::default()
                .scopes_from(["scp"])
                .roles_from(Vec::<String>::new())
                .client_from(["client_id"]),
        );
        builder.jwt = builder.jwt.require_client();
        builder
    }
}

fn entra(authority: &str, tenants: &[String], with_v1: bool) -> IssuerBuilder {
    let template = format!("{authority}/{{tenantid}}/v2.0");
    let mut issuers = HashMap::new();
    for tenant in tenants {
        issuers.insert(format!("{authority}/{tenant}/v2.0"), Some(tenant.clone()));
        if with_v1 {
            issuers.insert(
                format!("https://sts.windows.net/{tenant}/"),
                Some(tenant.clone()),
            );
        }
    }
    let (issuer, discovery) = match tenants {
        [one] => (format!("{authority}/{one}/v2.0"), None),
        _ => (
            template,
            Some(format!(
                "{authority}/organizations/v2.0/.well-known/openid-configuration"
            )),
        ),
    };
    let mut builder = preset(
        Preset::Entra,
        issuer,
        ClaimMapping::default()
            .scopes_from(["scp"])
            .roles_from(["roles"])
            .client_from(["azp", "appid"])
            .tenant_from(["tid"]),
    )
    .algorithms([Algorithm::RS256]);
    if let Some(url) = discovery {
        builder = builder.discovery_url(url);
    }
    builder.jwt = builder.jwt.require_client();
    builder.accepted = Some(AcceptedIssuers {
        issuers,
        tenant_claim: "tid",
    });
    builder
}

impl IssuerBuilder {
    /// The preset's last step, once every setting is known.
    pub(super) fn finish_preset(mut self) -> Result<Self, ConfigError> {
        let Some(kind) = self.preset else {
            return Ok(self);
        };
        if self.accepted.as_ref().is_some_and(|a| a.issuers.is_empty()) {
            return Err(ConfigError::new("the tenant list is empty"));
        }
        let callers_named = self
            .jwt
            .claim_rules
            .iter()
            .any(|rule| rule.path == "email" || rule.path == "hd");
        // These providers issue tokens for every API of every customer with the same keys.
        if self.jwt.any_audience
            && self.jwt.clients.is_none()
            && kind != Preset::Cognito
            && !(kind == Preset::Google && callers_named)
        {
            return Err(ConfigError::new(format!(
                "{kind:?}: any_audience() would accept the tokens this provider issues for every other API; name the calling clients with clients([...])"
            )));
        }
        match kind {
            Preset::Keycloak if !self.roles_set => {
                let audiences = self.jwt.audiences.clone().unwrap_or_default();
                for (i, a) in audiences.iter().enumerate() {
                    if audiences[..i].contains(a) {
                        return Err(ConfigError::new(format!(
                            "Keycloak audience {a:?} is listed twice"
                        )));
                    }
                    if audiences[..i]
                        .iter()
                        .any(|b| a.starts_with(&format!("{b}:")) || b.starts_with(&format!("{a}:")))
                    {
                        return Err(ConfigError::new(format!(
                            "Keycloak audiences {a:?} and another one would give client roles of the same name; read their roles with roles_from()"
                        )));
                    }
                    // A JSON Pointer segment escapes `~` and `/` (RFC 6901).
                    let segment = a.replace('~', "~0").replace('/', "~1");
                    self.jwt.mapping.push_roles(
                        ClaimSource::path(format!("/resource_access/{segment}/roles"))
                            .prefixed(format!("{a}:")),
                    );
                }
            }
            Preset::Zitadel if !self.roles_set => {
                if self.jwt.audiences.as_ref().is_some_and(|a| a.len() > 1) {
                    return Err(ConfigError::new(
                        "ZITADEL: with several audiences their projects' roles would mix; accept your API's project id alone, or read roles with roles_from()",
                    ));
                }
                for project in self.jwt.audiences.iter().flatten() {
                    self.jwt.mapping.push_roles(ClaimSource::keys(format!(
                        "urn:zitadel:iam:org:project:{project}:roles"
                    )));
                }
            }
            Preset::Entra => {
                let bad = self
                    .accepted
                    .iter()
                    .flat_map(|a| a.issuers.values().flatten())
                    .find(|tenant| !is_tenant_id(tenant));
                if let Some(tenant) = bad {
                    return Err(ConfigError::new(format!(
                        "Entra tenant {tenant:?} is not a tenant id: tokens name their tenant by its GUID, in lower case"
                    )));
                }
            }
            Preset::Cognito => {
                if self.jwt.audiences.is_some() {
                    return Err(ConfigError::new(
                        "Cognito access tokens carry no aud: name the app clients with clients([...]) instead of audience()",
                    ));
                }
                if self.jwt.clients.is_none() {
                    return Err(ConfigError::new(
                        "Cognito access tokens carry no aud: name the app clients allowed to call this API with clients([...])",
                    ));
                }
                self.jwt = self.jwt.any_audience();
            }
            // `azp` names an app, not its users: only an e-mail or a domain names callers.
            Preset::Google if !callers_named => {
                return Err(ConfigError::new(
                    "Google: any Google account can mint a token for this audience; name the callers with require_claim(\"email\", [...]) or require_claim(\"hd\", [...])",
                ));
            }
            _ => {}
        }
        Ok(self)
    }
}

/// A GUID as Entra writes tenant ids: 8-4-4-4-12 lower-case hex digits.
fn is_tenant_id(tenant: &str) -> bool {
    let bytes = tenant.as_bytes();
    bytes.len() == 36
        && bytes.iter().enumerate().all(|(i, &b)| match i {
            8 | 13 | 18 | 23 => b == b'-',
            _ => b.is_ascii_digit() || (b'a'..=b'f').contains(&b),
        })
}
