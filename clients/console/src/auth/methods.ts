/**
 * The ways a caller signs in. Each completes a sign-in that the page's address carries (a link's `#token=`; the
 * authorization code that the city's OpenID Connect provider sends back) and returns the bearer token, or null
 * when the address carries none of its kind; a sign-in that failed throws SignInFailed (oidc.ts). A method that
 * can also begin a sign-in (a redirect to the provider) offers `begin`, and the sign-in page shows a button for
 * it when `offered()` says the deployment has it.
 */
import { config } from "@/config";

import { beginSignIn, completeSignIn } from "./oidc";
import { takeTokenFromFragment } from "./token";

export interface SignInMethod {
  id: string;
  /** The token the address brings, if it brings one; `clean` puts the address back without it. */
  complete(address: URL, clean: (address: URL) => void): Promise<string | null>;
  begin?(next: string): Promise<void>;
  /** Whether this deployment offers it (default: yes). */
  offered?(): boolean;
  /** Its name on the sign-in button, when the deployment names it (the provider's). */
  label?(): string;
}

/** A link `make up` prints (or an administrator hands out): `…/triage#token=<JWT>`. */
export const linkSignIn: SignInMethod = {
  id: "link",
  async complete(address, clean) {
    const { token, rest } = takeTokenFromFragment(address.hash);
    if (token === null && rest === address.hash) {
      return null;
    }
    const cleaned = new URL(address);
    cleaned.hash = rest;
    clean(cleaned);  // the token leaves the address bar, the history and any bookmark at once
    return token;
  },
};

/** The city's OpenID Connect provider (CONSOLE_OIDC_* in /config.json): authorization code with PKCE. */
export const providerSignIn: SignInMethod = {
  id: "oidc",
  async complete(address, clean) {
    return config().oidc === null ? null : completeSignIn(address, clean);
  },
  async begin(next) {
    const provider = config().oidc;
    if (provider !== null) {
      await beginSignIn(provider, next);
    }
  },
  offered: () => config().oidc !== null,
  label: () => config().oidc?.name ?? "",
};

export const SIGN_IN_METHODS: SignInMethod[] = [linkSignIn, providerSignIn];
