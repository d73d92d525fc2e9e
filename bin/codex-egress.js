#!/usr/bin/env node
// The `codex-egress` command: runs the compiled CLI (built by `npm install` through the `prepare` script).
import { main } from '../dist/cli/main.js';

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err) => {
    console.error(`codex-egress: ${err?.message ?? err}`);
    process.exitCode = 1;
  },
);
