/**
 * The four services' APIs, typed by what openapi-typescript generates from their documents (npm run generate):
 * a call's path, parameters and body are checked against the document, and so is what the screens read from
 * its answer. Each request carries the signed-in caller's bearer token; a 401 ends the session.
 */
import createClient, { type Client, type Middleware } from "openapi-fetch";

import type { ServiceName } from "@/config";

import type { paths as HoursPaths } from "./generated/hours";
import type { components as IntakeComponents, paths as IntakePaths } from "./generated/intake";
import type { paths as NotifyPaths } from "./generated/notify";
import type { components as RoutingComponents, paths as RoutingPaths } from "./generated/routing";
import { ApiError, isProblem } from "./problem";

export type Case = RoutingComponents["schemas"]["Case"];
export type CasePage = RoutingComponents["schemas"]["CasePage"];
export type HistoryEntry = RoutingComponents["schemas"]["HistoryEntry"];
export type Department = RoutingComponents["schemas"]["Department"];
export type Report = IntakeComponents["schemas"]["Report"];
export type Photo = IntakeComponents["schemas"]["Photo"];
export type Category = IntakeComponents["schemas"]["Category"];
export type Grid = IntakeComponents["schemas"]["Grid"];
export type CaseQuery = NonNullable<RoutingPaths["/v1/cases"]["get"]["parameters"]["query"]>;

export interface Api {
  intake: Client<IntakePaths>;
  routing: Client<RoutingPaths>;
  hours: Client<HoursPaths>;
  notify: Client<NotifyPaths>;
  urls: Record<ServiceName, string>;
}

const TIMEOUT_MS = 20_000;

export interface Credentials {
  /** The bearer token of the signed-in caller, if any. */
  token: () => string | null;
  /** A service refused the token (expired, revoked, signed with another key). */
  refused: () => void;
}

let api: Api | null = null;

export function connectApi(urls: Record<ServiceName, string>, credentials: Credentials): Api {
  const authorized: Middleware = {
    onRequest({ request }) {
      const token = credentials.token();
      if (token) {
        request.headers.set("Authorization", `Bearer ${token}`);
      }
      request.headers.set("Accept", "application/json");
      return request;
    },
    onResponse({ response }) {
      if (response.status === 401) {
        credentials.refused();
      }
      return response;
    },
  };
  const client = <Paths extends object>(baseUrl: string): Client<Paths> => {
    const made = createClient<Paths>({
      baseUrl, fetch: (request: Request) => fetch(request, { signal: AbortSignal.timeout(TIMEOUT_MS) }),
    });
    made.use(authorized);
    return made;
  };
  api = {
    intake: client<IntakePaths>(urls.intake),
    routing: client<RoutingPaths>(urls.routing),
    hours: client<HoursPaths>(urls.hours),
    notify: client<NotifyPaths>(urls.notify),
    urls,
  };
  return api;
}

export function useApi(): Api {
  if (api === null) {
    throw new Error("The API is not connected yet.");
  }
  return api;
}

interface Answer {
  data?: unknown;
  error?: unknown;
  response: Response;
}

/** The success body of a call, or an ApiError that says what went wrong (status 0: nothing answered). */
export async function ok<T extends Answer>(pending: Promise<T>): Promise<NonNullable<T["data"]>> {
  let answer: T;
  try {
    answer = await pending;
  } catch {
    throw new ApiError(0, null);
  }
  const { data, error, response } = answer;
  if (response.ok && data !== undefined && data !== null) {
    return data as NonNullable<T["data"]>;
  }
  throw errorOf(response, error);
}

export function errorOf(response: Response, body: unknown): ApiError {
  const retryAfter = Number(response.headers.get("Retry-After") ?? Number.NaN);
  return new ApiError(response.status, isProblem(body) ? body : null, Number.isFinite(retryAfter) ? retryAfter : null,
    response.headers.get("X-Request-Id"));
}
