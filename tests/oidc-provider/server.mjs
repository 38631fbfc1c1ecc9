// A real OpenID provider (panva/oidc-provider) for portcullis's end-to-end tests.
//
//   node server.mjs PORT
//
// Serves issuer http://127.0.0.1:PORT with client_credentials, resource indicators (JWT access
// tokens, typ at+jwt, for the JWT resources; opaque ones for the opaque resource), introspection
// and revocation. Two test-only control endpoints let the tests act on the provider:
//   POST /__test/rotate       new signing keys (new kids) published first, old keys kept after
//   POST /__test/stop?ms=N    stop listening and drop every connection for N ms, then come back
// (both act on this root issuer only; /__test/stop takes the whole server, every issuer, down).
//
// Next to it, issuers shaped like real identity providers, whose access tokens look like theirs
// (for the identity-provider presets). All clients use client_credentials, client_secret_basic
// and SECRET; every token is RS256 with header typ JWT, 600 s.
//
// Keycloak realm: issuer http://127.0.0.1:PORT/realms/shop, its endpoints at Keycloak's paths
// (/realms/shop/protocol/openid-connect/token, .../certs). Clients items-web and other-client.
// Like Keycloak the token endpoint ignores `resource`: every token is for the items-api client,
// with Keycloak's claims (typ Bearer, azp, realm_access, resource_access, preferred_username
// service-account-<client>, scope "profile email read:items", sub the service account's id).
// items-web gets aud ["items-api", "account"], other-client only ["account"].
//
// Entra ID tenants: issuers http://127.0.0.1:PORT/<tid>/v2.0 for the tenants in TENANTS, both
// signing with one key set as Entra does. Client entra-daemon in each; resource api://items (the
// default, so `resource` may be left out) gives v2 app-only tokens (aud api://items, tid, ver 2.0,
// azp, azpacr, idtyp app, oid = sub, roles ["Items.Read"], uti; no scope, jti or client_id). The
// multi-tenant metadata Entra publishes is served too:
//   GET /organizations/v2.0/.well-known/openid-configuration   issuer .../{tenantid}/v2.0, literally
//   GET /organizations/discovery/v2.0/keys                      the tenants' shared public keys
import http from 'node:http';
import { generateKeyPairSync, randomBytes, randomUUID } from 'node:crypto';
import Provider, { errors } from 'oidc-provider';
import {
  handler as clientCredentialsGrant,
  parameters as clientCredentialsParameters,
} from 'oidc-provider/lib/actions/grants/client_credentials.js';

const port = Number(process.argv[2] || process.env.PORT || 0);
if (!Number.isInteger(port) || port <= 0) {
  console.error('usage: node server.mjs PORT');
  process.exit(2);
}
const issuer = `http://127.0.0.1:${port}`;

export const SECRET = 'portcullis-test-secret-0123456789abcdef';
const client = (client_id) => ({
  client_id,
  client_secret: SECRET,
  grant_types: ['client_credentials'],
  redirect_uris: [],
  response_types: [],
  token_endpoint_auth_method: 'client_secret_basic',
  scope: 'read:items write:items admin',
});

// resource indicator -> how its access tokens look
const RESOURCES = {
  'urn:portcullis:test-api': { format: 'jwt' },
  'urn:portcullis:other-api': { format: 'jwt' },
  'urn:portcullis:opaque-api': { format: 'opaque' },
};

function newKeys() {
  const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ format: 'jwk' });
  const ec = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ format: 'jwk' });
  const tag = randomUUID().slice(0, 8);
  return [
    { ...rsa, kid: `rsa-${tag}`, alg: 'RS256', use: 'sig' },
    { ...ec, kid: `ec-${tag}`, alg: 'ES256', use: 'sig' },
  ];
}

let keys = newKeys();

function makeProvider() {
  const provider = new Provider(issuer, {
    clients: [client('portcullis-test'), client('portcullis-es256'), client('portcullis-short')],
    jwks: { keys },
    cookies: { keys: ['portcullis-test-only-cookie-key'] },
    scopes: ['openid', 'read:items', 'write:items', 'admin'],
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      introspection: { enabled: true },
      revocation: { enabled: true },
      resourceIndicators: {
        enabled: true,
        defaultResource: () => 'urn:portcullis:test-api',
        useGrantedResource: () => true,
        getResourceServerInfo(ctx, resource, client) {
          const info = RESOURCES[resource];
          if (!info) throw new Error('unknown resource');
          return {
            scope: 'read:items write:items admin',
            audience: resource,
            accessTokenTTL: client.clientId === 'portcullis-short' ? 1 : 600,
            accessTokenFormat: info.format,
            ...(info.format === 'jwt'
              ? { jwt: { sign: { alg: client.clientId === 'portcullis-es256' ? 'ES256' : 'RS256' } } }
              : {}),
          };
        },
      },
    },
  });
  const callback = provider.callback();
  return callback;
}

let handler = makeProvider();

