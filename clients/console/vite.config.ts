/// <reference types="vitest/config" />
import { fileURLToPath, URL } from "node:url";

import vue from "@vitejs/plugin-vue";
import AutoImport from "unplugin-auto-import/vite";
import { ElementPlusResolver } from "unplugin-vue-components/resolvers";
import Components from "unplugin-vue-components/vite";
import { defineConfig, type Plugin } from "vite";

const SERVICE_PORTS = { intake: 8001, routing: 8002, hours: 8003, notify: 8004 };

/** `npm run dev` answers /config.json as the console's server does: the services at INTAKE_URL etc., or at
 * `make up`'s ports (their WOODPECKER_CORS_ORIGINS must then admit http://localhost:5173). */
function developmentConfig(): Plugin {
  const services = Object.fromEntries(Object.entries(SERVICE_PORTS).map(([name, port]) =>
    [name, process.env[`${name.toUpperCase()}_URL`] ?? `http://127.0.0.1:${port}`]));
  const body = JSON.stringify({ services, timeZone: process.env.CITY_TIME_ZONE ?? "Asia/Shanghai" });
  return {
    name: "woodpecker-development-config",
    configureServer(server) {
      server.middlewares.use("/config.json", (_request, response) => {
        response.setHeader("Content-Type", "application/json");
        response.end(body);
      });
    },
  };
}

export default defineConfig({
  plugins: [
    vue(),
    // Element Plus on demand: each component (and its style) in the chunk of the screen that uses it, not the
    // whole library in the first view.
    AutoImport({ resolvers: [ElementPlusResolver()], dts: "src/auto-imports.d.ts" }),
    Components({ resolvers: [ElementPlusResolver({ importStyle: "css" })], dts: "src/components.d.ts" }),
    developmentConfig(),
  ],
  resolve: { alias: { "@": fileURLToPath(new URL("./src", import.meta.url)) } },
  // The manifest says which chunks each screen loads (bench/console_first_view.py weighs them).
  build: { target: "es2022", sourcemap: false, manifest: true },
  server: { port: 5173, strictPort: true },
  test: { include: ["tests/**/*.test.ts"], environment: "node" },
});
