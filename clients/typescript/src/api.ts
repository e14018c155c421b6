/**
 * Typed calls to one Woodpecker service, driven by the `paths` that openapi-typescript generates from the
 * service's /openapi.json: a call's path, method, parameters and body are checked against the document,
 * and what it returns is the document's success body for that operation. Errors are thrown as ApiError
 * with the problem+json body the document promises for every error.
 */
import type { components } from "../generated/intake.js";

/** RFC 9457 problem details: the body of every error, from every service (each document has the same one). */
export type Problem = components["schemas"]["Problem"];

type Method = "get" | "put" | "post";
type Json = "application/json";
type Multipart = "multipart/form-data";

/** The paths of a document that have an operation for `M`. */
type PathsWith<Paths, M extends Method> = {
  [P in keyof Paths]: Paths[P] extends Record<M, object> ? P : never;
}[keyof Paths] & string;

type Operation<Paths, P extends keyof Paths, M extends Method> = Paths[P] extends Record<M, infer O> ? O : never;
type ParametersOf<O> = O extends { parameters: infer X } ? X : never;
type PathParameters<O> = ParametersOf<O> extends { path: infer X } ? X : undefined;
type QueryParameters<O> = ParametersOf<O> extends { query?: infer X } ? X : undefined;
type HeaderParameters<O> = ParametersOf<O> extends { header?: infer X } ? X : undefined;
type Body<O, Media extends string> = O extends { requestBody: { content: Record<Media, infer X> } } ? X : undefined;
type ResponsesOf<O> = O extends { responses: infer R } ? R : never;
type JsonContent<R> = R extends { content: Record<Json, infer X> } ? X : never;

/** The JSON body of an operation's success (2xx) answer, as the document states it. */
type Success<O> = JsonContent<ResponsesOf<O>[Extract<keyof ResponsesOf<O>, 200 | 201>]>;

/** What a call sends: the bearer token, and whichever of path, query, headers and body the operation takes. */
type Call<O> = { token: string }
  & (PathParameters<O> extends undefined ? { path?: never } : { path: PathParameters<O> })
  & (QueryParameters<O> extends undefined ? { query?: never } : { query?: QueryParameters<O> })
  & (HeaderParameters<O> extends undefined ? { headers?: never } : { headers?: HeaderParameters<O> });
type JsonCall<O> = Call<O> & (Body<O, Json> extends undefined ? { body?: never } : { body: Body<O, Json> });
/** A multipart upload names each form field of the document's schema, with a file for it. */
type UploadCall<O> = Call<O> & { form: { [Field in keyof Body<O, Multipart>]: File } };

type Scalar = string | number | boolean;
/** A call as data, once its types have done their work. */
interface RawCall {
  token: string;
  path: Map<string, Scalar>;
  query: Map<string, Scalar>;
  headers: Map<string, Scalar>;
  body: unknown;
  form: Map<string, File>;
}

export interface Answer<T> {
  body: T;
  status: number;
  headers: Headers;
}

/** An error answer: its status, its problem+json body, and when a retry may be sent (429, 503). */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly problem: Problem | null,
    readonly retryAfterS: number | null,
    readonly requestId: string | null,
  ) {
    super(problem ? `${status} ${problem.title}: ${problem.detail}${fieldErrors(problem)}` : `HTTP ${status}`);
    this.name = "ApiError";
  }
}

/** One service's API at `baseUrl`, typed by that service's generated `paths`. */
export class Service<Paths> {
  constructor(readonly baseUrl: string, readonly retries = 3) {}

  get<P extends PathsWith<Paths, "get">>(path: P, call: JsonCall<Operation<Paths, P, "get">>,
  ): Promise<Answer<Success<Operation<Paths, P, "get">>>> {
    return this.send("GET", path, call);
  }

  post<P extends PathsWith<Paths, "post">>(path: P, call: JsonCall<Operation<Paths, P, "post">>,
  ): Promise<Answer<Success<Operation<Paths, P, "post">>>> {
    return this.send("POST", path, call);
  }

  put<P extends PathsWith<Paths, "put">>(path: P, call: JsonCall<Operation<Paths, P, "put">>,
  ): Promise<Answer<Success<Operation<Paths, P, "put">>>> {
    return this.send("PUT", path, call);
  }

  /** POST multipart/form-data (a photo): fetch writes the boundary itself. */
  upload<P extends PathsWith<Paths, "post">>(path: P, call: UploadCall<Operation<Paths, P, "post">>,
  ): Promise<Answer<Success<Operation<Paths, P, "post">>>> {
    return this.send("POST", path, call);
  }

