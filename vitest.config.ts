import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    // Reuses or starts PostgreSQL and NATS once per run; tests read the URLs with inject().
    globalSetup: ["test/support/global-setup.ts"],
    // Integration tests talk to real servers and run ffmpeg.
    testTimeout: 30_000,
    hookTimeout: 60_000,
    teardownTimeout: 30_000,
    // Child processes (not worker threads): native code and spawned encoders stay isolated.
    pool: "forks",
    // The machine has 2 cores.
    maxWorkers: 2,
  },
});
