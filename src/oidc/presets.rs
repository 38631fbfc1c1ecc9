//! One-line configurations for the common identity providers: their issuer forms, where their
//! tokens keep roles, scopes, client and tenant, and the checks that tell their access tokens
//! from their ID tokens. See [`Issuer`](super::Issuer#identity-provider-presets).

use std::collections::HashMap;

use jsonwebtoken::Algorithm;

use super::Issuer;
use super::issuer::IssuerBuilder;
use crate::auth::jwt::AcceptedIssuers;
use crate::error::ConfigError;
use crate::identity::{ClaimMapping, ClaimSource};

/// What a preset still has to do when the builder is built, from settings made after it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Preset {
    /// Client roles of each audience, as `{client}:{role}`.
    Keycloak,
    /// No `aud` in access tokens: the app clients take its place.
    Cognito,
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
    pub fn keycloak(base_url: &str, realm: &str) -> IssuerBuilder {
        let issuer = format!("{}/realms/{realm}", base_url.trim_end_matches('/'));
        let mut builder = Issuer::builder(issuer)
            .claim_mapping(
                ClaimMapping::default()
                    .roles_from(["/realm_access/roles"])
                    .scopes_from(["scope"])
                    .client_from(["azp"]),
            )
            .require_claim("typ", ["Bearer"]);
        builder.preset = Some(Preset::Keycloak);
        // The roles above are the preset's own: client roles are still added at build time.
        builder.roles_set = false;
        builder
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
    /// `gty: "client-credentials"` and a subject ending in `@clients`; refuse them where only
    /// users belong with `.require_claim("gty", [...])` on another issuer, or check
    /// [`Identity::claim`](crate::Identity::claim) in the handler.
    pub fn auth0(domain: &str) -> IssuerBuilder {
        Issuer::builder(format!("https://{}/", domain.trim_end_matches('/')))
            .algorithms([Algorithm::RS256, Algorithm::PS256])
            .claim_mapping(
                ClaimMapping::default()
                    .scopes_from(["scope", "permissions"])
                    .roles_from(Vec::<String>::new()),
            )
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
        let mut builder = Issuer::builder(format!(
            "https://{}/oauth2/{authorization_server}",
            domain.trim_end_matches('/')
        ))
        .algorithms([Algorithm::RS256])
        .claim_mapping(
            ClaimMapping::default()
                .scopes_from(["scp"])
                .roles_from(["groups"])
                .client_from(["cid"]),
        );
        builder.client_required = true;
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
        let mut builder = Issuer::builder(format!(
            "https://cognito-idp.{region}.amazonaws.com/{user_pool_id}"
        ))
        .algorithms([Algorithm::RS256])
        .claim_mapping(
            ClaimMapping::default()
                .scopes_from(["scope"])
                .roles_from(["cognito:groups"])
                .client_from(["client_id"]),
        )
        .require_claim("token_use", ["access"]);
        builder.preset = Some(Preset::Cognito);
        builder
    }

    /// Google: Google-signed ID tokens, e.g. service-to-service credentials minted for a
    /// service account (`gcloud auth print-identity-token`, the metadata server, Cloud Run and
    /// Cloud Tasks). Google writes the issuer two ways, `https://accounts.google.com` and
    /// `accounts.google.com`; both are accepted.
    ///
    /// The audience is what the caller asked for: your service's URL (or your OAuth client id
    /// for sign-in tokens). Tokens whose `email_verified` is not `true` are refused: the e-mail
    /// is what names a service account. Allow particular callers with
    /// `.require_claim("email", ["svc@project.iam.gserviceaccount.com"])`. The client is `azp`.
    pub fn google() -> IssuerBuilder {
        let mut builder = Issuer::builder("https://accounts.google.com")
            .algorithms([Algorithm::RS256])
            .claim_mapping(
                ClaimMapping::default()
                    .scopes_from(Vec::<String>::new())
                    .roles_from(Vec::<String>::new())
                    .client_from(["azp"]),
            )
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
    /// domain). Roles are the member names of `urn:zitadel:iam:org:project:roles` (an object
    /// keyed by role); scopes come from `scope`, the client from `client_id` or `azp`. The
    /// audience is your project id or the API's client id.
    pub fn zitadel(issuer_url: &str) -> IssuerBuilder {
        Issuer::builder(issuer_url.trim_end_matches('/')).claim_mapping(
            ClaimMapping::default()
                .scopes_from(["scope"])
                .roles_from([ClaimSource::keys("urn:zitadel:iam:org:project:roles")]),
        )
    }

    /// Authentik: the OAuth2/OpenID provider of the application `slug` at `base_url` (issuer
    /// `{base_url}/application/o/{slug}/`, with the trailing slash Authentik writes). Roles come
    /// from `groups`, scopes from `scope`, the client from `azp`.
    pub fn authentik(base_url: &str, slug: &str) -> IssuerBuilder {
        Issuer::builder(format!(
            "{}/application/o/{slug}/",
            base_url.trim_end_matches('/')
        ))
        .claim_mapping(
            ClaimMapping::default()
                .scopes_from(["scope"])
                .roles_from(["groups"])
                .client_from(["azp"]),
        )
    }

    /// Dex: the instance whose configured `issuer` is `issuer_url`, exactly as written in its
    /// configuration. Dex's bearer tokens are ID tokens: the audience is the client id they were
    /// issued to; roles come from `groups`.
    pub fn dex(issuer_url: &str) -> IssuerBuilder {
        Issuer::builder(issuer_url).claim_mapping(
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
        let mut builder = Issuer::builder(issuer_url).claim_mapping(
            ClaimMapping::default()
                .scopes_from(["scp"])
                .roles_from(Vec::<String>::new())
                .client_from(["client_id"]),
        );
        builder.client_required = true;
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
    let mut builder = Issuer::builder(issuer)
        .algorithms([Algorithm::RS256])
        .claim_mapping(
            ClaimMapping::default()
                .scopes_from(["scp"])
                .roles_from(["roles"])
                .client_from(["azp", "appid"])
                .tenant_from(["tid"]),
        );
    if let Some(url) = discovery {
        builder = builder.discovery_url(url);
    }
    builder.client_required = true;
    builder.accepted = Some(AcceptedIssuers {
        issuers,
        tenant_claim: "tid",
    });
    builder
}

impl IssuerBuilder {
    /// The preset's last step, once every setting is known.
    pub(super) fn finish_preset(mut self) -> Result<Self, ConfigError> {
        if self.accepted.as_ref().is_some_and(|a| a.issuers.is_empty()) {
            return Err(ConfigError::new("the tenant list is empty"));
        }
        match self.preset {
            None => {}
            // Roles the user chose replace the preset's, client roles included.
            Some(Preset::Keycloak) if self.roles_set => {}
            Some(Preset::Keycloak) => {
                for client in self.audiences.iter().flatten() {
                    // A JSON Pointer segment escapes `~` and `/` (RFC 6901).
                    let segment = client.replace('~', "~0").replace('/', "~1");
                    self.mapping.push_roles(
                        ClaimSource::path(format!("/resource_access/{segment}/roles"))
                            .prefixed(format!("{client}:")),
                    );
                }
            }
            Some(Preset::Cognito) => {
                if self.audiences.is_some() {
                    return Err(ConfigError::new(
                        "Cognito access tokens carry no aud: name the app clients with clients([...]) instead of audience()",
                    ));
                }
                if self.clients.is_none() {
                    return Err(ConfigError::new(
                        "Cognito access tokens carry no aud: name the app clients allowed to call this API with clients([...])",
                    ));
                }
                self.any_audience = true;
            }
        }
        Ok(self)
    }
}
