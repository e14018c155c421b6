import { describe, expect, it } from "vitest";

import { linkSignIn } from "@/auth/methods";
import { judge, readClaims, takeTokenFromFragment } from "@/auth/token";

function jwt(claims: object): string {
  const part = (value: object) => Buffer.from(JSON.stringify(value)).toString("base64url");
  return `${part({ alg: "HS256", typ: "JWT" })}.${part(claims)}.c2lnbmF0dXJl`;
}

const NOW = Date.UTC(2026, 11, 7, 8, 0, 0);
const LATER = NOW / 1000 + 3600;
const office = jwt({ sub: "office-1", role: "office", exp: LATER });

describe("a sign-in link's fragment", () => {
  it("gives its token and leaves nothing in the address", () => {
    expect(takeTokenFromFragment(`#token=${office}`)).toEqual({ token: office, rest: "" });
  });

  it("keeps the fragment's other parameters", () => {
    expect(takeTokenFromFragment(`#token=${office}&tab=timeline`)).toEqual({ token: office, rest: "#tab=timeline" });
  });

  it("gives nothing when it carries no token", () => {
    expect(takeTokenFromFragment("#timeline")).toEqual({ token: null, rest: "#timeline" });
    expect(takeTokenFromFragment("")).toEqual({ token: null, rest: "" });
  });

  it("is taken out of the address by the link sign-in", async () => {
    let cleaned: URL | null = null;
    const token = await linkSignIn.complete(new URL(`http://console.test/cases/c-1?x=1#token=${office}`),
      (address) => { cleaned = address; });
    expect(token).toBe(office);
    expect(String(cleaned)).toBe("http://console.test/cases/c-1?x=1");
  });

  it("leaves an address without a token alone", async () => {
    let touched = false;
    const token = await linkSignIn.complete(new URL("http://console.test/triage"), () => { touched = true; });
    expect(token).toBeNull();
    expect(touched).toBe(false);
  });
});

describe("a token", () => {
  it("is read for its claims, Chinese names included", () => {
    const claims = readClaims(jwt({ sub: "王科员", role: "department", dept: "sanitation", exp: LATER }));
    expect(claims).toEqual({ sub: "王科员", role: "department", dept: "sanitation", exp: LATER });
  });

  it.each([
    ["no token", null, "missing"],
    ["a token past its exp", jwt({ sub: "o", role: "office", exp: NOW / 1000 - 1 }), "expired"],
    ["a token that ends now", jwt({ sub: "o", role: "office", exp: NOW / 1000 }), "expired"],
    ["not a JWT", "not-a-token", "invalid"],
    ["a JWT without exp", jwt({ sub: "o", role: "office" }), "invalid"],
    ["a payload that is not JSON", "e30.bm90IGpzb24.c2ln", "invalid"],
    ["a volunteer's token", jwt({ sub: "v", role: "volunteer", exp: LATER }), "not-staff"],
  ])("%s makes no session", (_what, token, reason) => {
    expect(judge(token, NOW)).toBe(reason);
  });

  it("of a staff role, unexpired, is a session", () => {
    expect(judge(office, NOW)).toEqual({ token: office, claims: { sub: "office-1", role: "office", exp: LATER } });
  });
});
