/**
 * Signing in through the city's OpenID Connect provider: the authorization-code flow with PKCE (RFC 7636, S256)
 * for a public client (a browser keeps no secret). `begin` reads the provider's discovery document, keeps a
 * fresh code verifier, state and nonce in sessionStorage for the round trip only, and sends the browser to the
 * provider; the provider sends it back to CALLBACK_PATH with `?code=&state=` (or `?error=`), where `complete`
 * checks the state, exchanges the code and the verifier at the token endpoint (a fetch: the provider's CORS
 * admits the console's origin) and gives the access token, a JWT the services verify. The address loses the code
 * and the state at once. No refresh token is used: when the access token expires the tab is signed out, with the
 * "expired" page, and the provider (whose own session usually still holds) signs it in again with one click.
 */

/** Where the provider sends the browser back: register `<console origin>/sign-in/callback` as the redirect URI. */
export const CALLBACK_PATH = "/sign-in/callback";
const PENDING = "woodpecker.console.oidc";

/** Where a claim of ours comes from in the provider's tokens (docs/identity.md, the services' mapping). */
export interface ClaimSource {
  path: string;
  prefix: string;
}

export interface ClaimMapping {
  role: ClaimSource;
  /** Provider value → our role, first match first; empty: the claim holds our role names. */
  roles: [string, string][];
  dept: ClaimSource;
  grid: ClaimSource;
}

export interface ProviderConfig {
  issuer: string;
  clientId: string;
  scopes: string;
  /** The provider's name on the sign-in button; empty: the console's words for it. */
  name: string;
  claims: ClaimMapping;
}

/** What the console needs of the provider's discovery document. */
export interface Discovery {
  authorizationEndpoint: string;
  tokenEndpoint: string;
}

/** What is kept in sessionStorage between leaving for the provider and coming back. */
export interface Pending {
  clientId: string;
  state: string;
  verifier: string;
  nonce: string;
  tokenEndpoint: string;
  redirectUri: string;
  /** The console path to land on afterwards. */
  next: string;
}

/** Why a sign-in through the provider did not give a token: the sign-in page words each. */
export type ProviderFailure = "denied" | "provider-failed" | "state-mismatch";

export class SignInFailed extends Error {
  constructor(readonly reason: ProviderFailure, readonly detail = "") {
    super(`${reason}${detail ? `: ${detail}` : ""}`);
  }
}

// --- the pure pieces (unit-tested) ---------------------------------------------------------------------

export function base64Url(bytes: Uint8Array): string {
  let binary = "";
  for (const byte of bytes) {
    binary += String.fromCharCode(byte);
  }
  return btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

/** A high-entropy random string (RFC 7636, 4.1): 32 random octets, base64url, 43 characters. */
export function randomToken(random: (bytes: Uint8Array) => Uint8Array = (b) => crypto.getRandomValues(b)): string {
  return base64Url(random(new Uint8Array(32)));
}

/** The S256 code challenge of a verifier: BASE64URL(SHA256(ASCII(verifier))). */
export async function codeChallenge(verifier: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(verifier));
  return base64Url(new Uint8Array(digest));
}

export function readDiscovery(issuer: string, value: unknown): Discovery {
  const document: Record<string, unknown> = typeof value === "object" && value !== null ? { ...value } : {};
  const { issuer: named, authorization_endpoint: authorize, token_endpoint: token } = document;
  if (named !== issuer) {
    // OpenID Connect Discovery, 4.3: the document must be the issuer's own.
    throw new SignInFailed("provider-failed", `the discovery document names the issuer ${String(named)}`);
  }
  if (typeof authorize !== "string" || typeof token !== "string") {
    throw new SignInFailed("provider-failed", "the discovery document names no authorization or token endpoint");
  }
  return { authorizationEndpoint: authorize, tokenEndpoint: token };
}

export function authorizationUrl(endpoint: string, scopes: string, pending: Pending, challenge: string): string {
  const url = new URL(endpoint);
  const parameters = {
    response_type: "code", client_id: pending.clientId, redirect_uri: pending.redirectUri, scope: scopes,
    state: pending.state, nonce: pending.nonce, code_challenge: challenge, code_challenge_method: "S256",
  };
  for (const [name, value] of Object.entries(parameters)) {
    url.searchParams.set(name, value);
  }
  return url.toString();
}

/** What the provider's answer on the callback path says: a code, or an error, with the state; null elsewhere. */
export interface Callback {
  code: string | null;
  state: string | null;
  error: string | null;
  errorDescription: string | null;
}

export function readCallback(address: URL): Callback | null {
  if (address.pathname !== CALLBACK_PATH) {
    return null;
  }
  const query = address.searchParams;
  return { code: query.get("code"), state: query.get("state"), error: query.get("error"),
    errorDescription: query.get("error_description") };
}

/** The console path to show once the callback is handled: the one the sign-in began from, never another site. */
export function landingAddress(address: URL, next: string | undefined): URL {
  const path = next && next.startsWith("/") && !next.startsWith("//") && !next.startsWith(CALLBACK_PATH) ? next : "/";
  return new URL(path, address.origin);
}

