#!/usr/bin/env node
// The `rendition` command (package.json "bin"): registers tsx, resolved from this file's own
// node_modules rather than the caller's directory, so `npx rendition` works from anywhere in
// (or outside) the clone, then runs the TypeScript CLI as the server runs (no build step).
import { register } from "tsx/esm/api";

register();
await import("../cli/main.ts");