// --- Provider-shaped issuers -------------------------------------------------------------------

// One RS256 signing key, its kid shaped by the caller (Keycloak and Entra kids look different).
function rsaKey(kid) {
  const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ format: 'jwk' });
  return { ...rsa, kid, alg: 'RS256', use: 'sig' };
}

// A client_credentials-only provider with one JWT resource; `resource` and `customize` (the
// formats.customizers.jwt hook, which rewrites the token's header and payload) make it look like
// a given identity provider.
function shapedProvider(issuerUrl, { clients, keys, scopes, routes, resource, customize }) {
  return new Provider(issuerUrl, {
    clients: clients.map((client_id) => ({
      client_id,
      client_secret: SECRET,
      grant_types: ['client_credentials'],
      redirect_uris: [],
      response_types: [],
      token_endpoint_auth_method: 'client_secret_basic',
      ...(scopes.length ? { scope: scopes.join(' ') } : {}),
    })),
    jwks: { keys },
    cookies: { keys: ['portcullis-test-only-cookie-key'] },
    scopes: ['openid', ...scopes],
    ...(routes ? { routes } : {}),
    formats: { customizers: { jwt: customize } },
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      resourceIndicators: {
        enabled: true,
        defaultResource: () => resource.indicator,
        useGrantedResource: () => true,
        getResourceServerInfo(ctx, indicator) {
          if (indicator !== resource.indicator) throw new errors.InvalidTarget();
          return {
            scope: scopes.join(' '),
            audience: resource.audience,
            accessTokenTTL: 600,
            accessTokenFormat: 'jwt',
            jwt: { sign: { alg: 'RS256' } },
          };
        },
      },
    },
  });
}

// Keycloak realm "shop". Keycloak has no resource indicators: its tokens name their audiences
// (client ids such as items-api, which are not URIs) through mappers. So the realm has one
// internal resource, the default, and its token endpoint drops any `resource` parameter.
const REALM = '/realms/shop';
const KEYCLOAK_ITEMS = 'urn:portcullis:keycloak:items-api'; // internal only, never in a token
// client -> the id of its service-account user, the token's `sub` in Keycloak
const KEYCLOAK_CLIENTS = {
  'items-web': '6f1c2a4e-8b3d-4c5e-9a7f-1d2e3f4a5b6c',
  'other-client': '0b9e8d7c-6a5f-4e3d-8c2b-1a0f9e8d7c6b',
};
const realmKeys = [rsaKey(randomBytes(32).toString('base64url'))];

function keycloakClaims(ctx, token, jwt) {
  const { jti, iat, exp, iss, cnf } = jwt.payload;
  const clientId = token.clientId;
  jwt.header = { typ: 'JWT' };
  jwt.payload = {
    exp,
    iat,
    jti,
    iss,
    aud: clientId === 'items-web' ? ['items-api', 'account'] : ['account'],
    sub: KEYCLOAK_CLIENTS[clientId],
    typ: 'Bearer',
    azp: clientId,
    realm_access: { roles: ['offline_access', 'reader'] },
    resource_access: {
      'items-api': { roles: ['editor'] },
      account: { roles: ['manage-account'] },
    },
    scope: 'profile email read:items',
    preferred_username: `service-account-${clientId}`,
    client_id: clientId,
    ...(cnf ? { cnf } : {}),
  };
}

function makeRealm() {
  const realm = shapedProvider(`${issuer}${REALM}`, {
    clients: Object.keys(KEYCLOAK_CLIENTS),
    keys: realmKeys,
    scopes: ['profile', 'email', 'read:items'],
    routes: {
      authorization: '/protocol/openid-connect/auth',
      token: '/protocol/openid-connect/token',
      jwks: '/protocol/openid-connect/certs',
      userinfo: '/protocol/openid-connect/userinfo',
      end_session: '/protocol/openid-connect/logout',
    },
    resource: { indicator: KEYCLOAK_ITEMS, audience: 'items-api' },
    customize: keycloakClaims,
  });
  // The client_credentials grant as is, minus `resource` (as Keycloak ignores it).
  realm.registerGrantType(
    'client_credentials',
    (ctx, next) => {
      ctx.oidc.params.resource = undefined;
      return clientCredentialsGrant(ctx, next);
    },
    clientCredentialsParameters,
    ['resource'],
  );
  return realm.callback();
}

// Entra ID tenants. Entra signs every tenant's tokens with the same keys, so the tenants share
// entraKeys, and only `iss` and `tid` tell them apart.
const TENANTS = {
  // tenant id -> object id of entra-daemon's service principal in it (the token's oid and sub)
  '11111111-1111-4111-8111-111111111111': 'aaaaaaaa-0000-4000-8000-00000000000a',
  '22222222-2222-4222-8222-222222222222': 'bbbbbbbb-0000-4000-8000-00000000000b',
};
const ENTRA_TEMPLATE_ISSUER = `${issuer}/{tenantid}/v2.0`;
const ENTRA_KEYS_PATH = '/organizations/discovery/v2.0/keys';
const entraKeys = [rsaKey(randomBytes(20).toString('base64url'))];

