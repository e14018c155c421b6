/**
 * The ways a caller signs in. Each completes a sign-in that the page's address carries (a link's `#token=`
 * now; the authorization code that the city's OpenID Connect provider sends back, once the identity issue
 * lands) and returns the bearer token, or null when the address carries none of its kind. A method that can
 * also begin a sign-in (a redirect to the provider) offers `begin`, and the sign-in page shows a button for it.
 */
import { takeTokenFromFragment } from "./token";

export interface SignInMethod {
  id: string;
  /** The token the address brings, if it brings one; `clean` puts the address back without it. */
  complete(address: URL, clean: (address: URL) => void): Promise<string | null>;
  begin?(next: string): Promise<void>;
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

export const SIGN_IN_METHODS: SignInMethod[] = [linkSignIn];
