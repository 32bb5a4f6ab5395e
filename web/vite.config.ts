import { fileURLToPath } from "node:url";
import { defineConfig } from "vite";

/**
 * The web dashboard (web/): plain TypeScript and DOM, built into web/dist, which the API serves at
 * `/` (services/api/web-routes.ts). `npm run build:web` builds it; `npm start` builds it first
 * when it is missing or stale (scripts/build-web.ts).
 */
export default defineConfig({
  root: fileURLToPath(new URL(".", import.meta.url)),
  // Relative asset URLs: the dashboard also works behind a path prefix (RENDITION_PUBLIC_URL with a path).
  base: "./",
  publicDir: false,
  logLevel: "warn",
  build: {
    outDir: "dist",
    emptyOutDir: true,
    target: "es2022",
    // hls.js and dash.js are loaded on demand (the job detail's player) and are big by nature.
    chunkSizeWarningLimit: 1200,
    sourcemap: false,
    // Its timing report is noise on a busy 2-core machine, printed on every first `npm start`.
    rolldownOptions: { checks: { bundlerTimings: false } },
  },
});
