import { describe, expect, it } from "vitest";

import {
  authorizationUrl,
  base64Url,
  CALLBACK_PATH,
  checkCallback,
  checkNonce,
  codeChallenge,
  landingAddress,
  randomToken,
  readCallback,
  readDiscovery,
  readPending,
  SignInFailed,
  type ClaimMapping,
  type Pending,
} from "@/auth/oidc";
import { judge, mappingFor, readClaims } from "@/auth/token";
import { parseConfig } from "@/config";

function jwt(claims: object, alg = "RS256"): string {
  const part = (value: object) => Buffer.from(JSON.stringify(value)).toString("base64url");
  return `${part({ alg, typ: "at+jwt", kid: "k1" })}.${part(claims)}.c2lnbmF0dXJl`;
}

function failure(run: () => unknown): SignInFailed {
  try {
    run();
  } catch (failed) {
    if (failed instanceof SignInFailed) {
      return failed;
    }
    throw failed;
  }
  throw new Error("it did not fail");
}

const PENDING: Pending = {
  clientId: "woodpecker-console", state: "s-123", verifier: "v".repeat(43), nonce: "n-456",
  tokenEndpoint: "https://sso.example.gov.cn/realms/linyi/token",
  redirectUri: `http://127.0.0.1:8000${CALLBACK_PATH}`, next: "/cases/c-1?status=open",
};

describe("PKCE (RFC 7636)", () => {
  // Appendix B: the 32 octets, the verifier they make, and its S256 challenge.
  const OCTETS = [116, 24, 223, 180, 151, 153, 224, 37, 79, 250, 96, 125, 216, 173, 187, 186, 22, 212, 37, 77, 105,
    214, 191, 240, 91, 88, 5, 88, 83, 132, 141, 121];
  const VERIFIER = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";

  it("makes the verifier of appendix B from its octets", () => {
    expect(randomToken((bytes) => { bytes.set(OCTETS); return bytes; })).toBe(VERIFIER);
  });

  it("makes the S256 challenge of appendix B", async () => {
    expect(await codeChallenge(VERIFIER)).toBe("E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM");
  });

  it("draws 32 random octets for each verifier: 43 unreserved characters, never the same twice", () => {
    const made = new Set(Array.from({ length: 50 }, () => randomToken()));
    expect(made.size).toBe(50);
    for (const verifier of made) {
      expect(verifier).toMatch(/^[A-Za-z0-9\-_]{43}$/);
    }
  });

  it("encodes base64url without padding", () => {
    expect(base64Url(new Uint8Array([251, 255]))).toBe("-_8");
  });
});

describe("the authorization request", () => {
  it("names the client, the exact redirect URI, the state, the nonce and an S256 challenge", () => {
    const url = new URL(authorizationUrl("https://sso.example.gov.cn/auth?kc_idp_hint=x", "openid woodpecker",
      PENDING, "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"));
    expect(Object.fromEntries(url.searchParams)).toEqual({
      kc_idp_hint: "x", response_type: "code", client_id: "woodpecker-console", redirect_uri: PENDING.redirectUri,
      scope: "openid woodpecker", state: "s-123", nonce: "n-456",
      code_challenge: "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM", code_challenge_method: "S256",
    });
  });

  it("comes from a discovery document that is the issuer's own", () => {
    const issuer = "https://sso.example.gov.cn/realms/linyi";
    expect(readDiscovery(issuer, { issuer, authorization_endpoint: `${issuer}/auth`, token_endpoint: `${issuer}/token` }))
      .toEqual({ authorizationEndpoint: `${issuer}/auth`, tokenEndpoint: `${issuer}/token` });
    expect(failure(() => readDiscovery(issuer, { issuer: `${issuer}/`, authorization_endpoint: "a",
      token_endpoint: "t" })).reason).toBe("provider-failed");
    expect(failure(() => readDiscovery(issuer, { issuer })).reason).toBe("provider-failed");
  });
});