  /** A 429 or 503 with Retry-After says when to come back: wait, then send the same request again (a creating
   * POST with the same Idempotency-Key, so that a retry never creates twice). */
  private async send<T>(method: string, path: string, typed: object): Promise<Answer<T>> {
    const call = rawCall(typed);
    for (let attempt = 0; ; attempt++) {
      const response = await fetch(this.url(path, call), {
        method, headers: headersOf(call), body: bodyOf(call), signal: AbortSignal.timeout(15_000),
      });
      if (response.ok) {
        // Where the wire meets the types: the body is what the document says this operation answers.
        // That the services answer what their documents say is checked by make test (schemathesis).
        const body: T = await response.json();
        return { body, status: response.status, headers: response.headers };
      }
      const error = await errorOf(response);
      if (error.retryAfterS === null || attempt >= this.retries) {
        throw error;
      }
      await sleep(error.retryAfterS * 1000);
    }
  }

  private url(path: string, call: RawCall): URL {
    const filled = path.replace(/\{(\w+)\}/g, (_, name: string) => {
      const value = call.path.get(name);
      if (value === undefined) {
        throw new Error(`${path}: no value for {${name}}`);
      }
      return encodeURIComponent(String(value));
    });
    const url = new URL(filled, this.baseUrl);
    for (const [name, value] of call.query) {
      url.searchParams.set(name, String(value));
    }
    return url;
  }
}

function isProblem(value: unknown): value is Problem {
  if (typeof value !== "object" || value === null) {
    return false;
  }
  const fields: Record<string, unknown> = { ...value };
  return typeof fields.type === "string" && typeof fields.title === "string"
    && typeof fields.status === "number" && typeof fields.detail === "string";
}

/** The typed call as data: each part the operation takes, its undefined values left out. */
function rawCall(call: object): RawCall {
  if (!("token" in call) || typeof call.token !== "string") {
    throw new Error("A call needs a bearer token.");
  }
  return {
    token: call.token,
    path: "path" in call ? entries(call.path, isScalar) : new Map(),
    query: "query" in call ? entries(call.query, isScalar) : new Map(),
    headers: "headers" in call ? entries(call.headers, isScalar) : new Map(),
    body: "body" in call ? call.body : undefined,
    form: "form" in call ? entries(call.form, (value): value is File => value instanceof File) : new Map(),
  };
}

function entries<V>(value: unknown, accepts: (item: unknown) => item is V): Map<string, V> {
  const found = new Map<string, V>();
  if (typeof value === "object" && value !== null) {
    for (const entry of Object.entries(value)) {
      const [name, item]: [string, unknown] = entry;
      if (item === undefined || item === null) {
        continue;
      }
      if (accepts(item)) {
        found.set(name, item);
      } else {
        throw new Error(`${name}: not a value this client can send`);
      }
    }
  }
  return found;
}

function isScalar(value: unknown): value is Scalar {
  return typeof value === "string" || typeof value === "number" || typeof value === "boolean";
}

function headersOf(call: RawCall): Headers {
  const headers = new Headers({ Authorization: `Bearer ${call.token}`, Accept: "application/json" });
  for (const [name, value] of call.headers) {
    headers.set(name, String(value));
  }
  if (call.body !== undefined) {
    headers.set("Content-Type", "application/json");
  }
  return headers;
}

function bodyOf(call: RawCall): BodyInit | null {
  if (call.form.size) {
    const form = new FormData();
    for (const [field, file] of call.form) {
      form.append(field, file, file.name);
    }
    return form;
  }
  return call.body === undefined ? null : JSON.stringify(call.body);
}

/** Every error is application/problem+json; a proxy in between may still answer with something else. */
async function errorOf(response: Response): Promise<ApiError> {
  const text = await response.text();
  const isProblemJson = response.headers.get("Content-Type")?.startsWith("application/problem+json") ?? false;
  const parsed: unknown = isProblemJson ? parseJson(text) : null;
  const retryAfter = Number(response.headers.get("Retry-After") ?? Number.NaN);
  const retryable = (response.status === 429 || response.status === 503) && Number.isFinite(retryAfter);
  return new ApiError(response.status, isProblem(parsed) ? parsed : null, retryable ? retryAfter : null,
    response.headers.get("X-Request-Id"));
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return null;
  }
}

function fieldErrors(problem: Problem): string {
  const fields = Object.entries(problem.errors ?? {}).map(([field, messages]) => `${field}: ${messages.join(" ")}`);
  return fields.length ? ` (${fields.join("; ")})` : "";
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