const entraClaims = (tid) => (ctx, token, jwt) => {
  const { jti, iat, exp, iss, aud, cnf } = jwt.payload;
  jwt.header = { typ: 'JWT' };
  jwt.payload = {
    aud,
    iss,
    iat,
    nbf: iat,
    exp,
    azp: token.clientId,
    azpacr: '1',
    idtyp: 'app',
    oid: TENANTS[tid],
    roles: ['Items.Read'],
    sub: TENANTS[tid],
    tid,
    uti: jti,
    ver: '2.0',
    ...(cnf ? { cnf } : {}),
  };
};

const makeTenant = (tid) => shapedProvider(`${issuer}/${tid}/v2.0`, {
  clients: ['entra-daemon'],
  keys: entraKeys,
  scopes: [],
  resource: { indicator: 'api://items', audience: 'api://items' },
  customize: entraClaims(tid),
}).callback();

// Entra's multi-tenant ("organizations") discovery document and key set.
const organizationsMetadata = {
  issuer: ENTRA_TEMPLATE_ISSUER,
  authorization_endpoint: `${issuer}/organizations/oauth2/v2.0/authorize`,
  token_endpoint: `${issuer}/organizations/oauth2/v2.0/token`,
  jwks_uri: `${issuer}${ENTRA_KEYS_PATH}`,
  response_types_supported: ['code'],
  response_modes_supported: ['query', 'fragment', 'form_post'],
  subject_types_supported: ['pairwise'],
  id_token_signing_alg_values_supported: ['RS256'],
  scopes_supported: ['openid', 'profile', 'email', 'offline_access'],
  token_endpoint_auth_methods_supported: ['client_secret_post', 'private_key_jwt', 'client_secret_basic'],
  claims_supported: ['sub', 'iss', 'aud', 'exp', 'iat', 'nbf', 'tid', 'oid', 'name', 'preferred_username'],
};
// Public parts only; like Entra's, each key names the issuer (template) it signs for.
const organizationsKeys = {
  keys: entraKeys.map(({ kty, n, e, kid, alg, use }) => ({
    kty, use, kid, n, e, alg, issuer: ENTRA_TEMPLATE_ISSUER,
  })),
};
const STATIC = {
  '/organizations/v2.0/.well-known/openid-configuration': organizationsMetadata,
  [ENTRA_KEYS_PATH]: organizationsKeys,
};

// path prefix -> the provider whose issuer has that path, mounted there
const MOUNTS = [
  [REALM, makeRealm()],
  ...Object.keys(TENANTS).map((tid) => [`/${tid}/v2.0`, makeTenant(tid)]),
];

// Hands a request under `prefix` to a provider mounted there: oidc-provider routes on req.url with
// the prefix stripped, and rebuilds its own URLs (discovery, token endpoint) from req.originalUrl.
function mounted(prefix, callback, req, res) {
  const rest = req.url.slice(prefix.length);
  req.originalUrl = req.url;
  req.url = rest.startsWith('/') ? rest : `/${rest}`;
  callback(req, res);
}

// --- HTTP server ------------------------------------------------------------------------------

const sockets = new Set();

const server = http.createServer((req, res) => {
  const url = new URL(req.url, issuer);
  if (req.method === 'POST' && url.pathname === '/__test/rotate') {
    // Same storage (the in-memory adapter is shared), new signing keys first, old ones still
    // published so tokens they signed stay verifiable, as a real provider rotates.
    keys = [...newKeys(), ...keys.slice(0, 2)];
    handler = makeProvider();
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ kids: keys.map((k) => k.kid) }));
    return;
  }
  if (req.method === 'POST' && url.pathname === '/__test/stop') {
    const ms = Number(url.searchParams.get('ms') || 3000);
    res.writeHead(200, { connection: 'close' });
    res.end('stopping');
    setImmediate(() => {
      server.close();
      for (const socket of sockets) socket.destroy();
      setTimeout(() => server.listen(port, '127.0.0.1'), ms);
    });
    return;
  }
  if (req.method === 'GET' && STATIC[url.pathname]) {
    res.writeHead(200, { 'content-type': 'application/json; charset=utf-8' });
    res.end(JSON.stringify(STATIC[url.pathname]));
    return;
  }
  for (const [prefix, callback] of MOUNTS) {
    if (url.pathname === prefix || url.pathname.startsWith(`${prefix}/`)) {
      mounted(prefix, callback, req, res);
      return;
    }
  }
  handler(req, res);
});
server.on('connection', (socket) => {
  sockets.add(socket);
  socket.on('close', () => sockets.delete(socket));
});
server.listen(port, '127.0.0.1', () => console.log(`oidc-provider test issuer ${issuer}`));
for (const signal of ['SIGINT', 'SIGTERM']) process.on(signal, () => process.exit(0));