describe("the provider's answer", () => {
  const answer = (query: string) => readCallback(new URL(`http://127.0.0.1:8000${CALLBACK_PATH}?${query}`));

  it("is read on the callback path only", () => {
    expect(readCallback(new URL("http://127.0.0.1:8000/triage?code=c&state=s"))).toBeNull();
    expect(answer("code=c-1&state=s-123")).toEqual({ code: "c-1", state: "s-123", error: null,
      errorDescription: null });
  });

  it("gives its code when the state is the one this tab sent", () => {
    expect(checkCallback(answer("code=c-1&state=s-123")!, PENDING)).toBe("c-1");
  });

  it.each([
    ["another state", "code=c-1&state=s-999", PENDING],
    ["no state", "code=c-1", PENDING],
    ["no sign-in begun in this tab", "code=c-1&state=s-123", null],
  ])("with %s is refused", (_what, query, pending) => {
    expect(failure(() => checkCallback(answer(query)!, pending)).reason).toBe("state-mismatch");
  });

  it("refusing the sign-in is 'denied', with the provider's words", () => {
    const refused = failure(() => checkCallback(answer("error=access_denied&error_description=User%20said%20no&state=s-123")!,
      PENDING));
    expect([refused.reason, refused.detail]).toEqual(["denied", "User said no"]);
  });

  it("another error is 'provider-failed', named", () => {
    const refused = failure(() => checkCallback(answer("error=invalid_request&state=s-123")!, PENDING));
    expect([refused.reason, refused.detail]).toEqual(["provider-failed", "invalid_request"]);
  });

  it("leaves the address bar for the page the sign-in began from, without the code and the state", () => {
    const back = new URL(`http://127.0.0.1:8000${CALLBACK_PATH}?code=c-1&state=s-123`);
    expect(String(landingAddress(back, PENDING.next))).toBe("http://127.0.0.1:8000/cases/c-1?status=open");
    expect(String(landingAddress(back, undefined))).toBe("http://127.0.0.1:8000/");
    expect(String(landingAddress(back, "//evil.example/x"))).toBe("http://127.0.0.1:8000/");
    expect(String(landingAddress(back, "https://evil.example/x"))).toBe("http://127.0.0.1:8000/");
    expect(String(landingAddress(back, `${CALLBACK_PATH}?code=x`))).toBe("http://127.0.0.1:8000/");
  });

  it("keeps what was pending only when it is whole", () => {
    expect(readPending(JSON.stringify(PENDING))).toEqual(PENDING);
    expect(readPending(JSON.stringify({ ...PENDING, verifier: undefined }))).toBeNull();
    expect(readPending("not json")).toBeNull();
    expect(readPending(null)).toBeNull();
  });

  it("an ID token must carry this sign-in's nonce", () => {
    expect(() => checkNonce(jwt({ nonce: "n-456" }), "n-456")).not.toThrow();
    expect(() => checkNonce(undefined, "n-456")).not.toThrow();
    expect(failure(() => checkNonce(jwt({ nonce: "n-other" }), "n-456")).reason).toBe("provider-failed");
    expect(failure(() => checkNonce(jwt({}), "n-456")).reason).toBe("provider-failed");
  });
});

describe("a provider token's claims, mapped as the services map them", () => {
  const KEYCLOAK: ClaimMapping = {
    role: { path: "realm_access.roles", prefix: "" },
    roles: [["woodpecker-office", "office"], ["woodpecker-department", "department"],
      ["woodpecker-grid-leader", "grid_leader"]],
    dept: { path: "groups", prefix: "/departments/" }, grid: { path: "groups", prefix: "/grids/" },
  };
  const LATER = Date.now() / 1000 + 300;

  it("gives the role from the table and the department from its group", () => {
    const token = jwt({ sub: "police-li", exp: LATER, realm_access: { roles: ["offline_access", "woodpecker-department"] },
      groups: ["/departments/traffic-police", "/staff"] });
    expect(readClaims(token, KEYCLOAK)).toEqual({ sub: "police-li", role: "department", dept: "traffic-police",
      exp: LATER });
  });

  it("gives a grid leader's grid", () => {
    const token = jwt({ sub: "leader", exp: LATER, realm_access: { roles: ["woodpecker-grid-leader"] },
      groups: ["/grids/lanshan-01"] });
    expect(readClaims(token, KEYCLOAK)?.grid).toBe("lanshan-01");
  });

  it("of someone with no Woodpecker role is no staff session", () => {
    const token = jwt({ sub: "clerk", exp: LATER, realm_access: { roles: ["offline_access"] } });
    expect(judge(token, Date.now(), KEYCLOAK)).toBe("not-staff");
  });

  it("reads a claim whose own name has dots whole", () => {
    const mapping = { ...KEYCLOAK, role: { path: "https://linyi.example.gov.cn/roles", prefix: "" } };
    const token = jwt({ sub: "o", exp: LATER, "https://linyi.example.gov.cn/roles": "woodpecker-office" });
    expect(readClaims(token, mapping)?.role).toBe("office");
  });

  it("is chosen for the provider's tokens, never for a locally signed one", () => {
    expect(mappingFor(jwt({}, "RS256"), KEYCLOAK)).toBe(KEYCLOAK);
    expect(mappingFor(jwt({}, "HS256"), KEYCLOAK).role.path).toBe("role");
    expect(mappingFor(jwt({}, "ES256"), null).role.path).toBe("role");
  });
});

describe("/config.json's provider", () => {
  const base = { services: { intake: "a", routing: "b", hours: "c", notify: "d" }, timeZone: "Asia/Shanghai" };

  it("is absent without CONSOLE_OIDC_*", () => {
    expect(parseConfig(base).oidc).toBeNull();
  });

  it("is read whole", () => {
    const oidc = { issuer: "https://sso.example.gov.cn", clientId: "woodpecker-console", scopes: "openid", name: "",
      claims: { role: { path: "role", prefix: "" }, roles: [["x", "office"]], dept: { path: "dept", prefix: "" },
        grid: { path: "grid", prefix: "" } } };
    expect(parseConfig({ ...base, oidc }).oidc).toEqual(oidc);
    expect(() => parseConfig({ ...base, oidc: { ...oidc, clientId: 7 } })).toThrow(/clientId/);
  });
});
