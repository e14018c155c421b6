// The TypeScript types of each service's API, generated from its running /openapi.json into
// src/api/generated/<service>.ts: the console type-checks against them (npm run check), so an API change
// that would break a screen fails the check. Base URLs: INTAKE_URL, ROUTING_URL, HOURS_URL, NOTIFY_URL
// (default: `make up`'s ports on this machine).
import { mkdir, writeFile } from "node:fs/promises";

import openapiTS, { astToString, COMMENT_HEADER } from "openapi-typescript";

const SERVICES = { intake: 8001, routing: 8002, hours: 8003, notify: 8004 };
const OUTPUT = new URL("../src/api/generated/", import.meta.url);

async function generate(service, port) {
  const base = process.env[`${service.toUpperCase()}_URL`] || `http://127.0.0.1:${port}`;
  const document = new URL("/openapi.json", base);
  // As in clients/typescript: a property with a `default` is optional in a request body.
  const types = astToString(await openapiTS(document, { defaultNonNullable: false, silent: true }));
  await writeFile(new URL(`${service}.ts`, OUTPUT), COMMENT_HEADER + types);
  return `${document} → src/api/generated/${service}.ts`;
}

await mkdir(OUTPUT, { recursive: true });
const results = await Promise.allSettled(Object.entries(SERVICES).map(([service, port]) => generate(service, port)));
for (const result of results) {
  console.log(result.status === "fulfilled" ? result.value : `failed: ${result.reason?.stack ?? result.reason}`);
}
process.exitCode = results.some((result) => result.status === "rejected") ? 1 : 0;