/** The code to exchange, or why there is none: the provider's error, or a state that is not the one we sent. */
export function checkCallback(callback: Callback, pending: Pending | null): string {
  if (callback.error !== null) {
    const detail = callback.errorDescription ?? callback.error;
    throw new SignInFailed(callback.error === "access_denied" ? "denied" : "provider-failed", detail);
  }
  if (pending === null || callback.state === null || callback.state !== pending.state) {
    // Not the answer to a sign-in this tab began (a stale or forged callback): nothing from it is used.
    throw new SignInFailed("state-mismatch");
  }
  if (!callback.code) {
    throw new SignInFailed("provider-failed", "the provider sent no code");
  }
  return callback.code;
}

export function readPending(text: string | null): Pending | null {
  if (text === null) {
    return null;
  }
  try {
    const value: unknown = JSON.parse(text);
    if (typeof value !== "object" || value === null) {
      return null;
    }
    const fields: Record<string, unknown> = { ...value };
    const names = ["clientId", "state", "verifier", "nonce", "tokenEndpoint", "redirectUri", "next"] as const;
    return names.every((name) => typeof fields[name] === "string") ? (fields as unknown as Pending) : null;
  } catch {
    return null;
  }
}

/** The ID token's nonce must be the one this sign-in sent (OpenID Connect Core, 3.1.3.7). Its signature is not
 * checked: it came straight from the token endpoint over the connection the browser opened (3.1.3.7, 6.). */
export function checkNonce(idToken: string | undefined, nonce: string): void {
  if (idToken === undefined) {
    return;
  }
  const payload = idToken.split(".")[1] ?? "";
  let claims: unknown;
  try {
    claims = JSON.parse(new TextDecoder().decode(Uint8Array.from(
      atob(payload.replace(/-/g, "+").replace(/_/g, "/").padEnd(Math.ceil(payload.length / 4) * 4, "=")),
      (c) => c.charCodeAt(0))));
  } catch {
    claims = null;
  }
  if (typeof claims !== "object" || claims === null || !("nonce" in claims) || claims.nonce !== nonce) {
    throw new SignInFailed("provider-failed", "the ID token's nonce is not this sign-in's");
  }
}

// --- the round trip (a browser's) ------------------------------------------------------------------------

export async function discover(issuer: string): Promise<Discovery> {
  let response: Response;
  try {
    response = await fetch(`${issuer.replace(/\/$/, "")}/.well-known/openid-configuration`,
      { headers: { Accept: "application/json" } });
  } catch {
    throw new SignInFailed("provider-failed", "the provider could not be reached");
  }
  if (!response.ok) {
    throw new SignInFailed("provider-failed", `its discovery document: HTTP ${response.status}`);
  }
  return readDiscovery(issuer, await response.json());
}

/** Leave for the provider's sign-in page. */
export async function beginSignIn(provider: ProviderConfig, next: string): Promise<void> {
  const discovery = await discover(provider.issuer);
  const pending: Pending = {
    clientId: provider.clientId, state: randomToken(), verifier: randomToken(), nonce: randomToken(),
    tokenEndpoint: discovery.tokenEndpoint, redirectUri: `${window.location.origin}${CALLBACK_PATH}`, next,
  };
  sessionStorage.setItem(PENDING, JSON.stringify(pending));
  window.location.assign(authorizationUrl(discovery.authorizationEndpoint, provider.scopes, pending,
    await codeChallenge(pending.verifier)));
}

/** Back from the provider: the access token, or SignInFailed; null when the address is not the callback. */
export async function completeSignIn(address: URL, clean: (address: URL) => void): Promise<string | null> {
  const callback = readCallback(address);
  if (callback === null) {
    return null;
  }
  const pending = readPending(sessionStorage.getItem(PENDING));
  sessionStorage.removeItem(PENDING);  // used once, whatever happens
  clean(landingAddress(address, pending?.next));  // the code and the state leave the address bar and the history
  const code = checkCallback(callback, pending);
  const sent = pending as Pending;  // checkCallback refuses a callback with nothing pending
  let response: Response;
  try {
    response = await fetch(sent.tokenEndpoint, {
      method: "POST",
      headers: { "Content-Type": "application/x-www-form-urlencoded", Accept: "application/json" },
      body: new URLSearchParams({ grant_type: "authorization_code", code, redirect_uri: sent.redirectUri,
        client_id: sent.clientId, code_verifier: sent.verifier }),
    });
  } catch {
    throw new SignInFailed("provider-failed", "the provider's token endpoint could not be reached");
  }
  const answer: unknown = await response.json().catch(() => null);
  const fields: Record<string, unknown> = typeof answer === "object" && answer !== null ? { ...answer } : {};
  if (!response.ok || typeof fields.access_token !== "string") {
    const said = [fields.error, fields.error_description].filter((part) => typeof part === "string").join(": ");
    throw new SignInFailed("provider-failed", said || `its token endpoint: HTTP ${response.status}`);
  }
  checkNonce(typeof fields.id_token === "string" ? fields.id_token : undefined, sent.nonce);
  return fields.access_token;
}
