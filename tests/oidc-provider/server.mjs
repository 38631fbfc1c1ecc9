// A real OpenID provider (panva/oidc-provider) for portcullis's end-to-end tests.
//
//   node server.mjs PORT
//
// Serves issuer http://127.0.0.1:PORT with client_credentials, resource indicators (JWT access
// tokens, typ at+jwt, for the JWT resources; opaque ones for the opaque resource), introspection
// and revocation. Two test-only control endpoints let the tests act on the provider:
//   POST /__test/rotate       new signing keys (new kids) published first, old keys kept after
//   POST /__test/stop?ms=N    stop listening and drop every connection for N ms, then come back
import http from 'node:http';
import { generateKeyPairSync, randomUUID } from 'node:crypto';
import Provider from 'oidc-provider';

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
  handler(req, res);
});
server.on('connection', (socket) => {
  sockets.add(socket);
  socket.on('close', () => sockets.delete(socket));
});
server.listen(port, '127.0.0.1', () => console.log(`oidc-provider test issuer ${issuer}`));
for (const signal of ['SIGINT', 'SIGTERM']) process.on(signal, () => process.exit(0));
