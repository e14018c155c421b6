// The TypeScript types of each service's API, generated from its running /openapi.json into generated/<service>.ts.
// Base URLs: INTAKE_URL, ROUTING_URL, HOURS_URL, NOTIFY_URL (default: `make up`'s ports on this machine).
import { mkdir, writeFile } from "node:fs/promises";

import openapiTS, { astToString, COMMENT_HEADER } from "openapi-typescript";

const SERVICES = { intake: 8001, routing: 8002, hours: 8003, notify: 8004 };
const OUTPUT = new URL("../generated/", import.meta.url);

async function generate(service, port) {
  const base = process.env[`${service.toUpperCase()}_URL`] || `http://127.0.0.1:${port}`;
  const document = new URL("/openapi.json", base);
  // openapi-typescript 7 treats a property with a `default` as always present, also in a request body; the
  // documents give optional request fields their defaults (`"default": null`), and a client may leave them out.
  const types = astToString(await openapiTS(document, { defaultNonNullable: false, silent: true }));
  await writeFile(new URL(`${service}.ts`, OUTPUT), COMMENT_HEADER + types);
  return `${document} → generated/${service}.ts`;
}

await mkdir(OUTPUT, { recursive: true });
const results = await Promise.allSettled(Object.entries(SERVICES).map(([service, port]) => generate(service, port)));
for (const result of results) {
  console.log(result.status === "fulfilled" ? result.value : `failed: ${result.reason?.stack ?? result.reason}`);
}
process.exitCode = results.some((result) => result.status === "rejected") ? 1 : 0;
