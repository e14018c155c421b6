/**
 * Who is signed in, for this browser tab only (sessionStorage: a new tab, or a closed one, signs in again).
 * Sign-in methods (methods.ts) bring a token; this store keeps it, judges it (token.ts), and ends the session
 * when it expires or a service refuses it.
 */
import { defineStore } from "pinia";
import { computed, ref } from "vue";

import { forgetPhotos } from "@/api/photos";
import { config } from "@/config";

import { SIGN_IN_METHODS, type SignInMethod } from "./methods";
import { SignInFailed, type ProviderFailure } from "./oidc";
import { judge, mappingFor, type Claims, type Session, type SignedOutReason } from "./token";

const STORED = "woodpecker.console.token";

export type EndReason = SignedOutReason | ProviderFailure | "signed-out" | "refused";

export const useAuth = defineStore("auth", () => {
  const session = ref<Session | null>(null);
  /** Why there is no session, when there is none. */
  const reason = ref<EndReason>("missing");
  /** What the provider said when a sign-in through it failed (its error_description), for the sign-in page. */
  const failure = ref("");
  let expiry: ReturnType<typeof setTimeout> | undefined;

  const claims = computed<Claims | null>(() => session.value?.claims ?? null);
  const role = computed(() => session.value?.claims.role ?? null);
  const token = computed(() => session.value?.token ?? null);

  /** The session the address brings (a sign-in link), else the one this tab kept. */
  async function start(address: URL, clean: (address: URL) => void,
    methods: SignInMethod[] = SIGN_IN_METHODS): Promise<void> {
    for (const method of methods) {
      let brought: string | null;
      try {
        brought = await method.complete(address, clean);
      } catch (failed) {
        if (!(failed instanceof SignInFailed)) {
          throw failed;
        }
        end(failed.reason);
        failure.value = failed.detail;
        return;
      }
      if (brought !== null) {
        adopt(brought);
        return;
      }
    }
    adopt(sessionStorage.getItem(STORED));
  }

  function adopt(candidate: string | null): void {
    const mapping = candidate ? mappingFor(candidate, config().oidc?.claims ?? null) : undefined;
    const judged = judge(candidate, Date.now(), mapping);
    if (typeof judged === "string") {
      end(judged);
      return;
    }
    session.value = judged;
    failure.value = "";
    sessionStorage.setItem(STORED, judged.token);
    clearTimeout(expiry);
    // setTimeout holds at most about 24.8 days; a token lives hours.
    expiry = setTimeout(() => end("expired"), Math.min(judged.claims.exp * 1000 - Date.now(), 2 ** 31 - 1));
  }

  function end(why: EndReason): void {
    clearTimeout(expiry);
    session.value = null;
    reason.value = why;
    failure.value = "";
    sessionStorage.removeItem(STORED);
    forgetPhotos();
  }

  return { session, reason, failure, claims, role, token, start, adopt, end };
});
